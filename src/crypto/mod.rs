//! Cryptographic building blocks. Pure: no sockets, files or terminal.

/// `Zeroize`, a `Drop` that zeroizes, and the `ZeroizeOnDrop` marker for a
/// type whose secret is in these fields: what zeroize's derive writes,
/// without the second `syn` that building the derive costs.
macro_rules! zeroize_on_drop {
    ($type:ty { $($field:tt),+ }) => {
        impl zeroize::Zeroize for $type {
            fn zeroize(&mut self) {
                $(zeroize::Zeroize::zeroize(&mut self.$field);)+
            }
        }
        impl Drop for $type {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(self);
            }
        }
        impl zeroize::ZeroizeOnDrop for $type {}
    };
}
pub(crate) use zeroize_on_drop;

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
