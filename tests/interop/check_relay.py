#!/usr/bin/env python3
"""Checks docs/vectors/relay.toml against docs/PROTOCOL.md, section 16 (Relay),
written from the spec alone: the room id derivation, the request line grammar,
and the answers. Standard library only (Python 3.11+).

    python3 tests/interop/check_relay.py docs/vectors
"""

import hashlib
import re
import sys
import tomllib
from pathlib import Path

# Section 16.1: room_id = SHA-256("chat v2 relay room" || R).
LABEL = b"chat v2 relay room"

# Section 16.2: the whole line, LF included, and nothing after it.
LINE = re.compile(rb"chat-relay/1 (serve|connect) ([0-9a-f]{64}) ([0-9a-f]{16})\n\Z")
MAX_LINE = 128

# Section 16.3.
ANSWERS = {"ok", "full", "busy", "lonely", "replaced", "bad"}

passed = 0


def check(condition: bool, what: str) -> None:
    global passed
    if not condition:
        print(f"FAIL {what}")
        sys.exit(1)
    passed += 1
    print(f"PASS {what}")


def accepted(line: bytes) -> bool:
    """What a relay does with the first bytes of a connection (section 16.2)."""
    end = line.find(b"\n")
    if end < 0 or end >= MAX_LINE:
        return False
    if end + 1 < len(line):
        return False  # bytes after the LF, before `ok`
    return LINE.match(line) is not None


def main() -> None:
    vectors = tomllib.loads((Path(sys.argv[1]) / "relay.toml").read_text())
    room = vectors["room"]
    check(room["label"].encode() == LABEL, "the label is the spec's")
    for case in [room, *room.get("more", [])]:
        secret = bytes.fromhex(case["secret"])
        check(len(secret) == 32, "a room secret is 32 bytes")
        check(hashlib.sha256(LABEL + secret).hexdigest() == case["room_id"], f"room id of {case['secret'][:8]}...")
    for case in vectors["request"]:
        line = case["line"].encode()
        check(accepted(line), f"{case['role']} line is accepted")
        check(len(line) == {"serve": 101, "connect": 103}[case["role"]], f"{case['role']} line length")
        m = LINE.match(line)
        check(m.group(1).decode() == case["role"] and m.group(2).decode() == room["room_id"]
              and m.group(3).decode() == case["side"], f"{case['role']} line fields")
    for case in vectors["bad"]:
        check(not accepted(case["line"].encode()), f"refused: {case['why']}")
    answers = vectors["answers"]
    check(set(answers) == ANSWERS, "the six answers")
    for word, line in answers.items():
        check(line == word + "\n", f"answer {word}")
    print(f"all checks passed ({passed})")


if __name__ == "__main__":
    main()
