//! The identity key file: generate, save (PKCS#8 PEM, mode 0600, atomically,
//! optionally under a passphrase), and load with the checks ssh makes.
//!
//! A new key is created with a rename that does not replace: when two `chat`
//! processes create an identity at once, exactly one key is kept, and the
//! other process is told so (and uses it, or refuses), never told to
//! replace it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::crypto::{KeyError, PrivateKey, PublicKey};
use crate::files::{self, ReadOutcome, UnsafePath};
use crate::home::suggested_command_for_file;

/// Default size of a new identity key, in bits.
pub const DEFAULT_BITS: usize = 3072;

/// Largest identity file read: a 4096-bit encrypted PEM key is about 3.5 KiB.
const IDENTITY_FILE_LIMIT: u64 = 64 * 1024;

/// Problems with the identity key file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// There is no key file yet.
    #[error(
        "no identity at {}: run `{}` to create one",
        path.display(),
        suggested_command_for_file(path, &["init"])
    )]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `init` without `--force` over an existing key.
    #[error(
        "an identity already exists at {}; use `{}` to replace it (the old key is kept beside it)",
        path.display(),
        suggested_command_for_file(path, &["init", "--force"])
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Another process created the key while this one was generating its
    /// own; the other key is kept.
    #[error(
        "an identity was created at {} by another chat process meanwhile; it is kept, and the \
         key generated here was discarded (`{}` shows it)",
        path.display(),
        suggested_command_for_file(path, &["fingerprint"])
    )]
    CreatedMeanwhile {
        /// The key file.
        path: PathBuf,
    },
    /// The key file (or the passphrase file) can be read or changed by
    /// others, is not ours, or is a link where a key would be created.
    #[error("{0}")]
    Insecure(UnsafePath),
    /// The file is not a usable key, or the passphrase is wrong.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The key is encrypted and no passphrase can be obtained.
    #[error(
        "{} is protected by a passphrase: run on a terminal to be asked for it, or give --passphrase-file FILE",
        path.display()
    )]
    PassphraseUnavailable {
        /// The key file.
        path: PathBuf,
    },
    /// A passphrase was given but is unusable.
    #[error("{0}")]
    Passphrase(String),
    /// `identity.pub` is not the public half of `identity.pem`.
    #[error(
        "{} does not match {}: it holds {public}, the key's fingerprint is {key}; if the key is \
         the one you meant, delete {} and chat writes it again",
        public_path.display(),
        path.display(),
        public_path.display()
    )]
    PublicMismatch {
        /// The key file.
        path: PathBuf,
        /// identity.pub.
        public_path: PathBuf,
        /// The fingerprint identity.pub holds (or "no valid key").
        public: String,
        /// The key's fingerprint.
        key: String,
    },
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IdentityError + '_ {
    move |source| match files::unsafe_state(&source) {
        Some(problem) => IdentityError::Insecure(problem.clone()),
        None => IdentityError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Loads the identity at `path`. Refuses a file that is not ours or that
/// group or others can read or write, like ssh; never modifies the file.
/// `passphrase` is called only if the key is encrypted.
pub fn load(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Zeroizing<String>, IdentityError>,
) -> Result<PrivateKey, IdentityError> {
    let bytes = match files::read_private(path, IDENTITY_FILE_LIMIT).map_err(io_error(path))? {
        ReadOutcome::Contents(bytes) => Zeroizing::new(bytes),
        ReadOutcome::Missing => {
            // A link that leads nowhere is not "no identity": creating one
            // would mean creating a file through the link.
            if let Ok(target) = fs::read_link(path) {
                return Err(IdentityError::Insecure(UnsafePath {
                    path: path.to_path_buf(),
                    problem: files::Problem::Link { target },
                }));
            }
            return Err(IdentityError::NotFound {
                path: path.to_path_buf(),
            });
        }
        ReadOutcome::TooLarge => {
            return Err(IdentityError::Invalid {
                path: path.to_path_buf(),
                source: KeyError::Malformed("file larger than 64 KiB".into()),
            });
        }
    };
    let invalid = |source| IdentityError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| invalid(KeyError::Malformed("not a PEM text file".into())))?;
    let key = PrivateKey::from_pkcs8_pem(text, passphrase)?.map_err(invalid)?;
    check_public(path, &key)?;
    Ok(key)
}

/// The public key file beside the key at `path` (`identity.pub` for
/// `identity.pem`).
pub fn public_path(path: &Path) -> PathBuf {
    match path.file_name().and_then(|name| name.to_str()) {
        // identity.pem -> identity.pub
        Some(name) if name.ends_with(".pem") => {
            path.with_file_name(format!("{}.pub", &name[..name.len() - ".pem".len()]))
        }
        // Any other key file (such as a backup, identity.pem.old) has its
        // own, as ssh's id_rsa has id_rsa.pub.
        _ => {
            let mut public = path.as_os_str().to_owned();
            public.push(".pub");
            PathBuf::from(public)
        }
    }
}

/// The public key file's name.
pub const PUBLIC_FILE: &str = "identity.pub";

/// Largest `identity.pub` read.
const PUBLIC_FILE_LIMIT: u64 = 16 * 1024;

/// Checks `identity.pub` against the key just loaded: a mismatch is an
/// error. A missing one is written (best effort: a read-only state folder
/// still works), for homes made before `chat init` wrote it.
fn check_public(path: &Path, key: &PrivateKey) -> Result<(), IdentityError> {
    let public_path = public_path(path);
    let found = match read_public(&public_path) {
        Ok(Some(found)) => found,
        Ok(None) => {
            let _ = files::create_atomically(&public_path, key.public().to_pem().as_bytes());
            return Ok(());
        }
        Err(IdentityError::Invalid { .. }) => Err(String::from("no valid key")),
        Err(e) => return Err(e),
    }
    .map(|public| public.fingerprint().to_string());
    let matches = matches!(&found, Ok(f) if *f == key.public().fingerprint().to_string());
    if matches {
        return Ok(());
    }
    Err(IdentityError::PublicMismatch {
        path: path.to_path_buf(),
        public_path,
        public: found.unwrap_or_else(|e| e),
        key: key.public().fingerprint().to_string(),
    })
}

/// Reads `identity.pub` at `public_path`; `None` if there is none.
fn read_public(public_path: &Path) -> Result<Option<Result<PublicKey, String>>, IdentityError> {
    let bytes =
        match files::read_bounded(public_path, PUBLIC_FILE_LIMIT).map_err(io_error(public_path))? {
            ReadOutcome::Missing => return Ok(None),
            ReadOutcome::TooLarge => {
                return Err(IdentityError::Invalid {
                    path: public_path.to_path_buf(),
                    source: KeyError::Malformed("file larger than 16 KiB".into()),
                });
            }
            ReadOutcome::Contents(bytes) => bytes,
        };
    let text = String::from_utf8(bytes).map_err(|_| IdentityError::Invalid {
        path: public_path.to_path_buf(),
        source: KeyError::Malformed("not a PEM text file".into()),
    })?;
    Ok(Some(PublicKey::from_pem(&text).map_err(|e| e.to_string())))
}

/// The public half of the identity at `path`, for `chat fingerprint`:
/// from the key itself when it is not encrypted (and then checked against
/// `identity.pub`), else from `identity.pub` without asking for the
/// passphrase; `passphrase` is called only for an encrypted key with no
/// `identity.pub` beside it.
pub fn load_public(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Zeroizing<String>, IdentityError>,
) -> Result<PublicKey, IdentityError> {
    let unavailable = || {
        Err(IdentityError::PassphraseUnavailable {
            path: path.to_path_buf(),
        })
    };
    match load(path, unavailable) {
        Ok(key) => Ok(key.public().clone()),
        Err(IdentityError::PassphraseUnavailable { .. }) => {
            match read_public(&public_path(path))? {
                Some(Ok(public)) => Ok(public),
                Some(Err(problem)) => Err(IdentityError::Invalid {
                    path: public_path(path),
                    source: KeyError::Malformed(problem),
                }),
                None => load(path, passphrase).map(|key| key.public().clone()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Writes a new identity to `path`, encrypted when `passphrase` is given.
///
/// Without `force`, the new key is renamed into place only if no key is
/// there ([`IdentityError::CreatedMeanwhile`] otherwise; the other key is
/// kept). With `force`, an existing key is kept as `PATH.old` (or
/// `PATH.old.1`, `.2`, ... if that name is taken) before the new key
/// atomically takes its place. Returns the backup's path, if any.
pub fn save(
    path: &Path,
    key: &PrivateKey,
    passphrase: Option<&str>,
    force: bool,
    rng: &mut impl CryptoRng,
) -> Result<Option<PathBuf>, IdentityError> {
    // Without `force`, no look before the write: a key that appeared while
    // ours was being generated is found by the no-replace rename below, and
    // is another process's, not one to replace (the caller looked for an
    // existing key before it generated).
    let pem = match passphrase {
        Some(passphrase) => key.to_pkcs8_encrypted_pem(rng, passphrase),
        None => key.to_pkcs8_pem(),
    };
    let write_public = || {
        files::write_atomically(&public_path(path), key.public().to_pem().as_bytes())
            .map_err(io_error(&public_path(path)))
    };
    if !force {
        return match files::create_atomically(path, pem.as_bytes()) {
            Ok(()) => write_public().map(|()| None),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(IdentityError::CreatedMeanwhile {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(io_error(path)(e)),
        };
    }
    let backup = if fs::symlink_metadata(path).is_ok() {
        // A hard link keeps the old key reachable at every instant: the
        // rename below swaps the new key in without a moment of no identity.
        Some(link_backup(path)?)
    } else {
        None
    };
    files::write_atomically(path, pem.as_bytes()).map_err(io_error(path))?;
    write_public()?;
    Ok(backup)
}

/// Hard-links the key at `path` to the first free name of `PATH.old`,
/// `PATH.old.1`, ...; a name another process takes meanwhile is skipped.
fn link_backup(path: &Path) -> Result<PathBuf, IdentityError> {
    let base = format!("{}.old", path.display());
    let candidates = std::iter::once(PathBuf::from(&base))
        .chain((1..).map(|n| PathBuf::from(format!("{base}.{n}"))));
    for candidate in candidates {
        match fs::hard_link(path, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&candidate)(e)),
        }
    }
    unreachable!("an unused name exists")
}

/// Where the identity [`load_or_create`] returns came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It was there.
    Loaded,
    /// This process created it.
    Created,
    /// Another process created it while this one was generating its own;
    /// that one is used.
    CreatedMeanwhile,
}

/// Loads the identity at `path`, or generates and saves an unencrypted one of
/// [`DEFAULT_BITS`] if there is none. If another process creates one
/// meanwhile, that one is loaded and used. `passphrase` is called only for
/// an encrypted key.
pub fn load_or_create(
    path: &Path,
    mut passphrase: impl FnMut() -> Result<Zeroizing<String>, IdentityError>,
    rng: &mut impl CryptoRng,
) -> Result<(PrivateKey, Origin), IdentityError> {
    match load(path, &mut passphrase) {
        Err(IdentityError::NotFound { .. }) => {
            let key = PrivateKey::generate(rng, DEFAULT_BITS).map_err(|source| {
                IdentityError::Invalid {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            match save(path, &key, None, false, rng) {
                Ok(_) => Ok((key, Origin::Created)),
                Err(IdentityError::CreatedMeanwhile { .. }) => {
                    load(path, &mut passphrase).map(|key| (key, Origin::CreatedMeanwhile))
                }
                Err(e) => Err(e),
            }
        }
        other => other.map(|key| (key, Origin::Loaded)),
    }
}

/// Reads a passphrase from a file: the first line, without its line ending.
/// Like the key it protects, the file must be ours and readable by no one else.
pub fn read_passphrase_file(path: &Path) -> Result<Zeroizing<String>, IdentityError> {
    let bytes = match files::read_private(path, 4096).map_err(io_error(path))? {
        ReadOutcome::Contents(bytes) => Zeroizing::new(bytes),
        ReadOutcome::Missing => {
            return Err(io_error(path)(io::ErrorKind::NotFound.into()));
        }
        ReadOutcome::TooLarge => {
            return Err(IdentityError::Passphrase(format!(
                "passphrase file {} is larger than 4 KiB",
                path.display()
            )));
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        IdentityError::Passphrase(format!("passphrase file {} is not UTF-8", path.display()))
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(IdentityError::Passphrase(format!(
            "passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;
    use std::os::unix::fs::PermissionsExt;

    fn no_passphrase() -> Result<Zeroizing<String>, IdentityError> {
        panic!("no passphrase expected")
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let key = test_keys::initiator();
        assert_eq!(
            save(&path, &key, None, false, &mut rand::rng()).unwrap(),
            None
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path, no_passphrase).unwrap().public(), key.public());
    }

    #[test]
    fn force_keeps_every_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let mut rng = rand::rng();
        save(&path, &test_keys::initiator(), None, false, &mut rng).unwrap();
        assert!(matches!(
            save(&path, &test_keys::responder(), None, false, &mut rng),
            Err(IdentityError::CreatedMeanwhile { .. })
        ));
        let first = save(&path, &test_keys::responder(), None, true, &mut rng).unwrap();
        assert_eq!(first, Some(dir.path().join("identity.pem.old")));
        let second = save(&path, &test_keys::transient(), None, true, &mut rng).unwrap();
        assert_eq!(second, Some(dir.path().join("identity.pem.old.1")));
        let old = load(&dir.path().join("identity.pem.old"), no_passphrase).unwrap();
        assert_eq!(old.public(), test_keys::initiator().public());
        let current = load(&path, no_passphrase).unwrap();
        assert_eq!(current.public(), test_keys::transient().public());
    }

    #[test]
    fn refuses_group_readable_key_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        save(
            &path,
            &test_keys::initiator(),
            None,
            false,
            &mut rand::rng(),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let before = fs::read(&path).unwrap();
        let err = load(&path, no_passphrase).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_key_created_meanwhile_is_kept_and_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let mut rng = rand::rng();
        // The winner's key appears after the loser checked and before it
        // renames its own into place: simulated by writing it between the
        // two, through the same no-replace creation.
        let winner = test_keys::initiator();
        files::create_atomically(&path, winner.to_pkcs8_pem().as_bytes()).unwrap();
        let err = files::create_atomically(&path, test_keys::responder().to_pkcs8_pem().as_bytes())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            load(&path, no_passphrase).unwrap().public(),
            winner.public()
        );
        let (key, origin) = load_or_create(&path, no_passphrase, &mut rng).unwrap();
        assert_eq!((key.public(), origin), (winner.public(), Origin::Loaded));
        let message = IdentityError::CreatedMeanwhile { path: path.clone() }.to_string();
        assert!(message.contains("another chat process"), "{message}");
        assert!(!message.contains("--force"), "{message}");
    }

    #[test]
    fn a_dangling_link_is_not_taken_for_a_missing_key() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        std::os::unix::fs::symlink(outside.path().join("key"), &path).unwrap();
        let err = load_or_create(&path, no_passphrase, &mut rand::rng()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!outside.path().join("key").exists());
    }
}
