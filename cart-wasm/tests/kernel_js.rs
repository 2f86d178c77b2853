//! The `Kernel` class (cargo feature `kernel`) in a real browser: changes read from the page's
//! arguments, refused with the page's `CartError`, and snapshots rendered from what was loaded.
//!   cargo test -p cart-wasm --target wasm32-unknown-unknown --no-default-features --features kernel
#![cfg(all(target_arch = "wasm32", feature = "kernel"))]

use cart_wasm::kernel_js::Kernel;
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const AT: f64 = 1_790_000_000_000.0;

fn add(k: &mut Kernel, sku: JsValue, quantity: f64, seq: f64) -> Result<String, JsValue> {
    k.change("add", sku, quantity.into(), JsValue::UNDEFINED, &["op-", &seq.to_string()].concat(), "tab", seq, AT + seq)
}

fn code(e: &JsValue) -> Option<String> {
    Reflect::get(e, &"code".into()).ok()?.as_string()
}

/// The first line of a rendering: every field but the lists, as JSON.
fn head(k: &Kernel) -> serde_json::Value {
    let text = k.snapshot(false, 2, false, None, None, AT).json(u32::MAX);
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[wasm_bindgen_test]
fn changes_are_read_from_the_page_and_bad_ones_refused_with_the_page_error() {
    let mut k = Kernel::new("USD", 99, 200).unwrap();
    let op: serde_json::Value = serde_json::from_str(&add(&mut k, "A".into(), 2.0, 1.0).unwrap()).unwrap();
    assert_eq!((op["type"].as_str(), op["sku"].as_str(), op["quantity"].as_u64()), (Some("add"), Some("A"), Some(2)));
    assert_eq!((op["client_id"].as_str(), op["seq"].as_u64()), (Some("tab"), Some(1)));
    for (sku, quantity, expected) in [
        (JsValue::from(""), 1.0, "invalid_sku"),
        (JsValue::from(5), 1.0, "invalid_sku"),
        ("A".into(), 0.0, "invalid_quantity"),
        ("A".into(), 1.5, "invalid_quantity"),
        ("A".into(), 100.0, "invalid_quantity"),
    ] {
        let e = add(&mut k, sku, quantity, 2.0).unwrap_err();
        assert_eq!(code(&e).as_deref(), Some(expected));
    }
    let e = k.change("set_quantity", "B".into(), 1.into(), JsValue::UNDEFINED, "op-2", "tab", 2.0, AT).unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("line_not_found"));
    // Nothing refused changed the view.
    assert_eq!(head(&k)["itemCount"], 2);
}

#[wasm_bindgen_test]
fn a_folded_cart_loads_into_another_kernel_with_its_queue_replayed() {
    let mut k = Kernel::new("USD", 99, 200).unwrap();
    add(&mut k, "A".into(), 2.0, 1.0).unwrap();
    let folded = k.fold();
    let queued = add(&mut k, "B".into(), 3.0, 2.0).unwrap();
    let mut other = Kernel::new("USD", 99, 200).unwrap();
    assert!(other.set_cart(&folded));
    assert!(!other.set_cart("{not a cart"));
    other.replay(&["[", &queued, "]"].concat());
    assert_eq!(head(&other)["itemCount"], 5);
    assert_eq!(head(&other), head(&k));
}
