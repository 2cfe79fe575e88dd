//! File transfer (`docs/PROTOCOL.md`, section 9), sans I/O: records in,
//! records and actions for the edge out. The edge (the network engine and
//! the app) opens, reads, writes and renames files, asks the user, and
//! keeps time; this module decides what may happen, in what order, and
//! computes each file's SHA-256 over the bytes as they pass.
//!
//! * `name.rs`: the name rules, for every name of an offer.
//! * `unicode14.rs`: the code points Unicode 14.0.0 assigns (name rule 10).
//! * `offer.rs`: an offer's [`Manifest`], checked as a whole.
//! * `hash.rs`: the running SHA-256 of a file, prefix first.
//! * `sender.rs`: our offers and the files we send ([`Outgoing`]).
//! * `receiver.rs`: the peer's offers and the files it sends ([`Incoming`]).
//!
//! Each direction has its own offers, numbered from 1, with at most 8 open
//! at once and one file's data in flight at a time; file records interleave
//! freely with messages. Any record out of order is
//! [`ProtocolError::PeerMisbehaved`]: the session ends with CLOSE(4).

mod hash;
mod name;
mod offer;
mod receiver;
mod sender;
mod unicode14;

use std::time::Instant;

pub use hash::FileHasher;
pub use name::{NameError, check_name};
pub use offer::{Manifest, ManifestError};
pub use receiver::{Incoming, ReceiverAction, SaveOutcome, describe};
pub use sender::{NextFile, Outgoing, SenderAction};

pub use crate::wire::file::{CancelReason, CancelSide, Entry, FileRecord, RejectReason, Verdict};

use crate::protocol::ProtocolError;
use crate::wire::file::Cancel;

/// Both directions of file transfer in one session.
#[derive(Debug, Default)]
pub struct Transfers {
    /// Our offers, the files we send.
    pub outgoing: Outgoing,
    /// The peer's offers, the files we receive.
    pub incoming: Incoming,
}

/// What a received file record led to, on the side it concerns.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaction<'a> {
    /// About one of our offers.
    Outgoing(Vec<SenderAction>),
    /// About one of the peer's offers.
    Incoming(Vec<ReceiverAction<'a>>),
}

impl Transfers {
    /// Both directions idle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Passes a file record from the session (`Event::File`) to the side it
    /// concerns: FILE_OFFER, FILE_START, FILE_DATA, FILE_END and a
    /// FILE_CANCEL from the sender to [`Incoming`]; FILE_ACCEPT,
    /// FILE_REJECT, FILE_VERDICT and a FILE_CANCEL from the receiver to
    /// [`Outgoing`]. `now` dates a new offer.
    pub fn handle<'a>(
        &mut self,
        record: FileRecord<'a>,
        now: Instant,
    ) -> Result<Reaction<'a>, ProtocolError> {
        Ok(match record {
            FileRecord::Accept(_)
            | FileRecord::Reject(_)
            | FileRecord::Verdict(_)
            | FileRecord::Cancel(Cancel {
                side: CancelSide::Receiver,
                ..
            }) => Reaction::Outgoing(self.outgoing.handle(&record)?),
            FileRecord::Offer(_)
            | FileRecord::Start(_)
            | FileRecord::Data(_)
            | FileRecord::End(_)
            | FileRecord::Cancel(Cancel {
                side: CancelSide::Sender,
                ..
            }) => Reaction::Incoming(self.incoming.handle(record, now)?),
        })
    }
}

#[cfg(test)]
mod tests;
