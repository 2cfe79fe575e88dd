//! RSA keys as `chat` uses them: identity keys (2048 to 4096 bits, exponent 65537)
//! and the responder's transient key.
//!
//! The wrappers cache the SubjectPublicKeyInfo DER and the fingerprint, because
//! both are needed on every handshake, and they keep key material out of `Debug`.

use std::fmt;

use rand::CryptoRng;
use rsa::pkcs8::der::pem::{self, LineEnding};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
    EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef,
};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use super::fingerprint::Fingerprint;

/// Smallest identity key accepted, in bits.
pub const MIN_BITS: usize = 2048;
/// Largest identity key accepted, in bits.
pub const MAX_BITS: usize = 4096;
/// The only public exponent accepted.
pub const PUBLIC_EXPONENT: u32 = 65537;

const PEM_LABEL_PLAIN: &str = "PRIVATE KEY";
const PEM_LABEL_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";

/// Why bytes are not an acceptable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The encoding is not a well-formed RSA key.
    #[error("not a valid RSA key ({0})")]
    Malformed(String),
    /// A well-formed key outside the accepted sizes.
    #[error("RSA key of {0} bits; keys of {MIN_BITS} to {MAX_BITS} bits are accepted")]
    Size(usize),
    /// A well-formed key with an exponent other than 65537.
    #[error("RSA public exponent is not {PUBLIC_EXPONENT}")]
    Exponent,
    /// The private key is encrypted and no passphrase was given.
    #[error("the key is protected by a passphrase")]
    PassphraseRequired,
    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase")]
    WrongPassphrase,
}

/// An RSA public key with its SubjectPublicKeyInfo DER and fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: rsa::PublicKey,
    spki_der: Box<[u8]>,
    fingerprint: Fingerprint,
}

impl PublicKey {
    fn from_rsa(key: rsa::PublicKey) -> Result<Self, KeyError> {
        check_shape(&key)?;
        let spki_der = key
            .to_public_key_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?
            .into_vec()
            .into_boxed_slice();
        let fingerprint = Fingerprint::of_spki_der(&spki_der);
        Ok(Self {
            key,
            spki_der,
            fingerprint,
        })
    }

    /// Decodes a SubjectPublicKeyInfo. Only the canonical DER of an RSA key of
    /// 2048 to 4096 bits with exponent 65537 is accepted, so that one key has
    /// exactly one encoding and therefore one fingerprint.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = rsa::PublicKey::from_public_key_der(der)
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let public = Self::from_rsa(key)?;
        if *public.spki_der != *der {
            return Err(KeyError::Malformed("not canonical DER".into()));
        }
        Ok(public)
    }

    /// The SubjectPublicKeyInfo DER, as sent on the wire and fingerprinted.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// `SHA256:` + base64 of SHA-256 over [`spki_der`](Self::spki_der).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        modulus_bits(&self.key)
    }

    pub(crate) fn rsa(&self) -> &rsa::PublicKey {
        &self.key
    }

    /// Decodes a `PUBLIC KEY` PEM document, as [`to_pem`](Self::to_pem)
    /// writes it; the DER must be canonical ([`from_spki_der`](Self::from_spki_der)).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        match pem::decode_vec(text.as_bytes()) {
            Ok(("PUBLIC KEY", der)) => Self::from_spki_der(&der),
            Ok((label, _)) => Err(KeyError::Malformed(format!(
                "a PEM {label:?}, not a PUBLIC KEY"
            ))),
            Err(e) => Err(KeyError::Malformed(format!("not a PEM document: {e}"))),
        }
    }

    /// The key as a `PUBLIC KEY` PEM document (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der)
            .expect("PEM encoding of a DER key cannot fail")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} bits, {})", self.bits(), self.fingerprint)
    }
}

/// An RSA private key. Zeroized on drop (by `rsa`); `Debug` shows only the
/// public fingerprint.
#[cfg_attr(test, derive(Clone))]
pub struct PrivateKey {
    key: rsa::PrivateKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a key of `bits` bits with exponent 65537.
    pub fn generate(rng: &mut impl CryptoRng, bits: usize) -> Result<Self, KeyError> {
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        let key =
            rsa::PrivateKey::new(rng, bits).map_err(|e| KeyError::Malformed(e.to_string()))?;
        Self::from_rsa(key)
    }

    fn from_rsa(key: rsa::PrivateKey) -> Result<Self, KeyError> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        Ok(Self { key, public })
    }

    /// Decodes an unencrypted PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key =
            rsa::PrivateKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
        Self::from_rsa(key)
    }

    /// Decodes a PKCS#8 PEM document, `PRIVATE KEY` or `ENCRYPTED PRIVATE KEY`
    /// (PBES2). `passphrase` is only called for an encrypted document.
    pub fn from_pkcs8_pem<E>(
        text: &str,
        passphrase: impl FnOnce() -> Result<Zeroizing<String>, E>,
    ) -> Result<Result<Self, KeyError>, E> {
        if !text.contains("-----BEGIN ") {
            return Ok(Err(KeyError::Malformed("no PEM `-----BEGIN` line".into())));
        }
        let (label, der) = match pem::decode_vec(text.as_bytes()) {
            Ok((label, der)) => (label, Zeroizing::new(der)),
            Err(e) => return Ok(Err(KeyError::Malformed(format!("damaged PEM: {e}")))),
        };
        Ok(match label {
            PEM_LABEL_PLAIN => Self::from_pkcs8_der(&der),
            PEM_LABEL_ENCRYPTED => {
                let envelope = match EncryptedPrivateKeyInfoRef::try_from(der.as_slice()) {
                    Ok(envelope) => envelope,
                    Err(e) => return Ok(Err(KeyError::Malformed(e.to_string()))),
                };
                let passphrase = passphrase()?;
                // A wrong passphrase shows either as bad CBC padding or as garbage DER.
                match envelope.decrypt(passphrase.as_bytes()) {
                    Ok(plain) => Self::from_pkcs8_der(plain.as_bytes())
                        .map_err(|_| KeyError::WrongPassphrase),
                    Err(_) => Err(KeyError::WrongPassphrase),
                }
            }
            other => Err(KeyError::Malformed(format!(
                "PEM label {other:?}; expected {PEM_LABEL_PLAIN:?} (PKCS#8)"
            ))),
        })
    }

    /// Whether a PEM document is an encrypted PKCS#8 key, judged by its label.
    pub fn pem_is_encrypted(text: &str) -> bool {
        pem::decode_label(text.as_bytes()) == Ok(PEM_LABEL_ENCRYPTED)
    }

    /// The key as unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of a valid key cannot fail")
    }

    /// The key as encrypted PKCS#8 PEM: PBES2 with scrypt (log2 N = 15, r = 8,
    /// p = 1) and AES-256-CBC, the `pkcs8` crate's recommended parameters.
    pub fn to_pkcs8_encrypted_pem(
        &self,
        rng: &mut impl CryptoRng,
        passphrase: &str,
    ) -> Zeroizing<String> {
        let der = self
            .key
            .to_pkcs8_der()
            .expect("PKCS#8 encoding of a valid key cannot fail");
        let info = PrivateKeyInfoRef::try_from(der.as_bytes()).expect("just encoded");
        let encrypted = info
            .encrypt_with_rng(rng, passphrase.as_bytes())
            .expect("encryption with fresh parameters cannot fail");
        encrypted
            .to_pem(PEM_LABEL_ENCRYPTED, LineEnding::LF)
            .expect("PEM encoding cannot fail")
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn rsa(&self) -> &rsa::PrivateKey {
        &self.key
    }

    /// A copy, for the fuzzing entry points, which need a fresh transient key
    /// per input. Never used for real keys: a transient key is used once.
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            key: self.key.clone(),
            public: self.public.clone(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, secret parts hidden)", self.public)
    }
}

fn modulus_bits(key: &rsa::PublicKey) -> usize {
    key.n().bit_width() as usize
}

fn check_shape(key: &rsa::PublicKey) -> Result<(), KeyError> {
    let bits = modulus_bits(key);
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::Size(bits));
    }
    if *key.e_bytes() != PUBLIC_EXPONENT.to_be_bytes()[1..] {
        return Err(KeyError::Exponent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    #[test]
    fn spki_round_trip_is_canonical() {
        let key = test_keys::initiator();
        let public = key.public();
        let again = PublicKey::from_spki_der(public.spki_der()).unwrap();
        assert_eq!(&again, public);
        assert_eq!(again.fingerprint(), public.fingerprint());
        assert_eq!(public.bits(), 2048);
    }

    #[test]
    fn rejects_trailing_bytes_and_garbage() {
        let key = test_keys::initiator();
        let mut der = key.public().spki_der().to_vec();
        der.push(0);
        assert!(PublicKey::from_spki_der(&der).is_err());
        assert!(PublicKey::from_spki_der(&[]).is_err());
        assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn refuses_small_keys() {
        let mut rng = rand::rng();
        assert_eq!(
            PrivateKey::generate(&mut rng, 1024).unwrap_err(),
            KeyError::Size(1024)
        );
        let small = rsa::PrivateKey::new(&mut rng, 1024).unwrap();
        let der = small.to_public_key().to_public_key_der().unwrap();
        assert_eq!(
            PublicKey::from_spki_der(der.as_bytes()).unwrap_err(),
            KeyError::Size(1024)
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let key = test_keys::initiator();
        let shown = format!("{key:?}");
        assert!(shown.contains("SHA256:"), "{shown}");
        assert!(!shown.contains("primes"), "{shown}");
        let pem = key.to_pkcs8_pem();
        let body_line = pem.lines().nth(3).unwrap();
        assert!(!shown.contains(body_line));
    }

    #[test]
    fn pem_round_trips_plain_and_encrypted() {
        let key = test_keys::initiator();
        let no_pass = || -> Result<Zeroizing<String>, ()> { panic!("not encrypted") };
        let plain = PrivateKey::from_pkcs8_pem(&key.to_pkcs8_pem(), no_pass)
            .unwrap()
            .unwrap();
        assert_eq!(plain.public(), key.public());

        let encrypted = key.to_pkcs8_encrypted_pem(&mut rand::rng(), "correct horse");
        assert!(PrivateKey::pem_is_encrypted(&encrypted));
        let pass = |p: &'static str| move || Ok::<_, ()>(Zeroizing::new(p.to_string()));
        let back = PrivateKey::from_pkcs8_pem(&encrypted, pass("correct horse"))
            .unwrap()
            .unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(
            PrivateKey::from_pkcs8_pem(&encrypted, pass("wrong"))
                .unwrap()
                .unwrap_err(),
            KeyError::WrongPassphrase
        );
    }
}
