//! The hot store's data going back in time: Redis restored from a snapshot older than what
//! PostgreSQL holds (an old backup, a lagging replica promoted). Every user cart must come back
//! with every write acknowledged before the snapshot, after it, and after the restore; op ids of
//! writes the old data never saw must not answer `duplicate` without their change.

use cartsync_tests::app::{As, Mode};
use cartsync_tests::{RedisServer, TestApp, durable_rows};
use serde_json::{Value, json};
use std::time::Duration;

const USERS: usize = 20;

fn user(i: usize) -> String {
    format!("snap-user-{i}")
}

/// Sends one add as an op with `op_id`, retrying while the hot store is unreachable (503: not
/// acknowledged), and returns the op's status once a 200 acknowledged it.
async fn add(app: &TestApp, who: &As, op_id: &str, sku: &str) -> String {
    for _ in 0..400 {
        let a = app.ops(who, json!([{"op_id": op_id, "type": "add", "sku": sku, "quantity": 1}])).await;
        match a.status.as_u16() {
            200 => return a.body["results"][0]["status"].as_str().unwrap_or("").to_owned(),
            503 => tokio::time::sleep(Duration::from_millis(25)).await,
            other => panic!("{op_id}: {other} {:?}", a.body),
        }
    }
    panic!("{op_id} was never acknowledged");
}

/// Waits until the durable store holds every user's cart at `version` or later.
async fn durable_at_least(url: &str, version: i64) {
    for _ in 0..800 {
        let rows = durable_rows(url).await;
        if rows.len() == USERS && rows.iter().all(|(_, v)| *v >= version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the write-behind never caught up to version {version}: {:?}", durable_rows(url).await);
}

async fn lines(app: &TestApp, who: &As) -> Vec<(String, u64)> {
    for _ in 0..400 {
        let a = app.get_cart(who).await;
        if a.status == 200 {
            return a.lines();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the cart could not be read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restored_from_an_older_snapshot_loses_no_acknowledged_write() {
    let redis = RedisServer::dedicated();
    let app = TestApp::spawn_with(Mode::Redis, |s| s.redis_url = Some(redis.url.clone())).await;
    let db = app.settings.database_url.clone();
    let who = |i: usize| As::User(user(i));

    for i in 0..USERS {
        assert_eq!(add(&app, &who(i), &format!("before-{i}"), "A").await, "applied");
    }
    durable_at_least(&db, 1).await;
    let old = redis.snapshot("old");

    // Acknowledged after the snapshot, and written behind to PostgreSQL.
    for i in 0..USERS {
        assert_eq!(add(&app, &who(i), &format!("after-{i}"), "B").await, "applied");
    }
    durable_at_least(&db, 2).await;

    // Redis comes back with the old data (carts at version 1, without B). The server keeps
    // running and is never told.
    redis.restart_from(&old);

    for i in 0..USERS {
        assert_eq!(add(&app, &who(i), &format!("restored-{i}"), "C").await, "applied", "user {i}");
    }
    let expected: Vec<(String, u64)> = vec![("A".into(), 1), ("B".into(), 1), ("C".into(), 1)];
    for i in 0..USERS {
        assert_eq!(lines(&app, &who(i)).await, expected, "user {i}: every acknowledged add is in the cart");
    }
    // Ops sent again answer duplicate, and now rightly: their changes are all there.
    for i in 0..USERS {
        for (op, sku) in [("before", "A"), ("after", "B"), ("restored", "C")] {
            assert_eq!(add(&app, &who(i), &format!("{op}-{i}"), sku).await, "duplicate", "{op}-{i}");
        }
        assert_eq!(lines(&app, &who(i)).await, expected);
    }

    // And the durable copy has it all: with the hot store emptied, every cart comes back whole.
    durable_at_least(&db, 3).await;
    redis.flush_all();
    for i in 0..USERS {
        assert_eq!(lines(&app, &who(i)).await, expected, "user {i} restored from PostgreSQL");
    }
    let versions: Vec<i64> = durable_rows(&db).await.into_iter().map(|(_, v)| v).collect();
    assert!(versions.iter().all(|v| *v == 3), "{versions:?}");
    let _ = app.stop().await;
    redis.stop();
}

/// The same restart with nothing lost (AOF kept every write): nothing is restored over newer
/// data, and the carts are checked, not reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_with_all_its_data_keeps_the_newer_carts() {
    let redis = RedisServer::with_aof();
    let app = TestApp::spawn_with(Mode::Redis, |s| s.redis_url = Some(redis.url.clone())).await;
    let who = As::User("aof-user".into());
    assert_eq!(add(&app, &who, "one", "A").await, "applied");
    assert_eq!(add(&app, &who, "two", "B").await, "applied");
    // Restarted before the write-behind could run for the second add, maybe: Redis is newer
    // than or as new as PostgreSQL, and must win.
    redis.kill();
    redis.restart();
    assert_eq!(add(&app, &who, "three", "C").await, "applied");
    let got: Vec<(String, u64)> = lines(&app, &who).await;
    assert_eq!(got, vec![("A".into(), 1), ("B".into(), 1), ("C".into(), 1)]);
    let cart: Value = app.get_cart(&who).await.body;
    assert_eq!(cart["version"], 3);
    let _ = app.stop().await;
    redis.stop();
}

/// PostgreSQL stopped for 30 seconds under a steady load of user-cart writes (10 users, one add
/// each every 200 ms or so): every write is
/// answered (the hot store takes them; the write-behind waits), checkout answers `503` with
/// `Retry-After`, and once PostgreSQL is back the backlog drains and every acknowledged write is
/// in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_thirty_seconds_loses_no_cart_write() {
    let pg = cartsync_tests::PostgresServer::dedicated();
    let db = pg.create_database().await;
    let redis = RedisServer::dedicated();
    let app = TestApp::spawn_with(Mode::Redis, |s| {
        s.redis_url = Some(redis.url.clone());
        s.database_url = db.clone();
    })
    .await;
    app.product("PG-1", 100, 1000).await;
    let users: Vec<As> = (0..10).map(|i| As::User(format!("pg-user-{i}"))).collect();
    // Each user cart is in the hot store before the outage (a first touch restores from the
    // durable store, which needs it up).
    for who in &users {
        assert_eq!(add(&app, who, &uuid::Uuid::new_v4().to_string(), "PG-1").await, "applied");
    }

    pg.stop();
    let started = std::time::Instant::now();
    let (mut acknowledged, mut errors, mut round) = (vec![Vec::new(); users.len()], 0usize, 0usize);
    let mut checkout = None;
    while started.elapsed() < Duration::from_secs(30) {
        let answers = futures::future::join_all(users.iter().enumerate().map(|(u, who)| {
            let sku = format!("S{round}");
            let app = &app;
            async move {
                let a = app.ops(who, json!([{"op_id": format!("pg-{u}-{sku}"), "type": "add", "sku": sku, "quantity": 1}])).await;
                (u, sku, a)
            }
        }))
        .await;
        for (u, sku, a) in answers {
            if a.status == 200 && a.body["results"][0]["status"] == "applied" {
                acknowledged[u].push(sku);
            } else {
                errors += 1;
                eprintln!("a write during the outage was refused: {} {:?}", a.status, a.body);
            }
        }
        if checkout.is_none() && round == 5 {
            checkout = Some(app.checkout(&users[0], "during-outage", json!({})).await);
        }
        round += 1;
        // At most 150 rounds in 30 s, so no cart reaches its 200-line limit.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outage_reads = futures::future::join_all(users.iter().map(|who| app.get_cart(who))).await;
    pg.resume();

    assert_eq!(errors, 0, "every cart write during the outage was answered");
    assert!(outage_reads.iter().all(|a| a.status == 200), "cart reads were answered during the outage");
    let checkout = checkout.expect("a checkout was tried during the outage");
    assert_eq!((checkout.status.as_u16(), checkout.code()), (503, "unavailable"), "{:?}", checkout.body);
    assert!(checkout.header("retry-after").is_some());
    let written: usize = acknowledged.iter().map(Vec::len).sum();
    println!("pg outage: {rounds} rounds, {written} writes acknowledged while PostgreSQL was down, 0 refused", rounds = round);

    // The backlog drains: every user's durable copy reaches the version the hot store has.
    let mut versions = Vec::new();
    for who in &users {
        versions.push(app.get_cart(who).await.body["version"].as_i64().expect("a version"));
    }
    let back = std::time::Instant::now();
    'drain: for _ in 0..2400 {
        let rows = durable_rows(&db).await;
        let caught_up = (0..users.len()).all(|i| rows.iter().any(|(u, v)| *u == format!("pg-user-{i}") && *v == versions[i]));
        if caught_up {
            break 'drain;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = durable_rows(&db).await;
    for (i, v) in versions.iter().enumerate() {
        assert!(rows.iter().any(|(u, dv)| *u == format!("pg-user-{i}") && dv == v), "user {i} never reached version {v}: {rows:?}");
    }
    println!("pg outage: the write-behind caught up {:.1} s after PostgreSQL came back", back.elapsed().as_secs_f64());
    // With the hot store emptied, every acknowledged write comes back from PostgreSQL.
    redis.flush_all();
    for (u, who) in users.iter().enumerate() {
        let got = lines(&app, who).await;
        let mut want: Vec<(String, u64)> = acknowledged[u].iter().map(|s| (s.clone(), 1)).collect();
        want.insert(0, ("PG-1".into(), 1));
        assert_eq!(got, want, "user {u}");
    }
    // Checkout is decided again (the invented SKUs are not for sale).
    let after = app.checkout(&users[0], "after-outage", json!({})).await;
    assert_eq!((after.status.as_u16(), after.code()), (409, "out_of_stock"), "{:?}", after.body);
    let _ = app.stop().await;
    redis.stop();
}

/// Redis killed with SIGKILL in the middle of a bounded load of user-cart writes, and started
/// again from its append-only file (`appendfsync always`, the setting that loses nothing; with
/// `everysec` up to a second of writes not yet written behind may go, see ARCHITECTURE.md).
/// Clients retry what was not answered with the same op id, as the browser cart does. Every
/// write acknowledged is in the cart afterwards, and every op answered `duplicate` has its change
/// in the cart: none was turned into a duplicate without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_loses_no_acknowledged_write() {
    const PER_USER: usize = 60;
    let redis = std::sync::Arc::new(RedisServer::with_aof());
    let app = TestApp::spawn_with(Mode::Redis, |s| s.redis_url = Some(redis.url.clone())).await;
    let users: Vec<As> = (0..8).map(|i| As::User(format!("kill-user-{i}"))).collect();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killer = {
        let (redis, sent) = (redis.clone(), sent.clone());
        tokio::task::spawn_blocking(move || {
            while sent.load(std::sync::atomic::Ordering::Relaxed) < users_total() / 2 {
                std::thread::sleep(Duration::from_millis(2));
            }
            redis.kill();
            // Down long enough for requests to fail and be retried.
            std::thread::sleep(Duration::from_millis(1500));
            redis.restart();
        })
    };
    fn users_total() -> usize {
        8 * PER_USER
    }
    let outcomes = futures::future::join_all(users.iter().enumerate().map(|(u, who)| {
        let (app, sent) = (&app, sent.clone());
        async move {
            let mut statuses = Vec::new();
            let mut retries = 0usize;
            for k in 0..PER_USER {
                let op = json!({"ops": [{"op_id": format!("kill-{u}-{k}"), "type": "add", "sku": format!("K{k}"), "quantity": 1}]});
                loop {
                    let res = app.request(reqwest::Method::POST, "/v1/cart/ops", who).json(&op).send().await;
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match res {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.expect("a JSON answer");
                            statuses.push(body["results"][0]["status"].as_str().unwrap_or("").to_owned());
                            break;
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            assert_eq!(status, 503, "only unavailability is answered during the fault: {body}");
                        }
                        Err(_) => {}
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (statuses, retries)
        }
    }))
    .await;
    killer.await.expect("the killer ran");
    let retried: usize = outcomes.iter().map(|o| o.1).sum();
    let duplicates: usize = outcomes.iter().map(|o| o.0.iter().filter(|s| *s == "duplicate").count()).sum();
    println!(
        "redis kill: {} writes acknowledged, {retried} retries, {duplicates} answered duplicate after a lost answer",
        users.len() * PER_USER
    );
    let want: Vec<(String, u64)> = (0..PER_USER).map(|k| (format!("K{k}"), 1)).collect();
    for (u, who) in users.iter().enumerate() {
        let mut got = lines(&app, who).await;
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "user {u}: every acknowledged add (applied or duplicate) is in the cart");
        assert!(outcomes[u].0.iter().all(|s| s == "applied" || s == "duplicate"));
    }
    let _ = app.stop().await;
    redis.stop();
}

/// Two server processes on the same stores, clients alternating between them; one is killed
/// with SIGKILL in the middle of the load. A client whose request to it failed sends the same op
/// to the other. Every acknowledged write is in the cart and, once the survivor has taken over
/// the dead one's unacknowledged write-behind entries, in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_loses_no_acknowledged_write() {
    use cartsync_tests::process::ServerProcess;
    const PER_USER: usize = 40;
    let redis = RedisServer::dedicated();
    let (mut settings, _) = TestApp::base_settings(Mode::Redis).await;
    settings.redis_url = Some(redis.url.clone());
    let extra = [("CARTSYNC_WRITE_BEHIND_CLAIM_MS", "1000".to_owned())];
    let doomed = ServerProcess::start(&settings, &extra);
    let survivor = ServerProcess::start(&settings, &extra);
    let a = TestApp::external(doomed.base.clone(), Mode::Redis, settings.clone()).await;
    let b = TestApp::external(survivor.base.clone(), Mode::Redis, settings.clone()).await;
    let users: Vec<As> = (0..6).map(|i| As::User(format!("two-{i}"))).collect();
    let doomed = std::sync::Mutex::new(Some(doomed));
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let mut failed_over = 0usize;
    for k in 0..PER_USER {
        if k == PER_USER / 2 {
            // Mid-load: no shutdown, no draining.
            doomed.lock().unwrap().take().expect("still running").kill();
        }
        let answers = futures::future::join_all(users.iter().enumerate().map(|(u, who)| {
            let (a, b, sent) = (&a, &b, &sent);
            async move {
                let op = json!({"ops": [{"op_id": format!("two-{u}-{k}"), "type": "add", "sku": format!("T{k}"), "quantity": 1}]});
                let first = if (u + k) % 2 == 0 { a } else { b };
                let mut tried_other = false;
                for attempt in 0..200 {
                    let app = if attempt == 0 { first } else { b };
                    tried_other |= attempt > 0 && !std::ptr::eq(first, b);
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Ok(r) = app.request(reqwest::Method::POST, "/v1/cart/ops", who).json(&op).send().await
                        && r.status() == 200
                    {
                        let body: Value = r.json().await.expect("JSON");
                        return (body["results"][0]["status"].as_str().unwrap_or("").to_owned(), tried_other);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("never acknowledged");
            }
        }))
        .await;
        for (status, other) in answers {
            assert!(status == "applied" || status == "duplicate", "{status}");
            failed_over += usize::from(other);
        }
    }
    println!("two servers: {} writes acknowledged, {failed_over} sent again to the survivor", users.len() * PER_USER);
    let want: Vec<(String, u64)> = {
        let mut w: Vec<(String, u64)> = (0..PER_USER).map(|k| (format!("T{k}"), 1)).collect();
        w.sort();
        w
    };
    let db = settings.database_url.clone();
    for (u, who) in users.iter().enumerate() {
        let mut got = lines(&b, who).await;
        got.sort();
        assert_eq!(got, want, "user {u}");
        let version = b.get_cart(who).await.body["version"].as_i64().expect("a version");
        // The survivor's write-behind takes over what the dead one fetched and never acknowledged.
        cartsync_tests::wait_for_durable_version(&db, &format!("two-{u}"), version).await;
    }
    redis.flush_all();
    for (u, who) in users.iter().enumerate() {
        let mut got = lines(&b, who).await;
        got.sort();
        assert_eq!(got, want, "user {u} restored from PostgreSQL");
    }
    drop(survivor);
    redis.stop();
}
