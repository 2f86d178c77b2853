//! Checkout: the cart priced live, its promotions evaluated on those prices, and every line,
//! promotion use and gift card amount held for the hold time, all or nothing, in one database
//! transaction per checkout.
//!
//! Where a reservation is decided: the transaction locks the product rows of the cart (in SKU
//! order), then the promotions with a usage limit (in id order), then the gift cards named (in
//! id order), and holds only if everything fits, by `shared::decide_checkout`. A hot SKU,
//! promotion or card serializes only the checkouts that want it, for the few statements of one
//! transaction; others proceed in parallel. See ARCHITECTURE.md.

use super::holds::{HoldEnd, end_holds, give_up_orders};
use super::{ORDER_COLUMNS, Order, OrderStatus, retrying};
use crate::carts::{Carts, CartsError};
use crate::catalog::{CatalogCache, PRODUCT_COLUMNS, Product, ProductRow, product_of_row};
use crate::durable::{Durable, DurableError, on_db, placeholders};
use crate::gift_cards::{self, GiftCard, Unusable};
use crate::identity::CartKey;
use crate::promotions::PromotionsCache;
use serde::Serialize;
use shared::events::EventType;
use shared::promo::{Promotion, PromotionId, Usage};
use shared::promo_json::promotion_from_json;
use shared::wire::{DiscountView, GiftCardUse, OrderLineView, OrderTotals, OrderView, Promos};
use shared::{Cart, CheckoutDecision, Money, Offer, PriceChange, Shortage, Sku, Timestamp, UnavailableCode, decide_checkout};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A gift card a checkout cannot use (the `gift_cards` of `409 gift_card_unavailable`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardRefusal {
    pub last4: String,
    pub reason: &'static str,
}

/// Why no order was placed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart is empty")]
    CartEmpty,
    #[error("prices changed since the cart was priced")]
    PriceChanged { changes: Vec<PriceChange>, total: Money },
    #[error("some lines cannot be reserved")]
    OutOfStock(Vec<Shortage>),
    #[error("a promo code on the cart cannot be used")]
    PromotionUnavailable(Vec<UnavailableCode>),
    #[error("a gift card cannot be used")]
    GiftCardUnavailable(Vec<CardRefusal>),
    #[error("the order would cost more than an amount can hold")]
    TotalTooLarge(Money),
    #[error("the quote cannot be used")]
    QuoteInvalid(crate::quotes::Refusal),
    #[error(transparent)]
    Cart(#[from] CartsError),
    #[error(transparent)]
    Db(#[from] DurableError),
}

/// Why the transaction placed nothing.
enum Refused {
    Decision(CheckoutDecision),
    GiftCards(Vec<CardRefusal>),
}

/// What the shopper asks of a checkout.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The discounted total the shopper was shown.
    pub expected: Option<Money>,
    /// Canonical gift card codes, in the order to use them.
    pub gift_cards: Vec<String>,
    /// A price quote (its token) of this cart: once verified, its lines are charged at the
    /// quoted unit prices.
    pub quote: Option<String>,
}

/// A cart priced now for a quote: its lines at live prices with the promotions in force.
pub struct Quoted {
    pub priced: shared::PricedCart,
    pub currency: shared::Currency,
}

/// What a checkout needs.
pub struct Checkout<'a> {
    pub carts: &'a Carts,
    pub durable: &'a Durable,
    pub catalog: &'a CatalogCache,
    pub promotions: &'a Arc<PromotionsCache>,
    pub hold_ms: i64,
    /// A paid order recovers a cart reported abandoned this recently.
    pub recovery_window_ms: i64,
    /// What price quotes are signed with.
    pub quote_secret: &'a [u8],
}

impl Checkout<'_> {
    /// Places an order for the cart of `owner` at live prices with its promotions, holding its
    /// stock, promotion uses and gift card amounts for the hold time, after releasing the owner's
    /// own earlier pending order (a shopper is never blocked by their own hold). An order the
    /// gift cards pay in full is paid at once and its lines leave the cart.
    pub async fn place(&self, owner: &CartKey, request: &Request, now: Timestamp) -> Result<Order, CheckoutError> {
        let cart = self.carts.read(owner, now).await?;
        if cart.lines.is_empty() {
            return Err(CheckoutError::CartEmpty);
        }
        let quote = match &request.quote {
            Some(token) => {
                let q = crate::quotes::verify(self.quote_secret, token, &owner.tag, now).map_err(CheckoutError::QuoteInvalid)?;
                q.check_cart(&cart).map_err(CheckoutError::QuoteInvalid)?;
                Some(q)
            }
            None => None,
        };
        let quote = quote.as_ref();
        let placed = retrying(|| reserve(self, owner, &cart, request, quote, now)).await;
        self.catalog.forget(&cart.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>());
        let refused = match placed? {
            Ok(order) => Ok(order),
            Err(Refused::GiftCards(cards)) => Err(CheckoutError::GiftCardUnavailable(cards)),
            Err(Refused::Decision(CheckoutDecision::PriceChanged { changes, total })) => {
                Err(CheckoutError::PriceChanged { changes, total })
            }
            Err(Refused::Decision(CheckoutDecision::OutOfStock(items))) => Err(CheckoutError::OutOfStock(items)),
            Err(Refused::Decision(CheckoutDecision::PromotionUnavailable(codes))) => Err(CheckoutError::PromotionUnavailable(codes)),
            Err(Refused::Decision(CheckoutDecision::TotalTooLarge { subtotal })) => Err(CheckoutError::TotalTooLarge(subtotal)),
            Err(Refused::Decision(CheckoutDecision::Reserve(_))) => unreachable!("a reservation is an order"),
        };
        let order = match refused {
            Ok(order) => {
                crate::events::webhooks::wake();
                order
            }
            Err(e) => {
                self.record_failure(owner, &cart, &e, now).await;
                return Err(e);
            }
        };
        // This checkout moved the uses it held (and its replaced order gave some back).
        self.promotions.invalidate();
        if let Some(user) = owner.user() {
            self.promotions.refresh_customer(self.durable, user).await;
        }
        if order.status == OrderStatus::Paid {
            tracing::info!(order = %order.view.id, "order paid in full by gift cards");
            let lines: Vec<_> = order.view.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
            match self.carts.take_out_ordered(&order.cart_key(), &order.view.id, &lines, &order.codes(), now).await {
                Ok(()) => {
                    if let Err(e) = super::mark_cart_taken(self.durable, &order.view.id, now).await {
                        tracing::warn!(order = %order.view.id, error = %e, "could not record that the ordered lines left the cart");
                    }
                }
                Err(e) => {
                    tracing::warn!(order = %order.view.id, error = %e, "paid, but the ordered lines could not be taken out of the cart")
                }
            }
        }
        Ok(order)
    }
}

impl Checkout<'_> {
    /// The cart of `owner` priced now, as a checkout would price it (live prices, promotions in
    /// force, the customer's own uses), for a quote. Nothing is held.
    pub async fn quote(&self, owner: &CartKey, now: Timestamp) -> Result<Quoted, CheckoutError> {
        let cart = self.carts.read(owner, now).await?;
        if cart.lines.is_empty() {
            return Err(CheckoutError::CartEmpty);
        }
        let skus: Vec<Sku> = cart.lines.iter().map(|l| l.sku.clone()).collect();
        let products = self.durable.products(&skus).await?;
        let snapshot = self.promotions.fresh(self.durable).await;
        let mine = match owner.user() {
            Some(user) => Some(self.promotions.customer(self.durable, user, true).await),
            None => None,
        };
        let in_force = snapshot.for_codes(&cart.promo_codes);
        let usage = |p: &PromotionId| snapshot.usage(p, mine.as_deref());
        let promos = Promos { promotions: &in_force, usage: &usage, now };
        let live = |sku: &Sku| products.iter().find(|p| &p.sku == sku).and_then(|p| p.active.then_some(p.price));
        match shared::price_cart(&cart, live, &promos, owner.is_user()) {
            Ok(priced) => Ok(Quoted { priced, currency: cart.currency }),
            Err(not_sold) => Err(CheckoutError::OutOfStock(
                cart.lines
                    .iter()
                    .filter(|l| not_sold.contains(&l.sku))
                    .map(|l| Shortage { sku: l.sku.clone(), requested: l.quantity, available: 0 })
                    .collect(),
            )),
        }
    }

    /// `checkout.failed`, with the reason, for a checkout refused for the cart's content. A
    /// refusal is not a change, so the event is written on its own; if that fails, the shopper
    /// still gets the refusal.
    async fn record_failure(&self, owner: &CartKey, cart: &Cart, e: &CheckoutError, now: Timestamp) {
        let reason = match e {
            CheckoutError::OutOfStock(_) => "out_of_stock",
            CheckoutError::PriceChanged { .. } => "price_changed",
            CheckoutError::PromotionUnavailable(_) => "promotion_unavailable",
            CheckoutError::GiftCardUnavailable(_) => "gift_card_unavailable",
            _ => return,
        };
        let mut data =
            serde_json::json!({"owner": if owner.is_user() { "user" } else { "guest" }, "reason": reason, "cart_version": cart.version});
        if let Some(u) = owner.user() {
            data["user"] = serde_json::json!(u.as_str());
        }
        let event = crate::events::Event {
            id: format!("checkout.failed:{}", uuid::Uuid::new_v4().simple()),
            kind: EventType::CheckoutFailed.as_str().to_owned(),
            subject: crate::hot::subject_of(&owner.tag),
            user: owner.user().map(|u| u.as_str().to_owned()),
            sku: None,
            quantity: None,
            detail: Some(reason.to_owned()),
            amount: None,
            at: now,
            data,
            order: crate::events::Event::time_order(now),
        };
        if let Err(err) = crate::events::record_now(self.durable, &[event]).await {
            tracing::warn!(error = %err, "could not record a failed checkout's event");
        }
    }
}

/// The promotions that concern `cart` as the transaction reads them: the automatic ones and
/// those of its codes, with their uses; the ones with a usage limit are locked first, so their
/// counts cannot move until this transaction ends.
struct InForce {
    promotions: Vec<Promotion>,
    used: HashMap<PromotionId, u64>,
    by_customer: HashMap<PromotionId, u64>,
}

impl InForce {
    fn usage(&self, id: &PromotionId) -> Usage {
        Usage { total: self.used.get(id).copied().unwrap_or(0), by_customer: self.by_customer.get(id).copied().unwrap_or(0) }
    }
}

/// The checkout transaction: the order, or what refused it (with nothing held: the
/// transaction rolls back).
async fn reserve(
    checkout: &Checkout<'_>,
    owner: &CartKey,
    cart: &Cart,
    request: &Request,
    quote: Option<&crate::quotes::Quote>,
    now: Timestamp,
) -> Result<Result<Order, Refused>, DurableError> {
    let (db, hold_ms, recovery_window_ms) = (checkout.durable, checkout.hold_ms, checkout.recovery_window_ms);
    let lock = db.lock_rows();
    let is_pg = matches!(db, Durable::Postgres(_));
    let currency = cart.currency;
    let user = owner.user().map(|u| u.as_str().to_owned());
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        if is_pg {
            // One checkout per cart at a time, so two clicks cannot both hold stock.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&owner.tag).execute(&mut *tx).await?;
        }
        let earlier: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT id FROM orders WHERE owner = $1 AND status = 'pending_payment' ORDER BY id{lock}"))
                .bind(&owner.tag)
                .fetch_all(&mut *tx)
                .await?;
        let earlier: Vec<String> = earlier.into_iter().map(|r| r.0).collect();
        let held_skus: Vec<(String,)> = if earlier.is_empty() {
            Vec::new()
        } else {
            let sql = format!(
                "SELECT sku FROM holds WHERE state = 'live' AND order_id IN ({}) ORDER BY order_id, sku{lock}",
                placeholders(1, earlier.len())
            );
            let mut q = sqlx::query_as(&sql);
            for id in &earlier {
                q = q.bind(id);
            }
            q.fetch_all(&mut *tx).await?
        };
        // Every product row this transaction will touch, locked once, in SKU order.
        let skus: BTreeSet<&str> = cart.lines.iter().map(|l| l.sku.as_str()).chain(held_skus.iter().map(|h| h.0.as_str())).collect();
        let rows: Vec<ProductRow> = if skus.is_empty() {
            Vec::new()
        } else {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({}) ORDER BY sku{lock}", placeholders(1, skus.len()));
            let mut q = sqlx::query_as(&sql);
            for s in &skus {
                q = q.bind(*s);
            }
            q.fetch_all(&mut *tx).await?
        };
        let mut products: HashMap<String, Product> = HashMap::new();
        for row in rows {
            let p = product_of_row(row)?;
            products.insert(p.sku.as_str().to_owned(), p);
        }

        // The shopper's own earlier order gives its holds back first, so it never blocks them.
        for (sku, units) in give_up_orders(&mut tx, &earlier, OrderStatus::Cancelled, "replaced", now).await? {
            if let Some(p) = products.get_mut(&sku) {
                p.reserved -= units;
            }
        }

        // The promotions in force for this cart; those with a usage limit locked, in id order.
        let codes: Vec<&str> = cart.promo_codes.iter().map(|c| c.as_str()).collect();
        let sql = if codes.is_empty() {
            "SELECT id, definition, redeemed + pending FROM promotions WHERE code IS NULL AND active ORDER BY id".to_owned()
        } else {
            format!(
                "SELECT id, definition, redeemed + pending FROM promotions WHERE (code IS NULL AND active) OR code IN ({}) ORDER BY id",
                placeholders(1, codes.len())
            )
        };
        let mut q = sqlx::query_as(&sql);
        for c in &codes {
            q = q.bind(*c);
        }
        let found: Vec<(String, String, i64)> = q.fetch_all(&mut *tx).await?;
        let mut in_force = InForce { promotions: Vec::with_capacity(found.len()), used: HashMap::new(), by_customer: HashMap::new() };
        for (id, definition, used) in found {
            let bad = |why: String| DurableError::Corrupt(format!("promotion {id}"), why);
            let v: serde_json::Value = serde_json::from_str(&definition).map_err(|e| bad(e.to_string()))?;
            let p = promotion_from_json(&v, currency).map_err(|e| bad(e.message))?;
            in_force.used.insert(p.id.clone(), u64::try_from(used).unwrap_or(0));
            in_force.promotions.push(p);
        }
        let limited: Vec<&str> = in_force
            .promotions
            .iter()
            .filter(|p| p.active && (p.usage_limit.is_some() || p.usage_limit_per_customer.is_some()))
            .map(|p| p.id.as_str())
            .collect();
        if !limited.is_empty() {
            let sql = format!("SELECT id, redeemed + pending FROM promotions WHERE id IN ({}) ORDER BY id{lock}", placeholders(1, limited.len()));
            let mut q = sqlx::query_as(&sql);
            for id in &limited {
                q = q.bind(*id);
            }
            let counts: Vec<(String, i64)> = q.fetch_all(&mut *tx).await?;
            for (id, used) in counts {
                if let Ok(id) = PromotionId::parse(&id) {
                    in_force.used.insert(id, u64::try_from(used).unwrap_or(0));
                }
            }
            if let Some(user) = &user {
                let sql = format!(
                    "SELECT promotion_id, COUNT(*) FROM redemptions WHERE user_id = $1 AND state <> 'released' AND promotion_id IN ({}) GROUP BY promotion_id",
                    placeholders(2, limited.len())
                );
                let mut q = sqlx::query_as(&sql).bind(user);
                for id in &limited {
                    q = q.bind(*id);
                }
                let mine: Vec<(String, i64)> = q.fetch_all(&mut *tx).await?;
                for (id, n) in mine {
                    if let Ok(id) = PromotionId::parse(&id) {
                        in_force.by_customer.insert(id, u64::try_from(n).unwrap_or(0));
                    }
                }
            }
        }

        // A quoted line is charged at its quoted price (while the product is still sold).
        let offer = |sku: &Sku| {
            products.get(sku.as_str()).map(|p| {
                let price = quote.and_then(|q| q.price_of(sku)).unwrap_or(p.price);
                Offer { price: p.active.then_some(price), available: p.available() }
            })
        };
        let usage = |id: &PromotionId| in_force.usage(id);
        let promos = Promos { promotions: &in_force.promotions, usage: &usage, now };
        let priced = match decide_checkout(cart, offer, request.expected, &promos, user.is_some()) {
            CheckoutDecision::Reserve(priced) => priced,
            refused => return Ok(Err(Refused::Decision(refused))),
        };

        // Gift cards, locked in id order, used in the order given, each for at most its free
        // balance and at most what is still due.
        let mut spends: Vec<(GiftCard, i64)> = Vec::new();
        if !request.gift_cards.is_empty() {
            let hashes: Vec<String> = request.gift_cards.iter().map(|c| gift_cards::hash_code(c)).collect();
            let sql = format!(
                "SELECT {}, code_hash FROM gift_cards WHERE code_hash IN ({}) ORDER BY id{lock}",
                gift_cards::COLUMNS,
                placeholders(1, hashes.len())
            );
            let mut q = sqlx::query_as(&sql);
            for h in &hashes {
                q = q.bind(h);
            }
            let rows: Vec<gift_cards::HashedRow> = q.fetch_all(&mut *tx).await?;
            let mut by_hash: HashMap<String, GiftCard> = HashMap::new();
            for row in rows {
                let (card, hash) = gift_cards::hashed_card_of(row)?;
                by_hash.insert(hash, card);
            }
            let mut refusals = Vec::new();
            let mut due = priced.total.amount();
            for (code, hash) in request.gift_cards.iter().zip(&hashes) {
                let card = by_hash.remove(hash);
                let why = match &card {
                    None => Some(Unusable::Unknown),
                    Some(c) => c.unusable(currency, now),
                };
                match (why, card) {
                    (Some(why), _) => refusals.push(CardRefusal { last4: shared::gift_card::last4(code), reason: why.as_str() }),
                    (None, Some(card)) => {
                        let take = card.free().min(due);
                        if take > 0 {
                            due -= take;
                            spends.push((card, take));
                        }
                    }
                    (None, None) => {}
                }
            }
            if !refusals.is_empty() {
                return Ok(Err(Refused::GiftCards(refusals)));
            }
        }
        let paid_by_cards: i64 = spends.iter().map(|(_, take)| take).sum();
        let amount_due = Money::new(priced.total.amount() - paid_by_cards, currency).map_err(|e| DurableError::Config(e.message))?;

        let id = format!("ord_{}", uuid::Uuid::new_v4().simple());
        let reserved_until = Timestamp::from_millis(now.millis().saturating_add(hold_ms));
        let lines: Vec<OrderLineView> = priced
            .lines
            .iter()
            .map(|l| OrderLineView {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                price_at_add: l.price_at_add,
                discount: Some(l.discount),
                line_total: l.line_total,
            })
            .collect();
        let totals = OrderTotals {
            subtotal: priced.subtotal,
            discounts: priced.discounts.iter().map(DiscountView::from).collect(),
            discount_total: priced.discount_total,
            gift_cards: spends
                .iter()
                .map(|(card, take)| GiftCardUse { last4: card.last4.clone(), amount: Money::new(*take, currency).unwrap_or(Money::zero(currency)) })
                .collect(),
            amount_due,
        };
        let corrupt = |e: serde_json::Error| DurableError::Corrupt(id.clone(), e.to_string());
        let lines_json = serde_json::to_string(&lines).map_err(corrupt)?;
        let totals_json = serde_json::to_string(&totals).map_err(corrupt)?;
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}, updated_at) VALUES ($1, $2, $3, 'pending_payment', $4, $5, $6, $7, $8, NULL, $9, $10)"
        ))
        .bind(&id)
        .bind(&owner.tag)
        .bind(&user)
        .bind(currency.as_str())
        .bind(priced.total.amount())
        .bind(&lines_json)
        .bind(reserved_until.millis())
        .bind(now.millis())
        .bind(&totals_json)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        for l in &priced.lines {
            sqlx::query("UPDATE products SET reserved = reserved + $1 WHERE sku = $2")
                .bind(i64::from(l.quantity))
                .bind(l.sku.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO holds (order_id, sku, quantity, expires_at, state) VALUES ($1, $2, $3, $4, 'live')")
                .bind(&id)
                .bind(l.sku.as_str())
                .bind(i64::from(l.quantity))
                .bind(reserved_until.millis())
                .execute(&mut *tx)
                .await?;
        }
        // One use of each promotion kept, held like stock.
        for d in &priced.discounts {
            sqlx::query("INSERT INTO redemptions (order_id, promotion_id, user_id, amount, state) VALUES ($1, $2, $3, $4, 'live')")
                .bind(&id)
                .bind(d.promotion.as_str())
                .bind(&user)
                .bind(d.amount.amount())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE promotions SET pending = pending + 1 WHERE id = $1").bind(d.promotion.as_str()).execute(&mut *tx).await?;
        }
        for (card, take) in &spends {
            sqlx::query("INSERT INTO gift_card_holds (order_id, gift_card_id, amount, state) VALUES ($1, $2, $3, 'live')")
                .bind(&id)
                .bind(&card.id)
                .bind(*take)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE gift_cards SET held = held + $1 WHERE id = $2").bind(*take).bind(&card.id).execute(&mut *tx).await?;
        }
        // Nothing left to pay: the order is paid now, its holds consumed like a payment's.
        let status = if amount_due.amount() == 0 {
            end_holds(&mut tx, std::slice::from_ref(&id), HoldEnd::Consumed).await?;
            sqlx::query("UPDATE orders SET status = 'paid', payment_ref = 'gift_cards' WHERE id = $1").bind(&id).execute(&mut *tx).await?;
            OrderStatus::Paid
        } else {
            OrderStatus::PendingPayment
        };
        let order = Order {
            view: OrderView {
                id: id.clone(),
                status: status.as_str().into(),
                lines,
                subtotal: totals.subtotal,
                discounts: totals.discounts,
                discount_total: totals.discount_total,
                total: priced.total,
                gift_cards: totals.gift_cards,
                amount_due,
                reserved_until,
                created_at: now,
                payment_ref: (status == OrderStatus::Paid).then(|| "gift_cards".to_owned()),
            },
            status,
            owner: owner.tag.clone(),
            user: owner.user().cloned(),
        };
        let mut events = vec![super::outbox::order_event(EventType::CheckoutStarted, &order, now, None)];
        if status == OrderStatus::Paid {
            events.push(super::outbox::order_event(EventType::OrderPaid, &order, now, None));
            super::outbox::record_paid_lines(&mut tx, &order, now).await?;
            events.extend(super::outbox::recovered_events(&mut tx, &order, recovery_window_ms, now).await?);
        }
        crate::events::record(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(Ok(order))
    })
}
