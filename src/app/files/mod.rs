//! Files that arrive as files (`docs/PROTOCOL.md` section 9, `docs/FILES.md`):
//! what we offer (`send.rs`: files and folders picked by the user, read at
//! the edge), and what we receive (`receive.rs`: consent, partial files,
//! the save folder).
//!
//! * `save_dir.rs`: the save folder as a directory handle; final names,
//!   never replacing anything.
//! * `partials.rs`: partial files kept for a resume, and their expiry.
//! * `writer.rs`: a partial file written on a thread of its own.

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
    let size = human_size(manifest.total());
    if manifest.len() == 1 {
        // One file: its full path (a file inside a folder shows the folder).
        let name = describe(manifest.entries()).remove(0);
        format!("{name} ({size})")
    } else {
        format!("{names} ({} files, {size})", manifest.len())
    }
}
