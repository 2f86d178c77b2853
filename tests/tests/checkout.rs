//! Checkout end to end: live pricing, all-or-nothing stock holds, idempotency, orders, the
//! payment webhook and the hold sweeper, against real stores in both modes.

use cartsync_tests::app::As;
use cartsync_tests::{Mode, TestApp, assert_stock_invariants, both_modes, guest_token, stock_ledger};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

fn guest() -> As {
    As::Guest(guest_token())
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn ledger_of(app: &TestApp, sku: &str) -> (i64, i64) {
    let l = stock_ledger(&app.settings.database_url).await;
    let (_, on_hand, reserved, _) = l.into_iter().find(|r| r.0 == sku).expect("the product exists");
    (on_hand, reserved)
}

both_modes!(the_last_ten_units_sell_to_exactly_ten_of_two_hundred_buyers, |app: TestApp| async move {
    app.product("HOT", 1500, 10).await;
    let buyers: Vec<As> = (0..200).map(|_| guest()).collect();
    for b in &buyers {
        assert_eq!(app.add(b, "HOT", 1).await.status, StatusCode::OK);
    }
    let answers = futures::future::join_all(buyers.iter().map(|b| app.checkout(b, key(), json!({})))).await;
    let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    let sold_out = answers.iter().filter(|a| a.status == StatusCode::CONFLICT && a.code() == "out_of_stock").count();
    assert_eq!(
        (created, sold_out),
        (10, 190),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::CREATED && a.code() != "out_of_stock")
    );
    for a in answers.iter().filter(|a| a.status == StatusCode::CONFLICT) {
        assert_eq!(a.body["error"]["items"], json!([{"sku": "HOT", "requested": 1, "available": 0}]));
    }
    assert_eq!(ledger_of(&app, "HOT").await, (10, 10));
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(fifty_checkouts_with_one_key_make_one_order_and_answer_alike, |app: TestApp| async move {
    app.product("A", 1000, 5).await;
    let who = As::User(format!("u-{}", uuid::Uuid::new_v4()));
    app.add(&who, "A", 2).await;
    let k = key();
    let answers = futures::future::join_all((0..50).map(|_| app.checkout(&who, &k, json!({})))).await;
    let first = &answers[0];
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    for a in &answers {
        assert_eq!((a.status, &a.body), (first.status, &first.body), "every answer is the first one");
    }
    assert_eq!(ledger_of(&app, "A").await, (5, 2), "one order's worth reserved");

    let other_body = app.checkout(&who, &k, json!({"expected_total": {"amount": 2000, "currency": "USD"}})).await;
    assert_eq!((other_body.status.as_u16(), other_body.code()), (422, "idempotency_key_reused"));
    let replay = app.checkout(&who, &k, json!({})).await;
    assert_eq!((replay.status, replay.body.clone()), (first.status, first.body.clone()), "the key still replays afterwards");

    // Keys belong to their owner: another shopper's identical key is their own.
    let stranger = guest();
    app.add(&stranger, "A", 1).await;
    let theirs = app.checkout(&stranger, &k, json!({})).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["order"]["id"], first.body["order"]["id"]);
});

both_modes!(one_short_line_reserves_nothing_at_all, |app: TestApp| async move {
    app.product("A", 100, 5).await;
    app.product("B", 200, 5).await;
    app.product("C", 300, 1).await;
    let who = guest();
    app.add(&who, "A", 2).await;
    app.add(&who, "B", 3).await;
    app.add(&who, "C", 2).await;
    let a = app.checkout(&who, &key(), json!({})).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "out_of_stock"));
    assert_eq!(a.body["error"]["items"], json!([{"sku": "C", "requested": 2, "available": 1}]));
    for sku in ["A", "B", "C"] {
        assert_eq!(ledger_of(&app, sku).await.1, 0, "{sku} has nothing reserved");
    }
    let unknown = guest();
    app.add(&unknown, "NOT-SOLD", 1).await;
    let u = app.checkout(&unknown, &key(), json!({})).await;
    assert_eq!(u.body["error"]["items"], json!([{"sku": "NOT-SOLD", "requested": 1, "available": 0}]));
});

both_modes!(a_raised_price_is_caught_before_anything_is_reserved, |app: TestApp| async move {
    app.product("TEE", 1999, 10).await;
    let who = guest();
    let added = app
        .call(
            Method::POST,
            "/v1/cart/items",
            &who,
            Some(json!({"sku": "TEE", "quantity": 2, "price_at_add": {"amount": 1999, "currency": "USD"}})),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK);
    // A write answers from the annotation cache without waiting on the database; a read looks up.
    let read = app.get_cart(&who).await;
    assert_eq!(read.body["lines"][0]["current_price"], json!({"amount": 1999, "currency": "USD"}));
    assert_eq!(read.body["lines"][0]["price_changed"], false);
    assert_eq!(read.body["lines"][0]["availability"], "in_stock");
    let next_write = app.add(&who, "TEE", 1).await;
    assert_eq!(next_write.body["lines"][0]["current_price"], json!({"amount": 1999, "currency": "USD"}), "now cached");
    app.call(Method::PUT, "/v1/cart/items/TEE", &who, Some(json!({"quantity": 2}))).await;

    app.put_product("TEE", json!({"price": {"amount": 2499, "currency": "USD"}})).await;
    let cart = app.get_cart(&who).await;
    assert_eq!(cart.body["lines"][0]["current_price"], json!({"amount": 2499, "currency": "USD"}));
    assert_eq!(cart.body["lines"][0]["price_changed"], true);
    assert_eq!(cart.body["subtotal"]["amount"], 4998, "the subtotal uses current prices");

    let stale = app.checkout(&who, &key(), json!({"expected_total": {"amount": 3998, "currency": "USD"}})).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "price_changed"));
    assert_eq!(
        stale.body["error"]["changes"],
        json!([{"sku": "TEE", "price_at_add": {"amount": 1999, "currency": "USD"}, "current_price": {"amount": 2499, "currency": "USD"}}])
    );
    assert_eq!(stale.body["error"]["total"], json!({"amount": 4998, "currency": "USD"}));
    assert_eq!(ledger_of(&app, "TEE").await.1, 0, "nothing reserved");

    let ok = app.checkout(&who, &key(), json!({"expected_total": {"amount": 4998, "currency": "USD"}})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    let order = &ok.body["order"];
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(
        order["lines"],
        json!([{"sku": "TEE", "quantity": 2, "unit_price": {"amount": 2499, "currency": "USD"}, "price_at_add": {"amount": 1999, "currency": "USD"},
                "discount": {"amount": 0, "currency": "USD"}, "line_total": {"amount": 4998, "currency": "USD"}}])
    );
    assert_eq!(order["total"], json!({"amount": 4998, "currency": "USD"}));
    assert_eq!(
        (&order["subtotal"], &order["discount_total"], &order["amount_due"]),
        (&order["total"], &json!({"amount": 0, "currency": "USD"}), &order["total"])
    );
    assert_eq!((&order["discounts"], &order["gift_cards"]), (&json!([]), &json!([])));
    assert!(order["reserved_until"].as_str().is_some() && order["created_at"].as_str().is_some());
});

both_modes!(payment_deducts_stock_once_and_takes_the_order_out_of_the_cart, |app: TestApp| async move {
    app.product("A", 700, 10).await;
    app.product("B", 300, 10).await;
    let who = As::User(format!("u-{}", uuid::Uuid::new_v4()));
    app.add(&who, "A", 2).await;
    let order = app.checkout(&who, &key(), json!({})).await.body["order"].clone();
    let id = order["id"].as_str().unwrap();
    // Added after the checkout: not part of the order, so the payment leaves them in the cart.
    app.add(&who, "A", 1).await;
    app.add(&who, "B", 4).await;

    let body = json!({"order_id": id, "status": "succeeded", "payment_ref": "p1", "amount": order["total"]}).to_string();
    let unsigned = app.send(app.http.post(format!("{}/v1/orders/{id}/payment", app.base)).body(body.clone())).await;
    assert_eq!((unsigned.status.as_u16(), unsigned.code()), (401, "invalid_signature"));
    let forged = app.webhook(id, &body, "t=1800000000,v1=00ff").await;
    assert_eq!((forged.status.as_u16(), forged.code()), (401, "invalid_signature"));
    let wrong_secret =
        app.webhook(id, &body, &cartsync_tests::sign_webhook_at(&body, cartsync_tests::unix_now() as i64, "not-the-secret")).await;
    assert_eq!((wrong_secret.status.as_u16(), wrong_secret.code()), (401, "invalid_signature"));
    let old_style =
        app.send(app.http.post(format!("{}/v1/orders/{id}/payment", app.base)).header("x-signature", "sha256=00").body(body.clone())).await;
    assert_eq!(old_style.status.as_u16(), 401, "the old unsigned-time scheme is refused");
    assert_eq!(ledger_of(&app, "A").await, (10, 2), "a refused webhook changes nothing");

    let paid = app.pay(&order, "succeeded", "pay_1").await;
    assert_eq!(paid.status, StatusCode::OK, "{:?}", paid.body);
    assert_eq!(paid.body["status"], "paid");
    assert_eq!(paid.body["payment_ref"], "pay_1");
    let again = app.pay(&order, "succeeded", "pay_1").await;
    assert_eq!((again.status, again.body.clone()), (paid.status, paid.body.clone()), "a replay answers the same");
    assert_eq!(ledger_of(&app, "A").await, (8, 0), "stock deducted once, hold gone");
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 1), ("B".into(), 4)], "exactly what was ordered left the cart");
    let late_failure = app.pay(&order, "failed", "pay_1").await;
    assert_eq!((late_failure.status.as_u16(), late_failure.code()), (409, "order_not_pending"));
    let unknown = json!({"order_id": "ord_nope", "status": "succeeded", "payment_ref": "x", "amount": order["total"]}).to_string();
    assert_eq!(app.webhook("ord_nope", &unknown, &cartsync_tests::sign_webhook(&unknown)).await.status.as_u16(), 404);
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 1), ("B".into(), 4)], "replays took nothing more");
    // Long after: the cart has applied more op ids than it remembers, so the order's own op ids
    // are forgotten; a replayed payment still takes nothing (the order remembers it was taken).
    for batch in 0..3 {
        let ops: Vec<_> =
            (0..400).map(|i| json!({"op_id": format!("later-{batch}-{i}"), "type": "add", "sku": "C", "quantity": 1})).collect();
        assert_eq!(app.ops(&who, json!(ops)).await.status, StatusCode::OK);
    }
    assert_eq!(app.pay(&order, "succeeded", "pay_1").await.status, StatusCode::OK);
    assert_eq!(
        app.get_cart(&who).await.lines(),
        vec![("A".into(), 1), ("B".into(), 4), ("C".into(), 99)],
        "a replay after the op ids are forgotten took nothing"
    );
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(a_signed_notice_pays_only_its_own_order_for_its_own_amount_once, |app: TestApp| async move {
    app.product("A", 500, 10).await;
    let (alice, bob) = (guest(), guest());
    app.add(&alice, "A", 1).await;
    app.add(&bob, "A", 2).await;
    let a = app.checkout(&alice, &key(), json!({})).await.body["order"].clone();
    let b = app.checkout(&bob, &key(), json!({})).await.body["order"].clone();
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    // A body signed for Alice's order, sent to Bob's: refused, whatever its status.
    for status in ["succeeded", "failed"] {
        let body = json!({"order_id": a_id, "status": status, "payment_ref": "pa", "amount": a["total"]}).to_string();
        let moved = app.webhook(b_id, &body, &cartsync_tests::sign_webhook(&body)).await;
        assert_eq!((moved.status.as_u16(), moved.code()), (422, "invalid_request"), "{status}");
    }
    // The signature covers the body: Bob's id swapped into Alice's signed body does not check.
    let signed = json!({"order_id": a_id, "status": "failed", "payment_ref": "pa"}).to_string();
    let sig = cartsync_tests::sign_webhook(&signed);
    let edited = signed.replace(a_id, b_id);
    assert_eq!(app.webhook(b_id, &edited, &sig).await.code(), "invalid_signature");
    // A stale or future moment is refused even with a good signature.
    let body = json!({"order_id": b_id, "status": "succeeded", "payment_ref": "pb", "amount": b["total"]}).to_string();
    let now = cartsync_tests::unix_now() as i64;
    for t in [now - 301, now + 301, now - 86_400] {
        let late = app.webhook(b_id, &body, &cartsync_tests::sign_webhook_at(&body, t, cartsync_tests::WEBHOOK_SECRET)).await;
        assert_eq!((late.status.as_u16(), late.code()), (401, "invalid_signature"), "t = now {:+}", t - now);
    }
    // Not the amount due: refused, nothing changes.
    for amount in [json!({"amount": 999, "currency": "USD"}), json!({"amount": 1000, "currency": "EUR"})] {
        let short = json!({"order_id": b_id, "status": "succeeded", "payment_ref": "pb", "amount": amount}).to_string();
        let refused = app.webhook(b_id, &short, &cartsync_tests::sign_webhook(&short)).await;
        assert_eq!((refused.status.as_u16(), refused.code()), (409, "amount_mismatch"), "{:?}", refused.body);
        assert_eq!(refused.body["error"]["amount_due"], b["total"]);
    }
    let missing = json!({"order_id": b_id, "status": "succeeded", "payment_ref": "pb"}).to_string();
    assert_eq!(app.webhook(b_id, &missing, &cartsync_tests::sign_webhook(&missing)).await.status.as_u16(), 422);
    assert_eq!(ledger_of(&app, "A").await, (10, 3), "both holds still live");
    for order in [&a, &b] {
        let o = app.call(Method::GET, &format!("/v1/orders/{}", order["id"].as_str().unwrap()), &As::Nobody, None).await;
        assert_eq!(o.status.as_u16(), 404, "orders stay private");
    }
    assert_eq!(app.call(Method::GET, &format!("/v1/orders/{b_id}"), &bob, None).await.body["status"], "pending_payment");

    // Paid once; a second success with another payment reference is a double charge, never silent.
    assert_eq!(app.pay(&b, "succeeded", "pb").await.body["status"], "paid");
    let double = app.pay(&b, "succeeded", "pb-again").await;
    assert_eq!((double.status.as_u16(), double.code()), (409, "order_not_pending"));
    assert_eq!(double.body["error"]["order"]["payment_ref"], "pb");
    assert_eq!(ledger_of(&app, "A").await, (8, 1), "Bob's two units sold once; Alice's still held");
    assert_eq!(app.call(Method::GET, &format!("/v1/orders/{a_id}"), &alice, None).await.body["status"], "pending_payment");
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(a_guest_who_logs_in_before_paying_has_the_order_taken_out_of_the_user_cart, |app: TestApp| async move {
    app.product("A", 100, 10).await;
    app.product("B", 200, 10).await;
    let token = guest_token();
    let shopper = As::Guest(token.clone());
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let me = As::User(user.clone());
    app.add(&me, "B", 1).await;
    app.add(&shopper, "A", 2).await;
    let order = app.checkout(&shopper, &key(), json!({})).await.body["order"].clone();
    let merged = app.merge(&user, &token).await;
    assert_eq!(merged.body["merged"], true);
    app.add(&me, "A", 1).await;
    assert_eq!(app.get_cart(&me).await.lines(), vec![("B".into(), 1), ("A".into(), 3)]);
    let paid = app.pay(&order, "succeeded", "p").await;
    assert_eq!(paid.status, StatusCode::OK, "{:?}", paid.body);
    assert_eq!(app.get_cart(&me).await.lines(), vec![("B".into(), 1), ("A".into(), 1)], "the order's two units left the user's cart");
    assert_eq!(app.pay(&order, "succeeded", "p").await.status, StatusCode::OK);
    assert_eq!(app.get_cart(&me).await.lines(), vec![("B".into(), 1), ("A".into(), 1)], "once");
    assert_eq!(app.get_cart(&shopper).await.lines(), vec![], "the guest cart stays empty");
});

both_modes!(racing_webhooks_settle_an_order_exactly_once, |app: TestApp| async move {
    app.product("A", 400, 5).await;
    let who = As::User(format!("u-{}", uuid::Uuid::new_v4()));
    app.add(&who, "A", 2).await;
    let order = app.checkout(&who, &key(), json!({})).await.body["order"].clone();
    app.add(&who, "A", 1).await;
    // The provider retries a success while a failure for the same order races it.
    let answers = futures::future::join_all((0..16).map(|i| {
        let (app, order) = (&app, &order);
        async move { (i % 2 == 0, app.pay(order, if i % 2 == 0 { "succeeded" } else { "failed" }, "p-race").await) }
    }))
    .await;
    let status = app.call(Method::GET, &format!("/v1/orders/{}", order["id"].as_str().unwrap()), &who, None).await.body["status"].clone();
    let winner_succeeded = status == "paid";
    assert!(winner_succeeded || status == "cancelled", "{status}");
    for (succeeded, a) in &answers {
        if *succeeded == winner_succeeded {
            assert_eq!((a.status, &a.body["status"]), (StatusCode::OK, &status), "the winning side answers the order");
        } else {
            assert_eq!((a.status.as_u16(), a.code()), (409, "order_not_pending"), "the losing side is refused: {:?}", a.body);
        }
    }
    let (stock, lines) = if winner_succeeded { ((3, 0), vec![("A".to_owned(), 1)]) } else { ((5, 0), vec![("A".to_owned(), 3)]) };
    assert_eq!(ledger_of(&app, "A").await, stock);
    assert_eq!(app.get_cart(&who).await.lines(), lines, "the order left the cart once, or not at all");
    assert_stock_invariants(&app.settings.database_url).await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_cart_step_fails_is_finished_by_the_providers_retry() {
    let redis = cartsync_tests::RedisServer::dedicated();
    let app = TestApp::spawn_with(Mode::Redis, |s| s.redis_url = Some(redis.url.clone())).await;
    app.product("A", 250, 5).await;
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let who = As::User(user.clone());
    app.add(&who, "A", 2).await;
    let order = app.checkout(&who, &key(), json!({})).await.body["order"].clone();
    app.add(&who, "EXTRA", 1).await;
    cartsync_tests::wait_for_durable_version(&app.settings.database_url, &user, 2).await;

    redis.stop();
    let first = app.pay(&order, "succeeded", "p-1").await;
    assert_eq!((first.status.as_u16(), first.code()), (503, "unavailable"), "{:?}", first.body);
    assert_eq!(ledger_of(&app, "A").await, (3, 0), "the payment itself was recorded, once");

    redis.restart();
    let mut retried = None;
    for _ in 0..100 {
        let a = app.pay(&order, "succeeded", "p-1").await;
        if a.status == StatusCode::OK {
            retried = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = retried.expect("the provider's retry succeeds once Redis is back");
    assert_eq!(retried.body["status"], "paid");
    assert_eq!(ledger_of(&app, "A").await, (3, 0), "not deducted twice");
    assert_eq!(app.get_cart(&who).await.lines(), vec![("EXTRA".to_owned(), 1)], "the restored cart lost the order's lines, once");
    assert_eq!(app.pay(&order, "succeeded", "p-1").await.status, StatusCode::OK);
    assert_eq!(app.get_cart(&who).await.lines(), vec![("EXTRA".to_owned(), 1)]);
    redis.stop();
}

both_modes!(a_failed_payment_cancels_and_releases, |app: TestApp| async move {
    app.product("A", 700, 3).await;
    let who = guest();
    app.add(&who, "A", 3).await;
    let order = app.checkout(&who, &key(), json!({})).await.body["order"].clone();
    assert_eq!(ledger_of(&app, "A").await, (3, 3));
    let failed = app.pay(&order, "failed", "pay_x").await;
    assert_eq!(failed.body["status"], "cancelled");
    assert_eq!(ledger_of(&app, "A").await, (3, 0));
    assert_eq!(app.pay(&order, "failed", "pay_x").await.body["status"], "cancelled", "replay");
    let late = app.pay(&order, "succeeded", "pay_y").await;
    assert_eq!((late.status.as_u16(), late.code()), (409, "order_not_pending"));
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 3)], "the cart stays for another try");
});

both_modes!(orders_are_visible_to_their_owner_only, |app: TestApp| async move {
    app.product("A", 100, 10).await;
    let owner = As::User(format!("u-{}", uuid::Uuid::new_v4()));
    app.add(&owner, "A", 1).await;
    let id = app.checkout(&owner, &key(), json!({})).await.body["order"]["id"].as_str().unwrap().to_owned();
    let mine = app.call(Method::GET, &format!("/v1/orders/{id}"), &owner, None).await;
    assert_eq!((mine.status, mine.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    for stranger in [As::User("someone-else".into()), guest(), As::Nobody] {
        let a = app.call(Method::GET, &format!("/v1/orders/{id}"), &stranger, None).await;
        assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "not_found"), "{stranger:?}");
    }
    let g = guest();
    app.add(&g, "A", 1).await;
    let gid = app.checkout(&g, &key(), json!({})).await.body["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.call(Method::GET, &format!("/v1/orders/{gid}"), &g, None).await.status, StatusCode::OK);
    assert_eq!(app.call(Method::GET, &format!("/v1/orders/{gid}"), &owner, None).await.status, StatusCode::NOT_FOUND);
});

both_modes!(a_new_checkout_replaces_the_shoppers_own_hold, |app: TestApp| async move {
    app.product("LAST", 100, 1).await;
    let who = guest();
    app.add(&who, "LAST", 1).await;
    let first = app.checkout(&who, &key(), json!({})).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.checkout(&who, &key(), json!({})).await;
    assert_eq!(second.status, StatusCode::CREATED, "never blocked by their own hold: {:?}", second.body);
    assert_eq!(ledger_of(&app, "LAST").await, (1, 1));
    let old = app.call(Method::GET, &format!("/v1/orders/{}", first.body["order"]["id"].as_str().unwrap()), &who, None).await;
    assert_eq!(old.body["status"], "cancelled");
    let late = app.pay(&first.body["order"], "succeeded", "p").await;
    assert_eq!((late.status.as_u16(), late.code()), (409, "order_not_pending"));
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(checkout_refuses_bad_requests_cleanly, |app: TestApp| async move {
    let who = guest();
    let empty = app.checkout(&who, &key(), json!({})).await;
    assert_eq!((empty.status.as_u16(), empty.code()), (422, "cart_empty"));
    let no_key = app.call(Method::POST, "/v1/cart/checkout", &who, Some(json!({}))).await;
    assert_eq!((no_key.status.as_u16(), no_key.code()), (400, "invalid_idempotency_key"));
    let long_key = app.checkout(&who, &"k".repeat(256), json!({})).await;
    assert_eq!(long_key.code(), "invalid_idempotency_key");
    let bad_total = app.checkout(&who, &key(), json!({"expected_total": 10})).await;
    assert_eq!((bad_total.status.as_u16(), bad_total.code()), (422, "invalid_money"));
    let bad_json = app.send(app.request(Method::POST, "/v1/cart/checkout", &who).header("idempotency-key", "k1").body("{nope")).await;
    assert_eq!((bad_json.status.as_u16(), bad_json.code()), (400, "invalid_json"));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_come_back_and_late_payments_are_refused() {
    let app = TestApp::spawn_with(Mode::Redis, |s| {
        s.hold_seconds = 1;
        s.sweep_interval_ms = 100;
    })
    .await;
    app.product("A", 100, 4).await;
    let who = guest();
    app.add(&who, "A", 3).await;
    let order = app.checkout(&who, &key(), json!({})).await.body["order"].clone();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(ledger_of(&app, "A").await, (4, 3));
    let mut released = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if ledger_of(&app, "A").await == (4, 0) {
            released = true;
            break;
        }
    }
    assert!(released, "the sweeper released the expired hold");
    let late = app.pay(&order, "succeeded", "late").await;
    assert_eq!((late.status.as_u16(), late.code()), (409, "reservation_expired"));
    assert_eq!(ledger_of(&app, "A").await, (4, 0), "nothing deducted");
    let order = app.call(Method::GET, &format!("/v1/orders/{id}"), &who, None).await;
    assert_eq!(order.body["status"], "expired");
    assert_stock_invariants(&app.settings.database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sweepers_release_each_hold_once() {
    let a = TestApp::spawn_with(Mode::Redis, |s| {
        s.hold_seconds = 1;
        s.sweep_interval_ms = 20;
    })
    .await;
    let mut settings = a.settings.clone();
    settings.redis_prefix = format!("{}b", settings.redis_prefix);
    let b = TestApp::start(Mode::Redis, settings, None).await;
    a.product("S", 10, 100).await;
    for _ in 0..30 {
        let who = guest();
        a.add(&who, "S", 2).await;
        assert_eq!(a.checkout(&who, &key(), json!({})).await.status, StatusCode::CREATED);
    }
    assert_eq!(ledger_of(&a, "S").await, (100, 60));
    let mut done = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_stock_invariants(&a.settings.database_url).await;
        if ledger_of(&a, "S").await == (100, 0) {
            done = true;
            break;
        }
    }
    assert!(done, "every hold was released");
    drop(b);
}

both_modes!(the_catalog_is_administered_behind_its_token, |app: TestApp| async move {
    let anon = app
        .call(Method::PUT, "/v1/admin/products/A", &As::Nobody, Some(json!({"name": "a", "price": {"amount": 1, "currency": "USD"}})))
        .await;
    assert_eq!((anon.status.as_u16(), anon.code()), (401, "unauthorized"));
    let wrong = app
        .call(
            Method::PUT,
            "/v1/admin/products/A",
            &As::Header("authorization", "Bearer nope".into()),
            Some(json!({"name": "a", "price": {"amount": 1, "currency": "USD"}})),
        )
        .await;
    assert_eq!(wrong.status.as_u16(), 401);
    let incomplete = app.put_product("A", json!({"stock": 3})).await;
    assert_eq!((incomplete.status.as_u16(), incomplete.code()), (422, "invalid_request"));
    let euro = app.put_product("A", json!({"name": "a", "price": {"amount": 1, "currency": "EUR"}})).await;
    assert_eq!(euro.code(), "currency_mismatch");
    let negative = app.put_product("A", json!({"name": "a", "price": {"amount": 1, "currency": "USD"}, "stock": -1})).await;
    assert_eq!(negative.status.as_u16(), 422);

    let created = app.put_product("A", json!({"name": "Tee", "price": {"amount": 1500, "currency": "USD"}, "stock": 3})).await;
    assert_eq!(
        created.body,
        json!({"sku": "A", "name": "Tee", "price": {"amount": 1500, "currency": "USD"}, "active": true, "stock": 3, "reserved": 0, "available": 3})
    );
    let renamed = app.put_product("A", json!({"name": "Tee 2"})).await;
    assert_eq!((renamed.body["name"].clone(), renamed.body["stock"].clone()), (json!("Tee 2"), json!(3)), "only named fields change");
    assert_eq!(app.admin_product("A").await["name"], "Tee 2");
    let unknown = app
        .call(Method::GET, "/v1/admin/products/ZZZ", &As::Header("authorization", format!("Bearer {}", cartsync_tests::ADMIN_TOKEN)), None)
        .await;
    assert_eq!((unknown.status.as_u16(), unknown.code()), (404, "unknown_product"));

    let who = guest();
    app.add(&who, "A", 2).await;
    app.checkout(&who, &key(), json!({})).await;
    let below = app.put_product("A", json!({"stock": 1})).await;
    assert_eq!((below.status.as_u16(), below.code()), (409, "stock_below_reserved"));

    let admin = As::Header("authorization", format!("Bearer {}", cartsync_tests::ADMIN_TOKEN));
    let bulk_bad = app
        .call(
            Method::POST,
            "/v1/admin/products",
            &admin,
            Some(json!([{"sku": "B1", "name": "b", "price": {"amount": 1, "currency": "USD"}}, {"sku": "bad sku", "name": "c", "price": {"amount": 1, "currency": "USD"}}])),
        )
        .await;
    assert_eq!((bulk_bad.status.as_u16(), bulk_bad.code()), (422, "invalid_request"));
    assert!(bulk_bad.body["error"]["errors"][0].as_str().unwrap().starts_with("item 1:"));
    assert_eq!(app.admin_product("B1").await["error"]["code"], "unknown_product", "nothing of a bad load is loaded");
    let bulk = app
        .call(
            Method::POST,
            "/v1/admin/products",
            &admin,
            Some(json!([{"sku": "B1", "name": "b", "price": {"amount": 1, "currency": "USD"}, "stock": 4}])),
        )
        .await;
    assert_eq!(bulk.body, json!({"loaded": 1}));

    let products = app.call(Method::GET, "/v1/products?skus=B1,A,UNKNOWN", &As::Nobody, None).await;
    assert_eq!(
        products.body,
        json!({"products": [
            {"sku": "B1", "name": "b", "price": {"amount": 1, "currency": "USD"}, "available": 4, "availability": "low_stock"},
            {"sku": "A", "name": "Tee 2", "price": {"amount": 1500, "currency": "USD"}, "available": 1, "availability": "low_stock"},
        ]})
    );
    let bad = app.call(Method::GET, "/v1/products?skus=a%20b", &As::Nobody, None).await;
    assert_eq!(bad.code(), "invalid_sku");
    let listed = app.call(Method::GET, "/v1/products", &As::Nobody, None).await;
    let skus: Vec<&str> = listed.body["products"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, ["A", "B1"], "without a list: the products on sale, by SKU");
});

#[tokio::test]
async fn the_import_command_loads_all_or_nothing_and_names_bad_lines() {
    let (mut settings, _) = TestApp::base_settings(Mode::Redis).await;
    settings.redis_url = None;
    sync_server::durable::Durable::connect(&settings.database_url).await.expect("the schema is created");
    let dir = std::env::temp_dir().join(format!("cartsync-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "sku,name,price_amount,currency,stock\nA,Tee,1999,USD,10\nB,Mug,abc,USD,1\nC,Cap,5,USD,-2\n").unwrap();
    let err = sync_server::import::run(&settings, &bad).await.unwrap_err();
    assert!(err.contains("line 3:") && err.contains("line 4:") && !err.contains("line 2:"), "{err}");
    assert!(stock_ledger(&settings.database_url).await.is_empty(), "nothing loaded from a bad file");

    let rows: String = (0..2500).map(|i| format!("SKU-{i},Product {i},{},USD,{}\n", 100 + i, i % 7)).collect();
    let good = dir.join("good.csv");
    std::fs::write(&good, format!("sku,name,price_amount,currency,stock\n{rows}")).unwrap();
    let summary = sync_server::import::run(&settings, &good).await.unwrap();
    assert!(summary.starts_with("imported 2500 products"), "{summary}");
    let json_file = dir.join("more.json");
    std::fs::write(&json_file, r#"[{"sku": "SKU-1", "name": "Renamed", "price": {"amount": 5, "currency": "USD"}, "stock": 9}]"#).unwrap();
    sync_server::import::run(&settings, &json_file).await.unwrap();
    let ledger = stock_ledger(&settings.database_url).await;
    assert_eq!(ledger.len(), 2500);
    assert_eq!(ledger.iter().find(|r| r.0 == "SKU-1").map(|r| r.1), Some(9));
    std::fs::remove_dir_all(dir).unwrap();
}
