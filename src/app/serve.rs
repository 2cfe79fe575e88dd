//! `chat serve`: listen, judge each peer that completes a handshake, and
//! hold its conversation.
//!
//! On a terminal one REPL runs from the start: while no one is connected
//! the prompt says so and nothing typed is sent; conversations open on it
//! and end, and the listener's log prints above the prompt. Without a
//! terminal each conversation runs the batch loop. Either way, a peer the
//! trust policy refuses is not a conversation: `--once` keeps waiting.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;

use super::Context;
use super::batch::batch;
use super::connect::report_key_change;
use super::invite::{Endpoints, incoming_place};
use super::output::json_event;
use super::peer::{Me, PeerCommands, conclude, describe_peer, interactive};
use super::repl::{self, Exit, Repl};
use super::trust_policy::{self, Policy, key_changed_banner};
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

/// One conversation at a time until the program can hold several
/// (issue 12, item 1); the server can.
fn server_options(args: &ServeArgs) -> server::Options {
    server::Options {
        max_conversations: 1,
        verbose: args.verbose,
        ..server::Options::default()
    }
}

/// Tells a refused peer why, and the user too (through `say`).
fn refuse(connected: crate::net::Connected, error: &Error, say: &dyn Fn(String)) {
    connected.close(CloseReason::Untrusted);
    if let Error::KeyChanged(mismatch) = error {
        say(key_changed_banner(mismatch));
    }
    say(format!("chat: {error}"));
}

/// Each conversation through the batch loop (standard input and output).
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
        server_options(args),
        log,
    );
    let known_peers = context.home.known_peers_path();
    let report = |error: &Error| {
        if args.common.json {
            json_event(
                json!({"event": "error", "message": error.to_string(), "exit_code": error.exit_code()}),
            );
        }
    };
    for incoming in conversations {
        let place = incoming_place(&incoming);
        let server::Incoming {
            connected, slot, ..
        } = incoming;
        match trust_policy::judge(&known_peers, policy, &connected.established.peer, None) {
            Err(error) => {
                report_key_change(&error);
                connected.close(CloseReason::Untrusted);
                drop(slot);
                report(&error);
                eprintln!("chat: {error}");
            }
            Ok(view) => {
                let view = Arc::new(Mutex::new(view));
                let address = Some(place);
                let result = batch(context, me, connected, view, &args.common, address);
                drop(slot);
                // A message we could not write (standard output failed)
                // would fail again with the next peer: stop, with that error.
                if args.once || matches!(result, Err(Error::Undeliverable { .. })) {
                    return result;
                }
                if let Err(error) = &result {
                    report(error);
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
    };
    let on_terminal = |e| Error::io("running the conversation on the terminal")(e);
    let (repl, mut terminal) = Repl::start(Box::new(commands), settings).map_err(on_terminal)?;
    repl.notice("Waiting for a peer; type /quit or press Ctrl-D to stop.");
    let (incoming, _registration) = listener.serve(
        Arc::clone(&me.identity),
        me.nickname.clone(),
        server_options(args),
        repl.listener_log(),
    );
    let (results, result) = mpsc::channel();
    let dispatcher = Dispatcher {
        repl: repl.clone(),
        known_peers: context.home.known_peers_path(),
        policy,
        once: args.once,
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

/// Hands each incoming conversation to the REPL, one at a time.
struct Dispatcher {
    repl: Repl,
    known_peers: PathBuf,
    policy: Policy,
    once: bool,
    /// How the last conversation ended (with `--once`, or when the user
    /// left during it), for the exit status.
    results: mpsc::Sender<Result<(), Error>>,
}

impl Dispatcher {
    fn run(self, incoming: mpsc::Receiver<server::Incoming>) {
        let say = |line: String| self.repl.notice(line);
        for incoming in incoming {
            let place = incoming_place(&incoming);
            let server::Incoming {
                connected, slot, ..
            } = incoming;
            let verdict = trust_policy::judge(
                &self.known_peers,
                &self.policy,
                &connected.established.peer,
                None,
            );
            let view = match verdict {
                Ok(view) => Arc::new(Mutex::new(view)),
                Err(error) => {
                    refuse(connected, &error, &say);
                    drop(slot);
                    continue;
                }
            };
            let intro = describe_peer(
                &view.lock().unwrap_or_else(|p| p.into_inner()),
                Some(&place),
            );
            let conversation = match self.repl.open(connected, view, intro) {
                Ok(conversation) => conversation,
                Err(e) => {
                    say(format!("chat: cannot hold the conversation: {e}"));
                    continue;
                }
            };
            let summary = conversation.wait();
            drop(slot);
            let result = conclude(&summary);
            if self.once || self.repl.is_quitting() {
                // The program ends with this result (and prints its error).
                let _ = self.results.send(result);
                self.repl.finish();
                return;
            }
            if let Err(error) = &result {
                say(format!("chat: {error}"));
            }
            say("Waiting for the next peer.".into());
        }
        say(format!("chat: {}", listener_stopped()));
    }
}
