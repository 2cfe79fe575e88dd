//! Bodies of the file records (`docs/PROTOCOL.md`, section 9), as plaintext
//! after decryption. Decoding here is structural: lengths, counts, ranges
//! and UTF-8. Whether an offer's names are safe, and whether a record fits
//! the state of a transfer, is decided in `crate::transfer`.

use std::fmt;

use super::{FrameType, Reader, put_opaque8};
use crate::protocol::{MAX_OFFER_ENTRIES, MAX_PATH_DEPTH, MAX_RECORD_PLAINTEXT, ProtocolError};

/// The smallest encoded entry: `size`, `depth` and one empty component.
const MIN_ENTRY_LEN: usize = 8 + 1 + 1;

/// One resume proposal in FILE_ACCEPT: `entry`, `offset`, `prefix_sha256`.
const RESUME_LEN: usize = 2 + 8 + 32;

/// One file of an offer: its path (one component for a file on its own,
/// more inside a folder) and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The path, one string per component, outermost first.
    pub path: Vec<String>,
    /// The size in bytes.
    pub size: u64,
}

/// FILE_OFFER: `offer: u64 | count: u16 | entry[count]`, each entry
/// `size: u64 | depth: u8 | component: opaque8<UTF-8>[depth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offer id: 1 for the first offer in each direction, then +1.
    pub id: u64,
    /// The files, 1 to [`MAX_OFFER_ENTRIES`].
    pub entries: Vec<Entry>,
}

impl Offer {
    /// The body. Panics if a count or length does not fit its field; an
    /// offer built by `crate::transfer` always fits.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.encoded_len());
        body.extend_from_slice(&self.id.to_be_bytes());
        let count = u16::try_from(self.entries.len()).expect("entry count fits a u16");
        body.extend_from_slice(&count.to_be_bytes());
        for entry in &self.entries {
            body.extend_from_slice(&entry.size.to_be_bytes());
            body.push(u8::try_from(entry.path.len()).expect("depth fits a u8"));
            for component in &entry.path {
                put_opaque8(&mut body, component.as_bytes());
            }
        }
        body
    }

    /// The length of [`encode`](Self::encode)'s result.
    pub fn encoded_len(&self) -> usize {
        8 + 2
            + self
                .entries
                .iter()
                .map(|e| 8 + 1 + e.path.iter().map(|c| 1 + c.len()).sum::<usize>())
                .sum::<usize>()
    }

    /// Decodes a body: 1 to [`MAX_OFFER_ENTRIES`] entries, each with 1 to
    /// [`MAX_PATH_DEPTH`] components of UTF-8, sizes whose sum fits a `u64`.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_OFFER", body);
        let id = r.u64()?;
        let count = usize::from(r.u16()?);
        if !(1..=MAX_OFFER_ENTRIES).contains(&count) {
            return Err(r.malformed("entry count is 0 or over 4096"));
        }
        // Never more room than the body could fill.
        let mut entries = Vec::with_capacity(count.min(r.remaining() / MIN_ENTRY_LEN));
        let mut total = 0u64;
        for _ in 0..count {
            let size = r.u64()?;
            total = total
                .checked_add(size)
                .ok_or(r.malformed("the sizes add up to more than 2^64 - 1"))?;
            let depth = usize::from(r.u8()?);
            if !(1..=MAX_PATH_DEPTH).contains(&depth) {
                return Err(r.malformed("path depth is 0 or over 32"));
            }
            let mut path = Vec::with_capacity(depth);
            for _ in 0..depth {
                let component = std::str::from_utf8(r.opaque8()?)
                    .map_err(|_| r.malformed("a name is not UTF-8"))?;
                path.push(component.to_owned());
            }
            entries.push(Entry { path, size });
        }
        r.finish()?;
        Ok(Self { id, entries })
    }
}

/// A resume proposal in FILE_ACCEPT: the receiver holds the first `offset`
/// bytes of entry `entry`, whose SHA-256 is `prefix_sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The entry's index in the offer.
    pub entry: u16,
    /// How many bytes the receiver holds: at least 1.
    pub offset: u64,
    /// SHA-256 of those bytes, the file's bytes 0 to `offset - 1`.
    pub prefix_sha256: [u8; 32],
}

/// FILE_ACCEPT: `offer: u64 | count: u16 | resume[count]`, each
/// `entry: u16 | offset: u64 | prefix_sha256[32]`, entries strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The offer accepted.
    pub id: u64,
    /// Resume proposals, by increasing entry index.
    pub resume: Vec<Resume>,
}

impl Accept {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(8 + 2 + RESUME_LEN * self.resume.len());
        body.extend_from_slice(&self.id.to_be_bytes());
        let count = u16::try_from(self.resume.len()).expect("count fits a u16");
        body.extend_from_slice(&count.to_be_bytes());
        for resume in &self.resume {
            body.extend_from_slice(&resume.entry.to_be_bytes());
            body.extend_from_slice(&resume.offset.to_be_bytes());
            body.extend_from_slice(&resume.prefix_sha256);
        }
        body
    }

    /// Decodes a body: at most [`MAX_OFFER_ENTRIES`] proposals, entries
    /// strictly increasing, offsets at least 1.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_ACCEPT", body);
        let id = r.u64()?;
        let count = usize::from(r.u16()?);
        if count > MAX_OFFER_ENTRIES {
            return Err(r.malformed("more than 4096 resume proposals"));
        }
        let mut resume: Vec<Resume> = Vec::with_capacity(count.min(r.remaining() / RESUME_LEN));
        for _ in 0..count {
            let proposal = Resume {
                entry: r.u16()?,
                offset: r.u64()?,
                prefix_sha256: r.array()?,
            };
            if proposal.offset == 0 {
                return Err(r.malformed("a resume offset is 0"));
            }
            if resume
                .last()
                .is_some_and(|last| last.entry >= proposal.entry)
            {
                return Err(r.malformed("resume entries are not strictly increasing"));
            }
            resume.push(proposal);
        }
        r.finish()?;
        Ok(Self { id, resume })
    }
}

/// Why a receiver declines an offer (FILE_REJECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Its user said no.
    Declined,
    /// Nobody answered within 10 minutes.
    Expired,
    /// A name breaks the name rules (section 9.3).
    UnsafeName,
    /// Larger than the receiver accepts, or than its free space.
    TooLarge,
    /// The receiver takes no files from this peer (no consent possible).
    NotAccepting,
    /// Where the receiver would save an entry, something already there
    /// has its name, or the name of a folder on its path (section 9.7).
    NameTaken,
    /// A code this implementation does not know (0 among them).
    Other(u8),
}

impl RejectReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Declined => 1,
            Self::Expired => 2,
            Self::UnsafeName => 3,
            Self::TooLarge => 4,
            Self::NotAccepting => 5,
            Self::NameTaken => 6,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Declined,
            2 => Self::Expired,
            3 => Self::UnsafeName,
            4 => Self::TooLarge,
            5 => Self::NotAccepting,
            6 => Self::NameTaken,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Declined => f.write_str("declined"),
            Self::Expired => f.write_str("not answered within 10 minutes"),
            Self::UnsafeName => f.write_str("a file name is not safe to create"),
            Self::TooLarge => f.write_str("too large"),
            Self::NotAccepting => f.write_str("the peer does not accept files from us"),
            Self::NameTaken => f.write_str("a file name is already taken where the peer saves"),
            Self::Other(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// FILE_REJECT: `offer: u64 | reason: u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The offer declined.
    pub id: u64,
    /// Why.
    pub reason: RejectReason,
}

impl Reject {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.id.to_be_bytes().to_vec();
        body.push(self.reason.code());
        body
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_REJECT", body);
        let reject = Self {
            id: r.u64()?,
            reason: RejectReason::from_code(r.u8()?),
        };
        r.finish()?;
        Ok(reject)
    }
}

/// FILE_START: `offer: u64 | entry: u16 | offset: u64`, the file's data
/// follows from byte `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The offer.
    pub id: u64,
    /// The entry's index in the offer.
    pub entry: u16,
    /// Where the data starts: 0, or the receiver's proposed offset.
    pub offset: u64,
}

impl Start {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(18);
        body.extend_from_slice(&self.id.to_be_bytes());
        body.extend_from_slice(&self.entry.to_be_bytes());
        body.extend_from_slice(&self.offset.to_be_bytes());
        body
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_START", body);
        let start = Self {
            id: r.u64()?,
            entry: r.u16()?,
            offset: r.u64()?,
        };
        r.finish()?;
        Ok(start)
    }
}

/// FILE_END: `sha256[32]`, the SHA-256 of the whole file (bytes 0 to
/// `size - 1`, whatever the FILE_START offset was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The digest.
    pub sha256: [u8; 32],
}

impl End {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        self.sha256.to_vec()
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_END", body);
        let end = Self { sha256: r.array()? };
        r.finish()?;
        Ok(end)
    }
}

/// The receiver's verdict on one file (FILE_VERDICT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The SHA-256 matched and the file is saved under its final name.
    Saved,
    /// The SHA-256 did not match; nothing was saved and the partial is gone.
    HashMismatch,
    /// The SHA-256 matched but the file could not be written or renamed.
    WriteFailed,
    /// The SHA-256 matched but something already in the receiver's save
    /// folder has the file's name, or that of a folder on its path: nothing
    /// was replaced, nothing saved.
    NameTaken,
    /// A code this implementation does not know: the file was not saved.
    Other(u8),
}

impl Verdict {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Saved => 0,
            Self::HashMismatch => 1,
            Self::WriteFailed => 2,
            Self::NameTaken => 3,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Saved,
            1 => Self::HashMismatch,
            2 => Self::WriteFailed,
            3 => Self::NameTaken,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Saved => f.write_str("saved, SHA-256 verified"),
            Self::HashMismatch => f.write_str("not saved: the SHA-256 did not match"),
            Self::WriteFailed => f.write_str("not saved: the receiver could not write it"),
            Self::NameTaken => f.write_str(
                "not saved: the receiver already has something under that name, which it does \
                 not replace",
            ),
            Self::Other(code) => write!(f, "not saved: unknown verdict {code}"),
        }
    }
}

/// FILE_VERDICT: `offer: u64 | entry: u16 | verdict: u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVerdict {
    /// The offer.
    pub id: u64,
    /// The entry's index in the offer.
    pub entry: u16,
    /// What became of it.
    pub verdict: Verdict,
}

impl FileVerdict {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(11);
        body.extend_from_slice(&self.id.to_be_bytes());
        body.extend_from_slice(&self.entry.to_be_bytes());
        body.push(self.verdict.code());
        body
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_VERDICT", body);
        let verdict = Self {
            id: r.u64()?,
            entry: r.u16()?,
            verdict: Verdict::from_code(r.u8()?),
        };
        r.finish()?;
        Ok(verdict)
    }
}

/// Whose offer a FILE_CANCEL is about, seen from the side that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelSide {
    /// 0: the offer is the canceller's own: it was sending the files.
    Sender,
    /// 1: the offer is the other side's: the canceller was receiving them.
    Receiver,
}

/// Why an offer was cancelled (FILE_CANCEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// 0: the answer to the other side's FILE_CANCEL.
    Answer,
    /// 1: the user cancelled.
    User,
    /// 2: the sender could not read a file (or it changed while being sent).
    ReadFailed,
    /// 3: the receiver could not write a file.
    WriteFailed,
    /// A code this implementation does not know.
    Other(u8),
}

impl CancelReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Answer => 0,
            Self::User => 1,
            Self::ReadFailed => 2,
            Self::WriteFailed => 3,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Answer,
            1 => Self::User,
            2 => Self::ReadFailed,
            3 => Self::WriteFailed,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answer => f.write_str("answering a cancel"),
            Self::User => f.write_str("cancelled by the user"),
            Self::ReadFailed => f.write_str("a file could not be read"),
            Self::WriteFailed => f.write_str("a file could not be written"),
            Self::Other(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// FILE_CANCEL: `offer: u64 | side: u8 | reason: u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel {
    /// The offer.
    pub id: u64,
    /// Whose offer it is, seen from the canceller.
    pub side: CancelSide,
    /// Why.
    pub reason: CancelReason,
}

impl Cancel {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(10);
        body.extend_from_slice(&self.id.to_be_bytes());
        body.push(match self.side {
            CancelSide::Sender => 0,
            CancelSide::Receiver => 1,
        });
        body.push(self.reason.code());
        body
    }

    /// Decodes a body: `side` is 0 or 1.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new("FILE_CANCEL", body);
        let id = r.u64()?;
        let side = match r.u8()? {
            0 => CancelSide::Sender,
            1 => CancelSide::Receiver,
            _ => return Err(r.malformed("side is neither 0 nor 1")),
        };
        let reason = CancelReason::from_code(r.u8()?);
        r.finish()?;
        Ok(Self { id, side, reason })
    }
}

/// Any file record, decoded. FILE_DATA borrows the decrypted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRecord<'a> {
    /// FILE_OFFER.
    Offer(Offer),
    /// FILE_ACCEPT.
    Accept(Accept),
    /// FILE_REJECT.
    Reject(Reject),
    /// FILE_START.
    Start(Start),
    /// FILE_DATA: 1 to 262 144 bytes of the current file.
    Data(&'a [u8]),
    /// FILE_END.
    End(End),
    /// FILE_VERDICT.
    Verdict(FileVerdict),
    /// FILE_CANCEL.
    Cancel(Cancel),
}

impl<'a> FileRecord<'a> {
    /// The record's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Offer(_) => FrameType::FileOffer,
            Self::Accept(_) => FrameType::FileAccept,
            Self::Reject(_) => FrameType::FileReject,
            Self::Start(_) => FrameType::FileStart,
            Self::Data(_) => FrameType::FileData,
            Self::End(_) => FrameType::FileEnd,
            Self::Verdict(_) => FrameType::FileVerdict,
            Self::Cancel(_) => FrameType::FileCancel,
        }
    }

    /// The plaintext body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Offer(r) => r.encode(),
            Self::Accept(r) => r.encode(),
            Self::Reject(r) => r.encode(),
            Self::Start(r) => r.encode(),
            Self::Data(data) => data.to_vec(),
            Self::End(r) => r.encode(),
            Self::Verdict(r) => r.encode(),
            Self::Cancel(r) => r.encode(),
        }
    }

    /// Decodes the body of a record of type `typ`, which must be a file
    /// record type.
    pub fn decode(typ: FrameType, body: &'a [u8]) -> Result<Self, ProtocolError> {
        Ok(match typ {
            FrameType::FileOffer => Self::Offer(Offer::decode(body)?),
            FrameType::FileAccept => Self::Accept(Accept::decode(body)?),
            FrameType::FileReject => Self::Reject(Reject::decode(body)?),
            FrameType::FileStart => Self::Start(Start::decode(body)?),
            FrameType::FileData => {
                let problem = if body.is_empty() {
                    "empty"
                } else if body.len() > MAX_RECORD_PLAINTEXT {
                    "longer than a record may be"
                } else {
                    ""
                };
                if !problem.is_empty() {
                    return Err(ProtocolError::Malformed {
                        what: "FILE_DATA",
                        problem,
                    });
                }
                Self::Data(body)
            }
            FrameType::FileEnd => Self::End(End::decode(body)?),
            FrameType::FileVerdict => Self::Verdict(FileVerdict::decode(body)?),
            FrameType::FileCancel => Self::Cancel(Cancel::decode(body)?),
            _ => return Err(ProtocolError::Misuse("not a file record type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer() -> Offer {
        Offer {
            id: 3,
            entries: vec![
                Entry {
                    path: vec!["report.pdf".into()],
                    size: 2_200_000,
                },
                Entry {
                    path: vec!["photos".into(), "2024".into(), "été.jpg".into()],
                    size: 0,
                },
            ],
        }
    }

    fn every_record() -> Vec<FileRecord<'static>> {
        vec![
            FileRecord::Offer(offer()),
            FileRecord::Accept(Accept {
                id: 3,
                resume: vec![Resume {
                    entry: 0,
                    offset: 1 << 20,
                    prefix_sha256: [9; 32],
                }],
            }),
            FileRecord::Reject(Reject {
                id: 3,
                reason: RejectReason::Expired,
            }),
            FileRecord::Start(Start {
                id: 3,
                entry: 1,
                offset: 0,
            }),
            FileRecord::Data(b"bytes"),
            FileRecord::End(End { sha256: [7; 32] }),
            FileRecord::Verdict(FileVerdict {
                id: 3,
                entry: 1,
                verdict: Verdict::HashMismatch,
            }),
            FileRecord::Cancel(Cancel {
                id: 3,
                side: CancelSide::Receiver,
                reason: CancelReason::WriteFailed,
            }),
        ]
    }

    #[test]
    fn every_record_round_trips_and_refuses_truncation_and_trailing_bytes() {
        for record in every_record() {
            let typ = record.frame_type();
            let body = record.encode();
            assert_eq!(FileRecord::decode(typ, &body).unwrap(), record);
            if typ == FrameType::FileData {
                continue;
            }
            for cut in 0..body.len() {
                assert!(
                    FileRecord::decode(typ, &body[..cut]).is_err(),
                    "{typ:?} accepted a truncation at {cut}"
                );
            }
            let longer = [body, vec![0]].concat();
            assert!(FileRecord::decode(typ, &longer).is_err(), "{typ:?}");
        }
    }

    #[test]
    fn offer_layout_is_byte_exact() {
        let body = Offer {
            id: 1,
            entries: vec![Entry {
                path: vec!["a".into(), "bc".into()],
                size: 5,
            }],
        }
        .encode();
        assert_eq!(
            body,
            [
                &[0, 0, 0, 0, 0, 0, 0, 1][..],
                &[0, 1],
                &[0, 0, 0, 0, 0, 0, 0, 5],
                &[2, 1, b'a', 2, b'b', b'c'],
            ]
            .concat()
        );
        assert_eq!(offer().encoded_len(), offer().encode().len());
    }

    #[test]
    fn offer_counts_and_strings_are_bounded() {
        let with = |count: u16, depth: u8, component: &[u8]| {
            let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
            body.extend_from_slice(&count.to_be_bytes());
            for _ in 0..count {
                body.extend_from_slice(&[0; 8]);
                body.push(depth);
                for _ in 0..depth {
                    body.push(component.len() as u8);
                    body.extend_from_slice(component);
                }
            }
            Offer::decode(&body)
        };
        assert!(with(1, 1, b"x").is_ok());
        assert!(with(0, 1, b"x").is_err(), "no entries");
        assert!(with(4096, 1, b"x").is_ok());
        assert!(with(4097, 1, b"x").is_err(), "too many entries");
        assert!(with(1, 0, b"x").is_err(), "no components");
        assert!(with(1, 32, b"x").is_ok());
        assert!(with(1, 33, b"x").is_err(), "too deep");
        assert!(with(1, 1, b"\xff").is_err(), "not UTF-8");
        // A count that the body cannot hold is refused without allocating for it.
        assert!(Offer::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0]).is_err());
        // Sizes that overflow together.
        let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
        for _ in 0..2 {
            body.extend_from_slice(&[0xff; 8]);
            body.extend_from_slice(&[1, 1, b'x']);
        }
        assert!(Offer::decode(&body).is_err());
    }

    #[test]
    fn accept_proposals_are_strictly_ordered_and_nonzero() {
        let accept = |proposals: &[(u16, u64)]| {
            Accept {
                id: 1,
                resume: proposals
                    .iter()
                    .map(|&(entry, offset)| Resume {
                        entry,
                        offset,
                        prefix_sha256: [0; 32],
                    })
                    .collect(),
            }
            .encode()
        };
        assert!(Accept::decode(&accept(&[])).is_ok());
        assert!(Accept::decode(&accept(&[(0, 1), (5, 9)])).is_ok());
        assert!(Accept::decode(&accept(&[(5, 1), (5, 9)])).is_err());
        assert!(Accept::decode(&accept(&[(5, 1), (4, 9)])).is_err());
        assert!(Accept::decode(&accept(&[(0, 0)])).is_err());
    }

    #[test]
    fn cancel_side_and_data_length_are_checked() {
        assert!(Cancel::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 1]).is_err());
        assert_eq!(
            Cancel::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 9]).unwrap(),
            Cancel {
                id: 1,
                side: CancelSide::Sender,
                reason: CancelReason::Other(9)
            }
        );
        assert!(FileRecord::decode(FrameType::FileData, &[]).is_err());
        assert!(FileRecord::decode(FrameType::Keepalive, &[]).is_err());
    }

    /// The codes of docs/PROTOCOL.md 9.2: verdict 3 and reject reason 6
    /// (a name taken where the receiver saves, 9.7); reject reason 0 is not
    /// assigned and, like any unknown one, kept and reported by number.
    #[test]
    fn verdict_and_reason_codes() {
        assert_eq!(Verdict::from_code(3), Verdict::NameTaken);
        assert_eq!(Verdict::NameTaken.code(), 3);
        assert_eq!(RejectReason::from_code(6), RejectReason::NameTaken);
        assert_eq!(RejectReason::NameTaken.code(), 6);
        assert_eq!(RejectReason::from_code(0), RejectReason::Other(0));
        assert_eq!(
            Reject::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(),
            Reject {
                id: 1,
                reason: RejectReason::Other(0)
            }
        );
        assert_eq!(RejectReason::Other(0).to_string(), "unknown reason 0");
        assert_eq!(Verdict::from_code(4), Verdict::Other(4));
    }

    fn arb_component() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zé ._-]{0,20}").unwrap()
    }

    proptest! {
        #[test]
        fn offers_round_trip(
            id in any::<u64>(),
            entries in proptest::collection::vec(
                (proptest::collection::vec(arb_component(), 1..4), 0u64..1 << 50),
                1..20,
            ),
        ) {
            let offer = Offer {
                id,
                entries: entries
                    .into_iter()
                    .map(|(path, size)| Entry { path, size })
                    .collect(),
            };
            let body = offer.encode();
            prop_assert_eq!(body.len(), offer.encoded_len());
            prop_assert_eq!(Offer::decode(&body).unwrap(), offer);
        }

        #[test]
        fn accepts_round_trip(id in any::<u64>(), mut entries in proptest::collection::btree_set(any::<u16>(), 0..50), offset in 1u64..) {
            let resume: Vec<Resume> = std::mem::take(&mut entries)
                .into_iter()
                .map(|entry| Resume { entry, offset, prefix_sha256: [entry as u8; 32] })
                .collect();
            let accept = Accept { id, resume };
            prop_assert_eq!(Accept::decode(&accept.encode()).unwrap(), accept);
        }

        #[test]
        fn small_records_round_trip(id in any::<u64>(), entry in any::<u16>(), n in any::<u64>(), code in any::<u8>(), side in any::<bool>()) {
            let records = [
                FileRecord::Reject(Reject { id, reason: RejectReason::from_code(code) }),
                FileRecord::Start(Start { id, entry, offset: n }),
                FileRecord::End(End { sha256: [code; 32] }),
                FileRecord::Verdict(FileVerdict { id, entry, verdict: Verdict::from_code(code) }),
                FileRecord::Cancel(Cancel {
                    id,
                    side: if side { CancelSide::Sender } else { CancelSide::Receiver },
                    reason: CancelReason::from_code(code),
                }),
            ];
            for record in records {
                let body = record.encode();
                prop_assert_eq!(FileRecord::decode(record.frame_type(), &body).unwrap(), record);
            }
        }

        #[test]
        fn decoding_arbitrary_bodies_never_panics_and_is_canonical(typ in 0x18u8..=0x1F, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let typ = FrameType::from_byte(typ).unwrap();
            if let Ok(record) = FileRecord::decode(typ, &body) {
                prop_assert_eq!(record.encode(), body);
            }
        }
    }
}
