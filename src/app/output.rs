//! Where a conversation's events go when there is no REPL: received messages
//! to standard output (as text, or as JSON events with `--json`), notices
//! to standard error.

use std::io::{self, IsTerminal, Write};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use base64ct::Encoding;
use serde_json::json;

use super::trust_policy::PeerView;
use crate::net::conversation::{Ending, Handler, KeyDirection, KeyUpdates, Summary};
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
        "undelivered_previews": super::preview::unsent(summary)
            .into_iter()
            .map(|unsent| unsent.preview)
            .collect::<Vec<_>>(),
        "cut_off": summary.cut_off,
    })
}

/// Receives messages for a program without a REPL. A message is printed
/// once complete; one announced longer than 1 MiB is streamed as it arrives
/// instead (as `message_start`, `message_data` and `message_end` events with
/// `--json`), so memory stays bounded whatever the peer sends.
///
/// Byte for byte: into a pipe or a file, each message is written exactly as
/// it came, nothing added, so `chat send < f` into `chat serve > out` makes
/// `out` identical to `f` (several messages follow one another as they are;
/// `--json` frames them). On a terminal, a message that does not end with a
/// newline gets one, and control characters are made visible. With `--json`,
/// text that is not UTF-8 goes in a `base64` field instead of `text`
/// ([`JsonPayload`]), so no byte is lost there either.
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
    json_pieces: JsonPayload,
    verbose: bool,
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
            json_pieces: JsonPayload::default(),
            verbose: false,
        }
    }

    /// Numbers every `--json` event of this conversation (`chat serve`).
    pub fn in_conversation(mut self, id: u64) -> Self {
        self.conversation = Some(id);
        self
    }

    /// Logs each key update on standard error (`-v`).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
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

    /// Ends a message printed as text, and flushes. On a terminal: the rest
    /// of a character split at the end, and a line ending if it had none.
    /// Into a pipe or a file: nothing, the message is written as it came.
    fn finish_text(&mut self) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        if self.terminal {
            let rest = self.pieces.finish();
            stdout.write_all(sanitize::for_display(rest.as_bytes()).as_bytes())?;
            if self.last_byte != Some(b'\n') {
                stdout.write_all(b"\n")?;
            }
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
        self.json_pieces = JsonPayload::default();
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
            if let Some((field, value)) = self.json_pieces.push(data) {
                self.write_event(json!({"event": "message_data", "id": id, field: value}))?;
            }
            Ok(())
        } else {
            self.write_text(data)
        }
    }

    fn message_end(&mut self, id: u64) -> io::Result<()> {
        if self.json {
            if self.streaming {
                if let Some((field, value)) = self.json_pieces.finish() {
                    self.write_event(json!({"event": "message_data", "id": id, field: value}))?;
                }
                return self.write_event(json!({"event": "message_end", "id": id}));
            }
            let text = std::mem::take(&mut self.text);
            let (field, value) = JsonPayload::whole(&text);
            return self.write_event(json!({
                "event": "message",
                "id": id,
                "from": self.label(),
                "length": self.length,
                field: value,
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

    fn key_updates(&self) -> Option<KeyUpdates> {
        if !self.json && !self.verbose {
            return None;
        }
        let (json, verbose, notice) = (self.json, self.verbose, self.notice.clone());
        let conversation = self.conversation;
        Some(Arc::new(move |direction: KeyDirection, epoch: u64| {
            if json {
                json_event(in_conversation(
                    conversation,
                    json!({"event": "key_update", "direction": direction.as_str(), "epoch": epoch}),
                ));
            }
            if verbose {
                notify(&notice, key_update_line(direction, epoch));
            }
        }))
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

/// The `-v` log line for a key update: its direction and the new epoch.
pub fn key_update_line(direction: KeyDirection, epoch: u64) -> String {
    match direction {
        KeyDirection::Sent => format!("key update sent: our key is now at epoch {epoch}"),
        KeyDirection::Received => {
            format!("key update received: the peer's key is now at epoch {epoch}")
        }
    }
}

/// A message's bytes as JSON fields that lose none of them: `text` while
/// they are UTF-8, `base64` (standard alphabet, padded) for a part that is
/// not. A streamed message is cut at character boundaries: a character
/// split between two records is held back until its end arrives, so a
/// message that is UTF-8 as a whole always comes as `text`. Concatenating
/// the decoded parts in order gives the message exactly.
#[derive(Debug, Default)]
pub struct JsonPayload {
    pending: Vec<u8>,
}

impl JsonPayload {
    /// The field for a whole message.
    pub fn whole(bytes: &[u8]) -> (&'static str, String) {
        match std::str::from_utf8(bytes) {
            Ok(text) => ("text", text.to_string()),
            Err(_) => ("base64", base64ct::Base64::encode_string(bytes)),
        }
    }

    /// The field for the next piece of a streamed message, if there is
    /// anything to say yet.
    pub fn push(&mut self, data: &[u8]) -> Option<(&'static str, String)> {
        self.pending.extend_from_slice(data);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // A character cut at the end: wait for the rest of it.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                let bytes = std::mem::take(&mut self.pending);
                return Some(("base64", base64ct::Base64::encode_string(&bytes)));
            }
        };
        if complete == 0 {
            return None;
        }
        let rest = self.pending.split_off(complete);
        let text = String::from_utf8(std::mem::replace(&mut self.pending, rest))
            .expect("checked to be UTF-8");
        Some(("text", text))
    }

    /// What is still held back at the end of the message.
    pub fn finish(&mut self) -> Option<(&'static str, String)> {
        if self.pending.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.pending);
        Some(("base64", base64ct::Base64::encode_string(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::Encoding;

    fn decode((field, value): (&str, String)) -> Vec<u8> {
        match field {
            "text" => value.into_bytes(),
            "base64" => base64ct::Base64::decode_vec(&value).unwrap(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn json_payload_keeps_every_byte() {
        assert_eq!(JsonPayload::whole("héllo".as_bytes()).0, "text");
        assert_eq!(JsonPayload::whole(b"a\xffb").0, "base64");
        let samples: [&[u8]; 4] = [
            "plain text, € and 🎉 split anywhere".as_bytes(),
            b"\xff\xfe binary \x00\x80",
            b"text then a cut character \xe2\x82",
            b"\xe2\x82\xac",
        ];
        for sample in samples {
            for cut in 0..=sample.len() {
                let mut payload = JsonPayload::default();
                let mut out = Vec::new();
                let mut fields = Vec::new();
                for piece in [&sample[..cut], &sample[cut..]] {
                    if let Some(part) = payload.push(piece) {
                        fields.push(part.0);
                        out.extend(decode(part));
                    }
                }
                if let Some(part) = payload.finish() {
                    fields.push(part.0);
                    out.extend(decode(part));
                }
                assert_eq!(out, sample, "cut at {cut}");
                if std::str::from_utf8(sample).is_ok() {
                    assert!(fields.iter().all(|f| *f == "text"), "{fields:?}");
                }
            }
        }
    }
}
