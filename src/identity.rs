//! The identity key file: generate, save (PKCS#8 PEM, mode 0600, atomically,
//! optionally under a passphrase), and load with the checks ssh makes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::crypto::{KeyError, PrivateKey};
use crate::files::{self, ReadOutcome};

/// Default size of a new identity key, in bits.
pub const DEFAULT_BITS: usize = 3072;

/// Largest identity file read: a 4096-bit encrypted PEM key is about 3.5 KiB.
const IDENTITY_FILE_LIMIT: u64 = 64 * 1024;

/// Problems with the identity key file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// There is no key file yet.
    #[error("no identity at {}: run `chat init` to create one", path.display())]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `init` without `--force` over an existing key.
    #[error(
        "an identity already exists at {}; use `chat init --force` to replace it (the old key is kept beside it)",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The key file can be read by group or others.
    #[error(
        "permissions {mode:04o} for {} are too open: a private key must be readable only by you. Fix: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Insecure {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
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
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the identity at `path`. Refuses a file that group or others can
/// read, like ssh; never modifies the file. `passphrase` is called only if
/// the key is encrypted.
pub fn load(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Zeroizing<String>, IdentityError>,
) -> Result<PrivateKey, IdentityError> {
    match files::loose_permissions(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(IdentityError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_error(path)(e)),
        Ok(Some(mode)) => {
            return Err(IdentityError::Insecure {
                path: path.to_path_buf(),
                mode,
            });
        }
        Ok(None) => {}
    }
    let bytes = match files::read_bounded(path, IDENTITY_FILE_LIMIT).map_err(io_error(path))? {
        ReadOutcome::Contents(bytes) => Zeroizing::new(bytes),
        ReadOutcome::Missing => return Err(io_error(path)(io::ErrorKind::NotFound.into())),
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
    PrivateKey::from_pkcs8_pem(text, passphrase)?.map_err(invalid)
}

/// Writes a new identity to `path`, encrypted when `passphrase` is given.
///
/// An existing key is refused unless `force`; then it is kept as
/// `PATH.old` (or `PATH.old.1`, `.2`, ... if that name is taken) before the
/// new key atomically takes its place. Returns the backup's path, if any.
pub fn save(
    path: &Path,
    key: &PrivateKey,
    passphrase: Option<&str>,
    force: bool,
    rng: &mut impl CryptoRng,
) -> Result<Option<PathBuf>, IdentityError> {
    let exists = fs::symlink_metadata(path).is_ok();
    if exists && !force {
        return Err(IdentityError::Exists {
            path: path.to_path_buf(),
        });
    }
    let pem = match passphrase {
        Some(passphrase) => key.to_pkcs8_encrypted_pem(rng, passphrase),
        None => key.to_pkcs8_pem(),
    };
    let backup = if exists {
        let backup = free_backup_name(path);
        // A hard link keeps the old key reachable at every instant: the
        // rename below swaps the new key in without a moment of no identity.
        fs::hard_link(path, &backup).map_err(io_error(&backup))?;
        Some(backup)
    } else {
        None
    };
    files::write_atomically(path, pem.as_bytes()).map_err(io_error(path))?;
    Ok(backup)
}

fn free_backup_name(path: &Path) -> PathBuf {
    let base = format!("{}.old", path.display());
    std::iter::once(PathBuf::from(&base))
        .chain((1..).map(|n| PathBuf::from(format!("{base}.{n}"))))
        .find(|candidate| fs::symlink_metadata(candidate).is_err())
        .expect("an unused name exists")
}

/// Loads the identity at `path`, or generates and saves an unencrypted one of
/// [`DEFAULT_BITS`] if there is none. The flag tells whether it was created.
pub fn load_or_create(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Zeroizing<String>, IdentityError>,
    rng: &mut impl CryptoRng,
) -> Result<(PrivateKey, bool), IdentityError> {
    match load(path, passphrase) {
        Err(IdentityError::NotFound { .. }) => {
            let key = PrivateKey::generate(rng, DEFAULT_BITS).map_err(|source| {
                IdentityError::Invalid {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            save(path, &key, None, false, rng)?;
            Ok((key, true))
        }
        other => other.map(|key| (key, false)),
    }
}

/// Reads a passphrase from a file: the first line, without its line ending.
pub fn read_passphrase_file(path: &Path) -> Result<Zeroizing<String>, IdentityError> {
    let bytes = match files::read_bounded(path, 4096).map_err(io_error(path))? {
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
            Err(IdentityError::Exists { .. })
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
}
