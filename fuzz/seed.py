#!/usr/bin/env python3
"""Builds the seed corpora of the fuzz targets under fuzz/corpus/<target>/.

The seeds come from the real traffic of docs/vectors/session-v2.toml and from
known_peers.example.toml, shaped the way each entry point of src/fuzzing.rs
reads its input. Python 3.11+ standard library only.

Seed files are named `seed-*`, so they are easy to tell from what libFuzzer
adds (SHA-1 names); running this again rewrites the seeds and leaves the rest
of each corpus alone.

    python3 fuzz/seed.py [--out DIR]
"""

import argparse
import struct
import sys
import tomllib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
VECTORS = ROOT / "docs" / "vectors" / "session-v2.toml"
EXAMPLE_PEERS = ROOT / "known_peers.example.toml"
RELAY_VECTORS = ROOT / "docs" / "vectors" / "relay.toml"

TARGETS = [
    "frame_decoder",
    "handshake_messages",
    "record_opener",
    "file_records",
    "transfer_receiver",
    "responder",
    "initiator",
    "known_peers",
    "sanitizer",
    "relay_line",
]

# Frame type bytes (src/wire/mod.rs).
CLIENT_HELLO, SERVER_HELLO, KEY_TRANSPORT = 0x01, 0x02, 0x03
REFUSAL = 0x0F
MESSAGE_DATA, KEEPALIVE = 0x11, 0x14
KEY_UPDATE = 0x17

# file_records and transfer_receiver pick a record type by `byte % 9`
# (0x17 + it: KEY_UPDATE, FILE_OFFER, ..., FILE_CANCEL; src/fuzzing.rs).
FILE_RECORD_NAMES = [
    "KEY_UPDATE",
    "FILE_OFFER",
    "FILE_ACCEPT",
    "FILE_REJECT",
    "FILE_START",
    "FILE_DATA",
    "FILE_END",
    "FILE_VERDICT",
    "FILE_CANCEL",
]

# handshake_messages picks a codec by `first byte % 9` (src/fuzzing.rs).
SEL_CLIENT_HELLO = 0
SEL_SERVER_HELLO = 1
SEL_KEY_TRANSPORT = 2
SEL_IDENTITY = 3
SEL_AUTH = 4
SEL_REFUSAL = 5
SEL_MESSAGE_START = 6
SEL_RECEIPT = 7
SEL_CLOSE = 8

# Which codec decodes the plaintext of each encrypted frame of the vectors.
# MESSAGE_DATA, MESSAGE_END, KEEPALIVE and DONE have no codec.
PLAINTEXT_SELECTOR = {
    "ResponderIdentity": SEL_IDENTITY,
    "InitiatorIdentity": SEL_IDENTITY,
    "ResponderAuth": SEL_AUTH,
    "InitiatorAuth": SEL_AUTH,
    "MESSAGE_START": SEL_MESSAGE_START,
    "RECEIPT": SEL_RECEIPT,
    "CLOSE": SEL_CLOSE,
}
PLAINTEXT_FRAME_SELECTOR = {
    "ClientHello": SEL_CLIENT_HELLO,
    "ServerHello": SEL_SERVER_HELLO,
    "KeyTransport": SEL_KEY_TRANSPORT,
}
HANDSHAKE_NAMES = {
    "ClientHello",
    "ServerHello",
    "KeyTransport",
    "ResponderIdentity",
    "ResponderAuth",
    "InitiatorIdentity",
    "InitiatorAuth",
}


def frame(typ: int, body: bytes) -> bytes:
    """A plaintext frame: length (type + body) as u32 BE, type, body."""
    return struct.pack(">IB", len(body) + 1, typ) + body


def opaque16(field: bytes) -> bytes:
    return struct.pack(">H", len(field)) + field


def opaque8(field: bytes) -> bytes:
    return bytes([len(field)]) + field


def frame_decoder_limit_byte(frame_len: int) -> int:
    """The smallest first byte whose limit (1 + b * 64) admits the frame."""
    length = frame_len - 4
    return max(0, -(-(length - 1) // 64))


class Corpus:
    def __init__(self, out: Path):
        self.out = out
        self.counts = {t: 0 for t in TARGETS}

    def add(self, target: str, name: str, data: bytes) -> None:
        assert target in self.counts, target
        folder = self.out / target
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        (folder / f"seed-{safe}").write_bytes(data)
        self.counts[target] += 1


def load_frames():
    with VECTORS.open("rb") as f:
        vectors = tomllib.load(f)
    frames = []
    for entry in vectors["frame"]:
        frames.append(
            {
                "index": entry["index"],
                "name": entry["name"],
                "from": entry["from"],
                "frame": bytes.fromhex(entry["frame"]),
                "plaintext": bytes.fromhex(entry["plaintext"]) if "plaintext" in entry else None,
            }
        )
    return frames


def label(f) -> str:
    return f"{f['index']:02d}-{f['name']}"


def seed_frame_decoder(c: Corpus, frames) -> None:
    stream = b"".join(f["frame"] for f in frames)
    c.add("frame_decoder", "all-frames-limit-max", b"\xff" + stream)
    for f in frames:
        fr = f["frame"]
        c.add("frame_decoder", f"{label(f)}-limit-max", b"\xff" + fr)
        exact = frame_decoder_limit_byte(len(fr))
        if exact <= 0xFF:
            c.add("frame_decoder", f"{label(f)}-limit-just-enough", bytes([exact]) + fr)
        if exact > 0:
            c.add("frame_decoder", f"{label(f)}-limit-too-small", bytes([exact - 1]) + fr)
    for who in ("initiator", "responder"):
        side = b"".join(f["frame"] for f in frames if f["from"] == who)
        c.add("frame_decoder", f"from-{who}-limit-max", b"\xff" + side)
    c.add("frame_decoder", "zero-length", b"\x10" + b"\x00\x00\x00\x00" + b"\x14")
    c.add("frame_decoder", "huge-length", b"\x10" + b"\xff\xff\xff\xff" + b"\x14" * 8)
    c.add("frame_decoder", "keepalives", b"\x00" + frame(KEEPALIVE, b"") * 6)
    c.add("frame_decoder", "partial-header", b"\x01" + b"\x00\x00")


def seed_handshake_messages(c: Corpus, frames) -> None:
    for f in frames:
        if f["name"] in PLAINTEXT_FRAME_SELECTOR:
            body = f["frame"][5:]
            c.add("handshake_messages", label(f), bytes([PLAINTEXT_FRAME_SELECTOR[f["name"]]]) + body)
        elif f["name"] in PLAINTEXT_SELECTOR and f["plaintext"] is not None:
            c.add("handshake_messages", label(f), bytes([PLAINTEXT_SELECTOR[f["name"]]]) + f["plaintext"])
    # Refusal has no frame in the vectors: reason, version.
    for reason, version in [(1, 1), (1, 2), (2, 1), (0x7F, 1)]:
        c.add("handshake_messages", f"refusal-{reason}-{version}", bytes([SEL_REFUSAL, reason, version]))
    # Every CLOSE reason code, and a few edge cases of the other codecs.
    for reason in (0, 1, 2, 3, 4, 0xFF):
        c.add("handshake_messages", f"close-{reason}", bytes([SEL_CLOSE, reason]))
    c.add("handshake_messages", "client-hello-v1", bytes([SEL_CLIENT_HELLO]) + b"chat\x01" + b"\x00" * 32)
    c.add("handshake_messages", "client-hello-not-chat", bytes([SEL_CLIENT_HELLO]) + b"GET / HTTP/1.1\r\n")
    c.add("handshake_messages", "identity-short", bytes([SEL_IDENTITY]) + opaque16(b"\x30\x00") + opaque8(b"eve"))
    c.add("handshake_messages", "identity-empty-nick", bytes([SEL_IDENTITY]) + opaque16(b"") + opaque8(b""))
    c.add("handshake_messages", "identity-control-nick", bytes([SEL_IDENTITY]) + opaque16(b"") + opaque8(b"e\x1bve"))
    c.add("handshake_messages", "receipt-max", bytes([SEL_RECEIPT]) + b"\xff" * 8)
    c.add("handshake_messages", "message-start-max", bytes([SEL_MESSAGE_START]) + b"\xff" * 16)


def seed_record_opener(c: Corpus, frames) -> None:
    # The first byte is a script: bit 0 seals a 5-byte message (chunks of 3),
    # bit 1 starts a message of length `script`, bit 2 sends DONE; the rest
    # of the input follows those authentic records. The fixed keys are public
    # (src/fuzzing.rs), but records sealed with them must NOT be put in the
    # rest of the input: the target asserts that text after the authentic
    # prefix never decrypts, which a correctly sealed record would violate.
    # So the rest here is real traffic under other keys, and malformed frames.
    records = [f for f in frames if f["name"] not in HANDSHAKE_NAMES]
    from_initiator = b"".join(f["frame"] for f in records if f["from"] == "initiator")
    first = records[0]["frame"] if records else b""
    for script in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0F, 0x40 | 2, 0xFF):
        c.add("record_opener", f"script-{script:02x}", bytes([script]))
        c.add("record_opener", f"script-{script:02x}-records", bytes([script]) + from_initiator)
    for f in records:
        c.add("record_opener", f"script-07-{label(f)}", b"\x07" + f["frame"])
    c.add("record_opener", "script-01-truncated", b"\x01" + first[: len(first) // 2])
    c.add("record_opener", "script-01-zero-length", b"\x01" + b"\x00\x00\x00\x00")
    c.add("record_opener", "script-01-too-large", b"\x01" + b"\x7f\xff\xff\xff\x11")
    c.add("record_opener", "script-03-short-record", b"\x03" + frame(MESSAGE_DATA, b"\x00" * 8))
    c.add("record_opener", "script-00-tag-only", b"\x00" + frame(KEEPALIVE, b"\x00" * 16))


def seed_file_records(c: Corpus, frames) -> None:
    for f in frames:
        if f["name"] in FILE_RECORD_NAMES and f["plaintext"] is not None:
            selector = FILE_RECORD_NAMES.index(f["name"])
            c.add("file_records", label(f), bytes([selector]) + f["plaintext"])
    offer = lambda *paths: (
        b"\x00" * 7 + b"\x01" + struct.pack(">H", len(paths))
        + b"".join(b"\x00" * 8 + bytes([len(p)]) + b"".join(opaque8(n) for n in p) for p in paths)
    )
    for name, paths in {
        "dotdot": [[b"..", b"x"]],
        "device": [[b"CON.txt"]],
        "bidi": [["a\u202eb".encode()]],
        "not-nfc": [["e\u0301".encode()]],
        "duplicate-case": [[b"A"], [b"a"]],
        "file-and-folder": [[b"d"], [b"d", b"f"]],
        "deep": [[b"d"] * 33],
    }.items():
        c.add("file_records", f"offer-{name}", bytes([1]) + offer(*paths))


def seed_transfer_receiver(c: Corpus, frames) -> None:
    def item(name: str, body: bytes) -> bytes:
        return bytes([FILE_RECORD_NAMES.index(name)]) + struct.pack(">H", len(body)) + body

    accept = lambda held: item("KEY_UPDATE", bytes([0, 1, held]))
    received = [
        f for f in frames
        if f["from"] == "initiator" and f["name"] in FILE_RECORD_NAMES[1:] and f["plaintext"] is not None
    ]
    offer = [item(f["name"], f["plaintext"]) for f in received if f["name"] == "FILE_OFFER"]
    rest = [item(f["name"], f["plaintext"]) for f in received if f["name"] != "FILE_OFFER"]
    c.add("transfer_receiver", "vectors-accept-resume", b"".join(offer + [accept(16)] + rest))
    c.add("transfer_receiver", "vectors-pending", b"".join(offer + rest))
    c.add("transfer_receiver", "vectors-expire", b"".join(offer + [item("KEY_UPDATE", bytes([3]))] + rest))
    cancel = item("KEY_UPDATE", bytes([2, 1]))
    c.add("transfer_receiver", "vectors-cancel", b"".join(offer + [accept(16)] + rest[:2] + [cancel] + rest[2:]))
    end = item("KEY_UPDATE", bytes([4]))
    c.add("transfer_receiver", "vectors-session-ends", b"".join(offer + [accept(16)] + rest[:2] + [end]))


def seed_sessions(c: Corpus, frames) -> None:
    def stream(who, names=None):
        return b"".join(
            f["frame"] for f in frames if f["from"] == who and (names is None or f["name"] in names)
        )

    # responder: the initiator's frames as it sends them.
    hs_i = [f for f in frames if f["from"] == "initiator" and f["name"] in HANDSHAKE_NAMES]
    for n in range(1, len(hs_i) + 1):
        c.add("responder", f"handshake-first-{n}", b"".join(f["frame"] for f in hs_i[:n]))
    c.add("responder", "whole-session", stream("initiator"))
    hello = hs_i[0]["frame"]
    c.add("responder", "client-hello-v1", frame(CLIENT_HELLO, b"chat\x01" + hello[10:]))
    c.add("responder", "client-hello-not-chat", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    if len(hs_i) > 1:
        kt = hs_i[1]["frame"]
        c.add("responder", "key-transport-short", hello + frame(KEY_TRANSPORT, opaque16(kt[7:40])))

    # initiator: the responder's frames as it sends them.
    hs_r = [f for f in frames if f["from"] == "responder" and f["name"] in HANDSHAKE_NAMES]
    for n in range(1, len(hs_r) + 1):
        c.add("initiator", f"handshake-first-{n}", b"".join(f["frame"] for f in hs_r[:n]))
    c.add("initiator", "whole-session", stream("responder"))
    for reason, version in [(1, 1), (1, 2), (2, 1), (9, 1)]:
        c.add("initiator", f"refusal-{reason}-{version}", frame(REFUSAL, bytes([reason, version])))
    # A ServerHello offering the responder's identity key (not a 2048-bit
    # transient key), taken from the ResponderIdentity plaintext.
    server_hello = hs_r[0]["frame"][5:] if hs_r else b""
    ident = next((f for f in hs_r if f["name"] == "ResponderIdentity"), None)
    if server_hello and ident and ident["plaintext"]:
        (n,) = struct.unpack(">H", ident["plaintext"][:2])
        identity_key = ident["plaintext"][2 : 2 + n]
        c.add("initiator", "server-hello-wrong-key-size", frame(SERVER_HELLO, server_hello[:33] + opaque16(identity_key)))
        c.add("initiator", "server-hello-empty-key", frame(SERVER_HELLO, server_hello[:33] + opaque16(b"")))
        c.add("initiator", "server-hello-v1", frame(SERVER_HELLO, b"\x01" + server_hello[1:]))


def seed_known_peers(c: Corpus) -> None:
    text = EXAMPLE_PEERS.read_text(encoding="utf-8")
    c.add("known_peers", "example", text.encode())
    c.add("known_peers", "empty", b"")
    c.add("known_peers", "comment-only", b"# nothing pinned yet\n")
    no_comments = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")) + "\n"
    c.add("known_peers", "example-no-comments", no_comments.encode())
    crlf = text.replace("\n", "\r\n")
    c.add("known_peers", "example-crlf", crlf.encode())
    c.add("known_peers", "duplicate-name", text.replace('name = "bob"', 'name = "alice"').encode())
    c.add(
        "known_peers",
        "duplicate-fingerprint",
        text.replace(
            "SHA256:ulwfyDg0EHtz1glB9KvWaLabsicSc23388HbDJsSFac",
            "SHA256:OWsDce7mDnasf/dtSF7pWeZNAUlE5amfGsXq+XrOVs8",
        ).encode(),
    )
    c.add("known_peers", "bad-name", text.replace('name = "bob"', 'name = "b o b"').encode())
    c.add("known_peers", "unicode-name", text.replace('name = "bob"', 'name = "b\u00f6b"').encode())
    c.add("known_peers", "bad-fingerprint", text.replace("SHA256:ulwfy", "SHA1:ulwfy").encode())
    c.add("known_peers", "short-fingerprint", text.replace("SHA256:ulwfyDg0EHtz1glB9KvWaLabsicSc23388HbDJsSFac", "SHA256:ulwfy").encode())
    c.add("known_peers", "bad-address", text.replace('"alice.example.org:7777"', '"alice.example.org"').encode())
    c.add("known_peers", "bad-ipv6", text.replace('"[2001:db8::17]:7777"', '"[2001:db8::17:7777"').encode())
    c.add("known_peers", "port-out-of-range", text.replace('"alice.example.org:7777"', '"alice.example.org:77777"').encode())
    c.add("known_peers", "unknown-field", text.replace('comment = "Alice\'s laptop"', 'colour = "red"').encode())
    c.add("known_peers", "missing-added", "\n".join(l for l in text.splitlines() if not l.startswith("added")).encode())
    c.add("known_peers", "local-date", text.replace("2026-11-20T18:40:12Z", "2026-11-20").encode())
    c.add("known_peers", "syntax-error-last-line", (text + "[[peer\n").encode())
    c.add("known_peers", "syntax-error-no-newline", (text + "name = ").encode())
    c.add("known_peers", "inline-tables", b'peer = [{name = "x", fingerprint = "SHA256:ulwfyDg0EHtz1glB9KvWaLabsicSc23388HbDJsSFac", added = 2026-01-01T00:00:00Z}]\n')
    c.add("known_peers", "peer-not-array", b'[peer]\nname = "x"\n')


def seed_sanitizer(c: Corpus) -> None:
    samples = {
        "plain": b"Hello, Bob! This message spans three records.",
        "csi-clear": b"\x1b[2J\x1b[H",
        "csi-colour": b"\x1b[31mred\x1b[0m",
        "osc-title-bel": b"\x1b]0;pwned\x07",
        "osc-title-st": b"\x1b]2;pwned\x1b\\",
        "osc8-link": b"\x1b]8;;https://example.org\x1b\\link\x1b]8;;\x1b\\",
        "c1-csi": "\u009b2J".encode(),
        "c1-raw-bytes": b"\x9b2J\x9d0;x\x9c",
        "del-bs-cr": b"abc\x7f\x08\x08\rX",
        "newline-tab": b"a\tb\nc\r\n",
        "nul": b"a\x00b",
        "bidi-override": "abc\u202eevil\u202c".encode(),
        "bidi-isolates": "\u2066\u2067\u2068x\u2069".encode(),
        "bidi-marks": "\u200e\u200f\u061c".encode(),
        "invisible": "b\u200bo\u200cb\u200d\u2060\ufeff\u00ad".encode(),
        "invalid-utf8": b"\xff\xfe\xc0\x80\xed\xa0\x80",
        "truncated-utf8": b"ok\xe2\x80",
        "emoji-zwj": "\U0001f469\u200d\U0001f4bb".encode(),
        "line-separators": "a\u2028b\u2029c\u0085d".encode(),
        "mixed": b"\x1b[2J\xc2\x9b\xe2\x80\xae",
    }
    for name, data in samples.items():
        c.add("sanitizer", name, data)


def seed_relay_line(c: Corpus) -> None:
    vectors = tomllib.loads(RELAY_VECTORS.read_text())
    for i, case in enumerate(vectors["request"]):
        line = case["line"].encode()
        c.add("relay_line", f"request-{i}", line)
        c.add("relay_line", f"request-{i}-cut", line[:-1])
        c.add("relay_line", f"request-{i}-early", line + b"\x16\x03")
    for i, case in enumerate(vectors["bad"]):
        c.add("relay_line", f"bad-{i}", case["line"].encode())
    for word, line in vectors["answers"].items():
        c.add("relay_line", f"answer-{word}", line.encode())
    c.add("relay_line", "too-long", b"chat-relay/1 " + b"a" * 120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FUZZ / "corpus", help="corpus root (default: fuzz/corpus)")
    args = parser.parse_args()
    frames = load_frames()
    c = Corpus(args.out)
    seed_frame_decoder(c, frames)
    seed_handshake_messages(c, frames)
    seed_record_opener(c, frames)
    seed_file_records(c, frames)
    seed_transfer_receiver(c, frames)
    seed_sessions(c, frames)
    seed_known_peers(c)
    seed_sanitizer(c)
    seed_relay_line(c)
    for target in TARGETS:
        print(f"{target}: {c.counts[target]} seeds in {args.out / target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
