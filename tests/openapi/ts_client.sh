#!/usr/bin/env bash
# Generates TypeScript types from a running Switchyard's /openapi.json with
# openapi-typescript (gen/schema.d.ts), type-checks client.ts with
# `tsc --strict --noEmit`, compiles it to dist/ and runs it with node.
#
#   (cd tests/openapi && npm ci)
#   tests/openapi/ts_client.sh [ADDR [ADMIN_TOKEN]]
#
# ADDR (host:port) and the token default to $SWITCHYARD_ADDR and
# $SWITCHYARD_ADMIN. With SWITCHYARD_OPENAPI_DOC=FILE the types come from FILE
# instead of the server's document (to try a changed document against
# today's server). Exit status: that of the first step that fails.
set -euo pipefail
cd "$(dirname "$0")"
ADDR="${1:-${SWITCHYARD_ADDR:-}}"
TOKEN="${2:-${SWITCHYARD_ADMIN:-}}"
if [ -z "$ADDR" ] || [ -z "$TOKEN" ]; then
  echo "usage: $0 [ADDR [ADMIN_TOKEN]] (or SWITCHYARD_ADDR / SWITCHYARD_ADMIN)" >&2
  exit 2
fi
ADDR="${ADDR#http://}"
ADDR="${ADDR%/}"
BIN=node_modules/.bin
if [ ! -x "$BIN/openapi-typescript" ] || [ ! -x "$BIN/tsc" ]; then
  echo "FAIL no node_modules: run 'npm ci' in $(pwd) first" >&2
  exit 1
fi
SOURCE="http://$ADDR/openapi.json"
if [ -n "${SWITCHYARD_OPENAPI_DOC:-}" ]; then
  SOURCE="$(realpath "$SWITCHYARD_OPENAPI_DOC")"
fi
rm -rf gen dist
"$BIN/openapi-typescript" "$SOURCE" -o gen/schema.d.ts
echo "ok   generate: gen/schema.d.ts from $SOURCE ($(wc -l < gen/schema.d.ts) lines)"
"$BIN/tsc" -p tsconfig.json --strict --noEmit
echo "ok   tsc --strict --noEmit: clean"
"$BIN/tsc" -p tsconfig.json --strict
echo "ok   tsc: dist/client.js"
SWITCHYARD_ADDR="$ADDR" SWITCHYARD_ADMIN="$TOKEN" node dist/client.js
