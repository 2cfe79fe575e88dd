//! Careful file handling for the state folder: atomic replacement, lock files,
//! bounded reads and the permission checks a private key needs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file `chat` writes in the state folder.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Replaces `path` with `contents` so that a reader sees either the old file or
/// the new one, never a mix, even across a crash: the bytes go to a temporary
/// file in the same folder, which is flushed to disk, renamed over `path`, and
/// the folder is flushed so the rename itself is durable.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Flushes a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An exclusive advisory lock on a lock file, held until dropped. Two `chat`
/// processes that both take it before a read-modify-write cannot lose each
/// other's changes.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

impl LockFile {
    /// Creates `path` if needed and waits until the lock is ours.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_FILE_MODE)
            .open(path)?;
        file.lock()?;
        Ok(Self { _file: file })
    }
}

/// What [`read_bounded`] found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The whole file, no longer than the bound.
    Contents(Vec<u8>),
    /// There is no file at the path.
    Missing,
    /// The file is longer than the bound; nothing beyond it was read.
    TooLarge,
}

/// Reads a whole file, refusing to hold more than `limit` bytes of it.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<ReadOutcome> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadOutcome::Missing),
        Err(e) => return Err(e),
    };
    let mut contents = Vec::new();
    file.take(limit + 1).read_to_end(&mut contents)?;
    if contents.len() as u64 > limit {
        return Ok(ReadOutcome::TooLarge);
    }
    Ok(ReadOutcome::Contents(contents))
}

/// The permission bits of `path` that let group or others read or write it, if any.
pub fn loose_permissions(path: &Path) -> io::Result<Option<u32>> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(loose_permissions(&path).unwrap(), None);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bounded_read_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, [0u8; 11]).unwrap();
        assert!(matches!(
            read_bounded(&path, 10).unwrap(),
            ReadOutcome::TooLarge
        ));
        assert!(
            matches!(read_bounded(&path, 11).unwrap(), ReadOutcome::Contents(c) if c.len() == 11)
        );
        assert!(matches!(
            read_bounded(&dir.path().join("none"), 10).unwrap(),
            ReadOutcome::Missing
        ));
    }
}
