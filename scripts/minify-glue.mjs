// Minifies the JavaScript a page downloads with the module (wasm-bindgen's glue and the
// CartError snippet), in place: its doc comments and long local names are half its gzip size,
// and the typings (`*.d.ts`, left as they are) carry the documentation.
//   node scripts/minify-glue.mjs FILE...        (called by scripts/build-npm.sh)
// Names a module exports are kept; names inside a module are shortened (it is an ES module, so
// nothing outside reads them). The `@ts-self-types` pragma that points TypeScript at the typings
// is put back at the top.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// rolldown (Vite's bundler, pinned in tools/package.json) carries oxc's minifier.
const tools = join(resolve(dirname(fileURLToPath(import.meta.url)), ".."), "tools/");
const { minifySync } = await import(createRequire(tools).resolve("rolldown/utils"));

for (const file of process.argv.slice(2)) {
  const source = readFileSync(file, "utf8");
  const pragma = source.match(/^\/\* @ts-self-types="[^"]*" \*\/\n/)?.[0] ?? "";
  const out = minifySync(file, source, { module: true, compress: true, mangle: { toplevel: true } });
  if (out.errors?.length) {
    console.error(`${file}: ${out.errors.map((e) => e.message).join("; ")}`);
    process.exit(1);
  }
  writeFileSync(file, pragma + out.code + "\n");
}
