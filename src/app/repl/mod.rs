//! The interactive REPL: one for the life of `chat serve` or `chat connect`
//! on a terminal, with conversations coming and going.
//!
//! - [`keys`]: the keyboard's bytes as keys, none lost;
//! - [`line`]: the line being typed, its history and its one-row drawing;
//! - [`terminal`]: raw mode, reading keys, printing above the prompt;
//! - [`screen`]: peer text and notices as rows (labels, continuation
//!   marker, wrapping to the terminal's width);
//! - [`conversations`]: the open conversations and where lines go;
//! - [`incoming`]: a conversation's events on the screen;
//! - [`throttle`]: the listener's log lines, rate-limited;
//! - [`transfers`]: files on their way, as status rows above the prompt.
//!
//! This file holds the loop and the commands. One thread reads the
//! keyboard and runs commands; conversations' reader threads print through
//! the same lock ([`Shared`]), so messages appear above the prompt and the
//! half-typed line survives.

mod conversations;
mod files;
mod incoming;
mod keys;
mod line;
mod screen;
mod terminal;
mod throttle;
mod transfers;

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use self::conversations::{Addressee, Conversations, Entry, Id};
use self::incoming::Incoming;
use self::keys::Key;
use self::line::Edit;
use self::terminal::{Event, Keyboard, RawMode, Screen, Waker};
use self::throttle::Throttle;
use self::transfers::{Direction, Transfers};
use super::files::receive::{
    Ask, Downloads, FileSettings, TransferEvent, Watch, WithFiles, for_conversation,
};
use super::files::{offer_names, offer_summary};
use super::receive::{self, Spool};
use super::routing::{self, Routed};
use super::trust_policy::PeerView;
use crate::net::Connected;
use crate::net::conversation::{Conversation, Ending, Sender, Summary};
use crate::net::server;
use crate::net::slots::{Activity, Slot, Tracked};
use crate::protocol::CloseReason;
use crate::sanitize;

/// What the REPL asks of the program around it, for the peer `view`.
pub trait Commands: Send + Sync {
    /// The lines `/fingerprint` prints.
    fn fingerprint(&self, view: &Arc<Mutex<PeerView>>) -> Vec<String>;
    /// Pins the peer's key (`/trust [NAME]`); the line to print.
    fn trust(&self, view: &Arc<Mutex<PeerView>>, name: Option<&str>) -> Result<String, String>;
    /// A new one-time invite (`/invite`); the lines to print.
    fn invite(&self) -> Result<String, String> {
        Err("/invite needs chat serve --relay".into())
    }
}

/// Limits chosen on the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest message accepted from a peer.
    pub max_message: u64,
    /// Largest message shown in full; larger ones are kept for `/save`.
    pub screen_limit: u64,
    /// When our session keys are updated (`--rekey-limit`).
    pub rekey_limit: crate::session::RekeyLimit,
    /// Show each key update (`-v`).
    pub verbose: bool,
    /// Where received files are saved (`--save-dir`).
    pub save_dir: Option<std::path::PathBuf>,
    /// Offers accepted without asking (`--accept-files`).
    pub accept_files: Option<crate::cli::AcceptFiles>,
}

/// When [`Repl::run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Once no conversation is open (`chat connect`).
    UntilLastEnds,
    /// Only when the user leaves or [`Repl::finish`] is called (`chat serve`).
    Persistent,
}

/// Why [`Repl::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The last conversation ended ([`Mode::UntilLastEnds`]).
    Ended,
    /// The user left (`/quit`, Ctrl-D, a signal); this many conversations
    /// were open and have been closed.
    Quit { closed: usize },
    /// [`Repl::finish`] was called.
    Finished,
}

const HELP: &str = "\
Type a message and press Enter to send it. Commands:
  /help              this help
  /who               the open conversations, verified or not, and where typed lines go
  /to NAME           send typed lines to NAME (or /to #N, the number /who shows)
  @NAME text         send this one line to NAME (@@text sends @text to the current peer)
  /fingerprint       both keys' fingerprints and the safety number to compare with the peer
  /trust [NAME]      pin the peer's key (as NAME, default its nickname): it becomes verified
  /paste             write a multi-line message; end it with a line holding only a dot
  /save [PATH]       write the last message too large for the screen to a new file
                     (without PATH: into the save folder, where received files go)
  /invite            a one-time invite (chat serve --relay): whoever uses it is pinned as verified
  /send PATH...      offer files and folders to the peer; quote names with spaces
                     (\"my file.pdf\", 'my file.pdf' or my\\ file.pdf)
  /accept N          accept the peer's offer N (files go to the save folder)
  /reject N          reject the peer's offer N
  /cancel [N]        cancel offer N, or every transfer with this peer (Ctrl-C does the same)
  /fingerprint, /trust and /leave act on the peer typed lines go to (the prompt shows it).
  /leave             end this conversation (chat serve keeps waiting for the next peer)
  /quit              leave chat (Ctrl-D on an empty line does the same; Ctrl-C clears the line)
A line ending in \\ continues on the next line; a paste of several lines is one message.
Start a message with // to send a leading /. Rows from the peer start with its label,
such as [bob \u{2713}] or [bob ?] (not verified), or with \u{2502}; chat's own lines never do.";

/// A message of several lines being put together.
struct Draft {
    addressee: Addressee,
    kind: DraftKind,
    lines: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DraftKind {
    /// Lines ending in `\`.
    Continued,
    /// `/paste`, until a line holding only `.`.
    Paste,
}

/// The last message that was too large for the screen, for `/save`.
pub struct Kept {
    id: u64,
    from: String,
    spool: Spool,
}

/// Everything behind the REPL's lock.
struct Ui {
    screen: Screen,
    conversations: Conversations,
    /// Whom the line being typed is for (set when typing begins).
    addressee: Option<Addressee>,
    draft: Option<Draft>,
    kept: Option<Arc<Kept>>,
    /// Each conversation's files.
    downloads: std::collections::HashMap<Id, Arc<Mutex<Downloads>>>,
}

impl Ui {
    /// The prompt for what is being typed now.
    fn prompt(&self) -> String {
        if let Some(draft) = &self.draft {
            return match draft.kind {
                DraftKind::Continued => "... ".into(),
                DraftKind::Paste => "paste> ".into(),
            };
        }
        let addressee = self
            .addressee
            .clone()
            .unwrap_or_else(|| self.conversations.addressee());
        match addressee {
            Addressee::NoOne => "(no one connected)> ".into(),
            Addressee::Unchosen => "(to whom? /to NAME)> ".into(),
            Addressee::Conversation(id) => match self.conversations.get(id) {
                Some(entry) => {
                    // A copy: `numbered` reads every entry's view.
                    let view = entry.view.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    self.numbered(id, &view, screen::prompt(&view))
                }
                None => "(ended)> ".into(),
            },
            Addressee::Ended(name) => format!("{name} (ended)> "),
        }
    }

    /// `shown` (a label or prompt that starts with the peer's name), with
    /// the conversation's number after the name if another open
    /// conversation shows the same name.
    fn numbered(&self, id: Id, view: &PeerView, shown: String) -> String {
        if !self.conversations.shares_name(id) {
            return shown;
        }
        let name = screen::name(view);
        match shown.strip_prefix(&name) {
            Some(rest) => format!("{name} #{id}{rest}"),
            None => shown,
        }
    }

    fn refresh_prompt(&mut self) -> io::Result<()> {
        let prompt = self.prompt();
        self.screen.set_prompt(prompt)
    }

    fn notice(&mut self, text: &str) -> io::Result<()> {
        let rows = screen::notice_rows(text, self.screen.width());
        self.screen.print(&rows)
    }
}

/// The state the REPL's threads share.
pub struct Shared {
    ui: Mutex<Ui>,
    waker: Waker,
    /// [`Repl::finish`] was called.
    finish: AtomicBool,
    /// The user is leaving: open no more conversations.
    quitting: AtomicBool,
    throttle: Mutex<Throttle>,
    settings: Settings,
    commands: Box<dyn Commands>,
    /// Files on their way; locked after `ui` when both are.
    transfers: Mutex<Transfers>,
    /// Standard output is a terminal: transfers have status rows.
    status: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ui> {
        self.ui.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints one of chat's own notices above the prompt.
    pub fn notice(&self, text: impl AsRef<str>) -> io::Result<()> {
        self.lock().notice(text.as_ref())
    }

    /// Prints the text of conversation `id`'s peer (`view`) under its
    /// label (numbered if another open conversation shows the same name).
    pub fn peer_text(&self, id: Id, view: &PeerView, text: &str) -> io::Result<()> {
        let mut ui = self.lock();
        let label = ui.numbered(id, view, screen::label(view));
        let rows = screen::peer_rows(&label, text, ui.screen.width());
        ui.screen.print(&rows)
    }

    fn transfers(&self) -> MutexGuard<'_, Transfers> {
        self.transfers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Transfer `key` (`total` bytes of the files `names` with `peer`,
    /// both safe for the terminal) may begin: its row appears once it has
    /// run for a while.
    fn transfer_added(&self, key: transfers::Key, names: String, peer: String, total: u64) {
        if self.status {
            self.transfers().add(key, names, peer, total);
        }
    }

    /// `done` bytes of transfer `key` have gone: its row is drawn again if
    /// it is time.
    fn transfer_progress(&self, key: transfers::Key, done: u64) {
        if self.status && self.transfers().update(key, done, Instant::now()) {
            self.draw_status();
        }
    }

    /// Transfer `key` is over: its row goes (its outcome is a notice).
    fn transfer_over(&self, key: transfers::Key) {
        if self.status && self.transfers().remove(key) {
            self.draw_status();
        }
    }

    /// What conversation `id`'s handler tells about the peer's offers
    /// arriving and ours ending.
    fn transfer_event(&self, id: Id, view: &Mutex<PeerView>, event: TransferEvent<'_>) {
        match event {
            TransferEvent::Arriving {
                id: offer,
                done,
                manifest,
            } => {
                let key = (id, Direction::Receiving, offer);
                if let Some(manifest) = manifest {
                    let from = screen::name(&view.lock().unwrap_or_else(|p| p.into_inner()));
                    self.transfer_added(key, offer_names(manifest), from, manifest.total());
                }
                self.transfer_progress(key, done);
            }
            TransferEvent::IncomingOver(offer) => {
                self.transfer_over((id, Direction::Receiving, offer))
            }
            TransferEvent::OutgoingOver(offer) => {
                self.transfer_over((id, Direction::Sending, offer))
            }
        }
    }

    /// Draws the status rows as the transfers are now.
    fn draw_status(&self) {
        self.draw_status_on(&mut self.lock());
    }

    /// The same, with the screen's lock already held.
    fn draw_status_on(&self, ui: &mut Ui) {
        let rows = self.transfers().rows(Instant::now(), ui.screen.width());
        let _ = ui.screen.set_status(rows);
    }

    /// Keeps a message that was too large for the screen, for `/save`.
    fn keep(&self, kept: Kept) {
        self.lock().kept = Some(Arc::new(kept));
    }

    /// A conversation's reader has ended: it leaves the registry, and the
    /// user is told how it ended.
    fn conversation_ended(&self, id: Id, summary: &Summary) {
        {
            let mut ui = self.lock();
            ui.downloads.remove(&id);
            if self.transfers().remove_conversation(id) {
                self.draw_status_on(&mut ui);
            }
            if let Some(entry) = ui.conversations.remove(id) {
                let name = entry.name();
                let ended = Addressee::Ended(name.clone());
                if ui.addressee == Some(Addressee::Conversation(id)) {
                    ui.addressee = Some(ended.clone());
                }
                if let Some(draft) = &mut ui.draft
                    && draft.addressee == Addressee::Conversation(id)
                {
                    draft.addressee = ended;
                }
                let _ = ui.notice(&farewell(&name, summary, entry.evicted));
                let _ = ui.refresh_prompt();
            }
        }
        self.waker.wake();
    }
}

/// The REPL: a handle that any thread may use.
#[derive(Clone)]
pub struct Repl {
    shared: Arc<Shared>,
}

/// The terminal as the REPL holds it: restored when dropped.
pub struct Terminal {
    keyboard: Keyboard,
    _raw: RawMode,
}

impl Repl {
    /// Takes over the terminal (raw mode). Nothing is drawn until
    /// [`Repl::run`]; notices before that print as plain lines.
    pub fn start(commands: Box<dyn Commands>, settings: Settings) -> io::Result<(Self, Terminal)> {
        let raw = RawMode::enter()?;
        let (keyboard, waker) = Keyboard::new()?;
        let ui = Ui {
            screen: Screen::new(String::new()),
            conversations: Conversations::default(),
            addressee: None,
            draft: None,
            kept: None,
            downloads: std::collections::HashMap::new(),
        };
        let shared = Arc::new(Shared {
            ui: Mutex::new(ui),
            waker,
            finish: AtomicBool::new(false),
            quitting: AtomicBool::new(false),
            throttle: Mutex::new(Throttle::new(Instant::now())),
            settings,
            commands,
            transfers: Mutex::new(Transfers::default()),
            status: io::stdout().is_terminal(),
        });
        Ok((
            Self { shared },
            Terminal {
                keyboard,
                _raw: raw,
            },
        ))
    }

    /// Prints one of chat's own notices above the prompt.
    pub fn notice(&self, text: impl AsRef<str>) {
        let _ = self.shared.notice(text);
    }

    /// The listener's log, printed above the prompt and rate-limited.
    pub fn listener_log(&self) -> server::Log {
        let shared = Arc::clone(&self.shared);
        Arc::new(Mutex::new(Box::new(move |line: String| {
            let (lines, first_held) = {
                let mut throttle = shared.throttle.lock().unwrap_or_else(|p| p.into_inner());
                let before = throttle.next_tick();
                let lines = throttle.line(Instant::now(), sanitize::one_line(&line));
                (lines, before.is_none() && throttle.next_tick().is_some())
            };
            for line in lines {
                let _ = shared.notice(line);
            }
            if first_held {
                // The loop must wake in time to report what was held back.
                shared.waker.wake();
            }
        })))
    }

    /// Opens a conversation on the REPL: says who the peer is (`intro`),
    /// registers it, and starts its threads. The caller waits for its end
    /// with [`Conversation::wait`].
    pub fn open(
        &self,
        connected: Connected,
        view: Arc<Mutex<PeerView>>,
        intro: Vec<String>,
    ) -> io::Result<Conversation> {
        self.open_held(connected, view, intro, None)
    }

    /// As [`Repl::open`], for a conversation that holds `slot` in `chat
    /// serve`'s table: it is numbered as its slot, what it sends and receives
    /// counts as activity, and `/trust` marks it verified. Its arrival is
    /// announced, and it becomes the target only if there is none.
    pub fn open_held(
        &self,
        connected: Connected,
        view: Arc<Mutex<PeerView>>,
        intro: Vec<String>,
        slot: Option<Arc<Slot>>,
    ) -> io::Result<Conversation> {
        if self.shared.quitting.load(Ordering::SeqCst) {
            connected.close(CloseReason::Goodbye);
            return Err(io::Error::other("chat is leaving"));
        }
        let activity = slot.as_ref().map(|slot| slot.activity());
        // The intro first; the arrival notice and the prompt once the
        // conversation can take lines (a line typed after them is sent).
        let (id, arrival) = {
            let mut ui = self.shared.lock();
            for line in &intro {
                ui.notice(line)?;
            }
            let had_target = ui.conversations.target();
            let others = ui.conversations.open();
            let id = ui.conversations.add(Arc::clone(&view), slot);
            let name = ui
                .conversations
                .get(id)
                .map(Entry::name)
                .unwrap_or_default();
            let open = others.len() + 1;
            let arrival = if others.is_empty() {
                "Type /help for commands.".to_string()
            } else if let Some(target) = had_target.and_then(|t| ui.conversations.get(t)) {
                let target = target.name();
                format!(
                    "{name} (#{id}) joined; typed lines still go to {target}. Type /to {name} \
                     (or /to #{id}) to talk to {name}, or @{name} text for one line; /who lists \
                     the {open} open conversations."
                )
            } else {
                format!(
                    "{name} (#{id}) joined; typed lines now go to {name}, as no one was chosen \
                     (/to NAME chooses; /who lists the {open} open conversations)."
                )
            };
            (id, arrival)
        };
        let handler = Incoming::new(id, Arc::clone(&view), Arc::clone(&self.shared));
        let (handler, downloads) = self.with_files(id, handler, &view);
        let mut connected = connected;
        connected
            .established
            .session
            .send()
            .set_rekey_limit(self.shared.settings.rekey_limit);
        let max_message = self.shared.settings.max_message;
        // The screen's lock is held from before the reader starts until the
        // conversation can take lines: what the peer sends first (an offer,
        // say) is shown only once `/accept` and typed lines can reach it.
        let mut ui = self.shared.lock();
        let started = match activity {
            Some(activity) => {
                Conversation::over(connected, max_message, Tracked::new(handler, activity))
            }
            None => Conversation::over(connected, max_message, handler),
        };
        match started {
            Ok(conversation) => {
                ui.downloads.insert(id, downloads);
                if ui.conversations.started(id, conversation.sender()) {
                    ui.notice(&arrival)?;
                }
                ui.refresh_prompt()?;
                Ok(conversation)
            }
            Err(e) => {
                ui.conversations.remove(id);
                ui.refresh_prompt()?;
                Err(e)
            }
        }
    }

    /// Conversation `id` had to give way to a newcomer (`reason`): its end
    /// is told as such.
    pub fn evicted(&self, id: Id, reason: CloseReason) {
        self.shared.lock().conversations.evicted(id, reason);
    }

    /// The same peer (the same key) connected again: conversation `new`
    /// takes the place of `old`, as the target and for the line being typed.
    pub fn superseded(&self, old: Id, new: Id) {
        let mut ui = self.shared.lock();
        if ui.conversations.target() == Some(old) {
            ui.conversations.choose(new);
        }
        if ui.addressee == Some(Addressee::Conversation(old)) {
            ui.addressee = Some(Addressee::Conversation(new));
        }
        if let Some(draft) = &mut ui.draft
            && draft.addressee == Addressee::Conversation(old)
        {
            draft.addressee = Addressee::Conversation(new);
        }
        let _ = ui.refresh_prompt();
    }

    /// Conversation `id`'s handler, with files: offers are shown with how
    /// to answer them, notices go above the prompt, and files on their way
    /// have status rows.
    fn with_files(
        &self,
        id: Id,
        handler: Incoming,
        view: &Arc<Mutex<PeerView>>,
    ) -> (WithFiles<Incoming>, Arc<Mutex<Downloads>>) {
        let shared = Arc::clone(&self.shared);
        let notice: crate::app::output::Notice =
            Arc::new(Mutex::new(Box::new(move |line: String| {
                let _ = shared.notice(line);
            })));
        let shared = Arc::clone(&self.shared);
        let asker = Arc::clone(view);
        let ask: Ask = Arc::new(move |offer, manifest| {
            let who = screen::name(&asker.lock().unwrap_or_else(|p| p.into_inner()));
            let _ = shared.notice(format!(
                "{who} offers {}: /accept {offer} or /reject {offer}",
                offer_summary(manifest)
            ));
        });
        let settings = FileSettings {
            save_dir: self.shared.settings.save_dir.as_deref(),
            accept: self.shared.settings.accept_files,
            json: false,
        };
        let (handler, downloads) = for_conversation(handler, settings, view, notice, Some(ask));
        let shared = Arc::downgrade(&self.shared);
        let view = Arc::clone(view);
        let watch: Watch = Arc::new(move |event| {
            if let Some(shared) = shared.upgrade() {
                shared.transfer_event(id, &view, event);
            }
        });
        (handler.watched(watch), downloads)
    }

    /// Whether the user is leaving.
    pub fn is_quitting(&self) -> bool {
        self.shared.quitting.load(Ordering::SeqCst)
    }

    /// Makes [`Repl::run`] return [`Exit::Finished`].
    pub fn finish(&self) {
        self.shared.finish.store(true, Ordering::SeqCst);
        self.shared.waker.wake();
    }

    /// Reads the keyboard and runs what is typed until `mode` says to stop.
    pub fn run(&self, terminal: &mut Terminal, mode: Mode) -> io::Result<Exit> {
        {
            let mut ui = self.shared.lock();
            ui.refresh_prompt()?;
            ui.screen.set_active(true)?;
        }
        let mut quit: Option<usize> = None;
        let result = loop {
            if self.shared.finish.load(Ordering::SeqCst) {
                break Ok(Exit::Finished);
            }
            if self.shared.lock().conversations.is_empty() {
                if let Some(closed) = quit {
                    break Ok(Exit::Quit { closed });
                }
                if mode == Mode::UntilLastEnds {
                    break Ok(Exit::Ended);
                }
            }
            let deadline = self.throttle_tick();
            let event = match terminal.keyboard.next(deadline) {
                Ok(event) => event,
                Err(e) => break Err(e),
            };
            let outcome = match event {
                Event::Key(key) if quit.is_none() => self.key(key),
                Event::Key(_) | Event::Woken | Event::Timeout => Ok(None),
                Event::Resized => self.shared.lock().screen.redraw().map(|()| None),
                Event::Stop | Event::Closed => Ok(Some(Leave)),
            };
            match outcome {
                Ok(Some(Leave)) if quit.is_none() => quit = Some(self.quit()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = self.shared.lock().screen.set_active(false);
        result
    }

    /// Prints what the throttle held back, if it is time; returns when to
    /// look again.
    fn throttle_tick(&self) -> Option<Instant> {
        let (lines, next) = {
            let mut throttle = self
                .shared
                .throttle
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (throttle.tick(Instant::now()), throttle.next_tick())
        };
        for line in lines {
            self.notice(line);
        }
        next
    }

    /// Closes every open conversation; returns how many there were.
    fn quit(&self) -> usize {
        self.shared.quitting.store(true, Ordering::SeqCst);
        let ui = self.shared.lock();
        let mut closed = 0;
        for entry in ui.conversations.iter() {
            if let Some(sender) = &entry.sender {
                sender.close(CloseReason::Goodbye);
            }
            closed += 1;
        }
        closed
    }

    /// Handles one key.
    fn key(&self, key: Key) -> io::Result<Option<Leave>> {
        let mut ui = self.shared.lock();
        let was_empty = ui.screen.line.is_empty();
        match ui.screen.line.apply(key) {
            Edit::Unchanged => Ok(None),
            Edit::Changed => {
                let empty = ui.screen.line.is_empty();
                if ui.draft.is_none() {
                    if was_empty && !empty && ui.addressee.is_none() {
                        ui.addressee = Some(ui.conversations.addressee());
                    } else if empty {
                        ui.addressee = None;
                    }
                }
                ui.refresh_prompt()?;
                ui.screen.redraw()?;
                Ok(None)
            }
            Edit::Submit(text) => {
                let rows = screen::echo_rows(ui.screen.prompt(), &text, ui.screen.width());
                let addressee = match &ui.draft {
                    Some(draft) => draft.addressee.clone(),
                    None => ui
                        .addressee
                        .take()
                        .unwrap_or_else(|| ui.conversations.addressee()),
                };
                ui.screen.print(&rows)?;
                drop(ui);
                let leave = self.line(text, addressee)?;
                self.shared.lock().refresh_prompt()?;
                Ok(leave)
            }
            Edit::Quit => Ok(Some(Leave)),
            Edit::Interrupted(had_text) => {
                if ui.draft.take().is_some() {
                    ui.notice("(message discarded)")?;
                } else if !had_text && self.cancel_all(&mut ui) > 0 {
                    ui.notice("Cancelled the transfers in progress.")?;
                } else if !had_text {
                    ui.notice("Ctrl-C clears the line; type /quit or press Ctrl-D to leave.")?;
                }
                ui.addressee = None;
                ui.refresh_prompt()?;
                ui.screen.redraw()?;
                Ok(None)
            }
        }
    }

    /// Runs a line the user entered, meant for `addressee`.
    fn line(&self, text: String, addressee: Addressee) -> io::Result<Option<Leave>> {
        let draft = self.shared.lock().draft.take();
        if let Some(mut draft) = draft {
            match draft.kind {
                DraftKind::Paste if text == "." => {
                    if !draft.lines.is_empty() {
                        self.send(draft.lines.join("\n"), &draft.addressee);
                    }
                }
                DraftKind::Continued if !continues(&text) => {
                    draft.lines.push(text);
                    self.send(draft.lines.join("\n"), &draft.addressee);
                }
                DraftKind::Continued => {
                    draft.lines.push(text[..text.len() - 1].to_string());
                    self.shared.lock().draft = Some(draft);
                }
                DraftKind::Paste => {
                    draft.lines.push(text);
                    self.shared.lock().draft = Some(draft);
                }
            }
            return Ok(None);
        }
        let (text, addressee) = match routing::split(&text) {
            Routed::Plain(plain) if plain.len() != text.len() => {
                // `@@text`: the text `@text`, to the current target.
                return self.text(plain.to_string(), addressee);
            }
            Routed::Plain(_) => (text, addressee),
            Routed::To { who, text: line } => {
                let Some(id) = self.find(who) else {
                    return Ok(None);
                };
                if line.trim().is_empty() {
                    self.notice(format!(
                        "not sent: nothing after @{who}; /to {who} sends every typed line there"
                    ));
                    return Ok(None);
                }
                return self.text(line.to_string(), Addressee::Conversation(id));
            }
        };
        match parse(&text) {
            Input::Nothing => {}
            Input::Who => self.who(),
            Input::To(None) => {
                let ui = self.shared.lock();
                let line = match ui
                    .conversations
                    .target()
                    .and_then(|t| ui.conversations.get(t))
                {
                    Some(entry) => format!("Typed lines go to {} (#{}).", entry.name(), entry.id),
                    None if ui.conversations.is_empty() => "No one is connected.".into(),
                    None => format!(
                        "Typed lines go to no one: type /to NAME. Open: {}.",
                        routing::describe_open(&ui.conversations.open())
                    ),
                };
                drop(ui);
                self.notice(line);
            }
            Input::To(Some(who)) => {
                if let Some(id) = self.find(&who) {
                    let mut ui = self.shared.lock();
                    if ui.conversations.choose(id) {
                        let name = ui
                            .conversations
                            .get(id)
                            .map(Entry::name)
                            .unwrap_or_default();
                        ui.notice(&format!("Typed lines now go to {name} (#{id})."))?;
                    }
                }
            }
            Input::Text(text) if continues(&text) => {
                self.shared.lock().draft = Some(Draft {
                    addressee,
                    kind: DraftKind::Continued,
                    lines: vec![text[..text.len() - 1].to_string()],
                });
            }
            Input::Text(text) => self.send(text, &addressee),
            Input::Paste => {
                self.shared.lock().draft = Some(Draft {
                    addressee,
                    kind: DraftKind::Paste,
                    lines: Vec::new(),
                });
            }
            Input::Help => self.notice(HELP),
            Input::Fingerprint => {
                if let Some(view) = self.view_of(&addressee) {
                    self.notice(self.shared.commands.fingerprint(&view).join("\n"));
                }
            }
            Input::Trust(name) => {
                if let Some(view) = self.view_of(&addressee) {
                    match self.shared.commands.trust(&view, name.as_deref()) {
                        Ok(line) => {
                            self.verified(&addressee);
                            self.notice(line);
                        }
                        Err(e) => self.notice(format!("chat: {e}")),
                    }
                }
            }
            Input::Save(path) => self.save(path.as_deref()),
            Input::Invite => match self.shared.commands.invite() {
                Ok(lines) => self.notice(lines),
                Err(e) => self.notice(format!("chat: {e}")),
            },
            Input::Send(Ok(paths)) => self.send_files(&paths, &addressee),
            Input::Send(Err(e)) => self.notice(format!("not sent: {e}")),
            Input::Accept(offer) => self.answer(offer.as_deref(), &addressee, true),
            Input::Reject(offer) => self.answer(offer.as_deref(), &addressee, false),
            Input::Cancel(offer) => self.cancel(offer.as_deref(), &addressee),
            Input::Leave => {
                if let Some((sender, _)) = self.sender_of(&addressee) {
                    sender.close(CloseReason::Goodbye);
                }
            }
            Input::Quit => return Ok(Some(Leave)),
            Input::Unknown(command) => self.notice(format!(
                "Unknown command /{}. Type /help; start with // to send a line beginning with /.",
                sanitize::one_line(&command)
            )),
        }
        Ok(None)
    }

    /// A line of text for `addressee` (one that ends in `\` begins a
    /// message of several lines).
    fn text(&self, text: String, addressee: Addressee) -> io::Result<Option<Leave>> {
        if continues(&text) {
            self.shared.lock().draft = Some(Draft {
                addressee,
                kind: DraftKind::Continued,
                lines: vec![text[..text.len() - 1].to_string()],
            });
        } else if !text.trim().is_empty() {
            self.send(text, &addressee);
        }
        Ok(None)
    }

    /// The open conversation `who` names, or `None` after telling the user why not.
    fn find(&self, who: &str) -> Option<Id> {
        let mut ui = self.shared.lock();
        let open = ui.conversations.open();
        match routing::find(who, &open) {
            Ok(id) => Some(id),
            Err(why) => {
                let _ = ui.notice(&format!("not sent: {}", why.explain(who, &open)));
                None
            }
        }
    }

    /// `/who`.
    fn who(&self) {
        let mut ui = self.shared.lock();
        if ui.conversations.is_empty() {
            let _ = ui.notice("No one is connected.");
            return;
        }
        let target = ui.conversations.target();
        let lines = match ui.conversations.iter().count() {
            1 => "1 open conversation:".to_string(),
            n => format!("{n} open conversations:"),
        };
        let mut lines = vec![lines];
        for entry in ui.conversations.iter() {
            let view = entry.view.lock().unwrap_or_else(|p| p.into_inner());
            lines.push(format!(
                "  #{} [{}] {}{}{}",
                entry.id,
                screen::label(&view),
                if view.is_verified() {
                    "verified"
                } else {
                    "NOT VERIFIED"
                },
                if entry.sender.is_none() {
                    ", starting"
                } else {
                    ""
                },
                if target == Some(entry.id) {
                    " (typed lines go here)"
                } else {
                    ""
                },
            ));
        }
        if target.is_none() {
            lines.push("Typed lines go to no one: type /to NAME.".into());
        }
        let _ = ui.notice(&lines.join("\n"));
    }

    /// `/trust` made `addressee` verified: it holds its slot against newcomers.
    fn verified(&self, addressee: &Addressee) {
        let ui = self.shared.lock();
        if let Addressee::Conversation(id) = addressee
            && let Some(slot) = ui.conversations.get(*id).and_then(|e| e.slot.as_ref())
        {
            slot.set_verified(true);
        }
    }

    /// Why nothing can go to `addressee`, if nothing can.
    fn unreachable(&self, ui: &Ui, addressee: &Addressee) -> Option<String> {
        match addressee {
            Addressee::Unchosen => Some(format!(
                "not sent: no conversation is chosen; type /to NAME, or @NAME text for one line \
                 (open: {})",
                routing::describe_open(&ui.conversations.open())
            )),
            Addressee::NoOne if ui.conversations.is_empty() => {
                Some("not sent: no one is connected".into())
            }
            Addressee::NoOne => Some(
                "not sent: you began this line when no one was connected; type it again".into(),
            ),
            Addressee::Ended(name) => {
                Some(format!("not sent: the conversation with {name} is over"))
            }
            Addressee::Conversation(id) => match ui.conversations.get(*id) {
                Some(entry) if entry.sender.is_some() => None,
                Some(_) => Some("not sent: the conversation is still starting".into()),
                None => Some("not sent: that conversation is over".into()),
            },
        }
    }

    /// The sender for `addressee` (and its activity clock, if it holds a
    /// slot), or `None` after telling the user why not.
    fn sender_of(&self, addressee: &Addressee) -> Option<(Sender, Option<Activity>)> {
        let mut ui = self.shared.lock();
        if let Some(why) = self.unreachable(&ui, addressee) {
            let _ = ui.notice(&why);
            return None;
        }
        let Addressee::Conversation(id) = addressee else {
            return None;
        };
        let entry = ui.conversations.get(*id)?;
        let activity = entry.slot.as_ref().map(|slot| slot.activity());
        entry.sender.clone().map(|sender| (sender, activity))
    }

    /// The peer `addressee` names, or `None` after telling the user why not.
    fn view_of(&self, addressee: &Addressee) -> Option<Arc<Mutex<PeerView>>> {
        let mut ui = self.shared.lock();
        let Addressee::Conversation(id) = addressee else {
            let why = self
                .unreachable(&ui, addressee)
                .unwrap_or_default()
                .replace("not sent: ", "");
            let _ = ui.notice(&why);
            return None;
        };
        match ui.conversations.get(*id) {
            Some(entry) => Some(Arc::clone(&entry.view)),
            None => {
                let _ = ui.notice("that conversation is over");
                None
            }
        }
    }

    /// Sends a typed line (or a draft's lines) with its line ending, as
    /// `chat send` sends each line of its input: a receiver writing into a
    /// pipe or a file gets lines, not words run together, and a terminal
    /// or REPL shows no extra blank line.
    fn send(&self, text: String, addressee: &Addressee) {
        let Some((sender, activity)) = self.sender_of(addressee) else {
            return;
        };
        let mut line = text.into_bytes();
        line.push(b'\n');
        match sender.send(&line) {
            Ok(_) => {
                if let Some(activity) = activity {
                    activity.touch();
                }
            }
            Err(e) => self.notice(format!("not sent: {e}")),
        }
    }

    /// `/save PATH`.
    fn save(&self, path: Option<&str>) {
        let kept = self.shared.lock().kept.clone();
        let Some(kept) = kept else {
            self.notice("Nothing to save: no message has been too large for the screen.");
            return;
        };
        let Some(path) = path else {
            // Into the save folder, as a received file would go.
            let folder = super::files::receive::save_dir(self.shared.settings.save_dir.as_deref());
            let mut name = format!("message {} from {}.txt", kept.id, kept.from);
            if crate::transfer::check_name(&name).is_err() {
                name = format!("message {}.txt", kept.id);
            }
            let saved = super::files::save_dir::SaveDir::open(&folder)
                .map_err(super::files::save_dir::PlaceError::Io)
                .and_then(|save| save.write_new(&name, &mut kept.spool.reader(), true));
            match saved {
                Ok((name, bytes)) => self.notice(format!(
                    "Saved message #{} from {} ({}) to {}.",
                    kept.id,
                    kept.from,
                    screen::size(bytes),
                    sanitize::one_line(&folder.join(name).display().to_string())
                )),
                Err(super::files::save_dir::PlaceError::Io(e)) => {
                    self.notice(format!("not saved: {e}"))
                }
                Err(super::files::save_dir::PlaceError::NameTaken) => {
                    self.notice("not saved: every numbered name is taken")
                }
            }
            return;
        };
        let path = receive::expand_home(path);
        match receive::save_new(&path, &mut kept.spool.reader()) {
            Ok(bytes) => self.notice(format!(
                "Saved message #{} from {} ({}) to {}.",
                kept.id,
                kept.from,
                screen::size(bytes),
                path.display()
            )),
            Err(e) => self.notice(format!("not saved: {e}")),
        }
    }
}

/// The user asked to leave.
struct Leave;

/// A peer's name as the REPL shows it, escaped.
pub fn name_of(view: &PeerView) -> String {
    screen::name(view)
}

/// Whether a line continues on the next (ends in a single `\`).
fn continues(text: &str) -> bool {
    text.ends_with('\\') && !text.ends_with("\\\\")
}

/// What a line typed at the prompt means.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    Nothing,
    Text(String),
    Paste,
    Help,
    Who,
    To(Option<String>),
    Fingerprint,
    Trust(Option<String>),
    Save(Option<String>),
    Invite,
    Send(Result<Vec<files::Word>, files::QuoteError>),
    Accept(Option<String>),
    Reject(Option<String>),
    Cancel(Option<String>),
    Leave,
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
        "who" => Input::Who,
        "to" => Input::To(argument),
        "fingerprint" => Input::Fingerprint,
        "trust" => Input::Trust(argument),
        "save" => Input::Save(argument),
        // The words as typed, quotes and escapes and all.
        "send" => Input::Send(files::words(&command[word.len()..])),
        "accept" => Input::Accept(argument),
        "reject" => Input::Reject(argument),
        "cancel" => Input::Cancel(argument),
        "paste" => Input::Paste,
        "invite" => Input::Invite,
        "leave" => Input::Leave,
        "quit" | "exit" => Input::Quit,
        other => Input::Unknown(other.to_string()),
    }
}

/// What the user is told when a conversation is over.
fn farewell(name: &str, summary: &Summary, evicted: Option<CloseReason>) -> String {
    let mut lines = vec![match (&summary.ending, evicted) {
        (Ending::ClosedByUs, Some(CloseReason::Superseded)) => format!(
            "The older conversation with {name} is closed: {name} connected again, with the same key."
        ),
        (Ending::ClosedByUs, Some(CloseReason::Displaced)) => format!(
            "The conversation with {name} is closed: it gave way to a verified peer (it was \
             unverified and idle the longest, and every conversation was taken)."
        ),
        (ending, _) => match ending {
            Ending::Finished => format!("The conversation with {name} is over."),
            Ending::ClosedByUs => format!("You left the conversation with {name}."),
            Ending::ClosedByPeer(CloseReason::Goodbye) => format!("{name} left the conversation."),
            Ending::ClosedByPeer(reason) => format!("{name} ended the conversation: {reason}."),
            Ending::Failed(e) => format!("The connection to {name} failed: {e}."),
        },
    }];
    if let Some(id) = summary.cut_off {
        lines.push(format!(
            "Message #{id} from {name} was cut off before its end; what was shown of it is incomplete."
        ));
    }
    if !summary.unacknowledged.is_empty() {
        let previews: Vec<String> = super::preview::unsent(summary)
            .into_iter()
            .map(|unsent| unsent.preview)
            .collect();
        lines.push(format!(
            "Not delivered (no receipt): {}.",
            previews.join(", ")
        ));
    }
    lines.join("\n")
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
        assert_eq!(parse("/save out.txt"), Input::Save(Some("out.txt".into())));
        assert_eq!(parse("//etc/passwd"), Input::Text("/etc/passwd".into()));
        assert_eq!(parse("/frobnicate"), Input::Unknown("frobnicate".into()));
        assert_eq!(parse("/to carol"), Input::To(Some("carol".into())));
        assert_eq!(parse("/to"), Input::To(None));
        assert_eq!(parse("/who"), Input::Who);
        assert_eq!(parse("/send"), Input::Send(Ok(vec![])));
        assert_eq!(
            parse("/send \"my file.pdf\" b\\ c 'd e'"),
            Input::Send(Ok(vec!["my file.pdf".into(), "b c".into(), "d e".into()]))
        );
        // The line as typed: a trailing escaped space is kept.
        assert_eq!(parse("/send a\\ "), Input::Send(Ok(vec!["a ".into()])));
        assert_eq!(
            parse("/send \"my file.pdf"),
            Input::Send(Err(files::QuoteError::Unclosed('"')))
        );
        assert!(continues("a \\"));
        assert!(!continues("a \\\\"));
    }
}
