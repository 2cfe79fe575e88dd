//! A conversation without a terminal: lines of standard input are messages,
//! received messages go to standard output.

use std::io::{self, BufRead};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Context;
use super::output::{self, Notice, OutputHandler, json_event, notify};
use super::peer::{Me, conclude, describe_peer, fingerprint_lines, trust_peer};
use super::trust_policy::{PeerView, Standing};
use crate::cli::CommonArgs;
use crate::crypto::SafetyNumber;
use crate::error::Error;
use crate::home::Home;
use crate::net::Connected;
use crate::net::conversation::{Conversation, Sender};
use crate::net::slots::{Activity, Slot, Tracked};
use crate::protocol::CloseReason;
use crate::sanitize;

/// A conversation without a terminal: each line of standard input is a
/// message, its line ending included (a line starting with `/` is a
/// command); received messages go to standard output as they came. So a
/// batch peer's input arrives byte for byte in our output, and ours in its.
/// End of input means "nothing more to send": we wait for the receipts and
/// for the peer to finish.
pub(super) fn batch(
    context: &Context,
    me: &Me,
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    common: &CommonArgs,
    address: Option<String>,
) -> Result<(), Error> {
    batch_in(context, me, connected, view, common, address, None)
}

/// As [`batch`], for a conversation that holds `slot` in `chat serve`'s
/// table: its `--json` events carry the slot's number, what it sends and
/// receives is activity, and it closes with the table's reason if it must
/// give way.
pub(super) fn batch_in(
    context: &Context,
    me: &Me,
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    common: &CommonArgs,
    address: Option<String>,
    slot: Option<&Slot>,
) -> Result<(), Error> {
    let notice = output::stderr_notice();
    let number = slot.map(Slot::id);
    announce_in(
        number,
        &view,
        me,
        common.json,
        &notice,
        address.as_deref(),
        address.is_none(),
    );
    let handler =
        OutputHandler::new(Arc::clone(&view), common.json, notice.clone()).verbose(common.verbose);
    let mut connected = connected;
    connected
        .established
        .session
        .send()
        .set_rekey_limit(common.rekey_limit);
    let files = super::files::receive::FileSettings::of(common);
    let conversation = match slot {
        Some(slot) => Conversation::over(
            connected,
            common.max_message,
            super::files::receive::for_conversation(
                Tracked::new(handler.in_conversation(slot.id()), slot.activity()),
                files,
                &view,
                notice.clone(),
                None,
            )
            .0,
        ),
        None => Conversation::over(
            connected,
            common.max_message,
            super::files::receive::for_conversation(handler, files, &view, notice.clone(), None).0,
        ),
    }
    .map_err(Error::io("starting the conversation"))?;
    let sender = conversation.sender();
    if let Some(slot) = slot {
        let sender = sender.clone();
        slot.on_evict(move |reason| sender.close(reason));
    }
    let activity = slot.map(Slot::activity);
    {
        let view = Arc::clone(&view);
        let home = context.home.clone();
        let json = common.json;
        let me = Me {
            identity: Arc::clone(&me.identity),
            nickname: me.nickname.clone(),
        };
        let notice = notice.clone();
        let numbered = Numbered {
            conversation: number,
            activity,
        };
        std::thread::spawn(move || {
            read_commands(&sender, &view, &home, &me, json, &notice, &numbered);
        });
    }
    let summary = conversation.wait();
    conclude(&summary)
}

/// Prints who the peer is, as text or as a JSON `connected` event.
pub(super) fn announce(
    view: &Arc<Mutex<PeerView>>,
    me: &Me,
    json: bool,
    notice: &Notice,
    address: Option<&str>,
    initiator: bool,
) {
    announce_in(None, view, me, json, notice, address, initiator);
}

/// As [`announce`], for conversation `conversation` of several (its JSON
/// event carries the number).
pub(super) fn announce_in(
    conversation: Option<u64>,
    view: &Arc<Mutex<PeerView>>,
    me: &Me,
    json: bool,
    notice: &Notice,
    address: Option<&str>,
    initiator: bool,
) {
    let view = view.lock().expect("peer view");
    if json {
        json_event(output::in_conversation(
            conversation,
            json!({
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
            }),
        ));
    }
    let address = address
        .map(str::to_string)
        .or_else(|| view.address.as_ref().map(ToString::to_string));
    for line in describe_peer(&view, address.as_deref()) {
        notify(notice, line);
    }
}

/// A conversation's number and activity clock, when it holds a slot.
struct Numbered {
    conversation: Option<u64>,
    activity: Option<Activity>,
}

/// The stdin loop of [`batch`].
fn read_commands(
    sender: &Sender,
    view: &Arc<Mutex<PeerView>>,
    home: &Home,
    me: &Me,
    json: bool,
    notice: &Notice,
    numbered: &Numbered,
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
        // The line is sent as it came, its line ending included; a command
        // is read without it.
        let mut ending = 0;
        if line.last() == Some(&b'\n') {
            ending = 1;
            if line.len() > 1 && line[line.len() - 2] == b'\r' {
                ending = 2;
            }
        }
        let text = match line.strip_prefix(b"/") {
            Some(rest) if rest.starts_with(b"/") => rest,
            Some(command) => {
                let command = &command[..command.len() - ending];
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
                                    json_event(output::in_conversation(
                                        numbered.conversation,
                                        json!({"event": "trusted", "name": name}),
                                    ));
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
                if let Some(activity) = &numbered.activity {
                    activity.touch();
                }
                if json {
                    json_event(output::in_conversation(
                        numbered.conversation,
                        json!({"event": "sent", "id": id}),
                    ));
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
