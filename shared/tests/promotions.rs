//! The discount engine: each action against hand-computed amounts, the not-applied reasons,
//! stacking, the bugs peers shipped, and the contract's invariants on random carts and
//! promotion sets.

use proptest::prelude::*;
use shared::promo::{Action, Context, Evaluation, LineInput, NotApplied, PromoCode, Promotion, PromotionId, Usage, evaluate};
use shared::{Currency, Money, Sku, Timestamp};

fn usd(a: i64) -> Money {
    Money::new(a, Currency::USD).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn line(s: &str, quantity: u32, price: i64) -> LineInput {
    LineInput { sku: sku(s), quantity, unit_price: Some(usd(price)) }
}

fn promo(id: &str, action: Action) -> Promotion {
    Promotion {
        id: PromotionId::parse(id).unwrap(),
        code: None,
        description: format!("promotion {id}"),
        active: true,
        starts_at: None,
        ends_at: None,
        min_subtotal: None,
        action,
        max_discount: None,
        combinable: false,
        usage_limit: None,
        usage_limit_per_customer: None,
    }
}

fn with_code(mut p: Promotion, code: &str) -> Promotion {
    p.code = Some(PromoCode::parse(code).unwrap());
    p
}

fn eval(lines: &[LineInput], promotions: &[Promotion], codes: &[&str]) -> Evaluation {
    eval_as(lines, promotions, codes, true, Timestamp::from_millis(1_800_000_000_000), |_| Usage::default())
}

fn eval_as(
    lines: &[LineInput],
    promotions: &[Promotion],
    codes: &[&str],
    is_user: bool,
    now: Timestamp,
    usage: impl Fn(&PromotionId) -> Usage,
) -> Evaluation {
    let codes: Vec<PromoCode> = codes.iter().map(|c| PromoCode::parse(c).unwrap()).collect();
    evaluate(&Context { currency: Currency::USD, lines, promotions, codes: &codes, now, is_user, usage })
}

fn amounts(v: &[Money]) -> Vec<i64> {
    v.iter().map(Money::amount).collect()
}

#[test]
fn ten_percent_off_25_units_of_399_is_exactly_997_50() {
    let e = eval(&[line("A", 25, 39_900)], &[promo("p", Action::PercentOffOrder { percent: 10 })], &[]);
    assert_eq!((e.subtotal.amount(), e.discount_total.amount(), e.total.amount()), (997_500, 99_750, 897_750));
}

#[test]
fn percentages_round_half_even_on_the_line_not_per_unit() {
    // vendure#3091: 10% of three units of 0.33 is 0.099 → 0.10 on the line, where rounding each
    // unit (0.033 → 0.03) would drift to 0.09.
    let e = eval(&[line("A", 3, 33)], &[promo("p", Action::PercentOffItems { percent: 10, skus: vec![sku("A")] })], &[]);
    assert_eq!(e.discount_total.amount(), 10);
    // 2.5 and 7.5 round to even.
    let e = eval(&[line("A", 1, 25)], &[promo("p", Action::PercentOffItems { percent: 10, skus: vec![sku("A")] })], &[]);
    assert_eq!(e.discount_total.amount(), 2);
    let e = eval(&[line("A", 1, 75)], &[promo("p", Action::PercentOffItems { percent: 10, skus: vec![sku("A")] })], &[]);
    assert_eq!(e.discount_total.amount(), 8);
}

#[test]
fn a_hundred_percent_off_leaves_exactly_zero_never_a_negative_crumb() {
    // medusa#12226: a float total of -1.6e-14.
    let lines = [line("A", 3, 1_999), line("B", 7, 333), line("C", 1, 1)];
    let e = eval(&lines, &[promo("p", Action::PercentOffOrder { percent: 100 })], &[]);
    assert_eq!((e.total.amount(), e.discount_total.amount()), (0, e.subtotal.amount()));
    assert!(e.line_totals.iter().all(|t| t.amount() == 0));
}

#[test]
fn amount_off_items_is_per_unit_and_at_most_the_line() {
    let p = promo("p", Action::AmountOffItems { amount: usd(500), skus: vec![sku("A"), sku("B")] });
    let e = eval(&[line("A", 3, 400), line("B", 2, 1_000), line("C", 1, 100)], &[p], &[]);
    assert_eq!(amounts(&e.line_discounts), vec![1_200, 1_000, 0]);
    assert_eq!(e.total.amount(), 100 + 1_000);
}

#[test]
fn buy_two_get_one_frees_the_cheapest_of_each_complete_group() {
    let p = promo("p", Action::BuyXGetY { skus: vec![sku("A"), sku("B"), sku("C")], buy: 2, get: 1, percent: 100 });
    // Units dearest first: 1000 1000 500 | 300 300 300 | 300 (incomplete).
    let e = eval(&[line("C", 4, 300), line("A", 2, 1_000), line("B", 1, 500), line("D", 5, 50)], std::slice::from_ref(&p), &[]);
    assert_eq!(amounts(&e.line_discounts), vec![300, 0, 500, 0]);
    // Half off the free units.
    let mut half = p;
    half.action = Action::BuyXGetY { skus: vec![sku("A")], buy: 1, get: 1, percent: 50 };
    let e = eval(&[line("A", 5, 999)], &[half], &[]);
    assert_eq!(e.discount_total.amount(), 999, "two free units of 999 at 50%: 999");
}

#[test]
fn a_bundle_prices_each_complete_set_and_spreads_the_saving_by_worth() {
    let p = promo("p", Action::Bundle { items: vec![(sku("A"), 1), (sku("B"), 2)], price: usd(2_000) });
    // Two complete bundles (A: 3, B: 5 → min(3, 2)); each is worth 1000 + 2 × 600 = 2200.
    let e = eval(&[line("A", 3, 1_000), line("B", 5, 600)], std::slice::from_ref(&p), &[]);
    assert_eq!(e.discount_total.amount(), 400);
    assert_eq!(
        amounts(&e.line_discounts),
        vec![182, 218],
        "400 × 1000/2200 = 181.8, 400 × 1200/2200 = 218.2: the larger remainder gets the cent"
    );
    let e = eval(&[line("A", 3, 1_000)], std::slice::from_ref(&p), &[]);
    assert_eq!(e.discount_total.amount(), 0, "no B, no bundle");
    let mut dear = p;
    dear.action = Action::Bundle { items: vec![(sku("A"), 1)], price: usd(5_000) };
    assert_eq!(eval(&[line("A", 3, 1_000)], &[dear], &[]).discount_total.amount(), 0, "a bundle dearer than its parts saves nothing");
}

#[test]
fn an_order_discount_is_allocated_over_lines_by_largest_remainder() {
    let e = eval(&[line("A", 1, 1), line("B", 1, 1), line("C", 1, 1)], &[promo("p", Action::AmountOffOrder { amount: usd(2) })], &[]);
    assert_eq!(amounts(&e.line_discounts), vec![1, 1, 0], "ties go to the earlier line");
    let e = eval(&[line("A", 1, 500)], &[promo("p", Action::AmountOffOrder { amount: usd(2_000) })], &[]);
    assert_eq!(e.total.amount(), 0, "at most the subtotal");
}

#[test]
fn max_discount_caps_each_promotion() {
    let mut p = promo("p", Action::PercentOffOrder { percent: 50 });
    p.max_discount = Some(usd(1_000));
    let e = eval(&[line("A", 10, 1_000)], std::slice::from_ref(&p), &[]);
    assert_eq!(e.discount_total.amount(), 1_000);
    p.action = Action::PercentOffItems { percent: 50, skus: vec![sku("A"), sku("B")] };
    let e = eval(&[line("A", 10, 1_000), line("B", 1, 3_000)], &[p], &[]);
    assert_eq!(amounts(&e.line_discounts), vec![769, 231], "the cap is spread over the lines in proportion");
}

#[test]
fn combinable_promotions_stack_items_first_then_the_order_and_the_best_candidate_wins() {
    let mut items = promo("a-items", Action::PercentOffItems { percent: 50, skus: vec![sku("A")] });
    items.combinable = true;
    let mut order = promo("b-order", Action::PercentOffOrder { percent: 10 });
    order.combinable = true;
    let lines = [line("A", 1, 1_000), line("B", 1, 1_000)];
    // 50% of A = 500, then 10% of what is left (500 + 1000) = 150.
    let e = eval(&lines, &[order.clone(), items.clone()], &[]);
    assert_eq!(e.discount_total.amount(), 650);
    assert_eq!(e.discounts.iter().map(|d| d.promotion.as_str()).collect::<Vec<_>>(), ["a-items", "b-order"]);
    // An exclusive 40% off the order (800) beats the stack (650).
    let exclusive = promo("c-excl", Action::PercentOffOrder { percent: 40 });
    let e = eval(&lines, &[order, items, exclusive.clone()], &[]);
    assert_eq!((e.discount_total.amount(), e.discounts.len()), (800, 1));
    // A tie goes to fewer promotions, then to the smaller id.
    let twin = promo("a-twin", Action::PercentOffOrder { percent: 40 });
    let e = eval(&lines, &[exclusive, twin], &[]);
    assert_eq!(e.discounts[0].promotion.as_str(), "a-twin");
}

#[test]
fn a_code_not_kept_says_why() {
    let now = Timestamp::from_millis(1_800_000_000_000);
    let lines = [line("A", 2, 1_000)];
    let mut min = with_code(promo("min", Action::PercentOffOrder { percent: 10 }), "BIGSPEND");
    min.min_subtotal = Some(usd(3_200));
    let mut later = with_code(promo("later", Action::PercentOffOrder { percent: 10 }), "SOON");
    later.starts_at = Some(Timestamp::from_millis(now.millis() + 1));
    let mut gone = with_code(promo("gone", Action::PercentOffOrder { percent: 10 }), "GONE");
    gone.ends_at = Some(Timestamp::from_millis(now.millis() - 1));
    let mut off = with_code(promo("off", Action::PercentOffOrder { percent: 10 }), "OFF");
    off.active = false;
    let mut used = with_code(promo("used", Action::PercentOffOrder { percent: 10 }), "USED");
    used.usage_limit = Some(3);
    let mut once = with_code(promo("once", Action::PercentOffOrder { percent: 10 }), "ONCE");
    once.usage_limit_per_customer = Some(1);
    let small = with_code(promo("small", Action::PercentOffOrder { percent: 5 }), "SMALL");
    let big = with_code(promo("big", Action::PercentOffOrder { percent: 20 }), "BIG");
    let all = [min, later, gone, off, used, once, small, big];
    let codes = ["bigspend", "SOON", "gone", "OFF", "USED", "ONCE", "SMALL", "BIG", "NOSUCH"];
    let usage = |id: &PromotionId| Usage { total: if id.as_str() == "used" { 3 } else { 0 }, by_customer: 0 };
    let e = eval_as(&lines, &all, &codes, false, now, usage);
    let states: Vec<(&str, bool, Option<&str>)> =
        e.codes.iter().map(|c| (c.code.as_str(), c.applied, c.reason.map(NotApplied::as_str))).collect();
    assert_eq!(
        states,
        [
            ("BIGSPEND", false, Some("min_subtotal_not_met")),
            ("SOON", false, Some("not_started")),
            ("GONE", false, Some("expired")),
            ("OFF", false, Some("inactive")),
            ("USED", false, Some("usage_limit_reached")),
            ("ONCE", false, Some("login_required")),
            ("SMALL", false, Some("not_best")),
            ("BIG", true, None),
            ("NOSUCH", false, Some("inactive")),
        ]
    );
    assert_eq!(e.codes[0].missing, Some(usd(1_200)), "add $12.00 more");
    assert_eq!(e.discount_total.amount(), 400);
    let e = eval_as(&lines, &all, &["ONCE"], true, now, |_| Usage { total: 0, by_customer: 1 });
    assert_eq!(e.codes[0].reason, Some(NotApplied::UsageLimitReached), "once per customer, used once");
}

#[test]
fn automatic_promotions_need_no_code_and_code_promotions_need_theirs() {
    let lines = [line("A", 1, 1_000)];
    let auto = promo("auto", Action::AmountOffOrder { amount: usd(100) });
    let coded = with_code(promo("coded", Action::AmountOffOrder { amount: usd(300) }), "SAVE3");
    assert_eq!(eval(&lines, &[auto.clone(), coded.clone()], &[]).discount_total.amount(), 100);
    assert_eq!(eval(&lines, &[auto, coded], &["save3"]).discount_total.amount(), 300);
}

fn action() -> impl Strategy<Value = Action> {
    let skus = prop::collection::vec(prop::sample::select(&["A", "B", "C", "D", "E"][..]).prop_map(sku), 1..4);
    let percent = 1u32..=100;
    let amount = (0i64..5_000).prop_map(usd);
    prop_oneof![
        percent.clone().prop_map(|percent| Action::PercentOffOrder { percent }),
        amount.clone().prop_map(|amount| Action::AmountOffOrder { amount }),
        (percent.clone(), skus.clone()).prop_map(|(percent, skus)| Action::PercentOffItems { percent, skus }),
        (amount.clone(), skus.clone()).prop_map(|(amount, skus)| Action::AmountOffItems { amount, skus }),
        (skus.clone(), 1u32..4, 1u32..3, percent).prop_map(|(skus, buy, get, percent)| Action::BuyXGetY { skus, buy, get, percent }),
        (prop::collection::vec((prop::sample::select(&["A", "B", "C"][..]).prop_map(sku), 1u32..3), 1..3), amount)
            .prop_map(|(items, price)| Action::Bundle { items, price }),
    ]
}

fn promotion() -> impl Strategy<Value = Promotion> {
    (
        "[a-z]{1,6}",
        prop::option::of("[A-Z]{1,4}"),
        action(),
        any::<bool>(),
        prop::option::of(0i64..20_000),
        prop::option::of(0i64..3_000),
        prop::option::of(0u64..3),
    )
        .prop_map(|(id, code, action, combinable, min, max, limit)| {
            let mut p = promo(&id, action);
            p.code = code.map(|c| PromoCode::parse(&c).unwrap());
            p.combinable = combinable;
            p.min_subtotal = min.map(usd);
            p.max_discount = max.map(usd);
            p.usage_limit = limit;
            p
        })
}

fn lines() -> impl Strategy<Value = Vec<LineInput>> {
    prop::collection::vec((prop::sample::select(&["A", "B", "C", "D", "E", "F"][..]), 1u32..20, prop::option::of(0i64..10_000)), 0..6)
        .prop_map(|ls| {
            let mut seen = Vec::new();
            ls.into_iter()
                .filter(|(s, _, _)| {
                    let fresh = !seen.contains(s);
                    seen.push(*s);
                    fresh
                })
                .map(|(s, q, p)| LineInput { sku: sku(s), quantity: q, unit_price: p.map(usd) })
                .collect()
        })
}

proptest! {
    /// The invariants of the cart resource: total = subtotal − discount_total; discount_total =
    /// Σ discounts = Σ line discounts; Σ line totals = total; nothing below zero; each
    /// promotion within its cap; and none of it depends on the order the promotions come in.
    #[test]
    fn the_engine_keeps_the_contracts_invariants(
        lines in lines(),
        promotions in prop::collection::vec(promotion(), 0..8),
        codes in prop::collection::vec("[A-Z]{1,4}", 0..4),
        used in 0u64..3,
        user in any::<bool>(),
    ) {
        // Promotion ids are unique (the id is the key an admin puts it under): keep the first of
        // each id the generator repeated, or "the order they come in" would mean "which one".
        let mut promotions = promotions;
        let mut ids = std::collections::HashSet::new();
        promotions.retain(|p| ids.insert(p.id.clone()));
        let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
        let now = Timestamp::from_millis(1_800_000_000_000);
        let e = eval_as(&lines, &promotions, &codes, user, now, |_| Usage { total: used, by_customer: 0 });
        prop_assert_eq!(e.total.amount(), e.subtotal.amount() - e.discount_total.amount());
        prop_assert_eq!(e.discount_total.amount(), e.discounts.iter().map(|d| d.amount.amount()).sum::<i64>());
        prop_assert_eq!(e.discount_total.amount(), e.line_discounts.iter().map(Money::amount).sum::<i64>());
        prop_assert_eq!(e.total.amount(), e.line_totals.iter().map(Money::amount).sum::<i64>());
        prop_assert!(e.total.amount() >= 0);
        prop_assert!(e.line_totals.iter().all(|t| t.amount() >= 0) && e.line_discounts.iter().all(|d| d.amount() >= 0));
        for d in &e.discounts {
            let p = promotions.iter().find(|p| p.id == d.promotion).unwrap();
            prop_assert!(p.max_discount.is_none_or(|m| d.amount.amount() <= m.amount()), "{} over its cap", p.id);
            prop_assert!(p.usage_limit.is_none_or(|l| used < l), "{} over its usage limit", p.id);
        }
        prop_assert_eq!(e.codes.len(), codes.len());
        let mut reversed = promotions.clone();
        reversed.reverse();
        let again = eval_as(&lines, &reversed, &codes, user, now, |_| Usage { total: used, by_customer: 0 });
        prop_assert_eq!(again, e);
    }
}
