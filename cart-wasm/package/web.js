// No-bundler entry: `await init()` (the default export) before using CartClient.
export { default, initSync, CartClient } from "./web/cartsync.js";
export { CartError } from "./web/__SNIPPET__";
