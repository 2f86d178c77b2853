//! The in-process hot store of the embedded default. It keeps the same keys, expiries and
//! exactly-once bookkeeping as the Redis layout, and runs `shared`'s own logic on them.

use super::{ApplyResult, EntryId, Frozen, MergeResult, Queue, QueueEntry, Rules, event_fields, subject_of};
use crate::identity::CartKey;
use shared::events::{EventType, op_event};
use shared::{Applied, Cart, CartState, Op, OpOutcome, Timestamp, UserId, merge_ranked};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

struct Expiring<T> {
    value: T,
    expires_at: Timestamp,
}

#[derive(Default)]
struct Inner {
    carts: HashMap<String, Expiring<Cart>>,
    applied: HashMap<String, Expiring<Applied>>,
    frozen: HashMap<String, Expiring<(u64, Cart, UserId)>>,
    generations: HashMap<String, Expiring<u64>>,
    /// The write-behind queue and the event queue.
    queues: [MemQueue; 2],
}

/// An entry's fields, in order.
type Fields = Vec<(String, String)>;

/// One queue: entries not handed out yet, and entries handed out and not acknowledged.
#[derive(Default)]
struct MemQueue {
    next: u64,
    waiting: VecDeque<(u64, Fields, Timestamp)>,
    out: Vec<Out>,
}

struct Out {
    id: u64,
    fields: Vec<(String, String)>,
    deliveries: u64,
    handed_at: std::time::Instant,
    at: Timestamp,
}

/// A handed-out entry that was not acknowledged is handed out again after this long.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl MemQueue {
    fn push(&mut self, fields: Vec<(String, String)>, at: Timestamp) {
        self.next += 1;
        self.waiting.push_back((self.next, fields, at));
    }
}

fn take_live<T>(map: &mut HashMap<String, Expiring<T>>, key: &str, now: Timestamp) -> Option<T> {
    map.remove(key).filter(|e| e.expires_at > now).map(|e| e.value)
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    queued: [Notify; 2],
    /// Set once an event recorder runs: from then on a change is acknowledged only after its
    /// events are in the durable store (this store itself does not survive the process).
    recorder: std::sync::atomic::AtomicBool,
    /// Every event entry up to this number is recorded (acknowledged by the recorder).
    recorded: tokio::sync::watch::Sender<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            queued: Default::default(),
            recorder: std::sync::atomic::AtomicBool::new(false),
            recorded: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied cart: every change is
        // computed on values taken out of the maps and put back whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it holds `id`'s cart, alive at `now`.
    pub fn holds(&self, id: &CartKey, now: Timestamp) -> bool {
        self.lock().carts.get(&id.tag).is_some_and(|e| e.expires_at > now)
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
        // A cart no op ever changed (new, or a user's restored empty) comes into being now.
        let created = existing.as_ref().is_none_or(|c| c.version == 0);
        let before = existing.clone();
        let applied = take_live(&mut inner.applied, &key, now).unwrap_or_default();
        let mut state = CartState { cart: existing.unwrap_or_else(|| Cart::new(rules.currency)), applied };
        state.cart.touch(now, &expiry);
        let put_back = |inner: &mut Inner, cart: Option<Cart>, applied: Applied| {
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
        if let Err(e) = state.applied.check_order(ops) {
            put_back(&mut inner, before, state.applied);
            return ApplyResult::OutOfOrder(e);
        }
        if let Some(expected) = if_match
            && expected != state.cart.version
        {
            let version = state.cart.version;
            put_back(&mut inner, before, state.applied);
            return ApplyResult::VersionMismatch(version);
        }
        let mut events = Vec::new();
        let outcomes: Vec<OpOutcome> = ops
            .iter()
            .map(|op| {
                let before = state.cart.clone();
                let outcome = state.apply_op(op, &rules.limits, now);
                if outcome == OpOutcome::Applied {
                    events.push(op_event(&op.kind, &before, &state.cart));
                }
                outcome
            })
            .collect();
        let any_applied = outcomes.contains(&OpOutcome::Applied);
        if exists || any_applied {
            put_back(&mut inner, Some(state.cart.clone()), state.applied);
            if any_applied {
                // The events and the write-behind entry, under the same lock as the change.
                let subject = subject_of(&key);
                if created {
                    inner.queues[Queue::Events as usize]
                        .push(with_id(event_fields(EventType::CartCreated.as_str(), &subject, id.user(), None, now)), now);
                }
                for e in &events {
                    inner.queues[Queue::Events as usize]
                        .push(with_id(event_fields(e.kind.as_str(), &subject, id.user(), Some(e), now)), now);
                }
                self.queued[Queue::Events as usize].notify_one();
                if let Some(u) = id.user() {
                    inner.queues[Queue::WriteBehind as usize].push(vec![("u".into(), u.as_str().to_owned())], now);
                    self.queued[Queue::WriteBehind as usize].notify_one();
                }
            }
        } else {
            // A cart that does not exist and applied nothing stays absent, op ids and all (as in
            // apply.lua, which writes nothing then).
            put_back(&mut inner, None, Applied::default());
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

    pub fn freeze_guest(&self, guest: &CartKey, user: &UserId, rules: &Rules, now: Timestamp) -> Result<Frozen, UserId> {
        let key = guest.tag();
        let expiry = rules.expiry(guest);
        let snapshot_expires = Timestamp::from_millis(now.millis() + expiry.cart_seconds.max(expiry.saved_seconds) * 1000);
        let mut inner = self.lock();
        let applied: Applied = inner.applied.get(&key).filter(|e| e.expires_at > now).map(|e| e.value.clone()).unwrap_or_default();
        if let Some(f) = inner.frozen.get(&key).filter(|e| e.expires_at > now) {
            if f.value.2 != *user {
                return Err(f.value.2.clone());
            }
            return Ok(Frozen {
                generation: f.value.0,
                cart: f.value.1.clone(),
                applied,
                code_rank: Vec::new(),
                subject: subject_of(&key),
            });
        }
        if let Some(owner) = inner.carts.get(&key).filter(|e| e.expires_at > now).and_then(|e| e.value.merged_into.clone())
            && owner != *user
        {
            return Err(owner);
        }
        let mut cart = take_live(&mut inner.carts, &key, now).unwrap_or_else(|| Cart::new(rules.currency));
        cart.touch(now, &expiry);
        let taken = cart.freeze(user, now);
        let mut frozen =
            Frozen { generation: 0, cart: Cart::new(rules.currency), applied, code_rank: Vec::new(), subject: subject_of(&key) };
        if !taken.is_empty() {
            let generation = take_live(&mut inner.generations, &key, now).unwrap_or(0) + 1;
            inner.generations.insert(key.clone(), Expiring { value: generation, expires_at: snapshot_expires });
            inner.frozen.insert(key.clone(), Expiring { value: (generation, taken.clone(), user.clone()), expires_at: snapshot_expires });
            frozen.generation = generation;
            frozen.cart = taken;
        }
        let expires_at = Timestamp::from_millis(now.millis() + Rules::key_ttl_ms(&expiry, &cart));
        inner.carts.insert(key, Expiring { value: cart, expires_at });
        Ok(frozen)
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
        let fresh = !applied.contains_id(op_id);
        if fresh {
            merge_ranked(&mut cart, &guest.cart, rules.merge, &rules.limits, now, &guest.code_rank);
            // The guest's op ids, its clients' marks, then the merge's own id (as merge.lua).
            applied.absorb(&guest.applied, now.millis());
            applied.push_id(op_id);
        }
        let expires_at = Timestamp::from_millis(now.millis() + Rules::key_ttl_ms(&expiry, &cart));
        inner.carts.insert(key.clone(), Expiring { value: cart.clone(), expires_at });
        inner.applied.insert(key.clone(), Expiring { value: applied, expires_at });
        // A login with an empty guest cart merges nothing: no event (as in `merge.lua`).
        if fresh && !guest.cart.is_empty() {
            let mut fields = merged_fields(&subject_of(&key), user.user(), &guest.cart, &cart, &guest.subject, now);
            inner.queues[Queue::Events as usize].push(with_id(std::mem::take(&mut fields)), now);
            self.queued[Queue::Events as usize].notify_one();
            if let Some(u) = user.user() {
                inner.queues[Queue::WriteBehind as usize].push(vec![("u".into(), u.as_str().to_owned())], now);
                self.queued[Queue::WriteBehind as usize].notify_one();
            }
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

    pub fn queue_fetch(&self, q: Queue, max: usize) -> Vec<QueueEntry> {
        let mut inner = self.lock();
        let queue = &mut inner.queues[q as usize];
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for o in queue.out.iter_mut().filter(|o| now.duration_since(o.handed_at) >= RETRY_AFTER).take(max) {
            o.deliveries += 1;
            o.handed_at = now;
            out.push(QueueEntry { id: EntryId { bucket: 0, id: o.id.to_string() }, deliveries: o.deliveries, fields: o.fields.clone() });
        }
        let n = max.saturating_sub(out.len()).min(queue.waiting.len());
        for (id, fields, at) in queue.waiting.drain(..n).collect::<Vec<_>>() {
            out.push(QueueEntry { id: EntryId { bucket: 0, id: id.to_string() }, deliveries: 1, fields: fields.clone() });
            queue.out.push(Out { id, fields, deliveries: 1, handed_at: now, at });
        }
        out
    }

    pub fn queue_ack(&self, q: Queue, ids: &[EntryId]) {
        let mut inner = self.lock();
        let queue = &mut inner.queues[q as usize];
        queue.out.retain(|o| !ids.iter().any(|i| i.id == o.id.to_string()));
        if q == Queue::Events {
            let first_open = queue.out.iter().map(|o| o.id).chain(queue.waiting.iter().map(|w| w.0)).min().unwrap_or(queue.next + 1);
            self.recorded.send_if_modified(|r| {
                let mark = first_open - 1;
                (mark > *r).then(|| *r = mark).is_some()
            });
        }
    }

    /// An event recorder runs: changes wait for their events to be recorded from now on.
    pub fn recorder_started(&self) {
        self.recorder.store(true, std::sync::atomic::Ordering::Release);
    }

    /// After a change: waits until the events it queued (entries past `before`) are recorded.
    pub async fn events_recorded(&self, before: u64) -> Result<(), super::StoreError> {
        let last = self.last_event();
        if last == before || self.wait_recorded(last, std::time::Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(super::StoreError::Unrecorded("the event recorder did not record them within 10 s".into()))
        }
    }

    /// The number of the last event entry queued so far.
    pub fn last_event(&self) -> u64 {
        self.lock().queues[Queue::Events as usize].next
    }

    /// Waits until every event entry up to `n` is recorded (when a recorder runs), at most
    /// `limit`. `false` when it was not in time.
    pub async fn wait_recorded(&self, n: u64, limit: std::time::Duration) -> bool {
        if !self.recorder.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        let mut rx = self.recorded.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r >= n)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn queue_backlog(&self, q: Queue, now: Timestamp) -> (u64, i64) {
        let inner = self.lock();
        let queue = &inner.queues[q as usize];
        let oldest = queue.out.iter().map(|o| o.at).chain(queue.waiting.iter().map(|w| w.2)).min();
        ((queue.out.len() + queue.waiting.len()) as u64, oldest.map_or(0, |t| now.millis() - t.millis()))
    }

    pub async fn queue_wait(&self, q: Queue) {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(250), self.queued[q as usize].notified()).await;
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

/// An event entry with an id of its own (`i`): in process, entries are numbered from 1 at every
/// start, so the number cannot name the event.
/// Gives an event entry its id: unique across restarts (the process's own prefix: when it
/// started, and a random part) and increasing in the order the events happened, within a process
/// and from one process to the next (the order of a cart's events and deliveries).
fn with_id(mut fields: Vec<(String, String)>) -> Vec<(String, String)> {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let process =
        PROCESS.get_or_init(|| format!("{:013}{}", crate::clock::now().millis().max(0), &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    fields.push(("i".into(), format!("m{process}-{n:016}")));
    fields
}

/// The `cart.merged` event of a merge into `merged` (`merge.lua` writes the same fields): `q`
/// the lines the guest cart brought, `x` the guest cart's subject.
pub(super) fn merged_fields(
    subject: &str,
    user: Option<&UserId>,
    guest: &Cart,
    merged: &Cart,
    guest_subject: &str,
    now: Timestamp,
) -> Vec<(String, String)> {
    let e = shared::events::OpEvent {
        kind: EventType::Merged,
        sku: None,
        quantity: guest.lines.len() as u32,
        extra: guest_subject.to_owned(),
        version: merged.version,
    };
    event_fields(EventType::Merged.as_str(), subject, user, Some(&e), now)
}
