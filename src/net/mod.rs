//! The network edge: TCP connections, deadlines, and driving the pure
//! handshake and session over a socket.

pub mod admission;
pub mod conversation;
pub mod dial;
pub mod invite;
pub mod listen;
pub mod log;
pub mod relay;
pub mod relay_client;
pub mod server;
pub mod slots;
pub mod transient;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::CryptoRng;

use crate::address::Address;
use crate::crypto::PrivateKey;
use crate::handshake::{Established, Initiator, Responder, ResponderVerified, refusal};
use crate::protocol::{
    CloseReason, MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME, ProtocolError, RefusalReason,
};
use crate::session::PeerIdentity;
use crate::wire::FrameDecoder;

/// How long a handshake may take, from the first byte to the last, unless
/// `CHAT_HANDSHAKE_TIMEOUT` (seconds) says otherwise.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an established peer may send no complete record before it is
/// presumed gone, unless `CHAT_PEER_TIMEOUT` (seconds) says otherwise.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// A timeout from the environment (seconds, fractions allowed, at least
/// 0.1), or `default`. For slow links, and for tests that must not wait
/// a minute to see a dead peer noticed.
fn timeout_from_env(variable: &str, default: Duration) -> Duration {
    std::env::var(variable)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.1 && *secs <= 86_400.0)
        .map_or(default, Duration::from_secs_f64)
}

/// The handshake deadline in force.
pub fn handshake_timeout() -> Duration {
    static VALUE: OnceLock<Duration> = OnceLock::new();
    *VALUE.get_or_init(|| timeout_from_env("CHAT_HANDSHAKE_TIMEOUT", HANDSHAKE_TIMEOUT))
}

/// The dead-peer timeout in force.
pub fn peer_timeout() -> Duration {
    static VALUE: OnceLock<Duration> = OnceLock::new();
    *VALUE.get_or_init(|| timeout_from_env("CHAT_PEER_TIMEOUT", PEER_TIMEOUT))
}
/// How long to wait for a TCP connection to be accepted, unless
/// `CHAT_CONNECT_TIMEOUT` (seconds) says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect deadline in force.
pub fn connect_timeout() -> Duration {
    static VALUE: OnceLock<Duration> = OnceLock::new();
    *VALUE.get_or_init(|| timeout_from_env("CHAT_CONNECT_TIMEOUT", CONNECT_TIMEOUT))
}

/// How long a responder may take to send its first answer (the
/// ServerHello): a chat peer answers at once, so a server that says
/// nothing for this long is not one (within the handshake deadline, if
/// that is shorter). Two and a half seconds, so that `chat` says so within
/// three of being started.
pub const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_millis(2500);

/// Failures of the connection itself, split by cause.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {detail}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's words.
        detail: String,
    },
    /// Nothing accepted the connection.
    #[error("cannot connect to {address}: {source}{hint}")]
    Connect {
        /// Where.
        address: String,
        /// Why.
        source: io::Error,
        /// A hint for the common case.
        hint: String,
    },
    /// The peer did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// What answered is not a chat peer: it said nothing at first, or its
    /// first bytes were not a chat handshake.
    #[error("{address} did not answer like a chat peer: {detail}")]
    NotAChatPeer {
        /// Where we dialled.
        address: String,
        /// What it did instead.
        detail: String,
    },
    /// The connection ended where the protocol does not allow it.
    #[error("the connection was cut {0}")]
    Cut(&'static str),
    /// The peer broke the protocol or the data was tampered with.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Another socket error.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

impl NetError {
    fn from_read(error: io::Error, during: &'static str) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout(during),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => NetError::Cut(during),
            _ => NetError::Io(error),
        }
    }
}

/// Resolves and dials `address`, trying each resolved address in turn.
pub fn dial(address: &Address) -> Result<TcpStream, NetError> {
    let addresses: Vec<SocketAddr> = (address.host(), address.port())
        .to_socket_addrs()
        .map_err(|e| NetError::Resolve {
            host: address.host().to_string(),
            detail: e.to_string(),
        })?
        .collect();
    let mut last_error = None;
    let timeout = connect_timeout();
    for socket_address in &addresses {
        match TcpStream::connect_timeout(socket_address, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    let source = last_error.unwrap_or_else(|| io::Error::other("no addresses"));
    let hint = match source.kind() {
        io::ErrorKind::ConnectionRefused => " (is `chat serve` running there?)".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            " (no answer within {}; check the address, and any firewall on the way)",
            humantime::format_duration(timeout)
        ),
        _ => String::new(),
    };
    Err(NetError::Connect {
        address: address.to_string(),
        source,
        hint,
    })
}

/// Reads one whole frame before `deadline`. A connection that ends cleanly
/// between frames is [`NetError::Cut`].
pub fn read_frame<'d>(
    stream: &mut TcpStream,
    decoder: &'d mut FrameDecoder,
    deadline: Instant,
    during: &'static str,
) -> Result<&'d mut [u8], NetError> {
    fill_frame(stream, decoder, deadline, during)?;
    Ok(decoder.next_frame()?.expect("a frame is ready"))
}

/// Reads until `decoder` holds one whole frame, before `deadline`.
fn fill_frame(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
    deadline: Instant,
    during: &'static str,
) -> Result<(), NetError> {
    while !decoder.has_frame()? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NetError::Timeout(during));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(decoder.spare()) {
            Ok(0) => return Err(NetError::Cut(during)),
            Ok(n) => decoder.filled(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NetError::from_read(e, during)),
        }
    }
    Ok(())
}

/// What the initiator decides once the responder has proven its key.
pub enum Decision {
    /// Reveal ourselves and start the conversation.
    Continue,
    /// Abandon with this reason, revealing nothing.
    Abandon(CloseReason),
}

/// An established connection, ready for [`conversation::Conversation`].
pub struct Connected {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes already received after the handshake.
    pub decoder: FrameDecoder,
    /// The session and the proven peer.
    pub established: Established,
}

impl Connected {
    /// Ends the session at once with an authenticated CLOSE (for a peer we
    /// will not talk to, or cannot now), and hangs up as section 8.5 says:
    /// half-close, then read and discard until the peer closes too, for at
    /// most two seconds. Hanging up at once could make our TCP stack answer
    /// the peer's in-flight records with a reset, which destroys the CLOSE
    /// before the peer has read it.
    pub fn close(mut self, reason: CloseReason) {
        let mut close = Vec::new();
        if self
            .established
            .session
            .send()
            .close(reason, &mut close)
            .is_ok()
        {
            let _ = self.stream.write_all(&close);
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        linger(&mut self.stream, CLOSE_LINGER);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// How long a side that sent CLOSE waits for the peer to hang up.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until the peer closes its side or `limit` passes.
fn linger(stream: &mut TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Runs the initiator's handshake. `decide` sees the proven responder before
/// we reveal who we are; if it abandons, the peer is told and the result is
/// `None`. A responder holding our own key (a connection to ourselves) is
/// refused before `decide` sees it, so that no trust decision, and no pin,
/// is ever made about our own key. If the responder hung up while `decide`
/// ran (a person deciding takes time; a responder waits only so long), the
/// result is [`NetError::Cut`] and nothing about us is sent.
pub fn initiate(
    stream: TcpStream,
    rng: &mut impl CryptoRng,
    identity: &PrivateKey,
    nickname: &str,
    decide: impl FnOnce(&PeerIdentity) -> Decision,
) -> Result<Option<Connected>, NetError> {
    initiate_with(stream, rng, identity, nickname, decide, |_, _| Ok(()))
}

/// As [`initiate`], with `first` adding the first application records
/// (an INVITE_PROOF) to the flight that carries our identity, so that they
/// travel in the same write.
pub fn initiate_with(
    stream: TcpStream,
    rng: &mut impl CryptoRng,
    identity: &PrivateKey,
    nickname: &str,
    decide: impl FnOnce(&PeerIdentity) -> Decision,
    first: impl FnOnce(&mut Established, &mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Result<Option<Connected>, NetError> {
    initiate_traced(stream, rng, identity, nickname, &mut |_| {}, decide, first)
}

/// As [`initiate_with`], telling `trace` each step in words a learner can
/// follow (`-v`): what was sent, what was received and what was checked.
/// Never key material: public keys appear as their fingerprints.
pub fn initiate_traced(
    mut stream: TcpStream,
    rng: &mut impl CryptoRng,
    identity: &PrivateKey,
    nickname: &str,
    trace: &mut dyn FnMut(String),
    decide: impl FnOnce(&PeerIdentity) -> Decision,
    first: impl FnOnce(&mut Established, &mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Result<Option<Connected>, NetError> {
    let deadline = Instant::now() + handshake_timeout();
    let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
    let during = "during the handshake";
    let (state, m1) = Initiator::start(rng);
    stream.write_all(&m1)?;
    trace(
        "sent ClientHello (m1): the magic \"chat\", protocol version 2 and 32 fresh random \
         bytes (our nonce)"
            .into(),
    );
    let first_answer = (Instant::now() + FIRST_ANSWER_TIMEOUT).min(deadline);
    let m2 = read_first_answer(&mut stream, &mut decoder, first_answer)?;
    let (state, m3) = state
        .read_server_hello(rng, &m2)
        .map_err(|e| not_a_chat_peer(e.into(), &stream, &m2))?;
    trace(
        "received ServerHello (m2): version 2, the peer's nonce, and a transient public key \
         made for this connection alone (checked: a canonical 2048-bit RSA key)"
            .into(),
    );
    stream.write_all(&m3)?;
    trace(
        "sent KeyTransport (m3): a fresh random 32-byte session secret, encrypted with RSA-OAEP \
         to that transient key; the peer destroys the transient key once it has read it, so a \
         recording of this conversation stays secret even if both identity keys leak later"
            .into(),
    );
    trace(
        "both sides now derive handshake keys (HKDF-SHA256) from the secret and a hash of \
         m1 to m3; everything from here on is encrypted (AES-256-GCM)"
            .into(),
    );
    let m4 = read_frame(&mut stream, &mut decoder, deadline, during)?;
    let state = state.read_responder_identity(m4)?;
    let m5 = read_frame(&mut stream, &mut decoder, deadline, during)?;
    let verified: ResponderVerified = state.read_responder_auth(m5)?;
    trace(format!(
        "received ResponderIdentity (m4), decrypted: the peer's identity key {} and the \
         nickname {:?}",
        verified.peer().key.fingerprint(),
        crate::sanitize::one_line(&verified.peer().nickname),
    ));
    trace(
        "received ResponderAuth (m5) and checked it: an RSA-PSS signature by that identity key \
         over the hash of everything so far, so the peer holds the key's private half and saw \
         the same messages we did"
            .into(),
    );
    let abandon = |mut stream: TcpStream, verified: ResponderVerified, reason| {
        let close = verified.abandon(reason);
        // Best effort: the peer learns why; we are leaving either way.
        let _ = stream.write_all(&close);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    };
    if verified.peer().key == *identity.public() {
        abandon(stream, verified, CloseReason::Untrusted);
        return Err(ProtocolError::BadPeerKey {
            which: "identity",
            problem: "it is our own key (a connection to ourselves)".into(),
        }
        .into());
    }
    trace(
        "checking the peer's key against known_peers.toml and your trust options, before \
         revealing who we are"
            .into(),
    );
    match decide(verified.peer()) {
        Decision::Abandon(reason) => {
            abandon(stream, verified, reason);
            trace(
                "not going on: sent an encrypted Close and hung up, without revealing our \
                 identity"
                    .into(),
            );
            Ok(None)
        }
        Decision::Continue => {
            if hung_up(&stream) {
                return Err(NetError::Cut("while the peer's key was being checked"));
            }
            let (mut established, mut m67) = verified.finish(rng, identity, nickname)?;
            first(&mut established, &mut m67)?;
            stream.write_all(&m67)?;
            trace(format!(
                "sent InitiatorIdentity (m6) and InitiatorAuth (m7), encrypted: our identity key \
                 {} and nickname {:?}, and our signature over the whole handshake",
                identity.public().fingerprint(),
                crate::sanitize::one_line(nickname),
            ));
            trace(
                "handshake complete: keys for messages derived from the secret and the hash of \
                 m1 to m7, one per direction; each record is numbered, so a dropped, replayed or \
                 reordered one ends the conversation"
                    .into(),
            );
            decoder.set_limit(MAX_RECORD_FRAME);
            stream.set_read_timeout(None)?;
            Ok(Some(Connected {
                stream,
                decoder,
                established,
            }))
        }
    }
}

/// A look at what waits on `stream`, without waiting: `Some(0)` if the
/// other end has closed it, `Some(n)` if bytes wait, `None` if nothing does.
fn peek_now(stream: &TcpStream) -> Option<usize> {
    let mut byte = [std::mem::MaybeUninit::new(0u8)];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, flags) {
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        // Reset, or otherwise broken: gone.
        Err(_) => Some(0),
    }
}

/// Whether the other end has closed or reset `stream`, without waiting:
/// a peer that left while it waited for a transient key gets none.
pub(crate) fn peer_has_left(stream: &TcpStream) -> bool {
    peek_now(stream) == Some(0)
}

/// Whether the responder has closed the connection (or sent something, which
/// it may not do before our identity): a look at the socket that does not wait.
fn hung_up(stream: &TcpStream) -> bool {
    peek_now(stream).is_some()
}

/// The responder's first frame (the ServerHello, or a Refusal), which must
/// come by `deadline`: silence, or bytes that are not a chat frame, are
/// [`NetError::NotAChatPeer`].
fn read_first_answer(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
    deadline: Instant,
) -> Result<Vec<u8>, NetError> {
    let during = "during the handshake";
    if let Err(e) = fill_frame(stream, decoder, deadline, during) {
        return Err(not_a_chat_peer(e, stream, decoder.pending()));
    }
    let frame = decoder.next_frame()?.expect("a frame is ready");
    Ok(frame.to_vec())
}

/// `error`, met while reading the responder's first answer, as what the
/// user should hear: a silence or a first answer that is not chat is
/// [`NetError::NotAChatPeer`], showing the first bytes (an SSH or HTTP
/// banner is recognisable); anything else is itself.
fn not_a_chat_peer(error: NetError, stream: &TcpStream, seen: &[u8]) -> NetError {
    let address = stream
        .peer_addr()
        .map_or_else(|_| "the peer".into(), |a| a.to_string());
    let detail = match error {
        NetError::Timeout(_) if seen.is_empty() => format!(
            "it accepted the connection but sent nothing for {:.1} s (a chat peer answers at once)",
            FIRST_ANSWER_TIMEOUT.as_secs_f64()
        ),
        NetError::Timeout(_) | NetError::Cut(_) if !seen.is_empty() => {
            format!("its first bytes were {}", first_bytes(seen))
        }
        NetError::Protocol(
            ProtocolError::FrameTooLarge { .. }
            | ProtocolError::Malformed { .. }
            | ProtocolError::NotChat,
        ) => format!("its first bytes were {}", first_bytes(seen)),
        other => return other,
    };
    NetError::NotAChatPeer { address, detail }
}

/// Up to 40 characters of what a server sent first, on one line and safe
/// to print, in quotes.
fn first_bytes(seen: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(&seen[..seen.len().min(4 * SHOWN)]);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut shown: String = crate::sanitize::one_line(text)
        .chars()
        .take(SHOWN)
        .collect();
    if crate::sanitize::one_line(text).chars().count() > SHOWN || seen.len() > 4 * SHOWN {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// The first bytes from the other end not decoding as a frame means it does
/// not speak this protocol at all.
fn first_frame_error(error: NetError) -> NetError {
    match error {
        NetError::Protocol(
            ProtocolError::FrameTooLarge { .. } | ProtocolError::Malformed { .. },
        ) => NetError::Protocol(ProtocolError::NotChat),
        other => other,
    }
}

/// When a responder's handshake must have come how far.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// The ClientHello must be complete by then.
    pub hello: Instant,
    /// The whole handshake must be.
    pub handshake: Instant,
}

impl Deadlines {
    /// From `start`: the handshake deadline in force ([`handshake_timeout`],
    /// 10 s) for the whole handshake, and half of it (5 s) for the
    /// ClientHello, so that a connection that says nothing goes soon.
    pub fn from(start: Instant) -> Self {
        let whole = handshake_timeout();
        Self {
            hello: start + whole / 2,
            handshake: start + whole,
        }
    }
}

/// Runs the responder's handshake on an accepted connection. A ClientHello of
/// another version is answered with a Refusal, and so is one that `admit`
/// turns away (busy). A transient key is taken from `transient` only once a
/// valid ClientHello has been admitted.
pub fn respond(
    stream: TcpStream,
    rng: &mut impl CryptoRng,
    identity: &PrivateKey,
    nickname: &str,
    admit: impl FnOnce() -> bool,
    transient: impl FnOnce() -> PrivateKey,
) -> Result<Connected, NetError> {
    respond_with(
        stream,
        rng,
        identity,
        nickname,
        Deadlines::from(Instant::now()),
        |_| admit().then(transient),
    )
}

/// As [`respond`], with the deadlines given, and `transient` called with
/// the connection once a valid ClientHello has arrived: `None` refuses the
/// initiator as busy.
pub fn respond_with(
    mut stream: TcpStream,
    rng: &mut impl CryptoRng,
    identity: &PrivateKey,
    nickname: &str,
    deadlines: Deadlines,
    transient: impl FnOnce(&TcpStream) -> Option<PrivateKey>,
) -> Result<Connected, NetError> {
    let deadline = deadlines.handshake;
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
    let during = "during the handshake";
    let m1 = read_frame(
        &mut stream,
        &mut decoder,
        deadlines.hello.min(deadline),
        during,
    )
    .map_err(first_frame_error)?;
    let refuse = |stream: &mut TcpStream, reason| {
        let _ = stream.write_all(&refusal(reason));
        let _ = stream.shutdown(std::net::Shutdown::Write);
    };
    let state = match Responder::read_client_hello(m1) {
        Ok(state) => state,
        Err(e @ ProtocolError::UnsupportedVersion { .. }) => {
            refuse(&mut stream, RefusalReason::UnsupportedVersion);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let Some(transient) = transient(&stream) else {
        refuse(&mut stream, RefusalReason::Busy);
        return Err(ProtocolError::Refused(RefusalReason::Busy).into());
    };
    let (state, m2) = state.reply(rng, transient)?;
    stream.write_all(&m2)?;
    let m3 = read_frame(&mut stream, &mut decoder, deadline, during)?;
    let (state, m45) = state.read_key_transport(rng, identity, nickname, m3)?;
    stream.write_all(&m45)?;
    let m6 = read_frame(&mut stream, &mut decoder, deadline, during)?;
    let state = state.read_initiator_identity(m6)?;
    let m7 = read_frame(&mut stream, &mut decoder, deadline, during)?;
    let established = state.read_initiator_auth(m7)?;
    decoder.set_limit(MAX_RECORD_FRAME);
    stream.set_read_timeout(None)?;
    Ok(Connected {
        stream,
        decoder,
        established,
    })
}
