#!/usr/bin/env bash
# What key updates cost (docs/PROTOCOL.md, 7.2): a long stream with `chat
# send` into `chat serve > /dev/null`, with the default limits (an update
# per GiB) and with `--rekey-limit 16M` (64 per GiB), in one run. The two
# kinds of run alternate, so that a machine whose speed drifts treats both
# alike; the script prints the medians, their ratio (the goal: updates cost
# less than 2 % of throughput), the sender's CPU-seconds, and every run.
# The stream is a sparse file (its zeros cost no disk reads); its size is
# SIZE GiB (default 4).
# Usage: bench/rekey.sh [RUNS] [SIZE]   (RUNS of each kind, default 5)
#   BENCH_NICE=-20 runs both ends at that niceness, on a machine others load.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SIZE=${2:-4}
NICE=(nice -n "${BENCH_NICE:-0}")

command -v /usr/bin/time >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
}
cargo build --release --quiet --bin chat
CHAT="$PWD/target/release/chat"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

truncate -s "${SIZE}G" "$WORK/stream"
BYTES=$((SIZE << 30))
for who in bob ada; do mkdir -m 700 "$WORK/$who"; done
cp docs/vectors/keys/responder.pem "$WORK/bob/identity.pem"
cp docs/vectors/keys/initiator.pem "$WORK/ada/identity.pem"
chmod 600 "$WORK"/*/identity.pem
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
seconds() { python3 -c 'import time; print(time.monotonic())'; }

# One server for every run, as a user would keep it, with the same limit
# as the sender's smallest (it sends only receipts and keep-alives).
port=$(free_port)
"${NICE[@]}" "$CHAT" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --accept-new \
  --rekey-limit 16M </dev/null >/dev/null 2>"$WORK/serve.err" & PIDS+=($!)
sleep 2

one_run() { # LIMIT -> prints "GB/s send-CPU-seconds key-updates"
  local t0 t1
  t0=$(seconds)
  /usr/bin/time -f '%U %S' -o "$WORK/send.time" "${NICE[@]}" "$CHAT" --home "$WORK/ada" \
    send "127.0.0.1:$port" --accept-new --rekey-limit "$1" --json < "$WORK/stream" \
    >"$WORK/send.json" 2>/dev/null
  t1=$(seconds)
  python3 -c "print($BYTES/1e9/($t1-$t0), $(awk '{print $1 + $2}' "$WORK/send.time"), $(grep -c '"event":"key_update"' "$WORK/send.json"))"
  # Lets the server make its next transient key while nobody waits.
  sleep 1
}
# A first run, not counted, brings the stream into the page cache and lets
# the server settle.
one_run 1G >/dev/null
: >"$WORK/default"; : >"$WORK/16M"
for _ in $(seq "$RUNS"); do
  one_run 1G >>"$WORK/default"
  one_run 16M >>"$WORK/16M"
done

column() { awk -v c="$1" '{print $c}' "$2"; }
gbs_default=$(column 1 "$WORK/default" | median); gbs_16m=$(column 1 "$WORK/16M" | median)
cpu_default=$(column 2 "$WORK/default" | median); cpu_16m=$(column 2 "$WORK/16M" | median)
echo "chat key update cost, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), ${SIZE} GiB per run, median of $RUNS runs each, load $(cut -d' ' -f1-3 /proc/loadavg), nice ${BENCH_NICE:-0}"
printf '%-28s %12s %12s %8s %s\n' measure "default (1G)" "16M" ratio goal
printf '%-28s %12s %12s %8s %s\n' "key updates per run" "$(column 3 "$WORK/default" | median)" "$(column 3 "$WORK/16M" | median)" - -
printf '%-28s %7.3f GB/s %7.3f GB/s %8.3f %s\n' "throughput" "$gbs_default" "$gbs_16m" "$(python3 -c "print($gbs_16m/$gbs_default)")" ">= 0.98"
printf '%-28s %10.2f s %10.2f s %8.3f %s\n' "CPU-seconds of chat send" "$cpu_default" "$cpu_16m" "$(python3 -c "print($cpu_16m/$cpu_default)")" "<= 1.02"
echo "runs, GB/s: default $(column 1 "$WORK/default" | xargs printf '%.3f '); 16M $(column 1 "$WORK/16M" | xargs printf '%.3f ')"
echo "runs, send CPU-s: default $(column 2 "$WORK/default" | xargs printf '%.2f '); 16M $(column 2 "$WORK/16M" | xargs printf '%.2f ')"
