//! The v1 cart API end to end over HTTP, against Redis + PostgreSQL and against the embedded
//! default. Every case runs in both modes.

use cartsync_tests::app::{As, list};
use cartsync_tests::{TestApp, both_modes, guest_token};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn guest() -> As {
    As::Guest(guest_token())
}

both_modes!(a_guest_without_a_token_gets_one_and_can_use_it, |app: TestApp| async move {
    let first = app.get_cart(&As::Nobody).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["owner"], "guest");
    assert_eq!(first.body["version"], 0);
    let token = first.header("x-cart-token").expect("a new guest token in the response");
    assert!(token.len() >= 22);

    let added = app.add(&As::Nobody, "TEE-RED-M", 2).await;
    let second_token = added.header("x-cart-token").expect("writes without a token get one too");
    assert_ne!(token, second_token, "every token is new");

    let who = As::Guest(second_token);
    let cart = app.get_cart(&who).await;
    assert_eq!(cart.lines(), vec![("TEE-RED-M".to_owned(), 2)]);
    assert!(cart.header("x-cart-token").is_none(), "a known token is not reissued");
});

both_modes!(every_endpoint_answers_the_contract, |app: TestApp| async move {
    let who = guest();
    let a = app
        .call(
            Method::POST,
            "/v1/cart/items",
            &who,
            Some(json!({"sku": "A", "quantity": 2, "price_at_add": {"amount": 1999, "currency": "USD"}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["version"], 1);
    assert_eq!(a.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(a.body["lines"][0]["price_at_add"], json!({"amount": 1999, "currency": "USD"}));
    assert_eq!(a.body["subtotal"], json!({"amount": 3998, "currency": "USD"}));
    assert_eq!(a.body["item_count"], 2);
    assert!(a.body["expires_at"].as_str().is_some() && a.body["updated_at"].as_str().is_some());

    app.add(&who, "B", 1).await;
    let set = app.call(Method::PUT, "/v1/cart/items/A", &who, Some(json!({"quantity": 5}))).await;
    assert_eq!(set.lines(), vec![("A".into(), 5), ("B".into(), 1)]);

    let missing = app.call(Method::PUT, "/v1/cart/items/NOPE", &who, Some(json!({"quantity": 5}))).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "line_not_found"));

    let saved = app.call(Method::POST, "/v1/cart/items/A/save-for-later", &who, None).await;
    assert_eq!(saved.lines(), vec![("B".into(), 1)]);
    assert_eq!(list(&saved.body["saved"]), vec![("A".into(), 5)]);
    assert_eq!(saved.body["subtotal"]["amount"], 0, "the saved list is not in the subtotal");

    let back = app.call(Method::POST, "/v1/cart/saved/A/move-to-cart", &who, None).await;
    assert_eq!(back.lines(), vec![("B".into(), 1), ("A".into(), 5)]);
    assert_eq!(back.body["saved"], json!([]));

    app.call(Method::POST, "/v1/cart/items/B/save-for-later", &who, None).await;
    let removed_saved = app.call(Method::DELETE, "/v1/cart/saved/B", &who, None).await;
    assert_eq!(removed_saved.body["saved"], json!([]));

    let removed = app.call(Method::DELETE, "/v1/cart/items/A", &who, None).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.lines(), vec![]);
    let version = removed.body["version"].as_u64().unwrap();
    let again = app.call(Method::DELETE, "/v1/cart/items/A", &who, None).await;
    assert_eq!(again.status, StatusCode::OK, "removing an absent line is not an error");
    assert_eq!(again.body["version"].as_u64().unwrap(), version, "and changes nothing");

    let health = app.call(Method::GET, "/healthz", &As::Nobody, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.call(Method::GET, "/readyz", &As::Nobody, None).await;
    assert_eq!(ready.status, StatusCode::OK);
});

both_modes!(versions_drive_etags_if_match_and_if_none_match, |app: TestApp| async move {
    let who = guest();
    let a = app.add(&who, "A", 1).await;
    assert_eq!(a.header("etag").as_deref(), Some("\"1\""));

    let cached = app.send(app.request(Method::GET, "/v1/cart", &who).header("if-none-match", "\"1\"")).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    let stale = app.send(app.request(Method::GET, "/v1/cart", &who).header("if-none-match", "\"0\"")).await;
    assert_eq!(stale.status, StatusCode::OK);

    let conflict = app
        .send(app.request(Method::POST, "/v1/cart/items", &who).header("if-match", "\"0\"").json(&json!({"sku": "B", "quantity": 1})))
        .await;
    assert_eq!((conflict.status, conflict.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 1)], "a failed precondition applies nothing");

    let ok = app
        .send(app.request(Method::POST, "/v1/cart/items", &who).header("if-match", "\"1\"").json(&json!({"sku": "B", "quantity": 1})))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["version"], 2);
});

both_modes!(the_same_ops_batch_sent_twice_applies_once, |app: TestApp| async move {
    let who = As::User(format!("user-{}", uuid::Uuid::new_v4()));
    let ops = json!([
        {"op_id": uuid::Uuid::new_v4().to_string(), "type": "add", "sku": "A", "quantity": 2},
        {"op_id": uuid::Uuid::new_v4().to_string(), "type": "add", "sku": "B", "quantity": 1},
        {"op_id": uuid::Uuid::new_v4().to_string(), "type": "set_quantity", "sku": "A", "quantity": 7},
        {"op_id": uuid::Uuid::new_v4().to_string(), "type": "add", "sku": "bad sku", "quantity": 1},
    ]);
    let first = app.ops(&who, ops.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let statuses: Vec<&str> = first.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["applied", "applied", "applied", "rejected"]);
    assert_eq!(first.body["results"][3]["error"]["code"], "invalid_sku");
    assert_eq!(first.lines(), vec![("A".into(), 7), ("B".into(), 1)]);

    let second = app.ops(&who, ops).await;
    let statuses: Vec<&str> = second.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["duplicate", "duplicate", "duplicate", "rejected"]);
    assert_eq!(second.body["cart"]["version"], first.body["cart"]["version"], "a replay changes nothing");
    assert_eq!(second.lines(), first.lines());
});

both_modes!(the_seed_merge_example_sums_quantities, |app: TestApp| async move {
    let user = format!("user-{}", uuid::Uuid::new_v4());
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 2).await;
    app.add(&g, "B", 1).await;
    let u = As::User(user.clone());
    app.add(&u, "A", 1).await;
    app.add(&u, "C", 3).await;

    let merged = app.merge(&user, &token).await;
    assert_eq!(merged.status, StatusCode::OK, "{:?}", merged.body);
    assert_eq!(merged.body["merged"], true);
    assert_eq!(merged.body["cart"]["owner"], "user");
    assert_eq!(merged.lines(), vec![("A".into(), 3), ("C".into(), 3), ("B".into(), 1)]);

    let guest_after = app.get_cart(&g).await;
    assert_eq!(guest_after.lines(), vec![], "the guest cart is gone after the merge");
    assert_eq!(guest_after.body["saved"], json!([]));
    assert!(guest_after.body["version"].as_u64().unwrap() > 2, "its version never goes back");

    let again = app.merge(&user, &token).await;
    assert_eq!(again.body["merged"], false);
    assert_eq!(again.lines(), merged.lines());
});

both_modes!(two_users_racing_to_merge_one_guest_cart_never_both_get_it, |app: TestApp| async move {
    for round in 0..5 {
        let token = guest_token();
        let g = As::Guest(token.clone());
        app.add(&g, "A", 2).await;
        let (alice, bob) = (format!("alice-{round}-{}", uuid::Uuid::new_v4()), format!("bob-{round}-{}", uuid::Uuid::new_v4()));
        let calls = (0..20).map(|i| {
            let who = if i % 2 == 0 { alice.clone() } else { bob.clone() };
            let (app, token) = (&app, token.clone());
            async move { (who.clone(), app.merge(&who, &token).await) }
        });
        let answers = futures::future::join_all(calls).await;
        let mut winners = std::collections::BTreeSet::new();
        for (who, a) in &answers {
            match a.status.as_u16() {
                200 => {
                    winners.insert(who.clone());
                }
                409 => assert_eq!(a.code(), "cart_merged", "{:?}", a.body),
                other => panic!("{other}: {:?}", a.body),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one user owns the guest cart: {winners:?}");
        let carts = [app.get_cart(&As::User(alice.clone())).await.lines(), app.get_cart(&As::User(bob.clone())).await.lines()];
        let with_lines: Vec<_> = carts.iter().filter(|l| !l.is_empty()).collect();
        assert_eq!(with_lines, vec![&vec![("A".to_owned(), 2)]], "round {round}: the lines went to exactly one user");
        // The loser asking again is still refused; the winner's repeat is harmless.
        let loser = if winners.contains(&alice) { &bob } else { &alice };
        assert_eq!(app.merge(loser, &token).await.code(), "cart_merged");
    }
});

both_modes!(a_hundred_concurrent_merges_of_one_guest_cart_merge_it_once, |app: TestApp| async move {
    let user = format!("user-{}", uuid::Uuid::new_v4());
    let token = guest_token();
    let g = As::Guest(token.clone());
    app.add(&g, "A", 2).await;
    app.add(&g, "B", 1).await;
    app.call(Method::POST, "/v1/cart/items/B/save-for-later", &g, None).await;
    let u = As::User(user.clone());
    app.add(&u, "A", 1).await;

    let calls = (0..100).map(|_| app.merge(&user, &token));
    let answers = futures::future::join_all(calls).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }
    let merged = answers.iter().filter(|a| a.body["merged"] == true).count();
    assert_eq!(merged, 1, "exactly one call merges");

    let cart = app.get_cart(&u).await;
    assert_eq!(cart.lines(), vec![("A".into(), 3)]);
    assert_eq!(list(&cart.body["saved"]), vec![("B".into(), 1)]);
    assert_eq!(cart.body["version"], 2, "one add, one merge");
});

both_modes!(merge_carries_the_guests_pending_ops_exactly_once, |app: TestApp| async move {
    let user = format!("user-{}", uuid::Uuid::new_v4());
    let token = guest_token();
    app.add(&As::Guest(token.clone()), "A", 1).await;
    let pending =
        json!([{"op_id": "p-1", "type": "add", "sku": "A", "quantity": 2}, {"op_id": "p-2", "type": "add", "sku": "Z", "quantity": 1}]);
    let body = json!({"guest_token": token, "ops": pending});
    let first = app.call(Method::POST, "/v1/cart/merge", &As::User(user.clone()), Some(body.clone())).await;
    assert_eq!(first.body["merged"], true);
    assert_eq!(first.lines(), vec![("A".into(), 3), ("Z".into(), 1)]);
    let retry = app.call(Method::POST, "/v1/cart/merge", &As::User(user.clone()), Some(body)).await;
    assert_eq!(retry.body["merged"], false);
    assert_eq!(retry.lines(), first.lines(), "a retried login with the same pending ops changes nothing");
});

both_modes!(merge_policies_other_than_sum_are_configurable, |_app: TestApp| async move {
    for (policy, expected) in [("max", 2), ("keep_user", 1)] {
        let app = TestApp::spawn_with(_app.mode, |s| s.merge_policy = shared::MergePolicy::parse(policy).unwrap().into()).await;
        let user = format!("user-{}", uuid::Uuid::new_v4());
        let token = guest_token();
        app.add(&As::Guest(token.clone()), "A", 2).await;
        app.add(&As::Guest(token.clone()), "B", 4).await;
        app.add(&As::User(user.clone()), "A", 1).await;
        let m = app.merge(&user, &token).await;
        assert_eq!(m.lines(), vec![("A".into(), expected), ("B".into(), 4)], "policy {policy}");
    }
});

both_modes!(merge_needs_a_user_and_a_valid_guest_token, |app: TestApp| async move {
    let token = guest_token();
    let anonymous = app.call(Method::POST, "/v1/cart/merge", &As::Guest(token.clone()), Some(json!({"guest_token": token}))).await;
    assert_eq!((anonymous.status, anonymous.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let bad = app.call(Method::POST, "/v1/cart/merge", &As::User("u1".into()), Some(json!({"guest_token": "short"}))).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_cart_token"));
    let nothing = app.merge("u1", &guest_token()).await;
    assert_eq!((nothing.status, nothing.body["merged"].clone()), (StatusCode::OK, json!(false)));
});

both_modes!(eight_clients_adding_to_one_user_cart_lose_nothing, |_app: TestApp| async move {
    let app = TestApp::spawn_with(_app.mode, |s| s.max_line_quantity = 1000).await;
    let who = As::User(format!("user-{}", uuid::Uuid::new_v4()));
    let clients = (0..8).map(|c| {
        let app = &app;
        let who = who.clone();
        async move {
            for i in 0..250 {
                let op = json!([{"op_id": format!("c{c}-{i}"), "type": "add", "sku": format!("SKU-{}", i % 10), "quantity": 1}]);
                let a = app.ops(&who, op).await;
                assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
                assert_eq!(a.body["results"][0]["status"], "applied");
            }
        }
    });
    futures::future::join_all(clients).await;
    let cart = app.get_cart(&who).await;
    let mut lines = cart.lines();
    lines.sort();
    let expected: Vec<(String, u64)> = (0..10).map(|i| (format!("SKU-{i}"), 200)).collect();
    assert_eq!(lines, expected);
    assert_eq!(cart.body["version"], 2000, "every add changed the cart once");
    assert_eq!(cart.body["item_count"], 2000);
});

both_modes!(guest_carts_never_reach_the_durable_store, |app: TestApp| async move {
    let who = guest();
    app.add(&who, "A", 1).await;
    let user = As::User("durable-check".into());
    app.add(&user, "B", 1).await;
    let (settings, dir) = app.stop().await;
    let rows = cartsync_tests::durable_rows(&settings.database_url).await;
    assert_eq!(rows, vec![("durable-check".to_owned(), 1)], "only the user cart, drained on shutdown");
    drop(dir);
});

both_modes!(the_spec_is_served_and_the_metrics_only_on_their_own_listener, |app: TestApp| async move {
    let spec = app.call(Method::GET, "/openapi.json", &As::Nobody, None).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["openapi"], "3.1.0");
    // The routes as the router was built with them: each is described, and served.
    let table = sync_server::routes::table();
    assert!(table.len() >= 19, "{table:?}");
    for (method, path) in &table {
        assert!(spec.body["paths"][*path][method.as_str().to_lowercase()].is_object(), "{method} {path} is described");
    }
    assert!(spec.body["paths"].get("/metrics").is_none(), "metrics are no part of the public API");
    let codes = spec.body["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"].as_array().unwrap().len();
    assert_eq!(codes, shared::ErrorCode::ALL.len(), "every error code is listed");

    app.get_cart(&guest()).await;
    let public = app.send(app.request(Method::GET, "/metrics", &As::Nobody)).await;
    assert_eq!((public.status.as_u16(), public.code()), (404, "not_found"), "not on the public listener");
    let metrics_base = app.metrics.clone().expect("a metrics listener");
    let metrics = app.send(app.http.get(format!("{metrics_base}/metrics"))).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("cartsync_http_requests_total{method=\"GET\",route=\"/v1/cart\",status=\"200\"}"), "{text}");
    assert!(text.contains("cartsync_http_request_duration_seconds_bucket"));
    let other = app.send(app.http.get(format!("{metrics_base}/v1/cart"))).await;
    assert_eq!(other.status.as_u16(), 404, "the metrics listener serves nothing else");

    // Made-up methods share one label, so they cannot grow the series without bound.
    let weird = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    app.send(app.request(weird, "/v1/cart", &As::Nobody)).await;
    let text = app.send(app.http.get(format!("{metrics_base}/metrics"))).await.body.as_str().unwrap_or_default().to_owned();
    assert!(!text.contains("FROBNICATE") && text.contains("method=\"other\""), "{text}");
});

both_modes!(a_clients_numbered_ops_apply_once_and_in_order, |app: TestApp| async move {
    let who = As::Guest(guest_token());
    let op = |seq: u64| json!({"op_id": format!("n-{seq}"), "client_id": "tab_1", "seq": seq, "type": "add", "sku": "A", "quantity": 1});
    let statuses = |a: &cartsync_tests::app::Answer| -> Vec<String> {
        a.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_owned()).collect()
    };
    let first = app.ops(&who, json!([op(1), op(2)])).await;
    assert_eq!(statuses(&first), ["applied", "applied"]);
    // Sent again (a retry after a lost answer): known by the client's high-water mark.
    let again = app.ops(&who, json!([op(1), op(2)])).await;
    assert_eq!(statuses(&again), ["duplicate", "duplicate"]);
    // Skipping ahead refuses the whole request, even the op that would follow on.
    let gap = app.ops(&who, json!([op(3), op(5)])).await;
    assert_eq!((gap.status, gap.code()), (StatusCode::CONFLICT, "op_out_of_order"), "{:?}", gap.body);
    assert_eq!(gap.body["error"]["expected_seq"], 4);
    assert_eq!(gap.body["error"]["client_id"], "tab_1");
    let skipped = app.ops(&who, json!([op(4)])).await;
    assert_eq!((skipped.status, skipped.body["error"]["expected_seq"].clone()), (StatusCode::CONFLICT, json!(3)));
    assert_eq!(app.get_cart(&who).await.lines(), [("A".to_owned(), 2)], "nothing of a refused request applied");
    // Resent from the oldest unacknowledged op, all apply; another client starts where it is.
    let resent = app.ops(&who, json!([op(3), op(4), op(5)])).await;
    assert_eq!(statuses(&resent), ["applied", "applied", "applied"]);
    let other = app.ops(&who, json!([{"op_id": "o-40", "client_id": "tab_2", "seq": 40, "type": "add", "sku": "B", "quantity": 1}])).await;
    assert_eq!(statuses(&other), ["applied"]);
    // A rejected numbered op is settled too: the client moves on past it.
    let bad = app
        .ops(&who, json!([{"op_id": "n-6", "client_id": "tab_1", "seq": 6, "type": "set_quantity", "sku": "Z", "quantity": 1}, op(7)]))
        .await;
    assert_eq!(statuses(&bad), ["rejected", "applied"]);
    assert_eq!(app.get_cart(&who).await.lines(), [("A".to_owned(), 6), ("B".to_owned(), 1)]);
    for malformed in [
        json!({"op_id": "m", "client_id": "tab_1", "type": "clear"}),
        json!({"op_id": "m", "seq": 3, "type": "clear"}),
        json!({"op_id": "m", "client_id": "tab 1", "seq": 3, "type": "clear"}),
        json!({"op_id": "m", "client_id": "tab_1", "seq": 0, "type": "clear"}),
        json!({"op_id": "m", "client_id": "tab_1", "seq": -2, "type": "clear"}),
        json!({"op_id": "m", "client_id": "tab_1", "seq": "8", "type": "clear"}),
        json!({"op_id": "m", "client_id": "x".repeat(65), "seq": 8, "type": "clear"}),
    ] {
        let a = app.ops(&who, json!([malformed])).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, "invalid_op"), "{malformed}");
    }
    assert_eq!(app.get_cart(&who).await.lines(), [("A".to_owned(), 6), ("B".to_owned(), 1)]);
});
