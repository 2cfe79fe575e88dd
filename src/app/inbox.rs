//! `chat serve` as an inbox: several conversations at once (up to
//! `--max-conversations`, 8 by default), one per peer key.
//!
//! The listener ([`server`]) gives every authenticated peer a slot in its
//! conversation table ([`slots`](crate::net::slots)): a newer session with
//! the same key supersedes the older, and when every slot is taken a peer
//! whose key is pinned displaces the unverified conversation idle the
//! longest. This file is the program's side of it:
//!
//! * each conversation is closed with the slot table's reason when it must
//!   give way (the peer gets a CLOSE saying "superseded" or "displaced"),
//!   and the user is told who gave way to whom;
//! * what is sent and received counts as activity (keep-alives do not);
//! * a conversation counts as verified if its key was pinned before it
//!   began (or with `--expect`), or once the user types `/trust`. A key
//!   `--accept-new` pins on first contact is not verified for this first
//!   conversation: a stranger does not displace anyone by connecting.
//!
//! On a terminal, conversations open on the REPL ([`Dispatcher`]), where
//! `/to`, `@NAME` and `/who` choose where typed lines go
//! ([`routing`](super::routing)). Without one ([`batch_inbox`]), received
//! messages from every conversation go to standard output (with `--json`,
//! every event carries `"conversation": N`), and lines of standard input go
//! by the same rules: `@NAME text` to NAME, `/to NAME` to choose, and a
//! plain line to the chosen conversation, or to the only one open; with
//! several open and none chosen it is not sent, and the user is told why.

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use serde_json::json;

use super::batch::announce_in;
use super::connect::report_key_change;
use super::invite::incoming_place;
use super::output::{self, Notice, OutputHandler, in_conversation, json_event, notify};
use super::peer::{Me, conclude, describe_peer, fingerprint_lines, trust_peer};
use super::repl::Repl;
use super::routing::{self, Open, Routed};
use super::trust_policy::{self, PeerView, Policy, key_changed_banner};
use crate::cli::ServeArgs;
use crate::error::Error;
use crate::home::Home;
use crate::net::conversation::{Conversation, Sender};
use crate::net::server;
use crate::net::slots::{Evicted, Slot, Tracked};
use crate::protocol::CloseReason;
use crate::sanitize;
use crate::trust::KnownPeers;

/// How the listener is to behave for these options: `--once` holds one
/// conversation, else `--max-conversations`; a peer whose key is pinned in
/// `known_peers` counts as verified when it arrives.
pub(super) fn server_options(args: &ServeArgs, known_peers: PathBuf) -> server::Options {
    let verified: server::Verified = Arc::new(move |peer| {
        KnownPeers::load(&known_peers)
            .map(|store| store.by_fingerprint(&peer.key.fingerprint()).is_some())
            .unwrap_or(false)
    });
    server::Options {
        max_conversations: if args.once {
            1
        } else {
            usize::from(args.max_conversations)
        },
        verbose: args.common.verbose,
        verified: Some(verified),
        ..server::Options::default()
    }
}

/// Whether a conversation starts verified, for the slot table: its key was
/// pinned before (or `--expect` named it), not merely pinned now by
/// `--accept-new`.
fn starts_verified(view: &PeerView, policy: &Policy) -> bool {
    view.is_verified() && (!view.pinned_now || matches!(policy, Policy::Expect(_)))
}

/// The notice for a conversation (`name`, if it is still known) that gave
/// way to the newcomer `newcomer`.
fn gave_way(evicted: &Evicted, name: Option<&str>, newcomer: &str, id: u64, max: usize) -> String {
    let old = match name {
        Some(name) => format!("{name} (#{})", evicted.id),
        None => format!("Conversation #{}", evicted.id),
    };
    match evicted.reason {
        CloseReason::Superseded => format!(
            "{old} gave way to a newer connection with the same key, {newcomer} (#{id}): the older \
             one is closed (superseded)."
        ),
        _ => format!(
            "{old}, not verified and idle {} s, gave way to {newcomer} (#{id}), a verified peer: \
             all {max} conversations were taken. It is closed (displaced), and its peer is told why.",
            evicted.idle.as_secs()
        ),
    }
}

/// Refuses a peer the trust policy turned away, telling it and the user.
fn refuse(connected: crate::net::Connected, error: &Error, say: &dyn Fn(String)) {
    connected.close(CloseReason::Untrusted);
    if let Error::KeyChanged(mismatch) = error {
        say(key_changed_banner(mismatch));
    }
    say(format!("chat: {error}"));
}

/// Opens each incoming conversation on the REPL, several at once.
pub(super) struct Dispatcher {
    pub repl: Repl,
    pub known_peers: PathBuf,
    pub policy: Policy,
    pub once: bool,
    pub max_conversations: usize,
    /// How the conversation that ends the program ended (with `--once`, or
    /// when the user left), for the exit status.
    pub results: mpsc::Sender<Result<(), Error>>,
}

impl Dispatcher {
    /// Runs until the listener stops.
    pub fn run(self, incoming: mpsc::Receiver<server::Incoming>) {
        let this = Arc::new(self);
        // The names of open conversations, by number, for eviction notices
        // (the conversation that gave way may be gone by then).
        let names: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
        for incoming in incoming {
            this.arrived(incoming, &names);
        }
        this.repl.notice(format!(
            "chat: the listener stopped: {}",
            io::Error::other("no more connections")
        ));
    }

    fn arrived(
        self: &Arc<Self>,
        incoming: server::Incoming,
        names: &Arc<Mutex<HashMap<u64, String>>>,
    ) {
        let say = |line: String| self.repl.notice(line);
        let place = incoming_place(&incoming);
        let server::Incoming {
            connected,
            slot,
            evicted,
            invited,
            ..
        } = incoming;
        super::invite::admit_invited(
            &self.known_peers,
            invited,
            &connected.established.peer,
            &say,
        );
        let verdict = trust_policy::judge(
            &self.known_peers,
            &self.policy,
            &connected.established.peer,
            None,
        );
        let view = match verdict {
            Ok(view) => view,
            Err(error) => {
                refuse(connected, &error, &say);
                return;
            }
        };
        slot.set_verified(starts_verified(&view, &self.policy));
        let id = slot.id();
        let name = super::repl::name_of(&view);
        if let Some(evicted) = &evicted {
            let old = lock(names).get(&evicted.id).cloned();
            say(gave_way(
                evicted,
                old.as_deref(),
                &name,
                id,
                self.max_conversations,
            ));
        }
        let intro = describe_peer(&view, Some(&place));
        let view = Arc::new(Mutex::new(view));
        let slot = Arc::new(slot);
        let conversation =
            match self
                .repl
                .open_held(connected, view, intro, Some(Arc::clone(&slot)))
            {
                Ok(conversation) => conversation,
                Err(e) => {
                    say(format!("chat: cannot hold the conversation: {e}"));
                    return;
                }
            };
        lock(names).insert(id, name);
        if let Some(evicted) = evicted.filter(|e| e.reason == CloseReason::Superseded) {
            self.repl.superseded(evicted.id, id);
        }
        {
            let repl = self.repl.clone();
            let sender = conversation.sender();
            slot.on_evict(move |reason| {
                repl.evicted(id, reason);
                sender.close(reason);
            });
        }
        let this = Arc::clone(self);
        let names = Arc::clone(names);
        let waiting = thread::Builder::new()
            .name("chat-conversation".into())
            .spawn(move || {
                let summary = conversation.wait();
                let gave_way = slot.evicted().is_some();
                drop(slot);
                lock(&names).remove(&id);
                this.ended(conclude(&summary), lock(&names).is_empty(), gave_way);
            });
        if let Err(e) = waiting {
            say(format!("chat: cannot start a thread: {e}"));
        }
    }

    /// A conversation ended with `result`; `none_left` if no other is open;
    /// `gave_way` if it was superseded or displaced (then it is not the one
    /// `--once` waits for: the one that took its place is).
    fn ended(&self, result: Result<(), Error>, none_left: bool, gave_way: bool) {
        if (self.once && !gave_way) || self.repl.is_quitting() {
            // The program ends with this result (and prints its error).
            let _ = self.results.send(result);
            self.repl.finish();
            return;
        }
        if let Err(error) = &result {
            self.repl.notice(format!("chat: {error}"));
        }
        if none_left {
            self.repl.notice("Waiting for the next peer.");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the batch inbox's main loop hears about.
enum Event {
    Arrived(Box<server::Incoming>),
    /// Conversation N ended so.
    Ended(u64, Result<(), Error>),
    ListenerStopped,
}

/// One open conversation without a terminal.
struct Held {
    id: u64,
    view: Arc<Mutex<PeerView>>,
    sender: Sender,
    slot: Arc<Slot>,
}

/// The open conversations without a terminal, and where lines go.
#[derive(Default)]
struct Registry {
    open: Vec<Held>,
    /// Chosen by `/to`.
    target: Option<u64>,
    /// Standard input has ended (or `/quit`): nothing more will be sent to
    /// anyone, and every conversation is told so (DONE).
    input_ended: bool,
}

impl Registry {
    fn names(&self) -> Vec<Open> {
        self.open
            .iter()
            .map(|h| Open {
                id: h.id,
                name: h.view.lock().map(|v| v.label()).unwrap_or_default(),
            })
            .collect()
    }

    fn get(&self, id: u64) -> Option<&Held> {
        self.open.iter().find(|h| h.id == id)
    }

    /// Where a plain line goes: the chosen conversation, or the only one.
    fn destination(&self) -> Result<&Held, String> {
        if let Some(held) = self.target.and_then(|id| self.get(id)) {
            return Ok(held);
        }
        match self.open.as_slice() {
            [] => Err("no one is connected".into()),
            [only] => Ok(only),
            _ => Err(format!(
                "{} conversations are open and none is chosen: start the line with @NAME, or \
                 choose with /to NAME (open: {})",
                self.open.len(),
                routing::describe_open(&self.names())
            )),
        }
    }
}

/// Everything the batch inbox's threads share.
struct Batch {
    registry: Mutex<Registry>,
    home: Home,
    me: Me,
    json: bool,
    notice: Notice,
}

impl Batch {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    fn say(&self, line: impl Into<String>) {
        notify(&self.notice, line);
    }

    /// A line that was not sent, and why: on standard error, and as a JSON
    /// `not_sent` event.
    fn not_sent(&self, why: &str) {
        if self.json {
            json_event(json!({"event": "not_sent", "reason": why}));
        }
        self.say(format!("chat: not sent: {why}"));
    }
}

/// `chat serve` without a terminal and without `--once`: every conversation
/// at once, standard input shared by the rules of the module's
/// documentation. Returns only if standard output fails (the error) or the
/// listener stops.
pub(super) fn batch_inbox(
    home: &Home,
    args: &ServeArgs,
    me: &Me,
    incoming: mpsc::Receiver<server::Incoming>,
    policy: &Policy,
) -> Result<(), Error> {
    let known_peers = home.known_peers_path();
    let json = args.common.json;
    let batch = Arc::new(Batch {
        registry: Mutex::default(),
        home: home.clone(),
        me: me.clone(),
        json,
        notice: output::stderr_notice(),
    });
    let (events, heard) = mpsc::channel();
    {
        let events = events.clone();
        thread::Builder::new()
            .name("chat-arrivals".into())
            .spawn(move || {
                for incoming in incoming {
                    if events.send(Event::Arrived(Box::new(incoming))).is_err() {
                        return;
                    }
                }
                let _ = events.send(Event::ListenerStopped);
            })
            .map_err(Error::io("starting a thread"))?;
    }
    {
        let batch = Arc::clone(&batch);
        thread::Builder::new()
            .name("chat-input".into())
            .spawn(move || read_input(&batch))
            .map_err(Error::io("starting a thread"))?;
    }
    let report = |id: Option<u64>, error: &Error| {
        if json {
            json_event(in_conversation(
                id,
                json!({"event": "error", "message": error.to_string(), "exit_code": error.exit_code()}),
            ));
        }
        eprintln!("chat: {error}");
    };
    let mut names: HashMap<u64, String> = HashMap::new();
    for event in heard {
        match event {
            Event::ListenerStopped => break,
            Event::Ended(id, result) => {
                names.remove(&id);
                let left = {
                    let mut registry = batch.registry();
                    registry.open.retain(|h| h.id != id);
                    if registry.target == Some(id) {
                        registry.target = None;
                    }
                    registry.open.len()
                };
                // A message we could not write (standard output failed)
                // would fail again with the next peer: stop, with that error.
                if matches!(result, Err(Error::Undeliverable { .. })) {
                    return result;
                }
                if let Err(error) = &result {
                    report(Some(id), error);
                }
                if left == 0 {
                    eprintln!("Waiting for the next peer.");
                }
            }
            Event::Arrived(incoming) => {
                let place = incoming_place(&incoming);
                let server::Incoming {
                    connected,
                    slot,
                    evicted,
                    invited,
                    ..
                } = *incoming;
                let say = |line: String| eprintln!("{line}");
                super::invite::admit_invited(
                    &known_peers,
                    invited,
                    &connected.established.peer,
                    &say,
                );
                let id = slot.id();
                let view = match trust_policy::judge(
                    &known_peers,
                    policy,
                    &connected.established.peer,
                    None,
                ) {
                    Ok(view) => view,
                    Err(error) => {
                        report_key_change(&error);
                        connected.close(CloseReason::Untrusted);
                        report(Some(id), &error);
                        continue;
                    }
                };
                slot.set_verified(starts_verified(&view, policy));
                let name = view.label();
                if let Some(evicted) = &evicted {
                    // It is closed already; its end will follow.
                    {
                        let mut registry = batch.registry();
                        registry.open.retain(|h| h.id != evicted.id);
                        if registry.target == Some(evicted.id) {
                            registry.target = None;
                        }
                    }
                    let old = names.get(&evicted.id).map(String::as_str);
                    let line =
                        gave_way(evicted, old, &name, id, usize::from(args.max_conversations));
                    if json {
                        json_event(json!({
                            "event": "gave_way",
                            "conversation": evicted.id,
                            "to": id,
                            "reason": match evicted.reason {
                                CloseReason::Superseded => "superseded",
                                _ => "displaced",
                            },
                        }));
                    }
                    batch.say(line);
                }
                let view = Arc::new(Mutex::new(view));
                let address = place;
                announce_in(
                    Some(id),
                    &view,
                    me,
                    json,
                    &batch.notice,
                    Some(&address),
                    false,
                );
                let handler = OutputHandler::new(Arc::clone(&view), json, batch.notice.clone())
                    .in_conversation(id)
                    .verbose(args.common.verbose);
                let mut connected = connected;
                connected
                    .established
                    .session
                    .send()
                    .set_rekey_limit(args.common.rekey_limit);
                // Files as --accept-files and --save-dir say (app/files/).
                let (handler, _) = super::files::receive::for_conversation(
                    Tracked::new(handler, slot.activity()),
                    super::files::receive::FileSettings::of(&args.common),
                    &view,
                    batch.notice.clone(),
                    None,
                );
                // Registered before standard input can see its first message.
                let mut registry = batch.registry();
                let conversation =
                    match Conversation::over(connected, args.common.max_message, handler) {
                        Ok(conversation) => conversation,
                        Err(e) => {
                            report(Some(id), &Error::io("starting the conversation")(e));
                            continue;
                        }
                    };
                let sender = conversation.sender();
                slot.on_evict({
                    let sender = sender.clone();
                    move |reason| sender.close(reason)
                });
                let slot = Arc::new(slot);
                names.insert(id, name.clone());
                let open = {
                    if registry.input_ended {
                        let _ = sender.done();
                    }
                    registry.open.push(Held {
                        id,
                        view,
                        sender,
                        slot: Arc::clone(&slot),
                    });
                    registry.open.len()
                };
                drop(registry);
                if open > 1 {
                    batch.say(format!(
                        "Conversation #{id} with {name} is open ({open} open; /who lists them, \
                         @NAME text or /to NAME chooses where lines go)."
                    ));
                }
                let events = events.clone();
                let waiting = thread::Builder::new()
                    .name("chat-conversation".into())
                    .spawn(move || {
                        let summary = conversation.wait();
                        drop(slot);
                        let _ = events.send(Event::Ended(id, conclude(&summary)));
                    });
                if let Err(e) = waiting {
                    report(Some(id), &Error::io("starting a thread")(e));
                }
            }
        }
    }
    Err(Error::Io {
        context: "the listener stopped".into(),
        source: io::Error::other("no more connections"),
    })
}

/// Standard input, for the whole run: lines are messages (by the rules of
/// the module's documentation), a line starting with `/` is a command. At
/// its end every open conversation, and every later one, is told that we
/// will send nothing more.
fn read_input(batch: &Batch) {
    let stdin = io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                batch.say(format!("chat: reading standard input failed: {e}"));
                break;
            }
        }
        if !input_line(batch, &line) {
            break;
        }
    }
    let mut registry = batch.registry();
    registry.input_ended = true;
    for held in &registry.open {
        let _ = held.sender.done();
    }
}

/// One line of standard input, its line ending included; false after
/// `/quit`. A message goes out with the line's ending (as in the batch
/// loop of `batch.rs`: what we read is what the peer writes); a command is
/// read without it.
fn input_line(batch: &Batch, line: &[u8]) -> bool {
    if let Some(command) = line.strip_prefix(b"/")
        && !command.starts_with(b"/")
    {
        let command = command.strip_suffix(b"\n").unwrap_or(command);
        let command = command.strip_suffix(b"\r").unwrap_or(command);
        return command_line(batch, &String::from_utf8_lossy(command));
    }
    let text = line.strip_prefix(b"/").unwrap_or(line);
    // `@NAME text` (NAME is text up to the first space).
    let (who, text) = match std::str::from_utf8(text).map(routing::split) {
        Ok(Routed::To { who, text }) => (Some(who.to_string()), text.as_bytes()),
        Ok(Routed::Plain(plain)) => (None, plain.as_bytes()),
        Err(_) => (None, text),
    };
    let registry = batch.registry();
    let held = match &who {
        Some(who) => {
            let open = registry.names();
            match routing::find(who, &open) {
                Ok(id) => registry.get(id),
                Err(why) => {
                    drop(registry);
                    batch.not_sent(&why.explain(&sanitize::one_line(who), &open));
                    return true;
                }
            }
        }
        None => match registry.destination() {
            Ok(held) => Some(held),
            Err(why) => {
                drop(registry);
                batch.not_sent(&why);
                return true;
            }
        },
    };
    let Some(held) = held else {
        return true;
    };
    let (id, sender, activity) = (held.id, held.sender.clone(), held.slot.activity());
    drop(registry);
    match sender.send(text) {
        Ok(message) => {
            activity.touch();
            if batch.json {
                json_event(json!({"event": "sent", "id": message, "conversation": id}));
            }
        }
        Err(e) => batch.not_sent(&format!("to conversation #{id}: {e}")),
    }
    true
}

/// A command line (`/who`, `/to NAME`, `/fingerprint`, `/trust [NAME]`,
/// `/quit`); false after `/quit`.
fn command_line(batch: &Batch, command: &str) -> bool {
    let (word, argument) = match command.split_once(' ') {
        Some((word, argument)) => (word, Some(argument.trim()).filter(|a| !a.is_empty())),
        None => (command, None),
    };
    match word {
        "quit" => {
            let registry = batch.registry();
            for held in &registry.open {
                held.sender.close(CloseReason::Goodbye);
            }
            return false;
        }
        "who" => {
            let registry = batch.registry();
            let lines: Vec<String> = registry
                .open
                .iter()
                .map(|h| {
                    let view = h.view.lock().map(|v| v.clone());
                    let (name, verified) = view
                        .map(|v| (v.marked_label(), v.is_verified()))
                        .unwrap_or_default();
                    format!(
                        "#{} {name} {}{}",
                        h.id,
                        if verified { "verified" } else { "NOT VERIFIED" },
                        if registry.target == Some(h.id) {
                            " (lines go here)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            if batch.json {
                let open: Vec<_> = registry.open.iter().map(|h| h.id).collect();
                json_event(json!({"event": "who", "open": open, "target": registry.target}));
            }
            drop(registry);
            if lines.is_empty() {
                batch.say("No one is connected.");
            }
            for line in lines {
                batch.say(line);
            }
        }
        "to" => {
            let mut registry = batch.registry();
            let open = registry.names();
            match argument.map(|who| (who, routing::find(who, &open))) {
                Some((_, Ok(id))) => {
                    registry.target = Some(id);
                    drop(registry);
                    batch.say(format!("Lines now go to conversation #{id}."));
                }
                Some((who, Err(why))) => {
                    drop(registry);
                    batch.say(format!(
                        "chat: {}",
                        why.explain(&sanitize::one_line(who), &open)
                    ));
                }
                None => {
                    drop(registry);
                    batch.say("Usage: /to NAME (or /to #N; /who lists the open conversations)");
                }
            }
        }
        "fingerprint" | "trust" => {
            let (view, slot) = {
                let registry = batch.registry();
                match registry.destination() {
                    Ok(held) => (Arc::clone(&held.view), Arc::clone(&held.slot)),
                    Err(why) => {
                        drop(registry);
                        batch.say(format!("chat: /{word}: {why}"));
                        return true;
                    }
                }
            };
            if word == "fingerprint" {
                let v = view.lock().map(|v| v.clone());
                if let Ok(v) = v {
                    for line in fingerprint_lines(&v, &batch.me) {
                        batch.say(line);
                    }
                }
            } else {
                match trust_peer(&batch.home, &view, argument) {
                    Ok(line) => {
                        slot.set_verified(true);
                        if batch.json {
                            let name = view.lock().map(|v| v.label()).unwrap_or_default();
                            json_event(in_conversation(
                                Some(slot.id()),
                                json!({"event": "trusted", "name": name}),
                            ));
                        }
                        batch.say(line);
                    }
                    Err(e) => batch.say(format!("chat: {e}")),
                }
            }
        }
        other => batch.say(format!(
            "chat: unknown command /{}; use //text to send a line that starts with /",
            sanitize::one_line(other)
        )),
    }
    true
}
