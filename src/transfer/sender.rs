//! The sending side of file transfer (`docs/PROTOCOL.md`, 9.4 to 9.7): our
//! offers, the files of the accepted ones sent one at a time, each file's
//! SHA-256 computed over the bytes as they go, and the receiver's verdicts.
//!
//! The edge reads the files; this module decides what is sent and checks
//! what comes back:
//!
//! 1. [`Outgoing::offer`] gives FILE_OFFER for a [`Manifest`].
//! 2. The receiver's answer, through [`Outgoing::handle`], gives
//!    [`SenderAction::Accepted`] (or `Rejected`).
//! 3. For each file in turn, [`Outgoing::next`] says which and whether the
//!    receiver proposed a resume offset. The edge hashes that many bytes
//!    from the start of its file into a [`FileHasher`] and passes it to
//!    [`Outgoing::start`], which compares it with the receiver's proposal
//!    and answers where the data starts (FILE_START).
//! 4. The edge reads from there, passes each chunk to [`Outgoing::data`]
//!    and seals it as FILE_DATA (`SendHalf::file_data_in_place`); then
//!    [`Outgoing::end`] gives FILE_END with the whole file's SHA-256.
//! 5. Verdicts arrive through [`Outgoing::handle`]; the offer is finished
//!    when every file has one.

use std::collections::{BTreeMap, VecDeque};

use super::hash::FileHasher;
use super::offer::Manifest;
use crate::protocol::{MAX_OPEN_OFFERS, MAX_RECORD_PLAINTEXT, ProtocolError};
use crate::wire::file::{
    Accept, Cancel, CancelReason, CancelSide, End, FileRecord, FileVerdict, Reject, RejectReason,
    Resume, Start, Verdict,
};

/// What the edge must do or show after a step of the sending side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAction {
    /// Seal and send this record (`SendHalf::file`).
    Send(FileRecord<'static>),
    /// The receiver accepted offer `id`; `resume` lists `(entry, offset)`
    /// where it proposes to resume. Send its files ([`Outgoing::next`]).
    Accepted {
        /// The offer.
        id: u64,
        /// Resume proposals: entry index and offset.
        resume: Vec<(u16, u64)>,
    },
    /// The receiver declined offer `id`; it is finished.
    Rejected {
        /// The offer.
        id: u64,
        /// Why.
        reason: RejectReason,
    },
    /// The receiver's verdict on one file.
    Outcome {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
        /// What became of it.
        verdict: Verdict,
    },
    /// The receiver cancelled offer `id`: stop reading its files. Files
    /// without an `Outcome` were not saved.
    CancelledByPeer {
        /// The offer.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// Offer `id` is over: nothing more will be sent or received for it.
    Finished {
        /// The offer.
        id: u64,
    },
}

/// The next file to send, from [`Outgoing::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextFile {
    /// The offer.
    pub id: u64,
    /// The file's index in the offer.
    pub entry: u16,
    /// Its path in the offer.
    pub path: Vec<String>,
    /// Its size, as offered.
    pub size: u64,
    /// Where the receiver proposes to resume: hash this many bytes from the
    /// start of the file for [`Outgoing::start`].
    pub resume: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Offered, not answered.
    Pending,
    /// Accepted: its files go out in order.
    Accepted,
    /// We sent FILE_CANCEL; waiting for the receiver's answer (or its
    /// REJECT or last verdict, which crossed it).
    Cancelling,
}

#[derive(Debug)]
struct OfferState {
    manifest: Manifest,
    phase: Phase,
    /// The next entry to start.
    next_entry: u16,
    /// How many entries have had their FILE_END.
    ended: u16,
    /// The receiver's resume proposals.
    resume: BTreeMap<u16, Resume>,
}

/// The file being sent.
#[derive(Debug)]
struct Active {
    id: u64,
    entry: u16,
    remaining: u64,
    hasher: FileHasher,
}

/// Our offers and the files we send (one direction of section 9).
#[derive(Debug)]
pub struct Outgoing {
    next_id: u64,
    offers: BTreeMap<u64, OfferState>,
    /// The file between its FILE_START and FILE_END.
    active: Option<Active>,
    /// The offer whose files are going out (from its first FILE_START to
    /// its last FILE_END).
    started: Option<u64>,
    /// Files whose FILE_END was sent and whose verdict has not come, in order.
    awaiting: VecDeque<(u64, u16)>,
}

impl Default for Outgoing {
    fn default() -> Self {
        Self::new()
    }
}

fn misbehaved(problem: &'static str) -> ProtocolError {
    ProtocolError::PeerMisbehaved(problem)
}

impl Outgoing {
    /// No offers yet.
    pub fn new() -> Self {
        Self {
            next_id: 1,
            offers: BTreeMap::new(),
            active: None,
            started: None,
            awaiting: VecDeque::new(),
        }
    }

    /// Whether another offer may be made now (fewer than 8 are open).
    pub fn can_offer(&self) -> bool {
        self.offers.len() < MAX_OPEN_OFFERS
    }

    /// How many of our offers are open.
    pub fn open(&self) -> usize {
        self.offers.len()
    }

    /// Offers `manifest`: its id and the FILE_OFFER to send.
    pub fn offer(
        &mut self,
        manifest: Manifest,
    ) -> Result<(u64, FileRecord<'static>), ProtocolError> {
        if !self.can_offer() {
            return Err(ProtocolError::Misuse(
                "8 offers are open; wait for one to finish",
            ));
        }
        if self.next_id == u64::MAX {
            return Err(ProtocolError::Exhausted("offer id"));
        }
        let id = self.next_id;
        self.next_id += 1;
        let record = FileRecord::Offer(manifest.to_offer(id));
        self.offers.insert(
            id,
            OfferState {
                manifest,
                phase: Phase::Pending,
                next_entry: 0,
                ended: 0,
                resume: BTreeMap::new(),
            },
        );
        Ok((id, record))
    }

    /// The manifest of an open offer.
    pub fn manifest(&self, id: u64) -> Option<&Manifest> {
        self.offers.get(&id).map(|o| &o.manifest)
    }

    /// The file to send next, if one may start now: none while a file is
    /// in flight; the next file of the offer being sent; else the first
    /// file of the oldest accepted offer not started yet.
    pub fn next(&self) -> Option<NextFile> {
        if self.active.is_some() {
            return None;
        }
        let id = match self.started {
            Some(id) => id,
            None => {
                *self
                    .offers
                    .iter()
                    .find(|(_, o)| o.phase == Phase::Accepted && o.next_entry == 0)?
                    .0
            }
        };
        let offer = &self.offers[&id];
        let entry = offer.next_entry;
        let file = offer.manifest.entries().get(usize::from(entry))?;
        Some(NextFile {
            id,
            entry,
            path: file.path.clone(),
            size: file.size,
            resume: offer.resume.get(&entry).map(|r| r.offset),
        })
    }

    /// Starts file `entry` of offer `id`, which must be [`next`](Self::next).
    /// `prefix` is the SHA-256 of the first bytes of our file, as many as
    /// the receiver proposed (`NextFile::resume`), or `None` when there is
    /// no proposal. Returns where the data starts (the proposed offset if
    /// the prefixes match, else 0: read from there) and FILE_START.
    pub fn start(
        &mut self,
        id: u64,
        entry: u16,
        prefix: Option<FileHasher>,
    ) -> Result<(u64, FileRecord<'static>), ProtocolError> {
        let next = self
            .next()
            .ok_or(ProtocolError::Misuse("no file may start now"))?;
        if (next.id, next.entry) != (id, entry) {
            return Err(ProtocolError::Misuse("not the next file to send"));
        }
        let offer = self.offers.get_mut(&id).expect("next() found it");
        let proposal = offer.resume.remove(&entry);
        let (offset, hasher) = match (proposal, prefix) {
            (Some(proposal), Some(prefix))
                if prefix.len() == proposal.offset && prefix.digest() == proposal.prefix_sha256 =>
            {
                (proposal.offset, prefix)
            }
            (Some(_), _) => (0, FileHasher::new()),
            (None, None) => (0, FileHasher::new()),
            (None, Some(_)) => {
                return Err(ProtocolError::Misuse(
                    "a prefix was hashed, but the receiver proposed no resume",
                ));
            }
        };
        offer.next_entry += 1;
        self.started = Some(id);
        self.active = Some(Active {
            id,
            entry,
            remaining: next.size - offset,
            hasher,
        });
        Ok((offset, FileRecord::Start(Start { id, entry, offset })))
    }

    /// The file in flight, if any: offer, entry, and bytes still to send.
    pub fn in_flight(&self) -> Option<(u64, u16, u64)> {
        self.active.as_ref().map(|a| (a.id, a.entry, a.remaining))
    }

    /// Takes the next chunk of the file in flight (1 to 262 144 bytes, not
    /// past its size), to be sealed as FILE_DATA right after.
    pub fn data(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let active = self
            .active
            .as_mut()
            .ok_or(ProtocolError::Misuse("no file is being sent"))?;
        if chunk.is_empty() || chunk.len() > MAX_RECORD_PLAINTEXT {
            return Err(ProtocolError::Misuse("FILE_DATA of 1 to 262 144 bytes"));
        }
        if chunk.len() as u64 > active.remaining {
            return Err(ProtocolError::Misuse("more data than the file's size"));
        }
        active.hasher.update(chunk);
        active.remaining -= chunk.len() as u64;
        Ok(())
    }

    /// Ends the file in flight, once all its bytes went out: FILE_END with
    /// the SHA-256 of the whole file.
    pub fn end(&mut self) -> Result<FileRecord<'static>, ProtocolError> {
        match &self.active {
            None => return Err(ProtocolError::Misuse("no file is being sent")),
            Some(active) if active.remaining > 0 => {
                return Err(ProtocolError::Misuse("the file has bytes left to send"));
            }
            Some(_) => {}
        }
        let active = self.active.take().expect("checked");
        let offer = self.offers.get_mut(&active.id).expect("open while active");
        offer.ended += 1;
        if usize::from(offer.ended) == offer.manifest.len() {
            self.started = None;
        }
        self.awaiting.push_back((active.id, active.entry));
        Ok(FileRecord::End(End {
            sha256: active.hasher.digest(),
        }))
    }

    /// Cancels our offer `id` (`reason` is not [`CancelReason::Answer`]):
    /// stop reading its files. It is finished when the receiver answers.
    pub fn cancel(
        &mut self,
        id: u64,
        reason: CancelReason,
    ) -> Result<Vec<SenderAction>, ProtocolError> {
        if reason == CancelReason::Answer {
            return Err(ProtocolError::Misuse("an answer is sent only in answer"));
        }
        let offer = self
            .offers
            .get_mut(&id)
            .ok_or(ProtocolError::Misuse("no such open offer"))?;
        if offer.phase == Phase::Cancelling {
            return Err(ProtocolError::Misuse("the offer is already cancelled"));
        }
        offer.phase = Phase::Cancelling;
        offer.resume.clear();
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        if self.started == Some(id) {
            self.started = None;
        }
        Ok(vec![SenderAction::Send(FileRecord::Cancel(Cancel {
            id,
            side: CancelSide::Sender,
            reason,
        }))])
    }

    /// Closes offer `id`: nothing more is sent or expected for it.
    fn finish(&mut self, id: u64, actions: &mut Vec<SenderAction>) {
        self.offers.remove(&id);
        self.awaiting.retain(|&(offer, _)| offer != id);
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        if self.started == Some(id) {
            self.started = None;
        }
        actions.push(SenderAction::Finished { id });
    }

    /// Takes a record from the receiver of our offers: FILE_ACCEPT,
    /// FILE_REJECT, FILE_VERDICT, or a FILE_CANCEL whose side is
    /// `Receiver`. Anything out of order is the peer's fault.
    pub fn handle(&mut self, record: &FileRecord<'_>) -> Result<Vec<SenderAction>, ProtocolError> {
        let mut actions = Vec::new();
        match record {
            FileRecord::Accept(accept) => self.accepted(accept, &mut actions)?,
            FileRecord::Reject(Reject { id, reason }) => {
                let offer = self
                    .offers
                    .get(id)
                    .ok_or(misbehaved("FILE_REJECT of no open offer"))?;
                match offer.phase {
                    Phase::Pending => {
                        actions.push(SenderAction::Rejected {
                            id: *id,
                            reason: *reason,
                        });
                        self.finish(*id, &mut actions);
                    }
                    Phase::Cancelling => self.finish(*id, &mut actions),
                    Phase::Accepted => return Err(misbehaved("FILE_REJECT after FILE_ACCEPT")),
                }
            }
            FileRecord::Verdict(FileVerdict { id, entry, verdict }) => {
                if self.awaiting.front() != Some(&(*id, *entry)) {
                    return Err(misbehaved(
                        "FILE_VERDICT for a file that is not the oldest one ended",
                    ));
                }
                self.awaiting.pop_front();
                actions.push(SenderAction::Outcome {
                    id: *id,
                    entry: *entry,
                    verdict: *verdict,
                });
                let offer = &self.offers[id];
                let all_ended = usize::from(offer.ended) == offer.manifest.len();
                if all_ended && !self.awaiting.iter().any(|&(offer, _)| offer == *id) {
                    self.finish(*id, &mut actions);
                }
            }
            FileRecord::Cancel(Cancel {
                id,
                side: CancelSide::Receiver,
                reason,
            }) => {
                let offer = self
                    .offers
                    .get(id)
                    .ok_or(misbehaved("FILE_CANCEL of no open offer of ours"))?;
                match offer.phase {
                    Phase::Cancelling => self.finish(*id, &mut actions),
                    _ if *reason == CancelReason::Answer => {
                        return Err(misbehaved("FILE_CANCEL answers a cancel never sent"));
                    }
                    Phase::Pending => {
                        return Err(misbehaved("FILE_CANCEL of an offer not accepted"));
                    }
                    Phase::Accepted => {
                        actions.push(SenderAction::CancelledByPeer {
                            id: *id,
                            reason: *reason,
                        });
                        actions.push(SenderAction::Send(FileRecord::Cancel(Cancel {
                            id: *id,
                            side: CancelSide::Sender,
                            reason: CancelReason::Answer,
                        })));
                        self.finish(*id, &mut actions);
                    }
                }
            }
            _ => return Err(ProtocolError::Misuse("not a record for the sending side")),
        }
        Ok(actions)
    }

    fn accepted(
        &mut self,
        Accept { id, resume }: &Accept,
        actions: &mut Vec<SenderAction>,
    ) -> Result<(), ProtocolError> {
        let offer = self
            .offers
            .get_mut(id)
            .ok_or(misbehaved("FILE_ACCEPT of no open offer"))?;
        for proposal in resume {
            let file = offer
                .manifest
                .entries()
                .get(usize::from(proposal.entry))
                .ok_or(misbehaved("FILE_ACCEPT proposes a file the offer lacks"))?;
            if proposal.offset > file.size {
                return Err(misbehaved(
                    "FILE_ACCEPT proposes an offset past the file's end",
                ));
            }
        }
        match offer.phase {
            Phase::Pending => {
                offer.phase = Phase::Accepted;
                offer.resume = resume.iter().map(|r| (r.entry, *r)).collect();
                actions.push(SenderAction::Accepted {
                    id: *id,
                    resume: resume.iter().map(|r| (r.entry, r.offset)).collect(),
                });
            }
            // It crossed our FILE_CANCEL: nothing to do.
            Phase::Cancelling => {}
            Phase::Accepted => return Err(misbehaved("a second FILE_ACCEPT")),
        }
        Ok(())
    }
}
