//! `chat connect`: dial, shake hands, judge the responder before revealing
//! ourselves, and hand the conversation to the REPL or the batch loop.

use std::sync::{Arc, Mutex};

use super::Context;
use super::batch::batch;
use super::peer::{Me, conclude, describe_peer, fingerprint_lines, interactive, trust_peer};
use super::trust_policy::{self, PeerView, Policy};
use crate::address::Address;
use crate::cli::{CommonArgs, ConnectArgs};
use crate::error::Error;
use crate::home::Home;
use crate::net::{self, Connected, Decision, NetError};
use crate::protocol::{CloseReason, ProtocolError};

/// `chat connect`.
pub(super) fn connect(context: &Context, args: &ConnectArgs) -> Result<(), Error> {
    let interactive = interactive(&args.common);
    let (me, created) = context.me(&args.common)?;
    if let Some(line) = created {
        eprintln!("{line}");
    }
    let (connected, view) = dial(context, &me, &args.address, &args.common, interactive)?;
    let view = Arc::new(Mutex::new(view));
    if interactive {
        converse(context, &me, connected, view, args.common.max_message, None)
    } else {
        batch(context, &me, connected, view, &args.common, None)
    }
}

/// The `/fingerprint` and `/trust` commands for the REPL.
struct ReplCommands<'a> {
    home: &'a Home,
    me: &'a Me,
    view: Arc<Mutex<PeerView>>,
}

impl super::repl::Commands for ReplCommands<'_> {
    fn fingerprint(&self) -> Vec<String> {
        fingerprint_lines(&self.view.lock().expect("peer view"), self.me)
    }

    fn trust(&self, name: Option<&str>) -> Result<String, String> {
        trust_peer(self.home, &self.view, name).map_err(|e| e.to_string())
    }
}

/// An interactive conversation in the REPL.
pub(super) fn converse(
    context: &Context,
    me: &Me,
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    max_message: u64,
    address: Option<String>,
) -> Result<(), Error> {
    let intro = {
        let view = view.lock().expect("peer view");
        let address = address.or_else(|| view.address.as_ref().map(ToString::to_string));
        describe_peer(&view, address.as_deref())
    };
    let commands = ReplCommands {
        home: &context.home,
        me,
        view: Arc::clone(&view),
    };
    let summary = super::repl::run(connected, view, max_message, &commands, intro)
        .map_err(Error::io("running the conversation on the terminal"))?;
    conclude(&summary)
}

/// Dials, shakes hands and judges the responder before revealing ourselves.
pub(super) fn dial(
    context: &Context,
    me: &Me,
    address: &Address,
    common: &CommonArgs,
    interactive: bool,
) -> Result<(Connected, PeerView), Error> {
    let stream = net::dial(address)?;
    let policy = Policy::from_args(common, interactive);
    let known_peers = context.home.known_peers_path();
    let mut judged = None;
    let outcome = net::initiate(
        stream,
        &mut rand::rng(),
        &me.identity,
        &me.nickname,
        |peer| {
            let verdict = trust_policy::judge(&known_peers, &policy, peer, Some(address));
            let decision = match &verdict {
                Ok(_) => Decision::Continue,
                Err(_) => Decision::Abandon(CloseReason::Untrusted),
            };
            judged = Some(verdict);
            decision
        },
    )
    .map_err(|e| refine_refusal(e, address))?;
    let view = judged
        .expect("the trust decision ran")
        .inspect_err(report_key_change)?;
    let connected = outcome.expect("abandoned only when the trust decision failed");
    Ok((connected, view))
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
        error => Error::Peer {
            address: address.to_string(),
            error,
        },
    }
}
