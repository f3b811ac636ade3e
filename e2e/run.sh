#!/usr/bin/env bash
# Browser end-to-end tests: Debian's Chromium driven by playwright-core.
#   TETHER_BIN=target/debug/tether e2e/run.sh [test files…]
# Installs what is missing (chromium via apt-get, npm packages), builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TETHER_BIN=${TETHER_BIN:-target/debug/tether}
case "$TETHER_BIN" in /*) ;; *) TETHER_BIN="$ROOT/$TETHER_BIN" ;; esac
if [ ! -x "$TETHER_BIN" ]; then
  echo "e2e: tether binary not found at $TETHER_BIN — build it first (cargo build -p tether) or set TETHER_BIN" >&2
  exit 1
fi
export TETHER_BIN

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM_BIN" ]; then
  echo "e2e: installing chromium (apt-get)…"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "e2e: installing nodejs + npm (apt-get)…"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi

cd e2e
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/typescript/package.json ]; then
  # playwright-core (never downloads a browser: Debian's chromium is used) and
  # typescript (vocabulary.test.mjs reads tether.d.ts with its type checker)
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p artifacts

if [ "$#" -gt 0 ]; then files=("$@"); else files=(tests/*.test.mjs); fi
# one file at a time: each starts its own server and a few Chromium processes
exec node --test --test-concurrency=1 "${files[@]}"
