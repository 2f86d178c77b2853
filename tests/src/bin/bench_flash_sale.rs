//! Flash-sale benchmark: N buyers check out one hot SKU with stock K, all at once. Prints
//! checkouts per second, latency percentiles and the final stock counts. Not a test: it asserts
//! nothing and is run on demand.
//!
//!     cargo run --release -p cartsync-tests --bin bench_flash_sale -- [redis|embedded] [buyers] [stock]
//!
//! Starts its own redis-server and PostgreSQL (like the tests) and the server in process.

/// The allocator the server binary uses, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cartsync_tests::app::As;
use cartsync_tests::{Mode, TestApp, guest_token, stock_ledger};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = if args.get(1).map(String::as_str) == Some("embedded") { Mode::Embedded } else { Mode::Redis };
    let buyers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let stock: i64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100);

    let app = TestApp::spawn(mode).await;
    app.product("FLASH", 4999, stock).await;
    // A second, quiet SKU shows whether the hot one holds up the rest of the catalog.
    app.product("QUIET", 999, 1_000_000).await;
    let carts: Vec<As> = (0..buyers).map(|_| As::Guest(guest_token())).collect();
    for (i, c) in carts.iter().enumerate() {
        app.add(c, if i % 10 == 9 { "QUIET" } else { "FLASH" }, 1).await;
    }

    let start = Instant::now();
    let runs = carts.iter().enumerate().map(|(i, c)| {
        let app = &app;
        async move {
            let t = Instant::now();
            let a = app.checkout(c, format!("flash-{i}"), serde_json::json!({})).await;
            (i % 10 == 9, t.elapsed(), a.status.as_u16())
        }
    });
    let results = futures::future::join_all(runs).await;
    let elapsed = start.elapsed();

    let mut hot: Vec<Duration> = results.iter().filter(|r| !r.0).map(|r| r.1).collect();
    let mut quiet: Vec<Duration> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
    hot.sort();
    quiet.sort();
    let count = |s: u16| results.iter().filter(|r| r.2 == s).count();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("mode: {mode:?}; {buyers} buyers at once (9 in 10 want FLASH with stock {stock}, 1 in 10 want QUIET)");
    println!(
        "{} checkouts in {:.2} s: {:.0} checkouts/s",
        results.len(),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64()
    );
    println!("answers: {} created, {} out of stock, {} other", count(201), count(409), results.len() - count(201) - count(409));
    println!(
        "FLASH latency p50 {:.1} ms, p99 {:.1} ms; QUIET latency p50 {:.1} ms, p99 {:.1} ms",
        pct(&hot, 0.5),
        pct(&hot, 0.99),
        pct(&quiet, 0.5),
        pct(&quiet, 0.99)
    );
    for (sku, on_hand, reserved, held) in stock_ledger(&app.settings.database_url).await {
        println!("final {sku}: on hand {on_hand}, reserved {reserved}, live holds {held}");
    }
    app.stop().await;
}
