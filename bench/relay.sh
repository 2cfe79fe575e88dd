#!/usr/bin/env bash
# Measures `chat relay` against a socat relay hop on this machine, in one run:
#   bulk      1 GiB one way between two raw clients, through `chat relay` and
#             through `socat TCP-LISTEN:A TCP-LISTEN:B` (as it comes, 8 KiB
#             buffers, and with -b 131072), with the CPU the hop used
#   idle      5,000 paired circuits that each carried 2 KiB both ways, then
#             sit idle: the relay's resident memory
#   rendezvous both clients connected (lines sent) to the first byte the
#             connect side sends on `ok` arriving at the serve side, p50 and
#             p99 over many runs, against a direct TCP connection
#   delivered `chat send` of one line, from the start of the process to its
#             exit after the receipt ("Delivered"), to a `chat serve --relay`
#             through the relay (an invite without direct=) and directly,
#             interleaved, median and p90 of CONNECTS runs each
# The clients are examples/relay_client.rs (1 MiB reads and writes,
# TCP_NODELAY). Installs socat and GNU time from Debian's packages if missing.
# Methods and results: docs/PERFORMANCE.md, "Relay".
# Usage: bench/relay.sh [RUNS]   (RUNS per bulk measurement, default 5)
# BENCH_ONLY=delivered runs only the connect-to-delivered measurement.
# BENCH_NICE=-20 runs the hop and the clients at that niceness (root only),
# for a machine that others are loading.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
CIRCUITS=${CIRCUITS:-5000}
RENDEZVOUS=${RENDEZVOUS:-2000}
CONNECTS=${CONNECTS:-30}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need socat || ! need /usr/bin/time; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat time >/dev/null
fi
cargo build --release --quiet --bin chat --example relay_client
CHAT="$PWD/target/release/chat"
CLIENT="$PWD/target/release/examples/relay_client"
NICE=(nice -n "${BENCH_NICE:-0}")
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

GIB=$((1 << 30))
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Waits until something listens on port $1, without connecting to it (a
# socat hop would take the probe for its first client).
wait_port() { for _ in $(seq 500); do ss -Hltn "sport = :$1" | grep -q . && return; sleep 0.01; done; echo "nothing listens on $1" >&2; exit 1; }

# A relay with limits out of the way: every client comes from 127.0.0.1.
start_relay() { # -> sets RELAY_PID, RELAY_ADDR
  local port; port=$(free_port)
  "${NICE[@]}" "$CHAT" relay --listen "127.0.0.1:$port" --summary-every 0 \
    --max-new-per-minute 10000000 --max-unpaired-per-source 100000 --max-unpaired 100000 \
    --max-circuits-per-source 100000 --max-circuits 100000 2>>"$WORK/relay.err" &
  RELAY_PID=$!; PIDS+=("$RELAY_PID"); RELAY_ADDR="127.0.0.1:$port"
  wait_port "$port"
}
stop_relay() { kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true; }

# --- bulk ------------------------------------------------------------------------
relay_bulk() { # -> "GB/s CPU-seconds"
  local before out
  before=$(proc_cpu "$RELAY_PID")
  out=$("${NICE[@]}" "$CLIENT" bulk --relay "$RELAY_ADDR" "$GIB")
  python3 -c "b, s = map(float, '$out'.split()); print(b / s / 1e9, $(proc_cpu "$RELAY_PID") - $before)"
}
socat_bulk() { # BUFFER -> "GB/s CPU-seconds"
  local p1 p2 hop out
  p1=$(free_port); p2=$(free_port)
  "${NICE[@]}" /usr/bin/time -f '%U %S' -o "$WORK/socat.time" socat ${1:+-b "$1"} \
    "TCP-LISTEN:$p1,bind=127.0.0.1,reuseaddr" "TCP-LISTEN:$p2,bind=127.0.0.1,reuseaddr" & hop=$!
  wait_port "$p1"
  out=$("${NICE[@]}" "$CLIENT" bulk --socat "127.0.0.1:$p1,127.0.0.1:$p2" "$GIB")
  wait "$hop"
  python3 -c "b, s = map(float, '$out'.split()); print(b / s / 1e9, $(awk '{print $1 + $2}' "$WORK/socat.time"))"
}
# --- connect to delivered ----------------------------------------------------------
# One `chat send` process per sample, timed from its start to its exit.
delivered() {
  start_relay
  local server="$WORK/server" joiner="$WORK/joiner"
  mkdir -m 700 "$server" "$joiner"
  cp docs/vectors/keys/responder.pem "$server/identity.pem"
  cp docs/vectors/keys/initiator.pem "$joiner/identity.pem"
  chmod 600 "$server/identity.pem" "$joiner/identity.pem"
  CHAT_TRANSIENT_KEY_RATE=1000 "${NICE[@]}" "$CHAT" --home "$server" serve --listen 127.0.0.1:0 \
    --relay "$RELAY_ADDR" --accept-new --name bench </dev/null >/dev/null 2>"$WORK/serve.err" &
  PIDS+=("$!"); local serve=$!
  for _ in $(seq 500); do grep -q "registered with relay" "$WORK/serve.err" && break; sleep 0.01; done
  local invite port
  invite=$(grep '^chat://' "$WORK/serve.err")
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/serve.err")
  # Through the relay only: the same invite without its direct addresses.
  local relayed="${invite%%\?*}#${invite##*#}"
  python3 - "$CHAT" "$joiner" "$relayed" "127.0.0.1:$port" "$CONNECTS" <<'PY' > "$WORK/delivered"
import subprocess, sys, time
chat, home, relayed, direct, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def once(peer):
    started = time.perf_counter()
    out = subprocess.run([chat, "--home", home, "send", peer], input=b"ping\n",
                         capture_output=True)
    took = time.perf_counter() - started
    if out.returncode != 0 or b"Delivered" not in out.stderr:
        sys.exit(f"send to {peer} failed: {out.stderr.decode()}")
    return took * 1000
once(relayed)  # pins the key and keeps the invite
samples = {"relay": [], "direct": []}
for _ in range(n):
    samples["relay"].append(once(relayed))
    samples["direct"].append(once(direct))
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round((len(v) - 1) * p)))]
r, d = samples["relay"], samples["direct"]
print(f"{q(r, .5):.1f} {q(r, .9):.1f} {q(d, .5):.1f} {q(d, .9):.1f}")
PY
  kill "$serve" 2>/dev/null || true
  stop_relay
}
delivered
read -r del_r50 del_r90 del_d50 del_d90 < "$WORK/delivered"
delivered_line() {
  printf '%-40s %7s ms %s\n' "connect to delivered p50 / p90 ($CONNECTS)" "$del_r50 / $del_r90" \
    "(direct: $del_d50 / $del_d90 ms; +$(python3 -c "print('%.1f' % ($del_r50 - $del_d50))") ms, goal <= +10 ms)"
}
if [ "${BENCH_ONLY:-}" = delivered ]; then delivered_line; exit 0; fi

start_relay
: > "$WORK/relay"; : > "$WORK/socat8"; : > "$WORK/socat128"
for _ in $(seq "$RUNS"); do # interleaved, so that a noisy moment hits all three
  relay_bulk >> "$WORK/relay"
  socat_bulk "" >> "$WORK/socat8"
  socat_bulk 131072 >> "$WORK/socat128"
done
stop_relay
col() { awk -v c="$1" '{print $c}' "$2" | median; }
relay_gbs=$(col 1 "$WORK/relay"); relay_cpu=$(col 2 "$WORK/relay")
socat8_gbs=$(col 1 "$WORK/socat8"); socat8_cpu=$(col 2 "$WORK/socat8")
socat128_gbs=$(col 1 "$WORK/socat128"); socat128_cpu=$(col 2 "$WORK/socat128")

# --- idle circuits ---------------------------------------------------------------
start_relay
base_rss=$(kib "$RELAY_PID" VmRSS)
mkfifo "$WORK/hold"
"${NICE[@]}" "$CLIENT" idle --relay "$RELAY_ADDR" "$CIRCUITS" < "$WORK/hold" > "$WORK/idle.out" & holder=$!; PIDS+=("$holder")
exec 4>"$WORK/hold"
for _ in $(seq 600); do grep -q ready "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/idle.out" || { echo "the idle clients did not get ready" >&2; exit 1; }
sleep 1
idle_rss=$(kib "$RELAY_PID" VmRSS); idle_hwm=$(kib "$RELAY_PID" VmHWM)
idle_cpu0=$(proc_cpu "$RELAY_PID"); sleep 5; idle_cpu1=$(proc_cpu "$RELAY_PID")
exec 4>&-
wait "$holder"
stop_relay

# --- rendezvous ------------------------------------------------------------------
start_relay
read -r rv50 rv99 <<<"$("${NICE[@]}" "$CLIENT" rendezvous --relay "$RELAY_ADDR" "$RENDEZVOUS")"
read -r direct50 direct99 <<<"$("${NICE[@]}" "$CLIENT" rendezvous --direct "$RENDEZVOUS")"
stop_relay

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
f2() { printf %.2f "$1"; }
runs() { awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1}' "$1"; }
echo "chat relay benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), median of $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg), nice ${BENCH_NICE:-0}"
printf '%-40s %12s %14s %14s %s\n' measure "chat relay" "socat (8K)" "socat -b 128K" "goal"
printf '%-40s %7s GB/s %9s GB/s %9s GB/s %s\n' "bulk 1 GiB through the hop" "$(f2 "$relay_gbs")" "$(f2 "$socat8_gbs")" "$(f2 "$socat128_gbs")" \
  "ratio $(ratio "$relay_gbs" "$socat8_gbs") / $(ratio "$relay_gbs" "$socat128_gbs"), goal >= 0.95"
printf '%-40s %10s s %12s s %12s s %s\n' "CPU-seconds of the hop per GiB" "$(f2 "$relay_cpu")" "$(f2 "$socat8_cpu")" "$(f2 "$socat128_cpu")" "goal <= 1"
printf '%-40s %8s MiB %s\n' "RSS, $CIRCUITS idle circuits (peak)" "$(python3 -c "print('%.1f (%.1f)' % ($idle_rss/1024, $idle_hwm/1024))")" \
  "(at start $(python3 -c "print('%.1f' % ($base_rss/1024))") MiB; goal <= 128 MiB)"
printf '%-40s %10s s %s\n' "CPU while they idle, 5 s" "$(python3 -c "print('%.2f' % ($idle_cpu1 - $idle_cpu0))")" ""
printf '%-40s %7s µs %s\n' "rendezvous p50 / p99 ($RENDEZVOUS runs)" "$rv50 / $rv99" "(direct TCP: $direct50 / $direct99 µs)"
delivered_line
echo "bulk runs, GB/s: chat relay $(runs "$WORK/relay"); socat (8K) $(runs "$WORK/socat8"); socat -b 128K $(runs "$WORK/socat128")"
