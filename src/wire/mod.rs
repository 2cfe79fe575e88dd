//! The wire format: frames, frame types and message bodies, with strict
//! decoding. Pure: bytes in, values out.
//!
//! Every decoder checks each length against what remains before taking it
//! and rejects trailing bytes; nothing is allocated from a length the peer
//! chose without first checking it against a fixed limit.

pub mod file;
pub mod frame;
pub mod handshake;
pub mod record;
pub mod relay;

pub use frame::{FrameDecoder, HEADER_LEN};

use crate::protocol::ProtocolError;

/// The type byte of a frame (`docs/PROTOCOL.md`, "Frame types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Initiator's first message, plaintext.
    ClientHello = 0x01,
    /// Responder's first message, plaintext.
    ServerHello = 0x02,
    /// The wrapped session secret, plaintext.
    KeyTransport = 0x03,
    /// Responder's identity key and nickname, encrypted.
    ResponderIdentity = 0x04,
    /// Responder's transcript signature, encrypted.
    ResponderAuth = 0x05,
    /// Initiator's identity key and nickname, encrypted.
    InitiatorIdentity = 0x06,
    /// Initiator's transcript signature, encrypted.
    InitiatorAuth = 0x07,
    /// Responder's refusal before the handshake, plaintext.
    Refusal = 0x0F,
    /// Start of a message: id and length, encrypted.
    MessageStart = 0x10,
    /// A chunk of a message, encrypted.
    MessageData = 0x11,
    /// The last chunk of a message, encrypted.
    MessageEnd = 0x12,
    /// Delivery receipt, encrypted.
    Receipt = 0x13,
    /// Nothing to say, still here; encrypted.
    Keepalive = 0x14,
    /// End of the session, encrypted.
    Close = 0x15,
    /// No more messages from this side, encrypted.
    Done = 0x16,
    /// The last record under the sender's current key, encrypted.
    KeyUpdate = 0x17,
    /// An offer of files: the manifest, encrypted.
    FileOffer = 0x18,
    /// The receiver accepts an offer, with resume proposals; encrypted.
    FileAccept = 0x19,
    /// The receiver declines an offer; encrypted.
    FileReject = 0x1A,
    /// Where one file's data starts; encrypted.
    FileStart = 0x1B,
    /// A chunk of the current file, encrypted.
    FileData = 0x1C,
    /// The end of the current file and its SHA-256, encrypted.
    FileEnd = 0x1D,
    /// The receiver's verdict on one file, encrypted.
    FileVerdict = 0x1E,
    /// Either side stops an offer; encrypted.
    FileCancel = 0x1F,
    /// A joiner's proof that it holds a one-time invite's secret; encrypted.
    InviteProof = 0x20,
    /// The inviter's answer to an INVITE_PROOF; encrypted.
    InviteResult = 0x21,
}

impl FrameType {
    /// The type for a byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::ClientHello,
            0x02 => Self::ServerHello,
            0x03 => Self::KeyTransport,
            0x04 => Self::ResponderIdentity,
            0x05 => Self::ResponderAuth,
            0x06 => Self::InitiatorIdentity,
            0x07 => Self::InitiatorAuth,
            0x0F => Self::Refusal,
            0x10 => Self::MessageStart,
            0x11 => Self::MessageData,
            0x12 => Self::MessageEnd,
            0x13 => Self::Receipt,
            0x14 => Self::Keepalive,
            0x15 => Self::Close,
            0x16 => Self::Done,
            0x17 => Self::KeyUpdate,
            0x18 => Self::FileOffer,
            0x19 => Self::FileAccept,
            0x1A => Self::FileReject,
            0x1B => Self::FileStart,
            0x1C => Self::FileData,
            0x1D => Self::FileEnd,
            0x1E => Self::FileVerdict,
            0x1F => Self::FileCancel,
            0x20 => Self::InviteProof,
            0x21 => Self::InviteResult,
            _ => return None,
        })
    }
}

/// A cursor over a message body that refuses to read past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `bytes`, naming `what` in errors.
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self { bytes, what }
    }

    /// An error about this message.
    pub fn malformed(&self, problem: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            what: self.what,
            problem,
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.bytes.len() {
            return Err(self.malformed("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A field with a `u8` length prefix.
    pub fn opaque8(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u8()?;
        self.take(n.into())
    }

    /// A field with a `u16` length prefix.
    pub fn opaque16(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u16()?;
        self.take(n.into())
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }
}

/// Appends `field` with a `u16` length prefix.
pub fn put_opaque16(out: &mut Vec<u8>, field: &[u8]) {
    let len = u16::try_from(field.len()).expect("field fits a u16 length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// Appends `field` with a `u8` length prefix.
pub fn put_opaque8(out: &mut Vec<u8>, field: &[u8]) {
    let len = u8::try_from(field.len()).expect("field fits a u8 length");
    out.push(len);
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_checks_every_length() {
        let mut r = Reader::new("test", &[0, 3, 1, 2]);
        assert!(r.opaque16().is_err(), "length 3 with 2 bytes left");
        let mut r = Reader::new("test", &[0, 2, 1, 2, 9]);
        assert_eq!(r.opaque16().unwrap(), &[1, 2]);
        assert_eq!(
            r.finish().unwrap_err(),
            ProtocolError::Malformed {
                what: "test",
                problem: "trailing bytes"
            }
        );
        assert!(Reader::new("test", &[1]).u16().is_err());
        assert!(Reader::new("test", &[]).u8().is_err());
    }

    #[test]
    fn frame_type_bytes_round_trip() {
        let mut known = 0;
        for byte in 0..=255u8 {
            if let Some(t) = FrameType::from_byte(byte) {
                assert_eq!(t as u8, byte);
                known += 1;
            }
        }
        assert_eq!(
            known,
            8 + 16 + 2,
            "eight handshake types, 0x10 to 0x1F after it, and the two invite records"
        );
    }
}
