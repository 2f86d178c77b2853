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
const HOLDER = Symbol("cartsync.snapshot");

// Parsed lines by their text (with its L/S tag): a line unchanged since an earlier snapshot is
// the same frozen object, parsed once. Bounded: cleared past 4096 entries.
const LINES = new Map();

function materialize(snapshot) {
  const h = snapshot[HOLDER];
  if (h.value === undefined) {
    const parts = h.source.json().split("\n");
    h.source.free();
    h.source = undefined;
    const v = JSON.parse(parts[0]);
    v.lines = [];
    v.saved = [];
    v.unavailable = [];
    if (LINES.size > 4096) LINES.clear();
    for (let i = 1; i < parts.length; i++) {
      const part = parts[i];
      let l = LINES.get(part);
      if (l === undefined) LINES.set(part, (l = Object.freeze(JSON.parse(part.slice(1)))));
      const tag = part.charCodeAt(0);
      (tag === 76 ? v.lines : tag === 83 ? v.saved : v.unavailable).push(l);
    }
    h.value = v;
  }
  return h.value;
}

const DESCRIPTORS = Object.fromEntries(
  FIELDS.map((k) => [k, { enumerable: true, get() { return materialize(this)[k]; } }]),
);

/** A CartSnapshot whose fields are rendered from the frozen state the first time one is read:
 * a call whose answer the page ignores pays nothing for it. Immutable like a plain one. */
export function lazySnapshot(source) {
  const s = {};
  Object.defineProperty(s, HOLDER, { value: { source, value: undefined } });
  return Object.freeze(Object.defineProperties(s, DESCRIPTORS));
}
