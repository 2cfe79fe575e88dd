#!/usr/bin/env python3
"""Independent check of docs/vectors against docs/PROTOCOL.md and docs/FINGERPRINTS.md.

Written from the two documents alone (no knowledge of chat's Rust source), using
only the Python standard library and the `cryptography` package. Every value is
recomputed from the specification and only then compared with the vector files;
values listed in the files are never used as inputs. Even the random values are
recovered rather than read: the nonces from the hellos, the session secret by
OAEP decryption with keys/transient.pem, the OAEP seed and the PSS salts by
inverting the RSA encodings. Sequence numbers are counted here, per key.

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

# Section 4.1: type -> (name, sent by, protection).
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
}
T_CLIENT_HELLO, T_SERVER_HELLO, T_KEY_TRANSPORT = 0x01, 0x02, 0x03
T_RESP_IDENTITY, T_RESP_AUTH, T_INIT_IDENTITY, T_INIT_AUTH = 0x04, 0x05, 0x06, 0x07
T_START, T_DATA, T_END, T_RECEIPT, T_KEEPALIVE, T_CLOSE, T_DONE = range(0x10, 0x17)

HANDSHAKE_ORDER = [  # m1 .. m7, section 1 and 5.8
    T_CLIENT_HELLO, T_SERVER_HELLO, T_KEY_TRANSPORT,
    T_RESP_IDENTITY, T_RESP_AUTH, T_INIT_IDENTITY, T_INIT_AUTH,
]

MAGIC = b"chat"                       # 5.1
VERSION = 0x01                        # 5.1, 5.2
NONCE_LEN = 32                        # 5.1, 5.2
SECRET_LEN = 32                       # 5.4
OAEP_LABEL = b"chat v1 session secret"  # 3, 5.4
HKDF_SALT = b"chat v1"                # 6
SIG_CONTEXT_RESPONDER = b"chat v1 responder signature"  # 5.6
SIG_CONTEXT_INITIATOR = b"chat v1 initiator signature"  # 5.6
PSS_SALT_LEN = 32                     # 3, 5.6
TAG_LEN = 16                          # 3, 7
IV_LEN = 12                           # 6
KEY_LEN = 32                          # 6

HANDSHAKE_FRAME_LIMIT = 4096          # 11
SESSION_FRAME_LIMIT = 1 + 262_144 + 16  # 11
MAX_CHUNK = 262_144                   # 8, 11
DEFAULT_MESSAGE_LIMIT = 2**32         # 11
MAX_SEQ = 2**64 - 2                   # 7, 11

CLOSE_REASONS = {
    0: "goodbye",
    1: "untrusted",
    2: "too large",
    3: "busy",
    4: "protocol error",
    5: "superseded",
    6: "displaced",
}

# Section 13: the scenario the vector file records.
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


def derive_keys(prk: bytes, phase: str, th: bytes) -> dict[str, bytes]:
    """phase is "hs" or "app"; returns {"<phase>_<dir>_key": ..., "<phase>_<dir>_iv": ...}."""
    out = {}
    for direction in ("i2r", "r2i"):
        label = f"chat v1 {phase} {direction}"
        out[f"{phase}_{direction}_key"] = expand(prk, f"{label} key", th, KEY_LEN)
        out[f"{phase}_{direction}_iv"] = expand(prk, f"{label} iv", th, IV_LEN)
    return out


def record_nonce(iv: bytes, seq: int) -> bytes:
    return xor(iv, b"\x00\x00\x00\x00" + u64(seq))


def record_aad(length: int, frame_type: int, seq: int) -> bytes:
    return u32(length) + bytes([frame_type]) + u64(seq)


@dataclass
class RecordKey:
    """One direction of one phase: key, IV and this side's own sequence count."""
    name: str
    key: bytes
    iv: bytes
    seq: int = 0

    def next_seq(self) -> int:
        seq = self.seq
        if seq > MAX_SEQ:
            raise CheckFailed(f"{self.name}: sequence number limit reached")
        self.seq += 1
        return seq


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
    seq = rk.next_seq()
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


APP_BODY_LENGTHS = {T_START: 16, T_RECEIPT: 8, T_KEEPALIVE: 0, T_CLOSE: 1, T_DONE: 0}


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
    elif frame.type == T_KEEPALIVE:
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
    else:
        raise CheckFailed(f"{what}: type 0x{frame.type:02x} is not an application record")


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
    data = tomllib.loads((vectors / "session-v1.toml").read_text())
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
    check_eq("m1: version byte at offset 9 of the frame (section 14)", m1.wire[9], VERSION)
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
    hs = derive_keys(prk, "hs", th3)
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
    app = derive_keys(prk, "app", th7)
    for name, value in app.items():
        check_eq(name, value, values[name])
    check("no two keys or IVs are equal", len({*hs.values(), *app.values()}) == 8)

    # ---- 5 (application part), 8: application records and session rules
    app_keys = {d: RecordKey(f"app_{d}", app[f"app_{d}_key"], app[f"app_{d}_iv"])
                for d in ("i2r", "r2i")}
    senders = {"initiator": SenderState("initiator"), "responder": SenderState("responder")}
    for frame in app_frames:
        direction = "i2r" if frame.sender == "initiator" else "r2i"
        open_record(frame, app_keys[direction])
        peer = "responder" if frame.sender == "initiator" else "initiator"
        apply_app_record(frame, senders[frame.sender], senders[peer])

    for side, state in senders.items():
        check_eq(f"{side}: messages reassembled", state.completed, EXPECTED_MESSAGES[side])
        check_eq(f"{side}: every message was acknowledged",
                 state.last_acknowledged_id, state.last_completed_id)
    check("the initiator sent DONE", senders["initiator"].done)
    last = app_frames[-1]
    check_eq("the last record is the responder's CLOSE", (last.sender, last.type),
             ("responder", T_CLOSE))
    check_eq("CLOSE reason is goodbye", senders["responder"].close_reason, 0)


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
        check_session(vectors, private_keys, spkis)
        check_fingerprints(vectors, spkis)
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
