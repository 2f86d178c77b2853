use crate::cart::{Cart, CartLine};
use crate::promo::{MAX_PROMO_CODES, PromoCode};
use crate::time::Timestamp;
use crate::types::Limits;
use crate::{CartError, ErrorCode};

/// How a guest cart folds into a user's cart on login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergePolicy {
    /// Quantities of one SKU add up, clamped to the per-line maximum (the default).
    #[default]
    Sum,
    /// The larger of the two quantities wins.
    Max,
    /// Lines the user already has stay as they are; only new SKUs come over.
    KeepUser,
}

impl MergePolicy {
    pub fn parse(s: &str) -> Result<MergePolicy, CartError> {
        match s {
            "sum" => Ok(MergePolicy::Sum),
            "max" => Ok(MergePolicy::Max),
            "keep_user" => Ok(MergePolicy::KeepUser),
            _ => Err(CartError::new(ErrorCode::InvalidRequest, "merge policy is one of sum, max, keep_user")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MergePolicy::Sum => "sum",
            MergePolicy::Max => "max",
            MergePolicy::KeepUser => "keep_user",
        }
    }
}

/// Both carts' codes, each once, the user's first. Past [`MAX_PROMO_CODES`], the codes kept are
/// the first in `rank` (the caller ranks them by what each one's promotion alone takes off the
/// merged cart; a code it does not rank comes after those it does), ties and unranked codes in
/// the union's order; the kept codes stay in the union's order. The Lua merge does the same.
pub fn merge_codes(user: &[PromoCode], guest: &[PromoCode], rank: &[PromoCode]) -> Vec<PromoCode> {
    let mut union: Vec<PromoCode> = user.to_vec();
    for c in guest {
        if !union.contains(c) {
            union.push(c.clone());
        }
    }
    if union.len() <= MAX_PROMO_CODES {
        return union;
    }
    let place = |c: &PromoCode| rank.iter().position(|r| r == c).unwrap_or(rank.len());
    let mut order: Vec<usize> = (0..union.len()).collect();
    crate::sort::sort_by_key(&mut order, |&i| (place(&union[i]), i));
    let mut keep: Vec<usize> = order[..MAX_PROMO_CODES].to_vec();
    crate::sort::sort(&mut keep);
    keep.into_iter().map(|i| union[i].clone()).collect()
}

/// Folds `guest` into `user`, the cart lines and the saved list each on their own.
///
/// Guest lines are taken in their order; one the user lacks is appended whole (with its
/// `price_at_add` and `added_at`) while there is room, and dropped once the list is full.
/// Both carts' promo codes are kept, each once, the user's first; past five, see [`merge_codes`]
/// (without a ranking: the first five).
/// Returns whether `user` changed; if it did, its version grew by exactly one.
pub fn merge(user: &mut Cart, guest: &Cart, policy: MergePolicy, limits: &Limits, now: Timestamp) -> bool {
    merge_ranked(user, guest, policy, limits, now, &[])
}

/// [`merge`], with a ranking of codes for when the two carts hold more than five between them.
pub fn merge_ranked(user: &mut Cart, guest: &Cart, policy: MergePolicy, limits: &Limits, now: Timestamp, rank: &[PromoCode]) -> bool {
    let mut changed = false;
    for (from, into_saved) in [(&guest.lines, false), (&guest.saved, true)] {
        for g in from {
            changed |= merge_line(user, g, into_saved, policy, limits);
        }
    }
    let codes = merge_codes(&user.promo_codes, &guest.promo_codes, rank);
    if codes != user.promo_codes {
        user.promo_codes = codes;
        changed = true;
    }
    if changed {
        user.mark_changed(now);
    }
    changed
}

fn merge_line(user: &mut Cart, g: &CartLine, into_saved: bool, policy: MergePolicy, limits: &Limits) -> bool {
    let max = limits.max_line_quantity;
    let list = if into_saved { &mut user.saved } else { &mut user.lines };
    if let Some(u) = list.iter_mut().find(|l| l.sku == g.sku) {
        let q = match policy {
            MergePolicy::Sum => u.quantity.saturating_add(g.quantity).min(max),
            MergePolicy::Max => u.quantity.max(g.quantity).min(max),
            MergePolicy::KeepUser => u.quantity,
        };
        let changed = q != u.quantity;
        u.quantity = q;
        return changed;
    }
    if list.len() >= limits.max_lines {
        return false;
    }
    let price_at_add = g.price_at_add.filter(|p| p.currency() == user.currency);
    let seq = user.take_seq();
    let list = if into_saved { &mut user.saved } else { &mut user.lines };
    list.push(CartLine { sku: g.sku.clone(), quantity: g.quantity.min(max), price_at_add, added_at: g.added_at, seq });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(list: &[&str]) -> Vec<PromoCode> {
        list.iter().map(|c| PromoCode::parse(c).unwrap()).collect()
    }

    #[test]
    fn codes_past_five_keep_the_best_ranked_in_their_order() {
        let user = codes(&["A", "B", "C"]);
        let guest = codes(&["C", "D", "E", "F"]);
        assert_eq!(merge_codes(&user, &guest, &[]), codes(&["A", "B", "C", "D", "E"]), "unranked: the first five, the user's first");
        assert_eq!(merge_codes(&user, &guest, &codes(&["F", "B"])), codes(&["A", "B", "C", "D", "F"]), "F ranked: E, last unranked, goes");
        assert_eq!(
            merge_codes(&user, &guest, &codes(&["F", "E", "D", "C", "B", "A"])),
            codes(&["B", "C", "D", "E", "F"]),
            "the worst goes, and the kept stay in order"
        );
        assert_eq!(merge_codes(&codes(&["A"]), &codes(&["A", "B"]), &[]), codes(&["A", "B"]), "duplicates once");
    }
}
