//! The loop every hot-store queue worker runs (the write-behind worker, the event recorder):
//! fetch a batch, act on it, acknowledge what was done.
//!
//! New entries are read on every round, whatever else is pending, so one entry that keeps failing
//! never holds back the others; a failed entry is handed out again a couple of seconds later. A
//! failure is *transient* (a store out of reach: retried for as long as it takes) or *permanent*
//! (the entry itself cannot be acted on: after [`MAX_DELIVERIES`] tries it is set aside in the
//! durable `dead_letters` table, counted in `cartsync_dead_letters_total`, and acknowledged).

use crate::durable::{Durable, DurableError, on_db};
use crate::hot::{EntryId, HotStore, Queue, QueueEntry};
use std::time::Duration;
use tokio::sync::watch;

/// How often a permanently failing entry is tried before it is set aside.
pub const MAX_DELIVERIES: u64 = 5;
/// Most entries fetched per bucket and round.
const BATCH: usize = 256;
/// A round that found fewer entries than this is followed by a short pause ([`HotStore::queue_pace`]).
const PACE_BELOW: usize = 512;

/// Why an entry was not acted on.
#[derive(Debug)]
pub enum Failure {
    /// A store could not be reached: try again, however long it takes.
    Transient(String),
    /// The entry cannot be acted on as it is.
    Permanent(String),
}

impl From<DurableError> for Failure {
    fn from(e: DurableError) -> Self {
        match e {
            DurableError::Corrupt(..) => Failure::Permanent(e.to_string()),
            other => Failure::Transient(other.to_string()),
        }
    }
}

/// Acts on a batch of entries; one result per entry, in order.
#[allow(async_fn_in_trait)]
pub trait Handler {
    async fn handle(&self, batch: &[QueueEntry]) -> Vec<Result<(), Failure>>;
}

/// Runs `handler` on queue `q` until `stop` turns true, then drains what is queued and returns.
pub async fn run(hot: HotStore, q: Queue, durable: Durable, handler: impl Handler, mut stop: watch::Receiver<bool>) {
    let name = q.name();
    let mut failures = 0u32;
    loop {
        let stopping = *stop.borrow();
        let batch = match hot.queue_fetch(q, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                failures += 1;
                tracing::warn!(queue = name, error = %e, "cannot read a queue");
                if stopping && failures > 5 {
                    return;
                }
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if stopping {
                return;
            }
            tokio::select! {
                _ = hot.queue_wait(q) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let results = handler.handle(&batch).await;
        let mut done: Vec<EntryId> = Vec::new();
        let mut transient = false;
        for (entry, result) in batch.iter().zip(results) {
            match result {
                Ok(()) => done.push(entry.id.clone()),
                Err(Failure::Transient(e)) => {
                    transient = true;
                    tracing::warn!(queue = name, error = %e, "could not act on a queue entry; will retry");
                }
                Err(Failure::Permanent(e)) if entry.deliveries >= MAX_DELIVERIES => match set_aside(&durable, name, entry, &e).await {
                    Ok(()) => {
                        tracing::error!(queue = name, entry = %entry.id.id, error = %e, "set a queue entry aside after repeated failures");
                        crate::metrics::event("cartsync_dead_letters_total", name);
                        done.push(entry.id.clone());
                    }
                    Err(e) => tracing::warn!(queue = name, error = %e, "could not set a failing entry aside"),
                },
                Err(Failure::Permanent(e)) => {
                    tracing::warn!(queue = name, entry = %entry.id.id, tries = entry.deliveries, error = %e, "a queue entry failed");
                }
            }
        }
        if let Err(e) = hot.queue_ack(q, &done).await {
            tracing::warn!(queue = name, error = %e, "could not acknowledge queue entries");
        }
        if transient {
            failures += 1;
            if stopping && failures > 5 {
                tracing::error!(queue = name, "giving up the drain after repeated failures");
                return;
            }
            tokio::time::sleep(backoff(failures)).await;
        } else {
            failures = 0;
            if batch.len() < PACE_BELOW && !stopping {
                hot.queue_pace().await;
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
}

/// Records an entry that cannot be acted on, for an operator to look at.
async fn set_aside(db: &Durable, queue: &str, entry: &QueueEntry, error: &str) -> Result<(), DurableError> {
    let fields = serde_json::to_string(&entry.fields).unwrap_or_default();
    let id = format!("{queue}:{}:{}", entry.id.bucket, entry.id.id);
    let now = crate::clock::now().millis();
    on_db!(db, pool => {
        sqlx::query("INSERT INTO dead_letters (id, queue, fields, error, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
            .bind(&id).bind(queue).bind(&fields).bind(error).bind(now)
            .execute(pool).await?;
    });
    Ok(())
}
