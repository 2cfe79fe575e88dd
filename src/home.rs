//! The state folder: where the identity, the known peers and the optional
//! configuration live. See `docs/FILES.md`.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::files::{self, ReadOutcome};

/// Identity key file name.
pub const IDENTITY_FILE: &str = "identity.pem";
/// Known-peers file name.
pub const KNOWN_PEERS_FILE: &str = "known_peers.toml";
/// Optional configuration file name.
pub const CONFIG_FILE: &str = "config.toml";

/// Largest configuration file read.
const CONFIG_LIMIT: u64 = 64 * 1024;

/// Problems with the state folder or `config.toml`.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No `--home`, no `CHAT_HOME` and no platform config folder.
    #[error("cannot find a home folder for chat's state: give --home DIR or set CHAT_HOME")]
    NoDefault,
    /// The folder cannot be created or read.
    #[error("cannot use the state folder {}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `config.toml` is not valid.
    #[error("{}:{line}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The optional `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Nickname announced to peers when `--name` is not given.
    pub name: Option<String>,
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Uses `dir` (from `--home` or `CHAT_HOME`), else the platform's config folder.
    pub fn locate(dir: Option<PathBuf>) -> Result<Self, HomeError> {
        let dir = match dir {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("", "", "chat")
                .ok_or(HomeError::NoDefault)?
                .config_dir()
                .to_path_buf(),
        };
        Ok(Self { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder (mode 0700) and its parents if missing.
    pub fn create(&self) -> Result<(), HomeError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| HomeError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// `identity.pem`.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// `known_peers.toml`.
    pub fn known_peers_path(&self) -> PathBuf {
        self.dir.join(KNOWN_PEERS_FILE)
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Reads `config.toml`; a missing file is the default configuration.
    pub fn config(&self) -> Result<Config, HomeError> {
        let path = self.config_path();
        let io_error = |source| HomeError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match files::read_bounded(&path, CONFIG_LIMIT).map_err(io_error)? {
            ReadOutcome::Missing => return Ok(Config::default()),
            ReadOutcome::TooLarge => {
                return Err(io_error(io::Error::other("larger than 64 KiB")));
            }
            ReadOutcome::Contents(bytes) => bytes,
        };
        let text =
            String::from_utf8(bytes).map_err(|_| io_error(io::Error::other("not UTF-8 text")))?;
        toml::from_str(&text).map_err(|e| HomeError::Config {
            line: line_of(&text, e.span().map_or(0, |s| s.start)),
            message: e.message().to_string(),
            path,
        })
    }
}

/// The 1-based line number of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_folder() {
        let root = tempfile::tempdir().unwrap();
        let home = Home::locate(Some(root.path().join("a/b"))).unwrap();
        home.create().unwrap();
        let mode = std::fs::metadata(home.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn config_is_optional_and_strict() {
        let root = tempfile::tempdir().unwrap();
        let home = Home::locate(Some(root.path().to_path_buf())).unwrap();
        assert!(home.config().unwrap().name.is_none());
        std::fs::write(home.config_path(), "name = \"ada\"\n").unwrap();
        assert_eq!(home.config().unwrap().name.as_deref(), Some("ada"));
        std::fs::write(home.config_path(), "\nnmae = \"ada\"\n").unwrap();
        let err = home.config().unwrap_err().to_string();
        assert!(err.contains("config.toml:2:"), "{err}");
    }
}
