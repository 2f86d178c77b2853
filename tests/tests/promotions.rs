//! Promotions, promo codes and gift cards end to end (`promotions.md`), in both modes: amounts
//! computed by hand, reasons, merge, checkout totals, usage limits and gift card balances under
//! concurrent checkouts, payments that give uses and balances back, and gift card codes as
//! secrets.

use cartsync_tests::app::As;
use cartsync_tests::{Mode, TestApp, both_modes, guest_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn guest() -> As {
    As::Guest(guest_token())
}

fn user() -> As {
    As::User(format!("u-{}", uuid::Uuid::new_v4().simple()))
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn usd(a: i64) -> Value {
    json!({"amount": a, "currency": "USD"})
}

async fn promotion(app: &TestApp, id: &str, body: Value) -> Value {
    let a = app.call(Method::PUT, &format!("/v1/admin/promotions/{id}"), &TestApp::admin(), Some(body)).await;
    assert!(a.status == StatusCode::CREATED || a.status == StatusCode::OK, "{:?}", a.body);
    a.body
}

async fn admin_promotion(app: &TestApp, id: &str) -> Value {
    app.call(Method::GET, &format!("/v1/admin/promotions/{id}"), &TestApp::admin(), None).await.body
}

async fn apply_code(app: &TestApp, who: &As, code: &str) -> cartsync_tests::app::Answer {
    app.call(Method::POST, "/v1/cart/promo-codes", who, Some(json!({ "code": code }))).await
}

async fn gift_card(app: &TestApp, amount: i64) -> (String, String) {
    let a = app.call(Method::POST, "/v1/admin/gift-cards", &TestApp::admin(), Some(json!({"balance": usd(amount)}))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    (a.body["id"].as_str().unwrap().to_owned(), a.body["code"].as_str().unwrap().to_owned())
}

async fn admin_card(app: &TestApp, id: &str) -> Value {
    app.call(Method::GET, &format!("/v1/admin/gift-cards/{id}"), &TestApp::admin(), None).await.body
}

/// The contract's sums hold on a cart resource.
fn assert_sums(cart: &Value) {
    let amount = |v: &Value| v["amount"].as_i64().unwrap();
    let lines = cart["lines"].as_array().unwrap();
    let discounts: i64 = cart["discounts"].as_array().unwrap().iter().map(|d| amount(&d["amount"])).sum();
    assert_eq!(amount(&cart["total"]), amount(&cart["subtotal"]) - amount(&cart["discount_total"]), "{cart}");
    assert_eq!(amount(&cart["discount_total"]), discounts, "{cart}");
    assert_eq!(amount(&cart["discount_total"]), lines.iter().map(|l| amount(&l["discount"])).sum::<i64>(), "{cart}");
    assert_eq!(amount(&cart["total"]), lines.iter().map(|l| amount(&l["line_total"])).sum::<i64>(), "{cart}");
}

both_modes!(every_action_takes_off_what_the_contract_computes, |app: TestApp| async move {
    app.product("BOOK", 39900, 1000).await;
    app.product("PEN", 250, 1000).await;
    app.product("INK", 999, 1000).await;
    app.product("TEE", 2000, 1000).await;
    app.product("CAP", 1500, 1000).await;

    // 10% off 25 × 399.00: exactly 997.50 off.
    promotion(&app, "ten", json!({"code": "TEN", "description": "10% off", "action": {"type": "percent_off_order", "percent": 10}})).await;
    let who = guest();
    app.add(&who, "BOOK", 25).await;
    let cart = apply_code(&app, &who, "ten").await;
    assert_eq!(cart.status, StatusCode::OK, "{:?}", cart.body);
    assert_eq!((&cart.body["subtotal"], &cart.body["discount_total"], &cart.body["total"]), (&usd(997_500), &usd(99_750), &usd(897_750)));
    assert_eq!(cart.body["promo_codes"], json!([{"code": "TEN", "applied": true}]));
    assert_eq!(cart.body["discounts"], json!([{"promotion": "ten", "code": "TEN", "description": "10% off", "amount": usd(99_750)}]));
    assert_sums(&cart.body);

    // An order discount spread over lines by their amounts, largest remainder to the earlier line:
    // 10% of 3 × 2.50 + 1 × 9.99 = 1.749 → 1.75 (half-even on 174.9 → 175), split 75 : 99.9.
    let two = guest();
    app.add(&two, "PEN", 3).await;
    app.add(&two, "INK", 1).await;
    let cart = apply_code(&app, &two, "TEN").await.body;
    assert_eq!(cart["discount_total"], usd(175));
    assert_eq!((&cart["lines"][0]["discount"], &cart["lines"][1]["discount"]), (&usd(75), &usd(100)));
    assert_eq!((&cart["lines"][0]["line_total"], &cart["lines"][1]["line_total"]), (&usd(675), &usd(899)));
    assert_sums(&cart);

    // Item actions, buy-x-get-y and bundles, each alone on a fresh cart.
    let cases = [
        (
            "pct-items",
            json!({"code": "PI", "action": {"type": "percent_off_items", "percent": 15, "skus": ["TEE"]}}),
            vec![("TEE", 3), ("CAP", 1)],
            900,
        ),
        (
            "amt-items",
            json!({"code": "AI", "action": {"type": "amount_off_items", "amount": usd(500), "skus": ["PEN"]}}),
            vec![("PEN", 4)],
            1000,
        ),
        (
            "bogo",
            json!({"code": "BOGO", "action": {"type": "buy_x_get_y", "skus": ["TEE", "CAP"], "buy": 1, "get": 1, "percent": 100}}),
            vec![("TEE", 1), ("CAP", 3)],
            3000,
        ),
        (
            "bundle",
            json!({"code": "KIT", "action": {"type": "bundle", "items": [{"sku": "TEE", "quantity": 1}, {"sku": "CAP", "quantity": 1}], "price": usd(3000)}}),
            vec![("TEE", 2), ("CAP", 3)],
            1000,
        ),
        (
            "amt-order",
            json!({"code": "FIVE", "action": {"type": "amount_off_order", "amount": usd(500)}, "max_discount": usd(300)}),
            vec![("PEN", 1)],
            250,
        ),
    ];
    for (id, def, lines, expected) in cases {
        promotion(&app, id, def.clone()).await;
        let who = guest();
        for (sku, q) in &lines {
            app.add(&who, sku, *q).await;
        }
        let cart = apply_code(&app, &who, def["code"].as_str().unwrap()).await.body;
        assert_eq!(cart["discount_total"], usd(expected), "{id}: {cart}");
        assert_sums(&cart);
    }
});

both_modes!(codes_are_checked_kept_with_their_reasons_and_removed, |app: TestApp| async move {
    app.product("A", 1000, 100).await;
    promotion(&app, "big", json!({"code": "BIGSPEND", "action": {"type": "percent_off_order", "percent": 20}, "min_subtotal": usd(5000)}))
        .await;
    promotion(&app, "small", json!({"code": "SMALL", "action": {"type": "amount_off_order", "amount": usd(100)}})).await;
    promotion(
        &app,
        "later",
        json!({"code": "LATER", "starts_at": "2999-01-01T00:00:00Z", "action": {"type": "percent_off_order", "percent": 5}}),
    )
    .await;
    promotion(
        &app,
        "gone",
        json!({"code": "GONE", "ends_at": "2001-01-01T00:00:00Z", "action": {"type": "percent_off_order", "percent": 5}}),
    )
    .await;
    promotion(
        &app,
        "mine",
        json!({"code": "MEMBERS", "usage_limit_per_customer": 1, "action": {"type": "percent_off_order", "percent": 50}}),
    )
    .await;
    let who = guest();
    app.add(&who, "A", 2).await;

    for (code, status, error) in [
        ("not a code", 422, "invalid_promo_code"),
        ("NOSUCH", 422, "promo_code_not_found"),
        ("LATER", 422, "promo_code_not_found"),
        ("GONE", 422, "promo_code_not_found"),
    ] {
        let a = apply_code(&app, &who, code).await;
        assert_eq!((a.status.as_u16(), a.code()), (status, error), "{code}: {:?}", a.body);
    }
    assert_eq!(apply_code(&app, &who, "GONE").await.body["error"]["reason"], "expired");
    for bad in [json!({}), json!({"code": 5}), json!({"code": ""}), json!(["BIG"])] {
        let a = app.call(Method::POST, "/v1/cart/promo-codes", &who, Some(bad.clone())).await;
        assert_eq!(a.status.as_u16(), 422, "{bad}: {:?}", a.body);
    }

    let cart = apply_code(&app, &who, "bigspend").await.body;
    assert_eq!(
        cart["promo_codes"],
        json!([{"code": "BIGSPEND", "applied": false, "reason": "min_subtotal_not_met", "missing": usd(3000)}])
    );
    assert_eq!(cart["discount_total"], usd(0));
    let cart = apply_code(&app, &who, "SMALL").await.body;
    assert_eq!(cart["promo_codes"][1], json!({"code": "SMALL", "applied": true}));
    let cart = apply_code(&app, &who, "MEMBERS").await.body;
    assert_eq!(cart["promo_codes"][2], json!({"code": "MEMBERS", "applied": false, "reason": "login_required"}));
    // The minimum met: the kept code applies by itself, and the better of the two exclusive ones wins.
    let cart = app.add(&who, "A", 3).await.body;
    assert_eq!(cart["promo_codes"][0], json!({"code": "BIGSPEND", "applied": true}));
    assert_eq!(cart["promo_codes"][1], json!({"code": "SMALL", "applied": false, "reason": "not_best"}));
    assert_eq!(cart["discount_total"], usd(1000));
    assert_sums(&cart);
    let same = apply_code(&app, &who, "BIGSPEND").await.body;
    assert_eq!(same["version"], cart["version"], "a code already on the cart changes nothing");

    // Five codes at most.
    for (id, code) in [("c4", "FOURTH"), ("c5", "FIFTH"), ("c6", "SIXTH")] {
        promotion(&app, id, json!({"code": code, "action": {"type": "percent_off_order", "percent": 1}})).await;
    }
    assert_eq!(apply_code(&app, &who, "FOURTH").await.status, StatusCode::OK);
    assert_eq!(apply_code(&app, &who, "FIFTH").await.status, StatusCode::OK);
    let sixth = apply_code(&app, &who, "SIXTH").await;
    assert_eq!((sixth.status.as_u16(), sixth.code()), (422, "too_many_promo_codes"));
    assert_eq!(app.get_cart(&who).await.body["promo_codes"].as_array().unwrap().len(), 5, "nothing changed");

    let removed = app.call(Method::DELETE, "/v1/cart/promo-codes/bigspend", &who, None).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(removed.body["promo_codes"].as_array().unwrap().iter().all(|c| c["code"] != "BIGSPEND"));
    let absent = app.call(Method::DELETE, "/v1/cart/promo-codes/BIGSPEND", &who, None).await;
    assert_eq!((absent.status, &absent.body["version"]), (StatusCode::OK, &removed.body["version"]), "removing an absent code is no error");
    let bad = app.call(Method::DELETE, "/v1/cart/promo-codes/no%20spaces", &who, None).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "invalid_promo_code"));

    // The same as ops, exactly once each.
    let offline = guest();
    app.add(&offline, "A", 1).await;
    let ops = json!([{"op_id": "p1", "type": "apply_promo_code", "code": "small"}, {"op_id": "p2", "type": "remove_promo_code", "code": "SMALL"},
                     {"op_id": "p1", "type": "apply_promo_code", "code": "SMALL"}, {"op_id": "p3", "type": "apply_promo_code", "code": "bad code"}]);
    let a = app.ops(&offline, ops).await;
    let statuses: Vec<&str> = a.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["applied", "applied", "duplicate", "rejected"]);
    assert_eq!(a.body["cart"]["promo_codes"], json!([]));
});

both_modes!(merge_keeps_both_carts_codes_and_the_best_one_wins, |app: TestApp| async move {
    app.product("A", 2000, 100).await;
    promotion(&app, "g", json!({"code": "GUEST20", "action": {"type": "percent_off_order", "percent": 20}})).await;
    promotion(&app, "u", json!({"code": "USER10", "action": {"type": "percent_off_order", "percent": 10}})).await;
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 1).await;
    apply_code(&app, &g, "GUEST20").await;
    let u = format!("u-{}", uuid::Uuid::new_v4().simple());
    app.add(&As::User(u.clone()), "A", 1).await;
    apply_code(&app, &As::User(u.clone()), "USER10").await;
    let merged = app.merge(&u, &token).await;
    assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
    let cart = &merged.body["cart"];
    assert_eq!(
        cart["promo_codes"],
        json!([{"code": "USER10", "applied": false, "reason": "not_best"}, {"code": "GUEST20", "applied": true}])
    );
    assert_eq!(cart["discount_total"], usd(800));
    assert_sums(cart);

    // Past five codes between the two carts, the ones whose promotion alone takes the most off
    // the merged cart stay.
    for (id, code, percent) in [("p1", "ONE", 1), ("p2", "TWO", 2), ("p3", "THREE", 3), ("p4", "FOUR", 4), ("p50", "HALF", 50)] {
        promotion(&app, id, json!({"code": code, "action": {"type": "percent_off_order", "percent": percent}})).await;
    }
    let u2 = format!("u-{}", uuid::Uuid::new_v4().simple());
    let me = As::User(u2.clone());
    app.add(&me, "A", 1).await;
    for code in ["TWO", "ONE", "FOUR", "THREE"] {
        assert_eq!(apply_code(&app, &me, code).await.status, StatusCode::OK);
    }
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 1).await;
    apply_code(&app, &g, "HALF").await;
    apply_code(&app, &g, "USER10").await;
    let merged = app.merge(&u2, &token).await;
    let codes: Vec<&str> = merged.body["cart"]["promo_codes"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["TWO", "FOUR", "THREE", "HALF", "USER10"], "ONE (1%) gave way; the rest keep their order");
    assert_eq!(merged.body["cart"]["discount_total"], usd(2000), "half of 2 × 20.00");
});

both_modes!(two_hundred_checkouts_against_a_ten_use_code_make_exactly_ten_orders, |app: TestApp| async move {
    app.product("A", 1000, 1000).await;
    promotion(&app, "ten-uses", json!({"code": "LIMITED", "usage_limit": 10, "action": {"type": "percent_off_order", "percent": 50}}))
        .await;
    let buyers: Vec<As> = (0..200).map(|_| guest()).collect();
    for b in &buyers {
        app.add(b, "A", 1).await;
        assert_eq!(apply_code(&app, b, "LIMITED").await.status, StatusCode::OK);
    }
    let answers = futures::future::join_all(buyers.iter().map(|b| app.checkout(b, key(), json!({})))).await;
    let created: Vec<&Value> = answers.iter().filter(|a| a.status == StatusCode::CREATED).map(|a| &a.body["order"]).collect();
    let refused = answers.iter().filter(|a| a.status == StatusCode::CONFLICT && a.code() == "promotion_unavailable").count();
    assert_eq!(
        (created.len(), refused),
        (10, 190),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::CREATED && a.code() != "promotion_unavailable")
    );
    for o in &created {
        assert_eq!((&o["total"], &o["discount_total"]), (&usd(500), &usd(500)));
    }
    let refusal = answers.iter().find(|a| a.status == StatusCode::CONFLICT).unwrap();
    assert_eq!(refusal.body["error"]["promotions"], json!([{"code": "LIMITED", "reason": "usage_limit_reached"}]));
    let p = admin_promotion(&app, "ten-uses").await;
    assert_eq!((&p["redemptions"], &p["pending_redemptions"]), (&json!(0), &json!(10)));
    let reserved = app.admin_product("A").await["reserved"].clone();
    assert_eq!(reserved, json!(10), "the refused checkouts reserved nothing");

    // One paid, one failed: the failed one gives its use back, and a waiting shopper gets it.
    assert_eq!(app.pay(created[0], "succeeded", "pay-1").await.status, StatusCode::OK);
    assert_eq!(app.pay(created[1], "failed", "pay-2").await.status, StatusCode::OK);
    let p = admin_promotion(&app, "ten-uses").await;
    assert_eq!((&p["redemptions"], &p["pending_redemptions"]), (&json!(1), &json!(8)));
    let waiting = buyers.iter().zip(&answers).find(|(_, a)| a.status == StatusCode::CONFLICT).unwrap().0;
    let again = app.checkout(waiting, key(), json!({})).await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_eq!(again.body["order"]["discount_total"], usd(500));
    let late = buyers.iter().zip(&answers).filter(|(_, a)| a.status == StatusCode::CONFLICT).nth(1).unwrap().0;
    assert_eq!(app.checkout(late, key(), json!({})).await.code(), "promotion_unavailable", "all ten taken again");
    let view = app.get_cart(late).await.body;
    assert_eq!(view["promo_codes"], json!([{"code": "LIMITED", "applied": false, "reason": "usage_limit_reached"}]));
    // Removing the code lets the shopper check out at full price.
    app.call(Method::DELETE, "/v1/cart/promo-codes/LIMITED", late, None).await;
    let full = app.checkout(late, key(), json!({"expected_total": usd(1000)})).await;
    assert_eq!(full.status, StatusCode::CREATED, "{:?}", full.body);
});

both_modes!(a_per_customer_limit_counts_each_users_orders, |app: TestApp| async move {
    app.product("A", 1000, 100).await;
    promotion(
        &app,
        "welcome",
        json!({"code": "WELCOME", "usage_limit_per_customer": 1, "action": {"type": "amount_off_order", "amount": usd(300)}}),
    )
    .await;
    let alice = user();
    app.add(&alice, "A", 1).await;
    apply_code(&app, &alice, "WELCOME").await;
    // Two racing checkouts of one user with two keys: the second replaces the first, one use.
    let first = app.checkout(&alice, key(), json!({"expected_total": usd(700)})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let order = first.body["order"].clone();
    assert_eq!(app.pay(&order, "succeeded", "p-1").await.status, StatusCode::OK);
    let cart = app.get_cart(&alice).await.body;
    assert_eq!(cart["promo_codes"], json!([]), "the used code left the cart with the ordered lines");
    app.add(&alice, "A", 1).await;
    let cart = apply_code(&app, &alice, "WELCOME").await.body;
    assert_eq!(cart["promo_codes"], json!([{"code": "WELCOME", "applied": false, "reason": "usage_limit_reached"}]));
    let second = app.checkout(&alice, key(), json!({})).await;
    assert_eq!((second.status, second.code()), (StatusCode::CONFLICT, "promotion_unavailable"));
    // Another user still has their one use.
    let bob = user();
    app.add(&bob, "A", 1).await;
    assert_eq!(apply_code(&app, &bob, "WELCOME").await.body["promo_codes"][0]["applied"], true);
});

both_modes!(fifty_checkouts_spending_one_gift_card_never_take_more_than_its_balance, |app: TestApp| async move {
    app.product("A", 1500, 1000).await;
    let (card_id, code) = gift_card(&app, 5000).await;
    let buyers: Vec<As> = (0..50).map(|_| guest()).collect();
    for b in &buyers {
        app.add(b, "A", 1).await;
    }
    let answers = futures::future::join_all(buyers.iter().map(|b| app.checkout(b, key(), json!({"gift_cards": [code.clone()]})))).await;
    let orders: Vec<&Value> = answers.iter().filter(|a| a.status == StatusCode::CREATED).map(|a| &a.body["order"]).collect();
    let refused: Vec<&Value> =
        answers.iter().filter(|a| a.status == StatusCode::CONFLICT && a.code() == "gift_card_unavailable").map(|a| &a.body).collect();
    assert_eq!(
        (orders.len(), refused.len()),
        (4, 46),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::CREATED && a.code() != "gift_card_unavailable")
    );
    let taken: i64 = orders.iter().map(|o| o["gift_cards"][0]["amount"]["amount"].as_i64().unwrap()).sum();
    assert_eq!(taken, 5000, "exactly the balance, never more");
    let paid = orders.iter().filter(|o| o["status"] == "paid").count();
    let pending: Vec<&&Value> = orders.iter().filter(|o| o["status"] == "pending_payment").collect();
    assert_eq!((paid, pending.len()), (3, 1), "three paid in full by the card, one with 10.00 still due");
    assert_eq!(pending[0]["amount_due"], usd(1000));
    assert_eq!(refused[0]["error"]["gift_cards"], json!([{"last4": code[code.len() - 4..], "reason": "no_balance"}]));
    let card = admin_card(&app, &card_id).await;
    assert_eq!((&card["balance"], &card["held"]), (&usd(500), &usd(500)), "3 × 15.00 spent, 5.00 held: {card}");
    assert!(card.get("code").is_none() && !card.to_string().contains(&code), "the admin never sees the code");

    // A paid-in-full order left the cart at once; its payment failing is impossible (nothing due).
    let paid_buyer = buyers.iter().zip(&answers).find(|(_, a)| a.body["order"]["status"] == "paid").unwrap().0;
    assert_eq!(app.get_cart(paid_buyer).await.body["lines"], json!([]));
    // The pending order's payment fails: the card gets its 5.00 back.
    assert_eq!(app.pay(*pending[0], "failed", "pay-x").await.status, StatusCode::OK);
    let card = admin_card(&app, &card_id).await;
    assert_eq!((&card["balance"], &card["held"]), (&usd(500), &usd(0)));
    let balance = app.call(Method::POST, "/v1/gift-cards/balance", &As::Nobody, Some(json!({"code": code.to_lowercase()}))).await;
    assert_eq!((balance.status, &balance.body["balance"]), (StatusCode::OK, &usd(500)), "{:?}", balance.body);
});

both_modes!(gift_cards_and_codes_together_and_a_price_changed_answer, |app: TestApp| async move {
    app.product("A", 4000, 100).await;
    promotion(&app, "quarter", json!({"code": "QUARTER", "action": {"type": "percent_off_order", "percent": 25}})).await;
    let (_, code_a) = gift_card(&app, 1000).await;
    let (_, code_b) = gift_card(&app, 50_000).await;
    let who = guest();
    app.add(&who, "A", 1).await;
    apply_code(&app, &who, "QUARTER").await;
    let stale = app.checkout(&who, key(), json!({"expected_total": usd(4000), "gift_cards": [code_a.clone()]})).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "price_changed"), "the discounted total is 30.00");
    assert_eq!(stale.body["error"]["total"], usd(3000));
    let unknown = app.checkout(&who, key(), json!({"gift_cards": ["ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ"]})).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::CONFLICT, "gift_card_unavailable"));
    assert_eq!(unknown.body["error"]["gift_cards"], json!([{"last4": "ZZZZ", "reason": "unknown"}]));
    let ok = app.checkout(&who, key(), json!({"expected_total": usd(3000), "gift_cards": [code_a.clone(), code_b.clone()]})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    let order = &ok.body["order"];
    assert_eq!(
        (&order["subtotal"], &order["discount_total"], &order["total"], &order["amount_due"]),
        (&usd(4000), &usd(1000), &usd(3000), &usd(0))
    );
    assert_eq!(
        order["gift_cards"],
        json!([{"last4": &code_a[code_a.len() - 4..], "amount": usd(1000)}, {"last4": &code_b[code_b.len() - 4..], "amount": usd(2000)}])
    );
    assert_eq!(order["status"], "paid");
    for bad in [
        json!({"gift_cards": "X"}),
        json!({"gift_cards": [1]}),
        json!({"gift_cards": ["a", "b", "c", "d", "e", "f"]}),
        json!({"gift_cards": ["!!"]}),
    ] {
        let a = app.checkout(&who, key(), bad.clone()).await;
        assert_eq!(a.status.as_u16(), 422, "{bad}: {:?}", a.body);
    }
});

both_modes!(admin_input_is_checked_and_nothing_partial_is_stored, |app: TestApp| async move {
    let admin = TestApp::admin();
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"action": {"type": "percent_off_order", "percent": 0}}), "invalid_request"),
        (json!({"action": {"type": "percent_off_order", "percent": 150}}), "invalid_request"),
        (json!({"action": {"type": "amount_off_order", "amount": {"amount": 5, "currency": "EUR"}}}), "currency_mismatch"),
        (json!({"code": "has space", "action": {"type": "percent_off_order", "percent": 5}}), "invalid_promo_code"),
        (json!({"action": {"type": "bundle", "items": [], "price": usd(1)}}), "invalid_request"),
    ] {
        let a = app.call(Method::PUT, "/v1/admin/promotions/p1", &admin, Some(body.clone())).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, code), "{body}: {:?}", a.body);
    }
    let bad_id = app
        .call(Method::PUT, "/v1/admin/promotions/has%20space", &admin, Some(json!({"action": {"type": "percent_off_order", "percent": 5}})))
        .await;
    assert_eq!(bad_id.status.as_u16(), 422);
    assert_eq!(app.call(Method::GET, "/v1/admin/promotions/p1", &admin, None).await.status, StatusCode::NOT_FOUND, "nothing was stored");
    let nobody = app
        .call(Method::PUT, "/v1/admin/promotions/p1", &As::Nobody, Some(json!({"action": {"type": "percent_off_order", "percent": 5}})))
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);

    promotion(&app, "p1", json!({"code": "SAME", "action": {"type": "percent_off_order", "percent": 5}})).await;
    let clash = app
        .call(
            Method::PUT,
            "/v1/admin/promotions/p2",
            &admin,
            Some(json!({"code": "same", "action": {"type": "percent_off_order", "percent": 5}})),
        )
        .await;
    assert_eq!((clash.status.as_u16(), clash.code()), (422, "invalid_promo_code"), "codes are unique, whatever their case");
    let replaced = app
        .call(
            Method::PUT,
            "/v1/admin/promotions/p1",
            &admin,
            Some(json!({"code": "SAME", "action": {"type": "percent_off_order", "percent": 7}})),
        )
        .await;
    assert_eq!((replaced.status, &replaced.body["action"]["percent"]), (StatusCode::OK, &json!(7)));
    let listed = app.call(Method::GET, "/v1/admin/promotions", &admin, None).await.body;
    assert_eq!(listed["promotions"].as_array().unwrap().len(), 1);
    let gone = app.call(Method::DELETE, "/v1/admin/promotions/p1", &admin, None).await;
    assert_eq!((gone.status, &gone.body["active"]), (StatusCode::OK, &json!(false)));
    let who = guest();
    app.add(&who, "A", 1).await;
    assert_eq!(apply_code(&app, &who, "SAME").await.body["error"]["reason"], "inactive");

    for body in [
        json!({}),
        json!({"balance": usd(0)}),
        json!({"balance": {"amount": 100, "currency": "EUR"}}),
        json!({"balance": usd(100), "expires_at": "soon"}),
    ] {
        let a = app.call(Method::POST, "/v1/admin/gift-cards", &admin, Some(body.clone())).await;
        assert_eq!(a.status.as_u16(), 422, "{body}: {:?}", a.body);
    }
    assert_eq!(app.call(Method::GET, "/v1/admin/gift-cards/gc_nothing", &admin, None).await.code(), "gift_card_not_found");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gift_card_codes_cannot_be_guessed_by_enumeration() {
    let app = TestApp::spawn_with(Mode::Embedded, |s| {
        s.gift_card_guesses = 3;
        s.gift_card_guess_seconds = 3600;
    })
    .await;
    let (id, code) = gift_card(&app, 2500).await;
    assert_eq!(code.replace('-', "").len(), 20, "20 symbols of 5 bits: 100 random bits");
    let balance = |c: String| {
        let app = &app;
        async move { app.call(Method::POST, "/v1/gift-cards/balance", &As::Nobody, Some(json!({ "code": c }))).await }
    };
    let ok = balance(code.clone()).await;
    assert_eq!((ok.status, &ok.body["balance"], &ok.body["last4"]), (StatusCode::OK, &usd(2500), &json!(&code[code.len() - 4..])));
    assert!(ok.body.get("code").is_none());
    for i in 0..3 {
        let a = balance(format!("0000-0000-0000-0000-000{i}")).await;
        assert_eq!((a.status.as_u16(), a.code()), (404, "gift_card_not_found"), "guess {i}");
    }
    let refused = balance("0000-0000-0000-0000-0009".into()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(wait >= 1, "{wait}");
    let blocked = balance(code.clone()).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "a blocked client learns nothing, not even of a real code");
    // A disabled card is not found either.
    app.call(Method::POST, &format!("/v1/admin/gift-cards/{id}/disable"), &TestApp::admin(), None).await;
    let card = admin_card(&app, &id).await;
    assert_eq!(card["disabled"], true);
}
