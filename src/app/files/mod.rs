//! Files that arrive as files (`docs/PROTOCOL.md` section 9, `docs/FILES.md`):
//! what we offer (`send.rs`: files and folders picked by the user, read at
//! the edge), and what we receive (`receive.rs`: consent, partial files,
//! the save folder).
//!
//! * `save_dir.rs`: the save folder as a directory handle; final names,
//!   never replacing anything.
//! * `partials.rs`: partial files kept for a resume, and their expiry.
//! * `writer.rs`: a partial file written straight to the disk (`O_DIRECT`,
//!   from aligned buffers, a thread handing them over), or through the
//!   page cache with writeback as it grows where the file system refuses.

mod partials;
pub mod receive;
pub mod save_dir;
pub mod send;
mod writer;

use indicatif::HumanBytes;

use crate::transfer::{Manifest, describe};

/// A size for people: "2.1 MiB".
pub fn human_size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// An offer in a few words, its names neutralised: "report.pdf (2.1 MiB)",
/// "photos (12 files, 30 MiB)", "a.txt, b.txt (2 files, 3 B)".
pub fn offer_summary(manifest: &Manifest) -> String {
    let size = human_size(manifest.total());
    match names(manifest) {
        (name, None) => format!("{name} ({size})"),
        (names, Some(count)) => format!("{names} ({count} files, {size})"),
    }
}

/// An offer's names, neutralised, without sizes: "report.pdf",
/// "photos (12 files)".
pub fn offer_names(manifest: &Manifest) -> String {
    match names(manifest) {
        (name, None) => name,
        (names, Some(count)) => format!("{names} ({count} files)"),
    }
}

/// The names an offer is shown by, and how many files it holds if more
/// than one.
fn names(manifest: &Manifest) -> (String, Option<usize>) {
    if manifest.len() == 1 {
        // One file: its full path (a file inside a folder shows the folder).
        return (describe(manifest.entries()).remove(0), None);
    }
    let tops = manifest.top_level();
    let shown: Vec<String> = tops
        .iter()
        .take(3)
        .map(|t| crate::sanitize::one_line(t))
        .collect();
    let mut names = shown.join(", ");
    if tops.len() > 3 {
        names.push_str(&format!(" and {} more", tops.len() - 3));
    }
    (names, Some(manifest.len()))
}
