//! `chat serve`: listen, judge each peer that completes a handshake, and
//! hold its conversation.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Context;
use super::batch::batch;
use super::connect::{converse, report_key_change};
use super::output::json_event;
use super::peer::interactive;
use super::trust_policy::{self, Policy};
use crate::cli::ServeArgs;
use crate::error::Error;
use crate::net::server;
use crate::protocol::CloseReason;

/// `chat serve`.
pub(super) fn serve(context: &Context, args: &ServeArgs) -> Result<(), Error> {
    let interactive = interactive(&args.common);
    let (me, created) = context.me(&args.common)?;
    let listener = TcpListener::bind(args.listen)
        .map_err(Error::io(format!("cannot listen on {}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(Error::io("reading the listening address"))?;
    eprintln!("listening on {local}");
    match created {
        Some(line) => eprintln!("{line}"),
        None => eprintln!(
            "Your fingerprint is {}.",
            me.identity.public().fingerprint()
        ),
    }
    eprintln!("Waiting for a peer; Ctrl-C to stop.");
    let log: server::Log = Arc::new(Mutex::new(Box::new(|line: String| eprintln!("{line}"))));
    // One conversation at a time until the program can hold several
    // (issue 12, item 1); the server can.
    let options = server::Options {
        max_conversations: 1,
        verbose: args.verbose,
        ..server::Options::default()
    };
    let conversations = server::serve(
        listener,
        Arc::clone(&me.identity),
        me.nickname.clone(),
        options,
        log,
    );
    let policy = Policy::from_args(&args.common, interactive);
    let known_peers = context.home.known_peers_path();
    for incoming in conversations {
        let server::Incoming {
            connected,
            peer_address,
            slot,
            ..
        } = incoming;
        let result =
            match trust_policy::judge(&known_peers, &policy, &connected.established.peer, None) {
                Err(error) => {
                    report_key_change(&error);
                    connected.close(CloseReason::Untrusted);
                    Err(error)
                }
                Ok(view) => {
                    let view = Arc::new(Mutex::new(view));
                    if interactive {
                        converse(
                            context,
                            &me,
                            connected,
                            view,
                            args.common.max_message,
                            Some(peer_address.to_string()),
                        )
                    } else {
                        batch(
                            context,
                            &me,
                            connected,
                            view,
                            &args.common,
                            Some(peer_address.to_string()),
                        )
                    }
                }
            };
        drop(slot);
        if args.once {
            return result;
        }
        if let Err(error) = result {
            if args.common.json {
                json_event(
                    json!({"event": "error", "message": error.to_string(), "exit_code": error.exit_code()}),
                );
            }
            eprintln!("chat: {error}");
        }
        eprintln!("Waiting for the next peer.");
    }
    Err(Error::Io {
        context: "the listener stopped".into(),
        source: io::Error::other("no more connections"),
    })
}
