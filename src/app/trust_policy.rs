//! Trust on first use, as OpenSSH does it: what to do with the key a peer
//! has proven it holds, given `known_peers.toml` and the user's options.

use std::path::Path;

use crate::address::Address;
use crate::cli::CommonArgs;
use crate::crypto::{Fingerprint, PublicKey};
use crate::error::Error;
use crate::sanitize;
use crate::session::PeerIdentity;
use crate::trust::{self, KnownPeers, MatchedBy, Mismatch, NewPeer, TrustError, Verdict};

/// What the user asked us to do with keys we do not know.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Open the conversation, marked unverified; the user may `/trust`.
    Ask,
    /// No terminal to ask on and no instruction: refuse.
    Batch,
    /// `--accept-new`: pin whatever key is presented.
    AcceptNew,
    /// `--strict`: refuse keys that are not pinned.
    Strict,
    /// `--expect`: only this key, pinned on success.
    Expect(Fingerprint),
}

impl Policy {
    /// The policy the options ask for; `interactive` when a user can see
    /// and answer the conversation.
    pub fn from_args(common: &CommonArgs, interactive: bool) -> Self {
        if let Some(fingerprint) = common.expect {
            Policy::Expect(fingerprint)
        } else if common.strict {
            Policy::Strict
        } else if common.accept_new {
            Policy::AcceptNew
        } else if interactive {
            Policy::Ask
        } else {
            Policy::Batch
        }
    }
}

/// How far we trust the peer of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Its key is pinned under this local name.
    Verified(String),
    /// Not pinned; shown as unverified until the user pins it.
    Unverified,
}

/// The peer as the user sees it, shared by everything that shows it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The key it proved it holds.
    pub key: PublicKey,
    /// The nickname it announced (unverified).
    pub nickname: String,
    /// Where we dialled it, if we did.
    pub address: Option<Address>,
    /// Pinned or not.
    pub standing: Standing,
    /// Whether the key was pinned during this connection.
    pub pinned_now: bool,
}

impl PeerView {
    /// The name to show: the local name if pinned, else the nickname, made
    /// safe for a terminal.
    pub fn label(&self) -> String {
        match &self.standing {
            Standing::Verified(name) => name.clone(),
            Standing::Unverified => sanitize::one_line(&self.nickname),
        }
    }

    /// Whether the key is pinned.
    pub fn is_verified(&self) -> bool {
        matches!(self.standing, Standing::Verified(_))
    }

    /// The label with its trust marker, as printed before messages.
    pub fn marked_label(&self) -> String {
        if self.is_verified() {
            format!("{} \u{2713}", self.label())
        } else {
            format!("{} ?", self.label())
        }
    }
}

/// Judges a peer's proven key. `address` is where we dialled it (initiators
/// only). Pins the key when the policy says so. A changed key is always an
/// error, and leaves `known_peers.toml` untouched.
pub fn judge(
    known_peers: &Path,
    policy: &Policy,
    peer: &PeerIdentity,
    address: Option<&Address>,
) -> Result<PeerView, Error> {
    let store = KnownPeers::load(known_peers)?;
    let presented = peer.key.fingerprint();
    let claimed = trust::name_from_nickname(&peer.nickname);
    let mut view = PeerView {
        key: peer.key.clone(),
        nickname: peer.nickname.clone(),
        address: address.cloned(),
        standing: Standing::Unverified,
        pinned_now: false,
    };
    match store.check(&presented, Some(&claimed), address) {
        Verdict::Mismatch(mismatch) => Err(Error::KeyChanged(Box::new(mismatch))),
        Verdict::Known(name) => match policy {
            Policy::Expect(expected) if *expected != presented => {
                Err(not_expected(expected, &presented))
            }
            _ => {
                view.standing = Standing::Verified(name);
                Ok(view)
            }
        },
        Verdict::Unknown => match policy {
            Policy::Ask => Ok(view),
            Policy::AcceptNew => pin(known_peers, view, None),
            Policy::Expect(expected) if *expected == presented => pin(known_peers, view, None),
            Policy::Expect(expected) => Err(not_expected(expected, &presented)),
            Policy::Strict => Err(Error::Untrusted(format!(
                "the peer's key {presented} is not in {} and --strict refuses unknown keys; \
                 pin it with `chat peers add NAME {presented}` once you have checked it",
                known_peers.display()
            ))),
            Policy::Batch => Err(Error::Untrusted(format!(
                "the peer's key {presented} is not known and there is no terminal to confirm it; \
                 check it with the peer, then run again with --expect {presented} \
                 (or --accept-new to pin whatever key is presented)"
            ))),
        },
    }
}

fn not_expected(expected: &Fingerprint, presented: &Fingerprint) -> Error {
    Error::Untrusted(format!(
        "the peer's key is {presented}, not the expected {expected}; refusing to talk"
    ))
}

/// Pins the peer's key under `name` (default: its nickname made into a
/// valid name, with a number added if that name is taken).
pub fn pin(known_peers: &Path, mut view: PeerView, name: Option<&str>) -> Result<PeerView, Error> {
    let new = |name: String| NewPeer {
        name,
        fingerprint: view.key.fingerprint(),
        address: view.address.clone(),
        comment: None,
    };
    let stored = match name {
        Some(name) => {
            KnownPeers::add(known_peers, &new(name.to_string())).map(|_| name.to_string())?
        }
        None => {
            let base = trust::name_from_nickname(&view.nickname);
            let mut attempt = 1;
            loop {
                let candidate = if attempt == 1 {
                    base.clone()
                } else {
                    let suffix = format!("-{attempt}");
                    let keep: String = base
                        .chars()
                        .take(trust::MAX_NAME_CHARS - suffix.len())
                        .collect();
                    format!("{keep}{suffix}")
                };
                match KnownPeers::add(known_peers, &new(candidate.clone())) {
                    Ok(_) => break candidate,
                    Err(TrustError::DuplicateName { .. }) if attempt < 100 => attempt += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    view.standing = Standing::Verified(stored);
    view.pinned_now = true;
    Ok(view)
}

/// The warning shown when a pinned peer presents another key, in the
/// spirit of OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED".
pub fn key_changed_banner(mismatch: &Mismatch) -> String {
    let how = match &mismatch.matched_by {
        MatchedBy::Name => format!(
            "The peer calls itself {:?}, the name you pinned to another key.",
            mismatch.name
        ),
        MatchedBy::Address(address) => {
            format!("You pinned {address} to the key of {:?}.", mismatch.name)
        }
    };
    format!(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: PEER IDENTIFICATION HAS CHANGED!            @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         It is also possible that {name} has simply made a new key.\n\
         {how}\n\
         Pinned key:    {pinned}\n\
         Presented key: {presented}\n\
         The pinned key is in {path}, entry {name:?} at line {line}.\n\
         If you have confirmed with {name} that the new key is theirs, remove the pin with\n\
         \n    chat peers forget {name}\n\n\
         and connect again. Nothing was sent, and {path} was not changed.",
        name = mismatch.name,
        pinned = mismatch.pinned,
        presented = mismatch.presented,
        path = mismatch.path.display(),
        line = mismatch.line,
    )
}
