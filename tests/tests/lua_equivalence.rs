//! The Lua scripts and `shared` compute the same carts. Random op batches (with repeated op ids,
//! full carts, clamped quantities, moves between the lists, a paid order's deductions), freezes
//! and merges run through the Redis store and through the in-process store, which applies
//! `shared` directly; every cart, version, sequence number and op outcome must match. The freeze
//! of a guest cart is also checked against `shared::Cart::freeze` itself. Both stores also
//! record the same events (type, cart, version, SKU, quantity, detail, time), in the same order
//! per cart.

use proptest::prelude::*;
use shared::promo::PromoCode;
use shared::{ClientSeq, Currency, Expiry, Limits, MergePolicy, Money, Op, OpId, OpKind, OpOutcome, Quantity, Sku, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use sync_server::hot::{ApplyResult, HotStore, MemoryStore, MergeResult, Queue, RedisStore, Rules};
use sync_server::identity::{CartId, CartKey};

const SKUS: [&str; 5] = ["A", "B", "C", "D", "E"];

fn rules(policy: MergePolicy) -> Rules {
    let long = Expiry { cart_seconds: 86_400, saved_seconds: 86_400 * 3 };
    Rules { limits: Limits { max_line_quantity: 6, max_lines: 3 }, currency: Currency::USD, guest: long, user: long, merge: policy }
}

fn op_kind() -> impl Strategy<Value = OpKind> {
    let l = Limits { max_line_quantity: 6, max_lines: 3 };
    let sku = prop::sample::select(&SKUS[..]).prop_map(|s| Sku::parse(s).unwrap());
    let qty = (1i64..=6).prop_map(move |q| Quantity::new(q, &l).unwrap());
    let qty = qty.boxed();
    let cur = prop_oneof![4 => Just(Currency::USD), 1 => Just(Currency::parse("EUR").unwrap())];
    let price = prop::option::of((0i64..100_000, cur).prop_map(|(a, c)| Money::new(a, c).unwrap()));
    prop_oneof![
        5 => (sku.clone(), qty.clone(), price).prop_map(|(sku, quantity, price_at_add)| OpKind::Add { sku, quantity, price_at_add }),
        2 => (sku.clone(), qty.clone()).prop_map(|(sku, quantity)| OpKind::SetQuantity { sku, quantity }),
        1 => sku.clone().prop_map(|sku| OpKind::Remove { sku }),
        2 => sku.clone().prop_map(|sku| OpKind::SaveForLater { sku }),
        2 => sku.clone().prop_map(|sku| OpKind::MoveToCart { sku }),
        1 => sku.clone().prop_map(|sku| OpKind::RemoveSaved { sku }),
        1 => Just(OpKind::Clear),
        2 => (sku, qty).prop_map(|(sku, quantity)| OpKind::Deduct { sku, quantity }),
        2 => code().prop_map(|code| OpKind::ApplyPromoCode { code }),
        1 => code().prop_map(|code| OpKind::RemovePromoCode { code }),
    ]
}

/// Seven codes, so a cart's limit of five is reached.
fn code() -> impl Strategy<Value = PromoCode> {
    prop::sample::select(&["P1", "p2", "P3", "P4", "P5", "P6", "P7"][..]).prop_map(|c| PromoCode::parse(c).unwrap())
}

/// Batches of ops whose ids are drawn from a small pool, so replays happen often.
fn batches() -> impl Strategy<Value = Vec<Vec<(u8, OpKind)>>> {
    prop::collection::vec(prop::collection::vec((0u8..24, op_kind()), 0..6), 1..8)
}

/// Ops with ids from a small pool (replays are common), some with none (a REST call's, which
/// no cart records), and some numbered by one of two clients with seqs 1 to 4, so that their
/// ops come in order, as duplicates, or skipping ahead.
fn ops_of(batch: &[(u8, OpKind)]) -> Vec<Op> {
    batch
        .iter()
        .map(|(id, kind)| Op {
            id: match *id {
                0..4 => OpId::untracked(),
                4..16 => OpId::parse(&format!("op-{id}")).unwrap(),
                n => {
                    let (client, seq) = (format!("c{}", (n - 16) / 4), u64::from((n - 16) % 4 + 1));
                    OpId::parse(&format!("op-{id}")).unwrap().with_client(ClientSeq::parse(&client, seq).unwrap())
                }
            },
            kind: kind.clone(),
        })
        .collect()
}

struct Pair {
    redis: HotStore,
    /// A second server on the same Redis keys, with a cart cache of its own.
    other: HotStore,
    memory: HotStore,
    rt: tokio::runtime::Runtime,
}

fn pair() -> Pair {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = cartsync_tests::redis().url.clone();
    let prefix = format!("eq{}", uuid::Uuid::new_v4().simple());
    let redis = rt.block_on(RedisStore::connect(&url, &prefix)).unwrap();
    let other = rt.block_on(RedisStore::connect(&url, &prefix)).unwrap();
    Pair { redis: HotStore::Redis(redis), other: HotStore::Redis(other), memory: HotStore::Memory(Arc::new(MemoryStore::default())), rt }
}

/// Every event a store has queued, per cart subject in the order they were queued, without the
/// in-process store's own entry id (`i`); the entries are taken off the queue.
fn events_of(p: &Pair, store: &HotStore) -> BTreeMap<String, Vec<Vec<(String, String)>>> {
    let mut by_subject: BTreeMap<String, Vec<Vec<(String, String)>>> = BTreeMap::new();
    loop {
        let got = p.rt.block_on(store.queue_fetch(Queue::Events, 1000)).unwrap();
        if got.is_empty() {
            return by_subject;
        }
        let ids: Vec<_> = got.iter().map(|e| e.id.clone()).collect();
        p.rt.block_on(store.queue_ack(Queue::Events, &ids)).unwrap();
        for e in got {
            let subject = e.field("j").unwrap().to_owned();
            by_subject.entry(subject).or_default().push(e.fields.into_iter().filter(|(k, _)| k != "i").collect());
        }
    }
}

fn same_events(p: &Pair) -> Result<(), TestCaseError> {
    let (r, m) = (events_of(p, &p.redis), events_of(p, &p.memory));
    prop_assert_eq!(r, m);
    Ok(())
}

fn same_outcomes(a: &[OpOutcome], b: &[OpOutcome]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (OpOutcome::Rejected(e1), OpOutcome::Rejected(e2)) => e1 == e2,
            _ => x == y,
        })
}

fn apply_both(p: &Pair, id: &CartKey, ops: &[Op], rules: &Rules, now: Timestamp) -> Result<(), TestCaseError> {
    let r = p.rt.block_on(p.redis.apply(id, ops, None, rules, now)).unwrap();
    let m = p.rt.block_on(p.memory.apply(id, ops, None, rules, now)).unwrap();
    match (r, m) {
        (ApplyResult::Done { cart: rc, outcomes: ro }, ApplyResult::Done { cart: mc, outcomes: mo }) => {
            prop_assert_eq!(rc, mc);
            prop_assert!(same_outcomes(&ro, &mo), "outcomes differ: {:?} vs {:?}", ro, mo);
        }
        (ApplyResult::NeedsRestore, ApplyResult::NeedsRestore) => {}
        (ApplyResult::OutOfOrder(a), ApplyResult::OutOfOrder(b)) => prop_assert_eq!(a, b),
        _ => prop_assert!(false, "the stores disagree on the kind of result"),
    }
    // What each remembers of the ops: the same op ids at the same positions, the same marks.
    let rs = p.rt.block_on(p.redis.snapshot(id, rules)).unwrap().map(|s| s.applied);
    let ms = p.rt.block_on(p.memory.snapshot(id, rules)).unwrap().map(|s| s.applied);
    prop_assert_eq!(rs.unwrap_or_default(), ms.unwrap_or_default());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn lua_apply_matches_shared(batches in batches(), gaps in prop::collection::vec(0i64..5_000, 8)) {
        let p = pair();
        let rules = rules(MergePolicy::Sum);
        let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
        let mut now = 1_800_000_000_000i64;
        for (batch, gap) in batches.iter().zip(gaps.iter().cycle()) {
            now += gap;
            apply_both(&p, &id, &ops_of(batch), &rules, Timestamp::from_millis(now))?;
        }
        same_events(&p)?;
    }

    /// Two servers writing one cart in turn, each keeping its own copy of the carts it served
    /// (so each write may start from a copy the other server made stale), still compute
    /// exactly shared's carts.
    #[test]
    fn two_servers_writing_one_cart_agree_with_shared(batches in batches(), turns in prop::collection::vec(any::<bool>(), 8)) {
        let p = pair();
        let rules = rules(MergePolicy::Sum);
        let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
        let now = Timestamp::from_millis(1_800_000_000_000);
        for (batch, second) in batches.iter().zip(turns.iter().cycle()) {
            let store = if *second { &p.other } else { &p.redis };
            let ops = ops_of(batch);
            let r = p.rt.block_on(store.apply(&id, &ops, None, &rules, now)).unwrap();
            let m = p.rt.block_on(p.memory.apply(&id, &ops, None, &rules, now)).unwrap();
            match (r, m) {
                (ApplyResult::Done { cart: rc, outcomes: ro }, ApplyResult::Done { cart: mc, outcomes: mo }) => {
                    prop_assert_eq!(rc, mc);
                    prop_assert!(same_outcomes(&ro, &mo), "outcomes differ: {:?} vs {:?}", ro, mo);
                }
                (ApplyResult::OutOfOrder(a), ApplyResult::OutOfOrder(b)) => prop_assert_eq!(a, b),
                _ => prop_assert!(false, "the stores disagree on the kind of result"),
            }
        }
    }

    #[test]
    fn lua_merge_matches_shared(
        guest_ops in batches(),
        user_ops in batches(),
        policy in prop_oneof![Just(MergePolicy::Sum), Just(MergePolicy::Max), Just(MergePolicy::KeepUser)],
        rank in prop::collection::vec(code(), 0..8),
    ) {
        let p = pair();
        let rules = rules(policy);
        let guest = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
        let user = CartId::User(shared::UserId::parse(&format!("u-{}", uuid::Uuid::new_v4())).unwrap()).key();
        let now = Timestamp::from_millis(1_800_000_000_000);
        for store in [&p.redis, &p.memory] {
            p.rt.block_on(store.restore(&user, &shared::CartState::new(shared::Cart::new(Currency::USD)), &rules, now)).unwrap();
        }
        for b in &guest_ops {
            apply_both(&p, &guest, &ops_of(b), &rules, now)?;
        }
        for b in &user_ops {
            apply_both(&p, &user, &ops_of(b), &rules, now)?;
        }
        let later = Timestamp::from_millis(now.millis() + 10);
        let user_id = user.user().unwrap().clone();
        let mut rf = p.rt.block_on(p.redis.freeze_guest(&guest, &user_id, &rules, later)).unwrap().unwrap();
        let mut mf = p.rt.block_on(p.memory.freeze_guest(&guest, &user_id, &rules, later)).unwrap().unwrap();
        prop_assert_eq!((rf.generation, &rf.cart), (mf.generation, &mf.cart));
        // A ranking of codes (with repeats and codes neither cart has), for carts past five.
        rf.code_rank = rank.clone();
        mf.code_rank = rank;
        prop_assert_eq!(&rf.applied, &mf.applied);
        for attempt in 0..2 {
            let r = p.rt.block_on(p.redis.merge_into(&user, "merge-1", &rf, &rules, later)).unwrap();
            let m = p.rt.block_on(p.memory.merge_into(&user, "merge-1", &mf, &rules, later)).unwrap();
            match (r, m) {
                (MergeResult::Done { cart: rc, applied: ra }, MergeResult::Done { cart: mc, applied: ma }) => {
                    prop_assert_eq!(rc, mc);
                    prop_assert_eq!(ra, ma);
                    prop_assert_eq!(ra, attempt == 0, "a merge op id applies once");
                }
                _ => prop_assert!(false, "the stores disagree on the merge result"),
            }
        }
        // The guest cart is merged: reads still work (and agree), writes are refused.
        apply_both(&p, &guest, &[], &rules, later)?;
        for store in [&p.redis, &p.memory] {
            let refused = p.rt.block_on(store.apply(&guest, &ops_of(&[(99, OpKind::Clear)]), None, &rules, later)).unwrap();
            let into = match refused {
                ApplyResult::Merged { into } => into,
                _ => None,
            };
            prop_assert_eq!(into.as_ref(), Some(&user_id), "refused as merged into the user");
        }
        // The user cart took over the guest's op ids: sending a guest op again as the user is a duplicate.
        // So is a numbering client's op at or below the mark the guest cart had for it.
        let mut again: Vec<Op> = rf.applied.recent().take(1).map(|(_, id)| Op { id: OpId::parse(id).unwrap(), kind: OpKind::Clear }).collect();
        again.extend(rf.applied.clients().take(1).map(|(client, m)| Op {
            id: OpId::parse("again").unwrap().with_client(ClientSeq::parse(client, m.seq).unwrap()),
            kind: OpKind::Clear,
        }));
        for op in &again {
            for store in [&p.redis, &p.memory] {
                let r = p.rt.block_on(store.apply(&user, std::slice::from_ref(op), None, &rules, later)).unwrap();
                let ApplyResult::Done { outcomes, .. } = r else { panic!("a user cart applies") };
                prop_assert_eq!(&outcomes[0], &OpOutcome::Duplicate);
            }
        }
        let rs = p.rt.block_on(p.redis.snapshot(&user, &rules)).unwrap().map(|s| s.applied);
        let ms = p.rt.block_on(p.memory.snapshot(&user, &rules)).unwrap().map(|s| s.applied);
        prop_assert_eq!(rs, ms);
        same_events(&p)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// `freeze.lua` is `shared::Cart::freeze`: the same snapshot taken, the same guest cart left
    /// behind (emptied, its version one up if it held anything, marked merged into the user), and
    /// a second freeze for another user changes nothing and keeps the first user.
    #[test]
    fn lua_freeze_is_shareds_freeze(batches in batches(), idle in 0i64..5_000) {
        let p = pair();
        let rules = rules(MergePolicy::Sum);
        let guest = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
        let t0 = 1_800_000_000_000i64;
        for b in &batches {
            apply_both(&p, &guest, &ops_of(b), &rules, Timestamp::from_millis(t0))?;
        }
        let ApplyResult::Done { cart: mut reference, .. } = p.rt.block_on(p.memory.apply(&guest, &[], None, &rules, Timestamp::from_millis(t0))).unwrap() else {
            panic!("a guest cart reads");
        };
        let at = Timestamp::from_millis(t0 + idle);
        let alice = shared::UserId::parse("alice").unwrap();
        reference.touch(at, &rules.guest);
        let taken = reference.freeze(&alice, at);
        let frozen = p.rt.block_on(p.redis.freeze_guest(&guest, &alice, &rules, at)).unwrap().unwrap();
        if taken.is_empty() {
            prop_assert_eq!(frozen.generation, 0);
            prop_assert!(frozen.cart.is_empty());
        } else {
            prop_assert_eq!(&frozen.cart, &taken, "the snapshot is what shared takes");
        }
        p.rt.block_on(p.redis.finish_merge(&guest)).unwrap();
        let bob = shared::UserId::parse("bob").unwrap();
        // The guest cart is alice's now: bob is refused, and shared's freeze gives him nothing.
        let again = p.rt.block_on(p.redis.freeze_guest(&guest, &bob, &rules, at)).unwrap();
        let second = reference.freeze(&bob, at);
        prop_assert!(matches!(&again, Err(owner) if *owner == alice) && second.is_empty());
        let ApplyResult::Done { cart: left, .. } = p.rt.block_on(p.redis.apply(&guest, &[], None, &rules, at)).unwrap() else {
            panic!("a frozen guest cart still reads");
        };
        reference.touch(at, &rules.guest);
        prop_assert_eq!(&left, &reference, "the guest cart left behind is shared's");
        prop_assert_eq!(left.merged_into.as_ref(), Some(&alice));
    }
}

/// Expiry is Redis's own (key TTLs), so this runs in real time: lines idle past a one-second
/// expiry are gone while a longer-lived saved list stays, and their going is one change, as
/// `shared::Cart::touch` has it; a write after that works on what is left. Freezing such a cart
/// takes only the saved list.
/// Past a thousand op ids the oldest are forgotten, in Lua as in `shared`, at the same positions.
#[test]
fn the_op_id_window_moves_alike_in_lua_and_shared() {
    let p = pair();
    let rules = rules(MergePolicy::Sum);
    let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
    let now = Timestamp::from_millis(1_800_000_000_000);
    let add = |i: usize| Op {
        id: OpId::parse(&format!("w-{i}")).unwrap(),
        kind: OpKind::Add { sku: Sku::parse("A").unwrap(), quantity: Quantity::new(1, &Limits::default()).unwrap(), price_at_add: None },
    };
    let total = shared::RECENT_OPS + 150;
    for chunk in (0..total).collect::<Vec<_>>().chunks(400) {
        let ops: Vec<Op> = chunk.iter().map(|i| add(*i)).collect();
        apply_both(&p, &id, &ops, &rules, now).unwrap();
    }
    let kept = p.rt.block_on(p.redis.snapshot(&id, &rules)).unwrap().unwrap().applied;
    assert_eq!(kept.recent().count(), shared::RECENT_OPS);
    assert_eq!(kept.recent().next(), Some((150, "w-150")));
    // The forgotten are applied again; the kept are duplicates.
    for (i, want) in [(150, OpOutcome::Duplicate), (total - 1, OpOutcome::Duplicate), (149, OpOutcome::Applied)] {
        for store in [&p.redis, &p.memory] {
            let ApplyResult::Done { outcomes, .. } = p.rt.block_on(store.apply(&id, &[add(i)], None, &rules, now)).unwrap() else {
                panic!("applies")
            };
            assert_eq!(outcomes[0], want, "w-{i}");
        }
    }
    apply_both(&p, &id, &[], &rules, now).unwrap();
}

#[test]
fn lua_expiry_drops_lines_but_keeps_a_longer_lived_saved_list_like_shared() {
    let p = pair();
    let mut rules = rules(MergePolicy::Sum);
    rules.guest = Expiry { cart_seconds: 1, saved_seconds: 60 };
    let l = rules.limits;
    let add = |s: &str, i: u8| Op {
        id: OpId::parse(&format!("x{i}")).unwrap(),
        kind: OpKind::Add { sku: Sku::parse(s).unwrap(), quantity: Quantity::new(1, &l).unwrap(), price_at_add: None },
    };
    let save = Op { id: OpId::parse("s").unwrap(), kind: OpKind::SaveForLater { sku: Sku::parse("B").unwrap() } };
    for freeze in [false, true] {
        let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
        apply_both(&p, &id, &[add("A", 1), add("B", 2), save.clone()], &rules, sync_server::clock::now()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1_300));
        let now = sync_server::clock::now();
        if freeze {
            let alice = shared::UserId::parse("alice").unwrap();
            let rf = p.rt.block_on(p.redis.freeze_guest(&id, &alice, &rules, now)).unwrap().unwrap();
            let mf = p.rt.block_on(p.memory.freeze_guest(&id, &alice, &rules, now)).unwrap().unwrap();
            assert_eq!((rf.generation, &rf.cart), (mf.generation, &mf.cart));
            assert!(rf.cart.lines.is_empty() && rf.cart.saved.len() == 1, "only the saved list was left to take");
            continue;
        }
        apply_both(&p, &id, &[], &rules, now).unwrap();
        let after = p.rt.block_on(p.redis.apply(&id, &[], None, &rules, now)).unwrap();
        let ApplyResult::Done { cart, .. } = after else { panic!("a guest cart reads") };
        assert!(cart.lines.is_empty(), "lines idle past their expiry are gone");
        assert_eq!(cart.saved.len(), 1, "the saved list lives longer");
        assert_eq!(cart.version, 4, "three changes and one expiry");
        apply_both(&p, &id, &[add("C", 3)], &rules, now).unwrap();
    }
    // Without a saved list the whole cart goes: a new one starts empty, in both stores.
    let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
    apply_both(&p, &id, &[add("A", 5)], &rules, sync_server::clock::now()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_300));
    apply_both(&p, &id, &[], &rules, sync_server::clock::now()).unwrap();
    let ApplyResult::Done { cart, .. } = p.rt.block_on(p.redis.apply(&id, &[], None, &rules, sync_server::clock::now())).unwrap() else {
        panic!("a guest cart reads")
    };
    assert_eq!((cart.version, cart.lines.len()), (0, 0), "gone whole");
}

/// A copy another server made stale is never patched, even when patching it would give the
/// version Redis has: here the other server's clear and this server's removal count one change
/// each, so only the starting version tells them apart.
#[test]
fn a_stale_copy_is_read_again_even_when_the_versions_would_agree() {
    let p = pair();
    let rules = rules(MergePolicy::Sum);
    let id = CartId::Guest(shared::GuestToken::parse(&cartsync_tests::guest_token()).unwrap()).key();
    let now = Timestamp::from_millis(1_800_000_000_000);
    let l = rules.limits;
    let op = |i: u8, kind: OpKind| Op { id: OpId::parse(&format!("s{i}")).unwrap(), kind };
    let add = |s: &str| OpKind::Add { sku: Sku::parse(s).unwrap(), quantity: Quantity::new(1, &l).unwrap(), price_at_add: None };
    p.rt.block_on(p.redis.apply(&id, &[op(1, add("A")), op(2, add("B"))], None, &rules, now)).unwrap();
    p.rt.block_on(p.other.apply(&id, &[op(3, OpKind::Clear)], None, &rules, now)).unwrap();
    let ApplyResult::Done { cart, .. } =
        p.rt.block_on(p.redis.apply(&id, &[op(4, OpKind::Remove { sku: Sku::parse("A").unwrap() })], None, &rules, now)).unwrap()
    else {
        panic!("a guest cart applies")
    };
    assert_eq!((cart.version, cart.lines.len()), (3, 0), "the other server's clear is in the answer");
}
