//! The write-behind worker: copies changed user carts from the hot store to the durable store.
//!
//! The queue (a Redis Stream with a consumer group, or the in-process queue) names carts, not
//! changes: the worker reads each named cart's current snapshot and writes it with a version
//! guard, so entries may be repeated, reordered or coalesced and the durable store still only
//! ever moves forward. An entry is acknowledged only after its write committed.

use crate::durable::Durable;
use crate::hot::{HotStore, Rules};
use crate::identity::CartKey;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: usize = 256;

/// Runs until `stop` turns true, then drains what is queued and returns.
pub async fn run(hot: HotStore, durable: Durable, rules: Rules, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        let stopping = *stop.borrow();
        match hot.write_behind_fetch(BATCH).await {
            Ok(batch) if batch.is_empty() => {
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = hot.write_behind_wait() => {}
                    _ = stop.changed() => {}
                }
            }
            Ok(batch) => {
                let mut by_user: HashMap<_, Vec<String>> = HashMap::new();
                for e in batch {
                    by_user.entry(e.user).or_default().push(e.id);
                }
                let mut ok = true;
                for (user, ids) in by_user {
                    match write_one(&hot, &durable, &rules, &user).await {
                        Ok(()) => {
                            if let Err(e) = hot.write_behind_ack(&ids).await {
                                tracing::warn!(error = %e, "could not acknowledge written carts");
                            }
                        }
                        Err(e) => {
                            ok = false;
                            tracing::warn!(error = %e, "write-behind failed; will retry");
                        }
                    }
                }
                if ok {
                    failures = 0;
                } else {
                    failures += 1;
                    if stopping && failures > 5 {
                        tracing::error!("giving up the write-behind drain after repeated failures");
                        return;
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot read the write-behind queue");
                if stopping && failures > 5 {
                    return;
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
}

async fn write_one(hot: &HotStore, durable: &Durable, rules: &Rules, user: &shared::UserId) -> Result<(), String> {
    let id = CartKey::for_user(user);
    let Some(state) = hot.snapshot(&id, rules).await.map_err(|e| e.to_string())? else {
        // Gone from the hot store (expired or flushed): nothing newer than the durable copy.
        return Ok(());
    };
    durable.save_user_cart(user, &state).await.map_err(|e| e.to_string())?;
    Ok(())
}
