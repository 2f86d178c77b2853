//! Promotions: their storage (the admin API's), and the cache cart views read them from.
//!
//! A promotion is stored as its definition (`shared::promo_json`) with two counters kept in the
//! same transactions as the orders that move them: `pending` (uses held by pending orders) and
//! `redeemed` (uses by paid orders). The rows of `redemptions` always add up to them.
//!
//! Cart views never wait on the database for promotions: they read a snapshot of every
//! promotion (its definition and its use count) that is at most `ttl` old, reloaded in the
//! background when stale, and at once when this instance changed a promotion or its counts. The
//! snapshot is a display aid; checkout decides from the locked rows themselves.

use crate::durable::{Durable, DurableError, on_db};
use serde_json::{Value, json};
use shared::promo::{PromoCode, Promotion, PromotionId, Usage};
use shared::promo_json::{promotion_from_json, promotion_json};
use shared::{Currency, Timestamp, UserId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A promotion as stored, with its counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub promotion: Promotion,
    pub redeemed: u64,
    pub pending: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Stored {
    /// The admin's view: the definition with its counts.
    pub fn admin_json(&self) -> Value {
        let mut v = promotion_json(&self.promotion);
        if let Value::Object(m) = &mut v {
            m.insert("redemptions".into(), json!(self.redeemed));
            m.insert("pending_redemptions".into(), json!(self.pending));
            m.insert("created_at".into(), json!(self.created_at));
            m.insert("updated_at".into(), json!(self.updated_at));
        }
        v
    }
}

/// Why a promotion could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the code {code} belongs to promotion {owner}")]
    CodeTaken { code: String, owner: String },
    #[error(transparent)]
    Db(#[from] DurableError),
}

type Row = (String, String, i64, i64, i64, i64);
const COLUMNS: &str = "id, definition, redeemed, pending, created_at, updated_at";

fn stored_of(row: Row, currency: Currency) -> Result<Stored, DurableError> {
    let (id, definition, redeemed, pending, created_at, updated_at) = row;
    let bad = |why: String| DurableError::Corrupt(format!("promotion {id}"), why);
    let v: Value = serde_json::from_str(&definition).map_err(|e| bad(e.to_string()))?;
    Ok(Stored {
        promotion: promotion_from_json(&v, currency).map_err(|e| bad(e.message))?,
        redeemed: u64::try_from(redeemed).unwrap_or(0),
        pending: u64::try_from(pending).unwrap_or(0),
        created_at: Timestamp::from_millis(created_at),
        updated_at: Timestamp::from_millis(updated_at),
    })
}

/// Creates or replaces a promotion (its counts stay). Returns it and whether it was new.
pub async fn put(db: &Durable, p: &Promotion, currency: Currency, now: Timestamp) -> Result<(Stored, bool), PutError> {
    let definition = promotion_json(p).to_string();
    let code = p.code.as_ref().map(|c| c.as_str().to_owned());
    let lock = db.lock_rows();
    let (row, created): (Row, bool) = on_db!(db, pool => {
        let mut tx = pool.begin().await.map_err(DurableError::from)?;
        if let Some(code) = &code {
            let owner: Option<(String,)> = sqlx::query_as("SELECT id FROM promotions WHERE code = $1 AND id <> $2")
                .bind(code).bind(p.id.as_str()).fetch_optional(&mut *tx).await.map_err(DurableError::from)?;
            if let Some((owner,)) = owner {
                return Err(PutError::CodeTaken { code: code.clone(), owner });
            }
        }
        let existing: Option<(String,)> = sqlx::query_as(&format!("SELECT id FROM promotions WHERE id = $1{lock}"))
            .bind(p.id.as_str()).fetch_optional(&mut *tx).await.map_err(DurableError::from)?;
        let created = existing.is_none();
        let written = if created {
            sqlx::query("INSERT INTO promotions (id, code, definition, active, redeemed, pending, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0, $5, $5)")
                .bind(p.id.as_str()).bind(&code).bind(&definition).bind(p.active).bind(now.millis())
                .execute(&mut *tx).await
        } else {
            sqlx::query("UPDATE promotions SET code = $1, definition = $2, active = $3, updated_at = $4 WHERE id = $5")
                .bind(&code).bind(&definition).bind(p.active).bind(now.millis()).bind(p.id.as_str())
                .execute(&mut *tx).await
        };
        match written {
            Ok(_) => {}
            // Two admins racing for one code: the unique index refuses the second.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(PutError::CodeTaken { code: code.clone().unwrap_or_default(), owner: "another promotion".into() });
            }
            Err(e) => return Err(DurableError::from(e).into()),
        }
        let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM promotions WHERE id = $1"))
            .bind(p.id.as_str()).fetch_one(&mut *tx).await.map_err(DurableError::from)?;
        tx.commit().await.map_err(DurableError::from)?;
        (row, created)
    });
    Ok((stored_of(row, currency)?, created))
}

pub async fn get(db: &Durable, id: &PromotionId, currency: Currency) -> Result<Option<Stored>, DurableError> {
    let sql = format!("SELECT {COLUMNS} FROM promotions WHERE id = $1");
    let row: Option<Row> = on_db!(db, pool => sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(pool).await?);
    row.map(|r| stored_of(r, currency)).transpose()
}

/// The promotion of a code, if any.
pub async fn by_code(db: &Durable, code: &PromoCode, currency: Currency) -> Result<Option<Promotion>, DurableError> {
    let sql = format!("SELECT {COLUMNS} FROM promotions WHERE code = $1");
    let row: Option<Row> = on_db!(db, pool => sqlx::query_as(&sql).bind(code.as_str()).fetch_optional(pool).await?);
    Ok(row.map(|r| stored_of(r, currency)).transpose()?.map(|s| s.promotion))
}

/// Every promotion, by id.
pub async fn list(db: &Durable, currency: Currency) -> Result<Vec<Stored>, DurableError> {
    let sql = format!("SELECT {COLUMNS} FROM promotions ORDER BY id");
    let rows: Vec<Row> = on_db!(db, pool => sqlx::query_as(&sql).fetch_all(pool).await?);
    rows.into_iter().map(|r| stored_of(r, currency)).collect()
}

/// Deactivates a promotion; its history stays. `None` when there is no such promotion.
pub async fn deactivate(db: &Durable, id: &PromotionId, currency: Currency, now: Timestamp) -> Result<Option<Stored>, DurableError> {
    let Some(mut s) = get(db, id, currency).await? else { return Ok(None) };
    s.promotion.active = false;
    let definition = promotion_json(&s.promotion).to_string();
    on_db!(db, pool => {
        sqlx::query("UPDATE promotions SET definition = $1, active = FALSE, updated_at = $2 WHERE id = $3")
            .bind(&definition).bind(now.millis()).bind(id.as_str()).execute(pool).await?;
    });
    s.updated_at = now;
    Ok(Some(s))
}

/// The uses of each promotion by one customer (pending and paid orders).
pub async fn customer_usage(db: &Durable, user: &UserId) -> Result<HashMap<PromotionId, u64>, DurableError> {
    let sql = "SELECT promotion_id, COUNT(*) FROM redemptions WHERE user_id = $1 AND state <> 'released' GROUP BY promotion_id";
    let rows: Vec<(String, i64)> = on_db!(db, pool => sqlx::query_as(sql).bind(user.as_str()).fetch_all(pool).await?);
    Ok(rows.into_iter().filter_map(|(id, n)| Some((PromotionId::parse(&id).ok()?, u64::try_from(n).ok()?))).collect())
}

/// Every promotion at one moment, arranged for cart views.
#[derive(Default)]
pub struct Snapshot {
    /// Active promotions without a code: every cart is evaluated against them.
    automatic: Vec<Promotion>,
    /// Promotions with a code, by code, active or not (so a code on a cart can say why not).
    by_code: HashMap<PromoCode, Promotion>,
    /// Uses of each promotion, pending and paid.
    used: HashMap<PromotionId, u64>,
    /// Whether any promotion limits uses per customer (only then are a user's uses looked up).
    pub per_customer: bool,
}

impl Snapshot {
    fn of(stored: Vec<Stored>) -> Snapshot {
        let mut s = Snapshot::default();
        for x in stored {
            s.used.insert(x.promotion.id.clone(), x.redeemed + x.pending);
            s.per_customer |= x.promotion.active && x.promotion.usage_limit_per_customer.is_some();
            match &x.promotion.code {
                Some(code) => {
                    s.by_code.insert(code.clone(), x.promotion);
                }
                None if x.promotion.active => s.automatic.push(x.promotion),
                None => {}
            }
        }
        s
    }

    /// The promotions that concern a cart with these codes: the automatic ones and the codes'.
    pub fn for_codes(&self, codes: &[PromoCode]) -> Cow<'_, [Promotion]> {
        if codes.is_empty() {
            return Cow::Borrowed(&self.automatic);
        }
        let mut v = self.automatic.clone();
        v.extend(codes.iter().filter_map(|c| self.by_code.get(c)).cloned());
        Cow::Owned(v)
    }

    /// The promotion of a code, if any promotion has it.
    pub fn by_code(&self, code: &PromoCode) -> Option<&Promotion> {
        self.by_code.get(code)
    }

    pub fn usage(&self, id: &PromotionId, by_customer: Option<&HashMap<PromotionId, u64>>) -> Usage {
        Usage { total: self.used.get(id).copied().unwrap_or(0), by_customer: by_customer.and_then(|m| m.get(id).copied()).unwrap_or(0) }
    }

    /// Promotions the browser cart may evaluate for these codes: the automatic ones and the
    /// codes' (definitions only; `exhausted` when every use is taken).
    pub fn public_json(&self, codes: &[PromoCode]) -> Value {
        let list: Vec<Value> = self
            .for_codes(codes)
            .iter()
            .map(|p| {
                let mut v = promotion_json(p);
                let exhausted = p.usage_limit.is_some_and(|l| self.used.get(&p.id).copied().unwrap_or(0) >= l);
                if let Value::Object(m) = &mut v {
                    m.insert("exhausted".into(), json!(exhausted));
                }
                v
            })
            .collect();
        json!({ "promotions": list })
    }
}

struct Held {
    snapshot: Arc<Snapshot>,
    /// When the load that made `snapshot` started.
    at: Instant,
    /// When this instance last changed a promotion or its uses: a snapshot whose load started
    /// before is stale, whatever its age.
    changed: Instant,
}

/// The promotions snapshot, with the uses per customer that user carts' views need.
pub struct PromotionsCache {
    held: RwLock<Held>,
    ttl: Duration,
    currency: Currency,
    reloading: AtomicBool,
    load: tokio::sync::Mutex<()>,
    customers: Mutex<HashMap<UserId, (Instant, Uses)>>,
}

/// One customer's uses of each promotion.
type Uses = Arc<HashMap<PromotionId, u64>>;

/// Most customers whose uses are remembered at once; past it the memory starts over.
const MAX_CUSTOMERS: usize = 100_000;

impl PromotionsCache {
    pub fn new(ttl: Duration, currency: Currency) -> PromotionsCache {
        PromotionsCache {
            held: RwLock::new(Held {
                snapshot: Arc::default(),
                at: Instant::now() - ttl - Duration::from_secs(1),
                changed: Instant::now(),
            }),
            ttl,
            currency,
            reloading: AtomicBool::new(false),
            load: tokio::sync::Mutex::new(()),
            customers: Mutex::default(),
        }
    }

    fn held(&self) -> (Arc<Snapshot>, bool) {
        let h = self.held.read().unwrap_or_else(|e| e.into_inner());
        (h.snapshot.clone(), h.at.elapsed() > self.ttl || h.at <= h.changed)
    }

    /// This instance changed promotions or their uses: the next read loads them again, and the
    /// next write starts that in the background.
    pub fn invalidate(&self) {
        self.held.write().unwrap_or_else(|e| e.into_inner()).changed = Instant::now();
    }

    /// Loads every promotion now.
    pub async fn reload(&self, db: &Durable) -> Result<Arc<Snapshot>, DurableError> {
        let _one_at_a_time = self.load.lock().await;
        let started = Instant::now();
        let snapshot = Arc::new(Snapshot::of(list(db, self.currency).await?));
        let mut h = self.held.write().unwrap_or_else(|e| e.into_inner());
        if h.at < started {
            h.snapshot = snapshot;
            h.at = started;
        }
        Ok(h.snapshot.clone())
    }

    /// The snapshot, reloaded first if stale (a cart read waits on this; if the database cannot
    /// be read, the stale snapshot serves).
    pub async fn fresh(&self, db: &Durable) -> Arc<Snapshot> {
        let (snapshot, stale) = self.held();
        if !stale {
            return snapshot;
        }
        match self.reload(db).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload promotions; serving the last ones loaded");
                snapshot
            }
        }
    }

    /// The snapshot as held, reloaded in the background if stale: a cart write never waits.
    pub fn cached(self: &Arc<Self>, db: &Durable) -> Arc<Snapshot> {
        let (snapshot, stale) = self.held();
        if stale {
            self.reload_in_background(db);
        }
        snapshot
    }

    /// Starts a reload unless one is under way.
    fn reload_in_background(self: &Arc<Self>, db: &Durable) {
        if self.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        let (cache, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            if let Err(e) = cache.reload(&db).await {
                tracing::warn!(error = %e, "could not reload promotions");
            }
            cache.reloading.store(false, Ordering::Release);
        });
    }

    /// A customer's uses of each promotion: looked up when `wait` (a cart read) and the held
    /// figure is stale, else as held (none known: no uses).
    pub async fn customer(&self, db: &Durable, user: &UserId, wait: bool) -> Uses {
        let held = {
            let c = self.customers.lock().unwrap_or_else(|e| e.into_inner());
            c.get(user).cloned()
        };
        match held {
            Some((at, uses)) if !wait || at.elapsed() <= self.ttl => uses,
            None if !wait => Arc::default(),
            _ => match customer_usage(db, user).await {
                Ok(uses) => {
                    let uses = Arc::new(uses);
                    let mut c = self.customers.lock().unwrap_or_else(|e| e.into_inner());
                    if c.len() >= MAX_CUSTOMERS {
                        c.clear();
                    }
                    c.insert(user.clone(), (Instant::now(), uses.clone()));
                    uses
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a customer's promotion uses");
                    held.map(|h| h.1).unwrap_or_default()
                }
            },
        }
    }

    /// Loads a customer's uses again now (this instance just changed them), so their next cart
    /// write, which does not wait on the database, already counts them.
    pub async fn refresh_customer(&self, db: &Durable, user: &UserId) {
        match customer_usage(db, user).await {
            Ok(uses) => {
                let mut c = self.customers.lock().unwrap_or_else(|e| e.into_inner());
                if c.len() >= MAX_CUSTOMERS {
                    c.clear();
                }
                c.insert(user.clone(), (Instant::now(), Arc::new(uses)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read a customer's promotion uses");
                self.customers.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
            }
        }
    }
}
