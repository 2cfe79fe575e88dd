//! `chat relay`, driven as a binary on loopback by raw TCP clients that
//! speak its line protocol (docs/PROTOCOL.md, "Relay"). Clients bind to
//! 127.0.0.2, 127.0.0.3, ... to play different sources.

use crate::common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Running, secs};

/// A `chat relay` on a free loopback port that logs its summary every
/// 100 ms, so that tests can wait for its state.
struct Relay {
    running: Running,
    address: SocketAddr,
}

impl Relay {
    fn start(extra: &[&str]) -> Self {
        Self::start_in(extra, None)
    }

    fn start_in(extra: &[&str], dir: Option<&std::path::Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .args([
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--summary-every",
                "100ms",
            ])
            .args(extra)
            .env_remove("CHAT_HOME")
            .stdin(Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let running = Running::spawn(command);
        let address = SocketAddr::from(([127, 0, 0, 1], running.port()));
        Self { running, address }
    }

    /// A client connected from 127.0.0.1.
    fn client(&self) -> Client {
        self.client_from(1)
    }

    /// A client connected from 127.0.0.`last`.
    fn client_from(&self, last: u8) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let local = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), 0);
        socket.bind(&local.into()).expect("bind a loopback source");
        socket
            .connect_timeout(&self.address.into(), secs(10))
            .expect("connect to the relay");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(secs(10))).unwrap();
        stream.set_write_timeout(Some(secs(10))).unwrap();
        Client { stream }
    }

    /// Waits for a summary line, printed after this call, that contains
    /// every needle (the state the relay reports at that moment).
    #[track_caller]
    fn wait_for_state(&self, needles: &[&str]) {
        let seen = self.summaries().len();
        let deadline = Instant::now() + secs(10);
        loop {
            let summaries = self.summaries();
            if summaries[seen..]
                .iter()
                .any(|line| needles.iter().all(|needle| line.contains(needle)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no summary with {needles:?}: {}",
                self.running.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn summaries(&self) -> Vec<String> {
        self.running
            .stderr()
            .lines()
            .filter(|line| line.starts_with("summary"))
            .map(String::from)
            .collect()
    }
}

/// A room id on the line: 64 hex digits.
fn room(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A side on the line: 16 hex digits.
fn side(n: u8) -> String {
    format!("{n:02x}").repeat(8)
}

struct Client {
    stream: TcpStream,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the relay");
    }

    fn serve(mut self, room_n: u8, side_n: u8) -> Self {
        let line = format!("chat-relay/1 serve {} {}\n", room(room_n), side(side_n));
        self.send(line.as_bytes());
        self
    }

    fn connect(mut self, room_n: u8, side_n: u8) -> Self {
        let line = format!("chat-relay/1 connect {} {}\n", room(room_n), side(side_n));
        self.send(line.as_bytes());
        self
    }

    /// The next answer line, without its LF ("EOF" if the relay closed
    /// first). Reads byte by byte, so nothing after the LF is consumed.
    #[track_caller]
    fn answer(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) if line.is_empty() => return "EOF".into(),
                Ok(0) => panic!("the relay closed mid-answer: {line:?}"),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && line.is_empty() => {
                    return "RESET".into();
                }
                Err(e) => panic!("reading an answer: {e} (so far {line:?})"),
            }
            assert!(line.len() <= 9, "answer too long: {line:?}");
        }
        String::from_utf8(line).expect("an ASCII answer")
    }

    /// Asserts the relay closes the connection with nothing more to say.
    #[track_caller]
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream
            .read_exact(&mut buf)
            .expect("bytes through the relay");
        buf
    }
}

/// A serve and a connect in room `n`, both answered `ok`.
fn pair(relay: &Relay, n: u8) -> (Client, Client) {
    let mut serve = relay.client().serve(n, 1);
    let mut connect = relay.client().connect(n, 2);
    assert_eq!(serve.answer(), "ok");
    assert_eq!(connect.answer(), "ok");
    (serve, connect)
}

/// Bytes that look like everything a parser might trip on.
fn awkward_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(format!("chat-relay/1 serve {} {}\n", room(9), side(9)).as_bytes());
    bytes.extend_from_slice(b"ok\nbad\nreplaced\n\0\r\n");
    let mut x = u32::from(seed) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes.truncate(len);
    bytes
}

#[test]
fn pairs_and_copies_arbitrary_bytes_both_ways_with_half_close() {
    let relay = Relay::start(&[]);
    let (mut serve, mut connect) = pair(&relay, 1);

    // Both directions at once, each far beyond any buffer, so that the
    // relay has to apply backpressure rather than buffer everything.
    let one_way = awkward_bytes(4 << 20, 1);
    let other_way = awkward_bytes(3 << 20, 2);
    let mut serve_writer = serve.stream.try_clone().unwrap();
    let mut connect_writer = connect.stream.try_clone().unwrap();
    let (a, b) = (one_way.clone(), other_way.clone());
    let writers = [
        thread::spawn(move || {
            connect_writer.write_all(&a).unwrap();
            // Half-close: the serve side must see the end of stream,
            // and still be able to answer.
            connect_writer.shutdown(Shutdown::Write).unwrap();
        }),
        thread::spawn(move || serve_writer.write_all(&b).unwrap()),
    ];
    let mut received = Vec::new();
    serve.stream.read_to_end(&mut received).unwrap();
    assert!(received == one_way, "serve received other bytes");
    assert_eq!(connect.read_exact(other_way.len()), other_way);
    for writer in writers {
        writer.join().unwrap();
    }
    serve.send(b"after the peer's FIN");
    assert_eq!(connect.read_exact(20), b"after the peer's FIN");
    serve.stream.shutdown(Shutdown::Write).unwrap();
    connect.expect_eof();
}

#[test]
fn a_connect_waits_for_its_serve() {
    let relay = Relay::start(&[]);
    let mut connect = relay.client().connect(2, 2);
    relay.wait_for_state(&["0 serve and 1 connect waiting"]);
    let mut serve = relay.client().serve(2, 1);
    assert_eq!(serve.answer(), "ok");
    assert_eq!(connect.answer(), "ok");
    connect.send(b"\x16hello");
    assert_eq!(serve.read_exact(6), b"\x16hello");
}

#[test]
fn a_wrong_room_is_lonely_and_the_serve_keeps_waiting() {
    let relay = Relay::start(&["--lonely-timeout", "1s"]);
    let mut serve = relay.client().serve(3, 1);
    let started = Instant::now();
    let mut stranger = relay.client().connect(4, 2);
    assert_eq!(stranger.answer(), "lonely");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
    stranger.expect_eof();
    let mut connect = relay.client().connect(3, 2);
    assert_eq!(connect.answer(), "ok");
    assert_eq!(serve.answer(), "ok");
}

#[test]
fn a_registration_expires_lonely_and_is_renewed() {
    let relay = Relay::start(&["--registration-lifetime", "2s"]);
    let mut serve = relay.client().serve(5, 1);
    assert_eq!(serve.answer(), "lonely");
    serve.expect_eof();
    let mut renewed = relay.client().serve(5, 1);
    let mut connect = relay.client().connect(5, 2);
    assert_eq!(connect.answer(), "ok");
    assert_eq!(renewed.answer(), "ok");
}

#[test]
fn a_newer_serve_replaces_the_older_one() {
    let relay = Relay::start(&[]);
    let mut first = relay.client().serve(6, 1);
    relay.wait_for_state(&["1 serve and 0 connect waiting"]);
    let mut second = relay.client().serve(6, 2);
    assert_eq!(first.answer(), "replaced");
    first.expect_eof();
    // The same side again is the second server renewing: the older
    // registration is closed without an answer.
    relay.wait_for_state(&["1 serve and 0 connect waiting"]);
    let mut third = relay.client().serve(6, 2);
    assert_eq!(second.answer(), "EOF");
    let mut connect = relay.client().connect(6, 3);
    assert_eq!(connect.answer(), "ok");
    assert_eq!(third.answer(), "ok");
    relay.running.wait_for_stderr("1 renewed", secs(10));
    assert!(relay.running.stderr().contains("replaced 1"));
}

#[test]
fn unpaired_connections_per_source_are_capped() {
    let relay = Relay::start(&["--max-unpaired-per-source", "2"]);
    let waiting_a = relay.client_from(2).serve(10, 1);
    let waiting_b = relay.client_from(2).serve(11, 1);
    let mut third = relay.client_from(2);
    assert_eq!(third.answer(), "busy");
    third.expect_eof();
    // Another source is not affected, and the two still pair.
    for (mut waiting, n) in [(waiting_a, 10), (waiting_b, 11)] {
        let mut connect = relay.client_from(3).connect(n, 2);
        assert_eq!(connect.answer(), "ok");
        assert_eq!(waiting.answer(), "ok");
    }
}

#[test]
fn new_connections_per_source_are_rate_limited() {
    let relay = Relay::start(&["--max-new-per-minute", "3"]);
    let admitted: Vec<Client> = (0..3).map(|_| relay.client_from(4)).collect();
    let mut refused = relay.client_from(4);
    assert_eq!(refused.answer(), "busy");
    refused.expect_eof();
    for (i, client) in admitted.into_iter().enumerate() {
        // Each admitted one pairs with a connect from another source.
        let n = 20 + i as u8;
        let mut client = client.serve(n, 1);
        let mut connect = relay.client_from(5).connect(n, 2);
        assert_eq!(connect.answer(), "ok");
        assert_eq!(client.answer(), "ok");
    }
}

#[test]
fn circuits_per_source_are_capped_at_either_end() {
    let relay = Relay::start(&["--max-circuits-per-source", "1"]);
    let mut serve = relay.client_from(6).serve(30, 1);
    let mut connect = relay.client_from(7).connect(30, 2);
    assert_eq!(serve.answer(), "ok");
    assert_eq!(connect.answer(), "ok");
    // .6 is in a circuit: a second one with .6 at either end is refused,
    // and the end that waited keeps waiting.
    let mut waiting = relay.client_from(8).serve(31, 1);
    relay.wait_for_state(&["1 serve and 0 connect waiting"]);
    let mut refused = relay.client_from(6).connect(31, 2);
    assert_eq!(refused.answer(), "busy");
    refused.expect_eof();
    let mut connect_waiting = relay.client_from(9).connect(32, 2);
    relay.wait_for_state(&["1 serve and 1 connect waiting"]);
    let mut refused = relay.client_from(6).serve(32, 1);
    assert_eq!(refused.answer(), "busy");
    refused.expect_eof();
    drop((serve, connect));
    relay.wait_for_state(&["0 circuits open"]);
    let mut now_allowed = relay.client_from(6).connect(31, 3);
    assert_eq!(now_allowed.answer(), "ok");
    assert_eq!(waiting.answer(), "ok");
    let mut other = relay.client_from(10).serve(32, 4);
    assert_eq!(other.answer(), "ok");
    assert_eq!(connect_waiting.answer(), "ok");
}

#[test]
fn the_oldest_unpaired_connection_is_evicted_when_the_relay_is_full() {
    let relay = Relay::start(&["--max-unpaired", "3"]);
    let mut oldest = relay.client_from(2).serve(40, 1);
    let mut younger = relay.client_from(3).serve(41, 1);
    let mut youngest = relay.client_from(4).serve(42, 1);
    relay.wait_for_state(&["3 serve and 0 connect waiting"]);
    // A fourth connection pushes out the first.
    let mut connect = relay.client_from(5).connect(41, 2);
    assert_eq!(oldest.answer(), "full");
    oldest.expect_eof();
    assert_eq!(connect.answer(), "ok");
    assert_eq!(younger.answer(), "ok");
    let mut connect = relay.client_from(5).connect(42, 2);
    assert_eq!(connect.answer(), "ok");
    assert_eq!(youngest.answer(), "ok");
    relay
        .running
        .wait_for_stderr("full 1 (1 evicted)", secs(10));
}

#[test]
fn the_circuit_cap_answers_full_and_the_serve_keeps_waiting() {
    let relay = Relay::start(&["--max-circuits", "1"]);
    let (first_serve, first_connect) = pair(&relay, 50);
    let mut waiting = relay.client_from(2).serve(51, 1);
    relay.wait_for_state(&["1 serve and 0 connect waiting"]);
    let mut refused = relay.client_from(3).connect(51, 2);
    assert_eq!(refused.answer(), "full");
    refused.expect_eof();
    drop((first_serve, first_connect));
    relay.wait_for_state(&["0 circuits open"]);
    let mut connect = relay.client_from(3).connect(51, 2);
    assert_eq!(connect.answer(), "ok");
    assert_eq!(waiting.answer(), "ok");
}

#[test]
fn bad_lines_are_answered_bad_and_closed() {
    let relay = Relay::start(&["--line-timeout", "1s"]);
    let good = format!("chat-relay/1 serve {} {}\n", room(60), side(1));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too long", vec![b'a'; 200]),
        ("exactly 128 bytes without LF", vec![b'a'; 128]),
        (
            "wrong prefix",
            good.replace("chat-relay/1", "chat-relay/2").into_bytes(),
        ),
        (
            "not a request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "uppercase hex",
            good.replace(&room(60), &room(60).to_uppercase())
                .into_bytes(),
        ),
        (
            "not hex",
            good.replace(&room(60), &"zz".repeat(32)).into_bytes(),
        ),
        (
            "short room",
            good.replace(&room(60), &room(60)[2..]).into_bytes(),
        ),
        (
            "long side",
            good.replace(&side(1), &format!("{}00", side(1)))
                .into_bytes(),
        ),
        ("CRLF", good.replace('\n', "\r\n").into_bytes()),
        (
            "bytes after the line",
            [good.as_bytes(), b"\x16\x03\x01"].concat(),
        ),
        ("binary", vec![0u8, 0xff, 0x10, b'\n']),
    ];
    for (why, bytes) in cases {
        let mut client = relay.client();
        client.send(&bytes);
        assert_eq!(client.answer(), "bad", "{why}");
        client.expect_eof();
    }

    // No LF within the line timeout: a slow start is not refused at once.
    let started = Instant::now();
    let mut slow = relay.client();
    slow.send(&good.as_bytes()[..50]);
    assert_eq!(slow.answer(), "bad");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
    slow.expect_eof();

    // Bytes sent while waiting for a partner, before any `ok`.
    let mut early = relay.client().serve(61, 1);
    relay.wait_for_state(&["1 serve and 0 connect waiting"]);
    early.send(b"\x16");
    assert_eq!(early.answer(), "bad");
    early.expect_eof();
    relay.wait_for_state(&["0 unpaired"]);
}

#[test]
fn an_idle_circuit_is_closed_and_a_busy_one_is_not() {
    let relay = Relay::start(&["--idle-timeout", "1s"]);
    let (mut busy_serve, mut busy_connect) = pair(&relay, 70);
    let (mut idle_serve, mut idle_connect) = pair(&relay, 71);
    idle_connect.send(b"x");
    assert_eq!(idle_serve.read_exact(1), b"x");
    // Traffic every 100 ms keeps the first circuit open past the timeout.
    let started = Instant::now();
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_millis(2000) {
        busy_connect.send(&sent.to_be_bytes());
        assert_eq!(busy_serve.read_exact(4), sent.to_be_bytes());
        sent += 1;
        thread::sleep(Duration::from_millis(100));
    }
    idle_serve.expect_eof();
    idle_connect.expect_eof();
    busy_serve.send(b"still here");
    assert_eq!(busy_connect.read_exact(10), b"still here");
    relay.running.wait_for_stderr("1 idle", secs(10));
}

#[test]
fn logs_hold_no_addresses_or_rooms_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let relay = Relay::start_in(
        &["--lonely-timeout", "1s", "--home", home.to_str().unwrap()],
        Some(dir.path()),
    );
    let (mut serve, mut connect) = pair(&relay, 80);
    connect.send(b"ciphertext");
    assert_eq!(serve.read_exact(10), b"ciphertext");
    drop((serve, connect));
    assert_eq!(relay.client_from(2).connect(81, 2).answer(), "lonely");
    relay.client_from(3).send(b"nonsense\n");
    relay.wait_for_state(&["0 circuits open", "0 unpaired"]);

    // SIGTERM: a last summary, and a clean exit.
    let pid = i32::try_from(relay.running.pid()).unwrap();
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let outcome = relay.running.finish(secs(10));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let log = outcome.stderr;
    assert!(log.trim_end().ends_with("stopped"), "{log}");
    for secret in [room(80), room(81), side(1), side(2)] {
        assert!(
            !log.contains(&secret),
            "the log names a room or side: {log}"
        );
    }
    for line in log.lines().skip(1) {
        assert!(
            !line.contains("127.0.0."),
            "the log names an address: {line}"
        );
    }
    assert!(log.contains("10 B relayed"), "{log}");
    assert!(log.contains("lonely 1"), "{log}");
    assert!(log.contains("bad 1"), "{log}");
    assert!(!home.exists(), "the relay created its --home");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "it wrote files"
    );
}
