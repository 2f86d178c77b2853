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
