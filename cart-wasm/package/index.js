// Bundler entry: the bundler instantiates the WebAssembly module.
export * from "./bundler/cartsync.js";
export { CartError } from "./bundler/__SNIPPET__";
