//! Key transport: the initiator wraps the session secret for the responder's
//! transient key with RSA-OAEP (SHA-256, MGF1-SHA-256, label
//! `"chat v1 session secret"`), as in RFC 4432.

use rand::CryptoRng;
use rsa::Oaep;
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::{PrivateKey, PublicKey};
use super::rng::{Prefixed, random_bytes};
use super::schedule::SessionSecret;
use crate::protocol::{ProtocolError, labels};

/// The OAEP seed the initiator draws (for test vectors).
pub type OaepSeed = [u8; 32];

/// Wraps `secret` for `transient`. The 32-byte OAEP seed is drawn from `rng`
/// first and returned, so that test vectors can name it.
pub fn wrap(
    rng: &mut impl CryptoRng,
    transient: &PublicKey,
    secret: &SessionSecret,
) -> (Vec<u8>, OaepSeed) {
    let seed: OaepSeed = random_bytes(rng);
    let wrapped = transient
        .rsa()
        .encrypt(
            &mut Prefixed::new(&seed, rng),
            Oaep::<Sha256>::new_with_label(labels::OAEP),
            secret.as_bytes(),
        )
        .expect("a 32-byte secret fits any accepted key");
    (wrapped, seed)
}

/// Unwraps a session secret. Every failure, whatever its cause, is
/// [`ProtocolError::AuthenticationFailed`]. The private operation is blinded
/// with randomness from `rng`.
pub fn unwrap(
    rng: &mut impl CryptoRng,
    transient: &PrivateKey,
    wrapped: &[u8],
) -> Result<SessionSecret, ProtocolError> {
    if wrapped.len() != transient.public().rsa().size() {
        return Err(ProtocolError::AuthenticationFailed);
    }
    let plain = oaep_decrypt(rng, transient.rsa(), labels::OAEP, wrapped)
        .ok_or(ProtocolError::AuthenticationFailed)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| ProtocolError::AuthenticationFailed)?;
    Ok(SessionSecret::new(bytes))
}

/// RSA-OAEP decryption with SHA-256 and MGF1-SHA-256 under `label`, blinded
/// with `rng`: what [`unwrap`] uses, open to any label for the Wycheproof tests.
pub(crate) fn oaep_decrypt(
    rng: &mut impl CryptoRng,
    key: &rsa::PrivateKey,
    label: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    key.decrypt_blinded(rng, Oaep::<Sha256>::new_with_label(label), ciphertext)
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    #[test]
    fn wrap_unwrap_and_tampering() {
        let transient = test_keys::transient();
        let secret = SessionSecret::new([42; 32]);
        let mut rng = rand::rng();
        let (wrapped, _) = wrap(&mut rng, transient.public(), &secret);
        assert_eq!(wrapped.len(), 256);
        let back = unwrap(&mut rng, &transient, &wrapped).unwrap();
        assert_eq!(back.as_bytes(), secret.as_bytes());
        for i in [0, 1, 100, 255] {
            let mut bad = wrapped.clone();
            bad[i] ^= 1;
            assert_eq!(
                unwrap(&mut rng, &transient, &bad).unwrap_err(),
                ProtocolError::AuthenticationFailed
            );
        }
        assert!(unwrap(&mut rng, &transient, &wrapped[1..]).is_err());
        // Another key cannot unwrap it.
        assert!(unwrap(&mut rng, &test_keys::initiator(), &wrapped).is_err());
    }
}
