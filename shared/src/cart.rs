use crate::applied::Applied;
use crate::error::{CartError, ErrorCode};
use crate::op::{Op, OpKind};
use crate::promo::{MAX_PROMO_CODES, PromoCode};
use crate::time::Timestamp;
use crate::types::{Currency, Limits, Money, Sku, UserId};

/// One line of the cart or of the saved list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartLine {
    pub sku: Sku,
    /// At least 1. May exceed today's per-line limit if the limit was lowered after it was stored;
    /// every op clamps it back.
    pub quantity: u32,
    /// The price the shopper saw when adding: for display only, never charged.
    pub price_at_add: Option<Money>,
    pub added_at: Timestamp,
    /// Insertion order: lines are listed by it. Assigned from [`Cart::next_seq`].
    pub seq: u64,
}

/// A cart: its lines, its save-for-later list, and the bookkeeping every replica must agree on.
///
/// Invariants: `lines` and `saved` are each sorted by `seq` and hold each SKU at most once;
/// every `seq` is below `next_seq`; `version` grows by exactly one with each change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cart {
    pub currency: Currency,
    pub version: u64,
    pub lines: Vec<CartLine>,
    pub saved: Vec<CartLine>,
    pub next_seq: u64,
    pub updated_at: Timestamp,
    /// Last read or write; expiry counts from here.
    pub accessed_at: Timestamp,
    /// Set on a guest cart that a login merged into a user's cart (see [`Cart::freeze`]): the
    /// user whose cart took its lines. Such a cart takes no more ops.
    pub merged_into: Option<UserId>,
    /// The promo codes on the cart, in the order they were put on, at most five.
    pub promo_codes: Vec<PromoCode>,
}

/// How long an untouched cart keeps its lines and its saved list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub cart_seconds: i64,
    pub saved_seconds: i64,
}

impl Cart {
    pub fn new(currency: Currency) -> Cart {
        Cart {
            currency,
            version: 0,
            lines: Vec::new(),
            saved: Vec::new(),
            next_seq: 0,
            updated_at: Timestamp::default(),
            accessed_at: Timestamp::default(),
            merged_into: None,
            promo_codes: Vec::new(),
        }
    }

    /// No lines, no saved lines, no promo codes.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.saved.is_empty() && self.promo_codes.is_empty()
    }

    pub fn line(&self, sku: &Sku) -> Option<&CartLine> {
        self.lines.iter().find(|l| &l.sku == sku)
    }

    pub fn saved_line(&self, sku: &Sku) -> Option<&CartLine> {
        self.saved.iter().find(|l| &l.sku == sku)
    }

    /// Takes the lines and saved lines of `skus` out, returning each one's SKU and quantity
    /// (lines first, then saved lines, each in order). Not a change of the cart: its version
    /// stays. For copies a merge folds in or previews, never for a stored cart.
    pub fn take_out(&mut self, skus: &[Sku]) -> Vec<(Sku, u32)> {
        let mut taken = Vec::new();
        if skus.is_empty() {
            return taken;
        }
        for list in [&mut self.lines, &mut self.saved] {
            list.retain(|l| {
                let keep = !skus.contains(&l.sku);
                if !keep {
                    taken.push((l.sku.clone(), l.quantity));
                }
                keep
            });
        }
        taken
    }

    /// Total units in the cart (not the saved list).
    pub fn item_count(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity)).sum()
    }

    /// Whether the cart takes ops: a guest cart frozen by a login merge does not.
    pub fn takes_ops(&self) -> bool {
        self.merged_into.is_none()
    }

    /// The freeze rule of a login merge: takes a guest cart out of use for `user`, and returns
    /// what it held (lines and saved list; empty if it held nothing), which the user's cart then
    /// merges. The guest cart is emptied rather than deleted, and its version grows by one if it
    /// held anything, so a client holding it never sees its version go back. From now on it
    /// takes no ops ([`Cart::takes_ops`]): they belong in the user's cart. A cart frozen again
    /// keeps the user it was first merged into.
    pub fn freeze(&mut self, user: &UserId, now: Timestamp) -> Cart {
        let mut taken = self.clone();
        taken.merged_into = None;
        if self.merged_into.is_none() {
            self.merged_into = Some(user.clone());
        }
        if !self.is_empty() {
            self.lines.clear();
            self.saved.clear();
            self.promo_codes.clear();
            self.mark_changed(now);
        }
        taken
    }

    /// Applies one op. `Ok(true)` when the cart changed (and its version grew by one), `Ok(false)`
    /// when the op was valid but had nothing to do, `Err` when it was rejected; a rejected op
    /// leaves the cart exactly as it was. A frozen cart rejects every op (`cart_merged`).
    pub fn apply(&mut self, kind: &OpKind, limits: &Limits, now: Timestamp) -> Result<bool, CartError> {
        if !self.takes_ops() {
            return Err(CartError::new(ErrorCode::CartMerged, "this guest cart was merged into a user's cart at login"));
        }
        let changed = self.apply_inner(kind, limits, now)?;
        if changed {
            self.mark_changed(now);
        }
        Ok(changed)
    }

    pub(crate) fn mark_changed(&mut self, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
    }

    fn apply_inner(&mut self, kind: &OpKind, limits: &Limits, now: Timestamp) -> Result<bool, CartError> {
        let max = limits.max_line_quantity;
        match kind {
            OpKind::Add { sku, quantity, price_at_add } => {
                if let Some(p) = price_at_add
                    && p.currency() != self.currency
                {
                    return Err(CartError::new(
                        ErrorCode::CurrencyMismatch,
                        ["this cart is priced in ", self.currency.as_str(), ", not ", p.currency().as_str()].concat(),
                    ));
                }
                if let Some(i) = position(&self.lines, sku) {
                    let line = &mut self.lines[i];
                    let q = line.quantity.saturating_add(quantity.get()).min(max);
                    let mut changed = q != line.quantity;
                    line.quantity = q;
                    if line.price_at_add.is_none() && price_at_add.is_some() {
                        line.price_at_add = *price_at_add;
                        changed = true;
                    }
                    Ok(changed)
                } else {
                    ensure_room(&self.lines, limits, "cart")?;
                    let seq = self.take_seq();
                    self.lines.push(CartLine {
                        sku: sku.clone(),
                        quantity: quantity.get(),
                        price_at_add: *price_at_add,
                        added_at: now,
                        seq,
                    });
                    Ok(true)
                }
            }
            OpKind::SetQuantity { sku, quantity } => {
                let i = position(&self.lines, sku).ok_or_else(|| line_not_found(sku, "cart"))?;
                let changed = self.lines[i].quantity != quantity.get();
                self.lines[i].quantity = quantity.get();
                Ok(changed)
            }
            OpKind::Remove { sku } => Ok(remove(&mut self.lines, sku).is_some()),
            OpKind::RemoveSaved { sku } => Ok(remove(&mut self.saved, sku).is_some()),
            OpKind::SaveForLater { sku } => {
                let i = position(&self.lines, sku).ok_or_else(|| line_not_found(sku, "cart"))?;
                self.move_line(i, ListSide::ToSaved, limits)?;
                Ok(true)
            }
            OpKind::MoveToCart { sku } => {
                let i = position(&self.saved, sku).ok_or_else(|| line_not_found(sku, "saved list"))?;
                self.move_line(i, ListSide::ToCart, limits)?;
                Ok(true)
            }
            OpKind::Clear => {
                let changed = !self.lines.is_empty();
                self.lines.clear();
                Ok(changed)
            }
            OpKind::ApplyPromoCode { code } => {
                if self.promo_codes.contains(code) {
                    return Ok(false);
                }
                if self.promo_codes.len() >= MAX_PROMO_CODES {
                    return Err(CartError::new(
                        ErrorCode::TooManyPromoCodes,
                        ["a cart holds at most ", &crate::text::int(MAX_PROMO_CODES), " promo codes"].concat(),
                    ));
                }
                self.promo_codes.push(code.clone());
                Ok(true)
            }
            OpKind::RemovePromoCode { code } => {
                let before = self.promo_codes.len();
                self.promo_codes.retain(|c| c != code);
                Ok(self.promo_codes.len() != before)
            }
            OpKind::Deduct { sku, quantity } => {
                let Some(i) = position(&self.lines, sku) else { return Ok(false) };
                match self.lines[i].quantity.checked_sub(quantity.get()).filter(|q| *q > 0) {
                    Some(q) => self.lines[i].quantity = q,
                    None => {
                        self.lines.remove(i);
                    }
                }
                Ok(true)
            }
        }
    }

    /// Moves `from[i]` to the other list: summed (clamped) into an existing line of the same SKU,
    /// or appended with a fresh `seq` if there is room.
    fn move_line(&mut self, i: usize, side: ListSide, limits: &Limits) -> Result<(), CartError> {
        let (from, to, to_name) = match side {
            ListSide::ToSaved => (&mut self.lines, &mut self.saved, "saved list"),
            ListSide::ToCart => (&mut self.saved, &mut self.lines, "cart"),
        };
        if let Some(j) = position(to, &from[i].sku) {
            to[j].quantity = to[j].quantity.saturating_add(from[i].quantity).min(limits.max_line_quantity);
            from.remove(i);
        } else {
            ensure_room(to, limits, to_name)?;
            let mut line = from.remove(i);
            line.seq = self.next_seq;
            self.next_seq += 1;
            to.push(line);
        }
        Ok(())
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Records an access at `now`: drops the lines (and separately the saved list) when the cart
    /// was left untouched longer than its expiry, then renews it. Returns whether anything was
    /// dropped (which counts as a change).
    pub fn touch(&mut self, now: Timestamp, expiry: &Expiry) -> bool {
        let idle_since = self.accessed_at;
        let mut changed = false;
        if !self.lines.is_empty() && idle_since.plus_seconds(expiry.cart_seconds) < now {
            self.lines.clear();
            changed = true;
        }
        if !self.saved.is_empty() && idle_since.plus_seconds(expiry.saved_seconds) < now {
            self.saved.clear();
            changed = true;
        }
        if changed {
            self.mark_changed(now);
        }
        self.accessed_at = now;
        changed
    }
}

enum ListSide {
    ToSaved,
    ToCart,
}

fn position(lines: &[CartLine], sku: &Sku) -> Option<usize> {
    lines.iter().position(|l| &l.sku == sku)
}

fn remove(lines: &mut Vec<CartLine>, sku: &Sku) -> Option<CartLine> {
    position(lines, sku).map(|i| lines.remove(i))
}

fn ensure_room(lines: &[CartLine], limits: &Limits, name: &str) -> Result<(), CartError> {
    if lines.len() >= limits.max_lines {
        Err(CartError::new(
            ErrorCode::CartFull,
            ["the ", name, " already holds the maximum of ", &crate::text::int(limits.max_lines), " lines"].concat(),
        ))
    } else {
        Ok(())
    }
}

fn line_not_found(sku: &Sku, list: &str) -> CartError {
    CartError::new(ErrorCode::LineNotFound, [sku.as_str(), " is not in the ", list].concat())
}

/// What became of one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    Applied,
    /// Its id was applied before: nothing changed.
    Duplicate,
    Rejected(CartError),
}

impl OpOutcome {
    pub fn status(&self) -> &'static str {
        match self {
            OpOutcome::Applied => "applied",
            OpOutcome::Duplicate => "duplicate",
            OpOutcome::Rejected(_) => "rejected",
        }
    }
}

/// A cart together with what it remembers of the ops it applied ([`Applied`]): the unit of
/// exactly-once application. Rejected ops with only an id are not recorded, so a retry is judged
/// afresh; a client's numbered op is settled either way (its client moves on past it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartState {
    pub cart: Cart,
    pub applied: Applied,
}

impl CartState {
    pub fn new(cart: Cart) -> Self {
        CartState { cart, applied: Applied::default() }
    }

    /// Applies one op unless it was applied before; an untracked op is applied every time and
    /// recorded nowhere. The caller checks the order of a request's client ops first
    /// ([`Applied::check_order`]).
    pub fn apply_op(&mut self, op: &Op, limits: &Limits, now: Timestamp) -> OpOutcome {
        if self.applied.is_duplicate(&op.id) {
            return OpOutcome::Duplicate;
        }
        let outcome = match self.cart.apply(&op.kind, limits, now) {
            Ok(_) => OpOutcome::Applied,
            Err(e) => OpOutcome::Rejected(e),
        };
        if outcome == OpOutcome::Applied || op.id.client().is_some() {
            self.applied.record(&op.id, now.millis());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantity;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn add(s: &str, q: i64) -> OpKind {
        OpKind::Add { sku: sku(s), quantity: Quantity::new(q, &Limits::default()).unwrap(), price_at_add: None }
    }

    #[test]
    fn take_out_removes_lines_and_saved_lines_of_the_skus_and_says_which() {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        for (s, q) in [("A", 2), ("B", 1), ("C", 3)] {
            c.apply(&add(s, q), &l, Timestamp::default()).unwrap();
        }
        c.apply(&OpKind::SaveForLater { sku: sku("C") }, &l, Timestamp::default()).unwrap();
        c.apply(&add("C", 1), &l, Timestamp::default()).unwrap();
        let version = c.version;
        assert_eq!(c.take_out(&[sku("C"), sku("Z")]), vec![(sku("C"), 1), (sku("C"), 3)]);
        assert_eq!(c.lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(), ["A", "B"]);
        assert!(c.saved.is_empty());
        assert_eq!(c.version, version, "not a change of the cart");
        assert_eq!(c.take_out(&[]), vec![]);
    }

    #[test]
    fn adds_sum_and_clamp_to_the_line_limit() {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        assert_eq!(c.apply(&add("A", 60), &l, Timestamp::from_millis(1)), Ok(true));
        assert_eq!(c.apply(&add("A", 60), &l, Timestamp::from_millis(2)), Ok(true));
        assert_eq!(c.lines[0].quantity, 99);
        assert_eq!(c.apply(&add("A", 1), &l, Timestamp::from_millis(3)), Ok(false));
        assert_eq!(c.version, 2);
    }

    #[test]
    fn the_201st_line_is_refused_and_changes_nothing() {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        for i in 0..200 {
            c.apply(&add(&format!("S{i}"), 1), &l, Timestamp::default()).unwrap();
        }
        let before = c.clone();
        assert_eq!(c.apply(&add("S200", 1), &l, Timestamp::default()).unwrap_err().code, ErrorCode::CartFull);
        assert_eq!(c, before);
    }

    #[test]
    fn save_for_later_and_back_keeps_quantity_and_price() {
        let l = Limits::default();
        let mut c = Cart::new(Currency::USD);
        c.apply(&add("A", 3), &l, Timestamp::default()).unwrap();
        c.apply(&OpKind::SaveForLater { sku: sku("A") }, &l, Timestamp::default()).unwrap();
        assert!(c.lines.is_empty());
        assert_eq!(c.saved[0].quantity, 3);
        c.apply(&OpKind::MoveToCart { sku: sku("A") }, &l, Timestamp::default()).unwrap();
        assert_eq!(c.lines[0].quantity, 3);
        assert_eq!(c.apply(&OpKind::MoveToCart { sku: sku("A") }, &l, Timestamp::default()).unwrap_err().code, ErrorCode::LineNotFound);
    }

    #[test]
    fn freezing_empties_the_cart_once_and_refuses_every_later_op() {
        let l = Limits::default();
        let alice = UserId::parse("alice").unwrap();
        let mut c = Cart::new(Currency::USD);
        c.apply(&add("A", 2), &l, Timestamp::from_millis(1)).unwrap();
        c.apply(&OpKind::SaveForLater { sku: sku("A") }, &l, Timestamp::from_millis(2)).unwrap();
        c.apply(&add("B", 1), &l, Timestamp::from_millis(3)).unwrap();
        let before = c.clone();
        let taken = c.freeze(&alice, Timestamp::from_millis(4));
        assert_eq!(taken, before, "the lines and the saved list go to the merge");
        assert!(c.is_empty());
        assert_eq!((c.version, c.updated_at), (before.version + 1, Timestamp::from_millis(4)));
        assert_eq!(c.merged_into.as_ref(), Some(&alice));
        assert_eq!(c.apply(&add("C", 1), &l, Timestamp::from_millis(5)).unwrap_err().code, ErrorCode::CartMerged);
        assert!(!c.takes_ops());
        assert!(!c.touch(Timestamp::from_millis(5), &Expiry { cart_seconds: 10, saved_seconds: 10 }), "reads still work");
        let again = c.freeze(&UserId::parse("bob").unwrap(), Timestamp::from_millis(6));
        assert!(again.is_empty() && again.merged_into.is_none());
        assert_eq!(c.version, before.version + 1, "an empty cart frozen again does not change");
        assert_eq!(c.merged_into.as_ref(), Some(&alice), "the first merge names the user");
    }

    #[test]
    fn a_deduction_takes_what_was_ordered_and_leaves_the_rest() {
        let l = Limits::default();
        let q = |n| Quantity::new(n, &l).unwrap();
        let mut c = Cart::new(Currency::USD);
        c.apply(&add("A", 3), &l, Timestamp::default()).unwrap();
        c.apply(&add("B", 1), &l, Timestamp::default()).unwrap();
        assert_eq!(c.apply(&OpKind::Deduct { sku: sku("A"), quantity: q(2) }, &l, Timestamp::default()), Ok(true));
        assert_eq!(c.apply(&OpKind::Deduct { sku: sku("B"), quantity: q(5) }, &l, Timestamp::default()), Ok(true));
        assert_eq!(c.apply(&OpKind::Deduct { sku: sku("Z"), quantity: q(1) }, &l, Timestamp::default()), Ok(false));
        assert_eq!(c.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect::<Vec<_>>(), [("A", 1)]);
    }

    #[test]
    fn expired_lines_are_dropped_on_access_but_the_saved_list_lives_longer() {
        let l = Limits::default();
        let e = Expiry { cart_seconds: 10, saved_seconds: 100 };
        let mut c = Cart::new(Currency::USD);
        c.apply(&add("A", 1), &l, Timestamp::default()).unwrap();
        c.apply(&add("B", 1), &l, Timestamp::default()).unwrap();
        c.apply(&OpKind::SaveForLater { sku: sku("B") }, &l, Timestamp::default()).unwrap();
        c.touch(Timestamp::from_millis(0), &e);
        assert!(!c.touch(Timestamp::from_millis(9_000), &e));
        assert!(c.touch(Timestamp::from_millis(20_000), &e));
        assert!(c.lines.is_empty());
        assert_eq!(c.saved.len(), 1);
        assert!(c.touch(Timestamp::from_millis(200_000), &e));
        assert!(c.saved.is_empty());
    }
}
