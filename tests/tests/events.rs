//! Cart and order events, webhooks, abandonment and analytics end to end (`events.md`), in both
//! modes, with a webhook receiver of the test's own on loopback.

use cartsync_tests::app::As;
use cartsync_tests::receiver::Receiver;
use cartsync_tests::{Mode, TestApp, both_modes, eventually, guest_token, recorded_events};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn usd(a: i64) -> Value {
    json!({"amount": a, "currency": "USD"})
}

async fn count(app: &TestApp, kind: &str) -> usize {
    recorded_events(&app.settings.database_url).await.iter().filter(|e| e.0 == kind).count()
}

both_modes!(eight_clients_fifty_adds_each_make_exactly_four_hundred_item_added, |app: TestApp| async move {
    let receiver = Receiver::start().await;
    receiver.subscribe(&app, json!(["cart.*"])).await;
    let who = As::Guest(guest_token());
    let batches: Vec<Value> = (0..8)
        .map(|c| {
            json!(
                (0..50)
                    .map(|i| json!({"op_id": format!("c{c}-{i}"), "type": "add", "sku": format!("SKU-{}", i % 5), "quantity": 1}))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    // Eight devices push their ops concurrently, a few at a time.
    let pushes = futures::future::join_all((0..8).map(|c| {
        let (app, who, ops) = (&app, &who, batches[c].clone());
        async move {
            for chunk in ops.as_array().unwrap().chunks(10) {
                let a = app.ops(who, json!(chunk)).await;
                assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            }
        }
    }))
    .await;
    assert_eq!(pushes.len(), 8);
    eventually("400 adds recorded", 30, || async { count(&app, "cart.item_added").await == 400 }).await;
    assert_eq!(count(&app, "cart.created").await, 1);
    // Replays (every op again) make none.
    for b in &batches {
        let a = app.ops(&who, b.clone()).await;
        assert!(a.body["results"].as_array().unwrap().iter().all(|r| r["status"] == "duplicate"));
    }
    // REST adds record no op id, but each is an acknowledged change with its event.
    for _ in 0..3 {
        assert_eq!(app.add(&who, "REST", 1).await.status, StatusCode::OK);
    }
    eventually("the REST adds recorded", 30, || async { count(&app, "cart.item_added").await == 403 }).await;
    eventually("every event delivered", 30, || async { receiver.events().len() == 404 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(count(&app, "cart.item_added").await, 403, "replays made no event");
    let got = receiver.events();
    assert_eq!(got.len(), 404, "each event delivered once while the receiver answers 2xx");
    assert!(receiver.all_signed(), "every delivery is signed with the endpoint's secret");
    let e = got.iter().find(|e| e["type"] == "cart.item_added").unwrap();
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["source"], "cartsync");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["data"]["owner"], "guest");
    assert_eq!(e["data"]["quantity"], 1);
    let token = match &who {
        As::Guest(t) => t.clone(),
        _ => unreachable!(),
    };
    assert!(!serde_json::to_string(&got).unwrap().contains(&token), "no event carries the guest token");
    let mut ids: Vec<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 404, "every event has its own id");
    // One cart's events arrive in the order they happened while the receiver answers 2xx, from
    // one instance's delivery worker; instances deliver side by side, so across them a cart's
    // events may interleave (each carries its `cart_version` to order them by).
    let mut versions: Vec<u64> =
        got.iter().filter(|e| e["type"] == "cart.item_added").filter_map(|e| e["data"]["cart_version"].as_u64()).collect();
    assert_eq!(versions.len(), 403);
    if app.instances() == 1 {
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "in cart version order: {versions:?}");
        assert_eq!(got[0]["type"], "cart.created", "the cart's first event first");
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 403, "one event per cart version");
});

both_modes!(every_cart_change_has_its_event_type, |app: TestApp| async move {
    app.product("A", 1000, 50).await;
    let who = As::User(format!("u-{}", uuid::Uuid::new_v4().simple()));
    app.add(&who, "A", 2).await;
    app.call(Method::PUT, "/v1/cart/items/A", &who, Some(json!({"quantity": 3}))).await;
    app.add(&who, "B", 1).await;
    app.call(Method::POST, "/v1/cart/items/B/save-for-later", &who, None).await;
    app.call(Method::POST, "/v1/cart/saved/B/move-to-cart", &who, None).await;
    app.call(Method::DELETE, "/v1/cart/items/B", &who, None).await;
    app.call(
        Method::PUT,
        "/v1/admin/promotions/p",
        &TestApp::admin(),
        Some(json!({"code": "TEN", "action": {"type": "percent_off_order", "percent": 10}})),
    )
    .await;
    app.call(Method::POST, "/v1/cart/promo-codes", &who, Some(json!({"code": "TEN"}))).await;
    app.call(Method::DELETE, "/v1/cart/promo-codes/TEN", &who, None).await;
    app.ops(&who, json!([{"op_id": "c1", "type": "clear"}])).await;
    let expected = [
        ("cart.created", None, None),
        ("cart.item_added", Some("A"), Some(2)),
        ("cart.quantity_changed", Some("A"), Some(3)),
        ("cart.item_added", Some("B"), Some(1)),
        ("cart.saved_for_later", Some("B"), Some(1)),
        ("cart.moved_to_cart", Some("B"), Some(1)),
        ("cart.item_removed", Some("B"), Some(1)),
        ("cart.promo_code_applied", None, Some(0)),
        ("cart.promo_code_removed", None, Some(0)),
        ("cart.cleared", None, Some(1)),
    ];
    eventually("the cart's events", 30, || async { recorded_events(&app.settings.database_url).await.len() >= expected.len() }).await;
    let got = recorded_events(&app.settings.database_url).await;
    let kinds: Vec<(&str, Option<&str>, Option<i64>)> =
        got.iter().map(|e| (e.0.as_str(), e.3.as_deref(), if e.0 == "cart.created" { None } else { e.4 })).collect();
    assert_eq!(kinds, expected);
    assert!(got.iter().all(|e| e.2.as_deref()
        == Some(match &who {
            As::User(u) => u.as_str(),
            _ => unreachable!(),
        })));
});

both_modes!(orders_make_their_events_in_their_own_transactions, |app: TestApp| async move {
    let receiver = Receiver::start().await;
    receiver.subscribe(&app, json!(["order.*", "checkout.*"])).await;
    app.product("A", 1500, 2).await;
    let buyer = As::Guest(guest_token());
    app.add(&buyer, "A", 1).await;
    let placed = app.checkout(&buyer, key(), json!({})).await;
    assert_eq!(placed.status, StatusCode::CREATED);
    let order = placed.body["order"].clone();
    assert_eq!(app.pay(&order, "succeeded", "p-1").await.status, StatusCode::OK);
    let other = As::Guest(guest_token());
    app.add(&other, "A", 1).await;
    let second = app.checkout(&other, key(), json!({})).await.body["order"].clone();
    assert_eq!(app.pay(&second, "failed", "p-2").await.status, StatusCode::OK);
    let short = As::Guest(guest_token());
    app.add(&short, "A", 5).await;
    assert_eq!(app.checkout(&short, key(), json!({})).await.code(), "out_of_stock");
    eventually("order events delivered", 30, || async { receiver.events().len() == 5 }).await;
    // Deliveries run concurrently: the contract promises each event, not their order.
    let got = receiver.events();
    let mut kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["checkout.failed", "checkout.started", "checkout.started", "order.cancelled", "order.paid"]);
    let one = |kind: &str| got.iter().find(|e| e["type"] == kind).unwrap().clone();
    let (paid, cancelled, failed) = (one("order.paid"), one("order.cancelled"), one("checkout.failed"));
    assert_eq!(paid["data"]["order_id"], order["id"]);
    assert_eq!(paid["data"]["total"], usd(1500));
    assert_eq!(cancelled["data"]["order_id"], second["id"]);
    assert_eq!(cancelled["data"]["reason"], "payment_failed");
    assert_eq!(failed["data"]["reason"], "out_of_stock");
    let started = got.iter().find(|e| e["type"] == "checkout.started" && e["data"]["order_id"] == order["id"]).unwrap();
    assert_eq!(started["subject"], paid["subject"], "an order's events name its cart");
    assert_ne!(paid["subject"], cancelled["subject"]);
    // A replayed payment makes no second event.
    assert_eq!(app.pay(&order, "succeeded", "p-1").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.events().len(), 5);
});

both_modes!(a_failing_receiver_gets_every_event_once_it_heals, |app: TestApp| async move {
    let receiver = Receiver::start().await;
    *receiver.state.fail_next.lock().unwrap() = 6;
    let id = receiver.subscribe(&app, json!(["*"])).await;
    let who = As::Guest(guest_token());
    for _ in 0..3 {
        app.add(&who, "A", 1).await;
    }
    let deliveries = || async {
        let d = app.call(Method::GET, &format!("/v1/admin/webhooks/{id}/deliveries"), &TestApp::admin(), None).await;
        assert_eq!(d.status, StatusCode::OK);
        d.body["deliveries"].as_array().unwrap().clone()
    };
    // The receiver has an event before the server records its delivery (after the answer), so
    // the wait is for both.
    eventually("all delivered after the failures", 60, || async {
        receiver.events().len() == 4 && deliveries().await.iter().filter(|x| x["status"] == "delivered").count() == 4
    })
    .await;
    let list = deliveries().await;
    assert_eq!(list.len(), 4);
    assert_eq!(receiver.events().len(), 4, "each event received once");
    assert!(list.iter().map(|x| x["attempts"].as_i64().unwrap()).sum::<i64>() >= 4 + 6, "the failures were retried");
    // A replay sends the range again, same ids.
    let r = app
        .call(
            Method::POST,
            &format!("/v1/admin/webhooks/{id}/replay"),
            &TestApp::admin(),
            Some(json!({"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((r.status, &r.body["queued"]), (StatusCode::ACCEPTED, &json!(4)));
    eventually("the replay delivered", 30, || async { receiver.events().len() == 8 }).await;
    let got = receiver.events();
    let ids = |list: &[Value]| list.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ids(&got[..4]), ids(&got[4..]), "the same events again, by id");
});

both_modes!(a_stalled_receiver_never_holds_up_cart_writes, |app: TestApp| async move {
    let receiver = Receiver::start().await;
    *receiver.state.stall.lock().unwrap() = true;
    receiver.subscribe(&app, json!(["*"])).await;
    let who = As::Guest(guest_token());
    app.add(&who, "A", 1).await;
    eventually("a delivery stuck at the receiver", 30, || async { *receiver.state.stalled_now.lock().unwrap() > 0 }).await;
    // While deliveries hang, writes and a checkout answer as usual.
    for i in 0..50 {
        assert_eq!(app.add(&who, &format!("S{i}"), 1).await.status, StatusCode::OK);
    }
    assert!(*receiver.state.stalled_now.lock().unwrap() > 0, "the receiver still holds deliveries");
    *receiver.state.stall.lock().unwrap() = false;
    receiver.state.release.notify_waiters();
    eventually("everything delivered once the receiver answers", 60, || async { receiver.events().len() == 52 }).await;
});

both_modes!(webhook_admin_input_is_checked, |app: TestApp| async move {
    let admin = TestApp::admin();
    for body in [
        json!({}),
        json!({"url": "not a url", "events": ["*"]}),
        json!({"url": "ftp://example.com/x", "events": ["*"]}),
        json!({"url": "http://127.0.0.1:9/x", "events": []}),
        json!({"url": "http://127.0.0.1:9/x", "events": ["cart.nothing"]}),
        json!({"url": "http://127.0.0.1:9/x", "events": ["*"], "secret": "short"}),
    ] {
        let a = app.call(Method::POST, "/v1/admin/webhooks", &admin, Some(body.clone())).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, "invalid_request"), "{body}");
    }
    let nobody =
        app.call(Method::POST, "/v1/admin/webhooks", &As::Nobody, Some(json!({"url": "http://127.0.0.1:9/x", "events": ["*"]}))).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let made = app
        .call(
            Method::POST,
            "/v1/admin/webhooks",
            &admin,
            Some(json!({"url": "http://127.0.0.1:9/x", "events": ["order.*"], "secret": "a-secret-of-enough-length"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let id = made.body["id"].as_str().unwrap();
    assert_eq!(made.body["secret"], "a-secret-of-enough-length");
    let read = app.call(Method::GET, &format!("/v1/admin/webhooks/{id}"), &admin, None).await;
    assert!(read.body.get("secret").is_none(), "the secret is shown once");
    assert_eq!(app.call(Method::GET, "/v1/admin/webhooks", &admin, None).await.body["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(app.call(Method::DELETE, &format!("/v1/admin/webhooks/{id}"), &admin, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call(Method::GET, &format!("/v1/admin/webhooks/{id}"), &admin, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &format!("/v1/admin/webhooks/{id}"), &admin, None).await.status, StatusCode::NOT_FOUND);
    let bad_range = app.call(Method::POST, "/v1/admin/webhooks/wh_x/replay", &admin, Some(json!({"from": "x", "to": "y"}))).await;
    assert_eq!(bad_range.status, StatusCode::NOT_FOUND);
});

both_modes!(a_merge_records_cart_merged_on_the_users_cart, |app: TestApp| async move {
    let token = guest_token();
    app.add(&As::Guest(token.clone()), "A", 2).await;
    let user = format!("u-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(app.merge(&user, &token).await.status, StatusCode::OK);
    assert_eq!(app.merge(&user, &token).await.status, StatusCode::OK);
    eventually("the merge recorded", 30, || async { count(&app, "cart.merged").await == 1 }).await;
    let got = recorded_events(&app.settings.database_url).await;
    let merged = got.iter().find(|e| e.0 == "cart.merged").unwrap();
    assert_eq!(merged.2.as_deref(), Some(user.as_str()));
});

both_modes!(the_funnel_and_the_skus_count_exactly, |app: TestApp| async move {
    app.product("A", 1000, 100).await;
    app.product("B", 500, 100).await;
    let carts: Vec<As> = (0..4).map(|_| As::Guest(guest_token())).collect();
    for c in &carts {
        app.add(c, "A", 2).await;
    }
    app.add(&carts[0], "B", 3).await;
    app.call(Method::DELETE, "/v1/cart/items/B", &carts[0], None).await;
    app.add(&carts[1], "B", 1).await;
    // Two checkouts, one paid: the paid order takes its lines out of the cart (not a shopper's removal).
    let o1 = app.checkout(&carts[1], key(), json!({})).await.body["order"].clone();
    app.checkout(&carts[2], key(), json!({})).await;
    assert_eq!(app.pay(&o1, "succeeded", "p").await.status, StatusCode::OK);
    // Some other cart gets a removal of a line it never had (no units removed).
    app.call(Method::DELETE, "/v1/cart/items/Z", &carts[3], None).await;
    eventually("events recorded", 30, || async { count(&app, "cart.item_removed").await == 4 }).await;
    let admin = TestApp::admin();
    let f = app.call(Method::GET, "/v1/admin/analytics/funnel?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z", &admin, None).await;
    assert_eq!(f.status, StatusCode::OK, "{:?}", f.body);
    assert_eq!(
        (&f.body["carts_created"], &f.body["carts_with_items"], &f.body["checkouts_started"], &f.body["orders_paid"], &f.body["revenue"]),
        (&json!(4), &json!(4), &json!(2), &json!(1), &usd(2500))
    );
    assert_eq!(f.body["conversion_rate"], 0.25);
    let s = app.call(Method::GET, "/v1/admin/analytics/skus?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z", &admin, None).await;
    let skus = s.body["skus"].as_array().unwrap();
    let a = skus.iter().find(|x| x["sku"] == "A").unwrap();
    let b = skus.iter().find(|x| x["sku"] == "B").unwrap();
    assert_eq!((&a["units_added"], &a["units_removed"], &a["units_ordered"], &a["carts"]), (&json!(8), &json!(0), &json!(2), &json!(4)));
    assert_eq!((&b["units_added"], &b["units_removed"], &b["units_ordered"], &b["carts"]), (&json!(4), &json!(3), &json!(1), &json!(2)));
    let empty = app.call(Method::GET, "/v1/admin/analytics/funnel?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z", &admin, None).await;
    assert_eq!((&empty.body["carts_created"], &empty.body["conversion_rate"]), (&json!(0), &json!(0.0)));
    for bad in ["?from=yesterday", "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"] {
        let a = app.call(Method::GET, &format!("/v1/admin/analytics/funnel{bad}"), &admin, None).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, "invalid_request"), "{bad}");
    }
    assert_eq!(app.call(Method::GET, "/v1/admin/analytics/skus?limit=0", &admin, None).await.status.as_u16(), 422);
    assert_eq!(app.call(Method::GET, "/v1/admin/analytics/funnel", &As::Nobody, None).await.status, StatusCode::UNAUTHORIZED);
});

/// Settings for abandonment tests: a cart idle for a second is abandoned, looked for often.
fn abandon_fast(s: &mut sync_server::Settings) {
    s.abandon_after_seconds = 1;
    s.abandon_check_interval_ms = 100;
    s.recovery_url = Some("https://shop.example/cart?r={token}".into());
    s.abandon_discount_percent = Some(15);
    s.abandon_discount_min_total = 5000;
}

async fn abandoned_for(app: &TestApp, user: &str) -> usize {
    recorded_events(&app.settings.database_url).await.iter().filter(|e| e.0 == "cart.abandoned" && e.2.as_deref() == Some(user)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cart_is_abandoned_once_with_its_code_and_a_paid_order_recovers_it() {
    for mode in [Mode::Redis, Mode::Embedded] {
        let app = TestApp::spawn_with(mode, abandon_fast).await;
        let receiver = Receiver::start().await;
        receiver.subscribe(&app, json!(["cart.abandoned", "cart.recovered"])).await;
        app.product("TV", 60000, 10).await;
        app.product("PEN", 100, 10).await;
        let rich = format!("rich-{}", uuid::Uuid::new_v4().simple());
        let poor = format!("poor-{}", uuid::Uuid::new_v4().simple());
        let quiet = format!("quiet-{}", uuid::Uuid::new_v4().simple());
        let opted_out = format!("out-{}", uuid::Uuid::new_v4().simple());
        let bought = format!("bought-{}", uuid::Uuid::new_v4().simple());
        let guest = As::Guest(guest_token());
        for u in [&rich, &poor, &quiet, &opted_out, &bought] {
            let sku = if u == &rich { "TV" } else { "PEN" };
            assert_eq!(app.add(&As::User(u.clone()), sku, 1).await.status, StatusCode::OK);
        }
        app.add(&guest, "PEN", 1).await;
        app.call(Method::PUT, &format!("/v1/admin/suppressions/{quiet}"), &TestApp::admin(), None).await;
        let pref =
            app.call(Method::PUT, "/v1/me/preferences", &As::User(opted_out.clone()), Some(json!({"abandonment_emails": false}))).await;
        assert_eq!((pref.status, &pref.body["abandonment_emails"]), (StatusCode::OK, &json!(false)));
        let order = app.checkout(&As::User(bought.clone()), key(), json!({})).await;
        assert_eq!(order.status, StatusCode::CREATED);

        eventually("the idle carts reported", 30, || async {
            abandoned_for(&app, &rich).await == 1 && abandoned_for(&app, &poor).await == 1
        })
        .await;
        // More runs of the job make no second report for the same idle period.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        for (u, n) in [(&rich, 1), (&poor, 1), (&quiet, 0), (&opted_out, 0), (&bought, 0)] {
            assert_eq!(abandoned_for(&app, u).await, n, "{u}");
        }
        assert_eq!(
            recorded_events(&app.settings.database_url).await.iter().filter(|e| e.0 == "cart.abandoned").count(),
            2,
            "never a guest cart"
        );
        eventually("delivered", 30, || async { receiver.events().len() == 2 }).await;
        let events = receiver.events();
        let rich_event = events.iter().find(|e| e["data"]["user"] == json!(rich)).unwrap();
        let d = &rich_event["data"];
        assert_eq!(
            d["lines"],
            json!([{"sku": "TV", "name": "Product TV", "quantity": 1, "unit_price": usd(60000), "line_total": usd(60000)}])
        );
        assert_eq!((&d["subtotal"], &d["total"]), (&usd(60000), &usd(60000)));
        assert!(d["recovery_url"].as_str().unwrap().starts_with("https://shop.example/cart?r="));
        let code = d["code"].as_str().expect("a high-value cart gets a code").to_owned();
        let poor_event = events.iter().find(|e| e["data"]["user"] == json!(poor)).unwrap();
        assert!(poor_event["data"].get("code").is_none(), "a small cart gets none");
        // The code takes 15% off, once.
        let me = As::User(rich.clone());
        let with_code = app.call(Method::POST, "/v1/cart/promo-codes", &me, Some(json!({"code": code}))).await;
        assert_eq!(with_code.body["discount_total"], usd(9000), "{:?}", with_code.body);
        let placed = app.checkout(&me, key(), json!({"expected_total": usd(51000)})).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
        assert_eq!(app.pay(&placed.body["order"], "succeeded", "p").await.status, StatusCode::OK);
        eventually("the recovery recorded", 30, || async { receiver.events().len() == 3 }).await;
        let recovered = receiver.events().into_iter().find(|e| e["type"] == "cart.recovered").unwrap();
        assert_eq!((&recovered["data"]["order_id"], &recovered["data"]["total"]), (&placed.body["order"]["id"], &usd(51000)));
        assert!(receiver.all_signed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_report_one_idle_period_once() {
    let (mut settings, dir) = TestApp::base_settings(Mode::Redis).await;
    abandon_fast(&mut settings);
    settings.abandon_check_interval_ms = 50;
    let one = TestApp::start(Mode::Redis, settings.clone(), dir).await;
    let two = TestApp::start(Mode::Redis, settings, None).await;
    let users: Vec<String> = (0..20).map(|i| format!("twin-{i}-{}", uuid::Uuid::new_v4().simple())).collect();
    for (i, u) in users.iter().enumerate() {
        let app = if i % 2 == 0 { &one } else { &two };
        assert_eq!(app.add(&As::User(u.clone()), "A", 1).await.status, StatusCode::OK);
    }
    eventually("all reported", 30, || async {
        let n = recorded_events(&one.settings.database_url).await.iter().filter(|e| e.0 == "cart.abandoned").count();
        n >= users.len()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for u in &users {
        assert_eq!(abandoned_for(&one, u).await, 1, "{u} reported exactly once by two instances");
    }
}
