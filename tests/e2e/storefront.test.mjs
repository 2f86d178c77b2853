// The demo storefront on the npm package, in headless Chromium, against a real sync-server with
// Redis and PostgreSQL: offline edits, reloads, login merges, two tabs, typed errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { env, SyncServer, staticServer, launch, freePort, waitFor, pairs } from "./harness.mjs";

let server, site, browser;

before(async () => {
  server = new SyncServer(await freePort());
  await server.start();
  await server.seedCatalog();
  site = await staticServer(env.www);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await site?.close();
  await server?.stop();
});

async function openShop(context) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${site.url}/?api=${encodeURIComponent(server.url)}`);
  await page.waitForSelector("body[data-ready=true]");
  return page;
}

const snapshot = (page) => page.evaluate(() => window.cart.snapshot());
const stored = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("cartsync-demo")));
const addProduct = (page, sku) => page.click(`article[data-sku="${sku}"] [data-testid=add]`);

test("changes made while the server is down survive a reload and reach the server once it is back", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await server.stop();
  await addProduct(page, "TEE-RED-M");
  await addProduct(page, "TEE-RED-M");
  await addProduct(page, "CAP-BLK");
  let s = await snapshot(page);
  assert.deepEqual(pairs(s.lines), [["CAP-BLK", 1], ["TEE-RED-M", 2]]);
  assert.ok(s.pendingOps >= 3, `pending ops: ${s.pendingOps}`);

  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  s = await snapshot(page);
  assert.deepEqual(pairs(s.lines), [["CAP-BLK", 1], ["TEE-RED-M", 2]], "nothing lost in the reload");
  assert.ok(s.pendingOps >= 3);
  assert.equal(await page.textContent("[data-testid=count]"), "3");

  await server.start();
  await waitFor("the pending ops to drain", async () => (await snapshot(page)).pendingOps === 0, 60_000);
  const token = (await stored(page)).guest_token;
  const onServer = await server.api("GET", "/v1/cart", { guest: token });
  assert.deepEqual(pairs(onServer.body.lines), [["CAP-BLK", 1], ["TEE-RED-M", 2]], "the server has exactly the offline edits");
  assert.equal(onServer.body.version, 3, "three ops, each applied once");
  await context.close();
});

test("logging in merges the guest cart once, even when another tab logs in again", async () => {
  const alice = `alice-${Date.now()}`;
  const token = await server.userToken(alice);
  await server.api("POST", "/v1/cart/items", { token, body: { sku: "TEE-RED-M", quantity: 1 } });
  await server.api("POST", "/v1/cart/items", { token, body: { sku: "SOCKS-3P", quantity: 3 } });

  const context = await browser.newContext();
  const page = await openShop(context);
  await addProduct(page, "TEE-RED-M");
  await addProduct(page, "TEE-RED-M");
  await addProduct(page, "CAP-BLK");
  const other = await openShop(context);

  await page.fill("#user", alice);
  await page.click("[data-testid=login]");
  // A guest cart with lines: the shop shows what each merge policy would make and the shopper picks.
  await page.waitForSelector("[data-testid=merge-dialog][open]");
  await page.click("[data-testid=merge-sum]");
  await waitFor("the login", async () => (await snapshot(page)).owner === "user");
  const merged = await snapshot(page);
  assert.deepEqual(pairs(merged.lines), [["CAP-BLK", 1], ["SOCKS-3P", 3], ["TEE-RED-M", 3]]);
  assert.equal(merged.pendingOps, 0);

  // The other tab follows, and logging in there again changes nothing.
  await waitFor("the other tab to follow", async () => (await snapshot(other)).owner === "user");
  await other.evaluate((t) => window.cart.login(t), token);
  const again = await snapshot(other);
  assert.deepEqual(pairs(again.lines), pairs(merged.lines), "no second merge");
  const onServer = await server.api("GET", "/v1/cart", { token });
  assert.deepEqual(pairs(onServer.body.lines), [["CAP-BLK", 1], ["SOCKS-3P", 3], ["TEE-RED-M", 3]]);

  await page.click("[data-testid=logout]");
  const out = await snapshot(page);
  assert.equal(out.owner, "guest");
  assert.equal(out.lines.length, 0);
  const kept = JSON.stringify(await stored(page));
  assert.ok(!kept.includes("SOCKS-3P") && !kept.includes("user_token"), "nothing of the user's cart stays in storage");
  await context.close();
});

test("two checkouts at once make one order, and its payment takes just that order out of the cart", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await addProduct(page, "SOCKS-3P");
  await addProduct(page, "SOCKS-3P");
  const reserved = async () => (await server.api("GET", "/v1/admin/products/SOCKS-3P", { admin: true })).body.reserved;
  const before = await reserved();
  // A double click: both calls start before either is answered.
  const [a, b] = await page.evaluate(() => Promise.all([window.cart.checkout(), window.cart.checkout()]));
  assert.equal(a.id, b.id, "one order");
  assert.equal(a.status, "pending_payment");
  assert.equal((await reserved()) - before, 2, "one order's worth of stock held");
  // Again, after the first answer: the same cart version keeps its order only until it is
  // settled, so a deliberate second checkout is a new order that replaces the first hold.
  await page.evaluate(() => window.cart.add("CAP-BLK", 1));
  const token = (await stored(page)).guest_token;
  const order = await page.evaluate(() => window.cart.checkout());
  assert.notEqual(order.id, a.id, "a changed cart is a new checkout");
  assert.equal((await server.api("GET", `/v1/orders/${a.id}`, { guest: token })).body.status, "cancelled", "the older hold was released");
  assert.equal((await reserved()) - before, 2, "still one order's worth held");

  await page.evaluate(() => window.cart.add("MUG-CSY", 1));
  const paid = await server.pay(order, "succeeded", `pay-${Date.now()}`);
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  const s = await page.evaluate(() => window.cart.sync());
  assert.deepEqual(pairs(s.lines), [["MUG-CSY", 1]], "the ordered lines left the cart; the one added after stayed");
  assert.equal((await reserved()) - before, 0, "the hold became a sale");
  await context.close();
});

test("a promo code applies offline, and checkout with the shown total and a gift card places the order", async () => {
  const promo = await server.api("PUT", "/v1/admin/promotions/e2e-spring", {
    admin: true,
    body: { code: "SPRING10", description: "10% off $30 or more", min_subtotal: { amount: 3000, currency: "USD" }, action: { type: "percent_off_order", percent: 10 } },
  });
  assert.ok([200, 201].includes(promo.status), JSON.stringify(promo.body));
  const card = await server.api("POST", "/v1/admin/gift-cards", { admin: true, body: { balance: { amount: 1000, currency: "USD" } } });
  assert.equal(card.status, 201, JSON.stringify(card.body));

  const context = await browser.newContext();
  const page = await openShop(context);
  await addProduct(page, "TEE-RED-M");
  await page.fill("[data-testid=promo-code]", "spring10");
  await page.click("[data-testid=apply-code]");
  // Not applied yet: the shopper is told how much more to add (30.00 − 19.99).
  await waitFor("the code's reason", async () => (await page.textContent("#codes li[data-code=SPRING10]"))?.includes("add $10.01 more"), 10_000);
  await addProduct(page, "TEE-RED-M");
  await waitFor("the code to apply", async () => (await snapshot(page)).promoCodes[0]?.applied === true, 10_000);
  assert.equal(await page.textContent("[data-testid=total]"), "$35.98", "39.98 less 4.00 (10% of 39.98, half-even)");
  await waitFor("the sync", async () => (await snapshot(page)).pendingOps === 0, 15_000);

  // Offline: the browser computes the discount itself, with the same engine as the server.
  await context.setOffline(true);
  await addProduct(page, "CAP-BLK");
  let s = await snapshot(page);
  assert.ok(s.pendingOps > 0, "the change waits for the network");
  assert.equal(s.discountTotal.amount, 550, "10% of 54.97 is 5.497, rounded to 5.50");
  assert.equal(s.total.amount, 4947);
  assert.equal(await page.textContent("[data-testid=total]"), "$49.47");
  assert.equal(s.lines.reduce((n, l) => n + l.lineTotal.amount, 0), s.total.amount, "the lines add up to the total");

  await context.setOffline(false);
  await page.evaluate(() => window.cart.sync());
  await waitFor("the sync", async () => (await snapshot(page)).pendingOps === 0, 30_000);
  const token = (await stored(page)).guest_token;
  const onServer = await server.api("GET", "/v1/cart", { guest: token });
  assert.deepEqual([onServer.body.discount_total.amount, onServer.body.total.amount], [550, 4947], "the server computes what the browser showed");

  // The cap's price goes up before checkout: the shopper is told, nothing is reserved, and the
  // next checkout is at the new total.
  await server.api("PUT", "/v1/admin/products/CAP-BLK", { admin: true, body: { price: { amount: 1599, currency: "USD" } } });
  await page.fill("[data-testid=gift-card]", card.body.code);
  await page.click("[data-testid=checkout]");
  await waitFor("the price-changed notice", async () => (await page.getAttribute("[data-testid=toast]", "data-code")) === "price_changed", 15_000);
  assert.ok((await page.textContent("[data-testid=toast]")).includes("$50.37"), await page.textContent("[data-testid=toast]"));
  await waitFor("the new total", async () => (await page.textContent("[data-testid=total]")) === "$50.37", 15_000);
  await page.click("[data-testid=checkout]");
  await page.waitForSelector("[data-testid=order]:not([hidden])", { timeout: 15_000 });
  assert.equal(await page.textContent("[data-testid=order-total]"), "$50.37");
  assert.equal(await page.textContent("[data-testid=amount-due]"), "$40.37", "the gift card paid 10.00");
  assert.equal(await page.textContent("[data-testid=order-status]"), "pending_payment");
  const id = await page.textContent("[data-testid=order-id]");
  const order = (await server.api("GET", `/v1/orders/${id}`, { guest: token })).body;
  assert.deepEqual([order.subtotal.amount, order.discount_total.amount, order.total.amount, order.amount_due.amount], [5597, 560, 5037, 4037]);
  assert.equal(order.gift_cards[0].amount.amount, 1000);
  const paid = await server.pay(order, "succeeded", `pay-${Date.now()}`);
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  await server.api("PUT", "/v1/admin/products/CAP-BLK", { admin: true, body: { price: { amount: 1499, currency: "USD" } } });
  await context.close();
});

test("two tabs see each other's changes", async () => {
  const context = await browser.newContext();
  const one = await openShop(context);
  const two = await openShop(context);
  await addProduct(one, "MUG-CSY");
  await waitFor("tab two to show the mug", async () => (await two.textContent("[data-testid=count]")) === "1", 5_000);
  await two.click(`#lines li[data-sku="MUG-CSY"] [data-testid=save]`);
  await waitFor("tab one to show it saved", async () => (await snapshot(one)).saved.length === 1, 5_000);
  assert.equal((await snapshot(one)).lines.length, 0);
  await context.close();
});

test("invalid input shows a typed error and changes nothing", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await addProduct(page, "SOCKS-3P");
  // The drawer re-renders as the cart syncs, so the edit is retried until it lands on the input.
  await waitFor("the error toast", async () => {
    const qty = page.locator(`#lines li[data-sku="SOCKS-3P"] input`);
    await qty.fill("1000");
    await qty.dispatchEvent("change");
    return (await page.getAttribute("[data-testid=toast]", "data-code")) === "invalid_quantity";
  }, 10_000);
  assert.equal((await snapshot(page)).lines[0].quantity, 1);
  const thrown = await page.evaluate(async () => {
    const { CartError } = await import("./pkg/web.js");
    const out = [];
    for (const [sku, q] of [["", 1], ["SOCKS-3P", 0], ["SOCKS-3P", 1.5], [42, 1]]) {
      try {
        window.cart.add(sku, q);
        out.push("no error");
      } catch (e) {
        out.push(`${e instanceof CartError}:${e.code}`);
      }
    }
    return out;
  });
  assert.deepEqual(thrown, ["true:invalid_sku", "true:invalid_quantity", "true:invalid_quantity", "true:invalid_sku"]);
  await context.close();
});

test("the storefront with a filled cart (screenshot)", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await openShop(context);
  for (const sku of ["TEE-RED-M", "TEE-RED-M", "CAP-BLK", "SOCKS-3P", "MUG-CSY"]) await addProduct(page, sku);
  await page.click(`#lines li[data-sku="MUG-CSY"] [data-testid=save]`);
  await waitFor("the sync", async () => (await snapshot(page)).pendingOps === 0, 15_000);
  await page.evaluate(() => window.cart.sync());
  mkdirSync(env.artifacts, { recursive: true });
  await page.screenshot({ path: join(env.artifacts, "storefront.png"), fullPage: true });
  const s = await snapshot(page);
  assert.equal(s.itemCount, 4);
  assert.equal(s.lines.find((l) => l.sku === "TEE-RED-M").availability, "in_stock");
  await context.close();
});

test("the first paint shows the stored cart before the module has loaded", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await addProduct(page, "CAP-BLK");
  await addProduct(page, "CAP-BLK");
  await waitFor("the count", async () => (await page.textContent("[data-testid=count]")) === "2");
  // The next page's WebAssembly module is held back until the first paint has been looked at.
  let release;
  const held = new Promise((r) => (release = r));
  await page.route("**/cartsync_bg.wasm", async (route) => {
    await held;
    await route.continue();
  });
  await page.goto(`${site.url}/?api=${encodeURIComponent(server.url)}`, { waitUntil: "domcontentloaded" });
  assert.equal(await page.getAttribute("body", "data-ready"), null, "the module has not loaded yet");
  assert.equal(await page.getAttribute("body", "data-first-paint"), "stored");
  assert.equal(await page.textContent("[data-testid=count]"), "2");
  assert.match(await page.textContent("#lines li[data-sku=CAP-BLK]"), /Black cap × 2/);
  release();
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.getAttribute("body", "data-first-paint"), null, "the live cart replaced it");
  const s = await snapshot(page);
  const token = (await stored(page)).guest_token;
  const onServer = await server.api("GET", "/v1/cart", { guest: token });
  assert.equal(s.itemCount, 2, JSON.stringify({ s, onServer: onServer.body, stored: await stored(page) }));
  await context.close();
});

test("an api parameter naming a foreign origin is ignored, and product names are text, not markup", async () => {
  const hostile = `<img src=x onerror="window.pwned=1">`;
  const r = await server.api("PUT", "/v1/admin/products/XSS-NAME", { admin: true, body: { name: hostile, price: { amount: 100, currency: "USD" }, stock: 5 } });
  assert.equal(r.status, 200);
  const context = await browser.newContext();
  const foreign = [];
  context.on("request", (req) => {
    if (new URL(req.url()).hostname === "evil.example") foreign.push(req.url());
  });
  const page = await context.newPage();
  await page.goto(`${site.url}/?api=${encodeURIComponent("https://evil.example")}`);
  await page.waitForSelector("body[data-ready=true]");
  assert.match(await page.textContent("[data-testid=toast]"), /Ignored the api parameter/);
  await page.evaluate(() => window.cart.sync().catch(() => {}));
  assert.deepEqual(foreign, [], "no request left for the foreign origin");

  const shop = await openShop(context);
  const name = await shop.textContent(`article[data-sku="XSS-NAME"] h3`);
  assert.equal(name, hostile, "the name shows as written");
  await addProduct(shop, "XSS-NAME");
  assert.equal(await shop.textContent(`#lines li[data-sku="XSS-NAME"] .name`), hostile);
  assert.equal(await shop.evaluate(() => window.pwned), undefined, "no markup of the name ran");
  await context.close();
});

test("a refused token pauses pushes with backoff, keeps every op, tells the page once, and a new login sends them", async () => {
  const user = `bob-${Date.now()}`;
  const context = await browser.newContext();
  const page = await openShop(context);
  const token = await server.userToken(user);
  await page.evaluate(async (api) => {
    const { CartClient } = await import("./pkg/web.js");
    window.told = [];
    window.authCart = new CartClient({ endpoint: api, storageKey: "auth-test", onUnauthorized: (e) => window.told.push(e.code) });
  }, server.url);
  await page.evaluate((t) => window.authCart.login(t), token);
  // The token is replaced in storage by a forged one, as if it had been revoked; a new client reads it.
  await page.evaluate(async (api) => {
    const s = JSON.parse(localStorage.getItem("auth-test"));
    s.user_token = s.user_token.slice(0, -4) + "AAAA";
    localStorage.setItem("auth-test", JSON.stringify(s));
    window.authCart.free();
    const { CartClient } = await import("./pkg/web.js");
    window.authCart = new CartClient({ endpoint: api, storageKey: "auth-test", onUnauthorized: (e) => window.told.push(e.code) });
  }, server.url);
  let pushes = 0;
  page.on("request", (req) => {
    if (req.url().endsWith("/v1/cart/ops")) pushes += 1;
  });
  await page.evaluate(() => {
    window.authCart.add("TEE-RED-M", 1);
    window.authCart.add("CAP-BLK", 2);
  });
  await waitFor("the refusal", async () => (await page.evaluate(() => window.told.length)) === 1);
  await new Promise((r) => setTimeout(r, 3_000));
  const state = await page.evaluate(async () => {
    let code;
    try {
      await window.authCart.sync();
    } catch (e) {
      code = e.code;
    }
    const s = window.authCart.snapshot();
    return { code, pending: s.pendingOps, error: s.lastError?.code, told: window.told };
  });
  assert.equal(state.code, "unauthorized", "sync() settles with the typed error");
  assert.equal(state.error, "unauthorized");
  assert.deepEqual(state.told, ["unauthorized"], "the page is told once");
  assert.equal(state.pending, 2, "every op is kept");
  // Backoff: a handful of tries in those seconds, not hundreds.
  assert.ok(pushes >= 1 && pushes <= 6, `pushes with the refused token: ${pushes}`);

  const fresh = await server.userToken(user);
  await page.evaluate((t) => window.authCart.login(t), fresh);
  await waitFor("the ops to reach the server", async () => (await page.evaluate(() => window.authCart.snapshot().pendingOps)) === 0, 15_000);
  const onServer = await server.api("GET", "/v1/cart", { token: fresh });
  assert.deepEqual(pairs(onServer.body.lines), [["CAP-BLK", 2], ["TEE-RED-M", 1]]);
  await context.close();
});
