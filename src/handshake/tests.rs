//! The handshake with fixed randomness: both roles complete, and every
//! byte of every flight is protected.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use super::*;
use crate::crypto::test_keys;
use crate::protocol::MAX_HANDSHAKE_FRAME;
use crate::session::Event;
use crate::wire::FrameDecoder;
use crate::wire::handshake::Refusal;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Splits a flight into exactly `n` frames, or fails as a peer would.
fn frames(flight: &[u8], n: usize) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
    decoder.push(flight);
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        out.push(frame.to_vec());
    }
    if out.len() != n || decoder.is_mid_frame() {
        return Err(ProtocolError::Malformed {
            what: "flight",
            problem: "not the expected frames",
        });
    }
    Ok(out)
}

/// Every state of an honest handshake, and the flights it produced.
struct Honest {
    flights: [Vec<u8>; 5],
    initiator_sent_hello: InitiatorExpectServerHello,
    responder_sent_hello: ResponderExpectKeyTransport,
    initiator_sent_transport: InitiatorExpectResponderIdentity,
    responder_sent_auth: ResponderExpectInitiatorIdentity,
    identity_i: PrivateKey,
    identity_r: PrivateKey,
}

fn honest() -> Honest {
    let identity_i = test_keys::initiator();
    let identity_r = test_keys::responder();
    let (initiator_sent_hello, m1) = Initiator::start(&mut rng(1));
    let (responder_sent_hello, m2) = Responder::read_client_hello(&m1)
        .unwrap()
        .reply(&mut rng(2), test_keys::transient())
        .unwrap();
    let (initiator_sent_transport, m3) = initiator_sent_hello
        .clone()
        .read_server_hello(&mut rng(3), &m2)
        .unwrap();
    let (responder_sent_auth, m45) = responder_sent_hello
        .clone()
        .read_key_transport(&mut rng(4), &identity_r, "bob", &m3)
        .unwrap();
    let mut h = Honest {
        flights: [m1, m2, m3, m45, Vec::new()],
        initiator_sent_hello,
        responder_sent_hello,
        initiator_sent_transport,
        responder_sent_auth,
        identity_i,
        identity_r,
    };
    let (_, m67) = h.run_from_m45(h.flights[3].clone()).unwrap();
    h.flights[4] = m67;
    h
}

impl Honest {
    fn run_from_m1(&self, m1: Vec<u8>) -> Result<(Established, Established), ProtocolError> {
        let [m1] = <[Vec<u8>; 1]>::try_from(frames(&m1, 1)?).unwrap();
        let (r, m2) =
            Responder::read_client_hello(&m1)?.reply(&mut rng(2), test_keys::transient())?;
        self.run_from_m2_with(r, m2)
    }

    fn run_from_m2_with(
        &self,
        responder: ResponderExpectKeyTransport,
        m2: Vec<u8>,
    ) -> Result<(Established, Established), ProtocolError> {
        let [m2] = <[Vec<u8>; 1]>::try_from(frames(&m2, 1)?).unwrap();
        let (i, m3) = self
            .initiator_sent_hello
            .clone()
            .read_server_hello(&mut rng(3), &m2)?;
        self.run_from_m3_with(i, responder, m3)
    }

    fn run_from_m3_with(
        &self,
        initiator: InitiatorExpectResponderIdentity,
        responder: ResponderExpectKeyTransport,
        m3: Vec<u8>,
    ) -> Result<(Established, Established), ProtocolError> {
        let [m3] = <[Vec<u8>; 1]>::try_from(frames(&m3, 1)?).unwrap();
        let (r, m45) = responder.read_key_transport(&mut rng(4), &self.identity_r, "bob", &m3)?;
        let (i, r) = (initiator, r);
        let (established_i, m67) = Self::initiator_reads_m45(i, m45, &self.identity_i)?;
        let established_r = Self::responder_reads_m67(r, m67)?;
        Ok((established_i, established_r))
    }

    fn run_from_m45(&self, m45: Vec<u8>) -> Result<(Established, Vec<u8>), ProtocolError> {
        Self::initiator_reads_m45(self.initiator_sent_transport.clone(), m45, &self.identity_i)
    }

    fn run_from_m67(&self, m67: Vec<u8>) -> Result<Established, ProtocolError> {
        Self::responder_reads_m67(self.responder_sent_auth.clone(), m67)
    }

    fn initiator_reads_m45(
        initiator: InitiatorExpectResponderIdentity,
        m45: Vec<u8>,
        identity: &PrivateKey,
    ) -> Result<(Established, Vec<u8>), ProtocolError> {
        let [mut m4, mut m5] = <[Vec<u8>; 2]>::try_from(frames(&m45, 2)?).unwrap();
        let verified = initiator
            .read_responder_identity(&mut m4)?
            .read_responder_auth(&mut m5)?;
        verified.finish(&mut rng(5), identity, "ada")
    }

    fn responder_reads_m67(
        responder: ResponderExpectInitiatorIdentity,
        m67: Vec<u8>,
    ) -> Result<Established, ProtocolError> {
        let [mut m6, mut m7] = <[Vec<u8>; 2]>::try_from(frames(&m67, 2)?).unwrap();
        responder
            .read_initiator_identity(&mut m6)?
            .read_initiator_auth(&mut m7)
    }

    /// Runs the whole handshake with flight `k` replaced.
    fn run_with_flight(&self, k: usize, flight: Vec<u8>) -> Result<(), ProtocolError> {
        match k {
            0 => self.run_from_m1(flight).map(drop),
            1 => self
                .run_from_m2_with(self.responder_sent_hello.clone(), flight)
                .map(drop),
            2 => self
                .run_from_m3_with(
                    self.initiator_sent_transport.clone(),
                    self.responder_sent_hello.clone(),
                    flight,
                )
                .map(drop),
            3 => {
                let (_, m67) = self.run_from_m45(flight)?;
                self.run_from_m67(m67).map(drop)
            }
            4 => self.run_from_m67(flight).map(drop),
            _ => unreachable!(),
        }
    }
}

#[test]
fn both_roles_complete_and_agree() {
    let h = honest();
    let (mut i, mut r) = h.run_from_m1(h.flights[0].clone()).unwrap();
    assert_eq!(i.transcript_hash, r.transcript_hash);
    assert_eq!(i.peer.key, *h.identity_r.public());
    assert_eq!(i.peer.nickname, "bob");
    assert_eq!(r.peer.key, *h.identity_i.public());
    assert_eq!(r.peer.nickname, "ada");

    // The application keys work in both directions, and only in their own.
    let mut wire = Vec::new();
    i.session
        .send()
        .message(b"hello bob", 4, &mut wire)
        .unwrap();
    let mut decoder = FrameDecoder::new(crate::protocol::MAX_RECORD_FRAME);
    decoder.push(&wire);
    let mut text = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        match r.session.recv().open(frame).unwrap() {
            Event::MessageData { data, .. } | Event::MessageEnd { data, .. } => {
                text.extend_from_slice(data)
            }
            _ => {}
        }
    }
    assert_eq!(text, b"hello bob");
    let mut back = Vec::new();
    r.session.send().receipt(1, &mut back).unwrap();
    let mut decoder = FrameDecoder::new(crate::protocol::MAX_RECORD_FRAME);
    decoder.push(&back);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!(
        i.session.recv().open(frame).unwrap(),
        Event::Receipt { ids: 1..=1 }
    );
}

#[test]
fn the_same_randomness_gives_the_same_bytes() {
    let (a, b) = (honest(), honest());
    assert_eq!(a.flights, b.flights);
}

/// Flipping any one bit of any byte of any flight, in either direction,
/// makes the handshake fail.
#[test]
fn every_flipped_byte_of_every_flight_fails() {
    let h = honest();
    let mut cases = 0;
    for (k, flight) in h.flights.iter().enumerate() {
        for offset in 0..flight.len() {
            let mut tampered = flight.clone();
            tampered[offset] ^= 0x01 << (offset % 8);
            assert!(
                h.run_with_flight(k, tampered).is_err(),
                "flight {k}, byte {offset} flipped: the handshake still completed"
            );
            cases += 1;
        }
    }
    assert!(cases > 1500, "{cases} cases");
}

#[test]
fn truncated_or_extended_flights_fail() {
    let h = honest();
    for (k, flight) in h.flights.iter().enumerate() {
        for cut in [1, 5, flight.len() / 2, flight.len() - 1] {
            assert!(
                h.run_with_flight(k, flight[..cut].to_vec()).is_err(),
                "flight {k} cut at {cut}"
            );
        }
        let mut longer = flight.clone();
        longer.push(0);
        assert!(h.run_with_flight(k, longer).is_err(), "flight {k} extended");
    }
}

/// A version-1 peer gets a clear version error, both ways: our responder
/// refuses its ClientHello (and sends a Refusal naming version 2); our
/// initiator, refused by a version-1 responder, reports that the peer
/// speaks only version 1.
#[test]
fn a_version_1_peer_is_refused_with_both_versions() {
    let h = honest();
    let mut m1 = h.flights[0].clone();
    m1[9] = 1; // the version byte: 4 length, 1 type, 4 magic
    let err = Responder::read_client_hello(&m1).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion { theirs: 1, ours: 2 }
    );
    assert_eq!(
        refusal(RefusalReason::UnsupportedVersion),
        [0, 0, 0, 3, 0x0F, 1, 2],
        "Refusal: reason 1, we speak version 2"
    );
    // A version-1 responder's refusal names its version.
    let reply = frame::encode(
        FrameType::Refusal,
        &Refusal {
            reason: RefusalReason::UnsupportedVersion,
            version: 1,
        }
        .encode(),
    );
    let err = h
        .initiator_sent_hello
        .clone()
        .read_server_hello(&mut rng(3), &reply)
        .unwrap_err();
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion { theirs: 1, ours: 2 }
    );
    assert_eq!(
        err.to_string(),
        "the peer speaks only chat protocol version 1; this program speaks version 2"
    );
    let busy = refusal(RefusalReason::Busy);
    assert_eq!(
        h.initiator_sent_hello
            .clone()
            .read_server_hello(&mut rng(3), &busy)
            .unwrap_err(),
        ProtocolError::Refused(RefusalReason::Busy)
    );
}

/// A ResponderIdentity that names another key, correctly encrypted (the
/// attacker here knows the handshake keys), still fails: the signature is
/// checked against the announced key.
#[test]
fn a_swapped_identity_fails_the_signature_check() {
    let (initiator, m1) = Initiator::start(&mut rng(1));
    let (responder, m2) = Responder::read_client_hello(&m1)
        .unwrap()
        .reply(&mut rng(2), test_keys::transient())
        .unwrap();
    let (initiator, m3) = initiator.read_server_hello(&mut rng(3), &m2).unwrap();
    let identity_r = test_keys::responder();
    let (_, m45) = responder
        .read_key_transport(&mut rng(4), &identity_r, "bob", &m3)
        .unwrap();
    let frames = frames(&m45, 2).unwrap();
    // Re-seal m4 with the initiator's key in place of the responder's.
    let body = |f: &[u8]| frame::parse(f).unwrap().1.to_vec();
    let mut secret_transcript = Transcript::new();
    secret_transcript.add(FrameType::ClientHello, &body(&m1));
    secret_transcript.add(FrameType::ServerHello, &body(&m2));
    secret_transcript.add(FrameType::KeyTransport, &body(&m3));
    let th3 = secret_transcript.hash();
    let secret = key_transport::unwrap(
        &mut rng(9),
        &test_keys::transient(),
        KeyTransport::decode(&body(&m3)).unwrap().wrapped,
    )
    .unwrap();
    let keys = KeySchedule::new(&secret).handshake_keys(&th3);
    let mut sealer = Sealer::new(&keys.r2i);
    let other = test_keys::initiator();
    let mut forged = Vec::new();
    sealer
        .seal(
            FrameType::ResponderIdentity,
            &identity_body(&other, "bob").unwrap(),
            &mut forged,
        )
        .unwrap();
    let mut m5 = frames[1].clone();
    let initiator = initiator.read_responder_identity(&mut forged).unwrap();
    assert_eq!(
        initiator.read_responder_auth(&mut m5).err().unwrap(),
        ProtocolError::AuthenticationFailed
    );
}

#[test]
fn an_initiator_can_abandon_without_revealing_itself() {
    let h = honest();
    let [mut m4, mut m5] = <[Vec<u8>; 2]>::try_from(frames(&h.flights[3], 2).unwrap()).unwrap();
    let verified = h
        .initiator_sent_transport
        .clone()
        .read_responder_identity(&mut m4)
        .unwrap()
        .read_responder_auth(&mut m5)
        .unwrap();
    let mut close = verified.abandon(CloseReason::Untrusted);
    assert_eq!(
        h.responder_sent_auth
            .clone()
            .read_initiator_identity(&mut close)
            .err()
            .unwrap(),
        ProtocolError::Abandoned(CloseReason::Untrusted)
    );
}

#[test]
fn messages_out_of_order_are_refused() {
    let h = honest();
    // The responder's flight arriving where ServerHello is expected.
    assert!(
        h.initiator_sent_hello
            .clone()
            .read_server_hello(&mut rng(3), &frames(&h.flights[3], 2).unwrap()[0])
            .is_err()
    );
    // ClientHello twice.
    assert!(
        h.responder_sent_hello
            .clone()
            .read_key_transport(&mut rng(4), &h.identity_r, "bob", &h.flights[0])
            .is_err()
    );
    // m5 before m4 (sequence numbers and types both disagree).
    let [_, mut m5] = <[Vec<u8>; 2]>::try_from(frames(&h.flights[3], 2).unwrap()).unwrap();
    assert!(
        h.initiator_sent_transport
            .clone()
            .read_responder_identity(&mut m5)
            .is_err()
    );
}

#[test]
fn a_replayed_key_transport_fails_against_a_fresh_transient_key() {
    let h = honest();
    // The same ClientHello and KeyTransport, replayed to a responder that has
    // a new transient key, as a server would after the first session.
    let fresh = PrivateKey::generate(&mut rng(7), TRANSIENT_BITS).unwrap();
    let (responder, _) = Responder::read_client_hello(&h.flights[0])
        .unwrap()
        .reply(&mut rng(8), fresh)
        .unwrap();
    assert_eq!(
        responder
            .read_key_transport(&mut rng(4), &h.identity_r, "bob", &h.flights[2])
            .err()
            .unwrap(),
        ProtocolError::AuthenticationFailed
    );
}

/// Issue 12, item 4: garbage in place of KeyTransport costs the responder a
/// decryption, never a signature with its identity key.
#[test]
fn a_garbage_key_transport_costs_no_signature() {
    use crate::crypto::signature::counter::signatures_by;
    // A key no other test signs with, so that the count is this test's own.
    let identity = PrivateKey::generate(&mut rng(9), 2048).unwrap();
    let h = honest();
    let garbage = |byte: u8| {
        let mut m3 = h.flights[2].clone();
        // The wrapped secret: right length, wrong content.
        for b in &mut m3[7..] {
            *b ^= byte;
        }
        m3
    };
    // Flipped bits, and an honest KeyTransport wrapped to another key (a
    // replay to a server that has a fresh transient key).
    let fresh = PrivateKey::generate(&mut rng(10), TRANSIENT_BITS).unwrap();
    for (m3, transient) in [
        (garbage(0x01), test_keys::transient()),
        (garbage(0xA5), test_keys::transient()),
        (h.flights[2].clone(), fresh),
    ] {
        let (responder, _) = Responder::read_client_hello(&h.flights[0])
            .unwrap()
            .reply(&mut rng(2), transient)
            .unwrap();
        assert_eq!(
            responder
                .read_key_transport(&mut rng(4), &identity, "bob", &m3)
                .err()
                .unwrap(),
            ProtocolError::AuthenticationFailed
        );
    }
    assert_eq!(
        signatures_by(identity.public()),
        0,
        "garbage was signed for"
    );
    // The honest key transport is signed for, once.
    let (responder, _) = Responder::read_client_hello(&h.flights[0])
        .unwrap()
        .reply(&mut rng(2), test_keys::transient())
        .unwrap();
    responder
        .read_key_transport(&mut rng(4), &identity, "bob", &h.flights[2])
        .unwrap();
    assert_eq!(signatures_by(identity.public()), 1);
}

#[test]
fn short_or_inconsistent_frames_are_errors_not_panics() {
    let h = honest();
    for bad in [&[][..], &[0, 0, 0], &[0, 0, 0, 1], &[0, 0, 0, 9, 1, 2]] {
        assert!(Responder::read_client_hello(bad).is_err());
        assert!(
            h.initiator_sent_hello
                .clone()
                .read_server_hello(&mut rng(3), bad)
                .is_err()
        );
        assert!(
            h.responder_sent_hello
                .clone()
                .read_key_transport(&mut rng(4), &h.identity_r, "bob", bad)
                .is_err()
        );
    }
}

#[test]
fn the_identity_key_cannot_serve_as_transient_key() {
    let (_, m1) = Initiator::start(&mut rng(1));
    // Bob's identity and transient keys are the same 2048-bit key here.
    let key = test_keys::initiator();
    let (responder, _) = Responder::read_client_hello(&m1)
        .unwrap()
        .reply(&mut rng(2), key.clone())
        .unwrap();
    let h = honest();
    assert!(matches!(
        responder.read_key_transport(&mut rng(4), &key, "bob", &h.flights[2]),
        Err(ProtocolError::Misuse(_))
    ));
}

#[test]
fn a_connection_to_ourselves_is_refused() {
    // An attacker can reflect our own connection back to our own listener.
    let h = honest();
    let [mut m4, mut m5] = <[Vec<u8>; 2]>::try_from(frames(&h.flights[3], 2).unwrap()).unwrap();
    let verified = h
        .initiator_sent_transport
        .clone()
        .read_responder_identity(&mut m4)
        .unwrap()
        .read_responder_auth(&mut m5)
        .unwrap();
    // The initiator refuses a responder holding its own key...
    assert!(matches!(
        verified.finish(&mut rng(5), &h.identity_r, "bob"),
        Err(ProtocolError::BadPeerKey { .. })
    ));
    // ...and the responder refuses an initiator presenting the responder's
    // own key, even correctly sealed under the handshake key.
    let mut sealer = h.initiator_sent_transport.sealer.clone();
    let mut m6 = Vec::new();
    sealer
        .seal(
            FrameType::InitiatorIdentity,
            &identity_body(&h.identity_r, "bob").unwrap(),
            &mut m6,
        )
        .unwrap();
    assert!(matches!(
        h.responder_sent_auth
            .clone()
            .read_initiator_identity(&mut m6),
        Err(ProtocolError::BadPeerKey { .. })
    ));
}

#[test]
fn secrets_do_not_show_in_debug() {
    let secret = SessionSecret::new([0xAB; 32]);
    assert!(!format!("{secret:?}").contains("171"));
    assert!(!format!("{secret:?}").to_lowercase().contains("ab"));
}

/// The kinds of section 11 for the plaintext frames of the handshake. In
/// the first frame a side receives, any defect means the other end is not
/// a chat peer: a version-2 ClientHello that is not 37 bytes (5.1), a
/// ServerHello of another version (5.2), a frame of length 0. In m3, a
/// frame of another type, or of length 0, is malformed: never a protocol
/// violation, since nothing about it is authenticated.
#[test]
fn plaintext_frames_are_judged_by_their_place() {
    let h = honest();
    let empty = [0u8, 0, 0, 0];
    let mut longer = h.flights[0].clone();
    longer.push(0);
    longer[3] += 1;
    assert_eq!(
        Responder::read_client_hello(&longer).unwrap_err(),
        ProtocolError::NotChat
    );
    assert_eq!(
        Responder::read_client_hello(&empty).unwrap_err(),
        ProtocolError::NotChat
    );
    let mut other_version = h.flights[1].clone();
    other_version[5] = 1;
    for m2 in [&other_version[..], &empty] {
        assert_eq!(
            h.initiator_sent_hello
                .clone()
                .read_server_hello(&mut rng(3), m2)
                .unwrap_err(),
            ProtocolError::NotChat
        );
    }
    for m3 in [&h.flights[0][..], &empty] {
        let err = h
            .responder_sent_hello
            .clone()
            .read_key_transport(&mut rng(4), &h.identity_r, "bob", m3)
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::Malformed { what: "frame", .. }),
            "{err:?}"
        );
    }
}
