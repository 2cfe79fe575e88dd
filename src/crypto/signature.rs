//! Transcript signatures: RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte
//! salt over `context || 0x00 || transcript hash`.

use rand::CryptoRng;
use sha2::Sha256;

use super::keys::{PrivateKey, PublicKey};
use super::rng::{Prefixed, random_bytes};
use super::schedule::TranscriptHash;
use crate::protocol::ProtocolError;

/// The PSS salt the signer draws (for test vectors).
pub type PssSalt = [u8; 32];

/// The signed message: `context || 0x00 || th`.
fn message(context: &[u8], th: &TranscriptHash) -> Vec<u8> {
    [context, &[0], th].concat()
}

/// Signs a transcript hash. The salt is drawn from `rng` first and returned;
/// blinding randomness follows.
pub fn sign(
    rng: &mut impl CryptoRng,
    key: &PrivateKey,
    context: &[u8],
    th: &TranscriptHash,
) -> (Vec<u8>, PssSalt) {
    #[cfg(test)]
    counter::count(key.public());
    let salt: PssSalt = random_bytes(rng);
    let signature = key
        .rsa()
        .pss_sign_with_rng::<Sha256, _>(&mut Prefixed::new(&salt, rng), &message(context, th))
        .expect("any accepted key can sign a SHA-256 PSS message");
    (signature, salt)
}

/// Verifies a transcript signature; any failure is
/// [`ProtocolError::AuthenticationFailed`].
pub fn verify(
    key: &PublicKey,
    context: &[u8],
    th: &TranscriptHash,
    signature: &[u8],
) -> Result<(), ProtocolError> {
    if verify_message(key, &message(context, th), signature) {
        Ok(())
    } else {
        Err(ProtocolError::AuthenticationFailed)
    }
}

/// RSASSA-PSS verification with SHA-256, MGF1-SHA-256 and a 32-byte salt:
/// what [`verify`] uses, open to any message for the Wycheproof tests.
pub(crate) fn verify_message(key: &PublicKey, msg: &[u8], signature: &[u8]) -> bool {
    key.rsa().pss_verify::<Sha256>(msg, signature).is_ok()
}

/// How many signatures each key has made, for tests that must show that
/// something was *not* signed (a global count would see other tests).
#[cfg(test)]
pub(crate) mod counter {
    use std::sync::Mutex;

    use crate::crypto::PublicKey;

    static COUNTS: Mutex<Vec<(Vec<u8>, usize)>> = Mutex::new(Vec::new());

    pub(super) fn count(key: &PublicKey) {
        let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
        match counts.iter_mut().find(|(k, _)| k == key.spki_der()) {
            Some((_, n)) => *n += 1,
            None => counts.push((key.spki_der().to_vec(), 1)),
        }
    }

    /// Signatures made so far with the private half of `key`.
    pub(crate) fn signatures_by(key: &PublicKey) -> usize {
        let counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .find(|(k, _)| k == key.spki_der())
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    #[test]
    fn sign_verify_and_domain_separation() {
        let key = test_keys::responder();
        let mut rng = rand::rng();
        let (sig, _) = sign(&mut rng, &key, b"context A", &[1; 32]);
        assert_eq!(sig.len(), 384);
        verify(key.public(), b"context A", &[1; 32], &sig).unwrap();
        assert!(verify(key.public(), b"context B", &[1; 32], &sig).is_err());
        assert!(verify(key.public(), b"context A", &[2; 32], &sig).is_err());
        assert!(
            verify(
                test_keys::initiator().public(),
                b"context A",
                &[1; 32],
                &sig
            )
            .is_err()
        );
        let mut bad = sig.clone();
        bad[10] ^= 0x80;
        assert!(verify(key.public(), b"context A", &[1; 32], &bad).is_err());
    }
}
