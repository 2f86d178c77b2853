//! Requests an attacker (or a buggy client) would send, each answered with a documented 4xx and
//! leaving nothing behind: invented carts and keys at checkout, totals past what money can hold,
//! unreadable query strings.

use cartsync_tests::app::As;
use cartsync_tests::{TestApp, both_modes, guest_token};
use reqwest::Method;
use serde_json::json;

/// Rows of the idempotency key table.
async fn idempotency_rows(app: &TestApp) -> i64 {
    cartsync_tests::scalar(&app.settings.database_url, "SELECT COUNT(*) FROM idempotency_keys").await
}

both_modes!(checkouts_of_invented_carts_store_nothing, |app: TestApp| async move {
    for i in 0..20 {
        let a = app.checkout(&As::Guest(guest_token()), format!("random-key-{i}"), json!({})).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, "cart_empty"));
        let a = app.checkout(&As::Nobody, format!("tokenless-{i}"), json!({})).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, "cart_empty"));
    }
    assert_eq!(idempotency_rows(&app).await, 0, "no key was kept for a cart with nothing to order");

    // A real checkout's key is kept and replayed even after payment emptied the cart.
    app.product("AB-1", 500, 10).await;
    let who = As::Guest(guest_token());
    app.add(&who, "AB-1", 2).await;
    let first = app.checkout(&who, "real-key", json!({})).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let paid = app.pay(&first.body["order"], "succeeded", "pay-1").await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    assert!(app.get_cart(&who).await.lines().is_empty(), "the ordered lines left the cart");
    let replay = app.checkout(&who, "real-key", json!({})).await;
    assert_eq!((replay.status.as_u16(), replay.body.clone()), (201, first.body.clone()), "the empty cart still replays its order");
    assert_eq!(idempotency_rows(&app).await, 1);
});

both_modes!(a_total_past_what_money_can_hold_is_refused_and_nothing_is_reserved, |app: TestApp| async move {
    let max = 1_000_000_000_000i64;
    app.product("BIG-1", max, 1000).await;
    let who = As::Guest(guest_token());
    assert_eq!(app.add(&who, "BIG-1", 2).await.status, 200);
    let a = app.checkout(&who, "k1", json!({})).await;
    assert_eq!((a.status.as_u16(), a.code()), (422, "total_too_large"), "{:?}", a.body);
    assert_eq!(a.body["error"]["subtotal"], json!({"amount": 2 * max, "currency": "USD"}));
    let product = app.admin_product("BIG-1").await;
    assert_eq!(product["reserved"], json!(0), "nothing reserved: {product}");
    // At the cap exactly, the order is made and reads back.
    let one = As::Guest(guest_token());
    app.add(&one, "BIG-1", 1).await;
    let ok = app.checkout(&one, "k2", json!({})).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let id = ok.body["order"]["id"].as_str().expect("an order id");
    let read = app.call(Method::GET, &format!("/v1/orders/{id}"), &one, None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["total"]["amount"], json!(max));
});

both_modes!(an_unreadable_query_string_is_a_json_4xx, |app: TestApp| async move {
    for path in ["/v1/products?skus=%FF%FE", "/v1/promotions?codes=%C3%28", "/v1/products?skus=%", "/v1/admin/analytics/funnel?from=%FF"] {
        let who = if path.contains("admin") { TestApp::admin() } else { As::Nobody };
        let a = app.call(Method::GET, path, &who, None).await;
        assert!(a.status.is_client_error(), "{path}: {:?}", a.body);
        assert!(!a.code().is_empty(), "{path}: a JSON error, {:?}", a.body);
    }
    // Many SKUs are refused before any lookup, however they repeat.
    let many = (0..5000).map(|i| format!("S{}", i % 101)).collect::<Vec<_>>().join(",");
    let a = app.call(Method::GET, &format!("/v1/products?skus={many}"), &As::Nobody, None).await;
    assert_eq!((a.status.as_u16(), a.code()), (422, "invalid_request"));
});
