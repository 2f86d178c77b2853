//! The durable store of user carts: PostgreSQL, or SQLite in the embedded default. It is written
//! behind by the write-behind worker and read only to restore a cart the hot store lost; no cart
//! request waits on it otherwise.

use shared::stored::StoredCart;
use shared::{Applied, CartState, Mark, UserId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::collections::BTreeMap;
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
                .synchronous(SqliteSynchronous::Full)
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
        type Row = (String, String);
        let (doc, ops): (Option<Row>, Vec<(i64, String)>) = on_db!(self, pool => (
            sqlx::query_as("SELECT cart, clients FROM user_carts WHERE user_id = $1").bind(user.as_str()).fetch_optional(pool).await?,
            sqlx::query_as("SELECT n, op_id FROM user_cart_ops WHERE user_id = $1 ORDER BY n, op_id").bind(user.as_str()).fetch_all(pool).await?,
        ));
        let Some((doc, clients)) = doc else { return Ok(None) };
        let corrupt = |why: String| DurableError::Corrupt(user.as_str().to_owned(), why);
        let stored: StoredCart = serde_json::from_str(&doc).map_err(|e| corrupt(e.to_string()))?;
        let cart = stored.into_cart().ok_or_else(|| corrupt("unknown format".into()))?;
        let clients: BTreeMap<String, (u64, i64)> = serde_json::from_str(&clients).map_err(|e| corrupt(e.to_string()))?;
        let applied = Applied::from_parts(
            clients.into_iter().map(|(c, (seq, at))| (c, Mark { seq, at })),
            ops.into_iter().map(|(n, id)| (u64::try_from(n).unwrap_or(0), id)),
        );
        Ok(Some(CartState { cart, applied }))
    }

    /// Writes a user cart unless the stored one is as new or newer, with its clients' marks, and
    /// of its op ids only what changed: those past the last position stored are inserted, those
    /// before the window's oldest deleted. Idempotent: the same snapshot written twice changes
    /// nothing the second time.
    pub async fn save_user_cart(&self, user: &UserId, state: &CartState) -> Result<bool, DurableError> {
        let corrupt = |e: serde_json::Error| DurableError::Corrupt(user.as_str().to_owned(), e.to_string());
        let doc = serde_json::to_string(&StoredCart::from(&state.cart)).map_err(corrupt)?;
        let version = i64::try_from(state.cart.version).unwrap_or(i64::MAX);
        let clients: BTreeMap<&str, (u64, i64)> = state.applied.clients().map(|(c, m)| (c, (m.seq, m.at))).collect();
        let clients = serde_json::to_string(&clients).map_err(corrupt)?;
        let oldest = state.applied.recent().next().map_or(0, |(n, _)| i64::try_from(n).unwrap_or(i64::MAX));
        let now = crate::clock::now().millis();
        // The new op ids travel as one JSON array of [id, position], unpacked by each database's
        // own JSON function.
        let insert_ops = match self {
            Durable::Postgres(_) => {
                "INSERT INTO user_cart_ops (user_id, op_id, n) SELECT $1, e->>0, (e->>1)::BIGINT FROM json_array_elements($2::json) AS e
                 ON CONFLICT (user_id, op_id) DO UPDATE SET n = EXCLUDED.n"
            }
            Durable::Sqlite(_) => {
                "INSERT INTO user_cart_ops (user_id, op_id, n) SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($2) WHERE true
                 ON CONFLICT (user_id, op_id) DO UPDATE SET n = excluded.n"
            }
        };
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let written = sqlx::query(
                "INSERT INTO user_carts (user_id, version, cart, written_at, last_activity, line_count, clients) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version, cart = EXCLUDED.cart, written_at = EXCLUDED.written_at,
                    last_activity = EXCLUDED.last_activity, line_count = EXCLUDED.line_count, clients = EXCLUDED.clients
                 WHERE user_carts.version < EXCLUDED.version",
            )
            .bind(user.as_str())
            .bind(version)
            .bind(&doc)
            .bind(now)
            .bind(state.cart.updated_at.millis())
            .bind(i64::try_from(state.cart.lines.len()).unwrap_or(0))
            .bind(&clients)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            let (stored,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(n) FROM user_cart_ops WHERE user_id = $1").bind(user.as_str()).fetch_one(&mut *tx).await?;
            let fresh: Vec<(&str, u64)> = state
                .applied
                .recent()
                .filter(|(n, _)| stored.is_none_or(|s| i64::try_from(*n).unwrap_or(i64::MAX) > s))
                .map(|(n, id)| (id, n))
                .collect();
            if !fresh.is_empty() {
                let fresh = serde_json::to_string(&fresh).map_err(corrupt)?;
                sqlx::query(insert_ops).bind(user.as_str()).bind(&fresh).execute(&mut *tx).await?;
            }
            if state.applied.recent().next().is_some() {
                sqlx::query("DELETE FROM user_cart_ops WHERE user_id = $1 AND n < $2").bind(user.as_str()).bind(oldest).execute(&mut *tx).await?;
            }
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
