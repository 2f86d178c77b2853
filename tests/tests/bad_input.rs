//! Every bad input of the contract gets its documented 4xx code and changes nothing.

use cartsync_tests::app::As;
use cartsync_tests::{JWT_SECRET, TestApp, both_modes, guest_token, token_with, unsigned_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn cart_version(app: &TestApp, who: &As) -> Value {
    app.get_cart(who).await.body["version"].clone()
}

both_modes!(bad_bodies_get_their_codes_and_change_nothing, |app: TestApp| async move {
    let who = As::Guest(guest_token());
    app.add(&who, "A", 1).await;
    let raw = |body: &'static str| {
        app.send(app.request(Method::POST, "/v1/cart/items", &who).header("content-type", "application/json").body(body))
    };
    for (body, status, code) in [
        ("{bad json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1,2]", 422, "invalid_request"),
        ("{}", 422, "invalid_sku"),
        (r#"{"quantity": 1}"#, 422, "invalid_sku"),
        (r#"{"sku": 12, "quantity": 1}"#, 422, "invalid_sku"),
        (r#"{"sku": "has space", "quantity": 1}"#, 422, "invalid_sku"),
        (r#"{"sku": "", "quantity": 1}"#, 422, "invalid_sku"),
        (r#"{"sku": "A"}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": 0}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": -1}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": 1000}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": 1.5}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": "2"}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": 99999999999999999999}"#, 422, "invalid_quantity"),
        (r#"{"sku": "A", "quantity": 1, "price_at_add": 19.99}"#, 422, "invalid_money"),
        (r#"{"sku": "A", "quantity": 1, "price_at_add": {"amount": -5, "currency": "USD"}}"#, 422, "invalid_money"),
        (r#"{"sku": "A", "quantity": 1, "price_at_add": {"amount": 5, "currency": "usd"}}"#, 422, "invalid_money"),
        (r#"{"sku": "A", "quantity": 1, "price_at_add": {"amount": 5, "currency": "EUR"}}"#, 422, "currency_mismatch"),
    ] {
        let a = raw(body).await;
        assert_eq!((a.status.as_u16(), a.code()), (status, code), "body {body:?}: {:?}", a.body);
        assert!(a.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(cart_version(&app, &who).await, 1, "nothing above changed the cart");
    assert_eq!(app.get_cart(&who).await.lines(), vec![("A".into(), 1)]);

    let long_sku = "X".repeat(65);
    let bad_path = app.call(Method::PUT, &format!("/v1/cart/items/{long_sku}"), &who, Some(json!({"quantity": 1}))).await;
    assert_eq!((bad_path.status.as_u16(), bad_path.code()), (422, "invalid_sku"));
    let bad_qty = app.call(Method::PUT, "/v1/cart/items/A", &who, Some(json!({"quantity": 0}))).await;
    assert_eq!((bad_qty.status.as_u16(), bad_qty.code()), (422, "invalid_quantity"));
});

both_modes!(a_body_over_the_limit_is_413, |app: TestApp| async move {
    let who = As::Guest(guest_token());
    let huge = format!(r#"{{"sku": "A", "quantity": 1, "pad": "{}"}}"#, "x".repeat(app.settings.max_body_bytes + 1));
    let a = app.send(app.request(Method::POST, "/v1/cart/items", &who).header("content-type", "application/json").body(huge)).await;
    assert_eq!((a.status.as_u16(), a.code()), (413, "payload_too_large"));
    assert_eq!(cart_version(&app, &who).await, 0);
});

both_modes!(the_201st_line_is_refused, |app: TestApp| async move {
    let who = As::User(format!("u-{}", uuid::Uuid::new_v4()));
    let ops: Vec<Value> =
        (0..200).map(|i| json!({"op_id": format!("o{i}"), "type": "add", "sku": format!("S{i}"), "quantity": 1})).collect();
    let filled = app.ops(&who, Value::Array(ops)).await;
    assert_eq!(filled.lines().len(), 200);
    let one_more = app.add(&who, "S200", 1).await;
    assert_eq!((one_more.status.as_u16(), one_more.code()), (422, "cart_full"));
    let in_batch = app
        .ops(
            &who,
            json!([{"op_id": "x", "type": "add", "sku": "S201", "quantity": 1}, {"op_id": "y", "type": "add", "sku": "S0", "quantity": 1}]),
        )
        .await;
    assert_eq!(in_batch.body["results"][0]["error"]["code"], "cart_full");
    assert_eq!(in_batch.body["results"][1]["status"], "applied", "a rejected op does not stop the others");
    assert_eq!(in_batch.body["cart"]["version"], 201);
});

both_modes!(ops_batches_are_checked_before_anything_applies, |app: TestApp| async move {
    let who = As::Guest(guest_token());
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"ops": "x"}), "invalid_request"),
        (json!({"ops": [{"type": "clear"}]}), "invalid_op"),
        (json!({"ops": [{"op_id": "a", "type": "add", "sku": "A", "quantity": 1}, 5]}), "invalid_op"),
        (json!({"ops": (0..501).map(|i| json!({"op_id": format!("o{i}"), "type": "clear"})).collect::<Vec<_>>()}), "too_many_ops"),
    ] {
        let a = app.call(Method::POST, "/v1/cart/ops", &who, Some(body)).await;
        assert_eq!((a.status.as_u16(), a.code()), (422, code));
    }
    let unknown = app.ops(&who, json!([{"op_id": "u", "type": "explode", "sku": "A"}])).await;
    assert_eq!(unknown.body["results"][0]["error"]["code"], "invalid_op");
    assert_eq!(cart_version(&app, &who).await, 0);
});

both_modes!(bad_identities_are_refused_never_downgraded, |app: TestApp| async move {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let guest = guest_token();
    let cases = [
        ("Bearer not-a-jwt".to_owned(), "garbage"),
        (format!("Bearer {}", token_with("u1", now - 3600, JWT_SECRET)), "expired"),
        (format!("Bearer {}", token_with("u1", now + 3600, "another-secret-of-the-same-length!!!!")), "forged"),
        (format!("Bearer {}", unsigned_token("u1")), "alg none"),
        ("Basic dTE6cHc=".to_owned(), "wrong scheme"),
        (format!("Bearer {}", token_with("", now + 3600, JWT_SECRET)), "empty subject"),
    ];
    for (auth, what) in cases {
        let a = app.send(app.request(Method::GET, "/v1/cart", &As::Guest(guest.clone())).header("authorization", auth.clone())).await;
        assert_eq!((a.status.as_u16(), a.code()), (401, "unauthorized"), "{what}");
        let w = app
            .send(app.request(Method::POST, "/v1/cart/items", &As::Header("authorization", auth)).json(&json!({"sku": "A", "quantity": 1})))
            .await;
        assert_eq!(w.status.as_u16(), 401, "{what}");
    }
    assert_eq!(cart_version(&app, &As::Guest(guest)).await, 0, "no fallback to the guest cart");

    for bad in ["short", "has spaces in it but is long enough", &"a".repeat(65), "aaaaaaaaaaaaaaaaaaaaaaaaa="] {
        let a = app.get_cart(&As::Header("x-cart-token", bad.to_owned())).await;
        assert_eq!((a.status.as_u16(), a.code()), (400, "invalid_cart_token"), "{bad}");
    }
});

both_modes!(unknown_routes_and_methods_answer_in_the_error_format, |app: TestApp| async move {
    let nf = app.call(Method::GET, "/v1/nope", &As::Nobody, None).await;
    assert_eq!((nf.status, nf.code()), (StatusCode::NOT_FOUND, "not_found"));
    let na = app.call(Method::PATCH, "/v1/cart", &As::Nobody, None).await;
    assert_eq!((na.status, na.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
});

#[tokio::test]
async fn a_misconfigured_server_refuses_to_start_with_one_line_naming_the_variable() {
    let mut s = sync_server::Settings::defaults();
    s.redis_url = Some("redis://127.0.0.1:1".into());
    let err = sync_server::app::connect(&s).await.err().expect("an unreachable Redis is an error");
    assert!(err.starts_with("CARTSYNC_REDIS_URL:"), "{err}");
    assert!(!err.contains('\n'));

    let mut s = sync_server::Settings::defaults();
    s.database_url = "mysql://nope".into();
    let err = sync_server::app::connect(&s).await.err().expect("an unsupported database is an error");
    assert!(err.starts_with("CARTSYNC_DATABASE_URL:"), "{err}");

    // A Redis that may evict keys could drop a cart's op-id set apart from the cart.
    let evicting = cartsync_tests::RedisServer::dedicated();
    let set = std::process::Command::new("redis-cli")
        .args(["-p", &evicting.port.to_string(), "CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .output()
        .expect("redis-cli runs");
    assert!(set.status.success());
    let mut s = sync_server::Settings::defaults();
    s.redis_url = Some(evicting.url.clone());
    let err = sync_server::app::connect(&s).await.err().expect("an evicting Redis is refused");
    assert!(err.starts_with("CARTSYNC_REDIS_URL:") && err.contains("noeviction"), "{err}");
    evicting.stop();

    let mut s = sync_server::Settings::defaults();
    s.jwt_public_key = Some("/nonexistent/key.pem".into());
    let err = sync_server::app::connect(&s).await.err().expect("a missing key file is an error");
    assert!(err.starts_with("CARTSYNC_JWT_PUBLIC_KEY:"), "{err}");
}

#[test]
fn a_bad_setting_stops_the_binary_with_one_line_naming_its_variable() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let built = std::process::Command::new(env!("CARGO")).args(["build", "-q", "-p", "sync-server"]).current_dir(&root).status().unwrap();
    assert!(built.success());
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
    for (var, value) in [
        ("CARTSYNC_MAX_LINE_QUANTITY", "0"),
        ("CARTSYNC_LISTEN", "nope"),
        ("CARTSYNC_MERGE_POLICY", "avg"),
        ("CARTSYNC_REDIS_URL", "redis://127.0.0.1:1"),
        ("CARTSYNC_METRICS_LISTEN", "nope"),
        ("CARTSYNC_JWT_SECRET", "short-jwt-secret-31-characters!"),
        ("CARTSYNC_ADMIN_TOKEN", "admin-15-chars!"),
        ("CARTSYNC_WEBHOOK_SECRET", "hook"),
        ("CARTSYNC_TRUSTED_PROXIES", "10.0.0.0/40"),
        ("CARTSYNC_RATE_LIMIT_PER_CART", "-1"),
    ] {
        let out = std::process::Command::new(target.join("debug/sync-server"))
            .env("CARTSYNC_LISTEN", "127.0.0.1:0")
            .env("CARTSYNC_METRICS_LISTEN", "")
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !l.contains(" WARN ")).collect();
        assert!(!out.status.success(), "{var}={value} must stop the server");
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with(&format!("error: {var}:")), "{stderr}");
        if var.contains("SECRET") || var.contains("TOKEN") {
            assert!(!stderr.contains(value), "a secret is never printed, even a wrong one: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_must_carry_the_configured_issuer_and_audience_and_be_valid_already() {
    let app = TestApp::spawn_with(cartsync_tests::app::Mode::Embedded, |s| {
        s.jwt_issuer = Some("https://id.example".into());
        s.jwt_audience = Some("cartsync".into());
    })
    .await;
    let now = cartsync_tests::unix_now();
    let sign = |claims: Value| {
        let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
        As::Header("authorization", format!("Bearer {}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()))
    };
    let good = json!({"sub": "u", "exp": now + 600, "iss": "https://id.example", "aud": "cartsync"});
    assert_eq!(app.get_cart(&sign(good.clone())).await.status, 200);
    let without = |field: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(field);
        c
    };
    let with = |field: &str, v: Value| {
        let mut c = good.clone();
        c[field] = v;
        c
    };
    for (claims, why) in [
        (without("iss"), "no iss"),
        (without("aud"), "no aud"),
        (with("iss", json!("https://evil.example")), "another issuer"),
        (with("aud", json!("someone-else")), "another audience"),
        (with("nbf", json!(now + 600)), "not valid before ten minutes from now"),
    ] {
        let a = app.get_cart(&sign(claims)).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "unauthorized"), "{why}");
    }
    assert_eq!(app.get_cart(&sign(with("nbf", json!(now - 10)))).await.status, 200, "an nbf in the past is fine");
}

/// Generates a key pair with the openssl command line: `(private PEM, public key file)`.
fn key_pair(dir: &std::path::Path, algorithm: &[&str]) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let ok = std::process::Command::new("openssl").args(["genpkey"]).args(algorithm).arg("-out").arg(&private).status().unwrap().success()
        && std::process::Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&private)
            .args(["-pubout", "-out"])
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl made a key pair");
    (std::fs::read(&private).unwrap(), public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_tokens_verify_and_the_algorithm_is_pinned() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({"sub": "pk-user", "exp": now + 600});
    for (alg, args) in [
        (Algorithm::EdDSA, vec!["-algorithm", "ed25519"]),
        (Algorithm::RS256, vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    ] {
        let dir = std::env::temp_dir().join(format!("cartsync-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (private, public) = key_pair(&dir, &args);
        let key = if alg == Algorithm::EdDSA {
            EncodingKey::from_ed_pem(&private).unwrap()
        } else {
            EncodingKey::from_rsa_pem(&private).unwrap()
        };
        let app = TestApp::spawn_with(cartsync_tests::Mode::Embedded, |s| {
            s.jwt_secret = None;
            s.jwt_public_key = Some(public.clone());
        })
        .await;
        let good = encode(&Header::new(alg), &claims, &key).unwrap();
        let a = app.send(app.request(Method::GET, "/v1/cart", &As::Header("authorization", format!("Bearer {good}")))).await;
        assert_eq!((a.status.as_u16(), a.body["owner"].clone()), (200, json!("user")), "{alg:?}");
        // The classic confusion: an HS256 token keyed with the public key must not pass.
        let confused =
            encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&std::fs::read(&public).unwrap())).unwrap();
        let b = app.send(app.request(Method::GET, "/v1/cart", &As::Header("authorization", format!("Bearer {confused}")))).await;
        assert_eq!(b.status.as_u16(), 401, "{alg:?}: the algorithm is pinned");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
