//! Helpers shared by the integration tests: temporary homes and running the binary.
#![allow(dead_code)] // Each test crate uses its own subset.

pub mod hostile;
pub mod mitm;
pub mod pty;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The message [`TestHome::run`] gives `chat send` on standard input.
pub const MESSAGE: &str = "hello from the test\n";

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

    /// Runs `chat --home HOME ARGS...` with one line, [`MESSAGE`], on
    /// standard input: the message for `chat send` (which refuses an empty
    /// one). The other commands run here do not read it.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_input(args, MESSAGE.as_bytes())
    }

    /// Runs `chat --home HOME ARGS...` with the file `path` as standard
    /// input (a regular file: `chat send` streams it).
    pub fn run_with_stdin_file(&self, args: &[&str], path: &Path) -> Outcome {
        let file = std::fs::File::open(path).expect("open the input file");
        Outcome::of(
            self.chat()
                .args(args)
                .stdin(Stdio::from(file))
                .output()
                .expect("run chat"),
        )
    }

    /// Runs `chat --home HOME ARGS...` with `input` on standard input.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Outcome {
        let mut child = self
            .chat()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chat");
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.to_vec();
        // A chat that exits without reading all of it closes the pipe.
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
        let output = child.wait_with_output().expect("run chat");
        writer.join().unwrap();
        Outcome::of(output)
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

/// A `chat` process running in the background, its output collected as it
/// comes. Killed when dropped.
pub struct Running {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut source: impl std::io::Read + Send + 'static,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    std::thread::JoinHandle<()>,
) {
    let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = std::sync::Arc::clone(&sink);
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => writer.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    (sink, handle)
}

impl Running {
    /// Starts `command` with standard output and error captured. Standard
    /// input is whatever the command was given (null by default).
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat");
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// As [`spawn`](Self::spawn), with standard output going to `stdout`
    /// (a file, a pipe the test holds), not collected.
    pub fn spawn_with_stdout(mut command: Command, stdout: Stdio) -> Self {
        let mut child = command
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat");
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout: std::sync::Arc::default(),
            stderr,
            readers: vec![err_reader],
        }
    }

    /// As [`spawn`](Self::spawn), with standard output thrown away.
    pub fn spawn_discarding_stdout(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat");
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout: std::sync::Arc::default(),
            stderr,
            readers: vec![err_reader],
        }
    }

    /// The child's standard input, if it was piped.
    pub fn stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("stdin was piped")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Standard output so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until standard error contains `needle`.
    #[track_caller]
    pub fn wait_for_stderr(&self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} on stderr within {timeout:?}: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The port of a `chat serve` started with `--listen 127.0.0.1:0`, from
    /// its first line.
    pub fn port(&self) -> u16 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            let text = self.stderr();
            if text.contains('\n') {
                break text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chat serve printed no first line: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("listening on "), "first line: {first}");
        first.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Waits for the process to exit (killing it after `timeout`, which fails
    /// the test) and returns what it printed.
    #[track_caller]
    pub fn finish(mut self, timeout: std::time::Duration) -> Outcome {
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "chat did not exit within {timeout:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        Outcome {
            code: status.code(),
            stdout: String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chat serve` as "bob" on a free loopback port, with `extra` arguments;
/// the caller sets its environment and input and starts it.
pub fn serve_command(home: &TestHome, extra: &[&str]) -> Command {
    let mut command = home.chat();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--name", "bob"])
        .args(extra);
    command
}

/// `chat serve --once` on a free loopback port, with `extra` arguments.
pub fn serve(home: &TestHome, extra: &[&str], stdin: Stdio) -> Running {
    let mut command = serve_command(home, &["--once"]);
    command.args(extra).stdin(stdin);
    Running::spawn(command)
}

/// The fingerprint of a fixed key, as chat prints it.
pub fn fingerprint_of(name: &str) -> String {
    let home = TestHome::with_identity(name);
    home.run(&["fingerprint"]).ok().trim().to_string()
}

/// `len` bytes that look random and do not compress (xorshift64), the
/// same for the same `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Seconds, for timeouts.
pub fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}
