//! The interactive conversation. rustyline reads what the user types, with
//! history kept in memory only; incoming messages are printed above the
//! prompt through rustyline's external printer, so a half-typed line
//! survives; everything that came from the peer is made safe for the
//! terminal first.
//!
//! When the peer leaves while the user is typing, the reader thread wakes
//! rustyline by raising SIGINT (which rustyline turns into "interrupted")
//! until the loop has noticed; SIGINT is ignored by the process meanwhile.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Editor, ExternalPrinter};

use super::output::{Notice, notify};
use super::progress::Progress;
use super::trust_policy::PeerView;
use crate::net::Connected;
use crate::net::conversation::{Conversation, Ending, Handler, Sender, Summary};
use crate::protocol::CloseReason;
use crate::sanitize;

/// What the REPL asks of the program around it.
pub trait Commands {
    /// The lines `/fingerprint` prints.
    fn fingerprint(&self) -> Vec<String>;
    /// Pins the peer's key (`/trust [NAME]`); the line to print.
    fn trust(&self, name: Option<&str>) -> Result<String, String>;
}

const HELP: &str = "\
Type a message and press Enter to send it. Commands:
  /help              this help
  /fingerprint       both keys' fingerprints and the safety number to compare with the peer
  /trust [NAME]      pin the peer's key (as NAME, default its nickname): it becomes verified
  /paste             write a multi-line message; end it with a line holding only a dot
  /quit              leave (Ctrl-D does the same; Ctrl-C clears the line)
A line ending in \\ continues on the next line. Start a message with // to send a leading /.";

/// Whether SIGINT should do its default (end the process). False while a
/// REPL runs: then SIGINT only interrupts rustyline's wait.
fn sigint_default() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(true));
        // If this fails, SIGINT keeps its default, which is only worse for
        // a peer leaving mid-line (the process ends instead of the REPL).
        let _ = signal_hook::flag::register_conditional_default(
            signal_hook::consts::SIGINT,
            Arc::clone(&flag),
        );
        flag
    })
}

/// Runs a conversation on the terminal until it ends; returns how it ended.
pub fn run(
    connected: Connected,
    view: Arc<Mutex<PeerView>>,
    max_message: u64,
    commands: &dyn Commands,
    intro: Vec<String>,
) -> std::io::Result<Summary> {
    let config = Config::builder()
        .auto_add_history(true)
        .history_ignore_space(true)
        .max_history_size(1000)
        .map_err(std::io::Error::other)?
        .build();
    // History lives in this Editor only; it is never saved.
    let mut editor: Editor<(), DefaultHistory> =
        Editor::with_config(config).map_err(std::io::Error::other)?;
    let mut printer = editor
        .create_external_printer()
        .map_err(std::io::Error::other)?;
    let notice: Notice = Arc::new(Mutex::new(Box::new(move |mut line: String| {
        // Outside readline the printer writes straight through, so the line
        // brings its own end.
        line.push('\n');
        let _ = printer.print(line);
    })));
    let running = Arc::new(Mutex::new(true));
    sigint_default().store(false, Ordering::SeqCst);

    for line in intro {
        notify(&notice, line);
    }
    notify(&notice, "Type /help for commands.");
    let handler = ReplHandler {
        view: Arc::clone(&view),
        notice: notice.clone(),
        text: Vec::new(),
        streaming: false,
        pieces: sanitize::Utf8Pieces::default(),
        lines: String::new(),
        running: Arc::clone(&running),
    };
    let conversation = Conversation::over(connected, max_message, handler)?;
    let sender = conversation.sender();
    let result = read_loop(
        &mut editor,
        &sender,
        &conversation,
        &view,
        commands,
        &notice,
    );
    *running.lock().unwrap_or_else(|p| p.into_inner()) = false;
    sigint_default().store(true, Ordering::SeqCst);
    result?;
    let summary = conversation.wait();
    let label = view.lock().unwrap_or_else(|p| p.into_inner()).label();
    println!("{}", farewell(&label, &summary));
    Ok(summary)
}

fn read_loop(
    editor: &mut Editor<(), DefaultHistory>,
    sender: &Sender,
    conversation: &Conversation,
    view: &Arc<Mutex<PeerView>>,
    commands: &dyn Commands,
    notice: &Notice,
) -> std::io::Result<()> {
    while !conversation.is_over() {
        let prompt = prompt(view);
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            // Ctrl-C clears the line; the peer leaving interrupts us too.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                sender.close(CloseReason::Goodbye);
                return Ok(());
            }
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let message = match parse(&line) {
            Input::Nothing => continue,
            Input::Text(text) => gather(editor, text, conversation)?,
            Input::Paste => paste(editor, conversation)?,
            Input::Help => {
                notify(notice, HELP);
                continue;
            }
            Input::Fingerprint => {
                notify(notice, commands.fingerprint().join("\n"));
                continue;
            }
            Input::Trust(name) => {
                match commands.trust(name.as_deref()) {
                    Ok(line) => notify(notice, line),
                    Err(e) => notify(notice, format!("chat: {e}")),
                }
                continue;
            }
            Input::Quit => {
                sender.close(CloseReason::Goodbye);
                return Ok(());
            }
            Input::Unknown(command) => {
                notify(
                    notice,
                    format!(
                        "Unknown command /{}. Type /help; start with // to send a line beginning with /.",
                        sanitize::one_line(&command)
                    ),
                );
                continue;
            }
        };
        let Some(message) = message else { continue };
        let mut progress = Progress::new(message.len() as u64);
        let sent = sender.send_from(&mut message.as_bytes(), message.len() as u64, &mut |n| {
            progress.update(n)
        });
        progress.finish();
        if let Err(e) = sent {
            notify(notice, format!("chat: {e}"));
        }
    }
    Ok(())
}

fn prompt(view: &Arc<Mutex<PeerView>>) -> String {
    let view = view.lock().unwrap_or_else(|p| p.into_inner());
    if view.is_verified() {
        format!("{} \u{2713}> ", view.label())
    } else {
        format!("{} (unverified)> ", view.label())
    }
}

/// What a line typed at the prompt means.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    Nothing,
    Text(String),
    Paste,
    Help,
    Fingerprint,
    Trust(Option<String>),
    Quit,
    Unknown(String),
}

fn parse(line: &str) -> Input {
    if line.trim().is_empty() {
        return Input::Nothing;
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Text(line.to_string());
    };
    if command.starts_with('/') {
        return Input::Text(command.to_string());
    }
    let (word, argument) = match command.trim_end().split_once(char::is_whitespace) {
        Some((word, argument)) => (
            word,
            Some(argument.trim().to_string()).filter(|a| !a.is_empty()),
        ),
        None => (command.trim_end(), None),
    };
    match word {
        "help" | "?" => Input::Help,
        "fingerprint" => Input::Fingerprint,
        "trust" => Input::Trust(argument),
        "paste" => Input::Paste,
        "quit" | "exit" => Input::Quit,
        other => Input::Unknown(other.to_string()),
    }
}

/// Follows a trailing backslash onto further lines.
fn gather(
    editor: &mut Editor<(), DefaultHistory>,
    first: String,
    conversation: &Conversation,
) -> std::io::Result<Option<String>> {
    let mut text = first;
    while text.ends_with('\\') && !text.ends_with("\\\\") {
        text.pop();
        text.push('\n');
        match editor.readline("... ") {
            Ok(more) => text.push_str(&more),
            Err(ReadlineError::Interrupted) if !conversation.is_over() => return Ok(None),
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    Ok(Some(text))
}

/// `/paste`: lines until one holding only a dot.
fn paste(
    editor: &mut Editor<(), DefaultHistory>,
    conversation: &Conversation,
) -> std::io::Result<Option<String>> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        match editor.readline("paste> ") {
            Ok(line) if line == "." => break,
            Ok(line) => lines.push(line),
            Err(ReadlineError::Interrupted) if !conversation.is_over() => return Ok(None),
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    Ok((!lines.is_empty()).then(|| lines.join("\n")))
}

/// Shows incoming messages and receipts above the prompt.
struct ReplHandler {
    view: Arc<Mutex<PeerView>>,
    notice: Notice,
    text: Vec<u8>,
    /// A message too long to hold is shown line by line as it arrives.
    streaming: bool,
    pieces: sanitize::Utf8Pieces,
    lines: String,
    running: Arc<Mutex<bool>>,
}

/// Messages longer than this are shown as they arrive, not held until complete.
const STREAM_AFTER: u64 = 1 << 20;

impl ReplHandler {
    fn marked_label(&self) -> String {
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .marked_label()
    }

    /// Prints the complete lines received so far of a streamed message.
    fn print_lines(&mut self, all: bool) {
        let cut = if all {
            self.lines.len()
        } else {
            match self.lines.rfind('\n') {
                Some(i) => i + 1,
                // A very long line is shown in parts rather than held.
                None if self.lines.len() > 64 * 1024 => self.lines.len(),
                None => return,
            }
        };
        let chunk: String = self.lines.drain(..cut).collect();
        let chunk = chunk.strip_suffix('\n').unwrap_or(&chunk);
        if !chunk.is_empty() || all {
            notify(&self.notice, sanitize::for_display(chunk.as_bytes()));
        }
    }
}

impl Handler for ReplHandler {
    fn message_start(&mut self, id: u64, length: u64) -> std::io::Result<()> {
        self.text.clear();
        self.streaming = length > STREAM_AFTER;
        if self.streaming {
            let label = self.marked_label();
            notify(
                &self.notice,
                format!("[{label}] message #{id}, {length} bytes, shown as it arrives:"),
            );
        }
        Ok(())
    }

    fn message_data(&mut self, _id: u64, data: &[u8]) -> std::io::Result<()> {
        if self.streaming {
            let text = self.pieces.push(data);
            self.lines.push_str(&text);
            self.print_lines(false);
        } else {
            self.text.extend_from_slice(data);
        }
        Ok(())
    }

    fn message_end(&mut self, id: u64) -> std::io::Result<()> {
        let label = self.marked_label();
        if self.streaming {
            let rest = self.pieces.finish();
            self.lines.push_str(&rest);
            self.print_lines(true);
            notify(&self.notice, format!("[{label}] end of message #{id}"));
            return Ok(());
        }
        let mut text = std::mem::take(&mut self.text);
        // The line break that ends a typed or piped message is not a line.
        if text.last() == Some(&b'\n') {
            text.pop();
        }
        let shown = sanitize::for_display(&text);
        notify(&self.notice, format_message(&label, &shown));
        Ok(())
    }

    fn delivered(&mut self, ids: RangeInclusive<u64>) {
        let which = if ids.start() == ids.end() {
            format!("#{}", ids.start())
        } else {
            format!("#{} to #{}", ids.start(), ids.end())
        };
        notify(&self.notice, format!("  \u{2713} delivered ({which})"));
    }

    fn peer_done(&mut self) {
        let label = self.view.lock().unwrap_or_else(|p| p.into_inner()).label();
        notify(
            &self.notice,
            format!("({label} will send no more messages)"),
        );
    }

    fn ended(&mut self, _summary: &Summary) {
        // Wake the prompt until the loop notices the end. The first wake-up
        // waits a moment, so that rustyline prints the lines still queued
        // for it (the last messages) before it gives up waiting for input.
        let running = Arc::clone(&self.running);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            loop {
                {
                    let running = running.lock().unwrap_or_else(|p| p.into_inner());
                    if !*running {
                        return;
                    }
                    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGINT);
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
    }
}

/// What the user is told when the conversation is over.
fn farewell(label: &str, summary: &Summary) -> String {
    let mut lines = vec![match &summary.ending {
        Ending::Finished => format!("The conversation with {label} is over."),
        Ending::ClosedByUs => format!("You left the conversation with {label}."),
        Ending::ClosedByPeer(CloseReason::Goodbye) => format!("{label} left the conversation."),
        Ending::ClosedByPeer(reason) => format!("{label} ended the conversation: {reason}."),
        Ending::Failed(e) => format!("The connection to {label} failed: {e}."),
    }];
    if let Some(id) = summary.cut_off {
        lines.push(format!(
            "Message #{id} from {label} was cut off before its end; what was shown of it is incomplete."
        ));
    }
    if !summary.unacknowledged.is_empty() {
        let ids: Vec<String> = summary
            .unacknowledged
            .iter()
            .map(|id| format!("#{id}"))
            .collect();
        lines.push(format!("Not delivered (no receipt): {}.", ids.join(", ")));
    }
    lines.join("\n")
}

/// `[label] first line`, with later lines indented under the first.
fn format_message(label: &str, text: &str) -> String {
    let prefix = format!("[{label}] ");
    let indent = " ".repeat(prefix.chars().count());
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        } else {
            out.push_str(&prefix);
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_text() {
        assert_eq!(parse("hello"), Input::Text("hello".into()));
        assert_eq!(parse("  "), Input::Nothing);
        assert_eq!(parse("/quit"), Input::Quit);
        assert_eq!(parse("/trust"), Input::Trust(None));
        assert_eq!(parse("/trust  bob "), Input::Trust(Some("bob".into())));
        assert_eq!(parse("//etc/passwd"), Input::Text("/etc/passwd".into()));
        assert_eq!(parse("/frobnicate"), Input::Unknown("frobnicate".into()));
    }

    #[test]
    fn multi_line_messages_are_indented() {
        assert_eq!(
            format_message("bob \u{2713}", "a\nb"),
            "[bob \u{2713}] a\n        b"
        );
    }
}
