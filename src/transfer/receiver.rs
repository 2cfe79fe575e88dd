//! The receiving side of file transfer (`docs/PROTOCOL.md`, 9.4 to 9.7):
//! the peer's offers, checked as a whole and held for the user's consent
//! (at most 8 open, none longer than 10 minutes unanswered), then the files
//! of an accepted offer, one at a time, each file's SHA-256 computed over
//! the bytes as they arrive and compared with its FILE_END.
//!
//! Nothing here touches a file. The edge gets [`ReceiverAction`]s: ask the
//! user about an offer, open a partial file at an offset, write these
//! bytes, verify and save, delete a partial; and reports back the user's
//! answer ([`Incoming::accept`], [`Incoming::reject`],
//! [`Incoming::cancel`]) and whether a save worked ([`Incoming::saved`]).

use std::collections::BTreeMap;
use std::time::Instant;

use super::hash::FileHasher;
use super::offer::Manifest;
use crate::protocol::{MAX_OPEN_OFFERS, OFFER_EXPIRY, ProtocolError};
use crate::sanitize::one_line;
use crate::wire::file::{
    Accept, Cancel, CancelReason, CancelSide, Entry, FileRecord, FileVerdict, Offer, Reject,
    RejectReason, Resume, Start, Verdict,
};

/// What the edge must do or show after a step of the receiving side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverAction<'a> {
    /// Seal and send this record (`SendHalf::file`).
    Send(FileRecord<'static>),
    /// The peer offers these files: ask the user, then call
    /// [`Incoming::accept`] or [`Incoming::reject`].
    Offered {
        /// The offer.
        id: u64,
        /// The files.
        manifest: Manifest,
    },
    /// An offer was refused without asking (a FILE_REJECT is in the same
    /// list): tell the user what and why. The names are the peer's, unsafe
    /// to print as they are.
    Refused {
        /// The offer.
        id: u64,
        /// The files as offered.
        entries: Vec<Entry>,
        /// The reason sent.
        reason: RejectReason,
        /// What was wrong, safe to print.
        problem: String,
    },
    /// The peer withdrew an offer the user had not answered.
    Withdrawn {
        /// The offer.
        id: u64,
    },
    /// Nobody answered offer `id` within 10 minutes; it was rejected.
    Expired {
        /// The offer.
        id: u64,
    },
    /// A file's data begins: open its partial file. At `offset` 0, start a
    /// new, empty partial (discarding an old one for the same file); at a
    /// larger offset, keep the first `offset` bytes of the partial whose
    /// prefix was proposed, and append after them.
    Open {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
        /// Its path in the offer.
        path: Vec<String>,
        /// Its size.
        size: u64,
        /// Where the data starts.
        offset: u64,
    },
    /// Append these bytes to the partial file.
    Write {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
        /// The bytes.
        data: &'a [u8],
    },
    /// The whole file arrived and its SHA-256 matches: flush the partial
    /// to disk, give it its final name, and report with
    /// [`Incoming::saved`] before passing on any other file record.
    Save {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
        /// The verified SHA-256 of the whole file.
        sha256: [u8; 32],
    },
    /// The file's SHA-256 does not match: delete the partial, save nothing.
    Delete {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
    },
    /// The file in flight stops (a cancel): close its partial, and keep it
    /// for a later resume or delete it, as `keep_partial` says.
    Stop {
        /// The offer.
        id: u64,
        /// The file's index in the offer.
        entry: u16,
        /// Keep the partial file (24 hours) or delete it.
        keep_partial: bool,
    },
    /// The sender cancelled offer `id`; files without a verdict were not saved.
    CancelledByPeer {
        /// The offer.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// Offer `id` is over: nothing more will arrive for it.
    Finished {
        /// The offer.
        id: u64,
    },
}

/// The result of a [`ReceiverAction::Save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Flushed and renamed into place.
    Saved,
    /// It could not be written or renamed.
    WriteFailed,
    /// Something already in the save folder has its final name, or the
    /// name of a folder on its path (a file or link where a folder must
    /// be, or a folder the edge does not add to): nothing was replaced
    /// (`docs/PROTOCOL.md`, 9.7). The partial file is kept (9.9).
    NameTaken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the user, since this instant.
    Pending(Instant),
    /// Accepted: its files arrive in order.
    Accepted,
    /// We sent FILE_CANCEL: its records are checked but ignored until the
    /// sender's FILE_CANCEL.
    Cancelling,
}

#[derive(Debug)]
struct OfferState {
    manifest: Manifest,
    phase: Phase,
    /// The next entry expected to start.
    next_entry: u16,
    /// Our resume proposals: the hash of each partial's prefix.
    resume: BTreeMap<u16, FileHasher>,
}

/// The file whose data is arriving.
#[derive(Debug)]
struct Active {
    id: u64,
    entry: u16,
    remaining: u64,
    hasher: FileHasher,
    /// Its offer was cancelled by us: check, but do not write.
    ignored: bool,
}

/// The peer's offers and the files it sends (one direction of section 9).
#[derive(Debug)]
pub struct Incoming {
    last_id: u64,
    offers: BTreeMap<u64, OfferState>,
    active: Option<Active>,
    /// The offer whose files are arriving (first FILE_START to last FILE_END).
    started: Option<u64>,
    /// A file handed to the edge to save, whose outcome has not come back.
    saving: Option<(u64, u16)>,
    max_total: u64,
}

impl Default for Incoming {
    fn default() -> Self {
        Self::new()
    }
}

fn misbehaved(problem: &'static str) -> ProtocolError {
    ProtocolError::PeerMisbehaved(problem)
}

impl Incoming {
    /// No offers yet; no size limit.
    pub fn new() -> Self {
        Self {
            last_id: 0,
            offers: BTreeMap::new(),
            active: None,
            started: None,
            saving: None,
            max_total: u64::MAX,
        }
    }

    /// Offers larger than `bytes` in total are refused (FILE_REJECT, too
    /// large) without asking.
    pub fn set_max_total(&mut self, bytes: u64) {
        self.max_total = bytes;
    }

    /// How many of the peer's offers are open.
    pub fn open(&self) -> usize {
        self.offers.len()
    }

    /// The manifest of an open offer.
    pub fn manifest(&self, id: u64) -> Option<&Manifest> {
        self.offers.get(&id).map(|o| &o.manifest)
    }

    /// Whether offer `id` waits for the user's answer.
    pub fn is_pending(&self, id: u64) -> bool {
        matches!(self.offers.get(&id), Some(o) if matches!(o.phase, Phase::Pending(_)))
    }

    /// The offers accepted and not cancelled, still open: what a cancel of
    /// everything (the user's Ctrl-C) cancels.
    pub fn accepted_ids(&self) -> Vec<u64> {
        self.offers
            .iter()
            .filter(|(_, o)| o.phase == Phase::Accepted)
            .map(|(id, _)| *id)
            .collect()
    }

    /// When the oldest unanswered offer expires, for the edge's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.offers
            .values()
            .filter_map(|o| match o.phase {
                Phase::Pending(since) => Some(since + OFFER_EXPIRY),
                _ => None,
            })
            .min()
    }

    /// Takes a record from the sender of the peer's offers: FILE_OFFER,
    /// FILE_START, FILE_DATA, FILE_END, or a FILE_CANCEL whose side is
    /// `Sender`. `now` dates a new offer. Anything out of order is the
    /// peer's fault. While a [`ReceiverAction::Save`] is unreported, this
    /// refuses to go on.
    pub fn handle<'a>(
        &mut self,
        record: FileRecord<'a>,
        now: Instant,
    ) -> Result<Vec<ReceiverAction<'a>>, ProtocolError> {
        if self.saving.is_some() {
            return Err(ProtocolError::Misuse(
                "report the outcome of the save (Incoming::saved) first",
            ));
        }
        let mut actions = Vec::new();
        match record {
            FileRecord::Offer(offer) => self.offered(offer, now, &mut actions)?,
            FileRecord::Start(start) => self.started(start, &mut actions)?,
            FileRecord::Data(data) => {
                let active = self
                    .active
                    .as_mut()
                    .ok_or(misbehaved("FILE_DATA outside a file"))?;
                if data.len() as u64 > active.remaining {
                    return Err(misbehaved("FILE_DATA past the file's size"));
                }
                active.remaining -= data.len() as u64;
                if !active.ignored {
                    active.hasher.update(data);
                    actions.push(ReceiverAction::Write {
                        id: active.id,
                        entry: active.entry,
                        data,
                    });
                }
            }
            FileRecord::End(end) => {
                let active = self
                    .active
                    .take_if(|a| a.remaining == 0)
                    .ok_or(misbehaved("FILE_END outside a file or before all its data"))?;
                let offer = &self.offers[&active.id];
                let last = usize::from(active.entry) + 1 == offer.manifest.len();
                if last {
                    self.started = None;
                }
                if !active.ignored {
                    let (id, entry) = (active.id, active.entry);
                    if active.hasher.digest() == end.sha256 {
                        self.saving = Some((id, entry));
                        actions.push(ReceiverAction::Save {
                            id,
                            entry,
                            sha256: end.sha256,
                        });
                    } else {
                        actions.push(ReceiverAction::Delete { id, entry });
                        self.verdict(id, entry, Verdict::HashMismatch, &mut actions);
                    }
                }
            }
            FileRecord::Cancel(Cancel {
                id,
                side: CancelSide::Sender,
                reason,
            }) => self.cancelled(id, reason, &mut actions)?,
            _ => return Err(ProtocolError::Misuse("not a record for the receiving side")),
        }
        Ok(actions)
    }

    fn offered(
        &mut self,
        Offer { id, entries }: Offer,
        now: Instant,
        actions: &mut Vec<ReceiverAction<'_>>,
    ) -> Result<(), ProtocolError> {
        if Some(id) != self.last_id.checked_add(1) {
            return Err(misbehaved("FILE_OFFER id out of sequence"));
        }
        if self.offers.len() >= MAX_OPEN_OFFERS {
            return Err(misbehaved("a ninth open offer"));
        }
        self.last_id = id;
        let refuse = |reason: RejectReason, problem: String, entries: Vec<Entry>| {
            [
                ReceiverAction::Send(FileRecord::Reject(Reject { id, reason })),
                ReceiverAction::Refused {
                    id,
                    entries,
                    reason,
                    problem,
                },
            ]
        };
        match Manifest::new(entries.clone()) {
            Err(problem) => {
                actions.extend(refuse(
                    RejectReason::UnsafeName,
                    problem.to_string(),
                    entries,
                ));
            }
            Ok(manifest) if manifest.total() > self.max_total => {
                let problem = format!(
                    "{} bytes in all; at most {} are accepted",
                    manifest.total(),
                    self.max_total
                );
                actions.extend(refuse(RejectReason::TooLarge, problem, entries));
            }
            Ok(manifest) => {
                self.offers.insert(
                    id,
                    OfferState {
                        manifest: manifest.clone(),
                        phase: Phase::Pending(now),
                        next_entry: 0,
                        resume: BTreeMap::new(),
                    },
                );
                actions.push(ReceiverAction::Offered { id, manifest });
            }
        }
        Ok(())
    }

    fn started(
        &mut self,
        Start { id, entry, offset }: Start,
        actions: &mut Vec<ReceiverAction<'_>>,
    ) -> Result<(), ProtocolError> {
        if self.active.is_some() {
            return Err(misbehaved("FILE_START while a file is arriving"));
        }
        if self.started.is_some_and(|s| s != id) {
            return Err(misbehaved(
                "FILE_START of another offer before the last one ended",
            ));
        }
        let offer = self
            .offers
            .get_mut(&id)
            .ok_or(misbehaved("FILE_START of no open offer"))?;
        if matches!(offer.phase, Phase::Pending(_)) {
            return Err(misbehaved("FILE_START before FILE_ACCEPT"));
        }
        if entry != offer.next_entry || usize::from(entry) >= offer.manifest.len() {
            return Err(misbehaved("FILE_START out of order"));
        }
        let proposal = offer.resume.remove(&entry);
        let hasher = match proposal {
            _ if offset == 0 => FileHasher::new(),
            Some(prefix) if prefix.len() == offset => prefix,
            _ => return Err(misbehaved("FILE_START at an offset that was not proposed")),
        };
        let file = &offer.manifest.entries()[usize::from(entry)];
        let ignored = offer.phase == Phase::Cancelling;
        offer.next_entry += 1;
        self.started = Some(id);
        self.active = Some(Active {
            id,
            entry,
            remaining: file.size - offset,
            hasher,
            ignored,
        });
        if !ignored {
            actions.push(ReceiverAction::Open {
                id,
                entry,
                path: file.path.clone(),
                size: file.size,
                offset,
            });
        }
        Ok(())
    }

    fn cancelled(
        &mut self,
        id: u64,
        reason: CancelReason,
        actions: &mut Vec<ReceiverAction<'_>>,
    ) -> Result<(), ProtocolError> {
        if id == 0 || id > self.last_id {
            return Err(misbehaved("FILE_CANCEL of an offer never made"));
        }
        let Some(offer) = self.offers.get(&id) else {
            // It crossed our REJECT or last verdict.
            if reason == CancelReason::Answer {
                return Err(misbehaved("FILE_CANCEL answers a cancel never sent"));
            }
            return Ok(());
        };
        match offer.phase {
            Phase::Cancelling => {}
            _ if reason == CancelReason::Answer => {
                return Err(misbehaved("FILE_CANCEL answers a cancel never sent"));
            }
            Phase::Pending(_) => {
                actions.push(ReceiverAction::Withdrawn { id });
                self.answer(id, actions);
            }
            Phase::Accepted => {
                if let Some(active) = self.active.as_ref().filter(|a| a.id == id) {
                    actions.push(ReceiverAction::Stop {
                        id,
                        entry: active.entry,
                        keep_partial: true,
                    });
                }
                actions.push(ReceiverAction::CancelledByPeer { id, reason });
                self.answer(id, actions);
            }
        }
        self.finish(id, actions);
        Ok(())
    }

    fn answer(&self, id: u64, actions: &mut Vec<ReceiverAction<'_>>) {
        actions.push(ReceiverAction::Send(FileRecord::Cancel(Cancel {
            id,
            side: CancelSide::Receiver,
            reason: CancelReason::Answer,
        })));
    }

    /// Closes offer `id`: nothing more arrives for it.
    fn finish(&mut self, id: u64, actions: &mut Vec<ReceiverAction<'_>>) {
        self.offers.remove(&id);
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        if self.started == Some(id) {
            self.started = None;
        }
        actions.push(ReceiverAction::Finished { id });
    }

    /// Sends a verdict, and finishes the offer after its last file's.
    fn verdict(
        &mut self,
        id: u64,
        entry: u16,
        verdict: Verdict,
        actions: &mut Vec<ReceiverAction<'_>>,
    ) {
        actions.push(ReceiverAction::Send(FileRecord::Verdict(FileVerdict {
            id,
            entry,
            verdict,
        })));
        // (The offer is gone only if the session ended during a save.)
        if self
            .offers
            .get(&id)
            .is_some_and(|o| usize::from(entry) + 1 == o.manifest.len())
        {
            self.finish(id, actions);
        }
    }

    /// The user accepts offer `id`. `resume` holds, for files of which a
    /// partial is kept, the file's index and the hash of the partial's
    /// bytes from the start (as many as it holds, at least 1, at most the
    /// file's size), by increasing index.
    pub fn accept(
        &mut self,
        id: u64,
        resume: Vec<(u16, FileHasher)>,
    ) -> Result<Vec<ReceiverAction<'static>>, ProtocolError> {
        let offer = self
            .offers
            .get_mut(&id)
            .filter(|o| matches!(o.phase, Phase::Pending(_)))
            .ok_or(ProtocolError::Misuse("no such offer waits for an answer"))?;
        let mut proposals = Vec::with_capacity(resume.len());
        for (entry, prefix) in &resume {
            let file = offer
                .manifest
                .entries()
                .get(usize::from(*entry))
                .ok_or(ProtocolError::Misuse("resume of a file the offer lacks"))?;
            if prefix.is_empty() || prefix.len() > file.size {
                return Err(ProtocolError::Misuse(
                    "a resume prefix is empty or longer than the file",
                ));
            }
            if proposals.last().is_some_and(|p: &Resume| p.entry >= *entry) {
                return Err(ProtocolError::Misuse("resume entries must increase"));
            }
            proposals.push(Resume {
                entry: *entry,
                offset: prefix.len(),
                prefix_sha256: prefix.digest(),
            });
        }
        offer.phase = Phase::Accepted;
        offer.resume = resume.into_iter().collect();
        Ok(vec![ReceiverAction::Send(FileRecord::Accept(Accept {
            id,
            resume: proposals,
        }))])
    }

    /// The user declines offer `id` (or the receiver's policy does).
    pub fn reject(
        &mut self,
        id: u64,
        reason: RejectReason,
    ) -> Result<Vec<ReceiverAction<'static>>, ProtocolError> {
        if !self.is_pending(id) {
            return Err(ProtocolError::Misuse("no such offer waits for an answer"));
        }
        let mut actions = vec![ReceiverAction::Send(FileRecord::Reject(Reject {
            id,
            reason,
        }))];
        self.finish(id, &mut actions);
        Ok(actions)
    }

    /// Cancels accepted offer `id` (an unanswered one is rejected instead).
    /// A file in flight stops; its partial is kept for a resume unless our
    /// own user cancelled. The offer is finished when the sender answers.
    pub fn cancel(
        &mut self,
        id: u64,
        reason: CancelReason,
    ) -> Result<Vec<ReceiverAction<'static>>, ProtocolError> {
        if reason == CancelReason::Answer {
            return Err(ProtocolError::Misuse("an answer is sent only in answer"));
        }
        if self.saving.is_some() {
            return Err(ProtocolError::Misuse(
                "report the outcome of the save (Incoming::saved) first",
            ));
        }
        let offer = self
            .offers
            .get_mut(&id)
            .filter(|o| o.phase == Phase::Accepted)
            .ok_or(ProtocolError::Misuse("no such accepted offer"))?;
        offer.phase = Phase::Cancelling;
        offer.resume.clear();
        let mut actions = Vec::new();
        if let Some(active) = self.active.as_mut().filter(|a| a.id == id) {
            active.ignored = true;
            actions.push(ReceiverAction::Stop {
                id,
                entry: active.entry,
                keep_partial: reason != CancelReason::User,
            });
        }
        actions.push(ReceiverAction::Send(FileRecord::Cancel(Cancel {
            id,
            side: CancelSide::Receiver,
            reason,
        })));
        Ok(actions)
    }

    /// The edge reports the outcome of the last [`ReceiverAction::Save`]:
    /// the verdict goes out.
    pub fn saved(
        &mut self,
        outcome: SaveOutcome,
    ) -> Result<Vec<ReceiverAction<'static>>, ProtocolError> {
        let (id, entry) = self
            .saving
            .take()
            .ok_or(ProtocolError::Misuse("no save to report"))?;
        let verdict = match outcome {
            SaveOutcome::Saved => Verdict::Saved,
            SaveOutcome::WriteFailed => Verdict::WriteFailed,
            SaveOutcome::NameTaken => Verdict::NameTaken,
        };
        let mut actions = Vec::new();
        self.verdict(id, entry, verdict, &mut actions);
        Ok(actions)
    }

    /// Rejects the offers nobody answered for 10 minutes.
    pub fn expire(&mut self, now: Instant) -> Vec<ReceiverAction<'static>> {
        let expired: Vec<u64> = self
            .offers
            .iter()
            .filter(|(_, o)| {
                matches!(o.phase, Phase::Pending(since) if now.saturating_duration_since(since) >= OFFER_EXPIRY)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut actions = Vec::new();
        for id in expired {
            actions.push(ReceiverAction::Send(FileRecord::Reject(Reject {
                id,
                reason: RejectReason::Expired,
            })));
            actions.push(ReceiverAction::Expired { id });
            self.finish(id, &mut actions);
        }
        actions
    }

    /// The session is over (closed or cut): a file in flight stops, and
    /// its partial is kept for a resume. A file being saved may still be
    /// reported with [`saved`](Self::saved) (it is complete and verified),
    /// though its verdict can no longer be sent.
    pub fn session_ended(&mut self) -> Vec<ReceiverAction<'static>> {
        let mut actions = Vec::new();
        if let Some(active) = self.active.take().filter(|a| !a.ignored) {
            actions.push(ReceiverAction::Stop {
                id: active.id,
                entry: active.entry,
                keep_partial: true,
            });
        }
        for id in std::mem::take(&mut self.offers).into_keys() {
            actions.push(ReceiverAction::Finished { id });
        }
        self.started = None;
        actions
    }
}

/// A refused offer's names, for display: each made safe to print.
pub fn describe(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.path
                .iter()
                .map(|n| one_line(n))
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}
