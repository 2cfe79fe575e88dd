//! Reaching a server that an invite names: its direct addresses first, the
//! relay later, the first stream ready wins (RFC 8305 style).
//!
//! Direct attempts start [`STAGGER`] apart; the relay attempt starts
//! [`RELAY_DELAY`] after the first one (at once when there is no direct
//! address). A direct stream is ready when TCP has connected; a relayed one
//! when the relay has answered `ok`. The first ready stream is returned;
//! every other attempt is cancelled, and a stream that becomes ready later
//! is closed before a byte of the chat protocol is sent on it, so that
//! exactly one handshake runs.

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

use super::relay_client::{self, RelayError};
use super::{NetError, connect_timeout, dial};
use crate::address::Address;
use crate::wire::relay::RoomId;

/// The delay between two direct attempts.
pub const STAGGER: Duration = Duration::from_millis(250);

/// How long after the first direct attempt the relay is tried.
pub const RELAY_DELAY: Duration = Duration::from_secs(2);

/// How a stream reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// A direct TCP connection to this address.
    Direct(Address),
    /// A circuit through this relay.
    Relay(Address),
}

impl fmt::Display for Path {
    /// As shown to the user: `direct (ADDR)` or `via relay HOST:PORT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Direct(address) => write!(f, "direct ({address})"),
            Path::Relay(relay) => write!(f, "via relay {relay}"),
        }
    }
}

/// Where to look for the server.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its direct addresses, in order of preference.
    pub direct: Vec<Address>,
    /// Its relay and room, unless the relay is not to be used.
    pub relay: Option<(Address, RoomId)>,
}

/// Why no path worked: every attempt's failure, in the order they started.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct RaceError(pub Vec<(Path, RaceFailure)>);

/// One attempt's failure.
#[derive(Debug, thiserror::Error)]
pub enum RaceFailure {
    /// A direct connection failed.
    #[error(transparent)]
    Direct(NetError),
    /// The relay gave no circuit.
    #[error(transparent)]
    Relay(RelayError),
}

fn describe(failures: &[(Path, RaceFailure)]) -> String {
    if failures.is_empty() {
        return "the invite gives no way to reach its server (no direct address, and the relay \
                is not to be used)"
            .into();
    }
    // The relay's answer says most; then the direct attempts.
    let mut parts: Vec<String> = failures
        .iter()
        .filter(|(path, _)| matches!(path, Path::Relay(_)))
        .map(|(_, failure)| failure.to_string())
        .collect();
    parts.extend(
        failures
            .iter()
            .filter(|(path, _)| matches!(path, Path::Direct(_)))
            .map(|(_, failure)| failure.to_string()),
    );
    parts.join("; and ")
}

/// A direct connection, unless `cancel` is set by the time it connects.
fn direct(address: &Address, cancel: &AtomicBool) -> Result<TcpStream, NetError> {
    let resolved: Vec<SocketAddr> = (address.host(), address.port())
        .to_socket_addrs()
        .map_err(|e| NetError::Resolve {
            host: address.host().to_string(),
            detail: e.to_string(),
        })?
        .collect();
    if resolved.is_empty() || cancel.load(Ordering::SeqCst) {
        return dial(address);
    }
    let mut last = None;
    for socket_address in resolved {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        match TcpStream::connect_timeout(&socket_address, connect_timeout()) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(NetError::Connect {
        address: address.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("cancelled")),
        hint: String::new(),
    })
}

/// Sleeps until `until` (or until `early` says so), or returns `false` at
/// once if `cancel` is set.
fn wait_until(until: Instant, cancel: &AtomicBool, early: impl Fn() -> bool) -> bool {
    loop {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= until || early() {
            return true;
        }
        thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// Races the route's paths; see the module documentation.
pub fn race(route: &Route) -> Result<(TcpStream, Path), RaceError> {
    let start = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let (results, outcomes) = channel::<(Path, Result<TcpStream, RaceFailure>)>();
    // Direct attempts that failed: when all have, the relay need not wait.
    let failed = Arc::new(AtomicUsize::new(0));
    let mut attempts = 0;
    for (i, address) in route.direct.iter().enumerate() {
        let at = start + STAGGER * i as u32;
        let (cancel, results, address) = (Arc::clone(&cancel), results.clone(), address.clone());
        let failed = Arc::clone(&failed);
        attempts += 1;
        thread::spawn(move || {
            if !wait_until(at, &cancel, || false) {
                return;
            }
            let result = direct(&address, &cancel).map_err(RaceFailure::Direct);
            if result.is_err() {
                failed.fetch_add(1, Ordering::SeqCst);
            }
            // A late winner: the receiver is gone or ignores it, and the
            // stream closes here, before any ClientHello.
            let _ = results.send((Path::Direct(address), result));
        });
    }
    if let Some((relay, room)) = &route.relay {
        let at = if route.direct.is_empty() {
            start
        } else {
            start + RELAY_DELAY
        };
        let (cancel, results, relay, room) =
            (Arc::clone(&cancel), results.clone(), relay.clone(), *room);
        let (failed, directs) = (Arc::clone(&failed), route.direct.len());
        attempts += 1;
        thread::spawn(move || {
            if !wait_until(at, &cancel, || failed.load(Ordering::SeqCst) >= directs) {
                return;
            }
            let side = relay_client::random_side();
            let result =
                relay_client::join(&relay, room, side, Some(&cancel)).map_err(RaceFailure::Relay);
            let _ = results.send((Path::Relay(relay), result));
        });
    }
    drop(results);
    let mut failures = Vec::new();
    for _ in 0..attempts {
        let Ok((path, result)) = outcomes.recv() else {
            break;
        };
        match result {
            Ok(stream) => {
                cancel.store(true, Ordering::SeqCst);
                return Ok((stream, path));
            }
            Err(failure) => failures.push((path, failure)),
        }
    }
    cancel.store(true, Ordering::SeqCst);
    Err(RaceError(failures))
}
