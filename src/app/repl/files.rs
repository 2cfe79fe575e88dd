//! The REPL's file commands: `/send PATH...`, `/accept N`, `/reject N`,
//! `/cancel [N]`, and Ctrl-C on an empty line, which cancels every
//! transfer in progress. Offers from the peer are shown by the
//! conversation's handler (`app/files/receive.rs`) with how to answer them.
//!
//! `/send` takes its paths as a shell would split them: words between
//! spaces, with `"…"`, `'…'` and `\` for names with spaces, and `~/`
//! outside quotes for the home folder (no variables, no wildcards).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::conversations::Addressee;
use super::transfers::Direction;
use super::{Repl, Ui};
use crate::app::files::{offer_names, offer_summary};
use crate::app::receive;
use crate::sanitize;
use crate::transfer::RejectReason;

/// Why the words of a `/send` line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// A `"` or `'` that is never closed.
    Unclosed(char),
    /// A `\` with nothing after it.
    TrailingBackslash,
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuoteError::Unclosed(quote) => {
                write!(f, "a {quote} is never closed; close it after the name")
            }
            QuoteError::TrailingBackslash => {
                write!(f, "the line ends in a lone \\; write \\\\ for a backslash")
            }
        }
    }
}

/// A word as typed, and whether it began with `~/` outside quotes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub home: bool,
}

impl Word {
    /// The path it names: a `~/` outside quotes is the home folder, as in a
    /// shell (`"~/x"`, `'~/x'` and `\~/x` name a folder called `~`).
    pub fn path(&self) -> PathBuf {
        if self.home {
            receive::expand_home(&self.text)
        } else {
            PathBuf::from(&self.text)
        }
    }
}

#[cfg(test)]
impl From<&str> for Word {
    fn from(text: &str) -> Self {
        Word {
            text: text.into(),
            home: false,
        }
    }
}

/// The words of `text` as a shell splits them (expanding nothing, but
/// noting a `~/` outside quotes at a word's start): whitespace separates
/// words; `'…'` keeps everything inside
/// as it is; `"…"` too, except that `\"` and `\\` stand for `"` and `\`;
/// elsewhere `\` makes the next character plain (`my\ file.pdf`). Quotes
/// may join a word's parts (`"my file".pdf`), and `""` is an empty word.
pub fn words(text: &str) -> Result<Vec<Word>, QuoteError> {
    let mut words = Vec::new();
    // The word being read, if one has begun (a word may be empty: "").
    let mut word: Option<Word> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            '\'' => {
                let word = &mut word.get_or_insert_with(Word::default).text;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(QuoteError::Unclosed('\'')),
                    }
                }
            }
            '"' => {
                let word = &mut word.get_or_insert_with(Word::default).text;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(QuoteError::Unclosed('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(QuoteError::Unclosed('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(Word::default).text.push(c),
                None => return Err(QuoteError::TrailingBackslash),
            },
            '~' if word.is_none() && chars.clone().next() == Some('/') => {
                word = Some(Word {
                    text: "~".into(),
                    home: true,
                });
            }
            c => word.get_or_insert_with(Word::default).text.push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// An offer number as typed: "3" or "#3".
fn offer_number(text: Option<&str>) -> Option<u64> {
    text?.trim().trim_start_matches('#').parse().ok()
}

impl Repl {
    /// `/send PATH...`: one offer of these files and folders.
    pub(super) fn send_files(&self, paths: &[Word], addressee: &Addressee) {
        if paths.is_empty() {
            self.notice(
                "Usage: /send PATH... (files and folders, offered to the peer as one offer)",
            );
            return;
        }
        let paths: Vec<PathBuf> = paths.iter().map(Word::path).collect();
        let picked = match crate::app::files::send::pick(&paths) {
            Ok(picked) => picked,
            Err(e) => {
                self.notice(format!("not sent: {e}"));
                return;
            }
        };
        let Some(sender) = self.sender_of(addressee).map(|(sender, _)| sender) else {
            return;
        };
        if !sender.can_offer() {
            self.notice("not sent: 8 offers are open; wait for one to finish");
            return;
        }
        for path in &picked.skipped {
            self.notice(format!(
                "Leaving out {}: not a regular file or folder.",
                sanitize::one_line(&path.display().to_string())
            ));
        }
        let summary = offer_summary(&picked.manifest);
        let manifest = picked.manifest.clone();
        let downloads = match addressee {
            Addressee::Conversation(id) => self.shared.lock().downloads.get(id).cloned(),
            _ => None,
        };
        // Bytes sent so far go to the offer's status row, once its number
        // is known (the peer must accept before any byte goes).
        let offer: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
        let progress: crate::net::conversation::Progress = match addressee {
            Addressee::Conversation(conversation) => {
                let (shared, offer, conversation) = (
                    Arc::downgrade(&self.shared),
                    Arc::clone(&offer),
                    *conversation,
                );
                Arc::new(move |done| {
                    if let (Some(shared), Some(&id)) = (shared.upgrade(), offer.get()) {
                        shared.transfer_progress((conversation, Direction::Sending, id), done);
                    }
                })
            }
            _ => Arc::new(|_| {}),
        };
        let row = match addressee {
            Addressee::Conversation(conversation) => {
                let to = self
                    .shared
                    .lock()
                    .conversations
                    .get(*conversation)
                    .map(|entry| entry.name())
                    .unwrap_or_default();
                Some((*conversation, offer_names(&manifest), to))
            }
            _ => None,
        };
        let total = manifest.total();
        // The downloads' lock is held over the offer, so that the peer's
        // answer (on the reader thread) finds the offer's names.
        let guard = downloads
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()));
        match sender.offer(picked.manifest, picked.files, progress) {
            Ok(id) => {
                // Still under the downloads' lock: the offer's end (on the
                // reader thread) cannot come before its row is added.
                if let Some((conversation, names, to)) = row {
                    let key = (conversation, Direction::Sending, id);
                    self.shared.transfer_added(key, names, to, total);
                    let _ = offer.set(id);
                }
                if let Some(mut guard) = guard {
                    guard.sending(id, manifest);
                }
                self.notice(format!(
                    "Offered {summary} as offer #{id}; /cancel {id} to cancel."
                ));
            }
            Err(e) => {
                drop(guard);
                self.notice(format!("not sent: {e}"));
            }
        }
    }

    /// `/accept N` and `/reject N`.
    pub(super) fn answer(&self, offer: Option<&str>, addressee: &Addressee, accept: bool) {
        let verb = if accept { "accept" } else { "reject" };
        let Some(id) = offer_number(offer) else {
            self.notice(format!("Usage: /{verb} N (the number of the peer's offer)"));
            return;
        };
        let Some(sender) = self.sender_of(addressee).map(|(sender, _)| sender) else {
            return;
        };
        let downloads = match addressee {
            Addressee::Conversation(conversation) => {
                self.shared.lock().downloads.get(conversation).cloned()
            }
            _ => None,
        };
        let Some(downloads) = downloads else {
            return;
        };
        let (resume, folder) = {
            let mut d = downloads.lock().unwrap_or_else(|p| p.into_inner());
            let resume = if accept {
                d.take_proposals(id)
            } else {
                Vec::new()
            };
            (resume, d.folder().display().to_string())
        };
        let result = if accept {
            sender.accept(id, resume)
        } else {
            sender.reject(id, RejectReason::Declined)
        };
        match result {
            Ok(()) if accept => self.notice(format!(
                "Accepted offer #{id}; saving in {}.",
                sanitize::one_line(&folder)
            )),
            Ok(()) => self.notice(format!("Rejected offer #{id}; nothing was written.")),
            Err(_) => self.notice(format!("No offer #{id} waits for an answer.")),
        }
    }

    /// `/cancel [N]`: our offer N, else the peer's offer N; without N,
    /// every transfer with this peer.
    pub(super) fn cancel(&self, offer: Option<&str>, addressee: &Addressee) {
        let Some(sender) = self.sender_of(addressee).map(|(sender, _)| sender) else {
            return;
        };
        let (ours, theirs) = sender.open_transfers();
        let ids: Vec<(bool, u64)> = match offer {
            None => ours
                .iter()
                .map(|id| (true, *id))
                .chain(theirs.iter().map(|id| (false, *id)))
                .collect(),
            Some(text) => match offer_number(Some(text)) {
                Some(id) if ours.contains(&id) => vec![(true, id)],
                Some(id) if theirs.contains(&id) => vec![(false, id)],
                _ => {
                    self.notice(format!(
                        "No transfer {} to cancel.",
                        sanitize::one_line(text)
                    ));
                    return;
                }
            },
        };
        if ids.is_empty() {
            self.notice("No transfer to cancel.");
            return;
        }
        for (ours, id) in ids {
            let result = if ours {
                sender.cancel_offer(id)
            } else {
                sender.cancel_incoming(id)
            };
            match result {
                Ok(()) => self.notice(format!("Cancelled offer #{id}.")),
                Err(e) => self.notice(format!("Could not cancel offer #{id}: {e}")),
            }
        }
    }

    /// Ctrl-C on an empty line: cancels every transfer in progress, in
    /// every conversation. Returns how many.
    pub(super) fn cancel_all(&self, ui: &mut Ui) -> usize {
        let mut cancelled = 0;
        for entry in ui.conversations.iter() {
            let Some(sender) = &entry.sender else {
                continue;
            };
            let (ours, theirs) = sender.open_transfers();
            for id in ours {
                cancelled += usize::from(sender.cancel_offer(id).is_ok());
            }
            for id in theirs {
                cancelled += usize::from(sender.cancel_incoming(id).is_ok());
            }
        }
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_splits_its_paths_as_a_shell_would() {
        let ok: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("a.txt", &["a.txt"]),
            ("  a.txt   b.txt ", &["a.txt", "b.txt"]),
            ("\"my file.pdf\"", &["my file.pdf"]),
            ("'x y'", &["x y"]),
            ("my\\ file.pdf", &["my file.pdf"]),
            ("a\\ \\ b", &["a  b"]),
            ("\"my file\".pdf other", &["my file.pdf", "other"]),
            ("pre'  'post", &["pre  post"]),
            ("\"\"", &[""]),
            ("'' x", &["", "x"]),
            // Inside '…' nothing is special.
            ("'a\\ \"b'", &["a\\ \"b"]),
            // Inside "…" only \" and \\ are.
            ("\"a\\\"b\\\\c\\d\"", &["a\"b\\c\\d"]),
            ("\"it's\"", &["it's"]),
            ("'say \"hi\"'", &["say \"hi\""]),
            ("\\'quoted\\'", &["'quoted'"]),
            ("~/my\\ docs/x", &["~/my docs/x"]),
            ("a\tb", &["a", "b"]),
            (
                "caf\u{e9} \u{65e5}\u{672c}",
                &["caf\u{e9}", "\u{65e5}\u{672c}"],
            ),
            // A trailing escaped space belongs to the name.
            ("a\\ ", &["a "]),
        ];
        for (typed, expected) in ok {
            let texts = words(typed).map(|words| words.into_iter().map(|w| w.text).collect());
            assert_eq!(
                texts,
                Ok(expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "{typed:?}"
            );
        }
        // Only a `~/` outside quotes at a word's start is the home folder.
        let home: &[(&str, &[bool])] = &[
            ("~/a ~/b", &[true, true]),
            (r#"\~/a '~/b' "~/c" x~/d ~ ~x"#, &[false; 6]),
            ("~/'my docs'/x", &[true]),
        ];
        for (typed, expected) in home {
            let homes: Vec<bool> = words(typed).unwrap().iter().map(|w| w.home).collect();
            assert_eq!(homes, *expected, "{typed:?}");
        }
        let word = &words("~/'my docs'/x").unwrap()[0];
        assert_eq!(word.text, "~/my docs/x");
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(word.path(), std::path::Path::new(&home).join("my docs/x"));
            // More slashes never make it an absolute path.
            for typed in ["~//etc/x", "~/\"/etc/x\""] {
                let path = words(typed).unwrap()[0].path();
                assert_eq!(path, std::path::Path::new(&home).join("etc/x"), "{typed}");
            }
        }
        assert_eq!(words("'~/x'").unwrap()[0].path(), PathBuf::from("~/x"));
        let bad: &[(&str, QuoteError)] = &[
            ("\"my file.pdf", QuoteError::Unclosed('"')),
            ("a 'b", QuoteError::Unclosed('\'')),
            ("\"a\\\"", QuoteError::Unclosed('"')),
            ("\"a\\", QuoteError::Unclosed('"')),
            ("'it\\'s'", QuoteError::Unclosed('\'')),
            ("a\\", QuoteError::TrailingBackslash),
        ];
        for (typed, expected) in bad {
            assert_eq!(words(typed), Err(*expected), "{typed:?}");
        }
        assert_eq!(
            QuoteError::Unclosed('"').to_string(),
            "a \" is never closed; close it after the name"
        );
    }
}
