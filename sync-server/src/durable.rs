//! The durable store of user carts: PostgreSQL, or SQLite in the embedded default. It is written
//! behind by the write-behind worker and read only to restore a cart the hot store lost; no cart
//! request waits on it otherwise.

use shared::stored::StoredCart;
use shared::{CartState, UserId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored cart of {0} is not readable: {1}")]
    Corrupt(String, String),
    #[error("{0}")]
    Config(String),
    /// A change would set a product's stock below the units pending orders hold.
    #[error("{sku}: stock cannot go below the {reserved} units reserved by pending orders; nothing was changed")]
    StockBelowReserved { sku: String, reserved: i64 },
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds. The body is compiled once per
/// backend, so one piece of SQL (written with `$1`-style parameters in order of first use, which
/// both PostgreSQL and SQLite accept) serves both without a generic database layer.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::durable::Durable::Postgres($pool) => $body,
            $crate::durable::Durable::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// `$1, $2, …` from `$start`, `n` of them, for an `IN (…)` list.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A transaction that lost a deadlock or a serialization conflict can simply run again.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01" | "40001" | "55P03")))
}

#[derive(Clone)]
pub enum Durable {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Durable {
    /// Connects and applies the migrations in `migrations/`.
    pub async fn connect(url: &str) -> Result<Durable, DurableError> {
        Self::connect_with_pool(url, 10).await
    }

    /// Connects with at most `pool_size` PostgreSQL connections.
    pub async fn connect_with_pool(url: &str, pool_size: u32) -> Result<Durable, DurableError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new().max_connections(pool_size).acquire_timeout(Duration::from_secs(5)).connect_with(opts).await?;
            sqlx::migrate!("./migrations").run(&pool).await?;
            Ok(Durable::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            // One connection: SQLite has one writer anyway, and a single connection makes every
            // transaction serializable, with no lock upgrades that fail with SQLITE_BUSY.
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
            sqlx::migrate!("./migrations").run(&pool).await?;
            Ok(Durable::Sqlite(pool))
        } else {
            Err(DurableError::Config("the URL must start with postgres:// or sqlite:".into()))
        }
    }

    pub async fn load_user_cart(&self, user: &UserId) -> Result<Option<CartState>, DurableError> {
        let (doc, ops): (Option<(String,)>, Vec<(String,)>) = on_db!(self, pool => (
            sqlx::query_as("SELECT cart FROM user_carts WHERE user_id = $1").bind(user.as_str()).fetch_optional(pool).await?,
            sqlx::query_as("SELECT op_id FROM user_cart_ops WHERE user_id = $1").bind(user.as_str()).fetch_all(pool).await?,
        ));
        let Some((doc,)) = doc else { return Ok(None) };
        let corrupt = |why: String| DurableError::Corrupt(user.as_str().to_owned(), why);
        let stored: StoredCart = serde_json::from_str(&doc).map_err(|e| corrupt(e.to_string()))?;
        let cart = stored.into_cart().ok_or_else(|| corrupt("unknown format".into()))?;
        Ok(Some(CartState { cart, applied: ops.into_iter().map(|o| o.0).collect() }))
    }

    /// Writes a user cart unless the stored one is as new or newer, together with its op ids.
    /// Idempotent: the same snapshot written twice changes nothing the second time.
    pub async fn save_user_cart(&self, user: &UserId, state: &CartState) -> Result<bool, DurableError> {
        let corrupt = |e: serde_json::Error| DurableError::Corrupt(user.as_str().to_owned(), e.to_string());
        let doc = serde_json::to_string(&StoredCart::from(&state.cart)).map_err(corrupt)?;
        let version = i64::try_from(state.cart.version).unwrap_or(i64::MAX);
        let ops = serde_json::to_string(&state.applied).map_err(corrupt)?;
        let now = crate::clock::now().millis();
        // The op ids travel as one JSON array, unpacked by each database's own JSON function.
        let insert_ops = match self {
            Durable::Postgres(_) => {
                "INSERT INTO user_cart_ops (user_id, op_id) SELECT $1, json_array_elements_text($2::json) ON CONFLICT DO NOTHING"
            }
            Durable::Sqlite(_) => "INSERT OR IGNORE INTO user_cart_ops (user_id, op_id) SELECT $1, value FROM json_each($2)",
        };
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let written = sqlx::query(
                "INSERT INTO user_carts (user_id, version, cart, written_at, last_activity, line_count) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version, cart = EXCLUDED.cart, written_at = EXCLUDED.written_at,
                    last_activity = EXCLUDED.last_activity, line_count = EXCLUDED.line_count
                 WHERE user_carts.version < EXCLUDED.version",
            )
            .bind(user.as_str())
            .bind(version)
            .bind(&doc)
            .bind(now)
            .bind(state.cart.updated_at.millis())
            .bind(i64::try_from(state.cart.lines.len()).unwrap_or(0))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            sqlx::query(insert_ops).bind(user.as_str()).bind(&ops).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(written)
        })
    }

    /// `FOR UPDATE` where row locks exist (PostgreSQL); SQLite's single writer needs none.
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self {
            Durable::Postgres(_) => " FOR UPDATE",
            Durable::Sqlite(_) => "",
        }
    }

    pub async fn ping(&self) -> Result<(), DurableError> {
        on_db!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }
}
