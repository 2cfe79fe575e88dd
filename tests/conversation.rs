//! Two real `chat` processes talking over loopback, each with its own
//! temporary home: conversations, `chat send`, trust on first use, changed
//! keys, and a busy server.

use crate::common;

use std::fs;
use std::io::Write;
use std::process::Stdio;

use common::{Running, TestHome, Unchanged, fingerprint_of, secs, serve};
use sha2::{Digest, Sha256};

fn address(server: &Running) -> String {
    format!("127.0.0.1:{}", server.port())
}

fn known_peers(home: &TestHome) -> toml::Table {
    fs::read_to_string(home.file("known_peers.toml"))
        .unwrap()
        .parse()
        .unwrap()
}

fn pinned(home: &TestHome) -> Vec<(String, String, Vec<String>)> {
    let table = known_peers(home);
    table["peer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let addresses = p
                .get("addresses")
                .map(|a| {
                    a.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                p["name"].as_str().unwrap().to_string(),
                p["fingerprint"].as_str().unwrap().to_string(),
                addresses,
            )
        })
        .collect()
}

#[test]
fn a_conversation_in_both_directions_without_a_terminal() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut server = serve(&bob, &["--accept-new"], Stdio::piped());
    let mut server_in = server.stdin();
    let target = address(&server);

    let mut client_command = ada.chat();
    client_command
        .args(["connect", &target, "--accept-new", "--name", "ada"])
        .stdin(Stdio::piped());
    let mut client = Running::spawn(client_command);
    let mut client_in = client.stdin();

    server_in.write_all(b"hello ada\n").unwrap();
    client_in
        .write_all(b"hello bob\nsecond line\n//slash\n")
        .unwrap();
    // End of input: nothing more to send. Both wait for the receipts and
    // the other side, then finish.
    drop(server_in);
    drop(client_in);

    let client = client.finish(secs(20));
    let server = server.finish(secs(20));
    assert_eq!(client.code, Some(0), "{client:#?}");
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(server.stdout, "hello bob\nsecond line\n/slash\n");
    assert_eq!(client.stdout, "hello ada\n");
}

#[test]
fn send_delivers_50_mib_intact() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let file = ada.file("big.txt");
    let mut text = Vec::with_capacity(50 << 20);
    let mut n = 0u64;
    while text.len() < 50 << 20 {
        writeln!(
            text,
            "line {n:010} {}",
            "abcdefghijklmnopqrstuvwxyz".repeat(2)
        )
        .unwrap();
        n += 1;
    }
    fs::write(&file, &text).unwrap();
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    let sent = ada.run_with_stdin_file(&["send", &target, "--accept-new"], &file);
    sent.ok();
    let received = server.finish(secs(60));
    assert_eq!(received.code, Some(0), "{}", received.stderr);
    assert_eq!(received.stdout.len(), text.len());
    assert_eq!(
        Sha256::digest(received.stdout.as_bytes()),
        Sha256::digest(&text),
        "the 50 MiB message arrived altered"
    );
}

#[test]
fn send_reads_standard_input_from_a_pipe() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    let mut command = ada.chat();
    command
        .args(["send", &target, "--accept-new"])
        .stdin(Stdio::piped());
    let mut sender = Running::spawn(command);
    let mut input = sender.stdin();
    input.write_all(b"several\nlines\nas one message").unwrap();
    drop(input);
    sender.finish(secs(20)).ok();
    let received = server.finish(secs(20));
    assert_eq!(received.stdout, "several\nlines\nas one message");
}

/// `chat send` says DONE after its message (docs/PROTOCOL.md, 8.4): a
/// receiver that has nothing to send either sees the peer done before the
/// conversation ends on good terms.
#[test]
fn send_says_done_after_its_message() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new", "--json"], Stdio::null());
    let target = address(&server);
    let mut command = ada.chat();
    command
        .args(["send", &target, "--accept-new", "--json"])
        .stdin(Stdio::piped());
    let mut sender = Running::spawn(command);
    sender.stdin().write_all(b"done after this").unwrap();
    let sent = sender.finish(secs(20));
    sent.ok();
    let received = server.finish(secs(20));
    assert_eq!(received.code, Some(0), "{received:#?}");
    let events: Vec<serde_json::Value> = received
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["connected", "message", "peer_done", "closed"],
        "{received:#?}"
    );
    assert_eq!(events[1]["text"], "done after this");
    // chat send leaves with CLOSE(goodbye) once its message is acknowledged,
    // without waiting for our DONE (docs/PROTOCOL.md 8.4): the session is
    // finished if our DONE went out first, else the peer left on good terms.
    let ending = (&events[3]["how"], &events[3]["reason"]);
    assert!(
        ending.0 == "finished" || (ending.0 == "closed_by_peer" && ending.1 == "goodbye"),
        "{received:#?}"
    );
}

#[test]
fn first_contact_with_accept_new_pins_both_sides_and_the_next_session_is_verified() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    ada.run(&["send", &target, "--accept-new", "--name", "ada"])
        .ok();
    server.finish(secs(20)).ok();

    assert_eq!(
        pinned(&ada),
        [(
            "bob".to_string(),
            fingerprint_of("responder"),
            vec![target.clone()]
        )]
    );
    assert_eq!(
        pinned(&bob),
        [("ada".to_string(), fingerprint_of("initiator"), vec![])]
    );

    // The next session: both keys are known, so --strict (which refuses
    // unknown keys) passes, and the peer is reported verified.
    let server = serve(&bob, &["--strict", "--json"], Stdio::null());
    let target = address(&server);
    let client = ada.run(&["send", &target, "--strict", "--json", "--name", "ada"]);
    client.ok();
    let connected: serde_json::Value =
        serde_json::from_str(client.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["peer"]["trust"], "verified");
    assert_eq!(connected["peer"]["name"], "bob");
    assert_eq!(
        connected["peer"]["fingerprint"],
        fingerprint_of("responder")
    );
    let delivered = client
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .any(|e| e["event"] == "delivered" && e["id"] == 1);
    assert!(delivered, "{}", client.stdout);
    let server = server.finish(secs(20));
    assert_eq!(server.code, Some(0), "{}", server.stderr);
    let events: Vec<serde_json::Value> = server
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["peer"]["trust"], "verified");
    assert_eq!(events[0]["peer"]["name"], "ada");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "message" && e["text"] == common::MESSAGE)
    );
}

/// The connecting side has pinned bob; the server now presents another key
/// under bob's name. The connection is abandoned before anything is sent.
#[test]
fn a_changed_key_is_refused_by_the_connecting_side() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    ada.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .ok();
    let ada_store = Unchanged::watch(ada.file("known_peers.toml"));

    let impostor = TestHome::with_identity("transient");
    let server = serve(&impostor, &["--accept-new"], Stdio::null());
    let target = address(&server);
    let mut command = ada.chat();
    command
        .args(["send", &target, "--accept-new"])
        .stdin(Stdio::piped());
    let mut client = Running::spawn(command);
    client.stdin().write_all(b"secret plans").unwrap();
    let client = client.finish(secs(20));
    client.fails(
        5,
        &[
            // bob is pinned by name only: a new key under the name is a claim.
            "WARNING: SOMEONE CLAIMS TO BE A PINNED PEER!",
            "Someone claiming to be \"bob\" presented a different key.",
            &format!("Pinned key:    {}", fingerprint_of("responder")),
            &format!("Presented key: {}", fingerprint_of("transient")),
            &format!("chat --home {} peers forget bob", ada.path().display()),
            "known_peers.toml",
        ],
    );
    ada_store.check();
    server.wait_for_stderr("abandoned the handshake", secs(10));
    assert!(
        server.stdout().is_empty(),
        "the impostor received something"
    );
    assert!(
        !impostor.file("known_peers.toml").exists(),
        "the impostor learned nothing to pin"
    );
    let _ = bob;
}

/// The serving side has pinned ada; someone else claims to be ada. The
/// server refuses it with the banner, delivers nothing and changes no file;
/// the client is told it is not trusted. The refusal is not a conversation:
/// `--once` still waits for one, and the real ada has it.
#[test]
fn a_changed_key_is_refused_by_the_serving_side() {
    let bob = TestHome::with_identity("responder");
    bob.run(&["peers", "add", "ada", &fingerprint_of("initiator")])
        .ok();
    let bob_store = Unchanged::watch(bob.file("known_peers.toml"));
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);

    let mallory = TestHome::with_identity("transient");
    let client = mallory.run(&["send", &target, "--accept-new", "--name", "ada"]);
    let mallory_store = Unchanged::watch(mallory.file("known_peers.toml"));
    client.fails(4, &["does not trust our key"]);
    // The one-line error comes after the banner.
    let warned = server.wait_for_stderr(
        "chat: someone claiming to be \"ada\" presented a different key",
        secs(20),
    );
    for needle in [
        "WARNING: SOMEONE CLAIMS TO BE A PINNED PEER!",
        "Someone claiming to be \"ada\" presented a different key.",
        &format!("Presented key: {}", fingerprint_of("transient")),
        &format!("chat --home {} peers forget ada", bob.path().display()),
    ] {
        assert!(warned.contains(needle), "no {needle:?} in {warned}");
    }
    assert!(server.stdout().is_empty(), "a message was delivered");
    bob_store.check();
    // The client pinned bob on first contact; refusing it changes nothing more.
    mallory_store.check();

    let ada = TestHome::with_identity("initiator");
    let mut send = ada.chat();
    send.args(["send", &target, "--accept-new", "--name", "ada"])
        .stdin(Stdio::piped());
    let mut sender = Running::spawn(send);
    sender.stdin().write_all(b"the real ada").unwrap();
    assert_eq!(sender.finish(secs(20)).code, Some(0));
    let server = server.finish(secs(20));
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(server.stdout, "the real ada");
    bob_store.check();
}

#[test]
fn an_unknown_peer_without_a_terminal_is_refused() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    let outcome = ada.run(&["send", &target]);
    let bob_fp = fingerprint_of("responder");
    let err = outcome.fails(4, &[&bob_fp, &format!("--expect {bob_fp}"), "--accept-new"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ada.file("known_peers.toml").exists());
    drop(server);

    // The serving side refuses an unknown client the same way, and keeps
    // waiting for one it may talk to.
    let server = serve(&bob, &[], Stdio::null());
    let target = address(&server);
    ada.run(&["send", &target, "--accept-new"])
        .fails(4, &["does not trust our key"]);
    let said = server.wait_for_stderr("--accept-new", secs(20));
    assert!(said.contains(&fingerprint_of("initiator")), "{said}");
    assert!(server.stdout().is_empty());
}

/// Issue 11, item 10: `serve --once --strict` and `serve --once --expect`
/// refuse a stranger and keep waiting: the refused attempt does not use up
/// `--once`, the expected peer still gets its conversation.
#[test]
fn serve_once_outlasts_refused_strangers() {
    let ada = TestHome::with_identity("initiator");
    let carol = TestHome::with_identity("transient");
    let strict = TestHome::with_identity("responder");
    strict
        .run(&["peers", "add", "ada", &fingerprint_of("initiator")])
        .ok();
    let expecting = TestHome::with_identity("responder");
    let expect = fingerprint_of("initiator");
    for (bob, mode) in [
        (&strict, &["--strict"][..]),
        (&expecting, &["--expect", &expect][..]),
    ] {
        let server = serve(bob, mode, Stdio::null());
        let target = address(&server);
        for _ in 0..2 {
            carol
                .run(&["send", &target, "--accept-new", "--name", "carol"])
                .fails(4, &["does not trust our key"]);
        }
        let mut send = ada.chat();
        send.args(["send", &target, "--accept-new", "--name", "ada"])
            .stdin(Stdio::piped());
        let mut sender = Running::spawn(send);
        sender.stdin().write_all(b"from ada").unwrap();
        let sent = sender.finish(secs(20));
        assert_eq!(sent.code, Some(0), "{mode:?}: {sent:#?}");
        let server = server.finish(secs(20));
        assert_eq!(server.code, Some(0), "{mode:?}: {server:#?}");
        assert_eq!(server.stdout, "from ada");
        assert_eq!(
            server.stderr.matches("chat: ").count(),
            2,
            "{}",
            server.stderr
        );
    }
}

#[test]
fn expect_pins_the_right_key_and_refuses_any_other() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    let wrong = fingerprint_of("transient");
    ada.run(&["send", &target, "--expect", &wrong])
        .fails(4, &["not the expected", &wrong]);
    assert!(!ada.file("known_peers.toml").exists());
    let right = fingerprint_of("responder");
    ada.run(&["send", &target, "--expect", &right]).ok();
    assert_eq!(pinned(&ada)[0].1, right);
    server.finish(secs(20)).ok();
}

#[test]
fn a_busy_server_refuses_a_second_client_cleanly() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let carol = TestHome::with_identity("transient");
    // -v: on a loaded machine the refusal may come before a conversation is
    // even considered (no transient key ready yet, which serve logs only
    // when verbose); either way it is "busy".
    let server = serve(&bob, &["--accept-new", "-v"], Stdio::null());
    let target = address(&server);

    // Ada keeps a conversation open: her input stays open.
    let mut command = ada.chat();
    command
        .args(["connect", &target, "--accept-new"])
        .stdin(Stdio::piped());
    let mut first = Running::spawn(command);
    let mut first_in = first.stdin();
    server.wait_for_stderr("is now pinned", secs(10));

    let second = carol.run(&["send", &target, "--accept-new"]);
    let err = second.fails(3, &["busy"]);
    assert_eq!(err.lines().count(), 1, "{err}");

    first_in.write_all(b"still here\n").unwrap();
    drop(first_in);
    first.finish(secs(20)).ok();
    let server = server.finish(secs(20));
    assert_eq!(server.code, Some(0), "{}", server.stderr);
    assert_eq!(server.stdout, "still here\n");
    assert!(server.stderr.contains("busy"), "{}", server.stderr);
}

#[test]
fn identity_is_created_automatically() {
    let bob = TestHome::empty();
    let ada = TestHome::empty();
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let text = server.wait_for_stderr("Created a new identity", secs(30));
    assert!(
        text.lines().next().unwrap().starts_with("listening on "),
        "{text}"
    );
    let target = address(&server);
    let sent = ada.run(&["send", &target, "--accept-new"]);
    assert!(
        sent.stderr.contains("Created a new identity"),
        "{}",
        sent.stderr
    );
    sent.ok();
    server.finish(secs(20)).ok();
    for home in [&bob, &ada] {
        let printed = home.run(&["fingerprint"]).ok().to_string();
        assert!(printed.starts_with("SHA256:"));
    }
}
