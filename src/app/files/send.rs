//! Offering files: the paths the user picked become one offer. A file is
//! an entry of one name; a folder is walked (in name order) and each
//! plain file inside it is an entry whose path starts with the folder's
//! name. Links and special files inside a folder are left out (and said
//! so): an offer carries files, and a link could point anywhere.
//!
//! The names are checked here by the same rules the receiver applies
//! (`docs/PROTOCOL.md` 9.3), so an offer the peer would refuse is refused
//! before it leaves, with the name and the rule.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::net::conversation::{OfferReport, Progress};
use crate::transfer::{Entry, Manifest, Verdict, describe};

/// What the user picked, as one offer.
pub struct Picked {
    /// The offer's files.
    pub manifest: Manifest,
    /// Where each is read.
    pub files: Vec<PathBuf>,
    /// What was left out (links and special files inside folders).
    pub skipped: Vec<PathBuf>,
}

/// The name a path is offered under: its last component, as UTF-8.
fn offered_name(path: &Path) -> Result<String, Error> {
    let name = match path.file_name() {
        Some(name) => name.to_os_string(),
        None => fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .ok_or_else(|| {
                Error::Input(format!("cannot send {}: it has no name", path.display()))
            })?,
    };
    name.into_string().map_err(|_| {
        Error::Input(format!(
            "cannot send {}: its name is not valid UTF-8",
            path.display()
        ))
    })
}

/// Turns the paths into one offer, or says which one cannot be sent.
pub fn pick(paths: &[PathBuf]) -> Result<Picked, Error> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        let metadata =
            fs::metadata(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        let name = offered_name(path)?;
        if metadata.is_file() {
            entries.push(Entry {
                path: vec![name],
                size: metadata.len(),
            });
            files.push(path.clone());
        } else if metadata.is_dir() {
            let before = entries.len();
            walk(path, vec![name], &mut entries, &mut files, &mut skipped)?;
            if entries.len() == before {
                return Err(Error::Input(format!(
                    "nothing to send in {}: the folder holds no files",
                    path.display()
                )));
            }
        } else {
            return Err(Error::Input(format!(
                "cannot send {}: not a regular file or folder",
                path.display()
            )));
        }
    }
    let manifest = Manifest::new(entries)
        .map_err(|e| Error::Input(format!("cannot offer these files: {e}")))?;
    Ok(Picked {
        manifest,
        files,
        skipped,
    })
}

fn walk(
    dir: &Path,
    prefix: Vec<String>,
    entries: &mut Vec<Entry>,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(Error::io(format!(
            "cannot read the folder {}",
            dir.display()
        )))?
        .collect::<Result<_, _>>()
        .map_err(Error::io(format!(
            "cannot read the folder {}",
            dir.display()
        )))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let kind = child
            .file_type()
            .map_err(Error::io(format!("cannot read {}", path.display())))?;
        let mut inner = prefix.clone();
        inner.push(offered_name(&path)?);
        if kind.is_file() {
            let size = child
                .metadata()
                .map_err(Error::io(format!("cannot read {}", path.display())))?
                .len();
            entries.push(Entry { path: inner, size });
            files.push(path);
        } else if kind.is_dir() {
            walk(&path, inner, entries, files, skipped)?;
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

/// A progress callback over a bar (shown only on a terminal).
pub fn progress_bar(
    total: u64,
    verb: &str,
) -> (Progress, Arc<Mutex<crate::app::progress::Progress>>) {
    let bar = Arc::new(Mutex::new(crate::app::progress::Progress::with_verb(
        total, verb,
    )));
    let for_callback = Arc::clone(&bar);
    let progress: Progress = Arc::new(move |done| {
        if let Ok(mut bar) = for_callback.lock() {
            bar.update(done);
        }
    });
    (progress, bar)
}

/// What became of an offer, in one line; `Ok` only if every file was saved.
pub fn outcome(manifest: &Manifest, report: &OfferReport, who: &str) -> Result<String, String> {
    let names = describe(manifest.entries());
    if let Some(reason) = report.rejected {
        return Err(format!("{who} rejected the files: {reason}"));
    }
    if let Some(error) = &report.unreadable {
        return Err(format!("cannot read {error}; the transfer was cancelled"));
    }
    let failed: Vec<String> = report
        .verdicts
        .iter()
        .zip(&names)
        .filter(|(v, _)| **v != Some(Verdict::Saved))
        .map(|(v, name)| match v {
            Some(verdict) => format!("{name}: {verdict}"),
            None => format!("{name}: not saved"),
        })
        .collect();
    if let Some((by_peer, reason)) = report.cancelled
        && !failed.is_empty()
    {
        let by = if by_peer { who } else { "we" };
        return Err(format!(
            "the transfer was cancelled ({by}: {reason}); {}",
            failed.join("; ")
        ));
    }
    if !report.finished {
        return Err(format!(
            "the conversation ended before {who} saved the files; {}",
            failed.join("; ")
        ));
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(format!(
        "{who} saved {} (SHA-256 verified).",
        super::offer_summary(manifest)
    ))
}

/// `chat send ADDR --file PATH...`: one offer of these files and folders;
/// exits 0 only once the peer's verdicts say every file was saved with
/// its SHA-256 verified.
pub(in crate::app) fn send_files(
    context: &crate::app::Context,
    args: &crate::cli::SendArgs,
) -> Result<(), Error> {
    use crate::app::output::json_event;
    use crate::app::peer::conclude;
    use crate::protocol::CloseReason;
    use serde_json::json;

    let picked = pick(&args.file)?;
    for path in &picked.skipped {
        eprintln!(
            "Leaving out {}: not a regular file or folder (links are not sent).",
            path.display()
        );
    }
    let (conversation, view, common) = crate::app::send::open(context, args)?;
    let sender = conversation.sender();
    let manifest = picked.manifest.clone();
    let (progress, bar) = progress_bar(manifest.total(), "sending");
    let who = view.lock().expect("peer view").label();
    let offered = sender.offer(picked.manifest, picked.files, progress);
    let result = match offered {
        Ok(id) => {
            if common.json {
                json_event(json!({"event": "file_offered", "offer": id}));
            }
            // Nothing more comes from us (docs/PROTOCOL.md, 8.4); the
            // offer's files still go.
            let _ = sender.done();
            let report = interruptible_wait(&sender, id);
            if let Ok(mut bar) = bar.lock() {
                bar.finish();
            }
            if common.json {
                json_event(json!({
                    "event": "file_outcome",
                    "offer": id,
                    "verdicts": report.verdicts.iter().map(|v| v.map(Verdict::code)).collect::<Vec<_>>(),
                    "saved": report.all_saved(),
                }));
            }
            outcome(&manifest, &report, &who)
        }
        Err(e) => Err(e.to_string()),
    };
    sender.close(CloseReason::Goodbye);
    let summary = conversation.wait();
    match result {
        Ok(line) => {
            eprintln!("{line}");
            conclude(&summary)
        }
        Err(problem) => {
            conclude(&summary)?;
            Err(Error::NotSaved(problem))
        }
    }
}

/// Waits for the offer's end; Ctrl-C cancels it (FILE_CANCEL) and then
/// waits for the peer's answer, so both ends know it was cancelled.
fn interruptible_wait(sender: &crate::net::conversation::Sender, id: u64) -> OfferReport {
    use std::sync::atomic::{AtomicBool, Ordering};
    let interrupted = Arc::new(AtomicBool::new(false));
    let registered =
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted));
    // The report comes through a channel, so that it is seen the moment it
    // is ready; the timeout only paces the check for Ctrl-C.
    let (done, report) = std::sync::mpsc::channel();
    {
        let sender = sender.clone();
        std::thread::spawn(move || done.send(sender.wait_offer(id)));
    }
    let mut cancelled = false;
    let report = loop {
        match report.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(report) => break report,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break OfferReport::default(),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !cancelled && interrupted.load(Ordering::SeqCst) {
            cancelled = true;
            eprintln!("Cancelling the transfer.");
            let _ = sender.cancel_offer(id);
        }
    };
    if let Ok(registered) = registered {
        signal_hook::low_level::unregister(registered);
    }
    report
}
