#!/usr/bin/env bash
# Lock benchmarks: netops lock (local backend) vs flock(1), same machine, same run.
#   1. uncontended: `netops lock run L -- true` vs `flock FILE true` (hyperfine)
#      goal: ratio <= 5x (a Go process start is included)
#   2. contended: 8 processes x 50 increments of a shared counter file under the
#      lock, netops vs flock(1); goal: ratio <= 2.0. The counter must be exact.
#   3. in-process acquire+release per second (go test -bench), local and NATS.
set -euo pipefail
cd "$(dirname "$0")/.."
NETOPS=$(realpath "${NETOPS:-./bin/netops}")
RUNS=${BENCH_RUNS:-100}
[ -x "$NETOPS" ] || { echo "build netops first (make build)" >&2; exit 1; }
command -v hyperfine >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NETOPS_STATE_DIR=$work/state

median_ms() { awk -F, 'NR==2 {printf "%.2f", $4*1000}' "$1"; }

echo "== lock: uncontended, $RUNS runs each (hyperfine) =="
hyperfine -N --style none --warmup 5 --runs "$RUNS" --export-csv "$work/n.csv" "$NETOPS lock run bench-l -- true" >/dev/null 2>&1
hyperfine -N --style none --warmup 5 --runs "$RUNS" --export-csv "$work/f.csv" "flock $work/flock-l true" >/dev/null 2>&1
n=$(median_ms "$work/n.csv"); f=$(median_ms "$work/f.csv")
printf '  netops lock run L -- true   median %7s ms\n' "$n"
printf '  flock FILE true             median %7s ms\n' "$f"
awk -v a="$n" -v b="$f" 'BEGIN {r=a/b; printf "  ratio netops/flock %.2fx (goal <= 5x: %s)\n", r, (r <= 5 ? "MET" : "MISSED")}'

echo "== lock: contended, 8 processes x 50 increments =="
# The command under the lock increments a counter file and notes when it
# started and ended (bash's $EPOCHREALTIME, no extra process), so the run also
# shows where the time goes: the hand-off gap (one holder's command ended ->
# the next one's started) and the CPU time (user+sys of every process) per
# increment.
incr='echo S $EPOCHREALTIME >> "$1"; n=$(cat "$0"); echo $((n+1)) > "$0"; echo E $EPOCHREALTIME >> "$1"'
contended() { # $1 = netops|flock; prints: wall_ms gap_median gap_p90 cpu_ms_per_increment
  echo 0 > "$work/counter"
  : > "$work/times"
  local t0 t1
  t0=$(date +%s%N)
  for _ in $(seq 8); do
    (
      for _ in $(seq 50); do
        if [ "$1" = netops ]; then
          "$NETOPS" lock run bench-c -- bash -c "$incr" "$work/counter" "$work/times"
        else
          flock "$work/flock-c" bash -c "$incr" "$work/counter" "$work/times"
        fi
      done
    ) &
  done
  wait
  t1=$(date +%s%N)
  local c; c=$(cat "$work/counter")
  [ "$c" = 400 ] || { echo "  $1: counter $c, want 400: LOST UPDATES" >&2; exit 1; }
  local gaps cpu
  gaps=$(awk '$1=="E"{e=$2} $1=="S" && e {printf "%.3f\n", ($2-e)*1000}' "$work/times" | sort -n |
    awk '{a[NR]=$1} END {printf "%.2f %.2f", a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}')
  # `times` (second line): CPU time of the children this shell waited for.
  times > "$work/cpu"
  cpu=$(tail -n 1 "$work/cpu" | awk '{split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", (u[1]*60 + u[2] + s[1]*60 + s[2]) * 1000 / 400}')
  echo "$(( (t1 - t0) / 1000000 )) $gaps $cpu"
}
read -r cn gn50 gn90 pn <<<"$(contended netops)"
read -r cf gf50 gf90 pf <<<"$(contended flock)"
printf '  netops lock run   %6d ms (counter exact)  hand-off gap median %s ms, p90 %s ms; CPU %s ms per increment\n' "$cn" "$gn50" "$gn90" "$pn"
printf '  flock(1)          %6d ms (counter exact)  hand-off gap median %s ms, p90 %s ms; CPU %s ms per increment\n' "$cf" "$gf50" "$gf90" "$pf"
awk -v a="$cn" -v b="$cf" 'BEGIN {r=a/b; printf "  ratio netops/flock %.2fx (goal <= 2.0: %s)\n", r, (r <= 2 ? "MET" : "MISSED")}'

echo "== lock: in-process acquire+release (go test -bench) =="
go test -run '^$' -bench 'BenchmarkAcquireRelease' -benchtime 2s ./internal/lock/... ./internal/natsbackend/ 2>/dev/null | grep -E '^(Benchmark|pkg:)' || true
