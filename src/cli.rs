//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::address::Address;
pub use crate::app::invite::Target;
use crate::crypto::Fingerprint;
use crate::session::RekeyLimit;

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

    /// When to use colour: auto (on a terminal, unless NO_COLOR is set), always or never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,

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
    /// Wait for peers to connect, several conversations at once
    Serve(ServeArgs),
    /// Connect to a peer and talk
    Connect(ConnectArgs),
    /// Send standard input as one message, or files and folders (--file), wait for the receipt, and exit
    Send(SendArgs),
    /// Run a blind relay that pairs peers who cannot reach each other directly
    #[command(long_about = RELAY_ABOUT)]
    Relay(RelayArgs),
    /// Print a one-time invite for the `chat serve --relay` of this state folder
    Invite(InviteArgs),
    /// Print a shell completion script (e.g. `chat completions bash > ~/.local/share/bash-completion/completions/chat`)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (e.g. `chat man > ~/.local/share/man/man1/chat.1`)
    Man,
}

/// `--color`: when to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless the NO_COLOR environment variable is set and not empty
    Auto,
    /// Always, even into a pipe
    Always,
    /// Never
    Never,
}

/// Options shared by `serve`, `connect` and `send`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Nickname announced to the peer [default: `name` in config.toml, else your user name]
    #[arg(long, value_name = "NICK")]
    pub name: Option<String>,
    /// Pin an unknown peer's key automatically (like ssh's StrictHostKeyChecking=accept-new)
    #[arg(long, conflicts_with_all = ["strict", "expect"])]
    pub accept_new: bool,
    /// Refuse peers whose key is not already pinned
    #[arg(long, conflicts_with = "expect")]
    pub strict: bool,
    /// Refuse unless the peer's key has exactly this fingerprint; pin it on success
    #[arg(long, value_name = "SHA256:...")]
    pub expect: Option<Fingerprint>,
    /// Print events as JSON objects, one per line, on standard output
    #[arg(long)]
    pub json: bool,
    /// Largest message accepted from the peer, in bytes (suffixes K, M, G)
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub max_message: u64,
    /// Update our session key after SIZE bytes (suffixes K, M, G) or TIME (e.g. 30s, 10m),
    /// whichever comes first; only lowers the protocol's 1G and 1h (like ssh's RekeyLimit)
    #[arg(long, value_name = "SIZE[,TIME]", default_value = "1G,1h", value_parser = parse_rekey_limit)]
    pub rekey_limit: RekeyLimit,
    /// Log more on standard error: each key update; for connect and send, each step of the
    /// handshake; for serve, every connection admitted, dropped or refused, and why (rate-limited)
    #[arg(short, long)]
    pub verbose: bool,
    /// Without a terminal, accept offered files: from verified peers, or with =any from any peer
    #[arg(long, value_name = "WHO", num_args = 0..=1, require_equals = true,
          default_missing_value = "verified")]
    pub accept_files: Option<AcceptFiles>,
    /// Folder where received files are saved [default: your download folder, else the current one]
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
}

/// `--accept-files`: whose files are accepted without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcceptFiles {
    /// Only from peers whose key is pinned
    Verified,
    /// From any peer, verified or not
    Any,
}

/// `chat serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: PORT or :PORT (every address, IPv6 and IPv4), HOST:PORT or [V6]:PORT;
    /// port 0 picks a free one
    #[arg(short, long, value_name = "[HOST]:PORT", default_value = "7777")]
    pub listen: crate::net::listen::Listen,
    /// Exit after the first conversation (peers refused by the trust policy don't count);
    /// holds one conversation at a time
    #[arg(long, conflicts_with = "max_conversations")]
    pub once: bool,
    /// Conversations held at once, one per peer key; when all are taken, a
    /// verified peer displaces the unverified one idle the longest
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_conversations: u16,
    /// Largest message shown in full on the terminal; a larger one shows its
    /// first lines and is kept for /save (suffixes K, M, G)
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub screen_limit: u64,
    /// Also meet peers through this relay (`chat relay`), and print an invite for them
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_relay_address)]
    pub relay: Option<Address>,
    /// Take conversations only through the relay: don't listen, and keep our address out of the invite
    #[arg(long, requires = "relay")]
    pub relay_only: bool,
    /// Make a new room secret: invites given out before stop working
    #[arg(long, requires = "relay")]
    pub new_room: bool,
    /// Options shared with connect and send.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `chat connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The peer: HOST or HOST:PORT (default port 7777; IPv6 as [::1]:7777), a contact's name,
    /// or an invite (chat://...); without it, the invite from CHAT_INVITE or standard input
    #[arg(value_name = "PEER", value_parser = parse_peer)]
    pub address: Option<Peer>,
    /// Port to dial when PEER is a host or a name without a port (like ssh's -p)
    #[arg(short, long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// With an invite: don't use its relay, only its direct addresses
    #[arg(long)]
    pub no_relay: bool,
    /// Largest message shown in full on the terminal; a larger one shows its
    /// first lines and is kept for /save (suffixes K, M, G)
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub screen_limit: u64,
    /// Options shared with serve and send.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `chat send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The peer: HOST or HOST:PORT (default port 7777), a contact's name, or an invite
    /// (chat://...); without it, the invite from CHAT_INVITE
    #[arg(value_name = "PEER", value_parser = parse_peer)]
    pub address: Option<Peer>,
    /// Port to dial when PEER is a host or a name without a port (like ssh's -p)
    #[arg(short, long, value_name = "PORT", value_parser = parse_port)]
    pub port: Option<u16>,
    /// With an invite: don't use its relay, only its direct addresses
    #[arg(long)]
    pub no_relay: bool,
    /// Send these files and folders as files (the peer saves them), instead of standard input as a message
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub file: Vec<PathBuf>,
    /// Options shared with serve and connect.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Cli {
    /// Whether events go to standard output as JSON (`--json`).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Serve(args) => args.common.json,
            Command::Connect(args) => args.common.json,
            Command::Send(args) => args.common.json,
            _ => false,
        }
    }
}

/// PEER as typed, and what it reads as (`-p` needs to know whether a port
/// was written).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The word on the command line.
    pub text: String,
    /// An invite, an address or a name.
    pub target: Target,
}

fn parse_peer(text: &str) -> Result<Peer, String> {
    Ok(Peer {
        text: text.to_string(),
        target: crate::app::invite::parse_target(text)?,
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("{text:?} is not a port (1 to 65535)"))
}

fn parse_relay_address(text: &str) -> Result<Address, String> {
    Address::parse_with_default_port(text, crate::invite::DEFAULT_RELAY_PORT)
        .map_err(|e| e.to_string())
}

/// `SIZE[,TIME]` for `--rekey-limit` (docs/PROTOCOL.md, 7.2).
fn parse_rekey_limit(text: &str) -> Result<RekeyLimit, String> {
    RekeyLimit::parse(text).map_err(|e| e.to_string())
}

/// Parses a byte count with an optional K, M or G suffix (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let error =
        || format!("invalid size {text:?}: use a number of bytes, optionally with K, M or G");
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|_| error())?;
    number.checked_mul(1 << shift).ok_or_else(error)
}

/// `chat invite`.
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// How long the invite stays valid if unused
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub valid: std::time::Duration,
}

/// `chat relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address and port to listen on ([::]:PORT takes IPv6 and, on Linux, IPv4 too; port 0 picks
    /// a free one)
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7778")]
    pub listen: std::net::SocketAddr,
    /// New connections accepted per source and minute
    ///
    /// A source is one IPv4 address or one IPv6 /64. It may open this many at once, then one
    /// more every minute/N; over the rate it is answered `busy`.
    #[arg(long, value_name = "N", default_value_t = 60, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_per_minute: u32,
    /// Connections without a partner per source
    ///
    /// Connections still sending their line or waiting for a partner; one more from the same
    /// source is answered `busy`.
    #[arg(long, value_name = "N", default_value_t = 16, help_heading = "Limits",
          value_parser = parse_at_least_one)]
    pub max_unpaired_per_source: usize,
    /// Connections without a partner in total
    ///
    /// When a new connection would exceed it, the oldest unpaired connection is evicted and
    /// answered `full` (a server registers again).
    #[arg(long, value_name = "N", default_value_t = 4096, help_heading = "Limits",
          value_parser = parse_at_least_one)]
    pub max_unpaired: usize,
    /// Circuits a source may take part in
    ///
    /// A pairing that would exceed it at either end is refused: the newcomer is answered `busy`
    /// and its partner keeps waiting.
    #[arg(long, value_name = "N", default_value_t = 64, help_heading = "Limits",
          value_parser = parse_at_least_one)]
    pub max_circuits_per_source: usize,
    /// Circuits in total
    ///
    /// A pairing beyond it is refused: the newcomer is answered `full` and its partner keeps
    /// waiting. Each circuit holds two sockets, a few KiB when idle, and at most 256 KiB of
    /// buffers while data flows: 1024 circuits can never need more than 256 MiB.
    #[arg(long, value_name = "N", default_value_t = 1024, help_heading = "Limits",
          value_parser = parse_at_least_one)]
    pub max_circuits: usize,
    /// Time for a new connection to send its whole request line
    ///
    /// A line not complete in time is answered `bad`.
    #[arg(long, value_name = "DURATION", default_value = "10s", help_heading = "Limits",
          value_parser = parse_duration)]
    pub line_timeout: std::time::Duration,
    /// How long a `connect` waits for its room's `serve`
    ///
    /// Then it is answered `lonely`. This also covers a server's moment between two
    /// registrations.
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Limits",
          value_parser = parse_duration)]
    pub lonely_timeout: std::time::Duration,
    /// How long a `serve` registration waits at most
    ///
    /// Then it is answered `lonely`, and the server renews it by registering again.
    #[arg(long, value_name = "DURATION", default_value = "1h", help_heading = "Limits",
          value_parser = parse_duration)]
    pub registration_lifetime: std::time::Duration,
    /// Close a circuit after this long without a byte either way
    ///
    /// chat peers send a keep-alive every 15 seconds, so only dead circuits reach it.
    #[arg(long, value_name = "DURATION", default_value = "5m", help_heading = "Limits",
          value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// How often to log the one-line summary (0 for only when stopping)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub summary_every: std::time::Duration,
    /// Worker threads [default: one per CPU]
    #[arg(long, value_name = "N", value_parser = parse_at_least_one)]
    pub threads: Option<usize>,
}

/// The long description of `chat relay`.
const RELAY_ABOUT: &str = "\
Run a blind relay that pairs peers who cannot reach each other directly.

A `chat serve --relay` registers a room with the relay and waits; a `chat connect` with an invite \
asks for the same room; the relay pairs the two, answers `ok` to both and copies bytes both ways \
without reading them. Everything it copies is end-to-end encrypted: it sees addresses, timing, \
sizes and an opaque room id, never identities or messages. It keeps nothing on disk, holds no \
keys, never dials out, and never logs an address or a room: it logs one summary line now and \
then (circuits, bytes, refusals by reason). Stop it with Ctrl-C or SIGTERM.

Answers: `ok` (paired), `busy` (a per-source limit), `full` (a total limit), `lonely` (no \
partner in time), `replaced` (another server took the room), `bad` (a malformed or late line). \
The protocol is in docs/PROTOCOL.md, section \"Relay\".";

/// A count of at least one.
fn parse_at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// A duration such as `30s`, `500ms`, `5m` or `1h`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (write e.g. 30s, 5m, 1h)"))
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
    /// Nickname announced to peers, saved in config.toml [default: your account name; asked on a
    /// terminal]
    #[arg(long, value_name = "NICK")]
    pub name: Option<String>,
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
