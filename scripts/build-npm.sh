#!/usr/bin/env bash
# Builds the npm packages @cartsync/cart (into cart-wasm/pkg/) and @cartsync/react (cart-wasm/react/),
# each packed into a tarball in cart-wasm/, installing
# what it needs when missing: the wasm32 target, wasm-bindgen-cli (pinned to the crate's
# version) and the npm tools (wasm-opt from the npm binaryen package; Debian's is broken).
# Prints the size of each entry (raw, gzip, brotli) and fails above cart-wasm/size-budget.json.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' cart-wasm/Cargo.toml)

if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
# The module's standard library is built from source for size (below): that needs its sources.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
if [ ! -x tools/node_modules/.bin/wasm-opt ] || [ tools/package-lock.json -nt tools/node_modules/.package-lock.json ]; then
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
# React 18 beside tools' React 19: the React binding's tests install either from the npm cache.
if [ ! -f tools/react18/node_modules/react-dom/package.json ] || [ tools/react18/package-lock.json -nt tools/react18/node_modules/.package-lock.json ]; then
  (cd tools/react18 && npm ci --no-audit --no-fund --loglevel=error)
fi

pkg=cart-wasm/pkg
scripts/build-module.sh "$pkg"
for target in bundler web; do
  # Optional arguments read as optional in TypeScript (wasm-bindgen writes `T | undefined`), and
  # the declarations compile without `lib: esnext` (`Symbol.dispose` is still there at run time).
  sed -i -e '/\[Symbol.dispose\]/d' -e 's/priceAtAdd: Money | undefined/priceAtAdd?: Money/' \
    -e 's/options: CartClientOptions | undefined/options?: CartClientOptions/' \
    -e 's/options: CheckoutOptions | undefined/options?: CheckoutOptions/' \
    -e 's/options: LoginOptions | undefined/options?: LoginOptions/' "$pkg/$target/cartsync.d.ts"
done

# The no-bundler entry as one script: its glue with the snippets (CartError, the driver).
node scripts/bundle-web.mjs "$pkg/web"
snippet=$(cd "$pkg/bundler" && find snippets -name cart-error.js | head -n 1)
[ -n "$snippet" ] || { echo "the CartError snippet is missing from the wasm-bindgen output" >&2; exit 1; }
cp cart-wasm/package/package.json cart-wasm/package/README.md "$pkg/"
for entry in index.js web.js node.js; do
  sed "s|__SNIPPET__|$snippet|" "cart-wasm/package/$entry" > "$pkg/$entry"
done
{ echo 'export * from "./bundler/cartsync.js";'; cat cart-wasm/package/cart-error.d.ts; } > "$pkg/index.d.ts"
{ echo 'export * from "./web/cartsync.js";'; echo 'export { default } from "./web/cartsync.js";'; cat cart-wasm/package/cart-error.d.ts; } > "$pkg/web.d.ts"

# The glue a page downloads, minified (the typings keep the documentation).
node scripts/minify-glue.mjs "$pkg"/bundler/cartsync.js "$pkg"/bundler/cartsync_bg.js "$pkg"/bundler/snippets/*/js/*.js

(cd "$pkg" && npm pack --silent --pack-destination .. >/dev/null)
# The React binding: hand-written, packed as is.
(cd cart-wasm/react && npm pack --silent --pack-destination .. >/dev/null)
# The demo storefront loads the package from beside itself.
rm -rf www/pkg
cp -r "$pkg" www/pkg
tarball=$(ls -t cart-wasm/cartsync-cart-*.tgz | head -n 1)

echo "packages: $tarball cart-wasm/cartsync-react-0.1.0.tgz"
node scripts/size-report.mjs
