//! Receiving files: consent, then each file into its partial, then, once
//! its SHA-256 matched, flushed and renamed into the save folder.
//!
//! [`WithFiles`] wraps a conversation's [`Handler`]: messages go to the
//! wrapped one, file records come here. Nothing is written before consent:
//! a user who accepts (the REPL's `/accept`), or, without a user to ask,
//! `--accept-files` (verified peers only unless `--accept-files=any`).
//! Otherwise the offer is rejected ("not accepting") and a notice says how
//! to accept next time.

use std::collections::HashMap;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::offer_summary;
use super::partials;
use super::save_dir::{PlaceError, SaveDir};
use super::writer::Writer;
use crate::app::output::json_event;
use crate::app::progress::Progress;
use crate::app::trust_policy::{PeerView, Standing};
use crate::cli::AcceptFiles;
use crate::net::conversation::{Consent, FileNotice, Handler, Summary};
use crate::transfer::{FileHasher, Manifest, RejectReason, SaveOutcome, Verdict, describe};

/// Shows the user an offer to answer (the REPL).
pub type Ask = Arc<dyn Fn(u64, &Manifest) + Send + Sync>;

/// What a progress display (the REPL's) is told about offers.
#[derive(Debug)]
pub enum TransferEvent<'a> {
    /// `done` bytes of the peer's offer `id` have arrived (resumed ones
    /// included); `manifest`, the first time a file of it opens.
    Arriving {
        id: u64,
        done: u64,
        manifest: Option<&'a Manifest>,
    },
    /// Nothing more will arrive of the peer's offer.
    IncomingOver(u64),
    /// Our offer is over.
    OutgoingOver(u64),
}

/// Told of [`TransferEvent`]s, on the conversation's reader thread.
pub type Watch = Arc<dyn Fn(TransferEvent<'_>) + Send + Sync>;

/// Where received files go: `--save-dir`, else the platform's download
/// folder, else the current folder.
pub fn save_dir(chosen: Option<&Path>) -> PathBuf {
    if let Some(dir) = chosen {
        return dir.to_path_buf();
    }
    directories::UserDirs::new()
        .and_then(|dirs| dirs.download_dir().map(Path::to_path_buf))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("."))
}

struct OfferFiles {
    manifest: Manifest,
    /// The outermost folders made for this offer (see `SaveDir::place`).
    tops: HashMap<String, String>,
}

struct Current {
    id: u64,
    entry: u16,
    writer: Writer,
    partial: String,
    progress: Progress,
    written: u64,
}

/// What one conversation receives: its offers, the file arriving, the
/// save folder. Shared with the REPL, which answers offers.
pub struct Downloads {
    folder: PathBuf,
    save: Option<SaveDir>,
    /// The peer's key fingerprint: partials are kept per peer.
    peer: String,
    offers: HashMap<u64, OfferFiles>,
    current: Option<Current>,
    /// Where the last file saved went, relative to the folder.
    last_saved: Option<PathBuf>,
    /// Why the last file could not be saved.
    last_problem: Option<String>,
    /// Our own open offers, for naming their files in notices.
    sent: HashMap<u64, Manifest>,
    /// Resume proposals for offers that wait for the user's answer.
    proposals: HashMap<u64, Vec<(u16, FileHasher)>>,
    /// Draw progress bars (not under the REPL, which owns the screen).
    bars: bool,
}

impl Downloads {
    /// Receiving into `folder` from the peer with this fingerprint.
    pub fn new(folder: PathBuf, peer: String) -> Self {
        Self {
            folder,
            save: None,
            peer,
            offers: HashMap::new(),
            current: None,
            last_saved: None,
            last_problem: None,
            proposals: HashMap::new(),
            sent: HashMap::new(),
            bars: true,
        }
    }

    /// The save folder, opened once (and its old partials swept).
    fn save(&mut self) -> io::Result<&SaveDir> {
        if self.save.is_none() {
            let save = SaveDir::open(&self.folder).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open the save folder {}: {e}", self.folder.display()),
                )
            })?;
            partials::sweep(&save);
            self.save = Some(save);
        }
        Ok(self.save.as_ref().expect("opened"))
    }

    /// Remembers our offer `id`, to name its files in notices.
    pub fn sending(&mut self, id: u64, manifest: Manifest) {
        self.sent.insert(id, manifest);
    }

    /// No progress bars (the REPL shows progress its own way).
    pub fn without_bars(mut self) -> Self {
        self.bars = false;
        self
    }

    /// The resume proposals made for offer `id` when it arrived, for the
    /// user's later `/accept`.
    pub fn take_proposals(&mut self, id: u64) -> Vec<(u16, FileHasher)> {
        self.proposals.remove(&id).unwrap_or_default()
    }

    /// The folder's path, for notices.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Remembers an offer (it may be accepted later) and returns the resume
    /// proposals for it: the partials kept from this peer.
    pub fn consider(&mut self, id: u64, manifest: &Manifest) -> io::Result<Vec<(u16, FileHasher)>> {
        let peer = self.peer.clone();
        let save = self.save()?;
        let proposals = partials::proposals(save, &peer, manifest);
        self.offers.insert(
            id,
            OfferFiles {
                manifest: manifest.clone(),
                tops: HashMap::new(),
            },
        );
        Ok(proposals)
    }

    /// Forgets an offer that is over.
    pub fn forget(&mut self, id: u64) {
        self.offers.remove(&id);
        self.proposals.remove(&id);
    }

    fn open(
        &mut self,
        id: u64,
        entry: u16,
        path: &[String],
        size: u64,
        offset: u64,
    ) -> io::Result<()> {
        let partial = partials::name(&self.peer, path);
        let file = self.save()?.open_partial(&partial, offset)?;
        let mut progress = Progress::with_verb(if self.bars { size } else { 0 }, "receiving");
        if self.bars {
            progress.update(offset);
        }
        self.current = Some(Current {
            id,
            entry,
            writer: Writer::new(file)?,
            partial,
            progress,
            written: offset,
        });
        Ok(())
    }

    /// Writes `data` to the file arriving; returns the bytes of it written.
    fn write(&mut self, id: u64, entry: u16, data: &[u8]) -> io::Result<u64> {
        let current = self
            .current
            .as_mut()
            .filter(|c| (c.id, c.entry) == (id, entry))
            .ok_or_else(|| io::Error::other("no partial file is open"))?;
        current.writer.write(data)?;
        current.written += data.len() as u64;
        if self.bars {
            current.progress.update(current.written);
        }
        Ok(current.written)
    }

    fn save_file(&mut self, id: u64, entry: u16) -> SaveOutcome {
        self.last_saved = None;
        self.last_problem = None;
        let Some(mut current) = self
            .current
            .take()
            .filter(|c| (c.id, c.entry) == (id, entry))
        else {
            return SaveOutcome::WriteFailed;
        };
        current.progress.finish();
        if let Err(e) = current.writer.finish().and_then(|file| file.sync_all()) {
            self.last_problem = Some(e.to_string());
            return SaveOutcome::WriteFailed;
        }
        let Some(offer) = self.offers.get_mut(&id) else {
            return SaveOutcome::WriteFailed;
        };
        let path = offer.manifest.entries()[usize::from(entry)].path.clone();
        let save = self.save.as_ref().expect("open while a file arrives");
        match save.place(&current.partial, &path, &mut offer.tops) {
            Ok(placed) => {
                self.last_saved = Some(placed);
                SaveOutcome::Saved
            }
            // The partial is kept (docs/PROTOCOL.md 9.9).
            Err(PlaceError::NameTaken) => SaveOutcome::NameTaken,
            Err(PlaceError::Io(e)) => {
                self.last_problem = Some(e.to_string());
                SaveOutcome::WriteFailed
            }
        }
    }

    fn discard(&mut self, id: u64, entry: u16, keep: bool) {
        if let Some(mut current) = self.current.take() {
            current.progress.finish();
            if !keep || (current.id, current.entry) != (id, entry) {
                if let Some(save) = &self.save {
                    save.remove(&current.partial);
                }
            } else {
                let _ = current.writer.finish().and_then(|file| file.sync_data());
            }
        }
    }
}

/// A conversation's handler, with files.
pub struct WithFiles<H> {
    inner: H,
    downloads: Arc<Mutex<Downloads>>,
    accept: Option<AcceptFiles>,
    view: Arc<Mutex<PeerView>>,
    say: Arc<dyn Fn(String) + Send + Sync>,
    json: bool,
    /// With a user to ask (the REPL): shows an offer and how to answer it.
    ask: Option<Ask>,
    /// Told how offers arrive and end (the REPL's status rows).
    watch: Option<Watch>,
    /// The offer arriving, for `watch`: its number and where each of its
    /// files starts in its bytes.
    starts: Option<(u64, Vec<u64>)>,
}

impl<H: Handler> WithFiles<H> {
    /// Wraps `inner`. `say` prints a notice; `ask`, if there is a user,
    /// shows an offer for them to answer.
    pub fn new(
        inner: H,
        downloads: Arc<Mutex<Downloads>>,
        accept: Option<AcceptFiles>,
        view: Arc<Mutex<PeerView>>,
        say: Arc<dyn Fn(String) + Send + Sync>,
        json: bool,
        ask: Option<Ask>,
    ) -> Self {
        Self {
            inner,
            downloads,
            accept,
            view,
            say,
            json,
            ask,
            watch: None,
            starts: None,
        }
    }

    /// Tells `watch` how offers arrive and end.
    pub fn watched(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Where file `entry` of offer `id` starts in the offer's bytes, for
    /// `watch`; the offer's manifest too, if it is new.
    fn start_of(&mut self, id: u64, entry: u16) -> (u64, Option<Manifest>) {
        let mut manifest = None;
        if self.starts.as_ref().is_none_or(|(offer, _)| *offer != id) {
            manifest = self.downloads().offers.get(&id).map(|o| o.manifest.clone());
            let starts = manifest
                .iter()
                .flat_map(|m| m.entries())
                .scan(0u64, |sum, e| {
                    let start = *sum;
                    *sum += e.size;
                    Some(start)
                })
                .collect();
            self.starts = Some((id, starts));
        }
        let start = self
            .starts
            .as_ref()
            .and_then(|(_, starts)| starts.get(usize::from(entry)).copied())
            .unwrap_or(0);
        (start, manifest)
    }

    fn downloads(&self) -> std::sync::MutexGuard<'_, Downloads> {
        self.downloads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn label(&self) -> String {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).label()
    }

    fn verified(&self) -> bool {
        matches!(
            self.view.lock().unwrap_or_else(|p| p.into_inner()).standing,
            Standing::Verified(_)
        )
    }

    fn entry_name(&self, id: u64, entry: u16) -> String {
        let downloads = self.downloads();
        downloads
            .offers
            .get(&id)
            .and_then(|o| o.manifest.entries().get(usize::from(entry)))
            .map(|e| describe(std::slice::from_ref(e)).remove(0))
            .unwrap_or_else(|| format!("file {entry} of offer #{id}"))
    }
}

impl<H: Handler> Handler for WithFiles<H> {
    fn message_start(&mut self, id: u64, length: u64) -> io::Result<()> {
        self.inner.message_start(id, length)
    }
    fn message_data(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
        self.inner.message_data(id, data)
    }
    fn message_end(&mut self, id: u64) -> io::Result<()> {
        self.inner.message_end(id)
    }
    fn delivered(&mut self, ids: RangeInclusive<u64>) {
        self.inner.delivered(ids)
    }
    fn peer_done(&mut self) {
        self.inner.peer_done()
    }
    fn ended(&mut self, summary: &Summary) {
        self.inner.ended(summary)
    }
    fn key_updates(&self) -> Option<crate::net::conversation::KeyUpdates> {
        self.inner.key_updates()
    }

    fn file_offered(&mut self, id: u64, manifest: &Manifest) -> Consent {
        let who = self.label();
        let what = offer_summary(manifest);
        if self.json {
            json_event(json!({
                "event": "file_offered",
                "offer": id,
                "files": manifest.entries().iter().map(|e| json!({"path": e.path, "size": e.size})).collect::<Vec<_>>(),
            }));
        }
        let allowed = match self.accept {
            Some(AcceptFiles::Any) => true,
            Some(AcceptFiles::Verified) => self.verified(),
            None => false,
        };
        if !allowed && self.ask.is_none() {
            let how = if self.accept.is_some() {
                "only files from verified peers are accepted (pin its key, or run with --accept-files=any)"
            } else {
                "run with --accept-files to accept files from verified peers"
            };
            (self.say)(format!(
                "{who} offers {what}: rejected, nothing was written; {how}."
            ));
            return Consent::Reject(RejectReason::NotAccepting);
        }
        let proposals = match self.downloads().consider(id, manifest) {
            Ok(proposals) => proposals,
            Err(e) => {
                (self.say)(format!("{who} offers {what}: rejected: {e}."));
                return Consent::Reject(RejectReason::NotAccepting);
            }
        };
        if allowed {
            let folder = self.downloads().folder().display().to_string();
            (self.say)(format!(
                "{who} offers {what}: accepted (--accept-files), saving in {folder}."
            ));
            return Consent::Accept(proposals);
        }
        self.downloads().proposals.insert(id, proposals);
        if let Some(ask) = &self.ask {
            ask(id, manifest);
        }
        Consent::Ask
    }

    fn file_open(
        &mut self,
        id: u64,
        entry: u16,
        path: &[String],
        size: u64,
        offset: u64,
    ) -> io::Result<()> {
        if offset > 0 {
            let (who, name) = (self.label(), self.entry_name(id, entry));
            (self.say)(format!(
                "Resuming {name} from {who} at byte {offset} of {size} (the prefix's SHA-256 matched)."
            ));
        }
        self.downloads().open(id, entry, path, size, offset)?;
        if let Some(watch) = self.watch.clone() {
            let (start, manifest) = self.start_of(id, entry);
            watch(TransferEvent::Arriving {
                id,
                done: start + offset,
                manifest: manifest.as_ref(),
            });
        }
        Ok(())
    }

    fn file_write(&mut self, id: u64, entry: u16, data: &[u8]) -> io::Result<()> {
        let written = self.downloads().write(id, entry, data)?;
        if let Some(watch) = self.watch.clone() {
            let (start, _) = self.start_of(id, entry);
            watch(TransferEvent::Arriving {
                id,
                done: start + written,
                manifest: None,
            });
        }
        Ok(())
    }

    fn file_save(&mut self, id: u64, entry: u16) -> SaveOutcome {
        self.downloads().save_file(id, entry)
    }

    fn file_discard(&mut self, id: u64, entry: u16, keep: bool) {
        self.downloads().discard(id, entry, keep)
    }

    fn file_notice(&mut self, notice: FileNotice<'_>) {
        let who = self.label();
        let line = match notice {
            FileNotice::Refused {
                id,
                entries,
                reason,
                problem,
            } => {
                if self.json {
                    json_event(
                        json!({"event": "file_refused", "offer": id, "reason": reason.to_string(), "problem": problem}),
                    );
                }
                let names = describe(entries).join(", ");
                format!(
                    "Refused {who}'s offer #{id} ({names}): {reason}: {problem}; nothing was written."
                )
            }
            FileNotice::Declined { .. } => return,
            FileNotice::Withdrawn { id } => format!("{who} withdrew its offer #{id}."),
            FileNotice::Expired { id } => {
                format!("{who}'s offer #{id} was not answered within 10 minutes and is rejected.")
            }
            FileNotice::SenderCancelled { id, reason } => {
                format!(
                    "{who} cancelled offer #{id} ({reason}); what did not arrive was not saved."
                )
            }
            FileNotice::WriteFailed { id, error } => {
                format!(
                    "Could not write a file of {who}'s offer #{id}: {error}; the offer is cancelled."
                )
            }
            FileNotice::Received { id, entry, verdict } => {
                let name = self.entry_name(id, entry);
                let (folder, placed, problem) = {
                    let d = self.downloads();
                    (
                        d.folder().to_path_buf(),
                        d.last_saved.clone(),
                        d.last_problem.clone(),
                    )
                };
                if self.json {
                    json_event(json!({
                        "event": "file_received",
                        "offer": id,
                        "entry": entry,
                        "verdict": verdict.code(),
                        "saved_as": placed.as_ref().filter(|_| verdict == Verdict::Saved).map(|p| folder.join(p).display().to_string()),
                    }));
                }
                match (verdict, placed) {
                    (Verdict::Saved, Some(placed)) => format!(
                        "Saved {name} from {who} as {} (SHA-256 verified).",
                        folder.join(placed).display()
                    ),
                    (Verdict::HashMismatch, _) => format!(
                        "{name} from {who}: the SHA-256 did not match; nothing was saved and the partial file was deleted."
                    ),
                    (Verdict::WriteFailed, _) if problem.is_some() => format!(
                        "{name} from {who}: {verdict} ({}).",
                        problem.unwrap_or_default()
                    ),
                    (verdict, _) => format!("{name} from {who}: {verdict}."),
                }
            }
            FileNotice::IncomingFinished { id } => {
                self.downloads().forget(id);
                if self.starts.as_ref().is_some_and(|(offer, _)| *offer == id) {
                    self.starts = None;
                }
                if let Some(watch) = &self.watch {
                    watch(TransferEvent::IncomingOver(id));
                }
                return;
            }
            FileNotice::Accepted { id } => format!("{who} accepted offer #{id}."),
            FileNotice::Rejected { id, reason } => {
                format!("{who} rejected offer #{id}: {reason}.")
            }
            FileNotice::Outcome { id, entry, verdict } => {
                let name = self
                    .downloads()
                    .sent
                    .get(&id)
                    .and_then(|m| m.entries().get(usize::from(entry)))
                    .map(|e| describe(std::slice::from_ref(e)).remove(0));
                let Some(name) = name else { return };
                match verdict {
                    Verdict::Saved => format!("{who} saved {name} (SHA-256 verified)."),
                    verdict => format!("{name} to {who}: {verdict}."),
                }
            }
            FileNotice::OutgoingFinished { id } => {
                self.downloads().sent.remove(&id);
                if let Some(watch) = &self.watch {
                    watch(TransferEvent::OutgoingOver(id));
                }
                return;
            }
            FileNotice::ReceiverCancelled { id, reason } => {
                format!("{who} cancelled offer #{id}: {reason}.")
            }
        };
        (self.say)(line);
    }
}

/// How a conversation takes files, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct FileSettings<'a> {
    /// `--save-dir`.
    pub save_dir: Option<&'a Path>,
    /// `--accept-files`.
    pub accept: Option<AcceptFiles>,
    /// `--json`.
    pub json: bool,
}

impl<'a> FileSettings<'a> {
    /// From the options every command shares.
    pub fn of(common: &'a crate::cli::CommonArgs) -> Self {
        Self {
            save_dir: common.save_dir.as_deref(),
            accept: common.accept_files,
            json: common.json,
        }
    }
}

/// Wraps a conversation's handler so that it receives files as `settings`
/// says (`--accept-files`, `--save-dir`); notices go to `notice`. Returns
/// the receiving state too, for a REPL that answers offers.
pub fn for_conversation<H: Handler>(
    inner: H,
    settings: FileSettings<'_>,
    view: &Arc<Mutex<PeerView>>,
    notice: crate::app::output::Notice,
    ask: Option<Ask>,
) -> (WithFiles<H>, Arc<Mutex<Downloads>>) {
    let peer = view
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .key
        .fingerprint()
        .to_string();
    let mut downloads = Downloads::new(save_dir(settings.save_dir), peer);
    if ask.is_some() {
        downloads = downloads.without_bars();
    }
    let downloads = Arc::new(Mutex::new(downloads));
    let say: Arc<dyn Fn(String) + Send + Sync> =
        Arc::new(move |line| crate::app::output::notify(&notice, line));
    let handler = WithFiles::new(
        inner,
        Arc::clone(&downloads),
        settings.accept,
        Arc::clone(view),
        say,
        settings.json,
        ask,
    );
    (handler, downloads)
}
