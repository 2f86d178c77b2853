//! Checkout, orders, stock holds, the payment webhook's transitions, the hold sweeper and
//! idempotency keys, all in the durable store.
//!
//! Where a reservation is decided: in one database transaction per checkout that locks the
//! product rows of the cart (in SKU order, so two checkouts cannot deadlock) and moves
//! `reserved` up only if every line fits. A hot SKU serializes only the checkouts that want it,
//! for the few statements of one transaction; other SKUs proceed in parallel. See ARCHITECTURE.md.
//!
//! Lock order everywhere: the owner's advisory lock, orders, holds, products.

use crate::catalog::{PRODUCT_COLUMNS, Product};
use crate::durable::{Durable, DurableError, is_retryable, on_db, placeholders};
use crate::identity::CartKey;
use serde_json::{Value, json};
use shared::wire::{OrderLineView, OrderView};
use shared::{Cart, Currency, Money, Sku, Timestamp, UserId, price_cart};
use std::collections::{BTreeSet, HashMap};

/// An order as stored, with the cart it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub view: OrderView,
    pub owner: String,
    pub user: Option<UserId>,
}

impl Order {
    pub fn cart_key(&self) -> CartKey {
        CartKey { tag: self.owner.clone(), user: self.user.clone() }
    }

    pub fn skus(&self) -> Vec<Sku> {
        self.view.lines.iter().map(|l| l.sku.clone()).collect()
    }
}

type OrderRow = (String, String, Option<String>, String, String, i64, String, i64, i64, Option<String>);

/// `(request_hash, state, status, body, created_at)` of an idempotency key.
type KeyRow = (String, String, Option<i32>, Option<String>, i64);

const ORDER_COLUMNS: &str = "id, owner, user_id, status, currency, total_amount, lines, reserved_until, created_at, payment_ref";

fn order_of(row: OrderRow) -> Result<Order, DurableError> {
    let (id, owner, user, status, currency, total, lines, reserved_until, created_at, payment_ref) = row;
    let bad = |why: String| DurableError::Corrupt(id.clone(), why);
    let currency = Currency::parse(&currency).map_err(|e| bad(e.message))?;
    let lines: Vec<OrderLineView> = serde_json::from_str(&lines).map_err(|e| bad(e.to_string()))?;
    Ok(Order {
        view: OrderView {
            id: id.clone(),
            status,
            lines,
            total: Money::new(total, currency).map_err(|e| bad(e.message))?,
            reserved_until: Timestamp::from_millis(reserved_until),
            created_at: Timestamp::from_millis(created_at),
            payment_ref,
        },
        owner,
        user: user.and_then(|u| UserId::parse(&u).ok()),
    })
}

pub enum CheckoutResult {
    Created(Order),
    /// `expected_total` was not the live total: `changes` lists lines whose price moved.
    PriceChanged {
        changes: Vec<Value>,
        total: Money,
    },
    /// Lines that cannot be reserved: `{sku, requested, available}` each.
    OutOfStock(Vec<Value>),
}

pub enum PaymentResult {
    /// The order after the transition; `newly_paid` on the first success only.
    Done {
        order: Order,
        newly_paid: bool,
    },
    NotFound,
    Expired(Order),
    NotPending(Order),
}

pub enum IdempotencyStart {
    /// This request owns the key now.
    Fresh,
    /// The key's first request finished: its status and body.
    Replay(u16, String),
    InProgress,
    /// The key was used with another body.
    Reused,
}

impl Durable {
    /// Prices the cart live and reserves every line for `hold_ms`, all or nothing, after
    /// releasing the owner's own earlier pending order.
    pub async fn checkout(
        &self,
        owner: &CartKey,
        cart: &Cart,
        expected: Option<Money>,
        hold_ms: i64,
        now: Timestamp,
    ) -> Result<CheckoutResult, DurableError> {
        retrying(|| self.checkout_once(owner, cart, expected, hold_ms, now)).await
    }

    async fn checkout_once(
        &self,
        owner: &CartKey,
        cart: &Cart,
        expected: Option<Money>,
        hold_ms: i64,
        now: Timestamp,
    ) -> Result<CheckoutResult, DurableError> {
        let lock = self.lock_rows();
        let is_pg = matches!(self, Durable::Postgres(_));
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            if is_pg {
                // One checkout per cart at a time, so two clicks cannot both hold stock.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&owner.tag).execute(&mut *tx).await?;
            }
            let prev: Vec<(String,)> = sqlx::query_as(&format!("SELECT id FROM orders WHERE owner = $1 AND status = 'pending_payment' ORDER BY id{lock}"))
                .bind(&owner.tag).fetch_all(&mut *tx).await?;
            let prev_holds: Vec<(String, String, i64)> = if prev.is_empty() {
                Vec::new()
            } else {
                let sql = format!("SELECT order_id, sku, quantity FROM holds WHERE state = 'live' AND order_id IN ({}) ORDER BY order_id, sku{lock}", placeholders(1, prev.len()));
                let mut q = sqlx::query_as(&sql);
                for (id,) in &prev {
                    q = q.bind(id);
                }
                q.fetch_all(&mut *tx).await?
            };
            let skus: BTreeSet<&str> = cart.lines.iter().map(|l| l.sku.as_str()).chain(prev_holds.iter().map(|h| h.1.as_str())).collect();
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({}) ORDER BY sku{lock}", placeholders(1, skus.len()));
            let mut q = sqlx::query_as(&sql);
            for s in &skus {
                q = q.bind(*s);
            }
            let rows: Vec<(String, String, i64, String, bool, i64, i64)> = if skus.is_empty() { Vec::new() } else { q.fetch_all(&mut *tx).await? };
            let mut products: HashMap<String, Product> = HashMap::new();
            for row in rows {
                let p = crate::catalog::product_of_row(row)?;
                products.insert(p.sku.as_str().to_owned(), p);
            }

            // The shopper's own earlier hold is released first, so it never blocks them.
            for (order_id, sku, q) in &prev_holds {
                sqlx::query("UPDATE holds SET state = 'released' WHERE order_id = $1 AND sku = $2").bind(order_id).bind(sku).execute(&mut *tx).await?;
                sqlx::query("UPDATE products SET reserved = reserved - $1 WHERE sku = $2").bind(q).bind(sku).execute(&mut *tx).await?;
                if let Some(p) = products.get_mut(sku) {
                    p.reserved -= q;
                }
            }
            for (id,) in &prev {
                sqlx::query("UPDATE orders SET status = 'cancelled', updated_at = $1 WHERE id = $2").bind(now.millis()).bind(id).execute(&mut *tx).await?;
            }

            let live = |sku: &Sku| products.get(sku.as_str()).filter(|p| p.active).map(|p| p.price);
            // Lines that cannot be had in the quantity asked; a SKU the catalog does not sell has none.
            let shortages = |not_sold: &[Sku]| -> Vec<Value> {
                cart.lines.iter().filter_map(|l| {
                    let available = if not_sold.contains(&l.sku) { 0 } else { products.get(l.sku.as_str()).map_or(0, Product::available) };
                    (available < i64::from(l.quantity)).then(|| json!({"sku": l.sku, "requested": l.quantity, "available": available}))
                }).collect()
            };
            let priced = match price_cart(cart, live) {
                Ok(p) => p,
                Err(missing) => return Ok(CheckoutResult::OutOfStock(shortages(&missing))),
            };
            if let Some(exp) = expected && exp != priced.total {
                let changes = priced.lines.iter().filter(|l| l.price_changed())
                    .map(|l| json!({"sku": l.sku, "price_at_add": l.price_at_add, "current_price": l.unit_price}))
                    .collect();
                return Ok(CheckoutResult::PriceChanged { changes, total: priced.total });
            }
            let short = shortages(&[]);
            if !short.is_empty() {
                return Ok(CheckoutResult::OutOfStock(short));
            }

            let id = format!("ord_{}", uuid::Uuid::new_v4().simple());
            let reserved_until = Timestamp::from_millis(now.millis() + hold_ms);
            let lines: Vec<OrderLineView> = priced.lines.iter().map(|l| OrderLineView {
                sku: l.sku.clone(), quantity: l.quantity, unit_price: l.unit_price, price_at_add: l.price_at_add, line_total: l.line_total,
            }).collect();
            let lines_json = serde_json::to_string(&lines).map_err(|e| DurableError::Corrupt(id.clone(), e.to_string()))?;
            sqlx::query(&format!("INSERT INTO orders ({ORDER_COLUMNS}, updated_at) VALUES ($1, $2, $3, 'pending_payment', $4, $5, $6, $7, $8, NULL, $9)"))
                .bind(&id).bind(&owner.tag).bind(owner.user().map(|u| u.as_str().to_owned()))
                .bind(cart.currency.as_str()).bind(priced.total.amount()).bind(&lines_json)
                .bind(reserved_until.millis()).bind(now.millis()).bind(now.millis())
                .execute(&mut *tx).await?;
            for l in &priced.lines {
                sqlx::query("UPDATE products SET reserved = reserved + $1 WHERE sku = $2").bind(i64::from(l.quantity)).bind(l.sku.as_str()).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO holds (order_id, sku, quantity, expires_at, state) VALUES ($1, $2, $3, $4, 'live')")
                    .bind(&id).bind(l.sku.as_str()).bind(i64::from(l.quantity)).bind(reserved_until.millis())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(CheckoutResult::Created(Order {
                view: OrderView { id, status: "pending_payment".into(), lines, total: priced.total, reserved_until, created_at: now, payment_ref: None },
                owner: owner.tag.clone(),
                user: owner.user().cloned(),
            }))
        })
    }

    pub async fn order(&self, id: &str) -> Result<Option<Order>, DurableError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row: Option<OrderRow> = on_db!(self, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?);
        row.map(order_of).transpose()
    }

    /// Applies the payment provider's verdict. Replays change nothing.
    pub async fn record_payment(
        &self,
        id: &str,
        succeeded: bool,
        payment_ref: &str,
        now: Timestamp,
    ) -> Result<PaymentResult, DurableError> {
        retrying(|| self.record_payment_once(id, succeeded, payment_ref, now)).await
    }

    async fn record_payment_once(
        &self,
        id: &str,
        succeeded: bool,
        payment_ref: &str,
        now: Timestamp,
    ) -> Result<PaymentResult, DurableError> {
        let lock = self.lock_rows();
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<OrderRow> = sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{lock}")).bind(id).fetch_optional(&mut *tx).await?;
            let Some(mut order) = row.map(order_of).transpose()? else { return Ok(PaymentResult::NotFound) };
            let holds: Vec<(String, i64, String)> = sqlx::query_as(&format!("SELECT sku, quantity, state FROM holds WHERE order_id = $1 ORDER BY sku{lock}"))
                .bind(id).fetch_all(&mut *tx).await?;
            let result = match (succeeded, order.view.status.as_str()) {
                (true, "paid") | (false, "cancelled" | "expired") => return Ok(PaymentResult::Done { order, newly_paid: false }),
                (true, "expired") => return Ok(PaymentResult::Expired(order)),
                (true, "pending_payment") if now > order.view.reserved_until || holds.iter().any(|h| h.2 != "live") => {
                    release(&mut tx, id, &holds).await?;
                    order.view.status = "expired".into();
                    PaymentResult::Expired(order.clone())
                }
                (true, "pending_payment") => {
                    for (sku, q, _) in &holds {
                        sqlx::query("UPDATE products SET on_hand = on_hand - $1, reserved = reserved - $1 WHERE sku = $2").bind(q).bind(sku).execute(&mut *tx).await?;
                    }
                    sqlx::query("UPDATE holds SET state = 'consumed' WHERE order_id = $1 AND state = 'live'").bind(id).execute(&mut *tx).await?;
                    order.view.status = "paid".into();
                    order.view.payment_ref = Some(payment_ref.to_owned());
                    PaymentResult::Done { order: order.clone(), newly_paid: true }
                }
                (false, "pending_payment") => {
                    release(&mut tx, id, &holds).await?;
                    order.view.status = "cancelled".into();
                    order.view.payment_ref = Some(payment_ref.to_owned());
                    PaymentResult::Done { order: order.clone(), newly_paid: false }
                }
                _ => return Ok(PaymentResult::NotPending(order)),
            };
            sqlx::query("UPDATE orders SET status = $1, payment_ref = $2, updated_at = $3 WHERE id = $4")
                .bind(&order.view.status).bind(&order.view.payment_ref).bind(now.millis()).bind(id)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(result)
        })
    }

    /// Releases holds that expired before `now`, each exactly once even with several sweepers,
    /// and marks their orders expired. Returns the SKUs whose stock moved.
    pub async fn release_expired_holds(&self, now: Timestamp) -> Result<Vec<Sku>, DurableError> {
        let skip = match self {
            Durable::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Durable::Sqlite(_) => "",
        };
        let released: Vec<(String, String, i64)> = on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let due: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "SELECT order_id, sku, quantity FROM holds WHERE state = 'live' AND expires_at < $1 ORDER BY sku, order_id LIMIT 500{skip}"
            )).bind(now.millis()).fetch_all(&mut *tx).await?;
            for (order_id, sku, q) in &due {
                sqlx::query("UPDATE holds SET state = 'released' WHERE order_id = $1 AND sku = $2").bind(order_id).bind(sku).execute(&mut *tx).await?;
                sqlx::query("UPDATE products SET reserved = reserved - $1 WHERE sku = $2").bind(q).bind(sku).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            sqlx::query("UPDATE orders SET status = 'expired', updated_at = $1 WHERE status = 'pending_payment' AND reserved_until < $1")
                .bind(now.millis()).execute(pool).await?;
            due
        });
        let skus: BTreeSet<String> = released.into_iter().map(|r| r.1).collect();
        Ok(skus.iter().filter_map(|s| Sku::parse(s).ok()).collect())
    }

    /// Claims an idempotency key for one request, or tells what became of its first request. A
    /// claim older than `stale_ms` that never finished (its server died) may be taken over.
    pub async fn idempotency_start(
        &self,
        owner: &str,
        key: &str,
        request_hash: &str,
        now: Timestamp,
        stale_ms: i64,
    ) -> Result<IdempotencyStart, DurableError> {
        on_db!(self, pool => {
            let inserted = sqlx::query("INSERT INTO idempotency_keys (owner, key, request_hash, state, created_at) VALUES ($1, $2, $3, 'running', $4) ON CONFLICT DO NOTHING")
                .bind(owner).bind(key).bind(request_hash).bind(now.millis()).execute(pool).await?.rows_affected();
            if inserted == 1 {
                return Ok(IdempotencyStart::Fresh);
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT request_hash, state, status, body, created_at FROM idempotency_keys WHERE owner = $1 AND key = $2",
            ).bind(owner).bind(key).fetch_optional(pool).await?;
            let Some((hash, state, status, body, created_at)) = row else {
                // Swept between the two statements: claim it afresh.
                return Ok(IdempotencyStart::InProgress);
            };
            if hash != request_hash {
                return Ok(IdempotencyStart::Reused);
            }
            if state == "done" {
                return Ok(IdempotencyStart::Replay(status.unwrap_or(500) as u16, body.unwrap_or_default()));
            }
            if now.millis() - created_at > stale_ms {
                let taken = sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE owner = $2 AND key = $3 AND state = 'running' AND created_at = $4")
                    .bind(now.millis()).bind(owner).bind(key).bind(created_at).execute(pool).await?.rows_affected();
                if taken == 1 {
                    return Ok(IdempotencyStart::Fresh);
                }
            }
            Ok(IdempotencyStart::InProgress)
        })
    }

    pub async fn idempotency_finish(&self, owner: &str, key: &str, status: u16, body: &str) -> Result<(), DurableError> {
        on_db!(self, pool => {
            sqlx::query("UPDATE idempotency_keys SET state = 'done', status = $1, body = $2 WHERE owner = $3 AND key = $4")
                .bind(i32::from(status)).bind(body).bind(owner).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// Gives a key back after a failure on our side, so the client's retry runs afresh.
    pub async fn idempotency_abandon(&self, owner: &str, key: &str) -> Result<(), DurableError> {
        on_db!(self, pool => {
            sqlx::query("DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND state = 'running'").bind(owner).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// Forgets keys older than `before`.
    pub async fn idempotency_sweep(&self, before: Timestamp) -> Result<u64, DurableError> {
        Ok(on_db!(self, pool => {
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before.millis()).execute(pool).await?.rows_affected()
        }))
    }
}

/// Runs a transaction again (up to five times) when it lost a deadlock or a serialization conflict.
async fn retrying<T, F: Future<Output = Result<T, DurableError>>>(mut run: impl FnMut() -> F) -> Result<T, DurableError> {
    let mut attempt = 0;
    loop {
        match run().await {
            Err(DurableError::Sql(e)) if is_retryable(&e) && attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}

/// Releases the live holds of one order (inside its transaction).
async fn release<'c, DB>(tx: &mut sqlx::Transaction<'c, DB>, order_id: &str, holds: &[(String, i64, String)]) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q String: sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB>,
{
    for (sku, q, state) in holds {
        if state != "live" {
            continue;
        }
        sqlx::query("UPDATE products SET reserved = reserved - $1 WHERE sku = $2").bind(*q).bind(sku).execute(&mut **tx).await?;
        sqlx::query("UPDATE holds SET state = 'released' WHERE order_id = $1 AND sku = $2")
            .bind(order_id)
            .bind(sku)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
