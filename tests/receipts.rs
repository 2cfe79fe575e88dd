//! Receipts tell the truth, and a finished conversation ends:
//!
//! * a receiver whose standard output fails (a full disk, a closed pipe,
//!   for short, streamed and JSON output) does not acknowledge: the sender
//!   is told the message was not delivered, by its first words (exit 6: the receiver ended the
//!   conversation with a goodbye, without a receipt), and the receiver exits
//!   with the I/O error (exit 1);
//! * a hostile sender sees exactly which messages were acknowledged;
//! * `chat send` refuses an empty message before connecting;
//! * once our CLOSE is out, a peer that never hangs up (even one that keeps
//!   sending keep-alives) is hung up on within the 2 s of the spec, and
//!   `serve` exits (`--once`) or takes the next peer.

use crate::common;

use std::fs::{self, File};
use std::io::{PipeWriter, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::hostile::{Got, HostilePeer};
use common::{Running, TestHome, secs, serve_command};

/// Well under the 60 s peer timeout that the old code waited out, and
/// generous for a loaded machine.
const HANG_UP_DEADLINE: Duration = Duration::from_secs(10);

fn address(server: &Running) -> String {
    format!("127.0.0.1:{}", server.port())
}

/// `chat serve --once --accept-new` as bob, its standard output `stdout`.
fn receiver(bob: &TestHome, extra: &[&str], stdout: Stdio) -> Running {
    let mut command = serve_command(bob, &["--once", "--accept-new"]);
    command.args(extra).stdin(Stdio::null());
    Running::spawn_with_stdout(command, stdout)
}

/// `chat send` of `text` (from a file, so a long one is streamed) as ada.
fn send_file(ada: &TestHome, target: &str, text: &[u8]) -> common::Outcome {
    let file = ada.file("message.txt");
    fs::write(&file, text).unwrap();
    ada.run_with_stdin_file(&["send", target, "--accept-new", "--name", "ada"], &file)
}

/// Lines of text, `length` bytes in all.
fn text_of(length: usize) -> Vec<u8> {
    let line = b"the quick brown fox jumps over the lazy dog\n";
    line.iter().copied().cycle().take(length).collect()
}

/// Waits until no process holds the read end of the pipe that `probe`
/// writes to. Dropping our read end is not enough: a child that another test
/// thread forks at that moment holds a copy of every descriptor until it
/// execs. Probing writes a byte or two into a pipe that nobody reads.
fn wait_until_unread(probe: &mut PipeWriter) {
    let deadline = Instant::now() + secs(10);
    loop {
        match probe.write(b"\n") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return,
            _ => assert!(Instant::now() < deadline, "the pipe still has a reader"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Both ends of a failed delivery: the sender says not delivered (6), the
/// receiver reports its output error (1) and that it did not acknowledge.
#[track_caller]
fn not_delivered(sender: &common::Outcome, receiver: &common::Outcome, cause: &str) {
    let err = sender.fails(
        6,
        &["not delivered: \"the quick brown fox jumps over the lazy…\""],
    );
    assert!(!err.contains("Delivered to"), "{err}");
    receiver.fails(
        1,
        &[
            "cannot write to standard output",
            cause,
            "message #1 from the peer was therefore not acknowledged",
        ],
    );
}

#[test]
fn a_receiver_on_a_full_disk_does_not_acknowledge() {
    // Short messages are written when complete; long ones (over 1 MiB) are
    // streamed; --json writes events. Every path must fail the same way.
    let cases: [(&str, &[&str], usize); 4] = [
        ("short text", &[], 100),
        ("streamed text", &[], 3 << 20),
        ("short json", &["--json"], 100),
        ("streamed json", &["--json"], 3 << 20),
    ];
    for (what, extra, length) in cases {
        let bob = TestHome::with_identity("responder");
        let ada = TestHome::with_identity("initiator");
        let full = File::options().write(true).open("/dev/full").unwrap();
        let server = receiver(&bob, extra, Stdio::from(full));
        let sent = send_file(&ada, &address(&server), &text_of(length));
        let received = server.finish(secs(20));
        eprintln!("case: {what}");
        not_delivered(&sent, &received, "No space left on device");
    }
}

#[test]
fn a_receiver_whose_output_pipe_is_closed_does_not_acknowledge() {
    // `chat serve | head -c 0`: the reader is gone before the message.
    for (extra, length) in [(&[][..], 100), (&["--json"][..], 3 << 20)] {
        let bob = TestHome::with_identity("responder");
        let ada = TestHome::with_identity("initiator");
        let (reader, writer) = std::io::pipe().unwrap();
        let mut probe = writer.try_clone().unwrap();
        drop(reader);
        let server = receiver(&bob, extra, Stdio::from(writer));
        wait_until_unread(&mut probe);
        let sent = send_file(&ada, &address(&server), &text_of(length));
        let received = server.finish(secs(20));
        not_delivered(&sent, &received, "Broken pipe");
    }
}

#[test]
fn serve_stops_when_its_output_fails() {
    // Without --once, too: the next peer's messages could not be written
    // either, so serve exits with the error instead of taking them.
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut command = serve_command(&bob, &["--accept-new"]);
    command.stdin(Stdio::null());
    let full = File::options().write(true).open("/dev/full").unwrap();
    let server = Running::spawn_with_stdout(command, Stdio::from(full));
    let sent = send_file(&ada, &address(&server), &text_of(100));
    let received = server.finish(secs(20));
    not_delivered(&sent, &received, "No space left on device");
}

#[test]
fn a_pipe_closed_in_the_middle_of_a_streamed_message_is_not_acknowledged() {
    // `chat serve | head -c 100000`: the first part of a 3 MiB message is
    // written, then the pipe closes.
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let (reader, writer) = std::io::pipe().unwrap();
    let server = receiver(&bob, &[], Stdio::from(writer));
    let head = std::thread::spawn(move || {
        let mut taken = Vec::new();
        reader.take(100_000).read_to_end(&mut taken).unwrap();
        taken.len()
    });
    let text = text_of(3 << 20);
    let sent = send_file(&ada, &address(&server), &text);
    let received = server.finish(secs(20));
    assert_eq!(head.join().unwrap(), 100_000);
    not_delivered(&sent, &received, "Broken pipe");
}

#[test]
fn a_hostile_sender_gets_receipts_only_for_what_was_written() {
    // Message 1 reaches the reader of standard output and is acknowledged;
    // then the reader goes away, and message 2 is not: the receiver says
    // goodbye without a receipt for it and exits with the error.
    let bob = TestHome::with_identity("responder");
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut probe = writer.try_clone().unwrap();
    let server = receiver(&bob, &[], Stdio::from(writer));
    let mut mallory = HostilePeer::connect(server.port());
    let first = mallory.send_message(b"first\n");
    let mut line = [0u8; 6];
    reader.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"first\n");
    assert_eq!(
        mallory.expect(secs(10), |got| matches!(got, Got::Receipt(_))),
        Got::Receipt(first)
    );
    drop(reader);
    wait_until_unread(&mut probe);
    let second = mallory.send_message(b"second\n");
    assert_eq!(second, first + 1);
    // The receiver (no input: it says DONE whenever it gets to it) sends no
    // receipt for message 2, only its goodbye.
    let mut after = Vec::new();
    loop {
        match mallory.next(secs(10)) {
            Some(Got::Done | Got::Keepalive) => {}
            Some(got @ (Got::Close(_) | Got::Hangup)) => {
                after.push(got);
                break;
            }
            Some(got) => after.push(got),
            None => panic!("no CLOSE; records: {after:?}"),
        }
    }
    assert_eq!(after, [Got::Close(chat::protocol::CloseReason::Goodbye)]);
    drop(mallory);
    server
        .finish(secs(20))
        .fails(1, &["Broken pipe", "message #2 from the peer"]);
}

/// Runs `chat send ADDRESS` with `stdin` and checks the refusal.
#[track_caller]
fn refused(ada: &TestHome, target: &str, stdin: Stdio, extra: &[&str], needle: &str) {
    let output = ada
        .chat()
        .args(["send", target, "--accept-new"])
        .args(extra)
        .stdin(stdin)
        .output()
        .unwrap();
    let outcome = common::Outcome::of(output);
    let err = outcome.fails(1, &["nothing to send", needle]);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("Delivered"), "{err}");
}

#[test]
fn an_empty_message_is_refused_before_connecting() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = common::serve(&bob, &["--accept-new"], Stdio::null());
    let target = address(&server);
    // Standard input: /dev/null, an empty pipe, an empty regular file.
    refused(&ada, &target, Stdio::null(), &[], "standard input is empty");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(writer);
    refused(
        &ada,
        &target,
        Stdio::from(reader),
        &[],
        "standard input is empty",
    );
    let empty = ada.file("empty.txt");
    fs::write(&empty, "").unwrap();
    refused(
        &ada,
        &target,
        Stdio::from(File::open(&empty).unwrap()),
        &[],
        "standard input is empty",
    );
    // None of them connected: the --once server still waits, and takes
    // the first real message.
    assert!(
        !server.stderr().contains("Connected"),
        "{}",
        server.stderr()
    );
    ada.run(&["send", &target, "--accept-new"]).ok();
    let received = server.finish(secs(20));
    assert_eq!(received.stdout, common::MESSAGE);
}

/// A hostile peer that, once both sides are done, never hangs up and keeps
/// sending keep-alives. Returns how long after chat's CLOSE chat closed the
/// connection (seen as our writes failing: the first one after the close
/// draws a reset, the next fails), or fails the test at the deadline.
fn hold_the_line_after_done(mallory: &mut HostilePeer) -> Duration {
    // What chat waits for after its CLOSE, as the spec says (8.5); the
    // deadline below only bounds the test on a loaded machine, and is far
    // below the 60 s peer timeout that used to keep the line.
    assert_eq!(chat::net::conversation::LINGER, secs(2));
    mallory.send(|send, out| send.done(out)).unwrap();
    mallory.expect(secs(10), |got| *got == Got::Done);
    mallory.expect(secs(10), |got| {
        *got == Got::Close(chat::protocol::CloseReason::Goodbye)
    });
    let closed_at = Instant::now();
    loop {
        if mallory.send(|send, out| send.keepalive(out)).is_err() {
            let after = closed_at.elapsed();
            eprintln!("chat closed the connection {after:?} after its CLOSE");
            return after;
        }
        assert!(
            closed_at.elapsed() < HANG_UP_DEADLINE,
            "chat did not hang up within {HANG_UP_DEADLINE:?} of its CLOSE"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_once_hangs_up_on_a_peer_that_never_does_and_exits() {
    let bob = TestHome::with_identity("responder");
    let mut command = serve_command(&bob, &["--once", "--accept-new"]);
    command.stdin(Stdio::null());
    let server = Running::spawn(command);
    let mut mallory = HostilePeer::connect(server.port());
    hold_the_line_after_done(&mut mallory);
    let outcome = server.finish(HANG_UP_DEADLINE);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    drop(mallory);
}

#[test]
fn serve_takes_the_next_peer_after_hanging_up_on_one_that_never_does() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut command = serve_command(&bob, &["--accept-new"]);
    command.stdin(Stdio::null());
    let server = Running::spawn(command);
    let target = address(&server);
    let mut mallory = HostilePeer::connect(server.port());
    hold_the_line_after_done(&mut mallory);
    server.wait_for_stderr("Waiting for the next peer.", HANG_UP_DEADLINE);
    // Not busy, though mallory still holds its end: a real peer is served.
    ada.run(&["send", &target, "--accept-new"]).ok();
}

#[test]
fn send_hangs_up_on_a_receiver_that_acknowledges_but_never_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut bob = HostilePeer::accept(&listener);
            let (id, text) = bob.receive_message(secs(10));
            bob.send(|send, out| send.receipt(id, out)).unwrap();
            // Hold the line, busy, past chat's CLOSE and FIN, until the
            // test is over.
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && started.elapsed() < secs(30) {
                let _ = bob.send(|send, out| send.keepalive(out));
                std::thread::sleep(Duration::from_millis(100));
            }
            text
        })
    };
    let ada = TestHome::with_identity("initiator");
    let mut command = ada.chat();
    command
        .args(["send", &format!("127.0.0.1:{port}"), "--accept-new"])
        .stdin(Stdio::piped());
    let mut sender = Running::spawn(command);
    sender
        .stdin()
        .write_all(common::MESSAGE.as_bytes())
        .unwrap();
    sender.finish(HANG_UP_DEADLINE).ok();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(peer.join().unwrap(), common::MESSAGE.as_bytes());
}

#[test]
fn undelivered_messages_are_named_by_their_first_words() {
    // A receiver that takes two messages and says goodbye without a
    // receipt: the sender names both as the user typed them, not by ids it
    // never showed; --json keeps the ids for scripts.
    for json in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bob = std::thread::spawn(move || {
            let mut bob = HostilePeer::accept(&listener);
            let first = bob.receive_message(secs(10));
            let second = bob.receive_message(secs(10));
            bob.send(|send, out| send.close(chat::protocol::CloseReason::Goodbye, out))
                .unwrap();
            while !matches!(bob.next(secs(10)), Some(Got::Hangup) | None) {}
            (first, second)
        });
        let ada = TestHome::with_identity("initiator");
        let target = format!("127.0.0.1:{port}");
        let mut args = vec!["connect", &target, "--accept-new", "--name", "ada"];
        if json {
            args.push("--json");
        }
        let sent = ada.run_with_input(
            &args,
            b"Meet at the usual place at nine, bring the documents\n\x1b[2Jsecond \xe2\x80\xaethought\n",
        );
        let (first, second) = bob.join().unwrap();
        assert_eq!((first.0, second.0), (1, 2));
        let err = sent.fails(
            6,
            &[
                "2 messages not delivered: \"Meet at the usual place at nine, bring…\", \
                 \"^[[2Jsecond \\u{202e}thought\"",
            ],
        );
        assert!(!err.contains('\x1b') && !err.contains('\u{202e}'), "{err}");
        if json {
            let closed: serde_json::Value = sent
                .stdout
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .find(|e: &serde_json::Value| e["event"] == "closed")
                .expect("a closed event");
            assert_eq!(closed["undelivered"], serde_json::json!([1, 2]), "{closed}");
        }
    }
}
