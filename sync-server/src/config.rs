//! Settings, from the environment (or the equivalent flags); `sync-server --help` lists them.

use clap::{Args, Parser, Subcommand};
use shared::{Currency, Expiry, Limits, MergePolicy};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A secret setting: never printed, not even in `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() { Err("must not be empty".into()) } else { Ok(Secret(s.to_owned())) }
    }
}

/// A secret of at least `MIN` characters: a short one can be guessed or brute-forced offline (an
/// HS256 key needs 256 bits, RFC 7518 3.2).
fn secret_of<const MIN: usize>(s: &str) -> Result<Secret, String> {
    if s.chars().count() < MIN { Err(format!("must be at least {MIN} characters")) } else { Ok(Secret(s.to_owned())) }
}

#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about = "cartsync: the shopping cart sync server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Load products and stock from a JSON array or a CSV file
    /// (`sku,name,price_amount,currency,stock`) into CARTSYNC_DATABASE_URL, all or nothing.
    Import {
        /// The file to load (`.csv`, or JSON).
        file: PathBuf,
    },
}

fn parse_currency(s: &str) -> Result<Currency, String> {
    Currency::parse(s).map_err(|e| e.message)
}

/// How a login merge picks its policy: one configured policy, or `prompt`, where the client
/// names one with each merge (a merge without one is refused with `409 merge_policy_required`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeSetting {
    Policy(MergePolicy),
    Prompt,
}

impl MergeSetting {
    /// The policy a merge uses when the client names none (`None`: it must name one).
    pub fn default_policy(self) -> Option<MergePolicy> {
        match self {
            MergeSetting::Policy(p) => Some(p),
            MergeSetting::Prompt => None,
        }
    }
}

impl From<MergePolicy> for MergeSetting {
    fn from(p: MergePolicy) -> Self {
        MergeSetting::Policy(p)
    }
}

fn parse_policy(s: &str) -> Result<MergeSetting, String> {
    if s == "prompt" {
        return Ok(MergeSetting::Prompt);
    }
    MergePolicy::parse(s).map(MergeSetting::Policy).map_err(|_| "merge policy is one of sum, max, keep_user, prompt".to_owned())
}

/// Where the Prometheus metrics are served: an address, or nowhere (an empty setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(MetricsListen(None));
        }
        s.parse().map(|a| MetricsListen(Some(a))).map_err(|_| "an address such as 127.0.0.1:9090, or empty for none".to_owned())
    }
}

#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// Address and port to serve on.
    #[arg(long, env = "CARTSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the Prometheus listener (`GET /metrics`), apart from the API so it is never
    /// exposed with it. Empty: no metrics listener.
    #[arg(long, env = "CARTSYNC_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: MetricsListen,

    /// Redis URL, or a comma-separated list of node URLs for a Redis Cluster. Unset: an embedded
    /// in-process store.
    #[arg(long, env = "CARTSYNC_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Write-behind entries another instance fetched but left unacknowledged this long (it
    /// stopped) are taken over, in milliseconds.
    #[arg(long, env = "CARTSYNC_WRITE_BEHIND_CLAIM_MS", default_value_t = 30_000)]
    pub write_behind_claim_ms: u64,

    /// Prefix of every Redis key this server uses.
    #[arg(long, env = "CARTSYNC_REDIS_PREFIX", default_value = "cartsync")]
    pub redis_prefix: String,

    /// postgres://… or sqlite://…; unset: an SQLite file in the working directory.
    #[arg(long, env = "CARTSYNC_DATABASE_URL", default_value = "sqlite://cartsync.db")]
    pub database_url: String,

    /// Most connections to PostgreSQL (SQLite always uses one).
    #[arg(long, env = "CARTSYNC_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,

    /// HS256 secret of user tokens (at least 32 characters). Unset (and no public key): user
    /// tokens are refused.
    #[arg(long, env = "CARTSYNC_JWT_SECRET", hide_env_values = true, value_parser = secret_of::<32>)]
    pub jwt_secret: Option<Secret>,

    /// Path to a PEM public key (RS256 or EdDSA) of user tokens, instead of a secret.
    #[arg(long, env = "CARTSYNC_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` of user tokens.
    #[arg(long, env = "CARTSYNC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of user tokens.
    #[arg(long, env = "CARTSYNC_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Bearer token of the admin endpoints (at least 16 characters). Unset: admin endpoints refuse
    /// everything.
    #[arg(long, env = "CARTSYNC_ADMIN_TOKEN", hide_env_values = true, value_parser = secret_of::<16>)]
    pub admin_token: Option<Secret>,

    /// HMAC-SHA256 secret of the payment webhook (at least 16 characters). Unset: the webhook
    /// refuses everything.
    #[arg(long, env = "CARTSYNC_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret_of::<16>)]
    pub webhook_secret: Option<Secret>,

    /// How a guest cart merges into the user's on login: sum, max or keep_user; or prompt, where
    /// each merge request names its policy (the storefront asks the shopper).
    #[arg(long, env = "CARTSYNC_MERGE_POLICY", default_value = "sum", value_parser = parse_policy)]
    pub merge_policy: MergeSetting,

    /// Per-line quantity limit.
    #[arg(long, env = "CARTSYNC_MAX_LINE_QUANTITY", default_value_t = 99,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(Limits::ABSOLUTE_MAX_QUANTITY)))]
    pub max_line_quantity: u32,

    /// Most lines in a cart (and in its saved list).
    #[arg(long, env = "CARTSYNC_MAX_LINES", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=Limits::ABSOLUTE_MAX_LINES as i64))]
    pub max_lines: u32,

    /// Checkout reservation hold, in seconds.
    #[arg(long, env = "CARTSYNC_HOLD_SECONDS", default_value_t = 600)]
    pub hold_seconds: u64,

    /// How much longer a shopper may extend their pending order's hold, once, in seconds.
    #[arg(long, env = "CARTSYNC_HOLD_EXTEND_SECONDS", default_value_t = 300)]
    pub hold_extend_seconds: u64,

    /// How long a price quote (`POST /v1/cart/quote`) holds its prices, in seconds.
    #[arg(long, env = "CARTSYNC_PRICE_LOCK_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub price_lock_seconds: u64,

    /// Guest carts expire after this many idle seconds.
    #[arg(long, env = "CARTSYNC_GUEST_TTL_SECONDS", default_value_t = 7 * 86_400,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub guest_ttl_seconds: i64,

    /// User carts expire from the hot store after this many idle seconds.
    #[arg(long, env = "CARTSYNC_USER_TTL_SECONDS", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub user_ttl_seconds: i64,

    /// Saved-for-later lists expire after this many idle seconds.
    #[arg(long, env = "CARTSYNC_SAVED_TTL_SECONDS", default_value_t = 90 * 86_400,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub saved_ttl_seconds: i64,

    /// Currency of new carts (ISO 4217).
    #[arg(long, env = "CARTSYNC_CURRENCY", default_value = "USD", value_parser = parse_currency)]
    pub currency: Currency,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CARTSYNC_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Cart annotations use catalog prices at most this old, in seconds.
    #[arg(long, env = "CARTSYNC_PRICE_CACHE_SECONDS", default_value_t = 60)]
    pub price_cache_seconds: u64,

    /// Cart annotations use stock figures at most this old, in seconds.
    #[arg(long, env = "CARTSYNC_STOCK_CACHE_SECONDS", default_value_t = 5)]
    pub stock_cache_seconds: u64,

    /// Cart views use promotions (and their use counts) at most this old, in seconds; a change
    /// made through this instance shows at once.
    #[arg(long, env = "CARTSYNC_PROMOTION_CACHE_SECONDS", default_value_t = 5)]
    pub promotion_cache_seconds: u64,

    /// Events are kept this many days.
    #[arg(long, env = "CARTSYNC_EVENT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_retention_days: u64,

    /// Durable user carts untouched this many days are deleted.
    #[arg(long, env = "CARTSYNC_CART_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    pub cart_retention_days: u64,

    /// How often the retention job runs, in milliseconds.
    #[arg(long, env = "CARTSYNC_RETENTION_INTERVAL_MS", default_value_t = 3_600_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub retention_interval_ms: u64,

    /// The first webhook retry comes after this many milliseconds; each next one after twice as long.
    #[arg(long, env = "CARTSYNC_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_base_ms: u64,

    /// A webhook delivery is retried for this many hours from its event before it is given up.
    #[arg(long, env = "CARTSYNC_WEBHOOK_RETRY_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_hours: u64,

    /// How often the abandonment job looks for idle carts, in milliseconds.
    #[arg(long, env = "CARTSYNC_ABANDON_CHECK_INTERVAL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(50..))]
    pub abandon_check_interval_ms: u64,

    /// A user cart with lines idle this long is abandoned, in seconds.
    #[arg(long, env = "CARTSYNC_ABANDON_AFTER_SECONDS", default_value_t = 3600)]
    pub abandon_after_seconds: u64,

    /// At most one `cart.abandoned` per cart in this many seconds.
    #[arg(long, env = "CARTSYNC_ABANDON_MIN_INTERVAL_SECONDS", default_value_t = 86_400)]
    pub abandon_min_interval_seconds: u64,

    /// The recovery link of `cart.abandoned`, with `{token}` where the signed token goes.
    #[arg(long, env = "CARTSYNC_RECOVERY_URL")]
    pub recovery_url: Option<String>,

    /// Signs recovery tokens (at least 16 characters). Unset: the JWT secret, or else a random
    /// one per process (tokens then stop working at a restart).
    #[arg(long, env = "CARTSYNC_RECOVERY_SECRET", hide_env_values = true, value_parser = secret_of::<16>)]
    pub recovery_secret: Option<Secret>,

    /// Percent off in the code a high-value abandoned cart gets (1 to 100); unset: no code.
    #[arg(long, env = "CARTSYNC_ABANDON_DISCOUNT_PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub abandon_discount_percent: Option<u32>,

    /// A cart totalling at least this (minor units) gets the code.
    #[arg(long, env = "CARTSYNC_ABANDON_DISCOUNT_MIN_TOTAL", default_value_t = 10_000)]
    pub abandon_discount_min_total: i64,

    /// The code works this many days.
    #[arg(long, env = "CARTSYNC_ABANDON_DISCOUNT_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub abandon_discount_days: u64,

    /// A paid order this many days after its cart was reported abandoned makes `cart.recovered`.
    #[arg(long, env = "CARTSYNC_RECOVERY_WINDOW_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub recovery_window_days: u64,

    /// Failed gift card code lookups one client may make at once before it is refused (429).
    #[arg(long, env = "CARTSYNC_GIFT_CARD_GUESSES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub gift_card_guesses: u32,

    /// After that, one more failed lookup per this many seconds.
    #[arg(long, env = "CARTSYNC_GIFT_CARD_GUESS_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub gift_card_guess_seconds: u64,

    /// At or below this many free units a product shows as low_stock.
    #[arg(long, env = "CARTSYNC_LOW_STOCK_THRESHOLD", default_value_t = 5)]
    pub low_stock_threshold: i64,

    /// How often expired stock holds are released, in milliseconds.
    #[arg(long, env = "CARTSYNC_SWEEP_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub sweep_interval_ms: u64,

    /// How long a checkout repeating a running one's Idempotency-Key waits for its answer before
    /// it is told 409 request_in_progress, in milliseconds.
    #[arg(long, env = "CARTSYNC_IDEMPOTENCY_WAIT_MS", default_value_t = 5000)]
    pub idempotency_wait_ms: u64,

    /// Directory of static files served at `/` (the demo storefront). Default: the repository's
    /// `www/` when it exists.
    #[arg(long, env = "CARTSYNC_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Origins allowed to call the API from a browser (CORS), comma-separated, or `*`.
    #[arg(long, env = "CARTSYNC_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,

    /// Development only: `POST /v1/dev/login {"user"}` hands out user tokens signed with
    /// CARTSYNC_JWT_SECRET. Never enable it in production.
    #[arg(long, env = "CARTSYNC_DEV_LOGIN", default_value_t = false)]
    pub dev_login: bool,

    /// Requests per second to one cart (bursts of five times as many); over it `429
    /// rate_limited` with `Retry-After`. 0: no limit.
    #[arg(long, env = "CARTSYNC_RATE_LIMIT_PER_CART", default_value_t = 20)]
    pub rate_limit_per_cart: u32,

    /// Requests per second per client address (bursts of five times as many). 0: no limit
    /// (behind a load balancer every shopper shares its address).
    #[arg(long, env = "CARTSYNC_RATE_LIMIT_PER_IP", default_value_t = 0)]
    pub rate_limit_per_ip: u32,

    /// Proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For` names the
    /// client: its first hop is the address the per-address limits count.
    #[arg(long, env = "CARTSYNC_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::limits::Networks,

    /// Requests served at once; more are refused at once with `503` and `Retry-After`.
    #[arg(long, env = "CARTSYNC_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Open connections; more wait in the listen backlog until one closes.
    #[arg(long, env = "CARTSYNC_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The longest a request may run, its body included, in milliseconds (then `503`).
    #[arg(long, env = "CARTSYNC_REQUEST_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub request_timeout_ms: u64,

    /// The longest a client may take to send a request's headers, or to start its next request on
    /// an idle kept-alive connection, and to send its body (then `408 request_timeout`), in
    /// milliseconds.
    #[arg(long, env = "CARTSYNC_CLIENT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub client_timeout_ms: u64,

    /// On SIGTERM, requests in flight get this long to finish before their connections are
    /// closed, in milliseconds; then the write-behind queue is drained.
    #[arg(long, env = "CARTSYNC_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Log format: text or json.
    #[arg(long, env = "CARTSYNC_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Settings {
    /// The settings of an embedded server with everything at its default, for tests and tools.
    pub fn defaults() -> Settings {
        Cli::parse_from(["sync-server"]).settings
    }

    pub fn limits(&self) -> Limits {
        Limits { max_line_quantity: self.max_line_quantity, max_lines: self.max_lines as usize }
    }

    pub fn guest_expiry(&self) -> Expiry {
        Expiry { cart_seconds: self.guest_ttl_seconds, saved_seconds: self.saved_ttl_seconds }
    }

    /// The static directory to serve, if any: the configured one, or the repository's `www/`.
    pub fn static_root(&self) -> Option<PathBuf> {
        self.static_dir.clone().or_else(|| {
            let www = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
            www.join("index.html").exists().then_some(www)
        })
    }

    pub fn limits_config(&self) -> crate::limits::Config {
        crate::limits::Config {
            per_cart: self.rate_limit_per_cart,
            per_ip: self.rate_limit_per_ip,
            trusted_proxies: self.trusted_proxies.clone(),
            in_flight: self.max_in_flight as usize,
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.client_timeout_ms),
        }
    }

    pub fn user_expiry(&self) -> Expiry {
        Expiry { cart_seconds: self.user_ttl_seconds, saved_seconds: self.saved_ttl_seconds }
    }
}
