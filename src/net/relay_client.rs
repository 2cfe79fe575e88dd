//! The client side of `chat relay` (`docs/PROTOCOL.md`, section 16): a
//! server's standing registration, which turns every pairing into an
//! incoming connection, and a joiner's one `connect`.
//!
//! Blocking std sockets, like the rest of the peer's network edge: the
//! relay itself is the only tokio code.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use rand::RngExt;

use super::log::Log;
use super::{NetError, dial};
use crate::address::Address;
use crate::wire::relay::{Answer, MAX_ANSWER, Request, Role, RoomId, Side};

/// How long a joiner waits for the relay's answer: the relay's lonely
/// timeout (30 s) and a margin.
pub const CONNECT_ANSWER_TIMEOUT: Duration = Duration::from_secs(40);

/// A server renews its registration this often, well within the relay's
/// registration lifetime (1 h), unless `CHAT_RELAY_RENEW` (seconds) says
/// otherwise.
pub const RENEW_EVERY: Duration = Duration::from_secs(50 * 60);

/// The first delay before registering again after a failure; it grows
/// ×1.5 up to [`BACKOFF_MAX`], with ±20 % jitter.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// The longest delay between two registration attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why the relay did not give us a circuit.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay could not be reached, or the connection failed.
    #[error("relay {relay}: {error}")]
    Net {
        /// The relay.
        relay: Address,
        /// What failed.
        error: NetError,
    },
    /// The relay answered something other than `ok`.
    #[error("relay {relay} answered `{}`: {}", answer.word(), explain(*answer, *role))]
    Answered {
        /// The relay.
        relay: Address,
        /// Its answer.
        answer: Answer,
        /// What we asked to be.
        role: Role,
    },
    /// The relay sent something that is not an answer.
    #[error("relay {0} answered something that is not a chat-relay/1 answer (is it a chat relay?)")]
    NotARelay(Address),
}

fn explain(answer: Answer, role: Role) -> &'static str {
    match (answer, role) {
        (Answer::Lonely, Role::Connect) => {
            "no server waits in this room (is the inviting `chat serve --relay` running? \
             an invite stops working when its server rotates the room with --new-room)"
        }
        (Answer::Lonely, Role::Serve) => "the registration reached its lifetime",
        (Answer::Busy, _) => "a per-source limit of the relay was reached; try again later",
        (Answer::Full, _) => "the relay is at its limit; try again later",
        (Answer::Replaced, _) => "another server registered the same room (the same state folder?)",
        (Answer::Bad, _) => "it refused our request line",
        (Answer::Ok, _) => "paired",
    }
}

/// A fresh random side, drawn once per process and role.
pub fn random_side() -> Side {
    Side::from_bytes(rand::rng().random())
}

/// Reads the relay's answer, byte by byte so that nothing after it is
/// consumed, before `deadline`.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Answer>, NetError> {
    let mut line = Vec::with_capacity(MAX_ANSWER);
    let mut byte = [0u8; 1];
    while line.len() < MAX_ANSWER {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NetError::Timeout("waiting for the relay's answer"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut byte) {
            Ok(0) => return Err(NetError::Cut("before the relay answered")),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Ok(Answer::parse(&line));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NetError::from_read(e, "waiting for the relay's answer")),
        }
    }
    Ok(None)
}

/// Dials the relay and sends our line; the stream then waits for the answer.
fn request(relay: &Address, request: &Request) -> Result<TcpStream, RelayError> {
    let net = |error| RelayError::Net {
        relay: relay.clone(),
        error,
    };
    let mut stream = dial(relay)
        .map_err(|error| match error {
            // The hint for a refused connection names the relay, not a peer.
            NetError::Connect {
                address,
                source,
                hint,
            } if source.kind() == std::io::ErrorKind::ConnectionRefused => NetError::Connect {
                address,
                source,
                hint: hint.replace("chat serve", "chat relay"),
            },
            other => other,
        })
        .map_err(net)?;
    stream
        .write_all(request.to_line().as_bytes())
        .map_err(|e| net(e.into()))?;
    Ok(stream)
}

/// Waits for the answer to `role`'s request on `stream`; `ok` gives the
/// circuit.
fn answered(
    relay: &Address,
    role: Role,
    mut stream: TcpStream,
    deadline: Instant,
) -> Result<TcpStream, RelayError> {
    match read_answer(&mut stream, deadline) {
        Ok(Some(Answer::Ok)) => {
            stream.set_read_timeout(None).map_err(|e| RelayError::Net {
                relay: relay.clone(),
                error: e.into(),
            })?;
            Ok(stream)
        }
        Ok(Some(answer)) => Err(RelayError::Answered {
            relay: relay.clone(),
            answer,
            role,
        }),
        Ok(None) => Err(RelayError::NotARelay(relay.clone())),
        Err(error) => Err(RelayError::Net {
            relay: relay.clone(),
            error,
        }),
    }
}

/// A joiner's circuit: `connect` in `room`, and the stream once the relay
/// has paired it (nothing of the partner's has been read from it).
pub fn join(
    relay: &Address,
    room: RoomId,
    side: Side,
    cancel: Option<&AtomicBool>,
) -> Result<TcpStream, RelayError> {
    let stream = request(
        relay,
        &Request {
            role: Role::Connect,
            room,
            side,
        },
    )?;
    // A joiner that no longer needs the relay (another path won) stops
    // waiting within a tenth of a second.
    let deadline = Instant::now() + CONNECT_ANSWER_TIMEOUT;
    let waiting = stream;
    loop {
        let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
        if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            let _ = waiting.shutdown(std::net::Shutdown::Both);
            return Err(RelayError::Net {
                relay: relay.clone(),
                error: NetError::Cut("(another path was faster)"),
            });
        }
        let mut peek = [0u8; 1];
        waiting
            .set_read_timeout(Some(
                step.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .map_err(|e| RelayError::Net {
                relay: relay.clone(),
                error: e.into(),
            })?;
        match waiting.peek(&mut peek) {
            Ok(_) => return answered(relay, Role::Connect, waiting, deadline),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return answered(relay, Role::Connect, waiting, deadline);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(RelayError::Net {
                    relay: relay.clone(),
                    error: NetError::from_read(e, "waiting for the relay's answer"),
                });
            }
        }
    }
}

/// The renewal interval in force.
fn renew_every() -> Duration {
    std::env::var("CHAT_RELAY_RENEW")
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.5 && *s <= 86_400.0)
        .map_or(RENEW_EVERY, Duration::from_secs_f64)
}

/// The delays between registration attempts after failures: ×1.5 from
/// [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`], each with ±20 % jitter.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The next delay, jittered by `jitter` in [-1, 1].
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.next;
        self.next = (self.next.mul_f64(1.5)).min(BACKOFF_MAX);
        base.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
    }

    /// After a success: start from the first delay again.
    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// A server's standing registration: stops when dropped.
pub struct Registration {
    stop: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Registers `room` with `relay` and keeps it registered: every pairing is
/// sent on `circuits` (with the relay's address, for the log), and the
/// server registers again at once; a registration is renewed before the
/// relay's lifetime ends; a relay that cannot be reached, restarted, or
/// answered `busy`, `full` or `replaced` is tried again after a growing,
/// jittered delay. What happens is told through `log`, once per change.
pub fn register(
    relay: Address,
    room: RoomId,
    circuits: Sender<TcpStream>,
    log: Log,
) -> Registration {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let say = move |line: String| {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        (log)(line);
    };
    thread::Builder::new()
        .name("chat-relay-registration".into())
        .spawn(move || {
            let side = random_side();
            let mut backoff = Backoff::default();
            // Whether the last attempt failed (to say "registered" again).
            let mut failing: Option<String> = None;
            let mut announced = false;
            while !stopped.load(Ordering::SeqCst) {
                let line = Request {
                    role: Role::Serve,
                    room,
                    side,
                };
                let outcome = request(&relay, &line).and_then(|stream| {
                    if failing.take().is_some() || !announced {
                        announced = true;
                        say(format!("registered with relay {relay}"));
                    }
                    wait_for_partner(&relay, stream, &stopped)
                });
                match outcome {
                    Ok(Some(circuit)) => {
                        backoff.reset();
                        if circuits.send(circuit).is_err() {
                            return;
                        }
                    }
                    // Renewal time, or the relay's lifetime: again at once.
                    Ok(None) => backoff.reset(),
                    Err(RelayError::Answered {
                        answer: Answer::Lonely,
                        ..
                    }) => backoff.reset(),
                    Err(error) => {
                        let delay = backoff.next_delay(rand::rng().random_range(-1.0..=1.0));
                        let text = error.to_string();
                        if failing.as_deref() != Some(text.as_str()) {
                            say(format!(
                                "{text}; registering again in {:.0} s (and later, with growing delays)",
                                delay.as_secs_f64().max(1.0)
                            ));
                        }
                        failing = Some(text);
                        let until = Instant::now() + delay;
                        while Instant::now() < until && !stopped.load(Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                        }
                    }
                }
            }
        })
        .expect("spawn the relay registration");
    Registration { stop }
}

/// Waits on a registration until it is paired (`Some`), until it is time
/// to renew it (`None`), or until it fails.
fn wait_for_partner(
    relay: &Address,
    stream: TcpStream,
    stop: &AtomicBool,
) -> Result<Option<TcpStream>, RelayError> {
    let renew_at = Instant::now() + renew_every();
    let net = |error| RelayError::Net {
        relay: relay.clone(),
        error,
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let now = Instant::now();
        if now >= renew_at {
            // Registering again with the same side makes the relay close
            // this one without an answer (16.5).
            return Ok(None);
        }
        let step = (renew_at - now).min(Duration::from_millis(250));
        stream
            .set_read_timeout(Some(step))
            .map_err(|e| net(e.into()))?;
        let mut peek = [0u8; 1];
        match stream.peek(&mut peek) {
            Ok(0) => return Err(net(NetError::Cut("(the relay closed our registration)"))),
            Ok(_) => {
                return answered(
                    relay,
                    Role::Serve,
                    stream,
                    Instant::now() + Duration::from_secs(5),
                )
                .map(Some);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(net(NetError::from_read(e, "while registered"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_delay(0.0), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(1500));
        let high = backoff.next_delay(1.0);
        assert_eq!(high, Duration::from_millis(2250).mul_f64(1.2));
        for _ in 0..20 {
            backoff.next_delay(0.0);
        }
        assert_eq!(backoff.next_delay(0.0), BACKOFF_MAX);
        assert_eq!(backoff.next_delay(-1.0), BACKOFF_MAX.mul_f64(0.8));
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), BACKOFF_FIRST);
    }
}
