//! Entry points for the fuzz targets in `fuzz/` and for the regression tests
//! that replay what they found (`tests/fuzz_regressions.rs`). Each function
//! takes arbitrary bytes and must neither panic nor hang nor allocate without
//! bound, whatever they are. Not part of the program's interface.
//!
//! The fixed keys are the public test keys of `docs/vectors/keys/`.

use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::crypto::PrivateKey;
use crate::crypto::aead::TrafficKey;
use crate::crypto::schedule::DirectionalKeys;
use crate::handshake::{Initiator, Responder};
use crate::protocol::{MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME, Role};
use crate::session::{Event, Session};
use crate::trust::KnownPeers;
use crate::wire::handshake::{Auth, ClientHello, Identity, KeyTransport, Refusal, ServerHello};
use crate::wire::record::{Close, MessageStart, Receipt};
use crate::wire::{FrameDecoder, frame};

fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let load = |pem: &str| {
            PrivateKey::from_pkcs8_pem(pem, || -> Result<_, ()> { unreachable!("not encrypted") })
                .expect("no passphrase needed")
                .expect("a valid test key")
        };
        (
            load(include_str!("../docs/vectors/keys/responder.pem")),
            load(include_str!("../docs/vectors/keys/transient.pem")),
        )
    })
}

/// Deterministic randomness, so that a crash input replays exactly.
fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// Whole frames out of arbitrary bytes; the last bytes may be a partial frame.
fn frames(data: &[u8], limit: u32) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new(limit);
    decoder.push(data);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = decoder.next_frame() {
        out.push(frame.to_vec());
    }
    out
}

/// The frame decoder: arbitrary bytes, fed in pieces whose sizes come from
/// the input, never yield a frame over the limit, and memory stays bounded.
pub fn frame_decoder(data: &[u8]) {
    let Some((&limit_byte, rest)) = data.split_first() else {
        return;
    };
    let limit = 1 + u32::from(limit_byte) * 64;
    let mut decoder = FrameDecoder::new(limit);
    let mut rest = rest;
    while !rest.is_empty() {
        let step = (usize::from(rest[0]) % 17 + 1).min(rest.len());
        let spare = decoder.spare();
        assert!(
            spare.len() <= limit as usize + 4 + 16 * 1024,
            "decoder buffer grew past its bound"
        );
        let n = step.min(spare.len());
        spare[..n].copy_from_slice(&rest[..n]);
        decoder.filled(n);
        rest = &rest[n..];
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() >= 5 && frame.len() <= limit as usize + 4);
                    assert!(frame::parse(frame).is_ok());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Every plaintext message codec: decoding never panics, and whatever
/// decodes encodes back to the same bytes (one encoding per value).
pub fn handshake_messages(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => {
            if let Ok(m) = ClientHello::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        1 => {
            if let Ok(m) = ServerHello::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        2 => {
            if let Ok(m) = KeyTransport::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        3 => {
            if let Ok(m) = Identity::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        4 => {
            if let Ok(m) = Auth::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        5 => {
            if let Ok(m) = Refusal::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        6 => {
            if let Ok(m) = MessageStart::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        7 => {
            if let Ok(m) = Receipt::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
        _ => {
            if let Ok(m) = Close::decode(body) {
                assert_eq!(m.encode(), body);
            }
        }
    }
}

/// A pair of established sessions under fixed keys.
pub fn session_pair() -> (Session, Session) {
    let keys = DirectionalKeys {
        i2r: TrafficKey::new([0x11; 32], [0x22; 12]),
        r2i: TrafficKey::new([0x33; 32], [0x44; 12]),
    };
    (
        Session::new(Role::Initiator, &keys),
        Session::new(Role::Responder, &keys),
    )
}

/// The record opener: arbitrary bytes as the responder's incoming stream,
/// optionally after valid records sealed by the initiator (chosen by the
/// first byte), so that the session rules are reached too. Nothing
/// unauthenticated is ever returned as message text.
pub fn record_opener(data: &[u8]) {
    let Some((&script, rest)) = data.split_first() else {
        return;
    };
    let (mut ada, mut bob) = session_pair();
    let mut stream = Vec::new();
    let send = ada.send();
    if script & 1 != 0 {
        let _ = send.message(b"hello", 3, &mut stream);
    }
    if script & 2 != 0 {
        let _ = send.start_message(u64::from(script), &mut stream);
    }
    if script & 4 != 0 {
        let _ = send.done(&mut stream);
    }
    let authentic = stream.len();
    stream.extend_from_slice(rest);
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(&stream);
    let mut consumed = 0;
    loop {
        let frame = match decoder.next_frame() {
            Ok(Some(frame)) => frame,
            _ => return,
        };
        let len = frame.len();
        let from_attacker = consumed + len > authentic;
        consumed += len;
        match bob.recv().open(frame) {
            Ok(Event::MessageData { data, .. } | Event::MessageEnd { data, .. }) => {
                assert!(
                    !from_attacker || data.is_empty(),
                    "unauthenticated text came out"
                );
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The responder's state machine fed arbitrary frames as the initiator's.
pub fn responder(data: &[u8]) {
    let (identity, transient) = keys();
    let frames = frames(data, MAX_HANDSHAKE_FRAME);
    let mut frames = frames.into_iter();
    let mut rng = rng();
    let Some(m1) = frames.next() else { return };
    let Ok(hello) = Responder::read_client_hello(&m1) else {
        return;
    };
    let Ok((state, _)) = hello.reply(&mut rng, transient.duplicate()) else {
        return;
    };
    let Some(m3) = frames.next() else { return };
    let Ok((state, _)) = state.read_key_transport(&mut rng, identity, "bob", &m3) else {
        return;
    };
    let Some(mut m6) = frames.next() else { return };
    let Ok(state) = state.read_initiator_identity(&mut m6) else {
        return;
    };
    let Some(mut m7) = frames.next() else { return };
    let _ = state.read_initiator_auth(&mut m7);
}

/// The initiator's state machine fed arbitrary frames as the responder's.
pub fn initiator(data: &[u8]) {
    let (identity, _) = keys();
    let frames = frames(data, MAX_HANDSHAKE_FRAME);
    let mut frames = frames.into_iter();
    let mut rng = rng();
    let (state, _) = Initiator::start(&mut rng);
    let Some(m2) = frames.next() else { return };
    let Ok((state, _)) = state.read_server_hello(&mut rng, &m2) else {
        return;
    };
    let Some(mut m4) = frames.next() else { return };
    let Ok(state) = state.read_responder_identity(&mut m4) else {
        return;
    };
    let Some(mut m5) = frames.next() else { return };
    let Ok(verified) = state.read_responder_auth(&mut m5) else {
        return;
    };
    let _ = verified.finish(&mut rng, identity, "ada");
}

/// The `known_peers.toml` parser: arbitrary text is a store or an error
/// naming a line that exists.
pub fn known_peers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match KnownPeers::parse(std::path::Path::new("known_peers.toml"), text) {
        Ok(store) => {
            for peer in store.peers() {
                assert!(crate::trust::is_valid_name(&peer.name));
            }
        }
        Err(crate::trust::TrustError::Malformed { line, .. }) => {
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "line {line} out of range"
            );
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

/// The display sanitizer: no input yields a terminal control sequence.
pub fn sanitizer(data: &[u8]) {
    for shown in [
        crate::sanitize::for_display(data),
        crate::sanitize::one_line(&String::from_utf8_lossy(data)),
    ] {
        for c in shown.chars() {
            assert!(!c.is_control() || c == '\n' || c == '\t', "{c:?} survived");
            assert!(
                !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
                "{c:?} survived"
            );
        }
    }
}
