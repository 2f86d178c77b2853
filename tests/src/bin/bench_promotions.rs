//! Benchmark of the discount engine: a cart of 100 lines against 50 promotions of every kind
//! (half of them combinable, so the engine compares 26 candidates), and a common cart of 10 lines
//! against 5 promotions, each evaluated over and over. Prints the time per evaluation. Not a
//! test: it asserts nothing.
//!
//!     cargo run --release -p cartsync-tests --bin bench_promotions -- [evaluations]

use shared::promo::{Action, Context, LineInput, PromoCode, Promotion, PromotionId, Usage, evaluate};
use shared::{Currency, Money, Sku, Timestamp};
use std::time::Instant;

/// The allocator the server binary uses, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    measure(100, 50, n);
    measure(10, 5, n * 10);
}

fn measure(line_count: usize, promotion_count: usize, n: usize) {
    let usd = |a: i64| Money::new(a, Currency::USD).unwrap();
    let sku = |i: usize| Sku::parse(&format!("SKU-{i:03}")).unwrap();
    let lines: Vec<LineInput> = (0..line_count)
        .map(|i| LineInput { sku: sku(i), quantity: 1 + (i % 7) as u32, unit_price: Some(usd(199 + (i as i64 * 37) % 5_000)) })
        .collect();
    let promotions: Vec<Promotion> = (0..promotion_count)
        .map(|i| {
            let skus: Vec<Sku> = (0..10).map(|k| sku((i * 7 + k * 3) % 100)).collect();
            let action = match i % 6 {
                0 => Action::PercentOffOrder { percent: 5 + (i % 20) as u32 },
                1 => Action::AmountOffOrder { amount: usd(500 + i as i64) },
                2 => Action::PercentOffItems { percent: 10 + (i % 30) as u32, skus },
                3 => Action::AmountOffItems { amount: usd(50), skus },
                4 => Action::BuyXGetY { skus, buy: 2, get: 1, percent: 100 },
                _ => Action::Bundle { items: vec![(sku(i % 100), 1), (sku((i + 1) % 100), 2)], price: usd(1_000) },
            };
            Promotion {
                id: PromotionId::parse(&format!("promo-{i:02}")).unwrap(),
                code: (i % 5 == 0).then(|| PromoCode::parse(&format!("CODE{i}")).unwrap()),
                description: format!("promotion {i}"),
                active: true,
                starts_at: None,
                ends_at: None,
                min_subtotal: (i % 4 == 0).then(|| usd(10_000)),
                action,
                max_discount: (i % 3 == 0).then(|| usd(5_000)),
                combinable: i % 2 == 0,
                usage_limit: Some(1_000),
                usage_limit_per_customer: None,
            }
        })
        .collect();
    let codes: Vec<PromoCode> = (0..promotion_count).step_by(5).map(|i| PromoCode::parse(&format!("CODE{i}")).unwrap()).take(5).collect();
    let cx = Context {
        currency: Currency::USD,
        lines: &lines,
        promotions: &promotions,
        codes: &codes,
        now: Timestamp::from_millis(1_800_000_000_000),
        is_user: true,
        usage: |_: &PromotionId| Usage { total: 10, by_customer: 0 },
    };
    let first = evaluate(&cx);
    let start = Instant::now();
    let mut total = 0i64;
    for _ in 0..n {
        total = total.wrapping_add(std::hint::black_box(evaluate(std::hint::black_box(&cx))).discount_total.amount());
    }
    let per = start.elapsed() / n as u32;
    println!(
        "{line_count} lines × {promotion_count} promotions: {:.1} µs per evaluation ({n} evaluations; {} kept, {} off {}; checksum {total})",
        per.as_secs_f64() * 1e6,
        first.discounts.len(),
        first.discount_total.amount(),
        first.subtotal.amount()
    );
}
