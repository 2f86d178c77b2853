// Shared pieces of the browser end-to-end tests: the sync-server process (started and stopped
// at will, on a fixed port), a static server for pages, and Debian's Chromium via Playwright.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { createRequire } from "node:module";
import { createHmac } from "node:crypto";

const require = createRequire(join(process.env.CARTSYNC_E2E_TOOLS, "package.json"));
const { chromium } = require("playwright-core");

export const env = {
  bin: process.env.CARTSYNC_E2E_SERVER_BIN,
  redis: process.env.CARTSYNC_E2E_REDIS_URL,
  database: process.env.CARTSYNC_E2E_DATABASE_URL,
  www: process.env.CARTSYNC_E2E_WWW,
  pkg: process.env.CARTSYNC_E2E_PKG,
  tarball: process.env.CARTSYNC_E2E_TARBALL,
  reactTarball: process.env.CARTSYNC_E2E_REACT_TARBALL,
  examples: process.env.CARTSYNC_E2E_EXAMPLES,
  tools: process.env.CARTSYNC_E2E_TOOLS,
  artifacts: process.env.CARTSYNC_E2E_ARTIFACTS,
};
export const SECRET = "e2e-jwt-secret-of-enough-length-000";
export const ADMIN = "e2e-admin-token-of-enough-length";
export const WEBHOOK_SECRET = "e2e-webhook-secret-of-enough-length";

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** The sync server on a port of its own, with its own Redis key prefix; stop() and start() again keep the data. */
export class SyncServer {
  constructor(port) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.prefix = `e2e${port}${Math.floor(Math.random() * 1e6)}`;
  }

  async start() {
    this.proc = spawn(env.bin, [], {
      env: {
        ...process.env,
        CARTSYNC_LISTEN: `127.0.0.1:${this.port}`,
        CARTSYNC_REDIS_URL: env.redis,
        CARTSYNC_REDIS_PREFIX: this.prefix,
        CARTSYNC_DATABASE_URL: env.database,
        CARTSYNC_JWT_SECRET: SECRET,
        CARTSYNC_ADMIN_TOKEN: ADMIN,
        CARTSYNC_WEBHOOK_SECRET: WEBHOOK_SECRET,
        CARTSYNC_METRICS_LISTEN: "",
        CARTSYNC_DEV_LOGIN: "true",
        CARTSYNC_CORS_ORIGINS: "*",
        RUST_LOG: "warn",
      },
      stdio: ["ignore", "inherit", "inherit"],
    });
    await waitFor("the sync server", async () => (await fetch(`${this.url}/healthz`)).ok);
  }

  async stop() {
    if (!this.proc) return;
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await exited;
    this.proc = undefined;
  }

  async api(method, path, { token, guest, body, admin } = {}) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    if (admin) headers.authorization = `Bearer ${ADMIN}`;
    if (guest) headers["x-cart-token"] = guest;
    const res = await fetch(`${this.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /** The payment provider's webhook for `order`, for its whole amount due, signed as the provider signs it. */
  async pay(order, status, paymentRef) {
    const amount = order.amountDue ?? order.amount_due ?? order.total;
    const body = JSON.stringify({ order_id: order.id, status, payment_ref: paymentRef, amount });
    const t = Math.floor(Date.now() / 1000);
    const v1 = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
    const res = await fetch(`${this.url}/v1/orders/${order.id}/payment`, {
      method: "POST",
      headers: { "content-type": "application/json", "cartsync-signature": `t=${t},v1=${v1}` },
      body,
    });
    return { status: res.status, body: await res.json() };
  }

  async userToken(user) {
    return (await this.api("POST", "/v1/dev/login", { body: { user } })).body.token;
  }

  async seedCatalog() {
    const items = [
      ["TEE-RED-M", "Red tee (M)", 1999, 25],
      ["CAP-BLK", "Black cap", 1499, 40],
      ["MUG-CSY", "cartsync mug", 1200, 3],
      ["SOCKS-3P", "Socks (3 pairs)", 1299, 60],
    ];
    for (const [sku, name, amount, stock] of items) {
      const r = await this.api("PUT", `/v1/admin/products/${sku}`, { admin: true, body: { name, price: { amount, currency: "USD" }, stock } });
      if (r.status !== 200) throw new Error(`seeding ${sku}: ${JSON.stringify(r.body)}`);
    }
  }
}

const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json", ".png": "image/png" };

/** Serves a directory over HTTP on a free port (a storefront on another origin than the API), with `headers` on every answer. */
export async function staticServer(root, headers = {}) {
  const server = createServer(async (req, res) => {
    try {
      let path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
      if (path.endsWith("/")) path += "index.html";
      const file = join(root, path);
      if (!file.startsWith(root) || !(await stat(file)).isFile()) throw new Error("not found");
      res.writeHead(200, { ...headers, "content-type": types[extname(file)] || "application/octet-stream" });
      res.end(await readFile(file));
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

export async function launch() {
  // Chromium leaves its singleton and scoped directories (about 25 MB a run) in TMPDIR when it
  // is shut down: each browser gets a TMPDIR of its own, removed once it has closed.
  const tmp = mkdtempSync(join(tmpdir(), "cartsync-chromium-"));
  const browser = await chromium.launch({
    executablePath: process.env.CARTSYNC_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    env: { ...process.env, TMPDIR: tmp },
  });
  browser.on("disconnected", () => rmSync(tmp, { recursive: true, force: true }));
  // An uncaught error or unhandled rejection in any page is printed as `PAGEERROR`, which fails
  // the suite (tests/tests/browser_e2e.rs): the package must never leave one behind.
  const watch = (page) => page.on("pageerror", (e) => console.error(`PAGEERROR ${String(e?.stack ?? e).slice(0, 600)}`));
  // (`browser.newPage()` makes its context through `newContext` too.)
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (...args) => {
    const context = await newContext(...args);
    context.on("page", watch);
    return context;
  };
  return browser;
}

/** `(sku, quantity)` pairs of a cart's lines, sorted by SKU. */
export const pairs = (lines) => lines.map((l) => [l.sku, l.quantity]).sort();
