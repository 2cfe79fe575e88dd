//! Invites (issue 14): `chat serve --relay` registers with a real
//! `chat relay`, prints an invite, and `chat connect`/`chat send INVITE`
//! reach it through the relay or directly. Loopback only.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mitm::{Proxy, Rule, Way};
use common::{MESSAGE, Running, TestHome, fingerprint_of, secs, serve_command};

/// A `chat relay` on a free loopback port.
struct Relay {
    _running: Running,
    address: String,
}

impl Relay {
    fn start(extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .args(["relay", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("CHAT_HOME")
            .stdin(Stdio::null());
        let running = Running::spawn(command);
        let address = format!("127.0.0.1:{}", running.port());
        Self {
            _running: running,
            address,
        }
    }
}

/// `chat serve --relay RELAY --accept-new` as "bob", with `extra`; returns
/// it once it has registered, with its invite.
fn serve_via(home: &TestHome, relay: &str, extra: &[&str], stdin: Stdio) -> (Running, String) {
    let mut command = serve_command(home, &["--relay", relay, "--accept-new"]);
    command.args(extra).stdin(stdin);
    let running = Running::spawn(command);
    let text = running.wait_for_stderr("registered with relay", secs(20));
    let invite = text
        .lines()
        .find(|line| line.starts_with("chat://"))
        .expect("an invite line")
        .to_string();
    (running, invite)
}

#[test]
fn relay_only_serve_meets_send_and_connect_through_the_relay() {
    let relay = Relay::start(&[]);
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    let (serve, invite) = serve_via(
        &server,
        &relay.address,
        &["--relay-only", "--once"],
        Stdio::null(),
    );
    assert!(
        !invite.contains("direct="),
        "--relay-only hides our address: {invite}"
    );
    assert!(
        invite.ends_with(&format!("#{}", fingerprint_of("responder"))),
        "{invite}"
    );
    assert!(
        !serve.stderr().contains("listening on"),
        "{}",
        serve.stderr()
    );

    let sent = joiner.run(&["send", &invite, "--name", "ada"]);
    sent.ok();
    let stderr = &sent.stderr;
    assert!(
        stderr.contains(&format!("via relay {}", relay.address)),
        "{stderr}"
    );
    assert!(stderr.contains("Delivered to bob"), "{stderr}");
    assert!(
        stderr.contains("matches the invite; pinned as \"bob\" (verified)"),
        "{stderr}"
    );
    let served = serve.finish(secs(20));
    assert_eq!(served.code, Some(0), "{}", served.stderr);
    assert!(served.stdout.contains(MESSAGE.trim()), "{}", served.stdout);
    assert!(
        served.stderr.contains("via relay 127.0.0.1:"),
        "{}",
        served.stderr
    );

    // The responder is pinned as verified, and the invite kept for it.
    let known = std::fs::read_to_string(joiner.file("known_peers.toml")).unwrap();
    assert!(known.contains(&fingerprint_of("responder")), "{known}");
    let kept = std::fs::read_to_string(joiner.file("invites.toml")).unwrap();
    assert!(kept.contains(invite.split('#').next().unwrap()), "{kept}");

    // Next time the contact's name is enough: the same room, the same relay.
    let (serve, again) = serve_via(
        &server,
        &relay.address,
        &["--relay-only", "--once"],
        Stdio::null(),
    );
    assert_eq!(again, invite, "the room secret persists");
    let sent = joiner.run(&["send", "bob", "--name", "ada"]);
    sent.ok();
    assert!(sent.stderr.contains("Delivered to bob"), "{}", sent.stderr);
    assert_eq!(serve.finish(secs(20)).code, Some(0));
}

#[test]
fn connect_takes_the_invite_from_the_environment_or_standard_input() {
    let relay = Relay::start(&[]);
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    for how in ["env", "stdin"] {
        let (serve, invite) = serve_via(
            &server,
            &relay.address,
            &["--relay-only", "--once"],
            Stdio::null(),
        );
        let mut command = joiner.chat();
        command.args(["connect", "--name", "ada"]);
        let input = match how {
            "env" => {
                command.env("CHAT_INVITE", &invite);
                format!("{how}\n")
            }
            _ => format!("{invite}\n{how}\n"),
        };
        let output = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(input.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{how}: {stderr}");
        let served = serve.finish(secs(20));
        assert!(served.stdout.contains(how), "{how}: {}", served.stdout);
    }
}

#[test]
fn an_invite_with_another_key_is_refused_before_our_identity_is_sent() {
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    let mut command = serve_command(&server, &["--accept-new"]);
    command.stdin(Stdio::null());
    let serve = Running::spawn(command);
    let proxy = Proxy::start(serve.port());
    // Direct only: an unreachable relay that --no-relay leaves alone.
    let invite = format!(
        "chat://127.0.0.1:9/{}?direct=127.0.0.1:{}#{}",
        "A".repeat(43),
        proxy.port(),
        fingerprint_of("transient")
    );
    let outcome = joiner.run(&["send", &invite, "--no-relay", "--name", "ada"]);
    let stderr = outcome.fails(
        4,
        &[
            "does not hold the key the invite names",
            "nothing about you was sent",
        ],
    );
    assert!(stderr.contains("direct (127.0.0.1:"), "{stderr}");
    let recording = proxy.recording();
    let types: Vec<u8> = recording.to_server.iter().map(|frame| frame[4]).collect();
    // ClientHello, KeyTransport, then at most the handshake CLOSE: never
    // InitiatorIdentity (0x06) or InitiatorAuth (0x07).
    assert_eq!(&types[..2], &[0x01, 0x03], "{types:?}");
    assert!(
        !types.contains(&0x06) && !types.contains(&0x07),
        "{types:?}"
    );
    assert!(!joiner.file("invites.toml").exists());
    let known = std::fs::read_to_string(joiner.file("known_peers.toml")).unwrap_or_default();
    assert!(!known.contains(&fingerprint_of("responder")), "{known}");
}

#[test]
fn a_wrong_room_gets_lonely_with_a_clear_error() {
    let relay = Relay::start(&["--lonely-timeout", "500ms"]);
    let joiner = TestHome::with_identity("initiator");
    let invite = format!(
        "chat://{}/{}#{}",
        relay.address,
        "A".repeat(43),
        fingerprint_of("responder")
    );
    let outcome = joiner.run(&["send", &invite]);
    outcome.fails(3, &["answered `lonely`", "no server waits in this room"]);
}

#[test]
fn the_direct_path_wins_when_it_is_reachable() {
    let relay = Relay::start(&[]);
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    let (serve, invite) = serve_via(&server, &relay.address, &["--once"], Stdio::null());
    assert!(invite.contains("?direct=127.0.0.1:"), "{invite}");
    let sent = joiner.run(&["send", &invite]);
    sent.ok();
    let stderr = &sent.stderr;
    assert!(
        stderr.contains("Reached the invite's server direct (127.0.0.1:"),
        "{stderr}"
    );
    let served = serve.finish(secs(20));
    assert_eq!(served.code, Some(0), "{}", served.stderr);
    assert!(!served.stderr.contains("via relay"), "{}", served.stderr);
}

#[test]
fn tampering_between_the_relay_and_the_server_is_detected() {
    let relay = Relay::start(&[]);
    let relay_port: u16 = relay.address.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Proxy::start(relay_port);
    // Past the relay's `ok`, the handshake, and well into the message.
    proxy.next(Rule::Flip {
        way: Way::ToClient,
        offset: 20_000,
        mask: 0x10,
    });
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    let (serve, invite) = serve_via(
        &server,
        &format!("127.0.0.1:{}", proxy.port()),
        &["--relay-only", "--once"],
        Stdio::null(),
    );
    // The joiner goes to the relay itself; only the server's side is proxied.
    let invite = invite.replace(&format!("127.0.0.1:{}", proxy.port()), &relay.address);
    let big = joiner.file("big.txt");
    std::fs::write(&big, "x".repeat(100_000)).unwrap();
    let sent = joiner.run_with_stdin_file(&["send", &invite], &big);
    assert_ne!(sent.code, Some(0), "{}", sent.stderr);
    assert!(!sent.stderr.contains("Delivered"), "{}", sent.stderr);
    let served = serve.finish(secs(20));
    assert_ne!(served.code, Some(0), "{}", served.stderr);
    assert!(
        served.stderr.contains("authentication failed"),
        "{}",
        served.stderr
    );
    assert!(!served.stdout.contains("xxxx"), "nothing altered is shown");
}

#[test]
fn a_relay_killed_mid_conversation_ends_both_sides_cleanly() {
    let relay = Relay::start(&[]);
    let server = TestHome::with_identity("responder");
    let joiner = TestHome::with_identity("initiator");
    let (mut serve, invite) = serve_via(
        &server,
        &relay.address,
        &["--relay-only", "--once"],
        Stdio::piped(),
    );
    let _serve_input = serve.stdin();
    let mut command = joiner.chat();
    command
        .args(["connect", &invite, "--json", "--name", "ada"])
        .stdin(Stdio::piped());
    let mut connect = Running::spawn(command);
    let mut input = connect.stdin();
    writeln!(input, "first").unwrap();
    let deadline = std::time::Instant::now() + secs(20);
    while !String::from_utf8_lossy(&connect.stdout()).contains("\"delivered\"") {
        assert!(std::time::Instant::now() < deadline, "{}", connect.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(relay);
    let _ = writeln!(input, "second");
    let connected = connect.finish(secs(30));
    assert_eq!(connected.code, Some(3), "{}", connected.stderr);
    let delivered = connected.stdout.matches("\"delivered\"").count();
    assert_eq!(
        delivered, 1,
        "only the first was delivered: {}",
        connected.stdout
    );
    if connected.stdout.matches("\"sent\"").count() == 2 {
        assert!(
            connected.stderr.contains("not delivered"),
            "{}",
            connected.stderr
        );
    }
    let served = serve.finish(secs(30));
    assert_eq!(served.code, Some(3), "{}", served.stderr);
    assert!(served.stdout.contains("first") && !served.stdout.contains("second"));
}

#[test]
fn a_one_time_invite_pins_both_sides_once() {
    let relay = Relay::start(&[]);
    let server = TestHome::with_identity("responder");
    // No --accept-new: without a terminal, this server refuses strangers.
    let mut command = serve_command(&server, &["--relay", &relay.address, "--relay-only"]);
    command.stdin(Stdio::null());
    let serve = Running::spawn(command);
    serve.wait_for_stderr("registered with relay", secs(20));
    let once = server.run(&["invite"]);
    let invite = once.ok().trim().to_string();
    assert!(invite.contains("once="), "{invite}");

    let joiner = TestHome::with_identity("initiator");
    let sent = joiner.run(&["send", &invite, "--name", "ada"]);
    sent.ok();
    assert!(
        sent.stderr.contains("one-time invite was accepted"),
        "{}",
        sent.stderr
    );
    assert!(sent.stderr.contains("Delivered to bob"), "{}", sent.stderr);
    serve.wait_for_stderr("(verified by invite)", secs(10));
    let pinned = std::fs::read_to_string(server.file("known_peers.toml")).unwrap();
    assert!(pinned.contains(&fingerprint_of("initiator")), "{pinned}");
    let known = std::fs::read_to_string(joiner.file("known_peers.toml")).unwrap();
    assert!(known.contains(&fingerprint_of("responder")), "{known}");

    // The same invite a second time: a stranger, told so, and refused here.
    let other = TestHome::with_identity("transient");
    let again = other.run(&["send", &invite, "--name", "eve"]);
    again.fails(4, &["NOT accepted"]);
    serve.wait_for_stderr("wrong, already used or expired", secs(10));
    let pinned = std::fs::read_to_string(server.file("known_peers.toml")).unwrap();
    assert!(!pinned.contains(&fingerprint_of("transient")), "{pinned}");
}

#[test]
fn serve_registers_again_when_the_relay_restarts() {
    let relay = Relay::start(&[]);
    let address = relay.address.clone();
    let server = TestHome::with_identity("responder");
    let (serve, invite) = serve_via(
        &server,
        &address,
        &["--relay-only", "--once"],
        Stdio::null(),
    );
    drop(relay);
    serve.wait_for_stderr("registering again in", secs(20));
    // The same port again: the invite still names it.
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    command
        .args(["relay", "--listen", &address])
        .env_remove("CHAT_HOME")
        .stdin(Stdio::null());
    let _relay = Running::spawn(command);
    let deadline = std::time::Instant::now() + secs(20);
    while serve.stderr().matches("registered with relay").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", serve.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let joiner = TestHome::with_identity("initiator");
    let sent = joiner.run(&["send", &invite]);
    sent.ok();
    assert!(sent.stderr.contains("Delivered to bob"), "{}", sent.stderr);
    assert_eq!(serve.finish(secs(20)).code, Some(0));
}
