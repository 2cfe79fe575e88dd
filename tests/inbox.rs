//! Several conversations at once (issue 12, items 1 and 5).
//!
//! First the server's conversation table over loopback, with this test
//! playing the program that holds the conversations: a cap on
//! conversations, one per key with the newest winning, and verified peers
//! before unverified ones, where keep-alives are not activity.
//!
//! Then the same through the real binary, `chat serve --max-conversations
//! N`: without a terminal (every `--json` event numbered with its
//! conversation, standard input routed by `@NAME`), and on a pty (`/to`,
//! `@NAME`, `/who`, labels on every row, arrivals that never take the
//! target).

use crate::common;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chat::crypto::{Fingerprint, PrivateKey};
use chat::net::conversation::{Conversation, Handler, Summary};
use chat::net::server::{self, Incoming, Log, Options};
use chat::net::slots::Tracked;
use chat::net::{Connected, Decision};
use chat::protocol::{CloseReason, MAX_RECORD_FRAME};
use chat::session::Event as Record;
use chat::wire::FrameDecoder;

const LIMIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(format!(
        "{}/docs/vectors/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// `n` fresh identity keys.
fn keys(n: usize) -> Vec<PrivateKey> {
    (0..n)
        .map(|_| PrivateKey::generate(&mut rand::rng(), 2048).unwrap())
        .collect()
}

/// What the server-side program sees, by slot id.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Arrived {
        id: u64,
        key: Fingerprint,
        evicted: Option<(u64, CloseReason)>,
    },
    Message {
        id: u64,
        text: String,
    },
    PeerDone {
        id: u64,
    },
    Ended {
        id: u64,
    },
}

/// Reports what arrives in one conversation.
struct Report {
    id: u64,
    text: Vec<u8>,
    seen: mpsc::Sender<Seen>,
}

impl Handler for Report {
    fn message_data(&mut self, _: u64, data: &[u8]) -> io::Result<()> {
        self.text.extend_from_slice(data);
        Ok(())
    }
    fn message_end(&mut self, _: u64) -> io::Result<()> {
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.text)).into_owned();
        let _ = self.seen.send(Seen::Message { id: self.id, text });
        Ok(())
    }
    fn peer_done(&mut self) {
        let _ = self.seen.send(Seen::PeerDone { id: self.id });
    }
    fn ended(&mut self, _: &Summary) {
        let _ = self.seen.send(Seen::Ended { id: self.id });
    }
}

/// A server as bob, with this test as its program: every conversation is
/// held until it ends, closed as the slot table says when it must give way.
struct Inbox {
    port: u16,
    seen: mpsc::Receiver<Seen>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Inbox {
    fn start(max_conversations: usize, verified: &[&PrivateKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let verified: Vec<Fingerprint> =
            verified.iter().map(|k| k.public().fingerprint()).collect();
        let options = Options {
            max_conversations,
            verbose: true,
            verified: Some(Arc::new(move |peer| {
                verified.contains(&peer.key.fingerprint())
            })),
            transient_key_rate: 1000.0,
            invites: None,
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let log: Log = Arc::new(Mutex::new(Box::new(move |line| {
            sink.lock().unwrap().push(line)
        })));
        let incoming = server::serve(
            listener,
            Arc::new(fixture("responder")),
            "bob".into(),
            options,
            log,
        );
        let (to_test, seen) = mpsc::channel();
        thread::spawn(move || {
            for Incoming {
                connected,
                slot,
                evicted,
                ..
            } in incoming
            {
                let id = slot.id();
                let key = connected.established.peer.key.fingerprint();
                let report = Report {
                    id,
                    text: Vec::new(),
                    seen: to_test.clone(),
                };
                let conversation =
                    Conversation::over(connected, u64::MAX, Tracked::new(report, slot.activity()))
                        .unwrap();
                let sender = conversation.sender();
                slot.on_evict(move |reason| sender.close(reason));
                let _ = to_test.send(Seen::Arrived {
                    id,
                    key,
                    evicted: evicted.map(|e| (e.id, e.reason)),
                });
                thread::spawn(move || {
                    conversation.wait();
                    drop(slot);
                });
            }
        });
        Self {
            port,
            seen,
            log: lines,
        }
    }

    /// The next thing the program sees.
    #[track_caller]
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("nothing seen; log: {:#?}", self.log.lock().unwrap()))
    }

    /// Waits for `wanted`, passing over what else is seen meanwhile.
    #[track_caller]
    fn expect(&self, wanted: &Seen) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(seen) if seen == *wanted => return,
                Ok(_) => {}
                Err(_) => panic!("never saw {wanted:?}; log: {:#?}", self.log.lock().unwrap()),
            }
        }
    }

    /// A peer with `key` connects and is handed to the program: its slot id.
    #[track_caller]
    fn arrives(&self, key: &PrivateKey) -> (Peer, u64, Option<(u64, CloseReason)>) {
        let peer = Peer::connect(self.port, key);
        match self.next() {
            Seen::Arrived {
                id,
                key: fingerprint,
                evicted,
            } => {
                assert_eq!(fingerprint, key.public().fingerprint());
                (peer, id, evicted)
            }
            other => panic!("expected an arrival, saw {other:?}"),
        }
    }
}

/// A peer that writes records by hand (so it can send keep-alives at will).
struct Peer {
    connected: Connected,
    decoder: FrameDecoder,
}

impl Peer {
    fn connect(port: u16, key: &PrivateKey) -> Self {
        Self::named(port, key, "peer")
    }

    /// A peer that calls itself `nickname`.
    fn named(port: u16, key: &PrivateKey, nickname: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let connected = chat::net::initiate(stream, &mut rand::rng(), key, nickname, |_| {
            Decision::Continue
        })
        .expect("handshake")
        .expect("not abandoned");
        connected.stream.set_read_timeout(Some(LIMIT)).unwrap();
        Self {
            connected,
            decoder: FrameDecoder::new(MAX_RECORD_FRAME),
        }
    }

    fn write(&mut self, seal: impl FnOnce(&mut chat::session::SendHalf, &mut Vec<u8>)) {
        let mut out = Vec::new();
        seal(self.connected.established.session.send(), &mut out);
        self.connected.stream.write_all(&out).unwrap();
    }

    fn say(&mut self, text: &str) {
        self.write(|send, out| {
            send.message(text.as_bytes(), 1024, out).unwrap();
        });
    }

    fn keepalive(&mut self) {
        self.write(|send, out| send.keepalive(out).unwrap());
    }

    fn done(&mut self) {
        self.write(|send, out| send.done(out).unwrap());
    }

    /// Reads until a whole message arrives: its text. Receipts, keep-alives
    /// and DONE are passed over; a CLOSE fails the test.
    #[track_caller]
    fn message(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let mut text = Vec::new();
        loop {
            while let Some(frame) = self.decoder.next_frame().unwrap() {
                match self
                    .connected
                    .established
                    .session
                    .recv()
                    .open(frame)
                    .unwrap()
                {
                    Record::MessageStart { .. } => text.clear(),
                    Record::MessageData { data, .. } => text.extend_from_slice(data),
                    Record::MessageEnd { data, .. } => {
                        text.extend_from_slice(data);
                        return String::from_utf8(text).unwrap();
                    }
                    Record::Close { reason, .. } => panic!("closed ({reason}) before a message"),
                    _ => {}
                }
            }
            let n = self
                .connected
                .stream
                .read(&mut buf)
                .expect("a message in time");
            assert!(n > 0, "cut before a message");
            self.decoder.push(&buf[..n]);
        }
    }

    /// Reads until the server's CLOSE: its reason.
    #[track_caller]
    fn closed(&mut self) -> CloseReason {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(frame) = self.decoder.next_frame().unwrap() {
                let record = self.connected.established.session.recv().open(frame);
                if let Record::Close { reason, .. } = record.unwrap() {
                    return reason;
                }
            }
            let n = self
                .connected
                .stream
                .read(&mut buf)
                .expect("the server closes with a reason in time");
            assert!(n > 0, "cut without a CLOSE");
            self.decoder.push(&buf[..n]);
        }
    }
}

#[test]
fn a_ninth_peer_is_refused_until_one_of_eight_leaves() {
    let inbox = Inbox::start(8, &[]);
    let keys = keys(9);
    let mut peers: Vec<(Peer, u64)> = keys[..8]
        .iter()
        .map(|key| {
            let (peer, id, evicted) = inbox.arrives(key);
            assert_eq!(evicted, None);
            (peer, id)
        })
        .collect();
    // The ninth completes its handshake and is told the server is busy.
    let mut ninth = Peer::connect(inbox.port, &keys[8]);
    assert_eq!(ninth.closed(), CloseReason::Busy);
    // One leaves; the ninth tries again and is in.
    let (leaving, id) = peers.remove(3);
    drop(leaving);
    inbox.expect(&Seen::Ended { id });
    let (mut ninth, id, evicted) = inbox.arrives(&keys[8]);
    assert_eq!(evicted, None);
    ninth.say("finally");
    inbox.expect(&Seen::Message {
        id,
        text: "finally".into(),
    });
    // The eight before it were left alone.
    for (peer, id) in &mut peers {
        peer.say("still here");
        inbox.expect(&Seen::Message {
            id: *id,
            text: "still here".into(),
        });
    }
}

#[test]
fn a_newer_session_with_the_same_key_supersedes_the_old_one() {
    let inbox = Inbox::start(2, &[]);
    let keys = keys(2);
    let (mut first, first_id, _) = inbox.arrives(&keys[0]);
    let (_other, other_id, _) = inbox.arrives(&keys[1]);
    first.say("from the first connection");
    inbox.expect(&Seen::Message {
        id: first_id,
        text: "from the first connection".into(),
    });
    // The same key again, with every slot taken: it takes its own.
    let (mut second, second_id, evicted) = inbox.arrives(&keys[0]);
    assert_eq!(evicted, Some((first_id, CloseReason::Superseded)));
    assert_eq!(first.closed(), CloseReason::Superseded);
    second.say("from the second");
    inbox.expect(&Seen::Message {
        id: second_id,
        text: "from the second".into(),
    });
    assert_ne!(second_id, other_id);
}

#[test]
fn a_strangers_keepalives_do_not_keep_a_verified_peer_out() {
    let keys = keys(4);
    let (early, late, friend, third) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let inbox = Inbox::start(2, &[friend]);
    // Two strangers fill the slots; the early one talks first, the late
    // one after it...
    let (mut early_peer, early_id, _) = inbox.arrives(early);
    early_peer.say("hello from the early stranger");
    inbox.expect(&Seen::Message {
        id: early_id,
        text: "hello from the early stranger".into(),
    });
    let (mut late_peer, late_id, _) = inbox.arrives(late);
    late_peer.say("hello from the late stranger");
    inbox.expect(&Seen::Message {
        id: late_id,
        text: "hello from the late stranger".into(),
    });
    // ...and then the early one only keeps its connection alive (and says
    // DONE, which is not activity either, so that the test sees that the
    // keep-alives before it have been read).
    for _ in 0..3 {
        early_peer.keepalive();
    }
    early_peer.done();
    inbox.expect(&Seen::PeerDone { id: early_id });
    // A verified peer arrives: the early stranger, idle the longest for all
    // its keep-alives, gives way, and is told why.
    let (mut friend_peer, friend_id, evicted) = inbox.arrives(friend);
    assert_eq!(evicted, Some((early_id, CloseReason::Displaced)));
    assert_eq!(early_peer.closed(), CloseReason::Displaced);
    friend_peer.say("hi, it's me");
    inbox.expect(&Seen::Message {
        id: friend_id,
        text: "hi, it's me".into(),
    });
    // The late stranger keeps its conversation.
    late_peer.say("still here");
    inbox.expect(&Seen::Message {
        id: late_id,
        text: "still here".into(),
    });
    // A third stranger finds no room: a stranger displaces no one.
    let mut refused = Peer::connect(inbox.port, third);
    assert_eq!(refused.closed(), CloseReason::Busy);
}

// Through the binary.

/// Transient keys as fast as the machine makes them: these tests open many
/// sessions at once.
const FAST_KEYS: (&str, &str) = ("CHAT_TRANSIENT_KEY_RATE", "1000");

/// `chat serve --json` as bob without a terminal, with `extra` arguments,
/// its standard input piped (and held by the test).
fn serve_json(
    home: &common::TestHome,
    extra: &[&str],
) -> (common::Running, std::process::ChildStdin) {
    let mut command = common::serve_command(home, &["--json"]);
    command
        .args(extra)
        .env(FAST_KEYS.0, FAST_KEYS.1)
        .stdin(Stdio::piped());
    let mut server = common::Running::spawn(command);
    let input = server.stdin();
    (server, input)
}

/// The `--json` events a server has written so far.
fn events(server: &common::Running) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&server.stdout())
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is a JSON event"))
        .collect()
}

/// Waits for the first `--json` event that `wanted` picks.
#[track_caller]
fn wait_event(
    server: &common::Running,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(event) = events(server).into_iter().find(&wanted) {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {LIMIT:?}; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&server.stdout()),
            server.stderr()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The conversation number of the message `text`, once it has arrived.
#[track_caller]
fn delivered(server: &common::Running, text: &str) -> u64 {
    let event = wait_event(server, &format!("message {text:?}"), |e| {
        e["event"] == "message" && e["text"] == text
    });
    event["conversation"]
        .as_u64()
        .expect("a numbered message event")
}

#[test]
fn nine_peers_against_max_conversations_eight() {
    let bob = common::TestHome::with_identity("responder");
    let (server, _input) = serve_json(&bob, &["--accept-new", "--max-conversations", "8"]);
    let port = server.port();
    let keys = keys(9);
    // Each with a nickname of its own: --accept-new pins each under it.
    let mut peers: Vec<Peer> = keys[..8]
        .iter()
        .enumerate()
        .map(|(n, key)| Peer::named(port, key, &format!("peer{n}")))
        .collect();
    // The ninth completes its handshake and is told the server is busy.
    let mut ninth = Peer::named(port, &keys[8], "peer8");
    assert_eq!(ninth.closed(), CloseReason::Busy);
    // The eight talk at once, each in a conversation of its own.
    for (n, peer) in peers.iter_mut().enumerate() {
        peer.say(&format!("hello from peer {n}"));
    }
    let mut numbers: Vec<u64> = (0..8)
        .map(|n| delivered(&server, &format!("hello from peer {n}")))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 8, "eight conversations: {numbers:?}");
    // Every event says which conversation it belongs to.
    for event in events(&server) {
        assert!(event["conversation"].is_u64(), "{event}");
    }
    server.wait_for_stderr("busy (8 conversations held, none can give way)", LIMIT);
    // One leaves; the ninth tries again and is in.
    drop(peers.remove(3));
    wait_event(&server, "the end of a conversation", |e| {
        e["event"] == "closed"
    });
    let mut ninth = Peer::named(port, &keys[8], "peer8");
    ninth.say("finally");
    let number = delivered(&server, "finally");
    assert!(!numbers.contains(&number), "a new conversation: {number}");
}

#[test]
fn a_newer_session_with_the_same_key_replaces_the_old_one() {
    let bob = common::TestHome::with_identity("responder");
    let (server, _input) = serve_json(&bob, &["--accept-new", "--max-conversations", "2"]);
    let port = server.port();
    let keys = keys(2);
    let mut first = Peer::named(port, &keys[0], "ada");
    first.say("from the first connection");
    let old = delivered(&server, "from the first connection");
    let mut other = Peer::named(port, &keys[1], "carol");
    other.say("from carol");
    delivered(&server, "from carol");
    // Ada again, with the same key, while both slots are taken.
    let mut second = Peer::named(port, &keys[0], "ada");
    assert_eq!(first.closed(), CloseReason::Superseded);
    second.say("from the second connection");
    let new = delivered(&server, "from the second connection");
    assert_ne!(new, old);
    let gave_way = wait_event(&server, "a gave_way event", |e| e["event"] == "gave_way");
    assert_eq!(gave_way["conversation"], old);
    assert_eq!(gave_way["to"], new);
    assert_eq!(gave_way["reason"], "superseded");
    server.wait_for_stderr(
        &format!("ada (#{old}) gave way to a newer connection with the same key, ada (#{new})"),
        LIMIT,
    );
    // Carol was left alone.
    other.say("carol again");
    delivered(&server, "carol again");
}

#[test]
fn a_strangers_keepalives_do_not_keep_a_verified_peer_out_of_chat_serve() {
    let bob = common::TestHome::with_identity("responder");
    let keys = keys(4);
    let (early, late, friend, third) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    // Bob pinned his friend's key beforehand.
    let fingerprint = friend.public().fingerprint().to_string();
    bob.run(&["peers", "add", "friend", &fingerprint]).ok();
    let (server, _input) = serve_json(&bob, &["--accept-new", "--max-conversations", "2"]);
    let port = server.port();
    // Two strangers fill the slots (pinned now by --accept-new, which does
    // not make them verified); the early one talks first, the late one
    // after it...
    let mut early_peer = Peer::named(port, early, "early");
    early_peer.say("hello from the early stranger");
    let early_id = delivered(&server, "hello from the early stranger");
    let mut late_peer = Peer::named(port, late, "late");
    late_peer.say("hello from the late stranger");
    let late_id = delivered(&server, "hello from the late stranger");
    // ...and then the early one only keeps its connection alive, and says
    // DONE (not activity either), so that the test sees its keep-alives
    // have been read.
    for _ in 0..3 {
        early_peer.keepalive();
    }
    early_peer.done();
    wait_event(&server, "the early stranger's DONE", |e| {
        e["event"] == "peer_done" && e["conversation"] == early_id
    });
    // The verified friend arrives: the early stranger, idle the longest for
    // all its keep-alives, gives way and is told why.
    let mut friend_peer = Peer::named(port, friend, "friend");
    assert_eq!(early_peer.closed(), CloseReason::Displaced);
    friend_peer.say("hi, it's me");
    let friend_id = delivered(&server, "hi, it's me");
    let gave_way = wait_event(&server, "a gave_way event", |e| e["event"] == "gave_way");
    assert_eq!(gave_way["conversation"], early_id);
    assert_eq!(gave_way["to"], friend_id);
    assert_eq!(gave_way["reason"], "displaced");
    server.wait_for_stderr(
        &format!("early (#{early_id}), not verified and idle"),
        LIMIT,
    );
    server.wait_for_stderr(
        &format!("gave way to friend (#{friend_id}), a verified peer"),
        LIMIT,
    );
    // The late stranger keeps its conversation.
    late_peer.say("still here");
    assert_eq!(delivered(&server, "still here"), late_id);
    // A third stranger finds no room: a stranger displaces no one.
    let mut refused = Peer::connect(port, third);
    assert_eq!(refused.closed(), CloseReason::Busy);
}

#[test]
fn without_a_terminal_lines_go_by_name_and_are_never_guessed() {
    let bob = common::TestHome::with_identity("responder");
    let (server, mut input) = serve_json(&bob, &["--accept-new"]);
    let port = server.port();
    let keys = keys(2);
    let mut ada = Peer::named(port, &keys[0], "ada");
    ada.say("hi from ada");
    let ada_id = delivered(&server, "hi from ada");
    // One conversation: a plain line goes to it (with its line ending: what
    // we read is what the peer writes).
    writeln!(input, "to the only one").unwrap();
    assert_eq!(ada.message(), "to the only one\n");
    let mut carol = Peer::named(port, &keys[1], "carol");
    carol.say("hi from carol");
    let carol_id = delivered(&server, "hi from carol");
    // Two, none chosen: a plain line is not sent; @NAME and @#N are.
    writeln!(input, "to whom?").unwrap();
    let refusal = wait_event(&server, "a not_sent event", |e| e["event"] == "not_sent");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("none is chosen"),
        "{refusal}"
    );
    writeln!(input, "@carol for carol").unwrap();
    writeln!(input, "@#{ada_id} for ada").unwrap();
    assert_eq!(carol.message(), "for carol\n");
    assert_eq!(ada.message(), "for ada\n");
    // /to chooses; @@ escapes a leading @.
    writeln!(input, "/to carol").unwrap();
    writeln!(input, "@@carol is the one").unwrap();
    assert_eq!(carol.message(), "@carol is the one\n");
    let sent = wait_event(&server, "a sent event", |e| {
        e["event"] == "sent" && e["conversation"] == carol_id && e["id"] == 2
    });
    assert_eq!(sent["conversation"], carol_id);
    // Ada got nothing meant for someone else.
    writeln!(input, "@ada last").unwrap();
    assert_eq!(ada.message(), "last\n");
}

// On a terminal.

/// `chat serve` as bob on a pty, several conversations at once.
fn bob_on_a_terminal(home: &common::TestHome) -> common::pty::Pty {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    command
        .arg("--home")
        .arg(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--name", "bob"])
        .env_remove("CHAT_HOME")
        .env("TERM", "xterm-256color")
        .env(FAST_KEYS.0, FAST_KEYS.1);
    common::pty::Pty::spawn(command, 2000)
}

/// Waits until the cursor's row (the prompt) reads `row`.
#[track_caller]
fn wait_prompt(pty: &mut common::pty::Pty, row: &str) {
    pty.wait_until(&format!("the prompt row {row:?}"), |pty| {
        (pty.cursor_row() == row.trim_end()).then_some(())
    });
}

#[test]
fn an_arrival_is_announced_and_does_not_take_the_target() {
    let home = common::TestHome::with_identity("responder");
    let mut bob = bob_on_a_terminal(&home);
    let port = bob.port();
    let keys = keys(2);
    let mut ada = Peer::named(port, &keys[0], "ada");
    wait_prompt(&mut bob, "ada (unverified)> ");
    // Bob is typing to Ada when Carol connects.
    bob.send(b"half a line");
    wait_prompt(&mut bob, "ada (unverified)> half a line");
    let mut carol = Peer::named(port, &keys[1], "carol");
    bob.wait_for("joined; typed lines still go to ada.");
    wait_prompt(&mut bob, "ada (unverified)> half a line");
    bob.line(" for ada");
    assert_eq!(ada.message(), "half a line for ada\n");
    // Both write; every row carries its writer's label.
    carol.say("hi from carol");
    ada.say("hi from ada");
    bob.wait_for("[carol ?] hi from carol");
    bob.wait_for("[ada ?] hi from ada");
    // Carol got nothing of Bob's line.
    bob.line("@carol only now");
    assert_eq!(carol.message(), "only now\n");
}

#[test]
fn to_and_at_name_route_typed_lines_on_a_terminal() {
    let home = common::TestHome::with_identity("responder");
    let mut bob = bob_on_a_terminal(&home);
    let port = bob.port();
    let keys = keys(2);
    let mut ada = Peer::named(port, &keys[0], "ada");
    wait_prompt(&mut bob, "ada (unverified)> ");
    let mut carol = Peer::named(port, &keys[1], "carol");
    bob.wait_for("joined; typed lines still go to ada.");
    // One line elsewhere; the target stays.
    bob.line("@carol just this one");
    assert_eq!(carol.message(), "just this one\n");
    wait_prompt(&mut bob, "ada (unverified)> ");
    bob.line("@nobody hello");
    bob.wait_for("not sent: no open conversation is called nobody");
    // /to moves the target, and the prompt says so.
    bob.line("/to carol");
    wait_prompt(&mut bob, "carol (unverified)> ");
    bob.line("now to carol");
    assert_eq!(carol.message(), "now to carol\n");
    // /who lists both, and where lines go.
    bob.line("/who");
    bob.wait_for("2 open conversations:");
    bob.wait_until("carol's row in /who", |pty| {
        pty.history()
            .iter()
            .any(|row| row.contains("[carol ?] NOT VERIFIED (typed lines go here)"))
            .then_some(())
    });
    // /trust acts on the target: carol, not ada.
    bob.line("/trust");
    bob.wait_for("Pinned the peer's key as \"carol\"");
    wait_prompt(&mut bob, "carol \u{2713}> ");
    carol.say("thanks");
    bob.wait_for("[carol \u{2713}] thanks");
    // Carol leaves: no one is chosen, and a typed line goes nowhere.
    drop(carol);
    bob.wait_for("The connection to carol failed");
    wait_prompt(&mut bob, "(to whom? /to NAME)> ");
    bob.line("orphan");
    bob.wait_for("not sent: no conversation is chosen");
    // Ada got only what was meant for her.
    bob.line("@ada last");
    assert_eq!(ada.message(), "last\n");
}

#[test]
fn a_verified_peer_displaces_a_stranger_on_a_terminal() {
    let home = common::TestHome::with_identity("responder");
    let keys = keys(2);
    let (stranger_key, friend_key) = (&keys[0], &keys[1]);
    let fingerprint = friend_key.public().fingerprint().to_string();
    home.run(&["peers", "add", "friend", &fingerprint]).ok();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    command
        .arg("--home")
        .arg(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--name", "bob"])
        .args(["--max-conversations", "1"])
        .env_remove("CHAT_HOME")
        .env("TERM", "xterm-256color")
        .env(FAST_KEYS.0, FAST_KEYS.1);
    let mut bob = common::pty::Pty::spawn(command, 2000);
    let port = bob.port();
    // A stranger takes the one place, and keeps it alive.
    let mut stranger = Peer::named(port, stranger_key, "stranger");
    wait_prompt(&mut bob, "stranger (unverified)> ");
    stranger.keepalive();
    // Bob's friend arrives: the stranger gives way, and both sides are told.
    let mut friend = Peer::named(port, friend_key, "friend");
    assert_eq!(stranger.closed(), CloseReason::Displaced);
    bob.wait_for("stranger (#1), not verified and idle");
    bob.wait_for("gave way to friend (#2), a verified peer");
    bob.wait_for("The conversation with stranger is closed: it gave way to a verified peer");
    // The stranger was the target: now the friend is (no one else is open).
    friend.say("it's me");
    bob.wait_for("[friend \u{2713}] it's me");
    bob.line("/to friend");
    wait_prompt(&mut bob, "friend \u{2713}> ");
    bob.line("hello friend");
    assert_eq!(friend.message(), "hello friend\n");
}

#[test]
fn two_peers_with_the_same_name_are_told_apart_on_a_terminal() {
    let home = common::TestHome::with_identity("responder");
    let mut bob = bob_on_a_terminal(&home);
    let port = bob.port();
    let keys = keys(2);
    let mut first = Peer::named(port, &keys[0], "ada");
    wait_prompt(&mut bob, "ada (unverified)> ");
    let mut second = Peer::named(port, &keys[1], "ada");
    bob.wait_for("joined; typed lines still go to ada.");
    // Two of the same name: labels and the prompt carry the number, which
    // no nickname can (a # in it is shown escaped).
    wait_prompt(&mut bob, "ada #1 (unverified)> ");
    second.say("from the second");
    bob.wait_for("[ada #2 ?] from the second");
    first.say("from the first");
    bob.wait_for("[ada #1 ?] from the first");
    bob.line("/to ada");
    bob.wait_for("2 open conversations are called ada (#1, #2): use the number instead");
    bob.line("@#2 for the second");
    assert_eq!(second.message(), "for the second\n");
    bob.line("for the first");
    assert_eq!(first.message(), "for the first\n");
}
