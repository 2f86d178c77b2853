// No-bundler entry: `await init()` (the default export) before using CartClient.
export { default, initSync, CartClient, CartError } from "./web/cartsync.js";
