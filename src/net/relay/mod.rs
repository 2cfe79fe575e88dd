//! `chat relay`: a blind relay for peers that cannot reach each other
//! directly (`docs/PROTOCOL.md`, "Relay").
//!
//! A client sends one line naming its role (`serve` or `connect`), a room
//! and a side; the relay pairs a `connect` with the room's waiting `serve`,
//! answers `ok` to both and from then on copies bytes both ways without
//! looking at them. It keeps nothing on disk, holds no keys, never dials
//! out, and never logs an address or a room.
//!
//! Layout: [`limits`] (the limits and per-source counts) and [`pairing`]
//! (rooms and waiting connections) are pure rules; [`circuit`] copies;
//! [`summary`] counts; this file runs the tasks: one per connection, which
//! reads the line, waits, and, for the connection that waited, runs the
//! circuit once a partner hands over its socket.

pub mod circuit;
pub mod limits;
pub mod pairing;
pub mod summary;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until, timeout};

pub use limits::{Limits, Source};
use pairing::{Admission, Circuit, ConnId, Displaced, Registration, Registry};
use summary::{Counters, Quiet};

use crate::wire::relay::{Answer, MAX_LINE, Request, Role, Scan, scan};

/// How long the relay tries to deliver an answer line.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// After an answer other than `ok`, how long the relay keeps reading (and
/// discarding) what the client still sends before it closes, so that the
/// close is a FIN and not a reset that could destroy the answer in flight.
const LINGER: Duration = Duration::from_secs(2);

/// The most bytes discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// How often per-source state that no longer matters is forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// TCP keep-alive on every connection: a peer that vanished without a FIN
/// (a suspended laptop, a NAT that forgot the mapping) is noticed within
/// about two minutes instead of holding its registration.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// How the relay runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The limits.
    pub limits: Limits,
    /// How often to log the summary line (zero: only when stopping).
    pub summary_every: Duration,
    /// Worker threads (at least 1).
    pub threads: usize,
}

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The address cannot be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The runtime or the signal handlers could not start.
    #[error("cannot start the relay: {0}")]
    Start(io::Error),
}

/// Where the relay's lines go (standard error, in the binary).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs the relay until SIGINT or SIGTERM, then logs a last summary.
pub fn run(config: Config, log: Log) -> Result<(), RelayError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.max(1))
        .enable_all()
        .build()
        .map_err(RelayError::Start)?;
    let result = runtime.block_on(serve(config, log));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// What the tasks share.
struct Shared {
    limits: Limits,
    registry: Mutex<Registry<Handle>>,
    counters: Counters,
}

/// How a waiting connection's task learns its fate.
type Handle = oneshot::Sender<Signal>;

enum Signal {
    /// A partner arrived: its socket, the circuit to release at the end,
    /// and the partner's role.
    Pair(TcpStream, Circuit, Role),
    /// A newer `serve` took this registration's place.
    Displaced(Displaced),
    /// The relay held too many unpaired connections, and this was the oldest.
    Evicted,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry<Handle>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `answer` (not `ok`) and closes, lingering briefly.
    async fn answer(&self, mut stream: TcpStream, answer: Answer) {
        self.counters.answered(answer);
        if timeout(ANSWER_TIMEOUT, stream.write_all(answer.line()))
            .await
            .is_ok_and(|written| written.is_ok())
        {
            let _ = SockRef::from(&stream).shutdown(Shutdown::Write);
            let _ = timeout(LINGER, discard(&stream, LINGER_BYTES)).await;
        }
    }

    /// Acts on what a waiting connection was told.
    async fn signalled(&self, stream: TcpStream, signal: Signal) {
        match signal {
            Signal::Pair(partner, circuit, role) => {
                self.circuit(stream, partner, role, circuit).await;
            }
            Signal::Displaced(Displaced::Replaced) => self.answer(stream, Answer::Replaced).await,
            Signal::Displaced(Displaced::Renewed) => self.counters.quiet(Quiet::Renewed),
            Signal::Evicted => {
                self.counters.evicted();
                self.answer(stream, Answer::Full).await;
            }
        }
    }

    /// Answers `ok` to both and copies until the circuit ends.
    async fn circuit(
        &self,
        mut waiting: TcpStream,
        mut arriving: TcpStream,
        arriving_role: Role,
        circuit: Circuit,
    ) {
        let _release = CircuitGuard(self, circuit);
        self.counters.answered(Answer::Ok);
        // The `connect` side first: it speaks first (ClientHello).
        let (first, second) = match arriving_role {
            Role::Connect => (&mut arriving, &mut waiting),
            Role::Serve => (&mut waiting, &mut arriving),
        };
        let ok = timeout(ANSWER_TIMEOUT, async {
            first.write_all(Answer::Ok.line()).await?;
            second.write_all(Answer::Ok.line()).await
        })
        .await;
        let end = if ok.is_ok_and(|written| written.is_ok()) {
            circuit::run(
                &waiting,
                &arriving,
                self.limits.idle_timeout,
                &self.counters.bytes,
            )
            .await
        } else {
            circuit::End::Failed
        };
        self.counters.ended(end);
    }
}

/// Releases a circuit's place in the registry, however its task ends.
struct CircuitGuard<'a>(&'a Shared, Circuit);

impl Drop for CircuitGuard<'_> {
    fn drop(&mut self) {
        self.0.registry().close_circuit(self.1);
    }
}

/// Takes an unpaired connection out of the registry if its task ends
/// without having done so (a panic), so that it is not counted for ever.
struct Enrolled<'a>(&'a Shared, ConnId);

impl Enrolled<'_> {
    /// Leaves the registry; false if the connection was already taken out
    /// (paired, displaced or evicted), in which case its signal is waiting.
    fn leave(&self) -> bool {
        self.0.registry().leave(self.1)
    }
}

impl Drop for Enrolled<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

async fn serve(config: Config, log: Log) -> Result<(), RelayError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RelayError::Listen {
            address: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| RelayError::Listen {
        address: config.listen,
        source,
    })?;
    log(&format!("listening on {local}"));
    let limits = &config.limits;
    log(&format!(
        "limits: {} new connections per source and minute; {} unpaired per source, {} in total; \
         {} circuits per source, {} in total; line {}, lonely {}, registration {}, idle {}",
        limits.new_per_minute,
        limits.unpaired_per_source,
        limits.unpaired,
        limits.circuits_per_source,
        limits.circuits,
        humantime::format_duration(limits.line_timeout),
        humantime::format_duration(limits.lonely_timeout),
        humantime::format_duration(limits.registration_lifetime),
        humantime::format_duration(limits.idle_timeout),
    ));
    if let Some(note) = raise_descriptor_limit(limits) {
        log(&note);
    }
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RelayError::Start)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RelayError::Start)?;
    let shared = Arc::new(Shared {
        registry: Mutex::new(Registry::new(limits)),
        limits: config.limits.clone(),
        counters: Counters::default(),
    });
    let summary_every = config.summary_every;
    let mut last_summary = Instant::now();
    let mut next_summary = (!summary_every.is_zero()).then(|| last_summary + summary_every);
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let summary = |shared: &Shared, since: Instant| {
        let gauges = shared.registry().gauges();
        summary::line(since.elapsed(), gauges, &shared.counters.take())
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(&shared, stream, peer),
                Err(error) => {
                    shared.counters.accept_error();
                    if is_resource_exhaustion(&error) {
                        // Out of descriptors or memory: let circuits end
                        // rather than spin on the listener.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            () = sleep_until(next_sweep) => {
                shared.registry().sweep(std::time::Instant::now());
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            () = sleep_until(next_summary.unwrap_or(next_sweep)), if next_summary.is_some() => {
                log(&summary(&shared, last_summary));
                last_summary = Instant::now();
                next_summary = Some(last_summary + summary_every);
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    log(&summary(&shared, last_summary));
    log("stopped");
    Ok(())
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Raises the soft limit on open files to the hard limit (each circuit
/// holds two descriptors); returns a note if even that is below what the
/// limits allow.
fn raise_descriptor_limit(limits: &Limits) -> Option<String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let needed = (limits.unpaired + 2 * limits.circuits + 64) as u64;
    (limit.rlim_cur < needed).then(|| {
        format!(
            "note: at most {} open files, fewer than the {needed} the limits allow; \
             raise it (systemd: LimitNOFILE=) or lower --max-unpaired and --max-circuits",
            limit.rlim_cur
        )
    })
}

/// Keep-alive and no Nagle on every connection: answers and the small
/// handshake records that follow `ok` go out at once.
fn configure(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Why a connection produced no request.
enum LineFault {
    /// It closed (or failed) first.
    Closed,
    /// Its line is refused.
    Bad,
}

/// Reads the request line: up to [`MAX_LINE`] bytes, judged as they come.
async fn read_line(stream: &TcpStream) -> Result<Request, LineFault> {
    let mut buf = [0u8; MAX_LINE];
    let mut len = 0;
    loop {
        stream.readable().await.map_err(|_| LineFault::Closed)?;
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => return Err(LineFault::Closed),
            Ok(n) => {
                len += n;
                match scan(&buf[..len]) {
                    Scan::Incomplete => {}
                    Scan::Line(request) => return Ok(request),
                    Scan::Bad(_) => return Err(LineFault::Bad),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(LineFault::Closed),
        }
    }
}

/// Reads and drops up to `limit` bytes, until end of stream.
async fn discard(stream: &TcpStream, limit: usize) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < limit {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// What woke a waiting connection other than a signal.
enum Woken {
    /// Its time ran out.
    Lonely,
    /// It closed.
    Left,
    /// It sent bytes before `ok`.
    Early,
}

/// What a connection does after its line was registered.
enum Next {
    /// Wait for a partner.
    Wait(TcpStream),
    /// Answer and close.
    Answer(TcpStream, Answer),
    /// Evicted already: act on the signal.
    Gone(TcpStream),
}

/// Counts a new connection in (in the accept loop, so that "oldest" means
/// "accepted first"), and starts its task.
fn accept(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    configure(&stream);
    let (handle, fate) = oneshot::channel();
    let admission =
        shared
            .registry()
            .admit(Source::of(peer.ip()), std::time::Instant::now(), handle);
    let shared = Arc::clone(shared);
    match admission {
        Admission::Refused(_) => {
            // A source over its limits gets its answer at once and no
            // task: written if it fits (it always does on a new socket),
            // then closed without lingering.
            shared.counters.answered(Answer::Busy);
            let _ = stream.try_write(Answer::Busy.line());
        }
        Admission::Admitted { id, evicted } => {
            if let Some(evicted) = evicted {
                let _ = evicted.send(Signal::Evicted);
            }
            tokio::spawn(connection(shared, stream, id, fate));
        }
    }
}

/// One admitted connection, from its line to the end of its circuit or
/// its answer.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    id: ConnId,
    mut fate: oneshot::Receiver<Signal>,
) {
    let enrolled = Enrolled(&shared, id);

    // The line.
    let line = tokio::select! {
        line = timeout(shared.limits.line_timeout, read_line(&stream)) => line,
        signal = &mut fate => match signal {
            Ok(signal) => return shared.signalled(stream, signal).await,
            Err(_) => return, // The relay is stopping.
        },
    };
    let request = match line {
        Ok(Ok(request)) => request,
        fault => {
            if !enrolled.leave() {
                // Evicted at the same moment: that is what it is told.
                if let Ok(signal) = fate.try_recv() {
                    shared.signalled(stream, signal).await;
                }
                return;
            }
            return match fault {
                Ok(Err(LineFault::Closed)) => shared.counters.quiet(Quiet::Left),
                _ => shared.answer(stream, Answer::Bad).await,
            };
        }
    };

    // Pairing. A handle is only ever used with the registry locked, so
    // that a task that finds itself gone from the registry knows its
    // signal has already been sent.
    let next = {
        let mut registry = shared.registry();
        match registry.register(id, &request) {
            Registration::Paired { partner, circuit } => {
                match partner.send(Signal::Pair(stream, circuit, request.role)) {
                    Ok(()) => return,
                    Err(Signal::Pair(stream, circuit, _)) => {
                        // The partner's task is gone without leaving (it
                        // panicked): nobody to talk to.
                        registry.close_circuit(circuit);
                        Next::Answer(stream, Answer::Lonely)
                    }
                    Err(_) => unreachable!("the signal sent was Pair"),
                }
            }
            Registration::Waiting { displaced } => {
                if let Some((older, how)) = displaced {
                    let _ = older.send(Signal::Displaced(how));
                }
                Next::Wait(stream)
            }
            Registration::Refused(answer) => Next::Answer(stream, answer),
            Registration::Gone => Next::Gone(stream),
        }
    };
    let stream = match next {
        Next::Wait(stream) => stream,
        Next::Answer(stream, answer) => return shared.answer(stream, answer).await,
        Next::Gone(stream) => {
            if let Ok(signal) = fate.try_recv() {
                shared.signalled(stream, signal).await;
            }
            return;
        }
    };

    // Waiting.
    let deadline = Instant::now()
        + match request.role {
            Role::Serve => shared.limits.registration_lifetime,
            Role::Connect => shared.limits.lonely_timeout,
        };
    let woken = loop {
        tokio::select! {
            signal = &mut fate => match signal {
                Ok(signal) => return shared.signalled(stream, signal).await,
                Err(_) => return, // The relay is stopping.
            },
            () = sleep_until(deadline) => break Woken::Lonely,
            readable = stream.readable() => {
                if readable.is_err() {
                    break Woken::Left;
                }
                let mut byte = [0u8; 1];
                match stream.try_read(&mut byte) {
                    Ok(0) => break Woken::Left,
                    Ok(_) => break Woken::Early,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break Woken::Left,
                }
            }
        }
    };
    if !enrolled.leave() {
        // Paired (or displaced, or evicted) at the same moment: that wins.
        if let Ok(signal) = fate.try_recv() {
            shared.signalled(stream, signal).await;
        }
        return;
    }
    match woken {
        Woken::Lonely => shared.answer(stream, Answer::Lonely).await,
        Woken::Early => shared.answer(stream, Answer::Bad).await,
        Woken::Left => shared.counters.quiet(Quiet::Left),
    }
}
