//! Helpers shared by the integration tests: temporary homes and running the binary.
#![allow(dead_code)] // Each test crate uses its own subset.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's fixed test keys.
pub fn fixture_key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/vectors/keys")
        .join(format!("{name}.pem"))
}

/// A temporary state folder for one side of a test.
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    /// An empty home (the folder exists, nothing in it).
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    /// A home whose identity is the fixed key `docs/vectors/keys/NAME.pem`.
    pub fn with_identity(name: &str) -> Self {
        let home = Self::empty();
        let path = home.file("identity.pem");
        fs::copy(fixture_key(name), &path).expect("copy fixture key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        home
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `chat --home HOME`, with no terminal and no inherited `CHAT_HOME`.
    pub fn chat(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .arg("--home")
            .arg(self.path())
            .env_remove("CHAT_HOME")
            .stdin(Stdio::null());
        command
    }

    /// Runs `chat --home HOME ARGS...`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        Outcome::of(self.chat().args(args).output().expect("run chat"))
    }

    /// Runs `chat` with this home mounted read-only (a private mount namespace
    /// when we are root, whom permission bits do not stop; `chmod` otherwise).
    pub fn run_read_only(&self, args: &[&str]) -> Outcome {
        let home = self.path().to_str().unwrap();
        if is_root() {
            let script =
                r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#;
            let output = Command::new("unshare")
                .args([
                    "-m",
                    "sh",
                    "-c",
                    script,
                    "sh",
                    home,
                    env!("CARGO_BIN_EXE_chat"),
                    "--home",
                    home,
                ])
                .args(args)
                .env_remove("CHAT_HOME")
                .stdin(Stdio::null())
                .output()
                .expect("unshare (util-linux) runs the read-only test as root");
            Outcome::of(output)
        } else {
            let original = fs::metadata(self.path()).unwrap().permissions();
            fs::set_permissions(self.path(), fs::Permissions::from_mode(0o500)).unwrap();
            let outcome = self.run(args);
            fs::set_permissions(self.path(), original).unwrap();
            outcome
        }
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0")
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output as text.
    pub stdout: String,
    /// Standard error as text.
    pub stderr: String,
}

impl Outcome {
    pub fn of(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns standard output.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with `code`, and that standard error contains every needle.
    #[track_caller]
    pub fn fails(&self, code: i32, needles: &[&str]) -> &str {
        assert_eq!(self.code, Some(code), "expected exit {code}: {self:#?}");
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}: {self:#?}"
            );
        }
        &self.stderr
    }
}

/// A snapshot of a file's bytes, to prove a failed command left it alone.
pub struct Unchanged {
    path: PathBuf,
    bytes: Option<Vec<u8>>,
}

impl Unchanged {
    pub fn watch(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let bytes = fs::read(&path).ok();
        Self { path, bytes }
    }

    #[track_caller]
    pub fn check(&self) {
        assert_eq!(
            fs::read(&self.path).ok(),
            self.bytes,
            "{} changed",
            self.path.display()
        );
    }
}
