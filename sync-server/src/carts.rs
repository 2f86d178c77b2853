//! The cart service: every way a request reaches a cart, over the hot store, with the durable
//! store behind it for the user carts the hot store lost.
//!
//! It owns three protocols:
//! - **restore on miss**: a user cart absent from the hot store (evicted, flushed, restarted) is
//!   put back from the durable store (or as a new empty cart) and the request runs again;
//! - **running ops**: a batch applied in order, each op id at most once per cart;
//! - **the login merge**: the guest's pending ops, the freeze of the guest cart, the fold into the
//!   user's cart under the op id `merge:<guest tag>:<generation>`, and the clean-up (see
//!   ARCHITECTURE.md, "Merge on login").
//!
//! HTTP handlers call it and only shape its answers; the sync simulation drives this same code.

use crate::durable::{Durable, DurableError};
use crate::hot::{ApplyResult, HotStore, MergeResult, Rules, StoreError, Verdict};
use crate::identity::CartKey;
use sha2::Digest;
use shared::promo::PromoCode;
use shared::wire::{OpResult, ParsedOp};
use shared::{Cart, CartState, Limits, Op, OpId, OpKind, OpOutcome, Quantity, Sku, Timestamp, UserId};

/// How many times a request restores a lost user cart before it gives up.
const RESTORE_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CartsError {
    /// A guest cart that a login merged into `into`'s cart takes no more ops.
    #[error("the guest cart was merged into a user's cart at login")]
    Merged { into: Option<UserId> },
    /// `If-Match` named another version; nothing was applied.
    #[error("the cart is at version {0}")]
    VersionMismatch(u64),
    /// A client's op skipped ahead of its high-water mark; nothing was applied.
    #[error("client {} sent seq {} before {}", .0.client, .0.got, .0.expected)]
    OutOfOrder(shared::OutOfOrder),
    #[error("hot store: {0}")]
    Hot(#[from] StoreError),
    #[error("durable store: {0}")]
    Durable(#[from] DurableError),
    #[error("a user cart could not be restored after {RESTORE_ATTEMPTS} attempts")]
    NotRestored,
}

/// What a login merge did.
#[derive(Clone, Debug)]
pub struct MergeOutcome {
    /// The user's cart afterwards.
    pub cart: Cart,
    /// Whether this call merged guest lines in (false for a repeat, or a guest cart with none).
    pub merged: bool,
    /// What became of each guest op sent with the login, in request order.
    pub results: Vec<OpResult>,
    /// The guest lines (and saved lines) left out of the merge, with their quantities: those
    /// whose SKU the catalog no longer sells. Empty for a repeat.
    pub dropped: Vec<(Sku, u32)>,
}

/// How one login merge goes: its policy, and which SKUs it leaves out.
pub struct MergePlan<D, R> {
    pub policy: shared::MergePolicy,
    /// The SKUs of a cart to leave out of the merge: called with the frozen guest cart, and
    /// with the merged cart (the user's own lines of those SKUs are taken out too).
    pub drop: D,
    /// Ranks the merged cart's promo codes when the two carts hold more than five between them
    /// (the best first; see `shared::merge_codes`). Called with the user's cart and the guest's
    /// merged as they stand just before the merge, codes not capped.
    pub rank: R,
}

#[derive(Clone)]
pub struct Carts {
    hot: HotStore,
    durable: Durable,
    rules: Rules,
}

/// An op the server makes for a REST call, which carries no op id of its own: recorded nowhere,
/// as the contract says, so a cart's op ids only grow with its clients' ops.
fn server_op(kind: OpKind) -> Op {
    Op { id: OpId::untracked(), kind }
}

/// The valid ops of a parsed batch, in order.
fn valid_ops(parsed: &[ParsedOp]) -> Vec<Op> {
    parsed.iter().filter_map(|(id, k)| k.as_ref().ok().map(|kind| Op { id: id.clone(), kind: kind.clone() })).collect()
}

/// Every op's result in request order: the applied ones from `outcomes`, the unparseable ones
/// rejected with their own error.
fn results_of(parsed: &[ParsedOp], outcomes: Vec<OpOutcome>) -> Vec<OpResult> {
    let mut applied = outcomes.into_iter();
    parsed
        .iter()
        .map(|(op_id, kind)| match kind {
            Ok(_) => OpResult::new(op_id, &applied.next().unwrap_or(OpOutcome::Duplicate)),
            Err(e) => OpResult::new(op_id, &OpOutcome::Rejected(e.clone())),
        })
        .collect()
}

impl Carts {
    pub fn new(hot: HotStore, durable: Durable, rules: Rules) -> Carts {
        Carts { hot, durable, rules }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn hot(&self) -> &HotStore {
        &self.hot
    }

    /// Reads (and renews) a cart.
    pub async fn read(&self, id: &CartKey, now: Timestamp) -> Result<Cart, CartsError> {
        Ok(self.apply(id, &[], None, now).await?.0)
    }

    /// Applies `ops` in order, each op id at most once, after checking `if_match`.
    pub async fn apply(
        &self,
        id: &CartKey,
        ops: &[Op],
        if_match: Option<u64>,
        now: Timestamp,
    ) -> Result<(Cart, Vec<OpOutcome>), CartsError> {
        for _ in 0..RESTORE_ATTEMPTS {
            match self.hot.apply(id, ops, if_match, &self.rules, now).await? {
                ApplyResult::Done { cart, outcomes } => {
                    for o in &outcomes {
                        crate::metrics::op(o.status());
                    }
                    return Ok((cart, outcomes));
                }
                ApplyResult::NeedsRestore => self.restore(id, now).await?,
                ApplyResult::NeedsVerify { version, checked } => self.verify(id, version, checked, now).await?,
                ApplyResult::Merged { into } => return Err(CartsError::Merged { into }),
                ApplyResult::VersionMismatch(current) => return Err(CartsError::VersionMismatch(current)),
                ApplyResult::OutOfOrder(e) => return Err(CartsError::OutOfOrder(e)),
            }
        }
        Err(CartsError::NotRestored)
    }

    /// Applies one op made from a REST call (which has no op id), and returns its outcome.
    pub async fn apply_one(
        &self,
        id: &CartKey,
        kind: OpKind,
        if_match: Option<u64>,
        now: Timestamp,
    ) -> Result<(Cart, OpOutcome), CartsError> {
        let (cart, mut outcomes) = self.apply(id, &[server_op(kind)], if_match, now).await?;
        Ok((cart, outcomes.pop().unwrap_or(OpOutcome::Duplicate)))
    }

    /// Applies the valid ops of a parsed batch and reports every op's outcome in request order.
    pub async fn apply_parsed(
        &self,
        id: &CartKey,
        parsed: &[ParsedOp],
        if_match: Option<u64>,
        now: Timestamp,
    ) -> Result<(Cart, Vec<OpResult>), CartsError> {
        let (cart, outcomes) = self.apply(id, &valid_ops(parsed), if_match, now).await?;
        Ok((cart, results_of(parsed, outcomes)))
    }

    /// Merges the guest cart `guest` into `user`'s cart: exactly once per guest cart, however
    /// many times, from however many tabs, it is called.
    ///
    /// The guest's still-pending `ops` land in the guest cart first, exactly once each. If the
    /// guest cart was merged already (a login retried after its answer was lost), they go to the
    /// user's cart instead, which by then knows every op id the guest cart applied.
    pub async fn merge(&self, user: &UserId, guest: &CartKey, ops: &[ParsedOp], now: Timestamp) -> Result<MergeOutcome, CartsError> {
        let plan = MergePlan { policy: self.rules.merge, drop: |_: &Cart| Vec::<Sku>::new(), rank: |_: &Cart| Vec::new() };
        self.merge_with(user, guest, ops, now, plan).await
    }

    /// [`Carts::merge`] by a plan: its policy, the SKUs it leaves out, and how it ranks codes.
    /// The plan is the first merge's: a repeat changes nothing, whatever its plan.
    pub async fn merge_with(
        &self,
        user: &UserId,
        guest: &CartKey,
        ops: &[ParsedOp],
        now: Timestamp,
        plan: MergePlan<impl Fn(&Cart) -> Vec<Sku>, impl FnOnce(&Cart) -> Vec<PromoCode>>,
    ) -> Result<MergeOutcome, CartsError> {
        let rules = Rules { merge: plan.policy, ..self.rules };
        let user_key = CartKey::for_user(user);
        let mut results = Vec::new();
        let mut for_user = false;
        if !ops.is_empty() {
            match self.apply_parsed(guest, ops, None, now).await {
                Ok((_, r)) => results = r,
                Err(CartsError::Merged { .. }) => for_user = true,
                Err(e) => return Err(e),
            }
        }
        let mut frozen = match self.hot.freeze_guest(guest, user, &self.rules, now).await? {
            Ok(frozen) => frozen,
            // Another user logged in with this guest cart first: it is theirs.
            Err(owner) => return Err(CartsError::Merged { into: Some(owner) }),
        };
        // Lines the catalog no longer sells stay behind. Taken out of the frozen copy the merge
        // folds in (never the stored snapshot), so a repeat after a lost answer still finds the
        // same op id and changes nothing.
        let gone = (plan.drop)(&frozen.cart);
        let mut dropped = frozen.cart.take_out(&gone);
        if !frozen.cart.promo_codes.is_empty() {
            let mine = self.read(&user_key, now).await?;
            let mut union = mine.promo_codes.clone();
            union.extend(frozen.cart.promo_codes.iter().filter(|c| !mine.promo_codes.contains(c)).cloned());
            if union.len() > shared::promo::MAX_PROMO_CODES {
                let mut merged = mine;
                shared::merge(&mut merged, &frozen.cart, rules.merge, &rules.limits, now);
                merged.promo_codes = union;
                frozen.code_rank = (plan.rank)(&merged);
            }
        }
        let op_id = format!("merge:{}:{}", guest.tag, frozen.generation);
        let mut done = None;
        for _ in 0..RESTORE_ATTEMPTS {
            match self.hot.merge_into(&user_key, &op_id, &frozen, &rules, now).await? {
                MergeResult::NeedsRestore => self.restore(&user_key, now).await?,
                MergeResult::NeedsVerify { version, checked } => self.verify(&user_key, version, checked, now).await?,
                MergeResult::Done { cart, applied } => {
                    done = Some((cart, applied));
                    break;
                }
            }
        }
        let (mut cart, applied) = done.ok_or(CartsError::NotRestored)?;
        self.hot.finish_merge(guest).await?;
        if applied {
            // The user's own lines of SKUs no longer sold leave the merged cart too, by ops whose
            // ids derive from the merge's, so a retry after a lost answer removes nothing twice.
            let gone = (plan.drop)(&cart);
            if !gone.is_empty() {
                let base = hex::encode(&sha2::Sha256::digest(op_id.as_bytes())[..8]);
                let mut removals = Vec::new();
                for (i, sku) in gone.iter().enumerate() {
                    for (list, saved) in [(&cart.lines, false), (&cart.saved, true)] {
                        let Some(l) = list.iter().find(|l| &l.sku == sku) else { continue };
                        let Ok(id) = OpId::parse(&format!("drop:{base}:{i}:{}", u8::from(saved))) else { continue };
                        let kind = if saved { OpKind::RemoveSaved { sku: sku.clone() } } else { OpKind::Remove { sku: sku.clone() } };
                        dropped.push((sku.clone(), l.quantity));
                        removals.push(Op { id, kind });
                    }
                }
                cart = self.apply(&user_key, &removals, None, now).await?.0;
            }
        }
        if for_user {
            let (c, r) = self.apply_parsed(&user_key, ops, None, now).await?;
            cart = c;
            results = r;
        }
        let merged = applied && !frozen.cart.is_empty();
        crate::metrics::event("cartsync_merges_total", if merged { "merged" } else { "nothing_to_merge" });
        if merged {
            tracing::info!(lines = frozen.cart.lines.len(), saved = frozen.cart.saved.len(), "merged a guest cart");
        }
        if !applied {
            dropped.clear();
        }
        Ok(MergeOutcome { cart, merged, results, dropped })
    }

    /// Takes a paid order's quantities out of the cart it came from, once per order line by op
    /// ids of the order's own, so a replayed payment (or a retry after a crash between the
    /// payment and this) changes nothing. Lines added since the checkout stay. If the guest cart
    /// was merged into a user's cart since, the user's cart is the one changed; it also took
    /// over the guest cart's op ids, so a deduction made before the merge is not made twice.
    pub async fn take_out_ordered(
        &self,
        cart: &CartKey,
        order_id: &str,
        lines: &[(Sku, u32)],
        codes: &[PromoCode],
        now: Timestamp,
    ) -> Result<(), CartsError> {
        let any = Limits { max_line_quantity: Limits::ABSOLUTE_MAX_QUANTITY, max_lines: Limits::ABSOLUTE_MAX_LINES };
        let mut ops: Vec<Op> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, (sku, quantity))| {
                let id = OpId::parse(&format!("paid:{order_id}:{i}")).ok()?;
                let quantity = Quantity::new(i64::from(*quantity), &any).ok()?;
                Some(Op { id, kind: OpKind::Deduct { sku: sku.clone(), quantity } })
            })
            .collect();
        // The codes the order used are spent: they leave the cart with its lines.
        ops.extend(codes.iter().enumerate().filter_map(|(i, code)| {
            let id = OpId::parse(&format!("paid:{order_id}:code:{i}")).ok()?;
            Some(Op { id, kind: OpKind::RemovePromoCode { code: code.clone() } })
        }));
        match self.apply(cart, &ops, None, now).await {
            Ok(_) => Ok(()),
            Err(CartsError::Merged { into: Some(user) }) => self.apply(&CartKey::for_user(&user), &ops, None, now).await.map(|_| ()),
            Err(CartsError::Merged { into: None }) => {
                tracing::warn!(order = order_id, "paid, but the merged cart's user is unknown; its cart keeps the ordered lines");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Settles a user cart the hot store holds from before its data may have gone back in time
    /// (a Redis restart, failover or restore from an older snapshot): if the durable store has a
    /// newer version, the hot copy is dropped and the durable one restored in its place, so no
    /// write acknowledged before is lost and none after lands on the old copy; otherwise the hot
    /// copy is marked current.
    async fn verify(&self, id: &CartKey, version: u64, checked: u64, now: Timestamp) -> Result<(), CartsError> {
        let Some(user) = id.user() else {
            return Ok(());
        };
        // Checked by an instance on a newer generation: this one is behind, not the cart.
        if self.hot.catch_up(checked).await? {
            return Ok(());
        }
        let stored = self.durable.load_user_cart(user).await?;
        match stored {
            Some(durable) if durable.cart.version > version => {
                tracing::warn!(
                    hot = version,
                    durable = durable.cart.version,
                    "the hot store held an older user cart than the durable store; restoring the durable one"
                );
                crate::metrics::event("cartsync_hot_store_verifications_total", "restored");
                self.hot.verify(id, version, Verdict::Stale).await?;
                Ok(self.hot.restore(id, &durable, &self.rules, now).await?)
            }
            _ => {
                crate::metrics::event("cartsync_hot_store_verifications_total", "current");
                Ok(self.hot.verify(id, version, Verdict::Current).await?)
            }
        }
    }

    /// Restores a user cart from the durable store into the hot store (an empty one if there is
    /// none). Guest carts are never in the durable store: a missing one is simply new.
    async fn restore(&self, id: &CartKey, now: Timestamp) -> Result<(), CartsError> {
        let Some(user) = id.user() else {
            return Ok(());
        };
        let stored = self.durable.load_user_cart(user).await?;
        let restored = stored.is_some();
        let snapshot = stored.unwrap_or_else(|| {
            let mut cart = Cart::new(self.rules.currency);
            cart.accessed_at = now;
            CartState::new(cart)
        });
        self.hot.restore(id, &snapshot, &self.rules, now).await?;
        if restored {
            tracing::info!(version = snapshot.cart.version, "restored a user cart from the durable store");
        }
        Ok(())
    }
}
