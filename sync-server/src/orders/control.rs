//! What the shopper may do to their own pending order: extend its hold once, or cancel it.
//!
//! Both run in one transaction on the order's row (lock order: orders, holds, products, as
//! everywhere), so a payment, the sweeper, an extension and a cancellation of one order are
//! serialized and each sees the others' outcome.

use super::holds::give_up_orders;
use super::{ORDER_COLUMNS, Order, OrderRow, OrderStatus, order_of, retrying};
use crate::durable::{Durable, DurableError, on_db};
use shared::Timestamp;

#[derive(Debug)]
pub enum ControlError {
    /// No such order, or not the caller's.
    NotFound,
    /// Paid, cancelled or expired: there is no hold to change.
    NotPending(Box<Order>),
    /// The hold ran out (the sweeper had not got to it yet).
    Expired(Box<Order>),
    /// The hold was extended once already.
    AlreadyExtended(Box<Order>),
    Db(DurableError),
}

impl From<DurableError> for ControlError {
    fn from(e: DurableError) -> Self {
        ControlError::Db(e)
    }
}

/// What a pending order of `owner` looks like before a change: checked for ownership, status and
/// time.
fn check(order: Option<Order>, owner: &str, now: Timestamp) -> Result<Order, ControlError> {
    let order = order.filter(|o| o.owner == owner).ok_or(ControlError::NotFound)?;
    match order.status {
        OrderStatus::PendingPayment if now > order.view.reserved_until => Err(ControlError::Expired(Box::new(order))),
        OrderStatus::PendingPayment => Ok(order),
        _ => Err(ControlError::NotPending(Box::new(order))),
    }
}

/// What the shopper does to their pending order.
#[derive(Clone, Copy)]
enum Change {
    Extend { by_ms: i64 },
    Cancel,
}

/// Extends the hold of `owner`'s pending order `id` by `by_ms`, once: the order's
/// `reserved_until` and every live stock hold move together.
pub async fn extend(db: &Durable, id: &str, owner: &str, by_ms: i64, now: Timestamp) -> Result<Order, ControlError> {
    change(db, id, owner, Change::Extend { by_ms }, now).await
}

/// Cancels `owner`'s pending order `id`: its stock, promotion uses and gift card amounts are
/// released at once and `order.cancelled` is recorded (reason `cancelled_by_shopper`). Cancelling
/// an order already cancelled answers it as it is.
pub async fn cancel(db: &Durable, id: &str, owner: &str, now: Timestamp) -> Result<Order, ControlError> {
    change(db, id, owner, Change::Cancel, now).await
}

/// One transaction: lock the order's row, check it is `owner`'s and pending, make the change,
/// and answer the order as it now is.
async fn change(db: &Durable, id: &str, owner: &str, change: Change, now: Timestamp) -> Result<Order, ControlError> {
    let lock = db.lock_rows();
    let select = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{lock}");
    retrying(|| async {
        on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<OrderRow> = sqlx::query_as(&select).bind(id).fetch_optional(&mut *tx).await?;
            let order = row.map(order_of).transpose()?;
            if let (Change::Cancel, Some(o)) = (change, &order)
                && o.owner == owner
                && o.status == OrderStatus::Cancelled
            {
                return Ok(Ok(o.clone()));
            }
            let order = match check(order, owner, now) {
                Ok(o) => o,
                Err(e) => return Ok(Err(e)),
            };
            match change {
                Change::Extend { by_ms } => {
                    let (extended,): (Option<i64>,) =
                        sqlx::query_as("SELECT hold_extended_at FROM orders WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    if extended.is_some() {
                        return Ok(Err(ControlError::AlreadyExtended(Box::new(order))));
                    }
                    let until = order.view.reserved_until.millis().saturating_add(by_ms);
                    sqlx::query("UPDATE orders SET reserved_until = $1, hold_extended_at = $2, updated_at = $2 WHERE id = $3")
                        .bind(until).bind(now.millis()).bind(id).execute(&mut *tx).await?;
                    sqlx::query("UPDATE holds SET expires_at = $1 WHERE order_id = $2 AND state = 'live'")
                        .bind(until).bind(id).execute(&mut *tx).await?;
                }
                Change::Cancel => {
                    give_up_orders(&mut tx, &[id.to_owned()], OrderStatus::Cancelled, "cancelled_by_shopper", now).await?;
                }
            }
            let row: OrderRow = sqlx::query_as(&select).bind(id).fetch_one(&mut *tx).await?;
            let order = order_of(row)?;
            tx.commit().await?;
            Ok::<_, DurableError>(Ok(order))
        })
    })
    .await?
}
