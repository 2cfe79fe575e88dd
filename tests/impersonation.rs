//! An active attacker who answers in bob's place with its own identity key
//! (a man in the middle that terminates the handshake itself), on first
//! contact and once bob is pinned.

use crate::common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use chat::crypto::{PrivateKey, SafetyNumber};
use chat::net::NetError;
use chat::protocol::{CloseReason, ProtocolError};
use common::{TestHome, fingerprint_of, fixture_key, secs};

fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(fixture_key(name)).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// A fake bob holding the attacker's key ("transient.pem"), answering one
/// connection; reports what its handshake learned.
fn impostor() -> (u16, mpsc::Receiver<Result<String, NetError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (report, reports) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let attacker = key("transient");
        let mut rng = rand::rng();
        let fresh = PrivateKey::generate(&mut rng, 2048).unwrap();
        let result = chat::net::respond(stream, &mut rng, &attacker, "bob", || true, || fresh)
            .map(|connected| connected.established.peer.key.fingerprint().to_string());
        let _ = report.send(result);
    });
    (port, reports)
}

fn learned(reports: &mpsc::Receiver<Result<String, NetError>>) -> Result<String, NetError> {
    reports
        .recv_timeout(secs(20))
        .expect("the impostor finished")
}

#[test]
fn a_pinned_peer_impersonated_is_refused_and_learns_nothing() {
    let ada = TestHome::with_identity("initiator");
    let (port, reports) = impostor();
    let address = format!("127.0.0.1:{port}");
    ada.run(&[
        "peers",
        "add",
        "bob",
        &fingerprint_of("responder"),
        "--address",
        &address,
    ])
    .ok();
    let store = common::Unchanged::watch(ada.file("known_peers.toml"));
    let outcome = ada.run(&["send", &address, "--accept-new"]);
    outcome.fails(
        5,
        &[
            "PEER IDENTIFICATION HAS CHANGED",
            &format!("Presented key: {}", fingerprint_of("transient")),
        ],
    );
    store.check();
    // The impostor never learned who was calling.
    match learned(&reports) {
        Err(NetError::Protocol(ProtocolError::Abandoned(CloseReason::Untrusted))) => {}
        other => panic!("the impostor's handshake ended with {other:?}"),
    }
}

#[test]
fn on_first_contact_an_impostor_is_refused_without_a_way_to_confirm_it() {
    let ada = TestHome::with_identity("initiator");
    // No terminal, no instruction: refused.
    let (port, reports) = impostor();
    ada.run(&["send", &format!("127.0.0.1:{port}")])
        .fails(4, &[&fingerprint_of("transient"), "--expect"]);
    assert!(matches!(
        learned(&reports),
        Err(NetError::Protocol(ProtocolError::Abandoned(_)))
    ));

    // Expecting bob's real key (checked over the phone): refused.
    let (port, reports) = impostor();
    ada.run(&[
        "send",
        &format!("127.0.0.1:{port}"),
        "--expect",
        &fingerprint_of("responder"),
    ])
    .fails(4, &["not the expected"]);
    assert!(matches!(
        learned(&reports),
        Err(NetError::Protocol(ProtocolError::Abandoned(_)))
    ));
    assert!(!ada.file("known_peers.toml").exists());
}

/// Trust on first use has one window: with `--accept-new`, the first key
/// presented is pinned, an attacker's included. What exposes it is the
/// safety number, which differs from the one the real peer computes.
#[test]
fn accept_new_pins_whoever_answers_first_but_the_safety_number_tells() {
    let ada = TestHome::with_identity("initiator");
    let (port, reports) = impostor();
    let outcome = ada.run(&[
        "send",
        &format!("127.0.0.1:{port}"),
        "--accept-new",
        "--json",
    ]);
    let connected: serde_json::Value =
        serde_json::from_str(outcome.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(learned(&reports).unwrap(), fingerprint_of("initiator"));
    assert_eq!(
        connected["peer"]["fingerprint"],
        fingerprint_of("transient")
    );
    let shown_to_ada = connected["safety_number"].as_str().unwrap().to_string();
    let real = SafetyNumber::new(key("initiator").public(), key("responder").public()).to_string();
    assert_ne!(
        shown_to_ada, real,
        "the safety number would not expose the attacker"
    );
}
