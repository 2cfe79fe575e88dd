//! The state folder: where the identity, the known peers and the optional
//! configuration live. See `docs/FILES.md`.

pub mod hosts;

use std::ffi::OsStr;
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
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The folder or a file in it could be changed by others (ssh's
    /// StrictModes), or is a link where chat creates a file.
    #[error("{0}")]
    Unsafe(files::UnsafePath),
    /// `config.toml` cannot be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
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
    /// `[hosts.NAME]` tables: names to dial, like ssh_config's `Host`.
    #[serde(default)]
    pub hosts: hosts::Hosts,
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Uses `dir` (from `--home` or `CHAT_HOME`), else the platform's config
    /// folder. If the folder exists, it must be ours (or root's) and not
    /// writable by group or others, as ssh requires of `~/.ssh`.
    pub fn locate(dir: Option<PathBuf>) -> Result<Self, HomeError> {
        let dir = match dir {
            Some(dir) => dir,
            None => default_dir().ok_or(HomeError::NoDefault)?,
        };
        let home = Self { dir };
        home.check()?;
        Ok(home)
    }

    /// Refuses a folder that others could change.
    fn check(&self) -> Result<(), HomeError> {
        files::check_folder(&self.dir).map_err(|source| folder_error(&self.dir, source))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder (mode 0700) and its parents if missing, and
    /// checks it again (someone may have made it meanwhile).
    pub fn create(&self) -> Result<(), HomeError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| HomeError::Io {
                path: self.dir.clone(),
                source,
            })?;
        self.check()
    }

    /// A command to suggest to the user, such as `chat peers forget bob`,
    /// naming this folder the way the user did (see [`suggested_command`]).
    pub fn command(&self, args: &[&str]) -> String {
        suggested_command(&self.dir, args)
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
        let io_error = |source: io::Error| match files::unsafe_state(&source) {
            Some(problem) => HomeError::Unsafe(problem.clone()),
            None => HomeError::File {
                path: path.clone(),
                source,
            },
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

/// The error for a state folder that cannot be used.
fn folder_error(dir: &Path, source: io::Error) -> HomeError {
    match files::unsafe_state(&source) {
        Some(problem) => HomeError::Unsafe(problem.clone()),
        None => HomeError::Io {
            path: dir.to_path_buf(),
            source,
        },
    }
}

/// The platform's config folder for chat (`~/.config/chat` on Linux).
fn default_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "chat").map(|dirs| dirs.config_dir().to_path_buf())
}

/// The command line `chat ARGS...` for the state folder `dir`, as a user
/// should type it: with `CHAT_HOME=DIR` in front when `CHAT_HOME` names it,
/// with `--home DIR` when the folder is not the default one, and plain
/// otherwise. Every word is quoted for a POSIX shell where it needs it.
///
/// Every command that chat suggests (in errors, warnings and notices) is
/// written with this, so that following the advice acts on the same folder.
pub fn suggested_command(dir: &Path, args: &[&str]) -> String {
    let env = std::env::var_os("CHAT_HOME");
    let mut words = Vec::new();
    if env.as_deref().filter(|e| !e.is_empty()).map(Path::new) == Some(dir) {
        words.push(format!("CHAT_HOME={}", shell_quote_os(dir.as_os_str())));
        words.push("chat".into());
    } else if default_dir().as_deref() == Some(dir) {
        words.push("chat".into());
    } else {
        words.push("chat".into());
        words.push("--home".into());
        words.push(shell_quote_os(dir.as_os_str()));
    }
    words.extend(args.iter().map(|arg| shell_quote(arg)));
    words.join(" ")
}

/// The command line for the folder holding `file` (a file in the state
/// folder, such as `known_peers.toml`); see [`suggested_command`].
pub fn suggested_command_for_file(file: &Path, args: &[&str]) -> String {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    suggested_command(dir, args)
}

fn shell_quote_os(text: &OsStr) -> String {
    shell_quote(&text.to_string_lossy())
}

/// `text` as one word for a POSIX shell: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
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
    fn refuses_a_folder_others_can_write() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let err = Home::locate(Some(root.path().to_path_buf()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0775"), "{err}");
        assert!(
            err.contains(&format!("chmod 700 {}", root.path().display())),
            "{err}"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("bob"), "bob");
        assert_eq!(shell_quote("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
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
