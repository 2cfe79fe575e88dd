//! The handshake as typestates (`docs/PROTOCOL.md`, "Handshake"). Each state
//! is a value consumed by its transition, which takes the peer's frame and
//! gives the next state and the frames to send; a state that could be used
//! wrongly does not exist. Pure: randomness comes in as `&mut impl CryptoRng`.
//!
//! ```text
//! Initiator                                      Responder
//! ClientHello         m1 ------------------>
//!                        <------------------ m2  ServerHello (transient key)
//! KeyTransport        m3 ------------------>
//!                        <------------------ m4  {ResponderIdentity}
//!                        <------------------ m5  {ResponderAuth}
//! {InitiatorIdentity} m6 ------------------>
//! {InitiatorAuth}     m7 ------------------>
//! [records]              <-----------------> [records]
//! ```
//! `{}`: encrypted with the handshake keys; `[]`: with the application keys.

use std::fmt;

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng};
use zeroize::Zeroize;

use crate::crypto::keys::{PrivateKey, PublicKey};
use crate::crypto::schedule::{
    DirectionalKeys, DirectionalSecrets, KeySchedule, SessionSecret, Transcript,
};
use crate::crypto::{Opener, Sealer, key_transport, rng::random_bytes, signature};
use crate::protocol::{
    CloseReason, NONCE_LEN, ProtocolError, RefusalReason, Role, TRANSIENT_BITS, VERSION, labels,
};
use crate::session::{PeerIdentity, Session};
use crate::wire::handshake::{
    Auth, ClientHello, Identity, KeyTransport, Refusal, ServerHello, is_valid_nickname,
};
use crate::wire::record::Close;
use crate::wire::{FrameType, frame};

/// Named intermediate values of one side's handshake, recorded only when a
/// test asks for them (to write and check `docs/vectors/`). Zeroized on drop.
#[derive(Default)]
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Trace {
    /// `(name, value)` in the order they were computed.
    pub(crate) values: Vec<(&'static str, Vec<u8>)>,
}

impl Trace {
    fn record(trace: &mut Option<Box<Trace>>, name: &'static str, value: &[u8]) {
        if let Some(trace) = trace {
            trace.values.push((name, value.to_vec()));
        }
    }

    /// The handshake keys (`prefix` is "hs", the only keys derived directly
    /// from the PRK in version 2).
    fn keys(trace: &mut Option<Box<Trace>>, prefix: &'static str, keys: &DirectionalKeys) {
        debug_assert_eq!(prefix, "hs");
        Self::record(trace, "hs_i2r_key", keys.i2r.key());
        Self::record(trace, "hs_i2r_iv", keys.i2r.iv());
        Self::record(trace, "hs_r2i_key", keys.r2i.key());
        Self::record(trace, "hs_r2i_iv", keys.r2i.iv());
    }

    /// The first application traffic secrets and the keys of epoch 0.
    fn secrets(trace: &mut Option<Box<Trace>>, secrets: &DirectionalSecrets) {
        if trace.is_none() {
            return;
        }
        for (names, secret) in [
            (
                ["app_i2r_0_secret", "app_i2r_0_key", "app_i2r_0_iv"],
                &secrets.i2r,
            ),
            (
                ["app_r2i_0_secret", "app_r2i_0_key", "app_r2i_0_iv"],
                &secrets.r2i,
            ),
        ] {
            let key = secret.traffic_key();
            Self::record(trace, names[0], secret.as_bytes());
            Self::record(trace, names[1], key.key());
            Self::record(trace, names[2], key.iv());
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        for (_, value) in &mut self.values {
            value.zeroize();
        }
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trace({} values, hidden)", self.values.len())
    }
}

/// The result of a completed handshake: the session and the proven peer.
pub struct Established {
    /// The record layer, keyed with the application keys.
    pub session: Session,
    /// Who the peer is: its key signed our transcript.
    pub peer: PeerIdentity,
    /// The final transcript hash, TH7; both sides hold the same value.
    pub transcript_hash: [u8; 32],
    /// The trace, if one was asked for (tests only).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) trace: Option<Box<Trace>>,
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// `Debug` for handshake states: their names only, never their keys.
macro_rules! opaque_debug {
    ($($state:ident),* $(,)?) => {$(
        impl fmt::Debug for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($state), "(secrets hidden)"))
            }
        }
    )*};
}

opaque_debug!(
    InitiatorExpectServerHello,
    InitiatorExpectResponderIdentity,
    InitiatorExpectResponderAuth,
    ResponderVerified,
    Responder,
    ResponderHelloReceived,
    ResponderExpectKeyTransport,
    ResponderExpectInitiatorIdentity,
    ResponderExpectInitiatorAuth,
);

/// A Refusal frame, sent by a responder in place of ServerHello.
pub fn refusal(reason: RefusalReason) -> Vec<u8> {
    let body = Refusal {
        reason,
        version: VERSION,
    }
    .encode();
    frame::encode(FrameType::Refusal, &body)
}

/// Seals a handshake message and adds its plaintext to the transcript.
fn seal_message(
    sealer: &mut Sealer,
    transcript: &mut Transcript,
    typ: FrameType,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    sealer.seal(typ, body, out)?;
    transcript.add(typ, body);
    Ok(())
}

/// Opens an encrypted handshake frame, returning its type byte and plaintext.
fn open_message<'f>(
    opener: &mut Opener,
    frame: &'f mut [u8],
) -> Result<(u8, &'f [u8]), ProtocolError> {
    let (typ, body) = opener.open_in_place(frame)?;
    Ok((typ, body))
}

/// The body of a plaintext frame of type `typ`; a frame of another type is
/// malformed (`docs/PROTOCOL.md`, section 11), as it is not authenticated.
fn expect_type<'f>(
    frame: &'f [u8],
    typ: FrameType,
    problem: &'static str,
) -> Result<&'f [u8], ProtocolError> {
    let (found, body) = frame::parse(frame)?;
    if found == typ as u8 {
        Ok(body)
    } else {
        Err(ProtocolError::Malformed {
            what: "frame",
            problem,
        })
    }
}

/// A peer that presents our own identity key: a connection to ourselves,
/// which an attacker can arrange by reflecting our own connection back.
fn own_key() -> ProtocolError {
    ProtocolError::BadPeerKey {
        which: "identity",
        problem: "it is our own key (a connection to ourselves)".into(),
    }
}

fn peer_key(which: &'static str, der: &[u8]) -> Result<PublicKey, ProtocolError> {
    PublicKey::from_spki_der(der).map_err(|e| ProtocolError::BadPeerKey {
        which,
        problem: e.to_string(),
    })
}

/// Whose Auth message is being read.
#[derive(Clone, Copy)]
enum Side {
    Responder,
    Initiator,
}

/// Opens ResponderAuth or InitiatorAuth, verifies the peer's signature over
/// the transcript so far (TH4 or TH6), and adds the message to it.
fn read_auth(
    opener: &mut Opener,
    transcript: &mut Transcript,
    trace: &mut Option<Box<Trace>>,
    frame: &mut [u8],
    side: Side,
    peer: &PublicKey,
) -> Result<(), ProtocolError> {
    let (expected, problem, context, th_name) = match side {
        Side::Responder => (
            FrameType::ResponderAuth,
            "expected ResponderAuth",
            labels::RESPONDER_SIGNATURE,
            "th4",
        ),
        Side::Initiator => (
            FrameType::InitiatorAuth,
            "expected InitiatorAuth",
            labels::INITIATOR_SIGNATURE,
            "th6",
        ),
    };
    let (typ, body) = open_message(opener, frame)?;
    if typ != expected as u8 {
        return Err(ProtocolError::PeerMisbehaved(problem));
    }
    let auth = Auth::decode(body)?;
    let th = transcript.hash();
    Trace::record(trace, th_name, &th);
    signature::verify(peer, context, &th, auth.signature)?;
    transcript.add(expected, body);
    Ok(())
}

/// Decodes an Identity body into the peer's key and nickname.
fn read_identity(body: &[u8]) -> Result<PeerIdentity, ProtocolError> {
    let identity = Identity::decode(body)?;
    Ok(PeerIdentity {
        key: peer_key("identity", identity.identity)?,
        nickname: identity.nickname.to_string(),
    })
}

/// The Identity body for our key and nickname.
fn identity_body(key: &PrivateKey, nickname: &str) -> Result<Vec<u8>, ProtocolError> {
    if !is_valid_nickname(nickname) {
        return Err(ProtocolError::Misuse(
            "nickname must be 1 to 64 bytes of UTF-8 without control characters",
        ));
    }
    Ok(Identity {
        identity: key.public().spki_der(),
        nickname,
    }
    .encode())
}

// ----------------------------------------------------------------- initiator

/// The initiator before it has said anything.
pub struct Initiator;

impl Initiator {
    /// Starts a handshake: the state waiting for ServerHello, and ClientHello to send.
    pub fn start(rng: &mut impl CryptoRng) -> (InitiatorExpectServerHello, Vec<u8>) {
        Self::start_traced(rng, false)
    }

    /// As [`start`](Self::start), recording intermediate values if `trace`
    /// (tests only: a trace holds secrets).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn start_traced(
        rng: &mut impl CryptoRng,
        trace: bool,
    ) -> (InitiatorExpectServerHello, Vec<u8>) {
        let mut trace = trace.then(Box::<Trace>::default);
        let nonce: [u8; NONCE_LEN] = random_bytes(rng);
        Trace::record(&mut trace, "nonce_i", &nonce);
        let body = ClientHello {
            version: VERSION,
            nonce,
        }
        .encode();
        let mut transcript = Transcript::new();
        transcript.add(FrameType::ClientHello, &body);
        let state = InitiatorExpectServerHello { transcript, trace };
        (state, frame::encode(FrameType::ClientHello, &body))
    }
}

/// The initiator waiting for ServerHello (or a Refusal).
#[cfg_attr(test, derive(Clone))]
pub struct InitiatorExpectServerHello {
    transcript: Transcript,
    trace: Option<Box<Trace>>,
}

impl InitiatorExpectServerHello {
    /// Reads ServerHello, wraps a fresh session secret to the transient key,
    /// and returns KeyTransport to send.
    pub fn read_server_hello(
        mut self,
        rng: &mut impl CryptoRng,
        frame: &[u8],
    ) -> Result<(InitiatorExpectResponderIdentity, Vec<u8>), ProtocolError> {
        let (typ, body) = frame::parse(frame).map_err(|_| ProtocolError::NotChat)?;
        match FrameType::from_byte(typ) {
            Some(FrameType::ServerHello) => {}
            Some(FrameType::Refusal) => {
                let refusal = Refusal::decode(body)?;
                return Err(match refusal.reason {
                    RefusalReason::UnsupportedVersion if refusal.version != VERSION => {
                        ProtocolError::UnsupportedVersion {
                            theirs: refusal.version,
                            ours: VERSION,
                        }
                    }
                    reason => ProtocolError::Refused(reason),
                });
            }
            _ => return Err(ProtocolError::NotChat),
        }
        let hello = ServerHello::decode(body)?;
        let transient = peer_key("transient", hello.transient)?;
        if transient.bits() != TRANSIENT_BITS {
            return Err(ProtocolError::BadPeerKey {
                which: "transient",
                problem: format!(
                    "{} bits; the transient key must have {TRANSIENT_BITS}",
                    transient.bits()
                ),
            });
        }
        Trace::record(&mut self.trace, "nonce_r", &hello.nonce);
        self.transcript.add(FrameType::ServerHello, body);

        let secret = SessionSecret::new(random_bytes(rng));
        let (wrapped, seed) = key_transport::wrap(rng, &transient, &secret);
        Trace::record(&mut self.trace, "session_secret", secret.as_bytes());
        Trace::record(&mut self.trace, "oaep_seed", &seed);
        let body = KeyTransport { wrapped: &wrapped }.encode();
        self.transcript.add(FrameType::KeyTransport, &body);
        let th3 = self.transcript.hash();
        Trace::record(&mut self.trace, "th3", &th3);
        let schedule = KeySchedule::new(&secret);
        Trace::record(&mut self.trace, "prk", schedule.prk());
        let keys = schedule.handshake_keys(&th3);
        Trace::keys(&mut self.trace, "hs", &keys);
        let state = InitiatorExpectResponderIdentity {
            transcript: self.transcript,
            schedule,
            opener: Opener::new(&keys.r2i),
            sealer: Sealer::new(&keys.i2r),
            transient,
            trace: self.trace,
        };
        Ok((state, frame::encode(FrameType::KeyTransport, &body)))
    }
}

/// The initiator waiting for the responder's encrypted identity.
#[cfg_attr(test, derive(Clone))]
pub struct InitiatorExpectResponderIdentity {
    transcript: Transcript,
    schedule: KeySchedule,
    opener: Opener,
    sealer: Sealer,
    transient: PublicKey,
    trace: Option<Box<Trace>>,
}

impl InitiatorExpectResponderIdentity {
    /// Reads ResponderIdentity.
    pub fn read_responder_identity(
        mut self,
        frame: &mut [u8],
    ) -> Result<InitiatorExpectResponderAuth, ProtocolError> {
        let (typ, body) = open_message(&mut self.opener, frame)?;
        if typ != FrameType::ResponderIdentity as u8 {
            return Err(ProtocolError::PeerMisbehaved("expected ResponderIdentity"));
        }
        let peer = read_identity(body)?;
        if peer.key == self.transient {
            return Err(ProtocolError::BadPeerKey {
                which: "transient",
                problem: "it is the responder's identity key, which would give no forward secrecy"
                    .into(),
            });
        }
        self.transcript.add(FrameType::ResponderIdentity, body);
        Ok(InitiatorExpectResponderAuth { inner: self, peer })
    }
}

/// The initiator waiting for the responder's transcript signature.
#[cfg_attr(test, derive(Clone))]
pub struct InitiatorExpectResponderAuth {
    inner: InitiatorExpectResponderIdentity,
    peer: PeerIdentity,
}

impl InitiatorExpectResponderAuth {
    /// Reads ResponderAuth and verifies the responder's signature over TH_4.
    pub fn read_responder_auth(
        mut self,
        frame: &mut [u8],
    ) -> Result<ResponderVerified, ProtocolError> {
        let s = &mut self.inner;
        let peer = &self.peer.key;
        read_auth(
            &mut s.opener,
            &mut s.transcript,
            &mut s.trace,
            frame,
            Side::Responder,
            peer,
        )?;
        Ok(ResponderVerified {
            inner: self.inner,
            peer: self.peer,
        })
    }
}

/// The initiator once the responder has proven its identity: the caller
/// decides whether to trust [`peer`](Self::peer) before revealing who it is.
#[cfg_attr(test, derive(Clone))]
pub struct ResponderVerified {
    inner: InitiatorExpectResponderIdentity,
    peer: PeerIdentity,
}

impl ResponderVerified {
    /// The responder, proven by its signature over the transcript.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// Sends our identity and signature: the session is established.
    /// Returns InitiatorIdentity and InitiatorAuth to send (one write).
    pub fn finish(
        self,
        rng: &mut impl CryptoRng,
        identity: &PrivateKey,
        nickname: &str,
    ) -> Result<(Established, Vec<u8>), ProtocolError> {
        if self.peer.key == *identity.public() {
            return Err(own_key());
        }
        let mut s = self.inner;
        let mut out = Vec::new();
        let body = identity_body(identity, nickname)?;
        seal_message(
            &mut s.sealer,
            &mut s.transcript,
            FrameType::InitiatorIdentity,
            &body,
            &mut out,
        )?;
        let th6 = s.transcript.hash();
        Trace::record(&mut s.trace, "th6", &th6);
        let (sig, salt) = signature::sign(rng, identity, labels::INITIATOR_SIGNATURE, &th6);
        Trace::record(&mut s.trace, "initiator_pss_salt", &salt);
        let body = Auth { signature: &sig }.encode();
        seal_message(
            &mut s.sealer,
            &mut s.transcript,
            FrameType::InitiatorAuth,
            &body,
            &mut out,
        )?;
        let th7 = s.transcript.hash();
        Trace::record(&mut s.trace, "th7", &th7);
        let secrets = s.schedule.application_secrets(&th7);
        Trace::secrets(&mut s.trace, &secrets);
        let established = Established {
            session: Session::new(Role::Initiator, secrets),
            peer: self.peer,
            transcript_hash: th7,
            trace: s.trace,
        };
        Ok((established, out))
    }

    /// Abandons the handshake without revealing who we are: a CLOSE under
    /// the handshake key, to send before closing the connection.
    pub fn abandon(self, reason: CloseReason) -> Vec<u8> {
        let mut s = self.inner;
        let mut out = Vec::new();
        s.sealer
            .seal(FrameType::Close, &Close { reason }.encode(), &mut out)
            .expect("first record of a fresh key");
        out
    }
}

// ----------------------------------------------------------------- responder

/// The responder before the initiator has said anything.
#[cfg_attr(test, derive(Clone))]
pub struct Responder {
    trace: Option<Box<Trace>>,
}

impl Responder {
    /// Reads ClientHello. Nothing costly happens and no transient key is
    /// spent until it has proven to be a well-formed hello of our version.
    /// A version we do not speak is [`ProtocolError::UnsupportedVersion`]:
    /// send [`refusal`]`(RefusalReason::UnsupportedVersion)` and close.
    pub fn read_client_hello(frame: &[u8]) -> Result<ResponderHelloReceived, ProtocolError> {
        Self { trace: None }.read(frame)
    }

    /// As [`read_client_hello`](Self::read_client_hello), recording
    /// intermediate values (tests only: a trace holds secrets).
    #[cfg(test)]
    pub(crate) fn read_client_hello_traced(
        frame: &[u8],
    ) -> Result<ResponderHelloReceived, ProtocolError> {
        Self {
            trace: Some(Box::default()),
        }
        .read(frame)
    }

    fn read(mut self, frame: &[u8]) -> Result<ResponderHelloReceived, ProtocolError> {
        let (typ, body) = frame::parse(frame).map_err(|_| ProtocolError::NotChat)?;
        if typ != FrameType::ClientHello as u8 {
            return Err(ProtocolError::NotChat);
        }
        let hello = ClientHello::decode(body)?;
        Trace::record(&mut self.trace, "nonce_i", &hello.nonce);
        let mut transcript = Transcript::new();
        transcript.add(FrameType::ClientHello, body);
        Ok(ResponderHelloReceived {
            transcript,
            trace: self.trace,
        })
    }
}

/// The responder holding a valid ClientHello, ready to answer.
#[cfg_attr(test, derive(Clone))]
pub struct ResponderHelloReceived {
    transcript: Transcript,
    trace: Option<Box<Trace>>,
}

impl ResponderHelloReceived {
    /// Answers with ServerHello, offering `transient`: a fresh 2048-bit key
    /// that is used for this handshake only, never stored, and dropped as
    /// soon as it has unwrapped the session secret.
    pub fn reply(
        mut self,
        rng: &mut impl CryptoRng,
        transient: PrivateKey,
    ) -> Result<(ResponderExpectKeyTransport, Vec<u8>), ProtocolError> {
        if transient.public().bits() != TRANSIENT_BITS {
            return Err(ProtocolError::Misuse(
                "the transient key must have 2048 bits",
            ));
        }
        let nonce: [u8; NONCE_LEN] = random_bytes(rng);
        Trace::record(&mut self.trace, "nonce_r", &nonce);
        let body = ServerHello {
            version: VERSION,
            nonce,
            transient: transient.public().spki_der(),
        }
        .encode();
        self.transcript.add(FrameType::ServerHello, &body);
        let state = ResponderExpectKeyTransport {
            transcript: self.transcript,
            transient,
            trace: self.trace,
        };
        Ok((state, frame::encode(FrameType::ServerHello, &body)))
    }
}

/// The responder waiting for the wrapped session secret.
#[cfg_attr(test, derive(Clone))]
pub struct ResponderExpectKeyTransport {
    transcript: Transcript,
    transient: PrivateKey,
    trace: Option<Box<Trace>>,
}

impl ResponderExpectKeyTransport {
    /// Reads KeyTransport, unwraps the secret (the transient key is dropped
    /// here, after its one use), and returns ResponderIdentity and
    /// ResponderAuth to send (one write).
    pub fn read_key_transport(
        mut self,
        rng: &mut impl CryptoRng,
        identity: &PrivateKey,
        nickname: &str,
        frame: &[u8],
    ) -> Result<(ResponderExpectInitiatorIdentity, Vec<u8>), ProtocolError> {
        let body = expect_type(frame, FrameType::KeyTransport, "expected KeyTransport")?;
        if identity.public() == self.transient.public() {
            return Err(ProtocolError::Misuse(
                "the transient key must not be the identity key",
            ));
        }
        let transport = KeyTransport::decode(body)?;
        let identity_body = identity_body(identity, nickname)?;
        // Unwrap first, and sign only once that succeeded: garbage costs a
        // decryption, never a signature (docs/PROTOCOL.md, 5.8). The
        // signature's randomness is drawn before the unwrap, as when the two
        // ran side by side, so docs/vectors/ stays as it is.
        let signing_seed: [u8; 32] = random_bytes(rng);
        let secret = key_transport::unwrap(rng, &self.transient, transport.wrapped);
        drop(self.transient);
        let secret = secret?;
        Trace::record(&mut self.trace, "session_secret", secret.as_bytes());
        self.transcript.add(FrameType::KeyTransport, body);
        let th3 = self.transcript.hash();
        Trace::record(&mut self.trace, "th3", &th3);
        let schedule = KeySchedule::new(&secret);
        Trace::record(&mut self.trace, "prk", schedule.prk());
        let keys = schedule.handshake_keys(&th3);
        Trace::keys(&mut self.trace, "hs", &keys);
        let mut sealer = Sealer::new(&keys.r2i);
        let mut out = Vec::new();

        seal_message(
            &mut sealer,
            &mut self.transcript,
            FrameType::ResponderIdentity,
            &identity_body,
            &mut out,
        )?;
        let th4 = self.transcript.hash();
        Trace::record(&mut self.trace, "th4", &th4);
        let (sig, salt) = signature::sign(
            &mut StdRng::from_seed(signing_seed),
            identity,
            labels::RESPONDER_SIGNATURE,
            &th4,
        );
        Trace::record(&mut self.trace, "responder_pss_salt", &salt);
        let body = Auth { signature: &sig }.encode();
        seal_message(
            &mut sealer,
            &mut self.transcript,
            FrameType::ResponderAuth,
            &body,
            &mut out,
        )?;
        let state = ResponderExpectInitiatorIdentity {
            transcript: self.transcript,
            schedule,
            opener: Opener::new(&keys.i2r),
            own: identity.public().fingerprint(),
            trace: self.trace,
        };
        Ok((state, out))
    }
}

/// The responder waiting for the initiator's encrypted identity.
#[cfg_attr(test, derive(Clone))]
pub struct ResponderExpectInitiatorIdentity {
    transcript: Transcript,
    schedule: KeySchedule,
    opener: Opener,
    own: crate::crypto::Fingerprint,
    trace: Option<Box<Trace>>,
}

impl ResponderExpectInitiatorIdentity {
    /// Reads InitiatorIdentity, or the CLOSE of an initiator that abandons
    /// the handshake ([`ProtocolError::Abandoned`]).
    pub fn read_initiator_identity(
        mut self,
        frame: &mut [u8],
    ) -> Result<ResponderExpectInitiatorAuth, ProtocolError> {
        let (typ, body) = open_message(&mut self.opener, frame)?;
        if typ == FrameType::Close as u8 {
            return Err(ProtocolError::Abandoned(Close::decode(body)?.reason));
        }
        if typ != FrameType::InitiatorIdentity as u8 {
            return Err(ProtocolError::PeerMisbehaved("expected InitiatorIdentity"));
        }
        let peer = read_identity(body)?;
        if peer.key.fingerprint() == self.own {
            return Err(own_key());
        }
        self.transcript.add(FrameType::InitiatorIdentity, body);
        Ok(ResponderExpectInitiatorAuth { inner: self, peer })
    }
}

/// The responder waiting for the initiator's transcript signature.
#[cfg_attr(test, derive(Clone))]
pub struct ResponderExpectInitiatorAuth {
    inner: ResponderExpectInitiatorIdentity,
    peer: PeerIdentity,
}

impl ResponderExpectInitiatorAuth {
    /// Reads InitiatorAuth and verifies the initiator's signature over TH_6:
    /// the session is established.
    pub fn read_initiator_auth(self, frame: &mut [u8]) -> Result<Established, ProtocolError> {
        let mut s = self.inner;
        let peer = &self.peer.key;
        read_auth(
            &mut s.opener,
            &mut s.transcript,
            &mut s.trace,
            frame,
            Side::Initiator,
            peer,
        )?;
        let th7 = s.transcript.hash();
        Trace::record(&mut s.trace, "th7", &th7);
        let secrets = s.schedule.application_secrets(&th7);
        Trace::secrets(&mut s.trace, &secrets);
        Ok(Established {
            session: Session::new(Role::Responder, secrets),
            peer: self.peer,
            transcript_hash: th7,
            trace: s.trace,
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
