//! The `Kernel` class (cargo feature `kernel`): [`crate::kernel::Kernel`] for a browser cart whose
//! bookkeeping is JavaScript. Texts in and out are the stored and wire JSON forms of `shared`;
//! a change's arguments are read as `CartClient`'s are, and refused with the same `CartError`s.

use crate::engine::LastError;
use crate::js::{SnapshotSource, cart_error, js_error, parse_code, parse_money, parse_quantity, parse_sku};
use crate::render::Rendered;
use shared::wire::Owner;
use shared::{ClientSeq, Currency, ErrorCode, Limits, OpId, OpKind, Timestamp};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Kernel {
    core: crate::kernel::Kernel,
    /// The lists this kernel's page side last received (see `render`).
    rendered: Rc<RefCell<Rendered>>,
}

#[wasm_bindgen]
impl Kernel {
    /// An empty cart in `currency` with the server's limits (each clamped to what any server
    /// allows).
    #[wasm_bindgen(constructor)]
    pub fn new(currency: &str, max_line_quantity: u32, max_lines: u32) -> Result<Kernel, JsValue> {
        let currency = Currency::parse(currency).map_err(cart_error)?;
        let limits = Limits {
            max_line_quantity: max_line_quantity.clamp(1, Limits::ABSOLUTE_MAX_QUANTITY),
            max_lines: (max_lines as usize).clamp(1, Limits::ABSOLUTE_MAX_LINES),
        };
        Ok(Kernel { core: crate::kernel::Kernel::new(currency, limits), rendered: Rc::default() })
    }

    /// The confirmed cart from its stored text; false, with nothing changed, when unreadable.
    #[wasm_bindgen(js_name = setCart)]
    pub fn set_cart(&mut self, text: &str) -> bool {
        self.core.set_cart(text)
    }

    #[wasm_bindgen(js_name = cartText)]
    pub fn cart_text(&self) -> String {
        self.core.cart_text()
    }

    /// The confirmed cart's version.
    pub fn version(&self) -> f64 {
        self.core.version() as f64
    }

    #[wasm_bindgen(js_name = setAnnotations)]
    pub fn set_annotations(&mut self, text: &str) {
        self.core.set_annotations(text)
    }

    #[wasm_bindgen(js_name = annotationsText)]
    pub fn annotations_text(&self) -> String {
        self.core.annotations_text()
    }

    #[wasm_bindgen(js_name = setPromotions)]
    pub fn set_promotions(&mut self, text: &str) {
        self.core.set_promotions(text)
    }

    /// The view: the confirmed cart with the stored ops of `ops` (a JSON array) applied in order.
    pub fn replay(&mut self, ops: &str) {
        self.core.replay(ops)
    }

    /// Applies a change to the view and returns its stored op (op id `id`, the tab's `client`
    /// and `seq`, time `at` in ms), or throws the `CartError` that refuses it, with nothing
    /// changed. `kind` is the op's wire type; `a`, `b`, `c` its arguments as the page gave them
    /// (`add`: sku, quantity, priceAtAdd; `set_quantity`: sku, quantity; a promo code's: the code;
    /// the others: the sku; `clear`: none).
    #[allow(clippy::too_many_arguments)]
    pub fn change(
        &mut self,
        kind: &str,
        a: JsValue,
        b: JsValue,
        c: JsValue,
        id: &str,
        client: &str,
        seq: f64,
        at: f64,
    ) -> Result<String, JsValue> {
        let limits = *self.core.limits();
        let kind = match kind {
            "add" => OpKind::Add { sku: parse_sku(&a)?, quantity: parse_quantity(&b, &limits)?, price_at_add: parse_money(&c)? },
            "set_quantity" => OpKind::SetQuantity { sku: parse_sku(&a)?, quantity: parse_quantity(&b, &limits)? },
            "remove" => OpKind::Remove { sku: parse_sku(&a)? },
            "save_for_later" => OpKind::SaveForLater { sku: parse_sku(&a)? },
            "move_to_cart" => OpKind::MoveToCart { sku: parse_sku(&a)? },
            "remove_saved" => OpKind::RemoveSaved { sku: parse_sku(&a)? },
            "apply_promo_code" => OpKind::ApplyPromoCode { code: parse_code(&a)? },
            "remove_promo_code" => OpKind::RemovePromoCode { code: parse_code(&a)? },
            "clear" => OpKind::Clear,
            _ => return Err(js_error(ErrorCode::InvalidOp, "unknown change")),
        };
        let id = OpId::parse(id).and_then(|id| Ok(id.with_client(ClientSeq::parse(client, seq as u64)?))).map_err(cart_error)?;
        self.core.change(kind, id, Timestamp::from_millis(at as i64)).map_err(cart_error)
    }

    /// Folds the view into the confirmed cart (version kept); its stored text.
    pub fn fold(&mut self) -> String {
        self.core.fold()
    }

    #[cfg(any())]
    /// The promo codes on the view, comma-separated.
    pub fn codes(&self) -> String {
        self.core.codes()
    }

    /// Whether the known promotions cover every code on the view and are recent enough at `now`
    /// (ms) that no new lookup is needed.
    #[wasm_bindgen(js_name = promotionsFresh)]
    pub fn promotions_fresh(&self, now: f64) -> bool {
        self.core.promotions_fresh(Timestamp::from_millis(now as i64))
    }

    /// The view as of now, rendered only when read (`SnapshotSource.json`).
    pub fn snapshot(
        &self,
        user: bool,
        pending_ops: u32,
        syncing: bool,
        error: Option<String>,
        message: Option<String>,
        now: f64,
    ) -> SnapshotSource {
        let owner = if user { Owner::User } else { Owner::Guest };
        let last_error = error.map(|code| LastError { code, message: message.unwrap_or_default() });
        SnapshotSource {
            frozen: self.core.frozen(owner, pending_ops as usize, last_error),
            syncing,
            at: Timestamp::from_millis(now as i64),
            rendered: self.rendered.clone(),
        }
    }
}
