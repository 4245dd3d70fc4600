#!/usr/bin/env bash
# What one unary call costs the server, counted rather than timed: runs the
# release server under valgrind's callgrind while `cargo bench --bench
# grpc_unary` (GRPC_UNARY_ONLY) drives one kind of call, twice (rounds of 2 s
# and 5 s of valgrind's slow time), and prints per call the difference of the
# two runs: instructions executed and heap allocations made. Start-up and the
# seeding of 1 000 tenants are the same in both runs and cancel out; what the
# server's timers do in the 3 s between them is measured by two runs without
# calls (`idle`) and taken out.
# Instruction counts do not depend on what else the machine is doing, so two
# builds can be compared where calls/s are too noisy to.
#
#   scripts/unary-cost.sh [SERVER_BINARY ...]   (default: target/release/switchyard)
#
# Needs valgrind (Debian package valgrind). Takes about 6 minutes per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 2; }
cargo bench --quiet --bench grpc_unary --no-run 2>/dev/null
[ $# -gt 0 ] || set -- target/release/switchyard
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/server.sh" <<'EOF'
#!/usr/bin/env bash
exec valgrind --tool=callgrind --callgrind-out-file="$UNARY_COST_OUT" "$UNARY_COST_BIN" "$@" 2>/dev/null
EOF
chmod +x "$work/server.sh"

# Total instructions and calls of malloc in a callgrind file.
totals() {
  python3 - "$1" <<'EOF'
import re, sys
names, ir, mallocs, cfn = {}, 0, 0, None
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(("summary:", "totals:")):
        ir = int(line.split()[1])
    # Names are given once, by number, in fn= or cfn= lines.
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1) == "cfn":
            cfn = names.get(m.group(2), "")
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and cfn == "malloc":
        mallocs += int(m.group(1))
print(ir, mallocs)
EOF
}

for bin in "$@"; do
  echo "$bin"
  declare -A idle_ir=() idle_allocs=()
  for call in idle health resolve evaluate targeted; do
    declare -A ir=() allocs=() calls=()
    for secs in 2 5; do
      out="$work/$call-$secs.out"
      n=$(GRPC_UNARY_ONLY=$call UNARY_COST_BIN="$(realpath "$bin")" UNARY_COST_OUT="$out" \
          SWITCHYARD_BENCH_BIN="$work/server.sh" \
          cargo bench --quiet --bench grpc_unary -- "$secs" 2>/dev/null | sed -n 's/.*: \([0-9]*\) calls.*/\1/p')
      read -r i a < <(totals "$out")
      ir[$secs]=$i; allocs[$secs]=$a; calls[$secs]=$n
    done
    if [ "$call" = idle ]; then
      idle_ir=([2]=${ir[2]} [5]=${ir[5]}); idle_allocs=([2]=${allocs[2]} [5]=${allocs[5]})
      continue
    fi
    ir[5]=$(( ir[5] - (idle_ir[5] - idle_ir[2]) )); allocs[5]=$(( allocs[5] - (idle_allocs[5] - idle_allocs[2]) ))
    dn=$(( calls[5] - calls[2] ))
    printf '  %-9s %8d instructions/call  %5.1f allocations/call  (%d and %d calls)\n' "$call" \
      $(( (ir[5] - ir[2]) / dn )) "$(awk "BEGIN { print (${allocs[5]} - ${allocs[2]}) / $dn }")" \
      "${calls[2]}" "${calls[5]}"
  done
done
