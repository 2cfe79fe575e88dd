//! What `chat connect PEER` and `chat send PEER` dial: an address as
//! typed, a `[hosts.NAME]` table from config.toml, or a pinned peer's
//! recorded address. The rules are in docs/FILES.md, "Names as addresses".

use std::fmt;
use std::io::{self, IsTerminal};

use crate::address::{Address, DEFAULT_PORT};
use crate::cli::CommonArgs;
use crate::error::Error;
use crate::home::Config;
use crate::home::hosts::Host;
use crate::trust::{KnownPeers, is_valid_name};

use super::invite::Target as InviteTarget;

/// Where a word on the command line leads, and what it brings along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Where to dial.
    pub address: Address,
    /// How the word was read.
    pub via: Via,
    /// The `[hosts.NAME]` table that applies, if any.
    pub host: Option<Host>,
}

/// How a word became an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Via {
    /// It was an address (or a host name for DNS).
    Typed,
    /// `[hosts.NAME]` in config.toml named the address.
    Hosts(String),
    /// The pinned peer of that name in known_peers.toml.
    Pinned(String),
}

/// Whether `word` may be a name: a valid local name not written as an
/// address.
pub(super) fn may_be_name(word: &str) -> bool {
    !is_written_as_address(word) && is_valid_name(word)
}

/// The peer `connect` and `send` reach ([`super::invite::resolve`]: the one
/// given, or an invite from the environment), with a name settled into an
/// address by [`resolve`], and the options in force with its `[hosts.NAME]`
/// table. Never [`InviteTarget::Name`]. `port` is `-p PORT` (see
/// [`with_port`]). Says where it dials, on a terminal.
pub(super) fn settle(
    context: &super::Context,
    given: Option<&crate::cli::Peer>,
    port: Option<u16>,
    stdin_allowed: bool,
    common: &CommonArgs,
) -> Result<(InviteTarget, CommonArgs), Error> {
    let given = match given {
        Some(peer) => Some(with_port(peer, port)?),
        None => None,
    };
    match super::invite::resolve(&context.home, given.as_ref(), stdin_allowed)? {
        InviteTarget::Name(word) => {
            let config = context.home.config()?;
            let store = KnownPeers::load(&context.home.known_peers_path())?;
            let mut target = resolve(&word, &config, &store)?;
            if let Some(port) = port {
                target.address = target.address.with_port(port);
            }
            let common = target.apply(common);
            target.announce();
            Ok((InviteTarget::Address(target.address), common))
        }
        InviteTarget::Invite(_) if port.is_some() => Err(port_with_invite()),
        other => {
            if let InviteTarget::Address(address) = &other {
                Target {
                    address: address.clone(),
                    via: Via::Typed,
                    host: None,
                }
                .announce();
            }
            Ok((other, common.clone()))
        }
    }
}

/// PEER with `-p PORT` (like ssh's -p): the port to dial when PEER is a
/// host or a name written without a port. A port written in PEER that
/// differs from `-p` is a usage error, and so is `-p` with an invite.
fn with_port(peer: &crate::cli::Peer, port: Option<u16>) -> Result<InviteTarget, Error> {
    let Some(port) = port else {
        return Ok(peer.target.clone());
    };
    match &peer.target {
        InviteTarget::Invite(_) => Err(port_with_invite()),
        InviteTarget::Name(_) => Ok(peer.target.clone()),
        InviteTarget::Address(_) => {
            // Parsed with two different default ports, a written port
            // stays the same and a missing one follows the default.
            let parse = |default| Address::parse_with_default_port(&peer.text, default);
            let other = if port == 1 { 2 } else { 1 };
            let (Ok(with), Ok(without)) = (parse(port), parse(other)) else {
                return Ok(peer.target.clone());
            };
            if with.port() == without.port() && with.port() != port {
                return Err(Error::Usage(format!(
                    "{} names port {} but -p says {port}: give the port once",
                    peer.text,
                    with.port()
                )));
            }
            Ok(InviteTarget::Address(with))
        }
    }
}

fn port_with_invite() -> Error {
    Error::Usage("-p PORT applies to a host or a name, not to an invite (an invite carries its own addresses)".into())
}

/// Whether `word` is written as an address and never looked up as a name:
/// it has a port or brackets (`bob:7777`, `[::1]`), or ends in a dot
/// (`bob.`, the fully qualified way to say "the host bob").
fn is_written_as_address(word: &str) -> bool {
    word.contains(':') || word.starts_with('[') || word.ends_with('.')
}

/// Resolves `word`, in this order:
///
/// 1. written as an address (a port, brackets or a trailing dot): that address;
/// 2. a `[hosts.NAME]` table: its `address`, else the address pinned for
///    NAME, else NAME as a host name, port 7777;
/// 3. a pinned peer: the first address recorded for it; a pinned peer with
///    no address is an error (it would be unclear whether the host of that
///    name was meant);
/// 4. anything else: a host name (DNS) or IP address, port 7777.
pub(super) fn resolve(word: &str, config: &Config, store: &KnownPeers) -> Result<Target, Error> {
    let typed = || -> Result<Target, Error> {
        let address = Address::parse_with_default_port(word, DEFAULT_PORT)
            .map_err(|e| Error::Input(e.to_string()))?;
        Ok(Target {
            address,
            via: Via::Typed,
            host: None,
        })
    };
    if is_written_as_address(word) || !is_valid_name(word) {
        return typed();
    }
    let pinned = store.get(word);
    let pinned_address = pinned.and_then(|peer| peer.addresses.first());
    if let Some(host) = config.hosts.get(word) {
        let address = match (&host.address, pinned_address) {
            (Some(address), _) | (None, Some(address)) => address.clone(),
            (None, None) => typed()?.address,
        };
        return Ok(Target {
            address,
            via: Via::Hosts(word.to_string()),
            host: Some(host.clone()),
        });
    }
    match (pinned, pinned_address) {
        (Some(_), Some(address)) => Ok(Target {
            address: address.clone(),
            via: Via::Pinned(word.to_string()),
            host: None,
        }),
        (Some(peer), None) => Err(Error::Input(format!(
            "{word:?} is a pinned peer (known_peers.toml line {}) but no address is recorded \
             for it: give its address (HOST[:PORT]), or add one under [hosts.{word}] in \
             config.toml; to dial a host named {word}, write {word}:{DEFAULT_PORT}",
            peer.line
        ))),
        (None, _) => typed(),
    }
}

impl Target {
    /// The options in force: the command line's, completed by the
    /// `[hosts.NAME]` table (an option given on the command line wins, as
    /// in ssh). The table's fingerprint applies only when no trust option
    /// (`--expect`, `--strict`, `--accept-new`) was given.
    pub fn apply(&self, common: &CommonArgs) -> CommonArgs {
        let mut common = common.clone();
        if let Some(host) = &self.host {
            if common.name.is_none() {
                common.name.clone_from(&host.name);
            }
            if common.expect.is_none() && !common.strict && !common.accept_new {
                common.expect = host.fingerprint;
            }
        }
        common
    }

    /// Says where we are about to dial, on a terminal (standard error):
    /// "Connecting to bob (pinned) at 10.0.0.2:7777…".
    pub fn announce(&self) {
        if io::stderr().is_terminal() {
            eprintln!("Connecting to {self}…");
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.via {
            Via::Typed => write!(f, "{}", self.address),
            Via::Hosts(name) => write!(f, "{name} ([hosts.{name}]) at {}", self.address),
            Via::Pinned(name) => write!(f, "{name} (pinned) at {}", self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const KEY_A: &str = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// The common options of `chat send x ARGS...`.
    fn common_args(args: &[&str]) -> CommonArgs {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["chat", "send", "x"].iter().chain(args));
        match cli.command {
            crate::cli::Command::Send(send) => send.common,
            _ => unreachable!(),
        }
    }

    fn store(text: &str) -> KnownPeers {
        KnownPeers::parse(Path::new("known_peers.toml"), text).unwrap()
    }

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    fn entry(name: &str, fingerprint: &str, addresses: &[&str]) -> String {
        let addresses: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[peer]]\nname = {name:?}\nfingerprint = {fingerprint:?}\naddresses = [{}]\n\
             added = 2026-01-01T00:00:00Z\n",
            addresses.join(", ")
        )
    }

    fn fingerprint(seed: u8) -> String {
        use base64ct::Encoding;
        format!(
            "SHA256:{}",
            base64ct::Base64Unpadded::encode_string(&[seed; 32])
        )
    }

    #[test]
    fn words_written_as_addresses_are_never_names() {
        let store = store(&entry("bob", &fingerprint(1), &["10.0.0.2:7777"]));
        let config = config("[hosts.bob]\naddress = \"10.0.0.3\"\n");
        for (word, expected) in [
            ("bob:7777", "bob:7777"),
            ("bob.", "bob:7777"),
            ("[::1]", "[::1]:7777"),
            ("127.0.0.1", "127.0.0.1:7777"),
        ] {
            let target = resolve(word, &config, &store).unwrap();
            assert_eq!(target.via, Via::Typed, "{word}");
            assert_eq!(target.address.to_string(), expected, "{word}");
        }
    }

    #[test]
    fn a_pinned_name_dials_its_recorded_address() {
        let store = store(&entry(
            "bob",
            &fingerprint(1),
            &["10.0.0.2:7000", "bob.lan:7777"],
        ));
        let target = resolve("bob", &Config::default(), &store).unwrap();
        assert_eq!(target.via, Via::Pinned("bob".into()));
        assert_eq!(target.address.to_string(), "10.0.0.2:7000");
        assert_eq!(target.to_string(), "bob (pinned) at 10.0.0.2:7000");
    }

    #[test]
    fn a_pinned_name_without_an_address_is_an_error_that_says_what_to_do() {
        let store = store(&entry("alice", &fingerprint(1), &[]));
        let err = resolve("alice", &Config::default(), &store)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no address is recorded"), "{err}");
        assert!(err.contains("alice:7777"), "{err}");
        assert!(err.contains("[hosts.alice]"), "{err}");
    }

    #[test]
    fn a_hosts_table_comes_before_a_pinned_name_and_lends_its_options() {
        let store = store(&entry("bob", &fingerprint(1), &["10.0.0.2:7777"]));
        let config = config(&format!(
            "[hosts.bob]\naddress = \"Bob.Example.:9\"\nfingerprint = \"{}\"\nname = \"ada\"\n",
            fingerprint(2)
        ));
        let target = resolve("bob", &config, &store).unwrap();
        assert_eq!(target.via, Via::Hosts("bob".into()));
        assert_eq!(target.address.to_string(), "bob.example:9");
        let args = common_args(&[]);
        let applied = target.apply(&args);
        assert_eq!(applied.name.as_deref(), Some("ada"));
        assert_eq!(applied.expect.map(|f| f.to_string()), Some(fingerprint(2)));
        // Options on the command line win.
        let explicit = common_args(&["--name", "zoe", "--accept-new"]);
        let applied = target.apply(&explicit);
        assert_eq!(applied.name.as_deref(), Some("zoe"));
        assert_eq!(applied.expect, None);
        assert!(applied.accept_new);
    }

    #[test]
    fn a_hosts_table_without_an_address_uses_the_pinned_one_or_the_name() {
        let config = config("[hosts.bob]\nname = \"ada\"\n[hosts.carol]\n");
        let store = store(&entry("bob", &fingerprint(1), &["10.0.0.2:7777"]));
        let bob = resolve("bob", &config, &store).unwrap();
        assert_eq!(bob.address.to_string(), "10.0.0.2:7777");
        let carol = resolve("carol", &config, &store).unwrap();
        assert_eq!(carol.address.to_string(), "carol:7777");
        assert_eq!(carol.via, Via::Hosts("carol".into()));
    }

    #[test]
    fn p_is_the_port_of_a_host_written_without_one() {
        let peer = |text: &str| crate::cli::Peer {
            text: text.to_string(),
            target: super::super::invite::parse_target(text).unwrap(),
        };
        let dialled = |text: &str, port| match with_port(&peer(text), port) {
            Ok(InviteTarget::Address(address)) => Ok(address.to_string()),
            Ok(InviteTarget::Name(name)) => Ok(format!("name {name}")),
            Ok(InviteTarget::Invite(_)) => Ok("invite".into()),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(dialled("[::1]", Some(9)).unwrap(), "[::1]:9");
        assert_eq!(dialled("bob.", Some(1)).unwrap(), "bob:1");
        assert_eq!(dialled("[::1]:9", Some(9)).unwrap(), "[::1]:9");
        assert_eq!(dialled("bob:1", Some(1)).unwrap(), "bob:1");
        assert_eq!(dialled("[::1]", None).unwrap(), "[::1]:7777");
        // A name is settled later, and -p then replaces its port.
        assert_eq!(dialled("bob", Some(9)).unwrap(), "name bob");
        let err = dialled("[::1]:9", Some(10)).unwrap_err();
        assert!(err.contains("port 9 but -p says 10"), "{err}");
        let err = dialled("bob:2", Some(1)).unwrap_err();
        assert!(err.contains("port 2 but -p says 1"), "{err}");
    }

    #[test]
    fn an_unknown_word_is_a_host_name() {
        let target = resolve("example.org", &Config::default(), &store("")).unwrap();
        assert_eq!(target.via, Via::Typed);
        assert_eq!(target.address.to_string(), "example.org:7777");
        assert!(resolve("bad host", &Config::default(), &store("")).is_err());
    }

    #[test]
    fn config_checks_hosts_tables_with_their_line() {
        let root = tempfile::tempdir().unwrap();
        let home = crate::home::Home::locate(Some(root.path().to_path_buf())).unwrap();
        for (text, needle) in [
            ("\n[hosts.bob]\naddress = \"a b\"\n", "config.toml:3:"),
            (
                "[hosts.bob]\n\nfingerprint = \"SHA256:x\"\n",
                "config.toml:3:",
            ),
            ("[hosts.bob]\nport = 7\n", "unknown field"),
            ("[hosts.\"b b\"]\n", "invalid host name"),
            ("[hosts.bob]\nname = \"\"\n", "invalid nickname"),
        ] {
            std::fs::write(home.config_path(), text).unwrap();
            let err = home.config().unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        std::fs::write(
            home.config_path(),
            format!("[hosts.bob]\naddress = \"[::1]:5\"\nfingerprint = \"{KEY_A}\"\n"),
        )
        .unwrap();
        let config = home.config().unwrap();
        let bob = config.hosts.get("bob").unwrap();
        assert_eq!(bob.address.as_ref().unwrap().to_string(), "[::1]:5");
        assert_eq!(bob.fingerprint.unwrap().to_string(), KEY_A);
    }
}
