//! Every exit status of the README's table, through the binary, one row per
//! way of reaching it. The rows run at once, each with its own homes and
//! ports.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`send`: the message was acknowledged) |
//! | 1 | local files, input or environment (and our own output failing) |
//! | 2 | the command line could not be parsed |
//! | 3 | the connection could not be made or failed, including a peer that ended it over a protocol error or a message too large for it (CLOSE reasons 4 and 2) |
//! | 4 | trust refused, by us or by the peer (CLOSE reason 1) |
//! | 5 | a pinned peer presented a different key |
//! | 6 | the conversation ended normally but messages were not acknowledged |

use crate::common;

use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::thread;

use chat::protocol::CloseReason;
use common::hostile::{Got, HostilePeer};
use common::{Outcome, Running, TestHome, fingerprint_of, secs};

/// One row: how to get there, the status, and words the one-line error has.
struct Row {
    name: &'static str,
    run: fn() -> Outcome,
    code: i32,
    needles: &'static [&'static str],
}

fn address(server: &Running) -> String {
    format!("127.0.0.1:{}", server.port())
}

/// `chat send` from ada's home (the `initiator` key) to `target`, with the
/// test's one-line message.
fn send(target: &str, extra: &[&str]) -> Outcome {
    let ada = TestHome::with_identity("initiator");
    let mut args = vec!["send", target, "--name", "ada"];
    args.extend_from_slice(extra);
    ada.run(&args)
}

/// A peer at a fresh port that answers as bob and then does `act`.
fn hostile_responder(act: fn(&mut HostilePeer)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut bob = HostilePeer::accept(&listener);
        act(&mut bob);
        // Hold the connection until chat hangs up.
        while !matches!(bob.next(secs(10)), Some(Got::Hangup) | None) {}
    });
    format!("127.0.0.1:{port}")
}

/// Reads the message, then closes with `reason` without a receipt.
fn close_after_message(bob: &mut HostilePeer, reason: CloseReason) {
    bob.receive_message(secs(10));
    bob.send(|send, out| send.close(reason, out)).unwrap();
}

/// `chat serve --once` as bob with `extra`, standard input closed.
fn bob_serves(extra: &[&str]) -> (TestHome, Running) {
    let bob = TestHome::with_identity("responder");
    let server = common::serve(&bob, extra, Stdio::null());
    (bob, server)
}

const ROWS: &[Row] = &[
    Row {
        name: "0: send, acknowledged",
        run: || {
            let (_bob, server) = bob_serves(&["--accept-new"]);
            send(&address(&server), &["--accept-new"])
        },
        code: 0,
        needles: &["Delivered to bob."],
    },
    Row {
        name: "0: serve --once, everything delivered",
        run: || {
            let (_bob, server) = bob_serves(&["--accept-new"]);
            send(&address(&server), &["--accept-new"]).ok();
            server.finish(secs(20))
        },
        code: 0,
        needles: &[],
    },
    Row {
        name: "1: empty message",
        run: || {
            let ada = TestHome::with_identity("initiator");
            ada.run_with_input(&["send", "127.0.0.1:1", "--accept-new"], b"")
        },
        code: 1,
        needles: &["nothing to send"],
    },
    Row {
        name: "1: a state folder others can write",
        run: || {
            let ada = TestHome::with_identity("initiator");
            fs::set_permissions(ada.path(), fs::Permissions::from_mode(0o777)).unwrap();
            ada.run(&["send", "127.0.0.1:1", "--accept-new"])
        },
        code: 1,
        needles: &["too open", "chmod 700"],
    },
    Row {
        name: "1: the receiver's output fails",
        run: || {
            let bob = TestHome::with_identity("responder");
            let mut command = common::serve_command(&bob, &["--once", "--accept-new"]);
            command.stdin(Stdio::null());
            let full = File::options().write(true).open("/dev/full").unwrap();
            let server = Running::spawn_with_stdout(command, Stdio::from(full));
            send(&address(&server), &["--accept-new"]);
            server.finish(secs(20))
        },
        code: 1,
        needles: &["No space left on device", "not acknowledged"],
    },
    Row {
        name: "2: no address",
        run: || TestHome::empty().run(&["send"]),
        code: 2,
        needles: &["required"],
    },
    Row {
        name: "2: unknown option",
        run: || TestHome::empty().run(&["serve", "--bogus"]),
        code: 2,
        needles: &["--bogus"],
    },
    Row {
        name: "3: connection refused",
        run: || {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            send(&format!("127.0.0.1:{port}"), &["--accept-new"])
        },
        code: 3,
        needles: &["cannot connect", "refused"],
    },
    Row {
        name: "3: busy (a Refusal before the handshake)",
        run: || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut hello = [0u8; 42];
                let _ = std::io::Read::read_exact(&mut stream, &mut hello);
                // Refusal: reason 2 (busy), version 1.
                let _ = stream.write_all(&[0, 0, 0, 3, 0x0F, 2, 1]);
            });
            send(&format!("127.0.0.1:{port}"), &["--accept-new"])
        },
        code: 3,
        needles: &["busy"],
    },
    Row {
        name: "3: the peer closes with reason 2 (too large)",
        run: || {
            let target = hostile_responder(|bob| close_after_message(bob, CloseReason::TooLarge));
            send(&target, &["--accept-new"])
        },
        code: 3,
        needles: &[
            "larger than it accepts",
            "not delivered: \"hello from the test\"",
        ],
    },
    Row {
        name: "3: the peer closes with reason 4 (protocol error)",
        run: || {
            let target =
                hostile_responder(|bob| close_after_message(bob, CloseReason::ProtocolError));
            send(&target, &["--accept-new"])
        },
        code: 3,
        needles: &["protocol error", "not delivered: \"hello from the test\""],
    },
    Row {
        name: "3: the peer closes with an unknown reason",
        run: || {
            let target = hostile_responder(|bob| close_after_message(bob, CloseReason::Other(99)));
            send(&target, &["--accept-new"])
        },
        code: 3,
        needles: &["unknown reason 99"],
    },
    Row {
        name: "3: a real peer refuses a message over its --max-message",
        run: || {
            let (_bob, server) = bob_serves(&["--accept-new", "--max-message", "4"]);
            send(&address(&server), &["--accept-new"])
        },
        code: 3,
        needles: &["larger than it accepts"],
    },
    Row {
        name: "4: --strict and an unknown key",
        run: || {
            let (_bob, server) = bob_serves(&["--accept-new"]);
            send(&address(&server), &["--strict"])
        },
        code: 4,
        needles: &["--strict refuses unknown keys"],
    },
    Row {
        name: "4: the peer refuses our key (reason 1)",
        run: || {
            let (_bob, server) = bob_serves(&["--strict"]);
            send(&address(&server), &["--accept-new"])
        },
        code: 4,
        needles: &["does not trust our key"],
    },
    Row {
        name: "5: a pinned name presents another key",
        run: || {
            let (_bob, server) = bob_serves(&["--accept-new"]);
            let ada = TestHome::with_identity("initiator");
            ada.run(&["peers", "add", "bob", &fingerprint_of("transient")])
                .ok();
            ada.run(&["send", &address(&server), "--accept-new"])
        },
        code: 5,
        needles: &["presented a different key", "refusing to talk"],
    },
    Row {
        name: "6: the peer says goodbye without a receipt",
        run: || {
            let target = hostile_responder(|bob| close_after_message(bob, CloseReason::Goodbye));
            send(&target, &["--accept-new"])
        },
        code: 6,
        needles: &[
            "without a receipt",
            "not delivered: \"hello from the test\"",
        ],
    },
];

#[test]
fn every_exit_status_matches_the_readme() {
    let results: Vec<(&Row, Outcome)> = thread::scope(|scope| {
        let handles: Vec<_> = ROWS
            .iter()
            .map(|row| scope.spawn(move || (row, (row.run)())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut wrong = Vec::new();
    for (row, outcome) in &results {
        let last = outcome.stderr.lines().last().unwrap_or("");
        let fine = outcome.code == Some(row.code)
            && row.needles.iter().all(|n| outcome.stderr.contains(n))
            && (row.code == 0 || row.code == 2 || last.starts_with("chat: "));
        if !fine {
            wrong.push(format!(
                "{}: expected {} with {:?}, got {:?}:\n{}",
                row.name, row.code, row.needles, outcome.code, outcome.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n\n"));
    // Every status of the table has a row.
    for code in 0..=6 {
        assert!(ROWS.iter().any(|row| row.code == code), "no row for {code}");
    }
}
