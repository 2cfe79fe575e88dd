//! The program's error: every failure the binary reports, with its exit code.

use std::io;

use crate::home::HomeError;
use crate::identity::IdentityError;
use crate::trust::TrustError;

/// Exit status of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit status for a problem with local files, input or the environment.
pub const EXIT_LOCAL: u8 = 1;
/// Exit status for a command line clap could not parse (clap's own).
pub const EXIT_USAGE: u8 = 2;

/// Anything that ends a `chat` command early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state folder or `config.toml`.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The identity key file.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// `known_peers.toml`.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Writing our own output (other than a closed pipe) or reading the terminal.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error (see the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Home(_) | Error::Identity(_) | Error::Trust(_) | Error::Io { .. } => EXIT_LOCAL,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
