//! A hostile peer, written with the crate's public API, tries to make a pin
//! mean something else (issue 11, items 6 to 9): it answers at a pinned
//! address with another contact's key, or at a pinned address spelt another
//! way, it announces a pinned name or a look-alike of one, and it presents
//! the user's own key. Each time the binary refuses it or pins it under a
//! name of its own, and the peer learns nothing about the user unless the
//! user would talk to it.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use chat::crypto::PrivateKey;
use chat::net::{Decision, NetError};
use chat::protocol::{CloseReason, ProtocolError};
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
