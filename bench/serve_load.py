#!/usr/bin/env python3
"""`chat serve` under load: what a flood of ClientHellos costs it, how long a
pinned peer waits meanwhile, how many handshakes it sustains, and its memory
with many connections open. Figures, not pass/fail; methods in
docs/PERFORMANCE.md ("Serving under load").

usage: bench/serve_load.py CHAT [keys|flood|latency|quiet|rate|connections|all] [options]

  keys         CPU-seconds per transient key (examples/transient_cost)
  flood        300 ClientHellos over 10 s from 127.0.0.2-9: serve's CPU-seconds
               (from the first hello until the last one's handshake deadline
               has passed and serve is idle again)
  latency      the same flood rate for --latency-seconds, while a pinned peer
               from 127.0.0.1 runs `chat send` every --every seconds:
               connect-to-delivered p50 and p99
  quiet        64 silent connections from 127.0.0.2-9 held open (each reopened
               as soon as serve drops it) for --latency-seconds, while the
               pinned peer runs `chat send` every --every seconds:
               connect-to-delivered p50 and p99
  rate         honest handshakes per second (examples/handshake_rate, 4 threads)
  connections  RSS, threads and descriptors of serve with 1000 connections open

CHAT is the binary to measure (e.g. target/release/chat); the other binaries
come from the same folder.
"""

import argparse
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

KEYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "vectors", "keys")
HELLO = bytes([0, 0, 0, 38, 1]) + b"chat" + bytes([2]) + bytes(32)  # a version-2 ClientHello (PROTOCOL.md 5.1)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def generator_cpu(pid):
    """CPU-seconds of the threads named transient-keys (the key generators)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != "transient-keys":
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


class Homes:
    """bob serves (3072-bit key), ada connects (2048); each has pinned the other."""

    def __init__(self, chat):
        self.chat = chat
        self.dir = tempfile.mkdtemp(prefix="chat-bench-")
        self.bob = self.home("bob", "responder")
        self.ada = self.home("ada", "initiator")
        self.pin(self.bob, "ada", self.ada)
        self.pin(self.ada, "bob", self.bob)
        self.line = os.path.join(self.dir, "line")
        with open(self.line, "w") as f:
            f.write("one line\n")

    def home(self, name, key):
        path = os.path.join(self.dir, name)
        os.mkdir(path, 0o700)
        shutil.copy(os.path.join(KEYS, f"{key}.pem"), os.path.join(path, "identity.pem"))
        os.chmod(os.path.join(path, "identity.pem"), 0o600)
        return path

    def pin(self, home, name, other):
        fingerprint = subprocess.run(
            [self.chat, "--home", other, "fingerprint"], capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run([self.chat, "--home", home, "peers", "add", name, fingerprint],
                       capture_output=True, check=True)

    def serve(self, env=None):
        server = subprocess.Popen(
            [self.chat, "--home", self.bob, "serve", "--listen", "127.0.0.1:0", "--strict"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, **(env or {})), text=True,
        )
        first = server.stderr.readline().strip()
        port = int(first.rsplit(":", 1)[1])
        # Drain stderr so that the server never blocks on it.
        threading.Thread(target=lambda: server.stderr.read(), daemon=True).start()
        return server, port

    def send(self, port):
        started = time.monotonic()
        result = subprocess.run(
            [self.chat, "--home", self.ada, "send", f"127.0.0.1:{port}", "--strict", "--file", self.line],
            capture_output=True, text=True,
        )
        return time.monotonic() - started, result.returncode, result.stderr.strip()

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def raise_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def flood_hellos(port, hellos, seconds, sources, hold, leave_on_answer):
    """Sends `hellos` ClientHellos, each on a new connection, evenly over
    `seconds`, from 127.0.0.2 .. 127.0.0.(1+sources). Each connection is
    closed after `hold` seconds, or (`leave_on_answer`) as soon as the server
    answers, as a flooder that wants a fresh key each time would. Returns the
    connections still open at the end, and how many got a ServerHello."""
    selector = selectors.DefaultSelector()
    held = {}
    answered = 0
    start = time.monotonic()

    def sweep(until):
        nonlocal answered
        while True:
            timeout = max(0.0, until - time.monotonic())
            for key, _ in selector.select(timeout):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data[4:5] == b"\x02":
                    answered += 1
                if not data or leave_on_answer:
                    selector.unregister(s)
                    held.pop(s, None)
                    s.close()
            now = time.monotonic()
            for s, opened in list(held.items()):
                if opened < now - hold:
                    selector.unregister(s)
                    del held[s]
                    s.close()
            if time.monotonic() >= until:
                return

    for i in range(hellos):
        sweep(start + i * seconds / hellos)
        s = socket.socket()
        try:
            s.bind((f"127.0.0.{2 + i % sources}", 0))
            s.connect(("127.0.0.1", port))
            s.sendall(HELLO)
            held[s] = time.monotonic()
            selector.register(s, selectors.EVENT_READ)
        except OSError:
            s.close()
    sweep(time.monotonic() + 0.5)
    return list(held), answered


def wait_idle(pid, quiet=1.0, limit=30.0):
    """Waits until the process uses no CPU for `quiet` seconds (its key pool
    is full again), at most `limit` seconds."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return
        last = now


def flood(args):
    homes = Homes(args.chat)
    try:
        for mode, leave in [("each closed once answered", True), ("each held open", False)]:
            server, port = homes.serve()
            try:
                wait_idle(server.pid)
                before = cpu_seconds(server.pid)
                keys_before = generator_cpu(server.pid)
                started = time.monotonic()
                held, answered = flood_hellos(port, args.hellos, args.seconds, 8, 60, leave)
                flooded = time.monotonic() - started
                # Past the handshake deadline (10 s) of the last ClientHello,
                # then until the pool is full again.
                time.sleep(11)
                wait_idle(server.pid)
                spent = cpu_seconds(server.pid) - before
                keys = generator_cpu(server.pid) - keys_before
                window = time.monotonic() - started
                for s in held:
                    s.close()
                print(f"flood ({mode}): {args.hellos} ClientHellos over {flooded:.1f} s from 8 addresses, "
                      f"{answered} answered: serve used {spent:.2f} CPU-s (key generators {keys:.2f}) in the "
                      f"{window:.1f} s until it was idle again (peak RSS {status(server.pid, 'VmHWM:') / 1024:.1f} MiB)")
                sys.stdout.flush()
            finally:
                server.kill()
    finally:
        homes.close()


def latency(args):
    homes = Homes(args.chat)
    server, port = homes.serve()
    try:
        wait_idle(server.pid)
        # Unloaded, for reference.
        quiet = [homes.send(port)[0] for _ in range(10)]
        stop = threading.Event()
        samples, failures = [], []

        def peer():
            next_at = time.monotonic() + 1.0
            while not stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                took, code, err = homes.send(port)
                (samples if code == 0 else failures).append((took, err))
                next_at += args.every

        rate = args.hellos / args.seconds
        thread = threading.Thread(target=peer)
        before = cpu_seconds(server.pid)
        thread.start()
        held, _ = flood_hellos(port, int(rate * args.latency_seconds), args.latency_seconds, 8, 60, True)
        stop.set()
        thread.join()
        spent = cpu_seconds(server.pid) - before
        for s in held:
            s.close()
        times = [t for t, _ in samples]
        print(f"latency: unloaded connect-to-delivered p50 {statistics.median(quiet) * 1000:.0f} ms; "
              f"during {args.latency_seconds} s of {rate:.0f} ClientHellos/s from 8 addresses, a pinned peer "
              f"every {args.every} s: {len(times)} delivered, {len(failures)} failed, "
              f"p50 {percentile(times, 50) * 1000:.0f} ms, p99 {percentile(times, 99) * 1000:.0f} ms, "
              f"max {max(times) * 1000 if times else float('nan'):.0f} ms; serve used {spent:.1f} CPU-s")
        slowest = sorted(range(len(times)), key=lambda i: -times[i])[:3]
        print("  slowest: " + ", ".join(f"#{i + 1} of {len(times)}: {times[i] * 1000:.0f} ms" for i in slowest))
        for took, err in failures[:5]:
            print(f"  failed after {took:.2f} s: {err}")
    finally:
        server.kill()
        homes.close()


def quiet(args):
    homes = Homes(args.chat)
    server, port = homes.serve()
    try:
        wait_idle(server.pid)
        stop = threading.Event()
        reopened = [0]

        def hold():
            """Keeps 8 silent connections open from each of 127.0.0.2-9."""
            held = {}
            selector = selectors.DefaultSelector()
            while not stop.is_set():
                for source in range(8):
                    for slot in range(8):
                        if (source, slot) in held:
                            continue
                        s = socket.socket()
                        try:
                            s.bind((f"127.0.0.{2 + source}", 0))
                            s.connect(("127.0.0.1", port))
                            held[(source, slot)] = s
                            selector.register(s, selectors.EVENT_READ, (source, slot))
                            reopened[0] += 1
                        except OSError:
                            s.close()
                for key, _ in selector.select(0.05):
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    del held[key.data]
            for s in held.values():
                s.close()

        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(1)
        samples, failures = [], []
        until = time.monotonic() + args.latency_seconds
        while time.monotonic() < until:
            took, code, err = homes.send(port)
            (samples if code == 0 else failures).append((took, err))
            time.sleep(max(0.0, args.every - took))
        stop.set()
        holder.join()
        times = [t for t, _ in samples]
        print(f"quiet: 64 silent connections held from 8 addresses ({reopened[0]} opened in all), a pinned "
              f"peer every {args.every} s for {args.latency_seconds} s: {len(times)} delivered, "
              f"{len(failures)} failed, p50 {percentile(times, 50) * 1000:.0f} ms, "
              f"p99 {percentile(times, 99) * 1000:.0f} ms, max {max(times) * 1000 if times else float('nan'):.0f} ms")
        for took, err in failures[:5]:
            print(f"  failed after {took:.2f} s: {err}")
    finally:
        server.kill()
        homes.close()


def keys(args):
    example = os.path.join(os.path.dirname(args.chat), "examples", "transient_cost")
    print("keys: " + subprocess.run([example, "60"], capture_output=True, text=True, check=True).stdout.strip())


def rate(args):
    homes = Homes(args.chat)
    example = os.path.join(os.path.dirname(args.chat), "examples", "handshake_rate")
    for label, env in [("default key rate", {}), ("CHAT_TRANSIENT_KEY_RATE=1000", {"CHAT_TRANSIENT_KEY_RATE": "1000"})]:
        server, port = homes.serve(env)
        try:
            wait_idle(server.pid)
            before = cpu_seconds(server.pid)
            out = subprocess.run(
                [example, f"127.0.0.1:{port}", str(args.rate_seconds), "4",
                 os.path.join(homes.ada, "identity.pem")],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            spent = cpu_seconds(server.pid) - before
            print(f"rate ({label}): {out}; serve used {spent:.1f} CPU-s")
        finally:
            server.kill()
    homes.close()


def connections(args):
    raise_descriptor_limit()
    homes = Homes(args.chat)
    server, port = homes.serve({"CHAT_HANDSHAKE_TIMEOUT": "120"})
    try:
        wait_idle(server.pid)
        idle = (status(server.pid, "VmRSS:"), threads(server.pid), descriptors(server.pid))
        for mode in ["silent", "hello"]:
            opened = []
            for i in range(args.connections):
                s = socket.socket()
                # 125 addresses, 8 connections each.
                s.bind((f"127.0.1.{1 + i // 8}", 0))
                s.connect(("127.0.0.1", port))
                if mode == "hello":
                    s.sendall(HELLO)
                opened.append(s)
            time.sleep(2)
            alive = 0
            for s in opened:
                s.setblocking(False)
                try:
                    while s.recv(4096):
                        pass
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            print(f"connections ({mode}): {len(opened)} opened, {alive} still open; serve RSS "
                  f"{status(server.pid, 'VmRSS:') / 1024:.1f} MiB (peak {status(server.pid, 'VmHWM:') / 1024:.1f}), "
                  f"{threads(server.pid)} threads, {descriptors(server.pid)} descriptors "
                  f"(idle: {idle[0] / 1024:.1f} MiB, {idle[1]} threads, {idle[2]} descriptors)")
            for s in opened:
                s.close()
            time.sleep(1)
    finally:
        server.kill()
        homes.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chat")
    parser.add_argument("what", nargs="?", default="all", choices=["keys", "flood", "latency", "quiet", "rate", "connections", "all"])
    parser.add_argument("--hellos", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-seconds", type=int, default=60)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--rate-seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    args.chat = os.path.abspath(args.chat)
    raise_descriptor_limit()
    for name in ["keys", "flood", "latency", "quiet", "rate", "connections"]:
        if args.what in (name, "all"):
            globals()[name](args)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
