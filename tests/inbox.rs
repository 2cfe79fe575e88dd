//! The server's conversation table over loopback, with this test playing
//! the program that holds the conversations (the way `chat serve` will once
//! it holds several): a cap on conversations, one per key with the newest
//! winning, and verified peers before unverified ones, where keep-alives
//! are not activity (issue 12, items 1 and 5, server side).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
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
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let connected = chat::net::initiate(stream, &mut rand::rng(), key, "peer", |_| {
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
