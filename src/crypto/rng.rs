//! Randomness plumbing: drawing the protocol's random values from the
//! injected generator in a documented order.

use std::convert::Infallible;

use rand::{CryptoRng, TryCryptoRng, TryRng};

/// Draws `N` bytes.
pub fn random_bytes<const N: usize>(rng: &mut impl CryptoRng) -> [u8; N] {
    let mut bytes = [0u8; N];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// A generator that first hands out `prefix`, then continues from `rest`.
///
/// The RSA padding functions draw their own randomness (the OAEP seed, the
/// PSS salt) and then blinding values. We draw the seed or salt ourselves, so
/// that it is a named value in `docs/vectors/`, and give it back through this
/// wrapper as the padding's first draw; blinding, which does not change the
/// output, then comes from the injected generator.
pub struct Prefixed<'a, R: ?Sized> {
    prefix: &'a [u8],
    rest: &'a mut R,
}

impl<'a, R: CryptoRng + ?Sized> Prefixed<'a, R> {
    /// `prefix` first, then `rest`.
    pub fn new(prefix: &'a [u8], rest: &'a mut R) -> Self {
        Self { prefix, rest }
    }
}

impl<R: CryptoRng + ?Sized> TryRng for Prefixed<'_, R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let n = self.prefix.len().min(dst.len());
        let (from_prefix, from_rest) = dst.split_at_mut(n);
        from_prefix.copy_from_slice(&self.prefix[..n]);
        self.prefix = &self.prefix[n..];
        self.rest.fill_bytes(from_rest);
        Ok(())
    }
}

impl<R: CryptoRng + ?Sized> TryCryptoRng for Prefixed<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn prefix_comes_first_then_the_rest() {
        let mut inner = rand::rng();
        let mut rng = Prefixed::new(&[1, 2, 3], &mut inner);
        let mut two = [0u8; 2];
        rng.fill_bytes(&mut two);
        assert_eq!(two, [1, 2]);
        let mut more = [0u8; 33];
        rng.fill_bytes(&mut more);
        assert_eq!(more[0], 3);
        assert_ne!(&more[1..], &[0u8; 32], "continues from the inner generator");
    }
}
