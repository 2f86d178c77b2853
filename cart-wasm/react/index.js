// React binding of @cartsync/cart. Nothing here touches `window` at import: on a server the
// provider renders the empty server snapshot, and a client made from `options` there keeps its
// cart in memory (the package's Node entry).
import { createContext, createElement, useCallback, useContext, useMemo, useState, useSyncExternalStore } from "react";
import { CartClient } from "@cartsync/cart";

const CartContext = createContext(null);

const zero = (currency) => Object.freeze({ amount: 0, currency });

/** What a server renders, and what a client shows until it hydrates: an empty guest cart. */
export function emptySnapshot(currency = "USD") {
  return Object.freeze({
    owner: "guest",
    version: 0,
    lines: Object.freeze([]),
    saved: Object.freeze([]),
    itemCount: 0,
    subtotal: zero(currency),
    promoCodes: Object.freeze([]),
    discounts: Object.freeze([]),
    discountTotal: zero(currency),
    total: zero(currency),
    pendingOps: 0,
    syncing: false,
  });
}

const EMPTY = emptySnapshot();

/**
 * Makes a cart available to `useCart()` below it: the `client` given, or one made once from
 * `options` (the CartClient options).
 */
export function CartProvider({ client, options, children }) {
  const [made] = useState(() => client ?? new CartClient(options));
  return createElement(CartContext.Provider, { value: client ?? made }, children);
}

/**
 * The cart's current snapshot, re-rendered on every change (this tab's, another tab's, or the
 * server's), with the client itself as `cart` for changes: `const { lines, cart } = useCart();
 * cart.add("SKU-1", 1)`.
 */
export function useCart() {
  const cart = useContext(CartContext);
  if (cart === null) throw new Error("useCart() must be called below a <CartProvider>");
  const subscribe = useCallback((onChange) => cart.subscribe(() => onChange()), [cart]);
  const getSnapshot = useCallback(() => cart.snapshot(), [cart]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, () => EMPTY);
  return useMemo(() => ({ ...snapshot, cart }), [snapshot, cart]);
}
