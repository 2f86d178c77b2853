//! The Redis layout of a cart (documented in `lua/common.lua`), to and from `shared::Cart`.
//!
//! A cart is read straight from the `HGETALL` replies of its meta, lines and saved keys, without
//! copying them into strings first: this is on every request's path.

use super::StoreError;
use redis::Value;
use shared::promo::PromoCode;
use shared::{Applied, Cart, CartLine, Currency, Mark, Money, Sku, Timestamp, UserId};

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The field/value pairs of an `HGETALL` reply (an array in RESP2, a map in RESP3).
pub(super) fn pairs(v: &Value) -> Vec<(&[u8], &[u8])> {
    match v {
        Value::Array(items) => items.chunks_exact(2).filter_map(|kv| Some((bytes(&kv[0])?, bytes(&kv[1])?))).collect(),
        Value::Map(items) => items.iter().filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?))).collect(),
        _ => Vec::new(),
    }
}

fn text(b: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(b).map_err(|_| corrupt("a field that is not UTF-8"))
}

fn number<T: std::str::FromStr>(field: &str, b: &[u8]) -> Result<T, StoreError> {
    text(b)?.parse().map_err(|_| corrupt(format!("field {field} = {:?}", String::from_utf8_lossy(b))))
}

/// One line from its field (the SKU) and value (`quantity|seq|added_at_ms|price_amount|price_currency`).
fn decode_line(sku: &[u8], value: &[u8]) -> Result<CartLine, StoreError> {
    let bad = || corrupt(format!("line {:?} = {:?}", String::from_utf8_lossy(sku), String::from_utf8_lossy(value)));
    let mut parts = text(value)?.split('|');
    let mut next = || parts.next().ok_or_else(bad);
    let quantity: u32 = next()?.parse().map_err(|_| bad())?;
    let seq: u64 = next()?.parse().map_err(|_| bad())?;
    let added: i64 = next()?.parse().map_err(|_| bad())?;
    let (amount, currency) = (next()?, next()?);
    let price_at_add = if currency.is_empty() {
        None
    } else {
        let c = Currency::parse(currency).map_err(|_| bad())?;
        Some(Money::new(amount.parse().map_err(|_| bad())?, c).map_err(|_| bad())?)
    };
    Ok(CartLine { sku: Sku::parse(text(sku)?).map_err(|_| bad())?, quantity, price_at_add, added_at: Timestamp::from_millis(added), seq })
}

pub(super) fn encode_line(l: &CartLine) -> String {
    match l.price_at_add {
        Some(p) => format!("{}|{}|{}|{}|{}", l.quantity, l.seq, l.added_at.millis(), p.amount(), p.currency()),
        None => format!("{}|{}|{}||", l.quantity, l.seq, l.added_at.millis()),
    }
}

/// What a cart's meta fields say beyond the cart itself.
pub(super) struct Meta {
    pub exists: bool,
    /// The numbers of lines and saved lines at the last write.
    pub lines: u64,
    pub saved: u64,
    /// The last write or renewal the data recorded (ms).
    pub accessed: i64,
    /// When this life of the cart began (`#i`).
    pub incarnation: String,
    /// The data generation a user cart was last restored or checked in (`#g`; empty: never).
    pub generation: String,
}

/// A cart from the `HGETALL` replies of its main and saved keys. `accessed_at` is now: every
/// access renews a cart. Returns the cart and what its meta says.
pub(super) fn cart_of(main: &Value, saved: &Value, currency: Currency, accessed_at: Timestamp) -> Result<(Cart, Meta), StoreError> {
    let mut cart = Cart::new(currency);
    cart.accessed_at = accessed_at;
    let mut info = Meta { exists: false, lines: 0, saved: 0, accessed: 0, incarnation: String::new(), generation: String::new() };
    for (f, v) in pairs(main) {
        match f {
            [b'#', name @ ..] => {
                info.exists = true;
                match name {
                    b"v" => cart.version = number("#v", v)?,
                    b"n" => cart.next_seq = number("#n", v)?,
                    b"u" => cart.updated_at = Timestamp::from_millis(number("#u", v)?),
                    b"a" => info.accessed = number("#a", v)?,
                    b"i" => info.incarnation = text(v)?.to_owned(),
                    b"g" => info.generation = text(v)?.to_owned(),
                    b"c" => cart.currency = Currency::parse(text(v)?).map_err(|_| corrupt("the cart's currency"))?,
                    b"z" => cart.merged_into = Some(UserId::parse(text(v)?).map_err(|_| corrupt("the merged-into user"))?),
                    b"p" => cart.promo_codes = codes(v)?,
                    b"l" => info.lines = number("#l", v)?,
                    b"s" => info.saved = number("#s", v)?,
                    _ => {}
                }
            }
            sku => cart.lines.push(decode_line(sku, v)?),
        }
    }
    for (f, v) in pairs(saved) {
        cart.saved.push(decode_line(f, v)?);
    }
    cart.lines.sort_by_key(|l| l.seq);
    cart.saved.sort_by_key(|l| l.seq);
    Ok((cart, info))
}

/// The promo codes of the `#p` field: comma-separated.
fn codes(v: &[u8]) -> Result<Vec<PromoCode>, StoreError> {
    text(v)?.split(',').filter(|c| !c.is_empty()).map(|c| PromoCode::parse(c).map_err(|_| corrupt(format!("promo code {c:?}")))).collect()
}

fn codes_text(codes: &[PromoCode]) -> String {
    codes.iter().map(PromoCode::as_str).collect::<Vec<_>>().join(",")
}

/// Whether reading this cart must write after all: a saved list kept it alive past its lines'
/// expiry, or Redis expired its saved list, and no write has recorded that change yet.
pub(super) fn expired_unnoticed(cart: &Cart, meta: &Meta, cart_ttl_ms: i64, now: Timestamp) -> bool {
    meta.saved > 0 && (cart.saved.is_empty() || (!cart.lines.is_empty() && meta.accessed.saturating_add(cart_ttl_ms) < now.millis()))
}

/// The main and saved items of a cart, as the restore script writes them.
pub(super) fn cart_parts(cart: &Cart) -> (Vec<String>, Vec<String>) {
    let mut main = vec![
        "#v".into(),
        cart.version.to_string(),
        "#n".into(),
        cart.next_seq.to_string(),
        "#c".into(),
        cart.currency.to_string(),
        "#u".into(),
        cart.updated_at.millis().to_string(),
        "#l".into(),
        cart.lines.len().to_string(),
        "#s".into(),
        cart.saved.len().to_string(),
    ];
    if let Some(user) = &cart.merged_into {
        main.push("#z".into());
        main.push(user.as_str().to_owned());
    }
    if !cart.promo_codes.is_empty() {
        main.push("#p".into());
        main.push(codes_text(&cart.promo_codes));
    }
    let items = |list: &[CartLine]| list.iter().flat_map(|l| [l.sku.as_str().to_owned(), encode_line(l)]).collect::<Vec<_>>();
    main.extend(items(&cart.lines));
    (main, items(&cart.saved))
}

/// The lines of a cart as one flat list of `l:<sku>` / `s:<sku>` items, in the cart's order, and
/// its promo codes as `p` (the merge script's arguments, and the freeze snapshot's form).
pub fn line_fields(cart: &Cart) -> Vec<String> {
    let mut out = Vec::with_capacity(2 * (cart.lines.len() + cart.saved.len()) + 2);
    if !cart.promo_codes.is_empty() {
        out.push("p".into());
        out.push(codes_text(&cart.promo_codes));
    }
    for (prefix, list) in [("l:", &cart.lines), ("s:", &cart.saved)] {
        for l in list {
            out.push(format!("{prefix}{}", l.sku));
            out.push(encode_line(l));
        }
    }
    out
}

/// Reads a freeze snapshot: meta fields and `l:` / `s:` lines in one flat list. Unknown fields
/// are ignored.
pub fn cart_from_fields(items: &[String], default_currency: Currency, accessed_at: Timestamp) -> Result<Cart, StoreError> {
    let mut cart = Cart::new(default_currency);
    cart.accessed_at = accessed_at;
    for pair in items.chunks_exact(2) {
        let (f, v) = (pair[0].as_str(), pair[1].as_bytes());
        if let Some(sku) = f.strip_prefix("l:") {
            cart.lines.push(decode_line(sku.as_bytes(), v)?);
        } else if let Some(sku) = f.strip_prefix("s:") {
            cart.saved.push(decode_line(sku.as_bytes(), v)?);
        } else {
            match f {
                "v" => cart.version = number(f, v)?,
                "n" => cart.next_seq = number(f, v)?,
                "u" => cart.updated_at = Timestamp::from_millis(number(f, v)?),
                "c" => cart.currency = Currency::parse(&pair[1]).map_err(|_| corrupt(format!("currency {:?}", pair[1])))?,
                "p" => cart.promo_codes = codes(v)?,
                _ => {}
            }
        }
    }
    cart.lines.sort_by_key(|l| l.seq);
    cart.saved.sort_by_key(|l| l.seq);
    Ok(cart)
}

/// What a cart remembers of its ops, as the fields of its op-id hash (`lua/common.lua`): each
/// op id and its position, `#q<n>` the id at `n`, `#t`/`#h` the next and oldest positions,
/// `#c<client>` a client's mark `seq|at`, `#k` the number of clients.
pub(super) fn applied_fields(a: &Applied) -> Vec<String> {
    let mut out = Vec::new();
    let mut first = None;
    let mut next = 0;
    for (n, id) in a.recent() {
        first.get_or_insert(n);
        next = n + 1;
        out.extend([id.to_owned(), n.to_string(), format!("#q{n}"), id.to_owned()]);
    }
    out.extend(["#t".to_owned(), next.to_string(), "#h".to_owned(), first.unwrap_or(0).to_string()]);
    let mut k = 0;
    for (client, m) in a.clients() {
        k += 1;
        out.extend([format!("#c{client}"), format!("{}|{}", m.seq, m.at)]);
    }
    out.extend(["#k".to_owned(), k.to_string()]);
    out
}

/// The op-id hash read back (an `HGETALL` reply). Ids kept before positions existed (valued
/// "1") are taken in name order.
pub(super) fn applied_of(v: &Value) -> Result<Applied, StoreError> {
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (field, value) in pairs(v) {
        match field {
            [b'#', b'c', client @ ..] => {
                let (seq, at) = text(value)?.split_once('|').ok_or_else(|| corrupt("a client mark without its time"))?;
                clients.push((text(client)?.to_owned(), Mark { seq: number("#c", seq.as_bytes())?, at: number("#c", at.as_bytes())? }));
            }
            [b'#', ..] => {}
            id => ids.push((number("an op id's position", value)?, text(id)?.to_owned())),
        }
    }
    Ok(Applied::from_parts(clients, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Limits, OpKind, Quantity};

    fn reply(items: &[String]) -> Value {
        Value::Array(items.iter().map(|s| Value::BulkString(s.clone().into_bytes())).collect())
    }

    #[test]
    fn a_cart_survives_its_hash_form() {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        let sku = |s: &str| Sku::parse(s).unwrap();
        c.apply(
            &OpKind::Add {
                sku: sku("A"),
                quantity: Quantity::new(2, &l).unwrap(),
                price_at_add: Some(Money::new(1999, Currency::USD).unwrap()),
            },
            &l,
            Timestamp::from_millis(5),
        )
        .unwrap();
        c.apply(
            &OpKind::Add { sku: sku("B:1"), quantity: Quantity::new(1, &l).unwrap(), price_at_add: None },
            &l,
            Timestamp::from_millis(6),
        )
        .unwrap();
        c.apply(&OpKind::SaveForLater { sku: sku("A") }, &l, Timestamp::from_millis(7)).unwrap();
        c.accessed_at = Timestamp::from_millis(8);
        c.merged_into = Some(UserId::parse("alice").unwrap());
        let (main, saved) = cart_parts(&c);
        let (back, info) = cart_of(&reply(&main), &reply(&saved), Currency::USD, c.accessed_at).unwrap();
        assert_eq!(back, c);
        assert!(info.exists && !expired_unnoticed(&back, &info, 1000, c.accessed_at));
        let (gone, info) = cart_of(&reply(&main), &reply(&[]), Currency::USD, c.accessed_at).unwrap();
        assert!(expired_unnoticed(&gone, &info, 1000, c.accessed_at), "a saved list the meta counts but Redis no longer has");
        let mut snapshot = vec!["v".to_owned(), c.version.to_string(), "n".into(), c.next_seq.to_string(), "c".into(), "USD".into()];
        snapshot.extend(line_fields(&c));
        let frozen = cart_from_fields(&snapshot, Currency::USD, c.accessed_at).unwrap();
        assert_eq!((frozen.lines.clone(), frozen.saved.clone(), frozen.version), (c.lines.clone(), c.saved.clone(), c.version));
        assert!(cart_from_fields(&["l:A".into(), "x".into()], Currency::USD, Timestamp::default()).is_err());
    }
}
