
/** What every CartClient call throws or rejects with. */
export declare class CartError extends Error {
  /** The server's error code (`invalid_quantity`, `out_of_stock`, …) or a client code
   * (`network_error`, `no_endpoint`, `storage_full`). */
  readonly code: string;
  /** The error's details from the server (`items`, `changes`, `total`, …), if any. */
  readonly details?: Record<string, unknown>;
}
