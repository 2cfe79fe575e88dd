//! The protocol test vectors in `docs/vectors/session-v2.toml`: one whole
//! session with fixed keys and fixed randomness, every frame and every
//! intermediate value: the handshake, messages, two key updates in each
//! direction (called for by lowered limits: bytes on one side, records on
//! the other), a small file transfer with a resume, and the end of a
//! finished session (both DONE, both CLOSE). The
//! file is regenerated here and must match byte for byte, and its recorded
//! frames are replayed into fresh state machines and decrypted with the
//! AES-GCM crate directly, by the formulas of `docs/PROTOCOL.md`. To rewrite
//! it after an intended protocol change:
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
use crate::crypto::schedule::TrafficSecret;
use crate::protocol::{CloseReason, MAX_HANDSHAKE_FRAME, MAX_RECORD_FRAME};
use crate::session::{Event, RekeyLimit};
use crate::transfer::{
    Entry, FileHasher, Manifest, Reaction, ReceiverAction, SaveOutcome, SenderAction, Transfers,
};
use crate::wire::file::FileRecord;
use crate::wire::{FrameDecoder, FrameType};

const INITIATOR_SEED: [u8; 32] = [0x11; 32];
const RESPONDER_SEED: [u8; 32] = [0x22; 32];
const CHUNK: usize = 16;

/// The file the initiator sends, of which the responder already holds the
/// first [`HELD`] bytes; and the empty file that goes with it.
const FILE_0: &[u8] = b"chat v2 vectors: a file of 40 bytes.\n\x00\x01\xff";
const FILE_0_PATH: &str = "hello.txt";
const FILE_1_PATH: [&str; 2] = ["notes", "empty.txt"];
const HELD: usize = 16;

/// The lowered key-update limits of the vector session (docs/PROTOCOL.md,
/// 7.2 and 14): the initiator updates after 90 bytes of plaintext under one
/// key, the responder after 4 records; the other limits are the defaults.
const INITIATOR_REKEY_BYTES: u64 = 90;
const RESPONDER_REKEY_RECORDS: u64 = 4;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors")
}

fn vector_file() -> PathBuf {
    vectors_dir().join("session-v2.toml")
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
        FrameType::KeyUpdate => "KEY_UPDATE",
        FrameType::FileOffer => "FILE_OFFER",
        FrameType::FileAccept => "FILE_ACCEPT",
        FrameType::FileReject => "FILE_REJECT",
        FrameType::FileStart => "FILE_START",
        FrameType::FileData => "FILE_DATA",
        FrameType::FileEnd => "FILE_END",
        FrameType::FileVerdict => "FILE_VERDICT",
        FrameType::FileCancel => "FILE_CANCEL",
        FrameType::InviteProof => "INVITE_PROOF",
        FrameType::InviteResult => "INVITE_RESULT",
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
    values: BTreeMap<String, Vec<u8>>,
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

/// Which key protects a flight's records.
#[derive(Clone, Copy)]
enum Keys {
    /// Plaintext frames.
    None,
    /// A handshake key, by name.
    Handshake(&'static str),
    /// The sender's application key of the current epoch, which moves on
    /// after each KEY_UPDATE.
    Application,
}

impl Session {
    /// Records a flight from one side, decrypting sealed frames with the key
    /// they were sealed under (its `_key` and `_iv` values) and numbering
    /// them per key.
    fn record(
        &mut self,
        from: &'static str,
        flight: &[u8],
        keys: Keys,
        counters: &mut BTreeMap<String, u64>,
    ) {
        for frame in split(flight) {
            let key_name = match keys {
                Keys::None => None,
                Keys::Handshake(name) => Some(name.to_string()),
                Keys::Application => {
                    let direction = if from == "initiator" { "i2r" } else { "r2i" };
                    let epoch = counters
                        .get(&format!("epoch_{direction}"))
                        .copied()
                        .unwrap_or(0);
                    Some(format!("app_{direction}_{epoch}"))
                }
            };
            let sealed = key_name.map(|key_name| {
                let seq = counters.entry(key_name.clone()).or_default();
                let nonce = nonce(&self.values[&format!("{key_name}_iv")], *seq);
                let mut aad = [0u8; 13];
                aad[..5].copy_from_slice(&frame[..5]);
                aad[5..].copy_from_slice(&seq.to_be_bytes());
                let plaintext = open_directly(
                    &self.values[&format!("{key_name}_key")],
                    &nonce,
                    &aad,
                    &frame,
                );
                let sealed = Sealed {
                    key_name,
                    seq: *seq,
                    nonce,
                    aad,
                    plaintext,
                };
                *seq += 1;
                sealed
            });
            if frame[4] == FrameType::KeyUpdate as u8 {
                let direction = if from == "initiator" { "i2r" } else { "r2i" };
                *counters.entry(format!("epoch_{direction}")).or_default() += 1;
            }
            self.frames.push(Recorded {
                from,
                frame,
                sealed,
            });
        }
    }
}

/// Merges both sides' traces; a value both computed must agree.
fn merge(values: &mut BTreeMap<String, Vec<u8>>, established: &Established) {
    for (name, value) in &established.trace.as_ref().unwrap().values {
        if let Some(previous) = values.insert(name.to_string(), value.clone()) {
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

    session.record("initiator", &m1, Keys::None, &mut counters);
    session.record("responder", &m2, Keys::None, &mut counters);
    session.record("initiator", &m3, Keys::None, &mut counters);
    session.record("responder", &m45, Keys::Handshake("hs_r2i"), &mut counters);
    session.record("initiator", &m67, Keys::Handshake("hs_i2r"), &mut counters);

    // The later epochs' secrets, keys and IVs: each side updates its key
    // twice in the script.
    for (direction, epochs) in [("i2r", 2), ("r2i", 2)] {
        let name = |n: u32, what: &str| format!("app_{direction}_{n}_{what}");
        let mut secret = TrafficSecret::new(
            session.values[&name(0, "secret")]
                .clone()
                .try_into()
                .unwrap(),
        );
        for epoch in 1..=epochs {
            secret = secret.next();
            let key = secret.traffic_key();
            session
                .values
                .insert(name(epoch, "secret"), secret.as_bytes().to_vec());
            session
                .values
                .insert(name(epoch, "key"), key.key().to_vec());
            session.values.insert(name(epoch, "iv"), key.iv().to_vec());
        }
    }

    script(&mut ada, &mut bob, |from, flight| {
        session.record(from, flight, Keys::Application, &mut counters);
    });
    assert_eq!(counters["epoch_i2r"], 2);
    assert_eq!(counters["epoch_r2i"], 2);
    session
}

/// The documented exchange after the handshake (docs/PROTOCOL.md, section
/// 14): each flight is passed to `flight` and delivered to the other side.
fn script(
    ada: &mut Established,
    bob: &mut Established,
    mut flight: impl FnMut(&'static str, &[u8]),
) {
    let (mut ada_files, mut bob_files) = (Transfers::new(), Transfers::new());
    // Every key update below comes from these limits (7.2), none is asked for.
    ada.session
        .send()
        .set_rekey_limit(RekeyLimit::default().with_bytes(INITIATOR_REKEY_BYTES));
    bob.session
        .send()
        .set_rekey_limit(RekeyLimit::default().with_records(RESPONDER_REKEY_RECORDS));

    // Messages, as in version 1.
    let mut out = Vec::new();
    let text = b"Hello, Bob! This message spans three records.";
    ada.session.send().message(text, CHUNK, &mut out).unwrap();
    flight("initiator", &out);
    deliver(bob, &mut bob_files, &out, &mut Vec::new());

    let mut out = Vec::new();
    bob.session.send().receipt(1, &mut out).unwrap();
    bob.session
        .send()
        .message(b"Hi Ada.", CHUNK, &mut out)
        .unwrap();
    flight("responder", &out);
    deliver(ada, &mut ada_files, &out, &mut Vec::new());

    // Ada acknowledges, and offers a file and a folder holding an empty
    // file. Her key has sealed 69 bytes (the message and the receipt); with
    // the 54 of the offer it would seal more than 90, so a KEY_UPDATE (epoch
    // 1) goes first.
    let mut out = Vec::new();
    ada.session.send().receipt(1, &mut out).unwrap();
    assert_eq!(ada.session.send().epoch(), 0);
    let manifest = Manifest::new(vec![
        Entry {
            path: vec![FILE_0_PATH.into()],
            size: FILE_0.len() as u64,
        },
        Entry {
            path: FILE_1_PATH.iter().map(|s| s.to_string()).collect(),
            size: 0,
        },
    ])
    .unwrap();
    let (id, offer) = ada_files.outgoing.offer(manifest).unwrap();
    ada.session.send().file(&offer, &mut out).unwrap();
    assert_eq!(ada.session.send().epoch(), 1);
    flight("initiator", &out);
    assert_eq!(
        deliver(bob, &mut bob_files, &out, &mut Vec::new()),
        [Got::Offered(1)]
    );

    // Bob accepts, proposing to resume the first file from the 16 bytes he
    // holds. His key has sealed 3 records (R - 1), so a KEY_UPDATE (epoch 1)
    // goes first, as the key's 4th.
    let mut out = Vec::new();
    let mut held = FileHasher::new();
    held.update(&FILE_0[..HELD]);
    for action in bob_files.incoming.accept(id, vec![(0, held)]).unwrap() {
        let ReceiverAction::Send(record) = action else {
            panic!("{action:?}")
        };
        bob.session.send().file(&record, &mut out).unwrap();
    }
    assert_eq!(bob.session.send().epoch(), 1);
    flight("responder", &out);
    let actions = deliver_sender(ada, &mut ada_files, &out);
    assert_eq!(
        actions,
        [SenderAction::Accepted {
            id,
            resume: vec![(0, HELD as u64)]
        }]
    );

    // Ada's prefix matches: she sends the rest of the first file in two
    // records, then the empty file, and DONE. Under epoch 1 her key has
    // sealed 54 + 18 + 16 = 88 bytes when the second FILE_DATA (8 bytes)
    // would take it past 90: a KEY_UPDATE (epoch 2) goes between them. Under
    // epoch 2, the records bring the key to exactly 90 bytes, which is not
    // more than 90: no third update.
    let mut out = Vec::new();
    let next = ada_files.outgoing.next().unwrap();
    let mut prefix = FileHasher::new();
    prefix.update(&FILE_0[..next.resume.unwrap() as usize]);
    let (offset, start) = ada_files.outgoing.start(id, 0, Some(prefix)).unwrap();
    assert_eq!(offset, HELD as u64);
    ada.session.send().file(&start, &mut out).unwrap();
    for piece in FILE_0[HELD..].chunks(CHUNK) {
        ada_files.outgoing.data(piece).unwrap();
        ada.session
            .send()
            .file(&FileRecord::Data(piece), &mut out)
            .unwrap();
    }
    let end = ada_files.outgoing.end().unwrap();
    ada.session.send().file(&end, &mut out).unwrap();
    let (_, start) = ada_files.outgoing.start(id, 1, None).unwrap();
    ada.session.send().file(&start, &mut out).unwrap();
    let end = ada_files.outgoing.end().unwrap();
    ada.session.send().file(&end, &mut out).unwrap();
    ada.session.send().done(&mut out).unwrap();
    assert_eq!(ada.session.send().epoch(), 2);
    flight("initiator", &out);

    // Bob saves both (the first file's SHA-256 covers his 16 bytes and the
    // 24 that came) and sends the verdicts as he goes; Ada's DONE comes
    // last. Bob, who starts nothing himself, answers it with his DONE (8.4):
    // under epoch 1 his key has sealed 3 records (FILE_ACCEPT, two
    // verdicts), so a KEY_UPDATE (epoch 2) goes first. Now the session is
    // finished for him (both DONE, everything acknowledged, the offer
    // finished): he says goodbye at once.
    let mut answer = Vec::new();
    let got = deliver(bob, &mut bob_files, &out, &mut answer);
    let mut received = FILE_0[..HELD].to_vec();
    for action in &got {
        if let Got::Write(data) = action {
            received.extend_from_slice(data);
        }
    }
    assert_eq!(received, FILE_0);
    assert_eq!(got[0], Got::Open(HELD as u64));
    assert_eq!(
        got[3..],
        [Got::Saved, Got::Open(0), Got::Saved, Got::Finished(1)]
    );
    assert!(bob.session.recv().peer_done());
    assert_eq!(bob_files.incoming.open(), 0);
    let mut out = answer;
    bob.session.send().done(&mut out).unwrap();
    assert_eq!(bob.session.send().epoch(), 2);
    bob.session
        .send()
        .close(CloseReason::Goodbye, &mut out)
        .unwrap();
    flight("responder", &out);

    // Ada takes the verdicts (her offer is finished) and Bob's DONE: now the
    // session is finished for her too, and she says goodbye before reading
    // on. Bob's CLOSE, which followed his DONE, she discards unopened, as Bob
    // discards hers (8.5). Her CLOSE is not preceded by a KEY_UPDATE although
    // it takes her key past 90 bytes: CLOSE never waits for one.
    let frames = split(&out);
    let (bobs_close, before) = frames.split_last().unwrap();
    assert_eq!(bobs_close[4], FrameType::Close as u8);
    let actions = deliver_sender(ada, &mut ada_files, &before.concat());
    assert_eq!(actions.last(), Some(&SenderAction::Finished { id }));
    assert!(ada.session.recv().peer_done());
    assert_eq!(ada_files.outgoing.open(), 0);
    let mut out = Vec::new();
    ada.session
        .send()
        .close(CloseReason::Goodbye, &mut out)
        .unwrap();
    assert_eq!(ada.session.send().epoch(), 2);
    flight("initiator", &out);
}

/// What the receiving side's edge was asked to do, owned.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Offered(u64),
    Open(u64),
    Write(Vec<u8>),
    Saved,
    Finished(u64),
}

/// Feeds records to a side; its file records go to its transfers. A file
/// to save is saved at once (the vectors' edge cannot fail), as the
/// receiving side requires before it takes the next record; the records it
/// answers with are sealed into `out`. Returns what the edge was asked.
fn deliver(
    side: &mut Established,
    files: &mut Transfers,
    stream: &[u8],
    out: &mut Vec<u8>,
) -> Vec<Got> {
    let mut got = Vec::new();
    for mut frame in split(stream) {
        if let Event::File(record) = side.session.recv().open(&mut frame).unwrap() {
            let Reaction::Incoming(actions) =
                files.handle(record, std::time::Instant::now()).unwrap()
            else {
                panic!("no offers of ours here");
            };
            for action in actions {
                match action {
                    ReceiverAction::Offered { id, .. } => got.push(Got::Offered(id)),
                    ReceiverAction::Open { offset, .. } => got.push(Got::Open(offset)),
                    ReceiverAction::Write { data, .. } => got.push(Got::Write(data.to_vec())),
                    ReceiverAction::Save { .. } => {
                        got.push(Got::Saved);
                        for action in files.incoming.saved(SaveOutcome::Saved).unwrap() {
                            match action {
                                ReceiverAction::Send(record) => {
                                    side.session.send().file(&record, out).unwrap()
                                }
                                ReceiverAction::Finished { id } => got.push(Got::Finished(id)),
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    got
}

/// Feeds records to the side that sends files, returning its actions.
fn deliver_sender(
    side: &mut Established,
    files: &mut Transfers,
    stream: &[u8],
) -> Vec<SenderAction> {
    let mut actions = Vec::new();
    for mut frame in split(stream) {
        if let Event::File(record) = side.session.recv().open(&mut frame).unwrap() {
            match files.handle(record, std::time::Instant::now()).unwrap() {
                Reaction::Outgoing(more) => actions.extend(more),
                Reaction::Incoming(_) => panic!("no offers of the peer's here"),
            }
        }
    }
    actions
}

fn render(session: &Session) -> String {
    let mut t = String::new();
    t.push_str(
        "# chat protocol v2: one whole session, every frame and intermediate value:\n\
         # the handshake, messages, key updates in both directions, a file transfer.\n\
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
    let _ = writeln!(t, "file_0_path = \"{FILE_0_PATH}\"");
    let _ = writeln!(t, "file_0_held = {HELD}");
    let _ = writeln!(t, "file_1_path = \"{}\"", FILE_1_PATH.join("/"));
    let _ = writeln!(t, "initiator_rekey_bytes = {INITIATOR_REKEY_BYTES}");
    let _ = writeln!(t, "responder_rekey_records = {RESPONDER_REKEY_RECORDS}");
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

const VALUE_ORDER: [&str; 39] = [
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
    "app_i2r_0_secret",
    "app_i2r_0_key",
    "app_i2r_0_iv",
    "app_r2i_0_secret",
    "app_r2i_0_key",
    "app_r2i_0_iv",
    "app_i2r_1_secret",
    "app_i2r_1_key",
    "app_i2r_1_iv",
    "app_i2r_2_secret",
    "app_i2r_2_key",
    "app_i2r_2_iv",
    "app_r2i_1_secret",
    "app_r2i_1_key",
    "app_r2i_1_iv",
    "app_r2i_2_secret",
    "app_r2i_2_key",
    "app_r2i_2_iv",
    "identity_i_fingerprint_sha256",
    "identity_r_fingerprint_sha256",
    "file_0",
    "file_0_prefix_sha256",
    "file_0_sha256",
    "file_1_sha256",
];

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn generate() -> String {
    let mut session = run();
    let values = &mut session.values;
    values.insert("file_0".into(), FILE_0.to_vec());
    values.insert("file_0_prefix_sha256".into(), sha256(&FILE_0[..HELD]));
    values.insert("file_0_sha256".into(), sha256(FILE_0));
    values.insert("file_1_sha256".into(), sha256(b""));
    session.values.insert(
        "identity_i_fingerprint_sha256".into(),
        key("initiator.pem")
            .public()
            .fingerprint()
            .as_bytes()
            .to_vec(),
    );
    session.values.insert(
        "identity_r_fingerprint_sha256".into(),
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
    let on_disk = fs::read_to_string(vector_file()).expect("docs/vectors/session-v2.toml");
    assert!(
        on_disk == generated,
        "docs/vectors/session-v2.toml differs from what the code produces; if the protocol \
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
        4 + 26,
        "4 handshake records; 4 + 2 of two messages, 2 receipts, 4 key updates, 10 file \
         records, 2 DONE, 2 CLOSE"
    );

    // Every application secret, key and IV, by the formulas of section 6
    // applied with HMAC-SHA256 directly (HKDF-Expand of at most 32 bytes
    // is one HMAC block).
    use hmac::{KeyInit, Mac};
    let block = |prk: &[u8], info: &[&[u8]]| -> Vec<u8> {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(prk).unwrap();
        for part in info {
            mac.update(part);
        }
        mac.update(&[1]);
        mac.finalize().into_bytes().to_vec()
    };
    let prk = hex_field(values, "prk");
    let th7 = hex_field(values, "th7");
    for (direction, epochs) in [("i2r", 2), ("r2i", 2)] {
        let name = |n: u32, what: &str| format!("app_{direction}_{n}_{what}");
        let label = format!("chat v2 app {direction} secret");
        let mut secret = block(&prk, &[label.as_bytes(), &th7]);
        for epoch in 0..=epochs {
            assert_eq!(hex_field(values, &name(epoch, "secret")), secret);
            assert_eq!(
                hex_field(values, &name(epoch, "key")),
                block(&secret, &[b"chat v2 traffic key"])
            );
            assert_eq!(
                hex_field(values, &name(epoch, "iv")),
                block(&secret, &[b"chat v2 traffic iv"])[..12]
            );
            secret = block(&secret, &[b"chat v2 traffic update"]);
        }
    }
    assert_eq!(hex_field(values, "file_0"), FILE_0);
    assert_eq!(hex_field(values, "file_0_sha256"), sha256(FILE_0));
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
