//! Frames: `length: u32 | type: u8 | body`, where `length` counts the type
//! byte and the body. The decoder takes bytes as they arrive and hands out
//! whole frames, checking each length against the current limit before it
//! reserves a byte of memory for the frame.
//!
//! A frame of length 0 has no type byte. The decoder hands it out as its 4
//! bytes of header, because what it is depends on where it comes
//! (`docs/PROTOCOL.md`, section 4): where a record is expected, the record
//! layer refuses it as an authentication failure, like any record shorter
//! than 17 bytes; where a plaintext frame is expected, [`parse`] refuses it
//! as malformed (the handshake calls the first frame's defects "not a chat
//! peer").

use super::FrameType;
use crate::protocol::ProtocolError;

/// Bytes before a frame's body: the length and the type.
pub const HEADER_LEN: usize = 5;

/// The least free space [`FrameDecoder::spare`] offers for a read.
const MIN_READ: usize = 16 * 1024;

/// The header of a frame whose type and body together are `length` bytes.
pub fn header(typ: FrameType, body_len: usize) -> [u8; HEADER_LEN] {
    let length = u32::try_from(body_len + 1).expect("frame length fits a u32");
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&length.to_be_bytes());
    header[4] = typ as u8;
    header
}

/// A whole plaintext frame.
pub fn encode(typ: FrameType, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header(typ, body.len()));
    frame.extend_from_slice(body);
    frame
}

/// Splits a whole frame into its type byte and body, checking that it is
/// exactly as long as its length field says.
pub fn parse(frame: &[u8]) -> Result<(u8, &[u8]), ProtocolError> {
    let malformed = |problem| ProtocolError::Malformed {
        what: "frame",
        problem,
    };
    let (length, rest) = frame
        .split_first_chunk::<4>()
        .ok_or(malformed("truncated header"))?;
    if u32::from_be_bytes(*length) as usize != rest.len() {
        return Err(malformed("length field does not match the frame"));
    }
    let (typ, body) = rest.split_first().ok_or(malformed("zero length"))?;
    Ok((*typ, body))
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    limit: u32,
}

impl FrameDecoder {
    /// A decoder that refuses frames whose `length` exceeds `limit`.
    pub fn new(limit: u32) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            limit,
        }
    }

    /// Changes the length limit, e.g. once the handshake is over.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The bytes received and not yet returned as frames.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether a frame has been started but not completed.
    pub fn is_mid_frame(&self) -> bool {
        self.buffered() > 0
    }

    /// Total size (header included) of the frame at the front, once its
    /// length is known and within the limit.
    fn front_frame_len(&self) -> Result<Option<usize>, ProtocolError> {
        let pending = &self.buf[self.start..self.end];
        let Some(length) = pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*length);
        if length > self.limit {
            return Err(ProtocolError::FrameTooLarge {
                length,
                limit: self.limit,
            });
        }
        Ok(Some(4 + length as usize))
    }

    /// Free space to read the next bytes into; report how many arrived with
    /// [`filled`](Self::filled). Grows the buffer only as far as the frame
    /// being received needs, so memory stays below `limit` plus 16 KiB.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // How many bytes we want room for, counted from the front frame.
        let frame_len = self.front_frame_len().ok().flatten().unwrap_or(0);
        let read_size = MIN_READ.min(self.limit as usize + 4);
        let need = frame_len.max(self.buffered() + read_size);
        if self.start > 0 && self.buf.len() - self.start < need {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.start < need {
            self.buf.resize(self.start + need, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written at the start of [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "filled more than spare");
        self.end += n;
    }

    /// Copies `data` in (for callers that already hold the bytes).
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(data.len());
            spare[..n].copy_from_slice(&data[..n]);
            self.filled(n);
            data = &data[n..];
        }
    }

    /// The type byte of the frame at the front, once it has arrived (a
    /// record's type byte is in the clear; it is authenticated when the
    /// record is opened).
    pub fn front_type(&self) -> Option<u8> {
        self.buf[self.start..self.end].get(4).copied()
    }

    /// Whether a whole frame has arrived (an error if the next one is invalid).
    pub fn has_frame(&self) -> Result<bool, ProtocolError> {
        Ok(matches!(self.front_frame_len()?, Some(len) if self.buffered() >= len))
    }

    /// The next whole frame (header included), if one has arrived. The frame
    /// is mutable so that records can be decrypted in place. A frame of
    /// length 0 comes out as its 4 bytes of header, for whoever interprets
    /// it to refuse (see the module's documentation).
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, ProtocolError> {
        match self.front_frame_len()? {
            Some(len) if self.buffered() >= len => {
                let frame = &mut self.buf[self.start..self.start + len];
                self.start += len;
                Ok(Some(frame))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push(frame.to_vec());
        }
        out
    }

    #[test]
    fn splits_a_stream_fed_one_byte_at_a_time() {
        let a = encode(FrameType::ClientHello, b"hello");
        let b = encode(FrameType::Keepalive, b"");
        let stream = [a.clone(), b.clone()].concat();
        let mut decoder = FrameDecoder::new(100);
        let mut got = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            got.extend(frames(&mut decoder));
        }
        assert_eq!(got, vec![a, b]);
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn refuses_oversized_frames_before_allocating() {
        let mut decoder = FrameDecoder::new(4096);
        decoder.push(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            decoder.next_frame().unwrap_err(),
            ProtocolError::FrameTooLarge {
                length: u32::MAX,
                limit: 4096
            }
        );
        // Asking for space again does not grow the buffer toward 4 GiB.
        assert!(decoder.spare().len() < 64 * 1024);
    }

    /// A frame of length 0 is not the decoder's to judge (section 4: an
    /// authentication failure where a record is expected, malformed where
    /// a plaintext frame is): it comes out as its header, which `parse`
    /// refuses, and the frames after it still come out.
    #[test]
    fn an_empty_frame_comes_out_as_its_header_for_the_caller_to_refuse() {
        let mut decoder = FrameDecoder::new(4096);
        let after = encode(FrameType::ClientHello, b"x");
        decoder.push(&[0, 0, 0, 0]);
        decoder.push(&after);
        let empty = decoder.next_frame().unwrap().unwrap().to_vec();
        assert_eq!(empty, [0, 0, 0, 0]);
        assert_eq!(
            parse(&empty).unwrap_err(),
            ProtocolError::Malformed {
                what: "frame",
                problem: "zero length"
            }
        );
        assert_eq!(decoder.next_frame().unwrap().unwrap(), &after[..]);
    }

    #[test]
    fn memory_stays_bounded_while_streaming_large_frames() {
        let limit = 300_000;
        let mut decoder = FrameDecoder::new(limit);
        let frame = encode(FrameType::MessageData, &vec![7u8; 200_000]);
        for _ in 0..50 {
            let mut rest = &frame[..];
            while !rest.is_empty() {
                let spare = decoder.spare();
                let n = spare.len().min(rest.len()).min(40_000);
                spare[..n].copy_from_slice(&rest[..n]);
                decoder.filled(n);
                rest = &rest[n..];
                while let Some(got) = decoder.next_frame().unwrap() {
                    assert_eq!(got.len(), frame.len());
                }
            }
            assert!(decoder.buf.len() <= limit as usize + 4 + MIN_READ);
        }
    }
}
