#!/usr/bin/env bash
# Transfer benchmarks: netops transfer against OpenSSH scp (and sftp, rsync,
# rclone printed beside) over a real OpenSSH sshd that this script starts on a
# free 127.0.0.1 port (temp host key, temp client key, known_hosts checked).
# Same machine, same sshd, same run; every result is verified (SHA-256 or a
# tree comparison) before it is reported.
#
#   1. 1 GiB upload and 1 GiB download: netops vs `scp -c aes128-gcm@openssh.com`
#      (netops' SSH library picks aes128-gcm too); goal netops/scp <= 1.0 each way
#   2. 2000 files x 8 KiB, initial sync vs `rsync -a` (goal <= 1.0), then a
#      second, no-change sync (goal <= 1.0)
#   3. verification overhead: 1 GiB upload with SHA-256 verification on vs off
#      (goal <= 15%)
#   4. interrupted at 50% (SIGTERM: Ctrl-C, timeout(1), systemd stop; and
#      SIGKILL: a crash, OOM kill), once the temporary file holds half of the
#      data, then resumed: bytes re-sent by the second run <= 55% of the file,
#      read from netops' JSON receipt (bytes_sent, resumed_from), upload and
#      download
#   5. not a goal of the issue, printed beside: the same big-file comparison
#      over a link that sets the pace, as a real network does. A second sshd
#      runs in a network namespace this script makes, reached over a veth pair
#      (198.18.0.0/30, the benchmarking range) limited to BENCH_LINK_RATE
#      (default 1gbit) each way by tc tbf; netops vs scp, verification on and
#      off. Needs root and tc; skipped otherwise. Removed on exit.
#
#   bench/transfer.sh
#   BENCH_TRANSFER_MIB=256 BENCH_TRANSFER_RUNS=2 bench/transfer.sh   # quicker
#   BENCH_TMPDIR=/var/tmp bench/transfer.sh                         # where data goes
#   BENCH_TRANSFER_ANCHORS_ONLY=1 bench/transfer.sh                 # without netops
#   BENCH_TRANSFER_PARTS="verify resume" bench/transfer.sh          # some parts only
#   BENCH_TRANSFER_KILL_SIGNALS=KILL bench/transfer.sh              # crash only
#   BENCH_LINK_RATE=2500mbit BENCH_LINK_MIB=1024 BENCH_TRANSFER_PARTS=link bench/transfer.sh
#   BENCH_TRANSFER_SYNC_FLAGS="--verify none" BENCH_TRANSFER_DIRS=2 ... # explore (2 = 200 files)
#
# Installs the anchors (hyperfine, openssh-server/-client, rsync, rclone, jq)
# with apt-get when missing. Results: bench/results/transfer-*.csv and
# bench/results/transfer-summary.txt (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

NETOPS=$(realpath -m "${NETOPS:-./bin/netops}")
RUNS=${BENCH_TRANSFER_RUNS:-3}             # hyperfine runs for the big file
SMALL_RUNS=${BENCH_TRANSFER_SMALL_RUNS:-5} # hyperfine runs for the small files
MIB=${BENCH_TRANSFER_MIB:-1024}            # size of the big file
NDIRS=${BENCH_TRANSFER_DIRS:-20} PERDIR=100 FILEKIB=8 # 2000 files x 8 KiB (100 per directory)
ANCHORS_ONLY=${BENCH_TRANSFER_ANCHORS_ONLY:-0}
PARTS=${BENCH_TRANSFER_PARTS:-big small verify resume link}
LINK_RATE=${BENCH_LINK_RATE:-1gbit} # the rate-limited link of part 5
LINK_MIB=${BENCH_LINK_MIB:-512}     # and the size of its file
SIGNALS=${BENCH_TRANSFER_KILL_SIGNALS:-TERM KILL} # how the resume test interrupts netops
OUT=bench/results
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

# --- anchors -----------------------------------------------------------------
missing=()
for t in hyperfine:hyperfine sshd:openssh-server ssh:openssh-client scp:openssh-client \
  rsync:rsync rclone:rclone jq:jq ss:iproute2 sha256sum:coreutils; do
  command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
SSHD=$(command -v sshd || echo /usr/sbin/sshd)

have_netops=1
if [ "$ANCHORS_ONLY" = 1 ]; then
  have_netops=0
elif ! [ -x "$NETOPS" ] || ! "$NETOPS" transfer copy --help >/dev/null 2>&1; then
  echo "netops transfer is not available ($NETOPS transfer copy --help failed): measuring the anchors only" >&2
  have_netops=0
fi

# --- scratch space -------------------------------------------------------------
tmproot=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
need_kib=$(( (MIB * 4 + 256) * 1024 )) # source, one destination, temp files, small trees
avail_kib=$(df -Pk "$tmproot" | awk 'NR==2 {print $4}')
if [ "$avail_kib" -lt "$need_kib" ]; then
  echo "not enough space in $tmproot: $((avail_kib / 1024)) MiB free, need $((need_kib / 1024)) MiB (set BENCH_TMPDIR or BENCH_TRANSFER_MIB)" >&2
  exit 1
fi
work=$(mktemp -d "$tmproot/netops-bench-transfer.XXXXXX")
case $work in *[[:space:]]*)
  echo "the scratch path must not contain spaces: $work" >&2
  rm -rf "$work"
  exit 1
  ;;
esac
sshd_pid='' bg_pid='' link_sshd_pid='' netns='' host_if=''
cleanup() {
  [ -n "$bg_pid" ] && kill -KILL "$bg_pid" 2>/dev/null
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
  if [ -n "$netns" ]; then
    [ -n "$link_sshd_pid" ] && kill "$link_sshd_pid" 2>/dev/null && wait "$link_sshd_pid" 2>/dev/null
    ip netns pids "$netns" 2>/dev/null | xargs -r kill 2>/dev/null # its sshd's children
    ip netns del "$netns" 2>/dev/null
  fi
  [ -n "$host_if" ] && ip link del "$host_if" 2>/dev/null # both ends, wherever the other is
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary=$OUT/transfer-summary.txt
: >"$summary"
say() { printf '%s\n' "$*" | tee -a "$summary"; }
die() { say "FAILED: $*"; exit 1; }

# --- sshd on a free loopback port ------------------------------------------------
user=$(id -un)
ssh-keygen -q -t ed25519 -N '' -C netops-bench-host -f "$work/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C netops-bench-client -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$work/authorized_keys"
chmod 600 "$work/authorized_keys"
if [ "$(id -u)" = 0 ]; then
  mkdir -p /run/sshd # privilege separation directory
  chmod 755 /run/sshd
fi

free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}
port=$(free_port) || die "no free port"
cat >"$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_ed25519
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PidFile none
Subsystem sftp internal-sftp
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
PrintMotd no
PrintLastLog no
LogLevel ERROR
EOF
"$SSHD" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 200); do
  ss -Hltn "sport = :$port" | grep -q . && break
  kill -0 "$sshd_pid" 2>/dev/null || { cat "$work/sshd.log" >&2; die "sshd exited"; }
  sleep 0.05
done
ss -Hltn "sport = :$port" | grep -q . || { cat "$work/sshd.log" >&2; die "sshd did not listen on 127.0.0.1:$port"; }

printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$work/host_ed25519.pub")" >"$work/known_hosts"
cat >"$work/ssh_config" <<EOF
Host bench
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $work/id_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $work/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  Ciphers aes128-gcm@openssh.com
  LogLevel ERROR
EOF
SSHCFG=$work/ssh_config
ssh -F "$SSHCFG" bench true || { cat "$work/sshd.log" >&2; die "ssh to the bench sshd failed"; }
: >"$work/rclone.conf"
RCLONE_SFTP="--sftp-host 127.0.0.1 --sftp-port $port --sftp-user $user --sftp-key-file $work/id_ed25519 --sftp-known-hosts-file $work/known_hosts"

# netops: its own config (known_hosts strict, the bench key, no agent, no
# ~/.ssh/config) and state dir (resume journals).
: >"$work/netops_ssh_config"
cat >"$work/netops.yaml" <<EOF
state_dir: $work/state
ssh:
  known_hosts: $work/known_hosts
  host_key_policy: strict
  identity_files: [$work/id_ed25519]
  agent: false
  config: $work/netops_ssh_config
EOF
export NETOPS_CONFIG=$work/netops.yaml
unset SSH_AUTH_SOCK NETOPS_STATE_DIR
URL="sftp://$user@127.0.0.1:$port" # + absolute path

say "== transfer benchmarks: OpenSSH sshd on 127.0.0.1:$port ($("$SSHD" -V 2>&1 | head -1)), scratch $work =="

# --- helpers ---------------------------------------------------------------------
median_ms() { awk -F, 'NR==2 {printf "%.1f", $4*1000}' "$1"; }

# sshd_cpu: CPU seconds (user+sys) of the sshd's reaped children so far:
# the per-connection sshd processes, sftp-server and remote commands.
# (cpu_sshd: another sshd to account, part 5)
sshd_cpu() { awk -v tk="$(getconf CLK_TCK)" '{printf "%.2f", ($16 + $17) / tk}' "/proc/${cpu_sshd:-$sshd_pid}/stat"; }

# hf NAME RUNS PREPARE CMD: hyperfine one command, print and return its median (ms).
# Its mean CPU per run goes to $work/cpu-NAME: "client SECONDS server SECONDS"
# (client: user+sys from hyperfine; server: the sshd side, see sshd_cpu).
hf() {
  local name=$1 runs=$2 prep=$3 cmd=$4 csv=$OUT/transfer-$1.csv
  local args=(-N --style none --runs "$runs" --export-csv "$csv")
  [ -n "$prep" ] && args+=(--prepare "$prep")
  local before
  before=$(sshd_cpu)
  if ! hyperfine "${args[@]}" "$cmd" >"$work/hf-$name.log" 2>&1; then
    cat "$work/hf-$name.log" >&2
    die "$name: $cmd"
  fi
  sleep 0.2 # the last connection's sshd is reaped
  awk -F, -v b="$before" -v a="$(sshd_cpu)" -v n="$runs" \
    'NR==2 {printf "client %.2f server %.2f", $5 + $6, (a - b) / n}' "$csv" >"$work/cpu-$name"
  median_ms "$csv"
}

# ratio LABEL A B GOAL: print A/B and whether it is <= GOAL.
ratio() {
  awk -v l="$1" -v a="$2" -v b="$3" -v g="$4" \
    'BEGIN {r=a/b; printf "  ratio %-28s %.2fx (goal <= %s: %s)\n", l, r, g, (r <= g ? "MET" : "MISSED")}' | tee -a "$summary"
}

check_sha() { # check_sha FILE WHAT
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$big_sha" ] || die "$2: sha256 of $1 is $got, want $big_sha"
}

line() { # line NAME MEDIAN_MS NOTE [HF_NAME]: HF_NAME adds the CPU per run
  local cpu=''
  [ -n "${4:-}" ] && [ -f "$work/cpu-$4" ] && cpu="  cpu s/run: $(cat "$work/cpu-$4")"
  awk -v n="$1" -v m="$2" -v s="$MIB" -v note="$3" -v cpu="$cpu" \
    'BEGIN {printf "  %-34s median %9.1f ms  %7.0f MiB/s  %s%s\n", n, m, s/(m/1000), note, cpu}' | tee -a "$summary"
}

# --- data ------------------------------------------------------------------------
mkdir -p "$work/src" "$work/remote" "$work/local" "$work/small" "$work/state"
big=$work/src/big.bin
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$big"
big_sha=$(sha256sum "$big" | cut -d' ' -f1)
size=$(stat -c %s "$big")
for d in $(seq -w 0 $((NDIRS - 1))); do
  mkdir -p "$work/small/d$d"
  head -c $((PERDIR * FILEKIB * 1024)) /dev/urandom | split -b $((FILEKIB * 1024)) -a 3 -d - "$work/small/d$d/f"
done
nfiles=$(find "$work/small" -type f | wc -l)
[ "$nfiles" = $((NDIRS * PERDIR)) ] || die "made $nfiles small files"
# Every big-file run starts with nothing dirty in the page cache (the test
# data just written, the previous tool's output): otherwise the first tool
# that fsyncs (netops does, scp does not) also waits for those gigabytes to
# reach the disk (ext4 commits them with its journal).
sync
clean() { echo "sh -c 'rm -f $1 && sync'"; } # a hyperfine --prepare command

# netops command lines (flags as documented by `netops transfer copy --help`)
# (strings for hyperfine, arrays for direct runs; no path here has spaces)
NETOPS_COPY="$NETOPS transfer copy --quiet"
NETOPS_SYNC="$NETOPS transfer copy --mode sync --quiet ${BENCH_TRANSFER_SYNC_FLAGS:-}"
read -r -a netops_copy <<<"$NETOPS_COPY"
read -r -a netops_sync <<<"$NETOPS_SYNC"

part() { [[ " $PARTS " == *" $1 "* ]]; }

# --- 1. big file, upload and download --------------------------------------------------
if part big; then
  declare -A up down
  say "== big file ($MIB MiB), $RUNS runs each (hyperfine), SHA-256 checked after each tool =="
  say " upload:"
  run_up() { # run_up NAME CMD (the command writes $work/remote/up.bin)
    local m
    m=$(hf "up-$1" "$RUNS" "$(clean "$work/remote/up.bin")" "$2")
    check_sha "$work/remote/up.bin" "upload $1"
    rm -f "$work/remote/up.bin"
    up[$1]=$m
    line "$1" "$m" "sha256 ok" "up-$1"
  }
  printf 'put %s %s\n' "$big" "$work/remote/up.bin" >"$work/up.batch"
  printf 'get %s %s\n' "$big" "$work/local/down.bin" >"$work/down.batch"
  if [ "$have_netops" = 1 ]; then run_up netops "$NETOPS_COPY $big $URL$work/remote/up.bin"; fi
  run_up scp "scp -F $SSHCFG -q -c aes128-gcm@openssh.com $big bench:$work/remote/up.bin"
  run_up sftp "sftp -F $SSHCFG -q -b $work/up.batch bench"
  run_up rsync "rsync -e 'ssh -F $SSHCFG' $big bench:$work/remote/up.bin"
  run_up rclone "rclone --config $work/rclone.conf -q copyto $big :sftp:$work/remote/up.bin $RCLONE_SFTP"
  # What a script does to get netops' guarantee from scp: hash the source,
  # copy, hash the copy on the server (openssl, as netops does; no fsync).
  run_up "scp+sha256" "sh -c 'openssl dgst -sha256 -r $big >/dev/null && scp -F $SSHCFG -q -c aes128-gcm@openssh.com $big bench:$work/remote/up.bin && ssh -F $SSHCFG bench openssl dgst -sha256 -r $work/remote/up.bin >/dev/null'"

  say " download:"
  run_down() {
    local m
    m=$(hf "down-$1" "$RUNS" "$(clean "$work/local/down.bin")" "$2")
    check_sha "$work/local/down.bin" "download $1"
    rm -f "$work/local/down.bin"
    down[$1]=$m
    line "$1" "$m" "sha256 ok" "down-$1"
  }
  if [ "$have_netops" = 1 ]; then run_down netops "$NETOPS_COPY $URL$big $work/local/down.bin"; fi
  run_down scp "scp -F $SSHCFG -q -c aes128-gcm@openssh.com bench:$big $work/local/down.bin"
  run_down sftp "sftp -F $SSHCFG -q -b $work/down.batch bench"
  run_down rsync "rsync -e 'ssh -F $SSHCFG' bench:$big $work/local/down.bin"
  run_down rclone "rclone --config $work/rclone.conf -q copyto :sftp:$big $work/local/down.bin $RCLONE_SFTP"
  run_down "scp+sha256" "sh -c 'ssh -F $SSHCFG bench openssl dgst -sha256 -r $big >/dev/null && scp -F $SSHCFG -q -c aes128-gcm@openssh.com bench:$big $work/local/down.bin && openssl dgst -sha256 -r $work/local/down.bin >/dev/null'"

  if [ "$have_netops" = 1 ]; then
    ratio "netops/scp upload" "${up[netops]}" "${up[scp]}" 1.0
    ratio "netops/scp download" "${down[netops]}" "${down[scp]}" 1.0
    awk -v u="${up[netops]}" -v su="${up[scp+sha256]}" -v d="${down[netops]}" -v sd="${down[scp+sha256]}" \
      'BEGIN {printf "  (against scp + sha256 on both ends, the same checks by hand: upload %.2fx, download %.2fx)\n", u/su, d/sd}' | tee -a "$summary"
    say "  (netops also verifies the SHA-256 (upload: of the landed file; download: of the source, hashed on the server)"
    say "   and fsyncs the file before the rename; scp does neither)"
  fi
fi

# --- 2. many small files -----------------------------------------------------------------
if part small; then
  say "== $nfiles files x $FILEKIB KiB in $NDIRS directories, $SMALL_RUNS runs each =="
  check_tree() { # check_tree DIR WHAT
    diff -r "$work/small" "$1" >/dev/null || die "$2: $1 differs from the source tree"
    local n
    n=$(find "$1" -type f | wc -l)
    [ "$n" = "$nfiles" ] || die "$2: $n files in $1, want $nfiles"
  }
  declare -A first second
  small() { # small NAME CMD DEST
    local m
    m=$(hf "small-initial-${1// /-}" "$SMALL_RUNS" "rm -rf $3" "$2")
    check_tree "$3" "$1 initial"
    first[$1]=$m
    printf '  %-34s initial   median %8.1f ms  tree identical\n' "$1" "$m" | tee -a "$summary"
    m=$(hf "small-nochange-${1// /-}" "$SMALL_RUNS" "" "$2")
    check_tree "$3" "$1 no-change"
    second[$1]=$m
    printf '  %-34s no-change median %8.1f ms  tree identical\n' "$1" "$m" | tee -a "$summary"
  }
  if [ "$have_netops" = 1 ]; then
    small "netops --mode sync" "$NETOPS_SYNC $work/small $URL$work/remote/small-netops" "$work/remote/small-netops"
  fi
  small "rsync -a" "rsync -a -e 'ssh -F $SSHCFG' $work/small/ bench:$work/remote/small-rsync/" "$work/remote/small-rsync"
  # (rclone is left out here: over sftp it takes minutes for 2000 files)
  if [ "$have_netops" = 1 ]; then
    # The no-change sync must not copy anything: ask netops what it did.
    "${netops_sync[@]}" --output json "$work/small" "$URL$work/remote/small-netops" >"$work/nochange.json"
    copied=$(jq -s '[.. | objects | select(.op? == "copy")] | length' "$work/nochange.json")
    [ "$copied" = 0 ] || die "the no-change netops sync copied $copied files"
    ratio "netops/rsync initial" "${first[netops --mode sync]}" "${first[rsync -a]}" 1.0
    ratio "netops/rsync no-change" "${second[netops --mode sync]}" "${second[rsync -a]}" 1.0
  fi
fi

if [ "$have_netops" = 0 ]; then
  say "netops transfer not measured (anchors only): no ratios, no verification overhead, no resume test"
  [ "$ANCHORS_ONLY" = 1 ] && exit 0
  exit 1
fi

# --- 3. verification overhead ----------------------------------------------------------------
if part verify; then
  say "== verification overhead: $MIB MiB upload, --verify sha256 vs none, $RUNS runs each =="
  on=$(hf up-netops-verify "$RUNS" "$(clean "$work/remote/up.bin")" "$NETOPS_COPY --verify sha256 $big $URL$work/remote/up.bin")
  check_sha "$work/remote/up.bin" "upload netops with verification"
  off=$(hf up-netops-noverify "$RUNS" "$(clean "$work/remote/up.bin")" "$NETOPS_COPY --verify none $big $URL$work/remote/up.bin")
  check_sha "$work/remote/up.bin" "upload netops without verification"
  rm -f "$work/remote/up.bin"
  line "netops --verify sha256" "$on" "sha256 ok" up-netops-verify
  line "netops --verify none" "$off" "sha256 ok" up-netops-noverify
  awk -v a="$on" -v b="$off" 'BEGIN {o=(a/b-1)*100; printf "  verification overhead %+.1f%% (goal <= 15%%: %s)\n", o, (o <= 15 ? "MET" : "MISSED")}' | tee -a "$summary"
fi

# --- 4. interrupted at 50%, then resumed ---------------------------------------------------------
if part resume; then
  say "== interrupted at 50%, then resumed: bytes re-sent ($MIB MiB) =="
  # written DIR: the most data (allocated bytes) any file in DIR holds
  # (files come and go while netops runs: find's complaints are expected)
  written() { find "$1" -type f -printf '%b\n' 2>/dev/null | awk '$1 > m {m = $1} END {print m * 512}'; }
  resume() { # resume up|down SIGNAL
    local dir src dst sig=$2
    if [ "$1" = up ]; then
      dir=$work/remote/resume src=$big dst=$URL$work/remote/resume/big.bin
    else
      dir=$work/local/resume src=$URL$big dst=$work/local/resume/big.bin
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    "${netops_copy[@]}" --output json "$src" "$dst" >"$work/resume-$1-1.json" 2>"$work/resume-$1-1.err" &
    bg_pid=$!
    local at=0
    while kill -0 "$bg_pid" 2>/dev/null; do
      at=$(written "$dir")
      if [ "$at" -ge $((size / 2)) ]; then
        kill -"$sig" "$bg_pid"
        break
      fi
      sleep 0.01
    done
    wait "$bg_pid" 2>/dev/null && die "resume $1: netops finished before it could be interrupted at 50%"
    bg_pid=''
    [ -e "$dir/big.bin" ] && die "resume $1: a file exists under the final name after the interruption"
    "${netops_copy[@]}" --output json "$src" "$dst" >"$work/resume-$1-2.json" 2>"$work/resume-$1-2.err" ||
      { cat "$work/resume-$1-2.err" >&2; die "resume $1: the second run failed"; }
    check_sha "$dir/big.bin" "resume $1"
    local rec sent from
    rec=$(jq -c -s '[.. | objects | select(.op? == "copy" and has("bytes_sent"))][0]' "$work/resume-$1-2.json")
    sent=$(jq -r '.bytes_sent' <<<"$rec")
    from=$(jq -r '.resumed_from' <<<"$rec")
    if [ "$sent" = null ] || [ "$from" = null ]; then die "resume $1: no receipt with bytes_sent and resumed_from: $(cat "$work/resume-$1-2.json")"; fi
    rm -rf "$dir"
    awk -v d="$1 SIG$sig" -v at="$at" -v s="$sent" -v f="$from" -v n="$size" 'BEGIN {
      r=s/n*100
      printf "  %-13s killed at %5.1f%%, resumed from %5.1f%%, re-sent %5.1f%% of the file (goal <= 55%%: %s), sha256 ok\n",
        d, at/n*100, f/n*100, r, (r <= 55 ? "MET" : "MISSED")}' | tee -a "$summary"
  }
  for sig in $SIGNALS; do
    resume up "$sig"
    resume down "$sig"
  done
fi

# --- 5. over a rate-limited link (printed beside; not a goal) ------------------------------
if part link; then
  say "== beside the goals: $LINK_MIB MiB over a $LINK_RATE link (veth into a network namespace, tc tbf), $RUNS runs each =="
  # link_setup: the namespace, the veth pair, the rate limits and the sshd
  # in the namespace; fails (and the part is skipped) if any step does.
  link_setup() {
    netns=netops-bench-$$
    ip netns add "$netns" || { netns=''; return 1; }
    host_if=nbh$$
    local ns_if=nbn$$
    ip link add "$host_if" type veth peer name "$ns_if" || { host_if=''; return 1; }
    ip link set "$ns_if" netns "$netns" &&
      ip addr add 198.18.0.1/30 dev "$host_if" &&
      ip link set "$host_if" up &&
      ip netns exec "$netns" ip addr add 198.18.0.2/30 dev "$ns_if" &&
      ip netns exec "$netns" ip link set "$ns_if" up &&
      ip netns exec "$netns" ip link set lo up &&
      # The same limit on both ends: data one way, acknowledgements the other.
      tc qdisc add dev "$host_if" root tbf rate "$LINK_RATE" burst 1mb latency 50ms &&
      ip netns exec "$netns" tc qdisc add dev "$ns_if" root tbf rate "$LINK_RATE" burst 1mb latency 50ms ||
      return 1
    sed -e 's/^ListenAddress .*/ListenAddress 198.18.0.2/' "$work/sshd_config" >"$work/sshd_link_config"
    ip netns exec "$netns" "$SSHD" -D -e -f "$work/sshd_link_config" 2>"$work/sshd_link.log" &
    link_sshd_pid=$!
    for _ in $(seq 200); do
      ip netns exec "$netns" ss -Hltn "sport = :$port" | grep -q . && return 0
      kill -0 "$link_sshd_pid" 2>/dev/null || break
      sleep 0.05
    done
    cat "$work/sshd_link.log" >&2
    return 1
  }
  if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    say "  skipped: needs root, ip and tc"
  elif ! link_setup; then
    say "  skipped: could not set up the namespace, the veth pair, tc tbf or the sshd in it"
  else
    printf '[198.18.0.2]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$work/host_ed25519.pub")" >>"$work/known_hosts"
    sed -e 's/^Host bench$/Host benchlink/' -e 's/HostName 127.0.0.1/HostName 198.18.0.2/' "$SSHCFG" >"$work/ssh_link_config"
    LURL="sftp://$user@198.18.0.2:$port"
    LCFG=$work/ssh_link_config
    head -c "$((LINK_MIB * 1024 * 1024))" "$big" >"$work/src/link.bin"
    link_sha=$(sha256sum "$work/src/link.bin" | cut -d' ' -f1)
    sync
    declare -A lk
    cpu_sshd=$link_sshd_pid
    link_run() { # link_run NAME CMD FILE
      local name=${1// /-}
      lk[$1]=$(hf "link-$name" "$RUNS" "$(clean "$3")" "$2")
      [ "$(sha256sum "$3" | cut -d' ' -f1)" = "$link_sha" ] || die "link $1: sha256 of $3 differs"
      rm -f "$3"
      awk -v n="$1" -v m="${lk[$1]}" -v s="$LINK_MIB" -v cpu="$(cat "$work/cpu-link-$name")" \
        'BEGIN {printf "  %-34s median %9.1f ms  %7.0f MiB/s  sha256 ok  cpu s/run: %s\n", n, m, s/(m/1000), cpu}' | tee -a "$summary"
    }
    link_run "netops upload" "$NETOPS_COPY $work/src/link.bin $LURL$work/remote/link.bin" "$work/remote/link.bin"
    link_run "netops upload --verify none" "$NETOPS_COPY --verify none $work/src/link.bin $LURL$work/remote/link.bin" "$work/remote/link.bin"
    link_run "scp upload" "scp -F $LCFG -q -c aes128-gcm@openssh.com $work/src/link.bin benchlink:$work/remote/link.bin" "$work/remote/link.bin"
    link_run "netops download" "$NETOPS_COPY $LURL$work/src/link.bin $work/local/link.bin" "$work/local/link.bin"
    link_run "netops download --verify none" "$NETOPS_COPY --verify none $LURL$work/src/link.bin $work/local/link.bin" "$work/local/link.bin"
    link_run "scp download" "scp -F $LCFG -q -c aes128-gcm@openssh.com benchlink:$work/src/link.bin $work/local/link.bin" "$work/local/link.bin"
    awk -v u="${lk[netops upload]}" -v su="${lk[scp upload]}" -v d="${lk[netops download]}" -v sd="${lk[scp download]}" \
      -v uo="${lk[netops upload --verify none]}" -v dn="${lk[netops download --verify none]}" 'BEGIN {
        printf "  netops/scp over the link: upload %.2fx, download %.2fx (verification on); verification overhead upload %+.1f%%, download %+.1f%%\n", u/su, d/sd, (u/uo-1)*100, (d/dn-1)*100}' | tee -a "$summary"
    cpu_sshd=''
  fi
fi

say "results: $OUT/transfer-*.csv, $summary"
