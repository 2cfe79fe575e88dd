//! Every way dialling can fail: one clear line on standard error and the
//! network exit code (3).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::{Outcome, TestHome, secs};

fn one_line(outcome: &common::Outcome, needles: &[&str]) {
    let err = outcome.fails(3, needles);
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    assert!(err.starts_with("chat: "), "{err}");
}

#[test]
fn unresolvable_host() {
    let home = TestHome::with_identity("initiator");
    one_line(
        &home.run(&["send", "no-such-host.invalid:7777", "--accept-new"]),
        &["cannot resolve no-such-host.invalid"],
    );
}

#[test]
fn connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let home = TestHome::with_identity("initiator");
    one_line(
        &home.run(&["connect", &format!("127.0.0.1:{port}"), "--accept-new"]),
        &[
            "cannot connect to 127.0.0.1",
            "refused",
            "is `chat serve` running there?",
        ],
    );
}

/// A listener that answers every connection with `reply`, after reading
/// what the client sends first if `read_first`.
fn fake_server(reply: &'static [u8], read_first: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            if read_first {
                let mut buf = [0u8; 64];
                let _ = stream.read(&mut buf);
            }
            let _ = stream.write_all(reply);
            thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    port
}

/// Runs `chat ARGS` and returns what it did and how long it took.
fn timed(home: &TestHome, args: &[&str]) -> (Outcome, std::time::Duration) {
    let started = std::time::Instant::now();
    let outcome = home.run(args);
    (outcome, started.elapsed())
}

#[test]
fn an_ssh_server_is_not_a_chat_peer() {
    let port = fake_server(b"SSH-2.0-OpenSSH_9.6 Debian\r\n", false);
    let home = TestHome::with_identity("initiator");
    let (outcome, took) = timed(
        &home,
        &["send", &format!("127.0.0.1:{port}"), "--accept-new"],
    );
    one_line(
        &outcome,
        &[
            &format!("chat: 127.0.0.1:{port} did not answer like a chat peer"),
            "its first bytes were \"SSH-2.0-OpenSSH_9.6 Debian\"",
        ],
    );
    assert!(took < secs(3), "took {took:?}");
}

#[test]
fn an_http_server_is_not_a_chat_peer() {
    let port = fake_server(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        true,
    );
    let home = TestHome::with_identity("initiator");
    let (outcome, took) = timed(
        &home,
        &["connect", &format!("127.0.0.1:{port}"), "--accept-new"],
    );
    one_line(
        &outcome,
        &[
            &format!("127.0.0.1:{port} did not answer like a chat peer"),
            "its first bytes were \"HTTP/1.1 400 Bad Request^M^JContent-Leng…\"",
        ],
    );
    assert!(took < secs(3), "took {took:?}");
}

/// The start of what could be a frame, then nothing: not a chat peer
/// either, once the 2.5 s for a first answer are up.
#[test]
fn a_server_that_starts_a_frame_and_stalls_is_not_a_chat_peer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(&[0, 0, 0, 40, 0x02, 2]);
        thread::sleep(secs(30));
    });
    let home = TestHome::with_identity("initiator");
    let (outcome, took) = timed(
        &home,
        &["send", &format!("127.0.0.1:{port}"), "--accept-new"],
    );
    one_line(
        &outcome,
        &["did not answer like a chat peer", "its first bytes were"],
    );
    assert!(
        took >= std::time::Duration::from_millis(2500) && took < secs(5),
        "gave up after {took:?}"
    );
}

#[test]
fn a_server_that_hangs_up_at_once() {
    let port = fake_server(b"", true);
    let home = TestHome::with_identity("initiator");
    one_line(
        &home.run(&["send", &format!("127.0.0.1:{port}"), "--accept-new"]),
        &["cut during the handshake"],
    );
}

/// A server that accepts and says nothing is not a chat peer: a chat peer
/// sends its first answer (the ServerHello) at once, so chat waits 2.5 s
/// for it (and says so within 3 s of starting), not the 10 s the whole
/// handshake may take.
#[test]
fn a_silent_server_is_not_a_chat_peer_within_3_seconds() {
    assert_eq!(
        chat::net::HANDSHAKE_TIMEOUT,
        secs(10),
        "the documented default"
    );
    assert_eq!(
        chat::net::FIRST_ANSWER_TIMEOUT,
        std::time::Duration::from_millis(2500)
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        thread::sleep(secs(30));
        drop(stream);
    });
    let home = TestHome::with_identity("initiator");
    let message = home.file("message.txt");
    std::fs::write(&message, "hello").unwrap();
    let started = std::time::Instant::now();
    let outcome = Outcome::of(
        home.chat()
            .args(["send", &format!("127.0.0.1:{port}"), "--accept-new"])
            .stdin(std::fs::File::open(&message).unwrap())
            .output()
            .unwrap(),
    );
    one_line(
        &outcome,
        &[
            &format!("127.0.0.1:{port} did not answer like a chat peer"),
            "sent nothing for 2.5 s",
        ],
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(2500) && waited < secs(5),
        "gave up after {waited:?}"
    );
}

#[test]
fn a_version_1_server_is_reported_as_speaking_only_version_1() {
    // A responder that speaks version 1 refuses our version-2 hello.
    let port = fake_server(&[0, 0, 0, 3, 0x0F, 1, 1], true);
    let home = TestHome::with_identity("initiator");
    one_line(
        &home.run(&["send", &format!("127.0.0.1:{port}"), "--accept-new"]),
        &["speaks only chat protocol version 1", "version 2"],
    );
}

#[test]
fn a_server_refuses_a_version_1_client_naming_version_2() {
    let bob = TestHome::with_identity("responder");
    let server = common::serve(&bob, &["--accept-new"], std::process::Stdio::null());
    let port = server.port();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut hello = vec![0, 0, 0, 38, 0x01];
    hello.extend_from_slice(b"chat");
    hello.push(1);
    hello.extend_from_slice(&[7; 32]);
    stream.write_all(&hello).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(
        reply,
        [0, 0, 0, 3, 0x0F, 1, 2],
        "a Refusal: unsupported version, we speak 2"
    );
    server.wait_for_stderr("speaks only chat protocol version 1", secs(10));
}
