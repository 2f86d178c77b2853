//! The hot store: where every cart lives while it is in use.
//!
//! Two backends with one behaviour: Redis (one hash per cart, each write one Lua script call) and
//! an in-process store for the embedded default. The in-process store runs `shared`'s own
//! `apply`/`merge`; the Lua scripts mirror them, and a property test holds the two together.
//!
//! Both also hold two queues, filled in the same atomic step as the cart change they come from:
//! the events of every applied op, and the user carts the durable store has yet to see. Workers
//! read them with [`HotStore::queue_fetch`] and acknowledge what they acted on.

mod cache;
mod codec;
mod memory;
mod redis;

pub use self::codec::{cart_from_fields, line_fields};
pub use self::memory::MemoryStore;
pub use self::redis::{BUCKETS, Queue, RedisStore, Verdict, bucket_of};

use crate::identity::CartKey;
use shared::{Cart, CartState, Currency, Expiry, Limits, MergePolicy, Op, OpOutcome, Timestamp, UserId};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// In process: a change was made but its events could not be recorded in time.
    #[error("the events of a change could not be recorded: {0}")]
    Unrecorded(String),
    /// A Redis configured in a way carts cannot be kept in.
    #[error("{0}")]
    Config(String),
}

/// The cart rules of this deployment, as configured.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub limits: Limits,
    pub currency: Currency,
    pub guest: Expiry,
    pub user: Expiry,
    pub merge: MergePolicy,
}

impl Rules {
    pub fn expiry(&self, id: &CartKey) -> Expiry {
        if id.is_user() { self.user } else { self.guest }
    }

    /// How long a cart key lives untouched: its saved list may outlive its lines.
    pub fn key_ttl_ms(expiry: &Expiry, cart: &Cart) -> i64 {
        let secs = if cart.saved.is_empty() { expiry.cart_seconds } else { expiry.cart_seconds.max(expiry.saved_seconds) };
        secs.saturating_mul(1000)
    }
}

pub enum ApplyResult {
    Done {
        cart: Cart,
        outcomes: Vec<OpOutcome>,
    },
    /// A user cart absent from the hot store: restore it from the durable store, then retry.
    NeedsRestore,
    /// A user cart of another generation of the hot store's data than this instance's, at
    /// `version`, last checked in generation `checked` (0: never): an older one is compared with
    /// the durable copy ([`HotStore::verify`]); a newer one means another instance moved the
    /// generation on, which this one adopts ([`HotStore::catch_up`]). Then retry.
    NeedsVerify {
        version: u64,
        checked: u64,
    },
    /// `If-Match` named another version; nothing was applied.
    VersionMismatch(u64),
    /// A guest cart merged into a user's cart at login takes no more ops; `into` is that user
    /// (unknown only for a cart frozen before the user was recorded).
    Merged {
        into: Option<UserId>,
    },
    /// A client's op skips ahead of its high-water mark; nothing was applied.
    OutOfOrder(shared::OutOfOrder),
}

pub enum MergeResult {
    /// `applied` is false when this merge op id had been applied before.
    Done {
        cart: Cart,
        applied: bool,
    },
    NeedsRestore,
    /// See [`ApplyResult::NeedsVerify`].
    NeedsVerify {
        version: u64,
        checked: u64,
    },
}

/// A guest cart taken out of use for a merge: its lines under a merge generation (0 when it had
/// none), and the ids of the ops it applied, which the user's cart takes over.
pub struct Frozen {
    pub generation: u64,
    pub cart: Cart,
    pub applied: shared::Applied,
    /// How the merge ranks promo codes when the two carts hold more than five between them
    /// (`shared::merge_codes`); set by the merge protocol, empty otherwise.
    pub code_rank: Vec<shared::promo::PromoCode>,
    /// The guest cart's event subject (the `cart.merged` event names it).
    pub subject: String,
}

/// Where a queue entry is: its bucket (0 in process) and its id there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    pub bucket: u32,
    pub id: String,
}

/// An entry of one of the hot store's queues: its fields, and how often it was handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: EntryId,
    pub deliveries: u64,
    pub fields: Vec<(String, String)>,
}

impl QueueEntry {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The event subject of a cart: an opaque hash of its storage tag (never a guest token).
pub fn subject_of(tag: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("cartsync-subject:{tag}").as_bytes());
    hex::encode(&digest[..16])
}

/// The fields of an event entry, as the Lua scripts write them: `t` type, `j` subject, `u` user
/// (empty for a guest cart), `v` cart version, `s` SKU, `q` quantity, `x` extra, `m` time (ms).
pub fn event_fields(
    kind: &str,
    subject: &str,
    user: Option<&UserId>,
    e: Option<&shared::events::OpEvent>,
    now: Timestamp,
) -> Vec<(String, String)> {
    let (version, sku, q, x) = match e {
        Some(e) => {
            let sku = match e.kind {
                shared::events::EventType::Cleared
                | shared::events::EventType::PromoCodeApplied
                | shared::events::EventType::PromoCodeRemoved => "",
                _ => e.sku.as_ref().map_or("", |s| s.as_str()),
            };
            (e.version, sku.to_owned(), e.quantity, e.extra.clone())
        }
        None => (0, String::new(), 0, String::new()),
    };
    [
        ("t", kind.to_owned()),
        ("j", subject.to_owned()),
        ("u", user.map_or(String::new(), |u| u.as_str().to_owned())),
        ("v", version.to_string()),
        ("s", sku),
        ("q", q.to_string()),
        ("x", x),
        ("m", now.millis().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[derive(Clone)]
pub enum HotStore {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

impl HotStore {
    /// Renews the cart, checks `if_match`, and applies `ops` in order, each op id at most once.
    /// With no ops this is a read. User-cart changes are queued for the durable store.
    pub async fn apply(
        &self,
        id: &CartKey,
        ops: &[Op],
        if_match: Option<u64>,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<ApplyResult, StoreError> {
        match self {
            HotStore::Memory(m) => {
                let before = m.last_event();
                let result = m.apply(id, ops, if_match, rules, now);
                m.events_recorded(before).await?;
                Ok(result)
            }
            HotStore::Redis(r) => r.apply(id, ops, if_match, rules, now).await,
        }
    }

    /// Puts back a cart from the durable store unless it reappeared meanwhile.
    pub async fn restore(&self, id: &CartKey, state: &CartState, rules: &Rules, now: Timestamp) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(m) => {
                m.restore(id, state, rules, now);
                Ok(())
            }
            HotStore::Redis(r) => r.restore(id, state, rules, now).await,
        }
    }

    /// Whether the hot store holds `id`'s cart: a cart in use, since reads renew it here (and only
    /// here).
    pub async fn holds(&self, id: &CartKey, now: Timestamp) -> Result<bool, StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.holds(id, now)),
            HotStore::Redis(r) => r.holds(id).await,
        }
    }

    /// Adopts the stored generation when a cart was checked in one newer than this instance's;
    /// whether it did.
    pub async fn catch_up(&self, checked: u64) -> Result<bool, StoreError> {
        match self {
            HotStore::Memory(_) => Ok(false),
            HotStore::Redis(r) => {
                if checked <= r.generation() {
                    return Ok(false);
                }
                r.refresh_generation().await?;
                Ok(r.generation() >= checked)
            }
        }
    }

    /// Settles a user cart found under an older data generation (Redis only: the in-process
    /// store has one generation, its own life).
    pub async fn verify(&self, id: &CartKey, version: u64, verdict: Verdict) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(_) => Ok(()),
            HotStore::Redis(r) => r.verify(id, version, verdict).await,
        }
    }

    /// First half of a merge: takes the guest cart out of use for `user` by `shared`'s freeze
    /// rule ([`shared::Cart::freeze`]; `freeze.lua` in Redis).
    /// `Err(owner)` (inside) when the guest cart was merged, or is being merged, into another
    /// user's cart: a guest cart belongs to the first user who logs in with it.
    pub async fn freeze_guest(
        &self,
        guest: &CartKey,
        user: &UserId,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<Result<Frozen, UserId>, StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.freeze_guest(guest, user, rules, now)),
            HotStore::Redis(r) => r.freeze_guest(guest, user, rules, now).await,
        }
    }

    /// Second half of a merge: folds the frozen guest cart into the user's, once per `op_id`,
    /// and takes over the guest cart's applied op ids.
    pub async fn merge_into(
        &self,
        user: &CartKey,
        op_id: &str,
        guest: &Frozen,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<MergeResult, StoreError> {
        match self {
            HotStore::Memory(m) => {
                let before = m.last_event();
                let result = m.merge_into(user, op_id, guest, rules, now);
                m.events_recorded(before).await?;
                Ok(result)
            }
            HotStore::Redis(r) => r.merge_into(user, op_id, guest, rules, now).await,
        }
    }

    /// Drops the frozen snapshot once its merge is recorded in the user cart.
    pub async fn finish_merge(&self, guest: &CartKey) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(m) => {
                m.finish_merge(guest);
                Ok(())
            }
            HotStore::Redis(r) => r.finish_merge(guest).await,
        }
    }

    /// The cart and its applied op ids at one instant, for the durable store.
    pub async fn snapshot(&self, id: &CartKey, rules: &Rules) -> Result<Option<CartState>, StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.snapshot(id)),
            HotStore::Redis(r) => r.snapshot(id, rules).await,
        }
    }

    /// Up to `max` entries of a queue (per bucket in Redis): new ones, and ones handed out
    /// before that were not acknowledged (see [`RedisStore::queue_fetch`]).
    pub async fn queue_fetch(&self, q: Queue, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.queue_fetch(q, max)),
            HotStore::Redis(r) => r.queue_fetch(q, max).await,
        }
    }

    /// Acknowledges entries acted on (or set aside): they are gone from the queue.
    pub async fn queue_ack(&self, q: Queue, ids: &[EntryId]) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(m) => {
                m.queue_ack(q, ids);
                Ok(())
            }
            HotStore::Redis(r) => r.queue_ack(q, ids).await,
        }
    }

    /// How many entries wait in a queue, and how old the oldest is (ms).
    pub async fn queue_backlog(&self, q: Queue, now: Timestamp) -> Result<(u64, i64), StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.queue_backlog(q, now)),
            HotStore::Redis(r) => r.queue_backlog(q, now).await,
        }
    }

    /// An event recorder runs (in process, changes then wait for their events to be recorded).
    pub fn recorder_started(&self) {
        if let HotStore::Memory(m) = self {
            m.recorder_started();
        }
    }

    /// Waits until something may be queued (or a short while passes).
    pub async fn queue_wait(&self, q: Queue) {
        match self {
            HotStore::Memory(m) => m.queue_wait(q).await,
            HotStore::Redis(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }

    /// After a small batch: a pause in Redis mode, so that a steady trickle is read in rounds of
    /// some size rather than one round (a command per bucket) per entry or two. None in process,
    /// where changes wait for their events to be recorded.
    pub async fn queue_pace(&self) {
        if let HotStore::Redis(_) = self {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(_) => Ok(()),
            HotStore::Redis(r) => r.ping().await,
        }
    }
}
