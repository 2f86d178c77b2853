//! Pricing a cart for checkout: pure arithmetic over live catalog prices.

use crate::cart::Cart;
use crate::error::{CartError, ErrorCode};
use crate::types::{Money, Sku};

/// One line of an order: the live unit price is charged; the price at add is what the shopper saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Money,
    pub price_at_add: Option<Money>,
    pub line_total: Money,
}

impl PricedLine {
    pub fn price_changed(&self) -> bool {
        self.price_at_add.is_some_and(|p| p != self.unit_price)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedCart {
    pub lines: Vec<PricedLine>,
    pub total: Money,
}

/// Prices every cart line (not the saved list) at `live(sku)`. SKUs the catalog does not sell
/// (`None`) are returned as the error's list, with nothing priced.
pub fn price_cart(cart: &Cart, live: impl Fn(&Sku) -> Option<Money>) -> Result<PricedCart, Vec<Sku>> {
    let mut missing = Vec::new();
    let mut lines = Vec::with_capacity(cart.lines.len());
    let mut total = Money::zero(cart.currency);
    for l in &cart.lines {
        match live(&l.sku).filter(|p| p.currency() == cart.currency) {
            None => missing.push(l.sku.clone()),
            Some(unit) => {
                let line_total = unit.times(l.quantity);
                total = total.checked_add(&line_total).unwrap_or(total);
                lines.push(PricedLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: unit,
                    price_at_add: l.price_at_add,
                    line_total,
                });
            }
        }
    }
    if missing.is_empty() { Ok(PricedCart { lines, total }) } else { Err(missing) }
}

/// An idempotency key: 1 to 255 visible ASCII characters.
pub fn parse_idempotency_key(s: &str) -> Result<&str, CartError> {
    if !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
        Ok(s)
    } else {
        Err(CartError::new(ErrorCode::InvalidIdempotencyKey, "Idempotency-Key is required: 1 to 255 visible ASCII characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Currency, Limits, OpKind, Quantity, Timestamp};

    #[test]
    fn prices_at_live_prices_and_names_what_is_not_sold() {
        let l = Limits::default();
        let usd = |a| Money::new(a, Currency::USD).unwrap();
        let mut c = Cart::new(Currency::USD);
        let add = |c: &mut Cart, s: &str, q, p: Option<Money>| {
            c.apply(
                &OpKind::Add { sku: Sku::parse(s).unwrap(), quantity: Quantity::new(q, &l).unwrap(), price_at_add: p },
                &l,
                Timestamp::default(),
            )
            .unwrap();
        };
        add(&mut c, "A", 2, Some(usd(1000)));
        add(&mut c, "B", 1, None);
        let priced = price_cart(&c, |s| Some(usd(if s.as_str() == "A" { 1200 } else { 50 }))).unwrap();
        assert_eq!(priced.total, usd(2450));
        assert!(priced.lines[0].price_changed());
        assert!(!priced.lines[1].price_changed());
        let missing = price_cart(&c, |s| (s.as_str() == "A").then(|| usd(1))).unwrap_err();
        assert_eq!(missing, vec![Sku::parse("B").unwrap()]);
    }
}
