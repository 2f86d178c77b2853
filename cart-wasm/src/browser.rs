//! The `CartClient` class of the npm package: a thin layer over `engine` that owns localStorage
//! and nothing else of the browser. What waits or listens (requests, Web Locks, pauses, timers,
//! the `storage` and `online` events) is `js/driver.js`, which calls the client's [`Driver`] steps.

use crate::engine::{Engine, Failure, Identity, PerClient, Push, checkout_settled, failure_of, retry_hint_ms};
use crate::js::{JsCartError, SnapshotSource, cart_error, js_error, parse_code, parse_money, parse_quantity, parse_sku};
use crate::storage::{MemoryStorage, Storage, StorageError};
use js_sys::{Function, JSON, Promise, Reflect};
use serde_json::Value;
use shared::promo::PromoCode;
use shared::wire::{ErrorBody, read};
use shared::{Currency, ErrorCode, Limits, Money, OpKind, Timestamp};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/cart-error.js")]
extern "C" {
    #[wasm_bindgen(js_name = lazySnapshot)]
    fn lazy_snapshot(source: SnapshotSource, page: &JsValue) -> JsValue;
    /// After `before` settles (a sync: its failure is the call's), `POST <endpoint><path>` with
    /// `headers` and the JSON `body`; the answer as the page's object, or a `CartError`.
    #[wasm_bindgen(js_name = apiCall)]
    fn api_call(before: Promise, endpoint: &str, path: &str, headers: JsValue, body: Option<String>) -> Promise;
}

// The asynchronous side (requests, Web Locks, pauses, timers, events) is JavaScript,
// `js/driver.js`: each task runs in a later microtask and calls back the client's `Driver` for
// every decision. A task is
// handed a driver of its own ([`task`]), which keeps the client until the task ends (a checkout
// under way when the page frees its client still completes), and frees it then.
#[wasm_bindgen(module = "/js/driver.js")]
extern "C" {
    /// Holds the tab lock `tab` and queues for the leader lock `leader` ([`Driver::lead`]);
    /// false without Web Locks.
    #[wasm_bindgen(js_name = holdLocks)]
    fn hold_locks(d: &JsValue, tab: &str, leader: &str) -> bool;
    /// The leader's work: push queued ops, or, local-only, fold them under the lock.
    fn flush(d: &JsValue) -> Promise;
    /// [`Driver::unkick`], then [`flush`].
    fn kick(d: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = lookUpPromotions)]
    fn look_up_promotions(d: &JsValue) -> Promise;
    /// Push, then read the server's cart: the snapshot, or a `CartError`.
    #[wasm_bindgen(js_name = syncNow)]
    fn sync_now(d: &JsValue) -> Promise;
    /// [`sync_now`] with its rejection ignored (a sync the page did not ask for).
    fn background(d: &JsValue);
    #[wasm_bindgen(js_name = login)]
    fn js_login(d: &JsValue, token: &str, policy: Option<&str>) -> Promise;
    #[wasm_bindgen(js_name = checkout)]
    fn js_checkout(d: &JsValue, id: u32, args: CheckoutArgs) -> Promise;
    /// Calls [`Driver::heard_write`] of each, later.
    #[wasm_bindgen(js_name = tellLater)]
    fn tell_later(drivers: Vec<JsValue>);
    /// A timer that calls [`Driver::tick`] in `ms` (one function per client, made at its first).
    fn arm(d: &JsValue, ms: i32);
    /// Listens for the page's `storage` events of the cart under `key` ([`Driver::heard_write`])
    /// and its `online` event ([`Driver::wake`]); returns the function that stops, or `undefined`
    /// where the global has no events (Node).
    fn listen(d: &JsValue, key: &str) -> JsValue;
    /// The function that takes listener `id` off the client.
    fn unsubscriber(d: &JsValue, id: u32) -> JsValue;
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis`, read without touching `window` (in a browser they are the same object).
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: js_sys::Object;
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** An amount in the currency's minor units (cents), never a float. */
export type Money = { amount: number; currency: string };
export type Availability = "in_stock" | "low_stock" | "out_of_stock" | "unknown" | "discontinued";
export type Line = {
  sku: string; quantity: number; priceAtAdd?: Money; addedAt: string;
  currentPrice?: Money; priceChanged?: boolean; availability?: Availability;
  /** Cart lines only: what the promotions take off, and quantity × unit price − discount. */
  discount?: Money; lineTotal?: Money;
  /** Unavailable lines only: why. */
  reason?: "out_of_stock" | "discontinued";
};
export type PromoCodeState = {
  code: string; applied: boolean;
  /** Why not applied: not_best, min_subtotal_not_met, not_started, expired, inactive, usage_limit_reached, login_required. */
  reason?: string;
  /** With min_subtotal_not_met: what is still to add. */
  missing?: Money;
  /** The client does not know this code's promotion yet; no discount until the server answers. */
  pending?: boolean;
};
export type Discount = { promotion: string; code?: string; description: string; amount: Money };
export type CartSnapshot = {
  owner: "guest" | "user";
  /** Last server version seen (0 if never synced). */
  version: number;
  /** With pending ops already applied. */
  lines: Line[];
  saved: Line[];
  /**
   * Cart lines whose product is out of stock or discontinued (as the server last said), shown
   * apart and left out of itemCount and the totals. They come back to `lines` by themselves when
   * stock returns; remove them or save them for later like any line. Checkout refuses a cart
   * that still holds them (`out_of_stock`).
   */
  unavailable: Line[];
  itemCount: number;
  /** Before discounts. */
  subtotal: Money;
  promoCodes: PromoCodeState[];
  discounts: Discount[];
  discountTotal: Money;
  /** subtotal − discountTotal: what checkout charges, before gift cards, if prices hold. */
  total: Money;
  /** Ops not yet acknowledged by the server. */
  pendingOps: number;
  syncing: boolean;
  lastError?: { code: string; message: string };
};
export type OrderLine = { sku: string; quantity: number; unitPrice: Money; priceAtAdd?: Money; discount: Money; lineTotal: Money };
export type Order = {
  id: string; status: string; lines: OrderLine[];
  subtotal: Money; discounts: Discount[]; discountTotal: Money; total: Money;
  giftCards: { last4: string; amount: Money }[];
  /** What the payment must bring; 0 when gift cards paid it all (the order is then paid). */
  amountDue: Money;
  reservedUntil: string; createdAt: string;
};
export type CartClientOptions = {
  /** Base URL of the sync server (".../api" serves "/v1/..." below it). Without it the cart is local-only. */
  endpoint?: string;
  /** localStorage key of the cart (default "cartsync"). */
  storageKey?: string;
  /** Currency of a new cart (default "USD"). */
  currency?: string;
  /** Must match the server's CARTSYNC_MAX_LINE_QUANTITY (default 99). */
  maxLineQuantity?: number;
  /** Must match the server's CARTSYNC_MAX_LINES (default 200). */
  maxLines?: number;
  /**
   * Called once when the server refuses the cart's identity (an expired or revoked token:
   * `unauthorized`; a guest cart merged at a login elsewhere: `cart_merged`). Pushes pause, every
   * op is kept, and `sync()`/`checkout()` reject with that code until `login()` is called again.
   */
  onUnauthorized?: (error: Error & { code: string; details?: unknown }) => void;
};
export type CheckoutOptions = {
  idempotencyKey?: string; expectedTotal?: Money; giftCards?: string[];
  /** A quote from `quote()`: its lines are charged at the quoted prices (`quote_invalid` once expired or if the cart changed). */
  quote?: string;
};
export type MergePolicy = "sum" | "max" | "keep_user";
export type LoginOptions = { policy?: MergePolicy };
/** A cart as a merge policy would make it. */
export type PreviewCart = { lines: Line[]; saved: Line[]; unavailable: Line[]; itemCount: number; subtotal: Money; discountTotal: Money; total: Money };
export type MergePreview = {
  policies: { sum: PreviewCart; max: PreviewCart; keep_user: PreviewCart };
  /** The server's own policy; null when it asks the shopper (`prompt`). */
  defaultPolicy: MergePolicy | null;
  /** Guest lines a merge leaves out: the catalog no longer sells them. */
  dropped: { sku: string; quantity: number; reason: "discontinued" }[];
  /** Lines asking for more than is in stock (kept). */
  short: { sku: string; requested: number; available: number }[];
  /** false: the catalog could not be read, nothing was checked. */
  validated: boolean;
};
export type Quote = {
  /** Opaque and signed: pass it to checkout({ quote }). */
  quote: string; expiresAt: string;
  lines: { sku: string; quantity: number; unitPrice: Money; discount: Money; lineTotal: Money }[];
  subtotal: Money; discountTotal: Money; total: Money;
};
"#;

fn now() -> Timestamp {
    Timestamp::from_millis(js_sys::Date::now() as i64)
}

/// `crypto.getRandomValues`, drawn from a pool of 256 bytes so an op does not cross into
/// JavaScript for its 16.
fn random(buf: &mut [u8]) {
    thread_local! {
        static POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    POOL.with(|p| {
        let (pool, used) = &mut *p.borrow_mut();
        for b in buf.iter_mut() {
            if *used == pool.len() {
                pool.resize(256, 0);
                get_random_values(pool);
                *used = 0;
            }
            *b = pool[*used];
            *used += 1;
        }
    });
}

/// A JSON value as the page's object.
fn js_of(v: &Value) -> JsValue {
    JSON::parse(&shared::json::text(v)).unwrap_or(JsValue::NULL)
}

/// A plain object of string fields.
fn js_strings(fields: &[(&str, &str)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
    }
    o.into()
}

/// Reads an answer body with one of `shared::wire::read`'s readers.
fn read_answer<T>(text: &str, reader: impl Fn(&Value) -> Result<T, String>) -> Result<T, String> {
    let v: Value = shared::json::parse(text).map_err(|e| ["unreadable answer: ", &e.message()].concat())?;
    reader(&v).map_err(|e| ["unreadable answer: ", &e].concat())
}

fn unavailable(why: String) -> JsValue {
    js_error(ErrorCode::Unavailable, &why)
}

fn network_error(why: &str) -> JsValue {
    js_error(ErrorCode::NetworkError, why)
}

/// localStorage, through the storage trait. `1` counts other tabs' writes (their `storage`
/// events), so the engine reads again only when one came.
struct LocalStorage(web_sys::Storage, Rc<Cell<u64>>, RefCell<Option<(String, JsValue)>>);

#[wasm_bindgen]
extern "C" {
    /// A `Storage` seen through [`KeyedStorage::set_item_keyed`].
    type KeyedStorage;
    /// `setItem` with the key as a JavaScript string already made.
    #[wasm_bindgen(method, catch, js_name = setItem)]
    fn set_item_keyed(this: &KeyedStorage, key: &JsValue, value: &str) -> Result<(), JsValue>;
}

impl LocalStorage {
    /// The last key written, as a JavaScript string: a tab writes the same chunk key for eight
    /// changes in a row, and a string made once is not decoded and copied into the page again.
    fn js_key(&self, key: &str) -> JsValue {
        let mut last = self.2.borrow_mut();
        match &*last {
            Some((k, v)) if k == key => v.clone(),
            _ => {
                let v = JsValue::from_str(key);
                *last = Some((key.to_owned(), v.clone()));
                v
            }
        }
    }
}

impl Storage for LocalStorage {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get_item(key).ok().flatten()
    }

    fn set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.0.unchecked_ref::<KeyedStorage>().set_item_keyed(&self.js_key(key), value).map_err(|e| {
            let name = Reflect::get(&e, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
            if name == "QuotaExceededError" || name == "NS_ERROR_DOM_QUOTA_REACHED" {
                StorageError::Full
            } else {
                StorageError::Unavailable(name)
            }
        })
    }

    fn remove(&self, key: &str) {
        let _ = self.0.remove_item(key);
    }

    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let n = self.0.length().unwrap_or(0);
        (0..n).filter_map(|i| self.0.key(i).ok().flatten()).filter(|k| k.starts_with(prefix)).collect()
    }

    fn generation(&self) -> u64 {
        self.1.get()
    }
}

/// A checkout under way: its expected total and gift cards, its promise, and its number.
type RunningCheckout = (Option<Money>, Vec<String>, Promise, u32);

struct Inner {
    engine: Engine,
    /// This client's [`Driver`], as the page's object: what `js/driver.js` is handed.
    driver: JsValue,
    endpoint: Option<String>,
    listeners: Vec<(u32, Function)>,
    next_listener: u32,
    syncing: bool,
    timer_armed: bool,
    /// The engine's change count when the timer last fired ([`schedule`]).
    ticked: u64,
    /// Other tabs' writes seen (shared with the storage).
    writes: Rc<Cell<u64>>,
    /// When this tab last removed the logs of closed tabs (ms).
    last_sweep: f64,
    /// Stops this client's `storage` and `online` listeners (`js/driver.js`'s `listen`).
    unlisten: Option<Function>,
    /// The checkout under way without a key of the caller's, with the total it expects: a second
    /// `checkout()` with the same total joins it rather than start another.
    checkout: Option<RunningCheckout>,
    /// The number of the last checkout started.
    checkouts: u32,
    /// A promotions lookup is under way.
    looking_up: bool,
    /// The page's `onUnauthorized`: told when the server refuses the cart's identity.
    on_unauthorized: Option<Function>,
    /// The last snapshot handed out, and the state it shows.
    last_snapshot: RefCell<Option<((u64, bool), JsValue)>>,
    /// What this client's snapshots were last read as: the module's side and the page's (a
    /// plain object `js/cart-error.js` keeps its lists in).
    rendered: Rc<RefCell<crate::render::Rendered>>,
    page_lists: JsValue,
    /// The platform has Web Locks.
    has_locks: bool,
    /// This tab holds the leader lock: it pushes (or folds) for every tab.
    leader: bool,
    /// A [`kick`] is on its way.
    kicked: bool,
    /// Resolving these releases the Web Locks this client holds for its lifetime.
    release: Vec<Function>,
}

/// Calls every listener with the current state, and tells this page's other clients of the same
/// cart. Must be called with no borrow of `rc` held.
fn notify(rc: &Rc<RefCell<Inner>>) {
    let notice = rc.borrow().pending_notice();
    if let Some((listeners, snap)) = notice {
        for f in listeners {
            // A listener that throws must not stop the others, nor the cart.
            let _ = f.call1(&JsValue::NULL, &snap);
        }
    }
    tell_page(rc);
}

thread_local! {
    /// This page's clients, by storage key. A page never gets the `storage` event of its own
    /// writes, so a client's change is told to the page's other clients of the same cart here
    /// (two providers, a client made twice by React's strict mode, one that holds the leader lock).
    static PAGE: RefCell<Vec<(String, Weak<RefCell<Inner>>)>> = const { RefCell::new(Vec::new()) };
}

fn tell_page(rc: &Rc<RefCell<Inner>>) {
    let key = rc.borrow().engine.key().to_owned();
    let others: Vec<JsValue> = PAGE.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|(_, w)| w.strong_count() > 0);
        p.iter()
            .filter(|(k, w)| *k == key && !std::ptr::eq(w.as_ptr(), Rc::as_ptr(rc)))
            .filter_map(|(_, w)| w.upgrade().map(|o| o.borrow().driver.clone()))
            .collect()
    });
    if !others.is_empty() {
        // Later, with no borrow of the writer held.
        tell_later(others);
    }
}

/// Another tab (or another client of this page) wrote the cart: read it again, tell the
/// listeners, and, in the leader, push or fold what it queued.
fn heard_write(rc: &Rc<RefCell<Inner>>) {
    let writes = rc.borrow().writes.clone();
    writes.set(writes.get() + 1);
    let changed = rc.borrow_mut().engine.reload();
    if changed {
        notify(rc);
        if !rc.borrow().engine.state.pending.is_empty() {
            // For the leader to push or fold: at once, not by a timer (a hidden tab's timers
            // are throttled).
            kick_leader(rc);
        }
    }
}

impl Inner {
    /// The current snapshot: the same object while nothing changed (as `useSyncExternalStore`
    /// needs), rendered lazily.
    fn snapshot(&self) -> JsValue {
        let key = (self.engine.changes(), self.syncing);
        if let Some((k, v)) = &*self.last_snapshot.borrow()
            && *k == key
        {
            return v.clone();
        }
        let source = SnapshotSource { frozen: self.engine.frozen(), syncing: self.syncing, at: now(), rendered: self.rendered.clone() };
        let v = lazy_snapshot(source, &self.page_lists);
        *self.last_snapshot.borrow_mut() = Some((key, v.clone()));
        v
    }

    /// What to call the listeners with; they are called by [`notify`] once no borrow is held,
    /// so a listener may call back into the client.
    fn pending_notice(&self) -> Option<(Vec<Function>, JsValue)> {
        (!self.listeners.is_empty()).then(|| (self.listeners.iter().map(|(_, f)| f.clone()).collect(), self.snapshot()))
    }

    /// The Web Lock under which one tab at a time rewrites the base record.
    fn lock_name(&self) -> String {
        ["cartsync:", self.engine.key()].concat()
    }
}

/// In the leader: pushes (or folds) in a task of its own, soon; several kicks before it runs
/// make one.
fn kick_leader(rc: &Rc<RefCell<Inner>>) {
    {
        let mut inner = rc.borrow_mut();
        if !inner.leader || inner.kicked {
            return;
        }
        inner.kicked = true;
    }
    let _ = kick(&task(rc));
}

/// An offline-first shopping cart: every change applies at once and is saved locally, then
/// pushed to the sync server (if an `endpoint` is given) when the network allows.
#[wasm_bindgen]
pub struct CartClient {
    inner: Rc<RefCell<Inner>>,
}

impl Drop for CartClient {
    fn drop(&mut self) {
        let release = {
            let mut inner = self.inner.borrow_mut();
            if let Some(stop) = inner.unlisten.take() {
                let _ = stop.call0(&JsValue::NULL);
            }
            inner.leader = false;
            std::mem::take(&mut inner.release)
        };
        // The tab and leader locks go to the next client in line.
        for r in release {
            let _ = r.call0(&JsValue::NULL);
        }
    }
}

fn option<T>(opts: &JsValue, name: &str, f: impl Fn(&JsValue) -> Option<T>) -> Option<T> {
    if !opts.is_object() {
        return None;
    }
    Reflect::get(opts, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null()).and_then(|v| f(&v))
}

/// `giftCards`: an array of at most five code strings, each in a gift card code's shape.
fn parse_gift_cards(v: &JsValue) -> Result<Vec<String>, JsValue> {
    let bad = || js_error(ErrorCode::InvalidRequest, "giftCards is an array of at most 5 gift card codes");
    if !js_sys::Array::is_array(v) {
        return Err(bad());
    }
    let list = js_sys::Array::from(v);
    if list.length() as usize > shared::wire::MAX_GIFT_CARDS {
        return Err(bad());
    }
    let mut cards = Vec::with_capacity(list.length() as usize);
    for c in list.iter() {
        cards.push(c.as_string().and_then(|c| shared::gift_card::normalize(&c)).ok_or_else(bad)?);
    }
    Ok(cards)
}

fn no_endpoint(what: &str) -> Promise {
    Promise::reject(&js_error(ErrorCode::NoEndpoint, &[what, " needs an endpoint"].concat()))
}

impl CartClient {
    fn endpoint(&self) -> Option<String> {
        self.inner.borrow().endpoint.clone()
    }

    /// `POST /v1/orders/{id}/<action>` as this cart's owner, answering the order.
    fn order_call(&self, order_id: &str, action: &str) -> Promise {
        let Some(endpoint) = self.endpoint() else { return no_endpoint("orders") };
        let id: String = js_sys::encode_uri_component(order_id).into();
        api_call(
            Promise::resolve(&JsValue::UNDEFINED),
            &endpoint,
            &["/v1/orders/", &id, "/", action].concat(),
            self.auth_headers(),
            Some(String::new()),
        )
    }
}

fn parse_policy(v: &JsValue) -> Result<&'static str, JsValue> {
    match v.as_string().as_deref() {
        Some("sum") => Ok("sum"),
        Some("max") => Ok("max"),
        Some("keep_user") => Ok("keep_user"),
        _ => Err(js_error(ErrorCode::InvalidRequest, "policy is one of sum, max, keep_user")),
    }
}

/// The headers of a request as the cart's owner (also what `authHeaders` gives a page): its
/// identity's, `extra`, and the body's type.
fn headers(identity: Option<&Identity>, extra: &[(&str, &str)], body: bool) -> JsValue {
    let bearer;
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 2);
    match identity {
        Some(Identity::Guest { token }) => headers.push(("X-Cart-Token", token)),
        Some(Identity::User { jwt }) => {
            bearer = ["Bearer ", jwt].concat();
            headers.push(("Authorization", &bearer));
        }
        None => {}
    }
    headers.extend_from_slice(extra);
    if body {
        headers.push(("Content-Type", "application/json"));
    }
    js_strings(&headers)
}

/// What the module does with a request's answer ([`Driver::answer`]).
enum Then {
    Push(Push),
    Pull(Identity),
    Promotions(shared::sort::SortedSet<PromoCode>),
    /// A merge (`merge`) or, already a user's cart, a read of it.
    Login {
        token: String,
        sent: Vec<String>,
        merge: bool,
    },
    /// A checkout with this key; `own`: the cart version's key, settled by the answer.
    Checkout {
        key: String,
        own: bool,
    },
}

/// A request under way, handed back with its answer.
#[wasm_bindgen(skip_typescript)]
pub struct Call(Then);

/// A request for `js/driver.js` to make: `[url, method, headers, body, call]`.
fn request(url: String, method: &str, headers: JsValue, body: Option<String>, then: Then) -> JsValue {
    let r = js_sys::Array::new();
    r.push(&url.into());
    r.push(&method.into());
    r.push(&headers);
    r.push(&body.map_or(JsValue::UNDEFINED, JsValue::from));
    r.push(&Call(then).into());
    r.into()
}

/// The arguments of a checkout, kept in the module while it pushes first.
#[wasm_bindgen(skip_typescript)]
pub struct CheckoutArgs {
    given_key: Option<String>,
    expected: Option<Money>,
    gift_cards: Vec<String>,
    quote: Option<String>,
}

/// Turns an error answer into a rejected `CartError`, with the server's details.
fn answer_error(error: ErrorBody) -> JsValue {
    let details = if error.details.is_empty() { JsValue::UNDEFINED } else { js_of(&Value::Object(error.details)) };
    JsCartError::new(&error.code, &error.message, details).into()
}

fn schedule(rc: &Rc<RefCell<Inner>>, ms: i32) {
    // Only the leader pushes and folds; the others' changes reach it by the `storage` event.
    if rc.borrow().timer_armed || !rc.borrow().leader {
        return;
    }
    if rc.borrow().endpoint.is_none() && !rc.borrow().has_locks {
        // No Web Locks (Node, where the cart lives in memory): no other tab to take turns with,
        // so a local-only cart folds its queue at once, with no timer or task.
        rc.borrow_mut().engine.compact();
        return;
    }
    let driver = {
        let mut inner = rc.borrow_mut();
        inner.timer_armed = true;
        inner.driver.clone()
    };
    arm(&driver, ms);
}

/// The push-or-fold timer fired ([`Driver::tick`]).
fn tick(rc: &Rc<RefCell<Inner>>) {
    let busy = {
        let mut inner = rc.borrow_mut();
        inner.timer_armed = false;
        let changes = inner.engine.changes();
        inner.endpoint.is_none() && std::mem::replace(&mut inner.ticked, changes) != changes
    };
    // A local-only cart that keeps changing keeps its timer armed from here, so the change after
    // a fold arms nothing (a cold setTimeout was the costliest step of the first change after a
    // pause). It stops at the first tick that finds nothing changed since the last (a fold counts
    // as a change, so that is the second tick after the page's last change). A synced cart arms
    // it per burst, since a failed push arms it for its backoff.
    if busy {
        schedule(rc, 25);
    }
    let _ = flush(&task(rc));
}

/// What stops a push, as the page's error.
fn failure_error(f: &Failure) -> JsValue {
    match f {
        Failure::Retry(m) => network_error(m),
        Failure::Refused { error, .. } => answer_error(error.clone()),
    }
}

/// A client's synchronous steps, for `js/driver.js`: a task's driver keeps its client (until the
/// task frees it); the client's own one (the Web Locks' callbacks, other clients of the page)
/// holds it weakly, and does nothing once it is gone.
#[wasm_bindgen(skip_typescript)]
pub struct Driver(Result<Rc<RefCell<Inner>>, Weak<RefCell<Inner>>>);

impl Driver {
    fn rc(&self) -> Option<Rc<RefCell<Inner>>> {
        match &self.0 {
            Ok(rc) => Some(rc.clone()),
            Err(weak) => weak.upgrade(),
        }
    }
}

/// A driver for one task of the client.
fn task(rc: &Rc<RefCell<Inner>>) -> JsValue {
    Driver(Ok(rc.clone())).into()
}

/// A request's answer: `(status, text)`, or why there is none.
type Reply = Result<(u16, String), String>;

#[wasm_bindgen]
impl Driver {
    /// A driver for another task of this client (one that outlives the caller's).
    pub fn task(&self) -> Driver {
        Driver(self.rc().ok_or_else(Weak::new))
    }

    /// The Web Lock under which one tab at a time rewrites the base record; `undefined` once the
    /// client is gone.
    #[wasm_bindgen(js_name = lockName)]
    pub fn lock_name(&self) -> Option<String> {
        self.rc().map(|rc| rc.borrow().lock_name())
    }

    #[wasm_bindgen(js_name = localOnly)]
    pub fn local_only(&self) -> bool {
        self.rc().is_none_or(|rc| rc.borrow().endpoint.is_none())
    }

    pub fn leader(&self) -> bool {
        self.rc().is_some_and(|rc| rc.borrow().leader)
    }

    pub fn key(&self) -> String {
        self.rc().map(|rc| rc.borrow().engine.key().to_owned()).unwrap_or_default()
    }

    pub fn snapshot(&self) -> JsValue {
        self.rc().map_or(JsValue::UNDEFINED, |rc| rc.borrow().snapshot())
    }

    /// Folds a local-only cart's ops into its confirmed cart (under the lock).
    pub fn compact(&self) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().engine.compact();
        }
    }

    pub fn notify(&self) {
        if let Some(rc) = self.rc() {
            notify(&rc);
        }
    }

    /// Whether the logs of closed tabs are due to be looked at (every 30 s).
    #[wasm_bindgen(js_name = sweepDue)]
    pub fn sweep_due(&self) -> bool {
        let Some(rc) = self.rc() else { return false };
        let mut inner = rc.borrow_mut();
        let t = js_sys::Date::now();
        if t - inner.last_sweep < 30_000.0 {
            return false;
        }
        inner.last_sweep = t;
        true
    }

    /// Removes the settled logs of the tabs not in `live`.
    #[wasm_bindgen(js_name = dropDeadLogs)]
    pub fn drop_dead_logs(&self, live: Vec<String>) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().engine.drop_dead_logs(&live);
        }
    }

    /// What every tab has queued now, for [`Driver::settled`].
    #[wasm_bindgen(js_name = pendingMarks)]
    pub fn pending_marks(&self) -> Marks {
        Marks(self.rc().map(|rc| rc.borrow_mut().engine.pending_marks()).unwrap_or_default())
    }

    /// In a tab that is not the leader: `null` once the ops of `target` are settled, a `CartError`
    /// if the leader reports the server unreachable or the identity refused (or `deadline`, in ms,
    /// passed), `undefined` to wait on.
    pub fn settled(&self, target: &Marks, deadline: f64) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::NULL };
        let mut inner = rc.borrow_mut();
        inner.engine.reload();
        if inner.engine.settled(&target.0) {
            return JsValue::NULL;
        }
        let t = js_sys::Date::now();
        if let Some(e) = &inner.engine.state.last_error {
            if e.is(ErrorCode::NetworkError) && t > deadline - 15_000.0 {
                return network_error(&e.message);
            }
            if e.is(ErrorCode::Unauthorized) || e.is(ErrorCode::CartMerged) {
                let code = if e.is(ErrorCode::Unauthorized) { ErrorCode::Unauthorized } else { ErrorCode::CartMerged };
                return answer_error(ErrorBody::new(code, e.message.clone()));
            }
        }
        if t > deadline {
            return network_error("the tab that syncs this cart did not push it in time");
        }
        JsValue::UNDEFINED
    }

    /// The next batch of pending ops to push: a request, `undefined` when there is nothing to
    /// push (or a push is under way), or the `CartError` of an identity the server refused a
    /// moment ago (no request until the pause ends or a login brings another identity; the next
    /// try is scheduled).
    #[wasm_bindgen(js_name = beginPush)]
    pub fn begin_push(&self) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let (push, endpoint) = {
            let mut inner = rc.borrow_mut();
            let Some(endpoint) = inner.endpoint.clone() else { return JsValue::UNDEFINED };
            if inner.syncing || inner.engine.push_in_flight() {
                return JsValue::UNDEFINED;
            }
            if let Some((error, wait)) = inner.engine.push_blocked(js_sys::Date::now() as i64) {
                let error = answer_error(error.clone());
                drop(inner);
                schedule(&rc, wait.clamp(0, i64::from(i32::MAX)) as i32);
                return error;
            }
            let Some(push) = inner.engine.begin_push() else { return JsValue::UNDEFINED };
            inner.syncing = true;
            (push, endpoint)
        };
        notify(&rc);
        let headers = headers(Some(&push.identity), &[], true);
        let body = shared::json::text(&push.body);
        request([&endpoint, "/v1/cart/ops"].concat(), "POST", headers, Some(body), Then::Push(push))
    }

    /// `GET /v1/cart`, or `undefined` without an endpoint.
    #[wasm_bindgen(js_name = pullRequest)]
    pub fn pull_request(&self) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let inner = rc.borrow();
        let Some(endpoint) = &inner.endpoint else { return JsValue::UNDEFINED };
        let identity = inner.engine.identity().clone();
        request([endpoint, "/v1/cart"].concat(), "GET", headers(Some(&identity), &[], false), None, Then::Pull(identity))
    }

    /// The promotions lookup the cart needs (its codes' and the automatic ones) when some code
    /// was never looked up or the last lookup is old; `undefined` otherwise.
    #[wasm_bindgen(js_name = promotionsRequest)]
    pub fn promotions_request(&self) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let mut inner = rc.borrow_mut();
        let Some(endpoint) = inner.endpoint.clone() else { return JsValue::UNDEFINED };
        if inner.looking_up {
            return JsValue::UNDEFINED;
        }
        let Some((query, asked)) = inner.engine.promotions_query(now()) else { return JsValue::UNDEFINED };
        inner.looking_up = true;
        let url = if query.is_empty() { [&endpoint, "/v1/promotions"].concat() } else { [&endpoint, "/v1/promotions?", &query].concat() };
        request(url, "GET", headers(None, &[], false), None, Then::Promotions(asked))
    }

    /// More guest ops are pending than a merge carries: they are pushed as a guest first.
    #[wasm_bindgen(js_name = loginPushesFirst)]
    pub fn login_pushes_first(&self) -> bool {
        self.rc().is_some_and(|rc| rc.borrow().engine.state.pending.len() > crate::engine::BATCH)
    }

    /// The merge of this guest cart into the user's, or, already a user's cart (another tab
    /// logged in), a read of the cart with the new token.
    #[wasm_bindgen(js_name = loginRequest)]
    pub fn login_request(&self, token: String, policy: Option<String>) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let endpoint = rc.borrow().endpoint.clone().unwrap_or_default();
        let user = Identity::User { jwt: token.clone() };
        let merge = rc.borrow_mut().engine.login_request();
        match merge {
            Some((mut body, sent)) => {
                if let (Some(p), Value::Object(fields)) = (policy, &mut body) {
                    fields.insert("policy".into(), Value::from(p));
                }
                let then = Then::Login { token, sent, merge: true };
                request(
                    [&endpoint, "/v1/cart/merge"].concat(),
                    "POST",
                    headers(Some(&user), &[], true),
                    Some(shared::json::text(&body)),
                    then,
                )
            }
            None => {
                let then = Then::Login { token, sent: Vec::new(), merge: false };
                request([&endpoint, "/v1/cart"].concat(), "GET", headers(Some(&user), &[], false), None, then)
            }
        }
    }

    /// `POST /v1/cart/checkout` with the caller's key or the cart version's own.
    #[wasm_bindgen(js_name = checkoutRequest)]
    pub fn checkout_request(&self, args: CheckoutArgs) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let endpoint = rc.borrow().endpoint.clone().unwrap_or_default();
        let key = match &args.given_key {
            Some(k) => k.clone(),
            None => rc.borrow_mut().engine.checkout_key(),
        };
        let identity = rc.borrow().engine.identity().clone();
        let mut body = serde_json::Map::new();
        if let Some(m) = args.expected {
            body.insert("expected_total".into(), m.to_json());
        }
        if !args.gift_cards.is_empty() {
            body.insert("gift_cards".into(), args.gift_cards.into());
        }
        if let Some(q) = args.quote {
            body.insert("quote".into(), Value::String(q));
        }
        let headers = headers(Some(&identity), &[("Idempotency-Key", &key)], true);
        let then = Then::Checkout { key, own: args.given_key.is_none() };
        request([&endpoint, "/v1/cart/checkout"].concat(), "POST", headers, Some(shared::json::text(&Value::Object(body))), then)
    }

    /// The checkout numbered `id` ended: a later `checkout()` starts another.
    #[wasm_bindgen(js_name = checkoutOver)]
    pub fn checkout_over(&self, id: u32) {
        if let Some(rc) = self.rc() {
            let mut inner = rc.borrow_mut();
            if inner.checkout.as_ref().is_some_and(|c| c.3 == id) {
                inner.checkout = None;
            }
        }
    }

    /// Takes a request's answer (`[status, text]`, `text` null if the body broke off; null when
    /// no answer came): `undefined`, or the `CartError` to stop with.
    pub fn answer(&self, call: Call, answer: JsValue) -> JsValue {
        let Some(rc) = self.rc() else { return JsValue::UNDEFINED };
        let reply: Reply = if answer.is_object() {
            let a: &js_sys::Array = answer.unchecked_ref();
            let status = a.get(0).as_f64().unwrap_or(0.0) as u16;
            a.get(1).as_string().map(|text| (status, text)).ok_or_else(|| "the answer broke off".to_owned())
        } else {
            Err(["could not reach ", rc.borrow().endpoint.as_deref().unwrap_or_default()].concat())
        };
        match call.0 {
            Then::Push(push) => pushed(&rc, &push, reply),
            Then::Pull(identity) => pulled(&rc, &identity, reply),
            Then::Promotions(asked) => {
                rc.borrow_mut().looking_up = false;
                if let Ok((200, text)) = reply
                    && let Ok(v) = shared::json::parse(&text)
                {
                    rc.borrow_mut().engine.finish_promotions(asked, &v, now());
                    notify(&rc);
                }
                JsValue::UNDEFINED
            }
            Then::Login { token, sent, merge } => logged_in(&rc, &token, &sent, merge, reply),
            Then::Checkout { key, own } => checked_out(&rc, &key, own, reply),
        }
    }

    /// Keeps `resolve` until the client is freed (releasing the Web Lock it holds), or calls it
    /// at once if the client is gone already.
    #[wasm_bindgen(js_name = onRelease)]
    pub fn on_release(&self, resolve: Function) {
        match self.rc() {
            Some(rc) => rc.borrow_mut().release.push(resolve),
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    }

    /// This tab was given the leader lock: it pushes (or folds) for every tab from now on. What the
    /// previous leader wrote last may still be on its way to this tab's copy of storage: a
    /// moment's pause, then everything queued goes.
    pub fn lead(&self) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().leader = true;
            schedule(&rc, 250);
        }
    }

    pub fn unkick(&self) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().kicked = false;
        }
    }

    /// The push-or-fold timer fired (it holds the client weakly: a client freed with a timer
    /// armed is not kept, and the call does nothing).
    pub fn tick(&self) {
        if let Some(rc) = self.rc() {
            tick(&rc);
        }
    }

    /// The page came back online: push (or fold) now.
    pub fn wake(&self) {
        if let Some(rc) = self.rc() {
            schedule(&rc, 0);
        }
    }

    pub fn unsubscribe(&self, id: u32) {
        if let Some(rc) = self.rc() {
            rc.borrow_mut().listeners.retain(|(i, _)| *i != id);
        }
    }

    /// Another tab, or another client of this page, wrote the cart.
    #[wasm_bindgen(js_name = heardWrite)]
    pub fn heard_write(&self) {
        if let Some(rc) = self.rc() {
            heard_write(&rc);
        }
    }
}

/// Every tab's queued ops at a moment ([`Driver::pending_marks`]).
#[wasm_bindgen(skip_typescript)]
pub struct Marks(PerClient);

/// A push answered: `undefined` to go on with the next batch, or the `CartError` that stops the
/// pushes (the next try is scheduled with backoff; a refused identity is told to the page once).
fn pushed(rc: &Rc<RefCell<Inner>>, push: &Push, reply: Reply) -> JsValue {
    let mut hint = 0;
    let answer = match reply {
        Ok((200, text)) => read_answer(&text, read::ops_response).map_err(Failure::Retry),
        Ok((status, text)) => {
            hint = retry_hint_ms(status, &text);
            Err(failure_of(status, &text))
        }
        Err(why) => Err(Failure::Retry(why)),
    };
    let stop = match &answer {
        Err(f @ Failure::Retry(_)) => Some(f.clone()),
        Err(f @ Failure::Refused { error, status }) if *status == 401 || error.is(ErrorCode::CartMerged) => Some(f.clone()),
        _ => None,
    };
    let (delay, on_refused) = {
        let mut inner = rc.borrow_mut();
        let was_blocked = inner.engine.identity_refused();
        inner.engine.finish_push(push, answer, js_sys::Date::now() as i64, js_sys::Math::random());
        inner.syncing = false;
        let refused = matches!(stop, Some(Failure::Refused { .. })) && !was_blocked;
        (inner.engine.backoff_ms(js_sys::Math::random()).max(hint), refused.then(|| inner.on_unauthorized.clone()).flatten())
    };
    notify(rc);
    let Some(stop) = stop else { return JsValue::UNDEFINED };
    schedule(rc, delay as i32);
    // The page hears of a refused identity once, so it can log the shopper in again.
    if let Some(f) = on_refused {
        let _ = f.call1(&JsValue::NULL, &failure_error(&stop));
    }
    failure_error(&stop)
}

fn pulled(rc: &Rc<RefCell<Inner>>, identity: &Identity, reply: Reply) -> JsValue {
    match reply {
        Ok((200, text)) => match read_answer(&text, read::cart) {
            Ok(view) => {
                let leader = rc.borrow().leader;
                rc.borrow_mut().engine.finish_pull(identity, &view, leader);
                notify(rc);
                JsValue::UNDEFINED
            }
            Err(why) => unavailable(why),
        },
        Ok((status, text)) => answer_error(ErrorBody::of_answer(status, &text)),
        Err(why) => network_error(&why),
    }
}

fn logged_in(rc: &Rc<RefCell<Inner>>, token: &str, sent: &[String], merge: bool, reply: Reply) -> JsValue {
    let view = match reply {
        Ok((200, text)) if merge => read_answer(&text, read::merge_response).map(|m| m.cart),
        Ok((200, text)) => read_answer(&text, read::cart),
        Ok((status, text)) => return answer_error(ErrorBody::of_answer(status, &text)),
        Err(why) => return network_error(&why),
    };
    match view {
        Ok(view) => {
            rc.borrow_mut().engine.finish_login(token, &view, sent);
            notify(rc);
            JsValue::UNDEFINED
        }
        Err(why) => unavailable(why),
    }
}

fn checked_out(rc: &Rc<RefCell<Inner>>, key: &str, own: bool, reply: Reply) -> JsValue {
    let (status, text) = match reply {
        Ok(r) => r,
        Err(why) => return network_error(&why),
    };
    let error = (status != 201).then(|| ErrorBody::of_answer(status, &text));
    if own && checkout_settled(status, error.as_ref()) {
        rc.borrow_mut().engine.settle_checkout_key(key);
    }
    // The order itself is the driver's to read: the module only settles the key.
    error.map_or(JsValue::UNDEFINED, answer_error)
}

#[wasm_bindgen]
impl CartClient {
    /// Opens the cart kept under `storageKey` (or starts one). Corrupt or foreign data there
    /// starts a clean cart and is reported in `lastError`; it never throws for that.
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(unchecked_param_type = "CartClientOptions | undefined")] options: JsValue) -> Result<CartClient, JsValue> {
        let endpoint =
            option(&options, "endpoint", |v| v.as_string()).map(|s| s.trim_end_matches('/').to_owned()).filter(|s| !s.is_empty());
        let key = option(&options, "storageKey", |v| v.as_string()).unwrap_or_else(|| "cartsync".to_owned());
        let currency = match option(&options, "currency", |v| v.as_string()) {
            Some(c) => Currency::parse(&c).map_err(cart_error)?,
            None => Currency::USD,
        };
        let mut limits = Limits::default();
        if let Some(q) = option(&options, "maxLineQuantity", |v| v.as_f64()) {
            limits.max_line_quantity = (q as u32).clamp(1, Limits::ABSOLUTE_MAX_QUANTITY);
        }
        if let Some(n) = option(&options, "maxLines", |v| v.as_f64()) {
            limits.max_lines = (n as usize).clamp(1, Limits::ABSOLUTE_MAX_LINES);
        }
        // `window` is never read: `globalThis` has what a browser offers, and in Node (server-side
        // rendering) it lacks it, so the cart is kept in memory there and no events are heard.
        let global: JsValue = GLOBAL.with(|g| g.clone().into());
        // Reading `localStorage` throws where storage is disabled; the cart then lives in memory.
        let local =
            Reflect::get(&global, &"localStorage".into()).ok().filter(|s| s.is_object()).map(|s| s.unchecked_into::<web_sys::Storage>());
        let writes = Rc::new(Cell::new(0));
        let shared_storage = local.is_some();
        let storage: Box<dyn Storage> = match local {
            Some(s) => Box::new(LocalStorage(s, writes.clone(), RefCell::new(None))),
            None => Box::new(MemoryStorage::default()),
        };
        let mut engine = Engine::new(storage, &key, limits, currency, Box::new(random));
        engine.set_clock(Box::new(|| js_sys::Date::now() as i64), 10_000);
        engine.set_local_only(endpoint.is_none());
        let inner = Inner {
            engine,
            driver: JsValue::UNDEFINED,
            endpoint,
            listeners: Vec::new(),
            next_listener: 0,
            syncing: false,
            timer_armed: false,
            ticked: 0,
            writes,
            last_sweep: 0.0,
            unlisten: None,
            checkout: None,
            checkouts: 0,
            looking_up: false,
            on_unauthorized: option(&options, "onUnauthorized", |v| v.clone().dyn_into::<Function>().ok()),
            last_snapshot: RefCell::new(None),
            rendered: Rc::default(),
            page_lists: js_sys::Object::new().into(),
            has_locks: false,
            leader: false,
            kicked: false,
            release: Vec::new(),
        };
        let tab_lock = ["cartsync:", &key, ":tab:", inner.engine.client()].concat();
        let leader_lock = [&inner.lock_name(), ":leader"].concat();
        let rc = Rc::new(RefCell::new(inner));
        let driver: JsValue = Driver(Err(Rc::downgrade(&rc))).into();
        rc.borrow_mut().driver = driver.clone();
        if shared_storage {
            PAGE.with(|p| p.borrow_mut().push((key.clone(), Rc::downgrade(&rc))));
        }
        // Without Web Locks (Node, where the cart lives in memory) this client is its own leader.
        let has_locks = hold_locks(&driver, &tab_lock, &leader_lock);
        {
            let mut inner = rc.borrow_mut();
            inner.has_locks = has_locks;
            inner.leader = !has_locks;
        }
        // Another tab's write of the base record or a log, or everything (`localStorage.clear()`),
        // and the page coming back online.
        rc.borrow_mut().unlisten = listen(&driver, &key).dyn_into::<Function>().ok();
        // Push whatever an earlier page left pending and fetch the server's view, in the background
        // (or, local-only, fold what is queued).
        if rc.borrow().endpoint.is_none() {
            schedule(&rc, 0);
        } else {
            background(&task(&rc));
        }
        Ok(CartClient { inner: rc })
    }

    fn mutate(&self, kind: OpKind) -> Result<JsValue, JsValue> {
        self.inner.borrow_mut().engine.mutate(kind, now()).map_err(cart_error)?;
        notify(&self.inner);
        let snap = self.inner.borrow().snapshot();
        // A short delay gathers a burst of changes into one push.
        schedule(&self.inner, 25);
        Ok(snap)
    }

    fn limits(&self) -> Limits {
        *self.inner.borrow().engine.limits()
    }

    /// Adds `quantity` of `sku` (creating the line if absent). Optimistic and synchronous.
    #[wasm_bindgen(unchecked_return_type = "CartSnapshot")]
    pub fn add(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] quantity: JsValue,
        #[wasm_bindgen(js_name = priceAtAdd, unchecked_param_type = "Money | undefined")] price_at_add: JsValue,
    ) -> Result<JsValue, JsValue> {
        let kind = OpKind::Add {
            sku: parse_sku(&sku)?,
            quantity: parse_quantity(&quantity, &self.limits())?,
            price_at_add: parse_money(&price_at_add)?,
        };
        self.mutate(kind)
    }

    /// Sets the quantity of a line already in the cart.
    #[wasm_bindgen(js_name = setQuantity, unchecked_return_type = "CartSnapshot")]
    pub fn set_quantity(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] quantity: JsValue,
    ) -> Result<JsValue, JsValue> {
        let kind = OpKind::SetQuantity { sku: parse_sku(&sku)?, quantity: parse_quantity(&quantity, &self.limits())? };
        self.mutate(kind)
    }

    /// Removes a line; removing an absent line is not an error.
    #[wasm_bindgen(unchecked_return_type = "CartSnapshot")]
    pub fn remove(&self, #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::Remove { sku: parse_sku(&sku)? })
    }

    /// Moves a line to the save-for-later list.
    #[wasm_bindgen(js_name = saveForLater, unchecked_return_type = "CartSnapshot")]
    pub fn save_for_later(&self, #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::SaveForLater { sku: parse_sku(&sku)? })
    }

    /// Moves a saved line back into the cart.
    #[wasm_bindgen(js_name = moveToCart, unchecked_return_type = "CartSnapshot")]
    pub fn move_to_cart(&self, #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::MoveToCart { sku: parse_sku(&sku)? })
    }

    /// Removes a line from the saved list.
    #[wasm_bindgen(js_name = removeSaved, unchecked_return_type = "CartSnapshot")]
    pub fn remove_saved(&self, #[wasm_bindgen(unchecked_param_type = "string")] sku: JsValue) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::RemoveSaved { sku: parse_sku(&sku)? })
    }

    /// Puts a promo code on the cart (case-insensitive; at most five). Optimistic: the code is
    /// queued as an op; if this client does not know its promotion yet, the code shows as
    /// `pending` until the lookup it starts answers, and applies by itself from then on, offline
    /// too. Throws `invalid_promo_code` or `too_many_promo_codes`.
    #[wasm_bindgen(js_name = applyPromoCode, unchecked_return_type = "CartSnapshot")]
    pub fn apply_promo_code(&self, #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue) -> Result<JsValue, JsValue> {
        let snap = self.mutate(OpKind::ApplyPromoCode { code: parse_code(&code)? })?;
        // Only a synced cart looks promotions up (a local-only one has no server to ask).
        if self.endpoint().is_some() {
            let _ = look_up_promotions(&task(&self.inner));
        }
        Ok(snap)
    }

    /// Takes a promo code off the cart; an absent code is not an error.
    #[wasm_bindgen(js_name = removePromoCode, unchecked_return_type = "CartSnapshot")]
    pub fn remove_promo_code(&self, #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::RemovePromoCode { code: parse_code(&code)? })
    }

    /// Empties the cart (the saved list stays).
    #[wasm_bindgen(unchecked_return_type = "CartSnapshot")]
    pub fn clear(&self) -> Result<JsValue, JsValue> {
        self.mutate(OpKind::Clear)
    }

    /// The current state, with pending ops applied.
    #[wasm_bindgen(unchecked_return_type = "CartSnapshot")]
    pub fn snapshot(&self) -> JsValue {
        self.inner.borrow_mut().engine.refresh();
        self.inner.borrow().snapshot()
    }

    /// Calls `listener` with every new state (from this tab, other tabs, or the server). Returns
    /// the function that unsubscribes it.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(&self, #[wasm_bindgen(unchecked_param_type = "(s: CartSnapshot) => void")] listener: Function) -> JsValue {
        let id = {
            let mut inner = self.inner.borrow_mut();
            inner.next_listener += 1;
            let id = inner.next_listener;
            inner.listeners.push((id, listener));
            id
        };
        unsubscriber(&self.inner.borrow().driver, id)
    }

    /// Pushes pending ops and reads the server's cart. Rejects with a `CartError`
    /// (`network_error`, …) when the server cannot be reached; the ops stay pending and are
    /// retried with backoff.
    #[wasm_bindgen(unchecked_return_type = "Promise<CartSnapshot>")]
    pub fn sync(&self) -> Promise {
        sync_now(&task(&self.inner))
    }

    /// Logs in: the guest cart (with its pending ops) is merged into the user's cart on the
    /// server, exactly once, and this client switches to the user's cart.
    ///
    /// `options.policy` (`sum`, `max` or `keep_user`) overrides the server's merge policy for
    /// this merge, as the shopper chose it (see `previewLogin`); a server configured with
    /// `prompt` refuses a merge without one (`merge_policy_required`).
    #[wasm_bindgen(unchecked_return_type = "Promise<CartSnapshot>")]
    pub fn login(&self, token: String, #[wasm_bindgen(unchecked_param_type = "LoginOptions | undefined")] options: JsValue) -> Promise {
        let policy = match option(&options, "policy", |v| Some(v.clone())).map(|v| parse_policy(&v)).transpose() {
            Ok(p) => p,
            Err(e) => return Promise::reject(&e),
        };
        if self.endpoint().is_none() {
            return no_endpoint("login");
        }
        js_login(&task(&self.inner), &token, policy)
    }

    /// What logging in with `token` would make of the cart under each merge policy, with the
    /// lines a merge would drop and those short of stock; nothing changes. Pending ops are pushed
    /// first, so the preview shows the cart the shopper sees. Rejects with `invalid_request`
    /// once this cart is a user's.
    #[wasm_bindgen(js_name = previewLogin, unchecked_return_type = "Promise<MergePreview>")]
    pub fn preview_login(&self, token: String) -> Promise {
        let Some(endpoint) = self.endpoint() else { return no_endpoint("previewLogin") };
        let Some(guest) = self.inner.borrow_mut().engine.guest_token() else {
            return Promise::reject(&js_error(ErrorCode::InvalidRequest, "this cart is a user's already: there is nothing to merge"));
        };
        let body = shared::json::text(&shared::json::object([("guest_token", guest.into())]));
        let headers = headers(Some(&Identity::User { jwt: token }), &[], false);
        api_call(self.sync(), &endpoint, "/v1/cart/merge/preview", headers, Some(body))
    }

    /// Extends the hold of this shopper's pending order once (the server's
    /// `CARTSYNC_HOLD_EXTEND_SECONDS`); rejects with `hold_not_extendable` the second time.
    #[wasm_bindgen(js_name = extendHold, unchecked_return_type = "Promise<Order>")]
    pub fn extend_hold(&self, #[wasm_bindgen(js_name = orderId)] order_id: String) -> Promise {
        self.order_call(&order_id, "extend")
    }

    /// Cancels this shopper's pending order: its stock, promotion uses and gift card amounts are
    /// released at once. The cart keeps its lines.
    #[wasm_bindgen(js_name = cancelOrder, unchecked_return_type = "Promise<Order>")]
    pub fn cancel_order(&self, #[wasm_bindgen(js_name = orderId)] order_id: String) -> Promise {
        self.order_call(&order_id, "cancel")
    }

    /// Locks the cart's current prices for the server's `CARTSYNC_PRICE_LOCK_SECONDS` (pending
    /// ops are pushed first): pass `quote.quote` to `checkout({ quote })` before
    /// `quote.expiresAt` to be charged them.
    #[wasm_bindgen(unchecked_return_type = "Promise<Quote>")]
    pub fn quote(&self) -> Promise {
        let Some(endpoint) = self.endpoint() else { return no_endpoint("quote") };
        api_call(self.sync(), &endpoint, "/v1/cart/quote", self.auth_headers(), Some(String::new()))
    }

    /// The headers that name this cart to the sync server (`X-Cart-Token` for a guest,
    /// `Authorization` for a user), for a storefront's own calls made as the shopper (its
    /// payment step, say). Treat them as the shopper's credentials.
    #[wasm_bindgen(js_name = authHeaders, unchecked_return_type = "Record<string, string>")]
    pub fn auth_headers(&self) -> JsValue {
        headers(Some(self.inner.borrow_mut().engine.identity()), &[], false)
    }

    /// Back to a fresh, empty guest cart; nothing of the user's cart stays in storage.
    #[wasm_bindgen(unchecked_return_type = "CartSnapshot")]
    pub fn logout(&self) -> JsValue {
        self.inner.borrow_mut().engine.logout();
        notify(&self.inner);
        self.inner.borrow().snapshot()
    }

    /// Pushes pending ops, then checks out on the server: live prices with the cart's
    /// promotions, stock reserved for the hold time, `giftCards` used in the order given.
    /// Rejects with `price_changed` (with `details.changes`, `details.total`: compare
    /// `expectedTotal` with the discounted `total`), `out_of_stock` (`details.items`),
    /// `promotion_unavailable` (`details.promotions`) or `gift_card_unavailable`
    /// (`details.gift_cards`) when the order cannot be placed as is.
    ///
    /// Without an `idempotencyKey`, every checkout of one cart version uses one key until an
    /// answer settles it, and a call made while another is under way joins it: a double click,
    /// a second tab or a retry after a lost answer makes one order.
    #[wasm_bindgen(unchecked_return_type = "Promise<Order>")]
    pub fn checkout(&self, #[wasm_bindgen(unchecked_param_type = "CheckoutOptions | undefined")] options: JsValue) -> Promise {
        let rc = self.inner.clone();
        let given_key = option(&options, "idempotencyKey", |v| v.as_string());
        let expected = match option(&options, "expectedTotal", |v| Some(v.clone())).map(|v| parse_money(&v)).transpose() {
            Ok(e) => e.flatten(),
            Err(e) => return Promise::reject(&e),
        };
        let gift_cards = match option(&options, "giftCards", |v| Some(v.clone())).map(|v| parse_gift_cards(&v)).transpose() {
            Ok(g) => g.unwrap_or_default(),
            Err(e) => return Promise::reject(&e),
        };
        let quote = option(&options, "quote", |v| Some(v.clone()));
        let quote =
            match quote.map(|q| q.as_string().ok_or_else(|| js_error(ErrorCode::InvalidRequest, "quote is the string quote() gave"))) {
                Some(Ok(q)) => Some(q),
                Some(Err(e)) => return Promise::reject(&e),
                None => None,
            };
        if given_key.is_none()
            && let Some((joined_total, joined_cards, running, _)) = &rc.borrow().checkout
            && *joined_total == expected
            && *joined_cards == gift_cards
            && quote.is_none()
        {
            return running.clone();
        }
        if self.endpoint().is_none() {
            return no_endpoint("checkout");
        }
        let own = given_key.is_none();
        let id = {
            let mut inner = rc.borrow_mut();
            inner.checkouts += 1;
            inner.checkouts
        };
        let args = CheckoutArgs { given_key, expected, gift_cards: gift_cards.clone(), quote };
        let promise = js_checkout(&task(&self.inner), id, args);
        if own {
            rc.borrow_mut().checkout = Some((expected, gift_cards, promise.clone(), id));
        }
        promise
    }
}
