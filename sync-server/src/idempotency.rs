//! Idempotency keys: the first request with a key does the work and its answer is kept; a repeat
//! with the same key and the same body gets that answer back; a repeat with another body is
//! refused. As in zero-to-production's `idempotency` module, a handler calls [`Idempotency::begin`]
//! and, when told to run, does the work and [`Claim::save`]s its answer.
//!
//! Keys are scoped to an owner (a cart's storage tag) and kept for two days. A concurrent repeat
//! waits for the first request's answer, up to a configured time. A failure on our side (a 5xx)
//! gives the key back ([`Claim::abandon`]) so a retry runs afresh, and a claim whose server died
//! is taken over once it is a minute old.

use crate::durable::{Durable, DurableError, on_db};
use shared::Timestamp;
use std::time::{Duration, Instant};

/// A claim older than this that never finished (its server died) may be taken over.
const STALE_MS: i64 = 60_000;

/// Keys are forgotten after this long.
pub const KEEP_MS: i64 = 48 * 3600 * 1000;

/// A kept answer: its HTTP status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub status: u16,
    pub body: String,
}

/// What the request holding a key should do.
pub enum Begin {
    /// Do the work, then save (or abandon) the claim.
    Run(Claim),
    /// The first request with this key already answered: answer the same.
    Replay(Saved),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was used with another request body")]
    Reused,
    #[error("a request with this Idempotency-Key is still running")]
    InProgress,
    #[error(transparent)]
    Store(#[from] DurableError),
}

/// This request's hold on a key.
#[must_use = "a claim is saved or abandoned"]
pub struct Claim {
    db: Durable,
    owner: String,
    key: String,
}

#[derive(Clone)]
pub struct Idempotency {
    db: Durable,
    wait: Duration,
}

enum Attempt {
    Claimed,
    Done(Saved),
    Running,
    Reused,
}

type KeyRow = (String, String, Option<i32>, Option<String>, i64);

impl Idempotency {
    /// `wait`: how long a repeat waits for the first request's answer before `InProgress`.
    pub fn new(db: Durable, wait: Duration) -> Idempotency {
        Idempotency { db, wait }
    }

    /// Claims `key` of `owner` for a request whose body hashes to `request_hash`, or tells what
    /// became of the key's first request, waiting for it while it runs.
    pub async fn begin(
        &self,
        owner: &str,
        key: &str,
        request_hash: &str,
        clock: impl Fn() -> Timestamp,
    ) -> Result<Begin, IdempotencyError> {
        let started = Instant::now();
        loop {
            match self.attempt(owner, key, request_hash, clock()).await? {
                Attempt::Claimed => return Ok(Begin::Run(Claim { db: self.db.clone(), owner: owner.to_owned(), key: key.to_owned() })),
                Attempt::Done(saved) => return Ok(Begin::Replay(saved)),
                Attempt::Reused => return Err(IdempotencyError::Reused),
                Attempt::Running if started.elapsed() >= self.wait => return Err(IdempotencyError::InProgress),
                Attempt::Running => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn attempt(&self, owner: &str, key: &str, request_hash: &str, now: Timestamp) -> Result<Attempt, DurableError> {
        on_db!(&self.db, pool => {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (owner, key, request_hash, state, created_at) VALUES ($1, $2, $3, 'running', $4) ON CONFLICT DO NOTHING",
            )
            .bind(owner)
            .bind(key)
            .bind(request_hash)
            .bind(now.millis())
            .execute(pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Attempt::Claimed);
            }
            let row: Option<KeyRow> =
                sqlx::query_as("SELECT request_hash, state, status, body, created_at FROM idempotency_keys WHERE owner = $1 AND key = $2")
                    .bind(owner)
                    .bind(key)
                    .fetch_optional(pool)
                    .await?;
            // Gone between the two statements (given back, or swept): try again.
            let Some((hash, state, status, body, created_at)) = row else { return Ok(Attempt::Running) };
            if hash != request_hash {
                return Ok(Attempt::Reused);
            }
            if state == "done" {
                return Ok(Attempt::Done(Saved { status: status.unwrap_or(500) as u16, body: body.unwrap_or_default() }));
            }
            if now.millis() - created_at > STALE_MS {
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET created_at = $1 WHERE owner = $2 AND key = $3 AND state = 'running' AND created_at = $4",
                )
                .bind(now.millis())
                .bind(owner)
                .bind(key)
                .bind(created_at)
                .execute(pool)
                .await?
                .rows_affected();
                if taken == 1 {
                    return Ok(Attempt::Claimed);
                }
            }
            Ok(Attempt::Running)
        })
    }

    /// Whether `owner` has used `key` (a read: nothing is stored).
    pub async fn known(&self, owner: &str, key: &str) -> Result<bool, DurableError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query_as::<_, (i32,)>("SELECT 1 FROM idempotency_keys WHERE owner = $1 AND key = $2")
                .bind(owner)
                .bind(key)
                .fetch_optional(pool)
                .await?
                .is_some()
        }))
    }

    /// Forgets keys created before `before`.
    pub async fn sweep(&self, before: Timestamp) -> Result<u64, DurableError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before.millis()).execute(pool).await?.rows_affected()
        }))
    }
}

impl Claim {
    /// Ends the claim with the request's answer: a failure on our side (a 5xx) gives the key
    /// back, so a retry runs afresh, and so does an answer that changed nothing and would only be
    /// answered again (`forget`: an empty cart), so no row is kept for it; any other answer is
    /// kept and replayed. A store that cannot be told is logged, not answered: the request itself
    /// is done.
    pub async fn finish(self, answer: &Saved, forget: bool) {
        let done = if answer.status >= 500 || forget { self.abandon().await } else { self.save(answer).await };
        if let Err(e) = done {
            tracing::warn!(error = %e, status = answer.status, "could not record a checkout answer under its idempotency key");
        }
    }

    /// Keeps the answer, to be replayed for every repeat of the key.
    pub async fn save(self, answer: &Saved) -> Result<(), DurableError> {
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE idempotency_keys SET state = 'done', status = $1, body = $2 WHERE owner = $3 AND key = $4")
                .bind(i32::from(answer.status))
                .bind(&answer.body)
                .bind(&self.owner)
                .bind(&self.key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Gives the key back after a failure on our side, so the client's retry runs afresh.
    pub async fn abandon(self) -> Result<(), DurableError> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND state = 'running'")
                .bind(&self.owner)
                .bind(&self.key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
