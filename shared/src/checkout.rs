//! Checkout decisions: pure arithmetic and rules over the live catalog. The server gathers the
//! facts (inside its stock transaction) and acts on the decision; nothing here knows SQL or HTTP.

use crate::cart::Cart;
use crate::error::{CartError, ErrorCode};
use crate::promo::{CodeState, Context, Discount, LineInput, NotApplied, PromoCode, evaluate};
use crate::types::{Money, Sku};
use crate::wire::Promos;
use serde::Serialize;

/// One line of an order: the live unit price is charged; the price at add is what the shopper
/// saw. `line_total` is `quantity × unit_price − discount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Money,
    pub price_at_add: Option<Money>,
    pub discount: Money,
    pub line_total: Money,
}

impl PricedLine {
    pub fn price_changed(&self) -> bool {
        self.price_at_add.is_some_and(|p| p != self.unit_price)
    }
}

/// A cart priced for an order: live prices, with the promotions the engine keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedCart {
    pub lines: Vec<PricedLine>,
    /// Before discounts.
    pub subtotal: Money,
    pub discounts: Vec<Discount>,
    pub discount_total: Money,
    /// `subtotal − discount_total`: what the order costs before gift cards.
    pub total: Money,
    /// The codes on the cart, and what became of each.
    pub codes: Vec<CodeState>,
}

/// Prices every cart line (not the saved list) at `live(sku)` and runs the discount engine on
/// those prices, exactly as the cart view does. SKUs the catalog does not sell (`None`) are
/// returned as the error's list, with nothing priced.
pub fn price_cart(cart: &Cart, live: impl Fn(&Sku) -> Option<Money>, promos: &Promos<'_>, is_user: bool) -> Result<PricedCart, Vec<Sku>> {
    let mut missing = Vec::new();
    let mut inputs = Vec::with_capacity(cart.lines.len());
    for l in &cart.lines {
        match live(&l.sku).filter(|p| p.currency() == cart.currency) {
            None => missing.push(l.sku.clone()),
            Some(unit) => inputs.push(LineInput { sku: l.sku.clone(), quantity: l.quantity, unit_price: Some(unit) }),
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let e = evaluate(&Context {
        currency: cart.currency,
        lines: &inputs,
        promotions: promos.promotions,
        codes: &cart.promo_codes,
        now: promos.now,
        is_user,
        usage: promos.usage,
    });
    let lines = cart
        .lines
        .iter()
        .zip(&inputs)
        .zip(e.line_discounts.iter().zip(&e.line_totals))
        .map(|((l, i), (discount, line_total))| PricedLine {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price: i.unit_price.unwrap_or(Money::zero(cart.currency)),
            price_at_add: l.price_at_add,
            discount: *discount,
            line_total: *line_total,
        })
        .collect();
    Ok(PricedCart { lines, subtotal: e.subtotal, discounts: e.discounts, discount_total: e.discount_total, total: e.total, codes: e.codes })
}

/// A code on the cart whose promotion cannot be had (the `promotions` of
/// `409 promotion_unavailable`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnavailableCode {
    pub code: PromoCode,
    pub reason: &'static str,
}

/// What the catalog offers of one SKU at checkout: its live price while it is on sale, and the
/// units free to reserve (after the shopper's own earlier hold was given back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    pub price: Option<Money>,
    pub available: i64,
}

/// A line that cannot be had in the quantity asked (the `items` of `409 out_of_stock`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shortage {
    pub sku: Sku,
    pub requested: u32,
    pub available: i64,
}

/// A line whose live price is not the one the shopper saw (the `changes` of `409 price_changed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceChange {
    pub sku: Sku,
    pub price_at_add: Money,
    pub current_price: Money,
}

/// What a checkout must do with a cart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckoutDecision {
    /// Reserve every line at these prices.
    Reserve(PricedCart),
    /// The shopper expected another total: nothing is reserved.
    PriceChanged { changes: Vec<PriceChange>, total: Money },
    /// A code on the cart names a promotion that cannot be had (inactive, not started, expired,
    /// used up): the shopper must take it off; nothing is reserved.
    PromotionUnavailable(Vec<UnavailableCode>),
    /// Some lines cannot be had (a SKU not on sale has none): nothing is reserved.
    OutOfStock(Vec<Shortage>),
    /// A line total or the order's subtotal passes [`Money::MAX_AMOUNT`]: an order that could not
    /// be stored or read back as money, so none is made.
    TotalTooLarge { subtotal: Money },
}

/// Decides a checkout of `cart` against the catalog's `offer` of each SKU (`None`: the catalog
/// does not know it) and the promotions in force. In order: a SKU not on sale makes the cart
/// unbuyable; then a code whose promotion cannot be had; then an `expected` total other than the
/// live, discounted one is a price change; then any line short of stock. An empty cart is the
/// caller's to refuse before it asks.
pub fn decide_checkout(
    cart: &Cart,
    offer: impl Fn(&Sku) -> Option<Offer>,
    expected: Option<Money>,
    promos: &Promos<'_>,
    is_user: bool,
) -> CheckoutDecision {
    let shortages = |not_sold: &[Sku]| -> Vec<Shortage> {
        cart.lines
            .iter()
            .filter_map(|l| {
                let available = if not_sold.contains(&l.sku) { 0 } else { offer(&l.sku).map_or(0, |o| o.available.max(0)) };
                (available < i64::from(l.quantity)).then(|| Shortage { sku: l.sku.clone(), requested: l.quantity, available })
            })
            .collect()
    };
    let priced = match price_cart(cart, |sku| offer(sku).and_then(|o| o.price), promos, is_user) {
        Ok(p) => p,
        Err(not_sold) => return CheckoutDecision::OutOfStock(shortages(&not_sold)),
    };
    if priced.subtotal.amount() > Money::MAX_AMOUNT || priced.lines.iter().any(|l| l.line_total.amount() > Money::MAX_AMOUNT) {
        return CheckoutDecision::TotalTooLarge { subtotal: priced.subtotal };
    }
    let unavailable: Vec<UnavailableCode> = priced
        .codes
        .iter()
        .filter_map(|c| {
            c.reason.filter(|r| r.blocks_checkout()).map(|r: NotApplied| UnavailableCode { code: c.code.clone(), reason: r.as_str() })
        })
        .collect();
    if !unavailable.is_empty() {
        return CheckoutDecision::PromotionUnavailable(unavailable);
    }
    if let Some(expected) = expected
        && expected != priced.total
    {
        let changes = priced
            .lines
            .iter()
            .filter_map(|l| {
                let seen = l.price_at_add.filter(|p| *p != l.unit_price)?;
                Some(PriceChange { sku: l.sku.clone(), price_at_add: seen, current_price: l.unit_price })
            })
            .collect();
        return CheckoutDecision::PriceChanged { changes, total: priced.total };
    }
    let short = shortages(&[]);
    if short.is_empty() { CheckoutDecision::Reserve(priced) } else { CheckoutDecision::OutOfStock(short) }
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
    use crate::wire::Promos;
    use crate::{Currency, Limits, OpKind, Quantity, Timestamp};

    fn usd(a: i64) -> Money {
        Money::new(a, Currency::USD).unwrap()
    }

    fn cart(lines: &[(&str, i64, Option<Money>)]) -> Cart {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        for (s, q, p) in lines {
            c.apply(
                &OpKind::Add { sku: Sku::parse(s).unwrap(), quantity: Quantity::new(*q, &l).unwrap(), price_at_add: *p },
                &l,
                Timestamp::default(),
            )
            .unwrap();
        }
        c
    }

    #[test]
    fn prices_at_live_prices_and_names_what_is_not_sold() {
        let c = cart(&[("A", 2, Some(usd(1000))), ("B", 1, None)]);
        let priced = price_cart(&c, |s| Some(usd(if s.as_str() == "A" { 1200 } else { 50 })), &Promos::none(), false).unwrap();
        assert_eq!(priced.total, usd(2450));
        assert!(priced.lines[0].price_changed());
        assert!(!priced.lines[1].price_changed());
        let missing = price_cart(&c, |s| (s.as_str() == "A").then(|| usd(1)), &Promos::none(), false).unwrap_err();
        assert_eq!(missing, vec![Sku::parse("B").unwrap()]);
    }

    #[test]
    fn a_sku_not_on_sale_comes_first_then_the_price_then_the_stock() {
        let c = cart(&[("A", 2, Some(usd(100))), ("B", 3, None)]);
        let sku = |s: &str| Sku::parse(s).unwrap();
        let none = Promos::none();
        let decide = |offer: &dyn Fn(&Sku) -> Option<Offer>, expected| decide_checkout(&c, offer, expected, &none, false);
        let not_sold = decide(&|s| (s.as_str() == "A").then_some(Offer { price: Some(usd(120)), available: 1 }), None);
        assert_eq!(
            not_sold,
            CheckoutDecision::OutOfStock(vec![
                Shortage { sku: sku("A"), requested: 2, available: 1 },
                Shortage { sku: sku("B"), requested: 3, available: 0 },
            ])
        );
        let offer = |available| move |_: &Sku| Some(Offer { price: Some(usd(120)), available });
        assert_eq!(
            decide(&offer(1), Some(usd(200 + 300))),
            CheckoutDecision::PriceChanged {
                changes: vec![PriceChange { sku: sku("A"), price_at_add: usd(100), current_price: usd(120) }],
                total: usd(600),
            },
            "a wrong expected total is reported before stock"
        );
        assert!(matches!(decide(&offer(1), Some(usd(600))), CheckoutDecision::OutOfStock(s) if s.len() == 2));
        let CheckoutDecision::Reserve(priced) = decide(&offer(3), None) else { panic!("enough stock") };
        assert_eq!(priced.total, usd(600));
        let inactive = decide(&|_| Some(Offer { price: None, available: 9 }), None);
        assert!(matches!(inactive, CheckoutDecision::OutOfStock(s) if s.iter().all(|x| x.available == 0)));
    }

    #[test]
    fn promotions_price_the_order_and_a_used_up_code_refuses_it() {
        use crate::promo::{PromoCode, PromotionId, Usage};
        let mut c = cart(&[("A", 2, Some(usd(1000))), ("B", 1, Some(usd(500)))]);
        let code = PromoCode::parse("ten").unwrap();
        c.apply(&OpKind::ApplyPromoCode { code: code.clone() }, &Limits::default(), Timestamp::default()).unwrap();
        let def = serde_json::json!({"code": "TEN", "action": {"type": "percent_off_order", "percent": 10}, "usage_limit": 1});
        let promotions = [crate::promo_json::parse_promotion(PromotionId::parse("ten").unwrap(), &def, Currency::USD).unwrap()];
        let offer = |_: &Sku| Some(Offer { price: Some(usd(1000)), available: 9 });
        let unused = |_: &PromotionId| Usage::default();
        let promos = Promos { promotions: &promotions, usage: &unused, now: Timestamp::default() };
        let CheckoutDecision::Reserve(priced) = decide_checkout(&c, offer, Some(usd(2700)), &promos, false) else {
            panic!("3 × 10.00 less 10% is the expected 27.00")
        };
        assert_eq!((priced.subtotal, priced.discount_total, priced.total), (usd(3000), usd(300), usd(2700)));
        assert_eq!(priced.lines.iter().map(|l| l.discount.amount()).sum::<i64>(), 300);
        assert_eq!(priced.lines.iter().map(|l| l.line_total.amount()).sum::<i64>(), 2700);
        assert!(
            matches!(decide_checkout(&c, offer, Some(usd(3000)), &promos, false), CheckoutDecision::PriceChanged { total, .. } if total == usd(2700))
        );
        let used = |_: &PromotionId| Usage { total: 1, by_customer: 0 };
        let promos = Promos { promotions: &promotions, usage: &used, now: Timestamp::default() };
        assert_eq!(
            decide_checkout(&c, offer, Some(usd(2700)), &promos, false),
            CheckoutDecision::PromotionUnavailable(vec![UnavailableCode { code, reason: "usage_limit_reached" }])
        );
    }
}
