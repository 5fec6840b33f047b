#!/usr/bin/env bash
# netops benchmarks: measured against anchor tools in the same run, printed as ratios.
# Installs the anchors from Debian packages (never part of `make test`).
#
#   make bench            (builds bin/netops first)
#   BENCH_RUNS=200 bench/run.sh
#
# Results are printed and written to bench/results/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

NETOPS=${NETOPS:-./bin/netops}
RUNS=${BENCH_RUNS:-100}
OUT=bench/results
mkdir -p "$OUT"

install_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
install_pkgs hyperfine rsync util-linux

[ -x "$NETOPS" ] || { echo "build netops first (make build)" >&2; exit 1; }

# median (ms) of one command from a hyperfine CSV export
median_ms() { awk -F, 'NR==2 {printf "%.2f", $4*1000}' "$1"; }

echo "== startup: netops version vs anchors ($RUNS runs each, hyperfine) =="
declare -A med
for name in netops flock rsync; do
  case $name in
    netops) cmd="$NETOPS version" ;;
    flock)  cmd="flock --version" ;;
    rsync)  cmd="rsync --version" ;;
  esac
  hyperfine -N --style none --warmup 10 --runs "$RUNS" --export-csv "$OUT/startup-$name.csv" "$cmd" >/dev/null 2>&1
  med[$name]=$(median_ms "$OUT/startup-$name.csv")
  printf '  %-22s median %8s ms\n' "$cmd" "${med[$name]}"
done
for anchor in flock rsync; do
  awk -v a="${med[netops]}" -v b="${med[$anchor]}" -v n="$anchor" \
    'BEGIN {printf "  ratio netops/%-6s   %.2fx\n", n, a/b}'
done
awk -v a="${med[netops]}" 'BEGIN {printf "  goal: median < 20 ms: %s (%.2f ms)\n", (a < 20 ? "MET" : "MISSED"), a}'

size=$(stat -c %s "$NETOPS")
awk -v s="$size" 'BEGIN {printf "== binary size: %d bytes (%.1f MiB, stripped with -s -w) ==\n", s, s/1048576}'

echo "== state database: one write transaction (go test -bench, internal/store) =="
go test -run '^$' -bench 'BenchmarkUpdate' -benchtime 2s ./internal/store/ | grep -E '^Benchmark|ns/op' || true

echo
bench/diag_fanout.sh
echo
bench/diag_scan.sh
echo
bench/diag_bandwidth.sh

echo
bench/lock.sh

echo
bench/transfer.sh

echo
bench/ipc.sh

echo
bench/fleet.sh
