//! Files inside a conversation (`docs/PROTOCOL.md`, section 9): the edge
//! between the pure state machines of `crate::transfer` and the socket.
//!
//! * Our offers: [`Sender::offer`] sends FILE_OFFER; once the peer accepts,
//!   a pump thread (`chat-files`) reads the files, one chunk at a time,
//!   and seals each chunk as FILE_DATA. Every chunk takes the session's
//!   lock once and is written before the next is read, so a message typed
//!   meanwhile waits for at most one chunk, never for the whole file.
//! * The peer's offers: the reader thread passes each file record to
//!   [`Incoming`](crate::transfer::Incoming) and hands what it asks for to
//!   the [`Handler`]: ask the user ([`Handler::file_offered`]), open, write,
//!   save or discard a partial file. The user's later answer comes back
//!   through [`Sender::accept`] or [`Sender::reject`].
//!
//! Lock order: a direction's lock (`outgoing` or `incoming`), then the
//! writer's. Hashing happens under the direction's lock only, so it never
//! holds up the other direction or a message.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use super::{Halt, Handler, SendError, Sender, Shared};
use crate::protocol::{MAX_RECORD_PLAINTEXT, ProtocolError, TAG_LEN};
use crate::transfer::{
    CancelReason, CancelSide, Entry, FileHasher, FileRecord, Incoming, Manifest, Outgoing,
    ReceiverAction, RejectReason, SaveOutcome, SenderAction, Verdict,
};
use crate::wire::file::Cancel;
use crate::wire::frame::HEADER_LEN;

/// How much of a file goes in one FILE_DATA record: the largest record
/// (PROTOCOL.md 12; the chunk size is the sender's choice). Half as many
/// records, seals, locks and writes per byte as 128 KiB.
pub const FILE_CHUNK: usize = MAX_RECORD_PLAINTEXT;

/// The user's answer to an offer, from [`Handler::file_offered`].
#[derive(Debug)]
pub enum Consent {
    /// Ask the user; the answer comes later ([`Sender::accept`],
    /// [`Sender::reject`]).
    Ask,
    /// Accept now, proposing these resumes (file index and the hash of the
    /// partial's bytes).
    Accept(Vec<(u16, FileHasher)>),
    /// Reject now.
    Reject(RejectReason),
}

/// Something about a transfer that the user may want to know.
#[derive(Debug)]
pub enum FileNotice<'a> {
    /// The peer's offer was refused without asking.
    Refused {
        /// The offer.
        id: u64,
        /// Its files as offered (unsafe to print as they are).
        entries: &'a [Entry],
        /// The reason sent.
        reason: RejectReason,
        /// What was wrong, safe to print.
        problem: &'a str,
    },
    /// We rejected the peer's offer (our policy or our user).
    Declined {
        /// The offer.
        id: u64,
        /// The reason sent.
        reason: RejectReason,
    },
    /// The peer withdrew an offer before it was answered.
    Withdrawn {
        /// The offer.
        id: u64,
    },
    /// Nobody answered the peer's offer within 10 minutes.
    Expired {
        /// The offer.
        id: u64,
    },
    /// The peer cancelled its offer while sending.
    SenderCancelled {
        /// The offer.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// We could not write a file of the peer's offer and cancelled it.
    WriteFailed {
        /// The offer.
        id: u64,
        /// The error.
        error: String,
    },
    /// Our verdict on a file we received.
    Received {
        /// The offer.
        id: u64,
        /// The file.
        entry: u16,
        /// What became of it.
        verdict: Verdict,
    },
    /// The peer's offer is over.
    IncomingFinished {
        /// The offer.
        id: u64,
    },
    /// The peer accepted our offer.
    Accepted {
        /// The offer.
        id: u64,
    },
    /// The peer rejected our offer.
    Rejected {
        /// The offer.
        id: u64,
        /// Why.
        reason: RejectReason,
    },
    /// The peer's verdict on a file we sent.
    Outcome {
        /// The offer.
        id: u64,
        /// The file.
        entry: u16,
        /// What became of it.
        verdict: Verdict,
    },
    /// The peer cancelled our offer.
    ReceiverCancelled {
        /// The offer.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// Our offer is over.
    OutgoingFinished {
        /// The offer.
        id: u64,
    },
}

/// What became of one of our offers, from [`Sender::wait_offer`].
#[derive(Debug, Clone, Default)]
pub struct OfferReport {
    /// The peer accepted it.
    pub accepted: bool,
    /// The peer rejected it.
    pub rejected: Option<RejectReason>,
    /// The verdict of each file, if it came.
    pub verdicts: Vec<Option<Verdict>>,
    /// Cancelled: by the peer (true) or by us, and why.
    pub cancelled: Option<(bool, CancelReason)>,
    /// A file could not be read.
    pub unreadable: Option<String>,
    /// Nothing more will happen to it.
    pub finished: bool,
}

impl OfferReport {
    /// Whether every file was saved.
    pub fn all_saved(&self) -> bool {
        self.finished
            && self.rejected.is_none()
            && self.verdicts.iter().all(|v| *v == Some(Verdict::Saved))
    }
}

/// Called with the bytes of an offer sent so far (including resumed ones).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

struct Source {
    files: Vec<PathBuf>,
    progress: Progress,
    /// Bytes of the offer's earlier files.
    done_before: u64,
}

/// Our offers: the state machine, where their files are, what became of them.
#[derive(Default)]
pub(super) struct OutgoingState {
    machine: Outgoing,
    sources: BTreeMap<u64, Source>,
    reports: BTreeMap<u64, OfferReport>,
    pump: bool,
}

/// The peer's offers, and stops the reader must pass to the handler.
#[derive(Default)]
pub(super) struct IncomingState {
    machine: Incoming,
    /// Files whose partial the handler must close: (offer, file, keep it).
    stops: Vec<(u64, u16, bool)>,
    /// Actions for the handler decided off the reader thread.
    notices: Vec<OwnedNotice>,
}

#[derive(Debug)]
enum OwnedNotice {
    Declined(u64, RejectReason),
    Finished(u64),
}

/// Both directions, each behind its own lock.
#[derive(Default)]
pub(super) struct Files {
    outgoing: Mutex<OutgoingState>,
    incoming: Mutex<IncomingState>,
    /// Open offers in each direction, kept up to date under their locks.
    open_out: AtomicUsize,
    open_in: AtomicUsize,
    /// Counts changes that a waiter may want (an answer, a verdict, the
    /// end); incremented with the writer's lock held, then `changed` is
    /// signalled, so a waiter that read it before looking cannot miss one.
    changes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Files {
    /// No offer is open in either direction (part of the finish rule, 8.4).
    pub(super) fn idle(&self) -> bool {
        self.open_out.load(Ordering::SeqCst) == 0 && self.open_in.load(Ordering::SeqCst) == 0
    }

    fn count_out(&self, out: &OutgoingState) {
        self.open_out.store(out.machine.open(), Ordering::SeqCst);
    }

    fn count_in(&self, inc: &IncomingState) {
        self.open_in.store(inc.machine.open(), Ordering::SeqCst);
    }
}

/// Tells waiters that something changed; `w` is the writer's lock.
fn changed(shared: &Shared, _w: &MutexGuard<'_, super::Writer>) {
    shared.files.changes.fetch_add(1, Ordering::SeqCst);
    shared.changed.notify_all();
}

/// Waits (at most a second) for a change after `seen`, or the end.
fn wait_change(shared: &Shared, seen: u64) {
    let w = shared.writer();
    if shared.files.changes.load(Ordering::SeqCst) == seen && !w.ended.get() {
        let _ = shared
            .changed
            .wait_timeout(w, std::time::Duration::from_secs(1))
            .unwrap_or_else(|p| p.into_inner());
    }
}

impl Sender {
    /// Offers `manifest`, whose file `i` is read from `files[i]`. Its files
    /// go out once the peer accepts; `progress` sees the bytes sent.
    pub fn offer(
        &self,
        manifest: Manifest,
        files: Vec<PathBuf>,
        progress: Progress,
    ) -> Result<u64, SendError> {
        assert_eq!(manifest.len(), files.len(), "one local file per entry");
        let count = manifest.len();
        let mut out = lock(&self.shared.files.outgoing);
        let (id, record) = out.machine.offer(manifest).map_err(SendError::Protocol)?;
        let mut w = self.shared.writer();
        w.seal(|send, buf| send.file(&record, buf))?;
        self.shared.files.count_out(&out);
        out.sources.insert(
            id,
            Source {
                files,
                progress,
                done_before: 0,
            },
        );
        out.reports.insert(
            id,
            OfferReport {
                verdicts: vec![None; count],
                ..OfferReport::default()
            },
        );
        if !out.pump {
            out.pump = true;
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name("chat-files".into())
                .spawn(move || pump(&shared));
            if let Err(e) = spawned {
                out.pump = false;
                return Err(SendError::Io(e));
            }
        }
        drop(out);
        self.shared.flush(w)?;
        Ok(id)
    }

    /// Whether another offer may be made now (fewer than 8 are open).
    pub fn can_offer(&self) -> bool {
        lock(&self.shared.files.outgoing).machine.can_offer()
    }

    /// Waits until our offer `id` is finished, or the session ends; says
    /// what became of it.
    pub fn wait_offer(&self, id: u64) -> OfferReport {
        loop {
            let seen = self.shared.files.changes.load(Ordering::SeqCst);
            {
                let out = lock(&self.shared.files.outgoing);
                let report = out.reports.get(&id).cloned().unwrap_or_default();
                if report.finished || self.shared.ended.get() {
                    return report;
                }
            }
            wait_change(&self.shared, seen);
        }
    }

    /// Cancels our offer `id` (the user's choice).
    pub fn cancel_offer(&self, id: u64) -> Result<(), SendError> {
        let mut out = lock(&self.shared.files.outgoing);
        let actions = out
            .machine
            .cancel(id, CancelReason::User)
            .map_err(SendError::Protocol)?;
        if let Some(report) = out.reports.get_mut(&id) {
            report.cancelled = Some((false, CancelReason::User));
        }
        let mut w = self.shared.writer();
        for action in actions {
            if let SenderAction::Send(record) = action {
                w.seal(|send, buf| send.file(&record, buf))?;
            }
        }
        drop(out);
        self.shared.flush(w)
    }

    /// Accepts the peer's offer `id`, proposing these resumes.
    pub fn accept(&self, id: u64, resume: Vec<(u16, FileHasher)>) -> Result<(), SendError> {
        let mut inc = lock(&self.shared.files.incoming);
        let actions = inc
            .machine
            .accept(id, resume)
            .map_err(SendError::Protocol)?;
        self.send_incoming(inc, actions)
    }

    /// Rejects the peer's offer `id`.
    pub fn reject(&self, id: u64, reason: RejectReason) -> Result<(), SendError> {
        let mut inc = lock(&self.shared.files.incoming);
        let actions = inc
            .machine
            .reject(id, reason)
            .map_err(SendError::Protocol)?;
        inc.notices.push(OwnedNotice::Declined(id, reason));
        inc.notices.push(OwnedNotice::Finished(id));
        self.send_incoming(inc, actions)
    }

    /// Cancels the peer's offer `id`, which we accepted (the user's choice):
    /// what arrived of the file in flight is deleted.
    pub fn cancel_incoming(&self, id: u64) -> Result<(), SendError> {
        let mut inc = lock(&self.shared.files.incoming);
        let actions = inc
            .machine
            .cancel(id, CancelReason::User)
            .map_err(SendError::Protocol)?;
        self.send_incoming(inc, actions)
    }

    /// The ids of our open offers and of the peer's open offers that we
    /// accepted, for a cancel of everything (Ctrl-C).
    pub fn open_transfers(&self) -> (Vec<u64>, Vec<u64>) {
        let out = lock(&self.shared.files.outgoing);
        let ours = out
            .reports
            .iter()
            .filter(|(_, r)| !r.finished && r.cancelled.is_none())
            .map(|(id, _)| *id)
            .collect();
        drop(out);
        let theirs = lock(&self.shared.files.incoming).machine.accepted_ids();
        (ours, theirs)
    }

    fn send_incoming(
        &self,
        mut inc: MutexGuard<'_, IncomingState>,
        actions: Vec<ReceiverAction<'static>>,
    ) -> Result<(), SendError> {
        let mut w = self.shared.writer();
        let mut result = Ok(());
        for action in actions {
            match action {
                ReceiverAction::Send(record) => {
                    if let Err(e) = w.seal(|send, buf| send.file(&record, buf)) {
                        result = Err(e);
                    }
                }
                ReceiverAction::Stop {
                    id,
                    entry,
                    keep_partial,
                } => inc.stops.push((id, entry, keep_partial)),
                _ => {}
            }
        }
        self.shared.files.count_in(&inc);
        changed(&self.shared, &w);
        drop(inc);
        if !w.ended.get() && w.finished() && self.shared.files.idle() {
            w.close(crate::protocol::CloseReason::Goodbye);
        }
        result?;
        self.shared.flush(w)
    }
}

/// The pump thread: sends the files of accepted offers, one at a time,
/// until none of our offers is open.
fn pump(shared: &Arc<Shared>) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let next = loop {
            let seen = shared.files.changes.load(Ordering::SeqCst);
            {
                let mut out = lock(&shared.files.outgoing);
                if shared.ended.get() || out.machine.open() == 0 {
                    out.pump = false;
                    return;
                }
                if let Some(next) = out.machine.next() {
                    break next;
                }
            }
            wait_change(shared, seen);
        };
        let (path, progress, done_before) = {
            let out = lock(&shared.files.outgoing);
            let source = &out.sources[&next.id];
            (
                source.files[usize::from(next.entry)].clone(),
                Arc::clone(&source.progress),
                source.done_before,
            )
        };
        let result = send_file(shared, &next, &path, &progress, done_before, &mut buffer);
        let mut out = lock(&shared.files.outgoing);
        if let Some(source) = out.sources.get_mut(&next.id) {
            source.done_before += next.size;
        }
        match result {
            Ok(()) => {}
            Err(FileError::Ended) => {
                out.pump = false;
                return;
            }
            Err(FileError::Read(e)) => {
                let message = format!("{}: {e}", path.display());
                if let Some(report) = out.reports.get_mut(&next.id) {
                    report.unreadable = Some(message);
                    report.cancelled = Some((false, CancelReason::ReadFailed));
                }
                if let Ok(actions) = out.machine.cancel(next.id, CancelReason::ReadFailed) {
                    let mut w = shared.writer();
                    for action in actions {
                        if let SenderAction::Send(record) = action {
                            let _ = w.seal(|send, buf| send.file(&record, buf));
                        }
                    }
                    changed(shared, &w);
                    drop(out);
                    if shared.flush(w).is_err() {
                        lock(&shared.files.outgoing).pump = false;
                        return;
                    }
                }
            }
        }
    }
}

enum FileError {
    /// The session is over.
    Ended,
    /// The file could not be read (or changed size).
    Read(io::Error),
}

impl From<SendError> for FileError {
    fn from(_: SendError) -> Self {
        FileError::Ended
    }
}

/// Sends one file: FILE_START, its data from where the peer resumes, FILE_END.
fn send_file(
    shared: &Shared,
    next: &crate::transfer::NextFile,
    path: &PathBuf,
    progress: &Progress,
    done_before: u64,
    buffer: &mut Vec<u8>,
) -> Result<(), FileError> {
    let mut file = File::open(path).map_err(FileError::Read)?;
    let size = file.metadata().map_err(FileError::Read)?.len();
    if size != next.size {
        return Err(FileError::Read(io::Error::other(format!(
            "its size changed from {} to {size} bytes",
            next.size
        ))));
    }
    // The hash of the prefix the peer holds, if it proposed a resume.
    let prefix = match next.resume {
        Some(offset) => {
            let mut hasher = FileHasher::new();
            let mut left = offset;
            buffer.resize(FILE_CHUNK, 0);
            while left > 0 {
                let n = left.min(FILE_CHUNK as u64) as usize;
                file.read_exact(&mut buffer[..n]).map_err(FileError::Read)?;
                hasher.update(&buffer[..n]);
                left -= n as u64;
            }
            Some(hasher)
        }
        None => None,
    };
    let offset = {
        let mut out = lock(&shared.files.outgoing);
        if out.machine.next().as_ref() != Some(next) {
            // Cancelled meanwhile.
            return Ok(());
        }
        let (offset, start) = out
            .machine
            .start(next.id, next.entry, prefix)
            .map_err(|e| FileError::Read(io::Error::other(e.to_string())))?;
        let mut w = shared.writer();
        w.seal(|send, buf| send.file(&start, buf))?;
        drop(out);
        shared.flush(w)?;
        offset
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(FileError::Read)?;
    progress(done_before + offset);
    let mut sent = offset;
    while sent < next.size {
        let n = (next.size - sent).min(FILE_CHUNK as u64) as usize;
        let mut frame = shared.writer().outbox.buffer(HEADER_LEN + n + TAG_LEN);
        file.read_exact(&mut frame[HEADER_LEN..HEADER_LEN + n])
            .map_err(FileError::Read)?;
        let mut out = lock(&shared.files.outgoing);
        if out.machine.in_flight() != Some((next.id, next.entry, next.size - sent)) {
            // Cancelled meanwhile: the FILE_CANCEL went out instead.
            return Ok(());
        }
        out.machine
            .data(&frame[HEADER_LEN..HEADER_LEN + n])
            .map_err(|e| FileError::Read(io::Error::other(e.to_string())))?;
        let mut w = shared.writer();
        drop(out);
        let mut before = Vec::new();
        if let Err(e) = w.send.file_data_in_place(&mut frame, &mut before) {
            return Err(w.fail(e).into());
        }
        if w.ended.get() {
            return Err(FileError::Ended);
        }
        if !before.is_empty() {
            w.outbox.push(before);
        }
        w.outbox.push(frame);
        w.report_key_updates();
        w.last_write = Instant::now();
        shared.flush(w)?;
        sent += n as u64;
        progress(done_before + sent);
    }
    let mut out = lock(&shared.files.outgoing);
    if out.machine.in_flight() != Some((next.id, next.entry, 0)) {
        return Ok(());
    }
    let end = out
        .machine
        .end()
        .map_err(|e| FileError::Read(io::Error::other(e.to_string())))?;
    let mut w = shared.writer();
    w.seal(|send, buf| send.file(&end, buf))?;
    drop(out);
    shared.flush(w)?;
    Ok(())
}

/// Passes a file record from the peer to the side it concerns (reader thread).
pub(super) fn received(
    shared: &Shared,
    handler: &mut impl Handler,
    record: FileRecord<'_>,
) -> Result<(), Halt> {
    pass_stops(shared, handler);
    let for_us = matches!(
        record,
        FileRecord::Accept(_)
            | FileRecord::Reject(_)
            | FileRecord::Verdict(_)
            | FileRecord::Cancel(Cancel {
                side: CancelSide::Receiver,
                ..
            })
    );
    if for_us {
        let mut out = lock(&shared.files.outgoing);
        let actions = out.machine.handle(&record)?;
        let mut notices = Vec::new();
        let mut w = shared.writer();
        for action in actions {
            match action {
                SenderAction::Send(record) => {
                    let _ = w.seal(|send, buf| send.file(&record, buf));
                }
                SenderAction::Accepted { id, .. } => {
                    if let Some(r) = out.reports.get_mut(&id) {
                        r.accepted = true;
                    }
                    notices.push(FileNoticeOwned::Accepted(id));
                }
                SenderAction::Rejected { id, reason } => {
                    if let Some(r) = out.reports.get_mut(&id) {
                        r.rejected = Some(reason);
                    }
                    notices.push(FileNoticeOwned::Rejected(id, reason));
                }
                SenderAction::Outcome { id, entry, verdict } => {
                    if let Some(slot) = out
                        .reports
                        .get_mut(&id)
                        .and_then(|r| r.verdicts.get_mut(usize::from(entry)))
                    {
                        *slot = Some(verdict);
                    }
                    notices.push(FileNoticeOwned::Outcome(id, entry, verdict));
                }
                SenderAction::CancelledByPeer { id, reason } => {
                    if let Some(r) = out.reports.get_mut(&id) {
                        r.cancelled = Some((true, reason));
                    }
                    notices.push(FileNoticeOwned::ReceiverCancelled(id, reason));
                }
                SenderAction::Finished { id } => {
                    if let Some(r) = out.reports.get_mut(&id) {
                        r.finished = true;
                    }
                    out.sources.remove(&id);
                    notices.push(FileNoticeOwned::OutgoingFinished(id));
                }
            }
        }
        shared.files.count_out(&out);
        changed(shared, &w);
        drop(out);
        shared.send_from_reader(w);
        for notice in notices {
            handler.file_notice(notice.as_notice());
        }
        return Ok(());
    }
    let now = Instant::now();
    let actions = lock(&shared.files.incoming).machine.handle(record, now)?;
    run_incoming(shared, handler, actions);
    Ok(())
}

/// Copies of the notices of our offers, to pass on after the locks are released.
enum FileNoticeOwned {
    Accepted(u64),
    Rejected(u64, RejectReason),
    Outcome(u64, u16, Verdict),
    ReceiverCancelled(u64, CancelReason),
    OutgoingFinished(u64),
}

impl FileNoticeOwned {
    fn as_notice(&self) -> FileNotice<'static> {
        match *self {
            FileNoticeOwned::Accepted(id) => FileNotice::Accepted { id },
            FileNoticeOwned::Rejected(id, reason) => FileNotice::Rejected { id, reason },
            FileNoticeOwned::Outcome(id, entry, verdict) => {
                FileNotice::Outcome { id, entry, verdict }
            }
            FileNoticeOwned::ReceiverCancelled(id, reason) => {
                FileNotice::ReceiverCancelled { id, reason }
            }
            FileNoticeOwned::OutgoingFinished(id) => FileNotice::OutgoingFinished { id },
        }
    }
}

/// Seals records for the peer's offers (reader thread).
fn seal_incoming(shared: &Shared, records: Vec<FileRecord<'static>>) {
    {
        let inc = lock(&shared.files.incoming);
        shared.files.count_in(&inc);
    }
    if records.is_empty() {
        return;
    }
    let mut w = shared.writer();
    for record in records {
        let _ = w.seal(|send, buf| send.file(&record, buf));
    }
    changed(shared, &w);
    shared.send_from_reader(w);
}

/// Carries out what the receiving side asks for, in order (reader thread).
fn run_incoming(shared: &Shared, handler: &mut impl Handler, actions: Vec<ReceiverAction<'_>>) {
    let mut queue: std::collections::VecDeque<ReceiverAction<'_>> = actions.into();
    let mut sends = Vec::new();
    while let Some(action) = queue.pop_front() {
        match action {
            ReceiverAction::Send(record) => sends.push(record),
            ReceiverAction::Offered { id, manifest } => {
                let consent = handler.file_offered(id, &manifest);
                let more = {
                    let mut inc = lock(&shared.files.incoming);
                    match consent {
                        Consent::Ask => Ok(Vec::new()),
                        Consent::Accept(resume) => inc.machine.accept(id, resume),
                        Consent::Reject(reason) => {
                            handler.file_notice(FileNotice::Declined { id, reason });
                            inc.machine.reject(id, reason)
                        }
                    }
                };
                match more {
                    Ok(more) => queue.extend(more),
                    Err(_) => {
                        // A resume the core refuses: accept without it.
                        if let Ok(more) =
                            lock(&shared.files.incoming).machine.accept(id, Vec::new())
                        {
                            queue.extend(more);
                        }
                    }
                }
            }
            ReceiverAction::Refused {
                id,
                entries,
                reason,
                problem,
            } => handler.file_notice(FileNotice::Refused {
                id,
                entries: &entries,
                reason,
                problem: &problem,
            }),
            ReceiverAction::Withdrawn { id } => handler.file_notice(FileNotice::Withdrawn { id }),
            ReceiverAction::Expired { id } => handler.file_notice(FileNotice::Expired { id }),
            ReceiverAction::CancelledByPeer { id, reason } => {
                handler.file_notice(FileNotice::SenderCancelled { id, reason })
            }
            ReceiverAction::Finished { id } => {
                handler.file_notice(FileNotice::IncomingFinished { id })
            }
            ReceiverAction::Open {
                id,
                entry,
                path,
                size,
                offset,
            } => {
                if let Err(e) = handler.file_open(id, entry, &path, size, offset) {
                    queue.extend(could_not_write(shared, handler, id, e));
                }
            }
            ReceiverAction::Write { id, entry, data } => {
                if let Err(e) = handler.file_write(id, entry, data) {
                    queue.extend(could_not_write(shared, handler, id, e));
                }
            }
            ReceiverAction::Save { id, entry, .. } => {
                let outcome = handler.file_save(id, entry);
                let verdict = match outcome {
                    SaveOutcome::Saved => Verdict::Saved,
                    SaveOutcome::WriteFailed => Verdict::WriteFailed,
                    SaveOutcome::NameTaken => Verdict::NameTaken,
                };
                handler.file_notice(FileNotice::Received { id, entry, verdict });
                let more = lock(&shared.files.incoming).machine.saved(outcome);
                if let Ok(more) = more {
                    // The verdict goes out before any later record is read.
                    queue.extend(more);
                }
            }
            ReceiverAction::Delete { id, entry } => {
                handler.file_discard(id, entry, false);
                handler.file_notice(FileNotice::Received {
                    id,
                    entry,
                    verdict: Verdict::HashMismatch,
                });
            }
            ReceiverAction::Stop {
                id,
                entry,
                keep_partial,
            } => handler.file_discard(id, entry, keep_partial),
        }
    }
    seal_incoming(shared, sends);
}

/// Our side could not write a file: cancel its offer (keeping what was
/// written, for a resume).
fn could_not_write<'a>(
    _shared: &Shared,
    handler: &mut impl Handler,
    id: u64,
    error: io::Error,
) -> Vec<ReceiverAction<'a>> {
    handler.file_notice(FileNotice::WriteFailed {
        id,
        error: error.to_string(),
    });
    lock(&_shared.files.incoming)
        .machine
        .cancel(id, CancelReason::WriteFailed)
        .unwrap_or_default()
}

/// Passes to the handler the stops and notices decided off the reader thread.
fn pass_stops(shared: &Shared, handler: &mut impl Handler) {
    let (stops, notices) = {
        let mut inc = lock(&shared.files.incoming);
        (
            std::mem::take(&mut inc.stops),
            std::mem::take(&mut inc.notices),
        )
    };
    for (id, entry, keep) in stops {
        handler.file_discard(id, entry, keep);
    }
    for notice in notices {
        match notice {
            OwnedNotice::Declined(id, reason) => {
                handler.file_notice(FileNotice::Declined { id, reason })
            }
            OwnedNotice::Finished(id) => handler.file_notice(FileNotice::IncomingFinished { id }),
        }
    }
}

/// After each batch of records (reader thread): offers unanswered for 10
/// minutes are rejected, and what was decided off this thread is passed on.
pub(super) fn tick(shared: &Shared, handler: &mut impl Handler) {
    pass_stops(shared, handler);
    let expired = lock(&shared.files.incoming).machine.expire(Instant::now());
    if !expired.is_empty() {
        run_incoming(shared, handler, expired);
    }
}

/// The session is over: a file arriving stops (its partial is kept), and
/// our offers that did not finish are reported so.
pub(super) fn session_ended(shared: &Shared, handler: &mut impl Handler) {
    pass_stops(shared, handler);
    let actions = lock(&shared.files.incoming).machine.session_ended();
    for action in actions {
        match action {
            ReceiverAction::Stop {
                id,
                entry,
                keep_partial,
            } => handler.file_discard(id, entry, keep_partial),
            ReceiverAction::Finished { id } => {
                handler.file_notice(FileNotice::IncomingFinished { id })
            }
            _ => {}
        }
    }
    {
        let inc = lock(&shared.files.incoming);
        shared.files.count_in(&inc);
    }
    let w = shared.writer();
    changed(shared, &w);
}

/// A protocol error from the core is the peer's fault here.
impl From<ProtocolError> for FileError {
    fn from(_: ProtocolError) -> Self {
        FileError::Ended
    }
}

#[allow(dead_code)]
const _: () = assert!(FILE_CHUNK <= MAX_RECORD_PLAINTEXT);
