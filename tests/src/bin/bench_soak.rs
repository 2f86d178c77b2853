//! Soak benchmark: a moderate, steady open-loop load for a long time (10 minutes by default)
//! against a real server on Redis and PostgreSQL, printing per interval the throughput, errors
//! and latency percentiles, and at the start and the end Redis's memory, the process's resident
//! memory (server and load generator share it), the op-id hashes' sizes, the queues' backlogs
//! and the holds left live after their expiry (leaked holds: must be 0). Not a test: it asserts
//! nothing and is run on demand.
//!
//!     cargo run --release -p cartsync-tests --bin bench_soak -- [seconds] [requests/s] [carts]
//!
//! The mix per 10 requests: 6 adds (ops with op ids, as the browser cart sends them), 3 cart
//! reads, 1 checkout (a hold of 5 seconds, never paid: the sweeper must release every one).
//! Half the carts are users' (written behind to PostgreSQL), half guests'. Latency counts from
//! when each request was due (no coordinated omission).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cartsync_tests::{Mode, TestApp, guest_token, scalar, user_token};
use std::time::{Duration, Instant};

const SKUS: usize = 20;
const INTERVAL: Duration = Duration::from_secs(30);

fn redis_cli(args: &[&str]) -> String {
    let port = cartsync_tests::redis().port.to_string();
    let out = std::process::Command::new("redis-cli").args(["-p", &port]).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn redis_memory() -> u64 {
    redis_cli(&["INFO", "memory"]).lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

/// `(keys, mean fields, most fields)` of the carts' op-id hashes under `prefix`.
fn op_id_sets(prefix: &str) -> (usize, f64, u64) {
    let keys: Vec<String> = redis_cli(&["--scan", "--pattern", &format!("{prefix}:*:cart:*:o")]).lines().map(str::to_owned).collect();
    let sizes: Vec<u64> = keys.iter().map(|k| redis_cli(&["HLEN", k]).trim().parse().unwrap_or(0)).collect();
    let mean = if sizes.is_empty() { 0.0 } else { sizes.iter().sum::<u64>() as f64 / sizes.len() as f64 };
    (keys.len(), mean, sizes.iter().copied().max().unwrap_or(0))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(600);
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let carts: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let app = TestApp::spawn_with(Mode::Redis, |s| {
        s.hold_seconds = 5;
        s.sweep_interval_ms = 500;
    })
    .await;
    for i in 0..SKUS {
        app.product(&format!("SOAK-{i}"), 100 + i as i64, 100_000_000).await;
    }
    let identities: Vec<(&'static str, String)> = (0..carts)
        .map(|i| {
            if i % 2 == 0 {
                ("authorization", format!("Bearer {}", user_token(&format!("soak-{i}"))))
            } else {
                ("x-cart-token", guest_token())
            }
        })
        .collect();
    let prefix = app.settings.redis_prefix.clone();
    let db = app.settings.database_url.clone();
    let (mem0, rss0) = (redis_memory(), rss_kib());
    println!("soak: {rate} requests/s for {seconds} s over {carts} carts (6 adds, 3 reads, 1 checkout per 10)");
    println!("start: Redis used_memory {mem0} B, process RSS {rss0} KiB");
    println!(
        "{:>6} {:>8} {:>7} {:>8} {:>8} {:>8} {:>12} {:>10}",
        "t (s)", "requests", "errors", "p50 ms", "p99 ms", "max ms", "redis B", "rss KiB"
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Duration, bool)>();
    let start = Instant::now();
    let total = rate * seconds;
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let sender = {
        let app_base = app.base.clone();
        let http = app.http.clone();
        tokio::spawn(async move {
            for n in 0..total {
                let due = start + every * n as u32;
                tokio::time::sleep_until(due.into()).await;
                // Each run of 10 requests goes to one cart: 6 adds, 3 reads, then its checkout.
                let (header, value) = identities[(n / 10) as usize % carts].clone();
                let sku = format!("SOAK-{}", n as usize % SKUS);
                let rb = match n % 10 {
                    0..=5 => http.post(format!("{app_base}/v1/cart/ops")).json(&serde_json::json!({"ops": [
                        {"op_id": uuid::Uuid::new_v4().to_string(), "type": "add", "sku": sku, "quantity": 1}
                    ]})),
                    6..=8 => http.get(format!("{app_base}/v1/cart")),
                    _ => http
                        .post(format!("{app_base}/v1/cart/checkout"))
                        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                        .json(&serde_json::json!({})),
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let res = rb.header(header, value).send().await;
                    // A checkout may rightly answer 4xx (an empty cart, a line over its stock);
                    // errors are what a server must never answer: 5xx and no answer.
                    let ok = matches!(&res, Ok(r) if !r.status().is_server_error());
                    let _ = tx.send((due, due.elapsed(), ok));
                });
            }
        })
    };
    let mut window: Vec<Duration> = Vec::new();
    let (mut window_errors, mut all_errors, mut all) = (0usize, 0usize, Vec::<Duration>::new());
    let mut next_report = start + INTERVAL;
    let mut p99s = Vec::new();
    loop {
        let deadline = tokio::time::sleep_until(next_report.into());
        tokio::select! {
            got = rx.recv() => match got {
                Some((_, d, ok)) => {
                    window.push(d);
                    if !ok { window_errors += 1; }
                }
                None => break,
            },
            () = deadline => {
                window.sort();
                println!(
                    "{:>6} {:>8} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>12} {:>10}",
                    start.elapsed().as_secs(), window.len(), window_errors, pct(&window, 0.5), pct(&window, 0.99),
                    window.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0), redis_memory(), rss_kib()
                );
                p99s.push(pct(&window, 0.99));
                all.append(&mut window);
                all_errors += window_errors;
                window_errors = 0;
                next_report += INTERVAL;
                if sender.is_finished() && start.elapsed() > Duration::from_secs(seconds + 5) {
                    break;
                }
            }
        }
    }
    all.append(&mut window);
    all_errors += window_errors;
    all.sort();
    // Holds outlive their 5 seconds by at most a sweep: wait, then count the ones still live.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let now_ms = sync_server::clock::now().millis();
    let leaked = scalar(&db, &format!("SELECT COUNT(*) FROM holds WHERE state = 'live' AND expires_at < {now_ms}")).await;
    let live = scalar(&db, "SELECT COUNT(*) FROM holds WHERE state = 'live'").await;
    let reserved = scalar(&db, "SELECT COALESCE(SUM(reserved), 0)::BIGINT FROM products").await;
    let held = scalar(&db, "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM holds WHERE state = 'live'").await;
    let orders = scalar(&db, "SELECT COUNT(*) FROM orders").await;
    let (op_keys, op_mean, op_max) = op_id_sets(&prefix);
    let backlog = redis_cli(&["--scan", "--pattern", &format!("{prefix}:*:wb")])
        .lines()
        .map(|k| redis_cli(&["XLEN", k]).trim().parse::<u64>().unwrap_or(0))
        .sum::<u64>();
    println!(
        "total: {} requests, {all_errors} errors, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; p99 per interval {:?}",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 0.999),
        p99s.iter().map(|p| (p * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!("end: Redis used_memory {} B (start {mem0}), process RSS {} KiB (start {rss0})", redis_memory(), rss_kib());
    println!("op-id hashes: {op_keys} carts, {op_mean:.1} fields on average, {op_max} at most (bounded: 1,000 ids and 64 clients a cart)");
    println!("write-behind stream entries left (trimmed as acknowledged): {backlog}");
    println!("orders {orders}; holds live {live}, live past their expiry (leaked) {leaked}; reserved {reserved} = held {held}");
    let _ = app.stop().await;
}
