//! The payment webhook's state machine: what the provider's word does to an order.
//!
//! The notice has already been authenticated (`crate::signature`) and names its order, so by
//! here it is known to be about this order; [`transition`] decides, purely, and [`record`]
//! carries the decision out in one transaction with the order's holds. After a success, the
//! ordered quantities leave the cart ([`Payments::receive`]), exactly once by op ids of their own.

use super::holds::{HoldEnd, end_holds};
use super::{ORDER_COLUMNS, Order, OrderRow, OrderStatus, order_of, retrying};
use crate::carts::{Carts, CartsError};
use crate::catalog::CatalogCache;
use crate::durable::{Durable, DurableError, on_db};
use shared::events::EventType;
use shared::wire::{PaymentNotice, PaymentStatus};
use shared::{Money, Timestamp};

/// What a notice does to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Pending and in time: paid, and the holds become a permanent deduction.
    Pay,
    /// Pending: the payment failed; cancelled, and the holds released.
    Cancel,
    /// A success after the hold ran out (the sweeper had not got to it): expired, the holds
    /// released, and the success refused.
    Expire,
    /// The notice was already acted on (a replay): nothing changes.
    Replay,
    /// A success for an order that expired: refused.
    RefuseExpired,
    /// The order was paid (with another payment reference) or cancelled: refused, so a double
    /// charge is never silent.
    RefuseNotPending,
    /// A success for another amount than the order's amount due: refused, nothing changes.
    RefuseAmount,
}

/// Decides what `notice` does to `order` at `now`. `holds_live` tells whether every hold of the
/// order is still live (the sweeper may have released them a moment ago).
pub fn transition(order: &Order, holds_live: bool, notice: &PaymentNotice, now: Timestamp) -> Transition {
    match notice.status {
        PaymentStatus::Succeeded => {
            if notice.amount != Some(order.amount_due()) {
                return Transition::RefuseAmount;
            }
            match order.status {
                OrderStatus::Paid if order.view.payment_ref.as_deref() == Some(notice.payment_ref.as_str()) => Transition::Replay,
                OrderStatus::Paid | OrderStatus::Cancelled => Transition::RefuseNotPending,
                OrderStatus::Expired => Transition::RefuseExpired,
                OrderStatus::PendingPayment if now > order.view.reserved_until || !holds_live => Transition::Expire,
                OrderStatus::PendingPayment => Transition::Pay,
            }
        }
        PaymentStatus::Failed => match order.status {
            OrderStatus::PendingPayment => Transition::Cancel,
            OrderStatus::Cancelled | OrderStatus::Expired => Transition::Replay,
            OrderStatus::Paid => Transition::RefuseNotPending,
        },
    }
}

/// Why a notice was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no such order")]
    NotFound,
    #[error("the hold of the order expired before the payment arrived")]
    Expired(Box<Order>),
    #[error("the order is not pending payment")]
    NotPending(Box<Order>),
    #[error("the amount is not the order's amount due")]
    AmountMismatch { order: Box<Order>, paid: Option<Money> },
    /// Paid and recorded, but the cart could not be brought up to date; the provider's retry
    /// (a replay) finishes it.
    #[error("the cart could not be updated: {0}")]
    Cart(#[from] CartsError),
    #[error(transparent)]
    Db(#[from] DurableError),
}

/// Acts on `notice` in one transaction; returns the order after it and what was done.
pub async fn record(
    db: &Durable,
    notice: &PaymentNotice,
    recovery_window_ms: i64,
    now: Timestamp,
) -> Result<Option<(Order, Transition)>, DurableError> {
    retrying(|| record_once(db, notice, recovery_window_ms, now)).await
}

async fn record_once(
    db: &Durable,
    notice: &PaymentNotice,
    recovery_window_ms: i64,
    now: Timestamp,
) -> Result<Option<(Order, Transition)>, DurableError> {
    let lock = db.lock_rows();
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let row: Option<OrderRow> =
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{lock}")).bind(&notice.order_id).fetch_optional(&mut *tx).await?;
        let Some(mut order) = row.map(order_of).transpose()? else { return Ok(None) };
        let states: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT state FROM holds WHERE order_id = $1 ORDER BY sku{lock}")).bind(&notice.order_id).fetch_all(&mut *tx).await?;
        let holds_live = states.iter().all(|s| s.0 == "live");
        let step = transition(&order, holds_live, notice, now);
        let (end, status) = match step {
            Transition::Pay => (HoldEnd::Consumed, OrderStatus::Paid),
            Transition::Cancel => (HoldEnd::Released, OrderStatus::Cancelled),
            Transition::Expire => (HoldEnd::Released, OrderStatus::Expired),
            _ => return Ok(Some((order, step))),
        };
        end_holds(&mut tx, std::slice::from_ref(&order.view.id), end).await?;
        order.set_status(status);
        if step != Transition::Expire {
            order.view.payment_ref = Some(notice.payment_ref.clone());
        }
        sqlx::query("UPDATE orders SET status = $1, payment_ref = $2, updated_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(&order.view.payment_ref)
            .bind(now.millis())
            .bind(&order.view.id)
            .execute(&mut *tx)
            .await?;
        // The order's event, in the same transaction (an outbox).
        let mut events = Vec::new();
        match step {
            Transition::Pay => {
                events.push(super::outbox::order_event(EventType::OrderPaid, &order, now, Some(("payment_ref", serde_json::json!(notice.payment_ref)))));
                super::outbox::record_paid_lines(&mut tx, &order, now).await?;
                events.extend(super::outbox::recovered_events(&mut tx, &order, recovery_window_ms, now).await?);
            }
            Transition::Cancel => events.push(super::outbox::order_event(EventType::OrderCancelled, &order, now, Some(("reason", serde_json::json!("payment_failed"))))),
            _ => events.push(super::outbox::order_event(EventType::OrderExpired, &order, now, Some(("reason", serde_json::json!("hold_expired"))))),
        }
        crate::events::record(&mut tx, &events).await?;
        tx.commit().await?;
        crate::events::webhooks::wake();
        Ok(Some((order, step)))
    })
}

/// What receiving a payment notice needs.
pub struct Payments<'a> {
    pub carts: &'a Carts,
    pub durable: &'a Durable,
    pub catalog: &'a CatalogCache,
    pub promotions: &'a std::sync::Arc<crate::promotions::PromotionsCache>,
    pub recovery_window_ms: i64,
}

impl Payments<'_> {
    /// Acts on an authenticated notice. A paid order's quantities are taken out of the cart it
    /// came from (or out of the user's cart its guest cart was merged into since), on the first
    /// success and again on every replay, which changes nothing once it has been done.
    pub async fn receive(&self, notice: &PaymentNotice, now: Timestamp) -> Result<Order, PaymentError> {
        let Some((order, step)) = record(self.durable, notice, self.recovery_window_ms, now).await? else {
            return Err(PaymentError::NotFound);
        };
        if matches!(step, Transition::Pay | Transition::Cancel | Transition::Expire) {
            self.catalog.forget(&order.skus());
            if !order.view.discounts.is_empty() {
                // Uses given back (or made permanent): views count them at once.
                self.promotions.invalidate();
                if let Some(user) = &order.user {
                    self.promotions.refresh_customer(self.durable, user).await;
                }
            }
        }
        match step {
            Transition::Pay | Transition::Cancel | Transition::Replay => {}
            Transition::Expire | Transition::RefuseExpired => return Err(PaymentError::Expired(Box::new(order))),
            Transition::RefuseNotPending => return Err(PaymentError::NotPending(Box::new(order))),
            Transition::RefuseAmount => return Err(PaymentError::AmountMismatch { order: Box::new(order), paid: notice.amount }),
        }
        if step == Transition::Pay {
            tracing::info!(order = %order.view.id, "order paid");
        }
        if order.status == OrderStatus::Paid && !super::cart_taken(self.durable, &order.view.id).await? {
            let lines: Vec<_> = order.view.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
            self.carts.take_out_ordered(&order.cart_key(), &order.view.id, &lines, &order.codes(), now).await?;
            super::mark_cart_taken(self.durable, &order.view.id, now).await?;
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Currency;
    use shared::wire::OrderView;

    fn usd(a: i64) -> Money {
        Money::new(a, Currency::USD).unwrap()
    }

    fn order(status: OrderStatus, payment_ref: Option<&str>) -> Order {
        Order {
            view: OrderView {
                id: "ord_1".into(),
                status: status.as_str().into(),
                lines: vec![],
                subtotal: usd(500),
                discounts: vec![],
                discount_total: usd(0),
                total: usd(500),
                gift_cards: vec![],
                amount_due: usd(500),
                reserved_until: Timestamp::from_millis(1_000),
                created_at: Timestamp::from_millis(0),
                payment_ref: payment_ref.map(str::to_owned),
            },
            status,
            owner: "g1".into(),
            user: None,
        }
    }

    fn notice(status: PaymentStatus, payment_ref: &str, amount: Option<i64>) -> PaymentNotice {
        PaymentNotice { order_id: "ord_1".into(), status, payment_ref: payment_ref.into(), amount: amount.map(usd) }
    }

    #[test]
    fn a_success_pays_a_pending_order_in_time_and_only_for_its_amount() {
        let pending = order(OrderStatus::PendingPayment, None);
        let ok = notice(PaymentStatus::Succeeded, "p1", Some(500));
        assert_eq!(transition(&pending, true, &ok, Timestamp::from_millis(999)), Transition::Pay);
        assert_eq!(transition(&pending, true, &ok, Timestamp::from_millis(1_001)), Transition::Expire);
        assert_eq!(transition(&pending, false, &ok, Timestamp::from_millis(10)), Transition::Expire, "a released hold");
        for wrong in [Some(499), Some(501), None] {
            assert_eq!(
                transition(&pending, true, &notice(PaymentStatus::Succeeded, "p1", wrong), Timestamp::from_millis(10)),
                Transition::RefuseAmount
            );
        }
        let euros = PaymentNotice { amount: Some(Money::new(500, Currency::parse("EUR").unwrap()).unwrap()), ..ok };
        assert_eq!(transition(&pending, true, &euros, Timestamp::from_millis(10)), Transition::RefuseAmount);
    }

    #[test]
    fn a_second_success_is_a_replay_only_with_the_same_payment_reference() {
        let paid = order(OrderStatus::Paid, Some("p1"));
        let now = Timestamp::from_millis(5_000);
        assert_eq!(transition(&paid, false, &notice(PaymentStatus::Succeeded, "p1", Some(500)), now), Transition::Replay);
        assert_eq!(transition(&paid, false, &notice(PaymentStatus::Succeeded, "p2", Some(500)), now), Transition::RefuseNotPending);
        assert_eq!(transition(&paid, false, &notice(PaymentStatus::Failed, "p1", None), now), Transition::RefuseNotPending);
    }

    #[test]
    fn failures_cancel_pending_orders_and_change_nothing_after() {
        let now = Timestamp::from_millis(10);
        let failed = notice(PaymentStatus::Failed, "p1", None);
        assert_eq!(transition(&order(OrderStatus::PendingPayment, None), true, &failed, now), Transition::Cancel);
        assert_eq!(transition(&order(OrderStatus::Cancelled, Some("p1")), false, &failed, now), Transition::Replay);
        assert_eq!(transition(&order(OrderStatus::Expired, None), false, &failed, now), Transition::Replay);
        let late = notice(PaymentStatus::Succeeded, "p9", Some(500));
        assert_eq!(transition(&order(OrderStatus::Expired, None), false, &late, now), Transition::RefuseExpired);
        assert_eq!(transition(&order(OrderStatus::Cancelled, Some("p1")), false, &late, now), Transition::RefuseNotPending);
    }
}
