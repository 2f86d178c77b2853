#!/usr/bin/env bash
# Runs every test of cartsync. Installs what the tests need when it is missing: redis-server,
# PostgreSQL, Chromium and ChromeDriver (Debian packages), the wasm32 target, wasm-bindgen-cli
# and the npm tools (through scripts/build-npm.sh).
# Usage: scripts/test.sh            (from anywhere inside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1
  fi
}

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! have_pg \
   || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v openssl >/dev/null; then
  step "installing redis-server, postgresql, chromium and chromium-driver (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql chromium chromium-driver openssl >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

step "formatting"
cargo fmt --all -- --check

step "shared stays pure: no I/O crates in its dependency tree"
if cargo tree -p cartsync-shared -e normal --prefix none | grep -E '^(tokio|sqlx|redis|wasm-bindgen|web-sys|js-sys|mio|hyper) '; then
  echo "shared must not depend on the crates above" >&2
  exit 1
fi

step "shared builds for wasm32-unknown-unknown"
cargo build -q -p cartsync-shared --target wasm32-unknown-unknown

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings
cargo clippy -q -p cart-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings
cargo clippy -q -p cart-wasm --target wasm32-unknown-unknown --all-targets --no-default-features --features kernel -- -D warnings

step "the npm package (wasm-bindgen, wasm-opt)"
scripts/build-npm.sh

step "browser tests of the storage layer (wasm-bindgen-test in headless Chromium)"
wasm_log=$(mktemp)
# Chromium, started by chromedriver, leaves its singleton and scoped directories (about 25 MB)
# in TMPDIR: it gets one of its own, removed after the step.
wasm_tmp=$(mktemp -d)
TMPDIR="$wasm_tmp" cargo test -p cart-wasm --target wasm32-unknown-unknown 2>&1 | tee "$wasm_log"
# The Kernel class (the cart core alone, cargo feature `kernel`: src/kernel.rs).
TMPDIR="$wasm_tmp" cargo test -p cart-wasm --target wasm32-unknown-unknown --no-default-features --features kernel 2>&1 | tee -a "$wasm_log"
rm -rf "$wasm_tmp"

step "tests (real redis-server and PostgreSQL, started by the harness)"
log=$(mktemp)
trap 'rm -f "$log" "$wasm_log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$wasm_log" "$log"
exit "$status"
