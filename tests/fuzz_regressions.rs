//! Replays, in every `cargo test`, the inputs the fuzzers found interesting:
//! each file under `fuzz/regressions/TARGET/` goes through the same entry
//! point as the fuzz target `TARGET` (see `fuzz/`), as do the real frames of
//! `docs/vectors/session-v2.toml`, cut at every length.

use std::fs;
use std::path::Path;

fn entry_point(target: &str) -> fn(&[u8]) {
    match target {
        "frame_decoder" => chat::fuzzing::frame_decoder,
        "handshake_messages" => chat::fuzzing::handshake_messages,
        "record_opener" => chat::fuzzing::record_opener,
        "file_records" => chat::fuzzing::file_records,
        "transfer_receiver" => chat::fuzzing::transfer_receiver,
        "responder" => chat::fuzzing::responder,
        "initiator" => chat::fuzzing::initiator,
        "known_peers" => chat::fuzzing::known_peers,
        "sanitizer" => chat::fuzzing::sanitizer,
        "relay_line" => chat::fuzzing::relay_line,
        other => panic!("unknown fuzz target {other}"),
    }
}

#[test]
fn every_saved_input_still_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for target in fs::read_dir(&root).unwrap() {
        let target = target.unwrap();
        if !target.file_type().unwrap().is_dir() {
            continue;
        }
        let run = entry_point(target.file_name().to_str().unwrap());
        for input in fs::read_dir(target.path()).unwrap() {
            run(&fs::read(input.unwrap().path()).unwrap());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} saved inputs");
}

/// The frames of the test vectors, as each side receives them.
fn vector_streams() -> (Vec<u8>, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors/session-v2.toml");
    let file: toml::Table = fs::read_to_string(path).unwrap().parse().unwrap();
    let (mut from_initiator, mut from_responder) = (Vec::new(), Vec::new());
    for frame in file["frame"].as_array().unwrap() {
        let bytes = hex::decode(frame["frame"].as_str().unwrap()).unwrap();
        match frame["from"].as_str().unwrap() {
            "initiator" => from_initiator.extend(bytes),
            _ => from_responder.extend(bytes),
        }
    }
    (from_initiator, from_responder)
}

/// The plaintexts of the vectors' KEY_UPDATE and file records, each behind
/// the selector byte of `chat::fuzzing::file_records`.
fn vector_plaintexts() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors/session-v2.toml");
    let file: toml::Table = fs::read_to_string(path).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for frame in file["frame"].as_array().unwrap() {
        let bytes = hex::decode(frame["frame"].as_str().unwrap()).unwrap();
        if let (0x17..=0x1F, Some(plaintext)) = (bytes[4], frame.get("plaintext")) {
            let mut input = vec![bytes[4] - 0x17];
            input.extend(hex::decode(plaintext.as_str().unwrap()).unwrap());
            out.push(input);
        }
    }
    assert_eq!(out.len(), 4 + 10, "four key updates and ten file records");
    out
}

#[test]
fn real_traffic_cut_at_every_length_passes_every_entry_point() {
    let (from_initiator, from_responder) = vector_streams();
    for cut in (0..from_initiator.len()).step_by(7) {
        chat::fuzzing::responder(&from_initiator[..cut]);
        chat::fuzzing::frame_decoder(&from_initiator[..cut]);
        chat::fuzzing::record_opener(&from_initiator[..cut]);
    }
    for record in vector_plaintexts() {
        chat::fuzzing::file_records(&record);
    }
    for cut in (0..from_responder.len()).step_by(7) {
        chat::fuzzing::initiator(&from_responder[..cut]);
    }
    chat::fuzzing::known_peers(include_bytes!("../known_peers.example.toml"));
    chat::fuzzing::sanitizer(b"\x1b[2J\xc2\x9b\xe2\x80\xae");
}
