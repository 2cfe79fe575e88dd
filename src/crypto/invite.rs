//! The one-time invite proof (`docs/PROTOCOL.md`, 17.3): a joiner that
//! holds a one-time invite's secret T proves it inside the session, bound
//! to this session's transcript, without revealing T.
//!
//! ```text
//! K     = HKDF-SHA256(salt = "chat v2 invite", IKM = T, info = "chat v2 invite proof key", L = 32)
//! proof = HMAC-SHA256(K, TH7)
//! ```

use hkdf::Hkdf;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HKDF-Extract salt.
pub const SALT: &[u8] = b"chat v2 invite";

/// The HKDF-Expand info of the proof key.
pub const KEY_INFO: &[u8] = b"chat v2 invite proof key";

/// The proof for one-time secret `secret` in the session whose final
/// transcript hash is `transcript_hash` (TH7).
pub fn proof(secret: &[u8; 32], transcript_hash: &[u8; 32]) -> [u8; 32] {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), secret)
        .expand(KEY_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
        .expect("HMAC takes any key length");
    mac.update(transcript_hash);
    mac.finalize().into_bytes().into()
}

/// Whether `presented` is the proof for `secret` in this session, compared
/// in constant time.
pub fn verify(secret: &[u8; 32], transcript_hash: &[u8; 32], presented: &[u8; 32]) -> bool {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), secret)
        .expand(KEY_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref())
        .expect("HMAC takes any key length");
    mac.update(transcript_hash);
    mac.verify_slice(presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(value: &toml::Value) -> [u8; 32] {
        hex::decode(value.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// `docs/vectors/invite.toml`, which tests/interop/check_vectors.py
    /// checks too.
    #[test]
    fn proofs_match_the_vectors() {
        let vectors: toml::Table = include_str!("../../docs/vectors/invite.toml")
            .parse()
            .unwrap();
        let cases = vectors["proof"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let secret = bytes(&case["secret"]);
            let th = bytes(&case["transcript_hash"]);
            let expected = bytes(&case["proof"]);
            assert_eq!(proof(&secret, &th), expected);
            assert!(verify(&secret, &th, &expected));
            let mut wrong = expected;
            wrong[31] ^= 1;
            assert!(!verify(&secret, &th, &wrong));
            let mut other = th;
            other[0] ^= 1;
            assert!(
                !verify(&secret, &other, &expected),
                "bound to the transcript"
            );
        }
    }
}
