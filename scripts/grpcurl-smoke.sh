#!/usr/bin/env bash
# Starts the given switchyard binary with no configuration in a fresh directory
# and checks, with grpcurl through reflection, what a new user sees: the three
# services, health and reflection listed; health SERVING; calls without a token
# refused; tenant tokens confined; then, as a user would: tenants with
# overlapping patterns resolve with the documented precedence, the mapping
# survives a restart, and a flag evaluates with its source; then the REST shims
# with curl (401, 403, the /admin/feature-flags array with every source).
# Exits non-zero on the first difference.
set -euo pipefail
BIN="$(realpath "${1:-target/debug/switchyard}")"
DIR="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
cd "$DIR"
ADMIN="smoke-admin-token-0123456789"
start() {
  SWITCHYARD_LISTEN="$ADDR" SWITCHYARD_ADMIN_TOKEN="$ADMIN" SWITCHYARD_FLAG_KILL_SWITCH=true \
    SWITCHYARD_CORS_ORIGINS="http://console.example" \
    SWITCHYARD_TOKENS="tenant:a=smoke-tenant-a-token-0123" "$BIN" serve >>server.log 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do grpcurl -plaintext "$ADDR" list >/dev/null 2>&1 && break; sleep 0.1; done
}
start
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT

fail() { echo "FAIL: $*"; echo "--- server log"; cat server.log; exit 1; }
expect() { # expect NAME NEEDLE COMMAND...
  local name="$1" needle="$2"; shift 2
  local out; out="$("$@" 2>&1 || true)"
  grep -q -- "$needle" <<<"$out" || fail "$name: expected '$needle' in: $out"
  echo "ok: $name"
}
LIST="$(grpcurl -plaintext "$ADDR" list)"
for s in grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection \
         switchyard.v1.TenantService switchyard.v1.FlagService switchyard.v1.GatingService \
         flagd.evaluation.v1.Service flagd.evaluation.v2.Service flagd.sync.v1.FlagSyncService; do
  grep -qx "$s" <<<"$LIST" || fail "grpcurl list lacks $s: $LIST"
done
echo "ok: grpcurl list shows the three services, flagd's three, health and reflection"
expect "health overall" SERVING grpcurl -plaintext "$ADDR" grpc.health.v1.Health/Check
expect "health per service" SERVING grpcurl -plaintext -d '{"service":"switchyard.v1.TenantService"}' "$ADDR" grpc.health.v1.Health/Check
expect "health List names every service" '"switchyard.v1.GatingService"' grpcurl -plaintext "$ADDR" grpc.health.v1.Health/List
expect "health Watch of an unknown service" SERVICE_UNKNOWN grpcurl -plaintext -max-time 2 -d '{"service":"no.Such"}' "$ADDR" grpc.health.v1.Health/Watch
expect "no token" Unauthenticated grpcurl -plaintext "$ADDR" switchyard.v1.TenantService/ListTenants
expect "tenant token on another tenant" PermissionDenied \
  grpcurl -plaintext -H 'authorization: Bearer smoke-tenant-a-token-0123' -d '{"tenant_id":"b"}' "$ADDR" switchyard.v1.TenantService/GetTenant
expect "describe through reflection" "rpc ResolveTenant" grpcurl -plaintext "$ADDR" describe switchyard.v1.TenantService

call() { # call METHOD JSON
  grpcurl -plaintext -H "authorization: Bearer $ADMIN" -d "$2" "$ADDR" "switchyard.v1.$1"
}
resolves_to() { # resolves_to KEY TENANT PATTERN
  local out; out="$(call TenantService/ResolveTenant "{\"key\":\"$1\"}" 2>&1 || true)"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if (r["tenant"]["id"], r["matchedPattern"]) == (sys.argv[2], sys.argv[3]) else 1)' \
    "$out" "$2" "$3" 2>/dev/null || fail "resolve $1: expected $2 via $3, got: $out"
  echo "ok: $1 -> $2 ($3)"
}
for t in 'api:["api.acme.example"]' 'acme:["*.acme.example"]' 'eu:["*.eu.acme.example"]' 'any:["acme.*"]' 'rest:["*"]'; do
  call TenantService/CreateTenant "{\"tenant\":{\"id\":\"${t%%:*}\",\"patterns\":${t#*:}}}" >/dev/null \
    || fail "create tenant ${t%%:*}"
done
check_precedence() {
  resolves_to "API.Acme.Example:443" api "api.acme.example"
  resolves_to "x.eu.acme.example" eu "*.eu.acme.example"
  resolves_to "www.acme.example" acme "*.acme.example"
  resolves_to "acme.internal" any "acme.*"
  resolves_to "elsewhere.example" rest "*"
}
check_precedence
expect "a pattern belongs to one tenant" AlreadyExists \
  call TenantService/CreateTenant '{"tenant":{"id":"thief","patterns":["*.acme.example"]}}'
expect "a wildcard in the middle is refused" InvalidArgument \
  call TenantService/CreateTenant '{"tenant":{"id":"bad","patterns":["a.*.example"]}}'
call FlagService/CreateFlag '{"flag":{"key":"new-ui","type":"FLAG_TYPE_BOOL","defaultValue":false}}' >/dev/null || fail "create flag"
call FlagService/SetTenantOverride '{"tenantId":"acme","flagKey":"new-ui","value":true}' >/dev/null || fail "set override"
expect "evaluate by host reports the tenant source" '"source": "tenant"' \
  call FlagService/EvaluateFlag '{"flagKey":"new-ui","resolveKey":"shop.acme.example"}'
flagd() { # flagd METHOD JSON [SELECTOR]
  grpcurl -plaintext -H "authorization: Bearer $ADMIN" ${3:+-H "flagd-selector: $3"} -d "$2" "$ADDR" "flagd.$1"
}
expect "flagd v2 ResolveBoolean with a selector: the tenant's override" '"reason": "TARGETING_MATCH"' \
  flagd evaluation.v2.Service/ResolveBoolean '{"flag_key":"new-ui"}' acme
expect "flagd v1 ResolveAll by host" '"tenantId": "acme"' \
  flagd evaluation.v1.Service/ResolveAll '{"context":{"host":"shop.acme.example"}}'
expect "flagd: an unknown flag" NotFound flagd evaluation.v2.Service/ResolveBoolean '{"flag_key":"nope"}'
expect "flagd: a wrong type" InvalidArgument flagd evaluation.v2.Service/ResolveString '{"flag_key":"new-ui"}'
expect "flagd: an unknown selector" InvalidArgument flagd evaluation.v2.Service/ResolveBoolean '{"flag_key":"new-ui"}' nope
expect "flagd sync FetchAllFlags: flagd JSON" 'defaultVariant' flagd sync.v1.FlagSyncService/FetchAllFlags '{}' acme
expect "flagd EventStream: provider_ready first" provider_ready \
  grpcurl -plaintext -max-time 2 -H "authorization: Bearer $ADMIN" -d '{}' "$ADDR" flagd.evaluation.v2.Service/EventStream

kill -TERM $PID; wait $PID || fail "server exit status $? after SIGTERM"
echo "ok: clean exit on SIGTERM"
start
check_precedence
expect "the override survives a restart" '"source": "tenant"' \
  call FlagService/EvaluateFlag '{"flagKey":"new-ui","tenantId":"acme"}'
echo "ok: the mapping and the flags survive a restart"

# The REST shims with curl, as the REST issue's user: 401 without a token, 403
# for another tenant, and the bare array with every source.
BASE="http://$ADDR"
rest() { # rest EXPECTED_STATUS METHOD PATH [TOKEN] [JSON]
  local want="$1" method="$2" path="$3" token="${4:-}" data="${5:-}" args=()
  [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
  [ -n "$data" ] && args+=(-H "content-type: application/json" -d "$data")
  local code; code="$(curl -s -o rest.json -w '%{http_code}' -X "$method" "${args[@]}" "$BASE$path")"
  [ "$code" = "$want" ] || fail "$method $path: HTTP $code, expected $want: $(cat rest.json)"
}
rest 401 GET /admin/feature-flags
grep -q '"code":16' rest.json || fail "401 body is not a google.rpc.Status: $(cat rest.json)"
echo "ok: curl without a token: 401 with a google.rpc.Status"
rest 403 GET '/admin/feature-flags?tenant=acme' smoke-tenant-a-token-0123
echo "ok: curl with another tenant's token: 403"
rest 200 POST /v1/flags "$ADMIN" '{"key":"kill-switch","type":"FLAG_TYPE_BOOL","defaultValue":false}'
rest 200 POST /v1/flags "$ADMIN" '{"key":"limit","type":"FLAG_TYPE_NUMBER","defaultValue":10}'
rest 200 PATCH /v1/flags/limit "$ADMIN" '{"storedValue":20}'
rest 200 POST /v1/flags "$ADMIN" '{"key":"theme","type":"FLAG_TYPE_STRING","defaultValue":"light"}'
rest 200 GET '/admin/feature-flags?tenant=acme' "$ADMIN"
python3 - rest.json <<'PY' || fail "unexpected /admin/feature-flags body: $(cat rest.json)"
import json, sys
got = json.load(open(sys.argv[1]))
want = [
    {"flag": "kill-switch", "value": True, "source": "env", "variant": "env", "targeting": False},
    {"flag": "limit", "value": 20, "source": "store", "variant": "store", "targeting": False},
    {"flag": "new-ui", "value": True, "source": "tenant", "variant": "tenant", "targeting": False},
    {"flag": "theme", "value": "light", "source": "default", "variant": "default", "targeting": False},
]
sys.exit(0 if got == want else 1)
PY
echo "ok: curl /admin/feature-flags?tenant=acme: the bare array with env, store, tenant and default sources"
rest 200 GET /openapi.json
python3 -c 'import json,sys; d=json.load(open("rest.json")); sys.exit(0 if "/admin/feature-flags" in d["paths"] else 1)' \
  || fail "/openapi.json lacks /admin/feature-flags"
echo "ok: /openapi.json describes the routes"
PRE="$(curl -s -i -X OPTIONS -H 'Origin: http://console.example' -H 'Access-Control-Request-Method: GET' \
  -H 'Access-Control-Request-Headers: authorization' "$BASE/admin/feature-flags")"
grep -qi '^access-control-allow-origin: http://console.example' <<<"$PRE" || fail "CORS preflight: $PRE"
grep -qi '^access-control-allow-headers:.*authorization' <<<"$PRE" || fail "CORS preflight headers: $PRE"
echo "ok: curl CORS preflight from an allowed origin, without a token"
GZ="$(curl -s -D - -o /dev/null -H 'accept-encoding: gzip' "$BASE/openapi.json")"
grep -qi '^content-encoding: gzip' <<<"$GZ" || fail "/openapi.json with Accept-Encoding: gzip: $GZ"
echo "ok: curl /openapi.json gzip-compressed on request"
CT="$(curl -s -o rest.json -w '%{http_code}' -X POST -H 'content-type: application/connect+proto' \
  -H "authorization: Bearer $ADMIN" "$BASE/switchyard.v1.FlagService/EvaluateFlag")"
[ "$CT" = 415 ] || fail "a Connect call: expected 415, got $CT $(cat rest.json)"
echo "ok: curl a Connect-protocol call: 415 saying what is supported"
kill -TERM $PID; wait $PID || fail "server exit status $? after the second SIGTERM"
echo "ok: clean exit"
