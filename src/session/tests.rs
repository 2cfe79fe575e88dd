use std::time::Duration;

use super::*;
use crate::crypto::schedule::TrafficSecret;
use crate::protocol::{MAX_RECORD_FRAME, ProtocolError, TAG_LEN};
use crate::wire::frame::HEADER_LEN;
use crate::wire::{FrameDecoder, FrameType};

fn secrets() -> DirectionalSecrets {
    DirectionalSecrets {
        i2r: TrafficSecret::new([1; 32]),
        r2i: TrafficSecret::new([3; 32]),
    }
}

fn pair() -> (Session, Session) {
    (
        Session::new(Role::Initiator, secrets()),
        Session::new(Role::Responder, secrets()),
    )
}

/// The records of a byte stream, whole.
fn frames(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(stream);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push(frame.to_vec());
    }
    assert!(!decoder.is_mid_frame());
    frames
}

/// The type bytes of a stream's records, as names: `K` for KEY_UPDATE.
fn types(stream: &[u8]) -> String {
    frames(stream)
        .iter()
        .map(|f| match FrameType::from_byte(f[4]).unwrap() {
            FrameType::KeyUpdate => 'K',
            FrameType::MessageStart => 'S',
            FrameType::MessageData => 'D',
            FrameType::MessageEnd => 'E',
            FrameType::Keepalive => '.',
            FrameType::Receipt => 'R',
            FrameType::Close => 'C',
            FrameType::FileData => 'F',
            _ => '?',
        })
        .collect()
}

/// Feeds a byte stream of records to `recv`, collecting owned events.
fn receive(recv: &mut RecvHalf, stream: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(stream);
    let mut events = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        events.push(format!("{:?}", recv.open(frame)?));
    }
    Ok(events)
}

#[test]
fn long_message_in_chunks_with_receipt() {
    let (mut alice, mut bob) = pair();
    let text: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut wire = Vec::new();
    let id = alice.send().message(&text, 40_000, &mut wire).unwrap();
    assert_eq!(id, 1);
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(&wire);
    let mut got = Vec::new();
    let mut complete = false;
    while let Some(frame) = decoder.next_frame().unwrap() {
        match bob.recv().open(frame).unwrap() {
            Event::MessageStart { id: 1, length } => assert_eq!(length, 100_000),
            Event::MessageData { data, .. } => got.extend_from_slice(data),
            Event::MessageEnd { data, .. } => {
                got.extend_from_slice(data);
                complete = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(complete && got == text);
    let mut back = Vec::new();
    bob.send().receipt(1, &mut back).unwrap();
    let events = receive(alice.recv(), &back).unwrap();
    assert_eq!(events, ["Receipt { ids: 1..=1 }"]);
    assert_eq!(alice.send().last_acknowledged(), 1);
}

#[test]
fn receipts_are_checked_against_what_was_sent() {
    for (bogus, why) in [
        (1, "a repeated receipt"),
        (2, "a message never sent"),
        (0, "id 0"),
    ] {
        let (mut alice, mut bob) = pair();
        let mut wire = Vec::new();
        alice.send().message(b"one", 16, &mut wire).unwrap();
        let mut back = Vec::new();
        bob.send().receipt(1, &mut back).unwrap();
        bob.send().receipt(bogus, &mut back).unwrap();
        assert!(receive(alice.recv(), &back).is_err(), "{why} was accepted");
    }
    // Nor may a receipt acknowledge a message whose end was not sent.
    let (mut alice, mut bob) = pair();
    let mut wire = Vec::new();
    alice.send().start_message(10, &mut wire).unwrap();
    let mut back = Vec::new();
    bob.send().receipt(1, &mut back).unwrap();
    assert!(receive(alice.recv(), &back).is_err());
}

#[test]
fn after_an_error_nothing_more_is_accepted() {
    let (mut alice, mut bob) = pair();
    let mut bad = Vec::new();
    alice.send().receipt(5, &mut bad).unwrap();
    let mut good = Vec::new();
    alice.send().message(b"valid", 16, &mut good).unwrap();
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(&bad);
    decoder.push(&good);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert!(bob.recv().open(frame).is_err());
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert!(
            bob.recv().open(frame).is_err(),
            "a record after the error was accepted"
        );
    }
}

#[test]
fn truncated_message_is_never_complete() {
    let (mut alice, mut bob) = pair();
    let mut wire = Vec::new();
    alice.send().message(&[7; 300], 100, &mut wire).unwrap();
    let record_len = HEADER_LEN + 100 + TAG_LEN;
    // The connection is cut before the last record: no MessageEnd.
    let cut = wire.len() - record_len;
    let events = receive(bob.recv(), &wire[..cut]).unwrap();
    assert!(
        events.iter().all(|e| !e.starts_with("MessageEnd")),
        "{events:?}"
    );
    assert_eq!(bob.recv().in_message(), Some(1));
    // An attacker who drops the last record and lets the CLOSE through
    // is caught by the sequence number.
    let mut close = Vec::new();
    alice
        .send()
        .close(CloseReason::Goodbye, &mut close)
        .unwrap();
    assert_eq!(
        receive(bob.recv(), &close).unwrap_err(),
        ProtocolError::AuthenticationFailed
    );
}

#[test]
fn session_rules_are_enforced() {
    let (mut alice, mut bob) = pair();
    let mut wire = Vec::new();
    alice.send().done(&mut wire).unwrap();
    assert!(
        alice.send().start_message(1, &mut wire).is_err(),
        "no message after DONE"
    );
    alice.send().close(CloseReason::Goodbye, &mut wire).unwrap();
    assert!(
        alice.send().keepalive(&mut wire).is_err(),
        "nothing after CLOSE"
    );
    let events = receive(bob.recv(), &wire).unwrap();
    assert_eq!(
        events,
        ["Done", "Close { reason: Goodbye, abandoned: None }"]
    );
}

#[test]
fn oversized_message_is_refused_at_its_start() {
    let (mut alice, mut bob) = pair();
    bob.recv().set_max_message(10);
    let mut wire = Vec::new();
    alice.send().start_message(11, &mut wire).unwrap();
    assert_eq!(
        receive(bob.recv(), &wire).unwrap_err(),
        ProtocolError::MessageTooLarge {
            length: 11,
            limit: 10
        }
    );
}

/// The limit is inclusive (docs/PROTOCOL.md 8.1): a message of exactly the
/// limit is accepted, one byte more is too large.
#[test]
fn a_message_of_exactly_the_limit_is_accepted() {
    let (mut alice, mut bob) = pair();
    bob.recv().set_max_message(10);
    let mut wire = Vec::new();
    alice.send().message(b"0123456789", 16, &mut wire).unwrap();
    assert_eq!(
        receive(bob.recv(), &wire).unwrap(),
        [
            "MessageStart { id: 1, length: 10 }",
            "MessageEnd { id: 1, data: [48, 49, 50, 51, 52, 53, 54, 55, 56, 57] }"
        ]
    );
}

/// Where a record is expected, a frame of length 0 (no type byte at all)
/// and one too short to hold a tag are authentication failures, like any
/// record that does not open (docs/PROTOCOL.md 4, 7.1): nothing says the
/// peer sent them, so nothing is answered (no CLOSE(4)).
#[test]
fn an_empty_or_short_frame_is_an_authentication_failure() {
    for (what, stream) in [
        ("length 0", vec![0, 0, 0, 0]),
        ("length 1", vec![0, 0, 0, 1, 0x14]),
        ("length 16", [vec![0, 0, 0, 16, 0x14], vec![0; 15]].concat()),
    ] {
        let (_, mut bob) = pair();
        assert_eq!(
            receive(bob.recv(), &stream).unwrap_err(),
            ProtocolError::AuthenticationFailed,
            "{what}"
        );
    }
}

/// A record is opened before its type byte is looked at (4.1, 7.1): a type
/// the spec does not list, or a handshake type, fails to authenticate when
/// forged, and is a protocol violation only when authentic.
#[test]
fn invite_records_come_first_or_not_at_all() {
    let (mut alice, mut bob) = pair();
    let mut out = Vec::new();
    alice.send().invite_proof(&[7; 32], &mut out).unwrap();
    assert_eq!(
        receive(bob.recv(), &out).unwrap(),
        vec![format!("{:?}", Event::InviteProof([7; 32]))]
    );
    let (mut alice, mut bob) = pair();
    let mut out = Vec::new();
    alice.send().keepalive(&mut out).unwrap();
    receive(bob.recv(), &out).unwrap();
    let mut out = Vec::new();
    alice.send().invite_result(true, &mut out).unwrap();
    assert_eq!(
        receive(bob.recv(), &out).unwrap_err(),
        ProtocolError::PeerMisbehaved("INVITE_RESULT after the first record")
    );
}

#[test]
fn a_record_type_is_judged_only_once_the_record_opens() {
    use crate::crypto::aead::Aes256GcmCipher;
    /// Alice's first record (epoch 0, sequence number 0) with any type byte.
    fn sealed(typ: u8, body: &[u8]) -> Vec<u8> {
        let key = TrafficSecret::new([1; 32]).traffic_key();
        let length = (1 + body.len() + TAG_LEN) as u32;
        let mut aad = [0u8; 13];
        aad[..4].copy_from_slice(&length.to_be_bytes());
        aad[4] = typ;
        let mut buffer = body.to_vec();
        let tag = Aes256GcmCipher::new(key.key())
            .seal(key.iv(), &aad, &mut buffer)
            .unwrap();
        [&aad[..5], &buffer, &tag].concat()
    }
    for typ in [0x42, 0x08, 0x0E, 0x22, 0xFF, 0x01, 0x07, 0x0F] {
        let (_, mut bob) = pair();
        assert_eq!(
            receive(bob.recv(), &sealed(typ, b"")).unwrap_err(),
            ProtocolError::PeerMisbehaved("unexpected record type"),
            "type {typ:#04x}"
        );
        let mut forged = sealed(typ, b"");
        forged[5] ^= 1;
        let (_, mut bob) = pair();
        assert_eq!(
            receive(bob.recv(), &forged).unwrap_err(),
            ProtocolError::AuthenticationFailed,
            "type {typ:#04x}, forged"
        );
    }
}

#[test]
fn reflected_records_fail() {
    let (mut alice, _) = pair();
    let mut wire = Vec::new();
    alice.send().keepalive(&mut wire).unwrap();
    // Alice's own record sent back to her does not open.
    assert_eq!(
        receive(alice.recv(), &wire).unwrap_err(),
        ProtocolError::AuthenticationFailed
    );
}

// ------------------------------------------------------------ key updates

#[test]
fn key_updates_in_both_directions_across_many_epochs() {
    let (mut alice, mut bob) = pair();
    let limit = RekeyLimit::default().lowered(Some(1024), None).unwrap();
    alice.send().set_rekey_limit(limit);
    bob.send().set_rekey_limit(limit.with_records(5));
    let mut updates = (0, 0);
    for round in 0..300u32 {
        let text: Vec<u8> = (0..round % 700).map(|i| (i ^ round) as u8).collect();
        let mut wire = Vec::new();
        let id = alice.send().message(&text, 256, &mut wire).unwrap();
        let mut got = Vec::new();
        for mut frame in frames(&wire) {
            match bob.recv().open(&mut frame).unwrap() {
                Event::MessageData { data, .. } | Event::MessageEnd { data, .. } => {
                    got.extend_from_slice(data)
                }
                Event::KeyUpdate { epoch } => {
                    updates.0 += 1;
                    assert_eq!(epoch, updates.0);
                }
                Event::MessageStart { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, text);
        let mut back = Vec::new();
        bob.send().receipt(id, &mut back).unwrap();
        bob.send().keepalive(&mut back).unwrap();
        for event in receive(alice.recv(), &back).unwrap() {
            if event.starts_with("KeyUpdate") {
                updates.1 += 1;
            }
        }
    }
    assert!(updates.0 > 50 && updates.1 > 50, "{updates:?}");
    assert_eq!(alice.send().epoch(), updates.0);
    assert_eq!(bob.recv().epoch(), updates.0);
    assert_eq!(bob.send().epoch(), updates.1);
    assert_eq!(alice.recv().epoch(), updates.1);
}

#[test]
fn a_thousand_epochs_each_one_record_long() {
    let (mut alice, mut bob) = pair();
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().with_records(2));
    let mut wire = Vec::new();
    for _ in 0..1000 {
        alice.send().keepalive(&mut wire).unwrap();
    }
    // Each key seals one KEEPALIVE and its KEY_UPDATE.
    assert_eq!(types(&wire), format!(".{}", "K.".repeat(999)));
    let events = receive(bob.recv(), &wire).unwrap();
    assert_eq!(events.len(), 1999);
    assert_eq!(bob.recv().epoch(), 999);
}

/// A record under the new key that arrives before the KEY_UPDATE (because
/// it was dropped, delayed, or the record was moved ahead of it) does not
/// open; nor does a KEY_UPDATE replayed later.
#[test]
fn key_update_dropped_reordered_or_replayed_is_detected() {
    let stream = || {
        let (mut alice, bob) = pair();
        let mut wire = Vec::new();
        alice.send().keepalive(&mut wire).unwrap();
        alice.send().update_key(&mut wire).unwrap();
        alice.send().message(b"after", 64, &mut wire).unwrap();
        alice.send().update_key(&mut wire).unwrap();
        alice.send().keepalive(&mut wire).unwrap();
        assert_eq!(types(&wire), ".KSEK.");
        (frames(&wire), bob)
    };
    let deliver = |bob: &mut Session, order: &[usize], frames: &[Vec<u8>]| {
        let mut last = Ok(Vec::new());
        for &i in order {
            let mut frame = frames[i].clone();
            last = bob
                .recv()
                .open(&mut frame)
                .map(|e| format!("{e:?}").into_bytes());
            if last.is_err() {
                break;
            }
        }
        last
    };
    let (all, mut bob) = stream();
    deliver(&mut bob, &[0, 1, 2, 3, 4, 5], &all).unwrap();
    assert_eq!(bob.recv().epoch(), 2);
    for (order, what) in [
        (&[0, 2][..], "KEY_UPDATE dropped"),
        (&[0, 2, 1][..], "record moved ahead of the KEY_UPDATE"),
        (&[0, 1, 2, 3, 1][..], "KEY_UPDATE replayed"),
        (&[0, 1, 1][..], "KEY_UPDATE replayed at once"),
        (&[0, 1, 4][..], "second KEY_UPDATE dropped"),
        (&[1][..], "KEY_UPDATE before the record it follows"),
    ] {
        let (all, mut bob) = stream();
        assert_eq!(
            deliver(&mut bob, order, &all).unwrap_err(),
            ProtocolError::AuthenticationFailed,
            "{what}"
        );
    }
}

#[test]
fn key_update_must_announce_the_next_epoch() {
    let (mut alice, mut bob) = pair();
    alice.send().keys().force_epoch(4);
    let mut wire = Vec::new();
    alice.send().update_key(&mut wire).unwrap();
    assert!(matches!(
        receive(bob.recv(), &wire).unwrap_err(),
        ProtocolError::PeerMisbehaved(_)
    ));
}

#[test]
fn the_epoch_never_wraps() {
    let (mut alice, mut bob) = pair();
    alice.send().keys().force_epoch(u64::MAX);
    let mut wire = Vec::new();
    assert_eq!(
        alice.send().update_key(&mut wire).unwrap_err(),
        ProtocolError::Exhausted("key epoch")
    );
    assert!(wire.is_empty());
    // Nor does the policy wrap it: the record that needed the update is
    // refused instead.
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().with_records(2));
    alice.send().keepalive(&mut wire).unwrap();
    let before = wire.len();
    assert!(alice.send().keepalive(&mut wire).is_err());
    assert_eq!(wire.len(), before);
    // A receiver at the last epoch refuses any KEY_UPDATE.
    let (mut alice, _) = pair();
    bob.recv().keys().force_epoch(u64::MAX);
    let mut wire = Vec::new();
    alice.send().keys().force_epoch(u64::MAX - 1);
    alice.send().update_key(&mut wire).unwrap();
    assert!(matches!(
        receive(bob.recv(), &wire).unwrap_err(),
        ProtocolError::PeerMisbehaved(_)
    ));
}

#[test]
fn the_byte_trigger_updates_before_the_record_that_would_pass_it() {
    let (mut alice, mut bob) = pair();
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().lowered(Some(1024), None).unwrap());
    let mut wire = Vec::new();
    // MESSAGE_START is 16 bytes; 16 + 400 + 400 = 816, + 400 would pass
    // 1024. The next key takes 400 + 400 again.
    alice.send().start_message(2000, &mut wire).unwrap();
    for _ in 0..5 {
        alice.send().chunk(&[7; 400], &mut wire).unwrap();
    }
    assert_eq!(types(&wire), "SDDKDDKE");
    receive(bob.recv(), &wire).unwrap();
    assert_eq!(bob.recv().epoch(), 2);

    // A record larger than the limit still goes out, alone under a fresh key.
    let (mut alice, mut bob) = pair();
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().lowered(Some(1024), None).unwrap());
    let mut wire = Vec::new();
    alice.send().message(&[1; 5000], 4096, &mut wire).unwrap();
    alice.send().keepalive(&mut wire).unwrap();
    assert_eq!(types(&wire), "SKDKE.");
    receive(bob.recv(), &wire).unwrap();
    assert_eq!(bob.recv().epoch(), 2);
}

#[test]
fn the_record_trigger_leaves_room_for_the_key_update() {
    let (mut alice, mut bob) = pair();
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().with_records(4));
    let mut wire = Vec::new();
    for _ in 0..9 {
        alice.send().keepalive(&mut wire).unwrap();
    }
    // Three records and a KEY_UPDATE per key: four, the limit.
    assert_eq!(types(&wire), "...K...K...");
    receive(bob.recv(), &wire).unwrap();
    assert_eq!(bob.recv().epoch(), 2);
}

#[test]
fn the_time_trigger_follows_the_injected_clock() {
    let (mut alice, mut bob) = pair();
    let clock = Arc::new(ManualClock::new());
    alice.send().set_clock(clock.clone());
    let mut wire = Vec::new();
    alice.send().keepalive(&mut wire).unwrap();
    clock.advance(Duration::from_secs(3599));
    alice.send().keepalive(&mut wire).unwrap();
    clock.advance(Duration::from_secs(1));
    alice.send().keepalive(&mut wire).unwrap();
    // The new key is an hour old an hour after its update, not before.
    clock.advance(Duration::from_secs(1800));
    alice.send().keepalive(&mut wire).unwrap();
    clock.advance(Duration::from_secs(1800));
    alice.send().keepalive(&mut wire).unwrap();
    // A lowered time limit.
    alice.send().set_rekey_limit(
        RekeyLimit::default()
            .lowered(None, Some(Duration::from_secs(30)))
            .unwrap(),
    );
    clock.advance(Duration::from_secs(29));
    alice.send().keepalive(&mut wire).unwrap();
    clock.advance(Duration::from_secs(1));
    alice.send().keepalive(&mut wire).unwrap();
    // CLOSE never waits for an update, however old the key.
    clock.advance(Duration::from_secs(31));
    alice.send().close(CloseReason::Goodbye, &mut wire).unwrap();
    assert_eq!(types(&wire), "..K..K..K.C");
    receive(bob.recv(), &wire).unwrap();
    assert_eq!(bob.recv().epoch(), 3);
}

#[test]
fn in_place_records_put_the_key_update_before_them() {
    let (mut alice, mut bob) = pair();
    alice
        .send()
        .set_rekey_limit(RekeyLimit::default().with_records(2));
    let mut wire = Vec::new();
    alice.send().start_message(6, &mut wire).unwrap();
    for piece in [&b"abc"[..], b"def"] {
        let mut frame = vec![0; HEADER_LEN];
        frame.extend_from_slice(piece);
        frame.resize(frame.len() + TAG_LEN, 0);
        let mut before = Vec::new();
        alice
            .send()
            .chunk_in_place(&mut frame, &mut before)
            .unwrap();
        assert_eq!(types(&before), "K");
        wire.extend_from_slice(&before);
        wire.extend_from_slice(&frame);
    }
    let mut frame = vec![0; HEADER_LEN + 5 + TAG_LEN];
    let mut before = Vec::new();
    alice
        .send()
        .file_data_in_place(&mut frame, &mut before)
        .unwrap();
    wire.extend_from_slice(&before);
    wire.extend_from_slice(&frame);
    assert_eq!(types(&wire), "SKDKEKF");
    let events = receive(bob.recv(), &wire).unwrap();
    assert_eq!(events[4], "MessageEnd { id: 1, data: [100, 101, 102] }");
    assert_eq!(events[6], "File(Data([0, 0, 0, 0, 0]))");
}

#[test]
fn keys_differ_per_epoch_and_old_ones_stop_working() {
    let (mut alice, _) = pair();
    let mut first = Vec::new();
    alice.send().keepalive(&mut first).unwrap();
    let secret_0 = alice.send().keys().secret().clone();
    alice.send().update_key(&mut Vec::new()).unwrap();
    let secret_1 = alice.send().keys().secret().clone();
    assert_eq!(secret_1, secret_0.next());
    assert_ne!(secret_0.traffic_key(), secret_1.traffic_key());
    // The same record at the same position under the next key differs.
    let mut second = Vec::new();
    alice.send().keepalive(&mut second).unwrap();
    assert_eq!(first.len(), second.len());
    assert_ne!(first, second);
}

/// The hard limit is per key (7.1), not per session: with it lowered to
/// 1 MiB on this thread, a session that never updates its key stops at
/// 1 MiB (as a version-1 session stopped at 2^38 bytes), and one that
/// updates every 256 KiB carries 16 MiB, 16 times the limit, and would go on.
#[test]
fn a_session_carries_past_the_hard_limit_of_one_key() {
    crate::crypto::aead::HARD_BYTES_FOR_TESTS.with(|limit| limit.set(1 << 20));
    let text = vec![0x5a; 16 << 20];

    let (mut alice, _) = pair();
    let mut wire = Vec::new();
    let stopped = alice.send().message(&text, 64 << 10, &mut wire);
    assert!(
        matches!(stopped, Err(ProtocolError::Exhausted(_))),
        "{stopped:?}"
    );

    let (mut alice, mut bob) = pair();
    alice.send().set_rekey_limit(
        RekeyLimit::default()
            .lowered(Some(256 << 10), None)
            .unwrap(),
    );
    let mut wire = Vec::new();
    alice.send().message(&text, 64 << 10, &mut wire).unwrap();
    let events = receive(bob.recv(), &wire).unwrap();
    assert!(
        events.last().unwrap().starts_with("MessageEnd"),
        "{events:?}"
    );
    assert!(bob.recv().epoch() >= 63, "epoch {}", bob.recv().epoch());
    assert_eq!(bob.recv().epoch(), alice.send().epoch());
}
