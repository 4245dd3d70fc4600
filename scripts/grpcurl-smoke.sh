#!/usr/bin/env bash
# Starts the given switchyard binary with no configuration in a fresh directory
# and checks, with grpcurl through reflection, what a new user sees: the three
# services, health and reflection listed; health SERVING; calls without a token
# refused; tenant tokens confined. Exits non-zero on the first difference.
set -euo pipefail
BIN="$(realpath "${1:-target/debug/switchyard}")"
DIR="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
cd "$DIR"
SWITCHYARD_LISTEN="$ADDR" SWITCHYARD_TOKENS="tenant:a=smoke-tenant-a-token-0123" "$BIN" serve >server.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grpcurl -plaintext "$ADDR" list >/dev/null 2>&1 && break; sleep 0.1; done

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log; exit 1; }
expect() { # expect NAME NEEDLE COMMAND...
  local name="$1" needle="$2"; shift 2
  local out; out="$("$@" 2>&1 || true)"
  grep -q -- "$needle" <<<"$out" || fail "$name: expected '$needle' in: $out"
  echo "ok: $name"
}
LIST="$(grpcurl -plaintext "$ADDR" list)"
for s in grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection \
         switchyard.v1.TenantService switchyard.v1.FlagService switchyard.v1.GatingService; do
  grep -qx "$s" <<<"$LIST" || fail "grpcurl list lacks $s: $LIST"
done
echo "ok: grpcurl list shows the three services, health and reflection"
expect "health overall" SERVING grpcurl -plaintext "$ADDR" grpc.health.v1.Health/Check
expect "health per service" SERVING grpcurl -plaintext -d '{"service":"switchyard.v1.TenantService"}' "$ADDR" grpc.health.v1.Health/Check
expect "no token" Unauthenticated grpcurl -plaintext "$ADDR" switchyard.v1.TenantService/ListTenants
expect "tenant token on another tenant" PermissionDenied \
  grpcurl -plaintext -H 'authorization: Bearer smoke-tenant-a-token-0123' -d '{"tenant_id":"b"}' "$ADDR" switchyard.v1.TenantService/GetTenant
expect "describe through reflection" "rpc ResolveTenant" grpcurl -plaintext "$ADDR" describe switchyard.v1.TenantService
kill -TERM $PID; wait $PID || fail "server exit status $? after SIGTERM"
echo "ok: clean exit on SIGTERM"
