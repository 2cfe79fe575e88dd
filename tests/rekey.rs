//! Key updates in the running program (docs/PROTOCOL.md, 7.2): with
//! `--rekey-limit`, the real binaries update their keys as often as asked,
//! each record after an update is still authenticated, and a KEY_UPDATE that
//! a man in the middle drops, replays or moves ends the session before
//! anything is delivered.

use crate::common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::mitm::{Proxy, Recording, Rule, Way};
use common::{Outcome, Running, TestHome, noise, secs, serve_command};
use sha2::{Digest, Sha256};

/// The record type of KEY_UPDATE; the type byte is in the clear (4.1).
const KEY_UPDATE: u8 = 0x17;

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

/// KEY_UPDATE records among `frames`.
fn key_updates(frames: &[Vec<u8>]) -> usize {
    frames.iter().filter(|f| f[4] == KEY_UPDATE).count()
}

/// A `chat serve --once` that writes what it receives to a file, and a
/// tampering proxy in front of it.
struct Receiver {
    server: Running,
    proxy: Proxy,
    out: PathBuf,
    _home: TestHome,
}

impl Receiver {
    fn start(extra: &[&str], stdin: Stdio) -> Self {
        let home = TestHome::with_identity("responder");
        let out = home.file("received");
        let mut command = serve_command(&home, &["--once", "--accept-new"]);
        command.args(extra).stdin(stdin);
        let server = Running::spawn_with_stdout(command, File::create(&out).unwrap().into());
        let proxy = Proxy::start(server.port());
        Self {
            server,
            proxy,
            out,
            _home: home,
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port())
    }
}

/// `chat send < message` through the proxy, under `rule`.
fn send(
    ada: &TestHome,
    receiver: &Receiver,
    rule: Rule,
    message: &Path,
    extra: &[&str],
) -> (Outcome, Recording) {
    receiver.proxy.next(rule);
    let outcome = Outcome::of(
        ada.chat()
            .args(["send", &receiver.target(), "--accept-new", "--name", "ada"])
            .args(extra)
            .stdin(std::fs::File::open(message).unwrap())
            .output()
            .unwrap(),
    );
    (outcome, receiver.proxy.recording())
}

/// 64 MiB under `--rekey-limit 1M`: at least 64 updates on the way, each one
/// logged (`-v`) and reported (`--json`), and the message arrives byte for
/// byte.
#[test]
fn sixty_four_mib_under_a_one_mib_limit_arrive_byte_for_byte() {
    let ada = TestHome::with_identity("initiator");
    let message = ada.file("message");
    fs::write(&message, noise(64 << 20, 1)).unwrap();
    let receiver = Receiver::start(&["-v"], Stdio::null());
    let (outcome, recording) = send(
        &ada,
        &receiver,
        Rule::Pass,
        &message,
        &["--rekey-limit", "1M", "--json"],
    );
    outcome.ok();
    let server = receiver.server.finish(secs(60));
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(
        sha256(&receiver.out),
        sha256(&message),
        "altered on the way"
    );

    let updates = key_updates(&recording.to_server);
    assert!(updates >= 64, "only {updates} key updates for 64 MiB");
    // Every update the sender reported went out, in order; the receiver
    // logged each one.
    let epochs: Vec<u64> = outcome
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "key_update")
        .map(|e| {
            assert_eq!(e["direction"], "sent", "{e}");
            e["epoch"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(epochs, (1..=updates as u64).collect::<Vec<_>>());
    let logged = server
        .stderr
        .lines()
        .filter(|l| l.starts_with("key update received: "))
        .count();
    assert_eq!(logged, updates, "{}", server.stderr);
    assert!(
        server.stderr.contains(&format!(
            "key update received: the peer's key is now at epoch {updates}\n"
        )),
        "{}",
        server.stderr
    );
}

/// Lines of about `line` bytes, `total` bytes in all, each ending with a
/// newline: a batch peer sends each as a message.
fn lines(total: usize, line: usize, seed: u64) -> Vec<u8> {
    let mut text: Vec<u8> = noise(total, seed)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect();
    for end in (line - 1..total).step_by(line) {
        text[end] = b'\n';
    }
    *text.last_mut().unwrap() = b'\n';
    text
}

/// Both ways at once, between two batch peers (`chat connect` and `chat
/// serve` without a terminal): each side updates its own key as its limit
/// says, and each side's input arrives byte for byte in the other's output.
#[test]
fn both_ways_each_side_updates_its_own_key() {
    let ada = TestHome::with_identity("initiator");
    let to_bob = ada.file("to_bob");
    let to_ada = ada.file("to_ada");
    let from_bob = ada.file("from_bob");
    fs::write(&to_bob, lines(16 << 20, 256 << 10, 2)).unwrap();
    fs::write(&to_ada, lines(16 << 20, 200 << 10, 3)).unwrap();
    let receiver = Receiver::start(
        &["--rekey-limit", "256K"],
        File::open(&to_ada).unwrap().into(),
    );
    receiver.proxy.next(Rule::Pass);
    let client = ada
        .chat()
        .args(["connect", &receiver.target(), "--accept-new"])
        .args(["--rekey-limit", "256K"])
        .stdin(File::open(&to_bob).unwrap())
        .stdout(File::create(&from_bob).unwrap())
        .output()
        .unwrap();
    assert!(client.status.success(), "{client:?}");
    let recording = receiver.proxy.recording();
    let server = receiver.server.finish(secs(60));
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(sha256(&receiver.out), sha256(&to_bob));
    assert_eq!(sha256(&from_bob), sha256(&to_ada));
    let (up, down) = (
        key_updates(&recording.to_server),
        key_updates(&recording.to_client),
    );
    assert!(up >= 60 && down >= 60, "{up} and {down} key updates");
}

/// The layout of an honest `chat send` of `message` with `limit`: the
/// indices of the frames to the server that are KEY_UPDATEs, and the start
/// offset of each frame.
fn honest_layout(message: &Path, limit: &str) -> (Vec<usize>, Vec<usize>) {
    let ada = TestHome::with_identity("initiator");
    let receiver = Receiver::start(&[], Stdio::null());
    let (outcome, recording) = send(
        &ada,
        &receiver,
        Rule::Pass,
        message,
        &["--rekey-limit", limit],
    );
    outcome.ok();
    receiver.server.finish(secs(20)).ok();
    let frames = &recording.to_server;
    let updates = (0..frames.len())
        .filter(|&i| frames[i][4] == KEY_UPDATE)
        .collect();
    let starts = frames
        .iter()
        .scan(0, |offset, frame| {
            let start = *offset;
            *offset += frame.len();
            Some(start)
        })
        .collect();
    (updates, starts)
}

/// Runs `chat send` of `message` under `rule` and checks that the session
/// failed as tampered with: the sender fails with the network exit code,
/// the server reports an authentication failure, and nothing was written.
fn assert_detected(message: &Path, limit: &str, rule: Rule) {
    let ada = TestHome::with_identity("initiator");
    let receiver = Receiver::start(&[], Stdio::null());
    let (outcome, _) = send(
        &ada,
        &receiver,
        rule.clone(),
        message,
        &["--rekey-limit", limit],
    );
    assert_eq!(outcome.code, Some(3), "{rule:?}: {outcome:#?}");
    let server = receiver.server.finish(secs(20));
    assert_ne!(server.code, Some(0), "{rule:?}: {server:#?}");
    assert!(
        server.stderr.contains("authentication failed"),
        "{rule:?}: {}",
        server.stderr
    );
    assert_eq!(
        fs::metadata(&receiver.out).unwrap().len(),
        0,
        "{rule:?}: something was delivered"
    );
}

/// A message small enough to be written only once complete (not streamed),
/// under a limit that updates the key 8 times on the way.
fn tamper_message(home: &TestHome) -> PathBuf {
    let message = home.file("message");
    fs::write(&message, noise(512 << 10, 4)).unwrap();
    message
}

const TAMPER_LIMIT: &str = "64K";

/// A bit flipped in a record sealed after an update (under the first, a
/// middle and the last new key), or in a KEY_UPDATE itself: the record does
/// not authenticate, the session ends, nothing is delivered.
#[test]
fn a_record_after_a_key_update_is_still_authenticated() {
    let home = TestHome::empty();
    let message = tamper_message(&home);
    let (updates, starts) = honest_layout(&message, TAMPER_LIMIT);
    assert!(updates.len() >= 7, "{} key updates", updates.len());
    let cases = [
        updates[0] + 1,
        updates[updates.len() / 2] + 1,
        updates[updates.len() - 1] + 1,
        updates[1],
    ];
    for frame in cases {
        // A byte of the body, past the 5-byte header.
        let offset = starts[frame] + 5 + 7;
        assert_detected(
            &message,
            TAMPER_LIMIT,
            Rule::Flip {
                way: Way::ToServer,
                offset,
                mask: 0x10,
            },
        );
    }
}

/// A KEY_UPDATE dropped, replayed (sent twice), or moved after the record
/// that follows it: the next record fails to authenticate.
#[test]
fn a_dropped_replayed_or_moved_key_update_ends_the_session() {
    let home = TestHome::empty();
    let message = tamper_message(&home);
    let (updates, _) = honest_layout(&message, TAMPER_LIMIT);
    let frame = updates[2];
    let way = Way::ToServer;
    for rule in [
        Rule::Drop { way, frame },
        Rule::Duplicate { way, frame },
        Rule::Swap { way, frame },
    ] {
        assert_detected(&message, TAMPER_LIMIT, rule);
    }
}

/// The time limit applies on an idle connection: the keep-alives carry the
/// updates (with a 4 s peer timeout, keep-alives go out every second).
#[test]
fn the_time_limit_updates_the_keys_of_an_idle_connection() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut command = serve_command(&bob, &["--once", "--accept-new", "-v"]);
    command
        .args(["--rekey-limit", "default,1s"])
        .env("CHAT_PEER_TIMEOUT", "4")
        .stdin(Stdio::piped());
    let mut server = Running::spawn(command);
    let mut server_in = server.stdin();
    let mut command = ada.chat();
    command
        .args(["connect", &format!("127.0.0.1:{}", server.port())])
        .args(["--accept-new", "-v", "--rekey-limit", "1M,1s"])
        .env("CHAT_PEER_TIMEOUT", "4")
        .stdin(Stdio::piped());
    let mut client = Running::spawn(command);
    let mut client_in = client.stdin();
    // Nothing is typed: only keep-alives flow, and with them the updates.
    for side in [&server, &client] {
        side.wait_for_stderr("key update sent: our key is now at epoch 2", secs(20));
        side.wait_for_stderr(
            "key update received: the peer's key is now at epoch 2",
            secs(20),
        );
    }
    client_in.write_all(b"still talking\n").unwrap();
    server_in.write_all(b"me too\n").unwrap();
    drop((client_in, server_in));
    let client = client.finish(secs(20));
    let server = server.finish(secs(20));
    assert_eq!(client.code, Some(0), "{client:#?}");
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(server.stdout, "still talking\n");
    assert_eq!(client.stdout, "me too\n");
}

/// `--rekey-limit` only lowers the protocol's limits, and not below what
/// the sending half accepts: a one-line usage error (exit code 2).
#[test]
fn a_rekey_limit_above_the_protocol_or_too_small_is_refused() {
    let ada = TestHome::with_identity("initiator");
    for (limit, needle) in [
        ("2G", "can only be lowered"),
        ("1M,2h", "can only be lowered"),
        ("512", "below the smallest allowed"),
        ("1M,0s", "below the smallest allowed"),
        ("1T", "is not SIZE[,TIME]"),
    ] {
        for command in ["send", "connect", "serve"] {
            let mut args = vec![command];
            if command != "serve" {
                args.push("127.0.0.1:9");
            }
            args.extend(["--rekey-limit", limit]);
            let outcome = ada.run(&args);
            let err = outcome.fails(2, &[needle, "--rekey-limit"]);
            assert_eq!(
                err.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{err}"
            );
        }
    }
}

/// `tests/interop/peer_v2.py`, as a child process: its JSON events, one per
/// line, once it has exited (killed after 30 s).
fn peer_v2(args: &[&str], before_exit: impl FnOnce(u16)) -> Vec<serde_json::Value> {
    use std::io::{BufRead, BufReader};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .arg(root.join("tests/interop/peer_v2.py"))
        .args(args)
        .current_dir(root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (install Python 3 and `pip install cryptography`)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut port = 0;
    if args[0] == "serve" {
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("peer_v2.py serve said {first:?}"));
    }
    let lines = std::thread::spawn(move || {
        stdout
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect::<Vec<serde_json::Value>>()
    });
    before_exit(port);
    let deadline = std::time::Instant::now() + secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("peer_v2.py did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    lines.join().unwrap()
}

fn count(events: &[serde_json::Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// An implementation written from the spec alone follows our key updates,
/// and we follow its: `chat send --rekey-limit 64K` to `peer_v2.py serve`,
/// and `peer_v2.py send --rekey-bytes 4K --chunk 1024` to `chat serve`.
#[test]
fn an_implementation_from_the_spec_follows_our_key_updates_and_we_follow_its() {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors/keys");
    let ada = TestHome::with_identity("initiator");
    let message = ada.file("message");
    let bytes = noise(1 << 20, 5);
    fs::write(&message, &bytes).unwrap();
    let saved = ada.file("saved");
    let responder = keys.join("responder.pem");
    let events = peer_v2(
        &[
            "serve",
            "--key",
            responder.to_str().unwrap(),
            "--save-dir",
            saved.to_str().unwrap(),
        ],
        |port| {
            let sent = ada
                .chat()
                .args(["send", &format!("127.0.0.1:{port}"), "--accept-new"])
                .args(["--rekey-limit", "64K"])
                .stdin(std::fs::File::open(&message).unwrap())
                .output()
                .unwrap();
            assert!(sent.status.success(), "{sent:?}");
        },
    );
    let end = events.iter().find(|e| e["event"] == "end").unwrap();
    assert_eq!(end["ok"], true, "{events:?}");
    assert!(count(&events, "key-update-received") >= 15, "{events:?}");
    let received = events.iter().find(|e| e["event"] == "message").unwrap();
    assert_eq!(
        received["sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&bytes))
    );

    let bob = TestHome::with_identity("responder");
    let mut command = serve_command(&bob, &["--once", "--accept-new", "--json"]);
    command.stdin(Stdio::null());
    let server = Running::spawn(command);
    let text = "the same text again and again; ".repeat(3000);
    let initiator = keys.join("initiator.pem");
    let events = peer_v2(
        &[
            "send",
            &format!("127.0.0.1:{}", server.port()),
            "--key",
            initiator.to_str().unwrap(),
            "--rekey-bytes",
            "4K",
            "--chunk",
            "1024",
            "--message",
            &text,
        ],
        |_| {},
    );
    let updates = count(&events, "key-update-sent");
    assert!(updates >= 20, "{events:?}");
    let server = server.finish(secs(20));
    assert_eq!(server.code, Some(0), "{server:#?}");
    let events: Vec<serde_json::Value> = server
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let received: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "key_update" && e["direction"] == "received")
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(received, (1..=updates as u64).collect::<Vec<_>>());
    let message = events.iter().find(|e| e["event"] == "message").unwrap();
    assert_eq!(message["text"], text);
}

/// On a terminal (the REPL of `chat serve`), `-v` shows each key update
/// above the prompt: the peer's, and ours.
#[test]
fn on_a_terminal_verbose_shows_each_key_update() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut pty = common::pty::Pty::chat(
        &bob,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "bob",
            "--accept-new",
            "-v",
            "--rekey-limit",
            "1K",
        ],
    );
    let port = pty.port();
    let mut command = ada.chat();
    command
        .args(["connect", &format!("127.0.0.1:{port}"), "--accept-new"])
        .args(["--rekey-limit", "4K"])
        .stdin(Stdio::piped());
    let mut client = Running::spawn(command);
    let mut input = client.stdin();
    for _ in 0..4 {
        input.write_all(&[b'a'; 5000]).unwrap();
        input.write_all(b"\n").unwrap();
    }
    pty.wait_for("key update received: the peer's key is now at epoch 3");
    pty.line(&"b".repeat(1500));
    pty.wait_for("key update sent: our key is now at epoch 1");
    pty.wait_for("delivered (#1)");
    drop(input);
    pty.line("/quit");
    assert_eq!(pty.exit_code(), 0, "{}", pty.dump());
    client.finish(secs(20));
}
