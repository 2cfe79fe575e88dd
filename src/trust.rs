//! The known-peers store, `known_peers.toml`: which key belongs to which local
//! name, pinned on first use as OpenSSH pins host keys. The format is in
//! `docs/FILES.md`.
//!
//! Decoding is strict: unknown keys, duplicate names or keys and malformed
//! fingerprints are errors that name the file and the line, and a file that
//! does not decode is never rewritten. Edits go through `toml_edit`, so the
//! user's comments and layout survive, under a lock file, and replace the
//! file atomically.

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use crate::address::Address;
use crate::crypto::Fingerprint;
use crate::files::{self, LockFile, ReadOutcome};
use crate::home::line_of;

/// Largest `known_peers.toml` read.
const FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// Longest local name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The first lines of a new `known_peers.toml`.
const NEW_FILE_HEADER: &str = "\
# Peers whose keys this chat user has pinned. See docs/FILES.md.
# Remove an entry with `chat peers forget NAME`.
";

/// Problems with the known-peers store.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file does not decode; it is left as it is.
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A new entry would reuse a name.
    #[error("a peer named {name:?} is already pinned (to {fingerprint}); choose another name")]
    DuplicateName {
        /// The name.
        name: String,
        /// The key it is pinned to.
        fingerprint: Fingerprint,
    },
    /// A new entry would pin a key that is already pinned.
    #[error("key {fingerprint} is already pinned as {name:?}")]
    DuplicateKey {
        /// The existing entry's name.
        name: String,
        /// The key.
        fingerprint: Fingerprint,
    },
    /// No entry has this name.
    #[error("no known peer is named {0:?} (see `chat peers list`)")]
    UnknownName(String),
    /// The name is not usable as a local name.
    #[error("invalid peer name {0:?}: use 1 to {MAX_NAME_CHARS} letters, digits or - _ . @ +")]
    InvalidName(String),
    /// Reading, locking or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// One pinned peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Unique local name.
    pub name: String,
    /// The pinned key.
    pub fingerprint: Fingerprint,
    /// Addresses it was reached at.
    pub addresses: Vec<Address>,
    /// When it was pinned.
    pub added: Datetime,
    /// Free text.
    pub comment: Option<String>,
    /// 1-based line of its `[[peer]]` header (or first key).
    pub line: usize,
}

/// What the store says of a key presented by a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is pinned under this local name.
    Known(String),
    /// Nothing is known about this key, name or address.
    Unknown,
    /// The claimed name or the address is pinned to another key.
    Mismatch(Mismatch),
}

/// A pinned name or address now presenting another key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The entry's local name.
    pub name: String,
    /// The key pinned there.
    pub pinned: Fingerprint,
    /// The key presented now.
    pub presented: Fingerprint,
    /// The file.
    pub path: PathBuf,
    /// The entry's line.
    pub line: usize,
    /// What tied the peer to the entry.
    pub matched_by: MatchedBy,
}

/// How a connection was tied to a pinned entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchedBy {
    /// The peer announced the entry's name.
    Name,
    /// We dialled one of the entry's addresses.
    Address(Address),
}

/// A peer to pin.
#[derive(Debug, Clone)]
pub struct NewPeer {
    /// Local name; must be unused.
    pub name: String,
    /// The key.
    pub fingerprint: Fingerprint,
    /// Where it was reached, if we dialled it.
    pub address: Option<Address>,
    /// Free text.
    pub comment: Option<String>,
}

/// The decoded contents of `known_peers.toml`.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    path: PathBuf,
    peers: Vec<Peer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    peer: Vec<Spanned<EntryModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryModel {
    name: Spanned<String>,
    fingerprint: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    added: Datetime,
    comment: Option<String>,
}

impl KnownPeers {
    /// Reads and checks the store; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// Decodes the text of a store; `path` is named in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let malformed = |offset: usize, message: String| TrustError::Malformed {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let model: FileModel = toml::from_str(text).map_err(|e| {
            malformed(
                e.span().map_or(0, |s| s.start),
                e.message().trim_end().to_string(),
            )
        })?;
        let mut peers: Vec<Peer> = Vec::with_capacity(model.peer.len());
        for entry in model.peer {
            let line = line_of(text, entry.span().start);
            let entry = entry.into_inner();
            let name = entry.name.get_ref();
            if !is_valid_name(name) {
                return Err(malformed(
                    entry.name.span().start,
                    TrustError::InvalidName(name.clone()).to_string(),
                ));
            }
            let fingerprint: Fingerprint = entry.fingerprint.get_ref().parse().map_err(
                |e: crate::crypto::fingerprint::ParseFingerprintError| {
                    malformed(entry.fingerprint.span().start, e.to_string())
                },
            )?;
            if let Some(other) = peers.iter().find(|p| p.name == *name) {
                return Err(malformed(
                    entry.name.span().start,
                    format!("name {name:?} is used twice (also on line {})", other.line),
                ));
            }
            if let Some(other) = peers.iter().find(|p| p.fingerprint == fingerprint) {
                return Err(malformed(
                    entry.fingerprint.span().start,
                    format!(
                        "key {fingerprint} is pinned twice (also as {:?} on line {})",
                        other.name, other.line
                    ),
                ));
            }
            let addresses = entry
                .addresses
                .iter()
                .map(|a| {
                    a.get_ref()
                        .parse::<Address>()
                        .map_err(|e| malformed(a.span().start, e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            peers.push(Peer {
                name: name.clone(),
                fingerprint,
                addresses,
                added: entry.added,
                comment: entry.comment,
                line,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            peers,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, in file order.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The entry with this local name.
    pub fn get(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// Judges a presented key. A pinned key is [`Verdict::Known`] under its
    /// local name whatever the peer calls itself. An unpinned key is a
    /// [`Verdict::Mismatch`] if the peer claims a pinned name, or if we dialled
    /// an address pinned to another key; otherwise [`Verdict::Unknown`].
    pub fn check(
        &self,
        presented: &Fingerprint,
        claimed_name: Option<&str>,
        address: Option<&Address>,
    ) -> Verdict {
        if let Some(peer) = self.peers.iter().find(|p| p.fingerprint == *presented) {
            return Verdict::Known(peer.name.clone());
        }
        let by_name = claimed_name
            .and_then(|name| self.get(name))
            .map(|peer| (peer, MatchedBy::Name));
        let by_address = || {
            let address = address?;
            self.peers
                .iter()
                .find(|p| p.addresses.contains(address))
                .map(|peer| (peer, MatchedBy::Address(address.clone())))
        };
        match by_name.or_else(by_address) {
            Some((peer, matched_by)) => Verdict::Mismatch(Mismatch {
                name: peer.name.clone(),
                pinned: peer.fingerprint,
                presented: *presented,
                path: self.path.clone(),
                line: peer.line,
                matched_by,
            }),
            None => Verdict::Unknown,
        }
    }

    /// Pins a new peer. Under the lock: reads the file afresh, refuses a used
    /// name or an already pinned key, appends the entry and replaces the file
    /// atomically. Returns the store as written.
    pub fn add(path: &Path, new: &NewPeer) -> Result<Self, TrustError> {
        if !is_valid_name(&new.name) {
            return Err(TrustError::InvalidName(new.name.clone()));
        }
        edit(path, |current, doc| {
            if let Some(peer) = current.get(&new.name) {
                return Err(TrustError::DuplicateName {
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            if let Some(peer) = current
                .peers
                .iter()
                .find(|p| p.fingerprint == new.fingerprint)
            {
                return Err(TrustError::DuplicateKey {
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            let mut table = toml_edit::Table::new();
            table["name"] = toml_edit::value(new.name.as_str());
            table["fingerprint"] = toml_edit::value(new.fingerprint.to_string());
            if let Some(address) = &new.address {
                let mut addresses = toml_edit::Array::new();
                addresses.push(address.to_string());
                table["addresses"] = toml_edit::value(addresses);
            }
            table["added"] = toml_edit::value(now());
            if let Some(comment) = &new.comment {
                table["comment"] = toml_edit::value(comment.as_str());
            }
            peer_tables(current, doc)?.push(table);
            Ok(())
        })
    }

    /// Removes the entry named `name`. Returns the removed entry.
    pub fn forget(path: &Path, name: &str) -> Result<Peer, TrustError> {
        let mut removed = None;
        edit(path, |current, doc| {
            let index = current
                .peers
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| TrustError::UnknownName(name.to_string()))?;
            peer_tables(current, doc)?.remove(index);
            removed = Some(current.peers[index].clone());
            Ok(())
        })?;
        Ok(removed.expect("set by the edit"))
    }
}

/// Whether `name` can be a local peer name: 1 to 64 letters, digits or `-_.@+`.
pub fn is_valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'))
}

/// A valid local name made from a peer's announced nickname: every other
/// character becomes `_`; an empty result becomes `peer`.
pub fn name_from_nickname(nickname: &str) -> String {
    let name: String = nickname
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "peer".into() } else { name }
}

fn now() -> Datetime {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .parse()
        .expect("RFC 3339 is TOML datetime syntax")
}

fn read_text(path: &Path) -> Result<String, TrustError> {
    let io_error = |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    match files::read_bounded(path, FILE_LIMIT).map_err(io_error)? {
        ReadOutcome::Missing => Ok(String::new()),
        ReadOutcome::TooLarge => Err(io_error(io::Error::other("larger than 4 MiB"))),
        ReadOutcome::Contents(bytes) => String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            TrustError::Malformed {
                path: path.to_path_buf(),
                line: line_of(&text, offset),
                message: "not UTF-8 text".into(),
            }
        }),
    }
}

/// The `[[peer]]` array of a document whose decoded form is `current`.
fn peer_tables<'d>(
    current: &KnownPeers,
    doc: &'d mut toml_edit::DocumentMut,
) -> Result<&'d mut toml_edit::ArrayOfTables, TrustError> {
    let item = doc
        .entry("peer")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()));
    item.as_array_of_tables_mut()
        .ok_or_else(|| TrustError::Malformed {
            path: current.path.clone(),
            line: 1,
            message: "peers must be written as [[peer]] tables to be edited by chat".into(),
        })
}

/// Read-modify-write under the lock file. `change` sees the decoded store and
/// the editable document; nothing is written unless it succeeds.
fn edit(
    path: &Path,
    change: impl FnOnce(&KnownPeers, &mut toml_edit::DocumentMut) -> Result<(), TrustError>,
) -> Result<KnownPeers, TrustError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrustError::Io { path, source }
    };
    let lock_path = path.with_extension("toml.lock");
    let _lock = LockFile::acquire(&lock_path).map_err(io_error(&lock_path))?;
    let text = read_text(path)?;
    let current = KnownPeers::parse(path, &text)?;
    let is_new = text.trim().is_empty();
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| TrustError::Malformed {
                path: path.to_path_buf(),
                line: 1,
                message: e.to_string(),
            })?;
    change(&current, &mut doc)?;
    let mut new_text = if is_new {
        format!("{NEW_FILE_HEADER}\n{doc}")
    } else {
        doc.to_string()
    };
    if !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    // Never write what we could not read back.
    let written = KnownPeers::parse(path, &new_text)?;
    files::write_atomically(path, new_text.as_bytes()).map_err(io_error(path))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(seed: &[u8]) -> Fingerprint {
        Fingerprint::of_spki_der(seed)
    }

    fn new_peer(name: &str, seed: &[u8], address: Option<&str>) -> NewPeer {
        NewPeer {
            name: name.into(),
            fingerprint: fp(seed),
            address: address.map(|a| a.parse().unwrap()),
            comment: None,
        }
    }

    #[test]
    fn add_check_forget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.toml");
        KnownPeers::add(&path, &new_peer("bob", b"bob", Some("host:7777"))).unwrap();
        let store = KnownPeers::add(&path, &new_peer("carol", b"carol", None)).unwrap();
        assert_eq!(store.peers().len(), 2);
        let host: Address = "host:7777".parse().unwrap();

        assert_eq!(
            store.check(&fp(b"bob"), Some("x"), None),
            Verdict::Known("bob".into())
        );
        // A pinned key is known whatever it claims or wherever it is.
        assert_eq!(
            store.check(&fp(b"carol"), Some("bob"), Some(&host)),
            Verdict::Known("carol".into())
        );
        assert_eq!(
            store.check(&fp(b"eve"), Some("eve"), None),
            Verdict::Unknown
        );
        let Verdict::Mismatch(m) = store.check(&fp(b"eve"), Some("bob"), None) else {
            panic!()
        };
        assert_eq!(
            (m.name.as_str(), m.pinned, m.presented),
            ("bob", fp(b"bob"), fp(b"eve"))
        );
        assert_eq!(m.matched_by, MatchedBy::Name);
        let Verdict::Mismatch(m) = store.check(&fp(b"eve"), Some("eve"), Some(&host)) else {
            panic!()
        };
        assert_eq!(m.matched_by, MatchedBy::Address(host.clone()));

        assert!(matches!(
            KnownPeers::add(&path, &new_peer("bob", b"other", None)),
            Err(TrustError::DuplicateName { .. })
        ));
        assert!(matches!(
            KnownPeers::add(&path, &new_peer("bobby", b"bob", None)),
            Err(TrustError::DuplicateKey { .. })
        ));
        assert_eq!(KnownPeers::forget(&path, "bob").unwrap().name, "bob");
        assert!(matches!(
            KnownPeers::forget(&path, "bob"),
            Err(TrustError::UnknownName(_))
        ));
        let store = KnownPeers::load(&path).unwrap();
        assert_eq!(store.peers().len(), 1);
        assert_eq!(
            store.check(&fp(b"eve"), Some("bob"), Some(&host)),
            Verdict::Unknown
        );
    }

    #[test]
    fn edits_keep_comments_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.toml");
        let original = "# my peers\n\n[[peer]]\nname = \"bob\" # from work\nfingerprint = \"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"\nadded = 2026-01-01T00:00:00Z";
        std::fs::write(&path, original).unwrap();
        KnownPeers::add(&path, &new_peer("carol", b"carol", None)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(original), "{text}");
        assert!(text.ends_with('\n'));
        KnownPeers::forget(&path, "carol").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(original), "{text}");
    }

    #[test]
    fn malformed_entries_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.toml");
        let cases = [
            (
                "[[peer]]\nname = \"a\"\nfingerprint = \"SHA256:nope\"\nadded = 2026-01-01T00:00:00Z\n",
                3,
                "malformed fingerprint",
            ),
            (
                "[[peer]]\nname = \"a b\"\nfingerprint = \"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\"\nadded = 2026-01-01T00:00:00Z\n",
                2,
                "invalid peer name",
            ),
            (
                "\n[[peer]]\nname = \"a\"\nfingerprnt = \"x\"\n",
                4,
                "unknown field",
            ),
            ("[[peer]]\nname = \"a\"\n", 1, "missing field"),
            ("[[peer]]\nname = \"a\n", 2, ""),
            ("version = 2\n", 1, "unknown field"),
        ];
        for (text, line, needle) in cases {
            std::fs::write(&path, text).unwrap();
            let err = KnownPeers::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("known_peers.toml:{line}:")),
                "{text:?}: {err}"
            );
            assert!(err.contains(needle), "{text:?}: {err}");
            // The file is refused, not repaired.
            assert!(KnownPeers::add(&path, &new_peer("z", b"z", None)).is_err());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn nickname_to_name() {
        assert_eq!(name_from_nickname("bob"), "bob");
        assert_eq!(name_from_nickname("bob smith\x1b[2J"), "bob_smith__2J");
        assert_eq!(name_from_nickname(""), "peer");
        assert!(is_valid_name(&name_from_nickname(&"é".repeat(100))));
    }
}
