//! The transcript hash and the key schedule (`docs/PROTOCOL.md`, "Key schedule").
//!
//! ```text
//! TH_n  = SHA-256(m_1 || ... || m_n)      each message as a plaintext frame
//! PRK   = HKDF-Extract(salt = "chat v1", IKM = session secret)
//! key   = HKDF-Expand(PRK, label || TH, 32)
//! iv    = HKDF-Expand(PRK, label || TH, 12)
//! ```
//! Handshake keys use TH3 (through KeyTransport) and protect ResponderIdentity,
//! ResponderAuth, InitiatorIdentity and InitiatorAuth; application keys use
//! TH7 (through InitiatorAuth). Every key and IV has its own label.

use std::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::aead::{IV_LEN, KEY_LEN, TrafficKey};
use crate::protocol::{SESSION_SECRET_LEN, labels};
use crate::wire::FrameType;
use crate::wire::frame::header;

/// A transcript hash value.
pub type TranscriptHash = [u8; 32];

/// The running hash of the handshake messages, each fed as the plaintext
/// frame `length || type || body`, whether or not it travelled encrypted.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one message.
    pub fn add(&mut self, typ: FrameType, body: &[u8]) {
        self.0.update(header(typ, body.len()));
        self.0.update(body);
    }

    /// The hash of everything added so far.
    pub fn hash(&self) -> TranscriptHash {
        self.0.clone().finalize().into()
    }
}

/// The 32-byte secret the initiator wraps for the responder. Zeroized on
/// drop; `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionSecret([u8; SESSION_SECRET_LEN]);

impl SessionSecret {
    /// A secret from its bytes.
    pub fn new(bytes: [u8; SESSION_SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; SESSION_SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(hidden)")
    }
}

/// The two directions' keys of one phase.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(Clone))]
pub struct DirectionalKeys {
    /// Initiator to responder.
    pub i2r: TrafficKey,
    /// Responder to initiator.
    pub r2i: TrafficKey,
}

/// HKDF state keyed by the session secret.
#[cfg_attr(test, derive(Clone))]
pub struct KeySchedule {
    prk: Zeroizing<[u8; 32]>,
}

impl KeySchedule {
    /// `PRK = HKDF-Extract("chat v1", secret)`.
    pub fn new(secret: &SessionSecret) -> Self {
        Self {
            prk: hkdf_extract(labels::EXTRACT_SALT, secret.as_bytes()),
        }
    }

    /// The pseudorandom key (for test vectors).
    pub(crate) fn prk(&self) -> &[u8; 32] {
        &self.prk
    }

    fn expand(&self, label: &[u8], th: &TranscriptHash, out: &mut [u8]) {
        hkdf_expand(&self.prk, &[label, th], out)
            .expect("output lengths are far below the HKDF limit");
    }

    fn traffic_key(&self, key_label: &[u8], iv_label: &[u8], th: &TranscriptHash) -> TrafficKey {
        let mut key = TrafficKey::new([0; KEY_LEN], [0; IV_LEN]);
        let (key_bytes, iv_bytes) = key.parts_mut();
        self.expand(key_label, th, key_bytes);
        self.expand(iv_label, th, iv_bytes);
        key
    }

    /// Keys for the four encrypted handshake messages, from TH3.
    pub fn handshake_keys(&self, th3: &TranscriptHash) -> DirectionalKeys {
        DirectionalKeys {
            i2r: self.traffic_key(labels::HS_I2R_KEY, labels::HS_I2R_IV, th3),
            r2i: self.traffic_key(labels::HS_R2I_KEY, labels::HS_R2I_IV, th3),
        }
    }

    /// Keys for the application records, from TH7.
    pub fn application_keys(&self, th7: &TranscriptHash) -> DirectionalKeys {
        DirectionalKeys {
            i2r: self.traffic_key(labels::APP_I2R_KEY, labels::APP_I2R_IV, th7),
            r2i: self.traffic_key(labels::APP_R2I_KEY, labels::APP_R2I_IV, th7),
        }
    }
}

/// HKDF-Extract with SHA-256: what [`KeySchedule::new`] uses.
pub(crate) fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    Zeroizing::new(prk.into())
}

/// HKDF-Expand with SHA-256 over the concatenation of `info`: what the key
/// schedule uses. Fails if more than 255 * 32 bytes are asked for.
pub(crate) fn hkdf_expand(
    prk: &[u8; 32],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), hkdf::InvalidLength> {
    Hkdf::<Sha256>::from_prk(prk)
        .expect("PRK is one hash long")
        .expand_multi_info(info, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_distinct() {
        let schedule = KeySchedule::new(&SessionSecret::new([1; 32]));
        let hs = schedule.handshake_keys(&[2; 32]);
        let app = schedule.application_keys(&[2; 32]);
        let all = [&hs.i2r, &hs.r2i, &app.i2r, &app.r2i];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.key(), b.key());
                assert_ne!(a.iv(), b.iv());
            }
        }
        // A different transcript gives different keys.
        assert_ne!(schedule.handshake_keys(&[3; 32]), hs);
    }

    #[test]
    fn transcript_hashes_frames() {
        let mut t = Transcript::new();
        t.add(FrameType::ClientHello, b"abc");
        let expected: [u8; 32] = Sha256::digest([0, 0, 0, 4, 1, b'a', b'b', b'c']).into();
        assert_eq!(t.hash(), expected);
    }
}
