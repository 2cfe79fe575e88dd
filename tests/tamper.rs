//! The tamper matrix, in the spirit of OpenSSH's `regress/integrity.sh`: a
//! man in the middle between a real `chat send` and a real `chat serve`
//! flips a bit at every byte offset of the handshake and of the records
//! that follow, in both directions, and drops, duplicates, reorders,
//! injects, replays, truncates and re-lengths records. Whatever it does:
//!
//! * no altered or unauthenticated text is ever delivered as a message;
//! * the sender reports success only if the message was delivered intact;
//! * the tampering is detected: a side ends the session with an error
//!   (one clear line and a non-zero exit, for the sender).

use crate::common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::mitm::{Proxy, Recording, Rule, Way};
use common::{Outcome, Running, TestHome, fingerprint_of, secs, serve_command};

const MESSAGE: &str = "Meet at the usual place at nine.";

/// Tampering that makes both sides wait (a length field that promises more
/// bytes than will come) ends at the client's handshake or peer timeout: it
/// gives up and hangs up, and the server sees the connection end. Short ones
/// keep the matrix quick. The honest sessions run with the default timeouts,
/// so that a busy machine cannot make them fail.
const CLIENT_TIMEOUTS: [(&str, &str); 2] =
    [("CHAT_HANDSHAKE_TIMEOUT", "2"), ("CHAT_PEER_TIMEOUT", "2")];

/// The server's, longer than the client's so that it is the client that
/// gives up when both wait, yet bounded should the client not. The matrix
/// needs a transient key per case, faster than the default 3 a second.
const SERVER_TIMEOUTS: [(&str, &str); 3] = [
    ("CHAT_HANDSHAKE_TIMEOUT", "5"),
    ("CHAT_PEER_TIMEOUT", "5"),
    ("CHAT_TRANSIENT_KEY_RATE", "1000"),
];

/// A server, a proxy in front of it, and a client home that trusts it.
struct Bench {
    server: Running,
    proxy: Proxy,
    client: TestHome,
    _server_home: TestHome,
    server_fingerprint: String,
    /// Server-side ends seen so far (handshake failures, closed conversations).
    ends: usize,
}

impl Bench {
    fn new() -> Self {
        let server_home = TestHome::with_identity("initiator");
        let mut command = serve_command(&server_home, &["--accept-new", "--json"]);
        command.envs(SERVER_TIMEOUTS).stdin(Stdio::null());
        let server = Running::spawn(command);
        let proxy = Proxy::start(server.port());
        let client = TestHome::with_identity("transient");
        std::fs::write(client.file("message.txt"), MESSAGE).unwrap();
        let mut bench = Self {
            server,
            proxy,
            client,
            _server_home: server_home,
            server_fingerprint: fingerprint_of("initiator"),
            ends: 0,
        };
        // An honest session pins both keys and shows the traffic's shape.
        let (outcome, _) = bench.case(Rule::Pass);
        outcome.ok();
        bench
    }

    /// The server's ends so far: failed handshakes on stderr, finished or
    /// failed conversations as JSON on stdout.
    fn server_ends(&self) -> (usize, usize) {
        let stderr = self.server.stderr();
        assert!(
            !stderr.contains("refused"),
            "the bench itself made the server busy: {stderr}"
        );
        let failed_handshakes = stderr.matches("handshake with").count();
        let stdout = String::from_utf8_lossy(&self.server.stdout()).into_owned();
        let closed = stdout
            .lines()
            .filter(|l| l.contains("\"event\":\"closed\""))
            .count();
        (
            failed_handshakes + closed,
            stdout
                .lines()
                .filter(|l| l.contains("\"how\":\"failed\""))
                .count(),
        )
    }

    /// The texts of every message the server delivered so far.
    fn delivered(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.server.stdout())
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "message")
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect()
    }

    /// Runs one `chat send` through the proxy under `rule`, and waits until
    /// the server has finished with that connection too.
    fn case(&mut self, rule: Rule) -> (Outcome, Recording) {
        let (_, failures_before) = self.server_ends();
        let delivered_before = self.delivered().len();
        self.proxy.next(rule.clone());
        let target = format!("127.0.0.1:{}", self.proxy.port());
        let file = self.client.file("message.txt");
        let mut client = self.client.chat();
        client
            .args([
                "send",
                &target,
                "--expect",
                &self.server_fingerprint,
                "--name",
                "ada",
            ])
            .stdin(std::fs::File::open(&file).unwrap());
        if !matches!(rule, Rule::Pass) {
            client.envs(CLIENT_TIMEOUTS);
        }
        let outcome = Outcome::of(client.output().unwrap());
        let recording = self.proxy.recording();
        let deadline = Instant::now() + secs(30);
        while self.server_ends().0 <= self.ends {
            assert!(
                Instant::now() < deadline,
                "the server never finished with {rule:?}: {}",
                self.server.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
        self.ends = self.server_ends().0;
        let (_, failures_after) = self.server_ends();
        let delivered = self.delivered();
        let stderr = self.server.stderr();
        // No altered or unauthenticated text, ever.
        for text in &delivered {
            assert_eq!(text, MESSAGE, "altered text delivered under {rule:?}");
        }
        let newly_delivered = delivered.len() - delivered_before;
        // The sender claims success only for an intact delivery.
        if outcome.code == Some(0) {
            assert_eq!(
                newly_delivered, 1,
                "the sender reported success but nothing arrived under {rule:?}"
            );
        } else {
            // One error line, last; "Delivered to bob." may come before it
            // when the tampering hit what followed the receipt.
            let err = outcome.stderr.trim_end();
            let errors = err.lines().filter(|l| l.starts_with("chat: ")).count();
            assert!(
                errors == 1 && err.lines().last().unwrap().starts_with("chat: "),
                "unclear error under {rule:?}: {err:?}"
            );
        }
        if !matches!(rule, Rule::Pass) && !after_the_end(&rule, &recording) {
            let server_saw_it = failures_after > failures_before
                || stderr
                    .lines()
                    .last()
                    .is_some_and(|l| l.contains("handshake with"));
            assert!(
                outcome.code != Some(0) || server_saw_it,
                "{rule:?} went unnoticed by both sides: {outcome:?}"
            );
        }
        (outcome, recording)
    }
}

/// Whether the tampering changed nothing that either side still needed, so
/// that neither has to notice it. Each side's task ends at a point in the
/// stream it receives:
///
/// * the client's with the receipt: it then says goodbye, and a side that
///   has said goodbye discards what still arrives (docs/PROTOCOL.md, 8.5);
/// * the server's with the client's DONE: it has then received everything
///   and acknowledged it, and it has said DONE itself, so it closes
///   (8.4), and the client's KEEPALIVEs or CLOSE that follow may arrive
///   before or after its own CLOSE.
///
/// A rule counts as after the end if the first byte it changes comes after
/// that point of its direction, or if it never applied (the connection
/// carried fewer bytes or frames than the honest one it was made from).
fn after_the_end(rule: &Rule, recording: &Recording) -> bool {
    let Some((way, position)) = first_change(rule, recording) else {
        return false;
    };
    let frames = match way {
        Way::ToServer => &recording.to_server,
        Way::ToClient => &recording.to_client,
    };
    // DONE ends the server's task; the receipt, the client's.
    let last_needed = match way {
        Way::ToServer => 0x16,
        Way::ToClient => 0x13,
    };
    let mut end = 0;
    for frame in frames {
        end += frame.len();
        if frame[4] == last_needed {
            return position >= end;
        }
    }
    // Not even the last needed frame came through: the rule changed bytes
    // before it, unless it changed nothing at all.
    position >= end
}

/// The direction and stream offset of the first byte a rule changes, as
/// the recording of its connection (what each side sent) lays it out.
/// A rule aimed past the end of what was sent never applies: `usize::MAX`.
fn first_change(rule: &Rule, recording: &Recording) -> Option<(Way, usize)> {
    let frames = |way| match way {
        Way::ToServer => &recording.to_server,
        Way::ToClient => &recording.to_client,
    };
    let total = |way| frames(way).iter().map(Vec::len).sum::<usize>();
    let frame_start = |way, frame: usize| {
        let frames = frames(way);
        if frame < frames.len() {
            frames[..frame].iter().map(Vec::len).sum()
        } else {
            usize::MAX
        }
    };
    Some(match *rule {
        Rule::Pass => return None,
        Rule::Flip { way, offset, .. } | Rule::Cut { way, offset } => (
            way,
            if offset < total(way) {
                offset
            } else {
                usize::MAX
            },
        ),
        Rule::Duplicate { way, frame } => {
            // The copy goes after the original.
            let next = frame_start(way, frame);
            (
                way,
                next.saturating_add(frames(way).get(frame).map_or(0, Vec::len)),
            )
        }
        Rule::Drop { way, frame }
        | Rule::Swap { way, frame }
        | Rule::Inject { way, frame, .. }
        | Rule::Length { way, frame, .. } => (way, frame_start(way, frame)),
    })
}

fn stream_lengths(recording: &Recording) -> (usize, usize) {
    let total = |frames: &[Vec<u8>]| frames.iter().map(Vec::len).sum();
    (total(&recording.to_server), total(&recording.to_client))
}

/// Which bytes a bit-flip sweep covers in one direction's stream, laid out
/// as `frames`: all of them, or a sample that still touches every field of
/// every frame: the whole header (length and type) and the first and last
/// two bytes of each body, and every [`FLIP_STRIDE`]-th byte in between
/// (starting at a different phase in each frame, so the flipped bit moves).
fn flip_offsets(frames: &[Vec<u8>], every_byte: bool) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut start = 0;
    for (index, frame) in frames.iter().enumerate() {
        let end = start + frame.len();
        for offset in start..end {
            let in_frame = offset - start;
            if every_byte
                || in_frame < 7
                || end - offset <= 2
                || (in_frame + index) % FLIP_STRIDE == 0
            {
                offsets.push(offset);
            }
        }
        start = end;
    }
    offsets
}

/// One byte in this many inside a body is flipped by the sampled sweep.
const FLIP_STRIDE: usize = 48;

/// Flips one bit at each offset [`flip_offsets`] picks, in both directions,
/// split over two workers, each with its own server and proxy; returns how
/// many flips there were.
fn flip_sweep(every_byte: bool) -> usize {
    let honest = {
        let mut bench = Bench::new();
        bench.case(Rule::Pass).1
    };
    let flips = |way, frames: &[Vec<u8>]| {
        flip_offsets(frames, every_byte)
            .into_iter()
            .map(move |offset| Rule::Flip {
                way,
                offset,
                mask: 1 << (offset % 8),
            })
    };
    let cases: Vec<Rule> = flips(Way::ToServer, &honest.to_server)
        .chain(flips(Way::ToClient, &honest.to_client))
        .collect();
    let total = cases.len();
    let failed_sends = AtomicUsize::new(0);
    thread::scope(|scope| {
        for part in cases.chunks(total.div_ceil(2)) {
            let failed_sends = &failed_sends;
            scope.spawn(move || {
                let mut bench = Bench::new();
                for rule in part {
                    let (outcome, _) = bench.case(rule.clone());
                    if outcome.code != Some(0) {
                        failed_sends.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (to_server, to_client) = stream_lengths(&honest);
    eprintln!(
        "tamper matrix: {total} bit flips over {to_server} bytes to the server and {to_client} to \
         the client, all detected; {} made the sender fail, the rest hit bytes after the message \
         was delivered intact",
        failed_sends.load(Ordering::Relaxed)
    );
    total
}

/// A bit flip in every field of every frame, both ways (a sample of the
/// bytes inside large fields such as keys, signatures and ciphertexts; the
/// sweep over every byte is the ignored test below).
#[test]
fn a_bit_flip_in_any_field_is_detected() {
    let total = flip_sweep(false);
    assert!(total > 120, "only {total} offsets");
}

/// A bit flip at every byte offset of both directions (about 2,100 sessions,
/// a minute or more on two cores): `cargo test --release --test all
/// tamper:: -- --ignored`.
#[test]
#[ignore = "every byte: about 2,100 sessions; run with -- --ignored"]
fn a_bit_flip_at_every_byte_is_detected() {
    let total = flip_sweep(true);
    assert!(total > 1500, "only {total} offsets");
}

/// Frame-level tampering with each of the first frames in each direction.
#[test]
fn dropped_duplicated_reordered_and_injected_records_are_detected() {
    let mut bench = Bench::new();
    let (_, honest) = bench.case(Rule::Pass);
    let garbage = {
        let mut frame = vec![0, 0, 0, 33, 0x10];
        frame.extend_from_slice(&[0xAB; 32]);
        frame
    };
    let mut cases = 0;
    for (way, frames) in [
        (Way::ToServer, honest.to_server.len()),
        (Way::ToClient, honest.to_client.len()),
    ] {
        for frame in 0..frames {
            let mut rules = vec![
                Rule::Drop { way, frame },
                Rule::Duplicate { way, frame },
                Rule::Inject {
                    way,
                    frame,
                    bytes: garbage.clone(),
                },
            ];
            if frame + 1 < frames {
                rules.push(Rule::Swap { way, frame });
            }
            for rule in rules {
                bench.case(rule);
                cases += 1;
            }
        }
    }
    eprintln!("{cases} frame-level tamper cases, all detected");
}

/// Records replayed from this session (an earlier record again) and from
/// an earlier session (its records injected into a new one).
#[test]
fn replayed_records_are_detected() {
    let mut bench = Bench::new();
    let (_, earlier) = bench.case(Rule::Pass);
    let n = earlier.to_server.len();
    for frame in 0..n {
        for (i, record) in earlier.to_server.iter().enumerate() {
            if i < 4 && frame < 4 {
                continue; // handshake frames are covered by the flips
            }
            bench.case(Rule::Inject {
                way: Way::ToServer,
                frame,
                bytes: record.clone(),
            });
        }
    }
    for record in &earlier.to_client {
        bench.case(Rule::Inject {
            way: Way::ToClient,
            frame: earlier.to_client.len() - 1,
            bytes: record.clone(),
        });
    }
}

/// A whole session recorded by the man in the middle and played again to
/// the server later is refused: nothing is delivered twice.
#[test]
fn a_recorded_session_replayed_later_is_refused() {
    let mut bench = Bench::new();
    let (outcome, recording) = bench.case(Rule::Pass);
    outcome.ok();
    let delivered = bench.delivered().len();
    let port = bench.server.port();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    for frame in &recording.to_server {
        let _ = stream.write_all(frame);
        thread::sleep(Duration::from_millis(20));
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    bench
        .server
        .wait_for_stderr("authentication failed", secs(20));
    assert_eq!(
        bench.delivered().len(),
        delivered,
        "the replayed message was delivered again"
    );
}

/// A connection cut at any point of a frame, and length fields rewritten
/// to lie: the sender fails cleanly, quickly, and nothing partial arrives.
#[test]
fn cuts_and_lying_lengths_fail_cleanly() {
    let mut bench = Bench::new();
    let (_, honest) = bench.case(Rule::Pass);
    let (to_server, to_client) = stream_lengths(&honest);
    for offset in (1..to_server).step_by(53) {
        bench.case(Rule::Cut {
            way: Way::ToServer,
            offset,
        });
    }
    for offset in (1..to_client).step_by(53) {
        bench.case(Rule::Cut {
            way: Way::ToClient,
            offset,
        });
    }
    for (way, frames) in [
        (Way::ToServer, &honest.to_server),
        (Way::ToClient, &honest.to_client),
    ] {
        for (frame, bytes) in frames.iter().enumerate() {
            let real = u32::from_be_bytes(bytes[..4].try_into().unwrap());
            for length in [0xFFFF_FFFF, 0, real + 1, real - 1, 1 << 20] {
                let started = Instant::now();
                bench.case(Rule::Length { way, frame, length });
                assert!(
                    started.elapsed() < secs(15),
                    "a lying length made {way:?} wait"
                );
            }
        }
    }
}
