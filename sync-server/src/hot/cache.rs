//! A server's copy of the carts it served last, so a write need not read the whole cart back
//! from Redis: the apply script tells which version and incarnation it started from, and when
//! that is the copy's, the server applies the applied ops to the copy with `shared` (which the
//! Lua equivalence test holds to the script) and has exactly the cart Redis now holds.
//!
//! A copy is only ever an exact image of one `(incarnation, version)` of a cart: put there from a
//! read of the cart's main hash (which holds its lines and meta, read in one command), or from
//! such an image with the script's applied ops. Carts with a saved list are not kept (the saved
//! list is another key, read by another command). Anything else — another server's write, a merge,
//! an expiry, a restore (a new incarnation) — shows as another starting point, and the server
//! reads the cart again.

use shared::Cart;
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// One cart as a server last saw it.
pub(super) struct Copy {
    pub incarnation: String,
    pub cart: Cart,
}

pub(super) struct CartCache {
    shards: Vec<Mutex<HashMap<String, Copy>>>,
    per_shard: usize,
}

impl CartCache {
    /// Keeps at most about `capacity` carts.
    pub fn new(capacity: usize) -> CartCache {
        CartCache { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), per_shard: (capacity / SHARDS).max(1) }
    }

    fn shard(&self, tag: &str) -> &Mutex<HashMap<String, Copy>> {
        // Tags are hashes already: their last byte spreads them well enough.
        let i = tag.as_bytes().last().map_or(0, |b| *b as usize) % SHARDS;
        &self.shards[i]
    }

    /// Takes the copy of a cart out (a concurrent request for the same cart then reads it from
    /// Redis, and whichever finishes last leaves its copy).
    pub fn take(&self, tag: &str) -> Option<Copy> {
        self.shard(tag).lock().unwrap_or_else(|e| e.into_inner()).remove(tag)
    }

    pub fn put(&self, tag: &str, copy: Copy) {
        if !copy.cart.saved.is_empty() || copy.incarnation.is_empty() {
            return;
        }
        let mut shard = self.shard(tag).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard
            && !shard.contains_key(tag)
            && let Some(evict) = shard.keys().next().cloned()
        {
            shard.remove(&evict);
        }
        shard.insert(tag.to_owned(), copy);
    }
}
