//! Bodies of the application records (`docs/PROTOCOL.md`, "Records"), as
//! plaintext after decryption. Data chunks carry raw bytes and need no codec.

use super::Reader;
use crate::protocol::{CloseReason, ProtocolError};

/// MESSAGE_START: `id: u64 | length: u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStart {
    /// The message id: 1 for the first message in each direction, then +1.
    pub id: u64,
    /// Total bytes of text in the message's data and end records.
    pub length: u64,
}

impl MessageStart {
    /// The body.
    pub fn encode(&self) -> [u8; 16] {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&self.id.to_be_bytes());
        body[8..].copy_from_slice(&self.length.to_be_bytes());
        body
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("MESSAGE_START", body);
        let start = Self {
            id: r.u64()?,
            length: r.u64()?,
        };
        r.finish()?;
        Ok(start)
    }
}

/// RECEIPT: `id: u64`, every message up to and including `id` was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The highest message id delivered.
    pub id: u64,
}

impl Receipt {
    /// The body.
    pub fn encode(&self) -> [u8; 8] {
        self.id.to_be_bytes()
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("RECEIPT", body);
        let receipt = Self { id: r.u64()? };
        r.finish()?;
        Ok(receipt)
    }
}

/// CLOSE: `reason: u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Why the session ends.
    pub reason: CloseReason,
}

impl Close {
    /// The body.
    pub fn encode(&self) -> [u8; 1] {
        [self.reason.code()]
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("CLOSE", body);
        let close = Self {
            reason: CloseReason::from_code(r.u8()?),
        };
        r.finish()?;
        Ok(close)
    }
}

/// KEY_UPDATE: `epoch: u64`, the epoch of the key that protects the
/// sender's records from the next one on (1 for the first update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUpdate {
    /// The new epoch.
    pub epoch: u64,
}

impl KeyUpdate {
    /// The body.
    pub fn encode(&self) -> [u8; 8] {
        self.epoch.to_be_bytes()
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("KEY_UPDATE", body);
        let update = Self { epoch: r.u64()? };
        r.finish()?;
        Ok(update)
    }
}

/// Checks that a body is empty (KEEPALIVE, DONE).
pub fn decode_empty(what: &'static str, body: &[u8]) -> Result<(), ProtocolError> {
    Reader::new(what, body).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_strictness() {
        let start = MessageStart {
            id: 3,
            length: 1 << 40,
        };
        assert_eq!(MessageStart::decode(&start.encode()).unwrap(), start);
        assert!(MessageStart::decode(&start.encode()[..15]).is_err());
        let receipt = Receipt { id: 9 };
        assert_eq!(Receipt::decode(&receipt.encode()).unwrap(), receipt);
        assert!(Receipt::decode(&[0; 9]).is_err());
        let close = Close {
            reason: CloseReason::Untrusted,
        };
        assert_eq!(Close::decode(&close.encode()).unwrap(), close);
        assert!(Close::decode(&[]).is_err());
        assert!(decode_empty("KEEPALIVE", &[0]).is_err());
        assert!(decode_empty("KEEPALIVE", &[]).is_ok());
        let update = KeyUpdate { epoch: 1 << 40 };
        assert_eq!(KeyUpdate::decode(&update.encode()).unwrap(), update);
        assert!(KeyUpdate::decode(&[0; 7]).is_err());
        assert!(KeyUpdate::decode(&[0; 9]).is_err());
    }
}
