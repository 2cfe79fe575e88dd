#!/usr/bin/env python3
"""A long run of `chat serve` under everyday load and churn, to see that its
memory and descriptors stay flat. Method and results in docs/PERFORMANCE.md
("Soak").

usage: bench/soak.py CHAT [--minutes 10] [--chatters 8]

For the whole run:
  * CHATTERS peers (`chat connect`, each with its own key, accept-new) each
    send a line every second for 30 to 90 seconds, leave, and come back a
    few seconds later; a peer that is refused (busy) tries again later;
  * one peer runs `chat send` of one line every 2 seconds;
  * a flood opens 10 connections a second from 127.0.0.2-9 that say
    nothing, or send a ClientHello, or garbage, and close them after 0 to 6
    seconds.
Every 10 seconds it samples the server's resident memory, descriptors and
threads; at the end it compares the last minute with the minute after the
first one.

If CHAT serve has --max-conversations, the CHATTERS talk at once; a serve
that holds one conversation at a time refuses all but one (busy), which the
soak counts and retries: then it soaks admission and churn, not eight
simultaneous conversations.
"""

import argparse
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HELLO = bytes([0, 0, 0, 38, 1]) + b"chat" + bytes([2]) + bytes(32)  # a version-2 ClientHello (PROTOCOL.md 5.1)


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def sample(pid):
    return (
        status(pid, "VmRSS:"),
        len(os.listdir(f"/proc/{pid}/fd")),
        len(os.listdir(f"/proc/{pid}/task")),
    )


class Soak:
    def __init__(self, chat, minutes, chatters):
        self.chat = chat
        self.until = time.monotonic() + minutes * 60
        self.chatters = chatters
        self.dir = tempfile.mkdtemp(prefix="chat-soak-")
        self.counts = {"sessions": 0, "busy": 0, "failed": 0, "sends": 0, "floods": 0}
        self.lock = threading.Lock()
        self.delivered = 0

    def count(self, what):
        with self.lock:
            self.counts[what] += 1

    def home(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def start_server(self):
        help_text = subprocess.run([self.chat, "serve", "--help"], capture_output=True, text=True).stdout
        self.several = "--max-conversations" in help_text
        extra = ["--max-conversations", str(self.chatters)] if self.several else []
        self.server = subprocess.Popen(
            [self.chat, "--home", self.home("bob"), "serve", "--listen", "127.0.0.1:0",
             "--accept-new", "--json", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.server.stderr.readline()
        self.port = int(line.strip().rsplit(":", 1)[1])
        threading.Thread(target=self.read_events, daemon=True).start()
        threading.Thread(target=lambda: self.server.stderr.read(), daemon=True).start()

    def read_events(self):
        for line in self.server.stdout:
            if '"event":"message"' in line:
                with self.lock:
                    self.delivered += 1

    def chatter(self, n):
        home = self.home(f"chatter{n}")
        while time.monotonic() < self.until:
            peer = subprocess.Popen(
                [self.chat, "--home", home, "connect", f"127.0.0.1:{self.port}", "--accept-new",
                 "--name", f"chatter{n}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            stay = time.monotonic() + random.uniform(30, 90)
            try:
                while time.monotonic() < min(stay, self.until) and peer.poll() is None:
                    peer.stdin.write(f"line from chatter {n} at {time.time():.0f}\n".encode())
                    peer.stdin.flush()
                    time.sleep(1)
                peer.stdin.close()
            except BrokenPipeError:
                pass
            code = peer.wait()
            self.count("sessions" if code == 0 else "busy" if code == 3 else "failed")
            time.sleep(random.uniform(1, 5))

    def sender(self):
        home = self.home("sender")
        line = os.path.join(self.dir, "line")
        with open(line, "w") as f:
            f.write("one line\n")
        while time.monotonic() < self.until:
            code = subprocess.run(
                [self.chat, "--home", home, "send", f"127.0.0.1:{self.port}", "--accept-new", "--file", line],
                capture_output=True,
            ).returncode
            self.count("sends" if code == 0 else "busy" if code == 3 else "failed")
            time.sleep(2)

    def flood(self):
        held = []
        while time.monotonic() < self.until:
            now = time.monotonic()
            for s, until in [h for h in held if h[1] < now]:
                s.close()
            held = [h for h in held if h[1] >= now]
            s = socket.socket()
            try:
                s.bind((f"127.0.0.{random.randint(2, 9)}", 0))
                s.connect(("127.0.0.1", self.port))
                kind = random.choice(["silent", "hello", "garbage"])
                if kind == "hello":
                    s.sendall(HELLO)
                elif kind == "garbage":
                    s.sendall(os.urandom(64))
                held.append((s, now + random.uniform(0, 6)))
                self.count("floods")
            except OSError:
                s.close()
            time.sleep(0.1)
        for s, _ in held:
            s.close()

    def run(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.start_server()
        time.sleep(2)
        workers = [threading.Thread(target=self.chatter, args=(n,)) for n in range(self.chatters)]
        workers += [threading.Thread(target=self.sender), threading.Thread(target=self.flood)]
        for w in workers:
            w.start()
        samples = []
        started = time.monotonic()
        print(f"soak: {'several conversations' if self.several else 'one conversation at a time'}, "
              f"{self.chatters} chatters, until {(self.until - started) / 60:.0f} min")
        print(" time   RSS KiB  fds  threads  delivered")
        while time.monotonic() < self.until:
            time.sleep(10)
            rss, fds, threads = sample(self.server.pid)
            t = time.monotonic() - started
            samples.append((t, rss, fds, threads))
            print(f"{t:5.0f}  {rss:8d}  {fds:3d}  {threads:7d}  {self.delivered:9d}")
            sys.stdout.flush()
        for w in workers:
            w.join()
        # Let the last sessions end, then look once more.
        time.sleep(8)
        rss, fds, threads = sample(self.server.pid)
        early = [s for s in samples if 60 <= s[0] < 120] or samples[:6]
        late = samples[-6:]
        avg = lambda rows, i: sum(r[i] for r in rows) / len(rows)
        print(f"after the load: RSS {rss} KiB, {fds} descriptors, {threads} threads")
        print(f"RSS: minute 2 average {avg(early, 1):.0f} KiB, last minute {avg(late, 1):.0f} KiB; "
              f"descriptors {avg(early, 2):.1f} -> {avg(late, 2):.1f}; threads {avg(early, 3):.1f} -> {avg(late, 3):.1f}; "
              f"peak RSS {status(self.server.pid, 'VmHWM:')} KiB")
        print(f"delivered {self.delivered} messages; " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        self.server.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chat")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--chatters", type=int, default=8)
    args = parser.parse_args()
    Soak(os.path.abspath(args.chat), args.minutes, args.chatters).run()


if __name__ == "__main__":
    main()
