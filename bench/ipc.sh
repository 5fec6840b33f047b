#!/usr/bin/env bash
# IPC benchmarks, printed as ratios against anchors run in the same script.
#
# Local backend: N messages (default 100000) sent by ONE `netops ipc send --lines`
# process and received by ONE `netops ipc recv --count N` process; msgs/s each
# way, as a ratio to raw SQLite inserts of the same lines through the same driver
# and settings (bench/sqliteraw), both timed as whole processes. Goal: >= 0.5
# both ways.
#
#   bench/ipc.sh                (NETOPS=./bin/netops, IPC_BENCH_N=100000)
set -euo pipefail
cd "$(dirname "$0")/.."
NETOPS=$(realpath "${NETOPS:-./bin/netops}")
N=${IPC_BENCH_N:-100000}
[ -x "$NETOPS" ] || { echo "build netops first (make build)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now_ns() { date +%s%N; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN {printf "%.0f", n / (ns / 1e9)}'; }
ratio() { awk -v a="$1" -v b="$2" -v goal="$3" 'BEGIN {r=a/b; printf "%.2f (goal >= %s: %s)", r, goal, (r >= goal ? "MET" : "MISSED")}'; }

awk -v n="$N" 'BEGIN {for (i = 1; i <= n; i++) printf "message %d from the ipc benchmark\n", i}' > "$work/lines.txt"

# ---- local backend (SQLite) ----
echo "== ipc local: $N messages, one send --lines process, one recv process =="
go build -o "$work/sqliteraw" ./bench/sqliteraw
# The anchor is timed as netops is: the whole process, from start to exit
# (reading stdin, opening the database, the inserts, closing it). Its own
# figure for the insert loop alone is printed beside, with the ratios to it.
t0=$(now_ns)
raw_line=$("$work/sqliteraw" -db "$work/raw.db" < "$work/lines.txt")
t1=$(now_ns)
raw=$(rate "$N" $((t1 - t0)))
raw_loop=$(awk '{print $(NF-1)}' <<<"$raw_line")
printf '  anchor: raw SQLite inserts (1000 per transaction)  %8s rows/s (whole process; the insert loop alone: %s rows/s)\n' "$raw" "$raw_loop"

export NETOPS_STATE_DIR=$work/state
"$NETOPS" ipc queue create bench --max-size "$N"
t0=$(now_ns)
"$NETOPS" ipc send bench --lines --quiet < "$work/lines.txt" >/dev/null
t1=$(now_ns)
"$NETOPS" ipc recv bench --count "$N" > "$work/received.txt"
t2=$(now_ns)
got=$(wc -l < "$work/received.txt")
[ "$got" -eq "$N" ] || { echo "  received $got of $N messages" >&2; exit 1; }
cmp -s "$work/lines.txt" "$work/received.txt" || { echo "  received messages differ from those sent (order or content)" >&2; exit 1; }
send=$(rate "$N" $((t1 - t0)))
recv=$(rate "$N" $((t2 - t1)))
loopratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
printf '  netops ipc send --lines (one process)              %8s msgs/s  ratio to raw inserts %s; to the loop alone %s\n' "$send" "$(ratio "$send" "$raw" 0.5)" "$(loopratio "$send" "$raw_loop")"
printf '  netops ipc recv --count %s (one process)       %8s msgs/s  ratio to raw inserts %s; to the loop alone %s\n' "$N" "$recv" "$(ratio "$recv" "$raw" 0.5)" "$(loopratio "$recv" "$raw_loop")"

# Idle receivers do not poll: CPU time of a `recv --wait 5s` that gets nothing.
/usr/bin/env time -f '%U %S' -o "$work/cpu" "$NETOPS" ipc recv bench --wait 5s >/dev/null 2>&1 || true
tail -n 1 "$work/cpu" | awk '{printf "  idle recv --wait 5s: %.2f s CPU (user+sys) in 5 s\n", $1 + $2}'

# ---- NATS backend ----
# The same N lines through `netops server` (embedded nats-server, file store,
# fsync on every write) with `ipc send --lines` and `ipc recv`, against
# bench/natspub on the same server in the same run: a raw nats.go JetStream
# async publish loop (PublishAsync, all acknowledgements awaited) into a
# work-queue stream, and a raw pull-consume loop (Fetch 1000, each message
# acknowledged and the acknowledgement confirmed, as netops does). Goal:
# netops >= 0.5 x the raw publish loop, both ways.
echo "== ipc nats: $N messages through netops server, one send --lines process, one recv process =="
port=
for p in $(seq 14222 14322); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "  no free port in 14222-14322" >&2; exit 1; }
"$NETOPS" server --listen "127.0.0.1:$port" --store "$work/nats" 2>"$work/server.log" &
srv=$!
trap 'kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url=nats://127.0.0.1:$port
go build -o "$work/natspub" ./bench/natspub
# The anchor publish runs before and after netops (the disk's fsync rate
# drifts); the faster of the two runs is the anchor, so the ratio is not
# flattered by a slow moment of the anchor.
col() { awk '{print $(NF-1)}' <<<"$1"; }
pub1=$(col "$("$work/natspub" -url "$url" -n "$N" publish)")

export NETOPS_BACKEND_KIND=nats NETOPS_BACKEND_URL=$url
"$NETOPS" ipc queue create benchnats --max-size "$N"
t0=$(now_ns)
"$NETOPS" ipc send benchnats --lines --quiet < "$work/lines.txt" >/dev/null
t1=$(now_ns)
"$NETOPS" ipc recv benchnats --count "$N" > "$work/received-nats.txt"
t2=$(now_ns)
got=$(wc -l < "$work/received-nats.txt")
[ "$got" -eq "$N" ] || { echo "  received $got of $N messages" >&2; exit 1; }
cmp -s "$work/lines.txt" "$work/received-nats.txt" || { echo "  received messages differ from those sent (order or content)" >&2; exit 1; }
send=$(rate "$N" $((t1 - t0)))
recv=$(rate "$N" $((t2 - t1)))

pub2=$(col "$("$work/natspub" -url "$url" -n "$N" publish)")
con=$(col "$("$work/natspub" -url "$url" -n "$N" consume)")
pub=$(( pub1 > pub2 ? pub1 : pub2 ))
printf '  anchor: raw JetStream async publish loop            %8s msgs/s  (runs: %s before, %s after netops)\n' "$pub" "$pub1" "$pub2"
printf '  anchor: raw JetStream fetch + confirmed acks         %8s msgs/s\n' "$con"
printf '  netops ipc send --lines (one process)              %8s msgs/s  ratio to raw publish %s\n' "$send" "$(ratio "$send" "$pub" 0.5)"
printf '  netops ipc recv --count %s (one process)       %8s msgs/s  ratio to raw publish %s\n' "$N" "$recv" "$(ratio "$recv" "$pub" 0.5)"
printf '  (recv against the raw fetch + ack loop: %s)\n' "$(ratio "$recv" "$con" 0.5)"
# An idle receiver waits on a subscription and polls every 250ms for messages
# back from a visibility timeout: CPU time of a `recv --wait 5s` that gets nothing.
/usr/bin/env time -f '%U %S' -o "$work/cpu-nats" "$NETOPS" ipc recv benchnats --wait 5s >/dev/null 2>&1 || true
tail -n 1 "$work/cpu-nats" | awk '{printf "  idle recv --wait 5s: %.2f s CPU (user+sys) in 5 s\n", $1 + $2}'
unset NETOPS_BACKEND_KIND NETOPS_BACKEND_URL
