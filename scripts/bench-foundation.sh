#!/usr/bin/env bash
# Foundation figures: start-up to SERVING and idle memory on the embedded
# default, release binary size, and (with --build-time) the clean release build
# time of the crate and all its dependencies in an empty target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--build-time" ]; then
  T="$(mktemp -d)"
  start=$(date +%s)
  CARGO_TARGET_DIR="$T" cargo build --release --quiet
  echo "clean release build (all dependencies, $(nproc) cores): $(( $(date +%s) - start )) s"
  rm -rf "$T"
fi
cargo build --release --quiet
ls -l "${CARGO_TARGET_DIR:-target}/release/switchyard" | awk '{printf "release binary: %.1f MiB\n", $5/1048576}'
cargo bench --quiet --bench startup -- 20
