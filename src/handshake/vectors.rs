//! The protocol test vectors in `docs/vectors/session-v1.toml`: one whole
//! session with fixed keys and fixed randomness, every frame and every
//! intermediate value. The file is regenerated here and must match byte for
//! byte, and its recorded frames are replayed into fresh state machines and
//! decrypted with the AES-GCM crate directly, by the formulas of
//! `docs/PROTOCOL.md`. To rewrite it after an intended protocol change:
//! `CHAT_WRITE_VECTORS=1 cargo test --lib vectors`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use super::{Established, Initiator, Responder};
use crate::crypto::PrivateKey;
use crate::protocol::{CloseReason, MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME};
use crate::wire::{FrameDecoder, FrameType};

const INITIATOR_SEED: [u8; 32] = [0x11; 32];
const RESPONDER_SEED: [u8; 32] = [0x22; 32];
const CHUNK: usize = 16;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors")
}

fn vector_file() -> PathBuf {
    vectors_dir().join("session-v1.toml")
}

fn key(name: &str) -> PrivateKey {
    let pem = fs::read_to_string(vectors_dir().join("keys").join(name)).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

fn split(flight: &[u8]) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(flight);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push(frame.to_vec());
    }
    assert!(!decoder.is_mid_frame());
    frames
}

fn name_of(typ: u8) -> &'static str {
    match FrameType::from_byte(typ).unwrap() {
        FrameType::ClientHello => "ClientHello",
        FrameType::ServerHello => "ServerHello",
        FrameType::KeyTransport => "KeyTransport",
        FrameType::ResponderIdentity => "ResponderIdentity",
        FrameType::ResponderAuth => "ResponderAuth",
        FrameType::InitiatorIdentity => "InitiatorIdentity",
        FrameType::InitiatorAuth => "InitiatorAuth",
        FrameType::Refusal => "Refusal",
        FrameType::MessageStart => "MESSAGE_START",
        FrameType::MessageData => "MESSAGE_DATA",
        FrameType::MessageEnd => "MESSAGE_END",
        FrameType::Receipt => "RECEIPT",
        FrameType::Keepalive => "KEEPALIVE",
        FrameType::Close => "CLOSE",
        FrameType::Done => "DONE",
    }
}

/// One frame on the wire, and for an encrypted one how it was made.
struct Recorded {
    from: &'static str,
    frame: Vec<u8>,
    sealed: Option<Sealed>,
}

struct Sealed {
    key_name: String,
    seq: u64,
    nonce: [u8; 12],
    aad: [u8; 13],
    plaintext: Vec<u8>,
}

/// Everything the generated file says.
struct Session {
    values: BTreeMap<&'static str, Vec<u8>>,
    frames: Vec<Recorded>,
}

fn nonce(iv: &[u8], seq: u64) -> [u8; 12] {
    let mut nonce: [u8; 12] = iv.try_into().unwrap();
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    nonce
}

fn open_directly(key: &[u8], nonce: &[u8; 12], aad: &[u8], frame: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.try_into().unwrap());
    let mut body = frame[5..frame.len() - 16].to_vec();
    let tag = Tag::try_from(&frame[frame.len() - 16..]).unwrap();
    cipher
        .decrypt_inout_detached(&(*nonce).into(), aad, body.as_mut_slice().into(), &tag)
        .expect("record opens with the documented key, nonce and AAD");
    body
}

impl Session {
    /// Records a flight from one side, decrypting sealed frames with the key
    /// named `key_name` (its `_key` and `_iv` values) and numbering them.
    fn record(
        &mut self,
        from: &'static str,
        flight: &[u8],
        key_name: Option<&str>,
        counters: &mut BTreeMap<String, u64>,
    ) {
        for frame in split(flight) {
            let sealed = key_name.map(|key_name| {
                let seq = counters.entry(key_name.to_string()).or_default();
                let nonce = nonce(&self.values[iv_name(key_name)], *seq);
                let mut aad = [0u8; 13];
                aad[..5].copy_from_slice(&frame[..5]);
                aad[5..].copy_from_slice(&seq.to_be_bytes());
                let plaintext =
                    open_directly(&self.values[key_value_name(key_name)], &nonce, &aad, &frame);
                let sealed = Sealed {
                    key_name: key_name.to_string(),
                    seq: *seq,
                    nonce,
                    aad,
                    plaintext,
                };
                *seq += 1;
                sealed
            });
            self.frames.push(Recorded {
                from,
                frame,
                sealed,
            });
        }
    }
}

fn key_value_name(key: &str) -> &'static str {
    match key {
        "hs_i2r" => "hs_i2r_key",
        "hs_r2i" => "hs_r2i_key",
        "app_i2r" => "app_i2r_key",
        "app_r2i" => "app_r2i_key",
        _ => unreachable!(),
    }
}

fn iv_name(key: &str) -> &'static str {
    match key {
        "hs_i2r" => "hs_i2r_iv",
        "hs_r2i" => "hs_r2i_iv",
        "app_i2r" => "app_i2r_iv",
        "app_r2i" => "app_r2i_iv",
        _ => unreachable!(),
    }
}

/// Merges both sides' traces; a value both computed must agree.
fn merge(values: &mut BTreeMap<&'static str, Vec<u8>>, established: &Established) {
    for (name, value) in &established.trace.as_ref().unwrap().values {
        if let Some(previous) = values.insert(name, value.clone()) {
            assert_eq!(&previous, value, "the two sides disagree on {name}");
        }
    }
}

/// Runs the scripted session and records it.
fn run() -> Session {
    let identity_i = key("initiator.pem");
    let identity_r = key("responder.pem");
    let mut rng_i = ChaCha20Rng::from_seed(INITIATOR_SEED);
    let mut rng_r = ChaCha20Rng::from_seed(RESPONDER_SEED);
    let mut session = Session {
        values: BTreeMap::new(),
        frames: Vec::new(),
    };
    let mut counters = BTreeMap::new();

    let (initiator, m1) = Initiator::start_traced(&mut rng_i, true);
    let (responder, m2) = Responder::read_client_hello_traced(&m1)
        .unwrap()
        .reply(&mut rng_r, key("transient.pem"))
        .unwrap();
    let (initiator, m3) = initiator.read_server_hello(&mut rng_i, &m2).unwrap();
    let (responder, m45) = responder
        .read_key_transport(&mut rng_r, &identity_r, "bob", &m3)
        .unwrap();
    let mut f45 = split(&m45);
    let verified = initiator
        .read_responder_identity(&mut f45[0])
        .unwrap()
        .read_responder_auth(&mut f45[1])
        .unwrap();
    let (mut ada, m67) = verified.finish(&mut rng_i, &identity_i, "ada").unwrap();
    let mut f67 = split(&m67);
    let mut bob = responder
        .read_initiator_identity(&mut f67[0])
        .unwrap()
        .read_initiator_auth(&mut f67[1])
        .unwrap();
    merge(&mut session.values, &ada);
    merge(&mut session.values, &bob);
    assert_eq!(ada.transcript_hash, bob.transcript_hash);

    session.record("initiator", &m1, None, &mut counters);
    session.record("responder", &m2, None, &mut counters);
    session.record("initiator", &m3, None, &mut counters);
    session.record("responder", &m45, Some("hs_r2i"), &mut counters);
    session.record("initiator", &m67, Some("hs_i2r"), &mut counters);

    script(&mut ada, &mut bob, |from, flight| {
        let key = if from == "initiator" {
            "app_i2r"
        } else {
            "app_r2i"
        };
        session.record(from, flight, Some(key), &mut counters);
    });
    session
}

/// The documented exchange after the handshake (docs/PROTOCOL.md, section
/// 13): each flight is passed to `flight` and delivered to the other side.
fn script(
    ada: &mut Established,
    bob: &mut Established,
    mut flight: impl FnMut(&'static str, &[u8]),
) {
    let mut out = Vec::new();
    let text = b"Hello, Bob! This message spans three records.";
    ada.session.send().message(text, CHUNK, &mut out).unwrap();
    flight("initiator", &out);
    deliver(bob, &out);

    let mut out = Vec::new();
    bob.session.send().receipt(1, &mut out).unwrap();
    bob.session
        .send()
        .message(b"Hi Ada.", CHUNK, &mut out)
        .unwrap();
    flight("responder", &out);
    deliver(ada, &out);

    let mut out = Vec::new();
    ada.session.send().receipt(1, &mut out).unwrap();
    ada.session.send().keepalive(&mut out).unwrap();
    ada.session.send().done(&mut out).unwrap();
    flight("initiator", &out);
    deliver(bob, &out);

    let mut out = Vec::new();
    bob.session
        .send()
        .close(CloseReason::Goodbye, &mut out)
        .unwrap();
    flight("responder", &out);
    deliver(ada, &out);
}

/// Feeds records to a side and checks they open.
fn deliver(side: &mut Established, stream: &[u8]) {
    for mut frame in split(stream) {
        side.session.recv().open(&mut frame).unwrap();
    }
}

fn render(session: &Session) -> String {
    let mut t = String::new();
    t.push_str(
        "# chat protocol v1: one whole session, every frame and intermediate value.\n\
         # Specified in docs/PROTOCOL.md; generated and replayed by src/handshake/vectors.rs.\n\
         # All byte strings are lowercase hex. Keys are the PEM files in keys/.\n\
         # The random values (nonces, secret, OAEP seed, PSS salts) are listed under\n\
         # [values]; chat's own test draws them from ChaCha20 generators seeded with\n\
         # the seeds below, which other implementations can ignore.\n\n",
    );
    t.push_str("[setup]\n");
    t.push_str("initiator_identity = \"keys/initiator.pem\"\n");
    t.push_str("responder_identity = \"keys/responder.pem\"\n");
    t.push_str("responder_transient = \"keys/transient.pem\"\n");
    t.push_str("initiator_nickname = \"ada\"\n");
    t.push_str("responder_nickname = \"bob\"\n");
    let _ = writeln!(t, "chunk_size = {CHUNK}");
    let _ = writeln!(
        t,
        "initiator_chacha20_seed = \"{}\"",
        hex::encode(INITIATOR_SEED)
    );
    let _ = writeln!(
        t,
        "responder_chacha20_seed = \"{}\"\n",
        hex::encode(RESPONDER_SEED)
    );
    t.push_str("[values]\n");
    for name in VALUE_ORDER {
        let _ = writeln!(t, "{name} = \"{}\"", hex::encode(&session.values[name]));
    }
    assert_eq!(
        session.values.len(),
        VALUE_ORDER.len(),
        "every value is listed"
    );
    for (i, recorded) in session.frames.iter().enumerate() {
        let _ = write!(
            t,
            "\n[[frame]]\nindex = {}\nname = \"{}\"\nfrom = \"{}\"\n",
            i + 1,
            name_of(recorded.frame[4]),
            recorded.from
        );
        if let Some(sealed) = &recorded.sealed {
            let _ = write!(
                t,
                "key = \"{}\"\nseq = {}\nnonce = \"{}\"\naad = \"{}\"\nplaintext = \"{}\"\n",
                sealed.key_name,
                sealed.seq,
                hex::encode(sealed.nonce),
                hex::encode(sealed.aad),
                hex::encode(&sealed.plaintext)
            );
        }
        let _ = writeln!(t, "frame = \"{}\"", hex::encode(&recorded.frame));
    }
    t
}

const VALUE_ORDER: [&str; 21] = [
    "nonce_i",
    "nonce_r",
    "session_secret",
    "oaep_seed",
    "th3",
    "prk",
    "hs_i2r_key",
    "hs_i2r_iv",
    "hs_r2i_key",
    "hs_r2i_iv",
    "th4",
    "responder_pss_salt",
    "th6",
    "initiator_pss_salt",
    "th7",
    "app_i2r_key",
    "app_i2r_iv",
    "app_r2i_key",
    "app_r2i_iv",
    "identity_i_fingerprint_sha256",
    "identity_r_fingerprint_sha256",
];

fn generate() -> String {
    let mut session = run();
    session.values.insert(
        "identity_i_fingerprint_sha256",
        key("initiator.pem")
            .public()
            .fingerprint()
            .as_bytes()
            .to_vec(),
    );
    session.values.insert(
        "identity_r_fingerprint_sha256",
        key("responder.pem")
            .public()
            .fingerprint()
            .as_bytes()
            .to_vec(),
    );
    render(&session)
}

#[test]
fn vector_file_is_reproduced_byte_for_byte() {
    let generated = generate();
    if std::env::var_os("CHAT_WRITE_VECTORS").is_some() {
        fs::write(vector_file(), &generated).unwrap();
    }
    let on_disk = fs::read_to_string(vector_file()).expect("docs/vectors/session-v1.toml");
    assert!(
        on_disk == generated,
        "docs/vectors/session-v1.toml differs from what the code produces; if the protocol \
         change is intended, rerun with CHAT_WRITE_VECTORS=1 and update docs/PROTOCOL.md"
    );
}

fn hex_field(table: &toml::Table, name: &str) -> Vec<u8> {
    hex::decode(table[name].as_str().unwrap()).unwrap()
}

/// Reads the recorded frames and feeds the ones each side receives into a
/// fresh state machine of the other side (with the documented seeds), which
/// must answer with exactly the recorded frames; then every record is
/// decrypted with the listed key, nonce and AAD.
#[test]
fn recorded_frames_replay_through_both_roles() {
    let file: toml::Table = fs::read_to_string(vector_file()).unwrap().parse().unwrap();
    let values = file["values"].as_table().unwrap();
    let frames: Vec<&toml::Table> = file["frame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_table().unwrap())
        .collect();
    let frame_bytes = |i: usize| hex_field(frames[i], "frame");

    // Responder: fed the initiator's recorded frames 1, 3, 6, 7.
    let mut rng_r = ChaCha20Rng::from_seed(RESPONDER_SEED);
    let identity_r = key("responder.pem");
    let (responder, m2) = Responder::read_client_hello(&frame_bytes(0))
        .unwrap()
        .reply(&mut rng_r, key("transient.pem"))
        .unwrap();
    assert_eq!(m2, frame_bytes(1));
    let (responder, m45) = responder
        .read_key_transport(&mut rng_r, &identity_r, "bob", &frame_bytes(2))
        .unwrap();
    assert_eq!(m45, [frame_bytes(3), frame_bytes(4)].concat());
    let bob = responder
        .read_initiator_identity(&mut frame_bytes(5))
        .unwrap()
        .read_initiator_auth(&mut frame_bytes(6))
        .unwrap();
    assert_eq!(bob.peer.nickname, "ada");

    // Initiator: fed the responder's recorded frames 2, 4, 5.
    let mut rng_i = ChaCha20Rng::from_seed(INITIATOR_SEED);
    let (initiator, m1) = Initiator::start(&mut rng_i);
    assert_eq!(m1, frame_bytes(0));
    let (initiator, m3) = initiator
        .read_server_hello(&mut rng_i, &frame_bytes(1))
        .unwrap();
    assert_eq!(m3, frame_bytes(2));
    let verified = initiator
        .read_responder_identity(&mut frame_bytes(3))
        .unwrap()
        .read_responder_auth(&mut frame_bytes(4))
        .unwrap();
    assert_eq!(verified.peer().nickname, "bob");
    let (ada, m67) = verified
        .finish(&mut rng_i, &key("initiator.pem"), "ada")
        .unwrap();
    assert_eq!(m67, [frame_bytes(5), frame_bytes(6)].concat());
    assert_eq!(ada.transcript_hash.to_vec(), hex_field(values, "th7"));
    assert_eq!(bob.transcript_hash.to_vec(), hex_field(values, "th7"));

    // The records: the documented script, replayed through both sessions,
    // gives exactly the recorded frames.
    let (mut ada, mut bob) = (ada, bob);
    let mut recorded = (7..frames.len()).map(frame_bytes);
    script(&mut ada, &mut bob, |from, flight| {
        for frame in split(flight) {
            assert_eq!(Some(frame), recorded.next(), "a {from} record differs");
        }
    });
    assert_eq!(recorded.next(), None, "records left over");

    // Every record: the formulas of the spec, applied with the AES-GCM crate.
    let mut records = 0;
    for f in frames.iter().filter(|f| f.contains_key("key")) {
        let key_name = f["key"].as_str().unwrap();
        let key = hex_field(values, &format!("{key_name}_key"));
        let iv = hex_field(values, &format!("{key_name}_iv"));
        let seq = f["seq"].as_integer().unwrap() as u64;
        let frame = hex_field(f, "frame");
        assert_eq!(hex_field(f, "nonce"), nonce(&iv, seq));
        let aad = [&frame[..5], &seq.to_be_bytes()[..]].concat();
        assert_eq!(hex_field(f, "aad"), aad);
        let plaintext = open_directly(&key, &nonce(&iv, seq), &aad, &frame);
        assert_eq!(plaintext, hex_field(f, "plaintext"));
        assert_eq!(frame.len(), 5 + plaintext.len() + 16);
        records += 1;
    }
    assert_eq!(
        records,
        4 + 11,
        "4 handshake records; 4 + 2 records of two messages, 2 receipts, keepalive, done, close"
    );
}

#[test]
fn frames_respect_the_handshake_limit() {
    let file: toml::Table = fs::read_to_string(vector_file()).unwrap().parse().unwrap();
    for f in file["frame"].as_array().unwrap().iter().take(7) {
        let frame = hex_field(f.as_table().unwrap(), "frame");
        let length = u32::from_be_bytes(frame[..4].try_into().unwrap());
        assert!(length <= MAX_HANDSHAKE_FRAME);
        assert_eq!(length as usize, frame.len() - 4);
    }
}
