#!/usr/bin/env bash
# The size of the cart core alone: the module built with the `Kernel` class instead of
# `CartClient` (cargo feature `kernel`, src/kernel.rs), its web glue bundled as the package's is.
# This is what a browser cart whose bookkeeping is JavaScript would download besides that
# JavaScript. Run after scripts/build-npm.sh (which installs the tools); prints raw, gzip and
# brotli of the module and its glue. The package's own module is left as it was.
#   scripts/kernel-size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/kernel-pkg
scripts/build-module.sh "$out" --no-default-features --features kernel
node scripts/bundle-web.mjs "$out/web"
node scripts/size-report.mjs "$out"
