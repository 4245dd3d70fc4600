#!/usr/bin/env bash
# Rehearses the release gate against real servers, as a pipeline would:
# starts a baseline and a canary replica of BINARY (embedded defaults, tracks
# baseline and canary), runs a bounded smoke run (about 20 s) against the
# baseline and an interleaved canary comparison (about 15 s) kept on the
# baseline's GatingService, and leaves smoke-summary.json and
# canary-report.json in OUTDIR. The Markdown summaries are appended to
# $GITHUB_STEP_SUMMARY when it is set, printed otherwise. Fails when either
# verdict is not PASS (the exit codes are the commands' own: 1 FAIL, 2 could
# not run, 3 INCONCLUSIVE or NO_DATA).
#
# Usage: scripts/ci-traffic.sh BINARY OUTDIR
set -euo pipefail
BIN="$(realpath "$1")"
mkdir -p "$2"
OUT="$(realpath "$2")"
WORK="$(mktemp -d)"
TOKEN="ci-admin-token-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME TRACK: starts a replica; sets ADDR to its address.
start() {
  local dir="$WORK/$1" port
  mkdir -p "$dir"
  port="$(free_port)"
  (cd "$dir" && SWITCHYARD_LISTEN="127.0.0.1:$port" SWITCHYARD_ADMIN_TOKEN="$TOKEN" \
    SWITCHYARD_TRACK="$2" SWITCHYARD_LOG=warn exec "$BIN" serve >"$dir/log" 2>&1) &
  PIDS+=("$!")
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      ADDR="127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "FAIL: the $1 replica did not listen on $port:"
  cat "$dir/log"
  exit 1
}

start baseline baseline
BASELINE="$ADDR"
start canary canary
CANARY="$ADDR"
export SWITCHYARD_TOKEN="$TOKEN"

smoke=0
"$BIN" smoke --target "$BASELINE" --setup --rate 200 --duration 20s --warmup 2s \
  --out "$OUT/smoke-summary.json" || smoke=$?
canary=0
"$BIN" canary --baseline "$BASELINE" --canary "$CANARY" --gating "$BASELINE" --setup \
  --rate 200 --duration 10s --warmup 2s --before 3s \
  --out "$OUT/canary-report.json" || canary=$?

echo "smoke exit $smoke, canary exit $canary; reports in $OUT"
if [ "$smoke" -ne 0 ] || [ "$canary" -ne 0 ]; then
  echo "FAIL: a release gate did not pass"
  exit 1
fi
