//! The Redis hash layout of a cart (documented in `lua/common.lua`), to and from `shared::Cart`.

use super::StoreError;
use shared::{Cart, CartLine, Currency, Money, Sku, Timestamp, UserId};

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn decode_line(sku: &str, value: &str) -> Result<CartLine, StoreError> {
    let bad = || corrupt(format!("line {sku:?} = {value:?}"));
    let mut parts = value.split('|');
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
    Ok(CartLine { sku: Sku::parse(sku).map_err(|_| bad())?, quantity, price_at_add, added_at: Timestamp::from_millis(added), seq })
}

fn encode_line(l: &CartLine) -> String {
    match l.price_at_add {
        Some(p) => format!("{}|{}|{}|{}|{}", l.quantity, l.seq, l.added_at.millis(), p.amount(), p.currency()),
        None => format!("{}|{}|{}||", l.quantity, l.seq, l.added_at.millis()),
    }
}

/// Reads a flat field/value list. Unknown fields are ignored.
pub fn cart_from_fields(items: &[String], default_currency: Currency) -> Result<Cart, StoreError> {
    let mut cart = Cart::new(default_currency);
    let num = |f: &str, v: &str| v.parse::<i64>().map_err(|_| corrupt(format!("field {f} = {v:?}")));
    for pair in items.chunks_exact(2) {
        let (f, v) = (pair[0].as_str(), pair[1].as_str());
        if let Some(sku) = f.strip_prefix("l:") {
            cart.lines.push(decode_line(sku, v)?);
        } else if let Some(sku) = f.strip_prefix("s:") {
            cart.saved.push(decode_line(sku, v)?);
        } else {
            match f {
                "v" => cart.version = num(f, v)? as u64,
                "n" => cart.next_seq = num(f, v)? as u64,
                "u" => cart.updated_at = Timestamp::from_millis(num(f, v)?),
                "a" => cart.accessed_at = Timestamp::from_millis(num(f, v)?),
                "c" => cart.currency = Currency::parse(v).map_err(|_| corrupt(format!("currency {v:?}")))?,
                "z" => cart.merged_into = Some(UserId::parse(v).map_err(|_| corrupt("the merged-into user"))?),
                _ => {}
            }
        }
    }
    cart.lines.sort_by_key(|l| l.seq);
    cart.saved.sort_by_key(|l| l.seq);
    Ok(cart)
}

pub fn cart_to_fields(cart: &Cart) -> Vec<String> {
    let mut out = vec![
        "v".into(),
        cart.version.to_string(),
        "n".into(),
        cart.next_seq.to_string(),
        "c".into(),
        cart.currency.to_string(),
        "u".into(),
        cart.updated_at.millis().to_string(),
        "a".into(),
        cart.accessed_at.millis().to_string(),
    ];
    if let Some(user) = &cart.merged_into {
        out.push("z".into());
        out.push(user.as_str().to_owned());
    }
    for (prefix, list) in [("l:", &cart.lines), ("s:", &cart.saved)] {
        for l in list {
            out.push(format!("{prefix}{}", l.sku));
            out.push(encode_line(l));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Limits, OpKind, Quantity};

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
        assert_eq!(cart_from_fields(&cart_to_fields(&c), Currency::USD).unwrap(), c);
        assert!(cart_from_fields(&["l:A".into(), "x".into()], Currency::USD).is_err());
    }
}
