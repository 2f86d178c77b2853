//! The shopper contract (`shopper.md`) end to end, in every mode: the catalog price at add,
//! merge validation, the merge preview and the `prompt` policy, unavailable lines, price quotes,
//! holds the shopper extends or cancels, `PATCH` of an item, and the development pay endpoint.

use cartsync_tests::app::{Answer, As};
use cartsync_tests::{Mode, TestApp, assert_stock_invariants, both_modes, guest_token, stock_ledger};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn guest() -> As {
    As::Guest(guest_token())
}

fn new_user() -> String {
    format!("u-{}", uuid::Uuid::new_v4())
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn usd(a: i64) -> Value {
    json!({"amount": a, "currency": "USD"})
}

async fn ledger_of(app: &TestApp, sku: &str) -> (i64, i64) {
    let l = stock_ledger(&app.settings.database_url).await;
    let (_, on_hand, reserved, _) = l.into_iter().find(|r| r.0 == sku).expect("the product exists");
    (on_hand, reserved)
}

async fn merge_with(app: &TestApp, user: &str, token: &str, extra: Value) -> Answer {
    let mut body = json!({ "guest_token": token });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    app.call(Method::POST, "/v1/cart/merge", &As::User(user.to_owned()), Some(body)).await
}

async fn preview(app: &TestApp, user: &str, token: &str) -> Answer {
    app.call(Method::POST, "/v1/cart/merge/preview", &As::User(user.to_owned()), Some(json!({ "guest_token": token }))).await
}

fn skus(list: &Value) -> Vec<(String, u64)> {
    cartsync_tests::app::list(list)
}

/// The cart's sums, from its lines alone: what the view says it totals.
fn assert_totals_follow_lines(cart: &Value) {
    let lines = cart["lines"].as_array().expect("lines");
    let count: u64 = lines.iter().map(|l| l["quantity"].as_u64().unwrap()).sum();
    let subtotal: i64 = lines.iter().map(|l| l["line_total"]["amount"].as_i64().unwrap()).sum();
    assert_eq!(cart["item_count"], count, "{cart}");
    assert_eq!(cart["subtotal"]["amount"], subtotal, "{cart}");
}

both_modes!(patch_of_an_item_sets_its_quantity_as_put_does, |app: TestApp| async move {
    let who = guest();
    app.add(&who, "A", 1).await;
    let patched = app.call(Method::PATCH, "/v1/cart/items/A", &who, Some(json!({"quantity": 4}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.lines(), vec![("A".into(), 4)]);
    let bad = app.call(Method::PATCH, "/v1/cart/items/A", &who, Some(json!({"quantity": 0}))).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "invalid_quantity"));
    let missing = app.call(Method::PATCH, "/v1/cart/items/NOPE", &who, Some(json!({"quantity": 2}))).await;
    assert_eq!((missing.status.as_u16(), missing.code()), (404, "line_not_found"));
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 4)], "the refusals changed nothing");
});

/// A product made on one instance reaches the other's price cache at its next reload (every
/// price-cache age, at least a second): a pair waits that long before relying on it.
async fn after_reload(app: &TestApp) {
    if app.instances() > 1 {
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    }
}

both_modes!(an_add_without_a_price_stores_the_catalogs, |app: TestApp| async move {
    app.product("P", 1250, 10).await;
    after_reload(&app).await;
    let who = guest();
    let added = app.add(&who, "P", 1).await;
    assert_eq!(added.body["lines"][0]["price_at_add"], usd(1250), "REST add: {:?}", added.body);
    // A price the shopper saw is kept as they saw it; a SKU the catalog lacks has none.
    let sent = app
        .ops(
            &who,
            json!([
                {"op_id": "o1", "type": "add", "sku": "Q", "quantity": 1, "price_at_add": usd(999)},
                {"op_id": "o2", "type": "add", "sku": "UNKNOWN", "quantity": 1}
            ]),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    let cart = app.get_cart(&who).await.body;
    let price = |sku: &str| cart["lines"].as_array().unwrap().iter().find(|l| l["sku"] == sku).unwrap()["price_at_add"].clone();
    assert_eq!(price("Q"), usd(999));
    assert_eq!(price("UNKNOWN"), Value::Null);
    // A new price applies to the next add of a new line at once (on the instance that made it).
    app.put_product("P2", json!({"name": "Two", "price": usd(400), "stock": 5})).await;
    app.put_product("P2", json!({"price": usd(450)})).await;
    let g = guest();
    let a = app.add(&g, "P2", 1).await;
    if app.instances() == 1 {
        assert_eq!(a.body["lines"][0]["price_at_add"], usd(450));
    } else {
        // The other instance knew the product at 4.00 for up to its cache age.
        let p = &a.body["lines"][0]["price_at_add"];
        assert!(*p == usd(450) || *p == usd(400), "{p}");
    }
});

both_modes!(a_merge_drops_a_discontinued_sku_and_names_short_lines, |app: TestApp| async move {
    app.product("GONE", 500, 10).await;
    app.product("FEW", 300, 2).await;
    app.product("OK", 100, 50).await;
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "GONE", 2).await;
    app.add(&g, "FEW", 3).await;
    app.add(&g, "NEVERKNOWN", 1).await;
    app.call(Method::POST, "/v1/cart/items/GONE/save-for-later", &g, None).await;
    app.add(&g, "GONE", 1).await;
    let user = new_user();
    app.add(&As::User(user.clone()), "OK", 1).await;
    app.product("OLD", 700, 5).await;
    app.add(&As::User(user.clone()), "OLD", 4).await;
    assert_eq!(app.put_product("GONE", json!({"active": false})).await.status, StatusCode::OK);
    assert_eq!(app.put_product("OLD", json!({"active": false})).await.status, StatusCode::OK);

    let merged = app.merge(&user, &token).await;
    assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
    assert_eq!(merged.body["merged"], true);
    assert_eq!(merged.body["validated"], true);
    assert_eq!(
        merged.body["dropped"],
        json!([
            {"sku": "GONE", "quantity": 1, "reason": "discontinued"},
            {"sku": "GONE", "quantity": 2, "reason": "discontinued"},
            {"sku": "OLD", "quantity": 4, "reason": "discontinued"}
        ]),
        "the guest's line and saved line, and the user's own line"
    );
    assert_eq!(merged.body["short"], json!([{"sku": "FEW", "requested": 3, "available": 2}]));
    let cart = app.get_cart(&As::User(user.clone())).await.body;
    assert_eq!(skus(&cart["lines"]), vec![("OK".into(), 1), ("FEW".into(), 3), ("NEVERKNOWN".into(), 1)], "a SKU never known stays");
    assert_eq!(cart["saved"], json!([]));
    // A repeat (a login retried after a lost answer) changes nothing and drops nothing again.
    let again = app.merge(&user, &token).await;
    assert_eq!((again.body["merged"].clone(), again.body["dropped"].clone()), (json!(false), json!([])));
    assert_eq!(skus(&again.body["cart"]["lines"]), skus(&cart["lines"]));
});

both_modes!(a_preview_changes_nothing_and_the_guest_cart_still_merges, |app: TestApp| async move {
    app.product("A", 100, 50).await;
    app.product("B", 200, 50).await;
    app.product("X", 900, 5).await;
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 2).await;
    app.add(&g, "B", 1).await;
    app.add(&g, "X", 1).await;
    let user = new_user();
    let u = As::User(user.clone());
    app.add(&u, "A", 3).await;
    app.product("Y", 100, 5).await;
    app.add(&u, "Y", 2).await;
    app.put_product("X", json!({"active": false})).await;
    app.put_product("Y", json!({"active": false})).await;
    let before_user = app.get_cart(&u).await.body;
    let before_guest = app.get_cart(&g).await.body;

    let p = preview(&app, &user, &token).await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    assert_eq!(skus(&p.body["policies"]["sum"]["lines"]), vec![("A".into(), 5), ("B".into(), 1)]);
    assert_eq!(skus(&p.body["policies"]["max"]["lines"]), vec![("A".into(), 3), ("B".into(), 1)]);
    assert_eq!(skus(&p.body["policies"]["keep_user"]["lines"]), vec![("A".into(), 3), ("B".into(), 1)]);
    assert_eq!(p.body["policies"]["sum"]["subtotal"], usd(700));
    assert_eq!(
        p.body["dropped"],
        json!([{"sku": "X", "quantity": 1, "reason": "discontinued"}, {"sku": "Y", "quantity": 2, "reason": "discontinued"}])
    );
    assert_eq!(p.body["validated"], true);
    assert_eq!(p.body["default_policy"], "sum");

    let after_user = app.get_cart(&u).await.body;
    let after_guest = app.get_cart(&g).await.body;
    assert_eq!((skus(&after_user["lines"]), &after_user["version"]), (skus(&before_user["lines"]), &before_user["version"]));
    assert_eq!((skus(&after_guest["lines"]), &after_guest["version"]), (skus(&before_guest["lines"]), &before_guest["version"]));
    // Not frozen: the guest still shops, and then merges by the policy the shopper picked.
    assert_eq!(app.add(&g, "B", 1).await.status, StatusCode::OK);
    let merged = merge_with(&app, &user, &token, json!({"policy": "max"})).await;
    assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
    assert_eq!(merged.lines(), vec![("A".into(), 3), ("B".into(), 2)]);
    // A merged guest cart is empty: a late preview shows the user's cart as it is.
    let late = preview(&app, &user, &token).await;
    assert_eq!(skus(&late.body["policies"]["sum"]["lines"]), merged.lines());
    // Only a user previews; a bad policy is refused.
    let as_guest = app.call(Method::POST, "/v1/cart/merge/preview", &guest(), Some(json!({"guest_token": token}))).await;
    assert_eq!(as_guest.status.as_u16(), 401);
    let bad = merge_with(&app, &user, &guest_token(), json!({"policy": "most"})).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (422, "invalid_request"));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_refuses_a_merge_without_a_policy_and_changes_nothing() {
    for mode in [Mode::Embedded, Mode::Redis] {
        let app = TestApp::spawn_with(mode, |s| s.merge_policy = sync_server::config::MergeSetting::Prompt).await;
        let token = guest_token();
        let g = As::Guest(token.clone());
        app.add(&g, "A", 2).await;
        let user = new_user();
        let u = As::User(user.clone());
        app.add(&u, "A", 1).await;
        let refused = app.merge(&user, &token).await;
        assert_eq!((refused.status.as_u16(), refused.code()), (409, "merge_policy_required"), "{mode:?}");
        assert_eq!(app.get_cart(&g).await.lines(), vec![("A".into(), 2)], "the guest cart is untouched and not frozen");
        assert_eq!(app.add(&g, "A", 1).await.status, StatusCode::OK, "{mode:?}");
        assert_eq!(app.get_cart(&u).await.lines(), vec![("A".into(), 1)]);
        assert_eq!(preview(&app, &user, &token).await.body["default_policy"], Value::Null);
        let merged = merge_with(&app, &user, &token, json!({"policy": "sum"})).await;
        assert_eq!(merged.lines(), vec![("A".into(), 4)], "{mode:?}");
    }
}

both_modes!(a_line_goes_unavailable_and_comes_back_with_its_totals, |app: TestApp| async move {
    app.product("A", 1000, 5).await;
    app.product("B", 250, 5).await;
    let who = guest();
    app.add(&who, "A", 2).await;
    app.add(&who, "B", 1).await;
    let cart = app.get_cart(&who).await.body;
    assert_eq!((cart["subtotal"].clone(), cart["unavailable"].clone()), (usd(2250), json!([])));

    app.put_product("A", json!({"stock": 0})).await;
    let out = app.get_cart(&who).await.body;
    assert_eq!(skus(&out["lines"]), vec![("B".into(), 1)], "{out}");
    assert_eq!(skus(&out["unavailable"]), vec![("A".into(), 2)]);
    assert_eq!(out["unavailable"][0]["reason"], "out_of_stock");
    assert_eq!((out["item_count"].clone(), out["subtotal"].clone(), out["total"].clone()), (json!(1), usd(250), usd(250)));
    assert_totals_follow_lines(&out);
    let version = out["version"].clone();
    // Checkout still reserves every line: the unavailable one stops it.
    let refused = app.checkout(&who, key(), json!({})).await;
    assert_eq!((refused.status.as_u16(), refused.code()), (409, "out_of_stock"));
    assert_eq!(ledger_of(&app, "B").await, (5, 0), "nothing reserved");

    app.put_product("A", json!({"stock": 3})).await;
    let back = app.get_cart(&who).await.body;
    assert_eq!(skus(&back["lines"]), vec![("A".into(), 2), ("B".into(), 1)], "restored by itself");
    assert_eq!((back["unavailable"].clone(), back["subtotal"].clone()), (json!([]), usd(2250)));
    assert_eq!(back["version"], version, "the split is a view: reads wrote nothing");

    app.put_product("B", json!({"active": false})).await;
    let gone = app.get_cart(&who).await.body;
    assert_eq!(gone["unavailable"][0]["reason"], "discontinued", "{gone}");
    let shown = app.call(Method::GET, "/v1/products?skus=A,B", &As::Nobody, None).await.body;
    assert_eq!(skus(&shown["products"]).into_iter().map(|(s, _)| s).collect::<Vec<_>>(), ["A"], "a discontinued product is not shown");
    // Saving it for later takes it out of the cart like any line.
    let saved = app.call(Method::POST, "/v1/cart/items/B/save-for-later", &who, None).await;
    assert_eq!(saved.status, StatusCode::OK);
    let now = app.get_cart(&who).await.body;
    assert_eq!((skus(&now["lines"]), now["unavailable"].clone()), (vec![("A".into(), 2)], json!([])));
    assert_eq!(skus(&now["saved"]), vec![("B".into(), 1)]);
});

both_modes!(a_hold_extends_once_then_409, |app: TestApp| async move {
    app.product("A", 500, 5).await;
    let who = As::User(new_user());
    app.add(&who, "A", 1).await;
    let order = app.checkout(&who, key(), json!({})).await.body["order"].clone();
    let id = order["id"].as_str().unwrap().to_owned();
    let until = |o: &Value| shared::Timestamp::parse_rfc3339(o["reserved_until"].as_str().unwrap()).unwrap().millis();
    let stranger = app.call(Method::POST, &format!("/v1/orders/{id}/extend"), &guest(), None).await;
    assert_eq!((stranger.status.as_u16(), stranger.code()), (404, "not_found"), "only the owner");
    let extended = app.call(Method::POST, &format!("/v1/orders/{id}/extend"), &who, None).await;
    assert_eq!(extended.status, StatusCode::OK, "{:?}", extended.body);
    assert_eq!(until(&extended.body) - until(&order), 300_000, "by CARTSYNC_HOLD_EXTEND_SECONDS");
    let twice = app.call(Method::POST, &format!("/v1/orders/{id}/extend"), &who, None).await;
    assert_eq!((twice.status.as_u16(), twice.code()), (409, "hold_not_extendable"));
    let shown = app.call(Method::GET, &format!("/v1/orders/{id}"), &who, None).await.body;
    assert_eq!(until(&shown), until(&extended.body));
    // The extended hold is still the one a payment settles.
    assert_eq!(app.pay(&order, "succeeded", "pay_1").await.body["status"], "paid");
    let paid = app.call(Method::POST, &format!("/v1/orders/{id}/extend"), &who, None).await;
    assert_eq!((paid.status.as_u16(), paid.code()), (409, "order_not_pending"));
});

both_modes!(cancel_releases_stock_promotion_uses_and_gift_card_amounts, |app: TestApp| async move {
    app.product("A", 2000, 3).await;
    let p = app
        .call(
            Method::PUT,
            "/v1/admin/promotions/tenoff",
            &TestApp::admin(),
            Some(json!({"code": "TENOFF", "usage_limit": 1, "action": {"type": "percent_off_order", "percent": 10}})),
        )
        .await;
    assert!(p.status.is_success(), "{:?}", p.body);
    let card = app.call(Method::POST, "/v1/admin/gift-cards", &TestApp::admin(), Some(json!({"balance": usd(1000)}))).await.body;
    let who = As::User(new_user());
    app.add(&who, "A", 2).await;
    assert_eq!(app.call(Method::POST, "/v1/cart/promo-codes", &who, Some(json!({"code": "TENOFF"}))).await.status, StatusCode::OK);
    let placed = app.checkout(&who, key(), json!({"gift_cards": [card["code"]]})).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let id = placed.body["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(ledger_of(&app, "A").await, (3, 2));
    let admin_as = TestApp::admin();
    let admin = async |path: String| app.call(Method::GET, &path, &admin_as, None).await;
    assert_eq!(admin("/v1/admin/promotions/tenoff".into()).await.body["pending_redemptions"], 1);
    let card_id = card["id"].as_str().unwrap();
    assert_eq!(admin(format!("/v1/admin/gift-cards/{card_id}")).await.body["held"], usd(1000));

    let stranger = app.call(Method::POST, &format!("/v1/orders/{id}/cancel"), &guest(), None).await;
    assert_eq!(stranger.status.as_u16(), 404);
    let cancelled = app.call(Method::POST, &format!("/v1/orders/{id}/cancel"), &who, None).await;
    assert_eq!((cancelled.status, cancelled.body["status"].clone()), (StatusCode::OK, json!("cancelled")), "{:?}", cancelled.body);
    assert_eq!(ledger_of(&app, "A").await, (3, 0), "the stock is free at once");
    assert_eq!(admin("/v1/admin/promotions/tenoff".into()).await.body["pending_redemptions"], 0);
    let card_now = admin(format!("/v1/admin/gift-cards/{card_id}")).await.body;
    assert_eq!((card_now["held"].clone(), card_now["balance"].clone()), (usd(0), usd(1000)));
    let again = app.call(Method::POST, &format!("/v1/orders/{id}/cancel"), &who, None).await;
    assert_eq!((again.status, again.body["status"].clone()), (StatusCode::OK, json!("cancelled")), "a repeat answers alike");
    let late = app.pay(&placed.body["order"], "succeeded", "pay_late").await;
    assert_eq!((late.status.as_u16(), late.code()), (409, "order_not_pending"));
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 2)], "the cart stays for another try");
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(extend_and_cancel_racing_on_one_order_each_happen_at_most_once, |app: TestApp| async move {
    app.product("A", 100, 10).await;
    let who = As::User(new_user());
    app.add(&who, "A", 4).await;
    let id = app.checkout(&who, key(), json!({})).await.body["order"]["id"].as_str().unwrap().to_owned();
    let calls = (0..10).map(|i| {
        let path = format!("/v1/orders/{id}/{}", if i % 2 == 0 { "extend" } else { "cancel" });
        let who = who.clone();
        let app = &app;
        async move { app.call(Method::POST, &path, &who, None).await }
    });
    let answers = futures::future::join_all(calls).await;
    let extended = answers.iter().enumerate().filter(|(i, a)| i % 2 == 0 && a.status == StatusCode::OK).count();
    assert!(extended <= 1, "extended {extended} times");
    assert!(answers.iter().all(|a| a.status.as_u16() < 500), "{answers:?}");
    assert_eq!(ledger_of(&app, "A").await, (10, 0), "cancelled, and released once");
    assert_stock_invariants(&app.settings.database_url).await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_pay_endpoint_pays_through_the_signed_webhook_only_when_enabled() {
    for mode in [Mode::Embedded, Mode::Redis] {
        let off = TestApp::spawn(mode).await;
        let a = off.call(Method::POST, "/v1/dev/orders/ord_x/pay", &guest(), Some(json!({"status": "succeeded"}))).await;
        assert_eq!((a.status.as_u16(), a.code()), (404, "not_found"), "{mode:?}: off without CARTSYNC_DEV_LOGIN");

        let app = TestApp::spawn_with(mode, |s| s.dev_login = true).await;
        app.product("A", 700, 2).await;
        let who = guest();
        app.add(&who, "A", 1).await;
        let id = app.checkout(&who, key(), json!({})).await.body["order"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/dev/orders/{id}/pay");
        let bad = app.call(Method::POST, &path, &who, Some(json!({"status": "maybe"}))).await;
        assert_eq!((bad.status.as_u16(), bad.code()), (422, "invalid_request"));
        let stranger = app.call(Method::POST, &path, &guest(), Some(json!({"status": "succeeded"}))).await;
        assert_eq!(stranger.status.as_u16(), 404, "only the order's owner");
        let paid = app.call(Method::POST, &path, &who, Some(json!({"status": "succeeded"}))).await;
        assert_eq!((paid.status, paid.body["status"].clone()), (StatusCode::OK, json!("paid")), "{mode:?}: {:?}", paid.body);
        assert_eq!(ledger_of(&app, "A").await, (1, 0));
        assert_eq!(app.get_cart(&who).await.lines(), vec![], "the paid lines left the cart");
    }
}

async fn quote(app: &TestApp, who: &As) -> Answer {
    app.call(Method::POST, "/v1/cart/quote", who, None).await
}

both_modes!(a_quote_holds_prices_through_a_raise_and_never_lowers_a_later_line, |app: TestApp| async move {
    app.product("A", 1000, 5).await;
    app.product("B", 300, 5).await;
    let who = As::User(new_user());
    app.add(&who, "A", 2).await;
    let q = quote(&app, &who).await;
    assert_eq!(q.status, StatusCode::CREATED, "{:?}", q.body);
    assert_eq!(q.body["lines"], json!([{"sku": "A", "quantity": 2, "unit_price": usd(1000), "discount": usd(0), "line_total": usd(2000)}]));
    assert_eq!((q.body["subtotal"].clone(), q.body["total"].clone()), (usd(2000), usd(2000)));
    let token = q.body["quote"].as_str().unwrap().to_owned();
    // The flash sale ends: A costs more now; B is added after the quote, and B is cheaper.
    app.put_product("A", json!({"price": usd(1500)})).await;
    app.add(&who, "B", 1).await;
    let order = app.checkout(&who, key(), json!({"quote": token})).await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let lines = order.body["order"]["lines"].as_array().unwrap().clone();
    let unit = |sku: &str| lines.iter().find(|l| l["sku"] == sku).unwrap()["unit_price"].clone();
    assert_eq!((unit("A"), unit("B")), (usd(1000), usd(300)), "A at the quoted price, B at its live one");
    assert_eq!(order.body["order"]["total"], usd(2300));
    assert_eq!(ledger_of(&app, "A").await, (5, 2));
});

both_modes!(a_forged_stale_or_foreign_quote_is_refused_and_nothing_is_reserved, |app: TestApp| async move {
    app.product("A", 1000, 5).await;
    let who = As::User(new_user());
    app.add(&who, "A", 2).await;
    let token = quote(&app, &who).await.body["quote"].as_str().unwrap().to_owned();
    let reason = |a: &Answer| (a.status.as_u16(), a.code().to_owned(), a.body["error"]["reason"].as_str().unwrap_or("").to_owned());

    // An edited payload (a lower price) with the old signature.
    let (payload, tag) = token.split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(b64.decode(payload).unwrap()).unwrap().replace("1000", "1");
    let edited = format!("{}.{tag}", b64.encode(text));
    for bad in [edited, format!("{token}x"), "not-a-quote".to_owned()] {
        let a = app.checkout(&who, key(), json!({"quote": bad})).await;
        assert_eq!(reason(&a), (409, "quote_invalid".into(), "forged".into()), "{:?}", a.body);
    }
    // Another shopper's quote for the same lines.
    let other = As::User(new_user());
    app.add(&other, "A", 2).await;
    let theirs = app.checkout(&other, key(), json!({"quote": token})).await;
    assert_eq!(reason(&theirs), (409, "quote_invalid".into(), "forged".into()));
    // The cart changed since the quote.
    app.add(&who, "A", 1).await;
    let stale = app.checkout(&who, key(), json!({"quote": token})).await;
    assert_eq!(reason(&stale), (409, "quote_invalid".into(), "cart_changed".into()));
    let wrong_type = app.checkout(&who, key(), json!({"quote": 5})).await;
    assert_eq!((wrong_type.status.as_u16(), wrong_type.code()), (422, "invalid_request"));
    assert_eq!(ledger_of(&app, "A").await, (5, 0), "nothing reserved by any refusal");
    let empty = quote(&app, &guest()).await;
    assert_eq!((empty.status.as_u16(), empty.code()), (422, "cart_empty"));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_quote_is_refused() {
    let app = TestApp::spawn_with(Mode::Embedded, |s| s.price_lock_seconds = 1).await;
    app.product("A", 1000, 5).await;
    let who = guest();
    app.add(&who, "A", 1).await;
    let q = quote(&app, &who).await.body;
    let expires = shared::Timestamp::parse_rfc3339(q["expires_at"].as_str().unwrap()).unwrap().millis();
    let issued = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(expires - issued <= 1_000, "CARTSYNC_PRICE_LOCK_SECONDS");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let a = app.checkout(&who, key(), json!({"quote": q["quote"]})).await;
    assert_eq!((a.status.as_u16(), a.code(), a.body["error"]["reason"].as_str()), (409, "quote_invalid", Some("expired")));
    assert_eq!(ledger_of(&app, "A").await, (5, 0));
}

both_modes!(racing_merges_with_different_policies_merge_once_by_the_winners_policy, |app: TestApp| async move {
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 2).await;
    let user = new_user();
    app.add(&As::User(user.clone()), "A", 3).await;
    let calls = (0..20).map(|i| {
        let policy = if i % 2 == 0 { "sum" } else { "max" };
        let (app, user, token) = (&app, user.clone(), token.clone());
        async move { (policy, merge_with(app, &user, &token, json!({ "policy": policy })).await) }
    });
    let answers = futures::future::join_all(calls).await;
    let winners: Vec<&str> = answers.iter().filter(|(_, a)| a.body["merged"] == true).map(|(p, _)| *p).collect();
    assert_eq!(winners.len(), 1, "exactly one merges: {answers:?}");
    assert!(answers.iter().all(|(_, a)| a.status == StatusCode::OK), "{answers:?}");
    let expected = if winners[0] == "sum" { 5 } else { 3 };
    assert_eq!(app.get_cart(&As::User(user)).await.lines(), vec![("A".into(), expected)], "by the policy of the merge that ran");
});

both_modes!(a_cancel_racing_a_payment_settles_the_order_one_way, |app: TestApp| async move {
    app.product("A", 400, 4).await;
    let who = As::User(new_user());
    app.add(&who, "A", 2).await;
    let order = app.checkout(&who, key(), json!({})).await.body["order"].clone();
    let id = order["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orders/{id}/cancel");
    let cancel = app.call(Method::POST, &path, &who, None);
    let pay = app.pay(&order, "succeeded", "pay_race");
    let (cancelled, paid) = tokio::join!(cancel, pay);
    let status = app.call(Method::GET, &format!("/v1/orders/{id}"), &who, None).await.body["status"].clone();
    match status.as_str().unwrap() {
        "paid" => {
            assert_eq!((cancelled.status.as_u16(), cancelled.code()), (409, "order_not_pending"));
            assert_eq!(ledger_of(&app, "A").await, (2, 0), "sold");
        }
        "cancelled" => {
            assert_eq!((paid.status.as_u16(), paid.code()), (409, "order_not_pending"));
            assert_eq!(ledger_of(&app, "A").await, (4, 0), "released");
        }
        other => panic!("the order ended {other}"),
    }
    assert_stock_invariants(&app.settings.database_url).await;
});

both_modes!(the_shopper_endpoints_refuse_bad_input_cleanly, |app: TestApp| async move {
    let user = As::User(new_user());
    let raw = |path: &str, who: &As, body: &'static str| {
        app.send(app.request(Method::POST, path, who).header("content-type", "application/json").body(body))
    };
    for path in ["/v1/cart/merge/preview", "/v1/cart/merge"] {
        let bad_json = raw(path, &user, "{nope").await;
        assert_eq!((bad_json.status.as_u16(), bad_json.code()), (400, "invalid_json"), "{path}");
        let no_token = app.call(Method::POST, path, &user, Some(json!({}))).await;
        assert_eq!((no_token.status.as_u16(), no_token.code()), (400, "invalid_cart_token"), "{path}");
        let not_object = app.call(Method::POST, path, &user, Some(json!([1, 2]))).await;
        assert_eq!(not_object.status.as_u16(), 422, "{path}: {:?}", not_object.body);
        let forged = app
            .call(Method::POST, path, &As::Header("authorization", "Bearer x.y.z".into()), Some(json!({"guest_token": guest_token()})))
            .await;
        assert_eq!((forged.status.as_u16(), forged.code()), (401, "unauthorized"), "{path}");
    }
    let bad_policy = merge_with(&app, &new_user(), &guest_token(), json!({"policy": 3})).await;
    assert_eq!((bad_policy.status.as_u16(), bad_policy.code()), (422, "invalid_request"));
    for action in ["extend", "cancel"] {
        let unknown = app.call(Method::POST, &format!("/v1/orders/ord_nope/{action}"), &user, None).await;
        assert_eq!((unknown.status.as_u16(), unknown.code()), (404, "not_found"), "{action}");
        let long = app.call(Method::POST, &format!("/v1/orders/{}/{action}", "x".repeat(5000)), &user, None).await;
        assert_eq!(long.status.as_u16(), 404, "{action}");
    }
    let no_cart = app.call(Method::POST, "/v1/cart/quote", &As::Nobody, None).await;
    assert_eq!((no_cart.status.as_u16(), no_cart.code()), (422, "cart_empty"));
    app.add(&user, "A", 1).await;
    let huge = app.checkout(&user, key(), json!({"quote": "q".repeat(100_000)})).await;
    assert_eq!((huge.status.as_u16(), huge.code()), (409, "quote_invalid"));
    let patched = app.call(Method::PATCH, "/v1/cart/items/A", &user, Some(json!({"quantity": "2"}))).await;
    assert_eq!((patched.status.as_u16(), patched.code()), (422, "invalid_quantity"));
    assert_eq!(app.get_cart(&user).await.lines(), vec![("A".into(), 1)], "nothing changed");
});
