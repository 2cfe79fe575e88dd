//! `chat serve`'s listener: handshakes run concurrently (a bounded number),
//! each with its own transient key; the first to complete while no
//! conversation is running gets the conversation, and everyone else is told
//! the server is busy.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::transient::TransientPool;
use super::{Connected, NetError, respond};
use crate::crypto::PrivateKey;
use crate::protocol::ProtocolError;
use crate::protocol::{CloseReason, RefusalReason};

/// Most handshakes (and refusals) in progress at once; more connections are
/// refused at once without reading anything.
pub const MAX_PENDING: usize = 64;

/// How long a new connection waits for a conversation that is ending before
/// it is told the server is busy.
const BUSY_GRACE: Duration = Duration::from_millis(500);

/// Most handshakes in progress from one IP address, so that one source
/// cannot fill [`MAX_PENDING`] and keep everyone else out.
pub const MAX_PENDING_PER_ADDRESS: usize = 8;

/// Something the listener wants the user to know.
pub type Log = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

/// An established connection that holds the conversation slot.
pub struct Incoming {
    /// The connection.
    pub connected: Connected,
    /// Where it came from.
    pub peer_address: SocketAddr,
    /// Frees the server for the next conversation when dropped.
    pub slot: Slot,
}

/// The right to hold the one conversation; released on drop. While it is
/// held, the transient key generators rest (see [`TransientPool::rest`]).
pub struct Slot(Arc<State>);

impl Drop for Slot {
    fn drop(&mut self) {
        // Before freeing the slot, so that the next holder's rest() wins.
        self.0.keys.resume();
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

struct State {
    busy: AtomicBool,
    pending: Mutex<Pending>,
    keys: TransientPool,
}

/// Connections whose handshake (or refusal) is in progress.
#[derive(Default)]
struct Pending {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl State {
    /// Whether the conversation slot is free, waiting up to `grace` for a
    /// conversation that is just ending (its peer may already be back).
    fn wait_until_free(&self, grace: Duration) -> bool {
        let deadline = std::time::Instant::now() + grace;
        while self.busy.load(Ordering::SeqCst) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Counts a new connection from `ip` in, if the limits allow.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PendingGuard> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = pending.by_address.get(&ip).copied().unwrap_or(0);
        if pending.total >= MAX_PENDING || from_ip >= MAX_PENDING_PER_ADDRESS {
            return None;
        }
        pending.total += 1;
        pending.by_address.insert(ip, from_ip + 1);
        Some(PendingGuard(Arc::clone(self), ip))
    }
}

/// Counts a connection out when its thread ends.
struct PendingGuard(Arc<State>, IpAddr);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.total -= 1;
        if let Some(count) = pending.by_address.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                pending.by_address.remove(&self.1);
            }
        }
    }
}

/// Everything a handshake needs.
struct Context {
    identity: Arc<PrivateKey>,
    nickname: String,
    state: Arc<State>,
    incoming: Sender<Incoming>,
    log: Log,
}

/// Starts accepting on `listener` in the background; established
/// conversations arrive on the returned channel, one at a time.
pub fn serve(
    listener: TcpListener,
    identity: Arc<PrivateKey>,
    nickname: String,
    log: Log,
) -> Receiver<Incoming> {
    let (incoming, conversations) = channel();
    let context = Arc::new(Context {
        identity,
        nickname,
        state: Arc::new(State {
            busy: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
            keys: TransientPool::start(4),
        }),
        incoming,
        log,
    });
    thread::Builder::new()
        .name("chat-listener".into())
        .spawn(move || accept_loop(&listener, &context))
        .expect("spawn the listener");
    conversations
}

fn accept_loop(listener: &TcpListener, context: &Arc<Context>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, for instance: wait instead of spinning.
                log(context, format!("accepting a connection failed: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(guard) = stream
            .peer_addr()
            .ok()
            .and_then(|peer| context.state.admit(peer.ip()))
        else {
            // Too many at once: no thread, no reading, just a refusal.
            let _ = io::Write::write_all(
                &mut &stream,
                &crate::handshake::refusal(RefusalReason::Busy),
            );
            continue;
        };
        let for_thread = Arc::clone(context);
        let spawned = thread::Builder::new()
            .name("chat-handshake".into())
            .spawn(move || {
                let _guard = guard;
                handle(stream, &for_thread);
            });
        if let Err(e) = spawned {
            log(
                context,
                format!("cannot start a thread for a connection: {e}"),
            );
        }
    }
}

fn handle(stream: TcpStream, context: &Context) {
    let peer_address = match stream.peer_addr() {
        Ok(address) => address,
        Err(_) => return,
    };
    let mut rng = rand::rng();
    let connected = match respond(
        stream,
        &mut rng,
        &context.identity,
        &context.nickname,
        || {
            let free = context.state.wait_until_free(BUSY_GRACE);
            if !free {
                // Before the refusal goes out: the server may be gone soon after.
                log(
                    context,
                    format!("refused {peer_address}: busy in a conversation"),
                );
            }
            free
        },
        || context.state.keys.take(),
    ) {
        Ok(connected) => connected,
        Err(NetError::Protocol(ProtocolError::Refused(_))) => return,
        Err(e) => {
            log(
                context,
                format!("handshake with {peer_address} failed: {e}"),
            );
            return;
        }
    };
    if context
        .state
        .busy
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Another handshake finished first.
        connected.close(CloseReason::Busy);
        log(
            context,
            format!("refused {peer_address}: busy in a conversation"),
        );
        return;
    }
    context.state.keys.rest();
    let slot = Slot(Arc::clone(&context.state));
    let _ = context.incoming.send(Incoming {
        connected,
        peer_address,
        slot,
    });
}

fn log(context: &Context, line: String) {
    if let Ok(mut log) = context.log.lock() {
        log(line);
    }
}
