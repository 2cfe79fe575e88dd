//! Keeping what a peer sent and saving it where the user says: the one place
//! that writes received bytes to a file.
//!
//! A [`Spool`] holds a message too large to keep in memory in an unnamed
//! temporary file (it has no name in any folder and is gone when the
//! program exits), encrypted with AES-256-GCM under a key that exists only
//! in this process: what reaches the disk cannot be read after we exit.
//! [`save_new`] writes bytes to a path the user chose, byte for byte, and
//! never replaces an existing file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::aead::{Aes256GcmCipher, IV_LEN, KEY_LEN};
use crate::protocol::TAG_LEN;

/// Plaintext bytes per sealed block of a spool.
const BLOCK: usize = 64 * 1024;

/// A message held on disk, encrypted, until it is saved or dropped.
pub struct Spool {
    file: File,
    cipher: Aes256GcmCipher,
    /// Plaintext not yet sealed (less than a block).
    pending: Vec<u8>,
    /// Blocks sealed and written.
    blocks: u64,
    length: u64,
    finished: bool,
}

impl Spool {
    /// An empty spool in a new unnamed temporary file.
    pub fn new() -> io::Result<Self> {
        let key: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(crate::crypto::rng::random_bytes(&mut rand::rng()));
        Ok(Self {
            file: tempfile::tempfile()?,
            cipher: Aes256GcmCipher::new(&key),
            pending: Vec::with_capacity(BLOCK),
            blocks: 0,
            length: 0,
            finished: false,
        })
    }

    fn nonce(block: u64) -> [u8; IV_LEN] {
        let mut nonce = [0u8; IV_LEN];
        nonce[IV_LEN - 8..].copy_from_slice(&block.to_be_bytes());
        nonce
    }

    /// Seals the pending bytes as the next block and writes it.
    fn seal_pending(&mut self) -> io::Result<()> {
        let mut sealed = std::mem::take(&mut self.pending);
        let tag = self
            .cipher
            .seal(&Self::nonce(self.blocks), &[], &mut sealed)
            .ok_or_else(|| io::Error::other("sealing a block of the message failed"))?;
        sealed.extend_from_slice(&tag);
        let offset = self.blocks * (BLOCK + TAG_LEN) as u64;
        self.file.write_all_at(&sealed, offset)?;
        self.blocks += 1;
        sealed.clear();
        self.pending = sealed;
        Ok(())
    }

    /// Appends bytes.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.length += n as u64;
            if self.pending.len() == BLOCK {
                self.seal_pending()?;
            }
        }
        Ok(())
    }

    /// No more bytes will come: seals the last block.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.seal_pending()?;
        }
        self.finished = true;
        Ok(())
    }

    /// How many bytes it holds.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Reads the message back from the start (once finished). Several
    /// readers may read at once.
    pub fn reader(&self) -> SpoolReader<'_> {
        debug_assert!(self.finished, "read before finish");
        SpoolReader {
            spool: self,
            block: 0,
            buffer: Zeroizing::new(Vec::new()),
            at: 0,
        }
    }
}

/// Reads a [`Spool`] block by block.
pub struct SpoolReader<'a> {
    spool: &'a Spool,
    block: u64,
    buffer: Zeroizing<Vec<u8>>,
    at: usize,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            let start = self.block * BLOCK as u64;
            if start >= self.spool.length {
                return Ok(0);
            }
            let plain = (self.spool.length - start).min(BLOCK as u64) as usize;
            self.buffer.resize(plain + TAG_LEN, 0);
            self.spool
                .file
                .read_exact_at(&mut self.buffer, self.block * (BLOCK + TAG_LEN) as u64)?;
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&self.buffer[plain..]);
            self.buffer.truncate(plain);
            if !self
                .spool
                .cipher
                .open(&Spool::nonce(self.block), &[], &mut self.buffer, &tag)
            {
                return Err(io::Error::other(
                    "the temporary copy of the message was altered",
                ));
            }
            self.block += 1;
            self.at = 0;
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..n + self.at]);
        self.at += n;
        Ok(n)
    }
}

/// Why bytes were not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The path names a file (or link, or anything) that exists already.
    #[error("{} already exists; choose another name (nothing is ever replaced)", .0.display())]
    Exists(PathBuf),
    /// Creating or writing the file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `~/...` means the home folder, as in a shell (`~//x` too: the slashes
/// after `~` never make the rest an absolute path).
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// Writes everything `source` yields to a new file at `path` (mode 0600,
/// never through a symbolic link, never over an existing file), flushed to
/// disk. A file left half-written by an error is removed. Returns the number
/// of bytes written.
///
/// It goes the way a received file goes (`app/files/save_dir.rs`): through
/// a handle on the folder, into a hidden partial file, flushed, then
/// renamed to its name without replacing anything.
pub fn save_new(path: &Path, source: &mut dyn Read) -> Result<u64, SaveError> {
    let io = |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io(io::Error::other("not a file name in UTF-8")))?;
    let save = super::files::save_dir::SaveDir::open(folder).map_err(io)?;
    match save.write_new(name, source, false) {
        Ok((_, written)) => Ok(written),
        Err(super::files::save_dir::PlaceError::NameTaken) => {
            Err(SaveError::Exists(path.to_path_buf()))
        }
        Err(super::files::save_dir::PlaceError::Io(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_spool_gives_back_every_byte_and_keeps_none_in_clear() {
        let message: Vec<u8> = (0..3 * BLOCK + 123).map(|i| (i * 7 % 251) as u8).collect();
        let mut spool = Spool::new().unwrap();
        for piece in message.chunks(1000) {
            spool.write(piece).unwrap();
        }
        spool.finish().unwrap();
        assert_eq!(spool.length(), message.len() as u64);
        let mut back = Vec::new();
        spool.reader().read_to_end(&mut back).unwrap();
        assert_eq!(back, message);
        // What is on disk is not the message.
        let mut on_disk = Vec::new();
        let mut file = spool.file.try_clone().unwrap();
        io::Seek::rewind(&mut file).unwrap();
        file.read_to_end(&mut on_disk).unwrap();
        assert_eq!(on_disk.len(), message.len() + 4 * TAG_LEN);
        assert!(!on_disk.windows(64).any(|w| w == &message[1000..1064]));
    }

    #[test]
    fn saving_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let bytes = b"\x00\xffbinary\r\n\x1b[2J";
        assert_eq!(
            save_new(&path, &mut &bytes[..]).unwrap(),
            bytes.len() as u64
        );
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(matches!(
            save_new(&path, &mut &b"other"[..]),
            Err(SaveError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), bytes);
        // Not through a planted link either, even a dangling one.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert!(matches!(
            save_new(&link, &mut &b"x"[..]),
            Err(SaveError::Exists(_))
        ));
        assert!(!dir.path().join("target").exists());
        let missing = dir.path().join("no/such/folder/x");
        let error = save_new(&missing, &mut &b"x"[..]).unwrap_err().to_string();
        assert!(error.starts_with("cannot write "), "{error}");
    }
}
