#!/usr/bin/env bash
# Builds the WebAssembly module and its wasm-bindgen glue, for bundlers and for pages without one,
# as small as we know how: OUT/bundler and OUT/web. Called by scripts/build-npm.sh (the npm
# package) and scripts/kernel-size.sh (the cart core alone); the tools are build-npm's.
#   scripts/build-module.sh OUT [cargo arguments: features]
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=$1
shift

# The standard library is rebuilt for the module with panics that trap at once: no panic message,
# location or hook is formatted or carried (a panic was already a trap, `unreachable`, with no
# message reaching the page), and Debug formatting is compiled out (nothing in the module prints
# Debug; tests build without these flags). These are unstable options of the compiler
# (RUSTC_BOOTSTRAP=1), used only for this build: 6.7 KB less gzip, 5.3 KB less brotli. Without
# reference types and multi-value, wasm-bindgen keeps the page's values in a table of its glue
# instead of externref shims around every export: the glue gains 0.3 KB gzip, the module loses
# 0.7 KB (0.4 KB less gzip and 0.6 KB less brotli for the entry; calls measured no slower).
RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none -Ctarget-feature=-reference-types,-multivalue" \
  cargo build -q -p cart-wasm --target wasm32-unknown-unknown --profile wasm-release \
  -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size "$@"
wasm=target/wasm32-unknown-unknown/wasm-release/cart_wasm.wasm

rm -rf "$pkg"
mkdir -p "$pkg"
for target in bundler web; do
  wasm-bindgen "$wasm" --target "$target" --out-dir "$pkg/$target" --out-name cartsync
  # --low-memory-unused: Rust places nothing below 1 MiB; with --converge, 1.6 KB less gzip and
  # 1.1 KB less brotli than -Oz alone (opt-level "s" instead of "z": 8.4 KB more gzip). The
  # control flow flattened and rebuilt by binaryen's relooper first: 0.4 KB less gzip, 0.2 brotli.
  # -Oz twice in the pipeline that --converge repeats: 0.4 KB less gzip, 0.3 brotli (a third: 5 bytes).
  tools/node_modules/.bin/wasm-opt --flatten --rereloop -Oz -Oz --converge --low-memory-unused --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue \
    "$pkg/$target/cartsync_bg.wasm" -o "$pkg/$target/cartsync_bg.wasm"
  # The names the module and its glue know each other by, shortened (1.7 KB less gzip for the
  # module alone: wasm-bindgen's import names end in 16 hex digits, on both sides).
  node scripts/minify-names.mjs "$pkg/$target"
done
