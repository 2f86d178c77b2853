// @cartsync/react as users get it: the Vite + React example built from the packed tarballs,
// rendered in Chromium (add, reload, the line is still there), and rendered on a server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, cpSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { env, staticServer, launch, waitFor } from "./harness.mjs";

// The binding supports React 18 and 19 (its peer range): each test runs with both. tools/ and
// tools/react18/ install them, so their packages are in the npm cache.
const REACT_VERSIONS = ["19.3.1", "18.3.1"];

/** A fresh copy of examples/react with the packed packages and React `react` installed: from the
 * npm cache when it holds them (`--prefer-offline`), else from the registry; npm's cache keeps
 * no package metadata after `npm ci`, so a machine with a fresh cache cannot install these offline. */
function exampleProject(react) {
  const dir = mkdtempSync(join(tmpdir(), "cartsync-react-"));
  cpSync(join(env.examples, "react"), dir, { recursive: true, filter: (f) => !f.includes("node_modules") && !f.endsWith("dist") });
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  manifest.dependencies["@cartsync/cart"] = `file:${env.tarball}`;
  manifest.dependencies["@cartsync/react"] = `file:${env.reactTarball}`;
  manifest.dependencies.react = react;
  manifest.dependencies["react-dom"] = react;
  delete manifest.devDependencies;
  writeFileSync(join(dir, "package.json"), JSON.stringify(manifest, null, 2));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, stdio: "pipe" });
  return dir;
}

for (const react of REACT_VERSIONS) {
  test(`the React example, built from the tarballs with React ${react}, renders the cart, adds, and shows the line after a reload`, async () => {
    const dir = exampleProject(react);
    assert.equal(JSON.parse(readFileSync(join(dir, "node_modules/react/package.json"), "utf8")).version, react);
    let site, browser;
    try {
      execFileSync("node", [join(env.tools, "node_modules/vite/bin/vite.js"), "build", "--logLevel", "warn"], { cwd: dir, stdio: "pipe" });
      site = await staticServer(join(dir, "dist"));
      browser = await launch();
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${site.url}/`);
      await page.waitForSelector("[data-testid=count]");
      assert.equal(await page.textContent("[data-testid=count]"), "0");
      await page.click("[data-testid=add-TEE-RED-M]");
      await page.click("[data-testid=add-TEE-RED-M]");
      await page.click("[data-testid=add-CAP-BLK]");
      await waitFor("the re-render", async () => (await page.textContent("[data-testid=count]")) === "3");
      assert.equal(await page.textContent(`li[data-sku="TEE-RED-M"] [data-testid=qty]`), "2");
      assert.equal(await page.textContent("[data-testid=total]"), "$54.97");
      await page.reload();
      await waitFor("the stored cart after the reload", async () => (await page.textContent("[data-testid=count]").catch(() => "")) === "3");
      assert.equal(await page.textContent(`li[data-sku="CAP-BLK"] [data-testid=qty]`), "1");
      // Another tab's change re-renders this one.
      const other = await context.newPage();
      await other.goto(`${site.url}/`);
      await other.waitForSelector("[data-testid=count]");
      await other.click("[data-testid=add-CAP-BLK]");
      await waitFor("the first tab to show the other's add", async () => (await page.textContent("[data-testid=count]")) === "4");
      assert.deepEqual(errors, []);
    } finally {
      await browser?.close();
      await site?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`the React binding renders on a server with React ${react} without touching window, as an empty cart`, () => {
    const dir = exampleProject(react);
    try {
      const script = `
        Object.defineProperty(globalThis, "window", { get() { throw new Error("window was touched"); } });
        const { createElement } = await import("react");
        const { renderToString } = await import("react-dom/server");
        const { CartProvider, useCart } = await import("@cartsync/react");
        function Badge() { const { itemCount, lines, cart } = useCart(); return createElement("b", null, itemCount + ":" + lines.length + ":" + typeof cart.add); }
        console.log(renderToString(createElement(CartProvider, { options: { storageKey: "ssr" } }, createElement(Badge))));
      `;
      const out = execFileSync("node", ["--input-type=module", "-e", script], { cwd: dir, encoding: "utf8" });
      assert.equal(out.trim(), "<b>0:0:function</b>");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
