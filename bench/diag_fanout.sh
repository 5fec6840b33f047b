#!/usr/bin/env bash
# diag fan-out: 50 loopback targets x 4 rules in one `netops diag` run, against the
# slowest of the same checks run alone. Goal: full run <= 1.5x the slowest single check.
# Loopback only (127.0.0.1-127.0.0.50).
set -euo pipefail
cd "$(dirname "$0")/.."
NETOPS=${NETOPS:-./bin/netops}
RUNS=${BENCH_RUNS:-5}
[ -x "$NETOPS" ] || { echo "build netops first (make build)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo "targets:"
  for i in $(seq 1 50); do echo "  - {name: t$i, type: host, address: 127.0.0.$i}"; done
  cat <<'YAML'
rules:
  - {name: ping, check: icmp, count: 3, interval: 200ms, timeout: 2s}
  - {name: latency, check: latency, count: 5, interval: 100ms, port: 9, timeout: 1s}
  - {name: ports, check: portscan, ports: top100, timeout: 500ms}
  - {name: ssh, check: tcp, port: 22, timeout: 1s, severity: info}
YAML
} > "$work/netops.yaml"

now_ms() { date +%s%3N; }
# median wall time (ms) of a command over $RUNS runs; exit codes 0-3 are results, not errors
median_ms() {
  local times=() t0 t1 rc
  for _ in $(seq 1 "$RUNS"); do
    t0=$(now_ms)
    set +e; "$@" >/dev/null 2>&1; rc=$?; set -e
    t1=$(now_ms)
    [ "$rc" -le 3 ] || { echo "command failed ($rc): $*" >&2; exit 1; }
    times+=($((t1 - t0)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "== diag fan-out: 50 targets x 4 rules (loopback) =="
slowest=0; slowest_rule=""
for rule in ping latency ports ssh; do
  ms=$(median_ms "$NETOPS" --config "$work/netops.yaml" diag t1 --rule "$rule" --no-history)
  printf '  single check %-8s median %6d ms\n' "$rule" "$ms"
  if [ "$ms" -gt "$slowest" ]; then slowest=$ms; slowest_rule=$rule; fi
done
full=$(median_ms "$NETOPS" --config "$work/netops.yaml" diag --all --no-history)
printf '  full run (200 checks)   median %6d ms\n' "$full"
awk -v f="$full" -v s="$slowest" -v r="$slowest_rule" 'BEGIN {
  ratio = f / s
  printf "  ratio full/slowest single (%s): %.2fx  goal <= 1.5x: %s\n", r, ratio, (ratio <= 1.5 ? "MET" : "MISSED")
}'
