// Client benchmark (run on demand, asserts nothing): per-call latency of `add` and
// `setQuantity` on a 100-line cart with persistence, in headless Chromium, side by side in one
// page with use-shopping-cart's core (Redux + redux-persist to localStorage) doing the same work,
// and a plain-JavaScript localStorage cart as a floor.
//
//   node tests/e2e/bench-client.mjs            (after scripts/build-npm.sh)
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, symlinkSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
process.env.CARTSYNC_E2E_TOOLS ??= join(root, "tools");
const { staticServer, launch, waitFor } = await import("./harness.mjs");

const dir = mkdtempSync(join(tmpdir(), "cartsync-bench-"));
try {
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "bench", private: true, type: "module" }));
  mkdirSync(join(dir, "node_modules/@cartsync"), { recursive: true });
  symlinkSync(join(root, "cart-wasm/pkg"), join(dir, "node_modules/@cartsync/cart"));
  symlinkSync(join(root, "tools/node_modules/use-shopping-cart"), join(dir, "node_modules/use-shopping-cart"));
  writeFileSync(join(dir, "index.html"), `<!doctype html><pre id="out">running</pre><script type="module" src="/main.js"></script>`);
  writeFileSync(
    join(dir, "main.js"),
    `import { CartClient } from "@cartsync/cart";
     import { createShoppingCartStore, actions } from "use-shopping-cart/core";
     const LINES = 100, CALLS = 2000;
     const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };
     function measure(name, add, set) {
       for (let i = 0; i < LINES; i++) add("SKU-" + i, 1);
       const a = [], q = [];
       for (let i = 0; i < CALLS; i++) {
         let t = performance.now(); add("SKU-" + (i % LINES), 1); a.push(performance.now() - t);
         t = performance.now(); set("SKU-" + ((i * 7) % LINES), 1 + (i % 5)); q.push(performance.now() - t);
       }
       // The browser rounds performance.now() (to 100 us without cross-origin isolation), so the
       // mean over all calls is the finer figure.
       const mean = (xs) => +((xs.reduce((x, y) => x + y, 0) / xs.length) * 1000).toFixed(1);
       return { name, add_mean_us: mean(a), setQuantity_mean_us: mean(q), add_p50_us: +(pct(a, 0.5) * 1000).toFixed(1), add_p99_us: +(pct(a, 0.99) * 1000).toFixed(1),
                setQuantity_p50_us: +(pct(q, 0.5) * 1000).toFixed(1), setQuantity_p99_us: +(pct(q, 0.99) * 1000).toFixed(1) };
     }
     localStorage.clear();
     const results = [];
     const cart = new CartClient({ storageKey: "bench", maxLineQuantity: 1000000 });
     results.push(measure("@cartsync/cart (wasm, writes localStorage on every call)", (s, n) => cart.add(s, n), (s, n) => cart.setQuantity(s, n)));
     const store = createShoppingCartStore({ cartMode: "checkout-session", stripe: "pk_test_x", currency: "USD", shouldPersist: true, persistKey: "usc" });
     const product = (s) => ({ id: s, name: s, price: 1999, currency: "USD" });
     results.push(measure("use-shopping-cart core (Redux; redux-persist writes later, off the call)",
       (s, n) => { store.dispatch(actions.addItem(product(s), { count: n })); store.getState(); },
       (s, n) => { store.dispatch(actions.setItemQuantity(s, n)); store.getState(); }));
     const plain = { lines: {} };
     const save = () => localStorage.setItem("plain", JSON.stringify(plain));
     results.push(measure("plain JS object + JSON.stringify to localStorage on every call",
       (s, n) => { const l = plain.lines[s] ??= { q: 0, price: 1999 }; l.q += n; save(); },
       (s, n) => { plain.lines[s].q = n; save(); }));
     document.getElementById("out").textContent = JSON.stringify(results);`,
  );
  execFileSync("node", [join(root, "tools/node_modules/vite/bin/vite.js"), "build", "--logLevel", "warn"], { cwd: dir, stdio: "inherit" });
  const site = await staticServer(join(dir, "dist"));
  const browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${site.url}/`);
  const out = await waitFor("the benchmark", async () => { const t = await page.textContent("#out"); return t !== "running" && t; }, 120_000);
  console.log(`Chromium ${browser.version()}: 100-line cart, 2000 calls each (microseconds per call)`);
  console.table(JSON.parse(out));
  await browser.close();
  await site.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
