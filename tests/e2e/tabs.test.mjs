// Four tabs of one origin racing on one cart, in headless Chromium: localStorage has no atomic
// read-modify-write, so the cart must lose no tab's write (local-only), and a synced cart must push
// each op exactly once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SyncServer, env, staticServer, launch, freePort, waitFor } from "./harness.mjs";

const TABS = 4;
const ADDS = 250;
const SKUS = 25; // 250 adds over 25 SKUs (7i + t mod 25 visits each 10 times): 40 of each in the end

let server, site, browser;

before(async () => {
  server = new SyncServer(await freePort());
  await server.start();
  site = await staticServer(env.pkg);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await site?.close();
  await server?.stop();
});

/** `TABS` pages of one origin (one context), each with a CartClient on `storageKey`. */
async function openTabs(context, options) {
  const pages = [];
  for (let i = 0; i < TABS; i++) {
    const page = await context.newPage();
    page.on("pageerror", (e) => console.error(`tab ${i}:`, e.message));
    await page.goto(`${site.url}/package.json`);
    await page.evaluate(async (options) => {
      const { default: init, CartClient } = await import("/web.js");
      await init();
      window.cart = new CartClient(options);
    }, options);
    pages.push(page);
  }
  return pages;
}

/** Every tab at once: `ADDS` adds each, over `SKUS` SKUs, as fast as it can (yielding now and then so events and flushes run). */
function race(pages) {
  return Promise.all(
    pages.map((p, t) =>
      p.evaluate(
        async ({ t, ADDS, SKUS }) => {
          for (let i = 0; i < ADDS; i++) {
            window.cart.add(`SKU-${(i * 7 + t) % SKUS}`, 1);
            if (i % 10 === 9) await new Promise((r) => setTimeout(r, 0));
          }
        },
        { t, ADDS, SKUS },
      ),
    ),
  );
}

const quantities = (s) => Object.fromEntries(s.lines.map((l) => [l.sku, l.quantity]).sort());
const expected = Object.fromEntries(
  Array.from({ length: SKUS }, (_, i) => [`SKU-${i}`, (TABS * ADDS) / SKUS]).sort(),
);

test("four tabs adding at once to a local-only cart lose no write", async () => {
  const context = await browser.newContext();
  const pages = await openTabs(context, { storageKey: "race-local", maxLineQuantity: 1000 });
  await race(pages);
  for (const [i, page] of pages.entries()) {
    await waitFor(`tab ${i} to show every tab's adds`, async () => {
      const s = await page.evaluate(() => window.cart.snapshot());
      return JSON.stringify(quantities(s)) === JSON.stringify(expected);
    }, 20_000).catch(async (e) => {
      const s = await page.evaluate(() => window.cart.snapshot());
      assert.deepEqual(quantities(s), expected, `tab ${i}: ${e.message}`);
    });
  }
  // A tab opened afterwards reads the same cart from storage.
  const [late] = await openTabs(await browser.newContext({ storageState: await context.storageState() }), { storageKey: "race-local", maxLineQuantity: 1000 });
  assert.deepEqual(quantities(await late.evaluate(() => window.cart.snapshot())), expected);
  await context.close();
});

test("four tabs adding at once to a synced cart push each op exactly once", async () => {
  const context = await browser.newContext();
  const pushed = new Map();
  let requests = 0;
  context.on("request", (req) => {
    if (!req.url().endsWith("/v1/cart/ops") || req.method() !== "POST") return;
    requests += 1;
    for (const op of req.postDataJSON().ops) pushed.set(op.op_id, (pushed.get(op.op_id) ?? 0) + 1);
  });
  const pages = await openTabs(context, { storageKey: "race-synced", endpoint: server.url });
  await race(pages);
  for (const [i, page] of pages.entries()) {
    await waitFor(`tab ${i} to settle`, async () => {
      const s = await page.evaluate(() => window.cart.snapshot());
      return s.pendingOps === 0 && JSON.stringify(quantities(s)) === JSON.stringify(expected);
    }, 60_000).catch(async (e) => {
      const s = await page.evaluate(() => window.cart.snapshot());
      assert.deepEqual({ pending: s.pendingOps, q: quantities(s) }, { pending: 0, q: expected }, `tab ${i}: ${e.message}`);
    });
  }
  const token = await pages[0].evaluate(() => JSON.parse(localStorage.getItem("race-synced")).guest_token);
  const onServer = await server.api("GET", "/v1/cart", { guest: token });
  assert.deepEqual(quantities(onServer.body), expected, "the server has every add");
  assert.equal(onServer.body.version, TABS * ADDS, "each op applied once");
  assert.equal(pushed.size, TABS * ADDS, "every op was pushed");
  const twice = [...pushed].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `ops pushed more than once (of ${requests} pushes)`);
  await context.close();
});
