//! The record cipher: AES-256-GCM with a per-direction counter nonce
//! (`docs/PROTOCOL.md`, "Record protection").
//!
//! ```text
//! nonce = iv XOR (0x00000000 || seq as u64, big-endian)
//! aad   = length: u32 || type: u8 || seq: u64
//! frame = length: u32 || type: u8 || AES-256-GCM(key, nonce, aad, plaintext) || tag[16]
//! ```
//!
//! A [`Sealer`] and an [`Opener`] each own one direction's key and count its
//! records and bytes; a sequence number is never reused, and no key protects
//! more than [`MAX_RECORDS_PER_KEY`] records or [`MAX_BYTES_PER_KEY`] bytes
//! of plaintext (hard limits far above the key-update triggers of the
//! session, `crate::session`).

use std::fmt;
use std::mem::MaybeUninit;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::protocol::{MAX_BYTES_PER_KEY, MAX_RECORDS_PER_KEY, ProtocolError, TAG_LEN};
use crate::wire::FrameType;
use crate::wire::frame::{HEADER_LEN, header};

/// Key length of AES-256.
pub const KEY_LEN: usize = 32;
/// Length of the per-direction IV, and of a GCM nonce.
pub const IV_LEN: usize = 12;

/// One direction's AES-256-GCM key and IV. Zeroized on drop; `Debug` hides
/// it; equality is constant-time. Not `Clone`: two sealers made from copies
/// of one key would reuse nonces.
#[cfg_attr(test, derive(Clone))]
pub struct TrafficKey {
    key: [u8; KEY_LEN],
    iv: [u8; IV_LEN],
}
super::zeroize_on_drop!(TrafficKey { key, iv });

impl TrafficKey {
    /// A key from its parts.
    pub fn new(key: [u8; KEY_LEN], iv: [u8; IV_LEN]) -> Self {
        Self { key, iv }
    }

    /// The AES key bytes (for test vectors).
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The IV bytes (for test vectors).
    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }

    /// Both parts, to derive them in place.
    pub(crate) fn parts_mut(&mut self) -> (&mut [u8; KEY_LEN], &mut [u8; IV_LEN]) {
        (&mut self.key, &mut self.iv)
    }
}

impl PartialEq for TrafficKey {
    fn eq(&self, other: &Self) -> bool {
        (self.key.ct_eq(&other.key) & self.iv.ct_eq(&other.iv)).into()
    }
}

impl Eq for TrafficKey {}

impl fmt::Debug for TrafficKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrafficKey(hidden)")
    }
}

/// AES-256-GCM with detached tags: the one primitive under [`Sealer`] and
/// [`Opener`], which choose its nonces; the Wycheproof tests drive it directly.
///
/// The implementation is `ring`'s (BoringSSL's assembly: AES-NI with
/// VAES/VPCLMULQDQ where the CPU has them, several times the speed of a
/// portable AES-GCM; `docs/PERFORMANCE.md`). `ring` does not zeroize its key
/// schedule, so the key lives in a box of its own (a move never leaves a
/// copy behind) and its bytes are overwritten when the cipher is dropped.
pub(crate) struct Aes256GcmCipher(Box<MaybeUninit<LessSafeKey>>);

impl Aes256GcmCipher {
    /// A cipher under `key`.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
        Self(Box::new(MaybeUninit::new(LessSafeKey::new(key))))
    }

    fn key(&self) -> &LessSafeKey {
        // SAFETY: initialised in `new`, and only uninitialised in `drop`.
        unsafe { self.0.assume_init_ref() }
    }

    /// Encrypts `buffer` in place and returns the tag; `None` if it is too
    /// long for one GCM nonce.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; IV_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        let tag = self
            .key()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buffer,
            )
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Decrypts `buffer` in place if `tag` authenticates it; on failure the
    /// buffer's contents are unspecified and must not be used.
    pub(crate) fn open(
        &self,
        nonce: &[u8; IV_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        self.key()
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                buffer,
                0..,
            )
            .is_ok()
    }
}

#[cfg(test)]
impl Clone for Aes256GcmCipher {
    fn clone(&self) -> Self {
        Self(Box::new(MaybeUninit::new(self.key().clone())))
    }
}

impl Drop for Aes256GcmCipher {
    fn drop(&mut self) {
        // SAFETY: the key was initialised in `new` and is dropped once,
        // here, then never used again. Its type holds the key schedule
        // inline (no pointer to memory of its own), so overwriting the
        // box's bytes erases it; zeros are a valid `MaybeUninit`, and the
        // box then frees memory holding no value that needs a drop.
        unsafe {
            self.0.assume_init_drop();
            zeroize::zeroize_flat_type(&mut *self.0 as *mut MaybeUninit<LessSafeKey>);
        }
    }
}

/// The hard byte limit per key: [`MAX_BYTES_PER_KEY`], which a test may
/// lower on its own thread ([`HARD_BYTES_FOR_TESTS`]) to show what key
/// updates do for a long session without sealing 2^38 bytes.
fn max_bytes_per_key() -> u64 {
    #[cfg(test)]
    return HARD_BYTES_FOR_TESTS.with(std::cell::Cell::get);
    #[cfg(not(test))]
    MAX_BYTES_PER_KEY
}

#[cfg(test)]
thread_local! {
    /// The hard byte limit per key on this thread, in tests.
    pub(crate) static HARD_BYTES_FOR_TESTS: std::cell::Cell<u64> =
        const { std::cell::Cell::new(MAX_BYTES_PER_KEY) };
}

/// The state shared by both ends of one direction.
#[cfg_attr(test, derive(Clone))]
struct Direction {
    cipher: Aes256GcmCipher,
    iv: [u8; IV_LEN],
    /// Records protected so far: the next record's sequence number.
    seq: u64,
    /// Bytes of plaintext protected so far.
    bytes: u64,
}

impl Direction {
    fn new(key: &TrafficKey) -> Self {
        Self {
            cipher: Aes256GcmCipher::new(&key.key),
            iv: key.iv,
            seq: 0,
            bytes: 0,
        }
    }

    /// Whether one more record of `len` bytes stays within the hard limits.
    fn within_limits(&self, len: usize) -> bool {
        self.seq < MAX_RECORDS_PER_KEY && self.bytes + len as u64 <= max_bytes_per_key()
    }

    /// The nonce and AAD for the next record (whose `length` and type are
    /// in `frame_header`), counting it.
    fn next(&mut self, frame_header: &[u8], len: usize) -> ([u8; IV_LEN], [u8; 13]) {
        let seq = self.seq.to_be_bytes();
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq) {
            *n ^= s;
        }
        let mut aad = [0u8; 13];
        aad[..HEADER_LEN].copy_from_slice(frame_header);
        aad[HEADER_LEN..].copy_from_slice(&seq);
        self.seq += 1;
        self.bytes += len as u64;
        (nonce, aad)
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

/// Encrypts one direction's records.
#[cfg_attr(test, derive(Clone))]
pub struct Sealer {
    direction: Direction,
}

impl Sealer {
    /// A sealer starting at sequence number 0.
    pub(crate) fn new(key: &TrafficKey) -> Self {
        Self {
            direction: Direction::new(key),
        }
    }

    /// Records sealed under this key so far.
    pub fn records(&self) -> u64 {
        self.direction.seq
    }

    /// Bytes of plaintext sealed under this key so far.
    pub fn bytes(&self) -> u64 {
        self.direction.bytes
    }

    /// Seals a record in place. `frame` is laid out as
    /// `[HEADER_LEN bytes, any][plaintext][TAG_LEN bytes, any]`; on return it
    /// is the complete frame to send.
    pub fn seal_in_place(&mut self, typ: FrameType, frame: &mut [u8]) -> Result<(), ProtocolError> {
        let plaintext_len =
            frame
                .len()
                .checked_sub(HEADER_LEN + TAG_LEN)
                .ok_or(ProtocolError::Misuse(
                    "record buffer shorter than header and tag",
                ))?;
        if !self.direction.within_limits(plaintext_len) {
            return Err(ProtocolError::Exhausted(
                "2^32 records or 2^38 bytes sealed under one key",
            ));
        }
        let head = header(typ, plaintext_len + TAG_LEN);
        let (nonce, aad) = self.direction.next(&head, plaintext_len);
        let (head_out, rest) = frame.split_at_mut(HEADER_LEN);
        head_out.copy_from_slice(&head);
        let (body, tag_out) = rest.split_at_mut(plaintext_len);
        let tag = self
            .direction
            .cipher
            .seal(&nonce, &aad, body)
            .ok_or(ProtocolError::Exhausted("record too long for AES-GCM"))?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    /// Appends the sealed record carrying `plaintext` to `out`.
    pub fn seal(
        &mut self,
        typ: FrameType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(plaintext);
        out.resize(out.len() + TAG_LEN, 0);
        let sealed = self.seal_in_place(typ, &mut out[start..]);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }
}

/// Decrypts one direction's records.
#[cfg_attr(test, derive(Clone))]
pub struct Opener(Direction);

impl Opener {
    /// An opener starting at sequence number 0.
    pub(crate) fn new(key: &TrafficKey) -> Self {
        Self(Direction::new(key))
    }

    /// Opens a whole frame in place and returns its type byte and plaintext.
    /// Any failure to authenticate, whatever its cause, is
    /// [`ProtocolError::AuthenticationFailed`] and nothing of the frame is
    /// returned. An authentic record beyond the key's hard limits is the
    /// peer's fault ([`ProtocolError::PeerMisbehaved`]).
    pub fn open_in_place<'f>(
        &mut self,
        frame: &'f mut [u8],
    ) -> Result<(u8, &'f mut [u8]), ProtocolError> {
        if frame.len() < HEADER_LEN + TAG_LEN || crate::wire::frame::parse(frame).is_err() {
            return Err(ProtocolError::AuthenticationFailed);
        }
        let plaintext_len = frame.len() - HEADER_LEN - TAG_LEN;
        let within_limits = self.0.within_limits(plaintext_len);
        let (head, rest) = frame.split_at_mut(HEADER_LEN);
        let (nonce, aad) = self.0.next(head, plaintext_len);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag length");
        if !self.0.cipher.open(&nonce, &aad, body, tag) {
            return Err(ProtocolError::AuthenticationFailed);
        }
        if !within_limits {
            return Err(ProtocolError::PeerMisbehaved(
                "more than 2^32 records or 2^38 bytes under one key",
            ));
        }
        Ok((head[4], body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TrafficKey {
        TrafficKey::new([byte; 32], [byte ^ 0x55; 12])
    }

    #[test]
    fn seal_open_round_trip_in_order_only() {
        let mut sealer = Sealer::new(&key(1));
        let mut records = Vec::new();
        for text in [&b"one"[..], b"", b"three"] {
            let mut out = Vec::new();
            sealer.seal(FrameType::MessageData, text, &mut out).unwrap();
            records.push(out);
        }
        let mut opener = Opener::new(&key(1));
        for (record, text) in records.iter().zip([&b"one"[..], b"", b"three"]) {
            let mut frame = record.clone();
            let (typ, plain) = opener.open_in_place(&mut frame).unwrap();
            assert_eq!((typ, &*plain), (FrameType::MessageData as u8, text));
        }
        // Replaying the first record to a fresh opener at a later position fails.
        let mut opener = Opener::new(&key(1));
        opener.open_in_place(&mut records[0].clone()).unwrap();
        assert_eq!(
            opener.open_in_place(&mut records[0].clone()).unwrap_err(),
            ProtocolError::AuthenticationFailed
        );
        // The wrong key fails.
        let mut other = Opener::new(&key(2));
        assert!(other.open_in_place(&mut records[0].clone()).is_err());
    }

    #[test]
    fn every_byte_of_a_record_is_authenticated() {
        let mut out = Vec::new();
        Sealer::new(&key(3))
            .seal(FrameType::Receipt, b"12345678", &mut out)
            .unwrap();
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut frame = out.clone();
                frame[i] ^= 1 << bit;
                assert!(
                    Opener::new(&key(3)).open_in_place(&mut frame).is_err(),
                    "flip of bit {bit} in byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn one_key_protects_at_most_2_to_the_32_records() {
        let mut sealer = Sealer::new(&key(4));
        sealer.direction.seq = MAX_RECORDS_PER_KEY - 1;
        let mut last = Vec::new();
        sealer.seal(FrameType::Keepalive, b"", &mut last).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            sealer.seal(FrameType::Close, b"\0", &mut out).unwrap_err(),
            ProtocolError::Exhausted(_)
        ));
        assert!(out.is_empty(), "nothing appended on refusal");
        // The receiver opens the last allowed record...
        let mut opener = Opener::new(&key(4));
        opener.0.seq = MAX_RECORDS_PER_KEY - 1;
        opener.open_in_place(&mut last.clone()).unwrap();
        // ...and refuses an authentic one beyond it, from a sender that
        // ignores the limit, as the peer's fault.
        let mut rogue = Sealer::new(&key(4));
        rogue.direction.seq = MAX_RECORDS_PER_KEY;
        let head = header(FrameType::Keepalive, TAG_LEN);
        let (nonce, aad) = rogue.direction.next(&head, 0);
        let tag = rogue.direction.cipher.seal(&nonce, &aad, &mut []).unwrap();
        let mut record = [&head[..], &tag[..]].concat();
        assert!(matches!(
            opener.open_in_place(&mut record).unwrap_err(),
            ProtocolError::PeerMisbehaved(_)
        ));
    }

    #[test]
    fn one_key_protects_at_most_2_to_the_38_bytes() {
        let mut sealer = Sealer::new(&key(5));
        sealer.direction.bytes = MAX_BYTES_PER_KEY - 3;
        let mut out = Vec::new();
        sealer
            .seal(FrameType::MessageData, b"abc", &mut out)
            .unwrap();
        assert!(sealer.seal(FrameType::MessageData, b"d", &mut out).is_err());
        assert_eq!((sealer.records(), sealer.bytes()), (1, MAX_BYTES_PER_KEY));
        let mut opener = Opener::new(&key(5));
        opener.0.bytes = MAX_BYTES_PER_KEY - 2;
        assert!(matches!(
            opener.open_in_place(&mut out.clone()).unwrap_err(),
            ProtocolError::PeerMisbehaved(_)
        ));
    }

    #[test]
    fn debug_hides_keys() {
        assert_eq!(format!("{:?}", key(9)), "TrafficKey(hidden)");
        assert_eq!(key(9), key(9));
        assert_ne!(key(9), key(8));
    }
}
