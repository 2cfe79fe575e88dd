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
use crate::crypto::schedule::{DirectionalSecrets, TrafficSecret};
use crate::handshake::{Initiator, Responder};
use crate::protocol::{MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME, Role};
use crate::session::{Event, Session};
use crate::transfer::{FileHasher, Incoming, ReceiverAction, SaveOutcome};
use crate::trust::KnownPeers;
use crate::wire::file::FileRecord;
use crate::wire::handshake::{Auth, ClientHello, Identity, KeyTransport, Refusal, ServerHello};
use crate::wire::record::{Close, KeyUpdate, MessageStart, Receipt};
use crate::wire::{FrameDecoder, FrameType, frame};

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
                    assert!(frame.len() >= 4 && frame.len() <= limit as usize + 4);
                    // A frame of length 0 comes out as its header, for the
                    // caller to refuse; every other one parses.
                    assert_eq!(frame::parse(frame).is_ok(), frame.len() > 4);
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
    let secrets = || DirectionalSecrets {
        i2r: TrafficSecret::new([0x11; 32]),
        r2i: TrafficSecret::new([0x33; 32]),
    };
    (
        Session::new(Role::Initiator, secrets()),
        Session::new(Role::Responder, secrets()),
    )
}

/// The record opener: arbitrary bytes as the responder's incoming stream,
/// optionally after valid records sealed by the initiator (chosen by the
/// first byte: bit 0 a message, bit 1 the start of one, bit 2 DONE, bit 3
/// a key update before them), so that the session rules are reached too.
/// Nothing unauthenticated is ever returned as message text or file data.
pub fn record_opener(data: &[u8]) {
    let Some((&script, rest)) = data.split_first() else {
        return;
    };
    let (mut ada, mut bob) = session_pair();
    let mut stream = Vec::new();
    let send = ada.send();
    if script & 8 != 0 {
        let _ = send.update_key(&mut stream);
    }
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
            Ok(
                Event::MessageData { data, .. }
                | Event::MessageEnd { data, .. }
                | Event::File(FileRecord::Data(data)),
            ) => {
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

/// Every application record codec of version 2 (KEY_UPDATE and the file
/// records, chosen by the first byte): decoding never panics, whatever
/// decodes encodes back to the same bytes, and a decoded offer can be
/// checked against the name rules.
pub fn file_records(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let typ = FrameType::from_byte(0x17 + which % 9).expect("0x17 to 0x1F");
    if typ == FrameType::KeyUpdate {
        if let Ok(update) = KeyUpdate::decode(body) {
            assert_eq!(update.encode(), body);
        }
        return;
    }
    if let Ok(record) = FileRecord::decode(typ, body) {
        assert_eq!(record.encode(), body);
        if let FileRecord::Offer(offer) = record {
            let _ = crate::transfer::Manifest::new(offer.entries);
        }
    }
}

/// The receiving side of file transfer fed arbitrary file records: the
/// input is a series of `type: u8 | length: u16 | body`, each type taken
/// modulo the nine file record types (a type that gives KEY_UPDATE instead
/// works the user's side: its first body byte accepts, rejects, cancels,
/// expires, or ends the session). Every save succeeds. It never panics,
/// holds at most 8 offers, and never writes more than a file's size.
pub fn transfer_receiver(data: &[u8]) {
    let start = std::time::Instant::now();
    let mut incoming = Incoming::new();
    let mut written: std::collections::HashMap<(u64, u16), u64> = Default::default();
    let mut sizes: std::collections::HashMap<(u64, u16), u64> = Default::default();
    let mut rest = data;
    let mut clock = 0u64;
    while rest.len() >= 3 {
        let (head, tail) = rest.split_at(3);
        let len = usize::from(u16::from_be_bytes([head[1], head[2]])).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        let typ = FrameType::from_byte(0x17 + head[0] % 9).expect("0x17 to 0x1F");
        let now = start + std::time::Duration::from_secs(clock);
        clock += 60;
        let actions = if typ == FrameType::KeyUpdate {
            let op = body.first().copied().unwrap_or(0);
            let id = u64::from(body.get(1).copied().unwrap_or(1));
            match op % 5 {
                0 => {
                    let mut resume = Vec::new();
                    if let Some(&held) = body.get(2) {
                        let mut prefix = FileHasher::new();
                        prefix.update(&vec![0; usize::from(held)]);
                        resume.push((0, prefix));
                    }
                    incoming.accept(id, resume).unwrap_or_default()
                }
                1 => incoming
                    .reject(id, crate::transfer::RejectReason::Declined)
                    .unwrap_or_default(),
                2 => incoming
                    .cancel(id, crate::transfer::CancelReason::User)
                    .unwrap_or_default(),
                3 => incoming.expire(now),
                _ => incoming.session_ended(),
            }
        } else {
            let Ok(record) = FileRecord::decode(typ, body) else {
                continue;
            };
            match incoming.handle(record, now) {
                Ok(actions) => actions,
                Err(_) => return,
            }
        };
        assert!(incoming.open() <= crate::protocol::MAX_OPEN_OFFERS);
        for action in actions {
            match action {
                ReceiverAction::Offered { id, manifest } => {
                    for (entry, file) in manifest.entries().iter().enumerate() {
                        sizes.insert((id, entry as u16), file.size);
                    }
                }
                ReceiverAction::Open {
                    id, entry, offset, ..
                } => {
                    written.insert((id, entry), offset);
                }
                ReceiverAction::Write { id, entry, data } => {
                    let total = written.entry((id, entry)).or_default();
                    *total += data.len() as u64;
                    assert!(*total <= sizes[&(id, entry)], "wrote past a file's size");
                }
                ReceiverAction::Save { .. } => {
                    let _ = incoming.saved(SaveOutcome::Saved);
                }
                _ => {}
            }
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

/// The relay's request line and answers (`wire::relay`): arbitrary bytes,
/// read in pieces as the relay reads them, never panic; whatever is accepted
/// is exactly the canonical line of the request it decodes to, and is
/// decided at its LF; an answer is accepted only as one of the six lines.
pub fn relay_line(data: &[u8]) {
    use crate::wire::relay::{Answer, MAX_LINE, Request, Scan, scan};
    let read = &data[..data.len().min(MAX_LINE)];
    let mut verdict = Scan::Incomplete;
    let mut decided_at = 0;
    for end in 1..=read.len() {
        verdict = scan(&read[..end]);
        decided_at = end;
        if verdict != Scan::Incomplete {
            break;
        }
    }
    match verdict {
        Scan::Line(request) => {
            assert_eq!(request.to_line().as_bytes(), &read[..decided_at]);
            assert_eq!(read[decided_at - 1], b'\n');
            assert_eq!(Request::parse(&read[..decided_at]), Ok(request));
        }
        Scan::Bad(_) => assert!(decided_at == MAX_LINE || read[..decided_at].contains(&b'\n')),
        Scan::Incomplete => assert!(read.len() < MAX_LINE && !read.contains(&b'\n')),
    }
    if let Some(answer) = Answer::parse(data) {
        assert_eq!(answer.line(), data);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A little of what `cargo fuzz` does, in every `cargo test`:
        /// random inputs through the version-2 entry points.
        #[test]
        fn file_entry_points_take_any_input(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::file_records(&data);
            super::transfer_receiver(&data);
        }

        /// Random series of well-formed items (type, length, body), which
        /// reach deeper than raw bytes.
        #[test]
        fn transfer_receiver_takes_any_series(
            items in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..40,
            )
        ) {
            let mut data = Vec::new();
            for (typ, body) in items {
                data.push(typ);
                data.extend_from_slice(&(body.len() as u16).to_be_bytes());
                data.extend_from_slice(&body);
            }
            super::transfer_receiver(&data);
        }
    }

    /// An offer, accepted with a resume proposal, whose file is sent: the
    /// receiver writes within the file's size whatever the offsets.
    #[test]
    fn a_valid_transfer_goes_through_the_receiver_target() {
        let item = |typ: u8, body: &[u8]| {
            let mut out = vec![typ];
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(body);
            out
        };
        let offer = crate::wire::file::Offer {
            id: 1,
            entries: vec![crate::wire::file::Entry {
                path: vec!["f".into()],
                size: 10,
            }],
        }
        .encode();
        let start = crate::wire::file::Start {
            id: 1,
            entry: 0,
            offset: 4,
        }
        .encode();
        let input = [
            item(1, &offer),
            item(0, &[0, 1, 4]),
            item(4, &start),
            item(5, &[1; 6]),
            item(6, &[0; 32]),
        ]
        .concat();
        super::transfer_receiver(&input);
    }
}
