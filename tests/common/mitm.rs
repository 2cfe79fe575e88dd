//! A man in the middle for tests: a loopback TCP proxy between a real
//! `chat` client and a real `chat serve` that tampers with the traffic by
//! rule, one rule per proxied connection, and records what each side sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the connecting client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// What to do to one connection.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Forward everything unchanged.
    Pass,
    /// XOR the byte at `offset` of the stream going `way` with `mask`.
    Flip { way: Way, offset: usize, mask: u8 },
    /// Forward `offset` bytes going `way`, then cut both connections.
    Cut { way: Way, offset: usize },
    /// Do not forward frame number `frame` (from 0) going `way`.
    Drop { way: Way, frame: usize },
    /// Forward frame `frame` twice.
    Duplicate { way: Way, frame: usize },
    /// Forward frame `frame + 1` before frame `frame`.
    Swap { way: Way, frame: usize },
    /// Send `bytes` just before frame `frame`.
    Inject {
        way: Way,
        frame: usize,
        bytes: Vec<u8>,
    },
    /// Replace the length field of frame `frame` with `length`, then keep
    /// forwarding the rest of the stream unchanged.
    Length { way: Way, frame: usize, length: u32 },
}

/// What one proxied connection carried, as sent by each side (before any
/// tampering), split into frames.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub to_server: Vec<Vec<u8>>,
    pub to_client: Vec<Vec<u8>>,
}

/// The proxy. Connections are handled one after another, each with the
/// next rule given to [`Proxy::next`] (or `Pass`).
pub struct Proxy {
    port: u16,
    rules: Sender<Rule>,
    recordings: Receiver<Recording>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:server_port`.
    pub fn start(server_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (rules, rule_queue) = channel::<Rule>();
        let (recorded, recordings) = channel();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let rule = rule_queue.try_recv().unwrap_or(Rule::Pass);
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    return;
                };
                let recording = relay(client, server, rule);
                if recorded.send(recording).is_err() {
                    return;
                }
            }
        });
        Self {
            port,
            rules,
            recordings,
        }
    }

    /// The port clients should dial.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The rule for the next connection.
    pub fn next(&self, rule: Rule) {
        self.rules.send(rule).unwrap();
    }

    /// What the last connection carried, once it is over.
    pub fn recording(&self) -> Recording {
        self.recordings
            .recv_timeout(Duration::from_secs(60))
            .expect("the proxied connection ended")
    }
}

/// Relays one connection in both directions under `rule`; returns once both
/// directions are finished.
fn relay(client: TcpStream, server: TcpStream, rule: Rule) -> Recording {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut = Arc::new(Mutex::new(vec![
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
    ]));
    let up = {
        let (from, to, rule, cut) = (
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            rule.clone(),
            Arc::clone(&cut),
        );
        thread::spawn(move || pump(from, to, Way::ToServer, &rule, &cut))
    };
    let down = {
        let cut = Arc::clone(&cut);
        thread::spawn(move || pump(server, client, Way::ToClient, &rule, &cut))
    };
    Recording {
        to_server: up.join().unwrap(),
        to_client: down.join().unwrap(),
    }
}

/// Closes both connections at once.
fn cut_all(cut: &Mutex<Vec<TcpStream>>) {
    for stream in cut.lock().unwrap().iter() {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Copies one direction, applying the rule. Returns the frames the sender
/// sent, as it sent them: every byte that arrived from it, whatever the rule
/// did with it (frames it sent after a cut are not known).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    way: Way,
    rule: &Rule,
    cut: &Mutex<Vec<TcpStream>>,
) -> Vec<Vec<u8>> {
    let mut received = Vec::new(); // bytes received, not yet in `recorded`
    let mut recorded = Vec::new(); // the sender's frames, as received
    let mut pending = Vec::new(); // bytes received, not yet forwarded as frames
    let mut frames = 0usize; // whole frames forwarded (or dropped) so far
    let mut seen = 0usize; // bytes received so far
    let mut held: Option<Vec<u8>> = None; // a frame held back for a swap
    let mut raw = false; // once set, forward raw
    let mut buf = [0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        let start = seen;
        seen += n;
        received.extend_from_slice(&chunk);
        collect_frames(&mut received, &mut recorded);
        // Byte rules work on the raw stream.
        match *rule {
            Rule::Flip {
                way: w,
                offset,
                mask,
            } if w == way && (start..seen).contains(&offset) => {
                chunk[offset - start] ^= mask;
            }
            Rule::Cut { way: w, offset } if w == way && offset < seen => {
                let keep = offset.saturating_sub(start);
                let _ = to.write_all(&chunk[..keep]);
                // Both ends see the cut at once, with nothing in flight
                // behind the kept bytes.
                cut_all(cut);
                return recorded;
            }
            _ => {}
        }
        if matches!(rule, Rule::Flip { .. } | Rule::Cut { .. } | Rule::Pass) || raw {
            if to.write_all(&chunk).is_err() {
                break;
            }
            continue;
        }
        // Frame rules: forward whole frames as they complete.
        pending.extend_from_slice(&chunk);
        let mut whole = Vec::new();
        collect_frames(&mut pending, &mut whole);
        let mut out = Vec::new();
        let first = frames;
        frames += whole.len();
        for (i, frame) in whole.into_iter().enumerate() {
            let index = first + i;
            if raw {
                out.extend_from_slice(&frame);
                continue;
            }
            match rule {
                Rule::Drop { way: w, frame: f } if *w == way && *f == index => {}
                Rule::Duplicate { way: w, frame: f } if *w == way && *f == index => {
                    out.extend_from_slice(&frame);
                    out.extend_from_slice(&frame);
                }
                Rule::Swap { way: w, frame: f } if *w == way && *f == index => held = Some(frame),
                Rule::Swap { way: w, frame: f } if *w == way && *f + 1 == index => {
                    out.extend_from_slice(&frame);
                    out.extend(held.take().unwrap_or_default());
                }
                Rule::Inject {
                    way: w,
                    frame: f,
                    bytes,
                } if *w == way && *f == index => {
                    out.extend_from_slice(bytes);
                    out.extend_from_slice(&frame);
                }
                Rule::Length {
                    way: w,
                    frame: f,
                    length,
                } if *w == way && *f == index => {
                    let mut frame = frame;
                    frame[..4].copy_from_slice(&length.to_be_bytes());
                    out.extend_from_slice(&frame);
                    // What follows no longer lines up with frames: pass it raw.
                    raw = true;
                }
                _ => out.extend_from_slice(&frame),
            }
        }
        if raw {
            out.append(&mut pending);
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    if let Some(frame) = held.take() {
        let _ = to.write_all(&frame);
    }
    let _ = to.shutdown(Shutdown::Write);
    recorded
}

/// Moves every whole frame at the front of `pending` into `frames`.
fn collect_frames(pending: &mut Vec<u8>, frames: &mut Vec<Vec<u8>>) {
    loop {
        if pending.len() < 4 {
            return;
        }
        let length = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
        if length > 1 << 20 || pending.len() < 4 + length {
            return;
        }
        frames.push(pending.drain(..4 + length).collect());
    }
}
