//! The program's error: every failure the binary reports, with its exit code.

use std::io;

use crate::files::{self, UnsafePath};
use crate::home::HomeError;
use crate::identity::IdentityError;
use crate::net::NetError;
use crate::protocol::CloseReason;
use crate::trust::{Mismatch, TrustError};

/// Exit status of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit status for a problem with local files, input or the environment.
pub const EXIT_LOCAL: u8 = 1;
/// Exit status for a command line clap could not parse (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the connection could not be made or failed, including
/// a peer that ended it over a protocol error or a too large message.
pub const EXIT_NETWORK: u8 = 3;
/// Exit status when the peer's key is not trusted, or the peer refused ours.
pub const EXIT_UNTRUSTED: u8 = 4;
/// Exit status when a pinned peer presents another key.
pub const EXIT_KEY_CHANGED: u8 = 5;
/// Exit status when the conversation ended normally (a goodbye) but
/// messages we sent were not acknowledged.
pub const EXIT_UNDELIVERED: u8 = 6;
/// Exit code: files were sent but not saved by the peer (rejected,
/// cancelled, a SHA-256 mismatch, or the peer could not write them).
pub const EXIT_NOT_SAVED: u8 = 7;

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
    Trust(TrustError),
    /// A state file or folder others could change (or read, for secrets).
    #[error("{0}")]
    Unsafe(UnsafePath),
    /// A message from the peer could not be delivered: our output failed.
    #[error(
        "{error}; message #{id} from the peer was therefore not acknowledged, and the conversation was ended"
    )]
    Undeliverable {
        /// The message.
        id: u64,
        /// Why it could not be written.
        error: io::Error,
    },
    /// Writing our own output (other than a closed pipe) or reading the terminal.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// Input that the command line parser could not judge.
    #[error("{0}")]
    Input(String),
    /// A command line that lacks something the parser could not require
    /// (such as a peer that may also come from the environment).
    #[error("{0}")]
    Usage(String),
    /// The connection could not be made, or failed.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The peer at an address failed the handshake or the session.
    #[error("{address}: {error}")]
    Peer {
        /// Where we dialled.
        address: String,
        /// What went wrong.
        error: NetError,
    },
    /// The connection failed, leaving messages unacknowledged.
    #[error("{error}; {}", undelivered_text(undelivered))]
    NetUndelivered {
        /// What failed.
        error: NetError,
        /// Our messages without a receipt.
        undelivered: Vec<Unsent>,
    },
    /// The peer's key is not trusted under the chosen policy.
    #[error("{0}")]
    Untrusted(String),
    /// The peer refused us: it does not trust our key.
    #[error("{0}")]
    Refused(String),
    /// The peer refused the connection for now (busy, or another reason it gave).
    #[error("{0}")]
    Busy(String),
    /// The peer ended the conversation over an error (reasons 2, 4 and
    /// unknown ones): a failed conversation, whatever was delivered.
    #[error(
        "the peer ended the conversation: {reason}{}",
        undelivered_suffix(undelivered)
    )]
    PeerEnded {
        /// The peer's reason.
        reason: CloseReason,
        /// Our messages without a receipt.
        undelivered: Vec<Unsent>,
    },
    /// A pinned name or address presents another key.
    #[error("{0}")]
    KeyChanged(Box<Mismatch>),
    /// Files we offered were not saved by the peer.
    #[error("the files were not saved: {0}")]
    NotSaved(String),
    /// The conversation ended with messages unacknowledged.
    #[error("{context}; {}", undelivered_text(undelivered))]
    Undelivered {
        /// How it ended.
        context: String,
        /// Our messages without a receipt.
        undelivered: Vec<Unsent>,
    },
}

impl From<TrustError> for Error {
    fn from(error: TrustError) -> Self {
        match error {
            TrustError::Io { source, .. } if files::unsafe_state(&source).is_some() => {
                Error::Unsafe(files::unsafe_state(&source).expect("checked").clone())
            }
            error => Error::Trust(error),
        }
    }
}

fn undelivered_suffix(unsent: &[Unsent]) -> String {
    if unsent.is_empty() {
        String::new()
    } else {
        format!("; {}", undelivered_text(unsent))
    }
}

/// Most messages an error names; the rest are counted.
const NAMED: usize = 5;

/// Names the messages left without a receipt by their first words.
fn undelivered_text(unsent: &[Unsent]) -> String {
    match unsent {
        [] => "every message was delivered".into(),
        [one] => format!("not delivered: {}", one.preview),
        many => {
            let mut named: Vec<&str> = many
                .iter()
                .take(NAMED)
                .map(|u| u.preview.as_str())
                .collect();
            let more = many.len().saturating_sub(NAMED);
            let more = (more > 0).then(|| format!("and {more} more"));
            named.extend(more.as_deref());
            format!(
                "{} messages not delivered: {}",
                many.len(),
                named.join(", ")
            )
        }
    }
}

/// A message we sent that the peer never acknowledged: its id (which
/// `--json` output carries) and how the user knows it, its first words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    /// The message id.
    pub id: u64,
    /// Its first words, quoted and safe for the terminal, or its size.
    pub preview: String,
}

impl Error {
    /// The process exit status for this error (the README's table).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Home(_)
            | Error::Identity(_)
            | Error::Trust(_)
            | Error::Unsafe(_)
            | Error::Undeliverable { .. }
            | Error::Io { .. }
            | Error::Input(_) => EXIT_LOCAL,
            Error::Net(_)
            | Error::Peer { .. }
            | Error::NetUndelivered { .. }
            | Error::Busy(_)
            | Error::PeerEnded { .. } => EXIT_NETWORK,
            Error::Untrusted(_) | Error::Refused(_) => EXIT_UNTRUSTED,
            Error::KeyChanged(_) => EXIT_KEY_CHANGED,
            Error::Undelivered { .. } => EXIT_UNDELIVERED,
            Error::Usage(_) => EXIT_USAGE,
            Error::NotSaved(_) => EXIT_NOT_SAVED,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
