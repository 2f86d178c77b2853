//! Cart write benchmark: an open-loop load of single-op pushes (`POST /v1/cart/ops`) at a fixed
//! rate against a real server, printing throughput, latency percentiles and the Redis calls one
//! write costs. Not a test: it asserts nothing and is run on demand.
//!
//!     cargo run --release -p cartsync-tests --bin bench_cart_writes -- [redis|embedded] [rate/s] [seconds] [carts]
//!
//! Starts its own redis-server and PostgreSQL (like the tests) and the server in process; the
//! load generator shares the machine with them, so the figures include its cost.

/// The allocator the server binary uses, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cartsync_tests::{Mode, TestApp, guest_token, user_token};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some("embedded") => Mode::Embedded,
        _ => Mode::Redis,
    };
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let carts: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(200);

    let app = TestApp::spawn_with(mode, |s| {
        s.max_line_quantity = 1_000_000;
        s.log_format = "text".into();
    })
    .await;
    // Half the carts are users' (their writes also feed the write-behind), half are guests'.
    let identities: Vec<(&'static str, String)> = (0..carts)
        .map(|i| {
            if i % 2 == 0 {
                ("authorization", format!("Bearer {}", user_token(&format!("bench-{i}"))))
            } else {
                ("x-cart-token", guest_token())
            }
        })
        .collect();
    let url = format!("{}/v1/cart/ops", app.base);
    let calls_before = redis_calls(mode);

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (header, value) = identities[n as usize % carts].clone();
        let body =
            serde_json::json!({"ops": [{"op_id": format!("b-{n}"), "type": "add", "sku": format!("SKU-{}", n % 20), "quantity": 1}]});
        let http = app.http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // Latency counts from when the request was due, so a stalled server cannot hide
            // its queueing delay (no coordinated omission).
            let res = http.post(url).header(header, value).json(&body).send().await;
            let ok = matches!(&res, Ok(r) if r.status().is_success());
            (due.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("a request task");
        if !ok {
            errors += 1;
        }
        latencies.push(d);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("mode: {mode:?}, target {rate} writes/s for {seconds} s over {carts} carts");
    println!(
        "sent {} writes in {:.2} s: {:.0} writes/s, {errors} errors",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    if let (Some(before), Some(after)) = (calls_before, redis_calls(mode)) {
        let per_write = |name: &str| (after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)) as f64 / total as f64;
        println!(
            "redis calls per write: evalsha {:.2}, xadd {:.2} (sent together, one round trip), user-cart writes are half",
            per_write("evalsha"),
            per_write("xadd")
        );
    }
    app.stop().await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `cmdstat_<name>` call counts from `INFO commandstats`.
fn redis_calls(mode: Mode) -> Option<std::collections::HashMap<String, u64>> {
    if mode != Mode::Redis {
        return None;
    }
    let port = cartsync_tests::redis().port.to_string();
    let out = std::process::Command::new("redis-cli").args(["-p", &port, "INFO", "commandstats"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect(),
    )
}
