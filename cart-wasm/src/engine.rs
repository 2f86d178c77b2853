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
use shared::stored::StoredCart;
use shared::wire::{self, Availability, CartView, DiscountView, ErrorBody, OpsResponse, Owner, Promos};
use shared::{
    Cart, CartError, CartLine, ClientSeq, Currency, ErrorCode, GuestToken, Limits, Money, Op, OpId, OpKind, Quantity, Sku, Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};

/// The stored format of the client's state; anything else under the key starts a clean cart.
pub const FORMAT: u32 = 1;

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
    /// Promotions every use of which is taken (as of the lookup).
    pub exhausted: BTreeSet<PromotionId>,
    /// The codes the lookup covered, found or not: a code outside this set is `pending`.
    pub asked: BTreeSet<PromoCode>,
    /// When the lookup was made.
    pub at: Option<Timestamp>,
}

/// How long known promotions are trusted before they are looked up again, when online.
pub const PROMOTIONS_TTL_MS: i64 = 60_000;

impl KnownPromotions {
    /// Reads a `GET /v1/promotions` answer (or the stored copy of one); unreadable entries are
    /// skipped.
    pub fn from_answer(v: &Value, asked: BTreeSet<PromoCode>, at: Option<Timestamp>, currency: Currency) -> KnownPromotions {
        let mut known = KnownPromotions { asked, at, ..KnownPromotions::default() };
        for p in v.get("promotions").and_then(Value::as_array).into_iter().flatten() {
            if let Ok(promotion) = shared::promo_json::promotion_from_json(p, currency) {
                if p.get("exhausted").and_then(Value::as_bool) == Some(true) {
                    known.exhausted.insert(promotion.id.clone());
                }
                known.list.push(promotion);
            }
        }
        known
    }

    fn to_json(&self) -> Value {
        let list: Vec<Value> = self
            .list
            .iter()
            .map(|p| {
                let mut v = shared::promo_json::promotion_json(p);
                v["exhausted"] = Value::Bool(self.exhausted.contains(&p.id));
                v
            })
            .collect();
        serde_json::json!({
            "promotions": list,
            "asked": self.asked.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "at": self.at,
        })
    }

    fn from_json(v: &Value, currency: Currency) -> KnownPromotions {
        let asked =
            v.get("asked").and_then(Value::as_array).into_iter().flatten().filter_map(|c| PromoCode::parse(c.as_str()?).ok()).collect();
        let at = v.get("at").and_then(Value::as_str).and_then(Timestamp::parse_rfc3339);
        KnownPromotions::from_answer(v, asked, at, currency)
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
    /// Some push (from any tab) has carried it: it may no longer be coalesced with later changes.
    pub sent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientState {
    pub identity: Identity,
    pub confirmed: Cart,
    pub annotations: BTreeMap<Sku, Annotation>,
    pub pending: Vec<PendingOp>,
    pub last_error: Option<LastError>,
    pub checkout_key: Option<CheckoutKey>,
    pub promotions: KnownPromotions,
}

/// What `parse` reads besides the identity.
struct StoredParts {
    cart: StoredCart,
    pending: Vec<Value>,
    annotations: BTreeMap<Sku, Annotation>,
    last_error: Option<LastError>,
}

#[derive(Serialize)]
struct StoredCheckoutKey<'a> {
    version: u64,
    key: &'a str,
}

#[derive(Serialize)]
struct Stored<'a> {
    format: u32,
    owner: Owner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guest_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_token: Option<String>,
    cart: StoredCart,
    #[serde(default)]
    annotations: BTreeMap<Sku, Annotation>,
    pending: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<LastError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_key: Option<StoredCheckoutKey<'a>>,
    promotions: Value,
}

/// A push of pending ops to `POST /v1/cart/ops`.
#[derive(Clone, Debug)]
pub struct Push {
    pub body: Value,
    pub ids: Vec<String>,
    pub identity: Identity,
    epoch: u64,
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
    pub lines: Vec<LineSnapshot>,
    pub saved: Vec<LineSnapshot>,
    pub item_count: u64,
    pub subtotal: Money,
    pub promo_codes: Vec<PromoCodeSnapshot>,
    pub discounts: Vec<DiscountSnapshot>,
    pub discount_total: Money,
    pub total: Money,
    pub pending_ops: usize,
    pub syncing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoCodeSnapshot {
    pub code: PromoCode,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Money>,
    /// The client does not know the code's promotion yet: no discount until the server answers.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscountSnapshot {
    pub promotion: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<PromoCode>,
    pub description: String,
    pub amount: Money,
}

impl From<&DiscountView> for DiscountSnapshot {
    fn from(d: &DiscountView) -> Self {
        DiscountSnapshot { promotion: d.promotion.clone(), code: d.code.clone(), description: d.description.clone(), amount: d.amount }
    }
}

/// The source of randomness (op ids, guest tokens): `crypto.getRandomValues` in a browser, a
/// seeded generator in simulations.
pub type Random = Box<dyn FnMut(&mut [u8])>;

/// Most ops one push carries.
pub const BATCH: usize = 100;

pub struct Engine {
    storage: Box<dyn Storage>,
    key: String,
    limits: Limits,
    currency: Currency,
    random: Random,
    pub state: ClientState,
    /// The stored text this client last read or wrote, to skip re-reading an unchanged store.
    seen: Option<String>,
    /// The state in memory is newer than the store (a write failed: quota, disabled storage).
    unsaved: bool,
    /// No server: changes apply to the confirmed cart directly.
    local_only: bool,
    /// Ids of the ops of the push under way, if any (per client, never stored).
    in_flight: Vec<String>,
    /// Grows with each identity change, so an answer to an older identity is ignored.
    epoch: u64,
    failures: u32,
    /// This tab's client id and the `seq` its next op takes (api-v1 Ops): the server knows a
    /// numbered op by the client's high-water mark. Per tab (tabs share the queue, not a
    /// counter), and replaced whenever ops of a client are dropped unsent or renumbered, so no
    /// client's sequence has a gap.
    client: String,
    next_seq: u64,
    /// The store holds a newer format than this library's: it is never written, and this client
    /// keeps its cart in memory (`storage_newer`).
    read_only: bool,
    /// The server refused this identity (`401`, or a guest cart merged at a login elsewhere):
    /// nothing is pushed before this time (ms since the epoch) unless the identity changes.
    blocked: Option<(ErrorBody, i64)>,
}

fn uuid_v4(random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut b = [0u8; 16];
    random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
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
    for (list, into) in [(&view.lines, &mut cart.lines), (&view.saved, &mut cart.saved)] {
        for l in list {
            into.push(CartLine { sku: l.sku.clone(), quantity: l.quantity, price_at_add: l.price_at_add, added_at: l.added_at, seq });
            seq += 1;
        }
    }
    cart.next_seq = seq;
    cart.promo_codes = view.promo_codes.iter().map(|c| c.code.clone()).collect();
    cart
}

fn annotations_of(view: &CartView) -> BTreeMap<Sku, Annotation> {
    view.lines
        .iter()
        .chain(&view.saved)
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
            annotations: BTreeMap::new(),
            pending: Vec::new(),
            last_error: None,
            checkout_key: None,
            promotions: KnownPromotions::default(),
        };
        let mut e = Engine {
            storage,
            key: key.to_owned(),
            limits,
            currency,
            random,
            state,
            seen: None,
            unsaved: false,
            local_only: false,
            in_flight: Vec::new(),
            epoch: 0,
            failures: 0,
            client: String::new(),
            next_seq: 1,
            read_only: false,
            blocked: None,
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

    /// A clean state, with a new client sequence (the old one's queued ops are gone).
    fn fresh_state(&mut self, last_error: Option<LastError>) -> ClientState {
        self.client = uuid_v4(&mut *self.random);
        self.next_seq = 1;
        ClientState {
            identity: Identity::Guest { token: new_guest_token(&mut *self.random) },
            confirmed: Cart::new(self.currency),
            annotations: BTreeMap::new(),
            pending: Vec::new(),
            last_error,
            checkout_key: None,
            promotions: KnownPromotions::default(),
        }
    }

    /// Reads the stored state if it changed since this client last saw it (another tab wrote).
    /// Returns whether anything changed. Unreadable data starts a clean cart and says why.
    pub fn reload(&mut self) -> bool {
        let raw = self.storage.get(&self.key);
        if raw.is_some() && raw == self.seen {
            return false;
        }
        let Some(text) = raw else {
            return false;
        };
        let before = self.state.identity.clone();
        self.read_only = false;
        self.state = match self.parse(&text) {
            // Changes that could not be saved yet are merged with the other tab's, not dropped.
            Ok(theirs) if self.unsaved => {
                self.absorb(theirs);
                self.seen = Some(text);
                return true;
            }
            Ok(state) => state,
            Err(problem) if problem.is(ErrorCode::StorageNewer) => {
                // Another page, of a newer version, owns the store: leave it alone.
                if !self.read_only {
                    self.read_only = true;
                    self.state.last_error = Some(problem);
                }
                self.seen = Some(text);
                return true;
            }
            Err(problem) => {
                let fresh = self.fresh_state(Some(problem));
                self.state = fresh;
                self.persist();
                return true;
            }
        };
        self.seen = Some(text);
        if self.state.identity != before {
            self.new_epoch();
        }
        true
    }

    fn parse(&self, text: &str) -> Result<ClientState, LastError> {
        let corrupt = |why: String| {
            LastError::new(ErrorCode::StorageCorrupt, format!("the stored cart could not be read ({why}); starting a new cart"))
        };
        // Read by hand from a `Value` (see `shared::wire::read`): one JSON deserializer in the
        // WebAssembly module instead of one per stored type.
        let v: Value = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        match v.get("format").and_then(Value::as_u64) {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) if f < u64::from(FORMAT) => {
                return Err(LastError::new(
                    ErrorCode::StorageOutdated,
                    format!("the stored cart is in an older format ({f}); starting a new cart"),
                ));
            }
            Some(f) => {
                return Err(LastError::new(
                    ErrorCode::StorageNewer,
                    format!(
                        "the stored cart is in a newer format ({f}) than this page understands; it is left untouched and this page keeps its cart in memory"
                    ),
                ));
            }
            _ => return Err(corrupt("not a cart of this library".into())),
        }
        let text_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let identity = match (v.get("owner").and_then(Value::as_str), text_of("guest_token"), text_of("user_token")) {
            (Some("guest"), Some(t), _) if GuestToken::parse(&t).is_ok() => Identity::Guest { token: t },
            (Some("user"), _, Some(jwt)) if !jwt.is_empty() => Identity::User { jwt },
            _ => return Err(corrupt("no valid identity".into())),
        };
        let stored_cart = v.get("cart").and_then(StoredCart::from_json).ok_or_else(|| corrupt("no readable cart".into()))?;
        let annotations: BTreeMap<Sku, Annotation> = match v.get("annotations") {
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
            _ => BTreeMap::new(),
        };
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
        let pending_values = match v.get("pending") {
            Some(Value::Array(p)) => p.clone(),
            _ => return Err(corrupt("no pending list".into())),
        };
        // However many ops a shopper queued offline, they are read back: the request cap applies
        // to a push, and pushes are made in batches.
        let stored = StoredParts { cart: stored_cart, pending: pending_values, annotations, last_error };
        let confirmed = stored.cart.into_cart().ok_or_else(|| corrupt("unknown cart format".into()))?;
        let times: Vec<(Timestamp, bool)> = stored
            .pending
            .iter()
            .map(|v| {
                let at = v.get("at").and_then(Value::as_str).and_then(Timestamp::parse_rfc3339).unwrap_or(confirmed.updated_at);
                (at, v.get("sent").and_then(Value::as_bool).unwrap_or(true))
            })
            .collect();
        let pending = wire::parse_op_list(&stored.pending, &self.limits)
            .map_err(|e| corrupt(e.message))?
            .into_iter()
            .zip(times)
            .filter_map(|((id, kind), (at, sent))| kind.ok().map(|kind| PendingOp { op: Op { id, kind }, at, sent }))
            .collect();
        let promotions = v.get("promotions").map(|p| KnownPromotions::from_json(p, confirmed.currency)).unwrap_or_default();
        Ok(ClientState {
            identity,
            confirmed,
            annotations: stored.annotations,
            pending,
            last_error: stored.last_error,
            checkout_key,
            promotions,
        })
    }

    /// Writes the state. A full or refused storage keeps the state in memory and says so.
    ///
    /// Tabs share the store without a lock, so another tab may have written since this one last
    /// read. Rather than overwrite that, the two are merged: the newer confirmed cart wins and
    /// the pending ops are the union of both queues (by op id). A resurrected op that was already
    /// acknowledged is only sent again, and the server answers it as a duplicate.
    pub fn persist(&mut self) {
        if self.read_only {
            return;
        }
        if let Some(text) = self.storage.get(&self.key)
            && Some(&text) != self.seen.as_ref()
            && let Ok(theirs) = self.parse(&text)
        {
            self.absorb(theirs);
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
            annotations: self.state.annotations.clone(),
            pending: self
                .state
                .pending
                .iter()
                .map(|p| {
                    let mut v = wire::op_to_json(&p.op, Some(p.at));
                    v["sent"] = Value::Bool(p.sent);
                    v
                })
                .collect(),
            last_error: self.state.last_error.clone(),
            checkout_key: self.state.checkout_key.as_ref().map(|k| StoredCheckoutKey { version: k.version, key: &k.key }),
            promotions: self.state.promotions.to_json(),
        };
        let text = serde_json::to_string(&stored).unwrap_or_default();
        match self.storage.set(&self.key, &text) {
            Ok(()) => {
                if self.state.last_error.as_ref().is_some_and(|e| e.is(ErrorCode::StorageFull)) {
                    self.state.last_error = None;
                    // Written again with the error cleared, so other tabs do not show it either.
                    return self.persist();
                }
                self.seen = Some(text);
                self.unsaved = false;
            }
            Err(e) => {
                let message = match e {
                    StorageError::Full => "browser storage is full; the cart is kept in memory until it can be saved".to_owned(),
                    StorageError::Unavailable(why) => format!("browser storage refused the cart ({why}); it is kept in memory"),
                };
                self.state.last_error = Some(LastError::new(ErrorCode::StorageFull, message));
                self.unsaved = true;
            }
        }
    }

    fn absorb(&mut self, theirs: ClientState) {
        if theirs.identity != self.state.identity {
            // The other tab logged in or out meanwhile: its identity and cart stand, and this
            // tab's queued changes follow them.
            self.state.identity = theirs.identity;
            self.state.confirmed = theirs.confirmed;
            self.state.annotations = theirs.annotations;
            self.new_epoch();
        } else if theirs.confirmed.version > self.state.confirmed.version {
            self.state.confirmed = theirs.confirmed;
            self.state.annotations = theirs.annotations;
        }
        // This client changes the key only right after reading the store, and saves at once: what
        // the store holds is the newest word on it (a key another tab settled stays settled).
        self.state.checkout_key = theirs.checkout_key;
        if theirs.promotions.at > self.state.promotions.at {
            self.state.promotions = theirs.promotions;
        }
        for p in theirs.pending {
            if !self.state.pending.iter().any(|q| q.op.id == p.op.id) {
                self.state.pending.push(p);
            }
        }
    }

    /// The confirmed cart with every pending op applied.
    pub fn optimistic(&self) -> Cart {
        let mut cart = self.state.confirmed.clone();
        for p in &self.state.pending {
            let _ = cart.apply(&p.op.kind, &self.limits, p.at);
        }
        cart
    }

    /// The state a UI renders at `now`. The lines, their price annotations, the subtotal and the
    /// discounts come from `shared`'s `CartView` and discount engine, exactly as the server
    /// computes them, with the promotions this client knows; a code whose promotion it does not
    /// know yet is `pending` and takes nothing off.
    pub fn snapshot(&self, syncing: bool, now: Timestamp) -> Snapshot {
        let owner = match self.state.identity {
            Identity::Guest { .. } => Owner::Guest,
            Identity::User { .. } => Owner::User,
        };
        let known = &self.state.promotions;
        let usage = |id: &PromotionId| known.usage(id);
        let promos = Promos { promotions: &known.list, usage: &usage, now };
        let view = CartView::new(
            &self.optimistic(),
            owner,
            Timestamp::default(),
            |line| {
                self.state.annotations.get(&line.sku).map(|a| wire::Annotation {
                    current_price: a.current_price,
                    availability: a.availability.unwrap_or(Availability::Unknown),
                })
            },
            &promos,
        );
        let line = |l: &wire::LineView| LineSnapshot {
            sku: l.sku.clone(),
            quantity: l.quantity,
            price_at_add: l.price_at_add,
            added_at: l.added_at,
            current_price: l.current_price,
            price_changed: l.price_changed,
            availability: l.availability,
            discount: l.discount,
            line_total: l.line_total,
        };
        Snapshot {
            owner,
            version: self.state.confirmed.version,
            item_count: view.item_count,
            subtotal: view.subtotal,
            promo_codes: view
                .promo_codes
                .iter()
                .map(|c| {
                    let pending = !known.asked.contains(&c.code);
                    PromoCodeSnapshot {
                        code: c.code.clone(),
                        applied: c.applied,
                        reason: if pending { None } else { c.reason.clone() },
                        missing: c.missing,
                        pending,
                    }
                })
                .collect(),
            discounts: view.discounts.iter().map(DiscountSnapshot::from).collect(),
            discount_total: view.discount_total,
            total: view.total,
            lines: view.lines.iter().map(line).collect(),
            saved: view.saved.iter().map(line).collect(),
            pending_ops: self.state.pending.len(),
            syncing,
            last_error: self.state.last_error.clone(),
        }
    }

    /// The query of the promotions lookup this client needs now (`codes=A,B`, or empty for the
    /// automatic ones only), if any: when a code on the cart was never looked up, or the last
    /// lookup is older than [`PROMOTIONS_TTL_MS`]. Returns the codes it covers too.
    pub fn promotions_query(&self, now: Timestamp) -> Option<(String, BTreeSet<PromoCode>)> {
        let codes: BTreeSet<PromoCode> = self.optimistic().promo_codes.into_iter().collect();
        let known = &self.state.promotions;
        let stale = known.at.is_none_or(|at| now.millis().saturating_sub(at.millis()) > PROMOTIONS_TTL_MS);
        if !stale && codes.is_subset(&known.asked) {
            return None;
        }
        let list: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        Some((if list.is_empty() { String::new() } else { format!("codes={}", list.join(",")) }, codes))
    }

    /// The answer to a promotions lookup that covered `asked`.
    pub fn finish_promotions(&mut self, asked: BTreeSet<PromoCode>, answer: &Value, now: Timestamp) {
        self.reload();
        self.state.promotions = KnownPromotions::from_answer(answer, asked, Some(now), self.currency);
        self.persist();
    }

    /// Applies a change locally and queues it for the server. An op the cart would reject
    /// (bad input, a missing line, a full cart) is refused here and changes nothing.
    pub fn mutate(&mut self, kind: OpKind, now: Timestamp) -> Result<(), CartError> {
        self.reload();
        if self.local_only {
            // No server to tell: the change is the new confirmed state (its version stays the
            // last server version seen, none).
            let version = self.state.confirmed.version;
            self.state.confirmed.apply(&kind, &self.limits, now)?;
            self.state.confirmed.version = version;
            self.persist();
            return Ok(());
        }
        let mut cart = self.optimistic();
        cart.apply(&kind, &self.limits, now)?;
        if !self.coalesce(&kind) {
            let id = OpId::parse(&uuid_v4(&mut *self.random)).expect("a uuid is a valid op id");
            let id = id.with_client(self.take_seq());
            self.state.pending.push(PendingOp { op: Op { id, kind }, at: now, sent: false });
        }
        self.persist();
        Ok(())
    }

    fn take_seq(&mut self) -> ClientSeq {
        let seq = ClientSeq::parse(&self.client, self.next_seq).expect("a uuid is a valid client id");
        self.next_seq += 1;
        seq
    }

    /// Starts a new client sequence (a new client id, from 1) and numbers the pending ops of
    /// `client` in it, in queue order: after ops of that client were dropped unsent, or the
    /// server found a gap in its sequence (`op_out_of_order`). The server starts a client it does
    /// not know wherever it is, so the renumbered ops are accepted; each keeps its op id.
    fn renumber(&mut self, client: &str) {
        self.client = uuid_v4(&mut *self.random);
        self.next_seq = 1;
        for i in 0..self.state.pending.len() {
            if self.state.pending[i].op.id.client().is_some_and(|c| c.client == client) {
                let seq = self.take_seq();
                let p = &mut self.state.pending[i];
                p.op.id = OpId::parse(p.op.id.as_str()).expect("a kept op id is valid").with_client(seq);
            }
        }
    }

    /// Folds a change into the last pending op when both touch one line the same way and that op
    /// has not been sent: rapid clicks on a quantity become one op. The result is the same cart.
    fn coalesce(&mut self, kind: &OpKind) -> bool {
        let Some(last) = self.state.pending.last_mut().filter(|p| !p.sent) else { return false };
        match (&mut last.op.kind, kind) {
            (OpKind::SetQuantity { sku: a, quantity: qa }, OpKind::SetQuantity { sku: b, quantity: qb }) if a == b => {
                *qa = *qb;
                true
            }
            (OpKind::Add { sku: a, quantity: qa, price_at_add: pa }, OpKind::Add { sku: b, quantity: qb, price_at_add: pb })
                if a == b && pa == pb =>
            {
                match Quantity::new(i64::from(qa.get()) + i64::from(qb.get()), &self.limits) {
                    Ok(sum) => {
                        *qa = sum;
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }

    /// Makes this a local-only cart (no endpoint): changes apply to the confirmed cart at once
    /// and nothing is queued.
    pub fn set_local_only(&mut self, local: bool) {
        self.local_only = local;
        if local && !self.state.pending.is_empty() {
            self.state.confirmed = self.optimistic();
            self.state.pending.clear();
            self.client = uuid_v4(&mut *self.random);
            self.next_seq = 1;
            self.persist();
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next push, if there are pending ops and none is under way. Resending ops that were
    /// sent before (their answer was lost) is safe: the server applies each op id once.
    pub fn begin_push(&mut self) -> Option<Push> {
        self.reload();
        if !self.in_flight.is_empty() || self.state.pending.is_empty() {
            return None;
        }
        let n = self.state.pending.len().min(BATCH);
        let batch = &mut self.state.pending[..n];
        for p in batch.iter_mut() {
            p.sent = true;
        }
        self.in_flight = batch.iter().map(|p| p.op.id.as_str().to_owned()).collect();
        let ops: Vec<Value> = batch.iter().map(|p| wire::op_to_json(&p.op, Some(p.at))).collect();
        // Other tabs must see them as sent before they could fold a change into one of them.
        self.persist();
        Some(Push {
            body: serde_json::json!({ "ops": ops }),
            ids: self.in_flight.clone(),
            identity: self.state.identity.clone(),
            epoch: self.epoch,
        })
    }

    pub fn push_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The server's answer to a push: every op it reported on leaves the queue, the rejected ones
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
                let reported: Vec<&str> = res.results.iter().map(|r| r.op_id.as_str()).collect();
                self.state.pending.retain(|p| !reported.contains(&p.op.id.as_str()));
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
            Err(Failure::Refused { error, status }) if error.is(ErrorCode::OpOutOfOrder) => {
                // A gap in a client's sequence: nothing was applied. Its ops are numbered afresh
                // and sent again, after a pause.
                self.failures += 1;
                let client = error.details.get("client_id").and_then(Value::as_str).map(str::to_owned);
                if let Some(client) = client {
                    self.renumber(&client);
                }
                let _ = status;
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
                let dropped: Vec<String> = self
                    .state
                    .pending
                    .iter()
                    .filter(|p| push.ids.contains(&p.op.id.as_str().to_owned()))
                    .filter_map(|p| p.op.id.client().map(|c| c.client.clone()))
                    .collect();
                self.state.pending.retain(|p| !push.ids.contains(&p.op.id.as_str().to_owned()));
                // The server settled none of them: the ops after them would leave a gap.
                let mut clients = dropped;
                clients.dedup();
                for c in clients {
                    self.renumber(&c);
                }
                self.state.last_error = Some(error.into());
            }
        }
        self.persist();
    }

    /// A cart read from the server (`GET /v1/cart`).
    pub fn finish_pull(&mut self, identity: &Identity, view: &CartView) {
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
        self.accept_cart(view);
        self.persist();
    }

    fn accept_cart(&mut self, view: &CartView) {
        if view.version >= self.state.confirmed.version {
            self.state.confirmed = cart_from_view(view);
            self.state.annotations = annotations_of(view);
        }
    }

    /// The body of `POST /v1/cart/merge` for a login, with every pending guest op, and the ids
    /// of those ops; `None` if this client is no guest (another tab logged in already).
    pub fn login_request(&mut self) -> Option<(Value, Vec<String>)> {
        self.reload();
        let Identity::Guest { token } = &self.state.identity else { return None };
        // The merge carries at most one batch; any later ops stay queued and follow to the user's
        // cart after the login (the client pushes what it can as a guest first).
        let batch = &self.state.pending[..self.state.pending.len().min(BATCH)];
        let ops: Vec<Value> = batch.iter().map(|p| wire::op_to_json(&p.op, Some(p.at))).collect();
        let ids = batch.iter().map(|p| p.op.id.as_str().to_owned()).collect();
        Some((serde_json::json!({ "guest_token": token, "ops": ops }), ids))
    }

    /// Switches to the user's cart after a merge (or, with no guest cart to merge, a read). The
    /// ops the merge carried (`sent`) are done; ops made while the login was under way stay
    /// pending and go to the user's cart.
    pub fn finish_login(&mut self, jwt: &str, cart: &CartView, sent: &[String]) {
        self.reload();
        self.state.identity = Identity::User { jwt: jwt.to_owned() };
        self.state.pending.retain(|p| !sent.iter().any(|id| id == p.op.id.as_str()));
        self.state.confirmed = cart_from_view(cart);
        self.state.annotations = annotations_of(cart);
        self.state.last_error = None;
        self.state.checkout_key = None;
        self.new_epoch();
        self.persist();
    }

    /// Back to a fresh guest cart; nothing of the user's cart stays in storage.
    pub fn logout(&mut self) {
        self.state = self.fresh_state(None);
        self.new_epoch();
        self.persist();
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
        self.reload();
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
        self.reload();
        if self.state.checkout_key.as_ref().is_some_and(|k| k.key == key) {
            self.state.checkout_key = None;
            self.persist();
        }
    }
}

/// Whether a checkout answer of `status` settles its idempotency key (see
/// [`Engine::settle_checkout_key`]).
pub fn checkout_settled(status: u16, error: Option<&ErrorBody>) -> bool {
    (200..500).contains(&status) && status != 429 && !error.is_some_and(|e| e.is(ErrorCode::RequestInProgress))
}

/// Maps an HTTP error answer to a failure: 5xx and 429 are retried, other 4xx are not.
pub fn failure_of(status: u16, body: &str) -> Failure {
    let error = ErrorBody::of_answer(status, body);
    if status >= 500 || status == 429 { Failure::Retry(error.message) } else { Failure::Refused { error, status } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn engine(storage: &MemoryStorage, seed: u8) -> Engine {
        let mut n = u64::from(seed);
        Engine::new(
            Box::new(storage.clone()),
            "cart",
            Limits::default(),
            Currency::USD,
            Box::new(move |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    *x = (n >> 56) as u8;
                }
            }),
        )
    }

    fn add(sku: &str) -> OpKind {
        OpKind::Add { sku: Sku::parse(sku).unwrap(), quantity: Quantity::new(1, &Limits::default()).unwrap(), price_at_add: None }
    }

    fn numbering(e: &Engine) -> Vec<(String, u64)> {
        e.state.pending.iter().map(|p| p.op.id.client().map(|c| (c.client.clone(), c.seq)).unwrap()).collect()
    }

    #[test]
    fn each_tab_numbers_its_ops_and_a_gap_is_numbered_afresh() {
        let storage = MemoryStorage::default();
        let mut a = engine(&storage, 1);
        let mut b = engine(&storage, 2);
        for sku in ["A", "B", "C"] {
            a.mutate(add(sku), Timestamp::default()).unwrap();
        }
        b.mutate(add("D"), Timestamp::default()).unwrap();
        a.reload();
        let n = numbering(&a);
        assert_eq!(n.iter().map(|x| x.1).collect::<Vec<_>>(), [1, 2, 3, 1], "each tab counts from 1");
        assert!(n[0].0 == n[2].0 && n[0].0 != n[3].0, "one client per tab");
        let push = a.begin_push().unwrap();
        assert_eq!(push.body["ops"][0]["client_id"], n[0].0.as_str());
        assert_eq!(push.body["ops"][2]["seq"], 3);
        // The server saw a gap in the first tab's sequence: nothing applied, the ops stay,
        // numbered afresh under a new client, and are sent again.
        let mut error = ErrorBody::new(ErrorCode::OpOutOfOrder, "gap");
        error.details.insert("client_id".into(), Value::String(n[0].0.clone()));
        a.finish_push(&push, Err(Failure::Refused { error, status: 409 }), 0, 0.5);
        let renumbered = numbering(&a);
        assert_eq!(a.state.pending.len(), 4);
        assert_eq!(renumbered.iter().map(|x| x.1).collect::<Vec<_>>(), [1, 2, 3, 1]);
        assert!(renumbered[0].0 != n[0].0 && renumbered[0].0 == renumbered[2].0, "a new client for the renumbered ops");
        assert_eq!(renumbered[3], n[3], "the other tab's ops keep theirs");
        let ids: Vec<&str> = a.state.pending.iter().map(|p| p.op.id.as_str()).collect();
        assert_eq!(ids, push.ids.iter().map(String::as_str).collect::<Vec<_>>(), "op ids stay");
        // The next op of that tab follows on in the new sequence.
        a.mutate(add("E"), Timestamp::default()).unwrap();
        assert_eq!(numbering(&a)[4], (renumbered[0].0.clone(), 4));
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
        a.finish_pull(&identity, &view);
        assert_eq!(a.optimistic().lines[0].quantity, 1, "not 2");
        // Unsent ops cannot be in the server's cart, so a read with only those is taken.
        a.finish_push(&push, Err(Failure::Retry("lost".into())), 0, 0.5);
        a.mutate(add("B"), Timestamp::default()).unwrap();
        let mut fresh = engine(&MemoryStorage::default(), 3);
        fresh.mutate(add("C"), Timestamp::default()).unwrap();
        let identity = fresh.identity().clone();
        fresh.finish_pull(&identity, &view);
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
        a.finish_pull(&identity, &CartView::new(&newer, Owner::Guest, Timestamp::default(), |_| None, &wire::Promos::none()));
        assert_ne!(a.checkout_key(), second, "a changed cart is a new checkout");
        assert!(checkout_settled(201, None));
        assert!(checkout_settled(409, Some(&ErrorBody::new(ErrorCode::OutOfStock, ""))));
        assert!(!checkout_settled(409, Some(&ErrorBody::new(ErrorCode::RequestInProgress, ""))));
        assert!(!checkout_settled(503, None) && !checkout_settled(429, None));
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
