//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::address::Address;
use crate::crypto::Fingerprint;

/// End-to-end encrypted, trust-on-first-use chat for the command line.
#[derive(Debug, Parser)]
#[command(name = "chat", version, about, max_term_width = 100)]
pub struct Cli {
    /// State folder holding identity.pem, known_peers.toml and config.toml
    /// [default: the platform's config folder, e.g. ~/.config/chat]
    #[arg(long, global = true, env = "CHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Read the identity passphrase from the first line of FILE instead of asking
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this user's identity (an RSA key pair)
    Init(InitArgs),
    /// Print this user's fingerprint (or public key)
    Fingerprint(FingerprintArgs),
    /// Look after the pinned keys of known peers (known_peers.toml)
    #[command(subcommand)]
    Peers(PeersCommand),
}

/// `chat init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Key size in bits
    #[arg(long, default_value_t = 3072, value_parser = parse_bits)]
    pub bits: usize,
    /// Replace an existing identity (the old key is kept as identity.pem.old)
    #[arg(long)]
    pub force: bool,
}

/// `chat fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Print the public key as SubjectPublicKeyInfo PEM instead
    #[arg(long)]
    pub pem: bool,
}

/// `chat peers ...`.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List the pinned peers
    List,
    /// Pin a peer's key under a local name
    Add {
        /// Local name for the peer (letters, digits, - _ . @ +)
        name: String,
        /// The peer's fingerprint, as `chat fingerprint` prints it (SHA256:...)
        fingerprint: Fingerprint,
        /// Address the peer is reached at (HOST:PORT)
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<Address>,
        /// Free-text comment stored with the entry
        #[arg(long)]
        comment: Option<String>,
    },
    /// Remove a pinned peer
    Forget {
        /// The peer's local name
        name: String,
    },
}

fn parse_bits(text: &str) -> Result<usize, String> {
    match text {
        "2048" | "3072" | "4096" => Ok(text.parse().expect("digits")),
        _ => Err("key size must be 2048, 3072 or 4096".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
