//! Safety numbers: one 60-digit number that two peers compute identically from
//! their two public keys, to compare aloud or over another channel.
//!
//! Derived in the spirit of Signal's (see `docs/FINGERPRINTS.md`):
//!
//! ```text
//! h_0     = SHA-512("chat safety number v1" || 0x00 || spki_der)
//! h_(i+1) = SHA-512(h_i || spki_der)                  for i in 0..5200
//! digits  = for each of the six 5-byte groups g of h_5200[0..30]:
//!             format("{:05}", big_endian_u40(g) mod 100000)
//! number  = the two 30-digit strings, the smaller first
//! ```

use std::fmt;

use sha2::{Digest, Sha512};

use super::keys::PublicKey;

/// Domain-separation label of the first hash.
pub const LABEL: &[u8] = b"chat safety number v1";
/// Number of SHA-512 iterations after the first hash.
pub const ITERATIONS: usize = 5200;

/// The 60 decimal digits both peers see, shown as 12 groups of 5.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber([u8; 60]);

impl SafetyNumber {
    /// The safety number of two keys; the order of the arguments does not matter.
    pub fn new(a: &PublicKey, b: &PublicKey) -> Self {
        Self::from_spki_der(a.spki_der(), b.spki_der())
    }

    /// As [`new`](Self::new), from SubjectPublicKeyInfo DER.
    pub fn from_spki_der(a: &[u8], b: &[u8]) -> Self {
        let (a, b) = (half(a), half(b));
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut digits = [0u8; 60];
        digits[..30].copy_from_slice(&low);
        digits[30..].copy_from_slice(&high);
        Self(digits)
    }

    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }
}

/// The 30 ASCII digits contributed by one key.
fn half(spki_der: &[u8]) -> [u8; 30] {
    let mut hash = Sha512::new_with_prefix(LABEL)
        .chain_update([0u8])
        .chain_update(spki_der)
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(spki_der)
            .finalize();
    }
    let mut digits = [0u8; 30];
    for (group, out) in hash[..30].chunks_exact(5).zip(digits.chunks_exact_mut(5)) {
        let value = group.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)) % 100_000;
        out.copy_from_slice(format!("{value:05}").as_bytes());
    }
    digits
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits().as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(group).expect("ASCII digits"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;

    #[test]
    fn same_from_both_sides() {
        let (a, b) = (test_keys::initiator(), test_keys::responder());
        let ab = SafetyNumber::new(a.public(), b.public());
        let ba = SafetyNumber::new(b.public(), a.public());
        assert_eq!(ab, ba);
        let shown = ab.to_string();
        assert_eq!(shown.len(), 60 + 11);
        assert_eq!(shown.split(' ').count(), 12);
        assert!(
            shown
                .split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
        );
    }

    #[test]
    fn differs_when_a_key_differs() {
        let (a, b, c) = (
            test_keys::initiator(),
            test_keys::responder(),
            test_keys::transient(),
        );
        assert_ne!(
            SafetyNumber::new(a.public(), b.public()),
            SafetyNumber::new(a.public(), c.public())
        );
    }
}
