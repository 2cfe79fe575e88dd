#!/usr/bin/env python3
"""An independent implementation of the chat protocol, version 2.

Written from docs/PROTOCOL.md, docs/FINGERPRINTS.md and docs/vectors/ alone
(no code of the project was read), to check that the specification is precise
enough to implement from. It needs Python 3.11 and the `cryptography` package.

    python3 tests/interop/peer_v2.py check [--vectors DIR]
        Reproduce docs/vectors/session-v2.toml (both roles, byte for byte),
        names.toml and fingerprints.toml. Prints PASS/FAIL lines; exit 1 on
        any FAIL.

    python3 tests/interop/peer_v2.py serve --port 0 --key PEM --save-dir DIR
            [--nickname NAME] [--partial-dir DIR] [--done-at peer-done|start|never]
            [--max-message SIZE] [--rekey-bytes SIZE]
        A responder for one connection: prints `listening on 127.0.0.1:PORT`,
        then one JSON object per line per event; accepts every offer of files
        whose names pass section 9.3, saves the files in DIR, answers messages
        with receipts, ends the session as section 8.4/8.5 say. Exit 0 if
        everything was received intact, 1 otherwise.

    python3 tests/interop/peer_v2.py send HOST:PORT --key PEM [--nickname N]
            [--message TEXT]... [--file PATH]... [--chunk N] [--rekey-bytes SIZE]
            [--expect SHA256:...]
        An initiator (for testing `serve` and `chat serve`): sends the
        messages and offers the files, waits for receipts and verdicts, ends
        the session. Exit 0 if everything was delivered and saved.

The library part (everything above `# ==== vector check`) is sans-I/O: frames
in, frames and events out, randomness and the clock injected, files through a
store object. Every error is a ChatError naming its kind (section 11) and the
section whose rule was broken.

Where the spec left a choice open, the choice made here is listed, with the
section, in tests/interop/peer_v2-notes.md.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import json
import os
import select
import socket
import struct
import sys
import tempfile
import time
import tomllib
import unicodedata
from collections import deque
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# ---------------------------------------------------------------- section 4.1

CLIENT_HELLO = 0x01
SERVER_HELLO = 0x02
KEY_TRANSPORT = 0x03
RESPONDER_IDENTITY = 0x04
RESPONDER_AUTH = 0x05
INITIATOR_IDENTITY = 0x06
INITIATOR_AUTH = 0x07
REFUSAL = 0x0F
MESSAGE_START = 0x10
MESSAGE_DATA = 0x11
MESSAGE_END = 0x12
RECEIPT = 0x13
KEEPALIVE = 0x14
CLOSE = 0x15
DONE = 0x16
KEY_UPDATE = 0x17
FILE_OFFER = 0x18
FILE_ACCEPT = 0x19
FILE_REJECT = 0x1A
FILE_START = 0x1B
FILE_DATA = 0x1C
FILE_END = 0x1D
FILE_VERDICT = 0x1E
FILE_CANCEL = 0x1F

TYPE_NAMES = {
    0x01: "ClientHello",
    0x02: "ServerHello",
    0x03: "KeyTransport",
    0x04: "ResponderIdentity",
    0x05: "ResponderAuth",
    0x06: "InitiatorIdentity",
    0x07: "InitiatorAuth",
    0x0F: "Refusal",
    0x10: "MESSAGE_START",
    0x11: "MESSAGE_DATA",
    0x12: "MESSAGE_END",
    0x13: "RECEIPT",
    0x14: "KEEPALIVE",
    0x15: "CLOSE",
    0x16: "DONE",
    0x17: "KEY_UPDATE",
    0x18: "FILE_OFFER",
    0x19: "FILE_ACCEPT",
    0x1A: "FILE_REJECT",
    0x1B: "FILE_START",
    0x1C: "FILE_DATA",
    0x1D: "FILE_END",
    0x1E: "FILE_VERDICT",
    0x1F: "FILE_CANCEL",
}

MAGIC = b"chat"
VERSION = 2
HANDSHAKE_LIMIT = 4096  # section 12
MAX_CHUNK = 262_144  # section 8, 9.2, 12
APP_LIMIT = 1 + MAX_CHUNK + 16  # 262 161
TAG = 16
OAEP_LABEL = b"chat v1 session secret"
U64_MAX = 2**64 - 1

CLOSE_GOODBYE, CLOSE_UNTRUSTED, CLOSE_TOO_LARGE, CLOSE_BUSY, CLOSE_PROTOCOL = range(5)
REFUSAL_VERSION, REFUSAL_BUSY = 1, 2
REJECT_DECLINED, REJECT_EXPIRED, REJECT_UNSAFE, REJECT_TOO_LARGE, REJECT_NOT_ACCEPTING = 1, 2, 3, 4, 5
REJECT_NAME_TAKEN = 6  # 9.2 (as revised, notes item 21)
VERDICT_SAVED, VERDICT_MISMATCH, VERDICT_WRITE = 0, 1, 2
VERDICT_NAME_TAKEN = 3  # 9.2, 9.7 (as revised, notes item 21)
CANCEL_ANSWER, CANCEL_USER, CANCEL_READ, CANCEL_WRITE = 0, 1, 2, 3

# ------------------------------------------------------------------ section 11


class ChatError(Exception):
    """An error that ends the session, by kind (the table of section 11).

    `section` names the rule that was broken; `send` holds the frames to
    write before closing (a Refusal, or a CLOSE record)."""

    KINDS = {
        "not-a-chat-peer",
        "unsupported-version",
        "malformed",
        "frame-too-long",
        "authentication-failure",
        "protocol-violation",
        "too-large",
        "not-trusted",
        "dead-peer",
        "session-limit",
        # not errors of the protocol, but ends of a session the caller must report:
        "refused",  # a Refusal (5.3)
        "abandoned",  # a CLOSE during the handshake (5.9)
        "cut",  # the connection ended without an authenticated CLOSE (8.5)
    }

    def __init__(self, kind: str, section: str, detail: str, send: list[bytes] | None = None):
        assert kind in self.KINDS, kind
        self.kind = kind
        self.section = section
        self.detail = detail
        self.send = send or []
        super().__init__(f"{kind} (section {section}): {detail}")


class Decoder:
    """Strict decoding of one body (section 2): each length is checked against
    what remains, and `end()` rejects trailing bytes."""

    def __init__(self, data: bytes, what: str, section: str, kind: str = "protocol-violation"):
        self.data = data
        self.pos = 0
        self.what = what
        self.section = section
        self.kind = kind

    def fail(self, detail: str):
        raise ChatError(self.kind, self.section, f"{self.what}: {detail}")

    def take(self, n: int, field_name: str) -> bytes:
        if len(self.data) - self.pos < n:
            self.fail(f"truncated at {field_name} (needs {n} bytes, {len(self.data) - self.pos} remain)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, f: str) -> int:
        return self.take(1, f)[0]

    def u16(self, f: str) -> int:
        return struct.unpack(">H", self.take(2, f))[0]

    def u64(self, f: str) -> int:
        return struct.unpack(">Q", self.take(8, f))[0]

    def opaque8(self, f: str) -> bytes:
        return self.take(self.u8(f + " length"), f)

    def opaque16(self, f: str) -> bytes:
        return self.take(self.u16(f + " length"), f)

    def end(self):
        if self.pos != len(self.data):
            self.fail(f"{len(self.data) - self.pos} trailing bytes after the last field")


def u16(x: int) -> bytes:
    return struct.pack(">H", x)


def u64(x: int) -> bytes:
    return struct.pack(">Q", x)


def opaque8(b: bytes) -> bytes:
    assert len(b) < 256
    return bytes([len(b)]) + b


def opaque16(b: bytes) -> bytes:
    assert len(b) < 65536
    return u16(len(b)) + b


# ------------------------------------------------------------------- section 4


def frame(t: int, body: bytes) -> bytes:
    return struct.pack(">IB", 1 + len(body), t) + body


def split_frame(raw: bytes) -> tuple[int, bytes]:
    length, t = struct.unpack(">IB", raw[:5])
    assert length == len(raw) - 4
    return t, raw[5:]


class FrameTooLong(Exception):
    def __init__(self, length: int, limit: int):
        self.length = length
        self.limit = limit


class FrameReader:
    """Cuts a byte stream into frames. The length is checked against the
    current limit from the header alone, before the body is buffered."""

    def __init__(self, limit: int = HANDSHAKE_LIMIT):
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes):
        self.buf += data

    def next(self) -> tuple[int, bytes] | None:
        if len(self.buf) < 4:
            return None
        (length,) = struct.unpack(">I", self.buf[:4])
        if length == 0 or length > self.limit:
            raise FrameTooLong(length, self.limit)
        if len(self.buf) < 4 + length:
            return None
        t = self.buf[4]
        body = bytes(self.buf[5 : 4 + length])
        del self.buf[: 4 + length]
        return t, body


# ------------------------------------------------------------------- section 3


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def spki_der(key) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def modulus_len(key) -> int:
    return (key.key_size + 7) // 8


def parse_rsa_spki(der: bytes, *, what: str, section: str, kind: str, transient: bool) -> rsa.RSAPublicKey:
    """Section 3: canonical DER SubjectPublicKeyInfo, rsaEncryption with NULL
    parameters, exponent 65537, 2048..4096 bits (exactly 2048: transient)."""
    try:
        key = serialization.load_der_public_key(der)
    except Exception as e:  # noqa: BLE001 (any parse failure is the same error)
        raise ChatError(kind, section, f"{what}: not a DER SubjectPublicKeyInfo ({e})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ChatError(kind, section, f"{what}: not an RSA key")
    if spki_der(key) != der:
        raise ChatError(kind, "3", f"{what}: not the canonical DER of an rsaEncryption SubjectPublicKeyInfo")
    if key.public_numbers().e != 65537:
        raise ChatError(kind, "3", f"{what}: public exponent {key.public_numbers().e}, not 65537")
    bits = key.key_size
    if transient and bits != 2048:
        raise ChatError(kind, "3", f"{what}: transient key of {bits} bits, not 2048")
    if not transient and not 2048 <= bits <= 4096:
        raise ChatError(kind, "3", f"{what}: identity key of {bits} bits, not 2048 to 4096")
    return key


def check_own_identity(key: rsa.RSAPrivateKey):
    bits = key.key_size
    if key.public_key().public_numbers().e != 65537 or not 2048 <= bits <= 4096:
        raise ValueError(f"our identity key must be RSA of 2048 to 4096 bits with exponent 65537 (section 3), not {bits} bits")


def mgf1(seed: bytes, n: int) -> bytes:
    out, c = b"", 0
    while len(out) < n:
        out += sha256(seed + c.to_bytes(4, "big"))
        c += 1
    return out[:n]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def oaep_encrypt(key: rsa.RSAPublicKey, msg: bytes, seed: bytes | None = None) -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017 7.1.1), SHA-256, MGF1-SHA-256, label of 5.4.
    With `seed` given the output is reproducible (test vectors)."""
    if seed is None:
        return key.encrypt(
            msg, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=OAEP_LABEL)
        )
    n, e = key.public_numbers().n, key.public_numbers().e
    k, hl = modulus_len(key), 32
    assert len(seed) == hl and len(msg) <= k - 2 * hl - 2
    db = sha256(OAEP_LABEL) + b"\0" * (k - len(msg) - 2 * hl - 2) + b"\x01" + msg
    masked_db = xor(db, mgf1(seed, k - hl - 1))
    masked_seed = xor(seed, mgf1(masked_db, hl))
    em = b"\0" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


def oaep_decrypt(key: rsa.RSAPrivateKey, wrapped: bytes) -> bytes:
    return key.decrypt(
        wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=OAEP_LABEL)
    )


def pss_sign(key: rsa.RSAPrivateKey, message: bytes, salt: bytes | None = None) -> bytes:
    """RSASSA-PSS-SIGN (RFC 8017 8.1.1), SHA-256, MGF1-SHA-256, salt 32.
    With `salt` given the output is reproducible (test vectors)."""
    if salt is None:
        return key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    assert len(salt) == 32
    pub = key.public_key().public_numbers()
    mod_bits = key.key_size
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    h = sha256(b"\0" * 8 + sha256(message) + salt)
    db = b"\0" * (em_len - 32 - 32 - 2) + b"\x01" + salt
    masked = bytearray(xor(db, mgf1(h, em_len - 33)))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    em = bytes(masked) + h + b"\xbc"
    d = key.private_numbers().d
    return pow(int.from_bytes(em, "big"), d, pub.n).to_bytes(modulus_len(key), "big")


def pss_verify(key: rsa.RSAPublicKey, message: bytes, sig: bytes) -> bool:
    """EMSA-PSS-VERIFY with the salt length fixed at 32 (section 3: a verifier
    must reject any other), done by hand, and then by the library too."""
    n, e = key.public_numbers().n, key.public_numbers().e
    if len(sig) != modulus_len(key):
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    em_bits = key.key_size - 1
    em_len = (em_bits + 7) // 8
    m = pow(s, e, n)
    if m >= 1 << (8 * em_len):
        return False
    em = m.to_bytes(em_len, "big")
    if em[-1] != 0xBC:
        return False
    masked, h = em[: em_len - 33], em[em_len - 33 : em_len - 1]
    top = 8 * em_len - em_bits
    if masked[0] & (0xFF << (8 - top)) & 0xFF:
        return False
    db = bytearray(xor(masked, mgf1(h, em_len - 33)))
    db[0] &= 0xFF >> top
    ps_len = em_len - 32 - 32 - 2
    if any(db[:ps_len]) or db[ps_len] != 1:
        return False
    salt = bytes(db[ps_len + 1 :])
    if len(salt) != 32 or not hmac.compare_digest(sha256(b"\0" * 8 + sha256(message) + salt), h):
        return False
    try:
        key.verify(sig, message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


class Rng:
    """Injected randomness: fixed values by name (test vectors), else os.urandom."""

    def __init__(self, fixed: dict[str, bytes] | None = None):
        self.fixed = dict(fixed or {})

    def draw(self, name: str, n: int) -> bytes:
        if name in self.fixed:
            v = self.fixed.pop(name)
            assert len(v) == n, name
            return v
        return os.urandom(n)

    def fixed_or_none(self, name: str) -> bytes | None:
        return self.fixed.pop(name, None)


# ------------------------------------------------------------ sections 6, 7


def traffic_key_iv(secret: bytes) -> tuple[bytes, bytes]:
    return hkdf_expand(secret, b"chat v2 traffic key", 32), hkdf_expand(secret, b"chat v2 traffic iv", 12)


def next_traffic_secret(secret: bytes) -> bytes:
    return hkdf_expand(secret, b"chat v2 traffic update", 32)


@dataclass
class HandshakeKeys:
    prk: bytes
    i2r_key: bytes
    i2r_iv: bytes
    r2i_key: bytes
    r2i_iv: bytes


def handshake_keys(session_secret: bytes, th3: bytes) -> HandshakeKeys:
    prk = hkdf_extract(b"chat v1", session_secret)
    ex = lambda label, n: hkdf_expand(prk, label + th3, n)  # noqa: E731
    return HandshakeKeys(
        prk,
        ex(b"chat v1 hs i2r key", 32),
        ex(b"chat v1 hs i2r iv", 12),
        ex(b"chat v1 hs r2i key", 32),
        ex(b"chat v1 hs r2i iv", 12),
    )


def app_secrets(prk: bytes, th7: bytes) -> tuple[bytes, bytes]:
    return hkdf_expand(prk, b"chat v2 app i2r secret" + th7, 32), hkdf_expand(prk, b"chat v2 app r2i secret" + th7, 32)


class RecordKey:
    """One key of one direction (7.1): key, IV, implicit sequence number, and
    the counts of the hard limits."""

    RECORD_LIMIT = 2**32
    BYTE_LIMIT = 2**38

    def __init__(self, key: bytes, iv: bytes):
        self.aead = AESGCM(key)
        self.iv = iv
        self.seq = 0
        self.records = 0
        self.bytes = 0

    def nonce(self, seq: int) -> bytes:
        return xor(self.iv, b"\0\0\0\0" + u64(seq))

    @staticmethod
    def aad(length: int, t: int, seq: int) -> bytes:
        return struct.pack(">IBQ", length, t, seq)

    def seal(self, t: int, plaintext: bytes) -> bytes:
        length = 1 + len(plaintext) + TAG
        assert self.records + 1 <= self.RECORD_LIMIT and self.bytes + len(plaintext) <= self.BYTE_LIMIT
        ct = self.aead.encrypt(self.nonce(self.seq), plaintext, self.aad(length, t, self.seq))
        self.seq += 1
        self.records += 1
        self.bytes += len(plaintext)
        return struct.pack(">IB", length, t) + ct

    def open(self, t: int, body: bytes) -> bytes:
        length = 1 + len(body)
        if length < 1 + TAG:
            raise ChatError("authentication-failure", "7.1", "record shorter than its tag")
        try:
            p = self.aead.decrypt(self.nonce(self.seq), body, self.aad(length, t, self.seq))
        except InvalidTag:
            raise ChatError("authentication-failure", "7.1", "a record failed to authenticate") from None
        self.seq += 1
        self.records += 1
        self.bytes += len(p)
        if self.records > self.RECORD_LIMIT or self.bytes > self.BYTE_LIMIT:
            raise ChatError("protocol-violation", "7.1", "a key was taken past its hard limit (2^32 records, 2^38 bytes)")
        return p


class Direction:
    """The chain of traffic secrets of one direction (6, 7.2)."""

    def __init__(self, secret: bytes, clock):
        self.clock = clock
        self.epoch = 0
        self._install(secret)

    def _install(self, secret: bytes):
        self.secret = secret
        key, iv = traffic_key_iv(secret)
        self.key = RecordKey(key, iv)
        self.installed = self.clock()

    def advance(self):
        # Python cannot promise to erase the old secret, key and IV; dropping
        # every reference is the best it can do.
        self.epoch += 1
        self._install(next_traffic_secret(self.secret))


# ------------------------------------------------------------------- section 5


class Transcript:
    def __init__(self):
        self.h = hashlib.sha256()

    def add(self, t: int, body: bytes):
        self.h.update(frame(t, body))

    def hash(self) -> bytes:
        return self.h.copy().digest()


def check_nickname(raw: bytes, what: str, kind: str = "protocol-violation") -> str:
    """5.5: 1 to 64 bytes of UTF-8 with no control character (category Cc)."""
    if not 1 <= len(raw) <= 64:
        raise ChatError(kind, "5.5", f"{what}: nickname of {len(raw)} bytes (1 to 64)")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatError(kind, "5.5", f"{what}: nickname is not UTF-8") from None
    for c in s:
        if unicodedata.category(c) == "Cc":
            raise ChatError(kind, "5.5", f"{what}: nickname has control character U+{ord(c):04X}")
    return s


@dataclass
class PeerIdentity:
    key: rsa.RSAPublicKey
    spki: bytes
    nickname: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.spki)


def parse_identity(body: bytes, what: str, own_spki: bytes, transient_spki: bytes | None) -> PeerIdentity:
    d = Decoder(body, what, "5.5")
    spki = d.opaque16("identity")
    nick = d.opaque8("nickname")
    d.end()
    key = parse_rsa_spki(spki, what=f"{what} identity", section="5.5", kind="protocol-violation", transient=False)
    if spki == own_spki:
        raise ChatError("protocol-violation", "5.5", f"{what}: the peer presents our own identity key (a reflected connection)")
    if transient_spki is not None and spki == transient_spki:
        raise ChatError("protocol-violation", "5.5", f"{what}: the identity key is the transient key of m2")
    return PeerIdentity(key, spki, check_nickname(nick, what))


def parse_close_reason(body: bytes, section: str) -> int:
    d = Decoder(body, "CLOSE", section)
    r = d.u8("reason")
    d.end()
    return r


def encode_identity(spki: bytes, nickname: str) -> bytes:
    return opaque16(spki) + opaque8(nickname.encode())


class InitiatorHandshake:
    """Sections 5.8 (initiator), 10: START -> WAIT_SERVER_HELLO ->
    WAIT_RESPONDER_IDENTITY -> WAIT_RESPONDER_AUTH -> RESPONDER_VERIFIED ->
    ESTABLISHED or END (abandoned)."""

    def __init__(self, identity: rsa.RSAPrivateKey, nickname: str, rng: Rng | None = None):
        check_own_identity(identity)
        check_nickname(nickname.encode(), "our nickname", "malformed")
        self.identity = identity
        self.own_spki = spki_der(identity)
        self.nickname = nickname
        self.rng = rng or Rng()
        self.transcript = Transcript()
        self.state = "START"
        self.peer: PeerIdentity | None = None
        self.values: dict[str, bytes] = {}  # every intermediate value (for the vector check)

    @property
    def limit(self) -> int:
        return HANDSHAKE_LIMIT if self.state in ("START", "WAIT_SERVER_HELLO", "WAIT_RESPONDER_IDENTITY", "WAIT_RESPONDER_AUTH") else APP_LIMIT

    def start(self) -> bytes:
        assert self.state == "START"
        nonce_i = self.rng.draw("nonce_i", 32)
        body = MAGIC + bytes([VERSION]) + nonce_i
        self.transcript.add(CLIENT_HELLO, body)
        self.state = "WAIT_SERVER_HELLO"
        return frame(CLIENT_HELLO, body)

    def receive(self, t: int, body: bytes) -> list[bytes]:
        if self.state == "WAIT_SERVER_HELLO":
            return self._server_hello(t, body)
        if self.state == "WAIT_RESPONDER_IDENTITY":
            p = self._open(t, body, RESPONDER_IDENTITY, "m4 ResponderIdentity")
            # 5.5 (as revised): our own key in m4 is judged after m5 verifies.
            self.peer = parse_identity(p, "m4 ResponderIdentity", b"", self.transient_spki)
            self.transcript.add(RESPONDER_IDENTITY, p)
            self.values["th4"] = self.transcript.hash()
            self.state = "WAIT_RESPONDER_AUTH"
            return []
        if self.state == "WAIT_RESPONDER_AUTH":
            p = self._open(t, body, RESPONDER_AUTH, "m5 ResponderAuth")
            d = Decoder(p, "m5 ResponderAuth", "5.6")
            sig = d.opaque16("signature")
            d.end()
            if len(sig) != modulus_len(self.peer.key):
                raise ChatError("authentication-failure", "5.6", f"m5 signature of {len(sig)} bytes, not the responder's modulus length")
            if not pss_verify(self.peer.key, b"chat v1 responder signature\0" + self.values["th4"], sig):
                raise ChatError("authentication-failure", "5.6", "the responder's signature (m5) is invalid")
            self.transcript.add(RESPONDER_AUTH, p)
            self.state = "RESPONDER_VERIFIED"
            if self.peer.spki == self.own_spki:
                # 5.5, 5.9 (as revised): refused as untrusted, CLOSE(1) under the handshake key.
                raise ChatError("not-trusted", "5.5, 5.9", "the responder holds our own identity key (a reflected connection)", send=self.refuse())
            return []
        raise ChatError("protocol-violation", "5.8", f"a frame ({TYPE_NAMES.get(t, t)}) in state {self.state}")

    def _server_hello(self, t: int, body: bytes) -> list[bytes]:
        if t == REFUSAL:
            # 5.2 (as revised): a Refusal that is not 2 bytes, as the first frame: not a chat peer.
            d = Decoder(body, "Refusal", "5.2, 5.3", "not-a-chat-peer")
            reason, version = d.u8("reason"), d.u8("version")
            d.end()
            if reason == REFUSAL_VERSION and version != VERSION:
                text = f"the peer speaks only version {version}"
            elif reason == REFUSAL_VERSION:
                text = f"the peer refused: version (it claims to speak version {version}, ours)"
            elif reason == REFUSAL_BUSY:
                text = "the peer says it is busy"
            else:
                text = f"the peer refused with reason {reason}"
            raise ChatError("refused", "5.3", text)
        if t != SERVER_HELLO:
            raise ChatError("not-a-chat-peer", "5.2", f"expected ServerHello or Refusal, got frame type 0x{t:02x}")
        # m2 is the first frame the initiator receives: "malformed in any way"
        # makes the other end not a chat peer (11), whatever 5.2 calls it.
        d = Decoder(body, "m2 ServerHello", "5.2, 11", "not-a-chat-peer")
        version = d.u8("version")
        if version != VERSION:
            # 5.2 (as revised): a responder of another version answers with a
            # Refusal, never a ServerHello: this one is not a chat peer.
            raise ChatError("not-a-chat-peer", "5.2", f"ServerHello version {version}, not {VERSION}")
        nonce_r = d.take(32, "nonce_r")
        tspki = d.opaque16("transient")
        d.end()
        # 5.2 (as revised): a transient key that section 3 refuses is "malformed".
        self.transient = parse_rsa_spki(tspki, what="m2 transient key", section="5.2", kind="malformed", transient=True)
        self.transient_spki = tspki
        self.values["nonce_r"] = nonce_r
        self.transcript.add(SERVER_HELLO, body)
        secret = self.rng.draw("session_secret", 32)
        wrapped = oaep_encrypt(self.transient, secret, self.rng.fixed_or_none("oaep_seed"))
        assert len(wrapped) == 256
        m3 = opaque16(wrapped)
        self.transcript.add(KEY_TRANSPORT, m3)
        th3 = self.transcript.hash()
        self.hs = handshake_keys(secret, th3)
        self.values.update(session_secret=secret, th3=th3, prk=self.hs.prk)
        self.send_key = RecordKey(self.hs.i2r_key, self.hs.i2r_iv)
        self.recv_key = RecordKey(self.hs.r2i_key, self.hs.r2i_iv)
        self.state = "WAIT_RESPONDER_IDENTITY"
        return [frame(KEY_TRANSPORT, m3)]

    def _open(self, t: int, body: bytes, want: int, what: str) -> bytes:
        p = self.recv_key.open(t, body)
        if t != want:
            raise ChatError("protocol-violation", "5.8", f"expected {what}, got an authentic {TYPE_NAMES.get(t, hex(t))}")
        return p

    def accept(self) -> list[bytes]:
        """The peer's key is accepted (5.9): send m6 and m7 in one flight."""
        assert self.state == "RESPONDER_VERIFIED"
        m6 = encode_identity(self.own_spki, self.nickname)
        f6 = self.send_key.seal(INITIATOR_IDENTITY, m6)
        self.transcript.add(INITIATOR_IDENTITY, m6)
        th6 = self.transcript.hash()
        sig = pss_sign(self.identity, b"chat v1 initiator signature\0" + th6, self.rng.fixed_or_none("initiator_pss_salt"))
        m7 = opaque16(sig)
        f7 = self.send_key.seal(INITIATOR_AUTH, m7)
        self.transcript.add(INITIATOR_AUTH, m7)
        th7 = self.transcript.hash()
        i2r, r2i = app_secrets(self.hs.prk, th7)
        self.values.update(th6=th6, th7=th7)
        self.send_secret, self.recv_secret = i2r, r2i
        self.state = "ESTABLISHED"
        return [f6, f7]

    def refuse(self) -> list[bytes]:
        """5.9: CLOSE(1) under the handshake key i2r, sequence number 0."""
        assert self.state == "RESPONDER_VERIFIED"
        self.state = "END"
        return [self.send_key.seal(CLOSE, bytes([CLOSE_UNTRUSTED]))]


class ResponderHandshake:
    """Sections 5.8 (responder), 10."""

    def __init__(self, identity: rsa.RSAPrivateKey, nickname: str, take_transient, rng: Rng | None = None):
        check_own_identity(identity)
        check_nickname(nickname.encode(), "our nickname", "malformed")
        self.identity = identity
        self.own_spki = spki_der(identity)
        self.nickname = nickname
        self.take_transient = take_transient
        self.rng = rng or Rng()
        self.transcript = Transcript()
        self.state = "START"
        self.first = True
        self.peer: PeerIdentity | None = None
        self.values: dict[str, bytes] = {}

    @property
    def limit(self) -> int:
        return APP_LIMIT if self.state == "ESTABLISHED" else HANDSHAKE_LIMIT

    def receive(self, t: int, body: bytes) -> list[bytes]:
        if self.state == "START":
            return self._client_hello(t, body)
        if self.state == "WAIT_KEY_TRANSPORT":
            return self._key_transport(t, body)
        if self.state == "WAIT_INITIATOR_IDENTITY":
            p = self.recv_key.open(t, body)
            if t == CLOSE:
                reason = parse_close_reason(p, "5.9")
                self.state = "END"
                raise ChatError("abandoned", "5.9", f"the initiator abandoned the handshake with CLOSE reason {reason} ({close_reason_text(reason)})")
            if t != INITIATOR_IDENTITY:
                raise ChatError("protocol-violation", "5.8", f"expected m6 InitiatorIdentity or CLOSE, got an authentic {TYPE_NAMES.get(t, hex(t))}")
            self.peer = parse_identity(p, "m6 InitiatorIdentity", self.own_spki, None)
            self.transcript.add(INITIATOR_IDENTITY, p)
            self.values["th6"] = self.transcript.hash()
            self.state = "WAIT_INITIATOR_AUTH"
            return []
        if self.state == "WAIT_INITIATOR_AUTH":
            p = self.recv_key.open(t, body)
            if t != INITIATOR_AUTH:
                raise ChatError("protocol-violation", "5.8", f"expected m7 InitiatorAuth, got an authentic {TYPE_NAMES.get(t, hex(t))}")
            d = Decoder(p, "m7 InitiatorAuth", "5.6")
            sig = d.opaque16("signature")
            d.end()
            if len(sig) != modulus_len(self.peer.key):
                raise ChatError("authentication-failure", "5.6", f"m7 signature of {len(sig)} bytes, not the initiator's modulus length")
            if not pss_verify(self.peer.key, b"chat v1 initiator signature\0" + self.values["th6"], sig):
                raise ChatError("authentication-failure", "5.6", "the initiator's signature (m7) is invalid")
            self.transcript.add(INITIATOR_AUTH, p)
            th7 = self.transcript.hash()
            i2r, r2i = app_secrets(self.hs.prk, th7)
            self.values["th7"] = th7
            self.send_secret, self.recv_secret = r2i, i2r
            self.state = "ESTABLISHED"
            return []
        raise ChatError("protocol-violation", "5.8", f"a frame ({TYPE_NAMES.get(t, t)}) in state {self.state}")

    def _client_hello(self, t: int, body: bytes) -> list[bytes]:
        if t != CLIENT_HELLO or len(body) < 5 or body[:4] != MAGIC:
            raise ChatError("not-a-chat-peer", "5.1", "the first frame is not a ClientHello (type 0x01, magic \"chat\", a version byte)")
        if body[4] != VERSION:
            refusal = frame(REFUSAL, bytes([REFUSAL_VERSION, VERSION]))
            raise ChatError("unsupported-version", "5.1", f"the initiator speaks version {body[4]}; we speak only {VERSION}", send=[refusal])
        if len(body) != 37:
            raise ChatError("not-a-chat-peer", "5.1", f"ClientHello body of {len(body)} bytes, not 37")
        self.transcript.add(CLIENT_HELLO, body)
        self.transient_priv = self.take_transient()
        tspki = spki_der(self.transient_priv)
        assert tspki != self.own_spki and self.transient_priv.key_size == 2048
        nonce_r = self.rng.draw("nonce_r", 32)
        m2 = bytes([VERSION]) + nonce_r + opaque16(tspki)
        self.transcript.add(SERVER_HELLO, m2)
        self.state = "WAIT_KEY_TRANSPORT"
        return [frame(SERVER_HELLO, m2)]

    def _key_transport(self, t: int, body: bytes) -> list[bytes]:
        if t != KEY_TRANSPORT:
            raise ChatError("malformed", "5.4", f"expected m3 KeyTransport, got frame type 0x{t:02x}")
        d = Decoder(body, "m3 KeyTransport", "5.4", "malformed")
        wrapped = d.opaque16("wrapped")
        d.end()
        transient, self.transient_priv = self.transient_priv, None  # destroyed, whatever the outcome
        try:
            if len(wrapped) != 256:
                raise ValueError
            secret = oaep_decrypt(transient, wrapped)
            if len(secret) != 32:
                raise ValueError
        except ValueError:
            raise ChatError("authentication-failure", "5.4", "the session secret could not be unwrapped") from None
        del transient
        self.transcript.add(KEY_TRANSPORT, body)
        th3 = self.transcript.hash()
        self.hs = handshake_keys(secret, th3)
        self.values.update(session_secret=secret, th3=th3, prk=self.hs.prk)
        self.send_key = RecordKey(self.hs.r2i_key, self.hs.r2i_iv)
        self.recv_key = RecordKey(self.hs.i2r_key, self.hs.i2r_iv)
        m4 = encode_identity(self.own_spki, self.nickname)
        f4 = self.send_key.seal(RESPONDER_IDENTITY, m4)
        self.transcript.add(RESPONDER_IDENTITY, m4)
        th4 = self.transcript.hash()
        sig = pss_sign(self.identity, b"chat v1 responder signature\0" + th4, self.rng.fixed_or_none("responder_pss_salt"))
        m5 = opaque16(sig)
        f5 = self.send_key.seal(RESPONDER_AUTH, m5)
        self.transcript.add(RESPONDER_AUTH, m5)
        self.values["th4"] = th4
        self.state = "WAIT_INITIATOR_IDENTITY"
        return [f4, f5]


def close_reason_text(r: int) -> str:
    return {0: "goodbye", 1: "untrusted", 2: "too large", 3: "busy", 4: "protocol error"}.get(r, f"unknown reason {r}")


# ----------------------------------------------------------------- section 9.3

WHITE_SPACE = {
    *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
}  # the Unicode White_Space property (PropList.txt); Python has no accessor
BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
INVISIBLE = {0x00AD, 0x200B, *range(0x2060, 0x2065), 0xFEFF}
FORBIDDEN_ASCII = set('<>:"|?*')
DEVICE_NAMES = (
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"COM{c}" for c in "0123456789¹²³"}
    | {f"LPT{c}" for c in "0123456789¹²³"}
)

RULE_TEXT = {
    1: "1 to 255 bytes of UTF-8",
    2: "not . or ..",
    3: "no / or \\",
    4: "no control character (Cc, U+2028, U+2029)",
    5: "no character that reorders text",
    6: "no invisible character",
    7: 'none of < > : " | ? *',
    8: "no White_Space at either end",
    9: "not ending with .",
    10: "only code points Unicode 14.0.0 assigns, in Normalization Form C",
    11: "not a Windows device name",
}


# 9.3 rule 10 (as revised, notes item 16): the code points Unicode 14.0.0
# assigns, from docs/vectors/unicode-14.0.0-assigned.txt. With them, this
# Python's own Unicode data, 14.0.0 or later, gives 14.0.0's NFC and lowercase.
ASSIGNED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "vectors", "unicode-14.0.0-assigned.txt")
_assigned: list[tuple[int, int]] = []


def load_assigned(path: str = ASSIGNED_FILE) -> list[tuple[int, int]]:
    ranges = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                first, _, last = line.partition("..")
                ranges.append((int(first, 16), int(last or first, 16)))
    _assigned[:] = ranges
    return ranges


def is_assigned(c: str) -> bool:
    import bisect

    if not _assigned:
        load_assigned()
    i = bisect.bisect_left(_assigned, (ord(c) + 1,)) - 1
    return i >= 0 and _assigned[i][0] <= ord(c) <= _assigned[i][1]


def ascii_upper(s: str) -> str:
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s)


def name_rules_broken(raw: bytes | str) -> list[int]:
    """Every rule of 9.3 that one name breaks, in order."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    broken = []
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [1]
    if not 1 <= len(raw) <= 255:
        broken.append(1)
    if s in (".", ".."):
        broken.append(2)
    if "/" in s or "\\" in s:
        broken.append(3)
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in s):
        broken.append(4)
    if any(ord(c) in BIDI for c in s):
        broken.append(5)
    if any(ord(c) in INVISIBLE for c in s):
        broken.append(6)
    if any(c in FORBIDDEN_ASCII for c in s):
        broken.append(7)
    if s and (ord(s[0]) in WHITE_SPACE or ord(s[-1]) in WHITE_SPACE):
        broken.append(8)
    if s.endswith("."):
        broken.append(9)
    if not all(is_assigned(c) for c in s) or not unicodedata.is_normalized("NFC", s):
        broken.append(10)
    if ascii_upper(s.split(".", 1)[0].rstrip(" ")) in DEVICE_NAMES:
        broken.append(11)
    return broken


def manifest_problem(paths: list[tuple[str, ...]]) -> str:
    """The rules of 9.3 for the manifest as a whole: "" , "duplicate" or
    "file-and-folder" (paths compared name by name, each lowercased)."""
    lowered = [tuple(n.lower() for n in p) for p in paths]
    if len(set(lowered)) != len(lowered):
        return "duplicate"
    prefixes = {p[:i] for p in lowered for i in range(1, len(p))}
    if any(p in prefixes for p in lowered):
        return "file-and-folder"
    return ""


def offer_name_problems(entries: list[tuple[tuple[str, ...], int]]) -> list[str]:
    problems = []
    for i, (path, _) in enumerate(entries):
        for name in path:
            for rule in name_rules_broken(name):
                problems.append(f"entry {i}, name {name!r}: breaks rule {rule} of 9.3 ({RULE_TEXT[rule]})")
    m = manifest_problem([p for p, _ in entries])
    if m:
        problems.append(f"the manifest has a {m} path (9.3)")
    return problems


# -------------------------------------------------------------- sections 8, 9


def encode_offer(offer_id: int, entries: list[tuple[tuple[str, ...], int]]) -> bytes:
    out = u64(offer_id) + u16(len(entries))
    for path, size in entries:
        out += u64(size) + bytes([len(path)]) + b"".join(opaque8(n.encode()) for n in path)
    return out


def decode_offer(p: bytes) -> tuple[int, list[tuple[tuple[str, ...], int]]]:
    d = Decoder(p, "FILE_OFFER", "9.2")
    offer = d.u64("offer")
    count = d.u16("count")
    if not 1 <= count <= 4096:
        d.fail(f"count {count} (1 to 4096)")
    entries, total = [], 0
    for i in range(count):
        size = d.u64(f"entry {i} size")
        depth = d.u8(f"entry {i} depth")
        if not 1 <= depth <= 32:
            d.fail(f"entry {i}: depth {depth} (1 to 32)")
        names = []
        for j in range(depth):
            raw = d.opaque8(f"entry {i} name {j}")
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                d.fail(f"entry {i} name {j} is not valid UTF-8")
        total += size
        entries.append((tuple(names), size))
    d.end()
    if total > U64_MAX:
        raise ChatError("protocol-violation", "9.2", "FILE_OFFER: the sizes add up to more than 2^64 - 1")
    return offer, entries


class OfferState:
    PENDING, ACCEPTED, RECEIVING, CANCELLING, FINISHED = "PENDING", "ACCEPTED", "RECEIVING", "CANCELLING", "FINISHED"


@dataclass
class InOffer:
    id: int
    entries: list[tuple[tuple[str, ...], int]]
    arrived: float
    state: str = OfferState.PENDING
    next_entry: int = 0
    proposals: dict[int, tuple[int, object]] = field(default_factory=dict)  # entry -> (offset, sha256 state)
    verdicts: dict[int, int] = field(default_factory=dict)
    cancelled_by: str | None = None


@dataclass
class Inflight:
    offer: InOffer
    entry: int
    size: int
    received: int
    hasher: object
    handle: object
    ignored: bool


class IncomingFiles:
    """The receiving side of files (9.4 to 9.10): the peer's offers."""

    def __init__(self, session: Session, store, clock):
        self.s = session
        self.store = store
        self.clock = clock
        self.offers: dict[int, InOffer] = {}
        self.next_id = 1
        self.inflight: Inflight | None = None
        self.current: InOffer | None = None  # the offer whose entries are being sent

    def open_count(self) -> int:
        return sum(1 for o in self.offers.values() if o.state != OfferState.FINISHED)

    def _finish(self, o: InOffer):
        o.state = OfferState.FINISHED
        if self.current is o:
            self.current = None
        self.s.event("offer-finished", offer=o.id, verdicts={str(k): v for k, v in o.verdicts.items()}, cancelled_by=o.cancelled_by)

    def on_offer(self, p: bytes):
        offer, entries = decode_offer(p)
        if self.s.recv_done:
            raise ChatError("protocol-violation", "9.4", "FILE_OFFER after the peer's DONE")
        if offer != self.next_id:
            raise ChatError("protocol-violation", "9.1", f"FILE_OFFER id {offer}, expected {self.next_id}")
        if self.open_count() >= 8:
            raise ChatError("protocol-violation", "9.4", "a ninth open offer")
        self.next_id += 1
        o = InOffer(offer, entries, self.clock())
        self.offers[offer] = o
        self.s.event("offer", offer=offer, entries=[{"path": list(path), "size": size} for path, size in entries])
        problems = offer_name_problems(entries)
        if problems:
            self.s.event("offer-unsafe", offer=offer, problems=problems)
            self.reject(offer, REJECT_UNSAFE)
            return
        self.s.policy(self.s, o)

    def accept(self, offer_id: int):
        o = self.offers[offer_id]
        assert o.state == OfferState.PENDING
        props = []
        for i, (path, size) in enumerate(o.entries):
            held = self.store.held(self.s.peer_key, path, size) if size > 0 else None
            if held is not None:
                offset, hasher = held
                assert 1 <= offset <= size
                o.proposals[i] = (offset, hasher)
                props.append(u16(i) + u64(offset) + hasher.copy().digest())
        o.state = OfferState.ACCEPTED
        self.s.send(FILE_ACCEPT, u64(offer_id) + u16(len(props)) + b"".join(props))
        self.s.event("accept", offer=offer_id, resume={str(i): off for i, (off, _) in o.proposals.items()})

    def reject(self, offer_id: int, reason: int):
        o = self.offers[offer_id]
        assert o.state == OfferState.PENDING
        self.s.send(FILE_REJECT, u64(offer_id) + bytes([reason]))
        self.s.event("reject", offer=offer_id, reason=reason)
        self._finish(o)

    def cancel(self, offer_id: int, reason: int):
        """The receiver cancels an accepted offer (its user, or a write failed)."""
        o = self.offers[offer_id]
        assert o.state in (OfferState.ACCEPTED, OfferState.RECEIVING) and reason != 0
        if self.inflight and self.inflight.offer is o and not self.inflight.ignored:
            self.store.abandon(self.inflight.handle, keep=reason == CANCEL_WRITE)
            self.inflight.ignored = True
        o.state = OfferState.CANCELLING
        o.cancelled_by = "us"
        self.s.send(FILE_CANCEL, u64(offer_id) + bytes([1, reason]))
        self.s.event("cancel-sent", offer=offer_id, reason=reason)

    def expire(self, now: float):
        for o in list(self.offers.values()):
            if o.state == OfferState.PENDING and now - o.arrived >= 600:
                self.reject(o.id, REJECT_EXPIRED)

    def _offer(self, offer_id: int, what: str) -> InOffer:
        o = self.offers.get(offer_id)
        if o is None:
            raise ChatError("protocol-violation", "9.6", f"{what} for offer {offer_id}, which was never made")
        return o

    def on_start(self, p: bytes):
        d = Decoder(p, "FILE_START", "9.2")
        offer_id, entry, offset = d.u64("offer"), d.u16("entry"), d.u64("offset")
        d.end()
        o = self._offer(offer_id, "FILE_START")
        if o.state not in (OfferState.ACCEPTED, OfferState.CANCELLING):
            raise ChatError("protocol-violation", "9.10", f"FILE_START for offer {offer_id} in state {o.state}")
        if self.inflight is not None:
            raise ChatError("protocol-violation", "9.6", "FILE_START while another entry is in flight (one file in flight per direction)")
        if self.current is not None and self.current is not o:
            raise ChatError("protocol-violation", "9.6", f"FILE_START of offer {offer_id} before all entries of offer {self.current.id} were sent")
        if entry != o.next_entry:
            raise ChatError("protocol-violation", "9.6", f"FILE_START of entry {entry} of offer {offer_id}, expected entry {o.next_entry}")
        size = o.entries[entry][1]
        proposed = o.proposals.get(entry)
        if offset != 0 and (proposed is None or offset != proposed[0]):
            raise ChatError("protocol-violation", "9.6", f"FILE_START offset {offset} is neither 0 nor the proposed offset")
        self.current = o
        o.next_entry += 1
        ignored = o.state == OfferState.CANCELLING
        if not ignored:
            o.state = OfferState.RECEIVING
        hasher = proposed[1].copy() if offset else hashlib.sha256()
        handle = None
        if not ignored:
            try:
                handle = self.store.begin(self.s.peer_key, o.entries[entry][0], size, offset)
            except OSError as e:
                self.s.event("write-failed", offer=offer_id, entry=entry, error=str(e))
                ignored = True
                self.inflight = Inflight(o, entry, size, offset, hasher, None, True)
                self.cancel(offer_id, CANCEL_WRITE)
                return
        self.inflight = Inflight(o, entry, size, offset, hasher, handle, ignored)
        self.s.event("file-start", offer=offer_id, entry=entry, offset=offset, ignored=ignored)

    def on_data(self, p: bytes):
        f = self.inflight
        if f is None:
            raise ChatError("protocol-violation", "9.6", "FILE_DATA outside an entry")
        if not 1 <= len(p) <= MAX_CHUNK:
            raise ChatError("protocol-violation", "9.2", f"FILE_DATA of {len(p)} bytes (1 to 262 144)")
        if f.received + len(p) > f.size:
            raise ChatError("protocol-violation", "9.6", f"FILE_DATA past the entry's size ({f.received} + {len(p)} > {f.size})")
        f.received += len(p)
        f.hasher.update(p)
        if not f.ignored:
            try:
                self.store.write(f.handle, p)
            except OSError as e:
                self.s.event("write-failed", offer=f.offer.id, entry=f.entry, error=str(e))
                self.cancel(f.offer.id, CANCEL_WRITE)

    def on_end(self, p: bytes):
        f = self.inflight
        if f is None:
            raise ChatError("protocol-violation", "9.6", "FILE_END outside an entry")
        if len(p) != 32:
            raise ChatError("protocol-violation", "9.2", f"FILE_END body of {len(p)} bytes, not 32")
        if f.received != f.size:
            raise ChatError("protocol-violation", "9.6", f"FILE_END after {f.received} of {f.size} bytes")
        self.inflight = None
        o = f.offer
        if o.next_entry == len(o.entries) and self.current is o:
            self.current = None
        if f.ignored:
            return
        ok = hmac.compare_digest(f.hasher.digest(), p)
        verdict = self.store.finish(f.handle, ok)
        o.verdicts[f.entry] = verdict
        self.s.send(FILE_VERDICT, u64(o.id) + u16(f.entry) + bytes([verdict]))
        self.s.event(
            "file",
            offer=o.id,
            entry=f.entry,
            path=list(o.entries[f.entry][0]),
            size=f.size,
            sha256=p.hex(),
            verdict=verdict,
            saved_as=getattr(f.handle, "final", None),
        )
        if o.next_entry == len(o.entries):
            self._finish(o)
        else:
            o.state = OfferState.ACCEPTED

    def on_cancel(self, offer_id: int, reason: int):
        """FILE_CANCEL side 0: the peer cancels its own offer."""
        if offer_id >= self.next_id or offer_id == 0:
            raise ChatError("protocol-violation", "9.8", f"FILE_CANCEL for offer {offer_id}, which was never made")
        o = self.offers[offer_id]
        self.s.event("cancel-received", offer=offer_id, side=0, reason=reason)
        if o.state == OfferState.CANCELLING:
            self._drop_inflight(o)
            self._finish(o)
            return
        if reason == CANCEL_ANSWER:
            raise ChatError("protocol-violation", "9.8", f"FILE_CANCEL reason 0 (an answer) for offer {offer_id}, which we did not cancel")
        if o.state == OfferState.FINISHED:
            return  # it crossed our last verdict or our FILE_REJECT: ignored (9.8, 9.10)
        self._drop_inflight(o, keep=True)
        o.cancelled_by = "peer"
        self.s.send(FILE_CANCEL, u64(offer_id) + bytes([1, CANCEL_ANSWER]))
        self._finish(o)

    def _drop_inflight(self, o: InOffer, keep: bool = True):
        if self.inflight is not None and self.inflight.offer is o:
            if not self.inflight.ignored:
                self.store.abandon(self.inflight.handle, keep=keep)
            self.inflight = None
        if self.current is o:
            self.current = None

    def cut(self):
        """The session ended: an entry in flight keeps its partial file (9.9)."""
        if self.inflight is not None and not self.inflight.ignored:
            self.store.abandon(self.inflight.handle, keep=True)
        self.inflight = None


@dataclass
class OutOffer:
    id: int
    entries: list  # (path, size, source)
    state: str = OfferState.PENDING
    plan: deque = field(default_factory=deque)  # entries still to send
    proposals: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    verdicts: dict[int, int] = field(default_factory=dict)


class BytesSource:
    def __init__(self, data: bytes):
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]


class FileSource:
    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "rb")  # noqa: SIM115

    def size(self) -> int:
        return os.fstat(self.f.fileno()).st_size

    def read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)


class OutgoingFiles:
    """The sending side of files (9.4 to 9.10): our offers."""

    def __init__(self, session: Session):
        self.s = session
        self.offers: dict[int, OutOffer] = {}
        self.next_id = 1
        self.queue: deque[OutOffer] = deque()  # accepted, waiting their turn
        self.sending: dict | None = None  # the entry in flight
        self.awaiting: deque[tuple[int, int]] = deque()  # FILE_ENDs sent, verdicts due

    def open_count(self) -> int:
        return sum(1 for o in self.offers.values() if o.state != OfferState.FINISHED)

    def offer(self, entries: list[tuple[tuple[str, ...], object]]) -> int:
        if self.s.sent_done:
            raise ValueError("no FILE_OFFER after our DONE (9.4)")
        if self.open_count() >= 8:
            raise ValueError("8 offers are open (9.4)")
        sized = [(path, src.size()) for path, src in entries]
        problems = offer_name_problems(sized)
        if problems:
            raise ValueError("; ".join(problems))
        body = encode_offer(self.next_id, sized)
        if len(body) > MAX_CHUNK:
            raise ValueError("the manifest does not fit one record (9.2)")
        o = OutOffer(self.next_id, [(p, s, src) for (p, s), (_, src) in zip(sized, entries, strict=True)])
        self.offers[o.id] = o
        self.next_id += 1
        self.s.send(FILE_OFFER, body)
        return o.id

    def _ours(self, offer_id: int, what: str) -> OutOffer:
        o = self.offers.get(offer_id)
        if o is None:
            raise ChatError("protocol-violation", "9.2", f"{what} for offer {offer_id}, which we never made")
        return o

    def on_accept(self, p: bytes):
        d = Decoder(p, "FILE_ACCEPT", "9.2")
        offer_id, count = d.u64("offer"), d.u16("count")
        o = self._ours(offer_id, "FILE_ACCEPT")
        if count > 4096:
            d.fail(f"count {count} (0 to 4096)")
        props, last = {}, -1
        for i in range(count):
            entry, offset, prefix = d.u16(f"resume {i} entry"), d.u64(f"resume {i} offset"), d.take(32, "prefix_sha256")
            if entry <= last or entry >= len(o.entries):
                d.fail(f"resume {i}: entry {entry} not in strictly increasing order, or not an entry of the offer")
            if not 1 <= offset <= o.entries[entry][1]:
                d.fail(f"resume {i}: offset {offset} outside 1 to the entry's size")
            props[entry] = (offset, prefix)
            last = entry
        d.end()
        if o.state == OfferState.CANCELLING:
            return  # ignored (9.8)
        if o.state != OfferState.PENDING:
            raise ChatError("protocol-violation", "9.10", f"FILE_ACCEPT for offer {offer_id} in state {o.state}")
        o.state = OfferState.ACCEPTED
        o.proposals = props
        o.plan = deque(range(len(o.entries)))
        self.queue.append(o)
        self.s.event("accepted", offer=offer_id, resume={str(k): v[0] for k, v in props.items()})

    def on_reject(self, p: bytes):
        d = Decoder(p, "FILE_REJECT", "9.2")
        offer_id, reason = d.u64("offer"), d.u8("reason")
        d.end()
        o = self._ours(offer_id, "FILE_REJECT")
        if o.state not in (OfferState.PENDING, OfferState.CANCELLING):
            raise ChatError("protocol-violation", "9.10", f"FILE_REJECT for offer {offer_id} in state {o.state}")
        o.state = OfferState.FINISHED
        self.s.event("rejected", offer=offer_id, reason=reason)

    def on_verdict(self, p: bytes):
        d = Decoder(p, "FILE_VERDICT", "9.2")
        offer_id, entry, verdict = d.u64("offer"), d.u16("entry"), d.u8("verdict")
        d.end()
        if not self.awaiting or self.awaiting[0] != (offer_id, entry):
            raise ChatError("protocol-violation", "9.7", f"FILE_VERDICT for offer {offer_id} entry {entry} is not for the oldest file ended without a verdict")
        self.awaiting.popleft()
        o = self.offers[offer_id]
        o.verdicts[entry] = verdict
        self.s.event("verdict", offer=offer_id, entry=entry, verdict=verdict)
        if len(o.verdicts) == len(o.entries):
            o.state = OfferState.FINISHED

    def on_cancel(self, offer_id: int, reason: int):
        """FILE_CANCEL side 1: the receiver cancels our offer."""
        o = self._ours(offer_id, "FILE_CANCEL")
        self.s.event("cancel-received", offer=offer_id, side=1, reason=reason)
        if o.state == OfferState.CANCELLING:
            self._stop(o)
            return
        if reason == CANCEL_ANSWER:
            raise ChatError("protocol-violation", "9.8", "FILE_CANCEL reason 0 for an offer we did not cancel")
        if o.state != OfferState.ACCEPTED:
            raise ChatError("protocol-violation", "9.8", f"the receiver's FILE_CANCEL for offer {offer_id} in state {o.state}")
        self.s.send(FILE_CANCEL, u64(offer_id) + bytes([0, CANCEL_ANSWER]))
        self._stop(o)

    def cancel(self, offer_id: int, reason: int):
        o = self.offers[offer_id]
        assert o.state in (OfferState.PENDING, OfferState.ACCEPTED)
        self.s.send(FILE_CANCEL, u64(offer_id) + bytes([0, reason]))
        o.state = OfferState.CANCELLING
        if self.sending and self.sending["offer"] is o:
            self.sending = None
        if o in self.queue:
            self.queue.remove(o)

    def _stop(self, o: OutOffer):
        o.state = OfferState.FINISHED
        if self.sending and self.sending["offer"] is o:
            self.sending = None
        if o in self.queue:
            self.queue.remove(o)
        self.awaiting = deque(a for a in self.awaiting if a[0] != o.id)

    def step(self, chunk: int) -> bool:
        """Seal the next record of the transfer; False when there is nothing to send."""
        if self.sending is None:
            while self.queue and not self.queue[0].plan:
                self.queue.popleft()
            if not self.queue:
                return False
            o = self.queue[0]
            entry = o.plan.popleft()
            path, size, src = o.entries[entry]
            offset = 0
            if entry in o.proposals:
                off, prefix = o.proposals[entry]
                h = hashlib.sha256()
                pos = 0
                while pos < off:
                    b = src.read(pos, min(1 << 20, off - pos))
                    if not b:
                        break
                    h.update(b)
                    pos += len(b)
                if pos == off and hmac.compare_digest(h.digest(), prefix):
                    offset = off
                    hasher = h
            if offset == 0:
                hasher = hashlib.sha256()
            self.sending = {"offer": o, "entry": entry, "size": size, "pos": offset, "hasher": hasher, "src": src}
            self.s.send(FILE_START, u64(o.id) + u16(entry) + u64(offset))
            return True
        f = self.sending
        if f["pos"] < f["size"]:
            b = f["src"].read(f["pos"], min(chunk, MAX_CHUNK, f["size"] - f["pos"]))
            if not b:
                self.cancel(f["offer"].id, CANCEL_READ)
                return True
            f["pos"] += len(b)
            f["hasher"].update(b)
            self.s.send(FILE_DATA, b)
            return True
        if f["src"].size() != f["size"]:
            self.cancel(f["offer"].id, CANCEL_READ)
            return True
        self.sending = None
        self.awaiting.append((f["offer"].id, f["entry"]))
        self.s.send(FILE_END, f["hasher"].digest())
        return True


@dataclass
class Limits:
    rekey_bytes: int = 2**30  # B
    rekey_records: int = 2**24  # R
    rekey_seconds: float = 3600.0  # T
    max_message: int = 2**32


def accept_all_policy(session: Session, offer: InOffer):
    session.incoming.accept(offer.id)


def pending_policy(session: Session, offer: InOffer):
    pass


class Session:
    """The application phase (sections 7 to 9), one side, sans I/O.

    `receive(t, body)` opens one record and applies it; frames to send
    accumulate in `out`, events in `events`. Errors are ChatError; `fail()`
    turns one into the CLOSE of section 11 where one is due."""

    def __init__(
        self,
        send_secret: bytes,
        recv_secret: bytes,
        *,
        peer_key: bytes = b"",
        clock=time.monotonic,
        limits: Limits | None = None,
        chunk: int = 65536,
        store=None,
        policy=pending_policy,
        auto_receipt: bool = True,
    ):
        self.clock = clock
        self.tx = Direction(send_secret, clock)
        self.rx = Direction(recv_secret, clock)
        self.limits = limits or Limits()
        self.chunk = chunk
        self.peer_key = peer_key
        self.policy = policy
        self.auto_receipt = auto_receipt
        self.out: list[bytes] = []
        self.events: list[dict] = []
        # our messages
        self.next_msg = 1
        self.last_sent_complete = 0
        self.last_acked = 0
        # the peer's messages
        self.expect_msg = 1
        self.in_msg: dict | None = None
        self.last_received = 0
        self.last_receipt_sent = 0
        self.sent_done = self.recv_done = False
        self.sent_close: int | None = None
        self.recv_close: int | None = None
        self.incoming = IncomingFiles(self, store, clock)
        self.outgoing = OutgoingFiles(self)

    # -- output

    def event(self, kind: str, **kw):
        self.events.append({"event": kind, **kw})

    def take_output(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def send(self, t: int, p: bytes):
        assert self.sent_close is None, "nothing is sealed after CLOSE (8.5)"
        if t not in (KEY_UPDATE, CLOSE):
            k = self.tx.key
            now = self.clock()
            if k.records >= 1 and (
                k.bytes + len(p) > self.limits.rekey_bytes
                or k.records >= self.limits.rekey_records - 1
                or now - self.tx.installed >= self.limits.rekey_seconds
            ):
                self.key_update()
                if self.sent_close is not None:
                    raise ChatError("session-limit", "7.2", "the sending epoch cannot advance past 2^64 - 1")
        self.out.append(self.tx.key.seal(t, p))

    def key_update(self):
        if self.tx.epoch == U64_MAX:
            self.close(CLOSE_GOODBYE)
            self.event("session-limit", detail="key epoch 2^64 - 1 reached (7.2)")
            return
        self.out.append(self.tx.key.seal(KEY_UPDATE, u64(self.tx.epoch + 1)))
        self.tx.advance()
        self.event("key-update-sent", epoch=self.tx.epoch)

    def send_message(self, data: bytes) -> int:
        assert not self.sent_done
        if self.next_msg > U64_MAX:
            raise ChatError("session-limit", "8.1", "message ids are exhausted")
        mid = self.next_msg
        self.next_msg += 1
        self.send(MESSAGE_START, u64(mid) + u64(len(data)))
        pos = 0
        while len(data) - pos > self.chunk:
            self.send(MESSAGE_DATA, data[pos : pos + self.chunk])
            pos += self.chunk
        self.send(MESSAGE_END, data[pos:])
        self.last_sent_complete = mid
        return mid

    def send_done(self):
        assert not self.sent_done
        self.sent_done = True
        self.send(DONE, b"")
        self.event("done-sent")

    def close(self, reason: int):
        if self.sent_close is None:
            self.out.append(self.tx.key.seal(CLOSE, bytes([reason])))
            self.sent_close = reason

    def flush_receipts(self):
        """8.2: a receipt covering every complete message, sent no later than
        when all received data has been processed."""
        if self.last_received > self.last_receipt_sent and self.sent_close is None:
            self.last_receipt_sent = self.last_received
            self.send(RECEIPT, u64(self.last_received))
            self.event("receipt-sent", id=self.last_received)

    def finished(self) -> bool:
        """8.4: the conditions for CLOSE with reason 0."""
        return (
            self.sent_done
            and self.recv_done
            and self.last_acked == self.last_sent_complete
            and self.last_receipt_sent == self.last_received
            and self.in_msg is None
            and self.incoming.open_count() == 0
            and self.outgoing.open_count() == 0
        )

    def fail(self, err: ChatError):
        """Section 11: the CLOSE an error calls for in the application phase."""
        reason = {"protocol-violation": CLOSE_PROTOCOL, "too-large": CLOSE_TOO_LARGE, "session-limit": CLOSE_GOODBYE}.get(err.kind)
        if reason is not None and self.sent_close is None and self.recv_close is None:
            self.close(reason)

    # -- input

    def receive(self, t: int, body: bytes):
        assert self.recv_close is None and self.sent_close is None
        p = self.rx.key.open(t, body)
        h = self._handlers.get(t)
        if h is None:
            raise ChatError("protocol-violation", "8", f"an authentic record of type 0x{t:02x}, not an application record type")
        h(self, p)

    def _fixed(self, p: bytes, n: int, name: str):
        if len(p) != n:
            raise ChatError("protocol-violation", "8", f"{name} body of {len(p)} bytes, not {n}")

    def _message_start(self, p: bytes):
        self._fixed(p, 16, "MESSAGE_START")
        mid, length = struct.unpack(">QQ", p)
        if self.in_msg is not None:
            raise ChatError("protocol-violation", "8.1", "MESSAGE_START inside a message")
        if self.recv_done:
            raise ChatError("protocol-violation", "8.4", "MESSAGE_START after the peer's DONE")
        if mid != self.expect_msg:
            raise ChatError("protocol-violation", "8.1", f"MESSAGE_START id {mid}, expected {self.expect_msg}")
        if length > self.limits.max_message:
            raise ChatError("too-large", "8.1", f"a message of {length} bytes, over our limit of {self.limits.max_message}")
        self.expect_msg += 1
        self.in_msg = {"id": mid, "length": length, "parts": []}

    def _message_data(self, p: bytes):
        m = self.in_msg
        if m is None:
            raise ChatError("protocol-violation", "8.1", "MESSAGE_DATA outside a message")
        if not 1 <= len(p) <= MAX_CHUNK:
            raise ChatError("protocol-violation", "8", f"MESSAGE_DATA of {len(p)} bytes (1 to 262 144)")
        remaining = m["length"] - sum(len(x) for x in m["parts"])
        if len(p) >= remaining:
            raise ChatError("protocol-violation", "8.1", f"MESSAGE_DATA of {len(p)} bytes does not leave a byte of the {remaining} announced")
        m["parts"].append(p)

    def _message_end(self, p: bytes):
        m = self.in_msg
        if m is None:
            raise ChatError("protocol-violation", "8.1", "MESSAGE_END outside a message")
        remaining = m["length"] - sum(len(x) for x in m["parts"])
        if len(p) != remaining:
            raise ChatError("protocol-violation", "8.1", f"MESSAGE_END of {len(p)} bytes, {remaining} remained")
        data = b"".join(m["parts"]) + p
        self.in_msg = None
        self.last_received = m["id"]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        self.event("message", id=m["id"], length=len(data), text=text, sha256=sha256(data).hex())
        if self.auto_receipt:
            pass  # sent by flush_receipts() once all buffered input is processed

    def _receipt(self, p: bytes):
        self._fixed(p, 8, "RECEIPT")
        (mid,) = struct.unpack(">Q", p)
        if not self.last_acked < mid <= self.last_sent_complete:
            raise ChatError("protocol-violation", "8.2", f"RECEIPT {mid}: not above {self.last_acked} and at most {self.last_sent_complete}")
        self.last_acked = mid
        self.event("receipt", id=mid)

    def _keepalive(self, p: bytes):
        self._fixed(p, 0, "KEEPALIVE")

    def _close(self, p: bytes):
        self._fixed(p, 1, "CLOSE")
        self.recv_close = p[0]
        cut = self.in_msg is not None
        self.incoming.cut()
        self.event("close-received", reason=p[0], text=close_reason_text(p[0]), message_cut_off=cut)

    def _done(self, p: bytes):
        self._fixed(p, 0, "DONE")
        if self.recv_done:
            raise ChatError("protocol-violation", "8.4", "DONE twice")
        if self.in_msg is not None:
            raise ChatError("protocol-violation", "8.4", "DONE inside a message")
        self.recv_done = True
        self.event("done-received")

    def _key_update(self, p: bytes):
        self._fixed(p, 8, "KEY_UPDATE")
        (epoch,) = struct.unpack(">Q", p)
        if epoch != self.rx.epoch + 1:
            raise ChatError("protocol-violation", "7.2", f"KEY_UPDATE to epoch {epoch}, expected {self.rx.epoch + 1}")
        self.rx.advance()
        self.event("key-update-received", epoch=epoch)

    def _file_cancel(self, p: bytes):
        d = Decoder(p, "FILE_CANCEL", "9.2")
        offer, side, reason = d.u64("offer"), d.u8("side"), d.u8("reason")
        d.end()
        if side == 0:
            self.incoming.on_cancel(offer, reason)
        elif side == 1:
            self.outgoing.on_cancel(offer, reason)
        else:
            raise ChatError("protocol-violation", "9.2", f"FILE_CANCEL side {side} (0 or 1)")

    _handlers = {
        MESSAGE_START: _message_start,
        MESSAGE_DATA: _message_data,
        MESSAGE_END: _message_end,
        RECEIPT: _receipt,
        KEEPALIVE: _keepalive,
        CLOSE: _close,
        DONE: _done,
        KEY_UPDATE: _key_update,
        FILE_OFFER: lambda s, p: s.incoming.on_offer(p),
        FILE_ACCEPT: lambda s, p: s.outgoing.on_accept(p),
        FILE_REJECT: lambda s, p: s.outgoing.on_reject(p),
        FILE_START: lambda s, p: s.incoming.on_start(p),
        FILE_DATA: lambda s, p: s.incoming.on_data(p),
        FILE_END: lambda s, p: s.incoming.on_end(p),
        FILE_VERDICT: lambda s, p: s.outgoing.on_verdict(p),
        FILE_CANCEL: _file_cancel,
    }


# --------------------------------------------------------- stores (the edge)


class MemoryStore:
    """Files in memory; `held` maps a path to the bytes of a partial file."""

    class Handle:
        def __init__(self, path, data):
            self.path = path
            self.data = bytearray(data)
            self.final = "/".join(path)

    def __init__(self, held: dict[tuple[str, ...], bytes] | None = None):
        self.partials = dict(held or {})
        self.saved: dict[tuple[str, ...], bytes] = {}

    def held(self, peer, path, size):
        b = self.partials.get(path)
        if not b or len(b) > size:
            return None
        return len(b), hashlib.sha256(b)

    def begin(self, peer, path, size, offset):
        return self.Handle(path, self.partials.get(path, b"")[:offset])

    def write(self, h, data):
        h.data += data

    def finish(self, h, ok):
        self.partials.pop(h.path, None)
        if not ok:
            return VERDICT_MISMATCH
        self.saved[h.path] = bytes(h.data)
        return VERDICT_SAVED

    def abandon(self, h, keep):
        if keep:
            self.partials[h.path] = bytes(h.data)
        else:
            self.partials.pop(h.path, None)


class DiskStore:
    """Files on disk: final files under `save_dir`, created without replacing
    anything and without following symbolic links; partial files (9.9) under
    `partial_dir/<peer fingerprint>/`, kept 24 hours."""

    class Handle:
        def __init__(self, path, partial, f):
            self.path = path
            self.partial = partial
            self.f = f
            self.final = None

    def __init__(self, save_dir: str, partial_dir: str):
        self.save_dir = os.path.abspath(save_dir)
        self.partial_dir = os.path.abspath(partial_dir)
        os.makedirs(self.save_dir, exist_ok=True)
        os.makedirs(self.partial_dir, mode=0o700, exist_ok=True)

    def _partial(self, peer: bytes, path) -> str:
        d = os.path.join(self.partial_dir, sha256(peer).hex()[:32])
        os.makedirs(d, mode=0o700, exist_ok=True)
        return os.path.join(d, sha256("\0".join(path).encode()).hex() + ".part")

    def held(self, peer, path, size):
        p = self._partial(peer, path)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return None
        if time.time() - st.st_mtime > 24 * 3600:
            os.unlink(p)
            return None
        if not 1 <= st.st_size <= size:
            return None
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
        return st.st_size, h

    def begin(self, peer, path, size, offset):
        p = self._partial(peer, path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        return self.Handle(path, p, os.fdopen(fd, "wb"))

    def write(self, h, data):
        h.f.write(data)

    def finish(self, h, ok):
        h.f.flush()
        os.fsync(h.f.fileno())
        h.f.close()
        if not ok:
            os.unlink(h.partial)
            return VERDICT_MISMATCH
        try:
            dirfd = os.open(self.save_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for name in h.path[:-1]:
                    try:
                        os.mkdir(name, 0o755, dir_fd=dirfd)
                    except FileExistsError:
                        pass
                    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
                    os.close(dirfd)
                    dirfd = nfd
                # link(2) never replaces an existing name and does not follow a link at the target.
                os.link(h.partial, h.path[-1], dst_dir_fd=dirfd, follow_symlinks=False)
            finally:
                os.close(dirfd)
        except OSError as e:
            h.error = str(e)
            # 9.7 (as revised): what is already there stands in the way (the
            # final name exists, or a file or link is where a folder must be).
            if isinstance(e, FileExistsError) or e.errno in (errno.ELOOP, errno.ENOTDIR):
                return VERDICT_NAME_TAKEN
            return VERDICT_WRITE
        os.unlink(h.partial)
        h.final = os.path.join(self.save_dir, *h.path)
        return VERDICT_SAVED

    def abandon(self, h, keep):
        h.f.close()
        if not keep:
            os.unlink(h.partial)


# ------------------------------------------------------------ fingerprints


def fingerprint(spki: bytes) -> str:
    import base64

    return "SHA256:" + base64.b64encode(sha256(spki)).decode().rstrip("=")


def safety_half(spki: bytes) -> str:
    h = hashlib.sha512(b"chat safety number v1\0" + spki).digest()
    for _ in range(5200):
        h = hashlib.sha512(h + spki).digest()
    return "".join(f"{int.from_bytes(h[5 * j : 5 * j + 5], 'big') % 100000:05d}" for j in range(6))


def safety_number(a: bytes, b: bytes) -> str:
    ha, hb = safety_half(a), safety_half(b)
    return min(ha, hb) + max(ha, hb)


# ================================================================ vector check


class Checker:
    def __init__(self):
        self.failures = 0
        self.passes = 0

    def ok(self, name: str, cond: bool, detail: str = ""):
        if cond:
            self.passes += 1
            print(f"PASS {name}")
        else:
            self.failures += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")
        return cond

    def eq(self, name: str, got, want):
        if isinstance(got, bytes):
            got = got.hex()
        if isinstance(want, bytes):
            want = want.hex()
        return self.ok(name, got == want, f"got {got!r}, want {want!r}")

    def raises(self, name: str, fn, kind: str):
        try:
            fn()
        except ChatError as e:
            return self.ok(name, e.kind == kind, f"raised {e.kind} ({e}), want {kind}")
        return self.ok(name, False, f"no error, want {kind}")


def load_key(path: str) -> rsa.RSAPrivateKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def check_session_vector(c: Checker, vdir: str):
    with open(os.path.join(vdir, "session-v2.toml"), "rb") as f:
        v = tomllib.load(f)
    setup, val, frames = v["setup"], {k: (bytes.fromhex(x) if isinstance(x, str) else x) for k, x in v["values"].items()}, v["frame"]
    ikey = load_key(os.path.join(vdir, setup["initiator_identity"]))
    rkey = load_key(os.path.join(vdir, setup["responder_identity"]))
    tkey = load_key(os.path.join(vdir, setup["responder_transient"]))
    raw = [bytes.fromhex(fr["frame"]) for fr in frames]
    c.eq("vector: frames are numbered 1.. in order", [fr["index"] for fr in frames], list(range(1, len(frames) + 1)))

    # --- every frame: its type is the one its name says (4.1), its length field is right (4)
    for fr, r in zip(frames, raw, strict=True):
        t, body = split_frame(r) if struct.unpack(">I", r[:4])[0] == len(r) - 4 else (None, None)
        c.ok(f"frame {fr['index']} {fr['name']}: length field and type byte (4, 4.1)", t is not None and TYPE_NAMES.get(t) == fr["name"])

    # --- the plaintext handshake messages (5.1 to 5.4)
    t1, b1 = split_frame(raw[0])
    t2, b2 = split_frame(raw[1])
    t3, b3 = split_frame(raw[2])
    c.eq("m1: 42-byte frame, magic, version 2, nonce_i (5.1)", (len(raw[0]), b1[:4], b1[4], b1[5:]), (42, b"chat", 2, val["nonce_i"]))
    d = Decoder(b2, "m2", "5.2")
    c.eq("m2: version 2 (5.2)", d.u8("v"), 2)
    c.eq("m2: nonce_r (5.2)", d.take(32, "n"), val["nonce_r"])
    tspki = d.opaque16("t")
    d.end()
    c.eq("m2: transient key is transient.pem's SPKI DER (5.2)", tspki, spki_der(tkey))
    parse_rsa_spki(tspki, what="transient", section="5.2", kind="malformed", transient=True)
    c.ok("m2: transient key canonical, 2048 bits, e=65537 (3)", True)
    d = Decoder(b3, "m3", "5.4")
    wrapped = d.opaque16("w")
    d.end()
    c.eq("m3: wrapped is 256 bytes (5.4)", len(wrapped), 256)
    c.eq("m3: OAEP unwrap with transient.pem gives session_secret (5.4)", oaep_decrypt(tkey, wrapped), val["session_secret"])
    c.eq("m3: OAEP re-encryption with oaep_seed reproduces wrapped (5.4)", oaep_encrypt(tkey.public_key(), val["session_secret"], val["oaep_seed"]), wrapped)

    # --- transcript and handshake keys (5.7, 6)
    tr = Transcript()
    for t, b in ((t1, b1), (t2, b2), (t3, b3)):
        tr.add(t, b)
    th3 = tr.hash()
    c.eq("TH3 (5.7)", th3, val["th3"])
    hs = handshake_keys(val["session_secret"], th3)
    for name in ("prk", "hs_i2r_key", "hs_i2r_iv", "hs_r2i_key", "hs_r2i_iv"):
        c.eq(f"{name} (6)", getattr(hs, name.removeprefix("hs_")), val[name])

    # --- every record: key, seq, nonce, aad, plaintext; decrypt and re-encrypt (7.1)
    keys = {"hs_i2r": (val["hs_i2r_key"], val["hs_i2r_iv"]), "hs_r2i": (val["hs_r2i_key"], val["hs_r2i_iv"])}
    # the application keys of each epoch, derived here from TH7 and the KEY_UPDATE chain
    th4 = th6 = th7 = None
    chain = {}
    seqs: dict[str, int] = {}
    current = {}  # sender -> key name of its current application key
    plaintexts = {}
    for fr, r in zip(frames, raw, strict=True):
        if "key" not in fr:
            continue
        name, idx = fr["key"], fr["index"]
        t, body = split_frame(r)
        if name.startswith("app_"):
            if th7 is None:
                c.ok(f"frame {idx}: application record before TH7", False)
                continue
            direction = "i2r" if fr["from"] == "initiator" else "r2i"
            c.eq(f"frame {idx}: sealed under the sender's current key {current[direction]} (7.2)", name, current[direction])
        kb, ivb = keys[name]
        seq = seqs.get(name, 0)
        seqs[name] = seq + 1
        c.eq(f"frame {idx} {fr['name']}: seq {fr['seq']} is the count of records under {name} (7.1)", fr["seq"], seq)
        rk = RecordKey(kb, ivb)
        rk.seq = seq
        c.eq(f"frame {idx}: nonce = IV xor seq (7.1)", rk.nonce(seq), bytes.fromhex(fr["nonce"]))
        c.eq(f"frame {idx}: aad = length || type || seq (7.1)", RecordKey.aad(len(r) - 4, t, seq), bytes.fromhex(fr["aad"]))
        try:
            p = rk.open(t, body)
        except ChatError as e:
            c.ok(f"frame {idx}: decrypts", False, str(e))
            continue
        c.eq(f"frame {idx}: plaintext", p, bytes.fromhex(fr["plaintext"]))
        rk2 = RecordKey(kb, ivb)
        rk2.seq = seq
        c.eq(f"frame {idx}: re-encryption gives the same frame (7.1)", rk2.seal(t, p), r)
        plaintexts[idx] = p
        if t == RESPONDER_IDENTITY:
            tr.add(t, p)
            th4 = tr.hash()
            c.eq("TH4 (5.7): entry of m4 uses its plaintext, length 16 less than on the wire", th4, val["th4"])
            peer_r = parse_identity(p, "m4", spki_der(ikey), tspki)
            c.eq("m4: responder identity is responder.pem, nickname (5.5)", (peer_r.spki, peer_r.nickname), (spki_der(rkey), setup["responder_nickname"]))
            c.eq("identity_r_fingerprint_sha256", sha256(peer_r.spki), val["identity_r_fingerprint_sha256"])
        elif t == RESPONDER_AUTH:
            sig = Decoder(p, "m5", "5.6").opaque16("s")
            m = b"chat v1 responder signature\0" + th4
            c.ok("m5: RSA-PSS signature verifies, salt 32 (5.6)", pss_verify(rkey.public_key(), m, sig))
            c.eq("m5: signing with responder_pss_salt reproduces it (5.6)", pss_sign(rkey, m, val["responder_pss_salt"]), sig)
            tr.add(t, p)
        elif t == INITIATOR_IDENTITY:
            tr.add(t, p)
            th6 = tr.hash()
            c.eq("TH6 (5.7)", th6, val["th6"])
            peer_i = parse_identity(p, "m6", spki_der(rkey), None)
            c.eq("m6: initiator identity is initiator.pem, nickname (5.5)", (peer_i.spki, peer_i.nickname), (spki_der(ikey), setup["initiator_nickname"]))
            c.eq("identity_i_fingerprint_sha256", sha256(peer_i.spki), val["identity_i_fingerprint_sha256"])
        elif t == INITIATOR_AUTH:
            sig = Decoder(p, "m7", "5.6").opaque16("s")
            m = b"chat v1 initiator signature\0" + th6
            c.ok("m7: RSA-PSS signature verifies, salt 32 (5.6)", pss_verify(ikey.public_key(), m, sig))
            c.eq("m7: signing with initiator_pss_salt reproduces it (5.6)", pss_sign(ikey, m, val["initiator_pss_salt"]), sig)
            tr.add(t, p)
            th7 = tr.hash()
            c.eq("TH7 (5.7)", th7, val["th7"])
            i2r, r2i = app_secrets(hs.prk, th7)
            for direction, secret in (("i2r", i2r), ("r2i", r2i)):
                chain[direction] = [secret]
                current[direction] = f"app_{direction}_0"
                c.eq(f"app_{direction}_0_secret (6)", secret, val[f"app_{direction}_0_secret"])
                k, iv = traffic_key_iv(secret)
                c.eq(f"app_{direction}_0_key (6)", k, val[f"app_{direction}_0_key"])
                c.eq(f"app_{direction}_0_iv (6)", iv, val[f"app_{direction}_0_iv"])
                keys[f"app_{direction}_0"] = (k, iv)
        elif t == KEY_UPDATE:
            direction = "i2r" if fr["from"] == "initiator" else "r2i"
            (epoch,) = struct.unpack(">Q", p)
            c.eq(f"frame {idx}: KEY_UPDATE names the next epoch (7.2)", epoch, len(chain[direction]))
            secret = next_traffic_secret(chain[direction][-1])
            chain[direction].append(secret)
            n = f"app_{direction}_{epoch}"
            c.eq(f"{n}_secret (6, 7.2)", secret, val[f"{n}_secret"])
            k, iv = traffic_key_iv(secret)
            c.eq(f"{n}_key (6)", k, val[f"{n}_key"])
            c.eq(f"{n}_iv (6)", iv, val[f"{n}_iv"])
            keys[n] = (k, iv)
            current[direction] = n
    # the spec: a traffic key is the first 32 bytes of T(1), the IV the first 12 of T(1)
    s0 = val["app_i2r_0_secret"]
    c.eq("traffic key/IV are single HMAC blocks (6)", (hmac.new(s0, b"chat v2 traffic iv\x01", hashlib.sha256).digest()[:12]), val["app_i2r_0_iv"])

    # --- the file transfer (9)
    file_0 = val["file_0"]
    c.eq("file_0_sha256", sha256(file_0), val["file_0_sha256"])
    c.eq("file_0_prefix_sha256 (of the first file_0_held bytes)", sha256(file_0[: setup["file_0_held"]]), val["file_0_prefix_sha256"])
    c.eq("file_1_sha256 (empty)", sha256(b""), val["file_1_sha256"])
    by_name = {}
    for fr in frames:
        by_name.setdefault(fr["name"], []).append(fr["index"])
    offer_id, entries = decode_offer(plaintexts[by_name["FILE_OFFER"][0]])
    c.eq(
        "FILE_OFFER manifest (9.2)",
        (offer_id, entries),
        (1, [(tuple(setup["file_0_path"].split("/")), len(file_0)), (tuple(setup["file_1_path"].split("/")), 0)]),
    )
    d = Decoder(plaintexts[by_name["FILE_ACCEPT"][0]], "FILE_ACCEPT", "9.2")
    acc = (d.u64("o"), d.u16("c"), d.u16("e"), d.u64("off"), d.take(32, "h"))
    d.end()
    c.eq("FILE_ACCEPT proposes entry 0 from file_0_held with the prefix's SHA-256 (9.5)", acc, (1, 1, 0, setup["file_0_held"], sha256(file_0[: setup["file_0_held"]])))
    starts = [struct.unpack(">QHQ", plaintexts[i]) for i in by_name["FILE_START"]]
    resume_ok = sha256(file_0[: acc[3]]) == acc[4]
    c.eq("resume decision: prefix matches, FILE_START carries the offset (9.5)", starts, [(1, 0, acc[3] if resume_ok else 0), (1, 1, 0)])
    data = b"".join(plaintexts[i] for i in by_name["FILE_DATA"])
    c.eq("FILE_DATA carries bytes offset..size-1 (9.6)", data, file_0[acc[3] :])
    ends = [plaintexts[i] for i in by_name["FILE_END"]]
    running = hashlib.sha256(file_0[: acc[3]])
    running.update(data)
    c.eq("FILE_END hashes: receiver's running hash over prefix + data, and the empty file (9.5, 9.7)", ends, [running.digest(), sha256(b"")])
    c.eq("FILE_VERDICTs: saved, in FILE_END order (9.7)", [plaintexts[i] for i in by_name["FILE_VERDICT"]], [u64(1) + u16(0) + b"\0", u64(1) + u16(1) + b"\0"])

    # --- both roles replayed through the state machines, byte for byte
    replay_roles(c, setup, val, frames, raw, ikey, rkey, tkey)


def replay_roles(c: Checker, setup, val, frames, raw, ikey, rkey, tkey):
    ini = [r for fr, r in zip(frames, raw, strict=True) if fr["from"] == "initiator"]
    res = [r for fr, r in zip(frames, raw, strict=True) if fr["from"] == "responder"]
    out_i: list[bytes] = []
    out_r: list[bytes] = []
    rng_i = Rng({k: val[k] for k in ("nonce_i", "session_secret", "oaep_seed", "initiator_pss_salt")})
    rng_r = Rng({k: val[k] for k in ("nonce_r", "responder_pss_salt")})
    I = InitiatorHandshake(ikey, setup["initiator_nickname"], rng_i)  # noqa: E741
    R = ResponderHandshake(rkey, setup["responder_nickname"], lambda: tkey, rng_r)
    try:
        out_i.append(I.start())
        out_r += R.receive(*split_frame(ini[0]))
        out_i += I.receive(*split_frame(res[0]))
        out_r += R.receive(*split_frame(ini[1]))
        I.receive(*split_frame(res[1]))
        I.receive(*split_frame(res[2]))
        c.eq("replay: initiator sees responder's identity and nickname", (I.peer.spki, I.peer.nickname), (spki_der(rkey), setup["responder_nickname"]))
        out_i += I.accept()
        R.receive(*split_frame(ini[2]))
        R.receive(*split_frame(ini[3]))
        c.eq("replay: responder sees initiator's identity and nickname", (R.peer.spki, R.peer.nickname), (spki_der(ikey), setup["initiator_nickname"]))
        c.eq("replay: both roles derive the same TH7", I.values["th7"], R.values["th7"])
    except ChatError as e:
        c.ok("replay: handshake", False, str(e))
        return
    clock = lambda: 0.0  # noqa: E731
    file_0 = val["file_0"]
    held = file_0[: setup["file_0_held"]]
    store = MemoryStore({tuple(setup["file_0_path"].split("/")): held})
    # 14 (as revised): the vector session lowers B for the initiator and R for
    # the responder, so that every KEY_UPDATE comes from the rule of 7.2.
    SI = Session(I.send_secret, I.recv_secret, clock=clock, chunk=setup["chunk_size"], peer_key=I.peer.spki,
                 limits=Limits(rekey_bytes=setup["initiator_rekey_bytes"]))
    SR = Session(R.send_secret, R.recv_secret, clock=clock, chunk=setup["chunk_size"], peer_key=R.peer.spki, store=store,
                 limits=Limits(rekey_records=setup["responder_rekey_records"]))
    ri = iter(ini[4:])
    rr = iter(res[3:])

    def feed(s: Session, it, n: int):
        for _ in range(n):
            s.receive(*split_frame(next(it)))

    try:
        SI.send_message(b"Hello, Bob! This message spans three records.")
        feed(SR, ri, 4)
        SR.flush_receipts()
        SR.send_message(b"Hi Ada.")
        feed(SI, rr, 3)
        SI.flush_receipts()
        SI.outgoing.offer(
            [(tuple(setup["file_0_path"].split("/")), BytesSource(file_0)), (tuple(setup["file_1_path"].split("/")), BytesSource(b""))]
        )
        feed(SR, ri, 3)  # receipt, key update, offer
        c.ok("replay: the responder holds offer 1 pending (9.4)", SR.incoming.offers[1].state == OfferState.PENDING)
        SR.incoming.accept(1)
        feed(SI, rr, 2)  # key update, accept
        while SI.outgoing.step(SI.chunk):
            pass
        SI.send_done()
        feed(SR, ri, 8)
        # 8.4 (as revised): a side with nothing of its own to start sends DONE
        # no later than when it has processed the peer's DONE; then it is
        # finished, and sends CLOSE(0) before it waits for more input.
        c.ok("replay: the responder has the initiator's DONE and is not finished before its own", SR.recv_done and not SR.finished())
        SR.send_done()
        c.ok("replay: the responder is finished once it has sent DONE (8.4)", SR.finished())
        SR.close(CLOSE_GOODBYE)
        feed(SI, rr, 4)  # verdict, verdict, key update, DONE
        c.ok("replay: the initiator is finished once it has processed the responder's DONE (8.4)", SI.finished())
        SI.close(CLOSE_GOODBYE)
        # The responder's CLOSE, which followed its DONE, the initiator discards unopened (8.5).
        c.eq("replay: the responder's last frame is its CLOSE, left unread", split_frame(next(rr))[0], CLOSE)
    except (ChatError, StopIteration) as e:
        c.ok("replay: application phase", False, repr(e))
    out_i += SI.take_output()
    out_r += SR.take_output()
    for k, (got, want) in enumerate(zip(out_i, ini, strict=False)):
        c.eq(f"replay: initiator's frame {k + 1} of {len(ini)} byte for byte", got, want)
    for k, (got, want) in enumerate(zip(out_r, res, strict=False)):
        c.eq(f"replay: responder's frame {k + 1} of {len(res)} byte for byte", got, want)
    c.eq("replay: number of frames each side sent", (len(out_i), len(out_r)), (len(ini), len(res)))
    c.eq("replay: the responder saved both files", store.saved, {tuple(setup["file_0_path"].split("/")): file_0, tuple(setup["file_1_path"].split("/")): b""})
    c.eq("replay: the initiator got both verdicts 'saved'", SI.outgoing.offers[1].verdicts, {0: 0, 1: 0})
    c.eq("replay: both sides sent CLOSE(0)", (SI.sent_close, SR.sent_close), (0, 0))
    c.eq("replay: epochs at the end (i2r, r2i)", (SI.tx.epoch, SR.tx.epoch, SR.rx.epoch, SI.rx.epoch), (2, 2, 2, 2))

    # --- negative checks of the same session: what a strict receiver refuses
    def fresh_pair():
        return (
            Session(I.send_secret, I.recv_secret, clock=clock, chunk=16),
            Session(R.send_secret, R.recv_secret, clock=clock, chunk=16, store=MemoryStore()),
        )

    a, b = fresh_pair()
    bad = bytearray(ini[4])
    bad[-1] ^= 1
    c.raises("negative: an altered record fails to authenticate (7.1)", lambda: b.receive(*split_frame(bytes(bad))), "authentication-failure")
    a, b = fresh_pair()
    c.raises("negative: a dropped record shows at the next (13.5)", lambda: b.receive(*split_frame(ini[5])), "authentication-failure")
    a, b = fresh_pair()
    c.raises("negative: a record reflected to its sender fails (13.5)", lambda: a.receive(*split_frame(ini[4])), "authentication-failure")
    a, b = fresh_pair()
    a.out.append(a.tx.key.seal(KEY_UPDATE, u64(2)))
    c.raises("negative: KEY_UPDATE with the wrong epoch (7.2)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    a.send(MESSAGE_START, u64(2) + u64(1))
    c.raises("negative: message id 2 first (8.1)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    a.send(MESSAGE_START, u64(1) + u64(3))
    a.send(MESSAGE_DATA, b"abc")
    o = a.take_output()

    def data_leaves_nothing():
        b.receive(*split_frame(o[0]))
        b.receive(*split_frame(o[1]))

    c.raises("negative: MESSAGE_DATA that leaves no byte for MESSAGE_END (8.1)", data_leaves_nothing, "protocol-violation")
    a, b = fresh_pair()
    a.send(RECEIPT, u64(1))
    c.raises("negative: RECEIPT for a message never sent (8.2)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    b.limits.max_message = 10
    a.send(MESSAGE_START, u64(1) + u64(11))
    c.raises("negative: a message over the limit is too large (8.1, 11)", lambda: b.receive(*split_frame(a.take_output()[0])), "too-large")
    a, b = fresh_pair()
    a.send(0x20, b"")
    c.raises("negative: an authentic record of an unknown type (8)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    a.send(FILE_OFFER, encode_offer(1, [(("..",), 1)]))
    b.receive(*split_frame(a.take_output()[0]))
    c.eq("negative: an offer with the name '..' is rejected with reason 3 (9.3)", split_frame(b.take_output()[0])[0], FILE_REJECT)
    a, b = fresh_pair()
    for i in range(1, 10):
        a.send(FILE_OFFER, encode_offer(i, [((f"f{i}",), 1)]))
    o = a.take_output()

    def ninth():
        for f in o:
            b.receive(*split_frame(f))

    c.raises("negative: a ninth open offer (9.4)", ninth, "protocol-violation")
    a, b = fresh_pair()
    a.send(FILE_DATA, b"x")
    c.raises("negative: FILE_DATA outside an entry (9.6)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    a.send(FILE_CANCEL, u64(1) + bytes([2, 1]))
    c.raises("negative: FILE_CANCEL side 2 (9.2)", lambda: b.receive(*split_frame(a.take_output()[0])), "protocol-violation")
    a, b = fresh_pair()
    a.send(DONE, b"")
    a.send(DONE, b"")
    o = a.take_output()

    def done_twice():
        for f in o:
            b.receive(*split_frame(f))

    c.raises("negative: DONE twice (8.4, 11)", done_twice, "protocol-violation")
    # an empty-bodied record under 17 bytes, and a first frame that is not a ClientHello
    c.raises("negative: a record shorter than 17 bytes (7.1)", lambda: fresh_pair()[1].receive(KEEPALIVE, b"\0" * 15), "authentication-failure")
    R2 = ResponderHandshake(rkey, "bob", lambda: tkey, Rng())
    c.raises("negative: a ClientHello of version 1 is refused (5.1)", lambda: R2.receive(CLIENT_HELLO, b"chat\x01" + b"\0" * 32), "unsupported-version")
    R3 = ResponderHandshake(rkey, "bob", lambda: tkey, Rng())
    c.raises("negative: a ClientHello with a bad magic (5.1)", lambda: R3.receive(CLIENT_HELLO, b"chaT\x02" + b"\0" * 32), "not-a-chat-peer")
    try:
        R2b = ResponderHandshake(rkey, "bob", lambda: tkey, Rng())
        R2b.receive(CLIENT_HELLO, b"chat\x01" + b"\0" * 32)
    except ChatError as e:
        c.eq("negative: the Refusal sent to a version-1 initiator (5.3)", e.send, [frame(REFUSAL, b"\x01\x02")])


def check_names(c: Checker, vdir: str):
    with open(os.path.join(vdir, "names.toml"), "rb") as f:
        v = tomllib.load(f)
    # 9.3 (as revised): Unicode 14.0.0; this Python's data must agree with it
    # on every assigned character (the digests of names.toml [unicode]).
    u = v["unicode"]
    c.eq("names.toml: the Unicode version of 9.3", u["version"], "14.0.0")
    load_assigned(os.path.join(vdir, u["assigned"]))

    def digest(mapping) -> str:
        h = hashlib.sha256()
        for first, last in _assigned:
            for cp in range(first, last + 1):
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                m = mapping(chr(cp))
                if m != chr(cp):
                    h.update(f"{cp:04X}>{' '.join(f'{ord(x):04X}' for x in m)}\n".encode())
        return h.hexdigest()

    c.eq(f"Unicode {unicodedata.unidata_version} lowercase = 14.0.0's for assigned characters (9.3)", digest(str.lower), u["lowercase_sha256"])
    c.eq(f"Unicode {unicodedata.unidata_version} NFC = 14.0.0's for assigned characters (9.3)", digest(lambda x: unicodedata.normalize("NFC", x)), u["nfc_sha256"])
    for n in v["name"]:
        broken = name_rules_broken(n["value"])
        want = n["rule"]
        first = broken[0] if broken else 0
        # 9.3 (as revised): a name is reported as breaking its lowest-numbered rule.
        c.eq(f"name {n['value']!r}: the lowest-numbered rule broken is {want} (9.3)", first, want)
    for m in v["manifest"]:
        paths = [tuple(p.split("/")) for p in m["paths"]]
        c.eq(f"manifest {m['paths']}: {m['problem'] or 'no problem'} (9.3)", manifest_problem(paths), m["problem"])


def check_fingerprints(c: Checker, vdir: str):
    with open(os.path.join(vdir, "fingerprints.toml"), "rb") as f:
        v = tomllib.load(f)
    for k in v["key"]:
        spki = spki_der(load_key(os.path.join(vdir, k["file"])))
        c.eq(f"fingerprint of {k['file']} (FINGERPRINTS.md)", fingerprint(spki), k["fingerprint"])
    a, b = (spki_der(load_key(os.path.join(vdir, f))) for f in v["safety_number"]["keys"])
    digits = safety_number(a, b)
    c.eq("safety number (FINGERPRINTS.md)", digits, v["safety_number"]["digits"])
    c.eq("safety number is symmetric", safety_number(b, a), digits)
    c.eq("safety number display", " ".join(digits[i : i + 5] for i in range(0, 60, 5)), v["safety_number"]["display"])


def run_check(args) -> int:
    c = Checker()
    check_session_vector(c, args.vectors)
    check_names(c, args.vectors)
    check_fingerprints(c, args.vectors)
    print(f"{c.passes} passed, {c.failures} failed")
    return 1 if c.failures else 0


# ================================================================ network edge


def emit(event: str, **kw):
    print(json.dumps({"event": event, **kw}, ensure_ascii=True), flush=True)


class Link:
    """One TCP connection: frames in with their length checked first (4, 12),
    flights out with one write each."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.eof = False
        self.frames_read = 0
        now = time.monotonic()
        self.last_sent = now
        self.last_record = now

    def write(self, frames: list[bytes]):
        if frames:
            self.sock.sendall(b"".join(frames))
            self.last_sent = time.monotonic()

    def has_frame(self) -> bool:
        if len(self.reader.buf) < 4:
            return False
        (length,) = struct.unpack(">I", self.reader.buf[:4])
        return len(self.reader.buf) >= 4 + length

    def read_frame(self, deadline: float) -> tuple[int, bytes] | None:
        """The next frame, or None at the deadline. Raises FrameTooLong, or
        ChatError('cut') at the end of the stream."""
        while True:
            f = self.reader.next()
            if f is not None:
                self.frames_read += 1
                return f
            if self.eof:
                partial = f" in the middle of a frame ({len(self.reader.buf)} bytes)" if self.reader.buf else ""
                raise ChatError("cut", "8.5", f"the connection ended without an authenticated CLOSE{partial}")
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], timeout)
            if r:
                try:
                    data = self.sock.recv(1 << 18)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof = True
                else:
                    self.reader.feed(data)

    def close_after_close(self):
        """8.5: after our CLOSE, half-close and discard what arrives, unopened,
        until the peer closes its direction or two seconds pass."""
        discarded = len(self.reader.buf)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2
            while not self.eof and (left := deadline - time.monotonic()) > 0:
                r, _, _ = select.select([self.sock], [], [], left)
                if r:
                    b = self.sock.recv(1 << 16)
                    discarded += len(b)
                    if not b:
                        self.eof = True
        except OSError:
            pass
        self.sock.close()
        return {"discarded_bytes": discarded, "peer_closed": self.eof}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# The handshake states in which the next frame is a record (m4 to m7, or the
# initiator's CLOSE): a frame of length 0 there is an authentication failure (4, 7.1).
RECORD_STATES = {"WAIT_RESPONDER_IDENTITY", "WAIT_RESPONDER_AUTH", "WAIT_INITIATOR_IDENTITY", "WAIT_INITIATOR_AUTH"}


def handshake_frame_too_long(e: FrameTooLong, first: bool, state: str = "") -> ChatError:
    if e.length == 0 and state in RECORD_STATES:
        return ChatError("authentication-failure", "4, 7.1", "a frame of length 0 where a record is expected")
    if e.length == 0:
        return ChatError("not-a-chat-peer" if first else "malformed", "4", "a frame of length 0")
    if first:
        return ChatError("not-a-chat-peer", "5.1, 11", f"the first frame's length {e.length} is 0 or over the handshake limit {e.limit}")
    return ChatError("malformed", "12", f"a handshake frame's length {e.length} is 0 or over the limit {e.limit}")


def report_error(e: ChatError, phase: str):
    emit("error", kind=e.kind, section=e.section, detail=e.detail, phase=phase)


def run_application(link: Link, s: Session, *, done_when, on_idle=None) -> dict:
    """The application phase over one link, until a CLOSE is sent or received,
    an error, or a cut. Returns a summary. `done_when(s)` says when to send our
    DONE; `on_idle(s)` may seal more records (a file sender) when no input waits."""
    result = {"error": None, "close_sent": None, "close_received": None}
    try:
        while True:
            now = time.monotonic()
            s.incoming.expire(now)
            if on_idle is not None and not link.has_frame():
                on_idle(s)
            if not s.sent_done and done_when(s):
                s.send_done()
            if s.finished() and s.sent_close is None:
                s.close(CLOSE_GOODBYE)
            if s.sent_close is None and time.monotonic() - link.last_sent >= 15 and not s.out:
                s.send(KEEPALIVE, b"")
            link.write(s.take_output())
            for ev in s.events:
                emit(ev.pop("event"), **ev)
            s.events.clear()
            if s.sent_close is not None:
                result["close_sent"] = s.sent_close
                emit("close-sent", reason=s.sent_close, text=close_reason_text(s.sent_close))
                emit("closed", **link.close_after_close())
                return result
            busy = on_idle is not None and (s.outgoing.sending is not None or bool(s.outgoing.queue))
            deadline = min(link.last_sent + 15, link.last_record + 60)
            if busy:
                deadline = time.monotonic()
            try:
                f = link.read_frame(deadline)
            except FrameTooLong as e:
                if e.length == 0:  # below 17: an authentication failure (7.1)
                    raise ChatError("authentication-failure", "4, 7.1", "a frame of length 0") from None
                raise ChatError("frame-too-long", "4, 12", f"a frame of length {e.length}, over the limit {e.limit}") from None
            if f is None:
                if time.monotonic() - link.last_record >= 60:
                    raise ChatError("dead-peer", "8.3, 12", "no complete record for 60 seconds")
                continue
            s.receive(*f)
            link.last_record = time.monotonic()
            if s.recv_close is not None:
                for ev in s.events:
                    emit(ev.pop("event"), **ev)
                s.events.clear()
                result["close_received"] = s.recv_close
                link.close()  # no answer to a CLOSE, nothing read after it (8.5)
                return result
            if not link.has_frame():
                s.flush_receipts()
    except ChatError as e:
        s.fail(e)
        for ev in s.events:
            emit(ev.pop("event"), **ev)
        s.events.clear()
        report_error(e, "application")
        result["error"] = e
        try:
            link.write(s.take_output())
        except OSError:
            pass
        if s.sent_close is not None:
            result["close_sent"] = s.sent_close
            emit("close-sent", reason=s.sent_close, text=close_reason_text(s.sent_close))
            emit("closed", **link.close_after_close())
        else:
            s.incoming.cut()
            link.close()
        return result
    except OSError as e:
        report_error(ChatError("cut", "8.5", f"the connection failed: {e}"), "application")
        result["error"] = e
        s.incoming.cut()
        link.close()
        return result


def serve_policy_for(store: DiskStore):
    def policy(s: Session, o: InOffer):
        total = sum(size for _, size in o.entries)
        free = __import__("shutil").disk_usage(store.save_dir).free
        if total > free:
            s.incoming.reject(o.id, REJECT_TOO_LARGE)
        else:
            s.incoming.accept(o.id)

    return policy


def run_serve(args) -> int:
    identity = load_key(args.key)
    check_own_identity(identity)
    nickname = args.nickname
    transient = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # before it is needed (1, 13.4)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(1)
    print(f"listening on 127.0.0.1:{srv.getsockname()[1]}", flush=True)
    sock, addr = srv.accept()
    srv.close()
    emit("connection", address=f"{addr[0]}:{addr[1]}")
    link = Link(sock)
    started = time.monotonic()
    taken = []

    def take():
        taken.append(True)
        return transient

    hs = ResponderHandshake(identity, nickname, take)
    try:
        while hs.state != "ESTABLISHED":
            try:
                f = link.read_frame(started + 10)
            except FrameTooLong as e:
                raise handshake_frame_too_long(e, link.frames_read == 0, hs.state) from None
            if f is None:
                raise ChatError("dead-peer", "12", "the handshake was not complete within 10 seconds")
            link.write(hs.receive(*f))
            link.reader.limit = hs.limit
    except ChatError as e:
        try:
            link.write(e.send)
        except OSError:
            pass
        report_error(e, "handshake")
        link.close()
        emit("end", ok=False)
        return 1
    peer = hs.peer
    emit("handshake", peer_nickname=peer.nickname, peer_fingerprint=peer.fingerprint, peer_bits=peer.key.key_size)
    store = DiskStore(args.save_dir, args.partial_dir or args.save_dir.rstrip("/") + ".partial")
    limits = Limits(max_message=args.max_message, rekey_bytes=args.rekey_bytes)
    s = Session(hs.send_secret, hs.recv_secret, peer_key=peer.spki, store=store, policy=serve_policy_for(store), limits=limits)
    if args.done_at == "start":
        s.send_done()

    def done_when(s: Session) -> bool:
        return args.done_at != "never" and s.recv_done and s.in_msg is None

    result = run_application(link, s, done_when=done_when)
    ok = result["error"] is None and (result["close_sent"] == 0 and s.finished() or result["close_received"] == 0)
    problems = []
    if s.in_msg is not None:
        problems.append(f"message {s.in_msg['id']} was cut off")
    for o in s.incoming.offers.values():
        if o.state != OfferState.FINISHED:
            problems.append(f"offer {o.id} was still open ({o.state})")
        elif o.cancelled_by:
            problems.append(f"offer {o.id} was cancelled by the {o.cancelled_by}")
        else:
            bad = {i: v for i, v in o.verdicts.items() if v != VERDICT_SAVED}
            if bad:
                problems.append(f"offer {o.id}: entries not saved: {bad}")
    if s.last_received != s.last_receipt_sent:
        problems.append("a receipt was not sent")
    if result["close_received"] not in (None, 0):
        problems.append(f"the peer closed with reason {result['close_received']} ({close_reason_text(result['close_received'])})")
    ok = ok and not problems
    emit("end", ok=ok, problems=problems)
    return 0 if ok else 1


def run_send(args) -> int:
    identity = load_key(args.key)
    host, _, port = args.address.rpartition(":")
    sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
    sock.settimeout(None)
    link = Link(sock)
    started = time.monotonic()
    hs = InitiatorHandshake(identity, args.nickname)
    try:
        link.write([hs.start()])
        while hs.state != "RESPONDER_VERIFIED":
            try:
                f = link.read_frame(started + 10)
            except FrameTooLong as e:
                raise handshake_frame_too_long(e, link.frames_read == 0, hs.state) from None
            if f is None:
                raise ChatError("dead-peer", "12", "the handshake was not complete within 10 seconds")
            link.write(hs.receive(*f))
        link.reader.limit = APP_LIMIT  # from the first frame after m5 (12)
        peer = hs.peer
        emit("handshake", peer_nickname=peer.nickname, peer_fingerprint=peer.fingerprint, peer_bits=peer.key.key_size)
        if args.expect and peer.fingerprint != args.expect:
            link.write(hs.refuse())
            emit("close-sent", reason=CLOSE_UNTRUSTED, text="untrusted")
            emit("closed", **link.close_after_close())
            emit("end", ok=False)
            return 1
        link.write(hs.accept())
    except ChatError as e:
        try:
            link.write(e.send)  # the CLOSE of 5.9, if one is due
        except OSError:
            pass
        report_error(e, "handshake")
        link.close()
        emit("end", ok=False)
        return 1
    s = Session(
        hs.send_secret,
        hs.recv_secret,
        peer_key=peer.spki,
        chunk=args.chunk,
        store=MemoryStore(),
        policy=lambda s, o: s.incoming.reject(o.id, REJECT_NOT_ACCEPTING),
        limits=Limits(rekey_bytes=args.rekey_bytes),
    )
    for m in args.message:
        emit("sent", id=s.send_message(m.encode()))
    if args.file:
        entries = []
        for p in args.file:
            entries.append(((os.path.basename(p),), FileSource(p)))
        try:
            s.outgoing.offer(entries)
        except ValueError as e:
            emit("error", kind="local", section="9.3", detail=str(e))
            return 1
    s.send_done()

    def on_idle(s: Session):
        for _ in range(16):
            if not s.outgoing.step(s.chunk):
                break

    result = run_application(link, s, done_when=lambda s: True, on_idle=on_idle)
    ok = result["error"] is None and (result["close_sent"] == 0 or result["close_received"] == 0)
    ok = ok and s.last_acked == s.last_sent_complete and all(
        o.state == OfferState.FINISHED and len(o.verdicts) == len(o.entries) and set(o.verdicts.values()) <= {0} for o in s.outgoing.offers.values()
    )
    emit("end", ok=ok, acked=s.last_acked, sent=s.last_sent_complete)
    return 0 if ok else 1


# ================================================================ command line


def size_arg(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in mult:
        return int(text[:-1]) * mult[text[-1:].upper()]
    return int(text)


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    ck = sub.add_parser("check", help="check docs/vectors/ (the default)")
    ck.add_argument("--vectors", default=os.path.join(here, "..", "..", "docs", "vectors"))
    sv = sub.add_parser("serve", help="a responder for one connection")
    sv.add_argument("--port", type=int, default=0)
    sv.add_argument("--key", required=True, help="our identity key (PEM, unencrypted)")
    sv.add_argument("--save-dir", required=True)
    sv.add_argument("--partial-dir", default=None, help="where partial files are kept (default: SAVE_DIR.partial)")
    sv.add_argument("--nickname", default="peer_v2")
    sv.add_argument("--done-at", choices=("peer-done", "start", "never"), default="peer-done", help="when to send our DONE")
    sv.add_argument("--max-message", type=size_arg, default=2**32)
    sv.add_argument("--rekey-bytes", type=size_arg, default=2**30, help="B of 7.2 (lower it to exercise key updates)")
    sd = sub.add_parser("send", help="an initiator: send messages and files")
    sd.add_argument("address")
    sd.add_argument("--key", required=True)
    sd.add_argument("--nickname", default="peer_v2")
    sd.add_argument("--message", action="append", default=[])
    sd.add_argument("--file", action="append", default=[])
    sd.add_argument("--chunk", type=int, default=65536)
    sd.add_argument("--rekey-bytes", type=size_arg, default=2**30, help="B of 7.2 (lower it to exercise key updates)")
    sd.add_argument("--expect", default=None, help="refuse the responder unless its fingerprint is this")
    args = ap.parse_args(argv)
    if args.cmd in (None, "check"):
        if args.cmd is None:
            args.vectors = os.path.join(here, "..", "..", "docs", "vectors")
        return run_check(args)
    if args.cmd == "serve":
        return run_serve(args)
    return run_send(args)


if __name__ == "__main__":
    sys.exit(main())
