//! An established session over a socket: a reader thread that authenticates
//! records and hands events to a [`Handler`], a [`Sender`] that any thread can
//! use to send messages, a writer thread for what the others leave queued
//! (see `Outbox`), and a keep-alive timer (`docs/PROTOCOL.md`, section 8).
//!
//! The reader acknowledges each message once its handler has taken the last
//! byte (see [`Handler`] for what that must mean), coalescing receipts when
//! several messages arrive together. When both sides have said DONE and
//! everything is acknowledged, it closes the session. After our CLOSE, the
//! peer has [`LINGER`] to hang up; then we do, whatever it still sends.
//!
//! Key updates (section 7.2) need nothing from the engine: the session
//! sends KEY_UPDATE by itself before a record when its rekey limit (set on
//! the [`Session`] before it starts here) says so, and the keep-alives make
//! the time limit apply on an idle connection too. The engine reports each
//! update, both ways, where [`Handler::key_updates`] says.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod files;

pub use files::{Consent, FILE_CHUNK, FileNotice, OfferReport, Progress};

use super::NetError;
use crate::protocol::{CloseReason, MAX_RECORD_PLAINTEXT, ProtocolError, TAG_LEN};
use crate::session::{DEFAULT_CHUNK, Event, RecvHalf, SendHalf, Session};
use crate::wire::FrameDecoder;
use crate::wire::frame::HEADER_LEN;

/// A KEEPALIVE goes out after a quarter of the peer timeout (15 s by
/// default) without sending anything, so a live peer is never taken for
/// dead.
fn keepalive_after() -> Duration {
    super::peer_timeout() / 4
}
/// After our CLOSE, how long we wait for the peer to close its side.
pub const LINGER: Duration = Duration::from_secs(2);

/// What the receiving side of a conversation reports to the program.
/// Called on the reader thread; a slow handler slows the peer down.
///
/// # Receipts
///
/// A receipt tells the peer that its message reached our user, so the
/// engine sends one only for a message whose [`message_end`] returned `Ok`.
/// A handler must therefore have written the whole message to its
/// destination, and flushed every buffer of its own (a `BufWriter`, a
/// `LineWriter` such as standard output's), before it returns `Ok` from
/// [`message_end`]; it must not swallow a write error (a full disk, a closed
/// pipe: `EPIPE`, as Rust ignores `SIGPIPE`).
///
/// When [`message_start`], [`message_data`] or [`message_end`] returns an
/// error, the message is not delivered: the engine sends a receipt for the
/// messages delivered before it and a CLOSE (reason 0), hands the handler
/// nothing more (what still arrives is discarded until the peer hangs up,
/// as after any CLOSE of ours), and ends the conversation with
/// [`Ending::Failed`] and [`Summary::undelivered`] set to the message and
/// the handler's error. The peer reports that message as not delivered; the
/// program reports the error as a local one (exit code 1).
///
/// [`message_start`]: Handler::message_start
/// [`message_data`]: Handler::message_data
/// [`message_end`]: Handler::message_end
pub trait Handler: Send + 'static {
    /// A message of `length` bytes begins. An error: see [receipts](Handler#receipts).
    fn message_start(&mut self, _id: u64, _length: u64) -> io::Result<()> {
        Ok(())
    }
    /// More of the current message. An error: see [receipts](Handler#receipts).
    fn message_data(&mut self, id: u64, data: &[u8]) -> io::Result<()>;
    /// The message is complete and authentic. Return `Ok` only once all of
    /// it is written and flushed where it goes: it then counts as delivered
    /// and the peer gets a receipt. An error: see [receipts](Handler#receipts).
    fn message_end(&mut self, id: u64) -> io::Result<()>;
    /// The peer has every message up to these ids.
    fn delivered(&mut self, _ids: RangeInclusive<u64>) {}
    /// The peer will start no more messages.
    fn peer_done(&mut self) {}
    /// The conversation is over; nothing is called after this.
    fn ended(&mut self, _summary: &Summary) {}
    /// Where to report key updates, in both directions; asked once, when
    /// the conversation starts. None: they are not reported.
    fn key_updates(&self) -> Option<KeyUpdates> {
        None
    }

    // Files (docs/PROTOCOL.md, section 9; see `files.rs`). By default a
    // handler takes none: every offer is rejected as "not accepting".

    /// The peer offers these files (their names passed the rules of 9.3).
    /// Nothing may be written before consent.
    fn file_offered(&mut self, _id: u64, _manifest: &crate::transfer::Manifest) -> Consent {
        Consent::Reject(crate::transfer::RejectReason::NotAccepting)
    }
    /// File `entry` of accepted offer `id` begins: open its partial file,
    /// keeping its first `offset` bytes (0: start a new one).
    fn file_open(
        &mut self,
        _id: u64,
        _entry: u16,
        _path: &[String],
        _size: u64,
        _offset: u64,
    ) -> io::Result<()> {
        Err(io::Error::other("this side takes no files"))
    }
    /// Append to the partial file of the file in flight.
    fn file_write(&mut self, _id: u64, _entry: u16, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::other("this side takes no files"))
    }
    /// The file is complete and its SHA-256 matched: flush it, give it its
    /// final name (never replacing anything).
    fn file_save(&mut self, _id: u64, _entry: u16) -> crate::transfer::SaveOutcome {
        crate::transfer::SaveOutcome::WriteFailed
    }
    /// Close the partial file of the file in flight; keep it for a resume,
    /// or delete it.
    fn file_discard(&mut self, _id: u64, _entry: u16, _keep: bool) {}
    /// Something happened to a transfer, in either direction.
    fn file_notice(&mut self, _notice: FileNotice<'_>) {}
}

/// Whose key a KEY_UPDATE moved on (docs/PROTOCOL.md, 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDirection {
    /// Ours: we sent KEY_UPDATE and seal under the next key from now on.
    Sent,
    /// The peer's: it sent KEY_UPDATE, and we open under its next key.
    Received,
}

impl KeyDirection {
    /// `sent` or `received`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDirection::Sent => "sent",
            KeyDirection::Received => "received",
        }
    }
}

/// Reports each key update: its direction and the new key's epoch (never
/// key material). Called on the thread that sealed or opened the
/// KEY_UPDATE, in order for each direction.
pub type KeyUpdates = Arc<dyn Fn(KeyDirection, u64) + Send + Sync>;

/// How a conversation ended.
#[derive(Debug)]
pub enum Ending {
    /// Both sides said DONE and everything was acknowledged.
    Finished,
    /// We closed it (the user quit, or the program finished sending).
    ClosedByUs,
    /// The peer closed it.
    ClosedByPeer(CloseReason),
    /// The connection failed, was tampered with, or the peer broke the protocol.
    Failed(NetError),
}

/// The end of a conversation, with what was lost.
#[derive(Debug)]
pub struct Summary {
    /// How it ended.
    pub ending: Ending,
    /// Messages we sent that the peer never acknowledged.
    pub unacknowledged: Vec<u64>,
    /// The first bytes of those messages, as sent, so that a report can
    /// name them in the user's terms (see [`SentHead`]); one may be missing
    /// if more than [`MAX_HEADS`] were left unacknowledged.
    pub unacknowledged_heads: Vec<SentHead>,
    /// A message from the peer that was cut off before its end.
    pub cut_off: Option<u64>,
    /// A message from the peer that our [`Handler`] could not take (its
    /// output failed); it was not acknowledged, and the conversation ended
    /// because of it.
    pub undelivered: Option<DeliveryFailure>,
}

/// A received message that could not be delivered to our user.
#[derive(Debug)]
pub struct DeliveryFailure {
    /// The message.
    pub id: u64,
    /// The handler's error.
    pub error: io::Error,
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message #{} from the peer could not be delivered: {}",
            self.id, self.error
        )
    }
}

/// The start of a message we sent, kept until the peer acknowledges it:
/// a report of undelivered messages names each by its first words rather
/// than by an id the user never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentHead {
    /// The message id.
    pub id: u64,
    /// The whole message's length in bytes.
    pub length: u64,
    /// Its first bytes, at most [`HEAD_LEN`].
    pub head: Vec<u8>,
}

/// Bytes kept of each unacknowledged message.
pub const HEAD_LEN: usize = 160;

/// Most unacknowledged messages whose start is kept (the oldest go first).
pub const MAX_HEADS: usize = 256;

impl Summary {
    /// The start of an unacknowledged message, if it was kept.
    pub fn head(&self, id: u64) -> Option<&SentHead> {
        self.unacknowledged_heads.iter().find(|h| h.id == id)
    }

    /// Whether everything we sent was acknowledged and nothing failed.
    pub fn all_delivered(&self) -> bool {
        self.unacknowledged.is_empty()
    }
}

/// Most bytes of short messages waiting for the writer thread before their
/// sender waits too.
const OUTBOX_LIMIT: usize = 256 * 1024;

/// Emptied record buffers kept for reuse by long messages: one is enough,
/// as the sender writes each record before it seals the next.
const SPARE_BUFFERS: usize = 1;

/// Sealed records waiting for the socket, in the order they were sealed.
///
/// One thread at a time writes (`writing`). A sender writes its own records
/// at once, so a message costs no thread switch and a long one reuses one
/// buffer that stays in the cache (handing records to another thread to
/// write was measured slower: the buffers travel between cores), except in
/// a burst of short messages (see [`Sender::send_from`]). Records
/// from the reader and keep-alive threads go out at once if the socket
/// takes them without waiting (see [`Shared::send_from_reader`]), or else
/// wait here for the writer thread. The reader thread never blocks on the
/// socket, so two sides sending to each other cannot wait on each other
/// forever.
#[derive(Default)]
struct Outbox {
    frames: Vec<Vec<u8>>,
    bytes: usize,
    writing: bool,
    /// Threads waiting for the write in progress to end, or for room.
    waiting: usize,
    /// The writer thread is waiting for records.
    writer_idle: bool,
    /// The first queued record is the rest of one partly sent already.
    front_started: bool,
    spare: Vec<Vec<u8>>,
}

impl Outbox {
    fn push(&mut self, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        self.front_started = false;
        std::mem::take(&mut self.frames)
    }

    /// Drops what was not sent (the session is over), except the rest of
    /// a record already partly on the wire: a goodbye queued after it must
    /// still arrive whole.
    fn discard(&mut self) {
        if self.front_started {
            self.frames.truncate(1);
            self.bytes = self.frames[0].len();
        } else {
            self.take();
        }
    }

    /// A buffer for a record of `len` bytes, reused when possible.
    fn buffer(&mut self, len: usize) -> Vec<u8> {
        // A reused buffer keeps its old (sealed) bytes: the caller overwrites them.
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.resize(len, 0);
        buffer
    }

    /// Keeps the large buffers of written records for the next ones.
    fn recycle(&mut self, frames: Vec<Vec<u8>>) {
        for frame in frames {
            if frame.capacity() >= 16 * 1024 && self.spare.len() < SPARE_BUFFERS {
                self.spare.push(frame);
            }
        }
    }
}

/// A flag that is set once and read without taking a lock.
#[derive(Clone, Default)]
struct Flag(Arc<AtomicBool>);

impl Flag {
    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The sending side and the session's shared state, behind one lock.
struct Writer {
    send: SendHalf,
    outbox: Outbox,
    last_write: Instant,
    /// Set when no more records may be sealed (also readable, as
    /// [`Shared::ended`], without the lock).
    ended: Flag,
    /// The first write that failed; the conversation ends with it.
    write_error: Option<io::Error>,
    /// The writer thread has sent everything and half-closed the socket.
    writer_gone: bool,
    /// Receiver-side facts the finish rule needs.
    peer_done: bool,
    receiving: bool,
    receipts_owed: bool,
    /// Where our key updates are reported, and the last epoch reported.
    key_updates: Option<KeyUpdates>,
    reported_epoch: u64,
    /// The start of each message not yet acknowledged, oldest first
    /// (bounded: acknowledged ones are dropped, and at most [`MAX_HEADS`]).
    heads: VecDeque<SentHead>,
}

impl Writer {
    /// Reports the key updates the session made while sealing (it sends
    /// KEY_UPDATE by itself when its rekey limit says so).
    fn report_key_updates(&mut self) {
        while self.reported_epoch < self.send.epoch() {
            self.reported_epoch += 1;
            if let Some(report) = &self.key_updates {
                report(KeyDirection::Sent, self.reported_epoch);
            }
        }
    }

    /// Seals one record with `f` and queues it, unless the session is over.
    fn seal(
        &mut self,
        f: impl FnOnce(&mut SendHalf, &mut Vec<u8>) -> Result<(), ProtocolError>,
    ) -> Result<(), SendError> {
        if self.ended.get() {
            return Err(SendError::Ended);
        }
        let mut frame = Vec::new();
        if let Err(e) = f(&mut self.send, &mut frame) {
            return Err(self.fail(e));
        }
        self.report_key_updates();
        self.outbox.push(frame);
        self.last_write = Instant::now();
        Ok(())
    }

    /// A session limit ends the session with a goodbye; any error is
    /// passed on for the caller.
    fn fail(&mut self, error: ProtocolError) -> SendError {
        if let ProtocolError::Exhausted(_) = error {
            self.close(CloseReason::Goodbye);
        }
        SendError::Protocol(error)
    }

    /// Queues CLOSE; later records are refused. The writer thread sends
    /// what is queued and then half-closes the socket.
    fn close(&mut self, reason: CloseReason) {
        if !self.ended.get() {
            let mut frame = Vec::new();
            if self.send.close(reason, &mut frame).is_ok() {
                self.outbox.push(frame);
            }
            self.ended.set();
        }
    }

    /// The session is complete when both sides said DONE, nothing is half
    /// sent or received, every message is acknowledged both ways.
    fn finished(&self) -> bool {
        self.send.is_done()
            && self.peer_done
            && !self.send.in_message()
            && self.send.last_acknowledged() == self.send.last_started()
            && !self.receiving
            && !self.receipts_owed
    }

    fn unacknowledged(&self) -> Vec<u64> {
        (self.send.last_acknowledged() + 1..=self.send.last_started()).collect()
    }

    /// Keeps the start of a message just started, dropping those the peer
    /// acknowledged since.
    fn keep_head(&mut self, head: SentHead) {
        self.drop_acknowledged_heads();
        if self.heads.len() == MAX_HEADS {
            self.heads.pop_front();
        }
        self.heads.push_back(head);
    }

    fn drop_acknowledged_heads(&mut self) {
        let acknowledged = self.send.last_acknowledged();
        while self.heads.front().is_some_and(|h| h.id <= acknowledged) {
            self.heads.pop_front();
        }
    }
}

struct Shared {
    writer: Mutex<Writer>,
    /// For writing outside the lock, and for shutting the socket down.
    socket: TcpStream,
    /// [`Writer::ended`], for reading without the lock.
    ended: Flag,
    /// Threads in [`Sender::wait_acknowledged`]; receipts wake them only
    /// when there are any.
    ack_waiters: AtomicUsize,
    /// Signalled (with the writer lock) when records are queued or the
    /// session ends: wakes the writer thread.
    queued: Condvar,
    /// File transfers, both directions (`files.rs`).
    files: files::Files,
    /// Signalled (with the writer lock) when receipts arrive, the outbox has
    /// room, the writer thread is gone, or the session ends.
    changed: Condvar,
    /// Where the peer's key updates are reported.
    key_updates: Option<KeyUpdates>,
    /// Set by the reader when it has finished; wakes the keep-alive timer.
    over: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_over(&self) -> bool {
        *self.over.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, condvar: &Condvar, w: MutexGuard<'a, Writer>) -> MutexGuard<'a, Writer> {
        condvar.wait(w).unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what is queued from this (sending) thread, after any write in
    /// progress.
    fn flush(&self, mut w: MutexGuard<'_, Writer>) -> Result<(), SendError> {
        while w.outbox.writing {
            w.outbox.waiting += 1;
            w = self.wait(&self.changed, w);
            w.outbox.waiting -= 1;
        }
        if w.outbox.frames.is_empty() {
            return if w.write_error.is_some() {
                Err(SendError::Ended)
            } else {
                Ok(())
            };
        }
        let (w, result) = self.write_queued(w);
        drop(w);
        result.map_err(SendError::Io)
    }

    /// Leaves what is queued to the writer thread; waits only while more
    /// than [`OUTBOX_LIMIT`] bytes are waiting.
    fn hand_off(&self, mut w: MutexGuard<'_, Writer>) {
        if w.outbox.writer_idle {
            self.queued.notify_one();
        }
        while w.outbox.bytes > OUTBOX_LIMIT && !w.ended.get() {
            w.outbox.waiting += 1;
            w = self.wait(&self.changed, w);
            w.outbox.waiting -= 1;
        }
    }

    /// Writes the records queued now, with the lock released meanwhile.
    /// The caller has checked that nobody else is writing.
    fn write_queued<'a>(
        &'a self,
        mut w: MutexGuard<'a, Writer>,
    ) -> (MutexGuard<'a, Writer>, io::Result<()>) {
        let frames = w.outbox.take();
        w.outbox.writing = true;
        drop(w);
        let result = write_frames(&self.socket, &frames);
        let mut w = self.writer();
        w.outbox.writing = false;
        w.outbox.recycle(frames);
        if let Err(e) = &result {
            self.write_failed(&mut w, io::Error::new(e.kind(), e.to_string()));
        }
        // Wake only those with a reason to wake: a futex call per message
        // would cost the rate of small messages a third.
        if w.outbox.waiting > 0 {
            self.changed.notify_all();
        }
        if !w.outbox.frames.is_empty() || w.ended.get() {
            self.queued.notify_one();
        }
        (w, result)
    }

    /// A write failed: the session is over, and the reader is woken to
    /// report it.
    fn write_failed(&self, w: &mut Writer, error: io::Error) {
        w.ended.set();
        // Nothing more can be written.
        w.outbox.take();
        w.write_error.get_or_insert(error);
        let _ = self.socket.shutdown(Shutdown::Both);
        self.changed.notify_all();
        self.queued.notify_one();
    }

    /// Sends what the reader thread queued (receipts, a goodbye) without
    /// ever blocking it: at once if the socket takes it all, otherwise by
    /// the writer thread.
    fn send_from_reader(&self, mut w: MutexGuard<'_, Writer>) {
        if w.outbox.frames.is_empty() {
            return;
        }
        if w.outbox.writing || w.outbox.frames.len() != 1 {
            self.queued.notify_one();
            return;
        }
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        match socket2::SockRef::from(&self.socket).send_with_flags(&w.outbox.frames[0], flags) {
            Ok(n) if n == w.outbox.bytes => {
                w.outbox.take();
                if w.ended.get() {
                    // That was our CLOSE: the writer thread half-closes.
                    self.queued.notify_one();
                }
            }
            Ok(n) => {
                w.outbox.frames[0].drain(..n);
                w.outbox.bytes -= n;
                w.outbox.front_started = true;
                self.queued.notify_one();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queued.notify_one(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.queued.notify_one(),
            Err(e) => self.write_failed(&mut w, e),
        }
    }
}

/// Writes whole records, as few system calls as the socket allows.
fn write_frames(mut socket: &TcpStream, frames: &[Vec<u8>]) -> io::Result<()> {
    /// At most this many buffers per call (Linux takes up to 1024).
    const BATCH: usize = 512;
    for batch in frames.chunks(BATCH) {
        let mut parts: Vec<io::IoSlice<'_>> = batch.iter().map(|f| io::IoSlice::new(f)).collect();
        let mut slices = &mut parts[..];
        while !slices.is_empty() {
            match socket.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The writer thread: sends whatever is queued while nobody else is
/// writing; once the session has ended and all is sent, half-closes the
/// socket so the peer sees our last record followed by the end. Then the
/// peer has [`LINGER`] to hang up before we do (docs/PROTOCOL.md, 8.5):
/// whichever thread ended the session, a peer that keeps the connection
/// open does not keep the reader waiting.
fn write_loop(shared: &Shared) {
    let mut w = shared.writer();
    loop {
        if !w.outbox.writing && !w.outbox.frames.is_empty() {
            w = shared.write_queued(w).0;
        } else if w.ended.get() && !w.outbox.writing && w.outbox.frames.is_empty() {
            let _ = shared.socket.shutdown(Shutdown::Write);
            w.writer_gone = true;
            shared.changed.notify_all();
            drop(w);
            let over = shared.over.lock().unwrap_or_else(|p| p.into_inner());
            let (over, _) = shared
                .wake
                .wait_timeout_while(over, LINGER, |over| !*over)
                .unwrap_or_else(|p| p.into_inner());
            if !*over {
                let _ = shared.socket.shutdown(Shutdown::Both);
            }
            return;
        } else {
            w.outbox.writer_idle = true;
            w = shared.wait(&shared.queued, w);
            w.outbox.writer_idle = false;
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The conversation has ended.
    #[error("the conversation has ended")]
    Ended,
    /// Writing to the socket failed.
    #[error("sending failed: {0}")]
    Io(io::Error),
    /// The session refuses (a limit was reached).
    #[error(transparent)]
    Protocol(ProtocolError),
    /// Reading the text to send failed.
    #[error("reading the message to send failed: {0}")]
    Source(io::Error),
}

/// A handle for sending; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
    chunk: usize,
}

impl Sender {
    /// Sends a message held in memory. Returns its id.
    pub fn send(&self, text: &[u8]) -> Result<u64, SendError> {
        self.send_from(&mut &text[..], text.len() as u64, &mut |_| {})
    }

    /// Sends `length` bytes read from `source` as one message, in chunks,
    /// each written before the next is read; receipts and keep-alives slip
    /// in between. `progress` is called with the bytes sent so far. Returns
    /// the message id.
    ///
    /// A short message (one chunk) is one write, MESSAGE_START and chunk
    /// together, from this thread: no thread switch on the way out. But if
    /// the peer has not yet acknowledged an earlier message (a burst), it is
    /// left to the writer thread, which sends everything that piled up in
    /// one write; a failure then ends the conversation instead of being
    /// returned here.
    pub fn send_from(
        &self,
        source: &mut dyn Read,
        length: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, SendError> {
        let size = (length.min(self.chunk as u64)) as usize;
        let mut id = None;
        let mut sent = 0u64;
        loop {
            let n = (length - sent).min(size as u64) as usize;
            let mut frame = self.shared.writer().outbox.buffer(HEADER_LEN + n + TAG_LEN);
            source
                .read_exact(&mut frame[HEADER_LEN..HEADER_LEN + n])
                .map_err(SendError::Source)?;
            let mut w = self.shared.writer();
            if w.ended.get() {
                return Err(SendError::Ended);
            }
            // The peer has yet to acknowledge an earlier message: a burst.
            let behind = w.send.last_started() > w.send.last_acknowledged();
            if id.is_none() {
                let mut start = Vec::new();
                match w.send.start_message(length, &mut start) {
                    Ok(started) => id = Some(started),
                    Err(e) => return Err(self.failed(w, e)),
                }
                let head = frame[HEADER_LEN..HEADER_LEN + n.min(HEAD_LEN)].to_vec();
                w.keep_head(SentHead {
                    id: id.expect("just set"),
                    length,
                    head,
                });
                w.outbox.push(start);
            }
            if length > 0 {
                let mut key_update = Vec::new();
                if let Err(e) = w.send.chunk_in_place(&mut frame, &mut key_update) {
                    return Err(self.failed(w, e));
                }
                if !key_update.is_empty() {
                    w.outbox.push(key_update);
                }
                w.outbox.push(frame);
            }
            w.report_key_updates();
            w.last_write = Instant::now();
            if behind && length <= self.chunk as u64 {
                // In a burst of short messages the writer thread sends
                // what piles up in one write, while this thread seals more.
                self.shared.hand_off(w);
            } else {
                self.shared.flush(w)?;
            }
            sent += n as u64;
            progress(sent);
            if sent == length {
                return Ok(id.expect("set with the first chunk"));
            }
        }
    }

    /// Passes on a refusal to seal; a session limit queues a goodbye for
    /// the writer thread.
    fn failed(&self, mut w: MutexGuard<'_, Writer>, error: ProtocolError) -> SendError {
        let error = w.fail(error);
        self.shared.queued.notify_one();
        error
    }

    /// Says that no more messages will come from this side. The session
    /// ends by itself once the peer says the same and all is acknowledged.
    pub fn done(&self) -> Result<(), SendError> {
        let mut w = self.shared.writer();
        w.seal(|send, buf| send.done(buf))?;
        if w.finished() && self.shared.files.idle() {
            w.close(CloseReason::Goodbye);
        }
        self.shared.flush(w)
    }

    /// Ends the session with `reason`.
    pub fn close(&self, reason: CloseReason) {
        self.shared.writer().close(reason);
        self.shared.queued.notify_one();
        // A dead peer would otherwise keep the reader waiting.
        let shared = Arc::clone(&self.shared);
        thread::spawn(move || {
            let over = shared.over.lock().unwrap_or_else(|p| p.into_inner());
            let (over, _) = shared
                .wake
                .wait_timeout_while(over, LINGER, |over| !*over)
                .unwrap_or_else(|p| p.into_inner());
            if !*over {
                let _ = shared.socket.shutdown(Shutdown::Both);
            }
        });
    }

    /// Waits until message `id` is acknowledged (true) or the session ends
    /// without it (false).
    pub fn wait_acknowledged(&self, id: u64) -> bool {
        let mut w = self.shared.writer();
        // Counted before the check, so the reader either sees a waiter or
        // this thread sees the receipt (both use SeqCst).
        self.shared.ack_waiters.fetch_add(1, Ordering::SeqCst);
        while w.send.last_acknowledged() < id && !w.ended.get() {
            w = self.shared.wait(&self.shared.changed, w);
        }
        self.shared.ack_waiters.fetch_sub(1, Ordering::SeqCst);
        w.send.last_acknowledged() >= id
    }

    /// Ids of messages sent but not acknowledged yet.
    pub fn unacknowledged(&self) -> Vec<u64> {
        self.shared.writer().unacknowledged()
    }

    /// Whether the conversation is over (no more sending possible).
    pub fn is_ended(&self) -> bool {
        self.shared.ended.get()
    }
}

/// A running conversation.
pub struct Conversation {
    sender: Sender,
    reader: JoinHandle<Summary>,
    shared: Arc<Shared>,
}

impl Conversation {
    /// Starts the reader and keep-alive threads. `decoder` may already hold
    /// bytes that arrived with the end of the handshake.
    pub fn start(
        stream: TcpStream,
        decoder: FrameDecoder,
        session: Session,
        max_message: u64,
        handler: impl Handler,
    ) -> io::Result<Self> {
        let (send, mut recv) = session.split();
        recv.set_max_message(max_message);
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(super::peer_timeout()))?;
        stream.set_read_timeout(Some(super::peer_timeout()))?;
        let read_stream = stream.try_clone()?;
        let ended = Flag::default();
        let key_updates = handler.key_updates();
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer {
                send,
                outbox: Outbox::default(),
                last_write: Instant::now(),
                ended: ended.clone(),
                write_error: None,
                writer_gone: false,
                peer_done: false,
                receiving: false,
                receipts_owed: false,
                key_updates: key_updates.clone(),
                reported_epoch: 0,
                heads: VecDeque::new(),
            }),
            socket: stream,
            ended,
            ack_waiters: AtomicUsize::new(0),
            files: files::Files::default(),
            queued: Condvar::new(),
            changed: Condvar::new(),
            key_updates,
            over: Mutex::new(false),
            wake: Condvar::new(),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new().name(name.into()).spawn(f).map(drop)
        };
        let reader = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("chat-reader".into())
                .spawn(move || {
                    let mut reader = Reader {
                        shared: Arc::clone(&shared),
                        stream: read_stream,
                        decoder,
                        recv,
                        handler,
                        receipted: 0,
                        delivered: 0,
                        failure: None,
                    };
                    let summary = reader.run();
                    *shared.over.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    shared.wake.notify_all();
                    summary
                })?
        };
        let for_writer = Arc::clone(&shared);
        spawn("chat-writer", Box::new(move || write_loop(&for_writer)))?;
        let for_keepalive = Arc::clone(&shared);
        spawn(
            "chat-keepalive",
            Box::new(move || keepalive(&for_keepalive)),
        )?;
        Ok(Self {
            sender: Sender {
                shared: Arc::clone(&shared),
                chunk: DEFAULT_CHUNK.min(MAX_RECORD_PLAINTEXT),
            },
            reader,
            shared,
        })
    }

    /// Starts the conversation on a connection fresh from its handshake.
    pub fn over(
        connected: super::Connected,
        max_message: u64,
        handler: impl Handler,
    ) -> io::Result<Self> {
        let super::Connected {
            stream,
            decoder,
            established,
        } = connected;
        Self::start(stream, decoder, established.session, max_message, handler)
    }

    /// A handle for sending.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Whether the conversation has ended.
    pub fn is_over(&self) -> bool {
        self.shared.is_over()
    }

    /// Waits for the conversation to end and says how it ended.
    pub fn wait(self) -> Summary {
        self.reader
            .join()
            .expect("the reader thread does not panic")
    }
}

/// Sends a KEEPALIVE whenever nothing was sent for [`keepalive_after`].
fn keepalive(shared: &Shared) {
    loop {
        {
            let over = shared.over.lock().unwrap_or_else(|p| p.into_inner());
            let (over, _) = shared
                .wake
                .wait_timeout(over, keepalive_after().min(Duration::from_secs(1)))
                .unwrap_or_else(|p| p.into_inner());
            if *over {
                return;
            }
        }
        let mut w = shared.writer();
        if !w.ended.get() && w.last_write.elapsed() >= keepalive_after() {
            // A failure shows up on the reader's side.
            let _ = w.seal(|send, buf| send.keepalive(buf));
            shared.queued.notify_one();
        }
    }
}

struct Reader<H> {
    shared: Arc<Shared>,
    stream: TcpStream,
    decoder: FrameDecoder,
    recv: RecvHalf,
    handler: H,
    /// The last message acknowledged to the peer.
    receipted: u64,
    /// The last message whose [`Handler::message_end`] returned `Ok`: the
    /// most a receipt may cover.
    delivered: u64,
    /// The message the handler could not take, once that happened.
    failure: Option<DeliveryFailure>,
}

/// Why [`Reader::pump`] stopped reading, other than a CLOSE from the peer.
enum Halt {
    /// The connection failed, or the peer broke the protocol.
    Net(NetError),
    /// The handler could not take a message.
    Undeliverable(DeliveryFailure),
}

impl<E: Into<NetError>> From<E> for Halt {
    fn from(error: E) -> Self {
        Halt::Net(error.into())
    }
}

impl<H: Handler> Reader<H> {
    fn run(&mut self) -> Summary {
        let ending = self.pump();
        let failure = self.failure.take();
        let ending = match failure {
            Some(ref failure) => Err(NetError::Io(io::Error::new(
                failure.error.kind(),
                failure.to_string(),
            ))),
            None => ending,
        };
        let (unacknowledged, we_are_done, write_error) = {
            let mut w = self.shared.writer();
            // Tell a peer that broke the rules so. The records queued before
            // the CLOSE go first: the peer counts every record (section 7),
            // and a CLOSE sealed after dropped records would not open.
            // Tampering and cut connections get nothing (there is no one to
            // tell), so nothing queued matters.
            let reason = match &ending {
                Err(NetError::Protocol(ProtocolError::MessageTooLarge { .. })) => {
                    Some(CloseReason::TooLarge)
                }
                Err(NetError::Protocol(
                    ProtocolError::PeerMisbehaved(_) | ProtocolError::Malformed { .. },
                )) => Some(CloseReason::ProtocolError),
                _ => None,
            };
            match reason {
                Some(reason) => w.close(reason),
                None if failure.is_some() => {}
                None => w.outbox.discard(),
            }
            w.ended.set();
            self.shared.queued.notify_one();
            // Let the writer thread send that CLOSE, but not wait on a peer
            // that does not read.
            let deadline = Instant::now() + LINGER;
            while !w.writer_gone && w.write_error.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                w = self
                    .shared
                    .changed
                    .wait_timeout(w, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let _ = self.shared.socket.shutdown(Shutdown::Both);
            self.shared.changed.notify_all();
            w.drop_acknowledged_heads();
            let heads = w.heads.drain(..).collect::<Vec<_>>();
            (
                (w.unacknowledged(), heads),
                w.send.is_done(),
                w.write_error.take(),
            )
        };
        let (unacknowledged, unacknowledged_heads) = unacknowledged;
        let both_done = we_are_done
            && self.recv.peer_done()
            && unacknowledged.is_empty()
            && self.shared.files.idle();
        let ending = match (ending, write_error) {
            (Ok(None | Some(CloseReason::Goodbye)), _) if both_done => Ending::Finished,
            (Ok(Some(reason)), _) => Ending::ClosedByPeer(reason),
            // The handler's failure is the cause, whatever followed it.
            (Err(e), _) if failure.is_some() => Ending::Failed(e),
            // Our own write failed first: that is the cause, not the
            // connection we shut down because of it.
            (_, Some(e)) => Ending::Failed(NetError::from_read(e, "while sending")),
            (Ok(None), None) => Ending::ClosedByUs,
            (Err(e), None) => Ending::Failed(e),
        };
        let summary = Summary {
            ending,
            unacknowledged,
            unacknowledged_heads,
            cut_off: self.recv.in_message(),
            undelivered: failure,
        };
        files::session_ended(&self.shared, &mut self.handler);
        self.handler.ended(&summary);
        summary
    }

    /// Reads and handles records until the session ends. `Ok(Some(reason))`:
    /// the peer closed; `Ok(None)`: we closed, and the peer hung up or
    /// [`LINGER`] passed.
    fn pump(&mut self) -> Result<Option<CloseReason>, NetError> {
        loop {
            match self.pump_until_halt() {
                Ok(reason) => return Ok(reason),
                Err(Halt::Net(error)) => return Err(error),
                Err(Halt::Undeliverable(failure)) => self.give_up(failure),
            }
        }
    }

    /// The handler could not take a message: acknowledge the ones delivered
    /// before it, say goodbye, and go on reading (and discarding) until the
    /// peer hangs up or [`LINGER`] passes, as after any CLOSE of ours, so
    /// that a peer in the middle of sending sees the CLOSE rather than a
    /// reset connection.
    fn give_up(&mut self, failure: DeliveryFailure) {
        let mut w = self.shared.writer();
        if self.delivered > self.receipted && !w.ended.get() {
            let delivered = self.delivered;
            let _ = w.seal(|send, buf| send.receipt(delivered, buf));
            self.receipted = delivered;
        }
        w.close(CloseReason::Goodbye);
        self.failure.get_or_insert(failure);
        self.shared.send_from_reader(w);
    }

    /// [`pump`](Self::pump), until the first failure of the handler.
    fn pump_until_halt(&mut self) -> Result<Option<CloseReason>, Halt> {
        // A live peer sends a record (at least a KEEPALIVE) well within the
        // timeout. Counting whole records, not bytes, also catches a peer
        // (or a man in the middle) that trickles out a frame that never ends.
        let timeout = super::peer_timeout();
        let mut last_record = Instant::now();
        // Once our CLOSE is queued, the peer has until then to hang up
        // (docs/PROTOCOL.md, 8.5), however much it still sends.
        let mut hang_up_at: Option<Instant> = None;
        // The socket's read timeout, changed only when it must shrink (time
        // is running out) or may grow back: not a system call per read.
        let mut read_timeout = timeout;
        self.stream.set_read_timeout(Some(read_timeout))?;
        loop {
            while let Some(frame) = self.decoder.next_frame()? {
                if self.shared.ended.get() {
                    // After our CLOSE, what arrives is read and discarded
                    // until the peer hangs up (docs/PROTOCOL.md, 8.5).
                    continue;
                }
                let event = self.recv.open(frame)?;
                last_record = Instant::now();
                match handle(&self.shared, &mut self.handler, event)? {
                    Handled::Delivered(id) => self.delivered = id,
                    Handled::Closed(reason) => return Ok(Some(reason)),
                    Handled::Continue => {}
                }
            }
            self.after_batch();
            let mut left = timeout.saturating_sub(last_record.elapsed());
            if self.shared.ended.get() {
                let at = *hang_up_at.get_or_insert_with(|| Instant::now() + LINGER);
                let linger = at.saturating_duration_since(Instant::now());
                if linger.is_zero() {
                    return Ok(None);
                }
                left = left.min(linger);
            }
            if left.is_zero() {
                return Err(NetError::Timeout(
                    "waiting for the peer (no complete record within the peer timeout)",
                )
                .into());
            }
            if left + Duration::from_millis(200) < read_timeout
                || left > read_timeout + Duration::from_secs(1)
            {
                read_timeout = left;
                self.stream.set_read_timeout(Some(read_timeout))?;
            }
            match self.stream.read(self.decoder.spare()) {
                Ok(0) => {
                    return if self.shared.ended.get() {
                        Ok(None)
                    } else {
                        Err(NetError::Cut("before the peer said goodbye").into())
                    };
                }
                Ok(n) => self.decoder.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The deadlines above decide.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // We already said goodbye; how the socket ends is moot.
                Err(_) if self.shared.ended.get() => return Ok(None),
                Err(e) => return Err(NetError::from_read(e, "while talking").into()),
            }
        }
    }

    /// After handling everything that arrived in one read: acknowledge the
    /// messages delivered since the last receipt, in one record, and finish
    /// the session if both sides are done.
    fn after_batch(&mut self) {
        files::tick(&self.shared, &mut self.handler);
        let delivered = self.delivered;
        let mut w = self.shared.writer();
        if delivered > self.receipted && !w.ended.get() {
            // Only a session limit can refuse this, and it ends the session.
            let _ = w.seal(|send, buf| send.receipt(delivered, buf));
            self.receipted = delivered;
        }
        w.receiving = self.recv.in_message().is_some();
        w.receipts_owed = self.receipted < self.recv.last_complete();
        w.peer_done = self.recv.peer_done();
        if !w.ended.get() && w.finished() && self.shared.files.idle() {
            w.close(CloseReason::Goodbye);
        }
        self.shared.send_from_reader(w);
    }
}

/// What one record meant for the reader.
enum Handled {
    /// Nothing that changes the reader's course.
    Continue,
    /// The handler took this message whole: it may be acknowledged.
    Delivered(u64),
    /// The peer closed the session.
    Closed(CloseReason),
}

/// Hands one event to the handler.
fn handle(shared: &Shared, handler: &mut impl Handler, event: Event<'_>) -> Result<Handled, Halt> {
    let failed =
        |id: u64| move |error: io::Error| Halt::Undeliverable(DeliveryFailure { id, error });
    match event {
        Event::MessageStart { id, length } => {
            handler.message_start(id, length).map_err(failed(id))?
        }
        Event::MessageData { id, data } => handler.message_data(id, data).map_err(failed(id))?,
        Event::MessageEnd { id, data } => {
            if !data.is_empty() {
                handler.message_data(id, data).map_err(failed(id))?;
            }
            handler.message_end(id).map_err(failed(id))?;
            return Ok(Handled::Delivered(id));
        }
        Event::Receipt { ids } => {
            handler.delivered(ids);
            if shared.ack_waiters.load(Ordering::SeqCst) > 0 {
                // Take the lock so that a waiter cannot miss the notification.
                drop(shared.writer());
                shared.changed.notify_all();
            }
        }
        Event::Keepalive => {}
        Event::KeyUpdate { epoch } => {
            if let Some(report) = &shared.key_updates {
                report(KeyDirection::Received, epoch);
            }
        }
        Event::File(record) => files::received(shared, handler, record)?,
        // Taken before the conversation starts (net::invite), if at all.
        Event::InviteProof(_) | Event::InviteResult(_) => {
            return Err(ProtocolError::PeerMisbehaved("an invite record out of place").into());
        }
        Event::Done => handler.peer_done(),
        Event::Close { reason, .. } => {
            shared.ended.set();
            return Ok(Handled::Closed(reason));
        }
    }
    Ok(Handled::Continue)
}
