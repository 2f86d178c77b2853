//! Nothing acknowledged is missing when the server is killed mid-flight (`events.md`): the real
//! binary takes concurrent cart writes, is SIGKILLed while requests are in flight, and a fresh
//! process on the same stores must then have recorded, and delivered to a webhook, an event for
//! every change it acknowledged, and recorded none twice.

use cartsync_tests::app::As;
use cartsync_tests::process::ServerProcess;
use cartsync_tests::receiver::Receiver;
use cartsync_tests::{Mode, TestApp, eventually, guest_token, recorded_events};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Writers, and how many acknowledged adds before the kill.
const WRITERS: usize = 4;
const KILL_AFTER: usize = 200;
/// A bound on each writer, should the kill never come.
const MAX_OPS: usize = 5_000;

/// The SKUs of the recorded `cart.item_added` events, each with how often it was recorded.
async fn added_by_sku(database_url: &str) -> BTreeMap<String, usize> {
    let mut by_sku: BTreeMap<String, usize> = BTreeMap::new();
    for e in recorded_events(database_url).await.into_iter().filter(|e| e.0 == "cart.item_added") {
        *by_sku.entry(e.3.unwrap_or_default()).or_default() += 1;
    }
    by_sku
}

/// Every acknowledged add (known by its SKU) is recorded, none twice, nothing but this test's
/// adds (`ours`) and at most one in-flight add per writer beyond the acknowledged, and every
/// recorded add is delivered to the receiver, signed.
async fn every_acknowledged_add_recorded_once_and_delivered(
    label: &str,
    database_url: &str,
    acked: &BTreeSet<String>,
    receiver: &Receiver,
    ours: impl Fn(&str) -> bool,
) {
    eventually("every acknowledged add recorded", 120, || async {
        let got = added_by_sku(database_url).await;
        acked.iter().all(|sku| got.contains_key(sku))
    })
    .await;
    let got = added_by_sku(database_url).await;
    eprintln!("{label}: {} adds acknowledged, {} recorded", acked.len(), got.len());
    assert!(got.values().all(|n| *n == 1), "no change recorded twice: {:?}", got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    // What was applied but cut off before its answer may be there too; nothing else.
    assert!(got.keys().all(|sku| ours(sku)));
    assert!(got.len() <= acked.len() + WRITERS, "at most the in-flight adds beyond the acknowledged: {} vs {}", got.len(), acked.len());
    eventually("every recorded add delivered", 120, || async {
        let delivered: BTreeSet<String> = receiver.events().iter().filter_map(|e| e["data"]["sku"].as_str().map(str::to_owned)).collect();
        got.keys().all(|sku| delivered.contains(sku))
    })
    .await;
    assert!(receiver.all_signed());
}

async fn acknowledged_events_survive_a_killed_server(mode: Mode) {
    let (settings, dir) = TestApp::base_settings(mode).await;
    let receiver = Receiver::start().await;
    let first = ServerProcess::start(&settings, &[]);
    let app = Arc::new(TestApp::external(first.base.clone(), mode, settings.clone()).await);
    receiver.subscribe(&app, json!(["cart.item_added"])).await;

    // Each add is a SKU of its own, so each acknowledged change is known by its SKU. Guest and
    // user carts alike; a writer moves to a new cart every 40 adds.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let cut = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (app, acked, cut) = (app.clone(), acked.clone(), cut.clone());
            tokio::spawn(async move {
                let mut who = As::Guest(guest_token());
                for i in 0..MAX_OPS {
                    if i % 40 == 0 {
                        who = if w % 2 == 0 {
                            As::Guest(guest_token())
                        } else {
                            As::User(format!("k{w}-{i}-{}", uuid::Uuid::new_v4().simple()))
                        };
                    }
                    let sku = format!("K{w}-{i}");
                    let op = json!({"ops": [{"op_id": sku, "type": "add", "sku": sku, "quantity": 1}]});
                    let Ok(res) = app.request(Method::POST, "/v1/cart/ops", &who).json(&op).send().await else {
                        assert!(cut.load(Ordering::SeqCst), "only the kill cuts a request off");
                        return;
                    };
                    let status = res.status();
                    let Ok(body) = res.json::<serde_json::Value>().await else {
                        assert!(cut.load(Ordering::SeqCst), "only the kill cuts an answer off");
                        return;
                    };
                    assert_eq!(status, StatusCode::OK, "{body}");
                    assert_eq!(body["results"][0]["status"], "applied");
                    acked.lock().unwrap().push(sku);
                }
            })
        })
        .collect();
    eventually("adds acknowledged before the kill", 120, || async { acked.lock().unwrap().len() >= KILL_AFTER }).await;
    cut.store(true, Ordering::SeqCst);
    first.kill();
    for w in writers {
        w.await.expect("a writer");
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= KILL_AFTER);

    let second = ServerProcess::start(&settings, &[]);
    let _app = TestApp::external(second.base.clone(), mode, settings.clone()).await;
    every_acknowledged_add_recorded_once_and_delivered(&format!("{mode:?}"), &settings.database_url, &acked, &receiver, |sku| {
        sku.starts_with('K')
    })
    .await;
    assert!(receiver.all_signed());
    second.kill();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_killed_server_on_redis_and_postgres() {
    acknowledged_events_survive_a_killed_server(Mode::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_killed_embedded_server() {
    acknowledged_events_survive_a_killed_server(Mode::Embedded).await;
}

/// Redis killed mid-flight (SIGKILL) and started again from its append-only file: every add it
/// acknowledged has its event recorded once and delivered, the recorder picking up where it was
/// (entries it had read but not acknowledged included), and writes work again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_killed_redis() {
    let redis = cartsync_tests::RedisServer::with_aof();
    let (mut settings, _) = TestApp::base_settings(Mode::Redis).await;
    settings.redis_url = Some(redis.url.clone());
    let receiver = Receiver::start().await;
    let app = Arc::new(TestApp::start(Mode::Redis, settings.clone(), None).await);
    receiver.subscribe(&app, json!(["cart.item_added"])).await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let cut = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (app, acked, cut) = (app.clone(), acked.clone(), cut.clone());
            tokio::spawn(async move {
                let who = if w % 2 == 0 { As::Guest(guest_token()) } else { As::User(format!("r{w}-{}", uuid::Uuid::new_v4().simple())) };
                for i in 0..MAX_OPS {
                    let sku = format!("R{w}-{i}");
                    let a = app.ops(&who, json!([{"op_id": sku, "type": "add", "sku": sku, "quantity": 1}])).await;
                    if a.status != StatusCode::OK {
                        // Only the outage refuses a write, and then as unavailable, never a 500.
                        assert!(cut.load(Ordering::SeqCst), "{:?}", a.body);
                        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
                        return;
                    }
                    assert_eq!(a.body["results"][0]["status"], "applied");
                    acked.lock().unwrap().push(sku);
                }
            })
        })
        .collect();
    eventually("adds acknowledged before the kill", 120, || async { acked.lock().unwrap().len() >= KILL_AFTER }).await;
    cut.store(true, Ordering::SeqCst);
    redis.kill();
    for w in writers {
        w.await.expect("a writer");
    }
    redis.restart();
    // Writes work again once Redis is back.
    let after = As::Guest(guest_token());
    eventually("a write after the restart", 60, || async {
        let a = app.ops(&after, json!([{"op_id": "AFTER", "type": "add", "sku": "AFTER", "quantity": 1}])).await;
        assert!(matches!(a.status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE), "while Redis comes back: {:?}", a.body);
        a.status == StatusCode::OK
    })
    .await;
    let mut acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    acked.insert("AFTER".into());
    every_acknowledged_add_recorded_once_and_delivered("Redis killed", &settings.database_url, &acked, &receiver, |sku| {
        sku.starts_with('R') || sku == "AFTER"
    })
    .await;
    redis.stop();
}
