//! Careful file handling for the state folder: atomic replacement, lock
//! files, bounded reads, and the ownership and permission checks ssh makes
//! (its `StrictModes`).
//!
//! Every file `chat` creates in the state folder is created so that a
//! planted symbolic link cannot redirect it: new files are opened with
//! `O_CREAT | O_EXCL` (a temporary file, then renamed into place; a rename
//! replaces a link, never writes through it), and the lock file, which is
//! opened in place, with `O_NOFOLLOW`. Every descriptor is `O_CLOEXEC`, so no
//! child process inherits one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file `chat` writes in the state folder.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Flags for every state file `chat` opens in place: never through a
/// symbolic link, never inherited by a child process, and never blocked on
/// a FIFO planted where a file should be.
const STATE_OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// Who besides us may touch a file, in the judgement of [`check_owner_and_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Others may read it but not change it (`known_peers.toml`,
    /// `config.toml`, the state folder itself): what it says decides whom we
    /// trust.
    Shared,
    /// Only we may read or write it (the identity key, a passphrase file).
    Private,
}

/// A state file or folder that others could change or read, or a link
/// where `chat` would create a file. Carried inside an [`io::Error`]; see
/// [`unsafe_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafePath {
    /// The file or folder.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What makes a path unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Permission bits that let group or others in.
    Mode {
        /// The permission bits.
        mode: u32,
        /// The rule they break.
        access: Access,
        /// A folder rather than a file.
        folder: bool,
    },
    /// Owned by someone other than us or root.
    Owner {
        /// Its owner.
        uid: u32,
        /// Our effective user id.
        ours: u32,
    },
    /// A symbolic link where `chat` opens or creates a file.
    Link {
        /// Where it points.
        target: PathBuf,
    },
    /// Not a regular file (a FIFO, a device, a folder).
    NotAFile,
}

impl fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Mode {
                mode,
                access,
                folder,
            } => {
                let (rule, fix) = match (access, folder) {
                    (_, true) => (
                        "a state folder must not be writable by group or others",
                        700,
                    ),
                    (Access::Shared, false) => ("it must not be writable by group or others", 600),
                    (Access::Private, false) => ("it must be readable only by you", 600),
                };
                write!(
                    f,
                    "permissions {mode:04o} for {path} are too open: {rule}. Fix: chmod {fix} {}",
                    crate::home::shell_quote(&self.path.to_string_lossy())
                )
            }
            Problem::Owner { uid, ours } => write!(
                f,
                "{path} is owned by user {uid}, not by you (user {ours}) or root, who alone may \
                 control chat's state. Fix: chown {ours} {} (as root), or use another --home",
                crate::home::shell_quote(&self.path.to_string_lossy())
            ),
            Problem::Link { target } => write!(
                f,
                "{path} is a symbolic link (to {}); chat does not open or create its state files \
                 through links. Fix: remove the link (rm {})",
                target.display(),
                crate::home::shell_quote(&self.path.to_string_lossy())
            ),
            Problem::NotAFile => write!(
                f,
                "{path} is not a regular file; chat does not use it. Fix: remove it"
            ),
        }
    }
}

impl std::error::Error for UnsafePath {}

impl UnsafePath {
    fn into_io(self) -> io::Error {
        let kind = match self.problem {
            Problem::Mode { .. } | Problem::Owner { .. } => io::ErrorKind::PermissionDenied,
            Problem::Link { .. } | Problem::NotAFile => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, self)
    }
}

/// The [`UnsafePath`] an I/O error from this module carries, if any.
pub fn unsafe_state(error: &io::Error) -> Option<&UnsafePath> {
    error.get_ref()?.downcast_ref::<UnsafePath>()
}

/// Our effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses what others could control, as ssh's `StrictModes` does: the
/// owner must be us or root, and the permission bits must not let group or
/// others write (any [`Access`]) or read ([`Access::Private`]).
pub fn check_owner_and_mode(
    path: &Path,
    metadata: &fs::Metadata,
    access: Access,
) -> Result<(), UnsafePath> {
    let ours = effective_uid();
    let uid = metadata.uid();
    if uid != ours && uid != 0 {
        return Err(UnsafePath {
            path: path.to_path_buf(),
            problem: Problem::Owner { uid, ours },
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    let forbidden = match access {
        Access::Shared => 0o022,
        Access::Private => 0o077,
    };
    if mode & forbidden != 0 {
        return Err(UnsafePath {
            path: path.to_path_buf(),
            problem: Problem::Mode {
                mode,
                access,
                folder: metadata.is_dir(),
            },
        });
    }
    Ok(())
}

/// Checks the state folder: ours (or root's), not writable by group or
/// others. A folder that does not exist yet is fine (it is created 0700).
pub fn check_folder(dir: &Path) -> io::Result<()> {
    let metadata = match fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a folder", dir.display()),
        ));
    }
    check_owner_and_mode(dir, &metadata, Access::Shared).map_err(UnsafePath::into_io)
}

/// The link at `path`, if it is one, as an error that says so.
fn link_error(path: &Path) -> Option<io::Error> {
    let target = fs::read_link(path).ok()?;
    Some(
        UnsafePath {
            path: path.to_path_buf(),
            problem: Problem::Link { target },
        }
        .into_io(),
    )
}

/// Replaces `path` with `contents` so that a reader sees either the old file or
/// the new one, never a mix, even across a crash: the bytes go to a new
/// temporary file in the same folder (created with `O_EXCL`), which is
/// flushed to disk, renamed over `path`, and the folder is flushed so the
/// rename itself is durable. A link at `path` is replaced, not followed.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temporary(path, contents)?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent(path))
}

/// Creates `path` with `contents`, atomically as [`write_atomically`], but
/// only if nothing is there yet: with two creators at once, exactly one
/// wins and the other gets [`io::ErrorKind::AlreadyExists`] (a rename that
/// does not replace: `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink`
/// where the file system lacks it).
pub fn create_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temporary(path, contents)?;
    temp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(parent(path))
}

/// A new temporary file beside `path` holding `contents`, flushed to disk.
fn write_temporary(path: &Path, contents: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    Ok(temp)
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
    /// Creates `path` if needed (mode 0600) and waits until the lock is
    /// ours. Refuses a symbolic link (nothing is created through it) and
    /// anything but a regular file.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .custom_flags(STATE_OPEN_FLAGS)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => link_error(path).unwrap_or(e),
                _ => e,
            })?;
        if !file.metadata()?.is_file() {
            return Err(UnsafePath {
                path: path.to_path_buf(),
                problem: Problem::NotAFile,
            }
            .into_io());
        }
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

/// Reads a whole state file that others may read but not change
/// ([`Access::Shared`]), refusing to hold more than `limit` bytes of it.
/// A file others could change is an error that carries an [`UnsafePath`].
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<ReadOutcome> {
    read_checked(path, limit, Access::Shared)
}

/// Reads a whole file that only we may read ([`Access::Private`]): the
/// identity key, a passphrase file.
pub fn read_private(path: &Path, limit: u64) -> io::Result<ReadOutcome> {
    read_checked(path, limit, Access::Private)
}

/// Opens `path` (following a link the user made: the checks apply to
/// the file it reaches), checks the open file's owner, mode and type, and
/// reads at most `limit + 1` bytes.
fn read_checked(path: &Path, limit: u64, access: Access) -> io::Result<ReadOutcome> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadOutcome::Missing),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(UnsafePath {
            path: path.to_path_buf(),
            problem: Problem::NotAFile,
        }
        .into_io());
    }
    check_owner_and_mode(path, &metadata, access).map_err(UnsafePath::into_io)?;
    let mut contents = Vec::new();
    file.take(limit + 1).read_to_end(&mut contents)?;
    if contents.len() as u64 > limit {
        return Ok(ReadOutcome::TooLarge);
    }
    Ok(ReadOutcome::Contents(contents))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_replaces_a_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        fs::write(&target, "theirs").unwrap();
        let path = dir.path().join("file");
        symlink(&target, &path).unwrap();
        write_atomically(&path, b"ours").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"theirs");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
    }

    #[test]
    fn create_atomically_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        create_atomically(&path, b"first").unwrap();
        let err = create_atomically(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // A dangling link counts as taken: nothing is created through it.
        let outside = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        symlink(outside.path().join("target"), &link).unwrap();
        let err = create_atomically(&link, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!outside.path().join("target").exists());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn lock_file_refuses_links_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        let lock = dir.path().join("file.lock");
        symlink(&target, &lock).unwrap();
        let err = LockFile::acquire(&lock).unwrap_err();
        assert!(
            matches!(unsafe_state(&err), Some(UnsafePath { problem: Problem::Link { target: t }, .. }) if *t == target),
            "{err}"
        );
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!target.exists(), "created through the link");
        fs::remove_file(&lock).unwrap();
        let fifo = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = LockFile::acquire(&lock).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        fs::remove_file(&lock).unwrap();
        LockFile::acquire(&lock).unwrap();
        assert_eq!(mode(&lock), 0o600);
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

    #[test]
    fn reads_refuse_what_others_could_change_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, "x").unwrap();
        let cases = [
            (0o600, true, true),
            (0o644, true, false),
            (0o640, true, false),
            (0o604, true, false),
            (0o400, true, true),
            (0o664, false, false),
            (0o646, false, false),
            (0o620, false, false),
        ];
        for (bits, shared_ok, private_ok) in cases {
            fs::set_permissions(&path, fs::Permissions::from_mode(bits)).unwrap();
            let shared = read_bounded(&path, 10);
            let private = read_private(&path, 10);
            assert_eq!(shared.is_ok(), shared_ok, "{bits:o}: {shared:?}");
            assert_eq!(private.is_ok(), private_ok, "{bits:o}: {private:?}");
            if let Err(e) = private {
                let text = e.to_string();
                assert!(text.contains(&format!("{bits:04o}")), "{text}");
                assert!(text.contains("chmod 600"), "{text}");
                assert!(matches!(
                    unsafe_state(&e).map(|u| &u.problem),
                    Some(Problem::Mode { .. })
                ));
            }
        }
    }

    #[test]
    fn folders_writable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_folder(dir.path()).unwrap();
        check_folder(&dir.path().join("missing")).unwrap();
        for bits in [0o770, 0o720, 0o702, 0o777, 0o1777] {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(bits)).unwrap();
            let err = check_folder(dir.path()).unwrap_err().to_string();
            assert!(err.contains("chmod 700"), "{bits:o}: {err}");
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        check_folder(dir.path()).unwrap();
    }
}
