#!/usr/bin/env bash
# diag scan benchmarks, loopback only: netops portscan and discover against the
# anchor tools, each run as its own process and timed the same way.
#
#   bench/diag_scan.sh                 (BENCH_RUNS=5 by default: median of 5)
#   BENCH_RUNS=9 bench/diag_scan.sh
#
#   1. full TCP connect scan of 127.0.0.1 ports 1-65535
#        netops: netops diag lo --rule full-scan -o json (the real binary, startup included)
#        nmap:   nmap -sT -p- -T4 127.0.0.1 -oG -
#      wall-time ratio netops/nmap (target <= 1.0) and whether both found the
#      same open ports (ports opened or closed between two runs by other
#      programs can make a run differ; the sets compared come from one run each).
#   2. discovery sweep of 127.0.0.0/24
#        netops: netops diag lan --rule sweep -o json
#        fping:  fping -q -i 1 -r 1 -g 127.0.0.0/24
#      wall-time ratio netops/fping (target <= 1.0) and the live host counts.
#
# Installs nmap and fping with apt-get when missing (never part of `make test`).
# Results are printed and written to bench/results/diag-scan.txt (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
OUT=bench/results
mkdir -p "$OUT"

missing=()
command -v nmap >/dev/null 2>&1 || missing+=(nmap)
command -v fping >/dev/null 2>&1 || missing+=(fping)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
NETOPS=${NETOPS:-./bin/netops}
[ -x "$NETOPS" ] || { echo "build netops first (make build)" >&2; exit 1; }
cat >"$tmp/netops.yaml" <<'YAML'
targets:
  - {name: lo, type: host, address: 127.0.0.1}
  - {name: lan, type: network, address: 127.0.0.0/24}
rules:
  - {name: full-scan, check: portscan, ports: 1-65535, timeout: 1s}
  - {name: sweep, check: discover, max_hosts: 256, timeout: 1s}
YAML
DRIVER_SCAN=("$NETOPS" --config "$tmp/netops.yaml" diag lo --rule full-scan -o json --no-history)
DRIVER_DISC=("$NETOPS" --config "$tmp/netops.yaml" diag lan --rule sweep -o json --no-history)

# wall_ms CMD...: run once, print the wall time in milliseconds; the command's
# stdout goes to $tmp/last.out, its stderr to $tmp/last.err.
wall_ms() {
  local t0 t1 rc=0
  t0=$(date +%s%N)
  "$@" >"$tmp/last.out" 2>"$tmp/last.err" || rc=$?
  t1=$(date +%s%N)
  # fping exits 1 when a host is unreachable: a result, not a failure.
  if [ "$rc" -gt 1 ]; then
    echo "command failed ($rc): $*" >&2
    cat "$tmp/last.err" >&2
    return 1
  fi
  echo $(( (t1 - t0) / 1000000 ))
}

# median_ms NAME CMD...: run RUNS times, print the median wall time in ms;
# the output of the last run stays in $tmp/NAME.out and $tmp/NAME.err.
median_ms() {
  local name=$1; shift
  local times=()
  for _ in $(seq "$RUNS"); do
    times+=("$(wall_ms "$@")")
  done
  cp "$tmp/last.out" "$tmp/$name.out"
  cp "$tmp/last.err" "$tmp/$name.err"
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

{
echo "== diag scan benchmarks (loopback only, median of $RUNS runs, $(nproc) CPUs, $(uname -r)) =="
echo
echo "-- full TCP connect scan of 127.0.0.1, ports 1-65535 --"
net_ms=$(median_ms netops-scan "${DRIVER_SCAN[@]}")
nmap_ms=$(median_ms nmap-scan nmap -sT -p- -T4 127.0.0.1 -oG -)
printf '  %-48s %7s ms\n' "netops portscan 127.0.0.1 1-65535" "$net_ms"
printf '  %-48s %7s ms\n' "nmap -sT -p- -T4 127.0.0.1 -oG -" "$nmap_ms"
printf '  ratio netops/nmap %s (target <= 1.0)\n' "$(ratio "$net_ms" "$nmap_ms")"
# open ports from the JSON report: the numbers inside "ports": [ ... ]
awk '/"ports": \[/ {in_p=1; next} in_p && /\]/ {in_p=0} in_p {gsub(/[^0-9]/, ""); if ($0 != "") print}' \
  "$tmp/netops-scan.out" | sort -n >"$tmp/netops.ports"
grep -o '[0-9]*/open/' "$tmp/nmap-scan.out" | cut -d/ -f1 | sort -n >"$tmp/nmap.ports" || true
echo "  open ports, netops: $(paste -sd, "$tmp/netops.ports")"
echo "  open ports, nmap:   $(paste -sd, "$tmp/nmap.ports")"
if cmp -s "$tmp/netops.ports" "$tmp/nmap.ports"; then
  echo "  same open ports: yes"
else
  echo "  same open ports: NO (only netops: $(comm -23 "$tmp/netops.ports" "$tmp/nmap.ports" | paste -sd,); only nmap: $(comm -13 "$tmp/netops.ports" "$tmp/nmap.ports" | paste -sd,))"
fi
echo "  netops: $(grep -m1 '"message"' "$tmp/netops-scan.out" | cut -c1-200)"
echo
echo "-- discovery sweep of 127.0.0.0/24 --"
net_ms=$(median_ms netops-disc "${DRIVER_DISC[@]}")
fping_ms=$(median_ms fping-disc fping -q -i 1 -r 1 -g 127.0.0.0/24)
printf '  %-48s %7s ms\n' "netops discover 127.0.0.0/24" "$net_ms"
printf '  %-48s %7s ms\n' "fping -q -i 1 -r 1 -g 127.0.0.0/24" "$fping_ms"
printf '  ratio netops/fping %s (target <= 1.0)\n' "$(ratio "$net_ms" "$fping_ms")"
fping_alive=$( (fping -a -q -i 1 -r 1 -g 127.0.0.0/24 2>/dev/null || true) | wc -l)
echo "  live hosts: netops $(grep -m1 -o '"message": "[0-9]* of' "$tmp/netops-disc.out" | grep -o '[0-9][0-9]*'), fping $fping_alive"
echo "  netops: $(grep -m1 '"message"' "$tmp/netops-disc.out" | cut -c1-160)"
} | tee "$OUT/diag-scan.txt"
