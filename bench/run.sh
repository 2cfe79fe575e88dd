#!/usr/bin/env bash
# Measures chat against plain references on this machine, in one run:
#   bulk      1 GiB with `chat send` vs socat pipes (8 KiB and 128 KiB
#             buffers) and OpenSSH (aes256-gcm), with the CPU both ends used;
#             again with chat built for this CPU (-C target-cpu=native)
#   memory    peak RSS of both chat processes during that gigabyte
#   connect   `chat send` of one line, whole process, vs `openssl s_client`
#             and `ssh host true`
#   latency   100-byte message + receipt vs a raw TCP ping-pong
#   rate      100-byte messages one way, per second
# Serving under load (floods, handshake rate, many connections) is
# bench/serve_load.py; the soak is bench/soak.py.
# Installs what it needs (socat, openssh, hyperfine) from Debian's packages
# and runs a throwaway sshd on a loopback port, stopped at the end.
# Usage: bench/run.sh [RUNS]   (RUNS per measurement, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need socat || ! need hyperfine || ! need sshd || ! need /usr/bin/time; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat hyperfine openssh-server openssh-client time >/dev/null
fi
cargo build --release --quiet --bin chat --example session_speed
CHAT="$PWD/target/release/chat"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

head -c $((1 << 30)) /dev/urandom > "$WORK/gigabyte"
for who in bob ada; do mkdir -m 700 "$WORK/$who"; done
cp docs/vectors/keys/responder.pem "$WORK/bob/identity.pem"
cp docs/vectors/keys/initiator.pem "$WORK/ada/identity.pem"
chmod 600 "$WORK"/*/identity.pem
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
seconds() { python3 -c 'import time; print(time.monotonic())'; }

# --- bulk: socat ---------------------------------------------------------------
# Two plain pipes: socat as it comes (8 KiB reads and writes) and with
# 128 KiB buffers, the faster one and the reference for the target. Each run
# also records the CPU seconds both ends used.
cpu_of() { awk '{print $2 + $3}' "$1"; }
socat_pipe() { # BUFFER -> prints "GB/s CPU-seconds"
  local port t0 t1 sink
  port=$(free_port)
  /usr/bin/time -f '%e %U %S' -o "$WORK/sink.time" socat -b "$1" -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" OPEN:/dev/null & sink=$!
  sleep 0.2
  t0=$(seconds)
  /usr/bin/time -f '%e %U %S' -o "$WORK/source.time" socat -b "$1" -u "FILE:$WORK/gigabyte" "TCP:127.0.0.1:$port"
  wait $sink; t1=$(seconds)
  python3 -c "print(1.073741824/($t1-$t0), $(cpu_of "$WORK/source.time") + $(cpu_of "$WORK/sink.time"))"
}
socat8_runs=(); socat128_runs=(); socat_cpu=()
for _ in $(seq "$RUNS"); do
  read -r gbs _ <<<"$(socat_pipe 8192)"; socat8_runs+=("$gbs")
  read -r gbs cpu <<<"$(socat_pipe 131072)"; socat128_runs+=("$gbs"); socat_cpu+=("$cpu")
done
socat8_gbs=$(printf '%s\n' "${socat8_runs[@]}" | median)
socat_gbs=$(printf '%s\n' "${socat128_runs[@]}" | median)
socat_cpu=$(printf '%s\n' "${socat_cpu[@]}" | median)

# --- bulk: OpenSSH with aes256-gcm -----------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
mkdir -p "$WORK/sshhome/.ssh"; cp "$WORK/user_key.pub" "$WORK/sshhome/.ssh/authorized_keys"
SSH_PORT=$(free_port)
cat > "$WORK/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/sshhome/.ssh/authorized_keys
PasswordAuthentication no
StrictModes no
PidFile $WORK/sshd.pid
Ciphers aes256-gcm@openssh.com
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -f "$WORK/sshd_config" -D & PIDS+=($!)
sleep 0.5
SSH=(ssh -q -i "$WORK/user_key" -p "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o Ciphers=aes256-gcm@openssh.com root@127.0.0.1)
ssh_runs=()
for _ in $(seq "$RUNS"); do
  t0=$(seconds); "${SSH[@]}" 'cat > /dev/null' < "$WORK/gigabyte"; t1=$(seconds)
  ssh_runs+=("$(python3 -c "print(1.073741824/($t1-$t0))")")
done
ssh_gbs=$(printf '%s\n' "${ssh_runs[@]}" | median)

# --- bulk and memory: chat send ----------------------------------------------------
# One server for all runs, as a user would keep it; its CPU is read from
# /proc around each transfer, and a pause between runs lets it make the
# transient key the last one used.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
chat_bulk() { # CHAT -> prints "GB/s send-CPU serve-CPU send-RSS-KiB serve-RSS-KiB" per run
  local bin=$1 port server before t0 t1
  port=$(free_port)
  "$bin" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --accept-new </dev/null >/dev/null 2>"$WORK/serve.err" & server=$!
  sleep 2
  for _ in $(seq "$RUNS"); do
    before=$(proc_cpu "$server")
    t0=$(seconds)
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/send.time" "$bin" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new < "$WORK/gigabyte" 2>/dev/null
    t1=$(seconds)
    python3 -c "print(1.073741824/($t1-$t0), $(cpu_of "$WORK/send.time"), $(proc_cpu "$server") - $before, $(awk '{print $4}' "$WORK/send.time"), $(awk '/VmHWM/ {print $2}' "/proc/$server/status"))"
    sleep 1
  done
  kill "$server"; wait "$server" 2>/dev/null || true
}
column_median() { awk -v c="$1" '{print $c}' | median; }
column_max() { awk -v c="$1" '{print $c}' | sort -g | tail -1; }
chat_bulk "$CHAT" > "$WORK/bulk"
chat_gbs=$(column_median 1 < "$WORK/bulk")
chat_cpu=$(awk '{print $2 + $3}' "$WORK/bulk" | median)
send_cpu=$(column_median 2 < "$WORK/bulk"); serve_cpu=$(column_median 3 < "$WORK/bulk")
send_mib=$(column_max 4 < "$WORK/bulk" | awk '{printf "%.1f", $1/1024}')
serve_mib=$(column_max 5 < "$WORK/bulk" | awk '{printf "%.1f", $1/1024}')
# The same code built for this CPU: on CPUs with VAES but no AVX-512 (AMD
# Zen 3) the portable build's run-time detection misses VAES and AES runs
# 128 bits at a time (cpufeatures 0.3.1; RustCrypto/utils#1510).
RUSTFLAGS="-C target-cpu=native" cargo build --release --quiet --bin chat --target-dir target/native
chat_bulk target/native/release/chat > "$WORK/bulk-native"
native_gbs=$(column_median 1 < "$WORK/bulk-native")
native_cpu=$(awk '{print $2 + $3}' "$WORK/bulk-native" | median)
native_send_cpu=$(column_median 2 < "$WORK/bulk-native"); native_serve_cpu=$(column_median 3 < "$WORK/bulk-native")

# --- connect to delivered ------------------------------------------------------------
port=$(free_port)
"$CHAT" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --accept-new </dev/null >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5
echo "one line" > "$WORK/line"
"$CHAT" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new < "$WORK/line" 2>/dev/null
# A pause between runs lets the server's background generator have the next
# transient key ready, as it would for peers arriving at human pace: it makes
# at most 3 a second (src/net/transient.rs), so a pause under 0.33 s would
# drain its pool of 4 and time the wait for a key instead.
hyperfine -N -w 3 -r 30 -p 'sleep 0.4' --export-json "$WORK/send.json" \
  "sh -c '$CHAT --home $WORK/ada send 127.0.0.1:$port < $WORK/line'" >/dev/null 2>&1
send_ms=$(python3 -c "import json; print('%.1f' % (json.load(open('$WORK/send.json'))['results'][0]['median']*1000))")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -days 1 2>/dev/null
tls_port=$(free_port)
openssl s_server -quiet -accept "$tls_port" -key "$WORK/tls.key" -cert "$WORK/tls.crt" -tls1_3 >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3
hyperfine -N -w 3 -r 30 --export-json "$WORK/tls.json" \
  "sh -c 'echo one | openssl s_client -quiet -connect 127.0.0.1:$tls_port -tls1_3'" >/dev/null 2>&1 || true
tls_ms=$(python3 -c "import json; print('%.1f' % (json.load(open('$WORK/tls.json'))['results'][0]['median']*1000))" 2>/dev/null || echo n/a)
hyperfine -N -w 2 -r 15 --export-json "$WORK/ssh.json" "${SSH[*]} true" >/dev/null 2>&1 || true
ssh_ms=$(python3 -c "import json; print('%.1f' % (json.load(open('$WORK/ssh.json'))['results'][0]['median']*1000))" 2>/dev/null || echo n/a)

# --- latency and rate ------------------------------------------------------------------
speed=$(./target/release/examples/session_speed)

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
echo "chat benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), median of $RUNS runs"
printf '%-34s %14s %18s %8s %s\n' measure chat reference ratio target
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk 1 GiB vs socat -b 128K pipe" "$(printf %.2f "$chat_gbs")" "$(printf %.2f "$socat_gbs")" "$(ratio "$chat_gbs" "$socat_gbs")" ">= 0.80"
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk 1 GiB vs socat (8K) pipe" "$(printf %.2f "$chat_gbs")" "$(printf %.2f "$socat8_gbs")" "$(ratio "$chat_gbs" "$socat8_gbs")" ">= 0.80"
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk 1 GiB vs ssh aes256-gcm" "$(printf %.2f "$chat_gbs")" "$(printf %.2f "$ssh_gbs")" "$(ratio "$chat_gbs" "$ssh_gbs")" ">= 1.50"
printf '%-34s %12s s %16s s %8s %s\n' "CPU, both ends, 1 GiB (vs 128K)" "$(printf %.2f "$chat_cpu")" "$(printf %.2f "$socat_cpu")" "$(ratio "$chat_cpu" "$socat_cpu")" "send $(printf %.2f "$send_cpu") s, serve $(printf %.2f "$serve_cpu") s"
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk, built for this CPU, vs 128K" "$(printf %.2f "$native_gbs")" "$(printf %.2f "$socat_gbs")" "$(ratio "$native_gbs" "$socat_gbs")" "(native)"
printf '%-34s %12s s %16s s %8s %s\n' "CPU, built for this CPU (vs 128K)" "$(printf %.2f "$native_cpu")" "$(printf %.2f "$socat_cpu")" "$(ratio "$native_cpu" "$socat_cpu")" "send $(printf %.2f "$native_send_cpu") s, serve $(printf %.2f "$native_serve_cpu") s"
printf '%-34s %11s MiB %14s %8s %s\n' "peak RSS, chat send (1 GiB)" "$send_mib" "-" "-" "<= 20 MiB"
printf '%-34s %11s MiB %14s %8s %s\n' "peak RSS, chat serve (1 GiB)" "$serve_mib" "-" "-" "<= 20 MiB"
printf '%-34s %12s ms %15s ms %8s %s\n' "connect to delivered vs TLS 1.3" "$send_ms" "$tls_ms" "-" "chat <= 30 ms"
printf '%-34s %12s ms %15s ms %8s %s\n' "connect to delivered vs ssh true" "$send_ms" "$ssh_ms" "-" "-"
echo "$speed"
