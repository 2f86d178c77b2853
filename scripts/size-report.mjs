// Size of each entry of the npm packages, raw, gzip (level 9) and brotli (quality 11), against the
// budget in cart-wasm/size-budget.json; exits 1 when an entry is above its budget.
//   node scripts/size-report.mjs            (after scripts/build-npm.sh)
//   node scripts/size-report.mjs DIR        (DIR/web of scripts/build-module.sh, no budget:
//                                            scripts/kernel-size.sh)
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "cart-wasm/pkg");
// The JavaScript snippets of the module (js/*.js: CartError, the snapshot, the driver).
const snippets = (target) => {
  const base = join(pkg, target, "snippets");
  const [dir] = readdirSync(base);
  return readdirSync(join(base, dir, "js")).map((f) => join(base, dir, "js", f));
};
// What a page downloads for each entry (the module, its glue, the entry file and the snippets; the
// web entry's glue carries its snippets: scripts/bundle-web.mjs). With DIR, DIR/web's module and
// glue alone, against no budget.
const only = process.argv[2] && join(resolve(process.argv[2]), "web");
const entries = only
  ? { web: [join(only, "cartsync_bg.wasm"), join(only, "cartsync.js")] }
  : {
      web: [join(pkg, "web/cartsync_bg.wasm"), join(pkg, "web/cartsync.js"), join(pkg, "web.js")],
      bundler: [join(pkg, "bundler/cartsync_bg.wasm"), join(pkg, "bundler/cartsync_bg.js"), join(pkg, "bundler/cartsync.js"), join(pkg, "index.js"), ...snippets("bundler")],
      react: [join(root, "cart-wasm/react/index.js")],
    };
const budget = JSON.parse(readFileSync(join(root, "cart-wasm/size-budget.json"), "utf8"));
const sizes = (files) =>
  files.reduce(
    (t, f) => {
      const b = readFileSync(f);
      t.raw += b.length;
      t.gzip += gzipSync(b, { level: 9 }).length;
      t.brotli += brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
      return t;
    },
    { raw: 0, gzip: 0, brotli: 0 },
  );
let over = false;
console.log("entry      raw bytes   gzip   brotli   gzip budget");
for (const [name, files] of Object.entries(entries)) {
  const s = sizes(files);
  const limit = only ? undefined : budget[name]?.gzip;
  const bad = limit !== undefined && s.gzip > limit;
  over ||= bad;
  console.log(`${name.padEnd(8)} ${String(s.raw).padStart(11)} ${String(s.gzip).padStart(6)} ${String(s.brotli).padStart(8)}   ${limit ?? "-"}${bad ? "  OVER BUDGET" : ""}`);
}
const wasm = sizes([entries.web[0]]);
console.log(`(web .wasm alone: ${wasm.raw} raw, ${wasm.gzip} gzip, ${wasm.brotli} brotli)`);
if (over) {
  console.error("an entry is above its size budget (cart-wasm/size-budget.json)");
  process.exit(1);
}
