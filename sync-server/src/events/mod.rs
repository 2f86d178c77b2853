//! Cart and order events (`events.md`): how they are recorded in the durable store, and the jobs
//! built on them.
//!
//! Cart events are written by the hot store in the same atomic step as the change (the Lua
//! scripts, or the in-process store's lock) into a queue; [`recorder`] moves them into the
//! `events` table, idempotently (an event's id is its queue entry's). Order events are written by
//! the order transactions themselves ([`record`] inside them: an outbox). Recording an event also
//! queues one delivery per webhook endpoint that wants it (`webhooks`), in the same transaction.
//!
//! `webhooks` delivers, `abandonment` finds idle carts, `analytics` answers the funnel and SKU
//! questions, `retention` deletes what is past its time.

pub mod abandonment;
pub mod analytics;
pub mod recorder;
pub mod retention;
pub mod webhooks;

use serde_json::{Value, json};
use shared::Timestamp;

/// An event as the `events` table holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub user: Option<String>,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub detail: Option<String>,
    pub amount: Option<i64>,
    pub at: Timestamp,
    pub data: Value,
    /// Orders one cart's events (deliveries go out in this order): a cart change's position in
    /// its bucket's stream or in the process's queue, which is the order the changes were made
    /// in; the time for the others ([`Event::time_order`]).
    pub order: String,
}

impl Event {
    /// The order key of an event that is not a cart change: its time.
    pub fn time_order(at: Timestamp) -> String {
        format!("{:013}", at.millis().max(0))
    }

    /// The CloudEvents 1.0 JSON delivered for it.
    pub fn body(&self) -> String {
        shared::events::cloud_event(&self.id, &self.kind, self.at, &self.subject, &self.data).to_string()
    }
}

/// Records `events` in a transaction of their own (a refused checkout's `checkout.failed`).
pub async fn record_now(db: &crate::durable::Durable, events: &[Event]) -> Result<(), crate::durable::DurableError> {
    crate::durable::on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        record(&mut tx, events).await?;
        tx.commit().await?;
    });
    webhooks::wake();
    Ok(())
}

/// Records `events` inside the caller's transaction, each at most once (by id), with one pending
/// delivery per active webhook endpoint whose filters take it. Returns how many were new.
pub(crate) async fn record<'c, DB>(tx: &mut sqlx::Transaction<'c, DB>, events: &[Event]) -> Result<usize, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    if events.is_empty() {
        return Ok(0);
    }
    let hooks: Vec<(String, String)> =
        sqlx::query_as::<DB, (String, String)>("SELECT id, events FROM webhooks WHERE active").fetch_all(&mut **tx).await?;
    let hooks: Vec<(String, Vec<String>)> =
        hooks.into_iter().map(|(id, filters)| (id, serde_json::from_str::<Vec<String>>(&filters).unwrap_or_default())).collect();
    // One statement for the batch, and one per webhook that wants some of it: the events travel
    // as one JSON array, unpacked by each database's own JSON function.
    let postgres = DB::NAME == "PostgreSQL";
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({"id": e.id, "type": e.kind, "subject": e.subject, "user": e.user, "sku": e.sku, "quantity": e.quantity,
                   "detail": e.detail, "amount": e.amount, "at": e.at.millis(), "body": e.body(), "ord": e.order})
        })
        .collect();
    let insert = if postgres {
        "INSERT INTO events (id, type, subject, user_id, sku, quantity, detail, amount, at, body, ord)
         SELECT e->>'id', e->>'type', e->>'subject', e->>'user', e->>'sku', (e->>'quantity')::BIGINT, e->>'detail',
                (e->>'amount')::BIGINT, (e->>'at')::BIGINT, e->>'body', e->>'ord'
         FROM json_array_elements($1::json) AS e
         ON CONFLICT (id) DO NOTHING RETURNING id"
    } else {
        "INSERT INTO events (id, type, subject, user_id, sku, quantity, detail, amount, at, body, ord)
         SELECT json_extract(value, '$.id'), json_extract(value, '$.type'), json_extract(value, '$.subject'), json_extract(value, '$.user'),
                json_extract(value, '$.sku'), json_extract(value, '$.quantity'), json_extract(value, '$.detail'),
                json_extract(value, '$.amount'), json_extract(value, '$.at'), json_extract(value, '$.body'), json_extract(value, '$.ord')
         FROM json_each($1) WHERE true
         ON CONFLICT (id) DO NOTHING RETURNING id"
    };
    let inserted: Vec<(String,)> =
        sqlx::query_as::<DB, (String,)>(insert).bind(Value::Array(rows).to_string().as_str()).fetch_all(&mut **tx).await?;
    let inserted: std::collections::HashSet<String> = inserted.into_iter().map(|r| r.0).collect();
    let deliver = if postgres {
        "INSERT INTO deliveries (webhook_id, event_id, subject, ord, state, attempts, next_at, first_at, updated_at)
         SELECT $1, p->>0, p->>2, p->>3, 'pending', 0, (p->>1)::BIGINT, (p->>1)::BIGINT, (p->>1)::BIGINT
         FROM json_array_elements($2::json) AS p
         ON CONFLICT (webhook_id, event_id) DO NOTHING"
    } else {
        "INSERT INTO deliveries (webhook_id, event_id, subject, ord, state, attempts, next_at, first_at, updated_at)
         SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), 'pending', 0,
                json_extract(value, '$[1]'), json_extract(value, '$[1]'), json_extract(value, '$[1]')
         FROM json_each($2) WHERE true
         ON CONFLICT (webhook_id, event_id) DO NOTHING"
    };
    for (hook, filters) in &hooks {
        let wanted: Vec<Value> = events
            .iter()
            .filter(|e| inserted.contains(&e.id) && filters.iter().any(|f| shared::events::filter_matches(f, &e.kind)))
            .map(|e| json!([e.id, e.at.millis(), e.subject, e.order]))
            .collect();
        if !wanted.is_empty() {
            sqlx::query::<DB>(deliver).bind(hook.as_str()).bind(Value::Array(wanted).to_string().as_str()).execute(&mut **tx).await?;
        }
    }
    let new = inserted.len();
    Ok(new)
}
