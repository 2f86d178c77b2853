//! The client's state machine, in plain Rust with no browser types: the last server-confirmed
//! cart, the queue of ops the server has not acknowledged, and the bookkeeping of pushing them
//! exactly once. The browser binding (`lib.rs`) only moves bytes between this and fetch, timers,
//! events and localStorage; the simulation test drives it natively against the server's logic.
//!
//! The optimistic cart is always `confirmed` with the pending ops applied by `shared`'s own
//! `apply`, so it is exactly what the server will compute unless another device changed the cart
//! meanwhile, and "rebasing" onto a new server cart is nothing more than replacing `confirmed`.

use crate::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::promo::{PromoCode, Promotion, PromotionId, Usage};
use shared::sort::{SortedMap, SortedSet};
use shared::stored::StoredCart;
use shared::text::int;
use shared::wire::{self, Availability, CartView, DiscountView, ErrorBody, OpsResponse, Owner, PromoCodeView, Promos};
use shared::{Cart, CartError, CartLine, ClientSeq, Currency, ErrorCode, GuestToken, Limits, Money, Op, OpId, OpKind, Sku, Timestamp};
use std::cell::RefCell;
use std::rc::Rc;

/// The stored format of the client's state; anything else under the key starts a clean cart.
pub const FORMAT: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Guest { token: String },
    User { jwt: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub code: String,
    pub message: String,
}

impl LastError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LastError { code: code.as_str().to_owned(), message: message.into() }
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.as_str()
    }
}

impl From<ErrorBody> for LastError {
    fn from(e: ErrorBody) -> Self {
        LastError { code: e.code, message: e.message }
    }
}

/// The `Idempotency-Key` of the checkout of one cart version: kept (and stored, so other tabs
/// and a reloaded page use it too) until a checkout answer settles it, so a repeated checkout of
/// the same cart, a double click or a retry after a lost answer, is the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutKey {
    pub version: u64,
    pub key: String,
}

/// What the server last said about a line beyond the cart itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
}

/// The promotions this client knows (from `GET /v1/promotions`): the automatic ones and those of
/// the codes it asked about, so it computes discounts itself, offline too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownPromotions {
    pub list: Vec<Promotion>,
    /// The answer's objects for `list`, kept as they came: they are stored as they are (the
    /// module carries no promotion writer).
    raw: Vec<Value>,
    /// Promotions every use of which is taken (as of the lookup).
    pub exhausted: SortedSet<PromotionId>,
    /// The codes the lookup covered, found or not: a code outside this set is `pending`.
    pub asked: SortedSet<PromoCode>,
    /// When the lookup was made.
    pub at: Option<Timestamp>,
}

/// How long known promotions are trusted before they are looked up again, when online.
pub const PROMOTIONS_TTL_MS: i64 = 60_000;

impl KnownPromotions {
    /// Reads a `GET /v1/promotions` answer (or the stored copy of one); unreadable entries are
    /// skipped.
    pub fn from_answer(v: &Value, asked: SortedSet<PromoCode>, at: Option<Timestamp>, currency: Currency) -> KnownPromotions {
        let mut known = KnownPromotions { asked, at, ..KnownPromotions::default() };
        for p in v.get("promotions").and_then(Value::as_array).into_iter().flatten() {
            if let Ok(promotion) = shared::promo_json::promotion_from_json(p, currency) {
                if p.get("exhausted").and_then(Value::as_bool) == Some(true) {
                    known.exhausted.insert(promotion.id.clone());
                }
                known.list.push(promotion);
                known.raw.push(p.clone());
            }
        }
        known
    }

    /// The stored form: the answer's shape (its readable promotions as they came, `exhausted`
    /// included), with what the lookup asked and when.
    fn to_json(&self) -> Value {
        shared::json::object([
            ("promotions", Value::Array(self.raw.clone())),
            ("asked", self.asked.iter().map(|c| Value::from(c.as_str())).collect()),
            ("at", self.at.map_or(Value::Null, |t| t.text().into())),
        ])
    }

    pub(crate) fn from_json(v: &Value, currency: Currency) -> KnownPromotions {
        let asked =
            v.get("asked").and_then(Value::as_array).into_iter().flatten().filter_map(|c| PromoCode::parse(c.as_str()?).ok()).collect();
        let at = stored_at(v);
        KnownPromotions::from_answer(v, asked, at, currency)
    }

    /// Whether the lookup covered every code of `codes` and is at most [`PROMOTIONS_TTL_MS`] old
    /// at `now`: no new lookup is needed.
    pub(crate) fn fresh(&self, codes: &[PromoCode], now: Timestamp) -> bool {
        let young = self.at.is_some_and(|at| now.millis().saturating_sub(at.millis()) <= PROMOTIONS_TTL_MS);
        young && codes.iter().all(|c| self.asked.contains(c))
    }

    /// What the engine is told of a promotion's uses: none, unless the lookup said every one is
    /// taken. (A customer's own uses are the server's to count; its answer corrects the view.)
    fn usage(&self, id: &PromotionId) -> Usage {
        if self.exhausted.contains(id) { Usage { total: u64::MAX, by_customer: 0 } } else { Usage::default() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    pub op: Op,
    pub at: Timestamp,
    /// Some push (from any tab) has carried it and its answer may not have come: a read of the
    /// server's cart may already hold it.
    pub sent: bool,
}

impl PendingOp {
    /// The tab (client) that made the op and its place in that tab's sequence.
    fn origin(&self) -> (&str, u64) {
        self.op.id.client().map_or(("", 0), |c| (c.client.as_str(), c.seq))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientState {
    pub identity: Identity,
    pub confirmed: Cart,
    pub annotations: Rc<SortedMap<Sku, Annotation>>,
    /// Every tab's ops not settled yet, oldest first.
    pub pending: Vec<PendingOp>,
    pub last_error: Option<LastError>,
    pub checkout_key: Option<CheckoutKey>,
    pub promotions: Rc<KnownPromotions>,
}

/// Per tab (client), a number: a map kept as a short list (a handful of tabs), which costs the
/// WebAssembly module far less code than a `BTreeMap` of its own.
pub type PerClient = Vec<(String, u64)>;

fn get_of(list: &PerClient, client: &str) -> u64 {
    list.iter().find(|(c, _)| c == client).map_or(0, |(_, n)| *n)
}

fn raise(list: &mut PerClient, client: &str, n: u64) {
    match list.iter_mut().find(|(c, _)| c == client) {
        Some((_, m)) => *m = (*m).max(n),
        None => list.push((client.to_owned(), n)),
    }
}

fn per_client_json(list: &PerClient) -> Value {
    let mut m = serde_json::Map::new();
    for (c, n) in list {
        m.insert(c.clone(), Value::from(*n));
    }
    Value::Object(m)
}

/// What the base record says of each tab's op log. Each part only grows, so two copies merge by
/// taking the larger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Marks {
    /// Per client: every op up to this seq is settled (acknowledged by the server, refused, or
    /// folded into a local-only cart) and no longer counts.
    folded: PerClient,
    /// Per client: the highest seq a push has carried.
    sent: PerClient,
    /// Clients whose ops go to the server without their numbering: the server saw a gap in their
    /// sequence (ops it never got were dropped), so the op ids alone tell duplicates.
    bare: Vec<String>,
}

impl Marks {
    fn folded(&self, client: &str) -> u64 {
        get_of(&self.folded, client)
    }

    fn fold(&mut self, client: &str, seq: u64) {
        raise(&mut self.folded, client, seq);
    }

    fn mark_sent(&mut self, client: &str, seq: u64) {
        raise(&mut self.sent, client, seq);
    }

    fn go_bare(&mut self, client: &str) {
        if !self.is_bare(client) {
            self.bare.push(client.to_owned());
        }
    }

    fn is_bare(&self, client: &str) -> bool {
        self.bare.iter().any(|c| c == client)
    }

    fn merge(&mut self, theirs: &Marks) {
        for (c, s) in &theirs.folded {
            self.fold(c, *s);
        }
        for (c, s) in &theirs.sent {
            self.mark_sent(c, *s);
        }
        for c in &theirs.bare {
            self.go_bare(c);
        }
    }

    /// Forgets a client (a closed tab whose log is gone).
    fn forget(&mut self, client: &str) {
        self.folded.retain(|(c, _)| c != client);
        self.sent.retain(|(c, _)| c != client);
        self.bare.retain(|c| c != client);
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("folded".into(), per_client_json(&self.folded));
        m.insert("sent".into(), per_client_json(&self.sent));
        m.insert("bare".into(), Value::Array(self.bare.iter().map(|c| Value::String(c.clone())).collect()));
        Value::Object(m)
    }

    fn from_json(v: Option<&Value>) -> Marks {
        let list = |k: &str| -> PerClient {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(c, s)| Some((c.clone(), s.as_u64()?)))
                .collect()
        };
        let bare = v
            .and_then(|v| v.get("bare"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        Marks { folded: list("folded"), sent: list("sent"), bare }
    }
}

#[derive(Serialize)]
struct StoredCheckoutKey<'a> {
    version: u64,
    key: &'a str,
}

/// The base record's stored form.
#[derive(Serialize)]
struct Stored<'a> {
    format: u32,
    owner: Owner,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_token: Option<String>,
    cart: StoredCart,
    annotations: &'a SortedMap<Sku, Annotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<LastError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_key: Option<StoredCheckoutKey<'a>>,
    promotions: Value,
    marks: Value,
    rev: u64,
}

impl Stored<'_> {
    /// The JSON serde writes for the record, written by hand: serde's serializer for it (and for
    /// the cart inside) was the largest function of the browser module.
    fn text(&self) -> String {
        use shared::wire::fast_json::{string, uint};
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"format\":");
        uint(&mut out, u64::from(self.format));
        out.extend_from_slice(match self.owner {
            Owner::Guest => b",\"owner\":\"guest\"",
            Owner::User => b",\"owner\":\"user\"",
        });
        for (name, token) in [(&b",\"guest_token\":"[..], &self.guest_token), (b",\"user_token\":", &self.user_token)] {
            if let Some(t) = token {
                out.extend_from_slice(name);
                string(&mut out, t);
            }
        }
        out.extend_from_slice(b",\"cart\":");
        self.cart.write_json(&mut out);
        out.extend_from_slice(b",\"annotations\":");
        write_annotations(&mut out, self.annotations);
        if let Some(e) = &self.last_error {
            out.extend_from_slice(b",\"last_error\":{\"code\":");
            string(&mut out, &e.code);
            out.extend_from_slice(b",\"message\":");
            string(&mut out, &e.message);
            out.push(b'}');
        }
        if let Some(k) = &self.checkout_key {
            out.extend_from_slice(b",\"checkout_key\":{\"version\":");
            uint(&mut out, k.version);
            out.extend_from_slice(b",\"key\":");
            string(&mut out, k.key);
            out.push(b'}');
        }
        for (name, v) in [(&b",\"promotions\":"[..], &self.promotions), (b",\"marks\":", &self.marks)] {
            out.extend_from_slice(name);
            shared::json::write(&mut out, v);
        }
        out.extend_from_slice(b",\"rev\":");
        uint(&mut out, self.rev);
        out.push(b'}');
        // Only whole strings and ASCII were written.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The time a stored record carries under `at` (an op's, a promotions lookup's), if readable.
pub(crate) fn stored_at(v: &Value) -> Option<Timestamp> {
    v.get("at").and_then(Value::as_str).and_then(Timestamp::parse_rfc3339)
}

/// The stored form of the annotations: `{"<sku>": {"current_price"?, "availability"?}, ...}`.
pub(crate) fn write_annotations(out: &mut Vec<u8>, annotations: &SortedMap<Sku, Annotation>) {
    use shared::wire::fast_json::{availability, money, string};
    out.push(b'{');
    for (i, (sku, a)) in annotations.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, sku.as_str());
        out.extend_from_slice(b":{");
        if let Some(p) = &a.current_price {
            out.extend_from_slice(b"\"current_price\":");
            money(out, p);
        }
        if let Some(v) = a.availability {
            if a.current_price.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"availability\":");
            out.extend_from_slice(availability(v));
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// Reads [`write_annotations`]' form; unreadable entries are skipped.
pub(crate) fn read_annotations(v: Option<&Value>) -> SortedMap<Sku, Annotation> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, a)| {
                let price = match a.get("current_price") {
                    None | Some(Value::Null) => None,
                    Some(p) => Some(Money::from_json(p).ok()?),
                };
                let availability = a.get("availability").and_then(wire::read::availability);
                Some((Sku::parse(k).ok()?, Annotation { current_price: price, availability }))
            })
            .collect(),
        _ => SortedMap::new(),
    }
}

/// The base record as read: everything but the op logs.
struct Base {
    state: ClientState,
    marks: Marks,
    /// Grows with every change of the confirmed cart or the marks, which travel together: a
    /// writer that read an older one takes the stored cart and marks rather than its own.
    rev: u64,
}

/// A push of pending ops to `POST /v1/cart/ops`.
#[derive(Clone, Debug)]
pub struct Push {
    pub body: Value,
    pub ids: Vec<String>,
    pub identity: Identity,
    epoch: u64,
    /// Each op's tab and seq, by op id.
    origins: Vec<(String, u64)>,
}

/// How a request ended, as far as the engine cares.
#[derive(Clone, Debug)]
pub enum Failure {
    /// No answer, a 5xx or a 429: try again later.
    Retry(String),
    /// A 4xx for the whole request: trying again cannot help.
    Refused { error: ErrorBody, status: u16 },
}

/// The state a UI renders (the JavaScript `CartSnapshot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub owner: Owner,
    pub version: u64,
    // Left out when empty: the browser binding writes the lines on lines of their own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineSnapshot>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub saved: Vec<LineSnapshot>,
    /// Cart lines out of stock or discontinued, apart from `lines` and left out of the totals.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<LineSnapshot>,
    pub item_count: u64,
    pub subtotal: Money,
    pub promo_codes: Vec<PromoCodeView>,
    pub discounts: Vec<DiscountView>,
    pub discount_total: Money,
    pub total: Money,
    pub pending_ops: usize,
    pub syncing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

impl LineSnapshot {
    /// A line of a cart view as the page sees it. A line with no price at add (one added
    /// offline, not yet priced by the server) shows the catalog price the client knows.
    pub fn of(l: &wire::LineView) -> LineSnapshot {
        LineSnapshot {
            sku: l.sku.clone(),
            quantity: l.quantity,
            price_at_add: l.price_at_add.or(l.current_price),
            added_at: l.added_at,
            current_price: l.current_price,
            price_changed: l.price_changed,
            availability: l.availability,
            discount: l.discount,
            line_total: l.line_total,
            reason: l.reason,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineSnapshot {
    pub sku: Sku,
    pub quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_at_add: Option<Money>,
    pub added_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Cart lines only, not the saved list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_total: Option<Money>,
    /// Why an unavailable line is unavailable: `out_of_stock` or `discontinued`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Availability>,
}

/// A change the view took since it was last rebuilt, after the ones before it.
#[derive(Debug)]
struct Applied {
    kind: OpKind,
    at: Timestamp,
    before: Option<Rc<Applied>>,
    /// The view as of this change, once a snapshot needed it: the next snapshot read replays
    /// from here rather than from the base. One link of a chain holds it at a time.
    cart: RefCell<Option<Rc<Cart>>>,
}

/// Changes kept as a chain before the view is copied again: a snapshot's view is replayed from at
/// most this many.
const REPLAY: usize = 32;

/// The view as of one moment, without copying it: the view as last copied, and the changes it
/// took since. Handing out a snapshot used to share the view itself, so the next change copied
/// every line of it; now a change adds one link, and only a snapshot the page reads replays,
/// from the last link a read left its view on (a page that reads every snapshot replays one).
#[derive(Clone, Debug)]
pub(crate) struct ViewAt {
    base: Rc<Cart>,
    since: Option<Rc<Applied>>,
    limits: Limits,
    /// How many changes `since` holds.
    len: usize,
}

impl ViewAt {
    /// A copy of `view`, with no change since.
    pub(crate) fn of(view: &Cart, limits: Limits) -> ViewAt {
        ViewAt { base: Rc::new(view.clone()), since: None, limits, len: 0 }
    }

    /// `view` took `kind` at `at` (it was as this one before): one link more, or, after
    /// [`REPLAY`] of them, a copy of `view`.
    pub(crate) fn push(&mut self, view: &Cart, kind: &OpKind, at: Timestamp) {
        if self.len == REPLAY {
            *self = ViewAt::of(view, self.limits);
        } else {
            let before = self.since.take();
            self.since = Some(Rc::new(Applied { kind: kind.clone(), at, before, cart: RefCell::new(None) }));
            self.len += 1;
        }
    }

    fn cart(&self) -> Rc<Cart> {
        let Some(last) = &self.since else { return self.base.clone() };
        if let Some(cart) = &*last.cart.borrow() {
            return cart.clone();
        }
        let mut chain = vec![&**last];
        let mut from = None;
        while let Some(before) = chain[chain.len() - 1].before.as_deref() {
            if let Some(cart) = before.cart.borrow_mut().take() {
                from = Some(cart);
                break;
            }
            chain.push(before);
        }
        // The link's cart is this read's alone once taken (a snapshot keeps no view after its
        // read), so it is changed in place rather than copied.
        let mut cart = match from {
            Some(cart) => Rc::try_unwrap(cart).unwrap_or_else(|cart| Cart::clone(&cart)),
            None => Cart::clone(&self.base),
        };
        for a in chain.iter().rev() {
            // Each of these applied when it was made, to this same cart.
            let _ = cart.apply(&a.kind, &self.limits, a.at);
        }
        let cart = Rc::new(cart);
        *last.cart.borrow_mut() = Some(cart.clone());
        cart
    }
}

/// The parts of a snapshot, shared with the engine as of one moment ([`Engine::frozen`]).
#[derive(Clone, Debug)]
pub struct Frozen {
    pub(crate) owner: Owner,
    pub(crate) version: u64,
    pub(crate) view: ViewAt,
    pub(crate) annotations: Rc<SortedMap<Sku, Annotation>>,
    pub(crate) promotions: Rc<KnownPromotions>,
    pub(crate) pending_ops: usize,
    pub(crate) last_error: Option<LastError>,
}

impl Frozen {
    /// The state a UI renders at `now`. The lines, their price annotations, the subtotal and the
    /// discounts come from `shared`'s `CartView` and discount engine, exactly as the server
    /// computes them, with the promotions this client knows; a code whose promotion it does not
    /// know yet is `pending` and takes nothing off.
    pub fn snapshot(&self, syncing: bool, now: Timestamp) -> Snapshot {
        let owner = self.owner;
        let known: &KnownPromotions = &self.promotions;
        let usage = |id: &PromotionId| known.usage(id);
        let promos = Promos { promotions: &known.list, usage: &usage, now };
        let cart = self.view.cart();
        let view = CartView::new(
            &cart,
            owner,
            Timestamp::default(),
            |line| {
                self.annotations.get(&line.sku).map(|a| wire::Annotation {
                    current_price: a.current_price,
                    availability: a.availability.unwrap_or(Availability::Unknown),
                })
            },
            &promos,
        );
        let line = LineSnapshot::of;
        Snapshot {
            owner,
            version: self.version,
            item_count: view.item_count,
            subtotal: view.subtotal,
            promo_codes: view
                .promo_codes
                .into_iter()
                .map(|mut c| {
                    // The client does not know the code's promotion yet: no discount until the
                    // server answers.
                    if !known.asked.contains(&c.code) {
                        (c.reason, c.pending) = (None, Some(true));
                    }
                    c
                })
                .collect(),
            discounts: view.discounts,
            discount_total: view.discount_total,
            total: view.total,
            lines: view.lines.iter().map(line).collect(),
            saved: view.saved.iter().map(line).collect(),
            unavailable: view.unavailable.iter().map(line).collect(),
            pending_ops: self.pending_ops,
            syncing,
            last_error: self.last_error.clone(),
        }
    }
}

/// The source of randomness (op ids, guest tokens): `crypto.getRandomValues` in a browser, a
/// seeded generator in simulations.
pub type Random = Box<dyn FnMut(&mut [u8])>;

/// Most ops one push carries.
pub const BATCH: usize = 100;

/// Ops per stored chunk of a tab's log: a change rewrites one chunk, never the whole state.
pub const CHUNK: u64 = 8;

/// The browser cart's state and its storage layout.
///
/// Tabs share localStorage, which has no atomic read-modify-write, so no key is written by two
/// tabs for a change: each tab appends its ops to a log of its own (`<key>:o:<client>:<chunk>`,
/// [`CHUNK`] ops a key), and the base record (`<key>`: identity, the confirmed cart, and which ops
/// are settled) is rewritten only where one tab at a time acts: a push, a read of the server's
/// cart, folding a local-only cart (the browser binding holds a Web Lock for those), or a login.
/// A tab's view is the confirmed cart with every tab's unsettled ops applied in time order.
pub struct Engine {
    storage: Box<dyn Storage>,
    key: String,
    limits: Limits,
    currency: Currency,
    random: Random,
    pub state: ClientState,
    marks: Marks,
    rev: u64,
    /// The base's text as this client last read or wrote it, to skip re-reading it unchanged.
    seen: Option<String>,
    /// The storage's generation when this client last read it.
    generation: u64,
    /// Every tab's unsettled ops, by client, in seq order, as last read; this tab's own as it
    /// wrote them.
    logs: Vec<(String, Vec<PendingOp>)>,
    /// Other tabs' chunks (key, text) as last read, so an unchanged chunk is not parsed again.
    chunks: Vec<(String, String)>,
    /// This tab's unsettled ops as stored text, in seq order.
    own_text: Vec<(u64, String)>,
    /// The confirmed cart with every pending op applied, kept up to date change by change. Never
    /// shared: snapshots take `view_at`.
    view: Cart,
    /// The view for snapshots: a copy of it and the changes since ([`ViewAt`]).
    view_at: ViewAt,
    /// This tab's log could not be written (quota, disabled storage): it is kept in memory and
    /// written whole at the next chance.
    unsaved: bool,
    /// No server: changes are folded into the confirmed cart ([`Engine::compact`]).
    local_only: bool,
    /// Ids of the ops of the push under way, if any (per client, never stored).
    in_flight: Vec<String>,
    /// Grows with each identity change, so an answer to an older identity is ignored.
    epoch: u64,
    failures: u32,
    /// This tab's client id and the `seq` its next op takes (api-v1 Ops).
    client: String,
    next_seq: u64,
    /// The time of this tab's last op: a later op never carries an earlier time, so time order
    /// keeps each tab's ops in sequence.
    last_at: Timestamp,
    /// The store holds a newer format than this library's: it is never written, and this client
    /// keeps its cart in memory (`storage_newer`).
    read_only: bool,
    /// The server refused this identity (`401`, or a guest cart merged at a login elsewhere):
    /// nothing is pushed before this time (ms since the epoch) unless the identity changes.
    blocked: Option<(ErrorBody, i64)>,
    /// The clock (ms) and how long this tab keeps its settled ops in storage after it first saw
    /// them settled. localStorage reaches other tabs late (each renderer has its own copy), so a
    /// tab that folds with a late copy of the base record must still find those ops in this log,
    /// or they would be lost; with them there, it folds them into its (older) cart exactly once.
    /// Without a clock (native tests), settled ops leave at once.
    clock: Option<(Box<dyn Fn() -> i64>, i64)>,
    /// This tab's folded marks as first seen, and when.
    fold_seen: Vec<(u64, i64)>,
    /// See [`Engine::changes`].
    changes: u64,
}

fn uuid_v4(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; 16];
    random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    // By hand: `format!` per byte is most of an op's cost in the browser.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(x >> 4)] as char);
        out.push(HEX[usize::from(x & 15)] as char);
    }
    out
}

fn new_guest_token(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; 24];
    random(&mut b);
    GuestToken::from_random_bytes(&b).as_str().to_owned()
}

/// A cart from the server's view. Only the order of lines matters to `apply` (new lines go
/// last), so sequence numbers are taken from the view's order.
pub fn cart_from_view(view: &CartView) -> Cart {
    let mut cart = Cart::new(view.currency);
    cart.version = view.version;
    cart.updated_at = view.updated_at;
    let mut seq = 0;
    // Unavailable lines are cart lines the view shows apart: the cart keeps them.
    for (list, saved) in [(&view.lines, false), (&view.unavailable, false), (&view.saved, true)] {
        for l in list {
            let line = CartLine { sku: l.sku.clone(), quantity: l.quantity, price_at_add: l.price_at_add, added_at: l.added_at, seq };
            if saved {
                cart.saved.push(line)
            } else {
                cart.lines.push(line)
            }
            seq += 1;
        }
    }
    cart.next_seq = seq;
    cart.promo_codes = view.promo_codes.iter().map(|c| c.code.clone()).collect();
    cart
}

/// Most SKUs whose last catalog price the client remembers beyond its cart's lines.
const REMEMBERED_PRICES: usize = 500;

/// The annotations of a new server cart, keeping the last known price of SKUs that left it: a
/// line added again (offline, say) shows the catalog price the client knows until the server
/// answers with its own. Their availability is not kept: it is stale by then.
pub(crate) fn annotations_after(old: &SortedMap<Sku, Annotation>, view: &CartView) -> SortedMap<Sku, Annotation> {
    let mut new = annotations_of(view);
    for (sku, a) in old.iter() {
        if new.len() >= REMEMBERED_PRICES {
            break;
        }
        if a.current_price.is_some() && new.get(sku).is_none() {
            new.insert(sku.clone(), Annotation { current_price: a.current_price, availability: None });
        }
    }
    new
}

fn annotations_of(view: &CartView) -> SortedMap<Sku, Annotation> {
    view.lines
        .iter()
        .chain(&view.saved)
        .chain(&view.unavailable)
        .filter(|l| l.current_price.is_some() || l.availability.is_some())
        .map(|l| (l.sku.clone(), Annotation { current_price: l.current_price, availability: l.availability }))
        .collect()
}

impl Engine {
    pub fn new(storage: Box<dyn Storage>, key: &str, limits: Limits, currency: Currency, mut random: Random) -> Engine {
        let token = new_guest_token(&mut *random);
        let state = ClientState {
            identity: Identity::Guest { token },
            confirmed: Cart::new(currency),
            annotations: Rc::default(),
            pending: Vec::new(),
            last_error: None,
            checkout_key: None,
            promotions: Rc::default(),
        };
        let mut e = Engine {
            storage,
            key: key.to_owned(),
            limits,
            currency,
            random,
            view: state.confirmed.clone(),
            view_at: ViewAt::of(&state.confirmed, limits),
            state,
            marks: Marks::default(),
            rev: 0,
            seen: None,
            generation: 0,
            logs: Vec::new(),
            chunks: Vec::new(),
            own_text: Vec::new(),
            unsaved: false,
            local_only: false,
            in_flight: Vec::new(),
            epoch: 0,
            failures: 0,
            client: String::new(),
            next_seq: 1,
            last_at: Timestamp::default(),
            read_only: false,
            blocked: None,
            clock: None,
            fold_seen: Vec::new(),
            changes: 0,
        };
        e.client = uuid_v4(&mut *e.random);
        e.reload();
        if e.seen.is_none() {
            e.persist();
        }
        e
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Keeps this tab's settled ops in storage for `grace_ms` after they are first seen settled
    /// (see the `clock` field).
    pub fn set_clock(&mut self, clock: Box<dyn Fn() -> i64>, grace_ms: i64) {
        self.clock = Some((clock, grace_ms));
    }

    /// How far this tab's log may be pruned from storage now.
    fn prunable(&mut self, folded: u64) -> u64 {
        let Some((clock, grace)) = &self.clock else { return folded };
        let now = clock();
        if self.fold_seen.last().is_none_or(|(f, _)| *f < folded) {
            self.fold_seen.push((folded, now));
        }
        let ripe = self.fold_seen.iter().filter(|(_, at)| now - *at >= *grace).map(|(f, _)| *f).max().unwrap_or(0);
        self.fold_seen.retain(|(f, _)| *f > ripe);
        ripe
    }

    /// This tab's client id: its log is `<key>:o:<client>:<chunk>`.
    pub fn client(&self) -> &str {
        &self.client
    }

    fn log_prefix(&self) -> String {
        [&self.key, ":o:"].concat()
    }

    /// `<key>:o:<client>:<chunk>`, put together by hand: one is made for every change.
    fn chunk_key(&self, client: &str, chunk: u64) -> String {
        let mut key = String::with_capacity(self.key.len() + client.len() + 24);
        key.push_str(&self.key);
        key.push_str(":o:");
        key.push_str(client);
        key.push(':');
        key.push_str(wire::decimal(chunk, &mut [0; 20]));
        key
    }

    /// Another identity: answers to requests of the old one are ignored, and a refusal of the
    /// old one no longer holds pushes back.
    fn new_epoch(&mut self) {
        self.epoch += 1;
        self.in_flight.clear();
        self.blocked = None;
    }

    /// The server refused this identity and no push has succeeded since (whether or not the
    /// pause after it has ended).
    pub fn identity_refused(&self) -> bool {
        self.blocked.is_some()
    }

    /// Why pushes are held back at `now_ms`, if they are: the server refused this identity and
    /// the pause after that has not ended. A new login (in any tab) lifts it at once.
    pub fn push_blocked(&self, now_ms: i64) -> Option<(&ErrorBody, i64)> {
        self.blocked.as_ref().filter(|(_, until)| *until > now_ms).map(|(e, until)| (e, until - now_ms))
    }

    /// A clean state (unreadable data, a logout).
    fn fresh_state(&mut self, last_error: Option<LastError>) -> ClientState {
        ClientState {
            identity: Identity::Guest { token: new_guest_token(&mut *self.random) },
            confirmed: Cart::new(self.currency),
            annotations: Rc::default(),
            pending: Vec::new(),
            last_error,
            checkout_key: None,
            promotions: Rc::default(),
        }
    }

    /// Reads what other tabs wrote, if the storage says anything changed since this client last
    /// looked. Cheap when nothing did: one counter is compared.
    pub fn refresh(&mut self) {
        if self.storage.generation() != self.generation {
            self.reload();
        }
    }

    /// Reads the base record and every tab's log again where they changed. Returns whether
    /// anything did. Unreadable data starts a clean cart and says why.
    pub fn reload(&mut self) -> bool {
        self.generation = self.storage.generation();
        let mut changed = self.read_base();
        changed |= self.read_logs();
        if changed {
            self.rebuild();
        }
        changed
    }

    fn read_base(&mut self) -> bool {
        let raw = self.storage.get(&self.key);
        if raw.is_some() && raw == self.seen {
            return false;
        }
        let Some(text) = raw else {
            return false;
        };
        let before = self.state.identity.clone();
        self.read_only = false;
        match self.parse(&text) {
            Ok(theirs) if self.unsaved_base() => {
                self.absorb(theirs);
                self.seen = Some(text);
            }
            Ok(base) => {
                self.state = base.state;
                self.marks.merge(&base.marks);
                self.rev = base.rev;
                self.seen = Some(text);
            }
            Err(problem) if problem.is(ErrorCode::StorageNewer) => {
                // Another page, of a newer version, owns the store: leave it alone.
                self.read_only = true;
                self.state.last_error = Some(problem);
                self.seen = Some(text);
                return true;
            }
            Err(problem) => {
                match self.migrate(&text) {
                    Some(Ok(migrated)) => {
                        self.state = migrated.state;
                        self.marks = migrated.marks;
                    }
                    Some(Err(unreadable)) => {
                        let fresh = self.fresh_state(Some(unreadable));
                        self.state = fresh;
                    }
                    None => {
                        let fresh = self.fresh_state(Some(problem));
                        self.state = fresh;
                    }
                }
                self.seen = None;
                self.write_base();
                return true;
            }
        }
        if self.state.identity != before {
            self.new_epoch();
        }
        true
    }

    /// The base could not be written when last changed (storage full): it is newer in memory.
    fn unsaved_base(&self) -> bool {
        self.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::StorageFull)) && self.seen.is_some()
    }

    /// Reads every other tab's log chunks that changed since last read.
    fn read_logs(&mut self) -> bool {
        let prefix = self.log_prefix();
        let mut changed = false;
        let mut now: Vec<(String, String)> = Vec::new();
        for k in self.storage.keys_with_prefix(&prefix) {
            let Some((client, chunk)) = k.strip_prefix(prefix.as_str()).and_then(|rest| rest.rsplit_once(':')) else { continue };
            if client == self.client || chunk.parse::<u64>().is_err() {
                continue;
            }
            let Some(text) = self.storage.get(&k) else { continue };
            changed |= !self.chunks.iter().any(|(ck, ct)| *ck == k && *ct == text);
            now.push((k, text));
        }
        changed |= now.len() != self.chunks.len();
        self.chunks = now;
        if changed {
            // Other tabs' logs, parsed again from their chunks (in chunk order); this tab's own
            // stays as is.
            let own = self.take_log(&self.client.clone());
            let mut parts: Vec<(String, u64, Vec<PendingOp>)> = Vec::new();
            for (k, text) in &self.chunks {
                let Some((client, chunk)) = k.strip_prefix(prefix.as_str()).and_then(|rest| rest.rsplit_once(':')) else { continue };
                let n = chunk.parse::<u64>().unwrap_or(0);
                // Insertion in (client, chunk) order: a handful of chunks, no sort routine.
                let at = parts.iter().position(|(c, m, _)| (c.as_str(), *m) > (client, n)).unwrap_or(parts.len());
                parts.insert(at, (client.to_owned(), n, self.parse_chunk(client, text)));
            }
            let mut logs: Vec<(String, Vec<PendingOp>)> = Vec::new();
            for (client, _, ops) in parts {
                match logs.last_mut() {
                    Some((c, log)) if *c == client => log.extend(ops),
                    _ => logs.push((client, ops)),
                }
            }
            if let Some(own) = own {
                logs.push((self.client.clone(), own));
            }
            self.logs = logs;
        }
        changed
    }

    fn take_log(&mut self, client: &str) -> Option<Vec<PendingOp>> {
        let i = self.logs.iter().position(|(c, _)| c == client)?;
        Some(self.logs.swap_remove(i).1)
    }

    fn has_log(&self, client: &str) -> bool {
        self.logs.iter().any(|(c, _)| c == client)
    }

    /// The ops of one stored chunk of `client`'s log; unreadable ones are skipped.
    fn parse_chunk(&self, client: &str, text: &str) -> Vec<PendingOp> {
        let Ok(Value::Array(list)) = shared::json::parse(text) else { return Vec::new() };
        let Ok(parsed) = wire::parse_op_list(&list, &self.limits) else { return Vec::new() };
        parsed
            .into_iter()
            .zip(&list)
            .filter_map(|((id, kind), v)| {
                let kind = kind.ok()?;
                if id.client().is_none_or(|c| c.client != client) {
                    return None;
                }
                let at = stored_at(v).unwrap_or_default();
                Some(PendingOp { op: Op { id, kind }, at, sent: false })
            })
            .collect()
    }

    /// The pending ops and the view, from the confirmed cart, the logs and the marks. This tab's
    /// settled ops leave its log (in memory and in storage).
    fn rebuild(&mut self) {
        self.changes += 1;
        self.prune_own();
        for (client, log) in &mut self.logs {
            let folded = self.marks.folded(client);
            log.retain(|p| p.origin().1 > folded);
        }
        self.logs.retain(|(_, log)| !log.is_empty());
        // Every tab's ops in time order (each tab's are in seq order, and so in time order): a
        // merge of the logs, which are few.
        let mut heads = vec![0usize; self.logs.len()];
        let mut pending: Vec<PendingOp> = Vec::new();
        loop {
            let mut best: Option<usize> = None;
            for (i, (_, log)) in self.logs.iter().enumerate() {
                let Some(p) = log.get(heads[i]) else { continue };
                if best.is_none_or(|b| (p.at, p.origin()) < (self.logs[b].1[heads[b]].at, self.logs[b].1[heads[b]].origin())) {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            let p = &self.logs[b].1[heads[b]];
            let sent = p.origin().1 <= get_of(&self.marks.sent, p.origin().0);
            pending.push(PendingOp { sent, ..p.clone() });
            heads[b] += 1;
        }
        self.state.pending = pending;
        let mut view = self.state.confirmed.clone();
        for p in &self.state.pending {
            let _ = view.apply(&p.op.kind, &self.limits, p.at);
        }
        self.view = view;
        self.copy_view();
    }

    /// Snapshots start again from a copy of the view: the engine's own is never shared, so a
    /// change never copies it.
    fn copy_view(&mut self) {
        self.view_at = ViewAt::of(&self.view, self.limits);
    }

    /// Takes this tab's settled ops out of its stored log, once they have been settled long
    /// enough.
    fn prune_own(&mut self) {
        let own_folded = self.marks.folded(&self.client);
        let prunable = self.prunable(own_folded);
        let settled = self.own_text.partition_point(|(s, _)| *s <= prunable);
        if settled > 0 {
            let mut chunks: Vec<u64> = self.own_text[..settled].iter().map(|(s, _)| (s - 1) / CHUNK).collect();
            chunks.dedup();
            self.own_text.drain(..settled);
            for chunk in chunks {
                self.write_own_chunk(chunk);
            }
        }
    }

    /// Writes chunk `chunk` of this tab's log (or removes it when all its ops are settled).
    fn write_own_chunk(&mut self, chunk: u64) {
        if self.read_only {
            return;
        }
        let (lo, hi) = (chunk * CHUNK + 1, chunk * CHUNK + CHUNK);
        let key = self.chunk_key(&self.client, chunk);
        let mut text = String::from("[");
        let from = self.own_text.partition_point(|(s, _)| *s < lo);
        let to = self.own_text.partition_point(|(s, _)| *s <= hi);
        for (i, (_, t)) in self.own_text[from..to].iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(t);
        }
        text.push(']');
        let before = self.storage.generation();
        let result = if text.len() == 2 {
            self.storage.remove(&key);
            Ok(())
        } else {
            self.storage.set(&key, &text)
        };
        if before == self.generation {
            self.generation = self.storage.generation();
        }
        match result {
            Ok(()) if self.unsaved => {
                // Storage takes writes again: everything kept in memory is written now.
                self.unsaved = false;
                let mut chunks: Vec<u64> = self.own_text.iter().map(|(s, _)| (s - 1) / CHUNK).collect();
                chunks.dedup();
                for c in chunks {
                    self.write_own_chunk(c);
                }
                if self.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::StorageFull)) {
                    self.state.last_error = None;
                }
            }
            Ok(()) => {}
            Err(e) => {
                self.unsaved = true;
                self.state.last_error = Some(storage_error(e));
            }
        }
    }

    fn parse(&self, text: &str) -> Result<Base, LastError> {
        let v: Value = shared::json::parse(text).map_err(|e| corrupt(e.message()))?;
        match v.get("format").and_then(Value::as_u64) {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) if f < u64::from(FORMAT) => {
                return Err(LastError::new(
                    ErrorCode::StorageOutdated,
                    ["the stored cart is in an older format (", &int(f), "); starting a new cart"].concat(),
                ));
            }
            Some(f) => {
                return Err(LastError::new(
                    ErrorCode::StorageNewer,
                    [
                        "the stored cart is in a newer format (",
                        &int(f),
                        ") than this page understands; it is left untouched and this page keeps its cart in memory",
                    ]
                    .concat(),
                ));
            }
            _ => return Err(corrupt("not a cart of this library".into())),
        }
        let state = self.parse_state(&v, None)?;
        Ok(Base { state, marks: Marks::from_json(v.get("marks")), rev: v.get("rev").and_then(Value::as_u64).unwrap_or(0) })
    }

    /// Reads the parts every stored format shares. `pending` receives a format-1 record's queue.
    fn parse_state(&self, v: &Value, pending: Option<&mut Vec<PendingOp>>) -> Result<ClientState, LastError> {
        let text_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let identity = match (v.get("owner").and_then(Value::as_str), text_of("guest_token"), text_of("user_token")) {
            (Some("guest"), Some(t), _) if GuestToken::parse(&t).is_ok() => Identity::Guest { token: t },
            (Some("user"), _, Some(jwt)) if !jwt.is_empty() => Identity::User { jwt },
            _ => return Err(corrupt("no valid identity".into())),
        };
        let stored_cart = v.get("cart").and_then(StoredCart::from_json).ok_or_else(|| corrupt("no readable cart".into()))?;
        let annotations = read_annotations(v.get("annotations"));
        let last_error = match (
            v.get("last_error").and_then(|e| e.get("code")).and_then(Value::as_str),
            v.get("last_error").and_then(|e| e.get("message")).and_then(Value::as_str),
        ) {
            (Some(code), Some(message)) => Some(LastError { code: code.to_owned(), message: message.to_owned() }),
            _ => None,
        };
        let checkout_key = v.get("checkout_key").and_then(|k| {
            let key = k.get("key").and_then(Value::as_str).filter(|k| shared::parse_idempotency_key(k).is_ok())?;
            Some(CheckoutKey { version: k.get("version").and_then(Value::as_u64)?, key: key.to_owned() })
        });
        let confirmed = stored_cart.into_cart().ok_or_else(|| corrupt("unknown cart format".into()))?;
        if let Some(out) = pending {
            let list = match v.get("pending") {
                Some(Value::Array(p)) => p.as_slice(),
                _ => return Err(corrupt("no pending list".into())),
            };
            // However many ops a shopper queued offline, they are read back: the request cap
            // applies to a push, and pushes are made in batches.
            let parsed = wire::parse_op_list(list, &self.limits).map_err(|e| corrupt(e.message))?;
            for ((id, kind), v) in parsed.into_iter().zip(list) {
                let at = stored_at(v).unwrap_or(confirmed.updated_at);
                if let Ok(kind) = kind {
                    out.push(PendingOp { op: Op { id, kind }, at, sent: v.get("sent").and_then(Value::as_bool).unwrap_or(true) });
                }
            }
        }
        let promotions = v.get("promotions").map(|p| KnownPromotions::from_json(p, confirmed.currency)).unwrap_or_default();
        Ok(ClientState {
            identity,
            confirmed,
            annotations: Rc::new(annotations),
            pending: Vec::new(),
            last_error,
            checkout_key,
            promotions: Rc::new(promotions),
        })
    }

    /// A record of format 1 (one key holding the cart and the queue), moved to this format: its
    /// queued ops join this tab's log under their own op ids, so none is lost or applied twice.
    /// `None` if `text` is no format-1 record.
    fn migrate(&mut self, text: &str) -> Option<Result<Base, LastError>> {
        let v: Value = shared::json::parse(text).ok()?;
        if v.get("format").and_then(Value::as_u64) != Some(1) {
            return None;
        }
        let mut queue = Vec::new();
        let state = match self.parse_state(&v, Some(&mut queue)) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let mut marks = Marks::default();
        for p in queue {
            // Numbered or not, the op goes out bare under this tab's numbering: its op id is what
            // the server knows it by.
            let seq = self.take_seq();
            marks.go_bare(&self.client.clone());
            let Ok(id) = OpId::parse(p.op.id.as_str()) else { continue };
            self.append_own(PendingOp { op: Op { id: id.with_client(seq), kind: p.op.kind }, at: p.at, sent: false });
        }
        Some(Ok(Base { state, marks, rev: 0 }))
    }

    /// Adds an op to this tab's log, in memory and in storage.
    fn append_own(&mut self, p: PendingOp) {
        let seq = p.origin().1;
        self.own_text.push((seq, wire::op_text(&p.op, Some(p.at))));
        match self.logs.iter_mut().find(|(c, _)| *c == self.client) {
            Some((_, log)) => log.push(p.clone()),
            None => self.logs.push((self.client.clone(), vec![p.clone()])),
        }
        self.state.pending.push(p);
        self.write_own_chunk((seq - 1) / CHUNK);
    }

    /// Writes the base record. A full or refused storage keeps the state in memory and says so.
    ///
    /// Another tab may have written since this one last read (a promotions lookup, a checkout
    /// key). Rather than overwrite that, the two are merged: the cart and marks of the higher
    /// `rev` win (in a browser only one tab at a time changes them), the marks merge, and the
    /// stored checkout key stands (a key another tab settled stays settled).
    pub fn persist(&mut self) {
        self.write_base();
    }

    fn write_base(&mut self) {
        self.changes += 1;
        if self.read_only {
            return;
        }
        if let Some(text) = self.storage.get(&self.key)
            && Some(&text) != self.seen.as_ref()
            && let Ok(theirs) = self.parse(&text)
        {
            self.absorb(theirs);
            self.rebuild();
        }
        let (owner, guest_token, user_token) = match &self.state.identity {
            Identity::Guest { token } => (Owner::Guest, Some(token.clone()), None),
            Identity::User { jwt } => (Owner::User, None, Some(jwt.clone())),
        };
        let stored = Stored {
            format: FORMAT,
            owner,
            guest_token,
            user_token,
            cart: StoredCart::from(&self.state.confirmed),
            annotations: &self.state.annotations,
            last_error: self.state.last_error.clone().filter(|e| !e.is(ErrorCode::StorageFull)),
            checkout_key: self.state.checkout_key.as_ref().map(|k| StoredCheckoutKey { version: k.version, key: &k.key }),
            promotions: self.state.promotions.to_json(),
            marks: self.marks.to_json(),
            rev: self.rev,
        };
        let text = stored.text();
        let before = self.storage.generation();
        let result = self.storage.set(&self.key, &text);
        if before == self.generation {
            self.generation = self.storage.generation();
        }
        match result {
            Ok(()) => {
                if self.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::StorageFull)) && !self.unsaved {
                    self.state.last_error = None;
                }
                self.seen = Some(text);
            }
            Err(e) => self.state.last_error = Some(storage_error(e)),
        }
    }

    /// The confirmed cart or the marks changed here: the next write of the base carries them.
    fn changed_cart(&mut self) {
        self.rev += 1;
    }

    fn absorb(&mut self, theirs: Base) {
        if theirs.state.identity != self.state.identity {
            // The other tab logged in or out meanwhile: its identity and cart stand, and this
            // tab's queued changes follow them.
            self.state.identity = theirs.state.identity;
            self.state.confirmed = theirs.state.confirmed;
            self.state.annotations = theirs.state.annotations;
            self.rev = self.rev.max(theirs.rev);
            self.new_epoch();
        } else if theirs.rev >= self.rev {
            self.state.confirmed = theirs.state.confirmed;
            self.state.annotations = theirs.state.annotations;
            self.rev = theirs.rev;
        }
        self.marks.merge(&theirs.marks);
        // This client changes the key only right after reading the store, and saves at once: what
        // the store holds is the newest word on it (a key another tab settled stays settled).
        self.state.checkout_key = theirs.state.checkout_key;
        if theirs.state.promotions.at > self.state.promotions.at {
            self.state.promotions = theirs.state.promotions;
        }
    }

    /// The confirmed cart with every pending op applied.
    pub fn optimistic(&self) -> Cart {
        self.view.clone()
    }

    /// The cart a UI shows (the confirmed cart with every pending op applied), by reference.
    pub fn view(&self) -> &Cart {
        &self.view
    }

    /// What a snapshot is made of, frozen as of now: cheap (shared, not copied), so the
    /// browser binding hands one out per change and renders it only if it is read.
    pub fn frozen(&self) -> Frozen {
        Frozen {
            owner: match self.state.identity {
                Identity::Guest { .. } => Owner::Guest,
                Identity::User { .. } => Owner::User,
            },
            version: self.state.confirmed.version,
            view: self.view_at.clone(),
            annotations: self.state.annotations.clone(),
            promotions: self.state.promotions.clone(),
            // A local-only cart has nothing to push: its queue is only folded away.
            pending_ops: if self.local_only { 0 } else { self.state.pending.len() },
            last_error: self.state.last_error.clone(),
        }
    }

    /// The state a UI renders at `now` (see [`Frozen::snapshot`]).
    pub fn snapshot(&self, syncing: bool, now: Timestamp) -> Snapshot {
        self.frozen().snapshot(syncing, now)
    }

    /// Grows with every change of what a snapshot shows (but `syncing`).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The query of the promotions lookup this client needs now (`codes=A,B`, or empty for the
    /// automatic ones only), if any: when a code on the cart was never looked up, or the last
    /// lookup is older than [`PROMOTIONS_TTL_MS`]. Returns the codes it covers too.
    pub fn promotions_query(&self, now: Timestamp) -> Option<(String, SortedSet<PromoCode>)> {
        if self.state.promotions.fresh(&self.view.promo_codes, now) {
            return None;
        }
        let codes: SortedSet<PromoCode> = self.view.promo_codes.iter().cloned().collect();
        let list: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        Some((if list.is_empty() { String::new() } else { ["codes=", &list.join(",")].concat() }, codes))
    }

    /// The answer to a promotions lookup that covered `asked`.
    pub fn finish_promotions(&mut self, asked: SortedSet<PromoCode>, answer: &Value, now: Timestamp) {
        self.refresh();
        self.state.promotions = Rc::new(KnownPromotions::from_answer(answer, asked, Some(now), self.currency));
        self.write_base();
    }

    /// Applies a change locally and queues it in this tab's log. An op the cart would reject
    /// (bad input, a missing line, a full cart) is refused here and changes nothing. Writes one
    /// chunk of this tab's log and nothing else.
    pub fn mutate(&mut self, kind: OpKind, now: Timestamp) -> Result<(), CartError> {
        self.refresh();
        let at = now.max(self.last_at);
        self.view.apply(&kind, &self.limits, at)?;
        self.last_at = at;
        self.view_at.push(&self.view, &kind, at);
        // `unreachable!` rather than `expect`: `expect` would format the error with its `Debug`,
        // which brings every error code's name into the browser module (0.8 KB gzip).
        let id = OpId::parse(&uuid_v4(&mut *self.random)).unwrap_or_else(|_| unreachable!("a uuid is a valid op id"));
        let id = id.with_client(self.take_seq());
        self.changes += 1;
        // Settled ops leave the log when the view is next rebuilt (a fold, a push, another tab's
        // write), off the call: pruning here made the first change after a fold pay for removing
        // every chunk it settled (the slowest one in a hundred calls).
        self.append_own(PendingOp { op: Op { id, kind }, at, sent: false });
        Ok(())
    }

    fn take_seq(&mut self) -> ClientSeq {
        let seq = ClientSeq::parse(&self.client, self.next_seq).unwrap_or_else(|_| unreachable!("a uuid is a valid client id"));
        self.next_seq += 1;
        seq
    }

    /// Makes this a local-only cart (no endpoint): changes are folded into the confirmed cart
    /// by [`Engine::compact`].
    pub fn set_local_only(&mut self, local: bool) {
        self.local_only = local;
    }

    pub fn is_local_only(&self) -> bool {
        self.local_only
    }

    /// Folds every tab's pending ops into the confirmed cart of a local-only cart (its version
    /// stays the last server version seen, none) and marks them settled, so logs stay short.
    /// One tab at a time (the browser binding holds a Web Lock).
    pub fn compact(&mut self) {
        self.reload();
        if !self.local_only || self.state.pending.is_empty() {
            return;
        }
        let version = self.state.confirmed.version;
        self.state.confirmed = self.view.clone();
        self.state.confirmed.version = version;
        for p in std::mem::take(&mut self.state.pending) {
            let (client, seq) = p.origin();
            self.marks.fold(client, seq);
        }
        self.changed_cart();
        self.write_base();
        self.rebuild();
    }

    /// Removes the logs of tabs that are gone (`live` holds the clients of the open tabs, from
    /// their Web Locks) once every op in them is settled, and forgets their marks. Only the
    /// binding knows which tabs are open; without that knowledge nothing is removed.
    pub fn drop_dead_logs(&mut self, live: &[String]) {
        self.reload();
        let prefix = self.log_prefix();
        let gone = |c: &str| c != self.client && !live.iter().any(|l| l == c);
        let mut removed = false;
        for k in self.storage.keys_with_prefix(&prefix) {
            let Some((client, _)) = k.strip_prefix(prefix.as_str()).and_then(|rest| rest.rsplit_once(':')) else { continue };
            if gone(client) && !self.has_log(client) {
                self.storage.remove(&k);
                removed = true;
            }
        }
        let dead: Vec<String> =
            self.marks.folded.iter().chain(&self.marks.sent).map(|(c, _)| c).filter(|c| gone(c) && !self.has_log(c)).cloned().collect();
        if removed || !dead.is_empty() {
            for c in &dead {
                self.marks.forget(c);
            }
            self.changed_cart();
            self.write_base();
            self.reload();
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The body of a push or merge carrying `ops`: each with its tab's numbering, unless that tab
    /// goes bare.
    fn ops_body(&self, ops: &[PendingOp]) -> Vec<Value> {
        ops.iter()
            .map(|p| {
                let (client, _) = p.origin();
                if self.marks.is_bare(client) {
                    let bare = Op {
                        id: OpId::parse(p.op.id.as_str()).unwrap_or_else(|_| unreachable!("a kept op id is valid")),
                        kind: p.op.kind.clone(),
                    };
                    wire::op_to_json(&bare, Some(p.at))
                } else {
                    wire::op_to_json(&p.op, Some(p.at))
                }
            })
            .collect()
    }

    /// The next push, if there are pending ops (of any tab) and none is under way. Resending ops
    /// that were sent before (their answer was lost) is safe: the server applies each op once.
    pub fn begin_push(&mut self) -> Option<Push> {
        self.reload();
        if !self.in_flight.is_empty() || self.state.pending.is_empty() || self.local_only {
            return None;
        }
        let batch: Vec<PendingOp> = self.state.pending.iter().take(BATCH).cloned().collect();
        for p in &batch {
            let (client, seq) = p.origin();
            self.marks.mark_sent(client, seq);
        }
        self.in_flight = batch.iter().map(|p| p.op.id.as_str().to_owned()).collect();
        let ops = self.ops_body(&batch);
        // Other tabs must know these may be on the server before they take a read of its cart.
        self.changed_cart();
        self.write_base();
        self.rebuild();
        Some(Push {
            body: shared::json::object([("ops", Value::Array(ops))]),
            ids: self.in_flight.clone(),
            identity: self.state.identity.clone(),
            epoch: self.epoch,
            origins: batch.iter().map(|p| (p.origin().0.to_owned(), p.origin().1)).collect(),
        })
    }

    pub fn push_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The server's answer to a push: every op it reported on is settled, the rejected ones
    /// with a `lastError`; the server's cart becomes the confirmed cart unless a newer one is
    /// already known.
    pub fn finish_push(&mut self, push: &Push, answer: Result<OpsResponse, Failure>, now_ms: i64, jitter: f64) {
        self.reload();
        if push.epoch != self.epoch {
            return;
        }
        self.in_flight.clear();
        match answer {
            Ok(res) => {
                self.failures = 0;
                self.blocked = None;
                for r in &res.results {
                    if let Some(i) = push.ids.iter().position(|id| *id == r.op_id) {
                        let (client, seq) = &push.origins[i];
                        self.marks.fold(client, *seq);
                    }
                }
                if let Some(r) = res.results.iter().rev().find(|r| r.status == "rejected") {
                    let e = r.error.clone().unwrap_or_else(|| ErrorBody::new(ErrorCode::InvalidOp, "the server rejected an op"));
                    self.state.last_error = Some(e.into());
                } else if self.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::NetworkError)) {
                    self.state.last_error = None;
                }
                self.accept_cart(&res.cart);
            }
            Err(Failure::Retry(why)) => {
                self.failures += 1;
                self.state.last_error = Some(LastError::new(ErrorCode::NetworkError, why));
            }
            Err(Failure::Refused { error, .. }) if error.is(ErrorCode::OpOutOfOrder) => {
                // A gap in a client's sequence: nothing was applied. That client's ops go bare
                // from now on (their op ids still tell duplicates), after a pause.
                self.failures += 1;
                if let Some(client) = error.details.get("client_id").and_then(Value::as_str) {
                    self.marks.go_bare(client);
                }
            }
            Err(Failure::Refused { error, status }) if status == 401 || error.is(ErrorCode::CartMerged) => {
                // An identity problem: an expired or revoked token (a new login renews it), or a
                // guest cart merged at a login elsewhere (the ops go to the user's cart once this
                // client has the user's token). Every op is kept; pushing again at once could
                // only fail again, so pushes pause with backoff until the identity changes.
                self.failures += 1;
                let until = now_ms + self.backoff_ms(jitter) as i64;
                self.state.last_error = Some(error.clone().into());
                self.blocked = Some((error, until));
            }
            Err(Failure::Refused { error, .. }) => {
                self.failures = 0;
                // Our own ops were refused as a whole: sending them again would only fail again.
                // The server settled none of them, so their tabs' later ops would leave a gap in
                // its sequence: those tabs go bare.
                for (client, seq) in &push.origins {
                    self.marks.fold(client, *seq);
                    self.marks.go_bare(client);
                }
                self.state.last_error = Some(error.into());
            }
        }
        self.changed_cart();
        self.write_base();
        self.rebuild();
    }

    /// Per client, the last seq queued now: [`Engine::settled`] tells when all of them are.
    pub fn pending_marks(&self) -> PerClient {
        let mut marks = PerClient::new();
        for p in &self.state.pending {
            let (c, s) = p.origin();
            raise(&mut marks, c, s);
        }
        marks
    }

    /// Every op up to `marks` is settled.
    pub fn settled(&self, marks: &PerClient) -> bool {
        marks.iter().all(|(c, s)| self.marks.folded(c) >= *s)
    }

    /// A cart read from the server (`GET /v1/cart`). `store`: also write it for the other tabs
    /// (the leader does; another tab keeps it in memory, so it never writes over the leader's
    /// newer record with an older copy).
    pub fn finish_pull(&mut self, identity: &Identity, view: &CartView, store: bool) {
        self.reload();
        if *identity != self.state.identity {
            return;
        }
        // An op that was sent but whose answer has not come may already be in this cart: taking
        // it as confirmed would count that op twice until the answer (or, after a reload, the
        // resend's `duplicate`) comes. The push's answer carries the cart anyway.
        if self.state.pending.iter().any(|p| p.sent) {
            return;
        }
        if self.accept_cart(view) {
            if store {
                self.changed_cart();
                self.write_base();
            }
            self.rebuild();
        }
    }

    fn accept_cart(&mut self, view: &CartView) -> bool {
        if view.version >= self.state.confirmed.version {
            self.state.confirmed = cart_from_view(view);
            self.state.annotations = Rc::new(annotations_after(&self.state.annotations, view));
            return true;
        }
        false
    }

    /// The body of `POST /v1/cart/merge` for a login, with the oldest pending guest ops (one
    /// batch; later ones stay queued and follow to the user's cart after the login), and the
    /// ids of those ops; `None` if this client is no guest (another tab logged in already).
    pub fn login_request(&mut self) -> Option<(Value, Vec<String>)> {
        self.reload();
        let Identity::Guest { token } = &self.state.identity else { return None };
        let token = token.clone();
        let batch: Vec<PendingOp> = self.state.pending.iter().take(BATCH).cloned().collect();
        let ops = self.ops_body(&batch);
        let ids = batch.iter().map(|p| p.op.id.as_str().to_owned()).collect();
        Some((shared::json::object([("guest_token", token.into()), ("ops", Value::Array(ops))]), ids))
    }

    /// The guest token of this client's cart, if it is a guest's (for a merge preview).
    pub fn guest_token(&mut self) -> Option<String> {
        self.reload();
        match &self.state.identity {
            Identity::Guest { token } => Some(token.clone()),
            Identity::User { .. } => None,
        }
    }

    /// Switches to the user's cart after a merge (or, with no guest cart to merge, a read). The
    /// ops the merge carried (`sent`) are done; ops made while the login was under way stay
    /// pending and go to the user's cart.
    pub fn finish_login(&mut self, jwt: &str, cart: &CartView, sent: &[String]) {
        self.reload();
        for p in &self.state.pending {
            if sent.iter().any(|id| id == p.op.id.as_str()) {
                let (client, seq) = p.origin();
                self.marks.fold(client, seq);
            }
        }
        self.state.identity = Identity::User { jwt: jwt.to_owned() };
        self.state.confirmed = cart_from_view(cart);
        self.state.annotations = Rc::new(annotations_after(&self.state.annotations, cart));
        self.state.last_error = None;
        self.state.checkout_key = None;
        self.new_epoch();
        self.changed_cart();
        self.write_base();
        self.rebuild();
    }

    /// Back to a fresh guest cart; nothing of the user's cart stays in storage, and ops still
    /// queued (in any tab) are dropped with it.
    pub fn logout(&mut self) {
        self.reload();
        for p in std::mem::take(&mut self.state.pending) {
            let (client, seq) = p.origin();
            self.marks.fold(client, seq);
        }
        let promotions = std::mem::take(&mut self.state.promotions);
        self.state = self.fresh_state(None);
        self.state.promotions = promotions;
        self.new_epoch();
        self.changed_cart();
        self.write_base();
        self.rebuild();
    }

    pub fn identity(&self) -> &Identity {
        &self.state.identity
    }

    /// Milliseconds to wait before the next try after `failures` failed pushes: exponential from
    /// half a second to 30 seconds, with full jitter in its upper half (`jitter` in 0..1).
    pub fn backoff_ms(&self, jitter: f64) -> u64 {
        let base = 500u64.saturating_mul(1 << self.failures.min(6)).min(30_000);
        (base as f64 * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The `Idempotency-Key` of a checkout of the cart as the server last confirmed it, when the
    /// caller gave none: the same for every checkout of this cart version until an answer
    /// settles it ([`Engine::settle_checkout_key`]), so a double click, another tab, or a retry
    /// after a lost answer makes one order.
    pub fn checkout_key(&mut self) -> String {
        self.refresh();
        let version = self.state.confirmed.version;
        if let Some(k) = &self.state.checkout_key
            && k.version == version
        {
            return k.key.clone();
        }
        let key = uuid_v4(&mut *self.random);
        self.state.checkout_key = Some(CheckoutKey { version, key: key.clone() });
        self.persist();
        key
    }

    /// The server answered a checkout with `key` for good (an order, or a refusal that the same
    /// key would only replay): the next checkout gets a new key. Not called when no answer came,
    /// or the answer was a 5xx, `request_in_progress` or `429`: the same key is sent again.
    pub fn settle_checkout_key(&mut self, key: &str) {
        self.refresh();
        if self.state.checkout_key.as_ref().is_some_and(|k| k.key == key) {
            self.state.checkout_key = None;
            self.persist();
        }
    }
}

fn corrupt(why: String) -> LastError {
    LastError::new(ErrorCode::StorageCorrupt, ["the stored cart could not be read (", &why, "); starting a new cart"].concat())
}

fn storage_error(e: StorageError) -> LastError {
    let message = match e {
        StorageError::Full => "browser storage is full; the cart is kept in memory until it can be saved".to_owned(),
        StorageError::Unavailable(why) => ["browser storage refused the cart (", &why, "); it is kept in memory"].concat(),
    };
    LastError::new(ErrorCode::StorageFull, message)
}

/// Whether a checkout answer of `status` settles its idempotency key (see
/// [`Engine::settle_checkout_key`]).
pub fn checkout_settled(status: u16, error: Option<&ErrorBody>) -> bool {
    (200..500).contains(&status) && status != 429 && !error.is_some_and(|e| e.is(ErrorCode::RequestInProgress))
}

/// The wait a `429` or `503` answer asked for (`retry_after`), in milliseconds; 0 when none. The
/// next push waits at least this long, however short its own backoff.
pub fn retry_hint_ms(status: u16, body: &str) -> u64 {
    if status == 429 || status == 503 { ErrorBody::of_answer(status, body).retry_after_ms().unwrap_or(0) } else { 0 }
}

/// Maps an HTTP error answer to a failure: 5xx and 429 are retried, other 4xx are not, as long
/// as the cart API said so. A 4xx without the API's error envelope (a 404 page of a wrong
/// endpoint, a proxy's or CDN's 403) says nothing about the ops: they are kept and retried with
/// backoff rather than given up.
pub fn failure_of(status: u16, body: &str) -> Failure {
    match ErrorBody::in_answer(body) {
        Some(error) if status < 500 && status != 429 => Failure::Refused { error, status },
        Some(error) => Failure::Retry(error.message),
        None => Failure::Retry(["HTTP ", &int(status), " without the cart API's error body: is the endpoint right?"].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use shared::Quantity;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn engine(storage: &MemoryStorage, seed: u8) -> Engine {
        engine_on(Box::new(storage.clone()), seed, Limits::default())
    }

    /// An engine on `storage` under the key "cart", its randomness seeded.
    fn engine_on(storage: Box<dyn Storage>, seed: u8, limits: Limits) -> Engine {
        let mut n = u64::from(seed);
        Engine::new(
            storage,
            "cart",
            limits,
            Currency::USD,
            Box::new(move |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    *x = (n >> 56) as u8;
                }
            }),
        )
    }

    #[test]
    fn known_promotions_are_stored_as_the_answer_gave_them_and_read_back_alike() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        let usd = |a: i64| serde_json::json!({"amount": a, "currency": "USD"});
        a.mutate(
            OpKind::Add {
                sku: Sku::parse("TEE").unwrap(),
                quantity: Quantity::new(2, &Limits::default()).unwrap(),
                price_at_add: Some(Money::new(1000, Currency::USD).unwrap()),
            },
            Timestamp::default(),
        )
        .unwrap();
        a.mutate(OpKind::ApplyPromoCode { code: PromoCode::parse("TEN").unwrap() }, Timestamp::default()).unwrap();
        let answer = serde_json::json!({"promotions": [
            {"id": "ten", "code": "TEN", "description": "10% off", "active": true, "action": {"type": "percent_off_order", "percent": 10}, "combinable": true, "exhausted": false, "later_field": [1, 2]},
            {"id": "gone", "description": "all used", "active": true, "action": {"type": "amount_off_order", "amount": usd(300)}, "combinable": true, "usage_limit": 5, "exhausted": true},
            {"id": "bad", "description": "unreadable", "action": {"type": "nothing"}},
        ]});
        let asked: SortedSet<PromoCode> = [PromoCode::parse("TEN").unwrap()].into_iter().collect();
        a.finish_promotions(asked, &answer, Timestamp::from_millis(5));
        let shown = a.snapshot(false, Timestamp::from_millis(6));
        assert_eq!(shown.discount_total, Money::new(200, Currency::USD).unwrap(), "10% of 2000; the exhausted one takes nothing");
        // What is stored: the readable promotions as they came, the unreadable one left out.
        let stored: Value = serde_json::from_str(&storage.get("cart").unwrap()).unwrap();
        let list = stored["promotions"]["promotions"].as_array().unwrap();
        assert_eq!(list, &answer["promotions"].as_array().unwrap()[..2]);
        // Another tab (or the next page) reads the same promotions back.
        let b = engine(&storage, 2);
        assert_eq!(b.state.promotions, a.state.promotions);
        assert_eq!(b.snapshot(false, Timestamp::from_millis(6)).discount_total, shown.discount_total);
    }

    fn add(sku: &str) -> OpKind {
        OpKind::Add { sku: Sku::parse(sku).unwrap(), quantity: Quantity::new(1, &Limits::default()).unwrap(), price_at_add: None }
    }

    #[test]
    fn the_hand_written_base_record_is_serdes_byte_for_byte() {
        let l = Limits::default();
        let texts = ["plain", "a \"quoted\" \\ word", "line\nbreak\u{1}", "ünïcødé"];
        let states = [None, Some(Availability::InStock), Some(Availability::OutOfStock), Some(Availability::Discontinued)];
        for case in 0..64usize {
            let bit = |b: usize| case >> b & 1 == 1;
            let mut cart = Cart::new(Currency::USD);
            for i in 0..case % 5 {
                let price = (i % 2 == 0).then(|| Money::new(100 * i as i64, Currency::USD).unwrap());
                let _ = cart.apply(
                    &OpKind::Add {
                        sku: Sku::parse(&format!("S{i}")).unwrap(),
                        quantity: Quantity::new(1 + i as i64, &l).unwrap(),
                        price_at_add: price,
                    },
                    &l,
                    Timestamp::from_millis(i as i64 * 1001),
                );
            }
            if bit(1) {
                let _ = cart.apply(&OpKind::SaveForLater { sku: Sku::parse("S0").unwrap() }, &l, Timestamp::from_millis(9));
                let _ = cart.apply(&OpKind::ApplyPromoCode { code: PromoCode::parse("SAVE").unwrap() }, &l, Timestamp::from_millis(9));
            }
            let mut annotations = SortedMap::new();
            for i in 0..case % 4 {
                let current_price = (i % 2 == 1).then(|| Money::new(7 * i as i64, Currency::USD).unwrap());
                annotations
                    .insert(Sku::parse(&format!("S{i}")).unwrap(), Annotation { current_price, availability: states[(case + i) % 4] });
            }
            let (guest_token, user_token) =
                if bit(2) { (None, Some(texts[case % 4].to_owned())) } else { (Some(texts[case % 4].to_owned()), None) };
            let stored = Stored {
                format: FORMAT,
                owner: if bit(2) { Owner::User } else { Owner::Guest },
                guest_token,
                user_token,
                cart: StoredCart::from(&cart),
                annotations: &annotations,
                last_error: bit(3).then(|| LastError { code: "network_error".into(), message: texts[(case + 1) % 4].into() }),
                checkout_key: bit(4).then_some(StoredCheckoutKey { version: case as u64, key: texts[(case + 2) % 4] }),
                promotions: serde_json::json!({ "list": [{ "id": texts[case % 4], "n": case }], "at": null }),
                marks: serde_json::json!({ "folded": { "tab": case } }),
                rev: case as u64 * 3,
            };
            assert_eq!(stored.text(), serde_json::to_string(&stored).unwrap(), "case {case}");
        }
    }

    #[test]
    fn a_snapshot_keeps_its_moment_however_many_changes_follow() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        a.set_local_only(true);
        let l = Limits::default();
        let sku_of = |i: usize| format!("S{}", (i * 5) % 9);
        let mut kept: Vec<(Frozen, Snapshot)> = Vec::new();
        let at = Timestamp::from_millis(1_000_000);
        for i in 0..(3 * REPLAY + 7) {
            let sku = Sku::parse(&sku_of(i)).unwrap();
            let kind = match i % 8 {
                _ if i == 40 => OpKind::Clear,
                0..=2 => add(sku.as_str()),
                3 => OpKind::SetQuantity { sku, quantity: Quantity::new(1 + (i % 4) as i64, &l).unwrap() },
                4 => OpKind::SaveForLater { sku },
                5 => OpKind::ApplyPromoCode { code: PromoCode::parse(&format!("X{}", i % 3)).unwrap() },
                6 => OpKind::MoveToCart { sku },
                _ => OpKind::Remove { sku },
            };
            // Some are refused (a missing line); a refusal changes nothing.
            let _ = a.mutate(kind, Timestamp::from_millis(i as i64));
            if i == 50 {
                a.compact();
            }
            let frozen = a.frozen();
            let then = frozen.snapshot(false, at);
            assert_eq!(then.lines.len(), a.view().lines.len());
            kept.push((frozen, then));
        }
        assert!(kept.iter().any(|(_, s)| s.lines.len() > 2), "the cart grew along the way");
        for (i, (frozen, then)) in kept.iter().enumerate() {
            assert_eq!(&frozen.snapshot(false, at), then, "the snapshot after change {i} is as it was");
        }
    }

    #[test]
    fn each_change_is_written_to_its_chunk_of_this_tabs_log() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        assert_eq!(a.chunk_key("tab", 0), "cart:o:tab:0");
        assert_eq!(a.chunk_key("tab", 1234567890), "cart:o:tab:1234567890");
        let client = a.client().to_owned();
        for i in 0..=CHUNK {
            a.mutate(add(&format!("S{i}")), Timestamp::from_millis(i as i64)).unwrap();
        }
        let keys = storage.keys_with_prefix("cart:o:");
        assert_eq!(keys, vec![format!("cart:o:{client}:0"), format!("cart:o:{client}:1")]);
        let first = shared::json::parse(&storage.get(&keys[0]).unwrap()).unwrap();
        assert_eq!(first.as_array().map(Vec::len), Some(CHUNK as usize));
        assert_eq!(first[0]["sku"], "S0");
        assert_eq!(first[0]["client_id"], client.as_str());
        assert_eq!(first[0]["seq"], 1);
    }

    #[test]
    fn a_refusal_without_the_apis_error_body_keeps_every_op() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        a.mutate(add("A"), Timestamp::from_millis(1)).unwrap();
        a.mutate(add("B"), Timestamp::from_millis(2)).unwrap();
        // A wrong endpoint's 404 page, a proxy's 403: not the API's answer, so the ops stay.
        for (status, body) in [(404, "<html>Not Found</html>"), (403, ""), (400, "{\"message\":\"bad\"}")] {
            let push = a.begin_push().unwrap();
            let failure = failure_of(status, body);
            assert!(matches!(failure, Failure::Retry(_)), "{status}: {failure:?}");
            a.finish_push(&push, Err(failure), 0, 0.5);
            assert_eq!(a.state.pending.len(), 2, "{status}");
            assert!(a.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::NetworkError)));
        }
        // The API's own refusal is final, as before.
        let body = r#"{"error":{"code":"invalid_op","message":"no"}}"#;
        assert!(matches!(failure_of(422, body), Failure::Refused { status: 422, .. }));
        assert!(matches!(failure_of(503, body), Failure::Retry(_)));
        assert!(matches!(failure_of(429, body), Failure::Retry(_)));
    }

    fn numbering(e: &Engine) -> Vec<(String, u64)> {
        e.state.pending.iter().map(|p| p.op.id.client().map(|c| (c.client.clone(), c.seq)).unwrap()).collect()
    }

    #[test]
    fn each_tab_numbers_its_ops_and_a_gap_sends_that_tabs_ops_bare() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        let mut b = engine(&storage, 2);
        for (i, sku) in ["A", "B", "C"].into_iter().enumerate() {
            a.mutate(add(sku), Timestamp::from_millis(i as i64)).unwrap();
        }
        b.mutate(add("D"), Timestamp::from_millis(10)).unwrap();
        a.reload();
        let n = numbering(&a);
        assert_eq!(n.iter().map(|x| x.1).collect::<Vec<_>>(), [1, 2, 3, 1], "each tab counts from 1");
        assert!(n[0].0 == n[2].0 && n[0].0 != n[3].0, "one client per tab");
        assert_eq!(n[0].0, a.client());
        let push = a.begin_push().unwrap();
        assert_eq!(push.body["ops"][0]["client_id"], n[0].0.as_str());
        assert_eq!(push.body["ops"][2]["seq"], 3);
        assert_eq!(push.body["ops"][3]["client_id"], n[3].0.as_str(), "one push carries every tab's ops");
        // The server saw a gap in the first tab's sequence: nothing applied, the ops stay, and
        // that tab's ops go bare (their op ids tell duplicates); the other tab keeps its numbers.
        let mut error = ErrorBody::new(ErrorCode::OpOutOfOrder, "gap");
        error.details.insert("client_id".into(), Value::String(n[0].0.clone()));
        a.finish_push(&push, Err(Failure::Refused { error, status: 409 }), 0, 0.5);
        assert_eq!(a.state.pending.len(), 4);
        let again = a.begin_push().unwrap();
        assert_eq!(again.ids, push.ids, "op ids stay");
        assert!(again.body["ops"][0].get("client_id").is_none() && again.body["ops"][0].get("seq").is_none());
        assert_eq!(again.body["ops"][3]["seq"], 1);
        // Every tab learns it from the base record.
        b.reload();
        assert!(b.marks.is_bare(&n[0].0));
    }

    /// localStorage as one tab sees it while other tabs' writes are on their way: without
    /// `events`, no `storage` event tells it to read again (its generation never moves); while
    /// `frozen` holds one, the base record reads as it was then (the other keys are live).
    #[derive(Clone)]
    struct LateCopy {
        store: MemoryStorage,
        events: bool,
        frozen: Rc<RefCell<Option<String>>>,
    }

    impl LateCopy {
        fn of(store: &MemoryStorage, events: bool) -> LateCopy {
            LateCopy { store: store.clone(), events, frozen: Rc::default() }
        }
    }

    impl Storage for LateCopy {
        fn get(&self, key: &str) -> Option<String> {
            match &*self.frozen.borrow() {
                Some(old) if key == "cart" => Some(old.clone()),
                _ => self.store.get(key),
            }
        }
        fn set(&self, key: &str, value: &str) -> Result<(), StorageError> {
            self.store.set(key, value)
        }
        fn remove(&self, key: &str) {
            self.store.remove(key)
        }
        fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
            self.store.keys_with_prefix(prefix)
        }
        fn generation(&self) -> u64 {
            if self.events { self.store.generation() } else { 0 }
        }
    }

    #[test]
    fn tabs_adding_at_once_lose_no_write_whoever_folds_and_however_late_they_read() {
        let storage = MemoryStorage::default();
        let mut tabs: Vec<Engine> = (0..4u8)
            .map(|i| {
                let mut e =
                    engine_on(Box::new(LateCopy::of(&storage, false)), i + 40, Limits { max_line_quantity: 10_000, ..Limits::default() });
                e.set_local_only(true);
                e
            })
            .collect();
        let mut rng = 7u64;
        let mut next = |m: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % m
        };
        let mut expected = std::collections::BTreeMap::<String, u32>::new();
        for step in 0..1000 {
            let t = next(4) as usize;
            let sku = format!("SKU-{}", next(5));
            tabs[t].mutate(add(&sku), Timestamp::from_millis(step)).unwrap();
            *expected.entry(sku).or_default() += 1;
            match next(20) {
                // Some tab folds every tab's ops into the cart, from what it reads now.
                0 => tabs[next(4) as usize].compact(),
                // A storage event reaches some tab.
                1 | 2 => {
                    tabs[next(4) as usize].reload();
                }
                _ => {}
            }
        }
        for t in &mut tabs {
            t.reload();
        }
        tabs[2].compact();
        for (i, t) in tabs.iter_mut().enumerate() {
            t.reload();
            let got: std::collections::BTreeMap<String, u32> =
                t.view().lines.iter().map(|l| (l.sku.as_str().to_owned(), l.quantity)).collect();
            assert_eq!(got, expected, "tab {i}");
        }
        // Everything is folded: the logs are gone from storage but for nothing.
        assert!(tabs.iter().all(|t| t.state.pending.is_empty()));
        assert!(storage.keys_with_prefix("cart:o:").is_empty(), "{:?}", storage.keys_with_prefix("cart:o:"));
    }

    #[test]
    fn a_tab_folding_with_a_late_copy_of_the_cart_loses_nothing_while_settled_ops_stay_a_while() {
        let storage = MemoryStorage::default();
        let time = Rc::new(std::cell::Cell::new(1_000i64));
        let clock = |t: &Rc<std::cell::Cell<i64>>| {
            let t = t.clone();
            Box::new(move || t.get()) as Box<dyn Fn() -> i64>
        };
        let late = LateCopy::of(&storage, true);
        let frozen = late.frozen.clone();
        let mut b = engine(&storage, 1);
        let mut c = engine(&storage, 2);
        let mut a = engine_on(Box::new(late), 7, Limits::default());
        for e in [&mut a, &mut b, &mut c] {
            e.set_local_only(true);
            e.set_clock(clock(&time), 10_000);
        }
        a.reload();
        *frozen.borrow_mut() = storage.get("cart");
        for sku in ["A", "B", "C"] {
            b.mutate(add(sku), Timestamp::default()).unwrap();
        }
        c.compact();
        b.reload();
        assert!(b.state.pending.is_empty(), "settled for the view at once");
        // Tab a folds its own change with its late copy of the base (no sign of c's fold) and
        // writes it over c's.
        a.mutate(add("Z"), Timestamp::default()).unwrap();
        a.compact();
        *frozen.borrow_mut() = None;
        time.set(20_000);
        for e in [&mut a, &mut b, &mut c] {
            e.reload();
            let mut skus: Vec<&str> = e.view().lines.iter().map(|l| l.sku.as_str()).collect();
            skus.sort_unstable();
            assert_eq!(skus, ["A", "B", "C", "Z"], "each op once");
        }
        // Past the grace time, b's settled ops leave storage.
        b.mutate(add("D"), Timestamp::default()).unwrap();
        c.compact();
        b.reload();
        time.set(40_000);
        b.reload();
        b.mutate(add("E"), Timestamp::default()).unwrap();
        // A change writes its own chunk and nothing else; the leader's next fold prunes.
        c.compact();
        b.reload();
        let left: usize = storage
            .keys_with_prefix(&format!("cart:o:{}", b.client()))
            .iter()
            .map(|k| storage.get(k).unwrap().matches("op_id").count())
            .sum();
        assert_eq!(left, 1, "only the op settled within the grace time stays in b's log");
    }

    #[test]
    fn a_refused_identity_keeps_every_op_and_pauses_pushes_until_another_login() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        for sku in ["A", "B"] {
            a.mutate(add(sku), Timestamp::default()).unwrap();
        }
        let push = a.begin_push().unwrap();
        let error = ErrorBody::new(ErrorCode::Unauthorized, "token expired");
        a.finish_push(&push, Err(Failure::Refused { error, status: 401 }), 1_000, 0.0);
        assert_eq!(a.state.pending.len(), 2, "no op is dropped");
        assert_eq!(a.state.last_error.as_ref().map(|e| e.code.as_str()), Some("unauthorized"));
        let (e, wait) = a.push_blocked(1_000).expect("pushes pause");
        assert!(e.is(ErrorCode::Unauthorized) && wait >= 250, "{wait}");
        assert!(a.push_blocked(1_000 + wait).is_none(), "the pause ends");
        // A second refusal doubles the pause.
        let push = a.begin_push().unwrap();
        let error = ErrorBody::new(ErrorCode::Unauthorized, "token expired");
        a.finish_push(&push, Err(Failure::Refused { error, status: 401 }), 1_000 + wait, 0.0);
        let (_, second) = a.push_blocked(1_000 + wait).unwrap();
        assert_eq!(second, wait * 2);
        // A login (here: in another tab) lifts it at once; the ops go to the user's cart.
        let mut b = engine(&storage, 2);
        b.finish_login(
            "jwt",
            &CartView::new(&Cart::new(Currency::USD), Owner::User, Timestamp::default(), |_| None, &wire::Promos::none()),
            &[],
        );
        a.reload();
        assert!(a.push_blocked(1_000 + wait).is_none());
        assert_eq!(a.state.pending.len(), 2);
        assert_eq!(a.begin_push().unwrap().identity, Identity::User { jwt: "jwt".into() });
    }

    #[test]
    fn ops_beyond_the_request_cap_are_read_back_and_a_login_carries_one_batch() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        for i in 0..(wire::MAX_OPS_PER_REQUEST + 100) {
            let kind = if i % 2 == 0 { add("A") } else { add("B") };
            a.mutate(kind, Timestamp::from_millis(i as i64)).unwrap();
            // Alternating SKUs: nothing folds together.
        }
        let n = a.state.pending.len();
        assert!(n > wire::MAX_OPS_PER_REQUEST, "{n}");
        let b = engine(&storage, 2);
        assert_eq!(b.state.last_error, None, "the stored queue is readable");
        assert_eq!(b.state.pending.len(), n);
        let mut b = b;
        let (body, ids) = b.login_request().unwrap();
        assert_eq!(ids.len(), BATCH);
        assert_eq!(body["ops"].as_array().unwrap().len(), BATCH);
        b.finish_login(
            "jwt",
            &CartView::new(&Cart::new(Currency::USD), Owner::User, Timestamp::default(), |_| None, &wire::Promos::none()),
            &ids,
        );
        assert_eq!(b.state.pending.len(), n - BATCH, "the rest stay queued for the user's cart");
        let push = b.begin_push().unwrap();
        assert!(push.ids.len() <= BATCH);
    }

    #[test]
    fn a_newer_format_is_left_untouched_and_the_cart_lives_in_memory() {
        let storage = MemoryStorage::default();
        let newer = r#"{"format":99,"whatever":"a newer page's"}"#;
        storage.set("cart", newer).unwrap();
        let mut a = engine(&storage, 1);
        assert_eq!(a.state.last_error.as_ref().map(|e| e.code.as_str()), Some("storage_newer"));
        a.set_local_only(true);
        a.mutate(add("A"), Timestamp::default()).unwrap();
        assert_eq!(a.optimistic().lines.len(), 1, "changes work in memory");
        assert_eq!(storage.get("cart").as_deref(), Some(newer), "never written");
        a.reload();
        a.mutate(add("B"), Timestamp::default()).unwrap();
        assert_eq!(a.optimistic().lines.len(), 2);
        assert_eq!(storage.get("cart").as_deref(), Some(newer));
    }

    #[test]
    fn a_pull_while_a_sent_op_is_unanswered_does_not_count_it_twice() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        a.mutate(add("A"), Timestamp::default()).unwrap();
        let push = a.begin_push().unwrap();
        // The server applied the op; a read answers before the push does.
        let mut on_server = Cart::new(Currency::USD);
        on_server.apply(&add("A"), &Limits::default(), Timestamp::default()).unwrap();
        on_server.version = 1;
        let identity = a.identity().clone();
        let view = CartView::new(&on_server, Owner::Guest, Timestamp::default(), |_| None, &wire::Promos::none());
        a.finish_pull(&identity, &view, true);
        assert_eq!(a.optimistic().lines[0].quantity, 1, "not 2");
        // Unsent ops cannot be in the server's cart, so a read with only those is taken.
        a.finish_push(&push, Err(Failure::Retry("lost".into())), 0, 0.5);
        a.mutate(add("B"), Timestamp::default()).unwrap();
        let mut fresh = engine(&MemoryStorage::default(), 3);
        fresh.mutate(add("C"), Timestamp::default()).unwrap();
        let identity = fresh.identity().clone();
        fresh.finish_pull(&identity, &view, true);
        assert_eq!(fresh.state.confirmed.version, 1);
        assert_eq!(fresh.optimistic().lines.len(), 2);
    }

    #[test]
    fn a_stale_tab_writing_keeps_the_other_tabs_ops() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        let mut b = engine(&storage, 2);
        assert_eq!(a.identity(), b.identity(), "tabs share one guest cart");
        b.mutate(add("B"), Timestamp::default()).unwrap();
        // `a` has not read since; its write must not erase B's op.
        a.state.last_error = None;
        a.persist();
        let mut c = engine(&storage, 3);
        c.reload();
        assert_eq!(c.state.pending.len(), 1, "the op of the other tab survived");
        a.mutate(add("A"), Timestamp::default()).unwrap();
        c.reload();
        let skus: Vec<&str> = c.optimistic().lines.iter().map(|l| l.sku.as_str()).map(|s| if s == "A" { "A" } else { "B" }).collect();
        assert_eq!(skus, ["B", "A"]);
    }

    #[test]
    fn a_full_storage_keeps_changes_in_memory_and_says_so() {
        let storage = MemoryStorage::with_quota(1200);
        let mut e = engine(&storage, 9);
        for i in 0..40 {
            e.mutate(add(&format!("SKU-{i:04}")), Timestamp::default()).unwrap();
        }
        assert!(e.state.last_error.as_ref().is_some_and(|x| x.is(ErrorCode::StorageFull)));
        assert_eq!(e.optimistic().lines.len(), 40, "nothing lost in memory");
    }

    #[test]
    fn one_checkout_key_per_cart_version_until_an_answer_settles_it() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 11);
        let mut b = engine(&storage, 12);
        let first = a.checkout_key();
        assert_eq!(a.checkout_key(), first, "a double click sends the same key");
        assert_eq!(b.checkout_key(), first, "so does another tab, or a reloaded page");
        b.settle_checkout_key("some-other-key");
        assert_eq!(a.checkout_key(), first, "only the key's own answer settles it");
        a.settle_checkout_key(&first);
        // A tab that read the old key before it was settled does not bring it back by saving.
        b.state.last_error = None;
        b.persist();
        let second = b.checkout_key();
        assert_ne!(second, first, "an order resulted: the next checkout is a new one");
        let mut newer = a.state.confirmed.clone();
        newer.version += 1;
        let identity = a.identity().clone();
        a.finish_pull(&identity, &CartView::new(&newer, Owner::Guest, Timestamp::default(), |_| None, &wire::Promos::none()), true);
        assert_ne!(a.checkout_key(), second, "a changed cart is a new checkout");
        assert!(checkout_settled(201, None));
        assert!(checkout_settled(409, Some(&ErrorBody::new(ErrorCode::OutOfStock, ""))));
        assert!(!checkout_settled(409, Some(&ErrorBody::new(ErrorCode::RequestInProgress, ""))));
        assert!(!checkout_settled(503, None) && !checkout_settled(429, None));
    }

    /// A server view of `cart` where `out` is out of stock and every SKU costs 5.00.
    fn view_with_one_out(cart: &Cart, out: &str) -> CartView {
        let price = Money::new(500, Currency::USD).unwrap();
        CartView::new(
            cart,
            Owner::Guest,
            Timestamp::default(),
            |l| {
                let availability = if l.sku.as_str() == out { Availability::OutOfStock } else { Availability::InStock };
                Some(wire::Annotation { current_price: Some(price), availability })
            },
            &wire::Promos::none(),
        )
    }

    #[test]
    fn unavailable_lines_stay_in_the_cart_and_out_of_its_totals() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 21);
        let mut on_server = Cart::new(Currency::USD);
        for sku in ["A", "B"] {
            on_server.apply(&add(sku), &Limits::default(), Timestamp::default()).unwrap();
        }
        on_server.version = 2;
        let view = view_with_one_out(&on_server, "A");
        assert_eq!((view.lines.len(), view.unavailable.len()), (1, 1), "the server's view shows A apart");
        let identity = a.identity().clone();
        a.finish_pull(&identity, &view, true);
        assert_eq!(a.optimistic().lines.len(), 2, "the cart keeps the unavailable line");
        let snap = a.snapshot(false, Timestamp::default());
        assert_eq!(snap.lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(), ["B"]);
        assert_eq!(
            snap.unavailable.iter().map(|l| (l.sku.as_str(), l.reason)).collect::<Vec<_>>(),
            [("A", Some(Availability::OutOfStock))]
        );
        assert_eq!((snap.item_count, snap.subtotal.amount(), snap.total.amount()), (1, 500, 500));
        // An op on the unavailable line works as on any line: saved for later, it leaves the list.
        a.mutate(OpKind::SaveForLater { sku: Sku::parse("A").unwrap() }, Timestamp::default()).unwrap();
        let snap = a.snapshot(false, Timestamp::default());
        assert!(snap.unavailable.is_empty());
        assert_eq!(snap.saved.len(), 1);
    }

    #[test]
    fn a_sku_added_again_offline_shows_the_last_catalog_price_known() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 22);
        let mut on_server = Cart::new(Currency::USD);
        on_server.apply(&add("A"), &Limits::default(), Timestamp::default()).unwrap();
        on_server.version = 1;
        let identity = a.identity().clone();
        a.finish_pull(&identity, &view_with_one_out(&on_server, "none"), true);
        // A leaves the cart on the server; the client remembers its price.
        let empty = Cart { version: 2, ..Cart::new(Currency::USD) };
        a.finish_pull(&identity, &view_with_one_out(&empty, "none"), true);
        a.mutate(add("A"), Timestamp::default()).unwrap();
        a.mutate(add("NEVER-SEEN"), Timestamp::default()).unwrap();
        let snap = a.snapshot(false, Timestamp::default());
        let price = |sku: &str| snap.lines.iter().find(|l| l.sku.as_str() == sku).unwrap().price_at_add.map(|m| m.amount());
        assert_eq!((price("A"), price("NEVER-SEEN")), (Some(500), None));
        assert_eq!(snap.subtotal.amount(), 500);
        assert!(snap.lines.iter().all(|l| l.availability != Some(Availability::OutOfStock)), "no stale availability is kept");
    }

    #[test]
    fn a_retry_after_is_honoured_and_bounded() {
        let limited = r#"{"error": {"code": "rate_limited", "message": "slow down", "retry_after": 7}}"#;
        assert_eq!(retry_hint_ms(429, limited), 7_000);
        assert_eq!(retry_hint_ms(503, r#"{"error": {"code": "unavailable", "message": "x", "retry_after": 1}}"#), 1_000);
        assert_eq!(
            retry_hint_ms(429, r#"{"error": {"code": "rate_limited", "message": "x", "retry_after": 86400}}"#),
            300_000,
            "at most five minutes"
        );
        assert_eq!(retry_hint_ms(429, "<html>proxy</html>"), 0);
        assert_eq!(retry_hint_ms(409, limited), 0, "only 429 and 503 ask to wait");
    }

    #[test]
    fn backoff_grows_to_thirty_seconds_with_jitter() {
        let storage = MemoryStorage::default();
        let mut e = engine(&storage, 5);
        assert_eq!(e.backoff_ms(1.0), 500);
        e.failures = 3;
        assert_eq!(e.backoff_ms(1.0), 4000);
        assert_eq!(e.backoff_ms(0.0), 2000);
        e.failures = 20;
        assert_eq!(e.backoff_ms(1.0), 30_000);
    }
}
