//! `chat serve`: listen, judge each peer that completes a handshake, and
//! hold its conversation.
//!
//! On a terminal one REPL runs from the start: while no one is connected
//! the prompt says so and nothing typed is sent; conversations open on it
//! (several at once, see [`inbox`]) and end, and the listener's log prints
//! above the prompt. Without a terminal the conversations share standard
//! input and output ([`inbox::batch_inbox`]); with `--once`, the one
//! conversation runs the batch loop. Either way, a peer the trust policy
//! refuses is not a conversation: `--once` keeps waiting.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;

use super::Context;
use super::batch::batch_in;
use super::connect::report_key_change;
use super::inbox;
use super::invite::{Endpoints, admit_invited, incoming_place};
use super::output::json_event;
use super::peer::{Me, PeerCommands, interactive};
use super::repl::{self, Exit, Repl};
use super::trust_policy::{self, Policy};
use crate::cli::ServeArgs;
use crate::error::Error;
use crate::net::server;
use crate::protocol::CloseReason;

/// `chat serve`.
pub(super) fn serve(context: &Context, args: &ServeArgs) -> Result<(), Error> {
    let interactive = interactive(&args.common);
    let (me, created) = context.me(&args.common)?;
    // A store chat cannot read is a local problem: say so now, not as a
    // refusal to each peer that connects.
    crate::trust::KnownPeers::load(&context.home.known_peers_path())?;
    let listener =
        super::invite::endpoints(&context.home, args, me.identity.public().fingerprint())?;
    match created {
        Some(line) => eprintln!("{line}"),
        None => eprintln!(
            "Your fingerprint is {}.",
            me.identity.public().fingerprint()
        ),
    }
    let policy = Policy::from_args(&args.common, interactive);
    if interactive {
        on_terminal(context, args, me, listener, policy)
    } else {
        without_terminal(context, args, &me, listener, &policy)
    }
}

/// Several conversations at once ([`inbox`]), or with `--once` the first
/// through the batch loop (standard input and output).
fn without_terminal(
    context: &Context,
    args: &ServeArgs,
    me: &Me,
    listener: Endpoints,
    policy: &Policy,
) -> Result<(), Error> {
    eprintln!("Waiting for a peer; Ctrl-C to stop.");
    let log: server::Log = Arc::new(Mutex::new(Box::new(|line: String| eprintln!("{line}"))));
    let (conversations, _registration) = listener.serve(
        Arc::clone(&me.identity),
        me.nickname.clone(),
        inbox::server_options(args, context.home.known_peers_path()),
        log,
    );
    if !args.once {
        return inbox::batch_inbox(&context.home, args, me, conversations, policy);
    }
    let known_peers = context.home.known_peers_path();
    let report = |conversation: u64, error: &Error| {
        if args.common.json {
            json_event(json!({
                "event": "error",
                "message": error.to_string(),
                "exit_code": error.exit_code(),
                "conversation": conversation,
            }));
        }
    };
    for incoming in conversations {
        let place = incoming_place(&incoming);
        let server::Incoming {
            connected,
            slot,
            invited,
            ..
        } = incoming;
        let say = |line: String| eprintln!("{line}");
        admit_invited(&known_peers, invited, &connected.established.peer, &say);
        match trust_policy::judge(&known_peers, policy, &connected.established.peer, None) {
            Err(error) => {
                report_key_change(&error);
                connected.close(CloseReason::Untrusted);
                report(slot.id(), &error);
                drop(slot);
                eprintln!("chat: {error}");
            }
            Ok(view) => {
                let view = Arc::new(Mutex::new(view));
                let address = Some(place);
                let result = batch_in(
                    context,
                    me,
                    connected,
                    view,
                    &args.common,
                    address,
                    Some(&slot),
                );
                // One that gave way (to a newer session with the same key,
                // or to a verified peer) is not the conversation `--once`
                // waits for: the one that took its place is.
                let gave_way = slot.evicted().is_some();
                let id = slot.id();
                drop(slot);
                // A message we could not write (standard output failed)
                // would fail again with the next peer: stop, with that error.
                if (args.once && !gave_way) || matches!(result, Err(Error::Undeliverable { .. })) {
                    return result;
                }
                if let Err(error) = &result {
                    report(id, error);
                    eprintln!("chat: {error}");
                }
            }
        }
        eprintln!("Waiting for the next peer.");
    }
    Err(listener_stopped())
}

fn listener_stopped() -> Error {
    Error::Io {
        context: "the listener stopped".into(),
        source: io::Error::other("no more connections"),
    }
}

/// One REPL for the whole run, with conversations coming and going.
fn on_terminal(
    context: &Context,
    args: &ServeArgs,
    me: Me,
    listener: Endpoints,
    policy: Policy,
) -> Result<(), Error> {
    let commands = PeerCommands {
        home: context.home.clone(),
        me: me.clone(),
    };
    let settings = repl::Settings {
        max_message: args.common.max_message,
        screen_limit: args.screen_limit,
        rekey_limit: args.common.rekey_limit,
        verbose: args.common.verbose,
        save_dir: args.common.save_dir.clone(),
        accept_files: args.common.accept_files,
    };
    let on_terminal = |e| Error::io("running the conversation on the terminal")(e);
    let (repl, mut terminal) = Repl::start(Box::new(commands), settings).map_err(on_terminal)?;
    repl.notice("Waiting for a peer; type /quit or press Ctrl-D to stop.");
    let (incoming, _registration) = listener.serve(
        Arc::clone(&me.identity),
        me.nickname.clone(),
        inbox::server_options(args, context.home.known_peers_path()),
        repl.listener_log(),
    );
    let (results, result) = mpsc::channel();
    let dispatcher = inbox::Dispatcher {
        repl: repl.clone(),
        known_peers: context.home.known_peers_path(),
        policy,
        once: args.once,
        max_conversations: usize::from(args.max_conversations),
        results,
    };
    thread::Builder::new()
        .name("chat-dispatch".into())
        .spawn(move || dispatcher.run(incoming))
        .map_err(Error::io("starting a thread"))?;
    let exit = repl.run(&mut terminal, repl::Mode::Persistent);
    drop(terminal);
    match exit.map_err(on_terminal)? {
        Exit::Quit { closed: 0 } => Ok(()),
        // The conversation the user left (or the `--once` one) decides.
        Exit::Quit { .. } | Exit::Finished | Exit::Ended => result
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or(Ok(())),
    }
}
