//! Who is on each end of a conversation: our identity and nickname, how
//! the peer is described and pinned, and how a conversation's end becomes
//! the program's result.

use std::io::{self, IsTerminal};
use std::sync::{Arc, Mutex};

use super::Context;
use super::trust_policy::{self, PeerView, Standing};
use crate::cli::CommonArgs;
use crate::crypto::{PrivateKey, SafetyNumber};
use crate::error::Error;
use crate::home::Home;
use crate::identity::{self, Origin};
use crate::net::NetError;
use crate::net::conversation::{Ending, Summary};
use crate::protocol::CloseReason;
use crate::sanitize;
use crate::wire::handshake::is_valid_nickname;

/// Everything a conversation needs from our side.
#[derive(Clone)]
pub(super) struct Me {
    pub identity: Arc<PrivateKey>,
    pub nickname: String,
}

impl Context<'_> {
    /// Loads our identity, creating one if there is none (and saying so),
    /// and settles the nickname. `announce` receives the creation notice.
    pub(super) fn me(&self, common: &CommonArgs) -> Result<(Me, Option<String>), Error> {
        let nickname = match &common.name {
            Some(name) => name.clone(),
            None => match self.home.config()?.name {
                Some(name) => name,
                None => super::nickname::default_nickname(),
            },
        };
        if !is_valid_nickname(&nickname) {
            return Err(Error::Input(format!(
                "invalid nickname {:?}: use 1 to 64 bytes of text without control characters",
                sanitize::one_line(&nickname)
            )));
        }
        let path = self.home.identity_path();
        if !path.exists() {
            self.home.create()?;
        }
        let (identity, origin) =
            identity::load_or_create(&path, || self.identity_passphrase(), &mut rand::rng())?;
        let fingerprint = identity.public().fingerprint();
        let notice = match origin {
            Origin::Loaded => None,
            Origin::Created => Some(format!(
                "Created a new identity in {} (3072-bit RSA, no passphrase). Your fingerprint: {fingerprint}",
                path.display(),
            )),
            Origin::CreatedMeanwhile => Some(format!(
                "An identity was created in {} by another chat process meanwhile; using it. Your fingerprint: {fingerprint}",
                path.display(),
            )),
        };
        Ok((
            Me {
                identity: Arc::new(identity),
                nickname,
            },
            notice,
        ))
    }
}

/// Whether a person is at the keyboard: the REPL needs a terminal both ways.
pub(super) fn interactive(common: &CommonArgs) -> bool {
    !common.json && io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Says who we are talking to, and how far to trust it.
pub(super) fn describe_peer(view: &PeerView, address: Option<&str>) -> Vec<String> {
    let fingerprint = view.key.fingerprint();
    // A relayed peer's place is its path ("via relay HOST:PORT").
    let place = address
        .map(|a| match a.starts_with("via ") {
            true => format!(" {a}"),
            false => format!(" at {a}"),
        })
        .unwrap_or_default();
    let mut lines = Vec::new();
    if let Some(note) = &view.note {
        lines.push(note.clone());
    }
    match &view.standing {
        Standing::Verified(name) if view.pinned_now => {
            lines.push(format!(
                "Connected to {name}{place}. Its key {fingerprint} is now pinned as {name:?}."
            ));
        }
        Standing::Verified(name) => {
            lines.push(format!(
                "Connected to {name}{place}: verified (its key {fingerprint} is pinned)."
            ));
        }
        Standing::Unverified => {
            // "NOT VERIFIED" on a line of its own, so that an 80-column
            // terminal never breaks it in two.
            lines.push(format!(
                "Connected to a peer{place} that calls itself {:?}.",
                sanitize::one_line(&view.nickname)
            ));
            lines.push("Its key is NOT VERIFIED:".into());
            lines.push(format!("    {fingerprint}"));
            lines.push(
                "Compare it (or the safety number that /fingerprint shows) with the peer over another \
                 channel, such as a phone call; if they match, type /trust."
                    .into(),
            );
        }
    }
    lines
}

/// The lines `/fingerprint` prints.
pub(super) fn fingerprint_lines(view: &PeerView, me: &Me) -> Vec<String> {
    vec![
        format!("Your key:       {}", me.identity.public().fingerprint()),
        format!("{:<16}{}", format!("{}'s key:", view.label()), view.key.fingerprint()),
        format!(
            "Safety number:  {}",
            SafetyNumber::new(me.identity.public(), &view.key)
        ),
        "Both sides see the same safety number; read it to each other to check that no one is in the middle."
            .into(),
    ]
}

/// `/trust [NAME]`: pins the peer's key.
pub(super) fn trust_peer(
    home: &Home,
    view: &Arc<Mutex<PeerView>>,
    name: Option<&str>,
) -> Result<String, Error> {
    let current = view.lock().expect("peer view").clone();
    if let Standing::Verified(name) = &current.standing {
        return Ok(format!(
            "{name} is already verified (pinned in known_peers.toml)."
        ));
    }
    home.create()?;
    let path = home.known_peers_path();
    let pinned = trust_policy::pin(&path, current, name)?;
    let label = pinned.label();
    let note = pinned.note.clone();
    *view.lock().expect("peer view") = pinned;
    let done = format!(
        "Pinned the peer's key as {label:?} in {}; it is now verified.",
        path.display()
    );
    Ok(match note {
        Some(note) => format!("{note} It is now verified ({}).", path.display()),
        None => done,
    })
}

/// `/fingerprint` and `/trust` for the REPL.
pub(super) struct PeerCommands {
    pub home: Home,
    pub me: Me,
}

impl super::repl::Commands for PeerCommands {
    fn invite(&self) -> Result<String, String> {
        let invite = super::invite::one_time(&self.home, super::invite::ONCE_LIFETIME)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "One-time invite, for one person, valid 24 h (whoever uses it first is pinned as              verified):\n{invite}"
        ))
    }

    fn fingerprint(&self, view: &Arc<Mutex<PeerView>>) -> Vec<String> {
        fingerprint_lines(&view.lock().unwrap_or_else(|p| p.into_inner()), &self.me)
    }

    fn trust(&self, view: &Arc<Mutex<PeerView>>, name: Option<&str>) -> Result<String, String> {
        trust_peer(&self.home, view, name).map_err(|e| e.to_string())
    }
}

/// Turns how a conversation ended into the program's result, by the
/// README's table of exit codes: a failure is reported by its cause (our
/// output: 1; the connection, or a peer that ended it over an error: 3; the
/// peer refusing our key: 4), and a conversation that ended normally with
/// messages left without a receipt is 6.
pub(super) fn conclude(summary: &Summary) -> Result<(), Error> {
    if let Some(failure) = &summary.undelivered {
        return Err(Error::Undeliverable {
            id: failure.id,
            error: io::Error::new(failure.error.kind(), failure.error.to_string()),
        });
    }
    let undelivered = super::preview::unsent(summary);
    match &summary.ending {
        Ending::Failed(error) if undelivered.is_empty() => Err(Error::Net(clone_net_error(error))),
        Ending::Failed(error) => Err(Error::NetUndelivered {
            error: clone_net_error(error),
            undelivered,
        }),
        Ending::ClosedByPeer(CloseReason::Untrusted) => Err(Error::Refused(
            "the peer refused to talk: it does not trust our key (or it changed since it pinned it)".into(),
        )),
        Ending::ClosedByPeer(CloseReason::Busy) => {
            Err(Error::Busy("the peer is busy in another conversation; try again later".into()))
        }
        Ending::ClosedByPeer(reason @ (CloseReason::TooLarge | CloseReason::ProtocolError | CloseReason::Other(_))) => {
            Err(Error::PeerEnded {
                reason: *reason,
                undelivered,
            })
        }
        ending if !undelivered.is_empty() => Err(Error::Undelivered {
            context: match ending {
                Ending::ClosedByPeer(_) => "the peer ended the conversation without a receipt",
                _ => "the conversation ended",
            }
            .into(),
            undelivered,
        }),
        _ => Ok(()),
    }
}

pub(super) fn clone_net_error(error: &NetError) -> NetError {
    match error {
        NetError::Protocol(e) => NetError::Protocol(e.clone()),
        NetError::Timeout(during) => NetError::Timeout(during),
        NetError::Cut(during) => NetError::Cut(during),
        other => NetError::Io(io::Error::other(other.to_string())),
    }
}
