//! The Redis hot store. Every cart write is one `EVALSHA` of a script in `lua/` that touches only
//! the fields its ops change, pipelined with the `HGETALL`s that read the cart back, in one round
//! trip; a read is the `HGETALL`s and the TTL renewals, pipelined, with no script at all.
//!
//! Carts are spread over [`BUCKETS`] buckets, each a hash tag (`{b17}`): every key of a cart, and
//! its bucket's two streams (events, and user carts for the write-behind worker), live in one
//! slot, so the script that changes a cart also records its events and queues it for the durable
//! store in the same atomic step, on a single node and on a Redis Cluster alike. The workers read
//! the streams bucket by bucket through consumer groups.

use super::cache::{CartCache, Copy};
use super::codec::{cart_from_fields, cart_of, cart_parts, expired_unnoticed, line_fields};
use super::{ApplyResult, EntryId, Frozen, MergeResult, QueueEntry, Rules, StoreError};
use crate::identity::CartKey;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use shared::{Cart, CartError, ErrorCode};
use shared::{CartState, Op, OpKind, OpOutcome, Timestamp, UserId};
use std::sync::Arc;
use std::time::Duration;

const COMMON: &str = include_str!("lua/common.lua");
const OPS: &str = include_str!("lua/ops.lua");

/// The scripts of one generation of the data (see [`Scripts::new`]).
struct Scripts {
    generation: u64,
    apply: Script,
    restore: Script,
    freeze: Script,
    merge: Script,
    snapshot: Script,
    verify: Script,
}

impl Scripts {
    /// Every script begins with `local GEN = '<generation>'`: the generation is part of each
    /// script's SHA, so an instance still on an older generation finds its scripts missing
    /// (`NOSCRIPT`) and learns that the data may have gone back in time (see
    /// [`RedisStore::renew_generation`]).
    fn new(prefix: &str, generation: u64) -> Scripts {
        // The key prefix is in the header too: deployments sharing a Redis never share scripts,
        // so one cannot load the other's and hide a restart from it.
        let head = format!("local GEN = '{generation}' -- {}\n", prefix.replace('\n', " "));
        let with_common = |body: &str| Script::new(&format!("{head}{COMMON}\n{body}"));
        Scripts {
            generation,
            // The hot path stands alone (the prelude's helpers would only cost it time) but for
            // the op-id helpers.
            apply: Script::new(&format!("{head}{OPS}\n{}", include_str!("lua/apply.lua"))),
            restore: with_common(include_str!("lua/restore.lua")),
            freeze: with_common(include_str!("lua/freeze.lua")),
            merge: with_common(&format!("{OPS}\n{}", include_str!("lua/merge.lua"))),
            snapshot: with_common(include_str!("lua/snapshot.lua")),
            verify: Script::new(&format!("{head}{}", include_str!("lua/verify.lua"))),
        }
    }
}

/// Moves the data's generation past every one it has seen: `max(stored, the caller's) + 1`.
const ADVANCE: &str = "local g = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1])) + 1
redis.call('SET', KEYS[1], string.format('%d', g))
return g";

/// What [`RedisStore::verify`] should do with a user cart written under an older generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The durable store has nothing newer: the cart is current; mark it so.
    Current,
    /// The durable store is newer: drop the cart, to be restored from it.
    Stale,
}

/// A single node or a cluster, behind one connection type.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// The queue workers' connection (see [`RedisStore::connect`]).
    queues: Conn,
    prefix: String,
    consumer: String,
    /// The scripts of the data's generation as this instance knows it (see [`Scripts::new`]).
    scripts: Arc<std::sync::RwLock<Arc<Scripts>>>,
    /// Held while the generation is renewed, so a burst of `NOSCRIPT`s advances it once.
    renewing: Arc<tokio::sync::Mutex<()>>,
    /// The carts this instance served last, so a write need not read them back.
    cache: Arc<CartCache>,
    /// When this instance last looked for entries to retry or take over, per queue.
    last_claim: Arc<std::sync::Mutex<[std::time::Instant; 2]>>,
    claim_idle_ms: u64,
}

/// How many buckets carts are spread over (a fixed number: changing it would move every cart).
pub const BUCKETS: u32 = 128;

/// The bucket of a cart's storage tag (FNV-1a).
pub fn bucket_of(tag: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in tag.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS
}

/// The two streams of each bucket, each read by its own consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// User carts to copy to the durable store (`u`: the user).
    WriteBehind,
    /// Cart events to record in the durable store.
    Events,
}

impl Queue {
    /// Its name in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Queue::WriteBehind => "write_behind",
            Queue::Events => "events",
        }
    }

    const fn suffix(self) -> &'static str {
        match self {
            Queue::WriteBehind => "wb",
            Queue::Events => "events",
        }
    }

    const fn group(self) -> &'static str {
        match self {
            Queue::WriteBehind => "durable-writers",
            Queue::Events => "event-recorders",
        }
    }
}

/// An own entry that failed is handed out again after this long.
const RETRY_IDLE_MS: u64 = 2_000;
/// How many carts an instance keeps a copy of.
const CACHED_CARTS: usize = 100_000;
/// Entries a crashed instance fetched but never acknowledged are taken over after this long
/// (by default; see [`RedisStore::with_claim_idle`]).
const CLAIM_IDLE_MS: u64 = 30_000;

impl RedisStore {
    /// Connects to one node, or to a cluster when several URLs are given or the one node reports
    /// that it is part of a cluster.
    pub async fn connect(urls: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        let conn = open(&urls).await?;
        check_eviction(&conn).await?;
        // The queue workers' reads (128 buckets a round, large replies) go over a connection of
        // their own, so no cart write queues behind them on the multiplexed one.
        let queues = open(&urls).await?;
        let store = RedisStore {
            conn,
            queues,
            prefix: prefix.to_owned(),
            consumer: uuid::Uuid::new_v4().to_string(),
            cache: Arc::new(CartCache::new(CACHED_CARTS)),
            last_claim: Arc::new(std::sync::Mutex::new([std::time::Instant::now(); 2])),
            claim_idle_ms: CLAIM_IDLE_MS,
            scripts: Arc::new(std::sync::RwLock::new(Arc::new(Scripts::new(prefix, 0)))),
            renewing: Arc::new(tokio::sync::Mutex::new(())),
        };
        store.refresh_generation().await?;
        for q in [Queue::WriteBehind, Queue::Events] {
            store.ensure_groups(q).await?;
        }
        Ok(store)
    }

    /// Takes over another instance's unacknowledged write-behind entries once they have been
    /// idle this long.
    pub fn with_claim_idle(mut self, ms: u64) -> Self {
        self.claim_idle_ms = ms.max(1);
        self
    }

    fn key(&self, id: &CartKey, suffix: &str) -> String {
        format!("{}:{{b{}}}:cart:{}{suffix}", self.prefix, bucket_of(&id.tag), id.tag)
    }

    /// The three keys of a cart: main (lines and meta), saved, op ids (see `lua/common.lua`).
    fn keys(&self, id: &CartKey) -> [String; 3] {
        let main = self.key(id, "");
        let (saved, ops) = (format!("{main}:s"), format!("{main}:o"));
        [main, saved, ops]
    }

    /// A cart's keys and its bucket's two streams: the keys of the apply and merge scripts.
    fn script_keys(&self, id: &CartKey) -> [String; 5] {
        let [main, saved, ops] = self.keys(id);
        let b = bucket_of(&id.tag);
        [main, saved, ops, self.stream(Queue::Events, b), self.stream(Queue::WriteBehind, b)]
    }

    fn stream(&self, q: Queue, bucket: u32) -> String {
        format!("{}:{{b{bucket}}}:{}", self.prefix, q.suffix())
    }

    async fn ensure_group(&self, q: Queue, bucket: u32) -> Result<(), StoreError> {
        let mut c = self.queues.clone();
        let r: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(q, bucket))
            .arg(q.group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(StoreError::from),
        }
    }

    async fn ensure_groups(&self, q: Queue) -> Result<(), StoreError> {
        let all = futures::future::join_all((0..BUCKETS).map(|b| self.ensure_group(q, b))).await;
        all.into_iter().collect()
    }

    /// The scripts of the generation this instance is on.
    fn scripts(&self) -> Arc<Scripts> {
        self.scripts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The generation this instance is on.
    pub fn generation(&self) -> u64 {
        self.scripts().generation
    }

    fn adopt(&self, generation: u64) {
        let mut held = self.scripts.write().unwrap_or_else(|e| e.into_inner());
        if held.generation < generation {
            tracing::info!(generation, "the hot store's data generation moved on");
            *held = Arc::new(Scripts::new(&self.prefix, generation));
        }
    }

    /// Adopts the data's generation when another instance moved it on (run every second), and
    /// at connect.
    pub async fn refresh_generation(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let stored: Option<u64> = redis::cmd("GET").arg(self.generation_key()).query_async(&mut c).await?;
        self.adopt(stored.unwrap_or(0));
        Ok(())
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    /// A script of ours was missing: Redis restarted, failed over or flushed its scripts, and its
    /// data may be older than what this instance (or the durable store) saw, so every user cart
    /// written before is suspect. The generation moves past every one seen (never to a stored
    /// one, which may be as old as the data), so each user cart is checked against the durable
    /// store at its next use ([`RedisStore::verify`]).
    async fn renew_generation(&self, failed: u64) -> Result<(), StoreError> {
        let _one = self.renewing.lock().await;
        if self.generation() != failed {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let next: u64 = Script::new(ADVANCE).key(self.generation_key()).arg(failed).invoke_async(&mut c).await?;
        // Every script of the new generation is loaded now, so a missing one later means Redis
        // lost them again (never a script this generation had not loaded yet). No other code
        // path loads a generation's scripts: an instance that adopts a stored generation cannot
        // load the scripts of data that came back old.
        let scripts = Scripts::new(&self.prefix, next);
        for script in [&scripts.apply, &scripts.restore, &scripts.freeze, &scripts.merge, &scripts.snapshot, &scripts.verify] {
            script.load_async(&mut c).await?;
        }
        tracing::warn!(
            generation = next,
            "Redis lost this server's scripts (a restart or failover); user carts are checked against the durable store at their next use"
        );
        crate::metrics::event("cartsync_hot_store_generations_total", "advanced");
        self.adopt(next);
        Ok(())
    }

    /// Runs a script call built by `build` from the current scripts, pipelined with `extra`
    /// commands. When Redis lost the script, the generation is renewed and the call is built and
    /// sent again with the new generation's script.
    async fn run_script(
        &self,
        which: fn(&Scripts) -> &Script,
        build: &(dyn Fn(&Script) -> Cmd + Sync),
        extra: &(dyn Fn(&mut Pipeline) + Sync),
    ) -> Result<Vec<Value>, StoreError> {
        let mut c = self.conn.clone();
        let scripts = self.scripts();
        let mut pipe = redis::pipe();
        pipe.add_command(build(which(&scripts)));
        extra(&mut pipe);
        match pipe.query_async::<Vec<Value>>(&mut c).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.renew_generation(scripts.generation).await?;
                let scripts = self.scripts();
                let mut pipe = redis::pipe();
                pipe.add_command(build(which(&scripts)));
                extra(&mut pipe);
                Ok(pipe.query_async::<Vec<Value>>(&mut c).await?)
            }
            other => Ok(other?),
        }
    }

    /// Sends a script call pipelined with the reads of the cart's two hashes.
    async fn with_cart(
        &self,
        which: fn(&Scripts) -> &Script,
        build: &(dyn Fn(&Script) -> Cmd + Sync),
        keys: &[String],
        read_back: bool,
    ) -> Result<[Value; 3], StoreError> {
        let replies = self
            .run_script(which, build, &|pipe| {
                if read_back {
                    pipe.cmd("HGETALL").arg(&keys[0]).cmd("HGETALL").arg(&keys[1]);
                }
            })
            .await?;
        let mut replies = replies.into_iter();
        let reply = replies.next().ok_or_else(|| StoreError::Corrupt("no reply to a cart script".into()))?;
        Ok([reply, replies.next().unwrap_or(Value::Nil), replies.next().unwrap_or(Value::Nil)])
    }

    /// Reads a cart's two hashes (after a write whose result could not be had otherwise).
    async fn read_back(&self, keys: &[String; 3]) -> Result<(Value, Value), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&keys[0]).cmd("HGETALL").arg(&keys[1]);
        let mut c = self.conn.clone();
        let (main, saved): (Value, Value) = pipe.query_async(&mut c).await?;
        Ok((main, saved))
    }

    /// Decodes a cart read back, and keeps a copy of it.
    fn decoded(&self, id: &CartKey, main: &Value, saved: &Value, rules: &Rules, now: Timestamp) -> Result<Cart, StoreError> {
        let (cart, meta) = cart_of(main, saved, rules.currency, now)?;
        if meta.exists {
            self.cache.put(&id.tag, Copy { incarnation: meta.incarnation, cart: cart.clone() });
        }
        Ok(cart)
    }

    /// `EVALSHA` of `script` on a cart's keys (and `extra` keys) with `args`.
    fn script_cmd(script: &Script, keys: &[String], args: impl FnOnce(&mut Cmd)) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
        args(&mut cmd);
        cmd
    }

    /// Runs a script that returns a value of its own (no cart read).
    async fn invoke(&self, which: fn(&Scripts) -> &Script, build: &(dyn Fn(&Script) -> Cmd + Sync)) -> Result<Value, StoreError> {
        let replies = self.run_script(which, build, &|_| {}).await?;
        replies.into_iter().next().ok_or_else(|| StoreError::Corrupt("no reply to a script".into()))
    }

    /// Settles a user cart written under an older generation (at `version` when it was found):
    /// marks it current, or drops it to be restored from the durable store. Nothing happens if
    /// the cart changed or was settled meanwhile.
    pub async fn verify(&self, id: &CartKey, version: u64, verdict: Verdict) -> Result<(), StoreError> {
        let keys = self.keys(id);
        let mode = match verdict {
            Verdict::Current => "stamp",
            Verdict::Stale => "drop",
        };
        let outcome = self
            .invoke(|s| &s.verify, &|script| {
                Self::script_cmd(script, &keys, |c| {
                    c.arg(version).arg(mode);
                })
            })
            .await?;
        tracing::debug!(?verdict, outcome = ?outcome, "verified a user cart of an older generation");
        if verdict == Verdict::Stale {
            self.cache.take(&id.tag);
        }
        Ok(())
    }

    /// A read without a script: the two hashes and the TTL renewals in one round trip (two for a
    /// cart with a saved list). `None` when it takes a write after all: lists that expired while
    /// the cart lived on (their going is a change, which the apply script records).
    async fn read(&self, id: &CartKey, keys: &[String; 3], rules: &Rules, now: Timestamp) -> Result<Option<ApplyResult>, StoreError> {
        let expiry = rules.expiry(id);
        let (cart_ttl, saved_ttl) = (expiry.cart_seconds * 1000, expiry.saved_seconds * 1000);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(&keys[0])
            .cmd("HGETALL")
            .arg(&keys[1])
            // Renewals: never below the cart's expiry (a saved list may keep them longer).
            .cmd("PEXPIRE")
            .arg(&keys[0])
            .arg(cart_ttl)
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&keys[2])
            .arg(cart_ttl)
            .arg("GT")
            .ignore();
        let mut c = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut c).await?;
        let [main, saved] = <[Value; 2]>::try_from(replies).map_err(|_| StoreError::Corrupt("unexpected reply to a cart read".into()))?;
        let (cart, meta) = cart_of(&main, &saved, rules.currency, now)?;
        if meta.exists && !expired_unnoticed(&cart, &meta, cart_ttl, now) {
            self.cache.put(&id.tag, Copy { incarnation: meta.incarnation.clone(), cart: cart.clone() });
        }
        if !meta.exists {
            return Ok(Some(if id.is_user() { ApplyResult::NeedsRestore } else { ApplyResult::Done { cart, outcomes: Vec::new() } }));
        }
        if id.is_user() {
            let checked = meta.generation.parse().unwrap_or(0);
            if checked != self.generation() {
                return Ok(Some(ApplyResult::NeedsVerify { version: cart.version, checked }));
            }
        }
        if expired_unnoticed(&cart, &meta, cart_ttl, now) {
            return Ok(None);
        }
        if meta.saved > 0 {
            // A saved list keeps the cart alive as long as itself, and its lines expire by the
            // data from then on: the access is recorded.
            let long = cart_ttl.max(saved_ttl);
            let mut pipe = redis::pipe();
            pipe.cmd("HSET").arg(&keys[0]).arg("#a").arg(now.millis()).ignore();
            for (key, ttl) in [(&keys[0], long), (&keys[2], long), (&keys[1], saved_ttl)] {
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).arg("GT").ignore();
            }
            pipe.query_async::<()>(&mut c).await?;
        }
        Ok(Some(ApplyResult::Done { cart, outcomes: Vec::new() }))
    }

    pub async fn apply(
        &self,
        id: &CartKey,
        ops: &[Op],
        if_match: Option<u64>,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<ApplyResult, StoreError> {
        let keys = self.script_keys(id);
        let cart_keys = [keys[0].clone(), keys[1].clone(), keys[2].clone()];
        if ops.is_empty()
            && if_match.is_none()
            && let Some(read) = self.read(id, &cart_keys, rules, now).await?
        {
            return Ok(read);
        }
        let build = |script: &Script| {
            Self::script_cmd(script, &keys, |c| {
                rule_args(c, id, rules, now);
                c.arg(if id.is_user() { "1" } else { "0" });
                match if_match {
                    Some(v) => c.arg(v),
                    None => c.arg(""),
                };
                c.arg(super::subject_of(&id.tag)).arg(id.user().map_or("", |u| u.as_str()));
                for op in ops {
                    match op.id.client() {
                        Some(from) => c.arg(format!("{}#{}#{}", op.id.as_str(), from.client, from.seq)),
                        None => c.arg(op.id.as_str()),
                    };
                    c.arg(op.kind.type_name()).arg(op.kind.sku().map_or("", |s| s.as_str()));
                    match &op.kind {
                        OpKind::Add { quantity, .. } | OpKind::SetQuantity { quantity, .. } | OpKind::Deduct { quantity, .. } => {
                            c.arg(quantity.get())
                        }
                        // A promo-code op's code travels in the quantity's place.
                        OpKind::ApplyPromoCode { code } | OpKind::RemovePromoCode { code } => c.arg(code.as_str()),
                        _ => c.arg(0),
                    };
                    match &op.kind {
                        OpKind::Add { price_at_add: Some(p), .. } => c.arg(format!("{}|{}", p.amount(), p.currency())),
                        _ => c.arg(""),
                    };
                }
            })
        };
        let copy = self.cache.take(&id.tag);
        let [reply, main, saved] = self.with_cart(|s| &s.apply, &build, &keys, copy.is_none()).await?;
        let reply = strings_or_arrays(reply)?;
        match reply.first().map(|v| v.as_str()) {
            Some("restore") => Ok(ApplyResult::NeedsRestore),
            Some("verify") => Ok(ApplyResult::NeedsVerify {
                version: reply.get(1).map_or(0, |v| v.int().max(0) as u64),
                checked: reply.get(2).map_or(0, |v| v.int().max(0) as u64),
            }),
            Some("merged") => Ok(ApplyResult::Merged { into: reply.get(1).and_then(|u| UserId::parse(u.as_str()).ok()) }),
            Some("mismatch") => Ok(ApplyResult::VersionMismatch(reply.get(1).map(|v| v.int()).unwrap_or(0) as u64)),
            Some("out_of_order") if reply.len() == 4 => Ok(ApplyResult::OutOfOrder(shared::OutOfOrder {
                client: reply[1].as_str().to_owned(),
                expected: reply[2].int().max(0) as u64,
                got: reply[3].int().max(0) as u64,
            })),
            Some("ok") if reply.len() == 5 => {
                let outcomes: Vec<OpOutcome> = reply[1].list().iter().map(|r| parse_outcome(r.as_str())).collect::<Result<_, _>>()?;
                let (version, before, incarnation) = (reply[2].int().max(0) as u64, reply[3].int(), reply[4].as_str());
                let cart = match copy {
                    None => self.decoded(id, &main, &saved, rules, now)?,
                    // The copy is the cart the script started from: the same ops make the same cart.
                    Some(Copy { incarnation: had, cart: mut copy })
                        if had == incarnation && i64::try_from(copy.version).is_ok_and(|v| v == before) =>
                    {
                        for (op, outcome) in ops.iter().zip(&outcomes) {
                            if *outcome == OpOutcome::Applied {
                                let _ = copy.apply(&op.kind, &rules.limits, now);
                            }
                        }
                        copy.accessed_at = now;
                        if copy.version == version {
                            self.cache.put(&id.tag, Copy { incarnation: had, cart: copy.clone() });
                            copy
                        } else {
                            tracing::warn!(version, local = copy.version, "a cart copy disagreed with the script; reading it back");
                            let (main, saved) = self.read_back(&cart_keys).await?;
                            self.decoded(id, &main, &saved, rules, now)?
                        }
                    }
                    Some(_) => {
                        let (main, saved) = self.read_back(&cart_keys).await?;
                        self.decoded(id, &main, &saved, rules, now)?
                    }
                };
                // A new cart whose ops were all refused is not stored: it is still the empty cart.
                let mut cart = cart;
                cart.version = cart.version.max(version);
                Ok(ApplyResult::Done { cart, outcomes })
            }
            _ => Err(StoreError::Corrupt("unexpected reply from apply.lua".into())),
        }
    }

    pub async fn restore(&self, id: &CartKey, state: &CartState, rules: &Rules, now: Timestamp) -> Result<(), StoreError> {
        let expiry = rules.expiry(id);
        let (main, saved) = cart_parts(&state.cart);
        let build = |script: &Script| {
            Self::script_cmd(script, &self.keys(id), |c| {
                c.arg(now.millis())
                    .arg(expiry.cart_seconds * 1000)
                    .arg(expiry.saved_seconds * 1000)
                    .arg(main.len())
                    .arg(saved.len())
                    .arg(&main)
                    .arg(&saved)
                    .arg(super::codec::applied_fields(&state.applied));
            })
        };
        self.invoke(|s| &s.restore, &build).await?;
        Ok(())
    }

    pub async fn freeze_guest(
        &self,
        guest: &CartKey,
        user: &UserId,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<Result<Frozen, UserId>, StoreError> {
        let expiry = rules.expiry(guest);
        let snapshot_ttl = expiry.cart_seconds.max(expiry.saved_seconds) * 1000;
        let [main, saved, ops] = self.keys(guest);
        let keys = [main, saved, ops, self.key(guest, ":frozen"), self.key(guest, ":generation")];
        let build = |script: &Script| {
            Self::script_cmd(script, &keys, |c| {
                c.arg(now.millis())
                    .arg(expiry.cart_seconds * 1000)
                    .arg(expiry.saved_seconds * 1000)
                    .arg(snapshot_ttl)
                    .arg(rules.currency.as_str())
                    .arg(user.as_str());
            })
        };
        let reply = strings_or_arrays(self.invoke(|s| &s.freeze, &build).await?)?;
        if reply.len() != 3 {
            return Err(StoreError::Corrupt("unexpected reply from freeze.lua".into()));
        }
        if reply[0].int() == -1 {
            let owner =
                UserId::parse(reply[1].as_str()).map_err(|_| StoreError::Corrupt("the user a guest cart was merged into".into()))?;
            return Ok(Err(owner));
        }
        let generation = reply[0].int().max(0) as u64;
        let cart = if generation == 0 { Cart::new(rules.currency) } else { cart_from_fields(&reply[1].strings(), rules.currency, now)? };
        let applied =
            super::codec::applied_of(&Value::Array(reply[2].strings().into_iter().map(|s| Value::BulkString(s.into_bytes())).collect()))?;
        Ok(Ok(Frozen { generation, cart, applied, code_rank: Vec::new(), subject: super::subject_of(&guest.tag) }))
    }

    pub async fn merge_into(
        &self,
        user: &CartKey,
        op_id: &str,
        guest: &Frozen,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<MergeResult, StoreError> {
        let mut fields = line_fields(&guest.cart);
        if !guest.code_rank.is_empty() {
            // The ranking comes first, so it is known when the codes are merged.
            let rank = guest.code_rank.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",");
            fields.splice(0..0, ["r".to_owned(), rank]);
        }
        let keys = self.script_keys(user);
        let build = |script: &Script| {
            Self::script_cmd(script, &keys, |c| {
                rule_args(c, user, rules, now);
                c.arg(op_id).arg(rules.merge.as_str());
                c.arg(super::subject_of(&user.tag)).arg(user.user().map_or("", |u| u.as_str())).arg(&guest.subject);
                c.arg(fields.len()).arg(&fields);
                for (_, id) in guest.applied.recent() {
                    c.arg(id);
                }
                for (client, m) in guest.applied.clients() {
                    c.arg(format!("#{client}|{}", m.seq));
                }
            })
        };
        let [reply, main, saved] = self.with_cart(|s| &s.merge, &build, &keys, true).await?;
        let reply = strings_or_arrays(reply)?;
        match reply.first().map(|v| v.as_str()) {
            Some("restore") => Ok(MergeResult::NeedsRestore),
            Some("verify") => Ok(MergeResult::NeedsVerify {
                version: reply.get(1).map_or(0, |v| v.int().max(0) as u64),
                checked: reply.get(2).map_or(0, |v| v.int().max(0) as u64),
            }),
            Some(status @ ("applied" | "duplicate")) => {
                let (cart, _) = cart_of(&main, &saved, rules.currency, now)?;
                Ok(MergeResult::Done { cart, applied: status == "applied" })
            }
            _ => Err(StoreError::Corrupt("unexpected reply from merge.lua".into())),
        }
    }

    /// Whether Redis holds `id`'s cart (its TTL renewed by every read and write).
    pub async fn holds(&self, id: &CartKey) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("EXISTS").arg(self.key(id, "")).query_async::<u64>(&mut c).await? == 1)
    }

    pub async fn finish_merge(&self, guest: &CartKey) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("DEL").arg(self.key(guest, ":frozen")).query_async::<()>(&mut c).await?;
        Ok(())
    }

    pub async fn snapshot(&self, id: &CartKey, rules: &Rules) -> Result<Option<CartState>, StoreError> {
        let build = |script: &Script| Self::script_cmd(script, &self.keys(id), |_| {});
        let reply = match self.invoke(|s| &s.snapshot, &build).await? {
            Value::Array(parts) if parts.len() == 3 => parts,
            _ => return Ok(None),
        };
        let (cart, _) = cart_of(&reply[0], &reply[1], rules.currency, crate::clock::now())?;
        let applied = super::codec::applied_of(&reply[2])?;
        Ok(Some(CartState { cart, applied }))
    }

    /// Up to `max` entries of a queue per bucket: the new ones of every bucket, and, every
    /// second or so, those handed out before and never acknowledged: this instance's own after
    /// [`RETRY_IDLE_MS`] (a failed write is retried), any instance's after the claim time (a
    /// stopped instance's are taken over). Each comes with how often it was handed out, so a
    /// worker can set aside an entry that keeps failing.
    pub async fn queue_fetch(&self, q: Queue, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let mut out = Vec::new();
        if let Conn::Single(_) = self.queues {
            // One node holds every bucket: one command reads them all.
            let all: Vec<u32> = (0..BUCKETS).collect();
            out = self.read_new(q, &all, max).await?;
        } else {
            // A cluster spreads the buckets over slots: one command per bucket.
            let reads = futures::future::join_all((0..BUCKETS).map(|b| async move { self.read_new(q, &[b], max).await })).await;
            for r in reads {
                out.extend(r?);
            }
        }
        let due = {
            let mut last = self.last_claim.lock().unwrap_or_else(|e| e.into_inner());
            let slot = &mut last[q as usize];
            let due = slot.elapsed() >= Duration::from_millis(RETRY_IDLE_MS.min(self.claim_idle_ms).max(200) / 2);
            if due {
                *slot = std::time::Instant::now();
            }
            due
        };
        if due {
            let claims = futures::future::join_all((0..BUCKETS).map(|b| self.claim_stale(q, b, max))).await;
            for r in claims {
                out.extend(r?);
            }
        }
        Ok(out)
    }

    /// New entries of the given buckets' streams, in one `XREADGROUP` (on a cluster, each call
    /// names one bucket: the streams live in different slots).
    async fn read_new(&self, q: Queue, buckets: &[u32], max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let keys: Vec<String> = buckets.iter().map(|b| self.stream(q, *b)).collect();
        let read = || async {
            let mut c = self.queues.clone();
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(q.group()).arg(&self.consumer).arg("COUNT").arg(max).arg("STREAMS").arg(&keys);
            for _ in buckets {
                cmd.arg(">");
            }
            cmd.query_async::<Value>(&mut c).await
        };
        let reply = match read().await {
            // Redis lost a stream and its group (a restart without persistence, a flush):
            // recreate them; whatever was queued before is gone with the carts themselves.
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(queue = q.suffix(), "a consumer group was missing; recreating it");
                futures::future::join_all(buckets.iter().map(|b| self.ensure_group(q, *b))).await.into_iter().collect::<Result<(), _>>()?;
                read().await?
            }
            other => other?,
        };
        let streams: Vec<(&Value, &Value)> = match &reply {
            Value::Array(streams) => streams
                .iter()
                .filter_map(|s| match s {
                    Value::Array(kv) if kv.len() == 2 => Some((&kv[0], &kv[1])),
                    _ => None,
                })
                .collect(),
            Value::Map(streams) => streams.iter().map(|(k, v)| (k, v)).collect(),
            _ => Vec::new(),
        };
        Ok(streams
            .into_iter()
            .flat_map(|(name, entries)| {
                let bucket = bulk(name).and_then(|n| bucket_of_stream(&n));
                bucket.map(|b| entries_of(entries, b, 1)).unwrap_or_default()
            })
            .collect())
    }

    /// Entries handed out and not acknowledged: this instance's own idle for [`RETRY_IDLE_MS`],
    /// any instance's idle for the claim time; claimed for this instance, with their delivery
    /// counts.
    async fn claim_stale(&self, q: Queue, bucket: u32, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let key = self.stream(q, bucket);
        let mut c = self.queues.clone();
        let mut due: Vec<(String, u64)> = Vec::new();
        for (idle, consumer) in [(RETRY_IDLE_MS.min(self.claim_idle_ms), Some(self.consumer.as_str())), (self.claim_idle_ms, None)] {
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&key).arg(q.group()).arg("IDLE").arg(idle).arg("-").arg("+").arg(max);
            if let Some(me) = consumer {
                cmd.arg(me);
            }
            let reply: Value = match cmd.query_async(&mut c).await {
                Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
                other => other?,
            };
            if let Value::Array(items) = reply {
                for item in items {
                    if let Value::Array(f) = item
                        && let (Some(id), Some(Value::Int(n))) = (f.first().and_then(bulk), f.get(3))
                        && !due.iter().any(|(d, _)| *d == id)
                    {
                        due.push((id, u64::try_from(*n).unwrap_or(0) + 1));
                    }
                }
            }
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&key).arg(q.group()).arg(&self.consumer).arg(RETRY_IDLE_MS.min(self.claim_idle_ms));
        for (id, _) in &due {
            cmd.arg(id);
        }
        let reply: Value = cmd.query_async(&mut c).await?;
        let mut entries = entries_of(&reply, bucket, 1);
        for e in &mut entries {
            e.deliveries = due.iter().find(|(id, _)| *id == e.id.id).map_or(1, |d| d.1);
        }
        Ok(entries)
    }

    /// Acknowledges and deletes entries of a queue: they were acted on, or set aside.
    pub async fn queue_ack(&self, q: Queue, ids: &[EntryId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut by_bucket: std::collections::BTreeMap<u32, Vec<&str>> = std::collections::BTreeMap::new();
        for id in ids {
            by_bucket.entry(id.bucket).or_default().push(id.id.as_str());
        }
        let single = matches!(self.queues, Conn::Single(_));
        let mut pipe = redis::pipe();
        for (bucket, ids) in by_bucket {
            let key = self.stream(q, bucket);
            pipe.cmd("XACK").arg(&key).arg(q.group()).arg(&ids).ignore().cmd("XDEL").arg(&key).arg(&ids).ignore();
            if !single {
                // On a cluster, one pipeline per slot.
                pipe.query_async::<()>(&mut self.queues.clone()).await?;
                pipe = redis::pipe();
            }
        }
        if single {
            pipe.query_async::<()>(&mut self.queues.clone()).await?;
        }
        Ok(())
    }

    /// How many entries of a queue wait, and how old the oldest is (ms), over every bucket.
    pub async fn queue_backlog(&self, q: Queue, now: Timestamp) -> Result<(u64, i64), StoreError> {
        let infos = futures::future::join_all((0..BUCKETS).map(|b| async move {
            let mut c = self.queues.clone();
            let mut pipe = redis::pipe();
            pipe.cmd("XLEN").arg(self.stream(q, b)).cmd("XRANGE").arg(self.stream(q, b)).arg("-").arg("+").arg("COUNT").arg(1);
            pipe.query_async::<(u64, Value)>(&mut c).await
        }))
        .await;
        let (mut n, mut oldest) = (0u64, 0i64);
        for r in infos {
            let (len, first) = r?;
            n += len;
            if let Some(e) = entries_of(&first, 0, 1).first()
                && let Some(ms) = e.id.id.split('-').next().and_then(|m| m.parse::<i64>().ok())
            {
                oldest = oldest.max(now.millis() - ms);
            }
        }
        Ok((n, oldest))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok(())
    }
}

/// The first six arguments of the apply and merge scripts: now, the limits, the expiries, the
/// currency of a new cart.
fn rule_args(c: &mut Cmd, id: &CartKey, rules: &Rules, now: Timestamp) {
    let expiry = rules.expiry(id);
    c.arg(now.millis())
        .arg(rules.limits.max_line_quantity)
        .arg(rules.limits.max_lines)
        .arg(expiry.cart_seconds * 1000)
        .arg(expiry.saved_seconds * 1000)
        .arg(rules.currency.as_str());
}

/// Refuses a Redis that may evict keys: a cart's hash, its op-id set and its merge flag are
/// separate keys with TTLs, and an eviction policy (even `volatile-*`) could drop one without the
/// others (an op answered `duplicate` though its change is gone). Only `noeviction` is safe: a
/// full Redis then refuses writes (`503`) instead of forgetting them. A Redis that does not allow
/// `CONFIG GET` (some managed services) is used with a warning.
async fn check_eviction(conn: &Conn) -> Result<(), StoreError> {
    fn strings(v: &redis::Value, out: &mut Vec<String>) {
        match v {
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => out.push(s.clone()),
            redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|i| strings(i, out)),
            redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                strings(k, out);
                strings(v, out);
            }),
            _ => {}
        }
    }
    let mut c = conn.clone();
    match redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async::<redis::Value>(&mut c).await {
        Ok(reply) => {
            let mut found = Vec::new();
            strings(&reply, &mut found);
            if let Some(policy) = found.iter().find(|s| *s != "maxmemory-policy" && *s != "noeviction") {
                return Err(StoreError::Config(format!(
                    "Redis evicts keys (maxmemory-policy {policy}); carts need maxmemory-policy noeviction"
                )));
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read Redis's maxmemory-policy; it must be noeviction");
            Ok(())
        }
    }
}

/// One multiplexed connection: to the node, or to the cluster it belongs to.
async fn open(urls: &[&str]) -> Result<Conn, StoreError> {
    if urls.len() > 1 {
        return Ok(connect_cluster(urls).await?);
    }
    let client = redis::Client::open(*urls.first().unwrap_or(&""))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut single = client.get_connection_manager_with_config(config).await?;
    let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut single).await?;
    Ok(if info.contains("cluster_enabled:1") { connect_cluster(urls).await? } else { Conn::Single(single) })
}

async fn connect_cluster(urls: &[&str]) -> Result<Conn, redis::RedisError> {
    let client = redis::cluster::ClusterClient::new(urls.to_vec())?;
    Ok(Conn::Cluster(client.get_async_connection().await?))
}

fn parse_outcome(s: &str) -> Result<OpOutcome, StoreError> {
    match s {
        "a" => Ok(OpOutcome::Applied),
        "d" => Ok(OpOutcome::Duplicate),
        _ => {
            let mut parts = s.splitn(3, '|');
            let (_, code, message) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let code = ErrorCode::parse(code).ok_or_else(|| StoreError::Corrupt(format!("op result {s:?}")))?;
            Ok(OpOutcome::Rejected(CartError::new(code, message)))
        }
    }
}

/// A loosely typed script reply.
enum Reply {
    Str(String),
    Int(i64),
    List(Vec<Reply>),
}

impl Reply {
    fn as_str(&self) -> &str {
        match self {
            Reply::Str(s) => s,
            _ => "",
        }
    }

    fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            Reply::Str(s) => s.parse().unwrap_or(0),
            Reply::List(_) => 0,
        }
    }

    fn list(&self) -> &[Reply] {
        match self {
            Reply::List(l) => l,
            _ => &[],
        }
    }

    fn strings(&self) -> Vec<String> {
        self.list()
            .iter()
            .map(|r| match r {
                Reply::Str(s) => s.clone(),
                Reply::Int(i) => i.to_string(),
                Reply::List(_) => String::new(),
            })
            .collect()
    }
}

fn to_reply(v: Value) -> Reply {
    match v {
        Value::BulkString(b) => Reply::Str(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Reply::Str(s),
        Value::Okay => Reply::Str("OK".into()),
        Value::Int(i) => Reply::Int(i),
        Value::Array(items) | Value::Set(items) => Reply::List(items.into_iter().map(to_reply).collect()),
        _ => Reply::List(Vec::new()),
    }
}

fn strings_or_arrays(v: Value) -> Result<Vec<Reply>, StoreError> {
    match to_reply(v) {
        Reply::List(l) => Ok(l),
        _ => Err(StoreError::Corrupt("a script returned a scalar".into())),
    }
}

fn bulk(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[id, [field, value, ...]], ...]` → queue entries of `bucket`.
/// The bucket a stream key names (`…:{b<N>}:…`).
fn bucket_of_stream(key: &str) -> Option<u32> {
    let start = key.find(":{b")? + 3;
    let end = start + key[start..].find('}')?;
    key[start..end].parse().ok()
}

fn entries_of(v: &Value, bucket: u32, deliveries: u64) -> Vec<QueueEntry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = bulk(pair.first()?)?;
            let fields = match pair.get(1) {
                Some(Value::Array(fields)) => fields.chunks_exact(2).filter_map(|kv| Some((bulk(&kv[0])?, bulk(&kv[1])?))).collect(),
                // An entry deleted while it was pending comes back without fields.
                _ => Vec::new(),
            };
            Some(QueueEntry { id: EntryId { bucket, id }, deliveries, fields })
        })
        .collect()
}
