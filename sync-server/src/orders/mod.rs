//! Orders, by job: the order as stored (here), the checkout transaction (`checkout`), the payment
//! state machine (`payment`), and the stock holds with their sweeper (`holds`). Idempotency of
//! checkout requests is a protocol of its own (`crate::idempotency`).
//!
//! Lock order everywhere, so the checkout, the webhook and the sweeper cannot deadlock each
//! other: the owner's advisory lock, orders, holds, products (in SKU order).

pub mod checkout;
pub mod control;
pub mod holds;
pub mod outbox;
pub mod payment;

use crate::durable::{Durable, DurableError, is_retryable, on_db};
use crate::identity::CartKey;
use shared::promo::PromoCode;
use shared::wire::{OrderLineView, OrderTotals, OrderView};
use shared::{Currency, Money, Sku, Timestamp, UserId};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    /// Stock is held until `reserved_until`; the payment has not arrived.
    PendingPayment,
    Paid,
    /// The payment failed, or a newer checkout of the same cart replaced it.
    Cancelled,
    /// The hold ran out before the payment arrived.
    Expired,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        [OrderStatus::PendingPayment, OrderStatus::Paid, OrderStatus::Cancelled, OrderStatus::Expired].into_iter().find(|x| x.as_str() == s)
    }
}

/// An order as stored, with the cart it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub view: OrderView,
    pub status: OrderStatus,
    /// The storage tag of the cart it came from.
    pub owner: String,
    pub user: Option<UserId>,
}

impl Order {
    /// The cart the order came from.
    pub fn cart_key(&self) -> CartKey {
        CartKey { tag: self.owner.clone(), user: self.user.clone() }
    }

    pub fn skus(&self) -> Vec<Sku> {
        self.view.lines.iter().map(|l| l.sku.clone()).collect()
    }

    /// What a payment must bring: the order's total less its gift cards.
    pub fn amount_due(&self) -> Money {
        self.view.amount_due
    }

    /// The codes whose promotions the order used.
    pub fn codes(&self) -> Vec<PromoCode> {
        self.view.discounts.iter().filter_map(|d| d.code.clone()).collect()
    }

    pub(crate) fn set_status(&mut self, status: OrderStatus) {
        self.status = status;
        self.view.status = status.as_str().to_owned();
    }
}

pub(crate) type OrderRow = (String, String, Option<String>, String, String, i64, String, i64, i64, Option<String>, Option<String>);

pub(crate) const ORDER_COLUMNS: &str =
    "id, owner, user_id, status, currency, total_amount, lines, reserved_until, created_at, payment_ref, totals";

pub(crate) fn order_of(row: OrderRow) -> Result<Order, DurableError> {
    let (id, owner, user, status, currency, total, lines, reserved_until, created_at, payment_ref, totals) = row;
    let bad = |why: String| DurableError::Corrupt(id.clone(), why);
    let currency = Currency::parse(&currency).map_err(|e| bad(e.message))?;
    let lines: Vec<OrderLineView> = serde_json::from_str(&lines).map_err(|e| bad(e.to_string()))?;
    let parsed_status = OrderStatus::parse(&status).ok_or_else(|| bad(format!("unknown status {status:?}")))?;
    let total = Money::new(total, currency).map_err(|e| bad(e.message))?;
    // Orders from before promotions store no totals: nothing was taken off them.
    let totals: OrderTotals = match totals {
        Some(t) => serde_json::from_str(&t).map_err(|e| bad(e.to_string()))?,
        None => OrderTotals {
            subtotal: total,
            discounts: Vec::new(),
            discount_total: Money::zero(currency),
            gift_cards: Vec::new(),
            amount_due: total,
        },
    };
    Ok(Order {
        view: OrderView {
            id: id.clone(),
            status,
            lines,
            subtotal: totals.subtotal,
            discounts: totals.discounts,
            discount_total: totals.discount_total,
            total,
            gift_cards: totals.gift_cards,
            amount_due: totals.amount_due,
            reserved_until: Timestamp::from_millis(reserved_until),
            created_at: Timestamp::from_millis(created_at),
            payment_ref,
        },
        status: parsed_status,
        owner,
        user: user.and_then(|u| UserId::parse(&u).ok()),
    })
}

/// One order by id.
pub async fn find(db: &Durable, id: &str) -> Result<Option<Order>, DurableError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
    let row: Option<OrderRow> = on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?);
    row.map(order_of).transpose()
}

/// Whether a paid order's lines have left its cart already. Op ids alone cannot say so for ever
/// (a cart keeps only its 1,000 most recent), so the order remembers it, and a payment replayed
/// months later takes nothing twice.
pub(crate) async fn cart_taken(db: &Durable, id: &str) -> Result<bool, DurableError> {
    let row: Option<(Option<i64>,)> =
        on_db!(db, pool => sqlx::query_as("SELECT cart_taken_at FROM orders WHERE id = $1").bind(id).fetch_optional(pool).await?);
    Ok(row.is_some_and(|r| r.0.is_some()))
}

/// Records that a paid order's lines left its cart.
pub(crate) async fn mark_cart_taken(db: &Durable, id: &str, now: Timestamp) -> Result<(), DurableError> {
    on_db!(db, pool => {
        sqlx::query("UPDATE orders SET cart_taken_at = $1 WHERE id = $2 AND cart_taken_at IS NULL").bind(now.millis()).bind(id).execute(pool).await?;
    });
    Ok(())
}

/// Runs a transaction again (up to five times) when it lost a deadlock or a serialization conflict.
pub(crate) async fn retrying<T, F: Future<Output = Result<T, DurableError>>>(mut run: impl FnMut() -> F) -> Result<T, DurableError> {
    let mut attempt = 0;
    loop {
        match run().await {
            Err(DurableError::Sql(e)) if is_retryable(&e) && attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}
