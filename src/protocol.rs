//! Protocol constants and the error every pure protocol step can return.
//! `docs/PROTOCOL.md` is the normative text; the names here follow it.

use std::fmt;
use std::time::Duration;

/// The protocol version this implementation speaks.
pub const VERSION: u8 = 2;

/// First four bytes of a ClientHello body: ASCII `chat`.
pub const MAGIC: [u8; 4] = *b"chat";

/// Length of the random nonces in the hellos.
pub const NONCE_LEN: usize = 32;

/// Length of the session secret the initiator wraps for the responder.
pub const SESSION_SECRET_LEN: usize = 32;

/// Size of the responder's transient key, in bits.
pub const TRANSIENT_BITS: usize = 2048;

/// Longest nickname, in bytes of UTF-8.
pub const MAX_NICKNAME_LEN: usize = 64;

/// Largest frame length (the `length` field) during the handshake.
pub const MAX_HANDSHAKE_FRAME: u32 = 4096;

/// Largest plaintext carried by one record.
pub const MAX_RECORD_PLAINTEXT: usize = 256 * 1024;

/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// Largest frame length (the `length` field) once the session is established.
pub const MAX_RECORD_FRAME: u32 = (1 + MAX_RECORD_PLAINTEXT + TAG_LEN) as u32;

/// Default limit on the length of one received message: 4 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;

/// Key updates (`docs/PROTOCOL.md`, 7.2): a sender updates its key before
/// it has sealed this many bytes of plaintext under it, by default.
pub const KEY_UPDATE_BYTES: u64 = 1 << 30;

/// Key updates: a sender updates its key before it has sealed this many
/// records under it (the KEY_UPDATE included), by default.
pub const KEY_UPDATE_RECORDS: u64 = 1 << 24;

/// Key updates: a sender updates its key before sealing with a key this old.
pub const KEY_UPDATE_INTERVAL: Duration = Duration::from_secs(3600);

/// Hard limit, far above the update triggers: no key protects more records.
pub const MAX_RECORDS_PER_KEY: u64 = 1 << 32;

/// Hard limit, far above the update triggers: no key protects more bytes of
/// plaintext (the AES-GCM confidentiality bound stays near 2^-61).
pub const MAX_BYTES_PER_KEY: u64 = 1 << 38;

/// Files (`docs/PROTOCOL.md`, section 9): offers open at once per direction.
pub const MAX_OPEN_OFFERS: usize = 8;

/// Files: an offer nobody answered is rejected after this long.
pub const OFFER_EXPIRY: Duration = Duration::from_secs(600);

/// Files: entries (files) in one offer.
pub const MAX_OFFER_ENTRIES: usize = 4096;

/// Files: components in one entry's path.
pub const MAX_PATH_DEPTH: usize = 32;

/// Files: bytes of UTF-8 in one component of a path.
pub const MAX_NAME_LEN: usize = 255;

/// Labels: every use of a hash, KDF, signature or OAEP has its own.
pub mod labels {
    /// OAEP label for the wrapped session secret.
    pub const OAEP: &[u8] = b"chat v1 session secret";
    /// HKDF-Extract salt.
    pub const EXTRACT_SALT: &[u8] = b"chat v1";
    /// Context prefix of the responder's transcript signature.
    pub const RESPONDER_SIGNATURE: &[u8] = b"chat v1 responder signature";
    /// Context prefix of the initiator's transcript signature.
    pub const INITIATOR_SIGNATURE: &[u8] = b"chat v1 initiator signature";
    /// Handshake traffic key, responder to initiator.
    pub const HS_R2I_KEY: &[u8] = b"chat v1 hs r2i key";
    /// Handshake traffic IV, responder to initiator.
    pub const HS_R2I_IV: &[u8] = b"chat v1 hs r2i iv";
    /// Handshake traffic key, initiator to responder.
    pub const HS_I2R_KEY: &[u8] = b"chat v1 hs i2r key";
    /// Handshake traffic IV, initiator to responder.
    pub const HS_I2R_IV: &[u8] = b"chat v1 hs i2r iv";
    /// First application traffic secret, initiator to responder.
    pub const APP_I2R_SECRET: &[u8] = b"chat v2 app i2r secret";
    /// First application traffic secret, responder to initiator.
    pub const APP_R2I_SECRET: &[u8] = b"chat v2 app r2i secret";
    /// The AES key of an application traffic secret.
    pub const TRAFFIC_KEY: &[u8] = b"chat v2 traffic key";
    /// The IV of an application traffic secret.
    pub const TRAFFIC_IV: &[u8] = b"chat v2 traffic iv";
    /// The next application traffic secret, after a KEY_UPDATE.
    pub const TRAFFIC_UPDATE: &[u8] = b"chat v2 traffic update";
}

/// Which side of a connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that connects.
    Initiator,
    /// The side that accepts.
    Responder,
}

/// Why a responder refused a connection before the handshake (a Refusal frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The initiator's version is not spoken here.
    UnsupportedVersion,
    /// The responder is in another conversation.
    Busy,
    /// A reason this implementation does not know.
    Other(u8),
}

impl RefusalReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::UnsupportedVersion => 1,
            Self::Busy => 2,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::UnsupportedVersion,
            2 => Self::Busy,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion => f.write_str("it does not speak our protocol version"),
            Self::Busy => f.write_str("it is busy in another conversation; try again later"),
            Self::Other(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// Why a peer ended an established session (a CLOSE record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A normal goodbye.
    Goodbye,
    /// The peer does not trust our key (changed, unknown in strict mode, or not the expected one).
    Untrusted,
    /// A message was longer than the peer accepts.
    TooLarge,
    /// The peer took another conversation.
    Busy,
    /// We broke the protocol, in the peer's view.
    ProtocolError,
    /// A newer session from the same identity key took this one's place.
    Superseded,
    /// The peer needed room for a conversation with a peer it has verified,
    /// and this one (unverified, idle the longest) gave way.
    Displaced,
    /// A reason this implementation does not know.
    Other(u8),
}

impl CloseReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Goodbye => 0,
            Self::Untrusted => 1,
            Self::TooLarge => 2,
            Self::Busy => 3,
            Self::ProtocolError => 4,
            Self::Superseded => 5,
            Self::Displaced => 6,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Goodbye,
            1 => Self::Untrusted,
            2 => Self::TooLarge,
            3 => Self::Busy,
            4 => Self::ProtocolError,
            5 => Self::Superseded,
            6 => Self::Displaced,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Goodbye => f.write_str("goodbye"),
            Self::Untrusted => f.write_str("it does not trust our key"),
            Self::TooLarge => f.write_str("a message was larger than it accepts"),
            Self::Busy => f.write_str("it is busy in another conversation"),
            Self::ProtocolError => f.write_str("it saw a protocol error"),
            Self::Superseded => {
                f.write_str("a newer connection with the same key took this one's place")
            }
            Self::Displaced => f.write_str("it made room for a peer it has verified"),
            Self::Other(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// Everything that can go wrong in the pure protocol core, split by cause.
/// Any of them ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Bytes that do not decode as what the protocol expects here.
    #[error("malformed {what}: {problem}")]
    Malformed {
        /// The message or field being decoded.
        what: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The first bytes from the other end are not this protocol at all.
    #[error("the other end does not speak the chat protocol")]
    NotChat,
    /// A well-formed message that the protocol does not allow here.
    #[error("the peer broke the protocol: {0}")]
    PeerMisbehaved(&'static str),
    /// A record, signature or wrapped secret failed to verify. Deliberately
    /// says nothing more: there is no oracle to give.
    #[error("authentication failed: data was altered in transit, corrupted, or replayed")]
    AuthenticationFailed,
    /// The peer speaks another protocol version.
    #[error(
        "the peer speaks only chat protocol version {theirs}; this program speaks version {ours}"
    )]
    UnsupportedVersion {
        /// Their version.
        theirs: u8,
        /// Ours.
        ours: u8,
    },
    /// The responder refused the connection before the handshake.
    #[error("the peer refused the connection: {0}")]
    Refused(RefusalReason),
    /// The initiator abandoned the handshake with a reason.
    #[error("the peer abandoned the handshake: {0}")]
    Abandoned(CloseReason),
    /// The peer presented a key that is not acceptable.
    #[error("the peer's {which} key is not acceptable: {problem}")]
    BadPeerKey {
        /// Which key.
        which: &'static str,
        /// Why.
        problem: String,
    },
    /// A frame longer than allowed at this point; nothing was allocated for it.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Announced length.
        length: u32,
        /// The limit.
        limit: u32,
    },
    /// An incoming message longer than our limit.
    #[error("the peer started a message of {length} bytes; the limit is {limit} bytes")]
    MessageTooLarge {
        /// Announced length.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// Our own use of the session would exceed a safe limit (a sequence
    /// number would wrap, or a message is too long to describe).
    #[error("session limit reached: {0}; start a new conversation")]
    Exhausted(&'static str),
    /// An operation this side may not do now (a bug in the caller).
    #[error("not allowed now: {0}")]
    Misuse(&'static str),
}
