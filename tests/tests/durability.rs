//! User carts survive the hot store: written behind to the durable store, restored on first
//! access, never moved backwards.

use cartsync_tests::app::As;
use cartsync_tests::{Mode, TestApp, redis, wait_for_durable_version};
use reqwest::StatusCode;
use serde_json::json;
use shared::{Cart, CartState, ClientSeq, Currency, OpId, Timestamp, UserId};
use std::time::Duration;
use sync_server::durable::Durable;

/// Tests that flush Redis take turns, so one's flush cannot wipe another's queued writes.
static FLUSH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cart rules of the tests that drive a hot store directly: user carts live `user_seconds`.
fn rules(user_seconds: i64) -> sync_server::hot::Rules {
    let user = shared::Expiry { cart_seconds: user_seconds, saved_seconds: user_seconds };
    sync_server::hot::Rules {
        limits: shared::Limits::default(),
        currency: Currency::USD,
        guest: shared::Expiry { cart_seconds: 3600, saved_seconds: 3600 },
        user,
        merge: shared::MergePolicy::Sum,
    }
}

fn batch() -> serde_json::Value {
    json!([
        {"op_id": "d-1", "type": "add", "sku": "A", "quantity": 2, "price_at_add": {"amount": 500, "currency": "USD"}},
        {"op_id": "d-2", "type": "add", "sku": "B", "quantity": 1},
        {"op_id": "d-3", "type": "save_for_later", "sku": "B"},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cart_comes_back_from_postgres_after_redis_is_flushed() {
    let _turn = FLUSH.lock().await;
    let app = TestApp::spawn(Mode::Redis).await;
    let user = format!("flush-{}", uuid::Uuid::new_v4());
    let who = As::User(user.clone());
    let before = app.ops(&who, batch()).await;
    assert_eq!(before.status, StatusCode::OK);
    wait_for_durable_version(&app.settings.database_url, &user, 3).await;

    redis().flush_all();

    let after = app.get_cart(&who).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body["version"], 3);
    assert_eq!(after.body["lines"], before.body["cart"]["lines"]);
    assert_eq!(after.body["saved"], before.body["cart"]["saved"]);

    let replay = app.ops(&who, batch()).await;
    let statuses: Vec<_> = replay.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["duplicate"; 3], "applied op ids were restored with the cart");
    assert_eq!(replay.body["cart"]["version"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_restarted_keeps_its_user_carts() {
    let app = TestApp::spawn(Mode::Embedded).await;
    let who = As::User("restart-user".into());
    let before = app.ops(&who, batch()).await;
    let (settings, dir) = app.stop().await;

    let app = TestApp::start(Mode::Embedded, settings, dir).await;
    let after = app.get_cart(&who).await;
    assert_eq!(after.body["version"], 3);
    assert_eq!(after.body["lines"], before.body["cart"]["lines"]);
    assert_eq!(after.body["saved"], before.body["cart"]["saved"]);
    let replay = app.ops(&who, batch()).await;
    assert_eq!(replay.body["results"][0]["status"], "duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cart_that_was_never_stored_starts_empty_after_a_flush() {
    let _turn = FLUSH.lock().await;
    let app = TestApp::spawn(Mode::Redis).await;
    redis().flush_all();
    let fresh = app.get_cart(&As::User(format!("new-{}", uuid::Uuid::new_v4()))).await;
    assert_eq!((fresh.status, fresh.body["version"].clone()), (StatusCode::OK, json!(0)));
}

async fn never_moves_backwards(durable: Durable) {
    let user = UserId::parse("ordering").unwrap();
    let mut newer = Cart::new(Currency::USD);
    newer.version = 5;
    newer.updated_at = Timestamp::from_millis(5);
    let mut older = newer.clone();
    older.version = 3;
    // The older snapshot knew op-3; the newer one op-3 and then op-5.
    let mut older_state = CartState::new(older);
    older_state.applied.push_id("op-3");
    let mut newer_state = CartState::new(newer.clone());
    newer_state.applied = older_state.applied.clone();
    newer_state.applied.push_id("op-5");

    assert!(durable.save_user_cart(&user, &newer_state).await.unwrap());
    assert!(!durable.save_user_cart(&user, &older_state).await.unwrap(), "an older version is not written");
    assert!(!durable.save_user_cart(&user, &newer_state).await.unwrap(), "the same version twice is a no-op");
    let loaded = durable.load_user_cart(&user).await.unwrap().unwrap();
    assert_eq!(loaded.cart, newer);
    assert_eq!(loaded.applied, newer_state.applied, "an older snapshot takes nothing away");

    // The window of op ids moves on: the durable rows follow it, positions and marks alike.
    let mut state = newer_state.clone();
    let mark = OpId::parse("m").unwrap().with_client(ClientSeq::parse("tab-1", 7).unwrap());
    state.applied.record(&mark, 42);
    for i in 0..shared::RECENT_OPS + 20 {
        state.applied.push_id(&format!("w-{i}"));
    }
    state.cart.version = 6;
    assert!(durable.save_user_cart(&user, &state).await.unwrap());
    let loaded = durable.load_user_cart(&user).await.unwrap().unwrap();
    assert_eq!(loaded.applied, state.applied);
    assert_eq!(loaded.applied.recent().count(), shared::RECENT_OPS);
    assert!(!loaded.applied.contains_id("op-3") && loaded.applied.contains_id(&format!("w-{}", shared::RECENT_OPS + 19)));
    assert!(loaded.applied.is_duplicate(&mark));
}

#[tokio::test]
async fn postgres_never_moves_a_cart_backwards() {
    let url = cartsync_tests::postgres().create_database().await;
    never_moves_backwards(Durable::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_never_moves_a_cart_backwards() {
    let dir = std::env::temp_dir().join(format!("cartsync-order-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    never_moves_backwards(Durable::connect(&format!("sqlite://{}/c.db", dir.display())).await.unwrap()).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_the_writes_a_stopped_one_left_unacknowledged() {
    // The flushing tests of this file would wipe the stream under this one.
    let _turn = FLUSH.lock().await;
    use sync_server::hot::{HotStore, RedisStore};
    use sync_server::identity::CartKey;
    let prefix = format!("claim{}", uuid::Uuid::new_v4().simple());
    let url = &redis().url;
    let dead = HotStore::Redis(RedisStore::connect(url, &prefix).await.unwrap().with_claim_idle(100));
    let alive = HotStore::Redis(RedisStore::connect(url, &prefix).await.unwrap().with_claim_idle(100));
    let rules = rules(3600);
    let user = UserId::parse("claimed-user").unwrap();
    let key = CartKey::for_user(&user);
    let now = Timestamp::from_millis(1_800_000_000_000);
    dead.restore(&key, &CartState::new(Cart::new(Currency::USD)), &rules, now).await.unwrap();
    let op = shared::Op { id: shared::OpId::parse("claim-op").unwrap(), kind: shared::OpKind::Clear };
    dead.apply(&key, &[op], None, &rules, now).await.unwrap();
    // The first instance fetches the entry and stops before acknowledging it.
    let wb = sync_server::hot::Queue::WriteBehind;
    let users =
        |entries: &[sync_server::hot::QueueEntry]| entries.iter().map(|e| e.field("u").unwrap_or("").to_owned()).collect::<Vec<_>>();
    let taken = dead.queue_fetch(wb, 10).await.unwrap();
    assert_eq!(users(&taken), ["claimed-user"]);
    let mut claimed = Vec::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        claimed = alive.queue_fetch(wb, 10).await.unwrap();
        if !claimed.is_empty() {
            break;
        }
    }
    assert_eq!(users(&claimed), ["claimed-user"], "taken over once idle");
    assert_eq!(claimed[0].deliveries, 2, "handed out once before");
    alive.queue_ack(wb, &claimed.iter().map(|e| e.id.clone()).collect::<Vec<_>>()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(alive.queue_fetch(wb, 10).await.unwrap().is_empty(), "acknowledged entries are gone for good");
    assert!(dead.queue_fetch(wb, 10).await.unwrap().is_empty());
}

/// Reads renew a cart only in the hot store: retention must not delete the durable copy of a
/// cart that is read every day but not written for months (a later restore would find nothing).
#[tokio::test]
async fn retention_keeps_the_durable_copy_of_a_cart_still_in_use() {
    use sync_server::hot::{HotStore, MemoryStore};
    use sync_server::identity::CartKey;
    let url = cartsync_tests::postgres().create_database().await;
    let durable = Durable::connect(&url).await.unwrap();
    let hot = HotStore::Memory(std::sync::Arc::new(MemoryStore::default()));
    let rules = rules(30 * 86_400);
    let mut cart = Cart::new(Currency::USD);
    cart.version = 2;
    let (reader, gone) = (UserId::parse("daily-reader").unwrap(), UserId::parse("long-gone").unwrap());
    for u in [&reader, &gone] {
        assert!(durable.save_user_cart(u, &CartState::new(cart.clone())).await.unwrap());
    }
    // 200 days on, the reader's cart is still in the hot store (read yesterday); the other is not.
    let later = Timestamp::from_millis(sync_server::clock::now().millis() + 200 * 86_400_000);
    let yesterday = Timestamp::from_millis(later.millis() - 86_400_000);
    hot.restore(&CartKey::for_user(&reader), &CartState::new(cart.clone()), &rules, yesterday).await.unwrap();
    let swept = sync_server::events::retention::sweep(&durable, &hot, later, 90, 90, 3_600_000, 5).await.unwrap();
    assert_eq!(swept.carts, 1, "only the cart nobody uses went");
    assert!(durable.load_user_cart(&reader).await.unwrap().is_some(), "the cart in use keeps its durable copy");
    assert!(durable.load_user_cart(&gone).await.unwrap().is_none());
    // Its durable copy was renewed: a sweep a day later leaves it alone even once the hot copy is gone.
    let hot_empty = HotStore::Memory(std::sync::Arc::new(MemoryStore::default()));
    let next_day = Timestamp::from_millis(later.millis() + 86_400_000);
    let swept = sync_server::events::retention::sweep(&durable, &hot_empty, next_day, 90, 90, 3_600_000, 5).await.unwrap();
    assert_eq!(swept.carts, 0);
    assert!(durable.load_user_cart(&reader).await.unwrap().is_some());
}

/// A merge that died between its two halves leaves the guest cart's snapshot for its user: another
/// user logging in with the same guest token is refused it, in both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_finished_merge_is_never_handed_to_another_user() {
    // The flushing tests of this file would wipe the carts under this one.
    let _turn = FLUSH.lock().await;
    use sync_server::hot::{HotStore, MemoryStore, RedisStore};
    use sync_server::identity::CartKey;
    let rules = rules(3600);
    let prefix = format!("half{}", uuid::Uuid::new_v4().simple());
    let stores = [
        HotStore::Redis(RedisStore::connect(&redis().url, &prefix).await.unwrap()),
        HotStore::Memory(std::sync::Arc::new(MemoryStore::default())),
    ];
    let now = Timestamp::from_millis(sync_server::clock::now().millis());
    let (alice, bob) = (UserId::parse("half-alice").unwrap(), UserId::parse("half-bob").unwrap());
    for store in &stores {
        let guest = CartKey { tag: format!("g{}", uuid::Uuid::new_v4().simple()), user: None };
        let add = shared::Op {
            id: OpId::parse("half-1").unwrap(),
            kind: shared::OpKind::Add {
                sku: shared::Sku::parse("A").unwrap(),
                quantity: shared::Quantity::new(2, &rules.limits).unwrap(),
                price_at_add: None,
            },
        };
        store.apply(&guest, &[add], None, &rules, now).await.unwrap();
        // Alice's merge froze the guest cart and died before folding it in.
        let frozen = store.freeze_guest(&guest, &alice, &rules, now).await.unwrap().expect("alice takes it");
        assert_eq!(frozen.cart.lines.len(), 1);
        assert_eq!(store.freeze_guest(&guest, &bob, &rules, now).await.unwrap().err(), Some(alice.clone()), "bob is refused it");
        // Alice's retry gets the same snapshot, to finish her merge with.
        let again = store.freeze_guest(&guest, &alice, &rules, now).await.unwrap().expect("alice again");
        assert_eq!((again.generation, again.cart.clone()), (frozen.generation, frozen.cart.clone()));
    }
}

/// The embedded store syncs every commit to disk (`synchronous=FULL`): a paid order is not rolled
/// back by a power loss after its answer.
#[tokio::test]
async fn sqlite_commits_are_synced_to_disk() {
    let dir = std::env::temp_dir().join(format!("cartsync-sync-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let durable = Durable::connect(&format!("sqlite://{}/c.db", dir.display())).await.unwrap();
    let Durable::Sqlite(pool) = &durable else { panic!("an SQLite store") };
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
    assert_eq!(level, 2, "FULL");
    std::fs::remove_dir_all(dir).unwrap();
}
