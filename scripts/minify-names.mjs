// Shortens the names the module and its glue know each other by (called by scripts/build-npm.sh,
// after wasm-opt, before the glue is minified):
//   node scripts/minify-names.mjs DIR     (a wasm-bindgen output: cartsync_bg.wasm and its glue)
//
// wasm-bindgen names each import `__wbg_<name>_<16 hex digits>` and each export after its Rust
// item (`cartclient_setQuantity`); both sides carry every name, and the hex digits do not
// compress. Here every import and export of `cartsync_bg.wasm` is renamed to a short identifier
// (the import module, `./cartsync_bg.js`, stays: a bundler resolves it), and the glue is
// rewritten to match: an import's name wherever it stands, an export's where the glue reads it
// (`wasm.<name>`). The script checks that the glue reads no export the module lacks and that no
// old name is left, and fails otherwise.
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) throw new Error("usage: node scripts/minify-names.mjs DIR");
const wasmPath = join(dir, "cartsync_bg.wasm");
const glue = ["cartsync.js", "cartsync_bg.js"].map((f) => join(dir, f)).filter(existsSync);
const typings = join(dir, "cartsync_bg.wasm.d.ts");

// --- reading and writing the module's sections -------------------------------------------------

const bytes = readFileSync(wasmPath);
let at = 8;
const uleb = () => {
  let result = 0, shift = 0, b;
  do {
    b = bytes[at++];
    result += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return result;
};
const name = () => {
  const n = uleb();
  const s = bytes.subarray(at, at + n).toString("utf8");
  at += n;
  return s;
};
const encodeUleb = (n) => {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
};
const encodeName = (s) => {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([encodeUleb(b.length), b]);
};

// Short identifiers: valid JavaScript names (the bundler glue declares imports as functions),
// never a reserved word, never a word the glue already uses.
const used = new Set(glue.flatMap((f) => readFileSync(f, "utf8").match(/[A-Za-z_$][\w$]*/g) ?? []));
const reserved = new Set(["do", "if", "in", "as", "of"]);
const first = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$";
const rest = first + "0123456789";
let counter = 0;
const fresh = () => {
  for (;;) {
    let n = counter++, s = first[n % first.length];
    n = Math.floor(n / first.length);
    while (n > 0) {
      n -= 1;
      s += rest[n % rest.length];
      n = Math.floor(n / rest.length);
    }
    if (!reserved.has(s) && !used.has(s)) return s;
  }
};

const imports = new Map(); // old import name -> new
const exports = new Map(); // old export name -> new
const sections = [bytes.subarray(0, 8)];
// A section ending at `end`: its entries, each written by `entry` (which reads the old one at `at`).
const rewrite = (id, end, entry) => {
  const count = uleb();
  const parts = [];
  for (let i = 0; i < count; i++) parts.push(...entry());
  if (at !== end) throw new Error(`section ${id}: its entries do not fill it`);
  const payload = Buffer.concat([encodeUleb(count), ...parts]);
  sections.push(Buffer.from([id]), encodeUleb(payload.length), payload);
};
while (at < bytes.length) {
  const sectionStart = at;
  const id = bytes[at++];
  const size = uleb();
  const end = at + size;
  if (id === 2) {
    rewrite(id, end, () => {
      const module = name();
      const old = name();
      const descStart = at;
      const kind = bytes[at++];
      if (kind === 0) uleb(); // function: type index
      else if (kind === 1) { at++; const flags = uleb(); uleb(); if (flags & 1) uleb(); } // table
      else if (kind === 2) { const flags = uleb(); uleb(); if (flags & 1) uleb(); } // memory
      else if (kind === 3) at += 2; // global: value type, mutability
      else throw new Error(`import ${old}: unknown kind ${kind}`);
      if (!imports.has(old)) imports.set(old, fresh());
      return [encodeName(module), encodeName(imports.get(old)), bytes.subarray(descStart, at)];
    });
  } else if (id === 7) {
    rewrite(id, end, () => {
      const old = name();
      const descStart = at;
      at++; // kind
      uleb(); // index
      exports.set(old, fresh());
      return [encodeName(exports.get(old)), bytes.subarray(descStart, at)];
    });
  } else {
    sections.push(bytes.subarray(sectionStart, end));
  }
  at = end;
}
writeFileSync(wasmPath, Buffer.concat(sections));

// --- the glue ----------------------------------------------------------------------------------

const escape = (s) => s.replace(/[$]/g, "\\$");
for (const file of glue) {
  let text = readFileSync(file, "utf8");
  for (const [old, now] of imports) text = text.replace(new RegExp(`(?<![\\w$])${escape(old)}(?![\\w$])`, "g"), now);
  for (const [old, now] of exports) text = text.replace(new RegExp(`\\bwasm\\.${escape(old)}(?![\\w$])`, "g"), `wasm.${now}`);
  const known = new Set(exports.values());
  for (const [, read] of text.matchAll(/\bwasm\.([\w$]+)/g)) {
    if (!known.has(read)) throw new Error(`${file} reads wasm.${read}, which the module does not export`);
  }
  for (const old of [...imports.keys(), ...exports.keys()]) {
    if (old.length > 8 && text.includes(old)) throw new Error(`${file} still names ${old}`);
  }
  writeFileSync(file, text);
}
if (existsSync(typings)) {
  let text = readFileSync(typings, "utf8");
  for (const [old, now] of exports) text = text.replace(new RegExp(`export const ${escape(old)}:`), `export const ${now}:`);
  writeFileSync(typings, text);
}
