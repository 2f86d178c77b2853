//! The hot store: where every cart lives while it is in use.
//!
//! Two backends with one behaviour: Redis (one hash per cart, each write one Lua script call) and
//! an in-process store for the embedded default. The in-process store runs `shared`'s own
//! `apply`/`merge`; the Lua scripts mirror them, and a property test holds the two together.
//!
//! Both also hold the write-behind queue of user carts that the durable store has yet to see.

mod cache;
mod codec;
mod memory;
mod redis;

pub use self::codec::{cart_from_fields, line_fields};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

use crate::identity::CartKey;
use shared::{Cart, CartState, Currency, Expiry, Limits, MergePolicy, Op, OpOutcome, Timestamp, UserId};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
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
    /// `If-Match` named another version; nothing was applied.
    VersionMismatch(u64),
    /// A guest cart merged into a user's cart at login takes no more ops; `into` is that user
    /// (unknown only for a cart frozen before the user was recorded).
    Merged {
        into: Option<UserId>,
    },
}

pub enum MergeResult {
    /// `applied` is false when this merge op id had been applied before.
    Done {
        cart: Cart,
        applied: bool,
    },
    NeedsRestore,
}

/// A guest cart taken out of use for a merge: its lines under a merge generation (0 when it had
/// none), and the ids of the ops it applied, which the user's cart takes over.
pub struct Frozen {
    pub generation: u64,
    pub cart: Cart,
    pub applied: Vec<String>,
    /// How the merge ranks promo codes when the two carts hold more than five between them
    /// (`shared::merge_codes`); set by the merge protocol, empty otherwise.
    pub code_rank: Vec<shared::promo::PromoCode>,
}

/// One user cart the durable store must catch up with.
pub struct WriteBehindEntry {
    pub id: String,
    pub user: UserId,
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
            HotStore::Memory(m) => Ok(m.apply(id, ops, if_match, rules, now)),
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

    /// First half of a merge: takes the guest cart out of use for `user` by `shared`'s freeze
    /// rule ([`shared::Cart::freeze`]; `freeze.lua` in Redis).
    pub async fn freeze_guest(&self, guest: &CartKey, user: &UserId, rules: &Rules, now: Timestamp) -> Result<Frozen, StoreError> {
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
            HotStore::Memory(m) => Ok(m.merge_into(user, op_id, guest, rules, now)),
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

    /// Up to `max` queued user carts, starting with any fetched before but not acknowledged.
    pub async fn write_behind_fetch(&self, max: usize) -> Result<Vec<WriteBehindEntry>, StoreError> {
        match self {
            HotStore::Memory(m) => Ok(m.write_behind_fetch(max)),
            HotStore::Redis(r) => r.write_behind_fetch(max).await,
        }
    }

    pub async fn write_behind_ack(&self, ids: &[String]) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(m) => {
                m.write_behind_ack(ids);
                Ok(())
            }
            HotStore::Redis(r) => r.write_behind_ack(ids).await,
        }
    }

    /// Waits until something may be queued (or a short while passes).
    pub async fn write_behind_wait(&self) {
        match self {
            HotStore::Memory(m) => m.write_behind_wait().await,
            HotStore::Redis(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            HotStore::Memory(_) => Ok(()),
            HotStore::Redis(r) => r.ping().await,
        }
    }
}
