//! `chat serve`'s listener. Each accepted connection is counted in by the
//! admission rules ([`admission`](super::admission): caps per source prefix
//! and in total, and who makes room when they are full), and runs its
//! handshake on a thread of its own, under two deadlines: its ClientHello
//! within half the handshake timeout (5 s), the whole handshake within it
//! (10 s). Its transient key comes from the rate-limited, fair
//! [`TransientPool`]. Once authenticated, it claims a conversation slot
//! ([`slots`](super::slots): one per key, verified before unverified) and
//! is handed to the program; if there is no slot for it, it is closed as
//! busy.
//!
//! What happens is told through a [`Log`]: failed handshakes and busy
//! refusals always, as before; admissions, drops and slot changes with
//! `verbose`, rate-limited ([`Limited`]).

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rand::RngExt;

use super::admission::{Dropped, Limits, Prefix, Stage, Table, Why};
use super::log::Limited;
pub use super::log::Log;
use super::slots::{DEFAULT_MAX, Evicted, Slot, Slots};
use super::transient::{self, TransientPool};
use super::{Connected, Deadlines, NetError, peer_has_left, respond_with};
use crate::crypto::PrivateKey;
use crate::protocol::{CloseReason, ProtocolError};
use crate::session::PeerIdentity;

/// How long an authenticated newcomer waits for a conversation that is
/// just ending (its peer may already be back) before it is told the
/// server is busy.
const BUSY_GRACE: Duration = Duration::from_millis(500);

/// Whether the program already trusts a peer's key (pinned in
/// known_peers.toml): such a peer may displace an unverified conversation.
pub type Verified = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// The program's one-time invites, as the server sees them.
pub trait InviteCheck: Send + Sync {
    /// Whether any are outstanding (then the server waits a moment for a
    /// proof after each handshake).
    fn pending(&self) -> bool;
    /// Whether `proof` proves one of them in the session with this
    /// transcript hash; a match uses it up.
    fn check(&self, proof: &[u8; 32], transcript_hash: &[u8; 32]) -> bool;
}

/// How the server behaves.
pub struct Options {
    /// Conversations held at once (at least 1).
    pub max_conversations: usize,
    /// Log admissions, drops and slot changes, not only failures.
    pub verbose: bool,
    /// Which peers count as verified when they arrive; none, if absent.
    pub verified: Option<Verified>,
    /// Most transient keys made per second (see [`transient`](super::transient)).
    pub transient_key_rate: f64,
    /// One-time invites to check proofs against; without them, a proof is
    /// answered as not accepted.
    pub invites: Option<Arc<dyn InviteCheck>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_conversations: DEFAULT_MAX,
            verbose: false,
            verified: None,
            transient_key_rate: transient::key_rate(),
            invites: None,
        }
    }
}

/// An authenticated connection that holds a conversation slot.
pub struct Incoming {
    /// The connection.
    pub connected: Connected,
    /// Where it came from.
    pub peer_address: SocketAddr,
    /// Its slot in the conversation table; dropping it frees the slot.
    pub slot: Slot,
    /// The conversation that gave way to this one (superseded or displaced),
    /// for a notice.
    pub evicted: Option<Evicted>,
    /// Whether it came through a relay circuit (`peer_address` is then the
    /// relay's).
    pub relayed: bool,
    /// Whether the peer proved a one-time invite (`Some(true)`), tried to
    /// and failed (`Some(false)`: wrong, used or expired), or did not try.
    pub invited: Option<bool>,
}

/// What the listener keeps of an unauthenticated connection.
struct Pending {
    /// For dropping it.
    stream: TcpStream,
    address: SocketAddr,
    /// Set (under the admission lock) when it was dropped for a newcomer.
    dropped: Arc<AtomicBool>,
}

struct Context {
    identity: Arc<PrivateKey>,
    nickname: String,
    admission: Mutex<Table<Pending>>,
    keys: TransientPool,
    slots: Slots,
    incoming: Sender<Incoming>,
    log: Limited,
    options: Options,
}

impl Context {
    fn admission(&self) -> MutexGuard<'_, Table<Pending>> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A line for `-v`.
    fn verbose(&self, line: impl FnOnce() -> String) {
        if self.options.verbose {
            self.log.line(line());
        }
    }
}

/// Starts accepting on `listener` in the background; authenticated
/// connections arrive on the returned channel, each with its slot.
pub fn serve(
    listener: TcpListener,
    identity: Arc<PrivateKey>,
    nickname: String,
    options: Options,
    log: Log,
) -> Receiver<Incoming> {
    serve_with(Some(listener), None, identity, nickname, options, log)
}

/// As [`serve`], with connections from `listener` (if any) and relay
/// circuits from `circuits` (if any). A circuit runs the same handshake as
/// a direct connection and is admitted under the same rules; its source is
/// the relay's address, so all the strangers who come through one relay
/// share that relay's prefix: they can crowd each other, but never take
/// more than one prefix's share from those who connect directly.
pub fn serve_with(
    listener: Option<TcpListener>,
    circuits: Option<Receiver<TcpStream>>,
    identity: Arc<PrivateKey>,
    nickname: String,
    options: Options,
    log: Log,
) -> Receiver<Incoming> {
    let (incoming, conversations) = channel();
    let context = Arc::new(Context {
        identity,
        nickname,
        admission: Mutex::new(Table::new(Limits::default())),
        keys: TransientPool::start_with(
            transient::READY,
            Duration::from_secs_f64(1.0 / options.transient_key_rate.clamp(0.1, 1e6)),
        ),
        slots: Slots::new(options.max_conversations),
        incoming,
        log: Limited::new(log),
        options,
    });
    if let Some(circuits) = circuits {
        let context = Arc::clone(&context);
        thread::Builder::new()
            .name("chat-relay-circuits".into())
            .spawn(move || {
                for stream in circuits {
                    let (Ok(address), Ok(kept)) = (stream.peer_addr(), stream.try_clone()) else {
                        continue;
                    };
                    admit(&context, stream, kept, address, true);
                }
            })
            .expect("spawn the relay circuit loop");
    }
    if let Some(listener) = listener {
        thread::Builder::new()
            .name("chat-listener".into())
            .spawn(move || accept_loop(&listener, &context))
            .expect("spawn the listener");
    }
    conversations
}

fn accept_loop(listener: &TcpListener, context: &Arc<Context>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, for instance: wait instead of spinning.
                context
                    .log
                    .always(format!("accepting a connection failed: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Ok(address) = stream.peer_addr() else {
            continue;
        };
        let kept = match stream.try_clone() {
            Ok(kept) => kept,
            Err(e) => {
                context
                    .log
                    .always(format!("cannot keep track of {address}: {e}"));
                continue;
            }
        };
        admit(context, stream, kept, address, false);
    }
}

/// Counts a new connection in (making room if need be) and starts its
/// handshake.
fn admit(
    context: &Arc<Context>,
    stream: TcpStream,
    kept: TcpStream,
    address: SocketAddr,
    relayed: bool,
) {
    // The deadlines count from here.
    let deadlines = Deadlines::from(Instant::now());
    let prefix = Prefix::of(address.ip());
    let dropped = Arc::new(AtomicBool::new(false));
    let pending = Pending {
        stream: kept,
        address,
        dropped: Arc::clone(&dropped),
    };
    let (id, victim, from_prefix, total) = {
        let mut table = context.admission();
        let admitted = table.admit(prefix, pending, |n| rand::rng().random_range(0..n));
        if let Some(victim) = &admitted.dropped {
            victim.handle.dropped.store(true, Ordering::SeqCst);
        }
        (
            admitted.id,
            admitted.dropped,
            table.count(prefix),
            table.total(),
        )
    };
    if let Some(victim) = victim {
        make_room(context, victim, address);
    }
    context.verbose(|| {
        format!("admitted {address} ({from_prefix} unauthenticated from {prefix}, {total} in all)")
    });
    let for_thread = Arc::clone(context);
    let spawned = thread::Builder::new()
        .name("chat-handshake".into())
        .spawn(move || {
            let connection = Connection {
                id,
                prefix,
                address,
                deadlines,
                relayed,
            };
            handle(stream, &connection, &dropped, &for_thread);
        });
    if let Err(e) = spawned {
        context.admission().remove(id);
        context
            .log
            .always(format!("cannot start a thread for {address}: {e}"));
    }
}

/// Ends a connection dropped to admit `newcomer`. One waiting for a key is
/// woken and refuses its peer as busy itself; the others are cut.
fn make_room(context: &Context, victim: Dropped<Pending>, newcomer: SocketAddr) {
    context.keys.cancel(victim.id);
    if victim.stage != Stage::WaitingForKey {
        let _ = victim.handle.stream.shutdown(Shutdown::Both);
    }
    context.verbose(|| {
        let why = match victim.why {
            Why::PrefixFull => format!(
                "the oldest unauthenticated connection from {}, which had {}",
                victim.prefix,
                context.admission().limits().per_prefix
            ),
            Why::TotalFull => format!(
                "{} unauthenticated connections in all; one from the fullest prefix, {}, made room",
                context.admission().limits().total,
                victim.prefix
            ),
        };
        format!(
            "dropped {} ({}) for {newcomer}: {why}",
            victim.handle.address, victim.stage
        )
    });
}

/// An unauthenticated connection, as its thread knows it.
struct Connection {
    id: u64,
    prefix: Prefix,
    address: SocketAddr,
    deadlines: Deadlines,
    relayed: bool,
}

/// One connection's handshake, then its claim to a slot.
fn handle(stream: TcpStream, connection: &Connection, dropped: &AtomicBool, context: &Context) {
    let Connection {
        id,
        prefix,
        address,
        deadlines,
        relayed,
    } = *connection;
    let mut left = false;
    let result = respond_with(
        stream,
        &mut rand::rng(),
        &context.identity,
        &context.nickname,
        deadlines,
        |stream| {
            if !context.admission().advance(id, Stage::WaitingForKey) {
                return None;
            }
            let Some(key) = context.keys.take(id, prefix, deadlines.handshake, dropped) else {
                // Logged before the refusal goes out, so that the log has it
                // by the time the peer knows. Out of the admission table
                // first (under its lock, where `dropped` is set), so that no
                // newcomer can drop it too and log that.
                let was_dropped = {
                    let mut table = context.admission();
                    table.remove(id);
                    dropped.load(Ordering::SeqCst)
                };
                if !was_dropped {
                    context.verbose(|| {
                        format!(
                            "refused {address}: busy (no transient key within the handshake deadline)"
                        )
                    });
                }
                return None;
            };
            // A key nobody has seen goes back to the pool if the connection
            // was dropped or its peer left while it waited.
            left = peer_has_left(stream);
            if left || !context.admission().advance(id, Stage::Handshaking) {
                context.keys.give_back(key, prefix);
                return None;
            }
            Some(key)
        },
    );
    context.admission().remove(id);
    if dropped.load(Ordering::SeqCst) {
        // Told and logged by whoever made room.
        return;
    }
    let mut connected = match result {
        Ok(connected) => {
            context.keys.completed(prefix);
            connected
        }
        Err(NetError::Protocol(ProtocolError::Refused(_))) => {
            if left {
                context.log.always(format!(
                    "handshake with {address} failed: the peer left before the server's reply"
                ));
            }
            return;
        }
        Err(e) => {
            context
                .log
                .always(format!("handshake with {address} failed: {e}"));
            return;
        }
    };
    let invited = match invite_proof(context, &mut connected) {
        Ok(invited) => invited,
        Err(e) => {
            context
                .log
                .always(format!("handshake with {address} failed: {e}"));
            return;
        }
    };
    claim(context, connected, address, relayed, invited);
}

/// Takes and checks a one-time invite proof, if the peer sends one first,
/// and answers it (section 17.3).
fn invite_proof(context: &Context, connected: &mut Connected) -> Result<Option<bool>, NetError> {
    let invites = context.options.invites.as_ref();
    let wait = match invites {
        Some(invites) if invites.pending() => super::invite::PROOF_WINDOW,
        _ => Duration::ZERO,
    };
    let Some(proof) = super::invite::take_proof(connected, wait)? else {
        return Ok(None);
    };
    let transcript = connected.established.transcript_hash;
    let accepted = invites.is_some_and(|invites| invites.check(&proof, &transcript));
    super::invite::answer(connected, accepted)?;
    Ok(Some(accepted))
}

/// Gives an authenticated connection a slot and hands it to the program,
/// or closes it as busy.
fn claim(
    context: &Context,
    connected: Connected,
    address: SocketAddr,
    relayed: bool,
    invited: Option<bool>,
) {
    let peer = &connected.established.peer;
    let fingerprint = peer.key.fingerprint();
    let verified =
        invited == Some(true) || context.options.verified.as_ref().is_some_and(|f| f(peer));
    // Until the program says how to close it, a conversation that must give
    // way is cut.
    let cut = connected.stream.try_clone().ok();
    let closer = Box::new(move |_| {
        if let Some(stream) = cut {
            let _ = stream.shutdown(Shutdown::Both);
        }
    });
    match context
        .slots
        .claim(fingerprint, verified, closer, BUSY_GRACE)
    {
        Ok((slot, evicted)) => {
            if let Some(evicted) = &evicted {
                context.verbose(|| {
                    format!(
                        "conversation {} gave way to {address}: {} (idle {} s)",
                        evicted.id,
                        match evicted.reason {
                            CloseReason::Superseded => "same key, newer session",
                            _ => "unverified and idle the longest, for a verified peer",
                        },
                        evicted.idle.as_secs()
                    )
                });
            }
            context.verbose(|| {
                format!(
                    "conversation {} with {address}{} ({} of {} held)",
                    slot.id(),
                    if verified { ", verified" } else { "" },
                    context.slots.list().len(),
                    context.slots.max()
                )
            });
            let _ = context.incoming.send(Incoming {
                connected,
                peer_address: address,
                slot,
                evicted,
                relayed,
                invited,
            });
        }
        Err(_) => {
            // Logged first: the close waits for the peer to hang up, and
            // the program may be over by then (serve --once).
            context.log.always(format!(
                "refused {address}: busy ({} conversation{} held, none can give way)",
                context.slots.max(),
                if context.slots.max() == 1 { "" } else { "s" }
            ));
            connected.close(CloseReason::Busy);
        }
    }
}
