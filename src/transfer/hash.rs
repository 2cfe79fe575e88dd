//! The SHA-256 of a file as its bytes pass through: the prefix a receiver
//! already holds, then the data that follows. The same running hash gives
//! the prefix's digest for a resume proposal (FILE_ACCEPT) and, continued,
//! the whole file's digest that FILE_END must match, so a resumed file is
//! checked from byte 0.

use std::fmt;

use sha2::{Digest, Sha256};

/// A running SHA-256 that counts the bytes it has taken.
#[derive(Clone, Default)]
pub struct FileHasher {
    sha: Sha256,
    len: u64,
}

impl FileHasher {
    /// A hash of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes it has taken: the file's bytes 0 to `len - 1`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has taken nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of what it has taken so far; it can go on taking more.
    pub fn digest(&self) -> [u8; 32] {
        self.sha.clone().finalize().into()
    }
}

impl fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHasher({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_digest_then_the_whole_file() {
        let file: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut hasher = FileHasher::new();
        hasher.update(&file[..300]);
        assert_eq!(hasher.len(), 300);
        let prefix: [u8; 32] = Sha256::digest(&file[..300]).into();
        assert_eq!(hasher.digest(), prefix);
        hasher.update(&file[300..]);
        let whole: [u8; 32] = Sha256::digest(&file).into();
        assert_eq!(hasher.digest(), whole);
        assert_eq!(format!("{hasher:?}"), "FileHasher(1000 bytes)");
    }
}
