// The npm package as users get it: imported in Node without touching `window`, installed from
// `npm pack` into a fresh Vite project and bundled, and loaded with no bundler at all.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { env, staticServer, launch, waitFor } from "./harness.mjs";

/** Runs `script` (an ES module) with Node in a fresh project that installed the packed package,
 * and returns the JSON it printed last. */
function runInstalled(script) {
  const dir = mkdtempSync(join(tmpdir(), "cartsync-node-"));
  try {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "node-consumer", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", env.tarball], { cwd: dir, stdio: "pipe" });
    const out = execFileSync("node", ["--input-type=module", "-e", script], { cwd: dir, encoding: "utf8" });
    return JSON.parse(out.trim());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("importing the package in Node touches no window and keeps a cart in memory", () => {
  const script = `
    Object.defineProperty(globalThis, "window", { get() { throw new Error("window was touched"); } });
    const { CartClient, CartError } = await import("@cartsync/cart");
    const cart = new CartClient();
    const s = cart.add("A", 2, { amount: 100, currency: "USD" });
    let code;
    try { cart.add("A", 0); } catch (e) { code = e instanceof CartError && e.code; }
    // A snapshot reads as a plain immutable object, and an old one keeps its state.
    const later = cart.add("B", 1);
    const spread = { ...s };
    let refused = false;
    try { s.itemCount = 99; } catch (e) { refused = e instanceof TypeError; }
    Object.freeze(later);
    const shape = {
      keys: Object.keys(s), spreadItems: spread.itemCount, json: JSON.parse(JSON.stringify(s)).itemCount, has: "lines" in s && s.hasOwnProperty("total"),
      refused, stillTwo: s.itemCount, frozen: Object.isFrozen(later), laterItems: later.itemCount, laterLines: later.lines.map((l) => l.sku),
    };
    // Malformed prices are refused whole (the module reads them without copying strings).
    const bad = [{ amount: 1.5, currency: "USD" }, { amount: "1", currency: "USD" }, { amount: 1, currency: "usd" }, { amount: 1, currency: "EURO" },
      { amount: 1, currency: "ÜSD" }, { amount: 1 }, { currency: "USD" }, 5, "USD", { amount: 1, get currency() { throw new Error("getter"); } }];
    const refusals = bad.map((p) => { try { cart.add("C", 1, p); return "accepted"; } catch (e) { return e instanceof CartError ? e.code : String(e); } });
    const afterBad = cart.snapshot().lines.map((l) => l.sku);
    const priced = cart.add("D", 1, { amount: 250, currency: "USD" }).lines.find((l) => l.sku === "D").priceAtAdd;
    const unpriced = cart.add("E", 1, null).lines.find((l) => l.sku === "E").priceAtAdd ?? null;
    const prices = { refusals, afterBad, priced, unpriced };
    console.log(JSON.stringify({ items: s.itemCount, subtotal: s.subtotal.amount, code, shape, prices }));
  `;
  assert.deepEqual(runInstalled(script), {
    items: 2, subtotal: 200, code: "invalid_quantity",
    shape: {
      keys: ["owner", "version", "lines", "saved", "unavailable", "itemCount", "subtotal", "promoCodes", "discounts", "discountTotal", "total", "pendingOps", "syncing", "lastError"],
      spreadItems: 2, json: 2, has: true, refused: true, stillTwo: 2, frozen: true, laterItems: 3, laterLines: ["A", "B"],
    },
    prices: { refusals: Array(10).fill("invalid_money"), afterBad: ["A", "B"], priced: { amount: 250, currency: "USD" }, unpriced: null },
  });
});

test("an order answer reaches the page as the package's Order: camelCase, a discount on every line, no payment reference", async () => {
  // The snippet as shipped (minified), as checkout(), extendHold() and cancelOrder() use it (the
  // bundler entry's; the web entry's is the same code, bundled into its glue).
  const base = join(env.pkg, "bundler/snippets");
  const [dir] = readdirSync(base);
  const { camelAnswer } = await import(pathToFileURL(join(base, dir, "js/cart-error.js")).href);
  const m = (amount) => ({ amount, currency: "USD" });
  // The same in both forms: the fields whose names have no underscore.
  const head = { id: "ord-1", status: "pending_payment" };
  const tail = {
    subtotal: m(1300),
    discounts: [{ promotion: "p1", code: "SAVE", description: 'a "deal"', amount: m(60) }, { promotion: "auto", description: "auto", amount: m(40) }],
    total: m(1200),
  };
  // As the server writes it (shared::wire::OrderView): snake_case, absent options left out.
  const answer = {
    ...head,
    lines: [
      { sku: "A", quantity: 2, unit_price: m(500), price_at_add: m(450), discount: m(100), line_total: m(900) },
      { sku: "B", quantity: 1, unit_price: m(300), line_total: m(300) },
    ],
    ...tail,
    discount_total: m(100),
    gift_cards: [{ last4: "4242", amount: m(200) }],
    amount_due: m(1000),
    reserved_until: "2027-01-15T08:00:00Z", created_at: "2027-01-15T07:59:59.123Z",
    payment_ref: "never shown",
  };
  assert.deepEqual(camelAnswer(answer), {
    ...head,
    lines: [
      { sku: "A", quantity: 2, unitPrice: m(500), priceAtAdd: m(450), discount: m(100), lineTotal: m(900) },
      { sku: "B", quantity: 1, unitPrice: m(300), discount: m(0), lineTotal: m(300) },
    ],
    ...tail,
    discountTotal: m(100),
    giftCards: [{ last4: "4242", amount: m(200) }],
    amountDue: m(1000),
    reservedUntil: "2027-01-15T08:00:00Z", createdAt: "2027-01-15T07:59:59.123Z",
  });
});

test("snapshots read late, out of order and across two carts show exactly their moment", () => {
  // The module hands the page each list as a change from the last one it read (src/render.rs);
  // these reads jump between carts and moments, and the page scribbles on the arrays it got.
  const script = `
    const { CartClient } = await import("@cartsync/cart");
    let seed = 7;
    const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    const carts = [0, 1].map((i) => ({ client: new CartClient({ storageKey: "c" + i }), model: new Map() }));
    const kept = [];
    let early = 0, mismatches = [], sameObject = 0, changedObject = 0, last = [null, null];
    const state = (m) => [...m].map(([sku, q]) => sku + "=" + q).join(",");
    const shown = (s) => s.lines.map((l) => l.sku + "=" + l.quantity).join(",");
    for (let i = 0; i < 600; i++) {
      const c = rnd(2), { client, model } = carts[c];
      const sku = "S" + rnd(12), q = 1 + rnd(4), op = rnd(3);
      let s;
      if (op === 0 || !model.has(sku)) { s = client.add(sku, q, { amount: 100, currency: "USD" }); model.set(sku, (model.get(sku) ?? 0) + q); }
      else if (op === 1) { s = client.setQuantity(sku, q); model.set(sku, q); }
      else { s = client.remove(sku); model.delete(sku); }
      const want = state(model), items = [...model.values()].reduce((a, b) => a + b, 0);
      if (rnd(3) === 0) {
        early++;
        if (shown(s) !== want || s.itemCount !== items) mismatches.push([i, shown(s), want]);
        // An unchanged line is the object the last read of this cart gave.
        const before = last[c];
        if (before) for (const l of s.lines) { const b = before.lines.find((x) => x.sku === l.sku); if (b && b.quantity === l.quantity && b.addedAt === l.addedAt) b === l ? sameObject++ : changedObject++; }
        last[c] = s;
        s.lines.reverse(); s.lines.push({ sku: "junk" });
      } else kept.push([s, want, items]);
    }
    for (let i = kept.length - 1; i > 0; i--) { const j = rnd(i + 1); [kept[i], kept[j]] = [kept[j], kept[i]]; }
    for (const [s, want, items] of kept) {
      if (shown(s) !== want || s.itemCount !== items) mismatches.push(["late", shown(s), want]);
      s.lines.sort();
    }
    console.log(JSON.stringify({ early: early > 100, late: kept.length > 300, mismatches, sameObject: sameObject > 200, changedObject }));
  `;
  assert.deepEqual(runInstalled(script), { early: true, late: true, mismatches: [], sameObject: true, changedObject: 0 });
});

test("npm pack installs into a fresh Vite project that bundles and runs it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cartsync-vite-"));
  let site, browser;
  try {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "vite-consumer", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", env.tarball], { cwd: dir, stdio: "pipe" });
    writeFileSync(join(dir, "index.html"), `<!doctype html><html><body><pre id="out">loading</pre><script type="module" src="/main.js"></script></body></html>`);
    writeFileSync(
      join(dir, "main.js"),
      `import { CartClient, CartError } from "@cartsync/cart";
       const cart = new CartClient({ storageKey: "vite-test" });
       cart.add("TEE", 3);
       let code = "none";
       try { cart.setQuantity("TEE", 1000); } catch (e) { code = e instanceof CartError ? e.code : "untyped"; }
       document.getElementById("out").textContent = JSON.stringify({ items: cart.snapshot().itemCount, code });`,
    );
    execFileSync("node", [join(env.tools, "node_modules/vite/bin/vite.js"), "build", "--logLevel", "warn"], { cwd: dir, stdio: "pipe" });
    site = await staticServer(join(dir, "dist"));
    browser = await launch();
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${site.url}/`);
    const out = await waitFor("the bundled page", async () => {
      const t = await page.textContent("#out");
      return t !== "loading" && t;
    });
    assert.deepEqual(JSON.parse(out), { items: 3, code: "invalid_quantity" }, errors.join("; "));
  } finally {
    await browser?.close();
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the web entry works from a plain module script with no bundler", async () => {
  const site = await staticServer(env.pkg);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${site.url}/package.json`);
    const out = await page.evaluate(async () => {
      const { default: init, CartClient, CartError } = await import("/web.js");
      await init();
      const cart = new CartClient({ storageKey: "plain" });
      cart.add("X", 2);
      let code;
      try { cart.add("X", -1); } catch (e) { code = e instanceof CartError && e.code; }
      return { items: cart.snapshot().itemCount, code };
    });
    assert.deepEqual(out, { items: 2, code: "invalid_quantity" });
  } finally {
    await browser.close();
    await site.close();
  }
});

test("the TypeScript declarations cover the API (tsc --strict)", () => {
  const dir = mkdtempSync(join(tmpdir(), "cartsync-ts-"));
  try {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "ts-consumer", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", env.tarball], { cwd: dir, stdio: "pipe" });
    writeFileSync(
      join(dir, "main.ts"),
      `import { CartClient, CartError, type CartSnapshot, type Money, type Order, type Line, type MergePreview, type Quote } from "@cartsync/cart";
       import init, { CartClient as WebClient } from "@cartsync/cart/web";
       const price: Money = { amount: 1999, currency: "USD" };
       const cart = new CartClient({ endpoint: "https://shop.example/api", storageKey: "k", currency: "USD" });
       const local = new CartClient();
       const s: CartSnapshot = cart.add("TEE", 2, price);
       cart.add("MUG", 1);
       const lines: Line[] = s.lines;
       const count: number = s.itemCount + s.pendingOps + s.version + s.subtotal.amount;
       const owner: "guest" | "user" = s.owner;
       const error: string | undefined = s.lastError?.code;
       cart.setQuantity("TEE", 3); cart.remove("TEE"); cart.saveForLater("MUG"); cart.moveToCart("MUG"); cart.removeSaved("MUG"); cart.clear();
       const unsubscribe: () => void = cart.subscribe((snap: CartSnapshot) => { void snap.syncing; });
       unsubscribe();
       async function flow(): Promise<void> {
         await init();
         new WebClient().snapshot();
         const synced: CartSnapshot = await cart.sync();
         const user: CartSnapshot = await cart.login("jwt");
         const order: Order = await cart.checkout({ idempotencyKey: "k1", expectedTotal: price });
         const again: Order = await cart.checkout();
         void [synced, user, order.id, order.total.amount, order.reservedUntil, again.lines];
         const preview: MergePreview = await cart.previewLogin("jwt");
         const policyTotal: number = preview.policies.keep_user.total.amount + preview.short.length + preview.dropped.length;
         const chosen: CartSnapshot = await cart.login("jwt", { policy: "max" });
         const extended: Order = await cart.extendHold(order.id);
         const cancelled: Order = await cart.cancelOrder(order.id);
         const q: Quote = await cart.quote();
         const locked: Order = await cart.checkout({ quote: q.quote });
         const headers: Record<string, string> = cart.authHeaders();
         const gone: Line[] = s.unavailable;
         const why: "out_of_stock" | "discontinued" | undefined = gone[0]?.reason;
         void [policyTotal, chosen, extended.reservedUntil, cancelled.status, q.expiresAt, locked, headers, why, preview.validated];
         try { cart.add("", 0); } catch (e) { if (e instanceof CartError) { const c: string = e.code; void c; } }
       }
       const guest: CartSnapshot = cart.logout();
       void [lines, count, owner, error, flow, guest, local];
       cart.free();`,
    );
    execFileSync(
      "node",
      [join(env.tools, "node_modules/typescript/bin/tsc"), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler", "--lib", "es2022,dom", "main.ts"],
      { cwd: dir, stdio: "pipe" },
    );
  } catch (e) {
    assert.fail(`tsc: ${e.stdout?.toString() || e.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
