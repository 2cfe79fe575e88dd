//! Key fingerprints, in the style of `ssh-keygen -l`.
//!
//! A fingerprint is `SHA256:` followed by the unpadded standard base64 of
//! SHA-256 over the key's SubjectPublicKeyInfo DER, the same text that
//! `openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64`
//! prints, minus the `=` padding. See `docs/FINGERPRINTS.md`.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};

/// The text every fingerprint starts with.
pub const PREFIX: &str = "SHA256:";

/// SHA-256 of a public key's SubjectPublicKeyInfo DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a key given as SubjectPublicKeyInfo DER.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", Base64Unpadded::encode_string(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed fingerprint {text:?}: expected `SHA256:` and 43 base64 characters, as `chat fingerprint` prints"
)]
pub struct ParseFingerprintError {
    text: String,
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    /// Parses exactly the text [`Display`](fmt::Display) produces: the prefix and 43
    /// characters of canonical unpadded base64. Padding, whitespace and other
    /// digests are refused, so one key has exactly one spelling.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseFingerprintError {
            text: text.chars().take(80).collect(),
        };
        let encoded = text.strip_prefix(PREFIX).ok_or_else(error)?;
        let mut digest = [0u8; 32];
        match Base64Unpadded::decode(encoded, &mut digest) {
            Ok(decoded) if decoded.len() == 32 => Ok(Self(digest)),
            _ => Err(error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let fp = Fingerprint::of_spki_der(b"not really a key");
        let text = fp.to_string();
        assert!(text.starts_with("SHA256:"));
        assert_eq!(text.len(), 7 + 43);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn known_digest_matches_sha256_of_empty_input() {
        // SHA-256("") = e3b0c442...b855, base64 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
        let fp = Fingerprint::of_spki_der(b"");
        assert_eq!(
            fp.to_string(),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn rejects_malformed_text() {
        let good = Fingerprint::of_spki_der(b"").to_string();
        for bad in [
            "",
            "SHA256:",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "MD5:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFUA",
            "SHA256:47DEQpj8HBSa-_TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            " SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            // Same bits but a non-canonical last character (trailing bits set).
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV",
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "accepted {bad:?}");
        }
        assert!(good.parse::<Fingerprint>().is_ok());
    }
}
