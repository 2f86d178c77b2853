//! The cart core the browser's JavaScript drives: what must be computed exactly as the server
//! computes it, and nothing else.
//!
//! The kernel holds one client's confirmed cart, the view (that cart with the pending ops
//! applied), what the server last said of each line (annotations) and the promotions the client
//! knows, and renders snapshots of the view with `shared`'s own `CartView` and discount engine.
//! Everything else a browser client does (its storage layout, which ops are pending or settled,
//! pushes, identity, checkout keys) is bookkeeping that JavaScript does with `JSON.parse` and
//! `JSON.stringify` for free, so it stays out of the module. It talks in the stored and wire
//! forms `shared` already defines: a stored cart, stored ops, a server's cart view, a
//! promotions answer.

use crate::engine::{Annotation, Frozen, KnownPromotions, LastError, ViewAt, read_annotations, stored_at, write_annotations};
use serde_json::Value;
use shared::sort::SortedMap;
use shared::stored::StoredCart;
use shared::wire::{self, Owner};
use shared::{Cart, CartError, Currency, Limits, Op, OpId, OpKind, Sku, Timestamp};
use std::rc::Rc;

pub struct Kernel {
    limits: Limits,
    confirmed: Cart,
    /// The confirmed cart with the pending ops applied, kept up to date change by change.
    view: Cart,
    /// The view for snapshots, shared rather than copied ([`ViewAt`]).
    view_at: ViewAt,
    annotations: Rc<SortedMap<Sku, Annotation>>,
    promotions: Rc<KnownPromotions>,
}

impl Kernel {
    /// An empty cart in `currency`.
    pub fn new(currency: Currency, limits: Limits) -> Kernel {
        let cart = Cart::new(currency);
        Kernel {
            limits,
            view_at: ViewAt::of(&cart, limits),
            view: cart.clone(),
            confirmed: cart,
            annotations: Rc::default(),
            promotions: Rc::default(),
        }
    }

    /// The confirmed cart from its stored form ([`StoredCart`]); false, with nothing changed,
    /// when the text is no readable cart. The view is this cart until [`Kernel::replay`].
    pub fn set_cart(&mut self, text: &str) -> bool {
        let cart = shared::json::parse(text).ok().as_ref().and_then(StoredCart::from_json).and_then(StoredCart::into_cart);
        let Some(cart) = cart else { return false };
        self.set_view(cart.clone());
        self.confirmed = cart;
        true
    }

    /// The confirmed cart's stored form.
    pub fn cart_text(&self) -> String {
        stored_text(&self.confirmed)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The confirmed cart's version (0 until the server confirmed one).
    pub fn version(&self) -> u64 {
        self.confirmed.version
    }

    /// Annotations from their stored form (`{"<sku>": {"current_price"?, "availability"?}}`);
    /// unreadable entries are skipped.
    pub fn set_annotations(&mut self, text: &str) {
        self.annotations = Rc::new(read_annotations(shared::json::parse(text).ok().as_ref()));
    }

    pub fn annotations_text(&self) -> String {
        let mut out = Vec::with_capacity(256);
        write_annotations(&mut out, &self.annotations);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The known promotions from their stored form: a `GET /v1/promotions` answer with `asked`
    /// (the codes the lookup covered) and `at` (when it was made). Unreadable ones are skipped.
    pub fn set_promotions(&mut self, text: &str) {
        let v = shared::json::parse(text).unwrap_or(Value::Null);
        self.promotions = Rc::new(KnownPromotions::from_json(&v, self.confirmed.currency));
    }

    /// The view made again: the confirmed cart with `ops` (a JSON array of stored ops, in the
    /// order they apply) applied. An op that is unreadable, or that the cart refuses, changes
    /// nothing, as on the server.
    pub fn replay(&mut self, ops: &str) {
        let mut view = self.confirmed.clone();
        if let Ok(Value::Array(list)) = shared::json::parse(ops)
            && let Ok(parsed) = wire::parse_op_list(&list, &self.limits)
        {
            for ((_, kind), v) in parsed.into_iter().zip(&list) {
                if let Ok(kind) = kind {
                    let _ = view.apply(&kind, &self.limits, stored_at(v).unwrap_or(self.confirmed.updated_at));
                }
            }
        }
        self.set_view(view);
    }

    fn set_view(&mut self, view: Cart) {
        self.view_at = ViewAt::of(&view, self.limits);
        self.view = view;
    }

    /// Applies a change to the view at `at`: the op's stored form (with `id` and `at`), to be
    /// queued; or the cart's refusal, with nothing changed.
    pub fn change(&mut self, kind: OpKind, id: OpId, at: Timestamp) -> Result<String, CartError> {
        self.view.apply(&kind, &self.limits, at)?;
        self.view_at.push(&self.view, &kind, at);
        Ok(wire::op_text(&Op { id, kind }, Some(at)))
    }

    /// Folds the view into the confirmed cart (a local-only cart settles its ops this way); its
    /// version stays the last one the server confirmed. Returns its stored form.
    pub fn fold(&mut self) -> String {
        let version = self.confirmed.version;
        self.confirmed = self.view.clone();
        self.confirmed.version = version;
        self.cart_text()
    }

    /// The promo codes on the view, comma-separated (what a promotions lookup asks about).
    pub fn codes(&self) -> String {
        let list: Vec<&str> = self.view.promo_codes.iter().map(|c| c.as_str()).collect();
        list.join(",")
    }

    /// Whether the last promotions lookup covered every code on the view and is recent enough
    /// at `now` that no new lookup is needed (as `CartClient` decides it).
    pub fn promotions_fresh(&self, now: Timestamp) -> bool {
        self.promotions.fresh(&self.view.promo_codes, now)
    }

    /// What a snapshot of the view is made of now, shared rather than copied.
    pub fn frozen(&self, owner: Owner, pending_ops: usize, last_error: Option<LastError>) -> Frozen {
        Frozen {
            owner,
            version: self.confirmed.version,
            view: self.view_at.clone(),
            annotations: self.annotations.clone(),
            promotions: self.promotions.clone(),
            pending_ops,
            last_error,
        }
    }
}

fn stored_text(cart: &Cart) -> String {
    let mut out = Vec::with_capacity(1024);
    StoredCart::from(cart).write_json(&mut out);
    // Only whole strings and ASCII were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PROMOTIONS_TTL_MS;
    use shared::{ClientSeq, ErrorCode, Money, Quantity};

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn add(s: &str, n: i64) -> OpKind {
        OpKind::Add { sku: sku(s), quantity: Quantity::new(n, &Limits::default()).unwrap(), price_at_add: None }
    }

    fn id(seq: u64) -> OpId {
        OpId::parse(&["op-", &seq.to_string()].concat()).unwrap().with_client(ClientSeq::parse("tab", seq).unwrap())
    }

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_790_000_000_000 + ms)
    }

    fn quantities(k: &Kernel) -> Vec<(String, u32)> {
        let snap = k.frozen(Owner::Guest, 0, None).snapshot(false, at(0));
        snap.lines.iter().map(|l| (l.sku.as_str().to_owned(), l.quantity)).collect()
    }

    #[test]
    fn a_change_returns_the_op_to_queue_and_replaying_the_queue_gives_the_same_view() {
        let mut k = Kernel::new(usd(), Limits::default());
        let mut queue = Vec::new();
        for (i, kind) in [add("A", 2), add("B", 1), add("A", 3)].into_iter().enumerate() {
            queue.push(k.change(kind, id(i as u64 + 1), at(i as i64)).unwrap());
        }
        assert_eq!(quantities(&k), [("A".to_owned(), 5), ("B".to_owned(), 1)]);
        // The stored op carries its id, the tab's numbering and its time.
        let first: Value = shared::json::parse(&queue[0]).unwrap();
        assert_eq!(first["op_id"], "op-1");
        assert_eq!(first["client_id"], "tab");
        assert_eq!(first["seq"], 1);
        assert_eq!(first["at"], at(0).text().as_str());

        let mut other = Kernel::new(usd(), Limits::default());
        other.replay(&["[", &queue.join(","), "]"].concat());
        assert_eq!(quantities(&other), quantities(&k));
    }

    #[test]
    fn a_refused_change_changes_nothing_and_queues_nothing() {
        let limits = Limits { max_line_quantity: 5, max_lines: 1 };
        let mut k = Kernel::new(usd(), limits);
        k.change(add("A", 4), id(1), at(0)).unwrap();
        let before = k.cart_text();
        assert_eq!(k.change(add("B", 1), id(2), at(1)).unwrap_err().code, ErrorCode::CartFull);
        let missing = OpKind::SetQuantity { sku: sku("C"), quantity: Quantity::new(1, &limits).unwrap() };
        assert_eq!(k.change(missing, id(2), at(1)).unwrap_err().code, ErrorCode::LineNotFound);
        let eur = Money::new(100, Currency::parse("EUR").unwrap()).unwrap();
        let priced = OpKind::Add { sku: sku("A"), quantity: Quantity::new(1, &limits).unwrap(), price_at_add: Some(eur) };
        assert_eq!(k.change(priced, id(2), at(1)).unwrap_err().code, ErrorCode::CurrencyMismatch);
        assert_eq!(quantities(&k), [("A".to_owned(), 4)]);
        assert_eq!(k.cart_text(), before);
    }

    #[test]
    fn fold_keeps_the_server_version_and_its_text_reads_back() {
        let mut k = Kernel::new(usd(), Limits::default());
        let stored = r#"{"format":1,"currency":"USD","version":7,"next_seq":1,"updated_at":"2026-11-29T10:00:00Z",
            "accessed_at":"2026-11-29T10:00:00Z","lines":[{"sku":"A","quantity":1,"added_at":"2026-11-29T10:00:00Z","seq":0}],"saved":[]}"#;
        assert!(k.set_cart(stored));
        k.set_annotations(
            r#"{"A":{"current_price":{"amount":250,"currency":"USD"},"availability":"in_stock"},"B":{"availability":"bogus"}}"#,
        );
        assert_eq!(k.version(), 7);
        k.change(add("B", 2), id(1), at(0)).unwrap();
        let folded = k.fold();
        assert_eq!(k.version(), 7);

        let mut other = Kernel::new(usd(), Limits::default());
        assert!(other.set_cart(&folded));
        other.set_annotations(&k.annotations_text());
        assert_eq!(quantities(&other), [("A".to_owned(), 1), ("B".to_owned(), 2)]);
        let snap = other.frozen(Owner::Guest, 0, None).snapshot(false, at(0));
        assert_eq!(snap.version, 7);
        // The line the server priced shows its price and counts in the subtotal; the unreadable
        // annotation of B was skipped.
        let price = Money::new(250, usd()).unwrap();
        assert_eq!(snap.lines[0].current_price, Some(price));
        assert_eq!(snap.lines[1].current_price, None);
        assert_eq!(snap.subtotal, price);
    }

    #[test]
    fn unreadable_input_changes_nothing() {
        let mut k = Kernel::new(usd(), Limits::default());
        k.change(add("A", 1), id(1), at(0)).unwrap();
        let before = k.cart_text();
        for bad in ["", "{", "[]", "{\"format\":9}", "null"] {
            assert!(!k.set_cart(bad));
        }
        assert_eq!(k.cart_text(), before);
        assert_eq!(quantities(&k), [("A".to_owned(), 1)]);
        // A queue with an unreadable op applies the others.
        let mut other = Kernel::new(usd(), Limits::default());
        other.replay(r#"[{"op_id":"x","type":"add","sku":"A","quantity":0},{"op_id":"y","type":"add","sku":"B","quantity":1}]"#);
        assert_eq!(quantities(&other), [("B".to_owned(), 1)]);
    }

    #[test]
    fn promotions_are_fresh_only_for_the_codes_looked_up_and_within_the_ttl() {
        let mut k = Kernel::new(usd(), Limits::default());
        let code = shared::promo::PromoCode::parse("SAVE10").unwrap();
        k.change(OpKind::ApplyPromoCode { code }, id(1), at(0)).unwrap();
        assert_eq!(k.codes(), "SAVE10");
        assert!(!k.promotions_fresh(at(0)));
        k.set_promotions(&["{\"promotions\":[],\"asked\":[\"SAVE10\"],\"at\":\"", &at(0).text(), "\"}"].concat());
        assert!(k.promotions_fresh(at(PROMOTIONS_TTL_MS)));
        assert!(!k.promotions_fresh(at(PROMOTIONS_TTL_MS + 1)));
        let snap = k.frozen(Owner::Guest, 1, None).snapshot(false, at(1));
        // Looked up and not found: no longer pending.
        assert_eq!(snap.promo_codes[0].pending, None);
    }
}
