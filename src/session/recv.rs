//! The receiving half of a session: authenticates records in order under
//! the peer's current key, follows its key updates, and enforces the
//! session rules for messages, receipts, DONE and CLOSE. File records are
//! decoded here and checked against the transfer rules by
//! `crate::transfer`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::key_update::RecvKeys;
use super::{Event, Receipts};
use crate::protocol::ProtocolError;
use crate::wire::FrameType;
use crate::wire::file::FileRecord;
use crate::wire::record::{self, Close, KeyUpdate, MessageStart, Receipt};

/// A message being received.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    id: u64,
    remaining: u64,
}

/// The receiving direction: authenticates records in order and enforces the
/// session rules.
pub struct RecvHalf {
    keys: RecvKeys,
    receipts: Arc<Receipts>,
    max_message: u64,
    expected_id: u64,
    current: Option<Incoming>,
    peer_done: bool,
    closed: bool,
    failed: bool,
    /// Whether a record was opened yet (the invite records come first).
    opened: bool,
}

impl RecvHalf {
    pub(super) fn new(keys: RecvKeys, receipts: Arc<Receipts>) -> Self {
        Self {
            keys,
            receipts,
            max_message: crate::protocol::DEFAULT_MAX_MESSAGE,
            expected_id: 1,
            current: None,
            peer_done: false,
            closed: false,
            failed: false,
            opened: false,
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

    /// The epoch of the peer's key in use: 0, then +1 with each KEY_UPDATE.
    pub fn epoch(&self) -> u64 {
        self.keys.epoch()
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
        let (typ, body) = self.keys.open(frame)?;
        let body: &'f [u8] = body;
        let first = !std::mem::replace(&mut self.opened, true);
        let Some(typ) = FrameType::from_byte(typ) else {
            return Err(ProtocolError::PeerMisbehaved("unexpected record type"));
        };
        match typ {
            FrameType::MessageStart => self.message_start(MessageStart::decode(body)?),
            FrameType::MessageData => {
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
            FrameType::MessageEnd => {
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
            FrameType::Receipt => {
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
            FrameType::Keepalive => {
                record::decode_empty("KEEPALIVE", body)?;
                Ok(Event::Keepalive)
            }
            FrameType::Done => {
                record::decode_empty("DONE", body)?;
                if self.current.is_some() || self.peer_done {
                    return Err(ProtocolError::PeerMisbehaved(
                        "DONE inside a message or twice",
                    ));
                }
                self.peer_done = true;
                Ok(Event::Done)
            }
            FrameType::Close => {
                let close = Close::decode(body)?;
                self.closed = true;
                Ok(Event::Close {
                    reason: close.reason,
                    abandoned: self.current.take().map(|c| c.id),
                })
            }
            FrameType::KeyUpdate => {
                let update = KeyUpdate::decode(body)?;
                self.keys.update(update.epoch)?;
                Ok(Event::KeyUpdate {
                    epoch: update.epoch,
                })
            }
            FrameType::FileOffer
            | FrameType::FileAccept
            | FrameType::FileReject
            | FrameType::FileStart
            | FrameType::FileData
            | FrameType::FileEnd
            | FrameType::FileVerdict
            | FrameType::FileCancel => {
                let record = FileRecord::decode(typ, body)?;
                if matches!(record, FileRecord::Offer(_)) && self.peer_done {
                    return Err(ProtocolError::PeerMisbehaved("offer after DONE"));
                }
                Ok(Event::File(record))
            }
            FrameType::InviteProof => match <[u8; 32]>::try_from(body) {
                Ok(proof) if first => Ok(Event::InviteProof(proof)),
                Ok(_) => Err(ProtocolError::PeerMisbehaved(
                    "INVITE_PROOF after the first record",
                )),
                Err(_) => Err(ProtocolError::Malformed {
                    what: "INVITE_PROOF",
                    problem: "the body must be 32 bytes",
                }),
            },
            FrameType::InviteResult => match body {
                [accepted @ (0 | 1)] if first => Ok(Event::InviteResult(*accepted == 1)),
                [0 | 1] => Err(ProtocolError::PeerMisbehaved(
                    "INVITE_RESULT after the first record",
                )),
                _ => Err(ProtocolError::Malformed {
                    what: "INVITE_RESULT",
                    problem: "the body must be one byte, 0 or 1",
                }),
            },
            FrameType::ClientHello
            | FrameType::ServerHello
            | FrameType::KeyTransport
            | FrameType::ResponderIdentity
            | FrameType::ResponderAuth
            | FrameType::InitiatorIdentity
            | FrameType::InitiatorAuth
            | FrameType::Refusal => Err(ProtocolError::PeerMisbehaved("unexpected record type")),
        }
    }

    fn message_start<'f>(&mut self, start: MessageStart) -> Result<Event<'f>, ProtocolError> {
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

    #[cfg(test)]
    pub(crate) fn keys(&mut self) -> &mut RecvKeys {
        &mut self.keys
    }
}
