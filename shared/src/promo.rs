//! The discount engine: promotions, their eligibility, and what they take off a cart, to the
//! minor unit. Pure and deterministic: the server runs it at every cart read and at checkout, the
//! browser cart for its optimistic state, so both show the same total (see
//! `../shared/design/promotions.md`).
//!
//! Arithmetic is in integer minor units. Percentages round half to even on the amount they apply
//! to. A discount spread over lines is allocated by largest remainder (ties to the earlier line),
//! so the lines' discounts always add up to it exactly. Evaluation does not depend on the order
//! promotions are given in: they are taken in order of id.

use crate::error::{CartError, ErrorCode};
use crate::time::Timestamp;
use crate::types::{Currency, Money, Sku};
use std::cmp::Reverse;
use std::fmt;

/// A promotion's id: 1 to 64 characters of `[A-Za-z0-9._:-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromotionId(String);

impl PromotionId {
    pub fn parse(s: &str) -> Result<PromotionId, CartError> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(PromotionId(s.to_owned()))
        } else {
            Err(CartError::new(ErrorCode::InvalidRequest, "a promotion id is 1 to 64 characters of letters, digits, '.', '_', ':' and '-'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromotionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A promo code: 1 to 32 characters of `[A-Za-z0-9_-]`, case-insensitive, kept upper-case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromoCode(String);

impl PromoCode {
    pub fn parse(s: &str) -> Result<PromoCode, CartError> {
        let s = s.trim();
        let ok = !s.is_empty() && s.len() <= 32 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
        if ok {
            Ok(PromoCode(s.to_ascii_uppercase()))
        } else {
            Err(CartError::new(ErrorCode::InvalidPromoCode, "a promo code is 1 to 32 letters, digits, '_' or '-'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for PromoCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PromoCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PromoCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Most codes one cart may carry.
pub const MAX_PROMO_CODES: usize = 5;

/// What a promotion takes off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `percent`% of the cart's subtotal (what earlier promotions left of it).
    PercentOffOrder { percent: u32 },
    /// `amount`, at most the subtotal.
    AmountOffOrder { amount: Money },
    /// `percent`% of each listed SKU's line amount.
    PercentOffItems { percent: u32, skus: Vec<Sku> },
    /// `amount` per unit of each listed SKU, at most the line amount.
    AmountOffItems { amount: Money, skus: Vec<Sku> },
    /// Units of the listed SKUs, dearest first, in groups of `buy + get`: in each complete group
    /// the last `get` units get `percent`% of their unit price off.
    BuyXGetY { skus: Vec<Sku>, buy: u32, get: u32, percent: u32 },
    /// Each complete bundle of `items` costs `price` instead of the sum of its units' prices.
    Bundle { items: Vec<(Sku, u32)>, price: Money },
}

impl Action {
    /// Item-level actions apply before order-level ones.
    pub fn is_item_level(&self) -> bool {
        !matches!(self, Action::PercentOffOrder { .. } | Action::AmountOffOrder { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub id: PromotionId,
    /// Absent: automatic, for every cart that meets the conditions.
    pub code: Option<PromoCode>,
    pub description: String,
    pub active: bool,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub min_subtotal: Option<Money>,
    pub action: Action,
    pub max_discount: Option<Money>,
    /// May be used together with other combinable promotions; else only alone.
    pub combinable: bool,
    pub usage_limit: Option<u64>,
    pub usage_limit_per_customer: Option<u64>,
}

impl Promotion {
    /// Why the promotion cannot be had at all at `now` (inactive, not started, expired), if so:
    /// the reasons a code is refused when put on a cart.
    pub fn unavailable_at(&self, now: Timestamp) -> Option<NotApplied> {
        if !self.active {
            Some(NotApplied::Inactive)
        } else if self.starts_at.is_some_and(|s| now < s) {
            Some(NotApplied::NotStarted)
        } else if self.ends_at.is_some_and(|e| now > e) {
            Some(NotApplied::Expired)
        } else {
            None
        }
    }
}

/// Why a promotion (or a code on the cart) took nothing off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotApplied {
    Inactive,
    NotStarted,
    Expired,
    UsageLimitReached,
    LoginRequired,
    MinSubtotalNotMet,
    /// Eligible, but another candidate took more off.
    NotBest,
}

impl NotApplied {
    pub const fn as_str(self) -> &'static str {
        match self {
            NotApplied::Inactive => "inactive",
            NotApplied::NotStarted => "not_started",
            NotApplied::Expired => "expired",
            NotApplied::UsageLimitReached => "usage_limit_reached",
            NotApplied::LoginRequired => "login_required",
            NotApplied::MinSubtotalNotMet => "min_subtotal_not_met",
            NotApplied::NotBest => "not_best",
        }
    }

    /// Whether checkout must refuse a cart carrying a code in this state (its shopper must take
    /// it off): the ones that say the promotion cannot be had, not that it does not apply.
    pub const fn blocks_checkout(self) -> bool {
        matches!(self, NotApplied::Inactive | NotApplied::NotStarted | NotApplied::Expired | NotApplied::UsageLimitReached)
    }
}

/// How often a promotion was used, counting pending orders: in all, and by this cart's customer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    pub by_customer: u64,
}

/// One cart line as the engine sees it: `unit_price` is the live price where the catalog knows
/// the SKU, else the price at add; a line with neither takes no part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInput {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Option<Money>,
}

/// The state of one code on the cart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeState {
    pub code: PromoCode,
    pub applied: bool,
    pub reason: Option<NotApplied>,
    /// With `min_subtotal_not_met`: what is still to add.
    pub missing: Option<Money>,
}

/// One promotion the engine kept, with what it took off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discount {
    pub promotion: PromotionId,
    pub code: Option<PromoCode>,
    pub description: String,
    pub amount: Money,
}

/// What the promotions do to a cart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Per input line, in order: its discount and what is left to pay for it.
    pub line_discounts: Vec<Money>,
    pub line_totals: Vec<Money>,
    pub discounts: Vec<Discount>,
    pub subtotal: Money,
    pub discount_total: Money,
    pub total: Money,
    /// The codes on the cart, in the cart's order.
    pub codes: Vec<CodeState>,
}

/// Everything one evaluation depends on.
pub struct Context<'a, U: Fn(&PromotionId) -> Usage> {
    pub currency: Currency,
    pub lines: &'a [LineInput],
    /// The promotions in force that may concern this cart: automatic ones, and those of its codes.
    pub promotions: &'a [Promotion],
    /// The codes on the cart, in the order they were added.
    pub codes: &'a [PromoCode],
    pub now: Timestamp,
    pub is_user: bool,
    pub usage: U,
}

/// `a × percent / 100`, rounded half to even.
pub fn percent_of(a: i64, percent: u32) -> i64 {
    if let Some(n) = a.checked_mul(i64::from(percent)) {
        let (q, r) = (n.div_euclid(100), n.rem_euclid(100));
        return if r > 50 || (r == 50 && q % 2 != 0) { q + 1 } else { q };
    }
    let n = i128::from(a) * i128::from(percent);
    let (q, r) = (n.div_euclid(100), n.rem_euclid(100));
    let q = if r > 50 || (r == 50 && q % 2 != 0) { q + 1 } else { q };
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// Spreads `total` over `weights` in proportion, by largest remainder (ties to the earlier
/// weight). The parts add up to `total` exactly; with `total` at most the sum of the weights, no
/// part exceeds its weight. All zero weights take nothing.
pub fn allocate(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|w| i128::from((*w).max(0))).sum();
    if total <= 0 || sum == 0 {
        return vec![0; weights.len()];
    }
    let t = i128::from(total);
    let mut parts: Vec<i64> = Vec::with_capacity(weights.len());
    let mut rems: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    let small = i64::try_from(sum).ok();
    for (i, w) in weights.iter().enumerate() {
        let w = (*w).max(0);
        // Most carts stay within 64 bits; 128 only where they would not.
        match (total.checked_mul(w), small) {
            (Some(x), Some(s)) => {
                parts.push(x / s);
                rems.push((i128::from(x % s), i));
            }
            _ => {
                let x = t * i128::from(w);
                parts.push(i64::try_from(x / sum).unwrap_or(i64::MAX));
                rems.push((x % sum, i));
            }
        }
    }
    let given: i128 = parts.iter().map(|p| i128::from(*p)).sum();
    let left = usize::try_from(t - given).unwrap_or(0).min(rems.len());
    if left > 0 {
        // The `left` largest remainders, ties to the earlier line.
        crate::sort::sort_by_key(&mut rems, |(r, i)| (Reverse(*r), *i));
        for (_, i) in &rems[..left] {
            parts[*i] += 1;
        }
    }
    parts
}

/// Why `p` cannot be used on this cart, if it cannot.
fn ineligible(p: &Promotion, subtotal: i64, now: Timestamp, is_user: bool, usage: Usage) -> Option<NotApplied> {
    if let Some(r) = p.unavailable_at(now) {
        return Some(r);
    }
    if p.usage_limit.is_some_and(|l| usage.total >= l) {
        return Some(NotApplied::UsageLimitReached);
    }
    if let Some(limit) = p.usage_limit_per_customer {
        if !is_user {
            return Some(NotApplied::LoginRequired);
        }
        if usage.by_customer >= limit {
            return Some(NotApplied::UsageLimitReached);
        }
    }
    if p.min_subtotal.is_some_and(|m| subtotal < m.amount()) {
        return Some(NotApplied::MinSubtotalNotMet);
    }
    None
}

/// The cart as every candidate sees it: each line's unit price and amount (0 without a price),
/// and where each priced SKU's line is.
struct Priced<'a> {
    lines: &'a [LineInput],
    unit: Vec<i64>,
    amount: Vec<i64>,
    /// Each priced SKU's line; left empty when no promotion concerns the cart (sorting a long
    /// cart's SKUs is most of what pricing it costs).
    at: crate::sort::SortedMap<&'a Sku, usize>,
}

impl Priced<'_> {
    /// The priced lines of `skus`, each once, in line order.
    fn lines_of(&self, skus: &[Sku]) -> Vec<usize> {
        let mut found: Vec<usize> = skus.iter().filter_map(|s| self.at.get(s).copied()).collect();
        crate::sort::sort(&mut found);
        found.dedup();
        found
    }
}

/// What an item-level promotion takes off each line it touches, given what earlier ones left
/// (`left`): each part at most its line's `left`, the sum at most `max_discount`.
fn item_parts(p: &Promotion, priced: &Priced, left: &[i64]) -> Vec<(usize, i64)> {
    let lines = priced.lines;
    let mut parts: Vec<(usize, i64)> = match &p.action {
        Action::PercentOffItems { percent, skus } => {
            priced.lines_of(skus).into_iter().map(|i| (i, percent_of(left[i], *percent))).collect()
        }
        Action::AmountOffItems { amount, skus } => {
            priced.lines_of(skus).into_iter().map(|i| (i, amount.amount().saturating_mul(i64::from(lines[i].quantity)))).collect()
        }
        Action::BuyXGetY { skus, buy, get, percent } => {
            let group = u64::from(*buy) + u64::from(*get);
            if group == 0 || *get == 0 {
                return Vec::new();
            }
            // Dearest first; ties in line order.
            let mut order = priced.lines_of(skus);
            crate::sort::sort_by_key(&mut order, |i| (Reverse(priced.unit[*i]), *i));
            let units: u64 = order.iter().map(|i| u64::from(lines[*i].quantity)).sum();
            // Walking the units dearest first, the `get` last units of each complete group are
            // free: free units among the first `m` walked.
            let complete = units / group * group;
            let free_before = |m: u64| {
                let m = m.min(complete);
                m / group * u64::from(*get) + (m % group).saturating_sub(u64::from(*buy))
            };
            let mut k = 0u64;
            let mut out = Vec::with_capacity(order.len());
            for i in order {
                let q = u64::from(lines[i].quantity);
                let free = free_before(k + q) - free_before(k);
                k += q;
                if free > 0 {
                    out.push((i, percent_of(priced.unit[i].saturating_mul(i64::try_from(free).unwrap_or(i64::MAX)), *percent)));
                }
            }
            crate::sort::sort(&mut out);
            out
        }
        Action::Bundle { items, price } => {
            // Every item's line, or no bundle (a loop: `collect` into an `Option` brings its
            // adapter into the browser module).
            let mut found: Vec<(usize, u32)> = Vec::with_capacity(items.len());
            for (sku, q) in items.iter().filter(|(_, q)| *q > 0) {
                let Some(i) = priced.at.get(sku) else { return Vec::new() };
                found.push((*i, *q));
            }
            if found.is_empty() {
                return Vec::new();
            }
            let k = found.iter().map(|(i, q)| lines[*i].quantity / q).min().unwrap_or(0);
            let worth: Vec<i64> = found.iter().map(|(i, q)| priced.unit[*i].saturating_mul(i64::from(*q))).collect();
            let sum: i64 = worth.iter().sum();
            let total = (sum - price.amount()).max(0).saturating_mul(i64::from(k));
            let mut out: Vec<(usize, i64)> = found.iter().map(|(i, _)| *i).zip(allocate(total, &worth)).collect();
            crate::sort::sort(&mut out);
            // An item named twice is one line.
            out.dedup_by(|b, a| {
                let same = a.0 == b.0;
                if same {
                    a.1 += b.1;
                }
                same
            });
            out
        }
        Action::PercentOffOrder { .. } | Action::AmountOffOrder { .. } => return Vec::new(),
    };
    for (i, part) in parts.iter_mut() {
        *part = (*part).clamp(0, left[*i].max(0));
    }
    let total: i64 = parts.iter().map(|(_, d)| d).sum();
    if let Some(cap) = p.max_discount.filter(|c| total > c.amount()) {
        let capped = allocate(cap.amount(), &parts.iter().map(|(_, d)| *d).collect::<Vec<_>>());
        for ((_, part), c) in parts.iter_mut().zip(capped) {
            *part = c;
        }
    }
    parts
}

/// What an order-level promotion takes off in all, on what earlier ones left (`base`).
fn order_amount(p: &Promotion, base: i64) -> i64 {
    let amount = match &p.action {
        Action::PercentOffOrder { percent } => percent_of(base, *percent),
        Action::AmountOffOrder { amount } => amount.amount(),
        _ => 0,
    };
    amount.min(p.max_discount.map_or(i64::MAX, |m| m.amount())).clamp(0, base.max(0))
}

/// What one candidate set of promotions (in application order) takes off: in all, per
/// promotion, and, when `per_line`, per line (only the winner needs that: an order-level
/// discount's total does not depend on how it is spread).
fn run(candidate: &[&Promotion], priced: &Priced, per_line: bool) -> (i64, Vec<i64>, Option<Vec<i64>>) {
    let mut left = priced.amount.clone();
    let mut left_sum: i64 = left.iter().sum();
    let mut per_promotion = Vec::with_capacity(candidate.len());
    for p in candidate {
        let taken = if p.action.is_item_level() {
            let parts = item_parts(p, priced, &left);
            for (i, d) in &parts {
                left[*i] -= d;
            }
            parts.iter().map(|(_, d)| d).sum()
        } else {
            let amount = order_amount(p, left_sum);
            if per_line {
                let spread = allocate(amount, &left);
                for (l, d) in left.iter_mut().zip(spread) {
                    *l -= d;
                }
            }
            amount
        };
        left_sum -= taken;
        per_promotion.push(taken);
    }
    let total = per_promotion.iter().sum();
    let line_discounts = per_line.then(|| priced.amount.iter().zip(&left).map(|(a, l)| a - l).collect());
    (total, per_promotion, line_discounts)
}

/// Application order: item-level actions first, then order-level ones, each level by id.
fn application_order(mut ps: Vec<&Promotion>) -> Vec<&Promotion> {
    crate::sort::sort_by(&mut ps, |a, b| (!a.action.is_item_level(), &a.id).cmp(&(!b.action.is_item_level(), &b.id)));
    ps
}

/// Evaluates the promotions on a cart: which are kept, what each line takes off, and the state
/// of each code on the cart.
pub fn evaluate<U: Fn(&PromotionId) -> Usage>(cx: &Context<'_, U>) -> Evaluation {
    let money = |a: i64| Money::unchecked(a, cx.currency);
    let lines = cx.lines;
    let mut priced = {
        let unit: Vec<i64> = lines.iter().map(|l| l.unit_price.filter(|p| p.currency() == cx.currency).map_or(0, |p| p.amount())).collect();
        let amount: Vec<i64> = lines.iter().zip(&unit).map(|(l, u)| u.saturating_mul(i64::from(l.quantity))).collect();
        Priced { lines, unit, amount, at: crate::sort::SortedMap::new() }
    };
    let subtotal: i64 = priced.amount.iter().sum();

    // The promotions that concern this cart, once each, by id: automatic ones and those of its codes.
    // (A sorted list, not a `BTreeMap`: the browser module carries no B-tree code.)
    let mut relevant: Vec<&Promotion> = cx.promotions.iter().filter(|p| p.code.as_ref().is_none_or(|c| cx.codes.contains(c))).collect();
    // Stable, so of two promotions with one id the first stays.
    crate::sort::sort_by(&mut relevant, |a, b| a.id.cmp(&b.id));
    relevant.dedup_by(|b, a| a.id == b.id);
    if !relevant.is_empty() {
        // Walked backwards, so that of two lines of one SKU the first is kept.
        priced.at = (0..lines.len()).rev().filter(|i| priced.amount[*i] > 0).map(|i| (&lines[i].sku, i)).collect();
    }
    let mut reasons: Vec<(&PromotionId, NotApplied)> = Vec::new();
    let mut eligible: Vec<&Promotion> = Vec::new();
    for p in &relevant {
        match ineligible(p, subtotal, cx.now, cx.is_user, (cx.usage)(&p.id)) {
            Some(r) => reasons.push((&p.id, r)),
            None => eligible.push(p),
        }
    }

    // Candidates: each exclusive promotion alone, and all combinable ones together.
    let mut candidates: Vec<Vec<&Promotion>> = eligible.iter().filter(|p| !p.combinable).map(|p| vec![*p]).collect();
    let combinable: Vec<&Promotion> = eligible.iter().filter(|p| p.combinable).copied().collect();
    if !combinable.is_empty() {
        candidates.push(application_order(combinable));
    }
    // The best: the largest total; then fewer promotions; then the smallest id first.
    let mut best: Option<(Vec<&Promotion>, i64)> = None;
    for c in candidates {
        let (total, _, _) = run(&c, &priced, false);
        let better = match &best {
            None => true,
            Some((bc, btotal)) => {
                let smallest = |ps: &[&'_ Promotion]| ps.iter().map(|p| p.id.as_str()).min().unwrap_or("").to_owned();
                (total, Reverse(c.len())) > (*btotal, Reverse(bc.len()))
                    || ((total, c.len()) == (*btotal, bc.len()) && smallest(&c) < smallest(bc))
            }
        };
        if better {
            best = Some((c, total));
        }
    }
    let kept: Vec<&Promotion> = best.filter(|(_, total)| *total > 0).map(|(c, _)| c).unwrap_or_default();
    let (_, per_promotion, line_discounts) = run(&kept, &priced, true);
    let line_discounts = line_discounts.unwrap_or_default();
    let discounts: Vec<Discount> = kept
        .iter()
        .zip(&per_promotion)
        .filter(|(_, amount)| **amount > 0)
        .map(|(p, amount)| Discount {
            promotion: p.id.clone(),
            code: p.code.clone(),
            description: p.description.clone(),
            amount: money(*amount),
        })
        .collect();
    let discount_total: i64 = discounts.iter().map(|d| d.amount.amount()).sum();
    let codes = cx
        .codes
        .iter()
        .map(|code| {
            let p = relevant.iter().find(|p| p.code.as_ref() == Some(code));
            let applied = p.is_some_and(|p| discounts.iter().any(|d| d.promotion == p.id));
            let reason = match p {
                _ if applied => None,
                None => Some(NotApplied::Inactive),
                Some(p) => Some(reasons.iter().find(|(id, _)| **id == p.id).map_or(NotApplied::NotBest, |(_, r)| *r)),
            };
            let missing = match (reason, p.and_then(|p| p.min_subtotal)) {
                (Some(NotApplied::MinSubtotalNotMet), Some(m)) => Some(money((m.amount() - subtotal).max(0))),
                _ => None,
            };
            CodeState { code: code.clone(), applied, reason, missing }
        })
        .collect();
    Evaluation {
        line_totals: priced.amount.iter().zip(&line_discounts).map(|(a, d)| money(a - d)).collect(),
        line_discounts: line_discounts.into_iter().map(money).collect(),
        discounts,
        subtotal: money(subtotal),
        discount_total: money(discount_total),
        total: money(subtotal - discount_total),
        codes,
    }
}

/// The codes of `cx.codes`, ordered by what each one's promotion alone takes off the cart, most
/// first (ties keep their order): how a login merge chooses the codes it keeps past five.
pub fn rank_codes<U: Fn(&PromotionId) -> Usage>(cx: &Context<'_, U>) -> Vec<PromoCode> {
    let mut scored: Vec<(i64, usize, &PromoCode)> = cx
        .codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let alone: Vec<Promotion> = cx.promotions.iter().filter(|p| p.code.as_ref() == Some(code)).cloned().collect();
            let one = std::slice::from_ref(code);
            let e = evaluate(&Context {
                currency: cx.currency,
                lines: cx.lines,
                promotions: &alone,
                codes: one,
                now: cx.now,
                is_user: cx.is_user,
                usage: &cx.usage,
            });
            (e.discount_total.amount(), i, code)
        })
        .collect();
    crate::sort::sort_by_key(&mut scored, |(off, i, _)| (Reverse(*off), *i));
    scored.into_iter().map(|(_, _, c)| c.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_even_rounding_and_exact_allocation() {
        assert_eq!(percent_of(99_750, 10), 9_975);
        assert_eq!(percent_of(25, 10), 2, "2.5 rounds to the even 2");
        assert_eq!(percent_of(35, 10), 4, "3.5 rounds to the even 4");
        assert_eq!(percent_of(34, 10), 3);
        assert_eq!(percent_of(36, 10), 4);
        assert_eq!(allocate(10, &[1, 1, 1]), vec![4, 3, 3], "ties to the earlier line");
        assert_eq!(allocate(100, &[0, 0]), vec![0, 0]);
        assert_eq!(allocate(7, &[7, 0, 3]).iter().sum::<i64>(), 7);
        assert_eq!(allocate(10, &[10, 3]), vec![8, 2]);
    }

    #[test]
    fn a_bundle_applies_only_with_every_item_in_the_cart() {
        let usd = |a| Money::new(a, Currency::USD).unwrap();
        let sku = |s| Sku::parse(s).unwrap();
        let bundle = Promotion {
            id: PromotionId::parse("kit").unwrap(),
            code: None,
            description: "kit".into(),
            active: true,
            starts_at: None,
            ends_at: None,
            min_subtotal: None,
            action: Action::Bundle { items: vec![(sku("TEE"), 1), (sku("CAP"), 1)], price: usd(1000) },
            max_discount: None,
            combinable: true,
            usage_limit: None,
            usage_limit_per_customer: None,
        };
        let line = |s, q, p| LineInput { sku: sku(s), quantity: q, unit_price: Some(usd(p)) };
        let off = |lines: &[LineInput]| {
            let promotions = [bundle.clone()];
            let cx = Context {
                currency: Currency::USD,
                lines,
                promotions: &promotions,
                codes: &[],
                now: Timestamp::default(),
                is_user: false,
                usage: |_: &PromotionId| Usage::default(),
            };
            let e = evaluate(&cx);
            (e.discount_total.amount(), e.line_discounts.iter().map(|m| m.amount()).collect::<Vec<_>>())
        };
        // The tee alone is worth more than the bundle's price: still nothing off without the cap.
        assert_eq!(off(&[line("TEE", 1, 2000)]), (0, vec![0]), "no cap, no bundle");
        assert_eq!(off(&[line("TEE", 1, 2000), line("MUG", 1, 900)]), (0, vec![0, 0]));
        // 2000 + 1500 for 1000: 2500 off, shared by worth (2000:1500).
        assert_eq!(off(&[line("TEE", 1, 2000), line("CAP", 1, 1500)]), (2500, vec![1429, 1071]));
        assert_eq!(off(&[line("CAP", 2, 1500), line("TEE", 2, 2000)]), (5000, vec![2143, 2857]), "twice, in either order");
    }
}
