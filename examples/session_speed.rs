//! Latency and rate of an established session, against raw TCP on the same
//! loopback in the same run. Used by `bench/run.sh`; run it alone with
//! `cargo run --release --example session_speed`.
//!
//! * latency: a 100-byte message and its receipt, round trip, p50, against
//!   a 100-byte TCP ping-pong;
//! * rate: 100-byte messages one way, as fast as they go, until the last
//!   receipt.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chat::crypto::PrivateKey;
use chat::net::conversation::{Conversation, Handler};
use chat::net::{Connected, Decision};

const ROUNDS: usize = 20_000;
const MESSAGES: usize = 300_000;

fn key(pem: &str) -> PrivateKey {
    PrivateKey::from_pkcs8_pem(pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A raw TCP connection to an echo thread: the reference round trip.
struct RawEcho(TcpStream);

impl RawEcho {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 100];
            while s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf).unwrap();
            }
        });
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        Self(s)
    }

    fn round_trip(&mut self) -> Duration {
        let mut buf = [7u8; 100];
        let t = Instant::now();
        self.0.write_all(&buf).unwrap();
        self.0.read_exact(&mut buf).unwrap();
        t.elapsed()
    }
}

/// Keeps nothing; notes when receipts arrive, as the REPL's "delivered"
/// line would appear (the engine sends receipts by itself).
#[derive(Clone, Default)]
struct Quiet(Arc<(Mutex<Option<Instant>>, Condvar)>);

impl Quiet {
    /// Waits for the next receipt; returns when it was taken in.
    fn next_receipt(&self) -> Instant {
        let (slot, signal) = &*self.0;
        let mut slot = slot.lock().unwrap();
        loop {
            if let Some(at) = slot.take() {
                return at;
            }
            slot = signal.wait(slot).unwrap();
        }
    }
}

impl Handler for Quiet {
    fn message_data(&mut self, _id: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn message_end(&mut self, _id: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn delivered(&mut self, _ids: std::ops::RangeInclusive<u64>) {
        let at = Instant::now();
        let (slot, signal) = &*self.0;
        *slot.lock().unwrap() = Some(at);
        signal.notify_one();
    }
}

/// Two established conversations over loopback, and the first one's
/// receipt watcher.
fn pair() -> (Conversation, Conversation, Quiet) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let identity = key(include_str!("../docs/vectors/keys/responder.pem"));
        let transient = key(include_str!("../docs/vectors/keys/transient.pem"));
        chat::net::respond(
            stream,
            &mut rand::rng(),
            &identity,
            "bob",
            || true,
            || transient,
        )
        .unwrap()
    });
    let identity = key(include_str!("../docs/vectors/keys/initiator.pem"));
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = chat::net::initiate(stream, &mut rand::rng(), &identity, "ada", |_| {
        Decision::Continue
    })
    .unwrap()
    .unwrap();
    let watcher = Quiet::default();
    let start = |c: Connected, h: Quiet| Conversation::over(c, u64::MAX, h).unwrap();
    (
        start(client, watcher.clone()),
        start(server.join().unwrap(), Quiet::default()),
        watcher,
    )
}

fn main() {
    let mut raw = RawEcho::start();
    let (ada, _bob, receipts) = pair();
    let sender = ada.sender();
    let text = [b'x'; 100];
    // Alternating, so that both see the same machine. Timed from the send
    // to the moment the receipt is taken in (where the REPL prints
    // "delivered"), not to when this thread gets round to it.
    let (raw_samples, chat_samples): (Vec<_>, Vec<_>) = (0..ROUNDS)
        .map(|_| {
            let raw = raw.round_trip();
            let t = Instant::now();
            sender.send(&text).unwrap();
            (raw, receipts.next_receipt() - t)
        })
        .unzip();
    let (chat, raw) = (p50(chat_samples), p50(raw_samples));
    println!(
        "latency: 100-byte round trip p50: chat {:.1} us, raw TCP {:.1} us, ratio {:.2}",
        chat.as_secs_f64() * 1e6,
        raw.as_secs_f64() * 1e6,
        chat.as_secs_f64() / raw.as_secs_f64()
    );

    let (ada, _bob, _) = pair();
    let sender = ada.sender();
    let t = Instant::now();
    let mut last = 0;
    for _ in 0..MESSAGES {
        last = sender.send(&text).unwrap();
    }
    assert!(sender.wait_acknowledged(last));
    let elapsed = t.elapsed();
    println!(
        "rate: {MESSAGES} messages of 100 bytes in {:.3} s: {:.0} messages/s",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
}
