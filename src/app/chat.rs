//! `chat serve`, `chat connect` and `chat send`: load the identity, make the
//! connection, judge the peer's key, and hand the conversation to the REPL
//! or to the non-interactive loop.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Seek};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Context;
use super::output::{self, Notice, OutputHandler, json_event, notify};
use super::trust_policy::{self, PeerView, Policy, Standing};
use crate::address::Address;
use crate::cli::{CommonArgs, ConnectArgs, SendArgs, ServeArgs};
use crate::crypto::{PrivateKey, SafetyNumber};
use crate::error::Error;
use crate::home::Home;
use crate::identity;
use crate::net::conversation::{Conversation, Ending, Sender, Summary};
use crate::net::{self, Connected, Decision, NetError, server};
use crate::protocol::{CloseReason, ProtocolError};
use crate::sanitize;
use crate::wire::handshake::is_valid_nickname;

/// Everything a conversation needs from our side.
pub(super) struct Me {
    pub identity: Arc<PrivateKey>,
    pub nickname: String,
}

impl Context<'_> {
    /// Loads our identity, creating one if there is none (and saying so),
    /// and settles the nickname. `announce` receives the creation notice.
    fn me(&self, common: &CommonArgs) -> Result<(Me, Option<String>), Error> {
        let nickname = match &common.name {
            Some(name) => name.clone(),
            None => match self.home.config()?.name {
                Some(name) => name,
                None => default_nickname(),
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
        let (identity, created) =
            identity::load_or_create(&path, || self.identity_passphrase(), &mut rand::rng())?;
        let notice = created.then(|| {
            format!(
                "Created a new identity in {} (3072-bit RSA, no passphrase). Your fingerprint: {}",
                path.display(),
                identity.public().fingerprint()
            )
        });
        Ok((
            Me {
                identity: Arc::new(identity),
                nickname,
            },
            notice,
        ))
    }
}

/// The user name, as a nickname: `$USER`, else `$LOGNAME`, else "anonymous".
fn default_nickname() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| is_valid_nickname(name))
        .unwrap_or_else(|| "anonymous".into())
}

/// Whether a person is at the keyboard: the REPL needs a terminal both ways.
fn interactive(common: &CommonArgs) -> bool {
    !common.json && io::stdin().is_terminal() && io::stdout().is_terminal()
}

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
fn converse(
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
fn dial(
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
fn report_key_change(error: &Error) {
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
    let conversations = server::serve(listener, Arc::clone(&me.identity), me.nickname.clone(), log);
    let policy = Policy::from_args(&args.common, interactive);
    let known_peers = context.home.known_peers_path();
    for incoming in conversations {
        let server::Incoming {
            connected,
            peer_address,
            slot,
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

/// Says who we are talking to, and how far to trust it.
pub(super) fn describe_peer(view: &PeerView, address: Option<&str>) -> Vec<String> {
    let fingerprint = view.key.fingerprint();
    let place = address.map(|a| format!(" at {a}")).unwrap_or_default();
    let mut lines = Vec::new();
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
            lines.push(format!(
                "Connected to a peer{place} that calls itself {:?}. Its key is NOT VERIFIED:",
                sanitize::one_line(&view.nickname)
            ));
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
    *view.lock().expect("peer view") = pinned;
    Ok(format!(
        "Pinned the peer's key as {label:?} in {}; it is now verified.",
        path.display()
    ))
}

/// Turns how a conversation ended into the program's result.
pub(super) fn conclude(summary: &Summary) -> Result<(), Error> {
    let undelivered = summary.unacknowledged.clone();
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
            Err(Error::Undelivered {
                context: format!("the peer ended the conversation: {reason}"),
                undelivered,
            })
        }
        _ if !undelivered.is_empty() => Err(Error::Undelivered {
            context: "the conversation ended".into(),
            undelivered,
        }),
        _ => Ok(()),
    }
}

fn clone_net_error(error: &NetError) -> NetError {
    match error {
        NetError::Protocol(e) => NetError::Protocol(e.clone()),
        NetError::Timeout(during) => NetError::Timeout(during),
        NetError::Cut(during) => NetError::Cut(during),
        other => NetError::Io(io::Error::other(other.to_string())),
    }
}

/// A conversation without a terminal: each line of standard input is a
/// message (a line starting with `/` is a command); received messages go to
/// standard output. End of input means "nothing more to send": we wait for
/// the receipts and for the peer to finish.
fn batch(
    context: &Context,
    me: &Me,
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    common: &CommonArgs,
    address: Option<String>,
) -> Result<(), Error> {
    let notice = output::stderr_notice();
    announce(
        &view,
        me,
        common.json,
        &notice,
        address.as_deref(),
        address.is_none(),
    );
    let handler = OutputHandler::new(Arc::clone(&view), common.json, notice.clone());
    let conversation = Conversation::over(connected, common.max_message, handler)
        .map_err(Error::io("starting the conversation"))?;
    let sender = conversation.sender();
    {
        let view = Arc::clone(&view);
        let home = context.home.clone();
        let json = common.json;
        let me = Me {
            identity: Arc::clone(&me.identity),
            nickname: me.nickname.clone(),
        };
        let notice = notice.clone();
        std::thread::spawn(move || read_commands(&sender, &view, &home, &me, json, &notice));
    }
    let summary = conversation.wait();
    conclude(&summary)
}

/// Prints who the peer is, as text or as a JSON `connected` event.
fn announce(
    view: &Arc<Mutex<PeerView>>,
    me: &Me,
    json: bool,
    notice: &Notice,
    address: Option<&str>,
    initiator: bool,
) {
    let view = view.lock().expect("peer view");
    if json {
        json_event(json!({
            "event": "connected",
            "role": if initiator { "initiator" } else { "responder" },
            "address": address.map(str::to_string).or_else(|| view.address.as_ref().map(ToString::to_string)),
            "peer": {
                "nickname": view.nickname,
                "fingerprint": view.key.fingerprint().to_string(),
                "name": match &view.standing { Standing::Verified(name) => Some(name.clone()), Standing::Unverified => None },
                "trust": match (&view.standing, view.pinned_now) {
                    (Standing::Verified(_), true) => "pinned_now",
                    (Standing::Verified(_), false) => "verified",
                    (Standing::Unverified, _) => "unverified",
                },
            },
            "safety_number": SafetyNumber::new(me.identity.public(), &view.key).to_string(),
        }));
    }
    let address = address
        .map(str::to_string)
        .or_else(|| view.address.as_ref().map(ToString::to_string));
    for line in describe_peer(&view, address.as_deref()) {
        notify(notice, line);
    }
}

/// The stdin loop of [`batch`].
fn read_commands(
    sender: &Sender,
    view: &Arc<Mutex<PeerView>>,
    home: &Home,
    me: &Me,
    json: bool,
    notice: &Notice,
) {
    let stdin = io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                notify(notice, format!("chat: reading standard input failed: {e}"));
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let text = match line.strip_prefix(b"/") {
            Some(rest) if rest.starts_with(b"/") => rest,
            Some(command) => {
                let command = String::from_utf8_lossy(command).into_owned();
                let (word, argument) = match command.split_once(' ') {
                    Some((word, argument)) => (word.to_string(), Some(argument.trim().to_string())),
                    None => (command.clone(), None),
                };
                match word.as_str() {
                    "quit" => {
                        sender.close(CloseReason::Goodbye);
                        return;
                    }
                    "fingerprint" => {
                        let v = view.lock().expect("peer view").clone();
                        for l in fingerprint_lines(&v, me) {
                            notify(notice, l);
                        }
                    }
                    "trust" => {
                        match trust_peer(home, view, argument.as_deref().filter(|a| !a.is_empty()))
                        {
                            Ok(line) => {
                                if json {
                                    let name = view.lock().expect("peer view").label();
                                    json_event(json!({"event": "trusted", "name": name}));
                                }
                                notify(notice, line)
                            }
                            Err(e) => notify(notice, format!("chat: {e}")),
                        }
                    }
                    other => notify(
                        notice,
                        format!(
                            "chat: unknown command /{}; use //text to send a line that starts with /",
                            sanitize::one_line(other)
                        ),
                    ),
                }
                continue;
            }
            None => &line[..],
        };
        match sender.send(text) {
            Ok(id) => {
                if json {
                    json_event(json!({"event": "sent", "id": id}));
                }
            }
            Err(e) => {
                notify(notice, format!("chat: {e}"));
                return;
            }
        }
    }
    // End of input: nothing more to send. The conversation finishes when
    // the peer is done too and everything is acknowledged.
    let _ = sender.done();
}

/// `chat send`: one message from a file or standard input; exits 0 only if
/// its receipt arrives.
pub(super) fn send(context: &Context, args: &SendArgs) -> Result<(), Error> {
    let (mut source, length) = open_source(args)?;
    let (me, created) = context.me(&args.common)?;
    if let Some(line) = created {
        eprintln!("{line}");
    }
    let (connected, view) = dial(context, &me, &args.address, &args.common, false)?;
    let view = Arc::new(Mutex::new(view));
    let notice = output::stderr_notice();
    if args.common.json {
        announce(&view, &me, true, &notice, None, true);
    }
    let handler = OutputHandler::new(Arc::clone(&view), args.common.json, notice);
    let conversation = Conversation::over(connected, args.common.max_message, handler)
        .map_err(Error::io("starting the conversation"))?;
    let sender = conversation.sender();
    let mut progress = super::progress::Progress::new(length);
    let sent = sender.send_from(&mut *source, length, &mut |done| progress.update(done));
    progress.finish();
    match sent {
        Ok(id) => {
            if args.common.json {
                json_event(json!({"event": "sent", "id": id}));
            }
            if sender.wait_acknowledged(id) {
                let name = view.lock().expect("peer view").label();
                eprintln!("Delivered to {name}.");
            }
            sender.close(CloseReason::Goodbye);
        }
        Err(crate::net::conversation::SendError::Source(e)) => {
            sender.close(CloseReason::Goodbye);
            conversation.wait();
            return Err(Error::io("reading the message")(e));
        }
        Err(_) => {}
    }
    let summary = conversation.wait();
    conclude(&summary)
}

/// The message for `chat send`: the file, or standard input. A regular file
/// (also as redirected standard input) is streamed; a pipe is read whole
/// first, because a message announces its length before its text.
fn open_source(args: &SendArgs) -> Result<(Box<dyn Read + Send>, u64), Error> {
    if let Some(path) = &args.file {
        let file =
            File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        let metadata = file
            .metadata()
            .map_err(Error::io(format!("cannot read {}", path.display())))?;
        if !metadata.is_file() {
            return Err(Error::Input(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        return Ok((Box::new(file), metadata.len()));
    }
    let stdin = io::stdin();
    let mut file = stdin
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(Error::io("reading standard input"))?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if regular {
        let size = file
            .metadata()
            .map_err(Error::io("reading standard input"))?
            .len();
        let position = file
            .stream_position()
            .map_err(Error::io("reading standard input"))?;
        return Ok((Box::new(file), size.saturating_sub(position)));
    }
    if io::stdin().is_terminal() {
        eprintln!("Type the message, then Ctrl-D on a line of its own to send it.");
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(Error::io("reading standard input"))?;
    let length = text.len() as u64;
    Ok((Box::new(io::Cursor::new(text)), length))
}
