//! Saturation benchmark of the cart write path against Redis's own ceiling, in one run:
//!
//! 1. the ceiling: `redis-benchmark` running `EVALSHA` of the least script an add must run
//!    (`HINCRBY` the line, `HINCRBY` the version, `PEXPIRE`) on the same Redis;
//! 2. the server: a closed loop of `POST /v1/cart/items` (50 connections, 400 guest carts, 50
//!    SKUs, a warm-up then a measured run), and the ratio of the two;
//! 3. an open loop at 80% of the measured saturation rate, with latency counted from when each
//!    request was due (no coordinated omission);
//! 4. reads of the same carts (`GET /v1/cart`, closed loop) against the least a read must do in
//!    Redis (`HGETALL` of a 50-field hash and its `PEXPIRE`, by `redis-benchmark`);
//! 5. the mean `EVALSHA` time of an add (from `INFO commandstats`) on carts of 1, 50 and 200 lines;
//! 6. Redis memory per cart line over 100,000 carts of 4 lines, before and after their event
//!    entries are taken off the streams.
//!
//!     cargo run --release -p cartsync-tests --bin bench_saturation -- [seconds] [connections]
//!
//! Not a test: it asserts nothing. It starts its own redis-server and PostgreSQL (like the tests),
//! the server in process on a runtime of its own, and the load on another; Redis, the server and
//! the load share the machine, as they would on one box.

/// The allocator the server binary uses, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cartsync_tests::{Mode, TestApp, guest_token};
use shared::{Currency, Expiry, Limits, MergePolicy, Op, OpId, OpKind, Quantity, Sku, Timestamp};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use sync_server::hot::{HotStore, RedisStore, Rules};
use sync_server::identity::CartId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CARTS: usize = 400;
const SKUS: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let redis_port = cartsync_tests::redis().port;

    let ceiling = if std::env::var_os("CARTSYNC_BENCH_CLOSED_ONLY").is_some() { 1.0 } else { ceiling(redis_port) };
    println!("ceiling: redis-benchmark EVALSHA of the least add script, 50 clients: {ceiling:.0}/s");

    // The server on a runtime of its own (two workers, like the machine), the load on another.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("server").enable_all().build().unwrap();
    let app = server_rt.block_on(TestApp::spawn_with(Mode::Redis, |s| {
        s.max_line_quantity = Limits::ABSOLUTE_MAX_QUANTITY;
        s.metrics_listen = "".parse().unwrap();
    }));
    let addr = app.base.trim_start_matches("http://").to_owned();
    let load_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load").enable_all().build().unwrap();
    let tokens: Arc<Vec<String>> = Arc::new((0..CARTS).map(|_| guest_token()).collect());

    load_rt.block_on(closed_loop(&addr, &tokens, connections, Duration::from_secs(3)));
    let before = commandstats(redis_port);
    let closed = load_rt.block_on(closed_loop(&addr, &tokens, connections, Duration::from_secs(seconds)));
    let after = commandstats(redis_port);
    let writes = closed.count as f64;
    println!(
        "server, closed loop, {connections} connections, {seconds} s: {:.0} writes/s ({} errors), p50 {:.2} ms, p99 {:.2} ms",
        writes / closed.elapsed.as_secs_f64(),
        closed.errors,
        ms(closed.pct(0.50)),
        ms(closed.pct(0.99)),
    );
    let rate = writes / closed.elapsed.as_secs_f64();
    println!("ratio to the ceiling: {:.2}", rate / ceiling);
    for (name, (calls, usec)) in delta(&before, &after) {
        if calls as f64 >= writes * 0.05 {
            println!("  redis {name}: {:.2} per write, {:.2} µs per call", calls as f64 / writes, usec / calls as f64);
        }
    }

    if std::env::var_os("CARTSYNC_BENCH_CLOSED_ONLY").is_some() {
        // For profiling the server under the closed loop alone.
        server_rt.block_on(app.stop());
        return;
    }
    for share in [0.5, 0.8] {
        let target = rate * share;
        let open = load_rt.block_on(open_loop(&addr, &tokens, target, Duration::from_secs(seconds)));
        println!(
            "server, open loop at {:.0}% of saturation ({target:.0}/s for {seconds} s): {:.0} writes/s ({} errors), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            share * 100.0,
            open.count as f64 / open.elapsed.as_secs_f64(),
            open.errors,
            ms(open.pct(0.50)),
            ms(open.pct(0.99)),
            ms(open.pct(1.0)),
        );
    }
    // Reads of the same carts (each holds up to 50 lines by now) against the least a read must
    // do in Redis: HGETALL of a 50-field hash and its TTL renewal.
    let read_ceiling = read_ceiling(redis_port);
    let reads = load_rt.block_on(closed_loop_of(&addr, &tokens, connections, Duration::from_secs(seconds), true));
    let read_rate = reads.count as f64 / reads.elapsed.as_secs_f64();
    println!("read ceiling: redis-benchmark EVALSHA of HGETALL + PEXPIRE on 50-field hashes, 50 clients: {read_ceiling:.0}/s");
    println!(
        "server reads, closed loop, {connections} connections, {seconds} s: {read_rate:.0} reads/s ({} errors), p50 {:.2} ms, p99 {:.2} ms; ratio to the read ceiling {:.2}",
        reads.errors,
        ms(reads.pct(0.50)),
        ms(reads.pct(0.99)),
        read_rate / read_ceiling
    );
    server_rt.block_on(app.stop());

    let store_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    store_rt.block_on(script_cost(redis_port));
    store_rt.block_on(memory_per_line(redis_port));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-benchmark` running the least script an add must run, over 400 carts.
fn ceiling(port: u16) -> f64 {
    let sha = redis_cli(
        port,
        &[
            "SCRIPT",
            "LOAD",
            "redis.call('HINCRBY', KEYS[1], ARGV[1], 1) redis.call('HINCRBY', KEYS[1], 'v', 1) redis.call('PEXPIRE', KEYS[1], 604800000) return 1",
        ],
    );
    let rps = evalsha_rate(port, 300_000, &[sha.trim(), "1", "ceiling:{__rand_int__}", "SKU-1", "1"]);
    redis_cli(port, &["EVAL", "for _, k in ipairs(redis.call('KEYS', 'ceiling:*')) do redis.call('DEL', k) end", "0"]);
    rps
}

/// `redis-benchmark` running the least a cart read must do (its hash and its TTL renewal) on 400
/// hashes of 50 fields.
fn read_ceiling(port: u16) -> f64 {
    redis_cli(
        port,
        &[
            "EVAL",
            "for i = 0, 399 do for f = 0, 49 do redis.call('HSET', 'rceiling:' .. string.format('%012d', i), 'SKU-' .. f, '1|1|1700000000000||') end end return 1",
            "0",
        ],
    );
    let sha = redis_cli(
        port,
        &["SCRIPT", "LOAD", "local r = redis.call('HGETALL', KEYS[1]) redis.call('PEXPIRE', KEYS[1], 604800000, 'GT') return r"],
    );
    let rps = evalsha_rate(port, 200_000, &[sha.trim(), "1", "rceiling:__rand_int__"]);
    redis_cli(port, &["EVAL", "for _, k in ipairs(redis.call('KEYS', 'rceiling:*')) do redis.call('DEL', k) end", "0"]);
    rps
}

/// `redis-benchmark`, 50 clients over 400 random keys, sending `requests` `EVALSHA`s with `args`:
/// the calls a second it reports.
fn evalsha_rate(port: u16, requests: u32, args: &[&str]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", "50", "-n", &requests.to_string(), "-r", "400", "--csv", "EVALSHA"])
        .args(args)
        .output()
        .expect("redis-benchmark runs (it comes with redis-server)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text.lines().filter(|l| l.starts_with("\"EVALSHA")).find_map(|l| l.split("\",\"").nth(1)?.trim_matches('"').parse().ok());
    rps.unwrap_or_else(|| panic!("could not read redis-benchmark's answer: {text}"))
}

type Stats = HashMap<String, (u64, f64)>;

/// `(calls, usec)` per command from `INFO commandstats`.
fn commandstats(port: u16) -> Stats {
    redis_cli(port, &["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |k: &str| stats.split(',').find_map(|kv| kv.strip_prefix(k))?.parse::<f64>().ok();
            Some((name.to_owned(), (field("calls=")? as u64, field("usec=")?)))
        })
        .collect()
}

fn delta(before: &Stats, after: &Stats) -> Vec<(String, (u64, f64))> {
    let mut out: Vec<_> = after
        .iter()
        .map(|(k, (c, u))| {
            let (c0, u0) = before.get(k).copied().unwrap_or((0, 0.0));
            (k.clone(), (c - c0, u - u0))
        })
        .filter(|(_, (c, _))| *c > 0)
        .collect();
    out.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    out
}

struct Run {
    latencies: Vec<Duration>,
    count: u64,
    errors: u64,
    elapsed: Duration,
}

impl Run {
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1)]
    }
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time and reads the answer by
/// its `Content-Length`: the least a client can cost, so the load takes as little of the
/// machine as it can.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect to the server");
        stream.set_nodelay(true).expect("nodelay");
        Conn { stream, buf: Vec::with_capacity(16 * 1024) }
    }

    /// The `n`th request of a run (cart and SKU chosen by `n`): an add, or a read of the cart;
    /// whether it answered 200. A broken connection is opened again.
    async fn nth(&mut self, addr: &str, tokens: &[String], n: usize, read: bool) -> bool {
        let done =
            if read { self.read(addr, &tokens[n % CARTS]).await } else { self.add(addr, &tokens[n % CARTS], (n / CARTS) % SKUS).await };
        match done {
            Ok(ok) => ok,
            Err(_) => {
                *self = Conn::open(addr).await;
                false
            }
        }
    }

    async fn add_nth(&mut self, addr: &str, tokens: &[String], n: usize) -> bool {
        self.nth(addr, tokens, n, false).await
    }

    /// Sends one add and returns whether it answered 200.
    async fn add(&mut self, addr: &str, token: &str, sku: usize) -> std::io::Result<bool> {
        let body = format!("{{\"sku\":\"SKU-{sku}\",\"quantity\":1}}");
        let req = format!(
            "POST /v1/cart/items HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Cart-Token: {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.exchange(req.as_bytes()).await
    }

    /// Sends one cart read and returns whether it answered 200.
    async fn read(&mut self, addr: &str, token: &str) -> std::io::Result<bool> {
        let req = format!("GET /v1/cart HTTP/1.1\r\nHost: {addr}\r\nX-Cart-Token: {token}\r\n\r\n");
        self.exchange(req.as_bytes()).await
    }

    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<bool> {
        self.stream.write_all(req).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize =
                    head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok(head.starts_with("http/1.1 200"));
            }
        }
    }
}

/// `connections` clients each sending adds back to back for `length`.
async fn closed_loop(addr: &str, tokens: &Arc<Vec<String>>, connections: usize, length: Duration) -> Run {
    closed_loop_of(addr, tokens, connections, length, false).await
}

/// `connections` clients each sending adds (or reads) back to back for `length`.
async fn closed_loop_of(addr: &str, tokens: &Arc<Vec<String>>, connections: usize, length: Duration, read: bool) -> Run {
    let start = Instant::now();
    let deadline = start + length;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, tokens) = (addr.to_owned(), tokens.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await;
                let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, c * 7919);
                while Instant::now() < deadline {
                    n += 1;
                    let sent = Instant::now();
                    errors += u64::from(!conn.nth(&addr, &tokens, n, read).await);
                    lat.push(sent.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), count: 0, errors: 0, elapsed: Duration::ZERO };
    for t in tasks {
        let (lat, errors) = t.await.expect("a client task");
        run.latencies.extend(lat);
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    run.count = run.latencies.len() as u64;
    run.latencies.sort();
    run
}

/// Adds due at a fixed `rate` for `length`, sent on whichever of 256 connections is free; the
/// latency of each counts from when it was due. The runtime's timers tick by the millisecond, so
/// a figure may include up to a millisecond of the load's own lateness (a pacing thread of its
/// own cost this 2-core machine more than that).
async fn open_loop(addr: &str, tokens: &Arc<Vec<String>>, rate: f64, length: Duration) -> Run {
    let total = (rate * length.as_secs_f64()) as u64;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let tasks: Vec<_> = (0..256)
        .map(|_| {
            let (addr, tokens, next, done) = (addr.to_owned(), tokens.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await;
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || done.load(Ordering::Relaxed) {
                        break;
                    }
                    let due = start + interval.mul_f64(n as f64);
                    tokio::time::sleep_until(due.into()).await;
                    errors += u64::from(!conn.add_nth(&addr, &tokens, n as usize).await);
                    lat.push(due.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), count: 0, errors: 0, elapsed: Duration::ZERO };
    for t in tasks {
        let (lat, errors) = t.await.expect("a client task");
        run.latencies.extend(lat);
        run.errors += errors;
    }
    done.store(true, Ordering::Relaxed);
    run.elapsed = start.elapsed();
    run.count = run.latencies.len() as u64;
    run.latencies.sort();
    run
}

fn rules() -> Rules {
    let week = Expiry { cart_seconds: 7 * 86_400, saved_seconds: 90 * 86_400 };
    Rules {
        limits: Limits { max_line_quantity: 1_000_000, max_lines: 200 },
        currency: Currency::USD,
        guest: week,
        user: week,
        merge: MergePolicy::Sum,
    }
}

fn add(sku: usize, tracked: Option<String>) -> Op {
    let l = rules().limits;
    Op {
        id: tracked.map_or_else(OpId::untracked, |id| OpId::parse(&id).unwrap()),
        kind: OpKind::Add {
            sku: Sku::parse(&format!("SKU-{sku:04}")).unwrap(),
            quantity: Quantity::new(1, &l).unwrap(),
            price_at_add: None,
        },
    }
}

async fn store(port: u16, prefix: &str) -> HotStore {
    HotStore::Redis(RedisStore::connect(&format!("redis://127.0.0.1:{port}"), prefix).await.expect("connect to Redis"))
}

/// The mean `EVALSHA` time of one add to an existing line, on 100 carts of 1, 50 and 200 lines.
async fn script_cost(port: u16) {
    let hot = store(port, "cost").await;
    let rules = rules();
    let now = sync_server::clock::now();
    for lines in [1usize, 50, 200] {
        let carts: Vec<_> = (0..100).map(|_| CartId::Guest(shared::GuestToken::parse(&guest_token()).unwrap()).key()).collect();
        for id in &carts {
            let ops: Vec<Op> = (0..lines).map(|s| add(s, None)).collect();
            hot.apply(id, &ops, None, &rules, now).await.expect("a cart of that size");
        }
        let before = commandstats(port);
        for round in 0..20 {
            let op = [add(round % lines, None)];
            futures::future::join_all(carts.iter().map(|id| hot.apply(id, &op, None, &rules, now))).await;
        }
        let after = commandstats(port);
        let d: HashMap<_, _> = delta(&before, &after).into_iter().collect();
        let per_call = |name: &str| d.get(name).map_or(0.0, |(c, u)| u / *c as f64);
        println!(
            "carts of {lines:>3} lines: EVALSHA of an add {:.1} µs per call; HGETALL {:.1} µs per call",
            per_call("evalsha"),
            per_call("hgetall")
        );
    }
    redis_cli(port, &["EVAL", "for _, k in ipairs(redis.call('KEYS', 'cost:*')) do redis.call('DEL', k) end", "0"]);
}

fn used_memory(port: u16) -> i64 {
    redis_cli(port, &["INFO", "memory"]).lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()).unwrap_or(0)
}

/// Redis memory per cart line over 100,000 carts of 4 lines: added with REST calls (which record
/// no op id) and with client ops (each op id kept for exactly-once).
async fn memory_per_line(port: u16) {
    let rules = rules();
    let now = Timestamp::from_millis(sync_server::clock::now().millis());
    for (label, kind) in [("REST adds, no op ids", 0), ("ops with op ids only, 4 kept", 1), ("ops numbered by one client", 2)] {
        let prefix = ["memr", "memo", "memc"][kind];
        let hot = store(port, prefix).await;
        redis_cli(port, &["MEMORY", "PURGE"]);
        let before = used_memory(port);
        let keys_before: i64 = redis_cli(port, &["DBSIZE"]).trim().parse().unwrap_or(0);
        let carts = 100_000usize;
        let per_task = carts / 50;
        let tasks: Vec<_> = (0..50)
            .map(|t| {
                let hot = hot.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let id = CartId::Guest(shared::GuestToken::parse(&guest_token()).unwrap()).key();
                        let n = t * per_task + i;
                        let client = uuid::Uuid::new_v4().simple().to_string();
                        let ops: Vec<Op> = (0..4)
                            .map(|s| {
                                let mut op = add((n + s * 7) % 1000, (kind > 0).then(|| uuid::Uuid::new_v4().to_string()));
                                if kind == 2 {
                                    op.id = op.id.with_client(shared::ClientSeq::parse(&client, s as u64 + 1).unwrap());
                                }
                                op
                            })
                            .collect();
                        hot.apply(&id, &ops, None, &rules, now).await.expect("a cart");
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
        let after = used_memory(port);
        let lines = (carts * 4) as f64;
        // The event entries stay in the streams until a recorder takes them (none runs here).
        redis_cli(
            port,
            &[
                "EVAL",
                "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('UNLINK', k) end",
                "0",
                &format!("{prefix}:{{b*}}:events"),
            ],
        );
        let recorded = used_memory(port);
        let keys: i64 = redis_cli(port, &["DBSIZE"]).trim().parse().unwrap_or(0) - keys_before;
        println!(
            "memory, {label}: {:.0} bytes per line once the events are recorded, {:.0} before (used_memory over 100,000 carts of 4 lines; {:.1} keys per cart)",
            (recorded - before) as f64 / lines,
            (after - before) as f64 / lines,
            keys as f64 / carts as f64,
        );
        redis_cli(
            port,
            &["EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('UNLINK', k) end", "0", &format!("{prefix}:*")],
        );
    }
}
