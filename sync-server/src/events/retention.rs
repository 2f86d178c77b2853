//! Retention: durable user carts untouched for the cart retention (unless the hot store still
//! holds them: reads renew a cart only there, so a cart read every day but not written for months
//! is in use, and its durable copy is renewed rather than deleted), events (with their
//! deliveries) past the event retention, paid-line records with them, and idempotency keys past
//! theirs are deleted, in batches of [`BATCH`] rows per transaction so no table is locked for
//! long. Every instance may run it at once: a row is deleted once, whoever gets it (on
//! PostgreSQL the batches take their rows `FOR UPDATE SKIP LOCKED`).

use crate::durable::{Durable, DurableError, on_db};
use crate::hot::HotStore;
use crate::identity::CartKey;
use shared::{Timestamp, UserId};

/// Rows deleted per transaction.
pub const BATCH: i64 = 500;

/// What one pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub carts: u64,
    pub events: u64,
    pub idempotency_keys: u64,
}

/// Deletes, batch after batch, what is past its time at `now`; at most `max_batches` batches of
/// each kind per call (the job calls it again on its next tick).
pub async fn sweep(
    db: &Durable,
    hot: &HotStore,
    now: Timestamp,
    cart_days: u64,
    event_days: u64,
    key_ms: i64,
    max_batches: u32,
) -> Result<Swept, DurableError> {
    let day = 86_400_000i64;
    let cart_cutoff = now.millis() - i64::try_from(cart_days).unwrap_or(i64::MAX / day).saturating_mul(day);
    let event_cutoff = now.millis() - i64::try_from(event_days).unwrap_or(i64::MAX / day).saturating_mul(day);
    let key_cutoff = now.millis() - key_ms;
    let skip = match db {
        Durable::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Durable::Sqlite(_) => "",
    };
    let mut swept = Swept::default();
    for _ in 0..max_batches {
        let (n, deleted) = on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            let users: Vec<(String,)> = sqlx::query_as(&format!("SELECT user_id FROM user_carts WHERE written_at < $1 ORDER BY user_id LIMIT $2{skip}"))
                .bind(cart_cutoff).bind(BATCH).fetch_all(&mut *tx).await?;
            let mut deleted = 0u64;
            for (u,) in &users {
                let in_use = match UserId::parse(u) {
                    Ok(user) => hot.holds(&CartKey::for_user(&user), now).await.map_err(|e| DurableError::Config(format!("hot store: {e}")))?,
                    Err(_) => false,
                };
                if in_use {
                    sqlx::query("UPDATE user_carts SET written_at = $1 WHERE user_id = $2").bind(now.millis()).bind(u).execute(&mut *tx).await?;
                    continue;
                }
                sqlx::query("DELETE FROM user_cart_ops WHERE user_id = $1").bind(u).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM user_carts WHERE user_id = $1").bind(u).execute(&mut *tx).await?;
                deleted += 1;
            }
            tx.commit().await?;
            (users.len() as u64, deleted)
        });
        swept.carts += deleted;
        if n < BATCH as u64 {
            break;
        }
    }
    for _ in 0..max_batches {
        let n = on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(&format!("SELECT id FROM events WHERE at < $1 ORDER BY at LIMIT $2{skip}"))
                .bind(event_cutoff).bind(BATCH).fetch_all(&mut *tx).await?;
            for (id,) in &ids {
                sqlx::query("DELETE FROM deliveries WHERE event_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM events WHERE id = $1").bind(id).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM paid_lines WHERE at < $1").bind(event_cutoff).execute(&mut *tx).await?;
            tx.commit().await?;
            ids.len() as u64
        });
        swept.events += n;
        if n < BATCH as u64 {
            break;
        }
    }
    for _ in 0..max_batches {
        let n = on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            let keys: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT owner, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2{skip}"))
                .bind(key_cutoff).bind(BATCH).fetch_all(&mut *tx).await?;
            for (owner, key) in &keys {
                sqlx::query("DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2").bind(owner).bind(key).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            keys.len() as u64
        });
        swept.idempotency_keys += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(swept)
}
