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
    pub mode: Mode,
    pub settings: Settings,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    _sqlite_dir: Option<std::path::PathBuf>,
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
    pub async fn base_settings(mode: Mode) -> (Settings, Option<std::path::PathBuf>) {
        let mut s = Settings::defaults();
        s.jwt_secret = Some(crate::JWT_SECRET.parse().expect("a secret"));
        s.redis_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        s.admin_token = Some(crate::ADMIN_TOKEN.parse().expect("a token"));
        s.webhook_secret = Some(crate::WEBHOOK_SECRET.parse().expect("a secret"));
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
                (s, Some(dir))
            }
        }
    }

    pub async fn spawn(mode: Mode) -> TestApp {
        Self::spawn_with(mode, |_| {}).await
    }

    pub async fn spawn_with(mode: Mode, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let (mut settings, dir) = Self::base_settings(mode).await;
        tweak(&mut settings);
        Self::start(mode, settings, dir).await
    }

    pub async fn start(mode: Mode, settings: Settings, sqlite_dir: Option<std::path::PathBuf>) -> TestApp {
        if std::env::var_os("CARTSYNC_TEST_LOG").is_some() {
            sync_server::app::init_tracing("text");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("a local address");
        let (tx, rx) = oneshot::channel::<()>();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            sync_server::app::launch_with_listener(s, listener, async {
                let _ = rx.await;
            })
            .await
        });
        let app = TestApp {
            base: format!("http://{addr}"),
            mode,
            settings,
            http: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("an HTTP client"),
            stop: Some(tx),
            task: Some(task),
            _sqlite_dir: sqlite_dir,
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
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
    pub async fn stop(mut self) -> (Settings, Option<std::path::PathBuf>) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("the server stopped cleanly");
        }
        (self.settings.clone(), self._sqlite_dir.take())
    }

    pub fn request(&self, method: Method, path: &str, who: &As) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
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

    /// The payment provider's webhook, signed as the provider signs it.
    pub async fn pay(&self, order_id: &str, status: &str, payment_ref: &str) -> Answer {
        let body = serde_json::json!({"status": status, "payment_ref": payment_ref}).to_string();
        let sig = crate::sign_webhook(&body);
        self.send(
            self.http
                .post(format!("{}/v1/orders/{order_id}/payment", self.base))
                .header("x-signature", sig)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn merge(&self, user: &str, guest_token: &str) -> Answer {
        self.call(Method::POST, "/v1/cart/merge", &As::User(user.to_owned()), Some(serde_json::json!({ "guest_token": guest_token }))).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(dir) = self._sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
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
        }
    };
}
