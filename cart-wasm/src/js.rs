//! What both of the module's JavaScript bindings share: the page's `CartError`, the readers of
//! a call's arguments, and the source of a lazily rendered snapshot.

use js_sys::Reflect;
use serde_json::Value;
use shared::promo::PromoCode;
use shared::{CartError, Currency, ErrorCode, Limits, Money, Quantity, Sku, Timestamp};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/cart-error.js")]
extern "C" {
    #[wasm_bindgen(js_name = CartError)]
    pub type JsCartError;
    #[wasm_bindgen(constructor, js_class = "CartError")]
    pub fn new(code: &str, message: &str, details: JsValue) -> JsCartError;
}

pub fn js_error(code: ErrorCode, message: &str) -> JsValue {
    JsCartError::new(code.as_str(), message, JsValue::UNDEFINED).into()
}

pub fn cart_error(e: CartError) -> JsValue {
    js_error(e.code, &e.message)
}

/// The frozen state behind one `CartSnapshot`, rendered (to JSON, parsed by the page) only when
/// the page reads a field of it.
#[wasm_bindgen]
pub struct SnapshotSource {
    pub(crate) frozen: crate::engine::Frozen,
    pub(crate) syncing: bool,
    pub(crate) at: Timestamp,
    /// The lists this client's page side last received (each client has its own, so two carts
    /// read in turn each get a change from their own last read).
    pub(crate) rendered: Rc<RefCell<crate::render::Rendered>>,
}

#[wasm_bindgen]
impl SnapshotSource {
    /// The snapshot as text, written as a change from rendering `page`, the one the page holds
    /// (`render::Rendered`): a change to one line of a long cart renders and parses one line.
    pub fn json(&self, page: u32) -> String {
        let snap = self.frozen.snapshot(self.syncing, self.at);
        self.rendered.borrow_mut().render(snap, page)
    }
}

pub fn parse_sku(v: &JsValue) -> Result<Sku, JsValue> {
    let s = v.as_string().ok_or_else(|| cart_error(CartError::new(ErrorCode::InvalidSku, "sku must be a string")))?;
    Sku::parse(&s).map_err(cart_error)
}

pub fn parse_quantity(v: &JsValue, limits: &Limits) -> Result<Quantity, JsValue> {
    let n = v.as_f64().filter(|n| n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15).map_or(0, |n| n as i64);
    Quantity::new(n, limits).map_err(cart_error)
}

pub fn parse_code(v: &JsValue) -> Result<PromoCode, JsValue> {
    let s = v.as_string().ok_or_else(|| js_error(ErrorCode::InvalidPromoCode, "a promo code is a string"))?;
    PromoCode::parse(&s).map_err(cart_error)
}

pub fn parse_money(v: &JsValue) -> Result<Option<Money>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    thread_local! {
        /// The field names as JavaScript strings, made once rather than on every call.
        static KEYS: [JsValue; 2] = [JsValue::from_str("amount"), JsValue::from_str("currency")];
    }
    // Read field by field, not through JSON: this runs on every `add` with a price.
    let field = |k: usize| if v.is_object() { KEYS.with(|keys| Reflect::get(v, &keys[k]).ok()) } else { None };
    let amount = field(0).and_then(|a| a.as_f64()).filter(|a| a.fract() == 0.0 && a.abs() <= 9_007_199_254_740_992.0);
    let currency = field(1).and_then(|c| c.as_string());
    match (amount, currency) {
        (Some(a), Some(c)) => Money::new(a as i64, Currency::parse(&c).map_err(cart_error)?).map(Some).map_err(cart_error),
        // The same refusal as the server's for a malformed amount.
        _ => Money::from_json(&Value::Null).map(Some).map_err(cart_error),
    }
}
