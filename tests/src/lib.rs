//! Test harness: real `redis-server` and PostgreSQL processes on free ports in temporary
//! directories, and a sync-server started in-process on a port of its own.
//!
//! Each test binary starts one Redis and one PostgreSQL the first time a test asks for them; each
//! test then gets its own key prefix and its own database, so tests run in parallel without
//! seeing each other. A watchdog shell process stops the services and removes their directories
//! when the test binary exits, however it exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod app;

/// A small deterministic generator (xorshift) for seeded simulations: a seed replays a run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub use app::{Mode, TestApp};

/// A free loopback port for a server the harness starts (Redis, PostgreSQL, a server process),
/// taken below the ephemeral range (32768 and up on Linux): a port the OS hands out there, to an
/// outgoing connection or a `bind(0)`, could otherwise take it between this check and the
/// server's own bind. Each call in a process tries the next port of its own sequence.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..SPAN {
        let port = LOW + (start.wrapping_add(NEXT.fetch_add(7, Ordering::Relaxed))) % SPAN;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port on loopback")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cartsync-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Starts `script` in the background; it runs `cleanup` once this test process has exited.
// The watchdog must outlive this process, so it is deliberately never waited for.
#[allow(clippy::zombie_processes)]
fn watchdog(cleanup: &str) {
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 0.5; done; {cleanup}", std::process::id());
    Command::new("setsid")
        .args(["bash", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the watchdog");
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a daemonized, persistence-free redis-server on loopback and waits until it listens.
fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) {
    let status = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .status()
        .expect("redis-server is installed (run scripts/test.sh, which installs it)");
    assert!(status.success(), "redis-server failed to start");
    wait_for_port(port, "redis-server");
}

pub struct RedisServer {
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    extra: Vec<&'static str>,
}

impl RedisServer {
    fn start(extra: &[&'static str]) -> RedisServer {
        let port = free_port();
        let dir = temp_dir("redis");
        spawn_redis(port, &dir, extra);
        watchdog(&format!("redis-cli -p {port} shutdown nosave; rm -rf '{}'", dir.display()));
        RedisServer { port, url: format!("redis://127.0.0.1:{port}"), dir, extra: extra.to_vec() }
    }

    /// A Redis of one test's own, which it may stop and start again without disturbing others.
    pub fn dedicated() -> RedisServer {
        Self::start(&[])
    }

    /// A dedicated Redis that writes every change to its append-only file before it answers
    /// (`appendfsync always`): what it acknowledged survives a crash and a restart.
    pub fn with_aof() -> RedisServer {
        Self::start(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// SIGKILL: a crash, with no shutdown and no save beyond what the append-only file holds.
    pub fn kill(&self) {
        let info = Command::new("redis-cli").args(["-p", &self.port.to_string(), "INFO", "server"]).output().expect("redis-cli runs");
        let pid = String::from_utf8_lossy(&info.stdout).lines().find_map(|l| l.strip_prefix("process_id:").map(|p| p.trim().to_owned()));
        let pid = pid.expect("redis-server reports its process id");
        // The shell's own `kill`: no procps needed.
        let killed = Command::new("sh").args(["-c", &format!("kill -9 {pid}")]).status().expect("sh runs");
        assert!(killed.success(), "kill -9 {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (without saving: its data is gone, as after a crash without persistence).
    pub fn stop(&self) {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string(), "shutdown", "nosave"]).output().expect("redis-cli runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port: empty, or from its append-only file.
    pub fn restart(&self) {
        spawn_redis(self.port, &self.dir, &self.extra);
    }

    /// Writes a snapshot (RDB) of the data now and keeps a copy of it: a backup to restore later.
    pub fn snapshot(&self, name: &str) -> PathBuf {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string(), "SAVE"]).output().expect("redis-cli runs");
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"), "SAVE failed: {out:?}");
        let copy = self.dir.join(format!("{name}.rdb"));
        std::fs::copy(self.dir.join("dump.rdb"), &copy).expect("copy the snapshot");
        copy
    }

    /// Stops the server and starts it again from `snapshot` (taken by [`RedisServer::snapshot`]):
    /// its data goes back to that moment, as after a restore from an old backup or the promotion
    /// of a lagging replica.
    pub fn restart_from(&self, snapshot: &Path) {
        self.stop();
        std::fs::copy(snapshot, self.dir.join("dump.rdb")).expect("put the snapshot in place");
        self.restart();
    }

    /// Flushes every key: what a Redis restart without persistence leaves behind.
    pub fn flush_all(&self) {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string(), "FLUSHALL"]).output().expect("redis-cli runs");
        assert!(out.status.success(), "FLUSHALL failed");
    }
}

pub struct PostgresServer {
    pub port: u16,
    /// `pg_ctl -D <data> -l <log> -o <options>`: what starts it again after [`PostgresServer::stop`].
    ctl: Vec<String>,
    root: bool,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.pop().unwrap_or_else(|| PathBuf::from(name))
}

impl PostgresServer {
    fn start() -> PostgresServer {
        let port = free_port();
        let dir = temp_dir("pg");
        let data = dir.join("data");
        let root = is_root();
        let run = |bin: &Path, args: &[&str]| {
            let mut cmd = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin);
                c
            } else {
                Command::new(bin)
            };
            let out = cmd.args(args).output().expect("PostgreSQL is installed (run scripts/test.sh, which installs it)");
            assert!(out.status.success(), "{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        };
        if root {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "chown of the PostgreSQL directory failed");
        }
        let data_s = data.to_string_lossy().into_owned();
        run(&pg_bin("initdb"), &["-D", &data_s, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        let log = dir.join("pg.log").to_string_lossy().into_owned();
        run(&pg_bin("pg_ctl"), &["-D", &data_s, "-l", &log, "-o", &opts, "-w", "start"]);
        wait_for_port(port, "postgres");
        let stop = if root {
            format!("runuser -u postgres -- {} -D '{data_s}' -m immediate stop", pg_bin("pg_ctl").display())
        } else {
            format!("{} -D '{data_s}' -m immediate stop", pg_bin("pg_ctl").display())
        };
        watchdog(&format!("{stop}; rm -rf '{}'", dir.display()));
        PostgresServer { port, ctl: vec!["-D".into(), data_s, "-l".into(), log, "-o".into(), opts], root }
    }

    /// A PostgreSQL of one test's own, which it may stop and start again without disturbing others.
    pub fn dedicated() -> PostgresServer {
        Self::start()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
            c
        } else {
            Command::new(pg_bin("pg_ctl"))
        };
        let out = cmd.args(&self.ctl).args(args).output().expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops it at once (`-m immediate`: every connection is cut, as in a crash).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Starts it again after [`PostgresServer::stop`], and waits until it listens.
    pub fn resume(&self) {
        self.pg_ctl(&["-w", "start"]);
        wait_for_port(self.port, "postgres");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database for one test.
    pub async fn create_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("create a test database");
        self.url(&name)
    }
}

/// A local three-node Redis Cluster (no replicas).
pub struct RedisCluster {
    pub ports: Vec<u16>,
    pub url: String,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let dir = temp_dir("redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for port in &ports {
            let node = dir.join(port.to_string());
            std::fs::create_dir_all(&node).expect("a node directory");
            // The bus port is chosen like the others: Redis's default (port + 10000)
            // may fall on a port another test server holds.
            let bus = free_port().to_string();
            spawn_redis(*port, &node, &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", &bus]);
        }
        let shutdown: Vec<String> = ports.iter().map(|p| format!("redis-cli -p {p} shutdown nosave")).collect();
        watchdog(&format!("{}; rm -rf '{}'", shutdown.join("; "), dir.display()));
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        if !out.status.success() {
            let logs: Vec<String> = ports
                .iter()
                .map(|p| format!("node {p}: {}", std::fs::read_to_string(dir.join(p.to_string()).join("redis.log")).unwrap_or_default()))
                .collect();
            panic!(
                "cluster create failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                logs.join("\n")
            );
        }
        // Wait until every node agrees the cluster is up.
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let info = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output().expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not come up");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let url = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        RedisCluster { ports, url }
    }

    /// Flushes every node.
    pub fn flush_all(&self) {
        for p in &self.ports {
            let out = Command::new("redis-cli").args(["-p", &p.to_string(), "FLUSHALL"]).output().expect("redis-cli runs");
            assert!(out.status.success(), "FLUSHALL failed");
        }
    }
}

pub fn redis_cluster() -> &'static RedisCluster {
    static C: OnceLock<RedisCluster> = OnceLock::new();
    C.get_or_init(RedisCluster::start)
}

pub fn redis() -> &'static RedisServer {
    static R: OnceLock<RedisServer> = OnceLock::new();
    R.get_or_init(RedisServer::dedicated)
}

pub fn postgres() -> &'static PostgresServer {
    static P: OnceLock<PostgresServer> = OnceLock::new();
    P.get_or_init(PostgresServer::start)
}

/// The admin token of the test servers.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The payment webhook secret of the test servers.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// `Cartsync-Signature: t=<now>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as the payment provider
/// signs a webhook (written out here, apart from the server's own code, as a provider would).
pub fn sign_webhook(body: &str) -> String {
    sign_webhook_at(body, unix_now() as i64, WEBHOOK_SECRET)
}

/// The signature of `body` at `t` (unix seconds) with `secret`.
pub fn sign_webhook_at(body: &str, t: i64, secret: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One integer a query answers (a count, a sum), read straight from the database.
pub async fn scalar(database_url: &str, q: &str) -> i64 {
    use sqlx::Connection;
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("connect to the test database");
        sqlx::query_scalar(q).fetch_one(&mut c).await.expect("an integer")
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.expect("open the test SQLite file");
        sqlx::query_scalar(q).fetch_one(&mut c).await.expect("an integer")
    }
}

/// Per SKU: `(on_hand, reserved, sum of live holds)`, read straight from the database.
pub async fn stock_ledger(database_url: &str) -> Vec<(String, i64, i64, i64)> {
    use sqlx::Connection;
    let q = "SELECT p.sku, p.on_hand, p.reserved, CAST(COALESCE(SUM(h.quantity), 0) AS BIGINT)
             FROM products p LEFT JOIN holds h ON h.sku = p.sku AND h.state = 'live'
             GROUP BY p.sku, p.on_hand, p.reserved ORDER BY p.sku";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("connect to the test database");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read the stock ledger")
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.expect("open the test SQLite file");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read the stock ledger")
    }
}

/// The stock invariants: nothing negative, and reserved equal to the sum of live holds.
pub async fn assert_stock_invariants(database_url: &str) {
    for (sku, on_hand, reserved, held) in stock_ledger(database_url).await {
        assert!(on_hand >= 0 && reserved >= 0 && reserved <= on_hand, "{sku}: on hand {on_hand}, reserved {reserved}");
        assert_eq!(reserved, held, "{sku}: reserved must equal the live holds");
    }
}

/// The secret the test servers verify user tokens with.
pub const JWT_SECRET: &str = "test-secret-of-at-least-32-bytes-long";

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A valid HS256 user token for `sub`.
pub fn user_token(sub: &str) -> String {
    token_with(sub, unix_now() + 3600, JWT_SECRET)
}

pub fn token_with(sub: &str, exp: u64, secret: &str) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &Claims { sub, exp }, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode a token")
}

/// A token with `alg: none` and no signature, as an attacker would send it.
pub fn unsigned_token(sub: &str) -> String {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#.into()), b64(format!(r#"{{"sub":"{sub}","exp":{}}}"#, unix_now() + 3600)))
}

/// A fresh guest token, as a client would make one.
pub fn guest_token() -> String {
    sync_server::identity::new_guest_token().as_str().to_owned()
}

/// Waits until the durable store holds `version` of `user`'s cart (the write-behind caught up).
pub async fn wait_for_durable_version(url: &str, user: &str, version: i64) {
    for _ in 0..400 {
        if durable_rows(url).await.iter().any(|(u, v)| u == user && *v == version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the durable store never reached version {version} of {user}: {:?}", durable_rows(url).await);
}

/// `(user_id, version)` of every row of the durable store's `user_carts`, by user id.
pub async fn durable_rows(database_url: &str) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let q = "SELECT user_id, version FROM user_carts ORDER BY user_id";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("connect to the test database");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read user_carts")
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.expect("open the test SQLite file");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read user_carts")
    }
}

/// A webhook receiver on loopback for the tests: records every delivery (its signature checked
/// against `secret`), and answers as it is told (a status; a stall until released).
/// The real `sync-server` binary as a child process, for tests that kill it.
pub mod process {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;
    use sync_server::Settings;

    /// The debug binary, built once per test process.
    pub fn binary() -> PathBuf {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
                let ok = Command::new(env!("CARGO")).args(["build", "-q", "-p", "sync-server"]).current_dir(&root).status();
                assert!(ok.is_ok_and(|s| s.success()), "building sync-server");
                let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
                target.join("debug/sync-server")
            })
            .clone()
    }

    pub struct ServerProcess {
        child: Child,
        pub base: String,
    }

    impl ServerProcess {
        /// Starts the binary on a free loopback port with the stores, prefix and secrets of
        /// `settings` (as `TestApp::base_settings` made them) and `extra` variables.
        pub fn start(settings: &Settings, extra: &[(&str, String)]) -> ServerProcess {
            let port = super::free_port();
            let mut c = Command::new(binary());
            c.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("CARTSYNC_LISTEN", format!("127.0.0.1:{port}"))
                .env("CARTSYNC_METRICS_LISTEN", "")
                .env("CARTSYNC_REDIS_PREFIX", &settings.redis_prefix)
                .env("CARTSYNC_DATABASE_URL", &settings.database_url)
                .env("CARTSYNC_JWT_SECRET", crate::JWT_SECRET)
                .env("CARTSYNC_ADMIN_TOKEN", crate::ADMIN_TOKEN)
                .env("CARTSYNC_WEBHOOK_SECRET", crate::WEBHOOK_SECRET)
                .env("CARTSYNC_RATE_LIMIT_PER_CART", "0")
                .stdout(Stdio::null())
                .stderr(if std::env::var_os("CARTSYNC_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() });
            if let Some(url) = &settings.redis_url {
                c.env("CARTSYNC_REDIS_URL", url);
            }
            for (k, v) in extra {
                c.env(k, v);
            }
            ServerProcess { child: c.spawn().expect("start sync-server"), base: format!("http://127.0.0.1:{port}") }
        }

        /// SIGKILL: no shutdown, no draining, whatever was in flight is cut off.
        pub fn kill(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for ServerProcess {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub mod receiver {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};
    use tokio::sync::Notify;

    #[derive(Default)]
    pub struct Shared {
        pub secret: Mutex<String>,
        /// Each delivery's body, with whether its signature checked out.
        pub got: Mutex<Vec<(serde_json::Value, bool)>>,
        /// Answers with this status while above zero (decremented per request); then 200.
        pub fail_next: Mutex<u32>,
        /// When set, requests wait until `release` is notified.
        pub stall: Mutex<bool>,
        pub stalled_now: Mutex<u32>,
        pub release: Notify,
    }

    pub struct Receiver {
        pub url: String,
        pub state: Arc<Shared>,
    }

    impl Receiver {
        pub async fn start() -> Receiver {
            let state = Arc::new(Shared::default());
            let app = axum::Router::new().route("/hook", axum::routing::post(take)).with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
            let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Receiver { url, state }
        }

        /// Registers this receiver as a webhook endpoint for `events` (filters) and keeps the
        /// secret the server made for it; returns the endpoint's id.
        pub async fn subscribe(&self, app: &crate::TestApp, events: serde_json::Value) -> String {
            let body = serde_json::json!({"url": self.url, "events": events});
            let a = app.call(reqwest::Method::POST, "/v1/admin/webhooks", &crate::TestApp::admin(), Some(body)).await;
            assert_eq!(a.status, reqwest::StatusCode::CREATED, "{:?}", a.body);
            *self.state.secret.lock().unwrap() = a.body["secret"].as_str().expect("a secret").to_owned();
            a.body["id"].as_str().expect("an id").to_owned()
        }

        /// The events received so far (signature checked), in arrival order.
        pub fn events(&self) -> Vec<serde_json::Value> {
            self.state.got.lock().unwrap().iter().map(|(v, _)| v.clone()).collect()
        }

        pub fn all_signed(&self) -> bool {
            self.state.got.lock().unwrap().iter().all(|(_, ok)| *ok)
        }
    }

    async fn take(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        if *s.stall.lock().unwrap() {
            *s.stalled_now.lock().unwrap() += 1;
            s.release.notified().await;
            *s.stalled_now.lock().unwrap() -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        {
            let mut fail = s.fail_next.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
        let secret = s.secret.lock().unwrap().clone();
        let sig = headers.get("cartsync-signature").and_then(|v| v.to_str().ok());
        let now = super::unix_now() as i64;
        let ok = sync_server::signature::verify(secret.as_bytes(), sig, &body, now).is_ok()
            && headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/cloudevents+json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        s.got.lock().unwrap().push((v, ok));
        StatusCode::OK
    }
}

/// `(type, subject, user, sku, quantity)` of every recorded event, in time order, read straight
/// from the database.
pub async fn recorded_events(database_url: &str) -> Vec<(String, String, Option<String>, Option<String>, Option<i64>)> {
    use sqlx::Connection;
    let q = "SELECT type, subject, user_id, sku, quantity FROM events ORDER BY at, id";
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("connect to the test database");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read the events")
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.expect("open the test SQLite file");
        sqlx::query_as(q).fetch_all(&mut c).await.expect("read the events")
    }
}

/// Waits (polling, at most `secs` seconds) until `check` holds; panics with `what` otherwise.
/// A bound on waiting for background work, not a speed requirement.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
