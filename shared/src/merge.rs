use crate::cart::{Cart, CartLine};
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

/// Folds `guest` into `user`, the cart lines and the saved list each on their own.
///
/// Guest lines are taken in their order; one the user lacks is appended whole (with its
/// `price_at_add` and `added_at`) while there is room, and dropped once the list is full.
/// Returns whether `user` changed; if it did, its version grew by exactly one.
pub fn merge(user: &mut Cart, guest: &Cart, policy: MergePolicy, limits: &Limits, now: Timestamp) -> bool {
    let mut changed = false;
    for (from, into_saved) in [(&guest.lines, false), (&guest.saved, true)] {
        for g in from {
            changed |= merge_line(user, g, into_saved, policy, limits);
        }
    }
    // Both carts' codes are kept, each once, the user's first, at most five.
    for code in &guest.promo_codes {
        if !user.promo_codes.contains(code) && user.promo_codes.len() < crate::promo::MAX_PROMO_CODES {
            user.promo_codes.push(code.clone());
            changed = true;
        }
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
