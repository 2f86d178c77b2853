#!/usr/bin/env bash
# Runs the demo shop: builds the npm package the storefront loads (once; it installs the wasm
# toolchain it needs), loads the demo catalog, and serves the storefront and the API at
# http://127.0.0.1:8080 with the embedded default (an in-process cart store and an SQLite file).
# Development logins are on: do not expose this server.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f www/pkg/web.js ] || scripts/build-npm.sh
export CARTSYNC_DEV_LOGIN=${CARTSYNC_DEV_LOGIN:-true}
export CARTSYNC_JWT_SECRET=${CARTSYNC_JWT_SECRET:-demo-secret-for-local-development-only}
# The demo's back office changes prices and stock with this token; its pay step signs the payment
# webhook with this secret on the server (never in the page).
export CARTSYNC_ADMIN_TOKEN=${CARTSYNC_ADMIN_TOKEN:-demo-admin-token-local-only}
export CARTSYNC_WEBHOOK_SECRET=${CARTSYNC_WEBHOOK_SECRET:-demo-webhook-secret-local-only}
cargo run -q -p sync-server -- import www/demo-products.csv
echo "the demo shop is at http://${CARTSYNC_LISTEN:-127.0.0.1:8080}/ (its back office takes the admin token ${CARTSYNC_ADMIN_TOKEN})"
exec cargo run -q -p sync-server
