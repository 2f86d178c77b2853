//! The v1 wire contract: what crosses HTTP, in `snake_case`.
//!
//! Responses are plain serde types that both the server (to write) and the client (to read) use.
//! Requests are parsed from a `serde_json::Value` field by field rather than derived, so that each
//! bad field gets the contract's own error code (`invalid_quantity` for `"quantity": "2"`, not a
//! generic deserialization error).

use crate::cart::{Cart, CartLine, OpOutcome};
use crate::error::{CartError, ErrorCode};
use crate::op::{Op, OpId, OpKind};
use crate::promo::{Context, LineInput, PromoCode, Promotion, PromotionId, Usage, evaluate};
use crate::time::Timestamp;
use crate::types::{Currency, GuestToken, Limits, Money, Quantity, Sku};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Guest,
    User,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    LowStock,
    OutOfStock,
    Unknown,
    /// The catalog no longer sells the product.
    Discontinued,
}

/// What the catalog knows of a SKU at display time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotation {
    pub current_price: Option<Money>,
    pub availability: Availability,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    pub sku: Sku,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_at_add: Option<Money>,
    pub added_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_changed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// What the promotions take off this line (cart lines only, not the saved list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Money>,
    /// `quantity × unit price − discount` (cart lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_total: Option<Money>,
    /// Why a line is under `unavailable`: `out_of_stock` or `discontinued` (those lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Availability>,
}

/// A promo code on the cart and whether its promotion is applied; if not, why
/// (`min_subtotal_not_met` comes with what is `missing`). `pending`: the browser cart does not
/// know the code's promotion yet (never set by the server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoCodeView {
    pub code: PromoCode,
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
}

/// A promotion the cart gets, with what it takes off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountView {
    pub promotion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<PromoCode>,
    pub description: String,
    pub amount: Money,
}

impl From<&crate::promo::Discount> for DiscountView {
    fn from(d: &crate::promo::Discount) -> Self {
        DiscountView {
            promotion: d.promotion.as_str().to_owned(),
            code: d.code.clone(),
            description: d.description.clone(),
            amount: d.amount,
        }
    }
}

/// What the discount engine needs besides the cart: the promotions in force that may concern it
/// (automatic ones and those of its codes; others are ignored), how often each was used, and
/// the time.
pub struct Promos<'a> {
    pub promotions: &'a [Promotion],
    pub usage: &'a (dyn Fn(&PromotionId) -> Usage + Sync),
    pub now: Timestamp,
}

impl Promos<'static> {
    /// No promotions: nothing is taken off.
    pub fn none() -> Promos<'static> {
        Promos { promotions: &[], usage: &|_| Usage::default(), now: Timestamp::default() }
    }
}

/// The cart resource of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartView {
    pub owner: Owner,
    pub version: u64,
    pub currency: Currency,
    pub lines: Vec<LineView>,
    pub saved: Vec<LineView>,
    /// Cart lines whose SKU is out of stock or discontinued, by the catalog's cached figures:
    /// shown apart and left out of `item_count`, `subtotal`, discounts and `total`. A view only:
    /// a line comes back to `lines` by itself when stock returns.
    #[serde(default)]
    pub unavailable: Vec<LineView>,
    pub item_count: u64,
    /// Before discounts.
    pub subtotal: Money,
    #[serde(default = "zero_usd")]
    pub discount_total: Money,
    /// `subtotal − discount_total`.
    #[serde(default = "zero_usd")]
    pub total: Money,
    #[serde(default)]
    pub promo_codes: Vec<PromoCodeView>,
    #[serde(default)]
    pub discounts: Vec<DiscountView>,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
}

fn zero_usd() -> Money {
    Money::zero(Currency::USD)
}

impl CartView {
    /// Builds the resource. Each cart line's unit price is its current price where the catalog
    /// knows it and its price at add otherwise; a line with neither (or with a price in another
    /// currency) counts as zero. `annotate` is called once per line, the cart's lines first and
    /// then the saved list, each in order. Discounts come from `shared::promo::evaluate` on
    /// those unit prices, for the server and the browser cart alike.
    pub fn new(
        cart: &Cart,
        owner: Owner,
        expires_at: Timestamp,
        mut annotate: impl FnMut(&CartLine) -> Option<Annotation>,
        promos: &Promos<'_>,
    ) -> CartView {
        let mut view = |l: &CartLine| {
            let a = annotate(l);
            let current_price = a.and_then(|a| a.current_price);
            LineView {
                sku: l.sku.clone(),
                quantity: l.quantity,
                price_at_add: l.price_at_add,
                added_at: l.added_at,
                current_price,
                price_changed: match (l.price_at_add, current_price) {
                    (Some(then), Some(now)) => Some(then != now),
                    _ => None,
                },
                availability: a.map(|a| a.availability),
                discount: None,
                line_total: None,
                reason: None,
            }
        };
        let mut lines: Vec<LineView> = Vec::with_capacity(cart.lines.len());
        let mut unavailable: Vec<LineView> = Vec::new();
        for l in &cart.lines {
            let mut v = view(l);
            match v.availability {
                Some(a @ (Availability::OutOfStock | Availability::Discontinued)) => {
                    v.reason = Some(a);
                    unavailable.push(v);
                }
                _ => lines.push(v),
            }
        }
        let saved: Vec<LineView> = cart.saved.iter().map(&mut view).collect();
        let currency = cart.currency;
        // A price in another currency cannot be summed; it is left out rather than guessed.
        let unit = |l: &LineView| l.current_price.or(l.price_at_add).filter(|p| p.currency() == currency);
        let (subtotal, discount_total, total, promo_codes, discounts);
        if promos.promotions.is_empty() && cart.promo_codes.is_empty() {
            let mut sum = 0i64;
            for l in &mut lines {
                let amount = unit(l).map_or(0, |p| p.amount().saturating_mul(i64::from(l.quantity)));
                sum += amount;
                l.discount = Some(Money::zero(currency));
                l.line_total = Some(Money::unchecked(amount, currency));
            }
            subtotal = Money::unchecked(sum, currency);
            (discount_total, total, promo_codes, discounts) = (Money::zero(currency), subtotal, Vec::new(), Vec::new());
        } else {
            let inputs: Vec<LineInput> =
                lines.iter().map(|l| LineInput { sku: l.sku.clone(), quantity: l.quantity, unit_price: unit(l) }).collect();
            let e = evaluate(&Context {
                currency,
                lines: &inputs,
                promotions: promos.promotions,
                codes: &cart.promo_codes,
                now: promos.now,
                is_user: owner == Owner::User,
                usage: promos.usage,
            });
            for ((l, d), t) in lines.iter_mut().zip(e.line_discounts).zip(e.line_totals) {
                l.discount = Some(d);
                l.line_total = Some(t);
            }
            (subtotal, discount_total, total) = (e.subtotal, e.discount_total, e.total);
            promo_codes = e
                .codes
                .into_iter()
                .map(|c| PromoCodeView {
                    code: c.code,
                    applied: c.applied,
                    reason: c.reason.map(|r| r.as_str().to_owned()),
                    missing: c.missing,
                    pending: None,
                })
                .collect();
            discounts = e.discounts.iter().map(DiscountView::from).collect();
        }
        CartView {
            owner,
            version: cart.version,
            currency: cart.currency,
            item_count: if unavailable.is_empty() { cart.item_count() } else { lines.iter().map(|l| u64::from(l.quantity)).sum() },
            subtotal,
            discount_total,
            total,
            promo_codes,
            discounts,
            lines,
            saved,
            unavailable,
            // A cart that never changed reports when it was last seen rather than the epoch.
            updated_at: if cart.version == 0 { cart.updated_at.max(cart.accessed_at) } else { cart.updated_at },
            expires_at,
        }
    }
}

/// `n` in decimal digits, written into the end of `buf` without `core::fmt` (the browser cart
/// writes numbers on every change).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// JSON of the cart resource written by hand, byte for byte what `serde_json::to_vec` writes
/// for it (a property test holds them together), without serde's per-field machinery: the server
/// writes one for every cart request, a line at a time.
/// JSON written by hand, byte for byte as serde_json writes it: for the hot paths (a cart view,
/// an op) and for the browser cart, whose module carries no serializer for these.
pub mod fast_json {
    use super::{Availability, CartView, DiscountView, LineView, Owner, PromoCodeView};
    use crate::op::{Op, OpKind};
    use crate::time::Timestamp;
    use crate::types::Money;

    pub fn uint(out: &mut Vec<u8>, n: u64) {
        out.extend_from_slice(super::decimal(n, &mut [0; 20]).as_bytes());
    }

    pub fn int(out: &mut Vec<u8>, n: i64) {
        if n < 0 {
            out.push(b'-');
        }
        uint(out, n.unsigned_abs());
    }

    /// A JSON string, escaped as serde_json escapes: `"`, `\\` and control characters.
    pub fn string(out: &mut Vec<u8>, s: &str) {
        out.push(b'"');
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => b"",
                _ => continue,
            };
            out.extend_from_slice(&s.as_bytes()[start..i]);
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(&s.as_bytes()[start..]);
        out.push(b'"');
    }

    pub fn money(out: &mut Vec<u8>, m: &Money) {
        out.extend_from_slice(b"{\"amount\":");
        int(out, m.amount());
        out.extend_from_slice(b",\"currency\":");
        string(out, m.currency().as_str());
        out.push(b'}');
    }

    pub fn availability(a: Availability) -> &'static [u8] {
        match a {
            Availability::InStock => b"\"in_stock\"",
            Availability::LowStock => b"\"low_stock\"",
            Availability::OutOfStock => b"\"out_of_stock\"",
            Availability::Unknown => b"\"unknown\"",
            Availability::Discontinued => b"\"discontinued\"",
        }
    }

    /// The fields a cart line starts with in the API and in storage, from `{` to `added_at`.
    pub fn line_head(out: &mut Vec<u8>, sku: &crate::types::Sku, quantity: u32, price_at_add: Option<&Money>, added_at: Timestamp) {
        out.extend_from_slice(b"{\"sku\":");
        string(out, sku.as_str());
        out.extend_from_slice(b",\"quantity\":");
        uint(out, u64::from(quantity));
        if let Some(p) = price_at_add {
            out.extend_from_slice(b",\"price_at_add\":");
            money(out, p);
        }
        out.extend_from_slice(b",\"added_at\":\"");
        added_at.write_rfc3339(out);
        out.push(b'"');
    }

    fn line(out: &mut Vec<u8>, l: &LineView) {
        line_head(out, &l.sku, l.quantity, l.price_at_add.as_ref(), l.added_at);
        if let Some(p) = &l.current_price {
            out.extend_from_slice(b",\"current_price\":");
            money(out, p);
        }
        if let Some(c) = l.price_changed {
            out.extend_from_slice(if c { b",\"price_changed\":true" } else { b",\"price_changed\":false" });
        }
        if let Some(a) = l.availability {
            out.extend_from_slice(b",\"availability\":");
            out.extend_from_slice(availability(a));
        }
        if let Some(d) = &l.discount {
            out.extend_from_slice(b",\"discount\":");
            money(out, d);
        }
        if let Some(t) = &l.line_total {
            out.extend_from_slice(b",\"line_total\":");
            money(out, t);
        }
        if let Some(a) = l.reason {
            out.extend_from_slice(b",\"reason\":");
            out.extend_from_slice(availability(a));
        }
        out.push(b'}');
    }

    pub fn promo_code(out: &mut Vec<u8>, c: &PromoCodeView) {
        out.extend_from_slice(b"{\"code\":");
        string(out, c.code.as_str());
        out.extend_from_slice(if c.applied { b",\"applied\":true" } else { b",\"applied\":false" });
        if let Some(r) = &c.reason {
            out.extend_from_slice(b",\"reason\":");
            string(out, r);
        }
        if let Some(m) = &c.missing {
            out.extend_from_slice(b",\"missing\":");
            money(out, m);
        }
        if let Some(p) = c.pending {
            out.extend_from_slice(if p { b",\"pending\":true" } else { b",\"pending\":false" });
        }
        out.push(b'}');
    }

    pub fn discount(out: &mut Vec<u8>, d: &DiscountView) {
        out.extend_from_slice(b"{\"promotion\":");
        string(out, &d.promotion);
        if let Some(c) = &d.code {
            out.extend_from_slice(b",\"code\":");
            string(out, c.as_str());
        }
        out.extend_from_slice(b",\"description\":");
        string(out, &d.description);
        out.extend_from_slice(b",\"amount\":");
        money(out, &d.amount);
        out.push(b'}');
    }

    pub fn list<T>(out: &mut Vec<u8>, items: &[T], item: impl Fn(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item(out, x);
        }
        out.push(b']');
    }

    pub fn cart(out: &mut Vec<u8>, v: &CartView) {
        out.extend_from_slice(match v.owner {
            Owner::Guest => b"{\"owner\":\"guest\",\"version\":",
            Owner::User => b"{\"owner\":\"user\",\"version\":",
        });
        uint(out, v.version);
        out.extend_from_slice(b",\"currency\":");
        string(out, v.currency.as_str());
        out.extend_from_slice(b",\"lines\":");
        list(out, &v.lines, line);
        out.extend_from_slice(b",\"saved\":");
        list(out, &v.saved, line);
        out.extend_from_slice(b",\"unavailable\":");
        list(out, &v.unavailable, line);
        out.extend_from_slice(b",\"item_count\":");
        uint(out, v.item_count);
        out.extend_from_slice(b",\"subtotal\":");
        money(out, &v.subtotal);
        out.extend_from_slice(b",\"discount_total\":");
        money(out, &v.discount_total);
        out.extend_from_slice(b",\"total\":");
        money(out, &v.total);
        out.extend_from_slice(b",\"promo_codes\":");
        list(out, &v.promo_codes, promo_code);
        out.extend_from_slice(b",\"discounts\":");
        list(out, &v.discounts, discount);
        out.extend_from_slice(b",\"updated_at\":\"");
        v.updated_at.write_rfc3339(out);
        out.extend_from_slice(b"\",\"expires_at\":\"");
        v.expires_at.write_rfc3339(out);
        out.extend_from_slice(b"\"}");
    }

    /// An op as a client sends it, keys in `serde_json::Map`'s (sorted) order.
    pub fn op(out: &mut Vec<u8>, op: &Op, at: Option<Timestamp>) {
        out.push(b'{');
        if let Some(at) = at {
            out.extend_from_slice(b"\"at\":\"");
            at.write_rfc3339(out);
            out.extend_from_slice(b"\",");
        }
        let from = op.id.client();
        if let Some(from) = from {
            out.extend_from_slice(b"\"client_id\":");
            string(out, &from.client);
            out.push(b',');
        }
        if let Some(code) = op.kind.code() {
            out.extend_from_slice(b"\"code\":");
            string(out, code.as_str());
            out.push(b',');
        }
        out.extend_from_slice(b"\"op_id\":");
        string(out, op.id.as_str());
        let (quantity, price) = match &op.kind {
            OpKind::Add { quantity, price_at_add, .. } => (Some(quantity.get()), price_at_add.as_ref()),
            OpKind::SetQuantity { quantity, .. } | OpKind::Deduct { quantity, .. } => (Some(quantity.get()), None),
            _ => (None, None),
        };
        if let Some(p) = price {
            out.extend_from_slice(b",\"price_at_add\":");
            money(out, p);
        }
        if let Some(q) = quantity {
            out.extend_from_slice(b",\"quantity\":");
            uint(out, u64::from(q));
        }
        if let Some(from) = from {
            out.extend_from_slice(b",\"seq\":");
            uint(out, from.seq);
        }
        if let Some(sku) = op.kind.sku() {
            out.extend_from_slice(b",\"sku\":");
            string(out, sku.as_str());
        }
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(op.kind.type_name().as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

impl CartView {
    /// Appends the resource's JSON to `out`: exactly what `serde_json` writes for it, faster.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        fast_json::cart(out, self);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody { code: code.as_str().to_owned(), message: message.into(), details: Map::new() }
    }

    /// The code, if it is one this build knows (a newer server may send others).
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.as_str()
    }

    /// How long the server asked the client to wait (`retry_after`, whole seconds, in a `429` or
    /// `503`), in milliseconds, at most five minutes.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.details.get("retry_after").and_then(Value::as_u64).map(|s| s.saturating_mul(1000).min(300_000))
    }

    /// What an error answer of `status` with `body` says: the envelope's error when the body is
    /// one, else a stand-in (`unavailable` for a 5xx, `invalid_request` otherwise) naming the
    /// status, for answers a proxy or a crashed server wrote. The one reader of the envelope.
    /// The API's error envelope (`{"error": {...}}`) in `body`, if that is what it holds.
    pub fn in_answer(body: &str) -> Option<ErrorBody> {
        crate::json::parse(body).ok().and_then(|v| read::error_body(v.get("error")?).ok())
    }

    pub fn of_answer(status: u16, body: &str) -> ErrorBody {
        ErrorBody::in_answer(body).unwrap_or_else(|| {
            let code = if status >= 500 { ErrorCode::Unavailable } else { ErrorCode::InvalidRequest };
            ErrorBody::new(code, ["HTTP ", &crate::text::int(status)].concat())
        })
    }
}

/// Read through [`read::error_body`] rather than derived: a derived `flatten` would bring serde's
/// buffering deserializer into the WebAssembly client for no gain.
impl<'de> Deserialize<'de> for ErrorBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read::error_body(&Value::Object(Map::deserialize(d)?)).map_err(serde::de::Error::custom)
    }
}

/// `{"error": {"code", "message", ...details}}`: the one error shape of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

impl From<&CartError> for ErrorBody {
    fn from(e: &CartError) -> Self {
        ErrorBody { code: e.code.as_str().to_owned(), message: e.message.clone(), details: Map::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    pub op_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl OpResult {
    pub fn new(op_id: &OpId, outcome: &OpOutcome) -> OpResult {
        OpResult {
            op_id: op_id.as_str().to_owned(),
            status: outcome.status().to_owned(),
            error: match outcome {
                OpOutcome::Rejected(e) => Some(e.into()),
                _ => None,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsResponse {
    pub cart: CartView,
    pub results: Vec<OpResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeResponse {
    pub cart: CartView,
    pub merged: bool,
}

/// One op of a batch as parsed: its id, and either the op or why it is rejected. Only a batch
/// whose ops all carry a valid id is accepted at all.
pub type ParsedOp = (OpId, Result<OpKind, CartError>);

/// Most ops one request may carry.
pub const MAX_OPS_PER_REQUEST: usize = 500;

fn object(v: &Value) -> Result<&Map<String, Value>, CartError> {
    v.as_object().ok_or_else(|| CartError::new(ErrorCode::InvalidRequest, "the body must be a JSON object"))
}

fn sku_field(obj: &Map<String, Value>) -> Result<Sku, CartError> {
    match obj.get("sku") {
        Some(Value::String(s)) => Sku::parse(s),
        _ => Err(CartError::new(ErrorCode::InvalidSku, "sku is required and must be a string")),
    }
}

fn quantity_field(obj: &Map<String, Value>, limits: &Limits) -> Result<Quantity, CartError> {
    Quantity::from_json(obj.get("quantity").unwrap_or(&Value::Null), limits)
}

fn price_field(obj: &Map<String, Value>) -> Result<Option<Money>, CartError> {
    match obj.get("price_at_add") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Money::from_json(v).map(Some),
    }
}

fn code_field(obj: &Map<String, Value>) -> Result<crate::promo::PromoCode, CartError> {
    match obj.get("code") {
        Some(Value::String(s)) => crate::promo::PromoCode::parse(s),
        _ => Err(CartError::new(ErrorCode::InvalidPromoCode, "code is required and must be a string")),
    }
}

/// `POST /v1/cart/promo-codes` body: `{"code"}`.
pub fn parse_promo_code_request(body: &Value) -> Result<crate::promo::PromoCode, CartError> {
    code_field(object(body)?)
}

/// `POST /v1/cart/items` body: `{"sku", "quantity", "price_at_add"?}`.
pub fn parse_add_item(body: &Value, limits: &Limits) -> Result<OpKind, CartError> {
    let obj = object(body)?;
    Ok(OpKind::Add { sku: sku_field(obj)?, quantity: quantity_field(obj, limits)?, price_at_add: price_field(obj)? })
}

/// `PUT /v1/cart/items/{sku}` body: `{"quantity"}`.
pub fn parse_set_quantity(body: &Value, sku: Sku, limits: &Limits) -> Result<OpKind, CartError> {
    Ok(OpKind::SetQuantity { sku, quantity: quantity_field(object(body)?, limits)? })
}

fn parse_op_kind(obj: &Map<String, Value>, limits: &Limits) -> Result<OpKind, CartError> {
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(match kind {
        "add" => OpKind::Add { sku: sku_field(obj)?, quantity: quantity_field(obj, limits)?, price_at_add: price_field(obj)? },
        "set_quantity" => OpKind::SetQuantity { sku: sku_field(obj)?, quantity: quantity_field(obj, limits)? },
        "remove" => OpKind::Remove { sku: sku_field(obj)? },
        "save_for_later" => OpKind::SaveForLater { sku: sku_field(obj)? },
        "move_to_cart" => OpKind::MoveToCart { sku: sku_field(obj)? },
        "remove_saved" => OpKind::RemoveSaved { sku: sku_field(obj)? },
        "clear" => OpKind::Clear,
        "apply_promo_code" => OpKind::ApplyPromoCode { code: code_field(obj)? },
        "remove_promo_code" => OpKind::RemovePromoCode { code: code_field(obj)? },
        _ => {
            return Err(CartError::new(
                ErrorCode::InvalidOp,
                "type is one of add, set_quantity, remove, save_for_later, move_to_cart, remove_saved, clear, apply_promo_code, remove_promo_code",
            ));
        }
    })
}

/// Parses a list of ops. A missing or malformed `op_id` fails the whole list (its result could
/// not be reported); anything else wrong with one op rejects only that op.
pub fn parse_ops(v: Option<&Value>, limits: &Limits) -> Result<Vec<ParsedOp>, CartError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(CartError::new(ErrorCode::InvalidRequest, "ops must be an array"));
        }
    };
    if list.len() > MAX_OPS_PER_REQUEST {
        return Err(CartError::new(
            ErrorCode::TooManyOps,
            ["at most ", &crate::text::int(MAX_OPS_PER_REQUEST), " ops per request"].concat(),
        ));
    }
    parse_op_list(list, limits)
}

/// [`parse_ops`] without the per-request cap: for a client's own stored queue, which may hold
/// any number of ops (it pushes them in batches).
pub fn parse_op_list(list: &[Value], limits: &Limits) -> Result<Vec<ParsedOp>, CartError> {
    // A loop, not `collect` into a `Result` (whose adapter the browser module would carry).
    let mut out = Vec::with_capacity(list.len());
    for op in list {
        let obj = op.as_object().ok_or_else(|| CartError::new(ErrorCode::InvalidOp, "each op must be a JSON object"))?;
        let id = match obj.get("op_id") {
            Some(Value::String(s)) => OpId::parse(s)?,
            _ => return Err(CartError::new(ErrorCode::InvalidOp, "each op needs an op_id string")),
        };
        // A client's numbering decides duplicates and order, so a malformed one fails the whole
        // list, like a missing op_id.
        let id = match (obj.get("client_id"), obj.get("seq")) {
            (None, None) => id,
            (Some(Value::String(c)), Some(Value::Number(n))) => {
                let seq = n.as_u64().ok_or_else(|| CartError::new(ErrorCode::InvalidOp, "seq must be a whole number from 1"))?;
                id.with_client(crate::op::ClientSeq::parse(c, seq)?)
            }
            _ => return Err(CartError::new(ErrorCode::InvalidOp, "client_id (a string) and seq (a number) come together")),
        };
        out.push((id, parse_op_kind(obj, limits)));
    }
    Ok(out)
}

/// `POST /v1/cart/ops` body: `{"ops": [Op, ...]}`.
pub fn parse_ops_request(body: &Value, limits: &Limits) -> Result<Vec<ParsedOp>, CartError> {
    let obj = object(body)?;
    match obj.get("ops") {
        Some(Value::Array(_)) => parse_ops(obj.get("ops"), limits),
        _ => Err(CartError::new(ErrorCode::InvalidRequest, "ops is required and must be an array")),
    }
}

/// `POST /v1/cart/merge` body: `{"guest_token", "ops"?}`.
pub fn parse_merge_request(body: &Value, limits: &Limits) -> Result<(GuestToken, Vec<ParsedOp>), CartError> {
    let obj = object(body)?;
    let token = match obj.get("guest_token") {
        Some(Value::String(s)) => GuestToken::parse(s)?,
        _ => {
            return Err(CartError::new(ErrorCode::InvalidCartToken, "guest_token is required and must be a string"));
        }
    };
    Ok((token, parse_ops(obj.get("ops"), limits)?))
}

/// The wire form of an op, as a client sends it (and keeps it while it is pending), as text:
/// written by hand, since a browser cart writes one per change.
pub fn op_text(op: &Op, at: Option<Timestamp>) -> String {
    let mut out = Vec::with_capacity(192);
    fast_json::op(&mut out, op, at);
    // Only whole UTF-8 strings and ASCII are written.
    String::from_utf8(out).unwrap_or_default()
}

/// [`op_text`] as a JSON value.
pub fn op_to_json(op: &Op, at: Option<Timestamp>) -> Value {
    crate::json::parse(&op_text(op, at)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_bad_field_gets_its_own_code() {
        let l = Limits::default();
        let code = |v: Value| parse_add_item(&v, &l).unwrap_err().code;
        assert_eq!(code(json!([1])), ErrorCode::InvalidRequest);
        assert_eq!(code(json!({"quantity": 1})), ErrorCode::InvalidSku);
        assert_eq!(code(json!({"sku": 5, "quantity": 1})), ErrorCode::InvalidSku);
        assert_eq!(code(json!({"sku": "A"})), ErrorCode::InvalidQuantity);
        assert_eq!(code(json!({"sku": "A", "quantity": "2"})), ErrorCode::InvalidQuantity);
        assert_eq!(code(json!({"sku": "A", "quantity": 1.5})), ErrorCode::InvalidQuantity);
        assert_eq!(code(json!({"sku": "A", "quantity": 1, "price_at_add": 5})), ErrorCode::InvalidMoney);
        assert!(parse_add_item(&json!({"sku": "A", "quantity": 1, "price_at_add": null}), &l).is_ok());
    }

    #[test]
    fn a_bad_op_is_rejected_alone_but_a_missing_op_id_fails_the_batch() {
        let l = Limits::default();
        let ops = parse_ops_request(
            &json!({"ops": [{"op_id": "a", "type": "add", "sku": "X", "quantity": 0}, {"op_id": "b", "type": "clear"}]}),
            &l,
        )
        .unwrap();
        assert_eq!(ops[0].1.as_ref().unwrap_err().code, ErrorCode::InvalidQuantity);
        assert_eq!(ops[1].1, Ok(OpKind::Clear));
        let err = parse_ops_request(&json!({"ops": [{"type": "clear"}]}), &l).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidOp);
        let too_many: Vec<Value> = (0..501).map(|i| json!({"op_id": format!("o{i}"), "type": "clear"})).collect();
        assert_eq!(parse_ops_request(&json!({ "ops": too_many }), &l).unwrap_err().code, ErrorCode::TooManyOps);
    }

    #[test]
    fn error_answers_are_read_in_one_place() {
        let e = ErrorBody::of_answer(409, r#"{"error": {"code": "out_of_stock", "message": "m", "items": []}}"#);
        assert!(e.is(ErrorCode::OutOfStock));
        assert_eq!(e.details.get("items"), Some(&json!([])));
        assert_eq!(e.details.len(), 1, "code and message are not details: {:?}", e.details);
        assert_eq!(e.message, "m");
        assert!(ErrorBody::of_answer(502, "<html>bad gateway</html>").is(ErrorCode::Unavailable));
        assert!(ErrorBody::of_answer(404, "").is(ErrorCode::InvalidRequest));
        let derived: ErrorEnvelope = serde_json::from_str(r#"{"error": {"code": "x", "message": "y", "z": 1}}"#).unwrap();
        assert_eq!(derived.error, ErrorBody::of_answer(400, r#"{"error": {"code": "x", "message": "y", "z": 1}}"#));
    }

    #[test]
    fn a_payment_notice_names_its_order_and_a_success_its_amount() {
        let ok = parse_payment_notice(
            &json!({"order_id": "ord_1", "status": "succeeded", "payment_ref": "p", "amount": {"amount": 5, "currency": "USD"}}),
        )
        .unwrap();
        assert_eq!((ok.status, ok.amount), (PaymentStatus::Succeeded, Some(Money::new(5, Currency::USD).unwrap())));
        let code = |v: Value| parse_payment_notice(&v).unwrap_err().code;
        assert_eq!(code(json!({"status": "succeeded", "payment_ref": "p"})), ErrorCode::InvalidRequest);
        assert_eq!(code(json!({"order_id": "o", "status": "succeeded", "payment_ref": "p"})), ErrorCode::InvalidMoney);
        assert_eq!(code(json!({"order_id": "o", "status": "paid", "payment_ref": "p"})), ErrorCode::InvalidRequest);
        assert_eq!(code(json!({"order_id": "o", "status": "failed", "payment_ref": ""})), ErrorCode::InvalidRequest);
        assert!(parse_payment_notice(&json!({"order_id": "o", "status": "failed", "payment_ref": "p"})).is_ok());
    }

    #[test]
    fn ops_round_trip_through_their_wire_form() {
        let l = Limits::default();
        let op = Op {
            id: OpId::parse("7f1c").unwrap(),
            kind: OpKind::Add {
                sku: Sku::parse("A").unwrap(),
                quantity: Quantity::new(2, &l).unwrap(),
                price_at_add: Some(Money::new(1999, Currency::USD).unwrap()),
            },
        };
        let parsed = parse_ops(Some(&json!([op_to_json(&op, None)])), &l).unwrap();
        assert_eq!(parsed, vec![(op.id.clone(), Ok(op.kind.clone()))]);
    }
}

impl Availability {
    /// What a shopper should be told of a line of `wanted` units when `available` are free.
    pub fn of(available: i64, wanted: u32, low_threshold: i64) -> Availability {
        if available <= 0 {
            Availability::OutOfStock
        } else if available < i64::from(wanted) || available <= low_threshold {
            Availability::LowStock
        } else {
            Availability::InStock
        }
    }
}

/// A product as the storefront sees it (`GET /v1/products`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    /// Units free to buy now (on hand less reserved); 0 for a product not on sale.
    pub available: i64,
    pub availability: Availability,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductsResponse {
    pub products: Vec<ProductView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineView {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_at_add: Option<Money>,
    /// What the promotions took off this line (absent on orders placed before promotions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Money>,
    /// `quantity × unit_price − discount`.
    pub line_total: Money,
}

/// What one gift card paid of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftCardUse {
    pub last4: String,
    pub amount: Money,
}

/// The money of an order beyond its lines. Orders placed before promotions have none stored;
/// theirs is the lines' total with nothing off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTotals {
    pub subtotal: Money,
    pub discounts: Vec<DiscountView>,
    pub discount_total: Money,
    pub gift_cards: Vec<GiftCardUse>,
    /// What the payment must bring: `total` less the gift cards.
    pub amount_due: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    /// `pending_payment`, `paid`, `cancelled` or `expired`.
    pub status: String,
    pub lines: Vec<OrderLineView>,
    /// Before discounts.
    pub subtotal: Money,
    pub discounts: Vec<DiscountView>,
    pub discount_total: Money,
    /// `subtotal − discount_total`.
    pub total: Money,
    pub gift_cards: Vec<GiftCardUse>,
    /// `total` less the gift cards: what the payment must bring.
    pub amount_due: Money,
    pub reserved_until: Timestamp,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_ref: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutResponse {
    pub order: OrderView,
}

/// Most gift cards one checkout may use.
pub const MAX_GIFT_CARDS: usize = 5;

/// `POST /v1/cart/checkout` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The discounted total the shopper was shown.
    pub expected_total: Option<Money>,
    /// Gift card codes, normalized, each once, in the order given.
    pub gift_cards: Vec<String>,
}

/// Parses `{"expected_total"?: Money, "gift_cards"?: ["CODE", ...]}` (an empty body is `{}`).
pub fn parse_checkout_request(body: &Value) -> Result<CheckoutRequest, CartError> {
    let obj = object(body)?;
    let expected_total = match obj.get("expected_total") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Money::from_json(v)?),
    };
    let mut gift_cards: Vec<String> = Vec::new();
    match obj.get("gift_cards") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() <= MAX_GIFT_CARDS => {
            for c in list {
                let code = c.as_str().and_then(crate::gift_card::normalize).ok_or_else(|| {
                    CartError::new(ErrorCode::InvalidRequest, "gift_cards are gift card codes (letters and digits, dashes allowed)")
                })?;
                if !gift_cards.contains(&code) {
                    gift_cards.push(code);
                }
            }
        }
        Some(_) => {
            return Err(CartError::new(
                ErrorCode::InvalidRequest,
                ["gift_cards is a list of at most ", &crate::text::int(MAX_GIFT_CARDS), " codes"].concat(),
            ));
        }
    }
    Ok(CheckoutRequest { expected_total, gift_cards })
}

/// What the payment provider says of one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Succeeded,
    Failed,
}

/// The body of the payment webhook: `{"order_id", "status", "payment_ref", "amount": Money}`
/// (`amount` is required for a success, whose amount must be the order's amount due).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentNotice {
    pub order_id: String,
    pub status: PaymentStatus,
    pub payment_ref: String,
    pub amount: Option<Money>,
}

/// Parses the payment webhook's body (after its signature was checked).
pub fn parse_payment_notice(body: &Value) -> Result<PaymentNotice, CartError> {
    let obj = object(body)?;
    let text = |k: &str, what: &str| match obj.get(k) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        _ => Err(CartError::new(ErrorCode::InvalidRequest, [k, " is ", what].concat())),
    };
    let order_id = text("order_id", "the id of the order paid for")?;
    let status = match obj.get("status").and_then(Value::as_str) {
        Some("succeeded") => PaymentStatus::Succeeded,
        Some("failed") => PaymentStatus::Failed,
        _ => return Err(CartError::new(ErrorCode::InvalidRequest, "status is \"succeeded\" or \"failed\"")),
    };
    let payment_ref = text("payment_ref", "1 to 255 characters")?;
    let amount = match obj.get("amount") {
        None | Some(Value::Null) if status == PaymentStatus::Failed => None,
        None | Some(Value::Null) => return Err(CartError::new(ErrorCode::InvalidMoney, "a successful payment names its amount")),
        Some(v) => Some(Money::from_json(v)?),
    };
    Ok(PaymentNotice { order_id, status, payment_ref, amount })
}

/// Hand-written readers of the response types from a parsed `Value`. The derived `Deserialize`
/// impls stay for everything native; the WebAssembly client reads through these instead, so its
/// module carries one JSON deserializer (for `Value`) rather than one per response type.
pub mod read {
    use super::*;

    type R<T> = Result<T, String>;

    fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
        v.get(k).unwrap_or(&Value::Null)
    }

    fn string(v: &Value, k: &str) -> R<String> {
        field(v, k).as_str().map(str::to_owned).ok_or_else(|| [k, " is not a string"].concat())
    }

    fn integer(v: &Value, k: &str) -> R<u64> {
        field(v, k).as_u64().ok_or_else(|| [k, " is not a whole number"].concat())
    }

    fn money(v: &Value, k: &str) -> R<Money> {
        Money::from_json(field(v, k)).map_err(|e| [k, ": ", &e.message].concat())
    }

    fn money_opt(v: &Value, k: &str) -> R<Option<Money>> {
        match field(v, k) {
            Value::Null => Ok(None),
            m => Money::from_json(m).map(Some).map_err(|e| [k, ": ", &e.message].concat()),
        }
    }

    fn timestamp(v: &Value, k: &str) -> R<Timestamp> {
        field(v, k).as_str().and_then(Timestamp::parse_rfc3339).ok_or_else(|| [k, " is not a timestamp"].concat())
    }

    fn sku(v: &Value) -> R<Sku> {
        Sku::parse(field(v, "sku").as_str().unwrap_or("")).map_err(|e| e.message)
    }

    fn list<T>(v: &Value, k: &str, item: impl Fn(&Value) -> R<T>) -> R<Vec<T>> {
        let Value::Array(items) = field(v, k) else { return Err([k, " is not a list"].concat()) };
        // A loop, not `collect` into a `Result`: its adapter is copied per item type.
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            out.push(item(i)?);
        }
        Ok(out)
    }

    pub fn availability(v: &Value) -> Option<Availability> {
        match v.as_str()? {
            "in_stock" => Some(Availability::InStock),
            "low_stock" => Some(Availability::LowStock),
            "out_of_stock" => Some(Availability::OutOfStock),
            "unknown" => Some(Availability::Unknown),
            "discontinued" => Some(Availability::Discontinued),
            _ => None,
        }
    }

    pub fn line(v: &Value) -> R<LineView> {
        Ok(LineView {
            sku: sku(v)?,
            quantity: u32::try_from(integer(v, "quantity")?).map_err(|_| "quantity is too large".to_owned())?,
            price_at_add: money_opt(v, "price_at_add")?,
            added_at: timestamp(v, "added_at")?,
            current_price: money_opt(v, "current_price")?,
            price_changed: field(v, "price_changed").as_bool(),
            availability: availability(field(v, "availability")),
            discount: money_opt(v, "discount")?,
            line_total: money_opt(v, "line_total")?,
            reason: availability(field(v, "reason")),
        })
    }

    fn promo_code(v: &Value) -> R<PromoCode> {
        PromoCode::parse(field(v, "code").as_str().unwrap_or("")).map_err(|e| e.message)
    }

    fn discount(d: &Value) -> R<DiscountView> {
        Ok(DiscountView {
            promotion: string(d, "promotion")?,
            code: match field(d, "code") {
                Value::Null => None,
                _ => Some(promo_code(d)?),
            },
            description: string(d, "description")?,
            amount: money(d, "amount")?,
        })
    }

    fn string_opt(v: &Value, k: &str) -> Option<String> {
        field(v, k).as_str().map(str::to_owned)
    }

    pub fn cart(v: &Value) -> R<CartView> {
        let currency = Currency::parse(&string(v, "currency")?).map_err(|e| e.message)?;
        Ok(CartView {
            owner: match field(v, "owner").as_str() {
                Some("user") => Owner::User,
                Some("guest") => Owner::Guest,
                _ => return Err("owner is not guest or user".into()),
            },
            version: integer(v, "version")?,
            currency,
            lines: list(v, "lines", line)?,
            saved: list(v, "saved", line)?,
            unavailable: match field(v, "unavailable") {
                Value::Null => Vec::new(),
                _ => list(v, "unavailable", line)?,
            },
            item_count: integer(v, "item_count")?,
            subtotal: money(v, "subtotal")?,
            // A server without promotions sends none of these: nothing is taken off.
            discount_total: money_opt(v, "discount_total")?.unwrap_or(Money::zero(currency)),
            total: match money_opt(v, "total")? {
                Some(t) => t,
                None => money(v, "subtotal")?,
            },
            promo_codes: match field(v, "promo_codes") {
                Value::Null => Vec::new(),
                _ => list(v, "promo_codes", |c| {
                    Ok(PromoCodeView {
                        code: promo_code(c)?,
                        applied: field(c, "applied").as_bool().unwrap_or(false),
                        reason: string_opt(c, "reason"),
                        missing: money_opt(c, "missing")?,
                        pending: field(c, "pending").as_bool(),
                    })
                })?,
            },
            discounts: match field(v, "discounts") {
                Value::Null => Vec::new(),
                _ => list(v, "discounts", discount)?,
            },
            updated_at: timestamp(v, "updated_at")?,
            expires_at: timestamp(v, "expires_at")?,
        })
    }

    /// The `error` object of an error answer.
    pub fn error_body(v: &Value) -> R<ErrorBody> {
        let all = v.as_object().ok_or("an error is not an object")?;
        let text = |k: &str| all.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| ["an error needs a string ", k].concat());
        let (code, message) = (text("code")?, text("message")?);
        // Inserted one by one: neither a removal nor a collect (which sorts) is copied into the
        // browser module for this.
        let mut details = serde_json::Map::new();
        for (k, x) in all.iter().filter(|(k, _)| *k != "code" && *k != "message") {
            details.insert(k.clone(), x.clone());
        }
        Ok(ErrorBody { code, message, details })
    }

    pub fn ops_response(v: &Value) -> R<OpsResponse> {
        Ok(OpsResponse {
            cart: cart(field(v, "cart"))?,
            results: list(v, "results", |r| {
                Ok(OpResult {
                    op_id: string(r, "op_id")?,
                    status: string(r, "status")?,
                    error: match field(r, "error") {
                        Value::Null => None,
                        e => Some(error_body(e)?),
                    },
                })
            })?,
        })
    }

    pub fn merge_response(v: &Value) -> R<MergeResponse> {
        Ok(MergeResponse { cart: cart(field(v, "cart"))?, merged: field(v, "merged").as_bool().ok_or("merged is not a boolean")? })
    }

    pub fn order(v: &Value) -> R<OrderView> {
        Ok(OrderView {
            id: string(v, "id")?,
            status: string(v, "status")?,
            lines: list(v, "lines", |l| {
                Ok(OrderLineView {
                    sku: sku(l)?,
                    quantity: u32::try_from(integer(l, "quantity")?).map_err(|_| "quantity is too large".to_owned())?,
                    unit_price: money(l, "unit_price")?,
                    price_at_add: money_opt(l, "price_at_add")?,
                    discount: money_opt(l, "discount")?,
                    line_total: money(l, "line_total")?,
                })
            })?,
            subtotal: money(v, "subtotal")?,
            discounts: list(v, "discounts", discount)?,
            discount_total: money(v, "discount_total")?,
            total: money(v, "total")?,
            gift_cards: list(v, "gift_cards", |g| Ok(GiftCardUse { last4: string(g, "last4")?, amount: money(g, "amount")? }))?,
            amount_due: money(v, "amount_due")?,
            reserved_until: timestamp(v, "reserved_until")?,
            created_at: timestamp(v, "created_at")?,
            payment_ref: field(v, "payment_ref").as_str().map(str::to_owned),
        })
    }
}
