//! The known-peers store, `known_peers.toml`: which key belongs to which local
//! name, pinned on first use as OpenSSH pins host keys. The format is in
//! `docs/FILES.md`.
//!
//! Decoding is strict: unknown keys, duplicate names or keys and malformed
//! fingerprints are errors that name the file and the line, and a file that
//! does not decode is never rewritten. Edits go through `toml_edit`, so the
//! user's comments and layout survive, under a lock file, and replace the
//! file atomically.
//!
//! Loading is linear in the size of the file: names, keys and addresses are
//! indexed in hash maps, and line numbers come from one table of line
//! starts. 100,000 entries load in a fraction of a second (docs/PERFORMANCE.md).
//! Reading, decoding and editing the file's text is in `file.rs`; how a
//! nickname becomes a local name is in [`names`].

mod file;
pub mod names;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use toml::value::Datetime;

use crate::address::Address;
use crate::crypto::Fingerprint;
use file::{Change, FileModel, LineIndex, decode_by_entry, edit, read_text};

pub use names::{MAX_NAME_CHARS, Suspicion, is_valid_name, name_from_nickname};

/// Largest `known_peers.toml` read, in MiB: room for well over 100,000
/// entries (about 170 bytes each), while a runaway file is still refused
/// before it is read.
pub const FILE_LIMIT_MIB: u64 = 32;

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
    /// The file is larger than chat reads.
    #[error(
        "{} is larger than {limit_mib} MiB, more than chat reads; \
         remove entries you no longer need with a text editor, or move the file aside",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit_mib: u64,
    },
    /// A new entry would reuse a name.
    #[error("a peer named {name:?} is already pinned (to {fingerprint}); choose another name")]
    DuplicateName {
        /// The name.
        name: String,
        /// The key it is pinned to.
        fingerprint: Fingerprint,
    },
    /// A new entry's name could be taken for a pinned one.
    #[error(
        "{name:?} looks like {pinned:?}, a peer already pinned (to {fingerprint}); \
         choose a name that cannot be mistaken for it"
    )]
    LookalikeName {
        /// The name asked for.
        name: String,
        /// The pinned name it resembles.
        pinned: String,
        /// The key that name is pinned to.
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
    /// A new entry would pin an address that is pinned to another key.
    #[error(
        "{address} is already pinned to {name:?} ({fingerprint}); an address is pinned to one key"
    )]
    DuplicateAddress {
        /// The address.
        address: Address,
        /// The entry that has it.
        name: String,
        /// That entry's key.
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
    /// Addresses it was reached at, in canonical form.
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
    /// The address we dialled, or the claimed name, is pinned to another key.
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
    /// The local name of the presented key, if it is pinned too (another
    /// contact answering at this one's address).
    pub presented_as: Option<String>,
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
    /// The peer announced the entry's name: a claim, not a proof.
    Name,
    /// We dialled one of the entry's addresses.
    Address(Address),
}

impl fmt::Display for Mismatch {
    /// One line for the error that follows the warning banner.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            name,
            pinned,
            presented,
            ..
        } = self;
        match (&self.matched_by, &self.presented_as) {
            (MatchedBy::Name, _) => write!(
                f,
                "someone claiming to be {name:?} presented a different key \
                 ({name:?} is pinned to {pinned}, presented {presented})"
            ),
            (MatchedBy::Address(address), Some(other)) => write!(
                f,
                "{address} is pinned to {name:?} ({pinned}), but the key that answered is \
                 {other:?}'s ({presented})"
            ),
            (MatchedBy::Address(address), None) => write!(
                f,
                "the key at {address} has changed: it is pinned to {name:?} ({pinned}), \
                 presented {presented}"
            ),
        }?;
        write!(f, "; refusing to talk, see the warning above")
    }
}

/// A peer to pin under a name of the user's choosing.
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

/// A key pinned under a name chosen from its nickname.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The store as written.
    pub store: KnownPeers,
    /// The local name chosen.
    pub name: String,
    /// Why the nickname was not used as the name, if it was not.
    pub suspicion: Option<Suspicion>,
    /// Whether the address was recorded (not if it is pinned to another key).
    pub address_recorded: bool,
}

/// The decoded contents of `known_peers.toml`.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    path: PathBuf,
    peers: Vec<Peer>,
    by_name: HashMap<String, usize>,
    by_fingerprint: HashMap<Fingerprint, usize>,
    by_address: HashMap<Address, Vec<usize>>,
}

impl KnownPeers {
    /// Reads and checks the store; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// Decodes the text of a store; `path` is named in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let lines = LineIndex::new(text);
        let malformed = |offset: usize, message: String| TrustError::Malformed {
            path: path.to_path_buf(),
            line: lines.line_of(offset),
            message,
        };
        let entries = match decode_by_entry(text) {
            Some(entries) => entries,
            None => {
                let model: FileModel = toml::from_str(text).map_err(|e| {
                    malformed(
                        e.span().map_or(0, |s| s.start),
                        e.message().trim_end().to_string(),
                    )
                })?;
                model.peer.into_iter().map(|entry| (0, entry)).collect()
            }
        };
        let mut store = Self {
            path: path.to_path_buf(),
            peers: Vec::with_capacity(entries.len()),
            by_name: HashMap::with_capacity(entries.len()),
            by_fingerprint: HashMap::with_capacity(entries.len()),
            by_address: HashMap::new(),
        };
        for (base, entry) in entries {
            // Offsets in the entry are relative to its piece of the text.
            let malformed = |offset: usize, message: String| malformed(base + offset, message);
            let line = lines.line_of(base + entry.span().start);
            let index = store.peers.len();
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
            match store.by_name.entry(name.clone()) {
                Entry::Occupied(other) => {
                    return Err(malformed(
                        entry.name.span().start,
                        format!(
                            "name {name:?} is used twice (also on line {})",
                            store.peers[*other.get()].line
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
            match store.by_fingerprint.entry(fingerprint) {
                Entry::Occupied(other) => {
                    let other = &store.peers[*other.get()];
                    return Err(malformed(
                        entry.fingerprint.span().start,
                        format!(
                            "key {fingerprint} is pinned twice (also as {:?} on line {})",
                            other.name, other.line
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
            let addresses: Vec<Address> = entry
                .addresses
                .iter()
                .map(|a| {
                    a.get_ref()
                        .parse::<Address>()
                        .map_err(|e| malformed(a.span().start, e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            for address in &addresses {
                let entries = store.by_address.entry(address.clone()).or_default();
                if entries.last() != Some(&index) {
                    entries.push(index);
                }
            }
            store.peers.push(Peer {
                name: name.clone(),
                fingerprint,
                addresses,
                added: entry.added,
                comment: entry.comment,
                line,
            });
        }
        Ok(store)
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
        self.by_name.get(name).map(|&i| &self.peers[i])
    }

    /// The entry pinning this key.
    pub fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<&Peer> {
        self.by_fingerprint
            .get(fingerprint)
            .map(|&i| &self.peers[i])
    }

    /// The entries that list this address (one, unless the file was edited
    /// by hand to give it to several).
    pub fn peers_at<'s>(&'s self, address: &Address) -> impl Iterator<Item = &'s Peer> + 's {
        self.by_address
            .get(address)
            .into_iter()
            .flatten()
            .map(|&i| &self.peers[i])
    }

    /// Judges a presented key.
    ///
    /// * A conversation we open to an address is with the contact pinned at
    ///   that address: if the address is pinned, the key must be that
    ///   entry's, or it is a [`Verdict::Mismatch`], even when the key is
    ///   another contact's ([`Mismatch::presented_as`]).
    /// * Otherwise a pinned key is [`Verdict::Known`] under its local name,
    ///   whatever the peer calls itself.
    /// * An unpinned key whose peer claims a pinned name is a mismatch by
    ///   name; anything else is [`Verdict::Unknown`].
    pub fn check(
        &self,
        presented: &Fingerprint,
        claimed_name: Option<&str>,
        address: Option<&Address>,
    ) -> Verdict {
        let presented_as = self.by_fingerprint(presented);
        if let Some(address) = address {
            let mut at_address = self.peers_at(address).peekable();
            if let Some(&first) = at_address.peek() {
                return match at_address.find(|p| p.fingerprint == *presented) {
                    Some(peer) => Verdict::Known(peer.name.clone()),
                    None => Verdict::Mismatch(self.mismatch(
                        first,
                        presented,
                        presented_as,
                        MatchedBy::Address(address.clone()),
                    )),
                };
            }
        }
        if let Some(peer) = presented_as {
            return Verdict::Known(peer.name.clone());
        }
        match claimed_name.and_then(|name| self.get(name)) {
            Some(peer) => Verdict::Mismatch(self.mismatch(peer, presented, None, MatchedBy::Name)),
            None => Verdict::Unknown,
        }
    }

    fn mismatch(
        &self,
        peer: &Peer,
        presented: &Fingerprint,
        presented_as: Option<&Peer>,
        matched_by: MatchedBy,
    ) -> Mismatch {
        Mismatch {
            name: peer.name.clone(),
            pinned: peer.fingerprint,
            presented: *presented,
            presented_as: presented_as.map(|p| p.name.clone()),
            path: self.path.clone(),
            line: peer.line,
            matched_by,
        }
    }

    /// Whether a new key announcing `nickname` may be pinned under it: not if
    /// it is, or looks like, a pinned name, or carries invisible characters
    /// or mixed scripts (see [`names`]).
    pub fn suspicion(&self, nickname: &str) -> Option<Suspicion> {
        Suspicion::of(nickname, self.peers.iter().map(|p| p.name.as_str()))
    }

    /// The pinned name `name` could be taken for, if any (equal included).
    fn lookalike(&self, name: &str) -> Option<&Peer> {
        if let Some(peer) = self.get(name) {
            return Some(peer);
        }
        let key = names::LookalikeKey::of(name);
        self.peers
            .iter()
            .find(|p| names::LookalikeKey::of(&p.name).confusable_with(&key))
    }

    /// Pins a new peer under a name the user chose. Under the lock: reads the
    /// file afresh, refuses a used name, one that looks like a used name, an
    /// already pinned key or an address pinned to another key, appends the
    /// entry and replaces the file atomically. Returns the store as written.
    pub fn add(path: &Path, new: &NewPeer) -> Result<Self, TrustError> {
        if !is_valid_name(&new.name) {
            return Err(TrustError::InvalidName(new.name.clone()));
        }
        edit(path, |current| {
            if let Some(peer) = current.get(&new.name) {
                return Err(TrustError::DuplicateName {
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            if let Some(peer) = current.by_fingerprint(&new.fingerprint) {
                return Err(TrustError::DuplicateKey {
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            if let Some(peer) = current.lookalike(&new.name) {
                return Err(TrustError::LookalikeName {
                    name: new.name.clone(),
                    pinned: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            if let Some(address) = &new.address
                && let Some(peer) = current.peers_at(address).next()
            {
                return Err(TrustError::DuplicateAddress {
                    address: address.clone(),
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            Ok(Change::Append(new.clone()))
        })
    }

    /// Pins a new key whose peer calls itself `nickname`, under a name chosen
    /// in the lock: the nickname made into a valid name, unless
    /// [`suspicion`](Self::suspicion) finds it could pass for a pinned
    /// contact; then a name made from the fingerprint (`peer-G9fCEcxiKZ`).
    /// The address is recorded unless it is pinned to another key.
    pub fn pin_new(
        path: &Path,
        fingerprint: Fingerprint,
        nickname: &str,
        address: Option<&Address>,
    ) -> Result<Pinned, TrustError> {
        let mut chosen = None;
        let store = edit(path, |current| {
            if let Some(peer) = current.by_fingerprint(&fingerprint) {
                return Err(TrustError::DuplicateKey {
                    name: peer.name.clone(),
                    fingerprint: peer.fingerprint,
                });
            }
            let suspicion = current.suspicion(nickname);
            let base = match suspicion {
                None => name_from_nickname(nickname),
                Some(_) => names::name_from_fingerprint(&fingerprint),
            };
            let name = (1..)
                .map(|attempt| with_suffix(&base, attempt))
                .find(|name| current.lookalike(name).is_none())
                .expect("some suffix is free");
            let address = address.filter(|a| current.peers_at(a).next().is_none());
            let new = NewPeer {
                name: name.clone(),
                fingerprint,
                address: address.cloned(),
                comment: None,
            };
            chosen = Some((name, suspicion, address.is_some()));
            Ok(Change::Append(new))
        })?;
        let (name, suspicion, address_recorded) = chosen.expect("set by the edit");
        Ok(Pinned {
            store,
            name,
            suspicion,
            address_recorded,
        })
    }

    /// Removes the entry named `name`. Returns the removed entry.
    pub fn forget(path: &Path, name: &str) -> Result<Peer, TrustError> {
        let mut removed = None;
        edit(path, |current| {
            let index = *current
                .by_name
                .get(name)
                .ok_or_else(|| TrustError::UnknownName(name.to_string()))?;
            removed = Some(current.peers[index].clone());
            Ok(Change::Remove(index))
        })?;
        Ok(removed.expect("set by the edit"))
    }
}

/// `base`, then `base-2`, `base-3`, ... kept within the name length.
fn with_suffix(base: &str, attempt: usize) -> String {
    if attempt == 1 {
        return base.to_string();
    }
    let suffix = format!("-{attempt}");
    let keep: String = base.chars().take(MAX_NAME_CHARS - suffix.len()).collect();
    format!("{keep}{suffix}")
}

/// One edit of the store.
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
        // A pinned key is known whatever it claims...
        assert_eq!(
            store.check(&fp(b"carol"), Some("bob"), None),
            Verdict::Known("carol".into())
        );
        // ...but not at an address pinned to another key.
        let Verdict::Mismatch(m) = store.check(&fp(b"carol"), Some("carol"), Some(&host)) else {
            panic!()
        };
        assert_eq!(m.matched_by, MatchedBy::Address(host.clone()));
        assert_eq!(
            (m.name.as_str(), m.presented_as.as_deref()),
            ("bob", Some("carol"))
        );
        assert_eq!(
            store.check(&fp(b"bob"), Some("carol"), Some(&host)),
            Verdict::Known("bob".into())
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
}

#[cfg(test)]
mod more_tests {
    use super::file::{appended, edit_document};
    use super::*;

    fn fp(seed: &[u8]) -> Fingerprint {
        Fingerprint::of_spki_der(seed)
    }

    fn entry(name: &str, seed: &[u8], addresses: &[&str]) -> String {
        let addresses: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[peer]]\nname = {name:?}\nfingerprint = \"{}\"\naddresses = [{}]\nadded = 2026-01-01T00:00:00Z\n\n",
            fp(seed),
            addresses.join(", ")
        )
    }

    /// Entries written before addresses were canonical are compared in
    /// canonical form: the spellings of one place all find the pin.
    #[test]
    fn old_spellings_of_an_address_still_match() {
        let text = entry(
            "bob",
            b"bob",
            &["LOCALHOST.:7777", "0x7f.1:9", "[0:0::1]:7777"],
        );
        let store = KnownPeers::parse(Path::new("known_peers.toml"), &text).unwrap();
        assert_eq!(
            store.peers()[0]
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["localhost:7777", "127.0.0.1:9", "[::1]:7777"]
        );
        for dialled in [
            "localhost:7777",
            "LocalHost:7777",
            "127.0.0.1:9",
            "127.1:9",
            "[::1]:7777",
        ] {
            let address = Address::parse_with_default_port(dialled, 7777).unwrap();
            assert!(
                matches!(
                    store.check(&fp(b"eve"), Some("eve"), Some(&address)),
                    Verdict::Mismatch(Mismatch { ref name, .. }) if name == "bob"
                ),
                "{dialled}"
            );
            assert_eq!(
                store.check(&fp(b"bob"), None, Some(&address)),
                Verdict::Known("bob".into())
            );
        }
        // A malformed address is an error on its line, not a pin that never matches.
        let bad = format!(
            "{}{}",
            entry("a", b"a", &[]),
            entry("b", b"b", &["256.1.1.1:7"])
        );
        let err = KnownPeers::parse(Path::new("known_peers.toml"), &bad).unwrap_err();
        assert!(err.to_string().starts_with("known_peers.toml:10:"), "{err}");
    }

    #[test]
    fn names_of_new_pins_cannot_pass_for_pinned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.toml");
        KnownPeers::add(
            &path,
            &NewPeer {
                name: "ada".into(),
                fingerprint: fp(b"ada"),
                address: Some("host:1".parse().unwrap()),
                comment: None,
            },
        )
        .unwrap();
        // Its nickname, when nothing stands against it.
        let pinned = KnownPeers::pin_new(&path, fp(b"carol"), "carol", None).unwrap();
        assert_eq!((pinned.name.as_str(), pinned.suspicion), ("carol", None));
        // A lookalike: a name from the fingerprint.
        let host: Address = "HOST:1".parse().unwrap();
        let pinned = KnownPeers::pin_new(&path, fp(b"mallory"), "\u{430}da", Some(&host)).unwrap();
        assert_eq!(pinned.name, names::name_from_fingerprint(&fp(b"mallory")));
        assert_eq!(pinned.suspicion, Some(Suspicion::LooksLike("ada".into())));
        // The address stays ada's alone.
        assert!(!pinned.address_recorded);
        assert!(pinned.store.get(&pinned.name).unwrap().addresses.is_empty());
        // A key is pinned once.
        assert!(matches!(
            KnownPeers::pin_new(&path, fp(b"mallory"), "x", None),
            Err(TrustError::DuplicateKey { .. })
        ));
        // A name the user chooses may not look like a pinned one either.
        let new = |name: &str, seed: &[u8], address: Option<&str>| NewPeer {
            name: name.into(),
            fingerprint: fp(seed),
            address: address.map(|a| a.parse().unwrap()),
            comment: None,
        };
        assert!(matches!(
            KnownPeers::add(&path, &new("ADA", b"z", None)),
            Err(TrustError::LookalikeName { ref pinned, .. }) if pinned == "ada"
        ));
        assert!(matches!(
            KnownPeers::add(&path, &new("zed", b"z", Some("host.:1"))),
            Err(TrustError::DuplicateAddress { ref name, .. }) if name == "ada"
        ));
        KnownPeers::add(&path, &new("zed", b"z", Some("host:2"))).unwrap();
    }

    /// Loading is linear: a store of 100,000 entries loads, and its line
    /// numbers are right at the end. (Timing: docs/PERFORMANCE.md.)
    #[test]
    fn a_large_store_loads_with_the_right_lines() {
        let mut text = String::new();
        for i in 0..100_000u32 {
            text.push_str(&entry(&format!("p{i}"), &i.to_be_bytes(), &[]));
        }
        // The same key pinned twice, at the very end.
        text.push_str(&entry("last", &99_999u32.to_be_bytes(), &[]));
        let err = KnownPeers::parse(Path::new("k"), &text).unwrap_err();
        let expected_line = 100_000 * 6 + 3;
        assert!(
            err.to_string()
                .starts_with(&format!("k:{expected_line}: key ")),
            "{err}"
        );
        assert!(err.to_string().contains("line 599995"), "{err}");
    }

    /// Appending as text writes what the document editor writes.
    #[test]
    fn appending_as_text_is_what_the_editor_writes() {
        let path = Path::new("known_peers.toml");
        let new = NewPeer {
            name: "carol".into(),
            fingerprint: fp(b"carol"),
            address: Some("[::1]:5".parse().unwrap()),
            comment: Some("a \"quoted\" \\ thing".into()),
        };
        let one = entry("bob", b"bob", &["host:1"]);
        for text in [
            String::new(),
            "\n\n".to_string(),
            one.clone(),
            one.trim_end().to_string(),
            format!("# mine\n\n{one}"),
            format!("{one}{}", entry("dan", b"dan", &[])),
        ] {
            let current = KnownPeers::parse(path, &text).unwrap();
            let (fast, _) = appended(path, &text, &current, &new).expect("appends");
            let slow = edit_document(path, &text, &current, &Change::Append(new.clone())).unwrap();
            // The editor writes the same entry; only `added` differs by the
            // clock (and trailing blank lines of a file that had nothing else).
            let strip = |t: &str| -> String {
                t.lines()
                    .filter(|l| !l.starts_with("added = 20"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .trim_end()
                    .to_string()
            };
            assert_eq!(strip(&fast), strip(&slow), "{text:?}");
        }
        // Comments at the end stay above the new entry (the editor would
        // move them below it): the old text is kept as it is.
        for text in ["# only a comment\n", &format!("{one}# trailing comment\n")] {
            let current = KnownPeers::parse(path, text).unwrap();
            let (fast, _) = appended(path, text, &current, &new).unwrap();
            assert!(fast.starts_with(&format!("{text}\n[[peer]]\n")), "{fast}");
        }
        // Entries that are not [[peer]] tables cannot be appended to as text.
        let inline = format!(
            "peer = [{{ name = \"bob\", fingerprint = \"{}\", added = 2026-01-01T00:00:00Z }}]\n",
            fp(b"bob")
        );
        let current = KnownPeers::parse(path, &inline).unwrap();
        assert!(appended(path, &inline, &current, &new).is_none());
    }

    #[test]
    fn line_index() {
        let index = LineIndex::new("ab\ncd\n\ne");
        let lines: Vec<usize> = (0..9).map(|o| index.line_of(o)).collect();
        assert_eq!(lines, [1, 1, 1, 2, 2, 2, 3, 4, 4]);
    }
}
