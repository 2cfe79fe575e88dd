//! The text of `known_peers.toml`: reading it within its size limit,
//! decoding it one `[[peer]]` table at a time, and editing it under its
//! lock (appending as text where it can, otherwise through `toml_edit`, so
//! that the user's comments and layout survive). What the entries mean,
//! and the look-ups, are in the parent module's [`KnownPeers`].

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use super::{FILE_LIMIT_MIB, KnownPeers, NewPeer, TrustError};
use crate::files::{self, LockFile, ReadOutcome};

/// The first lines of a new `known_peers.toml`.
pub(super) const NEW_FILE_HEADER: &str = "\
# Peers whose keys this chat user has pinned. See docs/FILES.md.
# Remove an entry with `chat peers forget NAME`.
";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileModel {
    #[serde(default)]
    pub(super) peer: Vec<Spanned<EntryModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntryModel {
    pub(super) name: Spanned<String>,
    pub(super) fingerprint: Spanned<String>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) added: Datetime,
    pub(super) comment: Option<String>,
}

/// Byte offsets to 1-based line numbers, by binary search in the offsets
/// where lines start (one pass over the text, then O(log n) a look-up).
pub(super) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Self(starts)
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        // The number of line starts at or before `offset`.
        self.0.partition_point(|&start| start <= offset)
    }
}

/// A file with nothing but comments before its first `[[peer]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Preamble {}

/// Decodes a store one `[[peer]]` table at a time, each with the offset of
/// its piece of the text; `None` if any piece does not decode alone (the
/// caller then decodes the whole text, which also finds the error).
///
/// This gives what decoding the whole text gives, at a fraction of the
/// cost in time and memory: the text is cut only before lines that are
/// exactly `[[peer]]`, which start a new table unless they sit inside a
/// multi-line string, array or inline table, and then the piece before
/// them does not decode alone. The piece before the first `[[peer]]` may
/// hold no key at all (a `peer = [...]` there could not be extended by
/// the tables after it).
pub(super) fn decode_by_entry(text: &str) -> Option<Vec<(usize, Spanned<EntryModel>)>> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "[[peer]]" {
            starts.push(offset);
        }
        offset += line.len();
    }
    let first = *starts.first()?;
    toml::from_str::<Preamble>(&text[..first]).ok()?;
    let mut entries = Vec::with_capacity(starts.len());
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    for (start, end) in starts.iter().copied().zip(ends) {
        let piece: FileModel = toml::from_str(&text[start..end]).ok()?;
        entries.extend(piece.peer.into_iter().map(|entry| (start, entry)));
    }
    Some(entries)
}

pub(super) enum Change {
    /// Add this entry at the end.
    Append(NewPeer),
    /// Remove the entry at this index, with the comments above it.
    Remove(usize),
}

/// `new` as a `[[peer]]` table.
pub(super) fn entry_table(new: &NewPeer) -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table["name"] = toml_edit::value(new.name.as_str());
    table["fingerprint"] = toml_edit::value(new.fingerprint.to_string());
    if let Some(address) = &new.address {
        let mut addresses = toml_edit::Array::new();
        addresses.push(address.to_string());
        table["addresses"] = toml_edit::value(addresses);
    }
    table["added"] = toml_edit::value(now());
    if let Some(comment) = &new.comment {
        table["comment"] = toml_edit::value(comment.as_str());
    }
    table
}

/// The text of a store with `new` appended, written as the document editor
/// writes it (a blank line, then the table), without decoding the whole
/// store into an editable document: an append to a store of 100,000
/// entries costs a read-back, not hundreds of megabytes. `None` when the
/// result does not read back as the old entries and `new` (a store whose
/// entries are not `[[peer]]` tables, say); the caller then edits the
/// document.
pub(super) fn appended(
    path: &Path,
    text: &str,
    current: &KnownPeers,
    new: &NewPeer,
) -> Option<(String, KnownPeers)> {
    let mut tables = toml_edit::ArrayOfTables::new();
    tables.push(entry_table(new));
    let mut one = toml_edit::DocumentMut::new();
    one.insert("peer", toml_edit::Item::ArrayOfTables(tables));
    let entry = one.to_string();
    let new_text = if text.trim().is_empty() {
        format!("{NEW_FILE_HEADER}\n{entry}")
    } else if text.ends_with("\n\n") {
        format!("{text}{entry}")
    } else if text.ends_with('\n') {
        format!("{text}\n{entry}")
    } else {
        format!("{text}\n\n{entry}")
    };
    let written = KnownPeers::parse(path, &new_text).ok()?;
    let last = written.peers().last()?;
    let same = written.peers().len() == current.peers().len() + 1
        && last.name == new.name
        && last.fingerprint == new.fingerprint
        && last.addresses.as_slice() == new.address.as_slice()
        && last.comment == new.comment;
    same.then_some((new_text, written))
}

pub(super) fn now() -> Datetime {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .parse()
        .expect("RFC 3339 is TOML datetime syntax")
}

pub(super) fn read_text(path: &Path) -> Result<String, TrustError> {
    let io_error = |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    match files::read_bounded(path, FILE_LIMIT_MIB * 1024 * 1024).map_err(io_error)? {
        ReadOutcome::Missing => Ok(String::new()),
        ReadOutcome::TooLarge => Err(TrustError::TooLarge {
            path: path.to_path_buf(),
            limit_mib: FILE_LIMIT_MIB,
        }),
        ReadOutcome::Contents(bytes) => String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            TrustError::Malformed {
                path: path.to_path_buf(),
                line: LineIndex::new(&text).line_of(offset),
                message: "not UTF-8 text".into(),
            }
        }),
    }
}

/// The `[[peer]]` array of a document whose decoded form is `current`.
pub(super) fn peer_tables<'d>(
    current: &KnownPeers,
    doc: &'d mut toml_edit::DocumentMut,
) -> Result<&'d mut toml_edit::ArrayOfTables, TrustError> {
    let item = doc
        .entry("peer")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()));
    item.as_array_of_tables_mut()
        .ok_or_else(|| TrustError::Malformed {
            path: current.path.clone(),
            line: 1,
            message: "peers must be written as [[peer]] tables to be edited by chat".into(),
        })
}

/// Read-modify-write under the lock file. `change` sees the decoded store
/// and says what to change; nothing is written unless it succeeds and the
/// new text reads back.
pub(super) fn edit(
    path: &Path,
    change: impl FnOnce(&KnownPeers) -> Result<Change, TrustError>,
) -> Result<KnownPeers, TrustError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrustError::Io { path, source }
    };
    let lock_path = path.with_extension("toml.lock");
    let _lock = LockFile::acquire(&lock_path).map_err(io_error(&lock_path))?;
    let text = read_text(path)?;
    let current = KnownPeers::parse(path, &text)?;
    let change = change(&current)?;
    let fast = match &change {
        Change::Append(new) => appended(path, &text, &current, new),
        Change::Remove(_) => None,
    };
    let (new_text, written) = match fast {
        Some(done) => done,
        None => {
            let new_text = edit_document(path, &text, &current, &change)?;
            // Never write what we could not read back.
            let written = KnownPeers::parse(path, &new_text)?;
            (new_text, written)
        }
    };
    if new_text.len() as u64 > FILE_LIMIT_MIB * 1024 * 1024 {
        return Err(TrustError::TooLarge {
            path: path.to_path_buf(),
            limit_mib: FILE_LIMIT_MIB,
        });
    }
    files::write_atomically(path, new_text.as_bytes()).map_err(io_error(path))?;
    Ok(written)
}

/// The text of the store after `change`, made with the document editor,
/// which keeps the user's comments and layout.
pub(super) fn edit_document(
    path: &Path,
    text: &str,
    current: &KnownPeers,
    change: &Change,
) -> Result<String, TrustError> {
    let is_new = text.trim().is_empty();
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| TrustError::Malformed {
                path: path.to_path_buf(),
                line: 1,
                message: e.to_string(),
            })?;
    match change {
        Change::Append(new) => peer_tables(current, &mut doc)?.push(entry_table(new)),
        Change::Remove(index) => {
            peer_tables(current, &mut doc)?.remove(*index);
        }
    }
    let mut new_text = if is_new {
        format!("{NEW_FILE_HEADER}\n{doc}")
    } else {
        doc.to_string()
    };
    if !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    Ok(new_text)
}
