//! The folder where received files are saved, held open as a directory
//! handle: every file is created, renamed and deleted relative to it
//! (`openat`, `renameat2`, `unlinkat`), never through a path that a link
//! could redirect, and nothing already there is replaced or followed.
//!
//! A file arrives into a hidden partial file at the top of the folder
//! (see `partials.rs`); once its SHA-256 matched it is flushed to disk and
//! renamed to its final name with `RENAME_NOREPLACE`. A name already taken
//! becomes "name (1).ext", then "(2)", and so on; for a folder sent whole,
//! its outermost folder is the one renamed, so that its files stay together.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

/// How many numbered names are tried before giving up ("name (99).ext").
const MAX_NUMBERED: u32 = 99;

/// Why a complete file could not be given its name.
#[derive(Debug)]
pub enum PlaceError {
    /// Something already there stands in the way (a file where a folder of
    /// its path must be, or every numbered name taken).
    NameTaken,
    /// Writing or renaming failed.
    Io(io::Error),
}

/// The save folder, open.
pub struct SaveDir {
    dir: OwnedFd,
    path: PathBuf,
}

fn to_io(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl SaveDir {
    /// Opens the folder (which must exist).
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(to_io)?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Opens the partial file `name` at the top of the folder for writing,
    /// keeping its first `keep` bytes (creating it if `keep` is 0), and
    /// positioned after them. Refuses a link or anything not a plain file.
    pub fn open_partial(&self, name: &str, keep: u64) -> io::Result<File> {
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if keep == 0 {
            flags |= OFlags::TRUNC;
        }
        let fd = rustix::fs::openat(&self.dir, name, flags, Mode::from_raw_mode(0o600))
            .map_err(to_io)?;
        let file = File::from(fd);
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(io::Error::other(format!("{name} is not a plain file")));
        }
        if metadata.len() < keep {
            return Err(io::Error::other(format!(
                "the partial file {name} is shorter than the resume offset"
            )));
        }
        file.set_len(keep)?;
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(keep))?;
        Ok(file)
    }

    /// Opens the partial file `name` for reading, if it is there and a
    /// plain file; with its length and when it was last written.
    pub fn read_partial(&self, name: &str) -> Option<(File, u64)> {
        let fd = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let file = File::from(fd);
        let metadata = file.metadata().ok()?;
        let len = metadata.len();
        metadata.is_file().then_some((file, len))
    }

    /// Deletes the file `name` at the top of the folder, if it is there.
    pub fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
    }

    /// The names at the top of the folder that start with `prefix`.
    pub fn names_starting(&self, prefix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Seconds since the file `name` at the top was last written.
    pub fn age(&self, name: &str) -> Option<std::time::Duration> {
        let stat = rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let modified = std::time::UNIX_EPOCH
            + std::time::Duration::new(stat.st_mtime as u64, stat.st_mtime_nsec as u32);
        std::time::SystemTime::now().duration_since(modified).ok()
    }

    /// Gives the partial file `partial` its final `path` (the names of an
    /// offer's entry), never replacing anything. `tops` maps the outermost
    /// names of this offer's folders to the folders made for them, so that
    /// the files of one folder go to the same place. Returns the path used,
    /// relative to the save folder.
    pub fn place(
        &self,
        partial: &str,
        path: &[String],
        tops: &mut HashMap<String, String>,
    ) -> Result<PathBuf, PlaceError> {
        let (last, folders) = path.split_last().expect("a path has a name");
        if folders.is_empty() {
            for candidate in numbered_names(last) {
                match rustix::fs::renameat_with(
                    &self.dir,
                    partial,
                    &self.dir,
                    candidate.as_str(),
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => return Ok(PathBuf::from(candidate)),
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(e) => return Err(PlaceError::Io(to_io(e))),
                }
            }
            return Err(PlaceError::NameTaken);
        }
        // The outermost folder: made new for this offer, numbered if taken.
        let top = match tops.get(&folders[0]) {
            Some(top) => top.clone(),
            None => {
                let mut made = None;
                for candidate in numbered_names(&folders[0]) {
                    match rustix::fs::mkdirat(
                        &self.dir,
                        candidate.as_str(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) => {
                            made = Some(candidate);
                            break;
                        }
                        Err(rustix::io::Errno::EXIST) => continue,
                        Err(e) => return Err(PlaceError::Io(to_io(e))),
                    }
                }
                let made = made.ok_or(PlaceError::NameTaken)?;
                tops.insert(folders[0].clone(), made.clone());
                made
            }
        };
        let mut relative = PathBuf::from(&top);
        let mut dir = self.open_subdir(&self.dir, &top)?;
        for name in &folders[1..] {
            match rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(PlaceError::Io(to_io(e))),
            }
            dir = self.open_subdir(&dir, name)?;
            relative.push(name);
        }
        match rustix::fs::renameat_with(
            &self.dir,
            partial,
            &dir,
            last.as_str(),
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                relative.push(last);
                Ok(relative)
            }
            Err(rustix::io::Errno::EXIST) => Err(PlaceError::NameTaken),
            Err(e) => Err(PlaceError::Io(to_io(e))),
        }
    }

    /// Writes what `source` yields to a new file `name` at the top of the
    /// folder the same way as a received file: into a hidden partial,
    /// flushed to disk, then renamed without replacing anything. With
    /// `numbered`, a taken name becomes "name (1).ext" and so on; without,
    /// it is refused. Nothing is left behind on failure. Returns the name
    /// used and the bytes written.
    pub fn write_new(
        &self,
        name: &str,
        source: &mut dyn io::Read,
        numbered: bool,
    ) -> Result<(String, u64), PlaceError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let partial = format!(
            ".chat-save-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let result = (|| {
            let mut file = self.open_partial(&partial, 0).map_err(PlaceError::Io)?;
            let written = io::copy(source, &mut file).map_err(PlaceError::Io)?;
            file.sync_all().map_err(PlaceError::Io)?;
            let candidates: Vec<String> = if numbered {
                numbered_names(name).collect()
            } else {
                vec![name.to_string()]
            };
            for candidate in candidates {
                match rustix::fs::renameat_with(
                    &self.dir,
                    partial.as_str(),
                    &self.dir,
                    candidate.as_str(),
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => return Ok((candidate, written)),
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(e) => return Err(PlaceError::Io(to_io(e))),
                }
            }
            Err(PlaceError::NameTaken)
        })();
        if result.is_err() {
            self.remove(&partial);
        }
        result
    }

    /// Opens a folder inside `parent`, refusing a link or a file there.
    fn open_subdir(&self, parent: &OwnedFd, name: &str) -> Result<OwnedFd, PlaceError> {
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => PlaceError::NameTaken,
            e => PlaceError::Io(to_io(e)),
        })
    }
}

/// `name`, then "name (1).ext", "name (2).ext", ... (the number goes before
/// the last extension; a name that starts with its only dot, such as
/// ".profile", has no extension). Names that would be longer than 255
/// bytes are skipped.
pub fn numbered_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.rfind('.') {
        Some(0) | None => (name, ""),
        Some(i) => name.split_at(i),
    };
    std::iter::once(name.to_string())
        .chain((1..=MAX_NUMBERED).map(move |n| format!("{stem} ({n}){ext}")))
        .filter(|n| n.len() <= 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_of_a_file_and_a_folder() {
        let names: Vec<String> = numbered_names("report.pdf").take(3).collect();
        assert_eq!(names, ["report.pdf", "report (1).pdf", "report (2).pdf"]);
        let names: Vec<String> = numbered_names(".profile").take(2).collect();
        assert_eq!(names, [".profile", ".profile (1)"]);
        let names: Vec<String> = numbered_names("archive.tar.gz").take(2).collect();
        assert_eq!(names, ["archive.tar.gz", "archive.tar (1).gz"]);
        let names: Vec<String> = numbered_names("photos").take(2).collect();
        assert_eq!(names, ["photos", "photos (1)"]);
    }

    #[test]
    fn placing_never_replaces_and_numbers_taken_names() {
        let folder = tempfile::tempdir().unwrap();
        let save = SaveDir::open(folder.path()).unwrap();
        std::fs::write(folder.path().join("a.txt"), "old").unwrap();
        for text in ["one", "two"] {
            let mut partial = save.open_partial(".p", 0).unwrap();
            io::Write::write_all(&mut partial, text.as_bytes()).unwrap();
            let placed = save
                .place(".p", &["a.txt".into()], &mut HashMap::new())
                .unwrap();
            assert_eq!(
                std::fs::read_to_string(folder.path().join(placed)).unwrap(),
                text
            );
        }
        assert_eq!(
            std::fs::read_to_string(folder.path().join("a.txt")).unwrap(),
            "old"
        );
        assert!(folder.path().join("a (2).txt").exists());
        // A folder: the outermost one is new, numbered if taken.
        std::fs::create_dir(folder.path().join("photos")).unwrap();
        let mut tops = HashMap::new();
        for name in ["x.jpg", "y.jpg"] {
            save.open_partial(".p", 0).unwrap();
            let placed = save
                .place(
                    ".p",
                    &["photos".into(), "2024".into(), name.into()],
                    &mut tops,
                )
                .unwrap();
            assert_eq!(placed, Path::new("photos (1)/2024").join(name));
        }
        // A link where a folder would go is not followed.
        std::os::unix::fs::symlink("/tmp", folder.path().join("link")).unwrap();
        save.open_partial(".p", 0).unwrap();
        let mut tops = HashMap::from([("link".to_string(), "link".to_string())]);
        assert!(matches!(
            save.place(".p", &["link".into(), "z".into()], &mut tops),
            Err(PlaceError::NameTaken)
        ));
    }
}
