//! Benchmark of the analytics queries (`events.md`: under a second): loads a million events
//! (and the paid lines of their orders) into a fresh database, then times the funnel and the
//! per-SKU report over a 30-day and a 1-day window, on PostgreSQL and on SQLite (the embedded
//! mode). Prints the load time, the table sizes and each query's median and slowest of 7 runs
//! after a warm-up. Not a test: it asserts nothing.
//!
//!     cargo run --release -p cartsync-tests --bin bench_analytics -- [events]
//!
//! The mix per 100 events: 10 `cart.created`, 60 `cart.item_added`, 15 `cart.item_removed`
//! (a fifth of them taken out by a paid order), 6 `checkout.started`, 4 `order.paid`,
//! 3 `cart.abandoned`, 2 `cart.recovered`; 100,000 carts, 2,000 SKUs, spread evenly over 30 days,
//! each row with a body of 300 bytes.

use shared::{Currency, Timestamp};
use std::time::{Duration, Instant};
use sync_server::durable::Durable;
use sync_server::events::analytics;

const DAY_MS: i64 = 86_400_000;
const BASE: i64 = 1_790_000_000_000;

fn main() {
    let n: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let pg = cartsync_tests::postgres().create_database().await;
        run("PostgreSQL", &pg, n).await;
        let dir = std::env::temp_dir().join(format!("cartsync-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a directory");
        run("SQLite", &format!("sqlite://{}/bench.db", dir.display()), n).await;
        let _ = std::fs::remove_dir_all(dir);
    });
}

/// The events, as one INSERT … SELECT over a series of row numbers `i`.
fn load_sql(postgres: bool, n: i64) -> (String, String) {
    let series = if postgres {
        format!("SELECT i FROM generate_series(0::BIGINT, {}::BIGINT) AS s(i)", n - 1)
    } else {
        format!("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) SELECT i FROM s", n - 1)
    };
    let cat = |a: &str, b: &str| if postgres { format!("{a} || {b}::TEXT") } else { format!("{a} || {b}") };
    let body = if postgres { "repeat('x', 300)" } else { "substr(hex(zeroblob(150)), 1, 300)" };
    let step = 30 * DAY_MS / n.max(1);
    let events = format!(
        "INSERT INTO events (id, type, subject, user_id, sku, quantity, detail, amount, at, body)
         SELECT {id}, t, {subject}, NULL,
                CASE WHEN t IN ('cart.item_added', 'cart.item_removed') THEN {sku} END,
                CASE WHEN t IN ('cart.item_added', 'cart.item_removed') THEN 1 + i % 3 END,
                CASE WHEN t = 'cart.item_removed' AND i % 5 = 0 THEN 'ordered' END,
                CASE WHEN t IN ('order.paid', 'cart.recovered') THEN 1000 + i % 9000 END,
                {BASE} + i * {step}, {body}
         FROM (SELECT i, CASE
                 WHEN i % 100 < 10 THEN 'cart.created'
                 WHEN i % 100 < 70 THEN 'cart.item_added'
                 WHEN i % 100 < 85 THEN 'cart.item_removed'
                 WHEN i % 100 < 91 THEN 'checkout.started'
                 WHEN i % 100 < 95 THEN 'order.paid'
                 WHEN i % 100 < 98 THEN 'cart.abandoned'
                 ELSE 'cart.recovered' END AS t FROM ({series}) AS series) AS rows",
        id = cat("'b'", "i"),
        subject = cat("'s'", "(i % 100000)"),
        sku = cat("'SKU-'", "((i * 7) % 2000)"),
    );
    // Two lines per paid order.
    let paid = format!(
        "INSERT INTO paid_lines (order_id, sku, quantity, subject, at)
         SELECT {order}, {sku}, 1 + k, {subject}, at FROM events, (SELECT 0 AS k UNION ALL SELECT 1) AS two
         WHERE type = 'order.paid'",
        order = cat("'o'", "id"),
        sku = cat("'SKU-'", "((CAST(substr(id, 2) AS BIGINT) * 11 + k * 13) % 2000)"),
        subject = "subject",
    );
    (events, paid)
}

async fn run(name: &str, url: &str, n: i64) {
    let db = Durable::connect(url).await.expect("the database");
    let postgres = url.starts_with("postgres");
    let (events, paid) = load_sql(postgres, n);
    let started = Instant::now();
    let exec = |sql: String| {
        let db = db.clone();
        async move {
            match &db {
                Durable::Postgres(p) => sqlx::query(&sql).execute(p).await.map(|r| r.rows_affected()),
                Durable::Sqlite(p) => sqlx::query(&sql).execute(p).await.map(|r| r.rows_affected()),
            }
            .expect("the load")
        }
    };
    let rows = exec(events).await;
    let lines = exec(paid).await;
    // What autovacuum would have done by then (PostgreSQL answers from the index alone only for
    // pages its visibility map marks).
    exec(if postgres { "VACUUM ANALYZE".into() } else { "ANALYZE".into() }).await;
    println!("{name}: loaded {rows} events and {lines} paid lines in {:.1} s", started.elapsed().as_secs_f64());
    let all = (Timestamp::from_millis(BASE), Timestamp::from_millis(BASE + 30 * DAY_MS));
    let day = (Timestamp::from_millis(BASE + 10 * DAY_MS), Timestamp::from_millis(BASE + 11 * DAY_MS));
    for (window, (from, to)) in [("30 days", all), ("1 day", day)] {
        let f = time(|| async { analytics::funnel(&db, from, to, Currency::USD).await.expect("the funnel") }).await;
        let s = time(|| async { analytics::skus(&db, from, to, 50).await.expect("the SKUs") }).await;
        println!(
            "{name}: {window:>7}  funnel  median {:>7.1} ms  slowest {:>7.1} ms   skus  median {:>7.1} ms  slowest {:>7.1} ms",
            ms(f.0),
            ms(f.1),
            ms(s.0),
            ms(s.1)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and slowest of 7 runs after one warm-up.
async fn time<F: std::future::Future<Output = serde_json::Value>>(mut f: impl FnMut() -> F) -> (Duration, Duration) {
    std::hint::black_box(f().await);
    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        std::hint::black_box(f().await);
        runs.push(t.elapsed());
    }
    runs.sort();
    (runs[3], runs[6])
}
