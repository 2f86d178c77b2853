// Makes the no-bundler entry one script (called by scripts/build-npm.sh, after
// scripts/minify-names.mjs):
//   node scripts/bundle-web.mjs DIR      (the `web` output of wasm-bindgen)
// wasm-bindgen's glue imports the module's JavaScript snippets (CartError and the snapshot, the
// driver) as files of their own, so a page without a bundler fetched three scripts, each
// compressed apart. Here the glue and its snippets become DIR/cartsync.js, one minified ES module
// that exports what the glue did and CartError (0.7 KB less gzip than the three); the snippets'
// directory goes. The entry files (web.js, node.js) import CartError from it, so a page has one
// CartError class. Bundled and minified by rolldown (pinned in tools/package.json).
import { readFileSync, writeFileSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const tools = join(resolve(dirname(fileURLToPath(import.meta.url)), ".."), "tools/");
const { build } = await import(createRequire(tools).resolve("rolldown"));

const dir = resolve(process.argv[2] ?? "");
const glue = join(dir, "cartsync.js");
const [hash] = readdirSync(join(dir, "snippets"));
const entry = join(dir, "entry.mjs");
writeFileSync(
  entry,
  `export * from "./cartsync.js";\nexport { default } from "./cartsync.js";\nexport { CartError } from "./snippets/${hash}/js/cart-error.js";\n`,
);
const pragma = readFileSync(glue, "utf8").match(/^\/\* @ts-self-types="[^"]*" \*\/\n/)?.[0] ?? "";
const out = join(dir, "bundle.js");
// Class names are kept: a developer who logs a client or an error sees `CartClient`, `CartError`.
const keepNames = { function: false, class: true };
await build({
  input: entry,
  write: true,
  logLevel: "warn",
  output: { file: out, format: "esm", minify: { compress: { keepNames }, mangle: { keepNames } } },
});
const code = readFileSync(out, "utf8");
// The module is fetched beside the script, as the glue had it.
if (!code.includes("new URL(`cartsync_bg.wasm`,import.meta.url)")) throw new Error("the bundle lost the module's URL");
writeFileSync(glue, pragma + code);
rmSync(out);
rmSync(entry);
rmSync(join(dir, "snippets"), { recursive: true });
