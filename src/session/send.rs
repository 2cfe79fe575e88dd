//! The sending half of a session: messages cut into records, receipts,
//! keep-alives, DONE and CLOSE, file records, and the key updates its
//! [`RekeyLimit`](super::RekeyLimit) calls for, all sealed into a caller's
//! buffer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Receipts;
use super::key_update::{Clock, RekeyLimit, SendKeys};
use crate::protocol::{CloseReason, MAX_RECORD_PLAINTEXT, ProtocolError, TAG_LEN};
use crate::wire::FrameType;
use crate::wire::file::FileRecord;
use crate::wire::frame::HEADER_LEN;
use crate::wire::record::{Close, MessageStart, Receipt};

/// A message being sent.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    id: u64,
    remaining: u64,
}

/// The sending direction: numbers messages, cuts them into records, keeps
/// track of which ones the peer has acknowledged, and updates its key when
/// its limit says so.
///
/// Every method that seals appends whole records to its `out` buffer; a key
/// update shows up there as a KEY_UPDATE record before the record asked
/// for. The in-place methods take a `before` buffer for it instead: send
/// `before`, then the frame.
pub struct SendHalf {
    keys: SendKeys,
    next_id: u64,
    current: Option<Outgoing>,
    receipts: Arc<Receipts>,
    done: bool,
    closed: bool,
}

impl SendHalf {
    pub(super) fn new(keys: SendKeys, receipts: Arc<Receipts>) -> Self {
        Self {
            keys,
            next_id: 1,
            current: None,
            receipts,
            done: false,
            closed: false,
        }
    }

    /// Updates the key when these limits say so, from the next record on.
    pub fn set_rekey_limit(&mut self, limit: RekeyLimit) {
        self.keys.set_limit(limit);
    }

    /// Reads the time for the key's age from `clock` (tests move a
    /// [`ManualClock`](super::ManualClock)); the current key counts as made now.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.keys.set_clock(clock);
    }

    /// The epoch of the key in use: 0, then +1 with each KEY_UPDATE sent.
    pub fn epoch(&self) -> u64 {
        self.keys.epoch()
    }

    /// Seals one record, after a key update if one is due.
    fn seal(
        &mut self,
        typ: FrameType,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if self.closed {
            return Err(ProtocolError::Misuse("the session is closed"));
        }
        self.keys.prepare(typ, body.len(), out)?;
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(body);
        out.resize(out.len() + TAG_LEN, 0);
        let sealed = self.keys.seal_in_place(typ, &mut out[start..]);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// Seals a record laid out in place, after a key update (into `before`)
    /// if one is due.
    fn seal_in_place(
        &mut self,
        typ: FrameType,
        frame: &mut [u8],
        before: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if self.closed {
            return Err(ProtocolError::Misuse("the session is closed"));
        }
        let len = frame.len().saturating_sub(HEADER_LEN + TAG_LEN);
        self.keys.prepare(typ, len, before)?;
        self.keys.seal_in_place(typ, frame)
    }

    /// Sends KEY_UPDATE now and moves to the next key, whatever the limits.
    pub fn update_key(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        if self.closed {
            return Err(ProtocolError::Misuse("the session is closed"));
        }
        self.keys.update(out)
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
        let typ = self.check_chunk(data.len())?;
        self.seal(typ, data, out)?;
        self.chunk_sealed(data.len());
        Ok(())
    }

    /// As [`chunk`](Self::chunk), for a buffer laid out as
    /// `[HEADER_LEN bytes][data][TAG_LEN bytes]` that becomes the record, so
    /// that bulk data can be read straight into its place and encrypted
    /// there. A KEY_UPDATE that must go first is appended to `before`.
    pub fn chunk_in_place(
        &mut self,
        frame: &mut [u8],
        before: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let len = frame.len().saturating_sub(HEADER_LEN + TAG_LEN);
        let typ = self.check_chunk(len)?;
        self.seal_in_place(typ, frame, before)?;
        self.chunk_sealed(len);
        Ok(())
    }

    /// The record type for the next chunk of `len` bytes, if it fits.
    fn check_chunk(&self, len: usize) -> Result<FrameType, ProtocolError> {
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
        Ok(if current.remaining == len as u64 {
            FrameType::MessageEnd
        } else {
            FrameType::MessageData
        })
    }

    /// Counts a sealed chunk of `len` bytes.
    fn chunk_sealed(&mut self, len: usize) {
        let current = self.current.expect("checked before sealing");
        let remaining = current.remaining - len as u64;
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

    /// INVITE_PROOF (docs/PROTOCOL.md, 17.3): the initiator's first record.
    pub fn invite_proof(
        &mut self,
        proof: &[u8; 32],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.seal(FrameType::InviteProof, proof, out)
    }

    /// INVITE_RESULT: the responder's first record, after an INVITE_PROOF.
    pub fn invite_result(
        &mut self,
        accepted: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.seal(FrameType::InviteResult, &[u8::from(accepted)], out)
    }

    /// A record that says nothing but "still here".
    pub fn keepalive(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        self.seal(FrameType::Keepalive, &[], out)
    }

    /// Announces that no more messages or offers will start from this side.
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

    /// Seals a file record made by `crate::transfer` (FILE_DATA is better
    /// sent with [`file_data_in_place`](Self::file_data_in_place)).
    pub fn file(
        &mut self,
        record: &FileRecord<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        if matches!(record, FileRecord::Offer(_)) && self.done {
            return Err(ProtocolError::Misuse("DONE was sent; no more offers"));
        }
        if let FileRecord::Data(data) = record
            && (data.is_empty() || data.len() > MAX_RECORD_PLAINTEXT)
        {
            return Err(ProtocolError::Misuse("FILE_DATA of 1 to 262 144 bytes"));
        }
        self.seal(record.frame_type(), &record.encode(), out)
    }

    /// Seals FILE_DATA laid out as `[HEADER_LEN bytes][data][TAG_LEN bytes]`
    /// in place; a KEY_UPDATE that must go first is appended to `before`.
    /// The data must first pass through `transfer::Outgoing::data`, which
    /// hashes and counts it.
    pub fn file_data_in_place(
        &mut self,
        frame: &mut [u8],
        before: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let len = frame.len().saturating_sub(HEADER_LEN + TAG_LEN);
        if len == 0 || len > MAX_RECORD_PLAINTEXT {
            return Err(ProtocolError::Misuse("FILE_DATA of 1 to 262 144 bytes"));
        }
        self.seal_in_place(FrameType::FileData, frame, before)
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

    #[cfg(test)]
    pub(crate) fn keys(&mut self) -> &mut SendKeys {
        &mut self.keys
    }
}
