//! `chat send`: one message and DONE, then wait for its receipt.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::Context;
use super::batch::announce;
use super::connect::dial;
use super::invite::Target;
use super::output::{self, OutputHandler, json_event};
use super::peer::conclude;
use super::trust_policy::PeerView;
use crate::cli::{CommonArgs, SendArgs};
use crate::error::Error;
use crate::net::conversation::Conversation;
use crate::protocol::CloseReason;

/// `chat send`: one message from a file or standard input; exits 0 only if
/// its receipt arrives. An empty message is refused before connecting: a
/// receipt for nothing would tell the user that something was delivered.
pub(super) fn send(context: &Context, args: &SendArgs) -> Result<(), Error> {
    if !args.file.is_empty() {
        return super::files::send::send_files(context, args);
    }
    let (mut source, length) = open_source()?;
    if length == 0 {
        return Err(Error::Input(
            "nothing to send: standard input is empty (chat send delivers standard input as one \
             message, or files with --file PATH...)"
                .into(),
        ));
    }
    let (conversation, view, common) = open(context, args)?;
    let sender = conversation.sender();
    let mut progress = super::progress::Progress::new(length);
    let sent = sender.send_from(&mut *source, length, &mut |done| progress.update(done));
    progress.finish();
    match sent {
        Ok(id) => {
            if common.json {
                json_event(json!({"event": "sent", "id": id}));
            }
            // Nothing more comes from us (docs/PROTOCOL.md, 8.4). A failure
            // shows up as the receipt never arriving.
            let _ = sender.done();
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

/// What every `chat send` does before it sends: resolve the peer, load or
/// create our identity, dial it (or join it through an invite), and start
/// the conversation with the user's rekey limit, notes and JSON events.
pub(super) fn open(
    context: &Context,
    args: &SendArgs,
) -> Result<(Conversation, Arc<Mutex<PeerView>>, CommonArgs), Error> {
    let (target, common) = super::resolve::settle(
        context,
        args.address.as_ref(),
        args.port,
        false,
        &args.common,
    )?;
    let (me, created) = context.me(&common)?;
    if let Some(line) = created {
        eprintln!("{line}");
    }
    let (mut connected, view) = match &target {
        Target::Address(address) => dial(context, &me, address, &common, false)?,
        Target::Name(_) => unreachable!("settled into an address"),
        Target::Invite(invite) => {
            super::invite::join(context, &me, invite, &common, args.no_relay)?
        }
    };
    connected
        .established
        .session
        .send()
        .set_rekey_limit(common.rekey_limit);
    if let (false, Some(note)) = (common.json, &view.note) {
        eprintln!("{note}");
    }
    let view = Arc::new(Mutex::new(view));
    let notice = output::stderr_notice();
    if common.json {
        announce(&view, &me, true, &notice, None, true);
    }
    let handler =
        OutputHandler::new(Arc::clone(&view), common.json, notice).verbose(common.verbose);
    let conversation = Conversation::over(connected, common.max_message, handler)
        .map_err(Error::io("starting the conversation"))?;
    Ok((conversation, view, common))
}

/// The message for `chat send`: standard input. A regular file
/// (redirected standard input) is streamed; a pipe is read whole
/// first, because a message announces its length before its text.
fn open_source() -> Result<(Box<dyn Read + Send>, u64), Error> {
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
