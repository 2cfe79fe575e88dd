//! An established session over a socket: a reader thread that authenticates
//! records and hands events to a [`Handler`], a [`Sender`] that any thread can
//! use to send messages, and a keep-alive timer (`docs/PROTOCOL.md`, section 8).
//!
//! The reader acknowledges each message once its handler has taken the last
//! byte, coalescing receipts when several messages arrive together. When both
//! sides have said DONE and everything is acknowledged, it closes the session.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::RangeInclusive;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
const LINGER: Duration = Duration::from_secs(2);

/// What the receiving side of a conversation reports to the program.
/// Called on the reader thread; a slow handler slows the peer down.
pub trait Handler: Send + 'static {
    /// A message of `length` bytes begins.
    fn message_start(&mut self, _id: u64, _length: u64) -> io::Result<()> {
        Ok(())
    }
    /// More of the current message.
    fn message_data(&mut self, id: u64, data: &[u8]) -> io::Result<()>;
    /// The message is complete and authentic. When this returns `Ok`, it
    /// counts as delivered and the peer gets a receipt.
    fn message_end(&mut self, id: u64) -> io::Result<()>;
    /// The peer has every message up to these ids.
    fn delivered(&mut self, _ids: RangeInclusive<u64>) {}
    /// The peer will start no more messages.
    fn peer_done(&mut self) {}
    /// The conversation is over; nothing is called after this.
    fn ended(&mut self, _summary: &Summary) {}
}

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
    /// A message from the peer that was cut off before its end.
    pub cut_off: Option<u64>,
}

impl Summary {
    /// Whether everything we sent was acknowledged and nothing failed.
    pub fn all_delivered(&self) -> bool {
        self.unacknowledged.is_empty()
    }
}

/// The sending side and the session's shared state, behind one lock.
struct Writer {
    stream: TcpStream,
    send: SendHalf,
    buf: Vec<u8>,
    last_write: Instant,
    /// Set when no more records may be written.
    ended: bool,
    /// Receiver-side facts the finish rule needs.
    peer_done: bool,
    receiving: bool,
    receipts_owed: bool,
}

impl Writer {
    /// Writes what was sealed into `buf`, as one write.
    fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.buf);
        self.buf.clear();
        self.last_write = Instant::now();
        result
    }

    /// Seals with `f` and writes, unless the session is over.
    fn record(
        &mut self,
        f: impl FnOnce(&mut SendHalf, &mut Vec<u8>) -> Result<(), ProtocolError>,
    ) -> Result<(), SendError> {
        if self.ended {
            return Err(SendError::Ended);
        }
        if let Err(e) = f(&mut self.send, &mut self.buf) {
            return Err(self.fail(e));
        }
        self.flush().map_err(SendError::Io)
    }

    /// Writes what is buffered and then `record`, in one system call when
    /// the socket takes it all.
    fn write_after_buffered(&mut self, record: &[u8]) -> io::Result<()> {
        let mut parts = [io::IoSlice::new(&self.buf), io::IoSlice::new(record)];
        let mut slices = &mut parts[..];
        let result = loop {
            if slices.iter().all(|s| s.is_empty()) {
                break Ok(());
            }
            match self.stream.write_vectored(slices) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.clear();
        self.last_write = Instant::now();
        result
    }

    /// A session limit ends the session with a goodbye; any error is
    /// passed on for the caller.
    fn fail(&mut self, error: ProtocolError) -> SendError {
        if let ProtocolError::Exhausted(_) = error {
            self.close(CloseReason::Goodbye);
        }
        SendError::Protocol(error)
    }

    /// Sends CLOSE and half-closes the socket; later writes are refused.
    fn close(&mut self, reason: CloseReason) {
        if !self.ended {
            self.ended = true;
            if self.send.close(reason, &mut self.buf).is_ok() {
                let _ = self.flush();
            }
            let _ = self.stream.shutdown(Shutdown::Write);
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
}

struct Shared {
    writer: Mutex<Writer>,
    /// Signalled (with the writer lock) when receipts arrive or the session ends.
    acknowledged: Condvar,
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
    /// letting the reader thread send receipts in between. `progress` is
    /// called with the bytes sent so far. Returns the message id.
    pub fn send_from(
        &self,
        source: &mut dyn Read,
        length: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, SendError> {
        // MESSAGE_START waits in the writer's buffer and goes out in the same
        // write as the first chunk: a short message is one write, one packet.
        let id = {
            let mut w = self.shared.writer();
            if w.ended {
                return Err(SendError::Ended);
            }
            let Writer { send, buf, .. } = &mut *w;
            send.start_message(length, buf).map_err(|e| w.fail(e))?
        };
        let size = (length.min(self.chunk as u64)) as usize;
        let mut frame = vec![0u8; HEADER_LEN + size + TAG_LEN];
        let mut sent = 0u64;
        loop {
            let n = (length - sent).min(size as u64) as usize;
            let record = HEADER_LEN + n + TAG_LEN;
            source
                .read_exact(&mut frame[HEADER_LEN..HEADER_LEN + n])
                .map_err(SendError::Source)?;
            let mut w = self.shared.writer();
            if w.ended {
                return Err(SendError::Ended);
            }
            if length > 0 {
                w.send
                    .chunk_in_place(&mut frame[..record])
                    .map_err(|e| w.fail(e))?;
            }
            let result = if length > 0 {
                w.write_after_buffered(&frame[..record])
            } else {
                w.flush()
            };
            result.map_err(SendError::Io)?;
            drop(w);
            sent += n as u64;
            progress(sent);
            if sent == length {
                return Ok(id);
            }
        }
    }

    /// Says that no more messages will come from this side. The session
    /// ends by itself once the peer says the same and all is acknowledged.
    pub fn done(&self) -> Result<(), SendError> {
        let mut w = self.shared.writer();
        w.record(|send, buf| send.done(buf))?;
        if w.finished() {
            w.close(CloseReason::Goodbye);
        }
        Ok(())
    }

    /// Ends the session with `reason`.
    pub fn close(&self, reason: CloseReason) {
        self.shared.writer().close(reason);
        // A dead peer would otherwise keep the reader waiting.
        let shared = Arc::clone(&self.shared);
        thread::spawn(move || {
            let over = shared.over.lock().unwrap_or_else(|p| p.into_inner());
            let (over, _) = shared
                .wake
                .wait_timeout_while(over, LINGER, |over| !*over)
                .unwrap_or_else(|p| p.into_inner());
            if !*over {
                let _ = shared.writer().stream.shutdown(Shutdown::Both);
            }
        });
    }

    /// Waits until message `id` is acknowledged (true) or the session ends
    /// without it (false).
    pub fn wait_acknowledged(&self, id: u64) -> bool {
        let mut w = self.shared.writer();
        while w.send.last_acknowledged() < id && !w.ended {
            w = self
                .shared
                .acknowledged
                .wait(w)
                .unwrap_or_else(|p| p.into_inner());
        }
        w.send.last_acknowledged() >= id
    }

    /// Ids of messages sent but not acknowledged yet.
    pub fn unacknowledged(&self) -> Vec<u64> {
        self.shared.writer().unacknowledged()
    }

    /// Whether the conversation is over (no more sending possible).
    pub fn is_ended(&self) -> bool {
        self.shared.writer().ended
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
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer {
                stream,
                send,
                buf: Vec::new(),
                last_write: Instant::now(),
                ended: false,
                peer_done: false,
                receiving: false,
                receipts_owed: false,
            }),
            acknowledged: Condvar::new(),
            over: Mutex::new(false),
            wake: Condvar::new(),
        });
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
                    };
                    let summary = reader.run();
                    *shared.over.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    shared.wake.notify_all();
                    summary
                })?
        };
        {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("chat-keepalive".into())
                .spawn(move || keepalive(&shared))?;
        }
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
        if !w.ended && w.last_write.elapsed() >= keepalive_after() {
            // A failure shows up on the reader's side as a cut connection.
            let _ = w.record(|send, buf| send.keepalive(buf));
        }
    }
}

struct Reader<H> {
    shared: Arc<Shared>,
    stream: TcpStream,
    decoder: FrameDecoder,
    recv: RecvHalf,
    handler: H,
    receipted: u64,
}

impl<H: Handler> Reader<H> {
    fn run(&mut self) -> Summary {
        let ending = self.pump();
        let (unacknowledged, we_are_done) = {
            let mut w = self.shared.writer();
            match &ending {
                // A peer that broke the rules is told so; tampering and cut
                // connections get nothing (there is no one to tell).
                Err(NetError::Protocol(ProtocolError::MessageTooLarge { .. })) => {
                    w.close(CloseReason::TooLarge)
                }
                Err(NetError::Protocol(
                    ProtocolError::PeerMisbehaved(_) | ProtocolError::Malformed { .. },
                )) => w.close(CloseReason::ProtocolError),
                _ => {}
            }
            w.ended = true;
            let _ = w.stream.shutdown(Shutdown::Both);
            self.shared.acknowledged.notify_all();
            (w.unacknowledged(), w.send.is_done())
        };
        let both_done = we_are_done && self.recv.peer_done() && unacknowledged.is_empty();
        let ending = match ending {
            Ok(None | Some(CloseReason::Goodbye)) if both_done => Ending::Finished,
            Ok(Some(reason)) => Ending::ClosedByPeer(reason),
            Ok(None) => Ending::ClosedByUs,
            Err(e) => Ending::Failed(e),
        };
        let summary = Summary {
            ending,
            unacknowledged,
            cut_off: self.recv.in_message(),
        };
        self.handler.ended(&summary);
        summary
    }

    /// Reads and handles records until the session ends. `Ok(Some(reason))`:
    /// the peer closed; `Ok(None)`: we closed and the peer hung up.
    fn pump(&mut self) -> Result<Option<CloseReason>, NetError> {
        // A live peer sends a record (at least a KEEPALIVE) well within the
        // timeout. Counting whole records, not bytes, also catches a peer
        // (or a man in the middle) that trickles out a frame that never ends.
        let timeout = super::peer_timeout();
        let mut last_record = Instant::now();
        // The socket's read timeout, changed only when it must shrink (time
        // is running out) or may grow back: not a system call per read.
        let mut read_timeout = timeout;
        self.stream.set_read_timeout(Some(read_timeout))?;
        loop {
            while let Some(frame) = self.decoder.next_frame()? {
                if self.shared.writer().ended {
                    // After our CLOSE, what arrives is read and discarded
                    // until the peer hangs up (docs/PROTOCOL.md, 8.5).
                    continue;
                }
                let event = self.recv.open(frame)?;
                last_record = Instant::now();
                if let Some(reason) = handle(&self.shared, &mut self.handler, event)? {
                    return Ok(Some(reason));
                }
            }
            self.after_batch()?;
            let left = timeout.saturating_sub(last_record.elapsed());
            if left.is_zero() {
                return Err(NetError::Timeout(
                    "waiting for the peer (no complete record within the peer timeout)",
                ));
            }
            if left + Duration::from_millis(200) < read_timeout
                || left > read_timeout + Duration::from_secs(1)
            {
                read_timeout = left;
                self.stream.set_read_timeout(Some(read_timeout))?;
            }
            match self.stream.read(self.decoder.spare()) {
                Ok(0) => {
                    return if self.shared.writer().ended {
                        Ok(None)
                    } else {
                        Err(NetError::Cut("before the peer said goodbye"))
                    };
                }
                Ok(n) => self.decoder.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // We already said goodbye; how the socket ends is moot.
                Err(_) if self.shared.writer().ended => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(NetError::from_read(e, "while talking")),
            }
        }
    }

    /// After handling everything that arrived in one read: acknowledge the
    /// messages completed since the last receipt, in one record, and finish
    /// the session if both sides are done.
    fn after_batch(&mut self) -> Result<(), NetError> {
        let complete = self.recv.last_complete();
        let mut w = self.shared.writer();
        if complete > self.receipted && !w.ended {
            let result = w.record(|send, buf| send.receipt(complete, buf));
            if let Err(SendError::Io(e)) = result {
                return Err(NetError::from_read(e, "sending a receipt"));
            }
            self.receipted = complete;
        }
        w.receiving = self.recv.in_message().is_some();
        w.receipts_owed = self.receipted < complete;
        w.peer_done = self.recv.peer_done();
        if !w.ended && w.finished() {
            w.close(CloseReason::Goodbye);
        }
        Ok(())
    }
}

/// Hands one event to the handler. Returns the peer's close reason when the
/// session is over.
fn handle(
    shared: &Shared,
    handler: &mut impl Handler,
    event: Event<'_>,
) -> Result<Option<CloseReason>, NetError> {
    let local = |e: io::Error| {
        NetError::Io(io::Error::new(
            e.kind(),
            format!("delivering a message: {e}"),
        ))
    };
    match event {
        Event::MessageStart { id, length } => handler.message_start(id, length).map_err(local)?,
        Event::MessageData { id, data } => handler.message_data(id, data).map_err(local)?,
        Event::MessageEnd { id, data } => {
            if !data.is_empty() {
                handler.message_data(id, data).map_err(local)?;
            }
            handler.message_end(id).map_err(local)?;
        }
        Event::Receipt { ids } => {
            // Take the lock so that a waiter cannot miss the notification.
            drop(shared.writer());
            shared.acknowledged.notify_all();
            handler.delivered(ids);
        }
        Event::Keepalive => {}
        Event::Done => handler.peer_done(),
        Event::Close { reason, .. } => {
            let mut w = shared.writer();
            w.ended = true;
            let _ = w.stream.shutdown(Shutdown::Write);
            return Ok(Some(reason));
        }
    }
    Ok(None)
}
