//! What one client may take of the service (`api-v1.md`, Running): requests per cart and per
//! address (`429 rate_limited` with `Retry-After`), requests in flight, slow clients, and a
//! shutdown that ends within its grace whatever the clients do.

use cartsync_tests::app::{As, Mode};
use cartsync_tests::{TestApp, guest_token};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Sends `n` cart reads at once as `who` and counts the answers by status.
async fn burst(app: &TestApp, who: &As, n: usize) -> (usize, usize, Vec<reqwest::StatusCode>) {
    let answers = futures::future::join_all((0..n).map(|_| app.send(app.request(Method::GET, "/v1/cart", who)))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    for a in &limited {
        assert_eq!(a.code(), "rate_limited");
        let after: u64 = a.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in whole seconds");
        assert!(after >= 1);
        assert_eq!(a.body["error"]["retry_after"], json!(after));
    }
    let others = answers.iter().map(|a| a.status).filter(|s| *s != 200 && *s != 429).collect();
    (ok, limited.len(), others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_past_its_allowance_is_told_to_wait_and_a_forged_token_spends_none_of_it() {
    // The contract's default: 20 a second, bursts of 100.
    let app = TestApp::spawn_with(Mode::Embedded, |s| s.rate_limit_per_cart = 20).await;
    let victim = "victim";
    // A forged token naming the victim is refused before it is counted.
    let forged = As::Header(
        "authorization",
        format!("Bearer {}", cartsync_tests::token_with(victim, cartsync_tests::unix_now() + 600, "not-the-secret-at-all-32-bytes-x")),
    );
    let (ok, limited, others) = burst(&app, &forged, 150).await;
    assert_eq!((ok, limited), (0, 0));
    assert!(others.iter().all(|s| *s == 401), "{others:?}");

    let (ok, limited, others) = burst(&app, &As::User(victim.into()), 150).await;
    assert!(others.is_empty(), "{others:?}");
    // 100 at once, plus what refilled (20 a second) while the burst was being served.
    assert!((100..=110).contains(&ok), "{ok} of 150 allowed");
    assert_eq!(ok + limited, 150);

    // Another cart, and a request that makes a new guest cart, are not held back by it.
    let (ok, limited, _) = burst(&app, &As::Guest(guest_token()), 50).await;
    assert_eq!((ok, limited), (50, 0));
    assert_eq!(app.get_cart(&As::Nobody).await.status, 200);
    // Writes refused for the limit change nothing: the cart's version counts the accepted ones.
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20 {
        match app.add(&As::User(victim.into()), "A", 1).await.status.as_u16() {
            200 => accepted += 1,
            429 => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert!(refused > 0, "the cart is still over its allowance");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cart = app.get_cart(&As::User(victim.into())).await;
    assert_eq!(cart.body["version"], accepted, "only the {accepted} accepted adds were applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy() {
    let app = TestApp::spawn_with(Mode::Embedded, |s| {
        s.rate_limit_per_ip = 2;
        s.trusted_proxies = "127.0.0.0/8".parse().expect("networks");
    })
    .await;
    let from = |ip: &str| As::Header("x-forwarded-for", format!("{ip}, 127.0.0.1"));
    // 2 a second, bursts of 10, per forwarded client.
    let (ok, limited, _) = burst(&app, &from("203.0.113.1"), 20).await;
    assert!((10..=11).contains(&ok), "{ok}");
    assert_eq!(ok + limited, 20);
    let (ok, _, _) = burst(&app, &from("203.0.113.2"), 10).await;
    assert_eq!(ok, 10, "another client behind the same proxy has its own allowance");

    // Without the proxy trusted, the header is ignored: every request is the peer's.
    let app = TestApp::spawn_with(Mode::Embedded, |s| s.rate_limit_per_ip = 2).await;
    let (ok1, _, _) = burst(&app, &from("203.0.113.1"), 8).await;
    let (ok2, _, _) = burst(&app, &from("203.0.113.2"), 8).await;
    assert!((10..=11).contains(&(ok1 + ok2)), "{ok1} + {ok2}: one allowance for the one peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_a_full_server_refuses_at_once() {
    let app = TestApp::spawn_with(Mode::Embedded, |s| {
        s.client_timeout_ms = 300;
        s.max_in_flight = 1;
    })
    .await;
    // Headers never finished: hyper closes the connection.
    let mut slow = TcpStream::connect(addr(&app)).await.expect("connect");
    slow.write_all(b"GET /v1/cart HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a client that never finishes its headers is disconnected");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // A body that never finishes holds the one place in flight until it times out (3 s here, so
    // the other requests surely meet it there).
    let app = TestApp::spawn_with(Mode::Embedded, |s| {
        s.client_timeout_ms = 3_000;
        s.max_in_flight = 1;
    })
    .await;

    // A body that never finishes holds the one place in flight until it times out: meanwhile
    // another request is refused at once with 503 and Retry-After.
    let token = guest_token();
    let start_trickle = || async {
        let mut trickle = TcpStream::connect(addr(&app)).await.expect("connect");
        trickle
            .write_all(format!("POST /v1/cart/items HTTP/1.1\r\nHost: x\r\nX-Cart-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"sku\"").as_bytes())
            .await
            .expect("write");
        trickle
    };
    let mut trickle = start_trickle().await;
    let mut refused = None;
    for _ in 0..250 {
        // A request of this loop that held the place when the trickle's headers came got the
        // trickle refused (its answer is there to read): it starts again.
        let mut byte = [0u8; 1];
        if matches!(tokio::time::timeout(Duration::from_millis(1), trickle.peek(&mut byte)).await, Ok(Ok(n)) if n > 0) {
            trickle = start_trickle().await;
        }
        let a = app.get_cart(&As::Guest(guest_token())).await;
        if a.status == 503 {
            refused = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a second request while the first holds the only place");
    assert_eq!(refused.code(), "unavailable");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), trickle.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Nothing of it was applied, and the place is free again.
    let cart = app.get_cart(&As::Guest(token)).await;
    assert_eq!((cart.status.as_u16(), cart.body["version"].clone()), (200, json!(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_time_limit_is_503_and_shutdown_ends_within_its_grace() {
    let app = TestApp::spawn_with(Mode::Embedded, |s| {
        s.request_timeout_ms = 300;
        s.client_timeout_ms = 60_000;
        s.shutdown_grace_ms = 500;
    })
    .await;
    let mut trickle = TcpStream::connect(addr(&app)).await.expect("connect");
    trickle
        .write_all(b"POST /v1/cart/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), trickle.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");

    // A client holding a connection open (an unfinished request) cannot keep the server from
    // stopping: the stop returns once the grace is over.
    let mut holder = TcpStream::connect(addr(&app)).await.expect("connect");
    holder.write_all(b"GET /v1/cart HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), app.stop()).await;
    assert!(stopped.is_ok(), "the server stopped within its grace");
}
