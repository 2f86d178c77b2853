//! The browser cart's optimistic discounts equal the server's, to the minor unit.
//!
//! Random scenarios, each against a real server: a catalog with random prices, a random set of
//! promotions (every action, automatic and by code, exclusive and combinable, minimums, caps,
//! expired and not yet started ones), and a random run of offline edits in the client engine
//! (`cart_wasm::engine`, the code the npm package runs), which knows the promotions from
//! `GET /v1/promotions` as the browser does. The client's snapshot before it syncs is then
//! compared with the server's cart after the same ops: lines, each line's discount and total,
//! the discounts, the totals and every code's state must be identical.
//!
//! `CARTSYNC_PROMO_SCENARIOS=n` runs more scenarios (default 40).

use cart_wasm::engine::{Engine, Snapshot};
use cart_wasm::storage::MemoryStorage;
use cartsync_tests::app::As;
use cartsync_tests::{Mode, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::promo::PromoCode;
use shared::sort::SortedSet;
use shared::wire::{CartView, read};
use shared::{Currency, Limits, Money, OpKind, Quantity, Sku, Timestamp};

use cartsync_tests::Rng;

fn usd(a: i64) -> Value {
    json!({"amount": a, "currency": "USD"})
}

/// A random promotion over `skus` with `prices`.
fn random_promotion(rng: &mut Rng, skus: &[String], code: Option<String>) -> Value {
    let some_skus = |rng: &mut Rng| -> Vec<String> {
        let n = 1 + rng.below(skus.len() as u64) as usize;
        (0..n).map(|_| rng.pick(skus).clone()).collect()
    };
    let action = match rng.below(6) {
        0 => json!({"type": "percent_off_order", "percent": 1 + rng.below(100)}),
        1 => json!({"type": "amount_off_order", "amount": usd(1 + rng.below(3000) as i64)}),
        2 => json!({"type": "percent_off_items", "percent": 1 + rng.below(100), "skus": some_skus(rng)}),
        3 => json!({"type": "amount_off_items", "amount": usd(1 + rng.below(800) as i64), "skus": some_skus(rng)}),
        4 => {
            json!({"type": "buy_x_get_y", "skus": some_skus(rng), "buy": 1 + rng.below(3), "get": 1 + rng.below(2), "percent": 1 + rng.below(100)})
        }
        _ => {
            let a = rng.pick(skus).clone();
            let b = skus.iter().find(|s| **s != a).cloned().unwrap_or_else(|| a.clone());
            let items = if a == b {
                json!([{"sku": a, "quantity": 2}])
            } else {
                json!([{"sku": a, "quantity": 1}, {"sku": b, "quantity": 1 + rng.below(2)}])
            };
            json!({"type": "bundle", "items": items, "price": usd(rng.below(4000) as i64)})
        }
    };
    let mut p = json!({"description": format!("promotion {}", rng.below(1000)), "action": action, "combinable": rng.chance(50)});
    if let Some(c) = code {
        p["code"] = json!(c);
    }
    if rng.chance(30) {
        p["min_subtotal"] = usd(rng.below(8000) as i64);
    }
    if rng.chance(25) {
        p["max_discount"] = usd(1 + rng.below(1500) as i64);
    }
    match rng.below(12) {
        0 => p["ends_at"] = json!("2001-01-01T00:00:00Z"),
        1 => p["starts_at"] = json!("2999-01-01T00:00:00Z"),
        2 => p["active"] = json!(false),
        _ => {}
    }
    p
}

fn engine(seed: u64) -> Engine {
    let mut n = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    Engine::new(
        Box::new(MemoryStorage::default()),
        "cart",
        Limits::default(),
        Currency::USD,
        Box::new(move |b: &mut [u8]| {
            for x in b {
                n ^= n << 13;
                n ^= n >> 7;
                n ^= n << 17;
                *x = n as u8;
            }
        }),
    )
}

/// What both sides must agree on, from a client snapshot.
fn of_snapshot(s: &Snapshot) -> Value {
    json!({
        "lines": s.lines.iter().map(|l| json!([l.sku.as_str(), l.quantity, l.discount, l.line_total])).collect::<Vec<_>>(),
        "subtotal": s.subtotal, "discount_total": s.discount_total, "total": s.total,
        "discounts": s.discounts.iter().map(|d| json!([d.promotion, d.code.as_ref().map(|c| c.as_str()), d.description, d.amount])).collect::<Vec<_>>(),
        "codes": s.promo_codes.iter().map(|c| json!([c.code.as_str(), c.applied, c.reason, c.missing, c.pending.unwrap_or(false)])).collect::<Vec<_>>(),
    })
}

/// The same, from the server's cart.
fn of_view(v: &CartView) -> Value {
    json!({
        "lines": v.lines.iter().map(|l| json!([l.sku.as_str(), l.quantity, l.discount, l.line_total])).collect::<Vec<_>>(),
        "subtotal": v.subtotal, "discount_total": v.discount_total, "total": v.total,
        "discounts": v.discounts.iter().map(|d| json!([d.promotion, d.code.as_ref().map(|c| c.as_str()), d.description, d.amount])).collect::<Vec<_>>(),
        "codes": v.promo_codes.iter().map(|c| json!([c.code.as_str(), c.applied, c.reason, c.missing, false])).collect::<Vec<_>>(),
    })
}

async fn scenario(app: &TestApp, seed: u64) -> Result<bool, String> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let admin = TestApp::admin();
    let skus: Vec<String> = (0..5).map(|k| format!("S{seed}P{k}")).collect();
    let mut prices = Vec::new();
    for sku in &skus {
        let price = *rng.pick(&[25, 99, 250, 399, 999, 1999, 2500, 39900]) + rng.below(3) as i64;
        prices.push(price);
        app.product(sku, price, 1000).await;
    }
    let mut ids = Vec::new();
    let mut codes = Vec::new();
    for k in 0..(2 + rng.below(4)) {
        let code = (!rng.chance(30)).then(|| format!("S{seed}C{k}"));
        let id = format!("s{seed}-{k}");
        let def = random_promotion(&mut rng, &skus, code.clone());
        let a = app.call(Method::PUT, &format!("/v1/admin/promotions/{id}"), &admin, Some(def.clone())).await;
        if a.status != StatusCode::CREATED {
            return Err(format!("seed {seed}: {def} was refused: {:?}", a.body));
        }
        ids.push(id);
        codes.extend(code);
    }

    // The client knows every promotion of the scenario, as it would after looking its codes up.
    let mut client = engine(seed);
    let asked: SortedSet<PromoCode> = codes.iter().map(|c| PromoCode::parse(c).unwrap()).collect();
    let query = codes.join(",");
    let lookup = app.call(Method::GET, &format!("/v1/promotions?codes={query}"), &As::Nobody, None).await;
    if lookup.status != StatusCode::OK {
        return Err(format!("seed {seed}: the lookup failed: {:?}", lookup.body));
    }
    let now = Timestamp::from_millis(cartsync_tests::unix_now() as i64 * 1000);
    client.finish_promotions(asked, &lookup.body, now);

    // Offline edits, at the catalog's prices (as a storefront adds them).
    let limits = Limits::default();
    for _ in 0..(3 + rng.below(10)) {
        let i = rng.below(skus.len() as u64) as usize;
        let sku = Sku::parse(&skus[i]).unwrap();
        let kind = match rng.below(10) {
            0..=4 => OpKind::Add {
                sku,
                quantity: Quantity::new(1 + rng.below(6) as i64, &limits).unwrap(),
                price_at_add: Some(Money::new(prices[i], Currency::USD).unwrap()),
            },
            5 => OpKind::SetQuantity { sku, quantity: Quantity::new(1 + rng.below(9) as i64, &limits).unwrap() },
            6 => OpKind::Remove { sku },
            7 | 8 if !codes.is_empty() => OpKind::ApplyPromoCode { code: PromoCode::parse(rng.pick::<String>(&codes)).unwrap() },
            _ if !codes.is_empty() => OpKind::RemovePromoCode { code: PromoCode::parse(rng.pick::<String>(&codes)).unwrap() },
            _ => OpKind::Clear,
        };
        let _ = client.mutate(kind, now);
    }
    let before_sync = client.snapshot(false, now);
    let discounted = before_sync.discount_total.amount() > 0;

    // Now online: the server applies the same ops and prices the cart itself.
    let token = match client.identity() {
        cart_wasm::engine::Identity::Guest { token } => token.clone(),
        _ => unreachable!("a new client is a guest"),
    };
    let who = As::Guest(token);
    if let Some(push) = client.begin_push() {
        let a = app.call(Method::POST, "/v1/cart/ops", &who, Some(push.body.clone())).await;
        let res = read::ops_response(&a.body).map_err(|e| format!("seed {seed}: {e}: {:?}", a.body))?;
        client.finish_push(&push, Ok(res), 0, 0.5);
    }
    let server = app.get_cart(&who).await;
    let view = read::cart(&server.body).map_err(|e| format!("seed {seed}: {e}"))?;
    let (mine, theirs) = (of_snapshot(&before_sync), of_view(&view));
    if mine != theirs {
        return Err(format!("seed {seed}: the client showed\n{mine}\nthe server computed\n{theirs}"));
    }
    // And after the client takes the server's cart, it still shows the same.
    client.finish_pull(&client.identity().clone(), &view, true);
    let after = of_snapshot(&client.snapshot(false, now));
    if after != theirs {
        return Err(format!("seed {seed}: after the sync the client shows\n{after}\nthe server\n{theirs}"));
    }

    // Automatic promotions of this scenario must not reach the next one.
    for id in ids {
        app.call(Method::DELETE, &format!("/v1/admin/promotions/{id}"), &admin, None).await;
    }
    Ok(discounted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_optimistic_discounts_are_the_servers() {
    let app = TestApp::spawn(Mode::Embedded).await;
    let n: u64 = std::env::var("CARTSYNC_PROMO_SCENARIOS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut with_discounts = 0u64;
    for seed in 1..=n {
        with_discounts += u64::from(scenario(&app, seed).await.unwrap_or_else(|e| panic!("{e}")));
    }
    // The comparison means something only if discounts were taken off in many scenarios.
    assert!(with_discounts >= n / 4, "only {with_discounts} of {n} scenarios had a discount");
}
