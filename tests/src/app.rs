//! A sync-server started on its own port for one test, with typed request helpers.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sync_server::Settings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Redis hot store and PostgreSQL durable store, each a real server.
    Redis,
    /// The embedded default: in-process hot store and an SQLite file.
    Embedded,
    /// A three-node Redis Cluster and PostgreSQL.
    RedisCluster,
}

pub struct TestApp {
    pub base: String,
    /// The metrics listener's base URL (a port of its own, apart from the API's).
    pub metrics: Option<String>,
    pub mode: Mode,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// A second server on the same stores ([`TestApp::spawn_pair`]): requests alternate between
    /// the two.
    partner: Option<Box<TestApp>>,
    turn: std::sync::atomic::AtomicUsize,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    _sqlite_dir: Option<SqliteDir>,
}

/// The directory of an embedded test server's SQLite file: removed when dropped, so a test that
/// stops its server and keeps only the settings leaves nothing behind in the temporary directory.
#[derive(Debug)]
pub struct SqliteDir(pub std::path::PathBuf);

impl Drop for SqliteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a call answered: status, headers, and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// `(sku, quantity)` of each cart line, in order (for a cart body or `{"cart": ...}`).
    pub fn lines(&self) -> Vec<(String, u64)> {
        let cart = if self.body.get("cart").is_some() { &self.body["cart"] } else { &self.body };
        list(&cart["lines"])
    }
}

pub fn list(v: &Value) -> Vec<(String, u64)> {
    v.as_array().into_iter().flatten().map(|l| (l["sku"].as_str().unwrap_or("").to_owned(), l["quantity"].as_u64().unwrap_or(0))).collect()
}

/// Who makes a request.
#[derive(Clone, Debug)]
pub enum As {
    Guest(String),
    User(String),
    Nobody,
    Header(&'static str, String),
}

impl TestApp {
    /// The settings a test server starts from, before `tweak`.
    pub async fn base_settings(mode: Mode) -> (Settings, Option<SqliteDir>) {
        let mut s = Settings::defaults();
        s.jwt_secret = Some(crate::JWT_SECRET.parse().expect("a secret"));
        s.redis_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        s.admin_token = Some(crate::ADMIN_TOKEN.parse().expect("a token"));
        s.webhook_secret = Some(crate::WEBHOOK_SECRET.parse().expect("a secret"));
        s.metrics_listen = "127.0.0.1:0".parse().expect("an address");
        // Tests race many requests at one cart; the limits have tests of their own.
        s.rate_limit_per_cart = 0;
        match mode {
            Mode::Redis => {
                s.redis_url = Some(crate::redis().url.clone());
                s.database_url = crate::postgres().create_database().await;
                (s, None)
            }
            Mode::RedisCluster => {
                s.redis_url = Some(crate::redis_cluster().url.clone());
                s.database_url = crate::postgres().create_database().await;
                (s, None)
            }
            Mode::Embedded => {
                s.redis_url = None;
                let dir = std::env::temp_dir().join(format!("cartsync-sqlite-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("create a directory for SQLite");
                s.database_url = format!("sqlite://{}/cartsync.db", dir.display());
                (s, Some(SqliteDir(dir)))
            }
        }
    }

    pub async fn spawn(mode: Mode) -> TestApp {
        Self::spawn_with(mode, |_| {}).await
    }

    /// Two servers on the same stores (same Redis prefix, same database), as two instances behind
    /// a load balancer: every request goes to the next of the two in turn.
    /// Each instance caches catalog facts and promotions for a while (a change made through one
    /// shows on the other within `CARTSYNC_*_CACHE_SECONDS`); the pair runs with those caches
    /// at their shortest, so the suite's exact expectations hold whichever instance answers.
    pub async fn spawn_pair(mode: Mode) -> TestApp {
        let (mut settings, dir) = Self::base_settings(mode).await;
        settings.price_cache_seconds = 0;
        settings.stock_cache_seconds = 0;
        settings.promotion_cache_seconds = 0;
        let mut first = Self::start(mode, settings.clone(), dir).await;
        first.partner = Some(Box::new(Self::start(mode, settings, None).await));
        first
    }

    /// How many server instances answer this app's requests.
    pub fn instances(&self) -> usize {
        1 + usize::from(self.partner.is_some())
    }

    /// The base URL the next request goes to: this server's, or in turn its partner's.
    fn next_base(&self) -> &str {
        match &self.partner {
            Some(p) if self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1 => &p.base,
            _ => &self.base,
        }
    }

    pub async fn spawn_with(mode: Mode, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let (mut settings, dir) = Self::base_settings(mode).await;
        tweak(&mut settings);
        Self::start(mode, settings, dir).await
    }

    pub async fn start(mode: Mode, settings: Settings, sqlite_dir: Option<SqliteDir>) -> TestApp {
        if std::env::var_os("CARTSYNC_TEST_LOG").is_some() {
            sync_server::app::init_tracing("text");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("a local address");
        let metrics = match settings.metrics_listen.0 {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.expect("bind the metrics listener")),
            None => None,
        };
        let metrics_base = metrics.as_ref().map(|l| format!("http://{}", l.local_addr().expect("a local address")));
        let (tx, rx) = oneshot::channel::<()>();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            let listeners = sync_server::app::Listeners { api: listener, metrics };
            sync_server::app::launch_with_listeners(s, listeners, async {
                let _ = rx.await;
            })
            .await
        });
        let app = TestApp {
            base: format!("http://{addr}"),
            metrics: metrics_base,
            mode,
            settings,
            http: test_client(),
            partner: None,
            turn: Default::default(),
            stop: Some(tx),
            task: Some(task),
            _sqlite_dir: sqlite_dir,
        };
        app.wait_ready().await;
        app
    }

    /// A client of a server running elsewhere (a process of its own, see [`crate::process`]),
    /// with the same request helpers; dropping it leaves that server alone.
    pub async fn external(base: String, mode: Mode, settings: Settings) -> TestApp {
        let app = TestApp {
            base,
            metrics: None,
            mode,
            settings,
            http: test_client(),
            partner: None,
            turn: Default::default(),
            stop: None,
            task: None,
            _sqlite_dir: None,
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        // A bound on start-up (migrations, a child process's first connections), not a speed test.
        for _ in 0..800 {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the test server did not come up");
    }

    /// Stops the server gracefully (draining the write-behind queue) and returns its settings.
    pub async fn stop(mut self) -> (Settings, Option<SqliteDir>) {
        if let Some(partner) = self.partner.take() {
            Box::pin(partner.stop()).await;
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("the server stopped cleanly");
        }
        (self.settings.clone(), self._sqlite_dir.take())
    }

    pub fn request(&self, method: Method, path: &str, who: &As) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.next_base()));
        match who {
            As::Guest(t) => rb.header("x-cart-token", t),
            As::User(sub) => rb.bearer_auth(crate::user_token(sub)),
            As::Nobody => rb,
            As::Header(name, value) => rb.header(*name, value),
        }
    }

    pub async fn send(&self, rb: RequestBuilder) -> Answer {
        let res = rb.send().await.expect("the request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, who: &As, body: Option<Value>) -> Answer {
        let mut rb = self.request(method, path, who);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    pub async fn get_cart(&self, who: &As) -> Answer {
        self.call(Method::GET, "/v1/cart", who, None).await
    }

    pub async fn add(&self, who: &As, sku: &str, quantity: i64) -> Answer {
        self.call(Method::POST, "/v1/cart/items", who, Some(serde_json::json!({"sku": sku, "quantity": quantity}))).await
    }

    pub async fn ops(&self, who: &As, ops: Value) -> Answer {
        self.call(Method::POST, "/v1/cart/ops", who, Some(serde_json::json!({ "ops": ops }))).await
    }

    /// Creates or changes a product through the admin API.
    pub async fn put_product(&self, sku: &str, body: Value) -> Answer {
        self.call(Method::PUT, &format!("/v1/admin/products/{sku}"), &Self::admin(), Some(body)).await
    }

    /// The admin's identity.
    pub fn admin() -> As {
        As::Header("authorization", format!("Bearer {}", crate::ADMIN_TOKEN))
    }

    /// A product with `price` cents and `stock` units.
    pub async fn product(&self, sku: &str, price: i64, stock: i64) {
        let a = self
            .put_product(
                sku,
                serde_json::json!({"name": format!("Product {sku}"), "price": {"amount": price, "currency": "USD"}, "stock": stock}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }

    pub async fn admin_product(&self, sku: &str) -> Value {
        self.call(
            Method::GET,
            &format!("/v1/admin/products/{sku}"),
            &As::Header("authorization", format!("Bearer {}", crate::ADMIN_TOKEN)),
            None,
        )
        .await
        .body
    }

    pub async fn checkout(&self, who: &As, key: impl AsRef<str>, body: Value) -> Answer {
        self.send(self.request(Method::POST, "/v1/cart/checkout", who).header("idempotency-key", key.as_ref()).json(&body)).await
    }

    /// The payment provider's webhook for `order` (an order as the API shows it, or its id),
    /// for the order's whole amount, signed as the provider signs it.
    pub async fn pay(&self, order: impl OrderRef, status: &str, payment_ref: &str) -> Answer {
        let (id, total) = order.id_and_total(self).await;
        let body = serde_json::json!({"order_id": id, "status": status, "payment_ref": payment_ref, "amount": total}).to_string();
        self.webhook(&id, &body, &crate::sign_webhook(&body)).await
    }

    /// An order's amount due as stored (`Null` for an unknown order), read straight from the
    /// database.
    pub async fn order_total(&self, id: &str) -> Value {
        use sqlx::Connection;
        let q = "SELECT total_amount, currency, totals FROM orders WHERE id = $1";
        let url = &self.settings.database_url;
        let row: Option<(i64, String, Option<String>)> = if url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect to the test database");
            sqlx::query_as(q).bind(id).fetch_optional(&mut c).await.expect("read an order")
        } else {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("open the test SQLite file");
            sqlx::query_as(q).bind(id).fetch_optional(&mut c).await.expect("read an order")
        };
        match row {
            None => Value::Null,
            Some((_, _, Some(totals))) => serde_json::from_str::<Value>(&totals).expect("stored totals are JSON")["amount_due"].clone(),
            Some((amount, currency, None)) => serde_json::json!({"amount": amount, "currency": currency}),
        }
    }

    /// `POST /v1/orders/{path_id}/payment` with exactly this body and `Cartsync-Signature`.
    pub async fn webhook(&self, path_id: &str, body: &str, signature: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/v1/orders/{path_id}/payment", self.base))
                .header("cartsync-signature", signature)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn merge(&self, user: &str, guest_token: &str) -> Answer {
        self.call(Method::POST, "/v1/cart/merge", &As::User(user.to_owned()), Some(serde_json::json!({ "guest_token": guest_token }))).await
    }
}

/// An order to pay: as the API showed it (with its total), or only its id.
pub trait OrderRef {
    #[allow(async_fn_in_trait)]
    async fn id_and_total(&self, app: &TestApp) -> (String, Value);
}

impl OrderRef for &Value {
    async fn id_and_total(&self, _: &TestApp) -> (String, Value) {
        let due = if self["amount_due"].is_null() { self["total"].clone() } else { self["amount_due"].clone() };
        (self["id"].as_str().expect("an order with an id").to_owned(), due)
    }
}

impl OrderRef for &str {
    async fn id_and_total(&self, app: &TestApp) -> (String, Value) {
        ((*self).to_owned(), app.order_total(self).await)
    }
}

impl OrderRef for &String {
    async fn id_and_total(&self, app: &TestApp) -> (String, Value) {
        self.as_str().id_and_total(app).await
    }
}

/// The HTTP client of a test app. It forgets an idle pooled connection after 1 s: some tests set
/// the server's client timeout, which also closes idle kept-alive connections, as low as 3 s, and
/// a connection reused just as the server closes it fails (`IncompleteMessage`) instead of
/// reaching the server.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("an HTTP client")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // `_sqlite_dir` removes its directory as it drops.
    }
}

/// Declares one test per mode: `both_modes!(name, |app| async move { ... })`.
#[macro_export]
macro_rules! both_modes {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_redis_and_postgres() {
                let app = $crate::TestApp::spawn($crate::Mode::Redis).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let app = $crate::TestApp::spawn($crate::Mode::Embedded).await;
                ($body)(app).await;
            }
            /// Scale-out: two instances on a three-node Redis Cluster, requests alternating.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_instances_on_a_cluster() {
                let app = $crate::TestApp::spawn_pair($crate::Mode::RedisCluster).await;
                ($body)(app).await;
            }
        }
    };
}
