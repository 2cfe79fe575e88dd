//! An offer's manifest (`docs/PROTOCOL.md`, 9.2 and 9.3): the files it
//! carries, each a path of one or more names and a size, checked as a
//! whole. The sender builds one from what its user picked and the receiver
//! rebuilds it from FILE_OFFER; both apply the same rules, so an offer that
//! a receiver would refuse is refused before it leaves.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::name::{NameError, check_name};
use crate::protocol::{MAX_OFFER_ENTRIES, MAX_PATH_DEPTH, MAX_RECORD_PLAINTEXT};
use crate::sanitize::one_line;
use crate::wire::file::{Entry, Offer};

/// The files of one offer, valid as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
    total: u64,
}

/// Why a set of files cannot be one offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// No files.
    Empty,
    /// More than 4096 files: send them as several offers.
    TooManyEntries(usize),
    /// A path of no component or more than 32.
    BadDepth {
        /// The entry.
        entry: usize,
        /// Its depth.
        depth: usize,
    },
    /// A name in a path breaks a name rule.
    UnsafeName {
        /// The entry.
        entry: usize,
        /// The path, as received.
        path: Vec<String>,
        /// Which rule.
        problem: NameError,
    },
    /// Two entries have the same path, ignoring case.
    Duplicate {
        /// The later entry.
        entry: usize,
        /// The path.
        path: Vec<String>,
    },
    /// An entry's path is a folder of another entry's path.
    FileAndFolder {
        /// The entry whose path is also a folder.
        entry: usize,
        /// The path.
        path: Vec<String>,
    },
    /// The sizes add up to more than 2^64 - 1.
    TooLarge,
    /// The FILE_OFFER would not fit one record (262 144 bytes).
    TooLongToSend(usize),
}

/// A path for display: names joined by `/`, each made safe to print.
fn show(path: &[String]) -> String {
    path.iter()
        .map(|name| one_line(name))
        .collect::<Vec<_>>()
        .join("/")
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("there are no files to offer"),
            Self::TooManyEntries(n) => write!(
                f,
                "{n} files are more than one offer may carry ({MAX_OFFER_ENTRIES})"
            ),
            Self::BadDepth { depth, .. } => write!(
                f,
                "a path of {depth} names; 1 to {MAX_PATH_DEPTH} are allowed"
            ),
            Self::UnsafeName { path, problem, .. } => {
                write!(f, "unsafe name in {}: {problem}", show(path))
            }
            Self::Duplicate { path, .. } => write!(
                f,
                "{} appears twice (names that differ only in case are the same file on many systems)",
                show(path)
            ),
            Self::FileAndFolder { path, .. } => {
                write!(f, "{} is both a file and a folder", show(path))
            }
            Self::TooLarge => f.write_str("the sizes add up to more than 2^64 - 1 bytes"),
            Self::TooLongToSend(len) => write!(
                f,
                "the list of files takes {len} bytes, more than one record holds \
                 ({MAX_RECORD_PLAINTEXT}); send them as several offers"
            ),
        }
    }
}

impl Manifest {
    /// Checks `entries` as one offer: 1 to 4096 files; each path of 1 to
    /// 32 names that pass [`check_name`]; no two paths the same, nor one a
    /// folder of another, when compared without case; sizes that add up;
    /// and a FILE_OFFER that fits one record.
    pub fn new(entries: Vec<Entry>) -> Result<Self, ManifestError> {
        if entries.is_empty() {
            return Err(ManifestError::Empty);
        }
        if entries.len() > MAX_OFFER_ENTRIES {
            return Err(ManifestError::TooManyEntries(entries.len()));
        }
        let mut total = 0u64;
        for (i, entry) in entries.iter().enumerate() {
            if !(1..=MAX_PATH_DEPTH).contains(&entry.path.len()) {
                return Err(ManifestError::BadDepth {
                    entry: i,
                    depth: entry.path.len(),
                });
            }
            for name in &entry.path {
                check_name(name).map_err(|problem| ManifestError::UnsafeName {
                    entry: i,
                    path: entry.path.clone(),
                    problem,
                })?;
            }
            total = total
                .checked_add(entry.size)
                .ok_or(ManifestError::TooLarge)?;
        }
        check_collisions(&entries)?;
        let manifest = Self { entries, total };
        let len = manifest.to_offer(0).encoded_len();
        if len > MAX_RECORD_PLAINTEXT {
            return Err(ManifestError::TooLongToSend(len));
        }
        Ok(manifest)
    }

    /// The files, in the order they travel.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never: a manifest has at least one file.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of the sizes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The distinct first names of the paths, in order: the files and
    /// folders the user picked.
    pub fn top_level(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .map(|e| e.path[0].as_str())
            .filter(|name| seen.insert(*name))
            .collect()
    }

    /// The FILE_OFFER body for this manifest.
    pub(crate) fn to_offer(&self, id: u64) -> Offer {
        Offer {
            id,
            entries: self.entries.clone(),
        }
    }
}

/// No two paths equal, nor one a folder of another, compared without case
/// (Unicode lowercase of each name).
fn check_collisions(entries: &[Entry]) -> Result<(), ManifestError> {
    let key = |path: &[String]| -> Vec<String> { path.iter().map(|n| n.to_lowercase()).collect() };
    let mut files: HashMap<Vec<String>, usize> = HashMap::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if files.insert(key(&entry.path), i).is_some() {
            return Err(ManifestError::Duplicate {
                entry: i,
                path: entry.path.clone(),
            });
        }
    }
    let mut folders: HashSet<Vec<String>> = HashSet::new();
    for entry in entries {
        let path = key(&entry.path);
        for depth in 1..path.len() {
            if !folders.insert(path[..depth].to_vec()) {
                continue;
            }
            if let Some(&file) = files.get(&path[..depth]) {
                return Err(ManifestError::FileAndFolder {
                    entry: file,
                    path: entries[file].path.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            size,
        }
    }

    fn manifest(paths: &[&str]) -> Result<Manifest, ManifestError> {
        Manifest::new(paths.iter().map(|p| entry(p, 1)).collect())
    }

    #[test]
    fn a_folder_send_is_checked_as_a_whole() {
        let ok = manifest(&[
            "report.pdf",
            "photos/a.jpg",
            "photos/2024/b.jpg",
            "photos/2024/c.jpg",
        ])
        .unwrap();
        assert_eq!(ok.len(), 4);
        assert_eq!(ok.total(), 4);
        assert_eq!(ok.top_level(), ["report.pdf", "photos"]);
        let refusals: &[(&[&str], &str)] = &[
            (&[], "Empty"),
            (&["a", "a"], "Duplicate"),
            (&["README", "readme"], "Duplicate"),
            (&["Été/x", "été/x"], "Duplicate"),
            (&["photos", "photos/a.jpg"], "FileAndFolder"),
            (&["Photos/a/b", "photos/A"], "FileAndFolder"),
            (&["ok/../etc/passwd"], "UnsafeName"),
            (&["ok/./x"], "UnsafeName"),
            (&["ok//x"], "UnsafeName"),
            (&["ok/CON/x"], "UnsafeName"),
            (&["ok/a\u{202E}b"], "UnsafeName"),
            (&["ok/b\\c"], "UnsafeName"),
        ];
        for (paths, kind) in refusals {
            let error = manifest(paths).unwrap_err();
            assert!(
                format!("{error:?}").starts_with(kind),
                "{paths:?}: {error:?}, expected {kind}"
            );
        }
        let deep = vec!["d"; 33].join("/");
        assert!(matches!(
            manifest(&[&deep]),
            Err(ManifestError::BadDepth { depth: 33, .. })
        ));
        assert!(manifest(&[&vec!["d"; 32].join("/")]).is_ok());
        assert!(matches!(
            Manifest::new(vec![Entry {
                path: vec![],
                size: 0
            }]),
            Err(ManifestError::BadDepth { depth: 0, .. })
        ));
    }

    #[test]
    fn limits_on_count_size_and_encoding() {
        let many: Vec<String> = (0..4097).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(manifest(&refs[..4096]).is_ok());
        assert_eq!(
            manifest(&refs).unwrap_err(),
            ManifestError::TooManyEntries(4097)
        );
        assert_eq!(
            Manifest::new(vec![entry("a", u64::MAX), entry("b", 1)]).unwrap_err(),
            ManifestError::TooLarge
        );
        // 4096 entries of 4 names of 30 bytes: 4096 * (9 + 4 * 31) bytes.
        let long: Vec<Entry> = (0..4096)
            .map(|i| Entry {
                path: (0..4)
                    .map(|j| format!("{i:05}-{j}-{}", "x".repeat(22)))
                    .collect(),
                size: 0,
            })
            .collect();
        assert!(matches!(
            Manifest::new(long),
            Err(ManifestError::TooLongToSend(len)) if len == 10 + 4096 * (9 + 4 * 31)
        ));
    }

    /// The manifests of `docs/vectors/names.toml`.
    #[test]
    fn the_shared_manifest_vectors() {
        let file: toml::Table = include_str!("../../docs/vectors/names.toml")
            .parse()
            .unwrap();
        for entry in file["manifest"].as_array().unwrap() {
            let paths: Vec<&str> = entry["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            let problem = match manifest(&paths) {
                Ok(_) => "",
                Err(ManifestError::Duplicate { .. }) => "duplicate",
                Err(ManifestError::FileAndFolder { .. }) => "file-and-folder",
                Err(other) => panic!("{paths:?}: {other:?}"),
            };
            assert_eq!(problem, entry["problem"].as_str().unwrap(), "{paths:?}");
        }
    }

    #[test]
    fn errors_show_paths_safely() {
        let error = manifest(&["dir/a\u{1b}[2Jb"]).unwrap_err();
        let text = error.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.starts_with("unsafe name in dir/a^[[2Jb: "), "{text}");
    }
}
