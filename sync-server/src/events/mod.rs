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

use serde_json::Value;
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
}

impl Event {
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
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
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
    let mut new = 0;
    for e in events {
        let body = e.body();
        let inserted = sqlx::query_as::<DB, (String,)>(
            "INSERT INTO events (id, type, subject, user_id, sku, quantity, detail, amount, at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(e.id.as_str())
        .bind(e.kind.as_str())
        .bind(e.subject.as_str())
        .bind(e.user.as_deref())
        .bind(e.sku.as_deref())
        .bind(e.quantity)
        .bind(e.detail.as_deref())
        .bind(e.amount)
        .bind(e.at.millis())
        .bind(body.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if inserted.is_none() {
            continue;
        }
        new += 1;
        for (hook, filters) in &hooks {
            if filters.iter().any(|f| shared::events::filter_matches(f, &e.kind)) {
                sqlx::query::<DB>(
                    "INSERT INTO deliveries (webhook_id, event_id, state, attempts, next_at, first_at, updated_at) VALUES ($1, $2, 'pending', 0, $3, $3, $3)
                     ON CONFLICT (webhook_id, event_id) DO NOTHING",
                )
                .bind(hook.as_str())
                .bind(e.id.as_str())
                .bind(e.at.millis())
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(new)
}
