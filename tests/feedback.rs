//! What `connect` and `send` tell a person while they dial: a clear connect
//! timeout, and with `-v` each step of the handshake in words.

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Outcome, TestHome, fixture_key, secs, serve};
use socket2::{Domain, Socket, Type};

/// A listener whose queue of connections waiting to be accepted is full, so
/// that the kernel drops the next SYN: a connection to it never completes,
/// like one to a host behind a firewall that drops packets. Returns the
/// listener, the connections that fill it, and its address.
fn full_listener() -> (Socket, Vec<TcpStream>, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => return (socket, fillers, address),
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled");
}

#[test]
fn a_connect_timeout_says_what_it_waited_for() {
    let (_listener, _fillers, address) = full_listener();
    let home = TestHome::with_identity("initiator");
    let started = Instant::now();
    let outcome = Outcome::of(
        home.chat()
            .args(["connect", &address.to_string(), "--accept-new"])
            .env("CHAT_CONNECT_TIMEOUT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    let waited = started.elapsed();
    let err = outcome.fails(
        3,
        &[
            &format!("chat: cannot connect to {address}"),
            "no answer within 1s; check the address, and any firewall on the way",
        ],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        waited >= secs(1) && waited < secs(5),
        "gave up after {waited:?}"
    );
}

/// `-v` walks through the handshake: what was sent, what was received and
/// checked; never key material.
#[test]
fn verbose_shows_each_step_of_the_handshake() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let port = server.port();
    let sent = ada.run(&["send", &format!("127.0.0.1:{port}"), "--accept-new", "-v"]);
    sent.ok();
    server.finish(secs(20)).ok();
    let steps: Vec<&str> = sent
        .stderr
        .lines()
        .filter_map(|line| line.strip_prefix("handshake: "))
        .collect();
    let expected = [
        "TCP connection to 127.0.0.1:",
        "sent ClientHello (m1)",
        "received ServerHello (m2)",
        "sent KeyTransport (m3)",
        "both sides now derive handshake keys",
        "received ResponderIdentity (m4)",
        "received ResponderAuth (m5) and checked it",
        "checking the peer's key against known_peers.toml",
        "sent InitiatorIdentity (m6) and InitiatorAuth (m7)",
        "handshake complete",
    ];
    assert_eq!(steps.len(), expected.len(), "{}", sent.stderr);
    for (step, start) in steps.iter().zip(expected) {
        assert!(step.starts_with(start), "{step:?} should start {start:?}");
    }
    assert!(steps[5].contains(&common::fingerprint_of("responder")));
    // No line of either private key appears.
    for key in ["initiator", "responder"] {
        let pem = std::fs::read_to_string(fixture_key(key)).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!sent.stderr.contains(line), "key material on stderr");
        }
    }
    // Without -v, none of it.
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let port = server.port();
    let quiet = ada.run(&["send", &format!("127.0.0.1:{port}")]);
    quiet.ok();
    assert!(!quiet.stderr.contains("handshake:"), "{}", quiet.stderr);
    server.finish(secs(20));
}
