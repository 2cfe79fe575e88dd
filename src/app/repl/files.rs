//! The REPL's file commands: `/send PATH...`, `/accept N`, `/reject N`,
//! `/cancel [N]`, and Ctrl-C on an empty line, which cancels every
//! transfer in progress. Offers from the peer are shown by the
//! conversation's handler (`app/files/receive.rs`) with how to answer them.

use std::path::PathBuf;
use std::sync::Arc;

use super::conversations::Addressee;
use super::{Repl, Ui};
use crate::app::files::offer_summary;
use crate::app::receive;
use crate::sanitize;
use crate::transfer::RejectReason;

/// An offer number as typed: "3" or "#3".
fn offer_number(text: Option<&str>) -> Option<u64> {
    text?.trim().trim_start_matches('#').parse().ok()
}

impl Repl {
    /// `/send PATH...`: one offer of these files and folders.
    pub(super) fn send_files(&self, paths: &[String], addressee: &Addressee) {
        if paths.is_empty() {
            self.notice(
                "Usage: /send PATH... (files and folders, offered to the peer as one offer)",
            );
            return;
        }
        let paths: Vec<PathBuf> = paths.iter().map(|p| receive::expand_home(p)).collect();
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
        let progress: crate::net::conversation::Progress = Arc::new(|_| {});
        // The downloads' lock is held over the offer, so that the peer's
        // answer (on the reader thread) finds the offer's names.
        let guard = downloads
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()));
        match sender.offer(picked.manifest, picked.files, progress) {
            Ok(id) => {
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
