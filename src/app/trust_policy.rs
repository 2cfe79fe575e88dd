//! Trust on first use, as OpenSSH does it: what to do with the key a peer
//! has proven it holds, given `known_peers.toml` and the user's options.

use std::io::{self, BufRead, Write};
use std::path::Path;

use crate::address::Address;
use crate::cli::CommonArgs;
use crate::crypto::{Fingerprint, PublicKey};
use crate::error::Error;
use crate::home::suggested_command_for_file;
use crate::sanitize;
use crate::session::PeerIdentity;
use crate::trust::{KnownPeers, MatchedBy, Mismatch, NewPeer, Suspicion, TrustError, Verdict};

/// What the user asked us to do with keys we do not know.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Ask on the terminal before revealing ourselves (initiator), or open
    /// the conversation marked unverified (responder); the user may `/trust`.
    Ask,
    /// No terminal to ask on and no instruction: refuse.
    Batch,
    /// `--accept-new`: pin whatever key is presented.
    AcceptNew,
    /// `--strict`: refuse keys that are not pinned.
    Strict,
    /// `--expect`: only this key, pinned on success.
    Expect(Fingerprint),
    /// Only this key, which the user accepted at the prompt on an earlier
    /// connection that was lost meanwhile; not pinned.
    Approved(Fingerprint),
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
    /// A warning about the nickname, shown with the peer's description: it
    /// looks like a pinned contact's, or it was not used as the local name.
    pub note: Option<String>,
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

/// Judges a peer's proven key against `known_peers.toml` as it is now (see
/// [`judge_with`]).
pub fn judge(
    known_peers: &Path,
    policy: &Policy,
    peer: &PeerIdentity,
    address: Option<&Address>,
) -> Result<PeerView, Error> {
    let store = KnownPeers::load(known_peers)?;
    judge_with(&store, policy, peer, address)
}

/// Judges a peer's proven key. `address` is where we dialled it (initiators
/// only): a conversation opened to a pinned address is with the contact
/// pinned there. Pins the key when the policy says so. A changed key is
/// always an error, and leaves `known_peers.toml` untouched; only a key the
/// user named with `--expect` (or approved at the prompt) passes where the
/// store would refuse it.
pub fn judge_with(
    store: &KnownPeers,
    policy: &Policy,
    peer: &PeerIdentity,
    address: Option<&Address>,
) -> Result<PeerView, Error> {
    let known_peers = store.path();
    let presented = peer.key.fingerprint();
    let claimed = crate::trust::name_from_nickname(&peer.nickname);
    let mut view = PeerView {
        key: peer.key.clone(),
        nickname: peer.nickname.clone(),
        address: address.cloned(),
        standing: Standing::Unverified,
        pinned_now: false,
        note: None,
    };
    let verdict = store.check(&presented, Some(&claimed), address);
    // The one key the user named decides alone.
    if let Policy::Expect(wanted) | Policy::Approved(wanted) = policy {
        return match verdict {
            _ if *wanted != presented => Err(match verdict {
                Verdict::Mismatch(mismatch) => Error::KeyChanged(Box::new(mismatch)),
                _ if matches!(policy, Policy::Approved(_)) => Error::Untrusted(format!(
                    "the peer now presents {presented}, not the key you accepted ({wanted}); \
                     refusing to talk, and nothing about you was sent to it"
                )),
                _ => not_expected(wanted, &presented),
            }),
            Verdict::Known(name) => {
                view.standing = Standing::Verified(name);
                Ok(view)
            }
            Verdict::Mismatch(Mismatch {
                presented_as: Some(name),
                ..
            }) => {
                view.standing = Standing::Verified(name);
                Ok(view)
            }
            _ if matches!(policy, Policy::Approved(_)) => Ok(view),
            _ => pin(known_peers, view, None),
        };
    }
    match verdict {
        Verdict::Mismatch(mismatch) => Err(Error::KeyChanged(Box::new(mismatch))),
        Verdict::Known(name) => {
            view.standing = Standing::Verified(name);
            Ok(view)
        }
        Verdict::Unknown => match policy {
            Policy::Ask => {
                view.note = store
                    .suspicion(&peer.nickname)
                    .map(|suspicion| match &suspicion {
                        Suspicion::LooksLike(name) => format!(
                            "{}: this key is not {name}'s.",
                            suspicion.explain(&peer.nickname)
                        ),
                        _ => format!("{}.", suspicion.explain(&peer.nickname)),
                    });
                Ok(view)
            }
            Policy::AcceptNew => pin(known_peers, view, None),
            Policy::Strict => Err(Error::Untrusted(format!(
                "the peer's key {presented} is not in {} and --strict refuses unknown keys; \
                 pin it with `{}` once you have checked it",
                known_peers.display(),
                suggested_command_for_file(
                    known_peers,
                    &["peers", "add", "NAME", &presented.to_string()]
                )
            ))),
            Policy::Batch => Err(Error::Untrusted(format!(
                "the peer's key {presented} is not known and there is no terminal to confirm it; \
                 check it with the peer, then run again with --expect {presented} \
                 (or --accept-new to pin whatever key is presented)"
            ))),
            Policy::Expect(_) | Policy::Approved(_) => unreachable!("decided above"),
        },
    }
}

fn not_expected(expected: &Fingerprint, presented: &Fingerprint) -> Error {
    Error::Untrusted(format!(
        "the peer's key is {presented}, not the expected {expected}; refusing to talk"
    ))
}

/// Pins the peer's key under `name`, or, by default, under its nickname made
/// into a valid name, unless that name could pass for a pinned contact's
/// (then under a name made from the fingerprint, and the view's note says
/// so). The address we dialled is recorded unless it is pinned to another key.
pub fn pin(known_peers: &Path, mut view: PeerView, name: Option<&str>) -> Result<PeerView, Error> {
    let fingerprint = view.key.fingerprint();
    let stored = match name {
        Some(name) => {
            let mut new = NewPeer {
                name: name.to_string(),
                fingerprint,
                address: view.address.clone(),
                comment: None,
            };
            match KnownPeers::add(known_peers, &new) {
                Err(TrustError::DuplicateAddress { .. }) => {
                    new.address = None;
                    KnownPeers::add(known_peers, &new)?;
                }
                other => {
                    other?;
                }
            }
            name.to_string()
        }
        None => {
            let pinned = KnownPeers::pin_new(
                known_peers,
                fingerprint,
                &view.nickname,
                view.address.as_ref(),
            )?;
            view.note = pinned.suspicion.map(|suspicion| {
                format!(
                    "{}; pinned its key as {:?} instead.",
                    suspicion.explain(&view.nickname),
                    pinned.name
                )
            });
            pinned.name
        }
    };
    view.standing = Standing::Verified(stored);
    view.pinned_now = true;
    Ok(view)
}

/// What the user answered at the unknown-key prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// "yes": go on, the key unverified.
    Continue,
    /// The fingerprint the user pasted is the peer's: go on and pin it.
    Matches,
}

/// The question an interactive `connect` asks, the ssh way, before it
/// reveals who we are to a responder whose key it does not know.
pub const PROMPT: &str = "continue? (yes/no/paste fingerprint) ";

/// Shows an unknown responder's nickname and fingerprint on `output` and
/// asks whether to go on. "no", the end of input, or a pasted fingerprint
/// that is not the peer's refuse (the error says nothing about us was sent).
pub fn ask(
    view: &PeerView,
    address: &Address,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> Result<Answer, Error> {
    let presented = view.key.fingerprint();
    let terminal = |e: io::Error| Error::io("asking on the terminal")(e);
    let mut say = |text: &str| -> Result<(), Error> {
        output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .map_err(terminal)
    };
    say(&format!(
        "The peer at {address} calls itself {:?}. Its key is not known:\n    {presented}\n",
        sanitize::one_line(&view.nickname)
    ))?;
    if let Some(note) = &view.note {
        say(&format!("{note}\n"))?;
    }
    say(
        "Nothing about you has been sent to it yet. Compare the key with the peer over another \
         channel, such as a phone call, or paste the fingerprint they gave you.\n",
    )?;
    let declined = || {
        Error::Untrusted(format!(
            "you did not accept the key of the peer at {address} ({presented}); \
             nothing about you was sent to it"
        ))
    };
    for _ in 0..10 {
        say(PROMPT)?;
        let mut line = String::new();
        if input.read_line(&mut line).map_err(terminal)? == 0 {
            say("\n")?;
            return Err(declined());
        }
        let answer = line.trim();
        if answer.eq_ignore_ascii_case("yes") {
            return Ok(Answer::Continue);
        }
        if answer.eq_ignore_ascii_case("no") || answer.eq_ignore_ascii_case("n") {
            return Err(declined());
        }
        let pasted = answer.parse::<Fingerprint>().or_else(|_| {
            format!("{}{answer}", crate::crypto::fingerprint::PREFIX).parse::<Fingerprint>()
        });
        match pasted {
            Ok(pasted) if pasted == presented => return Ok(Answer::Matches),
            Ok(pasted) => {
                return Err(Error::Untrusted(format!(
                    "the fingerprint you pasted, {pasted}, is not the key of the peer at \
                     {address} ({presented}); refusing to talk, and nothing about you was sent to it"
                )));
            }
            Err(_) => say("Please type 'yes', 'no', or paste the fingerprint (SHA256:...).\n")?,
        }
    }
    Err(declined())
}

/// The warning shown when a pinned peer presents another key, in the
/// spirit of OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED". A name is
/// only a claim: a new key under a pinned name is reported as someone
/// claiming to be that contact, not as the contact's key having changed.
pub fn key_changed_banner(mismatch: &Mismatch) -> String {
    let name = &mismatch.name;
    let (headline, what, could_be) = match (&mismatch.matched_by, &mismatch.presented_as) {
        (MatchedBy::Name, _) => (
            "WARNING: SOMEONE CLAIMS TO BE A PINNED PEER!",
            format!("Someone claiming to be {name:?} presented a different key."),
            format!(
                "It may be {name} with a new key, or someone else using the name {name:?}: \
                 a name is only a claim."
            ),
        ),
        (MatchedBy::Address(address), Some(other)) => (
            "WARNING: PEER IDENTIFICATION HAS CHANGED!",
            format!(
                "You pinned {address} to the key of {name:?}, but the key that answered there is \
                 the one you pinned as {other:?}."
            ),
            format!(
                "It is also possible that {other} now uses this address; either way, this is not {name}."
            ),
        ),
        (MatchedBy::Address(address), None) => (
            "WARNING: PEER IDENTIFICATION HAS CHANGED!",
            format!("You pinned {address} to the key of {name:?}."),
            format!("It is also possible that {name} has simply made a new key."),
        ),
    };
    format!(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    {headline:<53}@\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         {could_be}\n\
         {what}\n\
         Pinned key:    {pinned}\n\
         Presented key: {presented}{presented_as}\n\
         The pinned key is in {path}, entry {name:?} at line {line}.\n\
         If you have confirmed with {name} that the new key is theirs, remove the pin with\n\
         \n    {forget}\n\n\
         and connect again. Nothing was sent, and {path} was not changed.",
        forget = suggested_command_for_file(&mismatch.path, &["peers", "forget", name]),
        pinned = mismatch.pinned,
        presented = mismatch.presented,
        presented_as = mismatch
            .presented_as
            .as_ref()
            .map(|other| format!(" (pinned as {other:?})"))
            .unwrap_or_default(),
        path = mismatch.path.display(),
        line = mismatch.line,
    )
}
