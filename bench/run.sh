#!/usr/bin/env bash
# Measures chat against plain references on this machine, in one run:
#   bulk      1 GiB with `chat send` vs a socat pipe and OpenSSH (aes256-gcm)
#   memory    peak RSS of both chat processes during that gigabyte
#   connect   `chat send` of one line, whole process, vs `openssl s_client`
#             and `ssh host true`
#   latency   100-byte message + receipt vs a raw TCP ping-pong
#   rate      100-byte messages one way, per second
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
socat_runs=()
for _ in $(seq "$RUNS"); do
  port=$(free_port)
  socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" OPEN:/dev/null & sink=$!
  sleep 0.2
  t0=$(seconds); socat -u "FILE:$WORK/gigabyte" "TCP:127.0.0.1:$port"; wait $sink; t1=$(seconds)
  socat_runs+=("$(python3 -c "print(1.073741824/($t1-$t0))")")
done
socat_gbs=$(printf '%s\n' "${socat_runs[@]}" | median)

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
chat_runs=(); send_rss=(); serve_rss=()
for _ in $(seq "$RUNS"); do
  port=$(free_port)
  /usr/bin/time -f %M -o "$WORK/serve.rss" "$CHAT" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --once --accept-new \
    </dev/null >/dev/null 2>"$WORK/serve.err" & sink=$!
  sleep 0.3
  t0=$(seconds)
  /usr/bin/time -f %M -o "$WORK/send.rss" "$CHAT" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new --file "$WORK/gigabyte" 2>/dev/null
  t1=$(seconds); wait $sink
  chat_runs+=("$(python3 -c "print(1.073741824/($t1-$t0))")")
  send_rss+=("$(cat "$WORK/send.rss")"); serve_rss+=("$(cat "$WORK/serve.rss")")
done
chat_gbs=$(printf '%s\n' "${chat_runs[@]}" | median)
send_mib=$(printf '%s\n' "${send_rss[@]}" | sort -g | tail -1 | awk '{printf "%.1f", $1/1024}')
serve_mib=$(printf '%s\n' "${serve_rss[@]}" | sort -g | tail -1 | awk '{printf "%.1f", $1/1024}')

# --- connect to delivered ------------------------------------------------------------
port=$(free_port)
"$CHAT" --home "$WORK/bob" serve --listen "127.0.0.1:$port" --accept-new </dev/null >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5
echo "one line" > "$WORK/line"
"$CHAT" --home "$WORK/ada" send "127.0.0.1:$port" --accept-new --file "$WORK/line" 2>/dev/null
# A pause between runs lets the server's background generator have the next
# transient key ready, as it would for peers arriving at human pace.
hyperfine -N -w 3 -r 30 -p 'sleep 0.2' --export-json "$WORK/send.json" \
  "$CHAT --home $WORK/ada send 127.0.0.1:$port --file $WORK/line" >/dev/null 2>&1
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
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk 1 GiB vs socat pipe" "$(printf %.2f "$chat_gbs")" "$(printf %.2f "$socat_gbs")" "$(ratio "$chat_gbs" "$socat_gbs")" ">= 0.80"
printf '%-34s %11s GB/s %13s GB/s %8s %s\n' "bulk 1 GiB vs ssh aes256-gcm" "$(printf %.2f "$chat_gbs")" "$(printf %.2f "$ssh_gbs")" "$(ratio "$chat_gbs" "$ssh_gbs")" ">= 1.50"
printf '%-34s %11s MiB %14s %8s %s\n' "peak RSS, chat send (1 GiB)" "$send_mib" "-" "-" "<= 20 MiB"
printf '%-34s %11s MiB %14s %8s %s\n' "peak RSS, chat serve (1 GiB)" "$serve_mib" "-" "-" "<= 20 MiB"
printf '%-34s %12s ms %15s ms %8s %s\n' "connect to delivered vs TLS 1.3" "$send_ms" "$tls_ms" "-" "chat <= 30 ms"
printf '%-34s %12s ms %15s ms %8s %s\n' "connect to delivered vs ssh true" "$send_ms" "$ssh_ms" "-" "-"
echo "$speed"
