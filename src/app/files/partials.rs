//! Partial files (`docs/PROTOCOL.md` 9.9, `docs/FILES.md`): what arrived of
//! a file before it was complete, kept so that sending the same file again
//! resumes where it stopped.
//!
//! A partial lives at the top of the save folder, hidden, under a name
//! derived from the peer's key and the file's path in the offer:
//! `.chat-partial-` followed by 32 hex digits of SHA-256("chat partial v1",
//! the peer's key fingerprint, the path). So only the same peer sending the
//! same path finds it (a partial is never proposed to another peer), and
//! nothing in its name tells a reader whose it is or what it holds. It is
//! kept 24 hours after its last write, then swept away the next time this
//! folder receives files.

use std::io::Read;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::save_dir::SaveDir;
use crate::transfer::{FileHasher, Manifest};

/// How long a partial is kept after its last write.
pub const KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// What every partial's name starts with.
pub const PREFIX: &str = ".chat-partial-";

/// The partial file's name for `path` from the peer with this fingerprint.
pub fn name(peer: &str, path: &[String]) -> String {
    let mut sha = Sha256::new();
    sha.update(b"chat partial v1\0");
    sha.update(peer.as_bytes());
    for component in path {
        sha.update([0u8]);
        sha.update(component.as_bytes());
    }
    let digest = sha.finalize();
    let mut name = String::from(PREFIX);
    for byte in &digest[..16] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Deletes the partials not written for [`KEEP`].
pub fn sweep(save: &SaveDir) {
    for name in save.names_starting(PREFIX) {
        if save.age(&name).is_some_and(|age| age >= KEEP) {
            save.remove(&name);
        }
    }
}

/// The resume proposals for an offer: for each file of which a partial
/// from this peer is kept, with at least 1 byte and at most the file's
/// size, the hash of the partial's bytes.
pub fn proposals(save: &SaveDir, peer: &str, manifest: &Manifest) -> Vec<(u16, FileHasher)> {
    let mut proposals = Vec::new();
    for (i, entry) in manifest.entries().iter().enumerate() {
        let name = name(peer, &entry.path);
        let Some((mut file, len)) = save.read_partial(&name) else {
            continue;
        };
        if len == 0 || len > entry.size {
            continue;
        }
        if save.age(&name).is_some_and(|age| age >= KEEP) {
            save.remove(&name);
            continue;
        }
        let mut hasher = FileHasher::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut ok = true;
        while hasher.len() < len {
            let want = ((len - hasher.len()) as usize).min(buffer.len());
            match file.read(&mut buffer[..want]) {
                Ok(0) => {
                    ok = false;
                    break;
                }
                Ok(n) => hasher.update(&buffer[..n]),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && let Ok(entry) = u16::try_from(i) {
            proposals.push((entry, hasher));
        }
    }
    proposals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_on_peer_and_path_only() {
        let a = name("SHA256:a", &["x".into(), "y".into()]);
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 32);
        assert_eq!(a, name("SHA256:a", &["x".into(), "y".into()]));
        assert_ne!(a, name("SHA256:b", &["x".into(), "y".into()]));
        assert_ne!(a, name("SHA256:a", &["xy".into()]));
    }
}
