//! The conversation engine in process, over loopback:
//!
//! * two sides that send long messages to each other at the same time,
//!   faster than either takes them in, both finish: a side's reader never
//!   waits on its own socket writes, so neither stops reading while the
//!   other waits for it;
//! * two sides that say DONE at the same moment both finish at once: each
//!   sends CLOSE and half-closes, however the two goodbyes cross.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use chat::crypto::PrivateKey;
use chat::net::conversation::{Conversation, Ending, Handler, Summary};
use chat::net::{Connected, Decision};
use sha2::{Digest, Sha256};

const LENGTH: u64 = 32 << 20;

fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(format!(
        "{}/docs/vectors/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// Hashes what arrives, slowly (like a busy terminal), and reports it at the
/// end of the message.
struct Digesting {
    hash: Sha256,
    received: u64,
    done: mpsc::Sender<(u64, [u8; 32])>,
}

impl Handler for Digesting {
    fn message_data(&mut self, _id: u64, data: &[u8]) -> io::Result<()> {
        self.hash.update(data);
        self.received += data.len() as u64;
        thread::sleep(Duration::from_millis(1));
        Ok(())
    }
    fn message_end(&mut self, _id: u64) -> io::Result<()> {
        let digest = std::mem::take(&mut self.hash).finalize().into();
        let _ = self.done.send((self.received, digest));
        Ok(())
    }
    fn ended(&mut self, _summary: &Summary) {}
}

/// The message each side sends: `LENGTH` copies of one byte.
fn message(byte: u8) -> impl Read {
    io::repeat(byte).take(LENGTH)
}

fn expected(byte: u8) -> [u8; 32] {
    let mut hash = Sha256::new();
    let block = [byte; 1 << 16];
    for _ in 0..LENGTH / block.len() as u64 {
        hash.update(block);
    }
    hash.finalize().into()
}

fn pair() -> (Connected, Connected) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        chat::net::respond(
            stream,
            &mut rand::rng(),
            &key("responder"),
            "bob",
            || true,
            || key("transient"),
        )
        .unwrap()
    });
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = chat::net::initiate(stream, &mut rand::rng(), &key("initiator"), "ada", |_| {
        Decision::Continue
    })
    .unwrap()
    .unwrap();
    (client, server.join().unwrap())
}

#[test]
fn both_sides_send_long_messages_at_once_and_both_arrive() {
    let (ada, bob) = pair();
    let (to_ada, at_ada) = mpsc::channel();
    let (to_bob, at_bob) = mpsc::channel();
    let start = |connected, done| {
        let handler = Digesting {
            hash: Sha256::new(),
            received: 0,
            done,
        };
        Conversation::over(connected, u64::MAX, handler).unwrap()
    };
    let ada = start(ada, to_ada);
    let bob = start(bob, to_bob);
    let senders: Vec<_> = [(ada.sender(), 1u8), (bob.sender(), 2u8)]
        .into_iter()
        .map(|(sender, seed)| {
            thread::spawn(move || {
                let id = sender
                    .send_from(&mut message(seed), LENGTH, &mut |_| {})
                    .unwrap();
                assert!(
                    sender.wait_acknowledged(id),
                    "side {seed}: not acknowledged"
                );
            })
        })
        .collect();
    // Both messages arrive whole; a deadlock shows up as a timeout here.
    let limit = Duration::from_secs(60);
    let (bytes, digest) = at_bob
        .recv_timeout(limit)
        .expect("bob received ada's message");
    assert_eq!((bytes, digest), (LENGTH, expected(1)));
    let (bytes, digest) = at_ada
        .recv_timeout(limit)
        .expect("ada received bob's message");
    assert_eq!((bytes, digest), (LENGTH, expected(2)));
    for sender in senders {
        sender.join().unwrap();
    }
}

/// Keeps nothing.
struct Ignore;

impl Handler for Ignore {
    fn message_data(&mut self, _id: u64, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn message_end(&mut self, _id: u64) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn both_sides_saying_done_at_once_finish_at_once() {
    // The crossing that once left both sides waiting for the peer timeout
    // happened in a few rounds in a hundred.
    for round in 0..100 {
        let (ada, bob) = pair();
        let ada = Conversation::over(ada, u64::MAX, Ignore).unwrap();
        let bob = Conversation::over(bob, u64::MAX, Ignore).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let (finished, endings) = mpsc::channel();
        for side in [ada, bob] {
            let (barrier, finished) = (Arc::clone(&barrier), finished.clone());
            thread::spawn(move || {
                barrier.wait();
                side.sender().done().unwrap();
                let _ = finished.send(side.wait().ending);
            });
        }
        for _ in 0..2 {
            let ending = endings
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("round {round}: a side did not finish"));
            assert!(
                matches!(ending, Ending::Finished),
                "round {round}: {ending:?}"
            );
        }
    }
}
