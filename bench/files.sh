#!/usr/bin/env bash
# Files that arrive as files, side by side in one run: 1 GiB (or
# FILES_BENCH_SIZE_MIB) written to a file on disk by every receiver.
#   chat      chat send --file into chat serve --accept-files --save-dir
#             (SHA-256 over the whole file, fsync before the rename)
#   socat     a plain pipe with 128 KiB buffers into a file (no encryption,
#             no hash, no fsync: the unencrypted limit)
#   scp       OpenSSH with aes256-gcm@openssh.com, a throwaway sshd on
#             127.0.0.1 with a throwaway key
#   wormhole  magic-wormhole (PyPI) send / receive --accept-file -o, with its
#             mailbox server and transit relay run locally on 127.0.0.1;
#             the table says whether the data went direct or through the
#             relay (no fsync either)
# plus a small file's whole-process time (connect, offer, accept, data,
# verdict: `chat send --file` of 1 KiB) and the receiver's peak RSS for a
# 64 MiB and a 1 GiB file (flat with size?).
# Installs what it needs (socat, openssh, hyperfine, time) from Debian, and
# magic-wormhole, its mailbox server and transit relay from PyPI into a venv
# kept in $BENCH_CACHE (default /var/tmp/chat-bench); without PyPI the
# wormhole rows are skipped, and the table says so.
# Usage: bench/files.sh [RUNS]   (RUNS per measurement, default 3)
#   FILES_BENCH_SIZE_MIB  size of the big file, default 1024
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SIZE_MIB=${FILES_BENCH_SIZE_MIB:-1024}
if [ "$SIZE_MIB" = 1024 ]; then BIG="1 GiB"; else BIG="$SIZE_MIB MiB"; fi
BENCH_CACHE=${BENCH_CACHE:-/var/tmp/chat-bench}
WORMHOLE_PKGS=(magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0 magic-wormhole-transit-relay==0.5.0)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need socat || ! need hyperfine || ! [ -x /usr/sbin/sshd ] || ! [ -x /usr/bin/time ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat hyperfine openssh-server openssh-client time >/dev/null
fi
cargo build --release --quiet --bin chat
CHAT="$PWD/target/release/chat"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/gigabyte"
head -c $((64 << 20)) /dev/urandom > "$WORK/64m"
head -c 1024 /dev/urandom > "$WORK/small"
mkdir -p "$WORK/recv"
for who in bob ada; do mkdir -m 700 "$WORK/$who"; done
cp docs/vectors/keys/responder.pem "$WORK/bob/identity.pem"
cp docs/vectors/keys/initiator.pem "$WORK/ada/identity.pem"
chmod 600 "$WORK"/*/identity.pem
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
seconds() { python3 -c 'import time; print(time.monotonic())'; }
gbs() { python3 -c "print($SIZE_MIB*1048576/1e9/($2-$1))"; }
wait_port() { python3 -c "
import socket, sys, time
for _ in range(100):
    try: socket.create_connection(('127.0.0.1', $1), 0.1).close(); sys.exit(0)
    except OSError: time.sleep(0.1)
sys.exit(1)"; }

# --- socat into a file ------------------------------------------------------------
socat_runs=()
for _ in $(seq "$RUNS"); do
  rm -f "$WORK/recv/socat.bin"; sync
  port=$(free_port)
  socat -b 131072 -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "OPEN:$WORK/recv/socat.bin,creat,trunc" & sink=$!
  sleep 0.2
  t0=$(seconds)
  socat -b 131072 -u "FILE:$WORK/gigabyte" "TCP:127.0.0.1:$port"
  wait $sink; t1=$(seconds)
  cmp -s "$WORK/gigabyte" "$WORK/recv/socat.bin"
  socat_runs+=("$(gbs "$t0" "$t1")")
done
socat_gbs=$(printf '%s\n' "${socat_runs[@]}" | median)
rm -f "$WORK/recv/socat.bin"

# --- scp with aes256-gcm ------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
SSH_PORT=$(free_port)
cat > "$WORK/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/user_key.pub
PasswordAuthentication no
StrictModes no
PidFile $WORK/sshd.pid
Ciphers aes256-gcm@openssh.com
Subsystem sftp internal-sftp
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -f "$WORK/sshd_config" -D & PIDS+=($!)
sleep 0.5
scp_runs=()
for _ in $(seq "$RUNS"); do
  rm -f "$WORK/recv/scp.bin"; sync
  t0=$(seconds)
  scp -q -c aes256-gcm@openssh.com -i "$WORK/user_key" -P "$SSH_PORT" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null "$WORK/gigabyte" "root@127.0.0.1:$WORK/recv/scp.bin"
  t1=$(seconds)
  cmp -s "$WORK/gigabyte" "$WORK/recv/scp.bin"
  scp_runs+=("$(gbs "$t0" "$t1")")
done
scp_gbs=$(printf '%s\n' "${scp_runs[@]}" | median)
rm -f "$WORK/recv/scp.bin"

# --- magic-wormhole -----------------------------------------------------------------
# Its own mailbox server (rendezvous, websocket) and transit relay on
# 127.0.0.1. Both clients listen for a direct connection too and race it
# against the relay; the receiver's "Receiving (->tcp:...)" or
# "(->relay:...)" line tells which one carried the data. Timed from the
# start of send until the receiver has exited with the file written.
WH="$BENCH_CACHE/wormhole-venv"
wormhole_skip=""
if ! "$WH/bin/python" -c 'import wormhole, wormhole_mailbox_server, wormhole_transit_relay' 2>/dev/null; then
  mkdir -p "$BENCH_CACHE"
  rm -rf "$WH"
  if ! python3 -m venv "$WH" >"$WORK/pip.log" 2>&1; then
    wormhole_skip="no venv (python3 -m venv failed)"
  elif ! "$WH/bin/pip" install -q --disable-pip-version-check --retries 1 --timeout 15 "${WORMHOLE_PKGS[@]}" >>"$WORK/pip.log" 2>&1; then
    wormhole_skip="pip install from PyPI failed (no network?): $(tail -n 1 "$WORK/pip.log" | tr -cd '[:print:]' | cut -c 1-120)"
    rm -rf "$WH"
  fi
fi
wormhole_runs=()
wormhole_paths=()
if [ -z "$wormhole_skip" ]; then
  MB_PORT=$(free_port)
  "$WH/bin/twist" wormhole-mailbox --port "tcp:$MB_PORT:interface=127.0.0.1" \
    --channel-db "$WORK/mailbox.sqlite" >"$WORK/mailbox.log" 2>&1 & PIDS+=($!)
  TR_PORT=$(free_port)
  "$WH/bin/twist" transitrelay --port "tcp:$TR_PORT:interface=127.0.0.1" >"$WORK/transit.log" 2>&1 & PIDS+=($!)
  if ! wait_port "$MB_PORT" || ! wait_port "$TR_PORT"; then
    wormhole_skip="its mailbox server or transit relay did not listen within 10 s"
  fi
fi
if [ -z "$wormhole_skip" ]; then
  WORMHOLE=("$WH/bin/wormhole" --relay-url "ws://127.0.0.1:$MB_PORT/v1" --transit-helper "tcp:127.0.0.1:$TR_PORT")
  n=0
  for _ in $(seq "$RUNS"); do
    n=$((n + 1))
    rm -f "$WORK/recv/wormhole.bin"; sync
    code="$n-chat-bench"
    t0=$(seconds)
    "${WORMHOLE[@]}" send --hide-progress --no-qr --code "$code" "$WORK/gigabyte" >"$WORK/wh-send.log" 2>&1 & sender=$!
    # A failure skips wormhole's rows (with the reason) rather than the
    # whole benchmark.
    if ! "${WORMHOLE[@]}" receive --hide-progress --accept-file -o "$WORK/recv/wormhole.bin" "$code" >"$WORK/wh-recv.log" 2>&1; then
      kill $sender 2>/dev/null || true; wait $sender 2>/dev/null || true
      wormhole_skip="wormhole receive failed: $(tail -n 1 "$WORK/wh-recv.log" | tr -cd '[:print:]' | cut -c 1-120)"; break
    fi
    t1=$(seconds)
    if ! wait $sender; then
      wormhole_skip="wormhole send failed: $(tail -n 1 "$WORK/wh-send.log" | tr -cd '[:print:]' | cut -c 1-120)"; break
    fi
    if ! cmp -s "$WORK/gigabyte" "$WORK/recv/wormhole.bin"; then wormhole_skip="wormhole's file differs"; break; fi
    if grep -q 'Receiving (->relay:' "$WORK/wh-recv.log"; then wormhole_paths+=(relay)
    elif grep -q 'Receiving (->tcp:' "$WORK/wh-recv.log"; then wormhole_paths+=(direct)
    else wormhole_paths+=(unknown); fi
    wormhole_runs+=("$(gbs "$t0" "$t1")")
  done
fi
[ -z "$wormhole_skip" ] || echo "bench/files.sh: magic-wormhole skipped: $wormhole_skip" >&2
if [ -z "$wormhole_skip" ]; then
  wormhole_gbs=$(printf '%s\n' "${wormhole_runs[@]}" | median)
  wormhole_path=$(printf '%s\n' "${wormhole_paths[@]}" | sort | uniq -c | awk '{printf "%s%s %s", (NR>1?", ":""), $1, $2}')
  wormhole_version=$("$WH/bin/wormhole" --version 2>&1 | awk '{print $NF}')
  rm -f "$WORK/recv/wormhole.bin"
fi

# --- chat send --file ----------------------------------------------------------------
# One receiver per measurement, so that its peak RSS (VmHWM) is that
# measurement's.
start_serve() {
  port=$(free_port)
  "$CHAT" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --accept-new --accept-files \
    --save-dir "$WORK/recv" </dev/null >/dev/null 2>"$WORK/serve.err" & server=$!
  sleep 1.5
}
stop_serve() { kill "$server"; wait "$server" 2>/dev/null || true; }
chat_runs=()
start_serve
for _ in $(seq "$RUNS"); do
  rm -f "$WORK/recv/gigabyte"; sync
  t0=$(seconds)
  "$CHAT" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new --file "$WORK/gigabyte" 2>/dev/null
  t1=$(seconds)
  cmp -s "$WORK/gigabyte" "$WORK/recv/gigabyte"
  chat_runs+=("$(gbs "$t0" "$t1")")
  sleep 0.5
done
rss_1g=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$server/status")
stop_serve
chat_gbs=$(printf '%s\n' "${chat_runs[@]}" | median)
rm -f "$WORK/recv/gigabyte"

start_serve
"$CHAT" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new --file "$WORK/64m" 2>/dev/null
rss_64m=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$server/status")
# A small file, whole process: a pause between runs lets serve have the
# next transient key ready (it makes at most 3 a second), and the file
# saved by the last run is removed.
hyperfine -N -w 3 -r 30 -p "sh -c 'sleep 0.4; rm -f $WORK/recv/small*'" --export-json "$WORK/small.json" \
  "$CHAT --home $WORK/ada send 127.0.0.1:$port --file $WORK/small" >/dev/null 2>&1
small_ms=$(python3 -c "import json; print('%.1f' % (json.load(open('$WORK/small.json'))['results'][0]['median']*1000))")
stop_serve

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
echo "chat file transfer, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), median of $RUNS runs, into $WORK"
printf '%-40s %10s %s\n' measure value "ratio (goal)"
printf '%-40s %6.2f GB/s\n' "socat -b 128K into a file, $BIG" "$socat_gbs"
printf '%-40s %6.2f GB/s\n' "scp aes256-gcm, $BIG" "$scp_gbs"
if [ -z "$wormhole_skip" ]; then
  printf '%-40s %6.2f GB/s  (%s; runs: %s)\n' "magic-wormhole, $BIG" "$wormhole_gbs" "$wormhole_version" "$wormhole_path"
  printf '%-40s %6.2f GB/s  %s x socat (>= 0.9), %s x scp (>= 2), %s x wormhole\n' "chat send --file, $BIG" "$chat_gbs" "$(ratio "$chat_gbs" "$socat_gbs")" "$(ratio "$chat_gbs" "$scp_gbs")" "$(ratio "$chat_gbs" "$wormhole_gbs")"
else
  printf '%-40s %10s  skipped: %s\n' "magic-wormhole, $BIG" "-" "$wormhole_skip"
  printf '%-40s %6.2f GB/s  %s x socat (>= 0.9), %s x scp (>= 2)\n' "chat send --file, $BIG" "$chat_gbs" "$(ratio "$chat_gbs" "$socat_gbs")" "$(ratio "$chat_gbs" "$scp_gbs")"
fi
printf '%-40s %7s ms  (<= 30)\n' "chat send --file, 1 KiB, whole process" "$small_ms"
printf '%-40s %6s MiB  (<= 20, flat)\n' "receiver peak RSS, 64 MiB file" "$rss_64m"
printf '%-40s %6s MiB  (<= 20, flat)\n' "receiver peak RSS, $BIG file" "$rss_1g"
