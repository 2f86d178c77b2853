//! The catalog: products with their live price and stock, the admin's changes to them, bulk
//! loads, and a short-lived cache for the annotations of cart reads.

use crate::durable::{Durable, DurableError, on_db, placeholders};
use serde_json::{Value, json};
use shared::wire::{Annotation, Availability, ProductView};
use shared::{CartError, Currency, ErrorCode, Money, Sku, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    pub active: bool,
    pub on_hand: i64,
    pub reserved: i64,
}

impl Product {
    pub fn available(&self) -> i64 {
        if self.active { (self.on_hand - self.reserved).max(0) } else { 0 }
    }

    pub fn view(&self, low_threshold: i64) -> ProductView {
        ProductView {
            sku: self.sku.clone(),
            name: self.name.clone(),
            price: self.price,
            available: self.available(),
            availability: Availability::of(self.available(), 1, low_threshold),
        }
    }

    /// The admin's view: the public one plus the stock figures.
    pub fn admin_json(&self) -> Value {
        json!({
            "sku": self.sku, "name": self.name, "price": self.price, "active": self.active,
            "stock": self.on_hand, "reserved": self.reserved, "available": self.available(),
        })
    }
}

pub(crate) type ProductRow = (String, String, i64, String, bool, i64, i64);

pub(crate) fn product_of_row(row: ProductRow) -> Result<Product, DurableError> {
    let (sku, name, amount, currency, active, on_hand, reserved) = row;
    let bad = |e: CartError| DurableError::Corrupt(sku.clone(), e.message);
    Ok(Product {
        sku: Sku::parse(&sku).map_err(bad)?,
        price: Money::new(amount, Currency::parse(&currency).map_err(bad)?).map_err(bad)?,
        name,
        active,
        on_hand,
        reserved,
    })
}

pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_amount, currency, active, on_hand, reserved";

/// A product to create or change; on update every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductChange {
    pub name: Option<String>,
    pub price: Option<Money>,
    pub stock: Option<i64>,
    pub active: Option<bool>,
}

/// Most units of one SKU the catalog holds; keeps every sum far from overflow.
pub const MAX_STOCK: i64 = 1_000_000_000;

impl ProductChange {
    /// Parses `{"name"?, "price"?: Money, "stock"?: n, "active"?: bool}`; prices must be in the
    /// store's currency.
    pub fn parse(v: &Value, currency: Currency) -> Result<ProductChange, CartError> {
        let obj = v.as_object().ok_or_else(|| CartError::new(ErrorCode::InvalidRequest, "a product is a JSON object"))?;
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => Some(s.trim().to_owned()),
            Some(_) => return Err(CartError::new(ErrorCode::InvalidRequest, "name is 1 to 200 characters")),
        };
        let price = match obj.get("price") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let m = Money::from_json(p)?;
                if m.currency() != currency {
                    return Err(CartError::new(ErrorCode::CurrencyMismatch, format!("prices are in {currency}")));
                }
                Some(m)
            }
        };
        let stock = match obj.get("stock") {
            None | Some(Value::Null) => None,
            Some(s) => match s.as_i64() {
                Some(n) if (0..=MAX_STOCK).contains(&n) => Some(n),
                _ => return Err(CartError::new(ErrorCode::InvalidRequest, format!("stock is a whole number from 0 to {MAX_STOCK}"))),
            },
        };
        let active = match obj.get("active") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(CartError::new(ErrorCode::InvalidRequest, "active is true or false")),
        };
        Ok(ProductChange { name, price, stock, active })
    }
}

/// A complete product row for a bulk load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    pub stock: i64,
}

impl NewProduct {
    pub fn from_change(sku: Sku, c: ProductChange) -> Result<NewProduct, CartError> {
        match (c.name, c.price) {
            (Some(name), Some(price)) => Ok(NewProduct { sku, name, price, stock: c.stock.unwrap_or(0) }),
            _ => Err(CartError::new(ErrorCode::InvalidRequest, "a new product needs a name and a price")),
        }
    }
}

pub enum UpsertError {
    Invalid(CartError),
    Db(DurableError),
}

impl From<sqlx::Error> for UpsertError {
    fn from(e: sqlx::Error) -> Self {
        UpsertError::Db(e.into())
    }
}

impl Durable {
    /// The products among `skus` that the catalog knows, in one query.
    pub async fn products(&self, skus: &[Sku]) -> Result<Vec<Product>, DurableError> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({})", placeholders(1, skus.len()));
        let rows: Vec<ProductRow> = on_db!(self, pool => {
            let mut q = sqlx::query_as(&sql);
            for s in skus {
                q = q.bind(s.as_str());
            }
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(product_of_row).collect()
    }

    /// Up to `limit` products on sale, by SKU.
    pub async fn list_products(&self, limit: usize) -> Result<Vec<Product>, DurableError> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE active ORDER BY sku LIMIT $1");
        let rows: Vec<ProductRow> = on_db!(self, pool => sqlx::query_as(&sql).bind(limit as i64).fetch_all(pool).await?);
        rows.into_iter().map(product_of_row).collect()
    }

    pub async fn product(&self, sku: &Sku) -> Result<Option<Product>, DurableError> {
        Ok(self.products(std::slice::from_ref(sku)).await?.pop())
    }

    /// Creates or changes one product. Stock can never be set below what is reserved.
    pub async fn upsert_product(&self, sku: &Sku, change: ProductChange, now: Timestamp) -> Result<Product, UpsertError> {
        let lock = self.lock_rows();
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = $1{lock}");
            let row: Option<ProductRow> = sqlx::query_as(&sql).bind(sku.as_str()).fetch_optional(&mut *tx).await?;
            let current = row.map(product_of_row).transpose().map_err(UpsertError::Db)?;
            let product = match current {
                None => {
                    let p = NewProduct::from_change(sku.clone(), change.clone()).map_err(UpsertError::Invalid)?;
                    sqlx::query("INSERT INTO products (sku, name, price_amount, currency, active, on_hand, reserved, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)")
                        .bind(sku.as_str()).bind(&p.name).bind(p.price.amount()).bind(p.price.currency().as_str())
                        .bind(change.active.unwrap_or(true)).bind(p.stock).bind(now.millis())
                        .execute(&mut *tx).await?;
                    Product { sku: sku.clone(), name: p.name, price: p.price, active: change.active.unwrap_or(true), on_hand: p.stock, reserved: 0 }
                }
                Some(cur) => {
                    let next = Product {
                        sku: sku.clone(),
                        name: change.name.unwrap_or(cur.name),
                        price: change.price.unwrap_or(cur.price),
                        active: change.active.unwrap_or(cur.active),
                        on_hand: change.stock.unwrap_or(cur.on_hand),
                        reserved: cur.reserved,
                    };
                    if next.on_hand < next.reserved {
                        return Err(UpsertError::Invalid(CartError::new(
                            ErrorCode::StockBelowReserved,
                            format!("{} units are reserved by pending orders; stock cannot go below that", next.reserved),
                        )));
                    }
                    sqlx::query("UPDATE products SET name = $1, price_amount = $2, currency = $3, active = $4, on_hand = $5, updated_at = $6 WHERE sku = $7")
                        .bind(&next.name).bind(next.price.amount()).bind(next.price.currency().as_str())
                        .bind(next.active).bind(next.on_hand).bind(now.millis()).bind(sku.as_str())
                        .execute(&mut *tx).await?;
                    next
                }
            };
            tx.commit().await?;
            Ok(product)
        })
    }

    /// Loads products all or nothing, in one transaction. Existing SKUs get the new name, price
    /// and stock; a stock below what is reserved fails the whole load
    /// ([`DurableError::StockBelowReserved`]). `progress` is called with the number of rows
    /// written so far.
    pub async fn import_products(&self, rows: &[NewProduct], now: Timestamp, progress: impl Fn(usize)) -> Result<usize, DurableError> {
        const CHUNK: usize = 500;
        let lock = self.lock_rows();
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            for (i, chunk) in rows.chunks(CHUNK).enumerate() {
                // Reserved units are checked first, under the rows' locks, so the refusal names
                // the SKU rather than a constraint.
                let sql = format!("SELECT sku, reserved FROM products WHERE reserved > 0 AND sku IN ({}) ORDER BY sku{lock}", placeholders(1, chunk.len()));
                let mut q = sqlx::query_as(&sql);
                for p in chunk {
                    q = q.bind(p.sku.as_str());
                }
                let reserved: Vec<(String, i64)> = q.fetch_all(&mut *tx).await?;
                for (sku, units) in reserved {
                    if chunk.iter().any(|p| p.sku.as_str() == sku && p.stock < units) {
                        return Err(DurableError::StockBelowReserved { sku, reserved: units });
                    }
                }
                let values = (0..chunk.len()).map(|j| format!("({})", placeholders(j * 6 + 1, 6))).collect::<Vec<_>>().join(", ");
                let sql = format!(
                    "INSERT INTO products (sku, name, price_amount, currency, on_hand, updated_at) VALUES {values}
                     ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_amount = EXCLUDED.price_amount,
                        currency = EXCLUDED.currency, on_hand = EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at"
                );
                let mut q = sqlx::query(&sql);
                for p in chunk {
                    q = q.bind(p.sku.as_str()).bind(&p.name).bind(p.price.amount()).bind(p.price.currency().to_string()).bind(p.stock).bind(now.millis());
                }
                q.execute(&mut *tx).await?;
                progress((i * CHUNK + chunk.len()).min(rows.len()));
            }
            tx.commit().await?;
            Ok(rows.len())
        })
    }
}

/// Parses a JSON array of products (the admin bulk endpoint and `import`). Every row is checked
/// before anything is loaded; `locate(i)` names row `i` in errors (an index or a line number).
pub fn parse_product_list(items: &[Value], currency: Currency, locate: impl Fn(usize) -> String) -> Result<Vec<NewProduct>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let parsed = (|| {
            let sku = Sku::parse(item.get("sku").and_then(Value::as_str).unwrap_or(""))?;
            let p = NewProduct::from_change(sku, ProductChange::parse(item, currency)?)?;
            if !seen.insert(p.sku.clone()) {
                return Err(CartError::new(ErrorCode::InvalidRequest, format!("{} appears twice", p.sku)));
            }
            Ok(p)
        })();
        match parsed {
            Ok(p) => out.push(p),
            Err(e) => errors.push(format!("{}: {} ({})", locate(i), e.message, e.code)),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// What the catalog said of one SKU, and when.
struct Entry {
    /// `None` when the catalog does not know the SKU.
    fact: Option<Fact>,
    at: Instant,
}

/// A SKU's live price (while on sale) and its free stock, as a cart annotation needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fact {
    pub price: Option<Money>,
    pub available: i64,
    /// Still sold: a product the admin set `"active": false` is discontinued.
    pub active: bool,
}

/// Recent catalog facts for cart annotations, at most `price_ttl` old for prices and `stock_ttl`
/// for stock (one query refreshes both, so an entry is as fresh as the shorter asks). A miss is
/// refreshed for all missing SKUs with one query. Lookups take one lock and answer in the order
/// asked, without copying SKUs: every cart response reads one entry per line.
pub struct CatalogCache {
    entries: Mutex<HashMap<Sku, Entry>>,
    ttl: Duration,
    pub low_stock_threshold: i64,
    refreshing: Mutex<std::collections::HashSet<Sku>>,
}

/// Most SKUs the cache remembers. Carts may name SKUs the catalog does not have (any client can
/// invent them), so without a bound the cache would grow with every invented SKU.
const MAX_ENTRIES: usize = 100_000;

/// Keeps `entries` within `max`: past it, stale entries go first, then SKUs the catalog does not
/// have, then everything (the next lookups fill it again from the database).
fn bound(entries: &mut HashMap<Sku, Entry>, now: Instant, ttl: Duration, max: usize) {
    if entries.len() <= max {
        return;
    }
    entries.retain(|_, e| now.duration_since(e.at) <= ttl);
    if entries.len() > max {
        entries.retain(|_, e| e.fact.is_some());
    }
    if entries.len() > max {
        entries.clear();
    }
    entries.shrink_to(max);
}

impl CatalogCache {
    pub fn new(price_ttl: Duration, stock_ttl: Duration, low_stock_threshold: i64) -> Self {
        CatalogCache { entries: Mutex::default(), ttl: price_ttl.min(stock_ttl), low_stock_threshold, refreshing: Mutex::default() }
    }

    /// Forgets what it knows of these SKUs (after this instance changed them).
    pub fn forget(&self, skus: &[Sku]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for sku in skus {
            entries.remove(sku);
        }
    }

    /// The facts of `skus` in their order, fresh or not, and the SKUs that are stale or missing.
    fn held<'a>(&self, skus: impl Iterator<Item = &'a Sku>, now: Instant) -> (Vec<Option<Fact>>, Vec<Sku>) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut stale = Vec::new();
        let facts = skus
            .map(|sku| match entries.get(sku) {
                Some(e) => {
                    if now.duration_since(e.at) > self.ttl {
                        stale.push(sku.clone());
                    }
                    e.fact
                }
                None => {
                    stale.push(sku.clone());
                    None
                }
            })
            .collect();
        (facts, stale)
    }

    async fn refresh(&self, db: &Durable, stale: &[Sku], now: Instant) -> Result<(), DurableError> {
        let fresh = db.products(stale).await?;
        let by_sku: HashMap<&Sku, &Product> = fresh.iter().map(|p| (&p.sku, p)).collect();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for sku in stale {
            let fact = by_sku.get(sku).map(|p| Fact { price: p.active.then_some(p.price), available: p.available(), active: p.active });
            entries.insert(sku.clone(), Entry { fact, at: now });
        }
        bound(&mut entries, now, self.ttl, MAX_ENTRIES);
        Ok(())
    }

    /// Loads the facts of `skus` now, in chunks (after this instance changed them: its cart
    /// writes see the change at once, other instances within the cache age).
    pub async fn reload(&self, db: &Durable, skus: &[Sku]) -> Result<(), DurableError> {
        for chunk in skus.chunks(1000) {
            self.refresh(db, chunk, Instant::now()).await?;
        }
        Ok(())
    }

    /// Loads the whole catalog (up to the cache's bound), so cart writes find every price
    /// without a database round trip: an `add` without a price takes the catalog's from here.
    pub async fn preload(&self, db: &Durable) -> Result<usize, DurableError> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku LIMIT $1");
        let rows: Vec<ProductRow> = on_db!(db, pool => sqlx::query_as(&sql).bind(MAX_ENTRIES as i64).fetch_all(pool).await?);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for p in rows.into_iter().filter_map(|r| product_of_row(r).ok()) {
            let fact = Some(Fact { price: p.active.then_some(p.price), available: p.available(), active: p.active });
            entries.insert(p.sku, Entry { fact, at: now });
            n += 1;
        }
        bound(&mut entries, now, self.ttl, MAX_ENTRIES);
        Ok(n)
    }

    /// The catalog prices of `skus` (in their order) for `add`s that name none, as the cache
    /// holds them, fresh or not, without a database round trip: the cache holds the whole
    /// catalog (reloaded every price-cache age), so a SKU it has not seen is one the catalog
    /// lacks, or one made on another instance since the last reload, which the next reload (or
    /// the background lookup this starts) brings.
    pub fn prices_at_add(self: &Arc<Self>, db: &Durable, skus: &[&Sku]) -> Vec<Option<Money>> {
        self.lookup_cached(db, skus.iter().copied()).into_iter().map(|f| f.and_then(|f| f.price)).collect()
    }

    /// SKUs remembered (known and unknown).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The facts of `skus` in their order (`None`: unknown to the catalog), refreshing what is
    /// stale first with one query. A cart read waits on this.
    pub async fn lookup<'a>(&self, db: &Durable, skus: impl Iterator<Item = &'a Sku> + Clone) -> Result<Vec<Option<Fact>>, DurableError> {
        let now = Instant::now();
        let (facts, stale) = self.held(skus.clone(), now);
        if stale.is_empty() {
            return Ok(facts);
        }
        self.refresh(db, &stale, now).await?;
        Ok(self.held(skus, now).0)
    }

    /// The facts the cache holds now, in the order of `skus`, without waiting for the database;
    /// stale or missing SKUs are refreshed in the background (once at a time), so cart writes
    /// never wait on it.
    pub fn lookup_cached<'a>(self: &Arc<Self>, db: &Durable, skus: impl Iterator<Item = &'a Sku>) -> Vec<Option<Fact>> {
        let now = Instant::now();
        let (facts, stale) = self.held(skus, now);
        if !stale.is_empty() {
            let stale: Vec<Sku> = {
                let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
                stale.into_iter().filter(|s| refreshing.insert(s.clone())).collect()
            };
            if !stale.is_empty() {
                let (cache, db) = (self.clone(), db.clone());
                tokio::spawn(async move {
                    if let Err(e) = cache.refresh(&db, &stale, now).await {
                        tracing::warn!(error = %e, "could not refresh catalog annotations");
                    }
                    let mut refreshing = cache.refreshing.lock().unwrap_or_else(|e| e.into_inner());
                    for s in &stale {
                        refreshing.remove(s);
                    }
                });
            }
        }
        facts
    }

    /// The annotation of a cart line of `quantity` from its fact.
    pub fn annotate(&self, fact: Option<Fact>, quantity: u32) -> Option<Annotation> {
        let f = fact?;
        let availability =
            if f.active { Availability::of(f.available, quantity, self.low_stock_threshold) } else { Availability::Discontinued };
        Some(Annotation { current_price: f.price, availability })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_dropping_stale_then_unknown_skus_first() {
        let now = Instant::now();
        let old = now.checked_sub(Duration::from_secs(120)).unwrap_or(now);
        let ttl = Duration::from_secs(60);
        let sku = |i: usize| Sku::parse(&format!("S{i}")).expect("a sku");
        let known = Some(Fact { price: None, available: 1, active: true });
        let mut entries: HashMap<Sku, Entry> = HashMap::new();
        for i in 0..10 {
            entries.insert(sku(i), Entry { fact: known, at: now });
        }
        bound(&mut entries, now, ttl, 10);
        assert_eq!(entries.len(), 10, "at the bound nothing goes");
        for i in 10..15 {
            entries.insert(sku(i), Entry { fact: known, at: old });
        }
        bound(&mut entries, now, ttl, 10);
        assert_eq!(entries.len(), 10, "the stale ones went");
        assert!(entries.contains_key(&sku(0)) && !entries.contains_key(&sku(10)));
        for i in 20..25 {
            entries.insert(sku(i), Entry { fact: None, at: now });
        }
        bound(&mut entries, now, ttl, 12);
        assert_eq!(entries.len(), 10, "then the SKUs the catalog does not have");
        assert!(entries.values().all(|e| e.fact.is_some()));
        for i in 30..40 {
            entries.insert(sku(i), Entry { fact: known, at: now });
        }
        bound(&mut entries, now, ttl, 12);
        assert!(entries.is_empty(), "and if it is still over, everything");
    }
}
