#!/usr/bin/env python3
"""Independent check of docs/vectors against docs/PROTOCOL.md and docs/FINGERPRINTS.md.

Written from the two documents alone (no knowledge of chat's Rust source), using
only the Python standard library and the `cryptography` package. Every value is
recomputed from the specification and only then compared with the vector files;
values listed in the files are never used as inputs. Even the random values are
recovered rather than read: the nonces from the hellos, the session secret by
OAEP decryption with keys/transient.pem, the OAEP seed and the PSS salts by
inverting the RSA encodings. Sequence numbers are counted here, per key.

Version 2 of the protocol adds key updates (a chain of traffic secrets per
direction, PROTOCOL.md 6 and 7.2) and files (section 9): the key in force for
each record is followed from the KEY_UPDATE records, each epoch's secret, key
and IV derived here; the file records are decoded, their names checked by the
rules of 9.3, and the transfer followed from offer to verdict, resume
included, with every SHA-256 recomputed.

Usage: python3 tests/interop/check_vectors.py docs/vectors

Prints one line per check and exits 0 only if every check passes; the first
failure prints FAIL with the reason and exits 1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# --------------------------------------------------------------------------
# Constants from PROTOCOL.md
# --------------------------------------------------------------------------

# Section 4.1: type -> (name, sent by, protection). The file records are sent
# by the side that offers the files or the side offered them, whichever that
# is; "either" here, and the roles are checked by the transfer rules (9.10).
FRAME_TYPES = {
    0x01: ("ClientHello", "initiator", "plaintext"),
    0x02: ("ServerHello", "responder", "plaintext"),
    0x03: ("KeyTransport", "initiator", "plaintext"),
    0x04: ("ResponderIdentity", "responder", "hs r2i"),
    0x05: ("ResponderAuth", "responder", "hs r2i"),
    0x06: ("InitiatorIdentity", "initiator", "hs i2r"),
    0x07: ("InitiatorAuth", "initiator", "hs i2r"),
    0x0F: ("Refusal", "responder", "plaintext"),
    0x10: ("MESSAGE_START", "either", "app"),
    0x11: ("MESSAGE_DATA", "either", "app"),
    0x12: ("MESSAGE_END", "either", "app"),
    0x13: ("RECEIPT", "either", "app"),
    0x14: ("KEEPALIVE", "either", "app"),
    0x15: ("CLOSE", "either", "app"),
    0x16: ("DONE", "either", "app"),
    0x17: ("KEY_UPDATE", "either", "app"),
    0x18: ("FILE_OFFER", "either", "app"),
    0x19: ("FILE_ACCEPT", "either", "app"),
    0x1A: ("FILE_REJECT", "either", "app"),
    0x1B: ("FILE_START", "either", "app"),
    0x1C: ("FILE_DATA", "either", "app"),
    0x1D: ("FILE_END", "either", "app"),
    0x1E: ("FILE_VERDICT", "either", "app"),
    0x1F: ("FILE_CANCEL", "either", "app"),
}
T_CLIENT_HELLO, T_SERVER_HELLO, T_KEY_TRANSPORT = 0x01, 0x02, 0x03
T_RESP_IDENTITY, T_RESP_AUTH, T_INIT_IDENTITY, T_INIT_AUTH = 0x04, 0x05, 0x06, 0x07
T_START, T_DATA, T_END, T_RECEIPT, T_KEEPALIVE, T_CLOSE, T_DONE = range(0x10, 0x17)
T_KEY_UPDATE = 0x17
(T_FILE_OFFER, T_FILE_ACCEPT, T_FILE_REJECT, T_FILE_START, T_FILE_DATA, T_FILE_END,
 T_FILE_VERDICT, T_FILE_CANCEL) = range(0x18, 0x20)

HANDSHAKE_ORDER = [  # m1 .. m7, section 1 and 5.8
    T_CLIENT_HELLO, T_SERVER_HELLO, T_KEY_TRANSPORT,
    T_RESP_IDENTITY, T_RESP_AUTH, T_INIT_IDENTITY, T_INIT_AUTH,
]

MAGIC = b"chat"                       # 5.1
VERSION = 0x02                        # 5.1, 5.2
NONCE_LEN = 32                        # 5.1, 5.2
SECRET_LEN = 32                       # 5.4
OAEP_LABEL = b"chat v1 session secret"  # 3, 5.4
HKDF_SALT = b"chat v1"                # 6
SIG_CONTEXT_RESPONDER = b"chat v1 responder signature"  # 5.6
SIG_CONTEXT_INITIATOR = b"chat v1 initiator signature"  # 5.6
APP_SECRET_LABEL = "chat v2 app {direction} secret"  # 6
TRAFFIC_KEY_LABEL = b"chat v2 traffic key"          # 6
TRAFFIC_IV_LABEL = b"chat v2 traffic iv"            # 6
TRAFFIC_UPDATE_LABEL = b"chat v2 traffic update"    # 6, 7.2
PSS_SALT_LEN = 32                     # 3, 5.6
TAG_LEN = 16                          # 3, 7
IV_LEN = 12                           # 6
KEY_LEN = 32                          # 6

HANDSHAKE_FRAME_LIMIT = 4096          # 11
SESSION_FRAME_LIMIT = 1 + 262_144 + 16  # 11
MAX_CHUNK = 262_144                   # 8, 11
DEFAULT_MESSAGE_LIMIT = 2**32         # 11
MAX_RECORDS_PER_KEY = 2**32          # 7.1
MAX_BYTES_PER_KEY = 2**38            # 7.1
KEY_UPDATE_BYTES = 2**30             # 7.2, the default triggers
KEY_UPDATE_RECORDS = 2**24           # 7.2
UNICODE_VERSION = "14.0.0"           # 9.3

# Section 9.
MAX_OPEN_OFFERS = 8
MAX_ENTRIES = 4096
MAX_DEPTH = 32
MAX_NAME_BYTES = 255
REJECT_REASONS = {1: "declined", 2: "expired", 3: "unsafe name", 4: "too large",
                  5: "not accepting", 6: "name taken"}
VERDICTS = {0: "saved", 1: "hash mismatch", 2: "could not write", 3: "name taken"}
CANCEL_REASONS = {0: "answer", 1: "user", 2: "could not read", 3: "could not write"}

CLOSE_REASONS = {
    0: "goodbye",
    1: "untrusted",
    2: "too large",
    3: "busy",
    4: "protocol error",
    5: "superseded",
    6: "displaced",
}

# Section 14: the scenario the vector file records.
EXPECTED_MESSAGES = {
    "initiator": [b"Hello, Bob! This message spans three records."],
    "responder": [b"Hi Ada."],
}
EXPECTED_NICKNAMES = {"initiator": "ada", "responder": "bob"}
EXPECTED_KEY_BITS = {"initiator.pem": 2048, "responder.pem": 3072, "transient.pem": 2048}
VECTOR_CHUNK_SIZE = 16

# FINGERPRINTS.md
SAFETY_CONTEXT = b"chat safety number v1"
SAFETY_ITERATIONS = 5200

# The rsaEncryption AlgorithmIdentifier with NULL parameters (section 3).
RSA_ENCRYPTION_ALGID = bytes.fromhex("300d06092a864886f70d0101010500")


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

class CheckFailed(Exception):
    pass


def check(description: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise CheckFailed(f"{description}" + (f": {detail}" if detail else ""))
    print(f"PASS {description}")


def check_eq(description: str, computed, expected) -> None:
    """computed: what this script decoded or derived; expected: the spec's or the file's value."""
    def show(v):
        return v.hex() if isinstance(v, (bytes, bytearray)) else repr(v)
    check(description, computed == expected, f"got {show(computed)}, expected {show(expected)}")


# --------------------------------------------------------------------------
# Encoding helpers (section 2)
# --------------------------------------------------------------------------

def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class Reader:
    """Strict big-endian reader: every read must fit, and end() rejects trailing bytes."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CheckFailed(f"{self.what}: truncated (need {n} bytes at offset {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def opaque(self, len_size: int) -> bytes:
        return self.take(self.uint(len_size))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CheckFailed(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


# --------------------------------------------------------------------------
# Keys (section 3)
# --------------------------------------------------------------------------

def spki_der(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def der_first_element(der: bytes) -> bytes:
    """The first TLV inside the outer SEQUENCE of a DER encoding (the AlgorithmIdentifier)."""
    def tlv_header(data: bytes, pos: int) -> tuple[int, int]:
        first = data[pos + 1]
        if first < 0x80:
            return pos + 2, first
        n = first & 0x7F
        return pos + 2 + n, int.from_bytes(data[pos + 2:pos + 2 + n], "big")
    body, _ = tlv_header(der, 0)
    inner_body, inner_len = tlv_header(der, body)
    return der[body:inner_body + inner_len]


def parse_rsa_spki(der: bytes, what: str, min_bits: int, max_bits: int) -> rsa.RSAPublicKey:
    """Section 3: canonical DER SPKI, rsaEncryption with NULL parameters, size and exponent."""
    key = serialization.load_der_public_key(der)
    check(f"{what}: is an RSA key", isinstance(key, rsa.RSAPublicKey))
    check_eq(f"{what}: AlgorithmIdentifier is rsaEncryption with NULL parameters",
             der_first_element(der), RSA_ENCRYPTION_ALGID)
    check(f"{what}: canonical DER (re-encoding gives the same bytes)", spki_der(key) == der)
    bits = key.key_size
    check(f"{what}: modulus of {min_bits} to {max_bits} bits", min_bits <= bits <= max_bits,
          f"{bits} bits")
    check_eq(f"{what}: public exponent", key.public_numbers().e, 65537)
    return key


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CheckFailed(f"{path.name}: not an RSA private key")
    return key


# --------------------------------------------------------------------------
# RSA details, for reproducing the randomised outputs (RFC 8017)
# --------------------------------------------------------------------------

def mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def rsa_raw_private(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    n, d = key.public_key().public_numbers().n, key.private_numbers().d
    k = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(data, "big"), d, n).to_bytes(k, "big")


def rsa_raw_public(key: rsa.RSAPublicKey, data: bytes) -> bytes:
    numbers = key.public_numbers()
    k = (numbers.n.bit_length() + 7) // 8
    return pow(int.from_bytes(data, "big"), numbers.e, numbers.n).to_bytes(k, "big")


def oaep_encode(message: bytes, label: bytes, seed: bytes, k: int) -> bytes:
    """EME-OAEP encoding, RFC 8017 section 7.1.1 step 2, SHA-256 and MGF1-SHA-256."""
    h_len = 32
    db = hashlib.sha256(label).digest() + b"\x00" * (k - len(message) - 2 * h_len - 2) \
        + b"\x01" + message
    masked_db = xor(db, mgf1_sha256(seed, k - h_len - 1))
    masked_seed = xor(seed, mgf1_sha256(masked_db, h_len))
    return b"\x00" + masked_seed + masked_db


def oaep_recover_seed(em: bytes) -> bytes:
    """Inverse of the masking in oaep_encode: the seed the encrypter drew."""
    h_len = 32
    masked_seed, masked_db = em[1:1 + h_len], em[1 + h_len:]
    return xor(masked_seed, mgf1_sha256(masked_db, h_len))


def pss_encode(message: bytes, salt: bytes, mod_bits: int) -> bytes:
    """EMSA-PSS encoding, RFC 8017 section 9.1.1, SHA-256, MGF1-SHA-256, trailer 0xBC."""
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha256(message).digest()
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - len(h) - 2) + b"\x01" + salt
    masked_db = bytearray(xor(db, mgf1_sha256(h, em_len - len(h) - 1)))
    masked_db[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked_db) + h + b"\xbc"


def pss_recover_salt(em: bytes, mod_bits: int) -> bytes:
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    em = em[len(em) - em_len:]
    masked_db, h = em[:em_len - 33], em[em_len - 33:em_len - 1]
    db = bytearray(xor(masked_db, mgf1_sha256(h, em_len - 33)))
    db[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(db[-PSS_SALT_LEN:])


# --------------------------------------------------------------------------
# Key schedule (section 6) and record protection (section 7)
# --------------------------------------------------------------------------

def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def expand(prk: bytes, label: str, th: bytes, length: int) -> bytes:
    return hkdf_expand(prk, label.encode("ascii") + th, length)


def derive_handshake_keys(prk: bytes, th3: bytes) -> dict[str, bytes]:
    """Section 6: {"hs_<dir>_key": ..., "hs_<dir>_iv": ...}."""
    out = {}
    for direction in ("i2r", "r2i"):
        label = f"chat v1 hs {direction}"
        out[f"hs_{direction}_key"] = expand(prk, f"{label} key", th3, KEY_LEN)
        out[f"hs_{direction}_iv"] = expand(prk, f"{label} iv", th3, IV_LEN)
    return out


def first_traffic_secret(prk: bytes, direction: str, th7: bytes) -> bytes:
    """Section 6: the application traffic secret of epoch 0."""
    return expand(prk, APP_SECRET_LABEL.format(direction=direction), th7, 32)


def traffic_key(secret: bytes) -> tuple[bytes, bytes]:
    """Section 6: key_n and iv_n from secret_n (HKDF-Expand keyed by the secret, label alone)."""
    return hkdf_expand(secret, TRAFFIC_KEY_LABEL, KEY_LEN), hkdf_expand(secret, TRAFFIC_IV_LABEL, IV_LEN)


def next_traffic_secret(secret: bytes) -> bytes:
    """Section 6 and 7.2: secret_(n+1) from secret_n."""
    return hkdf_expand(secret, TRAFFIC_UPDATE_LABEL, 32)


def record_nonce(iv: bytes, seq: int) -> bytes:
    return xor(iv, b"\x00\x00\x00\x00" + u64(seq))


def record_aad(length: int, frame_type: int, seq: int) -> bytes:
    return u32(length) + bytes([frame_type]) + u64(seq)


@dataclass
class RecordKey:
    """One direction's current key: key, IV and this side's own counts under it (7.1)."""
    name: str
    key: bytes
    iv: bytes
    seq: int = 0
    sealed_bytes: int = 0

    def next_seq(self, plaintext_len: int) -> int:
        seq = self.seq
        if seq >= MAX_RECORDS_PER_KEY or self.sealed_bytes + plaintext_len > MAX_BYTES_PER_KEY:
            raise CheckFailed(f"{self.name}: a key's hard limit passed")
        self.seq += 1
        self.sealed_bytes += plaintext_len
        return seq


@dataclass
class TrafficChain:
    """One direction's application traffic secrets (section 6, 7.2): the current epoch's key."""
    direction: str
    secret: bytes
    epoch: int = 0
    record_key: RecordKey = None  # type: ignore[assignment]

    def __post_init__(self):
        self.install()

    def install(self) -> None:
        key, iv = traffic_key(self.secret)
        self.record_key = RecordKey(f"app_{self.direction}_{self.epoch}", key, iv)

    def update(self, announced_epoch: int, what: str) -> None:
        check_eq(f"{what}: KEY_UPDATE announces the next epoch", announced_epoch, self.epoch + 1)
        self.secret = next_traffic_secret(self.secret)
        self.epoch += 1
        self.install()


# --------------------------------------------------------------------------
# Frames (section 4)
# --------------------------------------------------------------------------

@dataclass
class Frame:
    index: int
    sender: str
    wire: bytes
    length: int
    type: int
    body: bytes
    entry: dict           # the [[frame]] table from the vector file
    plaintext: bytes = b""


def parse_frame(entry: dict, limit: int) -> Frame:
    index, name = entry["index"], entry["name"]
    what = f"frame {index} ({name})"
    wire = bytes.fromhex(entry["frame"])
    r = Reader(wire, what)
    length = r.uint(4)
    check(f"{what}: length {length} is not 0 and within the limit {limit}", 0 < length <= limit)
    frame_type = r.uint(1)
    body = r.take(length - 1)
    r.end()
    check(f"{what}: type 0x{frame_type:02x} is in the frame table", frame_type in FRAME_TYPES)
    table_name, sent_by, _ = FRAME_TYPES[frame_type]
    check_eq(f"{what}: name in the file matches the frame table", table_name, name)
    check(f"{what}: sent by {entry['from']} as the table allows",
          sent_by in ("either", entry["from"]), f"table says {sent_by}")
    return Frame(index, entry["from"], wire, length, frame_type, body, entry)


def open_record(frame: Frame, rk: RecordKey) -> bytes:
    """Section 7: decrypt with our own seq count, compare with the file, re-encrypt."""
    what = f"frame {frame.index} ({FRAME_TYPES[frame.type][0]})"
    entry = frame.entry
    check(f"{what}: record length {frame.length} >= 17", frame.length >= 1 + TAG_LEN)
    seq = rk.next_seq(frame.length - 1 - TAG_LEN)
    nonce = record_nonce(rk.iv, seq)
    aad = record_aad(frame.length, frame.type, seq)
    check_eq(f"{what}: key in the file is {rk.name}", rk.name, entry["key"])
    check_eq(f"{what}: seq {seq} (own count under {rk.name}) matches the file", seq, entry["seq"])
    check_eq(f"{what}: nonce = IV xor seq matches the file", nonce, bytes.fromhex(entry["nonce"]))
    check_eq(f"{what}: aad = length || type || seq matches the file",
             aad, bytes.fromhex(entry["aad"]))
    try:
        plaintext = AESGCM(rk.key).decrypt(nonce, frame.body, aad)
    except Exception as e:  # InvalidTag
        raise CheckFailed(f"{what}: AES-256-GCM authentication failed ({e!r})")
    check(f"{what}: AES-256-GCM decrypts and authenticates", True)
    check_eq(f"{what}: plaintext matches the file", plaintext, bytes.fromhex(entry["plaintext"]))
    check_eq(f"{what}: length = 1 + |P| + 16", frame.length, 1 + len(plaintext) + TAG_LEN)
    sealed = AESGCM(rk.key).encrypt(nonce, plaintext, aad)
    rebuilt = u32(1 + len(plaintext) + TAG_LEN) + bytes([frame.type]) + sealed
    check_eq(f"{what}: re-encryption gives the same frame bytes", rebuilt, frame.wire)
    frame.plaintext = plaintext
    return plaintext


def transcript_entry(frame_type: int, body: bytes) -> bytes:
    """Section 5.7: every handshake message as a plaintext frame."""
    return u32(1 + len(body)) + bytes([frame_type]) + body


# --------------------------------------------------------------------------
# Handshake message bodies (section 5)
# --------------------------------------------------------------------------

def parse_identity(body: bytes, what: str) -> tuple[bytes, str]:
    r = Reader(body, what)
    identity = r.opaque(2)
    nickname_bytes = r.opaque(1)
    r.end()
    check(f"{what}: nickname is 1 to 64 bytes", 1 <= len(nickname_bytes) <= 64,
          f"{len(nickname_bytes)} bytes")
    try:
        nickname = nickname_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckFailed(f"{what}: nickname is not UTF-8 ({e})")
    check(f"{what}: nickname has no control characters (Cc)",
          all(unicodedata.category(c) != "Cc" for c in nickname))
    return identity, nickname


def parse_auth(body: bytes, what: str) -> bytes:
    r = Reader(body, what)
    signature = r.opaque(2)
    r.end()
    return signature


def verify_signature(key: rsa.RSAPublicKey, signature: bytes, context: bytes, th: bytes,
                     what: str) -> None:
    """Section 5.6: RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32, over context || 0x00 || TH."""
    check_eq(f"{what}: signature is as long as the modulus", len(signature),
             (key.key_size + 7) // 8)
    message = context + b"\x00" + th
    try:
        key.verify(signature, message,
                   padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LEN),
                   hashes.SHA256())
    except Exception as e:  # InvalidSignature
        raise CheckFailed(f"{what}: RSA-PSS verification failed ({e!r})")
    check(f"{what}: RSA-PSS signature verifies", True)


# --------------------------------------------------------------------------
# Session (section 8)
# --------------------------------------------------------------------------

@dataclass
class RekeyRule:
    """Section 7.2, "When": one sender's limits, and what its current key has
    sealed. Every KEY_UPDATE must be one the rule calls for, before the record
    that calls for it, and the rule must call for no other."""
    name: str
    limit_bytes: int
    limit_records: int
    sealed_bytes: int = 0
    sealed_records: int = 0
    # After a KEY_UPDATE: what the old key had sealed before it, to be
    # checked against the record that follows.
    pending: tuple[int, int] | None = None
    updates: int = 0
    exact_limit_passed: bool = False   # a record brought a key to exactly B
    close_when_due: bool = False       # a CLOSE went out when an update was due

    def due(self, sealed_bytes: int, sealed_records: int, length: int) -> bool:
        # (The time trigger, one hour, cannot be reached by the vectors.)
        return sealed_records > 0 and (
            sealed_bytes + length > self.limit_bytes
            or sealed_records >= self.limit_records - 1)

    def record(self, frame: Frame) -> None:
        what = f"frame {frame.index} ({FRAME_TYPES[frame.type][0]})"
        length = len(frame.plaintext)
        if frame.type == T_KEY_UPDATE:
            check(f"{what}: not two KEY_UPDATEs in a row", self.pending is None)
            self.pending = (self.sealed_bytes, self.sealed_records)
            self.updates += 1
            self.sealed_bytes = self.sealed_records = 0
            return
        if frame.type == T_CLOSE:
            check(f"{what}: no KEY_UPDATE just before CLOSE (7.2: CLOSE never waits for one)",
                  self.pending is None)
            if self.due(self.sealed_bytes, self.sealed_records, length):
                self.close_when_due = True
        elif self.pending is not None:
            check(f"{what}: the KEY_UPDATE before it is one the 7.2 rule calls for "
                  f"({self.name}: {self.pending[0]} bytes and {self.pending[1]} records "
                  f"under the old key, {length} more)",
                  self.due(*self.pending, length))
            self.pending = None
        else:
            check(f"{what}: the 7.2 rule calls for no KEY_UPDATE before it ({self.name}: "
                  f"{self.sealed_bytes} bytes and {self.sealed_records} records, {length} more)",
                  not self.due(self.sealed_bytes, self.sealed_records, length))
        self.sealed_bytes += length
        self.sealed_records += 1
        if self.sealed_bytes == self.limit_bytes:
            self.exact_limit_passed = True


@dataclass
class SenderState:
    """What a receiver tracks about one sending side (sections 8.1 to 8.5, 9)."""
    name: str
    next_id: int = 1
    current_id: int | None = None
    announced: int = 0
    received: bytearray = field(default_factory=bytearray)
    completed: list[bytes] = field(default_factory=list)
    last_completed_id: int = 0      # last message whose MESSAGE_END was sealed
    last_acknowledged_id: int = 0   # highest id the peer has receipted
    done: bool = False
    closed: bool = False
    close_reason: int | None = None


APP_BODY_LENGTHS = {T_START: 16, T_RECEIPT: 8, T_KEEPALIVE: 0, T_CLOSE: 1, T_DONE: 0,
                    T_KEY_UPDATE: 8}


def apply_app_record(frame: Frame, sender: SenderState, peer: SenderState) -> None:
    what = f"frame {frame.index} ({FRAME_TYPES[frame.type][0]})"
    p = frame.plaintext
    check(f"{what}: not after the sender's CLOSE", not sender.closed)
    if frame.type in APP_BODY_LENGTHS:
        check_eq(f"{what}: body length", len(p), APP_BODY_LENGTHS[frame.type])

    if frame.type == T_START:
        msg_id, length = int.from_bytes(p[:8], "big"), int.from_bytes(p[8:], "big")
        check(f"{what}: not inside a message", sender.current_id is None)
        check(f"{what}: sender has not sent DONE", not sender.done)
        check_eq(f"{what}: carries the next message id", msg_id, sender.next_id)
        check(f"{what}: length {length} within the default receiver limit",
              length <= DEFAULT_MESSAGE_LIMIT)
        sender.current_id, sender.announced, sender.received = msg_id, length, bytearray()
    elif frame.type in (T_DATA, T_END):
        check(f"{what}: inside a message", sender.current_id is not None)
        remaining = sender.announced - len(sender.received)
        check(f"{what}: chunk of at most {MAX_CHUNK} bytes", len(p) <= MAX_CHUNK)
        if frame.type == T_DATA:
            check(f"{what}: carries at least 1 byte", len(p) >= 1)
            check(f"{what}: leaves at least 1 byte to come", len(p) <= remaining - 1,
                  f"{len(p)} bytes of {remaining} remaining")
            check_eq(f"{what}: chunk size of the vectors", len(p), VECTOR_CHUNK_SIZE)
            sender.received += p
        else:
            check_eq(f"{what}: carries exactly the rest of the message", len(p), remaining)
            sender.received += p
            check_eq(f"{what}: message {sender.current_id} has its announced length",
                     len(sender.received), sender.announced)
            sender.completed.append(bytes(sender.received))
            sender.last_completed_id = sender.current_id
            sender.next_id += 1
            sender.current_id = None
    elif frame.type == T_RECEIPT:
        msg_id = int.from_bytes(p, "big")
        # The RECEIPT acknowledges messages its recipient (the peer) sent.
        check(f"{what}: id {msg_id} > last acknowledged {peer.last_acknowledged_id}",
              msg_id > peer.last_acknowledged_id)
        check(f"{what}: id {msg_id} <= last message completely sent {peer.last_completed_id}",
              msg_id <= peer.last_completed_id)
        peer.last_acknowledged_id = msg_id
    elif frame.type in (T_KEEPALIVE, T_KEY_UPDATE):
        pass
    elif frame.type == T_DONE:
        check(f"{what}: not inside a message", sender.current_id is None)
        check(f"{what}: DONE sent at most once", not sender.done)
        sender.done = True
    elif frame.type == T_CLOSE:
        reason = p[0]
        check(f"{what}: reason {reason} is a known reason", reason in CLOSE_REASONS)
        check(f"{what}: no message of the sender is cut off", sender.current_id is None)
        check(f"{what}: no message of the peer is cut off", peer.current_id is None)
        sender.closed, sender.close_reason = True, reason
    elif T_FILE_OFFER <= frame.type <= T_FILE_CANCEL:
        pass  # section 9: apply_file_record
    else:
        raise CheckFailed(f"{what}: type 0x{frame.type:02x} is not an application record")


# --------------------------------------------------------------------------
# Files (section 9)
# --------------------------------------------------------------------------

CONTROL = {*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029}                # 9.3 rule 4
BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}   # 9.3 rule 5
INVISIBLE = {0x00AD, 0x200B, *range(0x2060, 0x2065), 0xFEFF}                      # rule 6
RESERVED = set('<>:"|?*')                                                         # rule 7
WHITE_SPACE = {*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000}                            # rule 8
# Rule 10: the code points Unicode 14.0.0 assigns, as (first, last) ranges, read
# from the file names.toml names (load_assigned); empty until then.
ASSIGNED: list[tuple[int, int]] = []


def load_assigned(vectors: Path) -> None:
    """9.3, "Unicode version": the list of code points Unicode 14.0.0 assigns."""
    data = tomllib.loads((vectors / "names.toml").read_text(encoding="utf-8"))
    check_eq("names.toml: the Unicode version of rule 10", data["unicode"]["version"],
             UNICODE_VERSION)
    ASSIGNED.clear()
    for line in (vectors / data["unicode"]["assigned"]).read_text().splitlines():
        if line and not line.startswith("#"):
            first, _, last = line.partition("..")
            ASSIGNED.append((int(first, 16), int(last or first, 16)))
    check("the assigned ranges are in order and apart",
          all(a[1] + 1 < b[0] for a, b in zip(ASSIGNED, ASSIGNED[1:])))


def is_assigned(c: str) -> bool:
    cp = ord(c)
    lo, hi = 0, len(ASSIGNED)
    while lo < hi:
        mid = (lo + hi) // 2
        if ASSIGNED[mid][1] < cp:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ASSIGNED) and ASSIGNED[lo][0] <= cp
DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$",
           *(f"COM{d}" for d in "0123456789¹²³"), *(f"LPT{d}" for d in "0123456789¹²³")}


def name_rule_broken(name: str) -> int:
    """Section 9.3: the number of a rule the name breaks, or 0 if it is safe."""
    if not 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return 1
    if name in (".", ".."):
        return 2
    if "/" in name or "\\" in name:
        return 3
    if any(ord(c) in CONTROL for c in name):
        return 4
    if any(ord(c) in BIDI for c in name):
        return 5
    if any(ord(c) in INVISIBLE for c in name):
        return 6
    if any(c in RESERVED for c in name):
        return 7
    if ord(name[0]) in WHITE_SPACE or ord(name[-1]) in WHITE_SPACE:
        return 8
    if name.endswith("."):
        return 9
    # Only what 14.0.0 assigns, in NFC: for those characters this Python's
    # data, whatever its version from 14.0.0 on, gives 14.0.0's results.
    if not all(is_assigned(c) for c in name) or not unicodedata.is_normalized("NFC", name):
        return 10
    stem = name.split(".")[0].rstrip(" ")
    ascii_upper = "".join(c.upper() if "a" <= c <= "z" else c for c in stem)
    if ascii_upper in DEVICES:
        return 11
    return 0


def manifest_problem(paths: list[list[str]]) -> str:
    """Section 9.3, the manifest as a whole: "" if fine."""
    keys = [tuple(n.lower() for n in p) for p in paths]
    if len(set(keys)) != len(keys):
        return "duplicate"
    files = set(keys)
    for k in keys:
        if any(k[:d] in files for d in range(1, len(k))):
            return "file-and-folder"
    return ""


def mapping_digest(mapping) -> str:
    """names.toml [unicode]: SHA-256 of "XXXX>YYYY YYYY\\n" for each assigned code
    point, in order, whose one-character string `mapping` changes."""
    h = hashlib.sha256()
    for first, last in ASSIGNED:
        for cp in range(first, last + 1):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            c = chr(cp)
            m = mapping(c)
            if m != c:
                h.update(f"{cp:04X}>{' '.join(f'{ord(x):04X}' for x in m)}\n".encode())
    return h.hexdigest()


def check_name_vectors(vectors: Path) -> None:
    """names.toml: names and manifests with the rule each breaks, checked by 9.3 as written."""
    data = tomllib.loads((vectors / "names.toml").read_text(encoding="utf-8"))
    unicode = data["unicode"]
    if unicodedata.unidata_version == UNICODE_VERSION:
        # This Python's data is 14.0.0 itself: the list must be its assigned code points.
        listed = {cp for first, last in ASSIGNED for cp in range(first, last + 1)}
        check("the assigned list is exactly what Unicode 14.0.0 does not call Cn",
              all((cp in listed) == (unicodedata.category(chr(cp)) != "Cn")
                  for cp in range(0x110000)))
    check_eq(f"names.toml: lowercase of every assigned character (Python's data: "
             f"Unicode {unicodedata.unidata_version})",
             mapping_digest(str.lower), unicode["lowercase_sha256"])
    check_eq(f"names.toml: NFC of every assigned character (Python's data: "
             f"Unicode {unicodedata.unidata_version})",
             mapping_digest(lambda c: unicodedata.normalize("NFC", c)), unicode["nfc_sha256"])
    for entry in data["name"]:
        name, rule = entry["value"], entry["rule"]
        check_eq(f"names.toml: {name!r} breaks rule {rule}", name_rule_broken(name), rule)
    for entry in data["manifest"]:
        paths = [p.split("/") for p in entry["paths"]]
        check_eq(f"names.toml: manifest {entry['paths']}", manifest_problem(paths), entry["problem"])


@dataclass
class Offer:
    """One offer, as both sides see it (9.4 to 9.8)."""
    id: int
    entries: list[tuple[list[str], int]]
    phase: str = "pending"            # pending, accepted, finished
    resume: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    next_entry: int = 0
    verdicts: dict[int, int] = field(default_factory=dict)


@dataclass
class InFlight:
    offer: Offer
    entry: int
    offset: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class FileDirection:
    """The offers one side makes, and their files (section 9)."""
    offerer: str
    receiver: str
    # What each side holds on disk, by path: the offerer's files; the receiver's partials.
    source: dict[tuple[str, ...], bytes]
    partials: dict[tuple[str, ...], bytes]
    saved: dict[tuple[str, ...], bytes] = field(default_factory=dict)
    last_id: int = 0
    offers: dict[int, Offer] = field(default_factory=dict)
    in_flight: InFlight | None = None
    started: int | None = None
    awaiting: list[tuple[int, int]] = field(default_factory=list)
    data_bytes: int = 0


def decode_offer(p: bytes, what: str) -> tuple[int, list[tuple[list[str], int]]]:
    r = Reader(p, what)
    offer_id = r.uint(8)
    count = r.uint(2)
    check(f"{what}: 1 to {MAX_ENTRIES} entries", 1 <= count <= MAX_ENTRIES, str(count))
    entries = []
    for _ in range(count):
        size = r.uint(8)
        depth = r.uint(1)
        check(f"{what}: path of 1 to {MAX_DEPTH} names", 1 <= depth <= MAX_DEPTH, str(depth))
        names = []
        for _ in range(depth):
            raw = r.opaque(1)
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise CheckFailed(f"{what}: a name is not UTF-8 ({e})")
        entries.append((names, size))
    r.end()
    check(f"{what}: sizes add up to at most 2^64 - 1", sum(s for _, s in entries) < 2**64)
    check(f"{what}: the body fits one record", len(p) <= MAX_CHUNK)
    return offer_id, entries


def apply_file_record(frame: Frame, sender: str, directions: dict[str, FileDirection]) -> None:
    """Section 9.2 and 9.4 to 9.8, for the records of the vectors (no cancels there)."""
    what = f"frame {frame.index} ({FRAME_TYPES[frame.type][0]})"
    p = frame.plaintext
    # Records of the offering side belong to its own direction; the
    # receiver's answers to the direction of the peer's offers.
    if frame.type in (T_FILE_OFFER, T_FILE_START, T_FILE_DATA, T_FILE_END):
        d = directions[sender]
    elif frame.type in (T_FILE_ACCEPT, T_FILE_REJECT, T_FILE_VERDICT):
        d = next(x for x in directions.values() if x.receiver == sender)
    else:
        r = Reader(p, what)
        _, side, _ = r.uint(8), r.uint(1), r.uint(1)
        r.end()
        check(f"{what}: side is 0 or 1", side in (0, 1))
        raise CheckFailed(f"{what}: the vectors hold no FILE_CANCEL")

    if frame.type == T_FILE_OFFER:
        offer_id, entries = decode_offer(p, what)
        check_eq(f"{what}: the sender's next offer id", offer_id, d.last_id + 1)
        d.last_id = offer_id
        open_offers = [o for o in d.offers.values() if o.phase != "finished"]
        check(f"{what}: at most {MAX_OPEN_OFFERS} offers open", len(open_offers) < MAX_OPEN_OFFERS)
        for names, size in entries:
            for name in names:
                check_eq(f"{what}: {name!r} breaks no name rule", name_rule_broken(name), 0)
            check_eq(f"{what}: {'/'.join(names)} is offered with the size of the file",
                     size, len(d.source[tuple(names)]))
        check_eq(f"{what}: no two paths collide", manifest_problem([n for n, _ in entries]), "")
        d.offers[offer_id] = Offer(offer_id, entries)
    elif frame.type == T_FILE_ACCEPT:
        r = Reader(p, what)
        offer_id, count = r.uint(8), r.uint(2)
        offer = d.offers.get(offer_id)
        check(f"{what}: accepts a pending offer", offer is not None and offer.phase == "pending")
        last = -1
        for _ in range(count):
            entry, offset, prefix_hash = r.uint(2), r.uint(8), r.take(32)
            check(f"{what}: proposals by increasing entry", entry > last)
            last = entry
            check(f"{what}: entry {entry} is in the offer", entry < len(offer.entries))
            names, size = offer.entries[entry]
            check(f"{what}: 1 <= offset {offset} <= size {size}", 1 <= offset <= size)
            partial = d.partials[tuple(names)]
            check_eq(f"{what}: the proposed offset is the partial's length", offset, len(partial))
            check_eq(f"{what}: prefix_sha256 is the SHA-256 of the partial (bytes 0 to offset - 1)",
                     prefix_hash, hashlib.sha256(partial).digest())
            offer.resume[entry] = (offset, prefix_hash)
        r.end()
        offer.phase = "accepted"
    elif frame.type == T_FILE_REJECT:
        raise CheckFailed(f"{what}: the vectors hold no FILE_REJECT")
    elif frame.type == T_FILE_START:
        r = Reader(p, what)
        offer_id, entry, offset = r.uint(8), r.uint(2), r.uint(8)
        r.end()
        offer = d.offers.get(offer_id)
        check(f"{what}: names an accepted offer", offer is not None and offer.phase == "accepted")
        check(f"{what}: no file in flight", d.in_flight is None)
        check(f"{what}: no other offer's files are on their way", d.started in (None, offer_id))
        check_eq(f"{what}: the next entry of the offer", entry, offer.next_entry)
        names, size = offer.entries[entry]
        source = d.source[tuple(names)]
        if entry in offer.resume:
            proposed, prefix_hash = offer.resume[entry]
            # 9.5: the sender hashes the FIRST `proposed` bytes of its file.
            matches = hashlib.sha256(source[:proposed]).digest() == prefix_hash
            check_eq(f"{what}: offset is the proposal if the sender's prefix matches, else 0",
                     offset, proposed if matches else 0)
        else:
            check_eq(f"{what}: offset 0 without a proposal", offset, 0)
        offer.next_entry += 1
        d.started = offer_id
        d.in_flight = InFlight(offer, entry, offset)
    elif frame.type == T_FILE_DATA:
        f = d.in_flight
        check(f"{what}: inside a file", f is not None)
        check(f"{what}: 1 to {MAX_CHUNK} bytes", 1 <= len(p) <= MAX_CHUNK)
        size = f.offer.entries[f.entry][1]
        check(f"{what}: not past the file's size", f.offset + len(f.data) + len(p) <= size)
        f.data += p
        d.data_bytes += len(p)
    elif frame.type == T_FILE_END:
        f = d.in_flight
        check(f"{what}: inside a file", f is not None)
        check_eq(f"{what}: body length", len(p), 32)
        names, size = f.offer.entries[f.entry]
        check_eq(f"{what}: every byte has come", f.offset + len(f.data), size)
        prefix = d.partials[tuple(names)][:f.offset] if f.offset else b""
        whole = prefix + bytes(f.data)
        check_eq(f"{what}: SHA-256 of the whole file, from byte 0", p, hashlib.sha256(whole).digest())
        check_eq(f"{what}: the receiver has the sender's file", whole, d.source[tuple(names)])
        d.saved[tuple(names)] = whole
        d.awaiting.append((f.offer.id, f.entry))
        d.in_flight = None
        if f.entry + 1 == len(f.offer.entries):
            d.started = None
    elif frame.type == T_FILE_VERDICT:
        r = Reader(p, what)
        offer_id, entry, verdict = r.uint(8), r.uint(2), r.uint(1)
        r.end()
        check(f"{what}: for the oldest file ended without a verdict",
              bool(d.awaiting) and d.awaiting[0] == (offer_id, entry))
        d.awaiting.pop(0)
        check_eq(f"{what}: verdict", VERDICTS.get(verdict), "saved")
        offer = d.offers[offer_id]
        offer.verdicts[entry] = verdict
        if len(offer.verdicts) == len(offer.entries):
            offer.phase = "finished"


# --------------------------------------------------------------------------
# FINGERPRINTS.md
# --------------------------------------------------------------------------

def fingerprint(spki: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode().rstrip("=")


def safety_half(spki: bytes) -> str:
    h = hashlib.sha512(SAFETY_CONTEXT + b"\x00" + spki).digest()
    for _ in range(SAFETY_ITERATIONS):
        h = hashlib.sha512(h + spki).digest()
    return "".join(f"{int.from_bytes(h[5 * j:5 * j + 5], 'big') % 100000:05d}" for j in range(6))


def safety_number(spki_a: bytes, spki_b: bytes) -> str:
    a, b = safety_half(spki_a), safety_half(spki_b)
    return min(a, b) + max(a, b)


def check_fingerprints(vectors: Path, spkis: dict[str, bytes]) -> None:
    data = tomllib.loads((vectors / "fingerprints.toml").read_text())
    for entry in data["key"]:
        name = Path(entry["file"]).name
        listed = entry["fingerprint"]
        check(f"fingerprints.toml {name}: form SHA256: + 43 characters",
              listed.startswith("SHA256:") and len(listed) == 7 + 43)
        decoded = base64.b64decode(listed[7:] + "=", validate=True)
        check(f"fingerprints.toml {name}: canonical base64 (re-encodes identically)",
              base64.b64encode(decoded).decode().rstrip("=") == listed[7:])
        check_eq(f"fingerprints.toml {name}: fingerprint", fingerprint(spkis[name]), listed)
    sn = data["safety_number"]
    names = [Path(f).name for f in sn["keys"]]
    digits = safety_number(spkis[names[0]], spkis[names[1]])
    check_eq("safety number is 60 digits", len(digits), 60)
    check_eq(f"safety number of {names[0]} and {names[1]}", digits, sn["digits"])
    check_eq("safety number is symmetric", safety_number(spkis[names[1]], spkis[names[0]]), digits)
    display = " ".join(digits[i:i + 5] for i in range(0, 60, 5))
    check_eq("safety number display (12 groups of 5)", display, sn["display"])


# --------------------------------------------------------------------------
# The session vector
# --------------------------------------------------------------------------

def check_session(vectors: Path, private_keys: dict[str, rsa.RSAPrivateKey],
                  spkis: dict[str, bytes]) -> None:
    data = tomllib.loads((vectors / "session-v2.toml").read_text())
    values = {k: bytes.fromhex(v) for k, v in data["values"].items()}
    setup = data["setup"]
    entries = data["frame"]
    check_eq("frame indices are 1..n in order", [e["index"] for e in entries],
             list(range(1, len(entries) + 1)))

    # ---- 1. framing: the handshake is m1..m7, then application records
    frames = []
    for i, entry in enumerate(entries):
        limit = HANDSHAKE_FRAME_LIMIT if i < len(HANDSHAKE_ORDER) else SESSION_FRAME_LIMIT
        frames.append(parse_frame(entry, limit))
    check_eq("the first seven frames are m1..m7 in order",
             [f.type for f in frames[:7]], HANDSHAKE_ORDER)
    m1, m2, m3, m4, m5, m6, m7 = frames[:7]
    app_frames = frames[7:]
    check("every later frame is an application record",
          all(FRAME_TYPES[f.type][2] == "app" for f in app_frames))

    # ---- 2. plaintext handshake messages
    check_eq("m1: frame is 42 bytes", len(m1.wire), 42)
    check_eq("m1: version byte at offset 9 of the frame (section 15)", m1.wire[9], VERSION)
    r = Reader(m1.body, "m1 ClientHello")
    check_eq("m1: magic", r.take(4), MAGIC)
    check_eq("m1: version", r.uint(1), VERSION)
    nonce_i = r.take(NONCE_LEN)
    r.end()
    check_eq("m1: body is 37 bytes", len(m1.body), 37)
    check_eq("m1: nonce_i equals [values].nonce_i", nonce_i, values["nonce_i"])

    r = Reader(m2.body, "m2 ServerHello")
    check_eq("m2: version", r.uint(1), VERSION)
    nonce_r = r.take(NONCE_LEN)
    transient_spki = r.opaque(2)
    r.end()
    check_eq("m2: nonce_r equals [values].nonce_r", nonce_r, values["nonce_r"])
    transient = parse_rsa_spki(transient_spki, "m2 transient key", 2048, 2048)
    check_eq("m2: transient key is the public key of transient.pem",
             transient_spki, spkis["transient.pem"])

    r = Reader(m3.body, "m3 KeyTransport")
    wrapped = r.opaque(2)
    r.end()
    check_eq("m3: wrapped is the transient modulus length (256 bytes)",
             len(wrapped), (transient.key_size + 7) // 8)

    # ---- 3. key transport
    try:
        session_secret = private_keys["transient.pem"].decrypt(
            wrapped,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                         label=OAEP_LABEL))
    except ValueError as e:
        raise CheckFailed(f"m3: RSA-OAEP decryption failed ({e})")
    check_eq("m3: OAEP decryption yields 32 bytes", len(session_secret), SECRET_LEN)
    check_eq("m3: session secret equals [values].session_secret",
             session_secret, values["session_secret"])
    em = rsa_raw_private(private_keys["transient.pem"], wrapped)
    seed = oaep_recover_seed(em)
    check_eq("m3: OAEP seed recovered from wrapped equals [values].oaep_seed",
             seed, values["oaep_seed"])
    em = oaep_encode(session_secret, OAEP_LABEL, seed, len(wrapped))
    rewrapped = rsa_raw_public(transient, em)
    check_eq("m3: OAEP encryption with that seed reproduces wrapped", rewrapped, wrapped)

    # ---- 4. TH3, PRK, handshake keys
    transcript = b"".join(transcript_entry(f.type, f.body) for f in (m1, m2, m3))
    check_eq("transcript m1..m3 is exactly the frames on the wire",
             transcript, m1.wire + m2.wire + m3.wire)
    th3 = hashlib.sha256(transcript).digest()
    check_eq("TH3", th3, values["th3"])
    prk = hkdf_extract(HKDF_SALT, session_secret)
    check_eq("PRK", prk, values["prk"])
    hs = derive_handshake_keys(prk, th3)
    for name, value in hs.items():
        check_eq(name, value, values[name])
    hs_keys = {d: RecordKey(f"hs_{d}", hs[f"hs_{d}_key"], hs[f"hs_{d}_iv"]) for d in ("i2r", "r2i")}

    # ---- 5 (handshake part), 6, 7: m4..m7
    def open_handshake(frame: Frame, direction: str) -> bytes:
        check_eq(f"frame {frame.index}: protected under handshake key {direction} (table)",
                 FRAME_TYPES[frame.type][2], f"hs {direction}")
        plaintext = open_record(frame, hs_keys[direction])
        entry = transcript_entry(frame.type, plaintext)
        check_eq(f"frame {frame.index}: transcript entry length is 16 less than the record's",
                 int.from_bytes(entry[:4], "big"), frame.length - TAG_LEN)
        return entry

    transcript += open_handshake(m4, "r2i")
    th4 = hashlib.sha256(transcript).digest()
    check_eq("TH4", th4, values["th4"])
    responder_spki, responder_nick = parse_identity(m4.plaintext, "m4 ResponderIdentity")
    responder_key = parse_rsa_spki(responder_spki, "m4 identity key", 2048, 4096)
    check_eq("m4: identity key is the public key of responder.pem",
             responder_spki, spkis["responder.pem"])
    check_eq("m4: SHA-256 of identity key equals [values].identity_r_fingerprint_sha256",
             hashlib.sha256(responder_spki).digest(), values["identity_r_fingerprint_sha256"])
    check_eq("m4: nickname", responder_nick, EXPECTED_NICKNAMES["responder"])
    check_eq("m4: nickname matches [setup]", responder_nick, setup["responder_nickname"])

    transcript += open_handshake(m5, "r2i")
    responder_sig = parse_auth(m5.plaintext, "m5 ResponderAuth")
    verify_signature(responder_key, responder_sig, SIG_CONTEXT_RESPONDER, th4, "m5")
    salt = pss_recover_salt(rsa_raw_public(responder_key, responder_sig), responder_key.key_size)
    check_eq("m5: PSS salt recovered from the signature equals [values].responder_pss_salt",
             salt, values["responder_pss_salt"])
    resigned = rsa_raw_private(private_keys["responder.pem"], pss_encode(
        SIG_CONTEXT_RESPONDER + b"\x00" + th4, salt, responder_key.key_size))
    check_eq("m5: signing with that salt reproduces the signature", resigned, responder_sig)

    transcript += open_handshake(m6, "i2r")
    th6 = hashlib.sha256(transcript).digest()
    check_eq("TH6", th6, values["th6"])
    initiator_spki, initiator_nick = parse_identity(m6.plaintext, "m6 InitiatorIdentity")
    initiator_key = parse_rsa_spki(initiator_spki, "m6 identity key", 2048, 4096)
    check_eq("m6: identity key is the public key of initiator.pem",
             initiator_spki, spkis["initiator.pem"])
    check_eq("m6: SHA-256 of identity key equals [values].identity_i_fingerprint_sha256",
             hashlib.sha256(initiator_spki).digest(), values["identity_i_fingerprint_sha256"])
    check_eq("m6: nickname", initiator_nick, EXPECTED_NICKNAMES["initiator"])
    check_eq("m6: nickname matches [setup]", initiator_nick, setup["initiator_nickname"])

    transcript += open_handshake(m7, "i2r")
    initiator_sig = parse_auth(m7.plaintext, "m7 InitiatorAuth")
    verify_signature(initiator_key, initiator_sig, SIG_CONTEXT_INITIATOR, th6, "m7")
    salt = pss_recover_salt(rsa_raw_public(initiator_key, initiator_sig), initiator_key.key_size)
    check_eq("m7: PSS salt recovered from the signature equals [values].initiator_pss_salt",
             salt, values["initiator_pss_salt"])
    resigned = rsa_raw_private(private_keys["initiator.pem"], pss_encode(
        SIG_CONTEXT_INITIATOR + b"\x00" + th6, salt, initiator_key.key_size))
    check_eq("m7: signing with that salt reproduces the signature", resigned, initiator_sig)

    th7 = hashlib.sha256(transcript).digest()
    check_eq("TH7", th7, values["th7"])
    # ---- 6, 7.2: the application traffic secrets, epoch 0, and each later
    # epoch as the KEY_UPDATE records call for it.
    chains = {}
    all_keys = [*hs.values()]
    for direction in ("i2r", "r2i"):
        secret = first_traffic_secret(prk, direction, th7)
        check_eq(f"app_{direction}_0_secret", secret, values[f"app_{direction}_0_secret"])
        chains[direction] = TrafficChain(direction, secret)

    def check_epoch(chain: TrafficChain) -> None:
        name = chain.record_key.name
        check_eq(f"{name}_secret", chain.secret, values[f"{name}_secret"])
        check_eq(f"{name}_key", chain.record_key.key, values[f"{name}_key"])
        check_eq(f"{name}_iv", chain.record_key.iv, values[f"{name}_iv"])
        all_keys.extend([chain.record_key.key, chain.record_key.iv])

    for chain in chains.values():
        check_epoch(chain)

    # ---- 8, 9: application records, session rules, files
    senders = {"initiator": SenderState("initiator"), "responder": SenderState("responder")}
    held = setup["file_0_held"]
    file_0_path = tuple(setup["file_0_path"].split("/"))
    file_1_path = tuple(setup["file_1_path"].split("/"))
    file_0 = values["file_0"]
    check_eq("file_0_prefix_sha256", hashlib.sha256(file_0[:held]).digest(),
             values["file_0_prefix_sha256"])
    check_eq("file_0_sha256", hashlib.sha256(file_0).digest(), values["file_0_sha256"])
    check_eq("file_1_sha256 (the empty file)", hashlib.sha256(b"").digest(), values["file_1_sha256"])
    directions = {
        "initiator": FileDirection("initiator", "responder",
                                   source={file_0_path: file_0, file_1_path: b""},
                                   partials={file_0_path: file_0[:held]}),
        "responder": FileDirection("responder", "initiator", source={}, partials={}),
    }
    # 7.2 and 14: the vectors lower B for the initiator and R for the responder.
    rekey = {
        "initiator": RekeyRule("initiator", setup["initiator_rekey_bytes"], KEY_UPDATE_RECORDS),
        "responder": RekeyRule("responder", KEY_UPDATE_BYTES, setup["responder_rekey_records"]),
    }
    check("the lowered limits are lower than the defaults",
          setup["initiator_rekey_bytes"] < KEY_UPDATE_BYTES
          and setup["responder_rekey_records"] < KEY_UPDATE_RECORDS)
    # 8.4: what each side had done when it sent its CLOSE.
    state_at_close = {}
    for frame in app_frames:
        direction = "i2r" if frame.sender == "initiator" else "r2i"
        chain = chains[direction]
        open_record(frame, chain.record_key)
        rekey[frame.sender].record(frame)
        peer = "responder" if frame.sender == "initiator" else "initiator"
        if frame.type == T_CLOSE:
            # Finished (8.4): both DONE, every message acknowledged both ways,
            # no offer open in either direction.
            state_at_close[frame.sender] = (
                senders[frame.sender].done, senders[peer].done,
                all(s.last_acknowledged_id == s.last_completed_id for s in senders.values()),
                all(o.phase == "finished" for d in directions.values() for o in d.offers.values()),
            )
        apply_app_record(frame, senders[frame.sender], senders[peer])
        if frame.type == T_KEY_UPDATE:
            chain.update(int.from_bytes(frame.plaintext, "big"), f"frame {frame.index}")
            check_epoch(chain)
        elif T_FILE_OFFER <= frame.type <= T_FILE_CANCEL:
            if frame.type == T_FILE_OFFER:
                check(f"frame {frame.index}: no FILE_OFFER after DONE", not senders[frame.sender].done)
            apply_file_record(frame, frame.sender, directions)
    check("no two keys or IVs are equal", len(set(all_keys)) == len(all_keys))
    check_eq("the initiator updated its key twice", chains["i2r"].epoch, 2)
    check_eq("the responder updated its key twice", chains["r2i"].epoch, 2)
    for side, rule in rekey.items():
        check_eq(f"{side}: every KEY_UPDATE came from the 7.2 rule", rule.updates, 2)
        check(f"{side}: no KEY_UPDATE left without the record that called for it",
              rule.pending is None)
    check("7.2: a record that brought the initiator's key to exactly B called for no update",
          rekey["initiator"].exact_limit_passed)
    check("7.2: the initiator's CLOSE went out under its key although an update was due",
          rekey["initiator"].close_when_due)

    for side, state in senders.items():
        check_eq(f"{side}: messages reassembled", state.completed, EXPECTED_MESSAGES[side])
        check_eq(f"{side}: every message was acknowledged",
                 state.last_acknowledged_id, state.last_completed_id)
    files = directions["initiator"]
    check_eq("the responder saved both files, byte for byte", files.saved,
             {file_0_path: file_0, file_1_path: b""})
    check_eq("only the bytes after the 16 held travelled", files.data_bytes, len(file_0) - held)
    check("offer 1 is finished: every file has its verdict",
          all(o.phase == "finished" for o in files.offers.values()) and len(files.offers) == 1)
    # 8.4, 8.5, 14: the session ends finished: each side sent DONE, then
    # CLOSE(0) once finished; the responder finished first (its DONE answered
    # the initiator's), the initiator once it had processed that DONE.
    for side in ("initiator", "responder"):
        check(f"{side} sent DONE", senders[side].done)
        check_eq(f"{side}'s CLOSE reason is goodbye", senders[side].close_reason, 0)
        check_eq(f"{side} was finished when it sent CLOSE (sent DONE, received DONE, "
                 f"all acknowledged, no offer open)", state_at_close.get(side),
                 (True, True, True, True))
    ends = [(f.sender, f.type) for f in app_frames[-3:]]
    check_eq("the session ends with the responder's DONE and CLOSE, then the initiator's CLOSE",
             ends, [("responder", T_DONE), ("responder", T_CLOSE), ("initiator", T_CLOSE)])


def b64url_unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def check_invite_vectors(vectors: Path) -> None:
    """PROTOCOL.md 17: the invite line and the one-time invite proof."""
    data = tomllib.loads((vectors / "invite.toml").read_text())
    salt, info = b"chat v2 invite", b"chat v2 invite proof key"
    check_eq("invite.toml: salt", data["salt"].encode(), salt)
    check_eq("invite.toml: key info", data["key_info"].encode(), info)
    for i, case in enumerate(data["proof"]):
        secret = bytes.fromhex(case["secret"])
        th = bytes.fromhex(case["transcript_hash"])
        key = hkdf_expand(hkdf_extract(salt, secret), info, 32)
        check_eq(f"invite.toml: proof {i}: key", key.hex(), case["key"])
        proof = hmac.new(key, th, hashlib.sha256).digest()
        check_eq(f"invite.toml: proof {i}: proof", proof.hex(), case["proof"])
    line = data["line"]
    fingerprint = "SHA256:" + base64.b64encode(
        hashlib.sha256(bytes.fromhex(line["fingerprint_of_spki"])).digest()).decode().rstrip("=")
    built = (f"chat://{line['relay']}/{b64url_unpadded(bytes.fromhex(line['room_secret']))}"
             f"?direct={','.join(line['direct'])}"
             f"&once={b64url_unpadded(bytes.fromhex(line['once']))}#{fingerprint}")
    check_eq("invite.toml: the invite line", built, line["text"])


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} VECTORS_DIR", file=sys.stderr)
        return 2
    vectors = Path(sys.argv[1])
    try:
        private_keys = {}
        spkis = {}
        for name, bits in EXPECTED_KEY_BITS.items():
            key = load_private_key(vectors / "keys" / name)
            private_keys[name] = key
            spkis[name] = spki_der(key.public_key())
            check_eq(f"keys/{name}: modulus size", key.key_size, bits)
            check_eq(f"keys/{name}: public exponent", key.public_key().public_numbers().e, 65537)
        load_assigned(vectors)
        check_session(vectors, private_keys, spkis)
        check_name_vectors(vectors)
        check_fingerprints(vectors, spkis)
        check_invite_vectors(vectors)
    except CheckFailed as e:
        print(f"FAIL {e}")
        return 1
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"FAIL cannot read the vectors: {type(e).__name__}: {e}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
