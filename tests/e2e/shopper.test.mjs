// The demo shop walked through as a shopper, in headless Chromium, against a real sync-server on
// Redis and PostgreSQL (shopper.md): add, see a price change, log in and pick a merge policy, see a
// line go unavailable and come back, check out, watch the hold count down, extend it, pay, and see
// the order paid; and a second order cancelled. Screenshots of each step go to tests/artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { env, ADMIN, SyncServer, staticServer, launch, freePort, waitFor, pairs } from "./harness.mjs";

let server, site, browser;

before(async () => {
  server = new SyncServer(await freePort());
  await server.start();
  await server.seedCatalog();
  site = await staticServer(env.www);
  browser = await launch();
  mkdirSync(env.artifacts, { recursive: true });
});

after(async () => {
  await browser?.close();
  await site?.close();
  await server?.stop();
});

const snapshot = (page) => page.evaluate(() => window.cart.snapshot());
const shot = (page, name) => page.screenshot({ path: join(env.artifacts, `shopper-${name}.png`), fullPage: true });
const text = (page, selector) => page.textContent(selector);
/** Seconds left on the hold countdown (`m:ss`). */
const holdLeft = async (page) => {
  const [m, s] = (await text(page, "[data-testid=hold]")).split(":").map(Number);
  return m * 60 + s;
};

async function openShop(context) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${site.url}/?api=${encodeURIComponent(server.url)}`);
  await page.waitForSelector("body[data-ready=true]");
  page.errors = errors;
  return page;
}

/** The back office of the demo shop, as the store would use it. */
async function changeProduct(page, sku, { price, stock, active } = {}) {
  if (!(await page.isVisible("[data-testid=admin-token]"))) await page.click("#store summary");
  await page.fill("[data-testid=admin-token]", ADMIN);
  await page.selectOption("[data-testid=admin-sku]", sku);
  await page.fill("[data-testid=admin-price]", price === undefined ? "" : String(price));
  await page.fill("[data-testid=admin-stock]", stock === undefined ? "" : String(stock));
  await page.selectOption("[data-testid=admin-active]", active === undefined ? "" : String(active));
  await page.click("[data-testid=admin-save]");
}

const line = (page, list, sku) => page.locator(`[data-testid=${list}] li[data-sku="${sku}"]`);

test("a shopper walks through price changes, a merge choice, an unavailable line, a hold and a payment", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await openShop(context);
  const user = `shopper-${Date.now()}`;
  // The shopper's account already has two red tees from another device.
  const token = await server.userToken(user);
  await server.api("POST", "/v1/cart/items", { token, body: { sku: "TEE-RED-M", quantity: 2 } });

  // 1. Add as a guest.
  await page.click('article[data-sku="TEE-RED-M"] [data-testid=add]');
  await page.click('article[data-sku="MUG-CSY"] [data-testid=add]');
  assert.deepEqual(pairs((await snapshot(page)).lines), [["MUG-CSY", 1], ["TEE-RED-M", 1]]);
  assert.equal(await page.locator("article svg[role=img]").count() >= 4, true, "every product has a picture");
  await shot(page, "1-added");

  // 2. The store raises the tee's price: the line says so, and the total follows the new price.
  await changeProduct(page, "TEE-RED-M", { price: 24.99 });
  await waitFor("the price notice", () => line(page, "lines", "TEE-RED-M").locator("[data-testid=price-notice]").count());
  assert.match(await line(page, "lines", "TEE-RED-M").locator("[data-testid=price-notice]").textContent(), /went up from \$19\.99 to \$24\.99/);
  assert.equal((await snapshot(page)).subtotal.amount, 2499 + 1200);
  await shot(page, "2-price-changed");

  // 3. Log in: the shop previews each merge policy and the shopper picks "keep the larger quantity".
  await page.fill("#user", user);
  await page.click("[data-testid=login]");
  await page.waitForSelector("[data-testid=merge-dialog][open]");
  const option = (policy) => page.locator(`[data-policy=${policy}]`);
  assert.match(await option("sum").textContent(), /3 × Red tee/, "sum adds the quantities");
  assert.match(await option("max").textContent(), /2 × Red tee/, "max keeps the larger");
  assert.match(await option("keep_user").textContent(), /2 × Red tee/);
  await shot(page, "3-merge-dialog");
  await page.click("[data-testid=merge-max]");
  await waitFor("the login", async () => (await snapshot(page)).owner === "user");
  assert.deepEqual(pairs((await snapshot(page)).lines), [["MUG-CSY", 1], ["TEE-RED-M", 2]]);
  const onServer = await server.api("GET", "/v1/cart", { token });
  assert.deepEqual(pairs(onServer.body.lines), [["MUG-CSY", 1], ["TEE-RED-M", 2]], "the server merged by the chosen policy");

  // 4. The mug sells out: it moves to the unavailable section and out of the total; it comes
  //    back by itself when the store restocks.
  await changeProduct(page, "MUG-CSY", { stock: 0 });
  await waitFor("the mug to go unavailable", async () => (await snapshot(page)).unavailable.length === 1);
  assert.equal(await page.isVisible("[data-testid=unavailable-section]"), true);
  assert.match(await line(page, "unavailable", "MUG-CSY").textContent(), /Out of stock/);
  let s = await snapshot(page);
  assert.deepEqual([pairs(s.lines), s.unavailable[0].reason, s.itemCount, s.subtotal.amount], [[["TEE-RED-M", 2]], "out_of_stock", 2, 2 * 2499]);
  await shot(page, "4-unavailable");
  await changeProduct(page, "MUG-CSY", { stock: 3 });
  await waitFor("the mug to come back", async () => (await snapshot(page)).unavailable.length === 0);
  s = await snapshot(page);
  assert.deepEqual([pairs(s.lines), s.subtotal.amount], [[["MUG-CSY", 1], ["TEE-RED-M", 2]], 2 * 2499 + 1200]);
  assert.equal(await page.isVisible("[data-testid=unavailable-section]"), false);

  // 5. Check out: the order shows its hold counting down.
  await page.click("[data-testid=checkout]");
  await page.waitForSelector("[data-testid=hold]");
  assert.equal(await text(page, "[data-testid=order-status]"), "pending_payment");
  assert.equal(await text(page, "[data-testid=order-total]"), "$61.98");
  const first = await holdLeft(page);
  assert.ok(first > 500 && first <= 600, `a ten-minute hold: ${first}`);
  await waitFor("the countdown to tick", async () => (await holdLeft(page)) < first, 5_000);
  await shot(page, "5-hold");

  // 6. Extend once (five more minutes); a second extension is refused.
  const before = await holdLeft(page);
  await page.click("[data-testid=extend]");
  await waitFor("the extended hold", async () => (await holdLeft(page)) > before + 200);
  await page.click("[data-testid=extend]");
  await waitFor("the refusal", async () => (await page.getAttribute("[data-testid=toast]", "data-code")) === "hold_not_extendable");
  await shot(page, "6-extended");

  // 7. Pay: the order is paid, its lines leave the cart, and the stock is taken.
  await page.click("[data-testid=pay]");
  await waitFor("the payment", async () => (await text(page, "[data-testid=order-status]")) === "paid");
  await waitFor("the cart to empty", async () => (await snapshot(page)).lines.length === 0);
  assert.ok(!(await text(page, "[data-testid=order]")).includes("null"), "the order panel shows no stray values");
  const tee = await server.api("GET", "/v1/admin/products/TEE-RED-M", { admin: true });
  assert.deepEqual([tee.body.stock, tee.body.reserved], [23, 0]);
  await shot(page, "7-paid");
  assert.deepEqual(page.errors, [], "no page errors");
  await context.close();
});

test("a shopper cancels a pending order and its stock is free at once", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await page.click('article[data-sku="CAP-BLK"] [data-testid=add]');
  await page.click('article[data-sku="CAP-BLK"] [data-testid=add]');
  await waitFor("the adds to sync", async () => (await snapshot(page)).pendingOps === 0);
  await page.click("[data-testid=checkout]");
  await page.waitForSelector("[data-testid=cancel-order]");
  let cap = await server.api("GET", "/v1/admin/products/CAP-BLK", { admin: true });
  assert.equal(cap.body.reserved, 2);
  await page.click("[data-testid=cancel-order]");
  await waitFor("the cancellation", async () => (await text(page, "[data-testid=order-status]")) === "cancelled");
  cap = await server.api("GET", "/v1/admin/products/CAP-BLK", { admin: true });
  assert.equal(cap.body.reserved, 0);
  assert.deepEqual(pairs((await snapshot(page)).lines), [["CAP-BLK", 2]], "the cart keeps its lines");
  await shot(page, "8-cancelled");
  await context.close();
});

test("a line added offline shows the catalog price the cart knows, then the server's", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  // Seen once while online, then removed: the cart remembers its price.
  await page.evaluate(() => window.cart.add("SOCKS-3P", 1));
  await waitFor("the add to sync", async () => (await snapshot(page)).pendingOps === 0);
  await page.evaluate(() => window.cart.sync());
  await page.evaluate(() => window.cart.remove("SOCKS-3P"));
  await waitFor("the remove to sync", async () => (await snapshot(page)).pendingOps === 0);
  await context.setOffline(true);
  const offline = await page.evaluate(() => window.cart.add("SOCKS-3P", 2));
  assert.deepEqual(offline.lines[0].priceAtAdd, { amount: 1299, currency: "USD" }, "the price it knows, added offline without one");
  assert.equal(offline.subtotal.amount, 2 * 1299);
  await context.setOffline(false);
  await page.evaluate(() => window.cart.sync());
  const synced = await snapshot(page);
  assert.equal(synced.pendingOps, 0);
  assert.deepEqual(synced.lines[0].priceAtAdd, { amount: 1299, currency: "USD" }, "the server's price at add");
  await context.close();
});

test("a quote from the browser cart locks its prices through a price rise", async () => {
  const context = await browser.newContext();
  const page = await openShop(context);
  await page.evaluate(() => window.cart.add("SOCKS-3P", 2));
  const quote = await page.evaluate(() => window.cart.quote());
  const usd = (amount) => ({ amount, currency: "USD" });
  assert.deepEqual(quote.lines, [{ sku: "SOCKS-3P", quantity: 2, unitPrice: usd(1299), discount: usd(0), lineTotal: usd(2598) }]);
  assert.equal(quote.total.amount, 2598);
  assert.ok(Date.parse(quote.expiresAt) > Date.now() + 800_000, "a 15-minute lock by default");
  await server.api("PUT", "/v1/admin/products/SOCKS-3P", { admin: true, body: { price: { amount: 1599, currency: "USD" } } });
  const order = await page.evaluate((q) => window.cart.checkout({ quote: q }), quote.quote);
  assert.equal(order.total.amount, 2598, "charged the quoted price");
  assert.deepEqual(order.lines[0].unitPrice, { amount: 1299, currency: "USD" });
  // An edited quote is refused with its reason, and nothing is held.
  const refused = await page.evaluate(async (q) => {
    try {
      await window.cart.checkout({ quote: q + "x", idempotencyKey: "edited-quote" });
      return null;
    } catch (e) {
      return { code: e.code, reason: e.details?.reason };
    }
  }, quote.quote);
  assert.deepEqual(refused, { code: "quote_invalid", reason: "forged" });
  await context.close();
});
