//! Cryptographic building blocks. Pure: no sockets, files or terminal.

pub(crate) mod aead;
pub mod fingerprint;
pub mod invite;
pub(crate) mod key_transport;
pub mod keys;
pub(crate) mod rng;
pub mod room;
pub mod safety_number;
pub(crate) mod schedule;
pub(crate) mod signature;
#[cfg(test)]
mod wycheproof_tests;

pub(crate) use aead::{Opener, Sealer};
pub use fingerprint::Fingerprint;
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use safety_number::SafetyNumber;

/// The fixed keys of `docs/vectors/keys/`, for tests.
#[cfg(test)]
pub(crate) mod test_keys {
    use super::PrivateKey;

    fn load(pem: &str) -> PrivateKey {
        PrivateKey::from_pkcs8_pem(pem, || -> Result<_, ()> { unreachable!() })
            .unwrap()
            .unwrap()
    }

    pub fn initiator() -> PrivateKey {
        load(include_str!("../../docs/vectors/keys/initiator.pem"))
    }

    pub fn responder() -> PrivateKey {
        load(include_str!("../../docs/vectors/keys/responder.pem"))
    }

    pub fn transient() -> PrivateKey {
        load(include_str!("../../docs/vectors/keys/transient.pem"))
    }
}
