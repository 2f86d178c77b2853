//! What an order change writes beside itself, in its own transaction (an outbox): its event,
//! the units of a paid order for analytics, and `cart.recovered` when the order recovers an
//! abandoned cart.

use super::Order;
use crate::events::Event;
use serde_json::{Value, json};
use shared::Timestamp;
use shared::events::EventType;

/// An order event: `data` names the order, its owner and its amounts.
pub fn order_event(kind: EventType, order: &Order, now: Timestamp, extra: Option<(&str, Value)>) -> Event {
    let v = &order.view;
    let mut data = json!({
        "owner": if order.user.is_some() { "user" } else { "guest" },
        "order_id": v.id,
        "status": v.status,
        "total": v.total,
        "amount_due": v.amount_due,
        "lines": v.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity, "unit_price": l.unit_price, "line_total": l.line_total})).collect::<Vec<_>>(),
    });
    if let Some(u) = &order.user {
        data["user"] = json!(u.as_str());
    }
    if !v.discounts.is_empty() {
        data["discount_total"] = json!(v.discount_total);
    }
    if let Some((k, value)) = extra {
        data[k] = value;
    }
    Event {
        id: format!("{}:{}", kind.as_str(), v.id),
        kind: kind.as_str().to_owned(),
        subject: crate::hot::subject_of(&order.owner),
        user: order.user.as_ref().map(|u| u.as_str().to_owned()),
        sku: None,
        quantity: None,
        detail: None,
        amount: (kind == EventType::OrderPaid).then(|| v.total.amount()),
        at: now,
        data,
        order: Event::time_order(now),
    }
}

/// The units of a paid order, for per-SKU analytics, inside the payment's transaction.
pub async fn record_paid_lines<'c, DB>(tx: &mut sqlx::Transaction<'c, DB>, order: &Order, now: Timestamp) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let subject = crate::hot::subject_of(&order.owner);
    for l in &order.view.lines {
        sqlx::query::<DB>("INSERT INTO paid_lines (order_id, sku, quantity, subject, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id, sku) DO NOTHING")
            .bind(order.view.id.as_str())
            .bind(l.sku.as_str())
            .bind(i64::from(l.quantity))
            .bind(subject.as_str())
            .bind(now.millis())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `cart.recovered` for an order of `user` paid at `now`, if their cart was reported abandoned
/// within the recovery window and not recovered since; marks it recovered. Inside the payment's
/// transaction.
pub async fn recovered_events<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    order: &Order,
    window_ms: i64,
    now: Timestamp,
) -> Result<Vec<Event>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, String): sqlx::FromRow<'r, DB::Row>,
{
    let Some(user) = &order.user else { return Ok(Vec::new()) };
    let row: Option<(i64, String)> = sqlx::query_as::<DB, (i64, String)>(
        "SELECT abandoned_at, subject FROM abandonments WHERE user_id = $1 AND recovered_at IS NULL AND abandoned_at >= $2",
    )
    .bind(user.as_str())
    .bind(now.millis() - window_ms)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((abandoned_at, subject)) = row else { return Ok(Vec::new()) };
    sqlx::query::<DB>("UPDATE abandonments SET recovered_at = $1 WHERE user_id = $2")
        .bind(now.millis())
        .bind(user.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(vec![Event {
        id: format!("cart.recovered:{}", order.view.id),
        kind: EventType::CartRecovered.as_str().to_owned(),
        subject,
        user: Some(user.as_str().to_owned()),
        sku: None,
        quantity: None,
        detail: None,
        amount: Some(order.view.total.amount()),
        at: now,
        data: json!({"user": user.as_str(), "owner": "user", "order_id": order.view.id, "total": order.view.total,
                     "abandoned_at": Timestamp::from_millis(abandoned_at)}),
        order: Event::time_order(now),
    }])
}
