//! Deterministic simulation of the offline-first client against the server's own cart service.
//!
//! Several devices (each with one or two tabs sharing a storage) edit carts through the client
//! engine while the network drops, delays, reorders and loses answers, devices go offline and
//! come back, and devices log in (two of them as the same user). The server is the sync server's
//! cart service (`sync_server::carts::Carts`: the op protocol, restore on miss, and the whole
//! login merge) over its in-process hot store, the code the HTTP routes call; its refusals reach
//! the client as the routes shape them, through the client's own reader of error answers. After
//! the network heals, every client must show exactly the server's cart, and every op must have
//! been applied at most once, and exactly once unless the server rejected it.
//!
//! `CARTSYNC_SIM_SEEDS=n` runs more seeds (default 1500); `CARTSYNC_SIM_SEED=s` replays one.

use cart_wasm::engine::{Engine, Failure, Identity, Push, failure_of};
use cart_wasm::storage::MemoryStorage;
use serde_json::Value;
use shared::wire::{self, CartView, MergeResponse, OpResult, OpsResponse, Owner};
use shared::{Cart, Currency, Expiry, Limits, MergePolicy, OpKind, Quantity, Sku, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use sync_server::carts::{Carts, CartsError};
use sync_server::durable::Durable;
use sync_server::error::ApiError;
use sync_server::hot::{HotStore, MemoryStore, Rules};
use sync_server::identity::{CartId, CartKey};

use cartsync_tests::Rng;

const LIMITS: Limits = Limits { max_line_quantity: 9, max_lines: 5 };
const SKUS: [&str; 7] = ["A", "B", "C", "D", "E", "F", "G"];

fn rules() -> Rules {
    let long = Expiry { cart_seconds: 86_400, saved_seconds: 86_400 };
    Rules { limits: LIMITS, currency: Currency::USD, guest: long, user: long, merge: MergePolicy::Sum }
}

/// The stores every seed's server shares: a runtime to drive the async service, and the durable
/// store user carts are restored from (empty: the simulation runs no write-behind).
struct World {
    rt: tokio::runtime::Runtime,
    durable: Durable,
    _dir: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("cartsync-sim-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let durable = rt.block_on(Durable::connect(&format!("sqlite://{}/sim.db", dir.display()))).unwrap();
        World { rt, durable, _dir: dir }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// The server: the cart service plus a record of every op outcome it reported.
struct Server<'w> {
    world: &'w World,
    carts: Carts,
    applied: BTreeMap<String, u32>,
    rejected: BTreeSet<String>,
    now: i64,
    stats: Stats,
}

/// How often the hard cases happened, summed over all seeds, to show the run exercised them.
#[derive(Default, Debug)]
struct Stats {
    duplicates: u64,
    lost: u64,
    merges: u64,
    refused_as_merged: u64,
}

fn key_of(identity: &Identity) -> CartKey {
    match identity {
        Identity::Guest { token } => CartId::Guest(shared::GuestToken::parse(token).unwrap()).key(),
        Identity::User { jwt } => CartId::User(shared::UserId::parse(jwt).unwrap()).key(),
    }
}

impl Server<'_> {
    fn tick(&mut self) -> Timestamp {
        self.now += 1;
        Timestamp::from_millis(1_800_000_000_000 + self.now)
    }

    fn record(&mut self, results: &[OpResult]) {
        for r in results {
            match r.status.as_str() {
                "applied" => *self.applied.entry(r.op_id.clone()).or_default() += 1,
                "rejected" => {
                    self.rejected.insert(r.op_id.clone());
                }
                _ => self.stats.duplicates += 1,
            }
        }
    }

    fn view(&self, key: &CartKey, cart: &Cart) -> CartView {
        CartView::new(
            cart,
            if key.is_user() { Owner::User } else { Owner::Guest },
            cart.accessed_at,
            |_| None,
            &shared::wire::Promos::none(),
        )
    }

    /// A refusal as the HTTP route answers it, read back by the client's own reader.
    fn refusal(e: CartsError) -> Failure {
        let e = ApiError::from(e);
        failure_of(e.status().as_u16(), &serde_json::to_string(&e.envelope()).unwrap())
    }

    /// `POST /v1/cart/ops`.
    fn push(&mut self, identity: &Identity, body: &Value) -> Result<OpsResponse, Failure> {
        let key = key_of(identity);
        let parsed = wire::parse_ops_request(body, &LIMITS).expect("the client sends well-formed batches");
        let now = self.tick();
        match self.world.rt.block_on(self.carts.apply_parsed(&key, &parsed, None, now)) {
            Ok((cart, results)) => {
                self.record(&results);
                Ok(OpsResponse { cart: self.view(&key, &cart), results })
            }
            Err(e @ CartsError::Merged { .. }) => {
                self.stats.refused_as_merged += 1;
                Err(Self::refusal(e))
            }
            Err(e) => panic!("the in-process store cannot fail: {e}"),
        }
    }

    /// `POST /v1/cart/merge`.
    fn merge(&mut self, user: &str, body: &Value) -> MergeResponse {
        let (token, parsed) = wire::parse_merge_request(body, &LIMITS).unwrap();
        let guest = CartId::Guest(token).key();
        let user = shared::UserId::parse(user).unwrap();
        let now = self.tick();
        let outcome = self.world.rt.block_on(self.carts.merge(&user, &guest, &parsed, now)).expect("a merge in process works");
        self.record(&outcome.results);
        self.stats.merges += u64::from(outcome.merged);
        MergeResponse { cart: self.view(&CartKey::for_user(&user), &outcome.cart), merged: outcome.merged }
    }

    /// `GET /v1/cart`.
    fn read(&mut self, identity: &Identity) -> CartView {
        let key = key_of(identity);
        let now = self.tick();
        let cart = self.world.rt.block_on(self.carts.read(&key, now)).expect("reads always work");
        self.view(&key, &cart)
    }
}

enum Message {
    PushRequest { tab: usize, push: Push },
    PushAnswer { tab: usize, push: Push, answer: Result<OpsResponse, Failure> },
    LoginRequest { tab: usize, user: String, body: Value, sent: Vec<String> },
    LoginAnswer { tab: usize, user: String, cart: CartView, sent: Vec<String> },
}

struct Tab {
    device: usize,
    engine: Engine,
    /// A push or a login of this tab that is under way.
    busy: bool,
}

fn random_op(rng: &mut Rng) -> OpKind {
    let sku = Sku::parse(SKUS[rng.below(SKUS.len() as u64) as usize]).unwrap();
    let q = Quantity::new(1 + rng.below(4) as i64, &LIMITS).unwrap();
    match rng.below(10) {
        0..=3 => OpKind::Add { sku, quantity: q, price_at_add: None },
        4 | 5 => OpKind::SetQuantity { sku, quantity: q },
        6 => OpKind::Remove { sku },
        7 => OpKind::SaveForLater { sku },
        8 => OpKind::MoveToCart { sku },
        _ => OpKind::Clear,
    }
}

/// `(sku, quantity)` of the cart's lines and of its saved list.
type Lists = (Vec<(String, u32)>, Vec<(String, u32)>);

fn lines(cart: &Cart) -> Lists {
    let f = |v: &[shared::CartLine]| v.iter().map(|l| (l.sku.as_str().to_owned(), l.quantity)).collect();
    (f(&cart.lines), f(&cart.saved))
}

fn run(world: &World, seed: u64, stats: &mut Stats) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut server = Server {
        world,
        carts: Carts::new(HotStore::Memory(Arc::new(MemoryStore::default())), world.durable.clone(), rules()),
        applied: BTreeMap::new(),
        rejected: BTreeSet::new(),
        now: 0,
        stats: Stats::default(),
    };
    // Devices 0 and 1 belong to one user; device 2 to another; device 3 stays a guest.
    let users = ["alice", "alice", "bob", ""];
    let devices = 2 + rng.below(3) as usize;
    let mut tabs: Vec<Tab> = Vec::new();
    for d in 0..devices {
        let storage = MemoryStorage::default();
        for _ in 0..(1 + rng.below(2)) {
            let mut r = Rng(rng.next_u64() | 1);
            let engine = Engine::new(Box::new(storage.clone()), "cart", LIMITS, Currency::USD, Box::new(move |b: &mut [u8]| r.fill(b)));
            tabs.push(Tab { device: d, engine, busy: false });
        }
    }
    let mut offline = vec![false; devices];
    let mut network: Vec<Message> = Vec::new();
    let mut created: BTreeSet<String> = BTreeSet::new();
    let steps = 150 + rng.below(150);
    let mut clock = 0i64;

    for step in 0..steps + 10_000 {
        let healing = step >= steps;
        if healing {
            offline.iter_mut().for_each(|o| *o = false);
            let idle = network.is_empty() && tabs.iter().all(|t| !t.busy && t.engine.state.pending.is_empty());
            if idle {
                break;
            }
        }
        clock += 1;
        let t = rng.below(tabs.len() as u64) as usize;
        // While healing, a tab whose guest cart was merged by a login whose answer it never
        // saw logs in again, as a storefront does when told `cart_merged`.
        let stuck = tabs[t].engine.state.last_error.as_ref().is_some_and(|e| e.is(shared::ErrorCode::CartMerged));
        let action = if healing && stuck && !tabs[t].busy {
            9
        } else if healing {
            3 + rng.below(3)
        } else {
            rng.below(10)
        };
        match action {
            // A shopper changes the cart.
            0..=2 => {
                let tab = &mut tabs[t];
                if tab.engine.mutate(random_op(&mut rng), Timestamp::from_millis(1_800_000_000_000 + clock)).is_ok() {
                    // A new op, or one the change was folded into: either way it must reach the server.
                    let op = tab.engine.state.pending.last().expect("a queued op");
                    created.insert(op.op.id.as_str().to_owned());
                }
            }
            // A tab starts a push.
            3 | 4 => {
                if !tabs[t].busy
                    && let Some(push) = tabs[t].engine.begin_push()
                {
                    if offline[tabs[t].device] {
                        tabs[t].engine.finish_push(&push, Err(Failure::Retry("offline".into())), clock, 0.5);
                    } else {
                        tabs[t].busy = true;
                        network.push(Message::PushRequest { tab: t, push });
                    }
                }
            }
            // The network delivers something (in any order), or loses it.
            5..=7 if !network.is_empty() => {
                let i = rng.below(network.len() as u64) as usize;
                let msg = network.swap_remove(i);
                let lose = !healing && rng.chance(15);
                server.stats.lost += u64::from(lose);
                match msg {
                    Message::PushRequest { tab, push } => {
                        if lose && rng.chance(50) {
                            // The request never arrived.
                            tabs[tab].engine.finish_push(&push, Err(Failure::Retry("lost".into())), clock, 0.5);
                            tabs[tab].busy = false;
                        } else {
                            let answer = server.push(&push.identity, &push.body);
                            network.push(Message::PushAnswer { tab, push, answer });
                        }
                    }
                    Message::PushAnswer { tab, push, answer } => {
                        if lose {
                            // Applied on the server, but the answer was lost: the client retries.
                            tabs[tab].engine.finish_push(&push, Err(Failure::Retry("timeout".into())), clock, 0.5);
                        } else {
                            tabs[tab].engine.finish_push(&push, answer, clock, 0.5);
                        }
                        tabs[tab].busy = false;
                    }
                    Message::LoginRequest { tab, user, body, sent } => {
                        if lose {
                            tabs[tab].busy = false;
                        } else {
                            let answer = server.merge(&user, &body);
                            network.push(Message::LoginAnswer { tab, user, cart: answer.cart, sent });
                        }
                    }
                    Message::LoginAnswer { tab, user, cart, sent } => {
                        if !lose {
                            tabs[tab].engine.finish_login(&user, &cart, &sent);
                        }
                        tabs[tab].busy = false;
                    }
                }
            }
            // A device drops off the network or comes back.
            8 => {
                let d = rng.below(devices as u64) as usize;
                offline[d] = !offline[d];
            }
            // A guest logs in, or a logged-in tab reads the server's cart.
            9 => {
                let user = users[tabs[t].device.min(3)];
                if tabs[t].busy || offline[tabs[t].device] {
                    continue;
                }
                match tabs[t].engine.login_request() {
                    Some((body, sent)) if !user.is_empty() && (stuck || rng.chance(30)) => {
                        tabs[t].busy = true;
                        network.push(Message::LoginRequest { tab: t, user: user.to_owned(), body, sent });
                    }
                    _ => {
                        let identity = tabs[t].engine.identity().clone();
                        let view = server.read(&identity);
                        tabs[t].engine.finish_pull(&identity, &view, true);
                    }
                }
            }
            _ => {}
        }
    }
    if !network.is_empty() || tabs.iter().any(|t| !t.engine.state.pending.is_empty()) {
        let stuck: Vec<String> = tabs
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.engine.state.pending.is_empty() || t.busy)
            .map(|(i, t)| {
                format!(
                    "tab {i}: {} pending, busy {}, {:?}, {:?}",
                    t.engine.state.pending.len(),
                    t.busy,
                    t.engine.identity(),
                    t.engine.state.last_error
                )
            })
            .collect();
        return Err(format!("the network never settled ({} messages in flight): {stuck:?}", network.len()));
    }

    // Every client now reads the server and must show exactly its cart.
    for (i, tab) in tabs.iter_mut().enumerate() {
        tab.engine.reload();
        let identity = tab.engine.identity().clone();
        let view = server.read(&identity);
        tab.engine.finish_pull(&identity, &view, true);
        let server_cart = cart_wasm::engine::cart_from_view(&view);
        if lines(&tab.engine.optimistic()) != lines(&server_cart) {
            return Err(format!(
                "tab {i} ({:?}, version {}) shows {:?} but the server has {:?} at version {}",
                identity,
                tab.engine.state.confirmed.version,
                lines(&tab.engine.optimistic()),
                lines(&server_cart),
                view.version
            ));
        }
        if tab.engine.snapshot(false, Timestamp::default()).version != view.version {
            return Err(format!(
                "tab {i} is at version {} but the server at {}",
                tab.engine.snapshot(false, Timestamp::default()).version,
                view.version
            ));
        }
    }
    for (id, n) in &server.applied {
        if *n > 1 {
            return Err(format!("op {id} was applied {n} times"));
        }
    }
    stats.duplicates += server.stats.duplicates;
    stats.lost += server.stats.lost;
    stats.merges += server.stats.merges;
    stats.refused_as_merged += server.stats.refused_as_merged;
    for id in &created {
        if !server.applied.contains_key(id) && !server.rejected.contains(id) {
            return Err(format!("op {id} was accepted by a client but never reached the server"));
        }
    }
    Ok(())
}

#[test]
fn clients_converge_and_apply_every_op_once_under_a_hostile_network() {
    let mut stats = Stats::default();
    let world = World::new();
    if let Some(seed) = std::env::var("CARTSYNC_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        run(&world, seed, &mut stats).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        return;
    }
    let seeds: u64 = std::env::var("CARTSYNC_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1500);
    for seed in 0..seeds {
        if let Err(e) = run(&world, seed, &mut stats) {
            panic!("seed {seed} failed: {e}\nreplay it with CARTSYNC_SIM_SEED={seed}");
        }
    }
    println!("{seeds} seeds: {stats:?}");
    // The run must have exercised what it claims to: resent ops, lost messages, merges, and
    // guest pushes refused after a merge in another tab.
    assert!(stats.duplicates > 0 && stats.lost > 0 && stats.merges > 0 && stats.refused_as_merged > 0, "{stats:?}");
}
