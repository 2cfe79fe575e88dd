//! The transcript hash and the key schedule (`docs/PROTOCOL.md`, "Key schedule").
//!
//! ```text
//! TH_n  = SHA-256(m_1 || ... || m_n)      each message as a plaintext frame
//! PRK   = HKDF-Extract(salt = "chat v1", IKM = session secret)
//! key   = HKDF-Expand(PRK, label || TH, 32)
//! iv    = HKDF-Expand(PRK, label || TH, 12)
//! ```
//! Handshake keys use TH3 (through KeyTransport) and protect ResponderIdentity,
//! ResponderAuth, InitiatorIdentity and InitiatorAuth. The application
//! records are protected by a chain of traffic secrets per direction, the
//! first from TH7 (through InitiatorAuth), each next one from the one
//! before it (a KEY_UPDATE):
//!
//! ```text
//! secret_0   = HKDF-Expand(PRK, "chat v2 app i2r secret" || TH7, 32)   (and r2i)
//! key_n      = HKDF-Expand(secret_n, "chat v2 traffic key", 32)
//! iv_n       = HKDF-Expand(secret_n, "chat v2 traffic iv", 12)
//! secret_n+1 = HKDF-Expand(secret_n, "chat v2 traffic update", 32)
//! ```
//! Every key, IV and secret has its own label.

use std::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

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
#[derive(Clone)]
pub struct SessionSecret([u8; SESSION_SECRET_LEN]);
super::zeroize_on_drop!(SessionSecret { 0 });

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

/// One direction's application traffic secret: the key and IV of the
/// current epoch come from it, and so does the next secret. Zeroized on
/// drop; `Debug` hides it; not `Clone` outside tests (a copy could seal
/// with a key that should be gone).
#[cfg_attr(test, derive(Clone))]
pub struct TrafficSecret([u8; 32]);
super::zeroize_on_drop!(TrafficSecret { 0 });

impl TrafficSecret {
    /// A secret from its bytes.
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes (for test vectors).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `key = HKDF-Expand(secret, "chat v2 traffic key", 32)` and
    /// `iv = HKDF-Expand(secret, "chat v2 traffic iv", 12)`.
    pub fn traffic_key(&self) -> TrafficKey {
        let mut key = TrafficKey::new([0; KEY_LEN], [0; IV_LEN]);
        let (key_bytes, iv_bytes) = key.parts_mut();
        hkdf_expand(&self.0, &[labels::TRAFFIC_KEY], key_bytes).expect("32 bytes");
        hkdf_expand(&self.0, &[labels::TRAFFIC_IV], iv_bytes).expect("12 bytes");
        key
    }

    /// The secret of the next epoch:
    /// `HKDF-Expand(secret, "chat v2 traffic update", 32)`.
    pub fn next(&self) -> TrafficSecret {
        let mut next = TrafficSecret([0; 32]);
        hkdf_expand(&self.0, &[labels::TRAFFIC_UPDATE], &mut next.0).expect("32 bytes");
        next
    }
}

impl fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrafficSecret(hidden)")
    }
}

impl PartialEq for TrafficSecret {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for TrafficSecret {}

/// The first application traffic secrets of both directions.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(Clone))]
pub struct DirectionalSecrets {
    /// Initiator to responder.
    pub i2r: TrafficSecret,
    /// Responder to initiator.
    pub r2i: TrafficSecret,
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

    /// The first application traffic secrets, from TH7.
    pub fn application_secrets(&self, th7: &TranscriptHash) -> DirectionalSecrets {
        let mut secrets = DirectionalSecrets {
            i2r: TrafficSecret([0; 32]),
            r2i: TrafficSecret([0; 32]),
        };
        self.expand(labels::APP_I2R_SECRET, th7, &mut secrets.i2r.0);
        self.expand(labels::APP_R2I_SECRET, th7, &mut secrets.r2i.0);
        secrets
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
        let app = schedule.application_secrets(&[2; 32]);
        let i2r_1 = app.i2r.next();
        let app_keys = [
            app.i2r.traffic_key(),
            app.r2i.traffic_key(),
            i2r_1.traffic_key(),
            i2r_1.next().traffic_key(),
            app.r2i.next().traffic_key(),
        ];
        let all: Vec<&TrafficKey> = [&hs.i2r, &hs.r2i].into_iter().chain(&app_keys).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.key(), b.key());
                assert_ne!(a.iv(), b.iv());
            }
        }
        assert_ne!(app.i2r, app.r2i);
        assert_ne!(app.i2r, i2r_1);
        // A different transcript gives different keys and secrets.
        assert_ne!(schedule.handshake_keys(&[3; 32]), hs);
        assert_ne!(schedule.application_secrets(&[3; 32]), app);
    }

    /// The derivations of a traffic secret, by the formulas of
    /// docs/PROTOCOL.md section 6 applied with HMAC-SHA256 directly
    /// (HKDF-Expand of at most 32 bytes is one HMAC block).
    #[test]
    fn traffic_secret_derivations_follow_the_spec() {
        use hmac::{KeyInit, Mac};
        let block = |prk: &[u8], label: &[u8]| -> [u8; 32] {
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(prk).unwrap();
            mac.update(label);
            mac.update(&[1]);
            mac.finalize().into_bytes().into()
        };
        let secret = TrafficSecret::new([0x42; 32]);
        let key = secret.traffic_key();
        assert_eq!(key.key(), &block(&[0x42; 32], b"chat v2 traffic key"));
        assert_eq!(
            key.iv()[..],
            block(&[0x42; 32], b"chat v2 traffic iv")[..12]
        );
        assert_eq!(
            secret.next().as_bytes(),
            &block(&[0x42; 32], b"chat v2 traffic update")
        );
        let schedule = KeySchedule::new(&SessionSecret::new([1; 32]));
        let th7 = [7; 32];
        let secrets = schedule.application_secrets(&th7);
        assert_eq!(
            secrets.i2r.as_bytes(),
            &block(
                schedule.prk(),
                &[&b"chat v2 app i2r secret"[..], &th7].concat()
            )
        );
        assert_eq!(
            secrets.r2i.as_bytes(),
            &block(
                schedule.prk(),
                &[&b"chat v2 app r2i secret"[..], &th7].concat()
            )
        );
        assert_eq!(format!("{secret:?}"), "TrafficSecret(hidden)");
    }

    #[test]
    fn transcript_hashes_frames() {
        let mut t = Transcript::new();
        t.add(FrameType::ClientHello, b"abc");
        let expected: [u8; 32] = Sha256::digest([0, 0, 0, 4, 1, b'a', b'b', b'c']).into();
        assert_eq!(t.hash(), expected);
    }
}
