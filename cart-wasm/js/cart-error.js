/** The error every CartClient call throws or rejects with: `code` is one of the server's error
 * codes (`invalid_quantity`, `out_of_stock`, …) or a client code (`network_error`, `no_endpoint`). */
export class CartError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "CartError";
    this.code = code;
    if (details !== undefined && details !== null) this.details = details;
  }
}

const FIELDS = ["owner", "version", "lines", "saved", "unavailable", "itemCount", "subtotal", "promoCodes", "discounts", "discountTotal", "total", "pendingOps", "syncing", "lastError"];
const FIELD = new Set(FIELDS);

// Lines parsed by their text: a line that comes back (a promotion that applies, then does not)
// is the same frozen object, parsed once. Bounded: cleared past 4096 entries.
const LINES = new Map();

// A snapshot's target holds, under these keys, its frozen state in the module (`json()`) and its
// client's lists until it is first read, then what was read (no WeakMap: an entry a call is work
// for the collector).
const SOURCE = Symbol("source");
const VALUE = Symbol("value");
const LISTS = Symbol("lists");
const HIDDEN = new Set([SOURCE, VALUE, LISTS]);

function materialize(t) {
  let v = t[VALUE];
  if (v === undefined) {
    // The client's lists as of its last read, and the module's number for that reading: this
    // reading comes as a change from them (`src/render.rs`), so an unchanged line keeps its
    // frozen object.
    const page = t[LISTS];
    page.last ??= [[], [], []];
    const parts = t[SOURCE].json(page.generation ?? 0).split("\n");
    t[SOURCE].free();
    t[SOURCE] = t[LISTS] = undefined;
    v = JSON.parse(parts[0]);
    if (LINES.size > 4096) LINES.clear();
    let at = 2;
    for (let k = 0; k < 3; k++) {
      const [head, tail, n] = parts[at++].split(" ").map(Number);
      const last = page.last[k];
      const list = last.slice(0, head);
      for (const end = at + n; at < end; at++) {
        const part = parts[at];
        let l = LINES.get(part);
        if (l === undefined) LINES.set(part, (l = Object.freeze(JSON.parse(part))));
        list.push(l);
      }
      for (let i = last.length - tail; i < last.length; i++) list.push(last[i]);
      page.last[k] = list;
    }
    page.generation = Number(parts[1]);
    // The page gets copies (a frozen array is slow to copy in V8, and a page that sorts its
    // snapshot's lines in place must not change what the next snapshot starts from).
    [v.lines, v.saved, v.unavailable] = page.last.map((list) => list.slice());
    t[VALUE] = v;
  }
  return v;
}

// A snapshot reads as a plain object with the fields above as its own enumerable, read-only
// properties (spread, `Object.keys`, `JSON.stringify` and `in` all see them); writes are refused.
// `Object.freeze` works and makes the fields real properties of the target (the three hidden ones
// leave it). Not `structuredClone`: clone `{ ...snapshot }`.
const HANDLER = {
  get: (t, k) => (FIELD.has(k) && Reflect.isExtensible(t) ? materialize(t)[k] : HIDDEN.has(k) ? undefined : Reflect.get(t, k)),
  has: (t, k) => FIELD.has(k) || (!HIDDEN.has(k) && k in t),
  ownKeys: (t) => (Reflect.isExtensible(t) ? FIELDS.slice() : Reflect.ownKeys(t)),
  getOwnPropertyDescriptor(t, k) {
    if (!Reflect.isExtensible(t)) return Reflect.getOwnPropertyDescriptor(t, k);
    return FIELD.has(k) ? { value: materialize(t)[k], writable: false, enumerable: true, configurable: true } : undefined;
  },
  preventExtensions(t) {
    if (Reflect.isExtensible(t)) {
      const v = materialize(t);
      delete t[SOURCE];
      delete t[VALUE];
      delete t[LISTS];
      for (const k of FIELDS) Object.defineProperty(t, k, { value: v[k], writable: false, enumerable: true, configurable: false });
      Object.preventExtensions(t);
    }
    return true;
  },
  set: () => false,
  // Once frozen, `Object.freeze` re-defines the (already fixed) fields; nothing else is taken.
  defineProperty: (t, k, d) => !Reflect.isExtensible(t) && Reflect.defineProperty(t, k, d),
  deleteProperty: () => false,
  setPrototypeOf: () => false,
};

/** A CartSnapshot whose fields are rendered from the frozen state the first time one is read:
 * a call whose answer the page ignores pays nothing for it (a Proxy: one object, no property
 * defined up front). Immutable like a frozen one. */
export function lazySnapshot(source, lists) {
  return new Proxy({ [SOURCE]: source, [VALUE]: undefined, [LISTS]: lists }, HANDLER);
}

const camelKey = (k) => k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

function camel(v) {
  if (Array.isArray(v)) return v.map(camel);
  if (v === null || typeof v !== "object") return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) out[camelKey(k)] = camel(x);
  return out;
}

/** An answer of the API (snake_case JSON) as the package's objects (camelCase keys). A merge
 * preview's `policies` keep their names (`keep_user`) as keys; order lines always carry a
 * `discount`. */
export function camelAnswer(v) {
  if (v && v.policies && typeof v.policies === "object") {
    const policies = {};
    for (const [k, c] of Object.entries(v.policies)) policies[k] = camel(c);
    return { ...camel({ ...v, policies: null }), policies };
  }
  const out = camel(v);
  if (out && Array.isArray(out.lines) && out.reservedUntil) {
    for (const l of out.lines) l.discount ??= { amount: 0, currency: l.lineTotal?.currency };
    delete out.paymentRef;
  }
  return out;
}

/** One request of the cart's own sync (ops, pulls, login, checkout): `[status, text]`, `text`
 * null if the body broke off; rejects when no answer came. */
export async function httpCall(url, method, headers, body) {
  const res = await fetch(url, { method, headers, body: body ?? undefined });
  try {
    return [res.status, await res.text()];
  } catch {
    return [res.status, null];
  }
}

/** The calls of CartClient that only ask the server (previewLogin, quote, extendHold,
 * cancelOrder): after `before` (a sync whose failure is theirs), one POST; the answer in camelCase,
 * or a CartError: `network_error` without an answer, the server's code and details with one. */
export async function apiCall(before, endpoint, path, headers, body) {
  await before;
  let status, text;
  try {
    [status, text] = await httpCall(endpoint + path, "POST", body ? { ...headers, "Content-Type": "application/json" } : headers, body || undefined);
  } catch {
    text = null;
  }
  if (text === null) throw new CartError("network_error", `could not reach ${endpoint}`);
  const ok = status >= 200 && status < 300;
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CartError(ok || status >= 500 ? "unavailable" : "invalid_request", `HTTP ${status}: unreadable answer`);
  }
  if (!ok) {
    const e = v && v.error;
    if (!e || typeof e.code !== "string") throw new CartError(status >= 500 ? "unavailable" : "invalid_request", `HTTP ${status}`);
    const { code, message, ...details } = e;
    throw new CartError(code, String(message), Object.keys(details).length ? details : undefined);
  }
  return camelAnswer(v);
}
