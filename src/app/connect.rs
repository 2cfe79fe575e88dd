//! `chat connect`: dial, shake hands, judge the responder before revealing
//! ourselves, and hand the conversation to the REPL or the batch loop.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Context;
use super::batch::batch;
use super::invite::Target;
use super::peer::{Me, PeerCommands, conclude, describe_peer, interactive};
use super::repl;
use super::trust_policy::{self, Answer, PeerView, Policy};
use crate::address::Address;
use crate::cli::{CommonArgs, ConnectArgs};
use crate::error::Error;
use crate::net::{self, Connected, Decision, NetError};
use crate::protocol::{CloseReason, ProtocolError};
use crate::trust::KnownPeers;

/// `chat connect`.
pub(super) fn connect(context: &Context, args: &ConnectArgs) -> Result<(), Error> {
    let interactive = interactive(&args.common);
    let (target, common) = super::resolve::settle(
        context,
        args.address.as_ref(),
        args.port,
        true,
        &args.common,
    )?;
    let (me, created) = context.me(&common)?;
    if let Some(line) = created {
        eprintln!("{line}");
    }
    let (connected, view) = match &target {
        Target::Address(address) => dial(context, &me, address, &common, interactive)?,
        Target::Name(_) => unreachable!("settled into an address"),
        Target::Invite(invite) => {
            super::invite::join(context, &me, invite, &common, args.no_relay)?
        }
    };
    let view = Arc::new(Mutex::new(view));
    if interactive {
        let settings = repl::Settings {
            max_message: common.max_message,
            screen_limit: args.screen_limit,
            rekey_limit: common.rekey_limit,
            verbose: common.verbose,
            save_dir: common.save_dir.clone(),
            accept_files: common.accept_files,
        };
        converse(context, &me, connected, view, settings)
    } else {
        batch(context, &me, connected, view, &common, None)
    }
}

/// An interactive conversation in the REPL, which ends with it.
pub(super) fn converse(
    context: &Context,
    me: &Me,
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    settings: repl::Settings,
) -> Result<(), Error> {
    let intro = {
        let view = view.lock().expect("peer view");
        let address = view.address.as_ref().map(ToString::to_string);
        describe_peer(&view, address.as_deref())
    };
    let commands = PeerCommands {
        home: context.home.clone(),
        me: me.clone(),
    };
    let on_terminal = |e| Error::io("running the conversation on the terminal")(e);
    let (repl, mut terminal) =
        repl::Repl::start(Box::new(commands), settings).map_err(on_terminal)?;
    let conversation = repl.open(connected, view, intro).map_err(on_terminal)?;
    let run = repl.run(&mut terminal, repl::Mode::UntilLastEnds);
    drop(terminal);
    if let Err(e) = run {
        // The terminal is gone: leave the peer cleanly all the same.
        conversation.sender().close(CloseReason::Goodbye);
        conversation.wait();
        return Err(on_terminal(e));
    }
    conclude(&conversation.wait())
}

/// Dials, shakes hands and judges the responder before revealing ourselves.
///
/// `known_peers.toml` is read before anything is dialled, so that a store
/// chat cannot read fails alone, as a local problem, and no peer is told
/// that it is not trusted. Our own key is refused before any decision
/// (`net::initiate`), so nothing is pinned for it. In an interactive
/// `connect`, a responder whose key is unknown is shown with its fingerprint
/// and the user is asked before we reveal who we are ([`trust_policy::ask`]).
/// If the responder hung up while the user decided, we dial again and accept
/// only the key the user approved.
pub(super) fn dial(
    context: &Context,
    me: &Me,
    address: &Address,
    common: &CommonArgs,
    interactive: bool,
) -> Result<(Connected, PeerView), Error> {
    let known_peers = context.home.known_peers_path();
    let mut store = KnownPeers::load(&known_peers)?;
    let mut policy = Policy::from_args(common, interactive);
    let mut trace = |line: String| {
        if common.verbose {
            eprintln!("handshake: {line}");
        }
    };
    loop {
        let stream = net::dial(address)?;
        if let Ok(peer) = stream.peer_addr() {
            trace(format!("TCP connection to {peer} open"));
        }
        let started = Instant::now();
        let mut judged = None;
        // The key the user accepted at the prompt, and whether it was too
        // late to go on with this connection.
        let mut approved = None;
        let mut too_late = false;
        let outcome = net::initiate_traced(
            stream,
            &mut rand::rng(),
            &me.identity,
            &me.nickname,
            &mut trace,
            |peer| {
                let mut verdict = trust_policy::judge_with(&store, &policy, peer, Some(address));
                if let (Policy::Ask, Ok(view)) = (&policy, &verdict)
                    && !view.is_verified()
                {
                    verdict = confirm(&known_peers, view.clone(), address);
                    if verdict.is_ok() {
                        approved = Some(peer.key.fingerprint());
                        // The responder gives up on a handshake after its
                        // timeout; rather than race it, start afresh.
                        too_late = started.elapsed() + LATE_MARGIN >= net::handshake_timeout();
                    }
                }
                let decision = match &verdict {
                    Ok(_) if too_late => Decision::Abandon(CloseReason::Goodbye),
                    Ok(_) => Decision::Continue,
                    Err(_) => Decision::Abandon(CloseReason::Untrusted),
                };
                judged = Some(verdict);
                decision
            },
            |_, _| Ok(()),
        );
        let lost = match &outcome {
            Ok(None) => too_late,
            Err(NetError::Cut(_) | NetError::Timeout(_) | NetError::Io(_)) => approved.is_some(),
            _ => false,
        };
        if let (true, Some(fingerprint)) = (lost, approved) {
            eprintln!(
                "The connection to {address} ended while you were deciding (a peer waits only \
                 seconds for a handshake). Dialling again; only the key you accepted, \
                 {fingerprint}, will do."
            );
            policy = Policy::Approved(fingerprint);
            store = KnownPeers::load(&known_peers)?;
            continue;
        }
        let outcome = outcome.map_err(|e| refine_refusal(e, address))?;
        let view = judged
            .expect("the trust decision ran")
            .inspect_err(report_key_change)?;
        let connected = outcome.expect("abandoned only when the trust decision failed");
        return Ok((connected, view));
    }
}

/// How long before the handshake deadline an answer at the prompt is too
/// late to go on with the same connection.
const LATE_MARGIN: Duration = Duration::from_secs(1);

/// Asks on the terminal about an unknown responder; a pasted fingerprint
/// that matches pins the key.
fn confirm(known_peers: &Path, view: PeerView, address: &Address) -> Result<PeerView, Error> {
    let answer = trust_policy::ask(
        &view,
        address,
        &mut io::stdin().lock(),
        &mut io::stderr().lock(),
    )?;
    match answer {
        Answer::Continue => Ok(view),
        Answer::Matches => trust_policy::pin(known_peers, view, None),
    }
}

/// Prints the loud warning for a changed key before the one-line error.
pub(super) fn report_key_change(error: &Error) {
    if let Error::KeyChanged(mismatch) = error {
        eprintln!("{}", trust_policy::key_changed_banner(mismatch));
    }
}

/// Names the address in errors that are about the peer there.
fn refine_refusal(error: NetError, address: &Address) -> Error {
    match error {
        NetError::Protocol(ProtocolError::Refused(reason)) => {
            Error::Busy(format!("{address} refused the connection: {reason}"))
        }
        error @ (NetError::Resolve { .. } | NetError::Connect { .. }) => Error::Net(error),
        NetError::NotAChatPeer { detail, .. } => Error::Net(NetError::NotAChatPeer {
            address: address.to_string(),
            detail,
        }),
        error => Error::Peer {
            address: address.to_string(),
            error,
        },
    }
}
