//! Checkout: the cart priced live and every line reserved for the hold time, all or nothing, in
//! one database transaction per checkout.
//!
//! Where a reservation is decided: the transaction locks the product rows of the cart (in SKU
//! order) and moves `reserved` up only if every line fits, by `shared::decide_checkout`. A hot
//! SKU serializes only the checkouts that want it, for the few statements of one transaction;
//! other SKUs proceed in parallel. See ARCHITECTURE.md.

use super::holds::give_up_orders;
use super::{ORDER_COLUMNS, Order, OrderStatus, retrying};
use crate::carts::{Carts, CartsError};
use crate::catalog::{CatalogCache, PRODUCT_COLUMNS, Product, ProductRow, product_of_row};
use crate::durable::{Durable, DurableError, on_db, placeholders};
use crate::identity::CartKey;
use shared::wire::{OrderLineView, OrderView};
use shared::{Cart, CheckoutDecision, Money, Offer, PriceChange, Shortage, Sku, Timestamp, decide_checkout};
use std::collections::{BTreeSet, HashMap};

/// Why no order was placed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart is empty")]
    CartEmpty,
    #[error("prices changed since the cart was priced")]
    PriceChanged { changes: Vec<PriceChange>, total: Money },
    #[error("some lines cannot be reserved")]
    OutOfStock(Vec<Shortage>),
    #[error(transparent)]
    Cart(#[from] CartsError),
    #[error(transparent)]
    Db(#[from] DurableError),
}

/// What a checkout needs.
pub struct Checkout<'a> {
    pub carts: &'a Carts,
    pub durable: &'a Durable,
    pub catalog: &'a CatalogCache,
    pub hold_ms: i64,
}

impl Checkout<'_> {
    /// Places an order for the cart of `owner` at live prices, holding its stock for the hold
    /// time, after releasing the owner's own earlier pending order (a shopper is never blocked by
    /// their own hold). `expected` is the total the shopper was shown, if they said.
    pub async fn place(&self, owner: &CartKey, expected: Option<Money>, now: Timestamp) -> Result<Order, CheckoutError> {
        let cart = self.carts.read(owner, now).await?;
        if cart.lines.is_empty() {
            return Err(CheckoutError::CartEmpty);
        }
        let placed = retrying(|| reserve(self.durable, owner, &cart, expected, self.hold_ms, now)).await;
        self.catalog.forget(&cart.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>());
        match placed? {
            Ok(order) => Ok(order),
            Err(CheckoutDecision::PriceChanged { changes, total }) => Err(CheckoutError::PriceChanged { changes, total }),
            Err(CheckoutDecision::OutOfStock(items)) => Err(CheckoutError::OutOfStock(items)),
            Err(CheckoutDecision::Reserve(_)) => unreachable!("a reservation is an order"),
        }
    }
}

/// The checkout transaction: the order, or the decision that refused it (with nothing reserved:
/// the transaction rolls back).
async fn reserve(
    db: &Durable,
    owner: &CartKey,
    cart: &Cart,
    expected: Option<Money>,
    hold_ms: i64,
    now: Timestamp,
) -> Result<Result<Order, CheckoutDecision>, DurableError> {
    let lock = db.lock_rows();
    let is_pg = matches!(db, Durable::Postgres(_));
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        if is_pg {
            // One checkout per cart at a time, so two clicks cannot both hold stock.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&owner.tag).execute(&mut *tx).await?;
        }
        let earlier: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT id FROM orders WHERE owner = $1 AND status = 'pending_payment' ORDER BY id{lock}"))
                .bind(&owner.tag)
                .fetch_all(&mut *tx)
                .await?;
        let earlier: Vec<String> = earlier.into_iter().map(|r| r.0).collect();
        let held_skus: Vec<(String,)> = if earlier.is_empty() {
            Vec::new()
        } else {
            let sql = format!(
                "SELECT sku FROM holds WHERE state = 'live' AND order_id IN ({}) ORDER BY order_id, sku{lock}",
                placeholders(1, earlier.len())
            );
            let mut q = sqlx::query_as(&sql);
            for id in &earlier {
                q = q.bind(id);
            }
            q.fetch_all(&mut *tx).await?
        };
        // Every product row this transaction will touch, locked once, in SKU order.
        let skus: BTreeSet<&str> = cart.lines.iter().map(|l| l.sku.as_str()).chain(held_skus.iter().map(|h| h.0.as_str())).collect();
        let rows: Vec<ProductRow> = if skus.is_empty() {
            Vec::new()
        } else {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({}) ORDER BY sku{lock}", placeholders(1, skus.len()));
            let mut q = sqlx::query_as(&sql);
            for s in &skus {
                q = q.bind(*s);
            }
            q.fetch_all(&mut *tx).await?
        };
        let mut products: HashMap<String, Product> = HashMap::new();
        for row in rows {
            let p = product_of_row(row)?;
            products.insert(p.sku.as_str().to_owned(), p);
        }

        // The shopper's own earlier order gives its hold back first, so it never blocks them.
        for (sku, units) in give_up_orders(&mut tx, &earlier, OrderStatus::Cancelled, now).await? {
            if let Some(p) = products.get_mut(&sku) {
                p.reserved -= units;
            }
        }

        let offer = |sku: &Sku| {
            products.get(sku.as_str()).map(|p| Offer { price: p.active.then_some(p.price), available: p.available() })
        };
        let priced = match decide_checkout(cart, offer, expected) {
            CheckoutDecision::Reserve(priced) => priced,
            refused => return Ok(Err(refused)),
        };

        let id = format!("ord_{}", uuid::Uuid::new_v4().simple());
        let reserved_until = Timestamp::from_millis(now.millis().saturating_add(hold_ms));
        let lines: Vec<OrderLineView> = priced
            .lines
            .iter()
            .map(|l| OrderLineView {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                price_at_add: l.price_at_add,
                line_total: l.line_total,
            })
            .collect();
        let lines_json = serde_json::to_string(&lines).map_err(|e| DurableError::Corrupt(id.clone(), e.to_string()))?;
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}, updated_at) VALUES ($1, $2, $3, 'pending_payment', $4, $5, $6, $7, $8, NULL, $9)"
        ))
        .bind(&id)
        .bind(&owner.tag)
        .bind(owner.user().map(|u| u.as_str().to_owned()))
        .bind(cart.currency.as_str())
        .bind(priced.total.amount())
        .bind(&lines_json)
        .bind(reserved_until.millis())
        .bind(now.millis())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        for l in &priced.lines {
            sqlx::query("UPDATE products SET reserved = reserved + $1 WHERE sku = $2")
                .bind(i64::from(l.quantity))
                .bind(l.sku.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO holds (order_id, sku, quantity, expires_at, state) VALUES ($1, $2, $3, $4, 'live')")
                .bind(&id)
                .bind(l.sku.as_str())
                .bind(i64::from(l.quantity))
                .bind(reserved_until.millis())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let status = OrderStatus::PendingPayment;
        Ok(Ok(Order {
            view: OrderView {
                id,
                status: status.as_str().into(),
                lines,
                total: priced.total,
                reserved_until,
                created_at: now,
                payment_ref: None,
            },
            status,
            owner: owner.tag.clone(),
            user: owner.user().cloned(),
        }))
    })
}
