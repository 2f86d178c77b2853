//! Holds: what a pending order takes until it is paid (the hold is *consumed*) or not (it is
//! *released*): one stock hold per order line, one redemption per promotion it used, one gift
//! card hold per card it spends. Every way a hold ends goes through [`end_holds`], which ends all
//! three kinds together, so `products.reserved`, `promotions.pending` and `gift_cards.held`
//! always equal the sums of their live rows.

use super::{ORDER_COLUMNS, OrderRow, OrderStatus, order_of};
use crate::durable::{Durable, DurableError, on_db, placeholders};
use crate::events::Event;
use shared::events::EventType;
use shared::{Sku, Timestamp};
use std::collections::BTreeMap;

/// How a hold ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// The order will not be paid: the units are free again.
    Released,
    /// The order was paid: the units leave the stock.
    Consumed,
}

impl HoldEnd {
    const fn state(self) -> &'static str {
        match self {
            HoldEnd::Released => "released",
            HoldEnd::Consumed => "consumed",
        }
    }

    const fn product_update(self) -> &'static str {
        match self {
            HoldEnd::Released => "UPDATE products SET reserved = reserved - $1 WHERE sku = $2",
            HoldEnd::Consumed => "UPDATE products SET on_hand = on_hand - $1, reserved = reserved - $1 WHERE sku = $2",
        }
    }

    const fn promotion_update(self) -> &'static str {
        match self {
            HoldEnd::Released => "UPDATE promotions SET pending = pending - $1 WHERE id = $2",
            HoldEnd::Consumed => "UPDATE promotions SET pending = pending - $1, redeemed = redeemed + $1 WHERE id = $2",
        }
    }

    const fn gift_card_update(self) -> &'static str {
        match self {
            HoldEnd::Released => "UPDATE gift_cards SET held = held - $1 WHERE id = $2",
            HoldEnd::Consumed => "UPDATE gift_cards SET held = held - $1, balance = balance - $1 WHERE id = $2",
        }
    }
}

/// `UPDATE <table> SET state = $1 WHERE state = 'live' AND order_id IN (…) RETURNING <key>, <n>`.
fn ending(table: &str, returning: &str, orders: usize) -> String {
    format!("UPDATE {table} SET state = $1 WHERE state = 'live' AND order_id IN ({}) RETURNING {returning}", placeholders(2, orders))
}

/// Ends the live holds of `order_ids` inside the caller's transaction (which holds those orders'
/// rows) and moves the figures with them: products SKU by SKU in SKU order, then promotions and
/// gift cards each in id order (the lock order of checkout). Returns the units per SKU that
/// were held.
pub(crate) async fn end_holds<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    order_ids: &[String],
    end: HoldEnd,
) -> Result<BTreeMap<String, i64>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, i64): sqlx::FromRow<'r, DB::Row>,
{
    let mut per_sku: BTreeMap<String, i64> = BTreeMap::new();
    if order_ids.is_empty() {
        return Ok(per_sku);
    }
    let mut per_promotion: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_card: BTreeMap<String, i64> = BTreeMap::new();
    for (sql, sums, count_rows) in [
        (ending("holds", "sku, quantity", order_ids.len()), &mut per_sku, false),
        (ending("redemptions", "promotion_id, amount", order_ids.len()), &mut per_promotion, true),
        (ending("gift_card_holds", "gift_card_id, amount", order_ids.len()), &mut per_card, false),
    ] {
        let mut q = sqlx::query_as::<DB, (String, i64)>(&sql).bind(end.state());
        for id in order_ids {
            q = q.bind(id.as_str());
        }
        for (key, n) in q.fetch_all(&mut **tx).await? {
            // A redemption is one use, whatever it took off.
            *sums.entry(key).or_default() += if count_rows { 1 } else { n };
        }
    }
    for (update, sums) in [(end.product_update(), &per_sku), (end.promotion_update(), &per_promotion), (end.gift_card_update(), &per_card)]
    {
        for (key, n) in sums {
            sqlx::query::<DB>(update).bind(*n).bind(key.as_str()).execute(&mut **tx).await?;
        }
    }
    Ok(per_sku)
}

/// Gives up pending orders inside the caller's transaction: releases their holds, marks them
/// `status` (cancelled, or expired) and records their `order.cancelled` / `order.expired` events
/// (with `reason`). Returns the units per SKU that were held.
pub(crate) async fn give_up_orders<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    order_ids: &[String],
    status: OrderStatus,
    reason: &str,
    now: Timestamp,
) -> Result<BTreeMap<String, i64>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, i64): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
    for<'r> OrderRow: sqlx::FromRow<'r, DB::Row>,
{
    let released = end_holds(tx, order_ids, HoldEnd::Released).await?;
    if !order_ids.is_empty() {
        let sql = format!("UPDATE orders SET status = $1, updated_at = $2 WHERE id IN ({})", placeholders(3, order_ids.len()));
        let mut q = sqlx::query::<DB>(&sql).bind(status.as_str()).bind(now.millis());
        for id in order_ids {
            q = q.bind(id.as_str());
        }
        q.execute(&mut **tx).await?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id IN ({}) ORDER BY id", placeholders(1, order_ids.len()));
        let mut q = sqlx::query_as::<DB, OrderRow>(&sql);
        for id in order_ids {
            q = q.bind(id.as_str());
        }
        let kind = if status == OrderStatus::Expired { EventType::OrderExpired } else { EventType::OrderCancelled };
        let events: Vec<Event> = q
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .filter_map(|row| order_of(row).ok())
            .map(|o| super::outbox::order_event(kind, &o, now, Some(("reason", serde_json::json!(reason)))))
            .collect();
        crate::events::record(tx, &events).await?;
    }
    Ok(released)
}

/// Releases the holds of orders whose hold time ran out before `now` and marks those orders
/// expired, at most `limit` orders per call. Any number of instances may run this at once: each
/// order is taken by one (`SKIP LOCKED`), and the others pass it by. Returns the SKUs whose
/// stock moved.
pub async fn release_expired(db: &Durable, now: Timestamp, limit: i64) -> Result<Vec<Sku>, DurableError> {
    let skip = match db {
        Durable::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Durable::Sqlite(_) => "",
    };
    let sql = format!("SELECT id FROM orders WHERE status = 'pending_payment' AND reserved_until < $1 ORDER BY id LIMIT $2{skip}");
    let released: BTreeMap<String, i64> = on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let due: Vec<(String,)> = sqlx::query_as(&sql).bind(now.millis()).bind(limit).fetch_all(&mut *tx).await?;
        let ids: Vec<String> = due.into_iter().map(|r| r.0).collect();
        let moved = give_up_orders(&mut tx, &ids, OrderStatus::Expired, "hold_expired", now).await?;
        tx.commit().await?;
        moved
    });
    Ok(released.keys().filter_map(|s| Sku::parse(s).ok()).collect())
}
