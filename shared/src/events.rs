//! Cart and order events (`events.md`): what each applied op tells, and the CloudEvents 1.0
//! envelope they travel in. Pure: the server records them (in the Lua scripts, beside the
//! change; or in the in-process store) and delivers them; this module only says what they are.
//!
//! Every applied op makes exactly one event, whether or not it changed the cart (an `add` past
//! the line limit is still an acknowledged add); a duplicate or rejected op makes none. A cart
//! that comes into being with the first op applied to it makes a `cart.created` first.

use crate::cart::Cart;
use crate::op::OpKind;
use crate::time::Timestamp;
use crate::types::Sku;
use serde_json::{Map, Value, json};

/// The kinds of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    CartCreated,
    ItemAdded,
    QuantityChanged,
    ItemRemoved,
    SavedForLater,
    MovedToCart,
    SavedItemRemoved,
    Cleared,
    PromoCodeApplied,
    PromoCodeRemoved,
    Merged,
    CheckoutStarted,
    CheckoutFailed,
    OrderPaid,
    OrderCancelled,
    OrderExpired,
    CartAbandoned,
    CartRecovered,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        EventType::CartCreated,
        EventType::ItemAdded,
        EventType::QuantityChanged,
        EventType::ItemRemoved,
        EventType::SavedForLater,
        EventType::MovedToCart,
        EventType::SavedItemRemoved,
        EventType::Cleared,
        EventType::PromoCodeApplied,
        EventType::PromoCodeRemoved,
        EventType::Merged,
        EventType::CheckoutStarted,
        EventType::CheckoutFailed,
        EventType::OrderPaid,
        EventType::OrderCancelled,
        EventType::OrderExpired,
        EventType::CartAbandoned,
        EventType::CartRecovered,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::CartCreated => "cart.created",
            EventType::ItemAdded => "cart.item_added",
            EventType::QuantityChanged => "cart.quantity_changed",
            EventType::ItemRemoved => "cart.item_removed",
            EventType::SavedForLater => "cart.saved_for_later",
            EventType::MovedToCart => "cart.moved_to_cart",
            EventType::SavedItemRemoved => "cart.saved_item_removed",
            EventType::Cleared => "cart.cleared",
            EventType::PromoCodeApplied => "cart.promo_code_applied",
            EventType::PromoCodeRemoved => "cart.promo_code_removed",
            EventType::Merged => "cart.merged",
            EventType::CheckoutStarted => "checkout.started",
            EventType::CheckoutFailed => "checkout.failed",
            EventType::OrderPaid => "order.paid",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderExpired => "order.expired",
            EventType::CartAbandoned => "cart.abandoned",
            EventType::CartRecovered => "cart.recovered",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Whether an endpoint's filter (`"cart.abandoned"`, `"order.*"`, `"*"`) takes an event type.
pub fn filter_matches(filter: &str, t: &str) -> bool {
    match filter.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => t.starts_with(prefix),
        None => filter == t,
    }
}

/// A filter is `*`, a known type, or a known type family (`cart.*`, `order.*`, `checkout.*`).
pub fn valid_filter(filter: &str) -> bool {
    match filter.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.') && EventType::ALL.iter().any(|t| t.as_str().starts_with(prefix)),
        None => EventType::parse(filter).is_some(),
    }
}

/// What one applied op tells: its type, the SKU, a quantity and one more field, and the cart's
/// version after it. The Lua scripts compute exactly these (a property test holds them together).
///
/// | op | type | `quantity` | `extra` |
/// |---|---|---|---|
/// | add | `cart.item_added` | units asked to add | the line's quantity after |
/// | set_quantity | `cart.quantity_changed` | the new quantity | the quantity before |
/// | remove | `cart.item_removed` | units removed (0 if there was no line) | |
/// | deduct (a paid order) | `cart.item_removed` | units removed | `ordered` |
/// | save_for_later | `cart.saved_for_later` | units moved | |
/// | move_to_cart | `cart.moved_to_cart` | units moved | |
/// | remove_saved | `cart.saved_item_removed` | units removed | |
/// | clear | `cart.cleared` | lines removed | |
/// | apply / remove a promo code | `cart.promo_code_applied` / `_removed` | 0 | the code |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpEvent {
    pub kind: EventType,
    pub sku: Option<Sku>,
    pub quantity: u32,
    pub extra: String,
    pub version: u64,
}

fn qty(list: &[crate::cart::CartLine], sku: &Sku) -> u32 {
    list.iter().find(|l| &l.sku == sku).map_or(0, |l| l.quantity)
}

/// The event of `op`, applied to `before` with `after` as the result.
pub fn op_event(op: &OpKind, before: &Cart, after: &Cart) -> OpEvent {
    let sku = op.sku().cloned();
    let (kind, quantity, extra) = match op {
        OpKind::Add { sku, quantity, .. } => (EventType::ItemAdded, quantity.get(), qty(&after.lines, sku).to_string()),
        OpKind::SetQuantity { sku, quantity } => (EventType::QuantityChanged, quantity.get(), qty(&before.lines, sku).to_string()),
        OpKind::Remove { sku } => (EventType::ItemRemoved, qty(&before.lines, sku), String::new()),
        OpKind::Deduct { sku, .. } => (EventType::ItemRemoved, qty(&before.lines, sku) - qty(&after.lines, sku), "ordered".to_owned()),
        OpKind::SaveForLater { sku } => (EventType::SavedForLater, qty(&before.lines, sku), String::new()),
        OpKind::MoveToCart { sku } => (EventType::MovedToCart, qty(&before.saved, sku), String::new()),
        OpKind::RemoveSaved { sku } => (EventType::SavedItemRemoved, qty(&before.saved, sku), String::new()),
        OpKind::Clear => (EventType::Cleared, before.lines.len() as u32, String::new()),
        OpKind::ApplyPromoCode { code } => (EventType::PromoCodeApplied, 0, code.as_str().to_owned()),
        OpKind::RemovePromoCode { code } => (EventType::PromoCodeRemoved, 0, code.as_str().to_owned()),
    };
    OpEvent { kind, sku, quantity, extra, version: after.version }
}

/// The `data` of a cart op's event.
pub fn op_data(e: &OpEvent, owner_is_user: bool, user: Option<&str>) -> Value {
    let mut d = Map::new();
    d.insert("owner".into(), json!(if owner_is_user { "user" } else { "guest" }));
    if let Some(u) = user {
        d.insert("user".into(), json!(u));
    }
    d.insert("cart_version".into(), json!(e.version));
    if let Some(s) = &e.sku {
        d.insert("sku".into(), json!(s.as_str()));
    }
    match e.kind {
        EventType::ItemAdded => {
            d.insert("quantity".into(), json!(e.quantity));
            d.insert("line_quantity".into(), json!(e.extra.parse::<u64>().unwrap_or(0)));
        }
        EventType::QuantityChanged => {
            d.insert("quantity".into(), json!(e.quantity));
            d.insert("previous_quantity".into(), json!(e.extra.parse::<u64>().unwrap_or(0)));
        }
        EventType::ItemRemoved => {
            d.insert("quantity".into(), json!(e.quantity));
            d.insert("reason".into(), json!(if e.extra == "ordered" { "ordered" } else { "shopper" }));
        }
        EventType::SavedForLater | EventType::MovedToCart | EventType::SavedItemRemoved => {
            d.insert("quantity".into(), json!(e.quantity));
        }
        EventType::Cleared => {
            d.insert("lines".into(), json!(e.quantity));
        }
        EventType::PromoCodeApplied | EventType::PromoCodeRemoved => {
            d.insert("code".into(), json!(e.extra));
        }
        _ => {}
    }
    Value::Object(d)
}

/// The CloudEvents 1.0 structured JSON of an event.
pub fn cloud_event(id: &str, kind: &str, time: Timestamp, subject: &str, data: &Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "cartsync",
        "type": kind,
        "time": time.to_string(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_types_and_families() {
        assert!(filter_matches("*", "cart.item_added"));
        assert!(filter_matches("order.*", "order.paid"));
        assert!(!filter_matches("order.*", "cart.item_added"));
        assert!(filter_matches("cart.abandoned", "cart.abandoned"));
        assert!(!filter_matches("cart.abandoned", "cart.abandoned_x"));
        assert!(valid_filter("order.*") && valid_filter("*") && valid_filter("checkout.failed"));
        assert!(!valid_filter("nothing.*") && !valid_filter("cart.nope") && !valid_filter("order") && !valid_filter("ord*"));
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
