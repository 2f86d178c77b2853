//! Webhook endpoints and the delivery of events to them.
//!
//! Recording an event queues one `deliveries` row per endpoint that wants it (in the recording
//! transaction). The delivery worker of every instance takes due rows with a lease (`next_at`
//! pushed ahead, taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL), so instances never work on
//! one row at once; an instance that dies mid-delivery leaves the row to be taken again when the
//! lease runs out (at least once). Each delivery is one POST with a timeout, signed like the
//! payment webhook (`Cartsync-Signature: t=…,v1=…` over `"<t>.<body>"` with the endpoint's
//! secret); a failure is retried with exponential backoff and full jitter until the retry window
//! (from the event's time) is over, then given up (`failed`). Deliveries run on their own tasks,
//! at most [`CONCURRENCY`] at once and [`PER_ENDPOINT`] per endpoint, so a slow or dead receiver
//! slows only its own deliveries, never a cart write or a checkout.

use crate::durable::{Durable, DurableError, on_db, placeholders};
use serde_json::{Value, json};
use shared::Timestamp;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Most deliveries in flight per instance.
pub const CONCURRENCY: usize = 32;
/// Most deliveries in flight per endpoint and instance.
pub const PER_ENDPOINT: usize = 8;
/// How long a taken delivery is this instance's before another may take it.
const LEASE_MS: i64 = 30_000;
/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

static WAKE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// New deliveries may be due: the worker of this instance looks now rather than at its next tick.
pub fn wake() {
    WAKE.notify_one();
}

/// An endpoint as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    pub created_at: Timestamp,
}

impl Webhook {
    /// The admin's view; the secret only when it was just made (`with_secret`).
    pub fn json(&self, with_secret: bool) -> Value {
        let mut v = json!({"id": self.id, "url": self.url, "events": self.events, "active": self.active, "created_at": self.created_at});
        if with_secret {
            v["secret"] = json!(self.secret);
        }
        v
    }
}

/// Why an endpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DurableError),
}

/// Checks `{"url", "events", "secret"?}`: an `http` or `https` URL with a host, at least one
/// event filter of known types (`order.*`, `*` allowed), and a secret of 16 to 256 characters.
pub fn parse(body: &Value) -> Result<(String, Vec<String>, Option<String>), String> {
    let obj = body.as_object().ok_or("a webhook is {\"url\", \"events\", \"secret\"?}")?;
    let url = obj.get("url").and_then(Value::as_str).ok_or("url is required")?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url does not parse: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) || url.len() > 2048 {
        return Err("url is an http or https URL with a host".into());
    }
    let events: Vec<String> = match obj.get("events") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= 64 => list
            .iter()
            .map(|e| e.as_str().filter(|f| shared::events::valid_filter(f)).map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("events are event types (\"order.paid\"), families (\"order.*\") or \"*\"")?,
        _ => return Err("events is a list of 1 to 64 event types or families".into()),
    };
    let secret = match obj.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if (16..=256).contains(&s.len()) => Some(s.clone()),
        Some(_) => return Err("secret is 16 to 256 characters".into()),
    };
    Ok((url.to_owned(), events, secret))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the operating system's randomness");
    hex::encode(b)
}

type Row = (String, String, String, String, bool, i64);

fn webhook_of(row: Row) -> Webhook {
    let (id, url, events, secret, active, created_at) = row;
    Webhook {
        id,
        url,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret,
        active,
        created_at: Timestamp::from_millis(created_at),
    }
}

pub async fn create(
    db: &Durable,
    url: String,
    events: Vec<String>,
    secret: Option<String>,
    now: Timestamp,
) -> Result<Webhook, DurableError> {
    let hook = Webhook {
        id: format!("wh_{}", random_hex(12)),
        url,
        events,
        secret: secret.unwrap_or_else(|| format!("whsec_{}", random_hex(24))),
        active: true,
        created_at: now,
    };
    let events_json = serde_json::to_string(&hook.events).unwrap_or_default();
    on_db!(db, pool => {
        sqlx::query("INSERT INTO webhooks (id, url, events, secret, active, created_at) VALUES ($1, $2, $3, $4, TRUE, $5)")
            .bind(&hook.id).bind(&hook.url).bind(&events_json).bind(&hook.secret).bind(now.millis())
            .execute(pool).await?;
    });
    Ok(hook)
}

pub async fn get(db: &Durable, id: &str) -> Result<Option<Webhook>, DurableError> {
    let row: Option<Row> = on_db!(db, pool => sqlx::query_as("SELECT id, url, events, secret, active, created_at FROM webhooks WHERE id = $1 AND active").bind(id).fetch_optional(pool).await?);
    Ok(row.map(webhook_of))
}

pub async fn list(db: &Durable) -> Result<Vec<Webhook>, DurableError> {
    let rows: Vec<Row> = on_db!(db, pool => sqlx::query_as("SELECT id, url, events, secret, active, created_at FROM webhooks WHERE active ORDER BY created_at, id").fetch_all(pool).await?);
    Ok(rows.into_iter().map(webhook_of).collect())
}

/// Removes an endpoint: it gets nothing more, and its pending deliveries are dropped.
pub async fn delete(db: &Durable, id: &str) -> Result<bool, DurableError> {
    Ok(on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let n = sqlx::query("UPDATE webhooks SET active = FALSE WHERE id = $1 AND active").bind(id).execute(&mut *tx).await?.rows_affected();
        sqlx::query("UPDATE deliveries SET state = 'dropped' WHERE webhook_id = $1 AND state = 'pending'").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        n > 0
    }))
}

/// The most recent delivery attempts of an endpoint, newest first.
pub async fn deliveries(db: &Durable, id: &str, limit: i64) -> Result<Vec<Value>, DurableError> {
    type Row = (String, String, i64, i64, Option<i64>, Option<String>, i64, String);
    let rows: Vec<Row> = on_db!(db, pool => sqlx::query_as(
        "SELECT d.event_id, d.state, d.attempts, d.next_at, d.last_status, d.last_error, d.updated_at, e.type
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.webhook_id = $1 ORDER BY d.updated_at DESC, d.event_id LIMIT $2")
        .bind(id).bind(limit).fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .map(|(event, state, attempts, next_at, status, error, updated_at, kind)| {
            let mut v = json!({"event_id": event, "type": kind, "status": state, "attempts": attempts, "updated_at": Timestamp::from_millis(updated_at)});
            if state == "pending" {
                v["next_attempt_at"] = json!(Timestamp::from_millis(next_at));
            }
            if let Some(s) = status {
                v["response_code"] = json!(s);
            }
            if let Some(e) = error {
                v["error"] = json!(e);
            }
            v
        })
        .collect())
}

/// Queues again, for one endpoint, every event it wants whose time is in `[from, to]`.
pub async fn replay(db: &Durable, hook: &Webhook, from: Timestamp, to: Timestamp, now: Timestamp) -> Result<u64, DurableError> {
    let ids: Vec<(String, String, String, String)> = on_db!(db, pool => sqlx::query_as("SELECT id, type, subject, ord FROM events WHERE at >= $1 AND at <= $2 ORDER BY at, id").bind(from.millis()).bind(to.millis()).fetch_all(pool).await?);
    let wanted: Vec<&(String, String, String, String)> =
        ids.iter().filter(|(_, t, _, _)| hook.events.iter().any(|f| shared::events::filter_matches(f, t))).collect();
    let mut n = 0u64;
    for chunk in wanted.chunks(500) {
        n += on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            let mut k = 0;
            for (id, _, subject, ord) in chunk {
                k += sqlx::query(
                    "INSERT INTO deliveries (webhook_id, event_id, subject, ord, state, attempts, next_at, first_at, updated_at)
                     VALUES ($1, $2, $4, $5, 'pending', 0, $3, $3, $3)
                     ON CONFLICT (webhook_id, event_id) DO UPDATE SET state = 'pending', attempts = 0, next_at = $3, first_at = $3, updated_at = $3",
                )
                .bind(&hook.id).bind(id.as_str()).bind(now.millis()).bind(subject.as_str()).bind(ord.as_str())
                .execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            k
        });
    }
    wake();
    Ok(n)
}

/// A delivery taken by this instance.
struct Due {
    webhook: String,
    event: String,
    attempts: i64,
    first_at: i64,
}

/// Takes up to `limit` due deliveries for this instance (their lease pushed `LEASE_MS` ahead).
async fn take_due(db: &Durable, now: Timestamp, limit: i64) -> Result<Vec<Due>, DurableError> {
    let skip = match db {
        Durable::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Durable::Sqlite(_) => "",
    };
    // One cart's events go out in order while its deliveries succeed: a delivery waits while an
    // earlier one of the same cart to the same endpoint is pending and not yet failed (queued or
    // in flight). One that failed is retried on its own schedule, and the cart's later events
    // go on past it (each carries `cart_version` to put them back in order).
    let sql = format!(
        "UPDATE deliveries SET next_at = $1 WHERE state = 'pending' AND (webhook_id, event_id) IN
           (SELECT d.webhook_id, d.event_id FROM deliveries d
            WHERE d.state = 'pending' AND d.next_at <= $2
              AND NOT EXISTS (SELECT 1 FROM deliveries p
                              WHERE p.webhook_id = d.webhook_id AND p.subject = d.subject AND p.state = 'pending' AND p.attempts = 0
                                AND (p.ord < d.ord OR (p.ord = d.ord AND p.event_id < d.event_id)))
            ORDER BY d.next_at LIMIT $3{skip})
         RETURNING webhook_id, event_id, attempts, first_at"
    );
    let rows: Vec<(String, String, i64, i64)> =
        on_db!(db, pool => sqlx::query_as(&sql).bind(now.millis() + LEASE_MS).bind(now.millis()).bind(limit).fetch_all(pool).await?);
    Ok(rows.into_iter().map(|(webhook, event, attempts, first_at)| Due { webhook, event, attempts, first_at }).collect())
}

/// What delivering settings say: the first retry delay and how long to keep trying.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub retry_base_ms: u64,
    pub retry_hours: u64,
}

impl Policy {
    /// The delay before attempt `attempts + 1`: exponential from the base, capped at an hour,
    /// with full jitter in its upper half (`jitter` in 0..1).
    pub fn delay_ms(&self, attempts: i64, jitter: f64) -> i64 {
        let base = (self.retry_base_ms.max(1) as f64) * 2f64.powi(attempts.clamp(0, 30) as i32);
        let capped = base.min(3_600_000.0);
        (capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as i64
    }
}

fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// Runs the delivery worker until `stop` turns true.
pub async fn run(db: Durable, policy: Policy, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for webhooks; deliveries stop");
            return;
        }
    };
    let running = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let per_endpoint: std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>> = std::sync::Arc::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let free = running.available_permits();
        let taken = if free == 0 { Ok(Vec::new()) } else { take_due(&db, crate::clock::now(), free as i64).await };
        let due = match taken {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due webhook deliveries");
                Vec::new()
            }
        };
        let idle = due.is_empty();
        if !due.is_empty() {
            let hooks: HashMap<String, Webhook> = match list(&db).await {
                Ok(l) => l.into_iter().map(|h| (h.id.clone(), h)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read webhook endpoints");
                    HashMap::new()
                }
            };
            let bodies = match bodies(&db, &due).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read events to deliver");
                    HashMap::new()
                }
            };
            for d in due {
                let (Some(hook), Some(body)) = (hooks.get(&d.webhook).cloned(), bodies.get(&d.event).cloned()) else { continue };
                {
                    let mut per = per_endpoint.lock().unwrap_or_else(|e| e.into_inner());
                    let n = per.entry(d.webhook.clone()).or_default();
                    if *n >= PER_ENDPOINT {
                        // This endpoint has enough in flight; the lease brings the row back later.
                        let db = db.clone();
                        tokio::spawn(async move { release(&db, &d, crate::clock::now().millis() + 200).await });
                        continue;
                    }
                    *n += 1;
                }
                let Ok(permit) = running.clone().acquire_owned().await else { return };
                let (client, db, per_endpoint) = (client.clone(), db.clone(), per_endpoint.clone());
                tokio::spawn(async move {
                    deliver(&client, &db, &hook, &d, &body, policy).await;
                    if let Some(n) = per_endpoint.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&d.webhook) {
                        *n = n.saturating_sub(1);
                    }
                    drop(permit);
                });
            }
        }
        if idle {
            tokio::select! {
                _ = WAKE.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

async fn bodies(db: &Durable, due: &[Due]) -> Result<HashMap<String, String>, DurableError> {
    let ids: Vec<&str> = due.iter().map(|d| d.event.as_str()).collect();
    let sql = format!("SELECT id, body FROM events WHERE id IN ({})", placeholders(1, ids.len()));
    let rows: Vec<(String, String)> = on_db!(db, pool => {
        let mut q = sqlx::query_as(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        q.fetch_all(pool).await?
    });
    Ok(rows.into_iter().collect())
}

/// Gives a taken delivery back, due at `at`.
async fn release(db: &Durable, d: &Due, at: i64) {
    let r: Result<(), DurableError> = async {
        on_db!(db, pool => {
            sqlx::query("UPDATE deliveries SET next_at = $1 WHERE webhook_id = $2 AND event_id = $3 AND state = 'pending'")
                .bind(at).bind(&d.webhook).bind(&d.event).execute(pool).await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not give a delivery back");
    }
}

async fn deliver(client: &reqwest::Client, db: &Durable, hook: &Webhook, d: &Due, body: &str, policy: Policy) {
    let t = crate::clock::now().millis() / 1000;
    let signature = crate::signature::sign(hook.secret.as_bytes(), t, body.as_bytes());
    let sent = client
        .post(&hook.url)
        .header("content-type", "application/cloudevents+json")
        .header("cartsync-signature", signature)
        .header("user-agent", "cartsync-webhooks/1")
        .body(body.to_owned())
        .send()
        .await;
    let (status, error) = match sent {
        Ok(res) => {
            let code = res.status().as_u16();
            // The body is not needed; reading a little of it lets the connection be reused.
            let _ = tokio::time::timeout(Duration::from_secs(1), res.bytes()).await;
            (Some(i64::from(code)), (!(200..300).contains(&code)).then(|| format!("HTTP {code}")))
        }
        Err(e) => (None, Some(if e.is_timeout() { "timed out".to_owned() } else { format!("could not deliver: {e}") })),
    };
    let now = crate::clock::now().millis();
    let attempts = d.attempts + 1;
    let (state, next_at) = match &error {
        None => ("delivered", now),
        Some(_) if now - d.first_at > i64::try_from(policy.retry_hours).unwrap_or(24).saturating_mul(3_600_000) => ("failed", now),
        Some(_) => ("pending", now + policy.delay_ms(d.attempts, jitter())),
    };
    crate::metrics::event("cartsync_webhook_deliveries_total", if error.is_none() { "delivered" } else { "failed" });
    let r: Result<(), DurableError> = async {
        on_db!(db, pool => {
            sqlx::query("UPDATE deliveries SET state = $1, attempts = $2, next_at = $3, last_status = $4, last_error = $5, updated_at = $6
                         WHERE webhook_id = $7 AND event_id = $8 AND state = 'pending'")
                .bind(state).bind(attempts).bind(next_at).bind(status).bind(&error).bind(now)
                .bind(&d.webhook).bind(&d.event)
                .execute(pool).await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not record a delivery; it will be sent again");
    }
    // The cart's next event may go now.
    wake();
}

/// Pending deliveries and the age of the oldest (ms), for the backlog gauge.
pub async fn backlog(db: &Durable, now: Timestamp) -> Result<(i64, i64), DurableError> {
    let (n, oldest): (i64, Option<i64>) =
        on_db!(db, pool => sqlx::query_as("SELECT COUNT(*), MIN(first_at) FROM deliveries WHERE state = 'pending'").fetch_one(pool).await?);
    Ok((n, oldest.map_or(0, |o| now.millis() - o)))
}
