//! What a peer sends, on the screen: each message under the peer's label
//! (see [`screen`]), receipts and the end of the conversation as notices.
//!
//! A message is shown once complete, unless it is long:
//! - over the screen limit (`--screen-limit`, 64 KiB by default) it is not
//!   poured into the terminal: its first lines are shown, and all of it is
//!   kept, byte for byte, in a [`Spool`] for `/save PATH`;
//! - over 1 MiB but within the limit, it is shown as it arrives, and every
//!   piece printed starts with the label again.
//!
//! The handler returns from `message_end` only once the message is on the
//! screen (or kept), so a receipt means the user has it.

use std::io;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use super::super::receive::Spool;
use super::super::trust_policy::PeerView;
use super::conversations::Id;
use super::{Kept, Shared, screen};
use crate::net::conversation::{Handler, KeyDirection, KeyUpdates, Summary};
use crate::sanitize::Utf8Pieces;

/// Messages longer than this are shown as they arrive, not held until
/// complete (when the screen limit lets them be shown at all).
const STREAM_AFTER: u64 = 1 << 20;

/// A streamed line longer than this is printed in parts, not held.
const STREAM_LINE: usize = 64 * 1024;

/// The preview of a message too large for the screen: at most this many
/// lines...
const PREVIEW_LINES: usize = 8;
/// ...and this many bytes.
const PREVIEW_BYTES: usize = 2048;

/// The message being received.
enum Receiving {
    Nothing,
    /// Held until complete.
    Whole(Vec<u8>),
    /// Shown as it arrives.
    Streamed {
        pieces: Utf8Pieces,
        text: String,
    },
    /// Too large for the screen: kept aside.
    Large(Box<Large>),
}

struct Large {
    id: u64,
    spool: Spool,
    preview: Vec<u8>,
    previewed: bool,
}

/// The REPL's handler for one conversation.
pub struct Incoming {
    id: Id,
    view: Arc<Mutex<PeerView>>,
    shared: Arc<Shared>,
    receiving: Receiving,
}

impl Incoming {
    /// A handler for conversation `id` with the peer `view`.
    pub fn new(id: Id, view: Arc<Mutex<PeerView>>, shared: Arc<Shared>) -> Self {
        Self {
            id,
            view,
            shared,
            receiving: Receiving::Nothing,
        }
    }

    fn view(&self) -> PeerView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn name(&self) -> String {
        screen::name(&self.view())
    }

    /// Prints peer text under the peer's label.
    fn show(&self, text: &str) -> io::Result<()> {
        self.shared.peer_text(self.id, &self.view(), text)
    }

    fn notice(&self, text: String) {
        let _ = self.shared.notice(text);
    }

    fn show_preview(&self, large: &mut Large) -> io::Result<()> {
        large.previewed = true;
        let text = String::from_utf8_lossy(&large.preview);
        let lines: Vec<&str> = text.split('\n').take(PREVIEW_LINES).collect();
        self.show(&lines.join("\n"))
    }
}

/// The lines of `bytes` complete enough to preview.
fn preview_ready(bytes: &[u8]) -> bool {
    bytes.len() >= PREVIEW_BYTES || bytes.iter().filter(|&&b| b == b'\n').count() >= PREVIEW_LINES
}

impl Handler for Incoming {
    /// With `-v`, each key update as a notice. Our own updates are reported
    /// while the conversation's sending lock is held, and a thread sending
    /// may hold the screen's lock: a thread of its own prints them.
    fn key_updates(&self) -> Option<KeyUpdates> {
        if !self.shared.settings.verbose {
            return None;
        }
        let (lines, printer) = std::sync::mpsc::channel::<(KeyDirection, u64)>();
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("chat-key-log".into())
            .spawn(move || {
                for (direction, epoch) in printer {
                    let _ = shared.notice(super::super::output::key_update_line(direction, epoch));
                }
            })
            .ok()?;
        Some(Arc::new(move |direction, epoch| {
            let _ = lines.send((direction, epoch));
        }))
    }

    fn message_start(&mut self, id: u64, length: u64) -> io::Result<()> {
        let limit = self.shared.settings.screen_limit;
        self.receiving = if length > limit {
            self.notice(format!(
                "Message #{id} from {} is {}, more than the screen shows ({} at most): its first \
                 lines follow, and /save PATH writes all of it to a file once it is complete.",
                self.name(),
                screen::size(length),
                screen::size(limit),
            ));
            Receiving::Large(Box::new(Large {
                id,
                spool: Spool::new()?,
                preview: Vec::new(),
                previewed: false,
            }))
        } else if length > STREAM_AFTER {
            self.notice(format!(
                "Message #{id} from {} is {}: it is shown as it arrives.",
                self.name(),
                screen::size(length)
            ));
            Receiving::Streamed {
                pieces: Utf8Pieces::default(),
                text: String::new(),
            }
        } else {
            Receiving::Whole(Vec::with_capacity(length.min(64 * 1024) as usize))
        };
        Ok(())
    }

    fn message_data(&mut self, _id: u64, data: &[u8]) -> io::Result<()> {
        match std::mem::replace(&mut self.receiving, Receiving::Nothing) {
            Receiving::Nothing => {}
            Receiving::Whole(mut bytes) => {
                bytes.extend_from_slice(data);
                self.receiving = Receiving::Whole(bytes);
            }
            Receiving::Streamed {
                mut pieces,
                mut text,
            } => {
                text.push_str(&pieces.push(data));
                let cut = match text.rfind('\n') {
                    Some(at) => Some(at + 1),
                    None if text.len() > STREAM_LINE => Some(text.len()),
                    None => None,
                };
                if let Some(cut) = cut {
                    let chunk: String = text.drain(..cut).collect();
                    self.show(chunk.strip_suffix('\n').unwrap_or(&chunk))?;
                }
                self.receiving = Receiving::Streamed { pieces, text };
            }
            Receiving::Large(mut large) => {
                large.spool.write(data)?;
                if !large.previewed {
                    let room = PREVIEW_BYTES.saturating_sub(large.preview.len());
                    large
                        .preview
                        .extend_from_slice(&data[..room.min(data.len())]);
                    if preview_ready(&large.preview) {
                        self.show_preview(&mut large)?;
                    }
                }
                self.receiving = Receiving::Large(large);
            }
        }
        Ok(())
    }

    fn message_end(&mut self, id: u64) -> io::Result<()> {
        match std::mem::replace(&mut self.receiving, Receiving::Nothing) {
            Receiving::Nothing => Ok(()),
            Receiving::Whole(bytes) => {
                // The line break that ends a typed or piped message is not a line.
                let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                self.show(&String::from_utf8_lossy(bytes))
            }
            Receiving::Streamed { mut pieces, text } => {
                let rest = text + &pieces.finish();
                if !rest.is_empty() {
                    self.show(rest.strip_suffix('\n').unwrap_or(&rest))?;
                }
                self.notice(format!("End of message #{id} from {}.", self.name()));
                Ok(())
            }
            Receiving::Large(mut large) => {
                large.spool.finish()?;
                if !large.previewed {
                    self.show_preview(&mut large)?;
                }
                let name = self.name();
                let length = large.spool.length();
                self.notice(format!(
                    "Message #{id} from {name} is complete: {}. Only its first lines are shown; \
                     type /save PATH to write all of it to a file.",
                    screen::size(length)
                ));
                self.shared.keep(Kept {
                    id: large.id,
                    from: name,
                    spool: large.spool,
                });
                Ok(())
            }
        }
    }

    fn delivered(&mut self, ids: RangeInclusive<u64>) {
        let which = if ids.start() == ids.end() {
            format!("#{}", ids.start())
        } else {
            format!("#{} to #{}", ids.start(), ids.end())
        };
        self.notice(format!("  \u{2713} delivered ({which})"));
    }

    fn peer_done(&mut self) {
        self.notice(format!("({} will send no more messages)", self.name()));
    }

    fn ended(&mut self, summary: &Summary) {
        if let Receiving::Large(large) = std::mem::replace(&mut self.receiving, Receiving::Nothing)
        {
            self.notice(format!(
                "Message #{} from {} was cut off before its end; nothing of it was kept.",
                large.id,
                self.name()
            ));
        }
        self.shared.conversation_ended(self.id, summary);
    }
}
