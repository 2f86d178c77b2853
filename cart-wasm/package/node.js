// Node entry (server-side rendering, scripts): loads the module from disk. No `window` is
// touched; a CartClient created here keeps its cart in memory.
import { readFileSync } from "node:fs";
import { initSync } from "./web/cartsync.js";

initSync({ module: readFileSync(new URL("./web/cartsync_bg.wasm", import.meta.url)) });

export { CartClient, CartError } from "./web/cartsync.js";
