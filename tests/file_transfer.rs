//! Files that arrive as files (docs/PROTOCOL.md section 9): `chat send
//! --file` into `chat serve --accept-files`, byte for byte; folders; names
//! already taken; consent; unsafe names and wrong hashes from a hostile
//! sender; transfers cut at random offsets and then resumed; tampering.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chat::transfer::FileHasher;
use chat::wire::file::{End, Entry, FileRecord, Offer, Start};
use common::hostile::{FileGot, Got, HostilePeer};
use common::mitm::{Proxy, Rule, Way};
use common::{Running, TestHome, noise as bytes, secs, serve_command};

/// A folder for received files, inside `home`.
fn downloads(home: &TestHome) -> PathBuf {
    let dir = home.file("downloads");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chat serve --accept-new` as bob, saving into `dir`, with `extra`.
fn receiver(bob: &TestHome, dir: &Path, extra: &[&str]) -> Running {
    let mut command = serve_command(bob, &["--accept-new"]);
    command
        .args(extra)
        .arg("--save-dir")
        .arg(dir)
        .stdin(Stdio::null());
    Running::spawn(command)
}

/// `chat send --file PATHS...` as ada to `port`.
fn send(ada: &TestHome, port: u16, paths: &[&Path]) -> common::Outcome {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["send", &target, "--accept-new", "--name", "ada", "--file"];
    let paths: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(paths);
    ada.run(&args)
}

/// Every file under `dir`, relative, with its bytes, in order.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut children: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let path = child.path();
            if child.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.push((name, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().map(|(name, _)| name).collect()
}

/// Waits until `check` holds, failing after `timeout`.
#[track_caller]
fn wait_until(timeout: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn files_of_0_1_and_many_bytes_and_a_folder_arrive_byte_for_byte() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let empty = ada.file("empty");
    fs::write(&empty, b"").unwrap();
    let one = ada.file("one");
    fs::write(&one, b"x").unwrap();
    let many = ada.file("many.bin");
    let data = bytes(3 << 20 | 12345, 1);
    fs::write(&many, &data).unwrap();
    let folder = ada.file("photos");
    fs::create_dir_all(folder.join("2024/summer")).unwrap();
    fs::write(folder.join("2024/summer/cat.jpg"), bytes(70_000, 2)).unwrap();
    fs::write(folder.join("2024/dog.jpg"), bytes(5, 3)).unwrap();
    fs::write(folder.join(".hidden"), b"dot").unwrap();
    fs::write(folder.join("empty.txt"), b"").unwrap();
    let outcome = send(&ada, server.port(), &[&empty, &one, &many, &folder]);
    outcome.ok();
    assert!(
        outcome.stderr.contains("SHA-256 verified"),
        "{}",
        outcome.stderr
    );
    let received = server.finish(secs(30));
    assert_eq!(received.code, Some(0), "{}", received.stderr);
    let mut expected = vec![
        ("empty".to_string(), Vec::new()),
        ("many.bin".to_string(), data),
        ("one".to_string(), b"x".to_vec()),
        ("photos/.hidden".to_string(), b"dot".to_vec()),
        ("photos/2024/dog.jpg".to_string(), bytes(5, 3)),
        ("photos/2024/summer/cat.jpg".to_string(), bytes(70_000, 2)),
        ("photos/empty.txt".to_string(), Vec::new()),
    ];
    expected.sort();
    let got = tree(&dir);
    assert_eq!(
        got.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(got == expected, "the bytes differ");
    assert!(
        received.stderr.contains("Saved many.bin from ada"),
        "{}",
        received.stderr
    );
}

/// 64 MiB through the whole program: the file is identical, and the
/// receiver never held much of it in memory (checked by the bench).
#[test]
fn a_64_mib_file_arrives_byte_for_byte() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let big = ada.file("big.bin");
    let data = bytes(64 << 20, 7);
    fs::write(&big, &data).unwrap();
    send(&ada, server.port(), &[&big]).ok();
    server.finish(secs(60)).ok();
    assert!(
        fs::read(dir.join("big.bin")).unwrap() == data,
        "the bytes differ"
    );
}

/// A 1 GiB sparse file (all zeros but for a few bytes). Slow in a debug
/// build; run it with
/// `cargo test --release --test all -- --ignored file_transfer::a_1_gib`.
#[test]
#[ignore]
fn a_1_gib_sparse_file_arrives_byte_for_byte() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let big = ada.file("sparse.bin");
    let file = fs::File::create(&big).unwrap();
    file.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"start", 0).unwrap();
    file.write_all_at(b"middle", 1 << 29).unwrap();
    file.write_all_at(b"end", (1 << 30) - 3).unwrap();
    drop(file);
    send(&ada, server.port(), &[&big]).ok();
    server.finish(secs(120)).ok();
    let digest = |path: &Path| {
        let mut hasher = FileHasher::new();
        let mut file = fs::File::open(path).unwrap();
        let mut buffer = vec![0; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
            if n == 0 {
                break hasher.digest();
            }
            hasher.update(&buffer[..n]);
        }
    };
    assert_eq!(digest(&dir.join("sparse.bin")), digest(&big));
}

#[test]
fn a_name_already_taken_becomes_name_1() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    fs::write(dir.join("report.txt"), b"old").unwrap();
    fs::create_dir(dir.join("notes")).unwrap();
    fs::write(dir.join("notes/a.txt"), b"old a").unwrap();
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let report = ada.file("report.txt");
    fs::write(&report, b"new").unwrap();
    let notes = ada.file("notes");
    fs::create_dir(&notes).unwrap();
    fs::write(notes.join("a.txt"), b"new a").unwrap();
    send(&ada, server.port(), &[&report, &notes]).ok();
    let received = server.finish(secs(30));
    assert_eq!(received.code, Some(0), "{}", received.stderr);
    assert_eq!(
        tree(&dir),
        [
            ("notes/a.txt".to_string(), b"old a".to_vec()),
            ("notes (1)/a.txt".to_string(), b"new a".to_vec()),
            ("report (1).txt".to_string(), b"new".to_vec()),
            ("report.txt".to_string(), b"old".to_vec()),
        ]
    );
    assert!(
        received.stderr.contains("report (1).txt"),
        "{}",
        received.stderr
    );
}

#[test]
fn without_consent_nothing_is_written() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once"]);
    let file = ada.file("report.txt");
    fs::write(&file, b"contents").unwrap();
    let outcome = send(&ada, server.port(), &[&file]);
    outcome.fails(7, &["not saved", "rejected", "does not accept files"]);
    let received = server.finish(secs(30));
    assert!(
        received.stderr.contains("rejected, nothing was written")
            && received.stderr.contains("--accept-files"),
        "{}",
        received.stderr
    );
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "something was written"
    );
}

/// Seals one file record as the hostile peer.
fn file(peer: &mut HostilePeer, record: FileRecord<'_>) {
    peer.send(|send, out| send.file(&record, out)).unwrap();
}

fn offer(peer: &mut HostilePeer, id: u64, paths: &[&[&str]], size: u64) {
    let entries = paths
        .iter()
        .map(|path| Entry {
            path: path.iter().map(|s| s.to_string()).collect(),
            size,
        })
        .collect();
    file(peer, FileRecord::Offer(Offer { id, entries }));
}

/// A running `chat serve` that takes one conversation after another.
fn hostile_target(bob: &TestHome, dir: &Path) -> Running {
    receiver(bob, dir, &["--accept-files=any"])
}

#[test]
fn unsafe_names_are_refused_and_nothing_is_written() {
    let bob = TestHome::with_identity("responder");
    let dir = downloads(&bob);
    let server = hostile_target(&bob, &dir);
    // One offer per case: (what it shows, its paths), each refused with
    // FILE_REJECT reason 3 (docs/PROTOCOL.md 9.3).
    let cases: Vec<(&str, Vec<Vec<&str>>)> = vec![
        ("empty name", vec![vec![""]]),
        // (A name over 255 bytes cannot be encoded at all: its length is
        // one byte. The core's name tests cover rule 1.)
        ("dot", vec![vec!["."]]),
        ("dot dot", vec![vec![".."]]),
        ("climbs out of a folder", vec![vec!["photos", "..", "x"]]),
        ("slash", vec![vec!["a/b"]]),
        ("backslash", vec![vec!["a\\b"]]),
        ("absolute", vec![vec!["/etc/passwd"]]),
        ("control", vec![vec!["bell\u{7}.txt"]]),
        ("escape", vec![vec!["\u{1b}[2J.txt"]]),
        ("line separator", vec![vec!["a\u{2028}b"]]),
        ("bidi override", vec![vec!["invoice\u{202e}fdp.exe"]]),
        ("invisible", vec![vec!["report\u{200b}.pdf"]]),
        ("windows character", vec![vec!["a:b"]]),
        ("leading space", vec![vec![" a"]]),
        ("trailing space", vec![vec!["a "]]),
        ("trailing dot", vec![vec!["a."]]),
        ("not NFC", vec![vec!["e\u{301}.txt"]]),
        ("unassigned", vec![vec!["\u{0378}"]]),
        ("device name", vec![vec!["con.txt"]]),
        ("device name in a folder", vec![vec!["ok", "NUL"]]),
        (
            "same path ignoring case",
            vec![vec!["A.txt"], vec!["a.txt"]],
        ),
        ("file where a folder goes", vec![vec!["a"], vec!["a", "b"]]),
    ];
    for (what, paths) in &cases {
        let mut peer = HostilePeer::connect(server.port());
        let paths: Vec<&[&str]> = paths.iter().map(|p| p.as_slice()).collect();
        offer(&mut peer, 1, &paths, 4);
        let got = peer.expect(secs(20), |g| matches!(g, Got::File(_)));
        assert_eq!(
            got,
            Got::File(FileGot::Reject { id: 1, reason: 3 }),
            "{what}"
        );
        // Data for it is a protocol error; nothing is written either way.
        file(
            &mut peer,
            FileRecord::Start(Start {
                id: 1,
                entry: 0,
                offset: 0,
            }),
        );
        peer.expect(secs(20), |g| matches!(g, Got::Close(_) | Got::Hangup));
    }
    assert!(names(&dir).is_empty(), "written: {:?}", names(&dir));
    assert!(
        fs::read_dir(&dir).unwrap().next().is_none(),
        "something was created"
    );
    // The names are shown neutralised.
    let stderr = server.stderr();
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'));
    assert!(stderr.contains("Refused"), "{stderr}");
}

#[test]
fn a_wrong_hash_saves_nothing_and_deletes_the_partial() {
    let bob = TestHome::with_identity("responder");
    let dir = downloads(&bob);
    let server = hostile_target(&bob, &dir);
    let mut peer = HostilePeer::connect(server.port());
    offer(&mut peer, 1, &[&["good.txt"], &["second.txt"]], 5);
    let got = peer.expect(secs(20), |g| matches!(g, Got::File(_)));
    assert_eq!(
        got,
        Got::File(FileGot::Accept {
            id: 1,
            resume: vec![]
        })
    );
    for (entry, sha256) in [(0u16, [0u8; 32]), (1, sha256_of(b"hello"))] {
        file(
            &mut peer,
            FileRecord::Start(Start {
                id: 1,
                entry,
                offset: 0,
            }),
        );
        file(&mut peer, FileRecord::Data(b"hello"));
        file(&mut peer, FileRecord::End(End { sha256 }));
        let verdict = peer.expect(secs(20), |g| matches!(g, Got::File(_)));
        let expected = if entry == 0 { 1 } else { 0 };
        assert_eq!(
            verdict,
            Got::File(FileGot::Verdict {
                id: 1,
                entry,
                verdict: expected
            })
        );
    }
    // The first is nowhere, not even as a partial; the second is saved.
    assert_eq!(tree(&dir), [("second.txt".to_string(), b"hello".to_vec())]);
}

fn sha256_of(data: &[u8]) -> [u8; 32] {
    let mut hasher = FileHasher::new();
    hasher.update(data);
    hasher.digest()
}

/// The partial files in `dir`.
fn partials(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".chat-partial-"))
        .collect()
}

#[test]
fn a_transfer_cut_at_random_offsets_resumes_to_an_identical_file() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--accept-files"]);
    let proxy = Proxy::start(server.port());
    let data = bytes(8 << 20, 11);
    let big = ada.file("big.bin");
    fs::write(&big, &data).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Three cuts, each somewhere in the first 256 KiB to 1.75 MiB of a
    // connection: each resumes from the last, and 2 MiB or more is always
    // left to send, so each is cut in the middle of the file's data.
    let offsets: Vec<usize> = bytes(24, seed)
        .chunks(8)
        .map(|c| (256 << 10) + (u64::from_le_bytes(c.try_into().unwrap()) % (1536 << 10)) as usize)
        .collect();
    let mut resumed = 0;
    for (i, offset) in offsets.iter().enumerate() {
        proxy.next(Rule::Cut {
            way: Way::ToServer,
            offset: *offset,
        });
        let outcome = send(&ada, proxy.port(), &[&big]);
        assert_eq!(
            outcome.code,
            Some(3),
            "cut at {offset} (seed {seed}): {}",
            outcome.stderr
        );
        proxy.recording();
        // The receiver keeps what arrived, hidden, and nothing under the name.
        wait_until(secs(20), "the receiver to see the cut", || {
            server.stderr().matches("cut").count() > i
                || server.stderr().matches("connection").count() > i
        });
        wait_until(secs(20), "the partial file", || partials(&dir).len() == 1);
        assert!(
            !dir.join("big.bin").exists(),
            "saved after a cut at {offset}"
        );
        resumed += 1;
    }
    // Sent again, whole: it resumes from the partial and is identical.
    proxy.next(Rule::Pass);
    send(&ada, proxy.port(), &[&big]).ok();
    wait_until(secs(30), "the file to be saved", || {
        server.stderr().contains("Saved big.bin")
    });
    assert!(
        server.stderr().matches("Resuming big.bin").count() >= resumed,
        "seed {seed}: {}",
        server.stderr()
    );
    assert!(
        fs::read(dir.join("big.bin")).unwrap() == data,
        "seed {seed}: the bytes differ"
    );
    assert!(partials(&dir).is_empty(), "a partial was left");
}

#[test]
fn a_tampered_transfer_saves_nothing() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let proxy = Proxy::start(server.port());
    let big = ada.file("big.bin");
    fs::write(&big, bytes(4 << 20, 5)).unwrap();
    proxy.next(Rule::Flip {
        way: Way::ToServer,
        offset: 2 << 20,
        mask: 0x01,
    });
    let outcome = send(&ada, proxy.port(), &[&big]);
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    let received = server.finish(secs(30));
    assert_eq!(received.code, Some(3), "{}", received.stderr);
    assert!(!dir.join("big.bin").exists(), "a tampered file was saved");
    assert!(names(&dir).iter().all(|n| n.starts_with(".chat-partial-")));
}

/// Runs `tests/interop/peer_v2.py` (an implementation written from the spec
/// alone) with `args`; `during` runs once it listens (for `serve`, with its
/// port). Returns its exit code.
fn peer_v2(args: &[&str], during: impl FnOnce(u16)) -> Option<i32> {
    use std::io::BufRead;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .arg(root.join("tests/interop/peer_v2.py"))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (install Python 3 and `pip install cryptography`)");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
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
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    during(port);
    let deadline = Instant::now() + secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peer_v2.py did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = drain.join();
    child.wait().unwrap().code()
}

/// Files go both ways between chat and the implementation written from the
/// spec: `chat send --file` (a file and a folder) into `peer_v2.py serve`,
/// and `peer_v2.py send --file` into `chat serve --accept-files`.
#[test]
fn an_implementation_from_the_spec_receives_our_files_and_sends_us_its() {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors/keys");
    let ada = TestHome::with_identity("initiator");
    let report = ada.file("report.bin");
    fs::write(&report, bytes(300_000, 21)).unwrap();
    let folder = ada.file("notes");
    fs::create_dir_all(folder.join("deep")).unwrap();
    fs::write(folder.join("deep/a.txt"), b"alpha").unwrap();
    fs::write(folder.join("empty"), b"").unwrap();
    let saved = ada.file("saved");
    fs::create_dir(&saved).unwrap();
    let responder = keys.join("responder.pem");
    let code = peer_v2(
        &[
            "serve",
            "--port",
            "0",
            "--key",
            responder.to_str().unwrap(),
            "--save-dir",
            saved.to_str().unwrap(),
        ],
        |port| {
            send(&ada, port, &[&report, &folder]).ok();
        },
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        tree(&saved),
        [
            ("notes/deep/a.txt".to_string(), b"alpha".to_vec()),
            ("notes/empty".to_string(), Vec::new()),
            ("report.bin".to_string(), bytes(300_000, 21)),
        ]
    );

    let bob = TestHome::with_identity("responder");
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files"]);
    let initiator = keys.join("initiator.pem");
    let code = peer_v2(
        &[
            "send",
            &format!("127.0.0.1:{}", server.port()),
            "--key",
            initiator.to_str().unwrap(),
            "--file",
            report.to_str().unwrap(),
        ],
        |_| {},
    );
    assert_eq!(code, Some(0));
    server.finish(secs(20)).ok();
    assert_eq!(tree(&dir), [("report.bin".to_string(), bytes(300_000, 21))]);
}

/// Bob's REPL on a terminal, saving into `dir`.
fn bob_on_a_terminal(bob: &TestHome, dir: &Path) -> common::pty::Pty {
    common::pty::Pty::chat(
        bob,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "bob",
            "--accept-new",
            "--save-dir",
            dir.to_str().unwrap(),
        ],
    )
}

/// `chat send --file` as ada, running in the background.
fn sending(ada: &TestHome, port: u16, path: &Path) -> Running {
    let mut command = ada.chat();
    command
        .args([
            "send",
            &format!("127.0.0.1:{port}"),
            "--accept-new",
            "--name",
            "ada",
        ])
        .arg("--file")
        .arg(path)
        .stdin(Stdio::null());
    Running::spawn(command)
}

#[test]
fn the_repl_shows_an_offer_and_saves_it_only_after_accept() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let mut repl = bob_on_a_terminal(&bob, &dir);
    let port = repl.port();
    let report = ada.file("report.pdf");
    fs::write(&report, bytes(2_200_000, 9)).unwrap();
    let sender = sending(&ada, port, &report);
    repl.wait_for("ada offers report.pdf (2.10 MiB): /accept 1 or /reject 1");
    // Nothing is written before consent.
    assert!(fs::read_dir(&dir).unwrap().next().is_none());
    repl.line("/accept 1");
    repl.wait_for("Saved report.pdf from ada");
    let outcome = sender.finish(secs(30));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(fs::read(dir.join("report.pdf")).unwrap() == bytes(2_200_000, 9));
}

#[test]
fn the_repl_rejects_and_nothing_is_written() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let mut repl = bob_on_a_terminal(&bob, &dir);
    let port = repl.port();
    // A name that breaks a rule is refused by the sender itself, before
    // it connects (the receiver's refusals: see the hostile sender above).
    let report = ada.file("evil\u{1b}[2J.txt");
    fs::write(&report, b"x").unwrap();
    let outcome = sending(&ada, port, &report).finish(secs(30));
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(
        outcome.stderr.contains("control character"),
        "{}",
        outcome.stderr
    );
    let report = ada.file("plain.txt");
    fs::write(&report, b"x").unwrap();
    let sender = sending(&ada, port, &report);
    repl.wait_for("ada offers plain.txt (1 B): /accept 1 or /reject 1");
    repl.line("/reject 1");
    let outcome = sender.finish(secs(30));
    assert_eq!(outcome.code, Some(7), "{outcome:#?}");
    assert!(outcome.stderr.contains("rejected"), "{}", outcome.stderr);
    assert!(fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn ctrl_c_in_chat_send_withdraws_the_offer_on_both_ends() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let mut repl = bob_on_a_terminal(&bob, &dir);
    let port = repl.port();
    let report = ada.file("report.txt");
    fs::write(&report, b"contents").unwrap();
    let sender = sending(&ada, port, &report);
    repl.wait_for("ada offers report.txt (8 B): /accept 1 or /reject 1");
    // SAFETY: signals a child process we started.
    unsafe { libc::kill(sender.pid() as i32, libc::SIGINT) };
    repl.wait_for("ada withdrew its offer #1");
    let outcome = sender.finish(secs(30));
    assert_eq!(outcome.code, Some(7), "{outcome:#?}");
    assert!(outcome.stderr.contains("cancelled"), "{}", outcome.stderr);
    assert!(fs::read_dir(&dir).unwrap().next().is_none());
}

/// `/send` in the REPL takes names with spaces, quoted or escaped as in a
/// shell; an unclosed quote is one line of error. Each offer ends with the
/// peer's verdict, and no status row is left above the prompt.
#[test]
fn the_repl_sends_files_whose_names_have_spaces() {
    let (bob, ada) = (
        TestHome::with_identity("responder"),
        TestHome::with_identity("initiator"),
    );
    let dir = downloads(&bob);
    let server = receiver(&bob, &dir, &["--once", "--accept-files=any"]);
    let target = format!("127.0.0.1:{}", server.port());
    let mut repl =
        common::pty::Pty::chat(&ada, &["connect", &target, "--accept-new", "--name", "ada"]);
    let (first, second) = (ada.file("my report.bin"), ada.file("second  copy.bin"));
    fs::write(&first, bytes(300_000, 5)).unwrap();
    fs::write(&second, bytes(1000, 6)).unwrap();
    let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
    assert!(!first.contains(['"', '\\']) && !second.contains(['"', '\\', '\'']));
    repl.wait_for("Type /help for commands.");

    repl.line(&format!("/send \"{first}"));
    repl.wait_for("not sent: a \" is never closed");
    repl.line(&format!("/send \"{first}\""));
    repl.wait_for("saved my report.bin (SHA-256 verified).");
    repl.line(&format!("/send {}", second.replace(' ', "\\ ")));
    repl.wait_for("saved second  copy.bin (SHA-256 verified).");
    // The notice is printed above the prompt, which is then drawn again:
    // wait for that redraw rather than read the screen in between.
    repl.wait_until("the prompt drawn again", |pty| {
        (pty.cursor_row() == "bob \u{2713}>").then_some(())
    });
    let screen = repl.screen();
    assert!(
        !screen.iter().any(|row| row.starts_with("sending ")),
        "{screen:#?}"
    );
    assert_eq!(repl.cursor_row(), "bob \u{2713}>", "{screen:#?}");
    repl.line("/quit");
    assert_eq!(repl.exit_code(), 0);
    server.finish(secs(20));
    assert_eq!(
        tree(&dir),
        [
            ("my report.bin".to_string(), bytes(300_000, 5)),
            ("second  copy.bin".to_string(), bytes(1000, 6)),
        ]
    );
}

/// Bob's side of the in-process engine test: takes every offer, counts
/// the file's bytes (slowly, like a busy disk), and notes how many had
/// arrived when a message arrived.
struct Counting {
    file_bytes: Arc<AtomicU64>,
    at_message: std::sync::mpsc::Sender<u64>,
}

impl chat::net::conversation::Handler for Counting {
    fn message_data(&mut self, _id: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn message_end(&mut self, _id: u64) -> std::io::Result<()> {
        let _ = self.at_message.send(self.file_bytes.load(Ordering::SeqCst));
        Ok(())
    }
    fn file_offered(
        &mut self,
        _id: u64,
        _manifest: &chat::transfer::Manifest,
    ) -> chat::net::conversation::Consent {
        chat::net::conversation::Consent::Accept(Vec::new())
    }
    fn file_open(&mut self, _: u64, _: u16, _: &[String], _: u64, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn file_write(&mut self, _id: u64, _entry: u16, data: &[u8]) -> std::io::Result<()> {
        self.file_bytes
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(500));
        Ok(())
    }
    fn file_save(&mut self, _id: u64, _entry: u16) -> chat::transfer::SaveOutcome {
        chat::transfer::SaveOutcome::Saved
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A chat line typed while a large file goes out is sealed between two of
/// its chunks: it arrives long before the file ends, not behind it.
#[test]
fn a_message_does_not_wait_behind_a_large_file() {
    const SIZE: u64 = 32 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        chat::net::respond(
            stream,
            &mut rand::rng(),
            &common::hostile::key("responder"),
            "bob",
            || true,
            || common::hostile::key("transient"),
        )
        .unwrap()
    });
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ada = chat::net::initiate(
        stream,
        &mut rand::rng(),
        &common::hostile::key("initiator"),
        "ada",
        |_| chat::net::Decision::Continue,
    )
    .unwrap()
    .unwrap();
    let bob = server.join().unwrap();
    let file_bytes = Arc::new(AtomicU64::new(0));
    let (at_message, message_arrived) = std::sync::mpsc::channel();
    let bob = chat::net::conversation::Conversation::over(
        bob,
        u64::MAX,
        Counting {
            file_bytes: Arc::clone(&file_bytes),
            at_message,
        },
    )
    .unwrap();
    struct Quiet;
    impl chat::net::conversation::Handler for Quiet {
        fn message_data(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn message_end(&mut self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
    }
    let ada = chat::net::conversation::Conversation::over(ada, u64::MAX, Quiet).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    let manifest = chat::transfer::Manifest::new(vec![Entry {
        path: vec!["big.bin".into()],
        size: SIZE,
    }])
    .unwrap();
    let sender = ada.sender();
    let id = sender
        .offer(manifest, vec![path], Arc::new(|_| {}))
        .unwrap();
    wait_until(secs(30), "the file's first MiB", || {
        file_bytes.load(Ordering::SeqCst) >= 1 << 20
    });
    sender.send(b"hello while the file goes").unwrap();
    let at = message_arrived.recv_timeout(secs(30)).unwrap();
    assert!(
        at < SIZE / 2,
        "the message arrived after {at} of {SIZE} bytes of the file"
    );
    let report = sender.wait_offer(id);
    assert!(report.all_saved(), "{report:?}");
    assert_eq!(file_bytes.load(Ordering::SeqCst), SIZE);
    drop(bob);
}
