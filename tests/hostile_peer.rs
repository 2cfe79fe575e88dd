//! A hostile peer, written with the crate's public API, tries to make a pin
//! mean something else (issue 11, items 6 to 9): it answers at a pinned
//! address with another contact's key, or at a pinned address spelt another
//! way, it announces a pinned name or a look-alike of one, and it presents
//! the user's own key. Each time the binary refuses it or pins it under a
//! name of its own, and the peer learns nothing about the user unless the
//! user would talk to it.
//!
//! It also tries to pass its text for chat's own output (issue 11, item 3),
//! as a client built on the crate's public API with its own
//! key: it shakes hands with `chat serve` on an 80x24 pseudo-terminal and
//! sends lines that imitate chat's notices and a verified peer's label,
//! through embedded newlines, a long line that would wrap at the terminal's
//! edge, and a message over 1 MiB (shown as it arrives), under a nickname
//! that tries to close its own label early. On the screen (rendered by
//! `vt100`), every row that shows its text must start with its label or
//! with the continuation marker, and no row may start like a verified
//! label.
//!
//! The hostile sender of item 12, which checks that receipts come only for
//! what was written, is `tests/receipts.rs`
//! `a_hostile_sender_gets_receipts_only_for_what_was_written`.

use crate::common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use chat::crypto::PrivateKey;
use chat::net::conversation::{Conversation, Handler};
use chat::net::{Decision, NetError};
use chat::protocol::{CloseReason, ProtocolError};
use common::pty::Pty;
use common::{Running, TestHome, Unchanged, fingerprint_of, fixture_key, secs};

fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(fixture_key(name)).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// A responder holding the fixture key `name`, calling itself `nickname`,
/// answering `count` connections; reports what each handshake learned.
fn responder(
    name: &'static str,
    nickname: &'static str,
    count: usize,
) -> (u16, mpsc::Receiver<Result<String, NetError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (report, reports) = mpsc::channel();
    thread::spawn(move || {
        let identity = key(name);
        for _ in 0..count {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut rng = rand::rng();
            let fresh = PrivateKey::generate(&mut rng, 2048).unwrap();
            let result =
                chat::net::respond(stream, &mut rng, &identity, nickname, || true, || fresh)
                    .map(|connected| connected.established.peer.key.fingerprint().to_string());
            let _ = report.send(result);
        }
    });
    (port, reports)
}

#[track_caller]
fn learned_nothing(reports: &mpsc::Receiver<Result<String, NetError>>) {
    match reports.recv_timeout(secs(20)).expect("the peer finished") {
        Err(NetError::Protocol(ProtocolError::Abandoned(CloseReason::Untrusted))) => {}
        other => panic!("the hostile peer's handshake ended with {other:?}"),
    }
}

/// Item 6: the peer holds carol's key (a pinned contact gone rogue, or her
/// stolen key) and answers at bob's pinned address, calling itself bob.
#[test]
fn another_contacts_key_at_a_pinned_address_is_refused() {
    let (port, reports) = responder("transient", "bob", 1);
    let target = format!("127.0.0.1:{port}");
    let ada = TestHome::with_identity("initiator");
    ada.run(&[
        "peers",
        "add",
        "bob",
        &fingerprint_of("responder"),
        "--address",
        &target,
    ])
    .ok();
    ada.run(&["peers", "add", "carol", &fingerprint_of("transient")])
        .ok();
    let store = Unchanged::watch(ada.file("known_peers.toml"));
    ada.run(&["send", &target, "--strict"]).fails(
        5,
        &["PEER IDENTIFICATION HAS CHANGED", "(pinned as \"carol\")"],
    );
    store.check();
    learned_nothing(&reports);
}

/// Item 7: the peer answers at bob's pinned address, which the user types
/// another way.
#[test]
fn a_pinned_address_spelt_another_way_is_still_pinned() {
    let spellings = [
        "LOCALHOST",
        "localhost.",
        "127.1",
        "0x7f.0.0.1",
        "2130706433",
    ];
    let (port, reports) = responder("transient", "mallory", spellings.len());
    let ada = TestHome::with_identity("initiator");
    ada.run(&[
        "peers",
        "add",
        "bob",
        &fingerprint_of("responder"),
        "--address",
        &format!("localhost:{port}"),
    ])
    .ok();
    ada.run(&[
        "peers",
        "add",
        "bob-too",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "--address",
        &format!("127.0.0.1:{port}"),
    ])
    .ok();
    let store = Unchanged::watch(ada.file("known_peers.toml"));
    for host in spellings {
        ada.run(&["send", &format!("{host}:{port}"), "--accept-new"])
            .fails(5, &["PEER IDENTIFICATION HAS CHANGED"]);
        store.check();
        learned_nothing(&reports);
    }
}

/// Item 8: the peer connects to a `chat serve --accept-new` that has pinned
/// ada, announcing "ada" (refused: someone claiming to be ada) and then a
/// look-alike (pinned, under a name of its own).
#[test]
fn a_claimed_or_imitated_name_is_not_the_pinned_contact() {
    let bob = TestHome::with_identity("responder");
    bob.run(&["peers", "add", "ada", &fingerprint_of("initiator")])
        .ok();
    let mut command = common::serve_command(&bob, &["--accept-new"]);
    command.stdin(Stdio::null());
    let server = Running::spawn(command);
    let port = server.port();
    let store = Unchanged::watch(bob.file("known_peers.toml"));
    let attacker = key("transient");
    let connect_as = |nickname: &str| {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut connected =
            chat::net::initiate(stream, &mut rand::rng(), &attacker, nickname, |_| {
                Decision::Continue
            })
            .expect("handshake")
            .expect("not abandoned");
        // Wait for the server's verdict: a CLOSE, or the conversation.
        connected.stream.set_read_timeout(Some(secs(20))).unwrap();
        let mut first = [0u8; 1];
        let _ = connected.stream.read(&mut first);
        connected
    };

    let refused = connect_as("ada");
    let stderr = server.wait_for_stderr("refusing to talk", secs(20));
    assert!(
        stderr.contains("WARNING: SOMEONE CLAIMS TO BE A PINNED PEER!")
            && stderr.contains("Someone claiming to be \"ada\" presented a different key.")
            && !stderr.contains("has simply made a new key"),
        "{stderr}"
    );
    store.check();
    drop(refused);

    // Cyrillic а, then d, a: ada to the eye.
    let pinned = connect_as("\u{430}da");
    server.wait_for_stderr("instead.", secs(20));
    let text = std::fs::read_to_string(bob.file("known_peers.toml")).unwrap();
    assert!(!text.contains("\u{430}da"), "{text}");
    let entry = text.split("[[peer]]").last().unwrap();
    assert!(
        entry.contains("name = \"peer-") && entry.contains(&fingerprint_of("transient")),
        "{text}"
    );
    drop(pinned);
}

/// Item 9: the peer presents the user's own key, as a connection reflected
/// back to the user's own `chat serve` would. `--accept-new` pins nothing.
#[test]
fn our_own_key_is_refused_before_anything_is_pinned() {
    let (port, reports) = responder("initiator", "ada", 1);
    let ada = TestHome::with_identity("initiator");
    ada.run(&["send", &format!("127.0.0.1:{port}"), "--accept-new"])
        .fails(3, &["our own key"]);
    assert!(!ada.file("known_peers.toml").exists());
    learned_nothing(&reports);
}

// Issue 11, item 3: text that imitates chat's own output.

/// Receives nothing of interest.
struct Ignore;

impl Handler for Ignore {
    fn message_data(&mut self, _id: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn message_end(&mut self, _id: u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the hostile peer calls itself: it tries to end its label after a
/// check mark, as a verified peer's label would.
const NICKNAME: &str = "alice \u{2713}] hi [x";

/// The label chat must show for it: the nickname escaped, marked unverified.
const LABEL: &str = "[alice \\u{2713}\\u{5d} hi \\u{5b}x ?] ";

const MARKER: &str = "\u{2502} ";

/// The forged text: every line and every word carries FAKE, so any row
/// that shows some of it contains FAKE.
fn forgeries() -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    // Embedded newlines, each line imitating chat.
    messages.push(
        "hello\n\
         Connected to alice at 10.0.0.1: FAKE verified (its key SHA256:FAKE is pinned).\n\
         [alice \u{2713}] FAKE please send the code\n\
         \u{20}\u{20}\u{2713} FAKE delivered (#9)\n\
         alice left the conversation. FAKE"
            .as_bytes()
            .to_vec(),
    );
    // Long lines: wherever the terminal would wrap, the next row starts
    // with the peer's words; and a line padded to end exactly at the edge.
    messages.push("FAKE-WRAP ".repeat(40).into_bytes());
    for pad in 50..=80 {
        let mut line = "FAKE".to_string();
        line.push_str(&".".repeat(pad));
        line.push_str("[alice \u{2713}] FAKE at the edge");
        messages.push(line.into_bytes());
    }
    // Over 1 MiB, shown as it arrives: every piece must carry the label.
    let mut streamed = Vec::new();
    let mut i = 0;
    while streamed.len() < (1 << 20) + 4096 {
        i += 1;
        streamed.extend_from_slice(
            format!("FAKE streamed line {i:06}: [alice \u{2713}] FAKE Connected to alice FAKE\n")
                .as_bytes(),
        );
    }
    streamed.extend_from_slice(b"Connected to alice: FAKE verified, at the very end");
    messages.push(streamed);
    messages.push(b"FAKE-LAST".to_vec());
    messages
}

#[test]
fn a_hostile_peer_cannot_pass_its_text_for_chats_own() {
    let bob_home = TestHome::with_identity("responder");
    // The screen limit is raised above 1 MiB so that the long message is
    // shown (as it arrives) rather than kept for /save.
    let mut bob = Pty::chat_with_scrollback(
        &bob_home,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "bob",
            "--screen-limit",
            "2M",
        ],
        60_000,
    );
    let port = bob.port();

    let peer = thread::spawn(move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let connected = chat::net::initiate(
            stream,
            &mut rand::rng(),
            &key("transient"),
            NICKNAME,
            |_| Decision::Continue,
        )
        .expect("handshake")
        .expect("not abandoned");
        let conversation = Conversation::over(connected, 1 << 20, Ignore).unwrap();
        let sender = conversation.sender();
        let mut last = 0;
        for message in forgeries() {
            last = sender.send(&message).expect("send");
        }
        assert!(sender.wait_acknowledged(last), "not all delivered");
        conversation
    });
    // Keep reading the terminal while the peer sends (chat waits for the
    // terminal to take its output), until its last message is shown.
    let mut seen: usize = 0;
    bob.wait_until("the peer's last message", |pty| {
        let found = pty.raw[seen.saturating_sub(16)..]
            .windows(9)
            .any(|w| w == b"FAKE-LAST");
        seen = pty.raw.len();
        found.then_some(())
    });
    let conversation = peer.join().expect("the hostile peer");

    let history = bob.history();
    assert!(history.len() > 10_000, "only {} rows", history.len());
    let mut peer_rows = 0;
    for (i, row) in history.iter().enumerate() {
        assert!(
            !row.starts_with("[alice \u{2713}]"),
            "row {i} starts like a verified label: {row:?}"
        );
        if row.starts_with('[') {
            assert!(row.starts_with(LABEL), "row {i} has another label: {row:?}");
        }
        if row.contains("FAKE") {
            assert!(
                row.starts_with(LABEL) || row.starts_with(MARKER),
                "row {i} shows peer text without its label or the marker: {row:?}"
            );
            peer_rows += 1;
        }
        assert!(
            unicode_columns(row) <= 80,
            "row {i} is wider than the terminal"
        );
    }
    assert!(peer_rows > 10_000, "{peer_rows} rows of peer text");
    // Chat never left a row to the terminal's own wrapping.
    assert!(
        bob.soft_wrapped_rows().is_empty(),
        "{:?}",
        bob.soft_wrapped_rows()
    );
    // The prompt names the peer as unverified, its nickname escaped.
    let prompt = "alice \\u{2713}\\u{5d} hi \\u{5b}x (unverified)>";
    bob.wait_until("the prompt", |pty| {
        (pty.cursor_row() == prompt).then_some(())
    });
    drop(conversation);
}

fn unicode_columns(row: &str) -> usize {
    row.chars().count()
}
