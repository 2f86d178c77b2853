//! The write-behind worker: copies changed user carts from the hot store to the durable store.
//!
//! The queue (each bucket's Redis stream, filled by the cart scripts themselves; or the
//! in-process queue, filled under the same lock as the change) names carts, not changes: the
//! worker reads each named cart's current snapshot and writes it with a version guard, so
//! entries may be repeated, reordered or coalesced and the durable store still only ever moves
//! forward. An entry is acknowledged only after its write committed.

use crate::durable::Durable;
use crate::hot::{HotStore, Queue, QueueEntry, Rules};
use crate::identity::CartKey;
use crate::queues::{Failure, Handler};
use shared::UserId;
use std::collections::HashMap;
use tokio::sync::watch;

struct Writer {
    hot: HotStore,
    durable: Durable,
    rules: Rules,
}

impl Handler for Writer {
    async fn handle(&self, batch: &[QueueEntry]) -> Vec<Result<(), Failure>> {
        // One write per user, whatever number of entries name it.
        let mut outcome: HashMap<String, Result<(), Failure>> = HashMap::new();
        let mut out = Vec::with_capacity(batch.len());
        // Once a store is out of reach, the rest of the batch is not tried: each try would wait
        // for the pool's timeout, and a batch of them would hold the worker long after the store
        // came back. The entries come back on the next round.
        let mut unreachable: Option<String> = None;
        for e in batch {
            let Some(user) = e.field("u").and_then(|u| UserId::parse(u).ok()) else {
                out.push(Err(Failure::Permanent(format!("a write-behind entry without a user: {:?}", e.fields))));
                continue;
            };
            if !outcome.contains_key(user.as_str()) {
                let r = match &unreachable {
                    Some(why) => Err(Failure::Transient(why.clone())),
                    None => write_one(&self.hot, &self.durable, &self.rules, &user).await,
                };
                if let Err(Failure::Transient(why)) = &r {
                    unreachable.get_or_insert_with(|| why.clone());
                }
                outcome.insert(user.as_str().to_owned(), r);
            }
            out.push(match &outcome[user.as_str()] {
                Ok(()) => Ok(()),
                Err(Failure::Transient(e)) => Err(Failure::Transient(e.clone())),
                Err(Failure::Permanent(e)) => Err(Failure::Permanent(e.clone())),
            });
        }
        out
    }
}

/// Runs until `stop` turns true, then drains what is queued and returns.
pub async fn run(hot: HotStore, durable: Durable, rules: Rules, stop: watch::Receiver<bool>) {
    let writer = Writer { hot: hot.clone(), durable: durable.clone(), rules };
    crate::queues::run(hot, Queue::WriteBehind, durable, writer, stop).await;
}

async fn write_one(hot: &HotStore, durable: &Durable, rules: &Rules, user: &UserId) -> Result<(), Failure> {
    let id = CartKey::for_user(user);
    let state = match hot.snapshot(&id, rules).await {
        Ok(Some(state)) => state,
        // Gone from the hot store (expired or flushed): nothing newer than the durable copy.
        Ok(None) => return Ok(()),
        Err(crate::hot::StoreError::Corrupt(e)) => return Err(Failure::Permanent(e)),
        Err(e) => return Err(Failure::Transient(e.to_string())),
    };
    durable.save_user_cart(user, &state).await?;
    Ok(())
}
