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

const FIELDS = ["owner", "version", "lines", "saved", "itemCount", "subtotal", "promoCodes", "discounts", "discountTotal", "total", "pendingOps", "syncing", "lastError"];
const HOLDER = Symbol("cartsync.snapshot");

function materialize(snapshot) {
  const h = snapshot[HOLDER];
  if (h.value === undefined) {
    h.value = JSON.parse(h.source.json());
    h.source.free();
    h.source = undefined;
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
