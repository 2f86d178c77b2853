//! Promotions on the wire: the admin definition (`PUT /v1/admin/promotions/{id}`) parsed field by
//! field, each bad field with its own message, and written back the same way. The server stores
//! this JSON, the browser cart reads it from `GET /v1/promotions`, so both run the engine on the
//! same definition.

use crate::error::{CartError, ErrorCode};
use crate::json::object;
use crate::promo::{Action, PromoCode, Promotion, PromotionId};
use crate::text::int;
use crate::time::Timestamp;
use crate::types::{Currency, Money, Sku};
use serde_json::{Map, Value};

/// Most SKUs one action may list, and most items one bundle may have.
pub const MAX_ACTION_SKUS: usize = 500;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 500;

fn bad(message: impl Into<String>) -> CartError {
    CartError::new(ErrorCode::InvalidRequest, message)
}

fn opt<'a>(obj: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    obj.get(k).filter(|v| !v.is_null())
}

fn money_in(v: &Value, k: &str, currency: Currency) -> Result<Money, CartError> {
    let m = Money::from_json(v).map_err(|e| CartError::new(e.code, [k, ": ", &e.message].concat()))?;
    if m.currency() != currency {
        return Err(CartError::new(ErrorCode::CurrencyMismatch, [k, " is in ", currency.as_str(), ", the store's currency"].concat()));
    }
    Ok(m)
}

fn whole(v: &Value, k: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, CartError> {
    match v.as_u64() {
        Some(n) if range.contains(&n) => Ok(n),
        _ => Err(bad([k, " is a whole number from ", &int(*range.start()), " to ", &int(*range.end())].concat())),
    }
}

fn percent(obj: &Map<String, Value>) -> Result<u32, CartError> {
    let v = opt(obj, "percent").ok_or_else(|| bad("action.percent is required"))?;
    Ok(whole(v, "action.percent", 1..=100)? as u32)
}

fn skus(obj: &Map<String, Value>) -> Result<Vec<Sku>, CartError> {
    let list = match opt(obj, "skus") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_ACTION_SKUS => a,
        _ => return Err(bad(["action.skus is a list of 1 to ", &int(MAX_ACTION_SKUS), " SKUs"].concat())),
    };
    let mut out: Vec<Sku> = Vec::with_capacity(list.len());
    for s in list {
        let sku = Sku::parse(s.as_str().unwrap_or("")).map_err(|e| CartError::new(e.code, ["action.skus: ", &e.message].concat()))?;
        if !out.contains(&sku) {
            out.push(sku);
        }
    }
    Ok(out)
}

fn action(v: &Value, currency: Currency) -> Result<Action, CartError> {
    let obj = v.as_object().ok_or_else(|| bad("action is an object with a type"))?;
    let amount = |k: &str| -> Result<Money, CartError> {
        let m = money_in(opt(obj, k).ok_or_else(|| bad(["action.", k, " is required"].concat()))?, &["action.", k].concat(), currency)?;
        Ok(m)
    };
    Ok(match obj.get("type").and_then(Value::as_str) {
        Some("percent_off_order") => Action::PercentOffOrder { percent: percent(obj)? },
        Some("amount_off_order") => Action::AmountOffOrder { amount: positive(amount("amount")?, "action.amount")? },
        Some("percent_off_items") => Action::PercentOffItems { percent: percent(obj)?, skus: skus(obj)? },
        Some("amount_off_items") => Action::AmountOffItems { amount: positive(amount("amount")?, "action.amount")?, skus: skus(obj)? },
        Some("buy_x_get_y") => {
            let count = |k: &str| -> Result<u32, CartError> {
                let v = opt(obj, k).ok_or_else(|| bad(["action.", k, " is required"].concat()))?;
                Ok(whole(v, &["action.", k].concat(), 1..=1000)? as u32)
            };
            Action::BuyXGetY { skus: skus(obj)?, buy: count("buy")?, get: count("get")?, percent: percent(obj)? }
        }
        Some("bundle") => {
            let list = match opt(obj, "items") {
                Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_ACTION_SKUS => a,
                _ => return Err(bad(["action.items is a list of 1 to ", &int(MAX_ACTION_SKUS), " {\"sku\", \"quantity\"}"].concat())),
            };
            let mut items: Vec<(Sku, u32)> = Vec::with_capacity(list.len());
            for item in list {
                let o = item.as_object().ok_or_else(|| bad("action.items are {\"sku\", \"quantity\"}"))?;
                let sku = Sku::parse(o.get("sku").and_then(Value::as_str).unwrap_or(""))
                    .map_err(|e| CartError::new(e.code, ["action.items: ", &e.message].concat()))?;
                let q = whole(o.get("quantity").unwrap_or(&Value::Null), "action.items[].quantity", 1..=1000)? as u32;
                if items.iter().any(|(s, _)| *s == sku) {
                    return Err(bad(["action.items names ", sku.as_str(), " twice"].concat()));
                }
                items.push((sku, q));
            }
            Action::Bundle { items, price: amount("price")? }
        }
        _ => {
            return Err(bad(
                "action.type is one of percent_off_order, amount_off_order, percent_off_items, amount_off_items, buy_x_get_y, bundle",
            ));
        }
    })
}

fn positive(m: Money, k: &str) -> Result<Money, CartError> {
    if m.amount() > 0 { Ok(m) } else { Err(CartError::new(ErrorCode::InvalidMoney, [k, " is more than zero"].concat())) }
}

fn timestamp(obj: &Map<String, Value>, k: &str) -> Result<Option<Timestamp>, CartError> {
    match opt(obj, k) {
        None => Ok(None),
        Some(v) => v.as_str().and_then(Timestamp::parse_rfc3339).map(Some).ok_or_else(|| bad([k, " is an RFC 3339 time"].concat())),
    }
}

fn flag(obj: &Map<String, Value>, k: &str, default: bool) -> Result<bool, CartError> {
    match opt(obj, k) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad([k, " is true or false"].concat())),
    }
}

fn limit(obj: &Map<String, Value>, k: &str) -> Result<Option<u64>, CartError> {
    opt(obj, k).map(|v| whole(v, k, 1..=1_000_000_000)).transpose()
}

/// Parses a promotion's definition (the body of `PUT /v1/admin/promotions/{id}`); amounts must be
/// in the store's `currency`.
pub fn parse_promotion(id: PromotionId, body: &Value, currency: Currency) -> Result<Promotion, CartError> {
    let obj = body.as_object().ok_or_else(|| bad("a promotion is a JSON object"))?;
    let code = match opt(obj, "code") {
        None => None,
        Some(Value::String(s)) => Some(PromoCode::parse(s)?),
        Some(_) => return Err(CartError::new(ErrorCode::InvalidPromoCode, "code is a string")),
    };
    let description = match opt(obj, "description") {
        None => String::new(),
        Some(Value::String(s)) if s.len() <= MAX_DESCRIPTION => s.clone(),
        Some(_) => return Err(bad(["description is a string of at most ", &int(MAX_DESCRIPTION), " bytes"].concat())),
    };
    let starts_at = timestamp(obj, "starts_at")?;
    let ends_at = timestamp(obj, "ends_at")?;
    if let (Some(s), Some(e)) = (starts_at, ends_at)
        && e < s
    {
        return Err(bad("ends_at is before starts_at"));
    }
    let min_subtotal = opt(obj, "min_subtotal").map(|v| money_in(v, "min_subtotal", currency)).transpose()?;
    let max_discount = opt(obj, "max_discount").map(|v| money_in(v, "max_discount", currency)).transpose()?;
    let action = action(opt(obj, "action").ok_or_else(|| bad("action is required"))?, currency)?;
    Ok(Promotion {
        id,
        code,
        description,
        active: flag(obj, "active", true)?,
        starts_at,
        ends_at,
        min_subtotal,
        action,
        max_discount,
        combinable: flag(obj, "combinable", false)?,
        usage_limit: limit(obj, "usage_limit")?,
        usage_limit_per_customer: limit(obj, "usage_limit_per_customer")?,
    })
}

fn skus_json(skus: &[Sku]) -> Value {
    Value::Array(skus.iter().map(|s| Value::String(s.as_str().to_owned())).collect())
}

fn action_json(a: &Action) -> Value {
    match a {
        Action::PercentOffOrder { percent } => object([("type", "percent_off_order".into()), ("percent", (*percent).into())]),
        Action::AmountOffOrder { amount } => object([("type", "amount_off_order".into()), ("amount", amount.to_json())]),
        Action::PercentOffItems { percent, skus } => {
            object([("type", "percent_off_items".into()), ("percent", (*percent).into()), ("skus", skus_json(skus))])
        }
        Action::AmountOffItems { amount, skus } => {
            object([("type", "amount_off_items".into()), ("amount", amount.to_json()), ("skus", skus_json(skus))])
        }
        Action::BuyXGetY { skus, buy, get, percent } => object([
            ("type", "buy_x_get_y".into()),
            ("skus", skus_json(skus)),
            ("buy", (*buy).into()),
            ("get", (*get).into()),
            ("percent", (*percent).into()),
        ]),
        Action::Bundle { items, price } => object([
            ("type", "bundle".into()),
            ("items", Value::Array(items.iter().map(|(s, q)| object([("sku", s.as_str().into()), ("quantity", (*q).into())])).collect())),
            ("price", price.to_json()),
        ]),
    }
}

/// A promotion's definition as [`parse_promotion`] reads it, with its `id`.
pub fn promotion_json(p: &Promotion) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), p.id.as_str().into());
    if let Some(c) = &p.code {
        m.insert("code".into(), c.as_str().into());
    }
    m.insert("description".into(), p.description.as_str().into());
    m.insert("active".into(), p.active.into());
    let mut time = |k: &str, t: Option<Timestamp>| {
        if let Some(t) = t {
            m.insert(k.into(), t.to_string().into());
        }
    };
    time("starts_at", p.starts_at);
    time("ends_at", p.ends_at);
    if let Some(x) = &p.min_subtotal {
        m.insert("min_subtotal".into(), x.to_json());
    }
    m.insert("action".into(), action_json(&p.action));
    if let Some(x) = &p.max_discount {
        m.insert("max_discount".into(), x.to_json());
    }
    m.insert("combinable".into(), p.combinable.into());
    if let Some(x) = p.usage_limit {
        m.insert("usage_limit".into(), x.into());
    }
    if let Some(x) = p.usage_limit_per_customer {
        m.insert("usage_limit_per_customer".into(), x.into());
    }
    Value::Object(m)
}

/// Reads a promotion written by [`promotion_json`] (its `id` included).
pub fn promotion_from_json(v: &Value, currency: Currency) -> Result<Promotion, CartError> {
    let id = PromotionId::parse(v.get("id").and_then(Value::as_str).unwrap_or(""))?;
    parse_promotion(id, v, currency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> PromotionId {
        PromotionId::parse("spring-10").unwrap()
    }

    #[test]
    fn every_action_round_trips() {
        let bodies = [
            json!({"code": "spring10", "description": "10%", "action": {"type": "percent_off_order", "percent": 10},
                   "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-31T23:59:59Z", "min_subtotal": {"amount": 5000, "currency": "USD"},
                   "max_discount": {"amount": 2000, "currency": "USD"}, "usage_limit": 100, "usage_limit_per_customer": 1}),
            json!({"action": {"type": "amount_off_order", "amount": {"amount": 500, "currency": "USD"}}, "combinable": true}),
            json!({"action": {"type": "percent_off_items", "percent": 25, "skus": ["A", "B", "A"]}}),
            json!({"action": {"type": "amount_off_items", "amount": {"amount": 100, "currency": "USD"}, "skus": ["A"]}, "active": false}),
            json!({"action": {"type": "buy_x_get_y", "skus": ["A"], "buy": 2, "get": 1, "percent": 100}}),
            json!({"action": {"type": "bundle", "items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}],
                   "price": {"amount": 999, "currency": "USD"}}}),
        ];
        for b in bodies {
            let p = parse_promotion(id(), &b, Currency::USD).unwrap();
            let again = promotion_from_json(&promotion_json(&p), Currency::USD).unwrap();
            assert_eq!(p, again);
        }
        let p = parse_promotion(id(), &json!({"code": "spring10", "action": {"type": "percent_off_order", "percent": 10}}), Currency::USD)
            .unwrap();
        assert_eq!(p.code.unwrap().as_str(), "SPRING10", "codes are upper-case");
    }

    #[test]
    fn bad_definitions_are_refused_with_a_reason() {
        let cases = [
            (json!([]), ErrorCode::InvalidRequest),
            (json!({}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "percent_off_order", "percent": 0}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "percent_off_order", "percent": 101}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "percent_off_order", "percent": "10"}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "percent_off_order", "percent": 10.5}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "free_lunch"}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "amount_off_order", "amount": {"amount": 0, "currency": "USD"}}}), ErrorCode::InvalidMoney),
            (json!({"action": {"type": "amount_off_order", "amount": {"amount": 10, "currency": "EUR"}}}), ErrorCode::CurrencyMismatch),
            (json!({"action": {"type": "percent_off_items", "percent": 10, "skus": []}}), ErrorCode::InvalidRequest),
            (json!({"action": {"type": "percent_off_items", "percent": 10, "skus": ["bad sku"]}}), ErrorCode::InvalidSku),
            (json!({"action": {"type": "buy_x_get_y", "skus": ["A"], "buy": 0, "get": 1, "percent": 100}}), ErrorCode::InvalidRequest),
            (
                json!({"action": {"type": "bundle", "items": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}],
                    "price": {"amount": 1, "currency": "USD"}}}),
                ErrorCode::InvalidRequest,
            ),
            (json!({"code": "no spaces", "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidPromoCode),
            (json!({"code": 5, "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidPromoCode),
            (json!({"usage_limit": 0, "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidRequest),
            (json!({"usage_limit": -1, "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidRequest),
            (json!({"combinable": "yes", "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidRequest),
            (json!({"starts_at": "tomorrow", "action": {"type": "percent_off_order", "percent": 10}}), ErrorCode::InvalidRequest),
            (
                json!({"starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z", "action": {"type": "percent_off_order", "percent": 10}}),
                ErrorCode::InvalidRequest,
            ),
        ];
        for (body, code) in cases {
            assert_eq!(parse_promotion(id(), &body, Currency::USD).unwrap_err().code, code, "{body}");
        }
    }
}
