import type { ReactElement, ReactNode } from "react";
import type { CartClient, CartClientOptions, CartSnapshot } from "@cartsync/cart";

export type CartProviderProps = {
  /** The cart to provide. */
  client?: CartClient;
  /** Without `client`: the options of the CartClient the provider makes once. */
  options?: CartClientOptions;
  children?: ReactNode;
};

/** Makes a cart available to `useCart()` below it. */
export declare function CartProvider(props: CartProviderProps): ReactElement;

/** The cart's current snapshot (re-rendered on every change) and the client itself as `cart`. */
export declare function useCart(): CartSnapshot & { cart: CartClient };

/** The snapshot a server renders: an empty guest cart. */
export declare function emptySnapshot(currency?: string): CartSnapshot;
