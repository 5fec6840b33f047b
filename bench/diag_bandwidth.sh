#!/usr/bin/env bash
# Loopback TCP throughput: netops bandwidth (client + server of
# internal/diag/bandwidth, via BenchmarkBandwidthLoopback) against iperf3
# (iperf3 -s -1 / iperf3 -c 127.0.0.1 -t N -J), upload and download (-R).
# Single stream each; both only ever touch 127.0.0.1.
#
#   bench/diag_bandwidth.sh                # 3 s per direction
#   BENCH_SECS=5 BENCH_IPERF_PORT=5299 bench/diag_bandwidth.sh
#
# Installs iperf3 and jq with apt-get when missing. Prints Mbps and the
# netops/iperf3 ratio per direction (1.0 = as fast as iperf3).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-3}
PORT=${BENCH_IPERF_PORT:-5299}
GO=${GO:-go}
OUT=bench/results
mkdir -p "$OUT"

missing=()
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ss -Hltn "sport = :$PORT" | grep -q .; then
  echo "port $PORT is in use; set BENCH_IPERF_PORT" >&2
  exit 1
fi

# netops: the benchmark runs SECS tests of 1 s per direction and reports the
# aggregate Mbps of each direction.
echo "== netops bandwidth, loopback, ${SECS}x 1s per direction =="
"$GO" test -run '^$' -bench '^BenchmarkBandwidthLoopback$' -benchtime "${SECS}x" -count 1 \
  ./internal/diag/bandwidth/ | tee "$OUT/bandwidth-netops.txt"
netops_mbps() { awk -v d="$1" '$1 ~ "BenchmarkBandwidthLoopback/"d {for (i=2;i<=NF;i++) if ($i=="Mbps") print $(i-1)}' "$OUT/bandwidth-netops.txt"; }
net_up=$(netops_mbps upload)
net_down=$(netops_mbps download)

# iperf3: a one-off server per run; wait until it listens without connecting
# (a probe connection would be its one test).
iperf_run() { # iperf_run NAME [extra client args]
  local name=$1; shift
  iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
  local spid=$!
  for _ in $(seq 100); do
    ss -Hltn "sport = :$PORT" | grep -q . && break
    sleep 0.05
  done
  iperf3 -c 127.0.0.1 -p "$PORT" -t "$SECS" -J "$@" >"$OUT/bandwidth-iperf3-$name.json"
  wait "$spid" || true
  jq -r '.end.sum_received.bits_per_second / 1e6' "$OUT/bandwidth-iperf3-$name.json"
}
echo "== iperf3 $(iperf3 --version | head -1 | awk '{print $2}'), loopback, ${SECS}s per direction =="
ip_up=$(iperf_run upload)
ip_down=$(iperf_run download -R)

echo
printf '%-10s %14s %14s %8s\n' direction "netops Mbps" "iperf3 Mbps" ratio
for d in upload download; do
  if [ "$d" = upload ]; then n=$net_up; i=$ip_up; else n=$net_down; i=$ip_down; fi
  awk -v d="$d" -v n="$n" -v i="$i" 'BEGIN {printf "%-10s %14.0f %14.0f %7.2fx\n", d, n, i, n/i}'
done
