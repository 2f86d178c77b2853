//! What rendering a snapshot of a 100-line cart costs, natively (the browser pays about 2-3x):
//! building it from the frozen state, and writing it as the JSON the page parses.
//!   cargo run --release -p cart-wasm --example snapshot_bench
use cart_wasm::engine::Engine;
use cart_wasm::storage::MemoryStorage;
use shared::{Currency, Limits, Money, OpKind, Quantity, Sku, Timestamp};
use std::time::Instant;

fn main() {
    let mut n = 1u64;
    let mut e = Engine::new(
        Box::new(MemoryStorage::default()),
        "b",
        Limits::default(),
        Currency::USD,
        Box::new(move |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *x = (n >> 56) as u8;
            }
        }),
    );
    for i in 0..100 {
        let kind = OpKind::Add {
            sku: Sku::parse(&format!("SKU-{i}")).unwrap(),
            quantity: Quantity::new(1, &Limits::default()).unwrap(),
            price_at_add: Some(Money::new(1999, Currency::USD).unwrap()),
        };
        e.mutate(kind, Timestamp::from_millis(1)).unwrap();
    }
    let f = e.frozen();
    let t = Instant::now();
    let mut s = None;
    for _ in 0..1000 {
        s = Some(f.snapshot(false, Timestamp::from_millis(1)));
    }
    let a = t.elapsed();
    let snap = s.unwrap();
    let t = Instant::now();
    let mut len = 0;
    for _ in 0..1000 {
        len = serde_json::to_string(&snap).unwrap().len();
    }
    println!("100-line snapshot: built in {:?}, written as JSON in {:?} ({len} bytes)", a / 1000, t.elapsed() / 1000);
}
