//! Funnel and per-SKU analytics, computed from the `events` table (and `paid_lines`) over a
//! time window, on the `(type, at)` index: the window's rows of the few types each figure needs,
//! never a scan of every event. Sums are cast to BIGINT: PostgreSQL sums a BIGINT as NUMERIC.

use crate::durable::{Durable, DurableError, on_db};
use serde_json::{Value, json};
use shared::{Currency, Money, Timestamp};
use std::collections::BTreeMap;

/// The funnel over `[from, to]`.
pub async fn funnel(db: &Durable, from: Timestamp, to: Timestamp, currency: Currency) -> Result<Value, DurableError> {
    let counts: Vec<(String, i64, Option<i64>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT type, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM events
         WHERE type IN ('cart.created', 'checkout.started', 'order.paid', 'cart.abandoned', 'cart.recovered') AND at >= $1 AND at <= $2
         GROUP BY type")
        .bind(from.millis()).bind(to.millis()).fetch_all(pool).await?);
    let (with_items,): (i64,) = on_db!(db, pool => sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT DISTINCT subject FROM events WHERE type = 'cart.item_added' AND at >= $1 AND at <= $2) AS carts")
        .bind(from.millis()).bind(to.millis()).fetch_one(pool).await?);
    let of = |t: &str| counts.iter().find(|c| c.0 == t).map_or(0, |c| c.1);
    let revenue = counts.iter().find(|c| c.0 == "order.paid").and_then(|c| c.2).unwrap_or(0);
    let paid = of("order.paid");
    let rate = if with_items > 0 { paid as f64 / with_items as f64 } else { 0.0 };
    Ok(json!({
        "from": from, "to": to,
        "carts_created": of("cart.created"),
        "carts_with_items": with_items,
        "checkouts_started": of("checkout.started"),
        "orders_paid": paid,
        "carts_abandoned": of("cart.abandoned"),
        "carts_recovered": of("cart.recovered"),
        "conversion_rate": rate,
        "revenue": Money::new(revenue.max(0), currency).unwrap_or(Money::zero(currency)),
    }))
}

/// Per SKU over `[from, to]`: units added, units the shoppers removed (not what paid orders took
/// out), units in paid orders, and carts that held it; most added first, at most `limit`.
pub async fn skus(db: &Durable, from: Timestamp, to: Timestamp, limit: usize) -> Result<Value, DurableError> {
    let rows: Vec<(String, Option<i64>, Option<i64>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT sku,
                CAST(SUM(CASE WHEN type = 'cart.item_added' THEN quantity ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN type = 'cart.item_removed' AND detail IS NULL THEN quantity ELSE 0 END) AS BIGINT)
         FROM events WHERE type IN ('cart.item_added', 'cart.item_removed') AND at >= $1 AND at <= $2 AND sku IS NOT NULL
         GROUP BY sku")
        .bind(from.millis()).bind(to.millis()).fetch_all(pool).await?);
    let carts: Vec<(String, i64)> = on_db!(db, pool => sqlx::query_as(
        "SELECT sku, COUNT(*) FROM (SELECT DISTINCT sku, subject FROM events
                                    WHERE type = 'cart.item_added' AND at >= $1 AND at <= $2 AND sku IS NOT NULL) AS held
         GROUP BY sku")
        .bind(from.millis()).bind(to.millis()).fetch_all(pool).await?);
    let ordered: Vec<(String, Option<i64>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT sku, CAST(SUM(quantity) AS BIGINT) FROM paid_lines WHERE at >= $1 AND at <= $2 GROUP BY sku")
        .bind(from.millis()).bind(to.millis()).fetch_all(pool).await?);
    let mut by_sku: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for (sku, added, removed) in rows {
        let e = by_sku.entry(sku).or_default();
        e[0] += added.unwrap_or(0);
        e[1] += removed.unwrap_or(0);
    }
    for (sku, n) in carts {
        by_sku.entry(sku).or_default()[3] = n;
    }
    for (sku, units) in ordered {
        by_sku.entry(sku).or_default()[2] += units.unwrap_or(0);
    }
    let mut list: Vec<(String, [i64; 4])> = by_sku.into_iter().collect();
    list.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(b.1[2].cmp(&a.1[2])).then(a.0.cmp(&b.0)));
    list.truncate(limit);
    Ok(json!({
        "from": from, "to": to,
        "skus": list.into_iter().map(|(sku, n)| json!({"sku": sku, "units_added": n[0], "units_removed": n[1], "units_ordered": n[2], "carts": n[3]})).collect::<Vec<_>>(),
    }))
}
