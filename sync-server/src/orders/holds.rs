//! Stock holds: one row per order line from checkout until the order is paid (the hold is
//! *consumed*: the units leave the stock) or not (it is *released*: the units are free again).
//! Every way a hold ends goes through [`end_holds`], the one statement that does it, so
//! `products.reserved` always equals the sum of the live holds of each SKU.

use super::OrderStatus;
use crate::durable::{Durable, DurableError, on_db, placeholders};
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
}

/// Ends the live holds of `order_ids` inside the caller's transaction (which holds those orders'
/// rows) and moves the products' figures with them, SKU by SKU in SKU order. Returns the units
/// per SKU that were held.
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
    let sql = format!(
        "UPDATE holds SET state = $1 WHERE state = 'live' AND order_id IN ({}) RETURNING sku, quantity",
        placeholders(2, order_ids.len())
    );
    let mut q = sqlx::query_as::<DB, (String, i64)>(&sql).bind(end.state());
    for id in order_ids {
        q = q.bind(id.as_str());
    }
    for (sku, quantity) in q.fetch_all(&mut **tx).await? {
        *per_sku.entry(sku).or_default() += quantity;
    }
    for (sku, quantity) in &per_sku {
        sqlx::query::<DB>(end.product_update()).bind(*quantity).bind(sku.as_str()).execute(&mut **tx).await?;
    }
    Ok(per_sku)
}

/// Gives up pending orders inside the caller's transaction: releases their holds and marks them
/// `status` (cancelled, or expired). Returns the units per SKU that were held.
pub(crate) async fn give_up_orders<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    order_ids: &[String],
    status: OrderStatus,
    now: Timestamp,
) -> Result<BTreeMap<String, i64>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, i64): sqlx::FromRow<'r, DB::Row>,
{
    let released = end_holds(tx, order_ids, HoldEnd::Released).await?;
    if !order_ids.is_empty() {
        let sql = format!("UPDATE orders SET status = $1, updated_at = $2 WHERE id IN ({})", placeholders(3, order_ids.len()));
        let mut q = sqlx::query::<DB>(&sql).bind(status.as_str()).bind(now.millis());
        for id in order_ids {
            q = q.bind(id.as_str());
        }
        q.execute(&mut **tx).await?;
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
        let moved = give_up_orders(&mut tx, &ids, OrderStatus::Expired, now).await?;
        tx.commit().await?;
        moved
    });
    Ok(released.keys().filter_map(|s| Sku::parse(s).ok()).collect())
}
