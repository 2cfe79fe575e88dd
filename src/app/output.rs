//! Where a conversation's events go when there is no REPL: received messages
//! to standard output (as text, or as JSON events with `--json`), notices
//! to standard error.

use std::io::{self, IsTerminal, Write};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::trust_policy::PeerView;
use crate::net::conversation::{Ending, Handler, Summary};
use crate::sanitize;

/// Messages up to this size are printed only once complete; a longer one is
/// streamed to standard output as it arrives (and reported if cut off).
const STREAM_AFTER: usize = 1 << 20;

/// Human-readable status lines: standard error, or above a REPL's prompt.
pub type Notice = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

/// Status lines to standard error.
pub fn stderr_notice() -> Notice {
    Arc::new(Mutex::new(Box::new(|line: String| eprintln!("{line}"))))
}

/// Prints one status line.
pub fn notify(notice: &Notice, line: impl Into<String>) {
    if let Ok(mut print) = notice.lock() {
        print(line.into());
    }
}

/// Writes one JSON event as a line on standard output, for events whose
/// loss changes nothing (a failing standard output shows up where it
/// matters: when a message is to be delivered).
pub fn json_event(event: serde_json::Value) {
    let _ = write_json_event(&event);
}

/// `event` with `"conversation": id` added, if there is an id (`chat
/// serve`, which may hold several conversations at once, numbers them).
pub fn in_conversation(
    conversation: Option<u64>,
    mut event: serde_json::Value,
) -> serde_json::Value {
    if let (Some(id), Some(fields)) = (conversation, event.as_object_mut()) {
        fields.insert("conversation".into(), id.into());
    }
    event
}

/// Writes one JSON event as a line on standard output and flushes it.
pub fn write_json_event(event: &serde_json::Value) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{event}")
        .and_then(|()| stdout.flush())
        .map_err(output_error)
}

/// Says where a write failed: the error ends up in a one-line message.
fn output_error(error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot write to standard output: {error}"),
    )
}

/// The JSON form of a conversation's end.
pub fn ending_event(summary: &Summary) -> serde_json::Value {
    let (how, reason) = match (&summary.ending, &summary.undelivered) {
        (_, Some(failure)) => ("failed", Some(failure.to_string())),
        (Ending::Finished, None) => ("finished", None),
        (Ending::ClosedByUs, None) => ("closed_by_us", None),
        (Ending::ClosedByPeer(reason), None) => ("closed_by_peer", Some(reason.to_string())),
        (Ending::Failed(error), None) => ("failed", Some(error.to_string())),
    };
    json!({
        "event": "closed",
        "how": how,
        "reason": reason,
        "undelivered": summary.unacknowledged,
        "cut_off": summary.cut_off,
    })
}

/// Receives messages for a program without a REPL. A message is printed
/// once complete; one announced longer than 1 MiB is streamed as it arrives
/// instead (as `message_start`, `message_data` and `message_end` events with
/// `--json`), so memory stays bounded whatever the peer sends.
///
/// Every write is checked, and [`Handler::message_end`] returns only once
/// the whole message is written and standard output flushed: a message that
/// could not be written (a full disk, a closed pipe) is not acknowledged.
pub struct OutputHandler {
    view: Arc<Mutex<PeerView>>,
    json: bool,
    /// Standard output is a terminal: neutralise control characters.
    terminal: bool,
    notice: Notice,
    length: u64,
    streaming: bool,
    text: Vec<u8>,
    pieces: sanitize::Utf8Pieces,
    streamed: u64,
    last_byte: Option<u8>,
    /// The conversation's number in `--json` events, if it has one.
    conversation: Option<u64>,
}

impl OutputHandler {
    /// A handler for the peer `view`, writing JSON events if `json`.
    pub fn new(view: Arc<Mutex<PeerView>>, json: bool, notice: Notice) -> Self {
        Self {
            view,
            json,
            terminal: io::stdout().is_terminal(),
            notice,
            length: 0,
            streaming: false,
            text: Vec::new(),
            pieces: sanitize::Utf8Pieces::default(),
            streamed: 0,
            last_byte: None,
            conversation: None,
        }
    }

    /// Numbers every `--json` event of this conversation (`chat serve`).
    pub fn in_conversation(mut self, id: u64) -> Self {
        self.conversation = Some(id);
        self
    }

    /// A JSON event of this conversation, written and flushed.
    fn write_event(&self, event: serde_json::Value) -> io::Result<()> {
        write_json_event(&in_conversation(self.conversation, event))
    }

    /// A JSON event of this conversation whose loss changes nothing.
    fn event(&self, event: serde_json::Value) {
        json_event(in_conversation(self.conversation, event));
    }

    fn label(&self) -> String {
        self.view.lock().map(|v| v.label()).unwrap_or_default()
    }

    /// Writes message text to standard output, made safe on a terminal.
    fn write_text(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(&last) = bytes.last() {
            self.last_byte = Some(last);
        }
        let mut stdout = io::stdout().lock();
        if self.terminal {
            let text = self.pieces.push(bytes);
            stdout.write_all(sanitize::for_display(text.as_bytes()).as_bytes())
        } else {
            stdout.write_all(bytes)
        }
        .map_err(output_error)
    }

    /// Ends a message printed as text: the rest of a character split at
    /// the end, a line ending if it had none, and a flush.
    fn finish_text(&mut self) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        if self.terminal {
            let rest = self.pieces.finish();
            stdout.write_all(sanitize::for_display(rest.as_bytes()).as_bytes())?;
        }
        if self.last_byte != Some(b'\n') {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()
    }
}

impl Handler for OutputHandler {
    fn message_start(&mut self, id: u64, length: u64) -> io::Result<()> {
        self.text.clear();
        self.length = length;
        self.streaming = length > STREAM_AFTER as u64;
        self.streamed = 0;
        self.last_byte = None;
        if self.streaming && self.json {
            self.write_event(
                json!({"event": "message_start", "id": id, "from": self.label(), "length": length}),
            )?;
        }
        Ok(())
    }

    fn message_data(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
        if !self.streaming {
            self.text.extend_from_slice(data);
            return Ok(());
        }
        self.streamed += data.len() as u64;
        if self.json {
            let text = self.pieces.push(data);
            if !text.is_empty() {
                self.write_event(json!({"event": "message_data", "id": id, "text": text}))?;
            }
            Ok(())
        } else {
            self.write_text(data)
        }
    }

    fn message_end(&mut self, id: u64) -> io::Result<()> {
        if self.json {
            if self.streaming {
                let rest = self.pieces.finish();
                if !rest.is_empty() {
                    self.write_event(json!({"event": "message_data", "id": id, "text": rest}))?;
                }
                return self.write_event(json!({"event": "message_end", "id": id}));
            }
            let text = std::mem::take(&mut self.text);
            return self.write_event(json!({
                "event": "message",
                "id": id,
                "from": self.label(),
                "length": self.length,
                "text": String::from_utf8_lossy(&text),
            }));
        }
        let text = std::mem::take(&mut self.text);
        // One message at a time on standard output, whole, when several
        // conversations write to it (its lock is reentrant).
        let _whole = io::stdout().lock();
        self.write_text(&text)?;
        self.finish_text().map_err(output_error)
    }

    fn delivered(&mut self, ids: RangeInclusive<u64>) {
        if self.json {
            for id in ids {
                self.event(json!({"event": "delivered", "id": id}));
            }
        }
    }

    fn peer_done(&mut self) {
        if self.json {
            self.event(json!({"event": "peer_done"}));
        }
    }

    fn ended(&mut self, summary: &Summary) {
        if let Some(id) = summary.cut_off {
            let shown = if self.streamed > 0 {
                format!("; the {} bytes printed of it are incomplete", self.streamed)
            } else {
                String::new()
            };
            notify(
                &self.notice,
                format!(
                    "chat: message #{id} from {} was cut off before its end{shown}",
                    self.label()
                ),
            );
        }
        if self.json {
            self.event(ending_event(summary));
        }
    }
}
