//! The in-process hot store of the embedded default. It keeps the same keys, expiries and
//! exactly-once bookkeeping as the Redis layout, and runs `shared`'s own logic on them.

use super::{ApplyResult, Frozen, MergeResult, Rules, WriteBehindEntry};
use crate::identity::CartKey;
use shared::{Cart, CartState, Op, OpOutcome, Timestamp, UserId, merge_ranked};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

struct Expiring<T> {
    value: T,
    expires_at: Timestamp,
}

#[derive(Default)]
struct Inner {
    carts: HashMap<String, Expiring<Cart>>,
    applied: HashMap<String, Expiring<BTreeSet<String>>>,
    frozen: HashMap<String, Expiring<(u64, Cart)>>,
    generations: HashMap<String, Expiring<u64>>,
    queue: VecDeque<(u64, UserId)>,
    in_flight: Vec<(u64, UserId)>,
    next_entry: u64,
}

fn take_live<T>(map: &mut HashMap<String, Expiring<T>>, key: &str, now: Timestamp) -> Option<T> {
    map.remove(key).filter(|e| e.expires_at > now).map(|e| e.value)
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    queued: Notify,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied cart: every change is
        // computed on values taken out of the maps and put back whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn apply(&self, id: &CartKey, ops: &[Op], if_match: Option<u64>, rules: &Rules, now: Timestamp) -> ApplyResult {
        let key = id.tag();
        let expiry = rules.expiry(id);
        let mut inner = self.lock();
        let existing = take_live(&mut inner.carts, &key, now);
        if existing.is_none() && id.is_user() {
            return ApplyResult::NeedsRestore;
        }
        let exists = existing.is_some();
        let before = existing.clone();
        let applied = take_live(&mut inner.applied, &key, now).unwrap_or_default();
        let mut state = CartState { cart: existing.unwrap_or_else(|| Cart::new(rules.currency)), applied };
        state.cart.touch(now, &expiry);
        let put_back = |inner: &mut Inner, cart: Option<Cart>, applied: BTreeSet<String>| {
            let ttl = cart.as_ref().map_or(expiry.cart_seconds * 1000, |c| Rules::key_ttl_ms(&expiry, c));
            let expires_at = Timestamp::from_millis(now.millis() + ttl);
            if let Some(c) = cart {
                inner.carts.insert(key.clone(), Expiring { value: c, expires_at });
            }
            if !applied.is_empty() {
                inner.applied.insert(key.clone(), Expiring { value: applied, expires_at });
            }
        };
        if !ops.is_empty() && !state.cart.takes_ops() {
            let into = state.cart.merged_into.clone();
            put_back(&mut inner, before, state.applied);
            return ApplyResult::Merged { into };
        }
        if let Some(expected) = if_match
            && expected != state.cart.version
        {
            let version = state.cart.version;
            put_back(&mut inner, before, state.applied);
            return ApplyResult::VersionMismatch(version);
        }
        let outcomes: Vec<OpOutcome> = ops.iter().map(|op| state.apply_op(op, &rules.limits, now)).collect();
        let any_applied = outcomes.contains(&OpOutcome::Applied);
        if exists || any_applied {
            put_back(&mut inner, Some(state.cart.clone()), state.applied);
            if any_applied && let Some(u) = id.user() {
                enqueue(&mut inner, u);
                self.queued.notify_one();
            }
        } else {
            put_back(&mut inner, None, state.applied);
        }
        ApplyResult::Done { cart: state.cart, outcomes }
    }

    pub fn restore(&self, id: &CartKey, state: &CartState, rules: &Rules, now: Timestamp) {
        let key = id.tag();
        let mut inner = self.lock();
        if inner.carts.get(&key).is_some_and(|e| e.expires_at > now) {
            return;
        }
        let ttl = Rules::key_ttl_ms(&rules.expiry(id), &state.cart);
        let expires_at = Timestamp::from_millis(now.millis() + ttl);
        inner.carts.insert(key.clone(), Expiring { value: state.cart.clone(), expires_at });
        if !state.applied.is_empty() {
            inner.applied.insert(key, Expiring { value: state.applied.clone(), expires_at });
        }
    }

    pub fn freeze_guest(&self, guest: &CartKey, user: &UserId, rules: &Rules, now: Timestamp) -> Frozen {
        let key = guest.tag();
        let expiry = rules.expiry(guest);
        let snapshot_expires = Timestamp::from_millis(now.millis() + expiry.cart_seconds.max(expiry.saved_seconds) * 1000);
        let mut inner = self.lock();
        let applied: Vec<String> =
            inner.applied.get(&key).filter(|e| e.expires_at > now).map(|e| e.value.iter().cloned().collect()).unwrap_or_default();
        if let Some(f) = inner.frozen.get(&key).filter(|e| e.expires_at > now) {
            return Frozen { generation: f.value.0, cart: f.value.1.clone(), applied, code_rank: Vec::new() };
        }
        let mut cart = take_live(&mut inner.carts, &key, now).unwrap_or_else(|| Cart::new(rules.currency));
        cart.touch(now, &expiry);
        let taken = cart.freeze(user, now);
        let mut frozen = Frozen { generation: 0, cart: Cart::new(rules.currency), applied, code_rank: Vec::new() };
        if !taken.is_empty() {
            let generation = take_live(&mut inner.generations, &key, now).unwrap_or(0) + 1;
            inner.generations.insert(key.clone(), Expiring { value: generation, expires_at: snapshot_expires });
            inner.frozen.insert(key.clone(), Expiring { value: (generation, taken.clone()), expires_at: snapshot_expires });
            frozen.generation = generation;
            frozen.cart = taken;
        }
        let expires_at = Timestamp::from_millis(now.millis() + Rules::key_ttl_ms(&expiry, &cart));
        inner.carts.insert(key, Expiring { value: cart, expires_at });
        frozen
    }

    pub fn merge_into(&self, user: &CartKey, op_id: &str, guest: &Frozen, rules: &Rules, now: Timestamp) -> MergeResult {
        let key = user.tag();
        let expiry = rules.expiry(user);
        let mut inner = self.lock();
        let Some(mut cart) = take_live(&mut inner.carts, &key, now) else {
            return MergeResult::NeedsRestore;
        };
        let mut applied = take_live(&mut inner.applied, &key, now).unwrap_or_default();
        cart.touch(now, &expiry);
        let fresh = applied.insert(op_id.to_owned());
        if fresh {
            merge_ranked(&mut cart, &guest.cart, rules.merge, &rules.limits, now, &guest.code_rank);
            applied.extend(guest.applied.iter().cloned());
        }
        let expires_at = Timestamp::from_millis(now.millis() + Rules::key_ttl_ms(&expiry, &cart));
        inner.carts.insert(key.clone(), Expiring { value: cart.clone(), expires_at });
        inner.applied.insert(key, Expiring { value: applied, expires_at });
        if fresh && let Some(u) = user.user() {
            enqueue(&mut inner, u);
            self.queued.notify_one();
        }
        MergeResult::Done { cart, applied: fresh }
    }

    pub fn finish_merge(&self, guest: &CartKey) {
        self.lock().frozen.remove(&guest.tag);
    }

    pub fn snapshot(&self, id: &CartKey) -> Option<CartState> {
        let key = id.tag();
        let inner = self.lock();
        let cart = inner.carts.get(&key)?.value.clone();
        let applied = inner.applied.get(&key).map(|e| e.value.clone()).unwrap_or_default();
        Some(CartState { cart, applied })
    }

    pub fn write_behind_fetch(&self, max: usize) -> Vec<WriteBehindEntry> {
        let mut inner = self.lock();
        if inner.in_flight.is_empty() {
            let n = max.min(inner.queue.len());
            let batch: Vec<_> = inner.queue.drain(..n).collect();
            inner.in_flight = batch;
        }
        inner.in_flight.iter().map(|(id, user)| WriteBehindEntry { id: id.to_string(), user: user.clone() }).collect()
    }

    pub fn write_behind_ack(&self, ids: &[String]) {
        self.lock().in_flight.retain(|(id, _)| !ids.contains(&id.to_string()));
    }

    pub async fn write_behind_wait(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(250), self.queued.notified()).await;
    }

    /// Drops everything that has expired; called now and then so idle carts do not pile up.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let mut inner = self.lock();
        let before = inner.carts.len();
        inner.carts.retain(|_, e| e.expires_at > now);
        inner.applied.retain(|_, e| e.expires_at > now);
        inner.frozen.retain(|_, e| e.expires_at > now);
        inner.generations.retain(|_, e| e.expires_at > now);
        before - inner.carts.len()
    }
}

fn enqueue(inner: &mut Inner, user: &UserId) {
    inner.next_entry += 1;
    let id = inner.next_entry;
    inner.queue.push_back((id, user.clone()));
}
