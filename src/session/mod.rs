//! The established session: messages of any length as chunk records,
//! delivery receipts, keep-alives, half-close and close, key updates, and
//! the file records (`docs/PROTOCOL.md`, sections 7.2 and 8; the file
//! transfer rules are in `crate::transfer`). Pure: records in, events out;
//! records out into a caller's buffer; time from an injected [`Clock`].
//!
//! A session splits into a [`SendHalf`] and a [`RecvHalf`] so that a reader
//! and a writer can run on different threads. The halves share two counters,
//! so that the receiving half can check each receipt against what the
//! sending half has really sent. Each half owns its direction's keys
//! (`key_update.rs`): the sending half moves to the next key when its
//! [`RekeyLimit`] says so, the receiving half when the peer's KEY_UPDATE
//! says so. After any error the receiving half refuses every further
//! record: an error ends the session.

mod key_update;
mod recv;
mod send;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use key_update::{
    Clock, MIN_REKEY_BYTES, MIN_REKEY_INTERVAL, ManualClock, RekeyLimit, RekeyLimitError,
    SystemClock,
};
pub use recv::RecvHalf;
pub use send::SendHalf;

use crate::crypto::keys::PublicKey;
use crate::crypto::schedule::DirectionalSecrets;
use crate::protocol::{CloseReason, Role};
use crate::wire::file::FileRecord;
use key_update::{RecvKeys, SendKeys};

/// Chunk size a sender uses by default.
pub const DEFAULT_CHUNK: usize = 64 * 1024;

/// Who is on the other end, as the handshake proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's identity key; it signed the handshake transcript.
    pub key: PublicKey,
    /// The nickname it announced (unverified text chosen by the peer).
    pub nickname: String,
}

/// Both halves of an established session.
pub struct Session {
    send: SendHalf,
    recv: RecvHalf,
}

impl Session {
    /// A session keyed with the first application traffic secrets.
    pub(crate) fn new(role: Role, secrets: DirectionalSecrets) -> Self {
        let DirectionalSecrets { i2r, r2i } = secrets;
        let (ours, theirs) = match role {
            Role::Initiator => (i2r, r2i),
            Role::Responder => (r2i, i2r),
        };
        let receipts = Arc::new(Receipts::default());
        Self {
            send: SendHalf::new(SendKeys::new(ours), Arc::clone(&receipts)),
            recv: RecvHalf::new(RecvKeys::new(theirs), receipts),
        }
    }

    /// The two halves.
    pub fn split(self) -> (SendHalf, RecvHalf) {
        (self.send, self.recv)
    }

    /// The sending half.
    pub fn send(&mut self) -> &mut SendHalf {
        &mut self.send
    }

    /// The receiving half.
    pub fn recv(&mut self) -> &mut RecvHalf {
        &mut self.recv
    }
}

/// What the sending half has finished sending, and what the peer has
/// acknowledged: written by one half each, read by the other.
#[derive(Debug, Default)]
struct Receipts {
    /// Id of the last message whose MESSAGE_END was sealed.
    last_complete: AtomicU64,
    /// Id of the last message the peer acknowledged.
    last_acknowledged: AtomicU64,
}

/// What a received record means.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message begins; `length` bytes of text follow.
    MessageStart {
        /// Its id.
        id: u64,
        /// Its total length.
        length: u64,
    },
    /// A piece of the current message's text; more follows.
    MessageData {
        /// The message's id.
        id: u64,
        /// The text.
        data: &'a [u8],
    },
    /// The last piece: the message is now complete and authentic.
    MessageEnd {
        /// The message's id.
        id: u64,
        /// The text.
        data: &'a [u8],
    },
    /// The peer has every message up to and including the last of `ids`,
    /// which are those not acknowledged before.
    Receipt {
        /// The newly acknowledged message ids.
        ids: RangeInclusive<u64>,
    },
    /// The peer is still there.
    Keepalive,
    /// The peer will start no more messages or offers.
    Done,
    /// The peer ended the session; a message in progress is abandoned.
    Close {
        /// Why.
        reason: CloseReason,
        /// The id of a message that was cut off by the close, if any.
        abandoned: Option<u64>,
    },
    /// The initiator proves it holds a one-time invite's secret (its first
    /// record only).
    InviteProof([u8; 32]),
    /// The responder's answer to that proof (its first record only).
    InviteResult(bool),
    /// The peer moved to its next key; its next records are under it.
    KeyUpdate {
        /// The new key's epoch.
        epoch: u64,
    },
    /// A file record, decoded but not yet checked against the transfer
    /// rules: pass it to `transfer::Transfers::handle`.
    File(FileRecord<'a>),
}

#[cfg(test)]
mod tests;
