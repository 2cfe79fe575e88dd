//! The established session: messages of any length as chunk records,
//! delivery receipts, keep-alives, half-close and close
//! (`docs/PROTOCOL.md`, "Records" and "Session rules"). Pure: records in,
//! events out; records out into a caller's buffer.
//!
//! A session splits into a [`SendHalf`] and a [`RecvHalf`] so that a reader
//! and a writer can run on different threads. The halves share two counters,
//! so that the receiving half can check each receipt against what the
//! sending half has really sent. After any error the receiving half refuses
//! every further record: an error ends the session.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::keys::PublicKey;
use crate::crypto::schedule::DirectionalKeys;
use crate::crypto::{Opener, Sealer};
use crate::protocol::{CloseReason, MAX_RECORD_PLAINTEXT, ProtocolError, Role, TAG_LEN};
use crate::wire::FrameType;
use crate::wire::frame::HEADER_LEN;
use crate::wire::record::{self, Close, MessageStart, Receipt};

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
    pub(crate) fn new(role: Role, keys: &DirectionalKeys) -> Self {
        let (ours, theirs) = match role {
            Role::Initiator => (&keys.i2r, &keys.r2i),
            Role::Responder => (&keys.r2i, &keys.i2r),
        };
        let receipts = Arc::new(Receipts::default());
        Self {
            send: SendHalf::new(Sealer::new(ours), Arc::clone(&receipts)),
            recv: RecvHalf::new(Opener::new(theirs), receipts),
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

/// A message being sent.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    id: u64,
    remaining: u64,
}

/// The sending direction: numbers messages, cuts them into records and
/// keeps track of which ones the peer has acknowledged.
pub struct SendHalf {
    sealer: Sealer,
    next_id: u64,
    current: Option<Outgoing>,
    receipts: Arc<Receipts>,
    done: bool,
    closed: bool,
}

impl SendHalf {
    fn new(sealer: Sealer, receipts: Arc<Receipts>) -> Self {
        Self {
            sealer,
            next_id: 1,
            current: None,
            receipts,
            done: false,
            closed: false,
        }
    }

    fn seal(
        &mut self,
        typ: FrameType,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if self.closed {
            return Err(ProtocolError::Misuse("the session is closed"));
        }
        self.sealer.seal(typ, body, out)
    }

    /// Starts a message of `length` bytes and returns its id. Its text
    /// follows through [`chunk`](Self::chunk); a message of length 0 is
    /// complete at once.
    pub fn start_message(&mut self, length: u64, out: &mut Vec<u8>) -> Result<u64, ProtocolError> {
        if self.current.is_some() {
            return Err(ProtocolError::Misuse("a message is already being sent"));
        }
        if self.done {
            return Err(ProtocolError::Misuse("DONE was sent; no more messages"));
        }
        if self.next_id == u64::MAX {
            return Err(ProtocolError::Exhausted("message id"));
        }
        let id = self.next_id;
        self.seal(
            FrameType::MessageStart,
            &MessageStart { id, length }.encode(),
            out,
        )?;
        self.next_id += 1;
        self.current = Some(Outgoing {
            id,
            remaining: length,
        });
        if length == 0 {
            self.chunk(&[], out)?;
        }
        Ok(id)
    }

    /// Sends the next piece of the current message, at most
    /// [`MAX_RECORD_PLAINTEXT`] bytes. The piece that brings the message to
    /// its announced length goes out as MESSAGE_END.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(data);
        out.resize(out.len() + TAG_LEN, 0);
        let sealed = self.chunk_in_place(&mut out[start..]);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// As [`chunk`](Self::chunk), for a buffer laid out as
    /// `[HEADER_LEN bytes][data][TAG_LEN bytes]` that becomes the record, so
    /// that bulk data can be read straight into its place and encrypted there.
    pub fn chunk_in_place(&mut self, frame: &mut [u8]) -> Result<(), ProtocolError> {
        let len = frame.len().saturating_sub(HEADER_LEN + TAG_LEN);
        let current = self
            .current
            .ok_or(ProtocolError::Misuse("no message is being sent"))?;
        if len > MAX_RECORD_PLAINTEXT {
            return Err(ProtocolError::Misuse("chunk larger than a record"));
        }
        if len as u64 > current.remaining || (len == 0 && current.remaining > 0) {
            return Err(ProtocolError::Misuse(
                "chunk does not fit the announced length",
            ));
        }
        let remaining = current.remaining - len as u64;
        let typ = if remaining == 0 {
            FrameType::MessageEnd
        } else {
            FrameType::MessageData
        };
        if self.closed {
            return Err(ProtocolError::Misuse("the session is closed"));
        }
        self.sealer.seal_in_place(typ, frame)?;
        if remaining == 0 {
            self.current = None;
            self.receipts
                .last_complete
                .store(current.id, Ordering::SeqCst);
        } else {
            self.current = Some(Outgoing {
                remaining,
                ..current
            });
        }
        Ok(())
    }

    /// Sends a whole message held in memory, in chunks of `chunk_size`.
    pub fn message(
        &mut self,
        text: &[u8],
        chunk_size: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, ProtocolError> {
        let chunk_size = chunk_size.clamp(1, MAX_RECORD_PLAINTEXT);
        let id = self.start_message(text.len() as u64, out)?;
        for piece in text.chunks(chunk_size) {
            self.chunk(piece, out)?;
        }
        Ok(id)
    }

    /// Acknowledges that every message up to `id` was delivered.
    pub fn receipt(&mut self, id: u64, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.seal(FrameType::Receipt, &Receipt { id }.encode(), out)
    }

    /// A record that says nothing but "still here".
    pub fn keepalive(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.seal(FrameType::Keepalive, &[], out)
    }

    /// Announces that no more messages will start from this side.
    pub fn done(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        if self.current.is_some() {
            return Err(ProtocolError::Misuse("DONE in the middle of a message"));
        }
        if self.done {
            return Err(ProtocolError::Misuse("DONE was already sent"));
        }
        self.seal(FrameType::Done, &[], out)?;
        self.done = true;
        Ok(())
    }

    /// Ends the session; nothing can be sent after it.
    pub fn close(&mut self, reason: CloseReason, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.seal(FrameType::Close, &Close { reason }.encode(), out)?;
        self.closed = true;
        Ok(())
    }

    /// The id of the last message started (0 if none).
    pub fn last_started(&self) -> u64 {
        self.next_id - 1
    }

    /// The id of the last message acknowledged by the peer (0 if none).
    pub fn last_acknowledged(&self) -> u64 {
        self.receipts.last_acknowledged.load(Ordering::SeqCst)
    }

    /// Whether a message is half sent.
    pub fn in_message(&self) -> bool {
        self.current.is_some()
    }

    /// Whether DONE was sent.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether CLOSE was sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
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
    /// The peer will start no more messages.
    Done,
    /// The peer ended the session; a message in progress is abandoned.
    Close {
        /// Why.
        reason: CloseReason,
        /// The id of a message that was cut off by the close, if any.
        abandoned: Option<u64>,
    },
}

/// A message being received.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    id: u64,
    remaining: u64,
}

/// The receiving direction: authenticates records in order and enforces the
/// session rules.
pub struct RecvHalf {
    opener: Opener,
    receipts: Arc<Receipts>,
    max_message: u64,
    expected_id: u64,
    current: Option<Incoming>,
    peer_done: bool,
    closed: bool,
    failed: bool,
}

impl RecvHalf {
    fn new(opener: Opener, receipts: Arc<Receipts>) -> Self {
        Self {
            opener,
            receipts,
            max_message: crate::protocol::DEFAULT_MAX_MESSAGE,
            expected_id: 1,
            current: None,
            peer_done: false,
            closed: false,
            failed: false,
        }
    }

    /// Sets the largest message accepted.
    pub fn set_max_message(&mut self, limit: u64) {
        self.max_message = limit;
    }

    /// The id of a message whose text is arriving, if any.
    pub fn in_message(&self) -> Option<u64> {
        self.current.map(|c| c.id)
    }

    /// Whether the peer sent DONE.
    pub fn peer_done(&self) -> bool {
        self.peer_done
    }

    /// Whether the peer sent CLOSE.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The id of the last message completely received (0 if none).
    pub fn last_complete(&self) -> u64 {
        self.expected_id - 1 - u64::from(self.current.is_some())
    }

    /// Authenticates one whole frame (decrypted in place) and interprets it.
    /// After an error, every later call fails too.
    pub fn open<'f>(&mut self, frame: &'f mut [u8]) -> Result<Event<'f>, ProtocolError> {
        if self.failed {
            return Err(ProtocolError::Misuse("the session already failed"));
        }
        let event = self.open_record(frame);
        self.failed = event.is_err();
        event
    }

    fn open_record<'f>(&mut self, frame: &'f mut [u8]) -> Result<Event<'f>, ProtocolError> {
        if self.closed {
            return Err(ProtocolError::PeerMisbehaved("record after CLOSE"));
        }
        let (typ, body) = self.opener.open_in_place(frame)?;
        let body: &'f [u8] = body;
        match FrameType::from_byte(typ) {
            Some(FrameType::MessageStart) => {
                let start = MessageStart::decode(body)?;
                if self.current.is_some() {
                    return Err(ProtocolError::PeerMisbehaved(
                        "message started inside another",
                    ));
                }
                if self.peer_done {
                    return Err(ProtocolError::PeerMisbehaved("message started after DONE"));
                }
                if start.id != self.expected_id {
                    return Err(ProtocolError::PeerMisbehaved("message id out of sequence"));
                }
                if start.length > self.max_message {
                    return Err(ProtocolError::MessageTooLarge {
                        length: start.length,
                        limit: self.max_message,
                    });
                }
                self.expected_id += 1;
                self.current = Some(Incoming {
                    id: start.id,
                    remaining: start.length,
                });
                Ok(Event::MessageStart {
                    id: start.id,
                    length: start.length,
                })
            }
            Some(FrameType::MessageData) => {
                let current = self.current.ok_or(ProtocolError::PeerMisbehaved(
                    "message data outside a message",
                ))?;
                if body.is_empty() || body.len() as u64 >= current.remaining {
                    return Err(ProtocolError::PeerMisbehaved(
                        "MESSAGE_DATA empty or reaching the announced length",
                    ));
                }
                self.current = Some(Incoming {
                    remaining: current.remaining - body.len() as u64,
                    ..current
                });
                Ok(Event::MessageData {
                    id: current.id,
                    data: body,
                })
            }
            Some(FrameType::MessageEnd) => {
                let current = self.current.ok_or(ProtocolError::PeerMisbehaved(
                    "message end outside a message",
                ))?;
                if body.len() as u64 != current.remaining {
                    return Err(ProtocolError::PeerMisbehaved(
                        "message length differs from the announced length",
                    ));
                }
                self.current = None;
                Ok(Event::MessageEnd {
                    id: current.id,
                    data: body,
                })
            }
            Some(FrameType::Receipt) => {
                let id = Receipt::decode(body)?.id;
                let acknowledged = self.receipts.last_acknowledged.load(Ordering::SeqCst);
                if id <= acknowledged || id > self.receipts.last_complete.load(Ordering::SeqCst) {
                    return Err(ProtocolError::PeerMisbehaved(
                        "receipt for a message not sent, not finished, or already acknowledged",
                    ));
                }
                self.receipts.last_acknowledged.store(id, Ordering::SeqCst);
                Ok(Event::Receipt {
                    ids: acknowledged + 1..=id,
                })
            }
            Some(FrameType::Keepalive) => {
                record::decode_empty("KEEPALIVE", body)?;
                Ok(Event::Keepalive)
            }
            Some(FrameType::Done) => {
                record::decode_empty("DONE", body)?;
                if self.current.is_some() || self.peer_done {
                    return Err(ProtocolError::PeerMisbehaved(
                        "DONE inside a message or twice",
                    ));
                }
                self.peer_done = true;
                Ok(Event::Done)
            }
            Some(FrameType::Close) => {
                let close = Close::decode(body)?;
                self.closed = true;
                Ok(Event::Close {
                    reason: close.reason,
                    abandoned: self.current.take().map(|c| c.id),
                })
            }
            _ => Err(ProtocolError::PeerMisbehaved("unexpected record type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::aead::TrafficKey;

    fn pair() -> (Session, Session) {
        let keys = DirectionalKeys {
            i2r: TrafficKey::new([1; 32], [2; 12]),
            r2i: TrafficKey::new([3; 32], [4; 12]),
        };
        (
            Session::new(Role::Initiator, &keys),
            Session::new(Role::Responder, &keys),
        )
    }

    /// Feeds a byte stream of records to `recv`, collecting owned events.
    fn receive(recv: &mut RecvHalf, stream: &[u8]) -> Result<Vec<String>, ProtocolError> {
        let mut decoder = crate::wire::FrameDecoder::new(crate::protocol::MAX_RECORD_FRAME);
        decoder.push(stream);
        let mut events = Vec::new();
        while let Some(frame) = decoder.next_frame()? {
            events.push(format!("{:?}", recv.open(frame)?));
        }
        Ok(events)
    }

    #[test]
    fn long_message_in_chunks_with_receipt() {
        let (mut alice, mut bob) = pair();
        let text: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        let id = alice.send().message(&text, 40_000, &mut wire).unwrap();
        assert_eq!(id, 1);
        let mut decoder = crate::wire::FrameDecoder::new(crate::protocol::MAX_RECORD_FRAME);
        decoder.push(&wire);
        let mut got = Vec::new();
        let mut complete = false;
        while let Some(frame) = decoder.next_frame().unwrap() {
            match bob.recv().open(frame).unwrap() {
                Event::MessageStart { id: 1, length } => assert_eq!(length, 100_000),
                Event::MessageData { data, .. } => got.extend_from_slice(data),
                Event::MessageEnd { data, .. } => {
                    got.extend_from_slice(data);
                    complete = true;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(complete && got == text);
        let mut back = Vec::new();
        bob.send().receipt(1, &mut back).unwrap();
        let events = receive(alice.recv(), &back).unwrap();
        assert_eq!(events, ["Receipt { ids: 1..=1 }"]);
        assert_eq!(alice.send().last_acknowledged(), 1);
    }

    #[test]
    fn receipts_are_checked_against_what_was_sent() {
        for (bogus, why) in [
            (1, "a repeated receipt"),
            (2, "a message never sent"),
            (0, "id 0"),
        ] {
            let (mut alice, mut bob) = pair();
            let mut wire = Vec::new();
            alice.send().message(b"one", 16, &mut wire).unwrap();
            let mut back = Vec::new();
            bob.send().receipt(1, &mut back).unwrap();
            bob.send().receipt(bogus, &mut back).unwrap();
            assert!(receive(alice.recv(), &back).is_err(), "{why} was accepted");
        }
        // Nor may a receipt acknowledge a message whose end was not sent.
        let (mut alice, mut bob) = pair();
        let mut wire = Vec::new();
        alice.send().start_message(10, &mut wire).unwrap();
        let mut back = Vec::new();
        bob.send().receipt(1, &mut back).unwrap();
        assert!(receive(alice.recv(), &back).is_err());
    }

    #[test]
    fn after_an_error_nothing_more_is_accepted() {
        let (mut alice, mut bob) = pair();
        let mut bad = Vec::new();
        alice.send().receipt(5, &mut bad).unwrap();
        let mut good = Vec::new();
        alice.send().message(b"valid", 16, &mut good).unwrap();
        let mut decoder = crate::wire::FrameDecoder::new(crate::protocol::MAX_RECORD_FRAME);
        decoder.push(&bad);
        decoder.push(&good);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert!(bob.recv().open(frame).is_err());
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert!(
                bob.recv().open(frame).is_err(),
                "a record after the error was accepted"
            );
        }
    }

    #[test]
    fn truncated_message_is_never_complete() {
        let (mut alice, mut bob) = pair();
        let mut wire = Vec::new();
        alice.send().message(&[7; 300], 100, &mut wire).unwrap();
        let record_len = HEADER_LEN + 100 + TAG_LEN;
        // The connection is cut before the last record: no MessageEnd.
        let cut = wire.len() - record_len;
        let events = receive(bob.recv(), &wire[..cut]).unwrap();
        assert!(
            events.iter().all(|e| !e.starts_with("MessageEnd")),
            "{events:?}"
        );
        assert_eq!(bob.recv().in_message(), Some(1));
        // An attacker who drops the last record and lets the CLOSE through
        // is caught by the sequence number.
        let mut close = Vec::new();
        alice
            .send()
            .close(CloseReason::Goodbye, &mut close)
            .unwrap();
        assert_eq!(
            receive(bob.recv(), &close).unwrap_err(),
            ProtocolError::AuthenticationFailed
        );
    }

    #[test]
    fn session_rules_are_enforced() {
        let (mut alice, mut bob) = pair();
        let mut wire = Vec::new();
        alice.send().done(&mut wire).unwrap();
        assert!(
            alice.send().start_message(1, &mut wire).is_err(),
            "no message after DONE"
        );
        alice.send().close(CloseReason::Goodbye, &mut wire).unwrap();
        assert!(
            alice.send().keepalive(&mut wire).is_err(),
            "nothing after CLOSE"
        );
        let events = receive(bob.recv(), &wire).unwrap();
        assert_eq!(
            events,
            ["Done", "Close { reason: Goodbye, abandoned: None }"]
        );
    }

    #[test]
    fn oversized_message_is_refused_at_its_start() {
        let (mut alice, mut bob) = pair();
        bob.recv().set_max_message(10);
        let mut wire = Vec::new();
        alice.send().start_message(11, &mut wire).unwrap();
        assert_eq!(
            receive(bob.recv(), &wire).unwrap_err(),
            ProtocolError::MessageTooLarge {
                length: 11,
                limit: 10
            }
        );
    }

    #[test]
    fn reflected_records_fail() {
        let (mut alice, _) = pair();
        let mut wire = Vec::new();
        alice.send().keepalive(&mut wire).unwrap();
        // Alice's own record sent back to her does not open.
        assert_eq!(
            receive(alice.recv(), &wire).unwrap_err(),
            ProtocolError::AuthenticationFailed
        );
    }
}
