//! The transfer state machines driven end to end through real sessions
//! (encrypted records, key updates, messages in between), with an edge
//! played by a few maps of bytes; and every out-of-order record refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::crypto::schedule::{DirectionalSecrets, TrafficSecret};
use crate::protocol::{MAX_RECORD_FRAME, OFFER_EXPIRY, Role};
use crate::session::{Event, RekeyLimit, Session};
use crate::wire::FrameDecoder;
use crate::wire::file::{Accept, Cancel, End, FileVerdict, Offer, Reject, Resume, Start};

type Path = Vec<String>;

fn path(p: &str) -> Path {
    p.split('/').map(str::to_string).collect()
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed.into()) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// One side: its session and transfers, and the edge's part played in
/// memory: the files it sends, its partial and saved files.
struct Side {
    session: Session,
    transfers: Transfers,
    /// Sealed records not yet delivered to the other side.
    out: Vec<u8>,
    /// Files we offer, by path.
    files: HashMap<Path, Vec<u8>>,
    /// Partial files we receive, by path.
    partials: HashMap<Path, Vec<u8>>,
    /// Saved files, by path.
    saved: HashMap<Path, Vec<u8>>,
    /// The partial being written.
    writing: Option<Path>,
    /// The file being sent.
    sending: Option<Path>,
    /// What the edge was told, in order.
    log: Vec<String>,
    /// Messages received.
    messages: Vec<Vec<u8>>,
    /// Saves fail (a full disk).
    disk_full: bool,
    /// Paths whose final name is taken in the save folder.
    taken: Vec<Path>,
    /// FILE_DATA bytes received.
    data_received: u64,
    /// The edge's bug: hash the wrong range of its file for a resume.
    hash_wrong_range: bool,
    now: Instant,
}

impl Side {
    fn new(session: Session) -> Self {
        Self {
            session,
            transfers: Transfers::new(),
            out: Vec::new(),
            files: HashMap::new(),
            partials: HashMap::new(),
            saved: HashMap::new(),
            writing: None,
            sending: None,
            log: Vec::new(),
            messages: Vec::new(),
            disk_full: false,
            taken: Vec::new(),
            data_received: 0,
            hash_wrong_range: false,
            now: Instant::now(),
        }
    }

    fn seal(&mut self, record: &FileRecord<'_>) {
        self.session.send().file(record, &mut self.out).unwrap();
    }

    /// Offers files we hold, as one offer.
    fn offer(&mut self, paths: &[&str]) -> u64 {
        let entries = paths
            .iter()
            .map(|p| Entry {
                path: path(p),
                size: self.files[&path(p)].len() as u64,
            })
            .collect();
        let (id, record) = self
            .transfers
            .outgoing
            .offer(Manifest::new(entries).unwrap())
            .unwrap();
        self.seal(&record);
        id
    }

    fn sender_actions(&mut self, actions: Vec<SenderAction>) {
        for action in actions {
            match action {
                SenderAction::Send(record) => self.seal(&record),
                other => self.log.push(format!("{other:?}")),
            }
        }
    }

    fn receiver_actions(&mut self, actions: Vec<ReceiverAction<'_>>) {
        for action in actions {
            match action {
                ReceiverAction::Send(record) => self.seal(&record),
                ReceiverAction::Open { path, offset, .. } => {
                    let partial = self.partials.entry(path.clone()).or_default();
                    if offset == 0 {
                        partial.clear();
                    } else {
                        assert!(partial.len() as u64 >= offset);
                        partial.truncate(offset as usize);
                    }
                    self.log
                        .push(format!("Open {} at {offset}", path.join("/")));
                    self.writing = Some(path);
                }
                ReceiverAction::Write { data, .. } => {
                    self.data_received += data.len() as u64;
                    let path = self.writing.as_ref().unwrap();
                    self.partials.get_mut(path).unwrap().extend_from_slice(data);
                }
                ReceiverAction::Save { sha256: hash, .. } => {
                    let path = self.writing.take().unwrap();
                    let data = self.partials.remove(&path).unwrap();
                    assert_eq!(sha256(&data), hash);
                    let outcome = if self.taken.contains(&path) {
                        self.partials.insert(path.clone(), data);
                        SaveOutcome::NameTaken
                    } else if self.disk_full {
                        self.partials.insert(path.clone(), data);
                        SaveOutcome::WriteFailed
                    } else {
                        self.saved.insert(path.clone(), data);
                        SaveOutcome::Saved
                    };
                    self.log.push(format!("Saved {}", path.join("/")));
                    let more = self.transfers.incoming.saved(outcome).unwrap();
                    self.receiver_actions(more);
                }
                ReceiverAction::Delete { .. } => {
                    let path = self.writing.take().unwrap();
                    self.partials.remove(&path);
                    self.log.push(format!("Deleted {}", path.join("/")));
                }
                ReceiverAction::Stop { keep_partial, .. } => {
                    let path = self.writing.take().unwrap();
                    if !keep_partial {
                        self.partials.remove(&path);
                    }
                    self.log
                        .push(format!("Stop {} keep={keep_partial}", path.join("/")));
                }
                ReceiverAction::Offered { id, manifest } => self
                    .log
                    .push(format!("Offered {id}: {} files", manifest.len())),
                other => self.log.push(format!("{other:?}")),
            }
        }
    }

    /// Sends at most `records` records of file data (and their FILE_START
    /// and FILE_END), as the edge would between other work.
    fn send_files(&mut self, mut records: usize, chunk: usize) {
        while records > 0 {
            if self.transfers.outgoing.in_flight().is_none() {
                let Some(next) = self.transfers.outgoing.next() else {
                    return;
                };
                let file = self.files[&next.path].clone();
                let prefix = next.resume.map(|offset| {
                    let mut hasher = FileHasher::new();
                    let offset = offset as usize;
                    if self.hash_wrong_range {
                        hasher.update(&file[offset.min(file.len())..(2 * offset).min(file.len())]);
                    } else {
                        hasher.update(&file[..offset.min(file.len())]);
                    }
                    hasher
                });
                let (offset, start) = self
                    .transfers
                    .outgoing
                    .start(next.id, next.entry, prefix)
                    .unwrap();
                self.log
                    .push(format!("Start {} at {offset}", next.path.join("/")));
                self.seal(&start);
                self.sending = Some(next.path);
            }
            let (_, _, remaining) = self.transfers.outgoing.in_flight().unwrap();
            let file = &self.files[self.sending.as_ref().unwrap()];
            if remaining == 0 {
                let end = self.transfers.outgoing.end().unwrap();
                self.seal(&end);
                self.sending = None;
                continue;
            }
            let from = file.len() - remaining as usize;
            let piece = file[from..(from + chunk).min(file.len())].to_vec();
            self.transfers.outgoing.data(&piece).unwrap();
            self.seal(&FileRecord::Data(&piece));
            records -= 1;
        }
    }
}

/// Two sides of one session.
fn pair() -> (Side, Side) {
    let secrets = || DirectionalSecrets {
        i2r: TrafficSecret::new([5; 32]),
        r2i: TrafficSecret::new([6; 32]),
    };
    (
        Side::new(Session::new(Role::Initiator, secrets())),
        Side::new(Session::new(Role::Responder, secrets())),
    )
}

/// Delivers what `from` sealed to `to`, which reacts (its answers go to its
/// own `out`). Returns the first error.
fn deliver(from: &mut Side, to: &mut Side) -> Result<(), ProtocolError> {
    let stream = std::mem::take(&mut from.out);
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(&stream);
    while let Some(frame) = decoder.next_frame()? {
        match to.session.recv().open(frame)? {
            Event::File(record) => match to.transfers.handle(record, to.now)? {
                Reaction::Outgoing(actions) => to.sender_actions(actions),
                Reaction::Incoming(actions) => to.receiver_actions(actions),
            },
            Event::MessageEnd { data, .. } => to.messages.push(data.to_vec()),
            _ => {}
        }
    }
    Ok(())
}

/// Runs both sides until neither has anything to say or send.
fn settle(a: &mut Side, b: &mut Side) {
    for _ in 0..10_000 {
        a.send_files(4, 1000);
        b.send_files(4, 1000);
        if a.out.is_empty() && b.out.is_empty() {
            return;
        }
        deliver(a, b).unwrap();
        deliver(b, a).unwrap();
    }
    panic!("no end");
}

fn accept_all(side: &mut Side, resume: Vec<(u16, FileHasher)>) {
    let id = *side
        .log
        .iter()
        .filter_map(|l| l.strip_prefix("Offered "))
        .map(|l| l.split(':').next().unwrap().parse::<u64>().unwrap())
        .collect::<Vec<_>>()
        .last()
        .unwrap();
    let actions = side.transfers.incoming.accept(id, resume).unwrap();
    side.receiver_actions(actions);
}

#[test]
fn a_folder_and_files_arrive_byte_for_byte_between_messages_and_key_updates() {
    let (mut ada, mut bob) = pair();
    ada.session
        .send()
        .set_rekey_limit(RekeyLimit::default().lowered(Some(1024), None).unwrap());
    for (p, n) in [
        ("report.pdf", 10_000),
        ("empty.txt", 0),
        ("one.byte", 1),
        ("photos/a.jpg", 2500),
        ("photos/2024/été.jpg", 3001),
    ] {
        ada.files.insert(path(p), bytes(n, n as u8));
    }
    let id = ada.offer(&[
        "report.pdf",
        "empty.txt",
        "one.byte",
        "photos/a.jpg",
        "photos/2024/été.jpg",
    ]);
    deliver(&mut ada, &mut bob).unwrap();
    assert_eq!(bob.log, ["Offered 1: 5 files"]);
    assert_eq!(
        bob.transfers.incoming.manifest(id).unwrap().top_level(),
        ["report.pdf", "empty.txt", "one.byte", "photos"]
    );
    accept_all(&mut bob, vec![]);
    deliver(&mut bob, &mut ada).unwrap();
    // Messages go both ways while the files travel.
    for round in 0..40 {
        ada.send_files(1, 700);
        ada.session
            .send()
            .message(format!("ada {round}").as_bytes(), 64, &mut ada.out)
            .unwrap();
        bob.session
            .send()
            .message(format!("bob {round}").as_bytes(), 64, &mut bob.out)
            .unwrap();
        deliver(&mut ada, &mut bob).unwrap();
        deliver(&mut bob, &mut ada).unwrap();
    }
    settle(&mut ada, &mut bob);
    assert_eq!(bob.saved, ada.files);
    assert!(bob.partials.is_empty());
    assert_eq!(bob.messages.len(), 40);
    assert_eq!(ada.messages.len(), 40);
    assert!(
        ada.session.send().epoch() > 5,
        "the key was updated on the way"
    );
    assert_eq!(
        ada.log
            .iter()
            .filter(|l| l.contains("verdict: Saved"))
            .count(),
        5
    );
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    assert_eq!(bob.log.last().unwrap(), "Finished { id: 1 }");
    assert_eq!(ada.transfers.outgoing.open(), 0);
    assert_eq!(bob.transfers.incoming.open(), 0);
}

#[test]
fn both_sides_send_at_once() {
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("from-ada"), bytes(5000, 1));
    bob.files.insert(path("from-bob"), bytes(7000, 2));
    ada.offer(&["from-ada"]);
    bob.offer(&["from-bob"]);
    deliver(&mut ada, &mut bob).unwrap();
    deliver(&mut bob, &mut ada).unwrap();
    accept_all(&mut ada, vec![]);
    accept_all(&mut bob, vec![]);
    settle(&mut ada, &mut bob);
    assert_eq!(bob.saved[&path("from-ada")], ada.files[&path("from-ada")]);
    assert_eq!(ada.saved[&path("from-bob")], bob.files[&path("from-bob")]);
}

/// Offers `file` from ada to bob, who holds `partial` from an earlier try
/// and proposes to resume from it. Returns both sides after the transfer.
fn resume(file: &[u8], partial: &[u8]) -> (Side, Side) {
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("big.iso"), file.to_vec());
    bob.partials.insert(path("big.iso"), partial.to_vec());
    ada.offer(&["big.iso"]);
    deliver(&mut ada, &mut bob).unwrap();
    let mut prefix = FileHasher::new();
    prefix.update(partial);
    let proposals = if partial.is_empty() {
        vec![]
    } else {
        vec![(0, prefix)]
    };
    accept_all(&mut bob, proposals);
    settle(&mut ada, &mut bob);
    (ada, bob)
}

#[test]
fn resume_from_a_matching_prefix_sends_only_the_rest() {
    let file = bytes(20_000, 3);
    let (ada, bob) = resume(&file, &file[..12_345]);
    assert!(ada.log.contains(&"Start big.iso at 12345".to_string()));
    assert!(bob.log.contains(&"Open big.iso at 12345".to_string()));
    assert_eq!(bob.data_received, 20_000 - 12_345);
    assert_eq!(bob.saved[&path("big.iso")], file);
    // A partial that already holds the whole file: no data, just the end.
    let (_, bob) = resume(&file, &file);
    assert_eq!(bob.data_received, 0);
    assert_eq!(bob.saved[&path("big.iso")], file);
}

#[test]
fn resume_from_a_different_prefix_starts_again_from_zero() {
    let file = bytes(20_000, 3);
    let mut partial = file[..12_345].to_vec();
    partial[100] ^= 1;
    let (ada, bob) = resume(&file, &partial);
    assert!(ada.log.contains(&"Start big.iso at 0".to_string()));
    assert!(bob.log.contains(&"Open big.iso at 0".to_string()));
    assert_eq!(bob.data_received, 20_000);
    assert_eq!(bob.saved[&path("big.iso")], file);
}

/// magic-wormhole.rs hashed the bytes after the offset instead of the
/// prefix; here such a sender simply finds no match and starts from 0.
#[test]
fn a_sender_that_hashes_the_wrong_range_does_not_resume() {
    let file = bytes(20_000, 4);
    let (mut ada, mut bob) = pair();
    ada.hash_wrong_range = true;
    ada.files.insert(path("f"), file.clone());
    bob.partials.insert(path("f"), file[..8000].to_vec());
    ada.offer(&["f"]);
    deliver(&mut ada, &mut bob).unwrap();
    let mut prefix = FileHasher::new();
    prefix.update(&file[..8000]);
    accept_all(&mut bob, vec![(0, prefix)]);
    settle(&mut ada, &mut bob);
    assert!(ada.log.contains(&"Start f at 0".to_string()));
    assert_eq!(bob.saved[&path("f")], file);
}

/// A sender whose prefix comparison is broken (it resumes although the
/// receiver's prefix differs from its file) makes a spliced file: the
/// whole-file SHA-256 in FILE_END catches it, and nothing is saved.
#[test]
fn a_bad_splice_is_caught_by_the_whole_file_hash() {
    let file = bytes(20_000, 5);
    let mut partial = file[..9000].to_vec();
    partial[5] ^= 0x80;
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("big.iso"), file.clone());
    bob.partials.insert(path("big.iso"), partial.clone());
    ada.offer(&["big.iso"]);
    deliver(&mut ada, &mut bob).unwrap();
    let mut prefix = FileHasher::new();
    prefix.update(&partial);
    accept_all(&mut bob, vec![(0, prefix)]);
    deliver(&mut bob, &mut ada).unwrap();
    ada.seal(&start(1, 0, 9000));
    for piece in file[9000..].chunks(4096) {
        ada.seal(&FileRecord::Data(piece));
    }
    ada.seal(&FileRecord::End(End {
        sha256: sha256(&file),
    }));
    deliver(&mut ada, &mut bob).unwrap();
    assert!(bob.log.contains(&"Open big.iso at 9000".to_string()));
    assert!(bob.saved.is_empty());
    assert!(bob.partials.is_empty(), "the partial is deleted");
    assert_eq!(
        bob.log[bob.log.len() - 2..],
        ["Deleted big.iso", "Finished { id: 1 }"]
    );
}

#[test]
fn a_write_failure_is_the_verdict_and_the_offer_goes_on() {
    let (mut ada, mut bob) = pair();
    bob.disk_full = true;
    ada.files.insert(path("a"), bytes(3000, 1));
    ada.files.insert(path("b"), bytes(10, 2));
    ada.offer(&["a", "b"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    settle(&mut ada, &mut bob);
    let verdicts: Vec<&String> = ada.log.iter().filter(|l| l.contains("verdict")).collect();
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts.iter().all(|v| v.contains("WriteFailed")));
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
}

/// A verified file whose final name is taken at the receiver is not saved:
/// verdict 3 (name taken, docs/PROTOCOL.md 9.7), the partial kept whole for
/// a later resume (9.9), and the offer goes on.
#[test]
fn a_taken_name_is_verdict_3_and_the_offer_goes_on() {
    let (mut ada, mut bob) = pair();
    bob.taken.push(path("a"));
    ada.files.insert(path("a"), bytes(3000, 1));
    ada.files.insert(path("b"), bytes(10, 2));
    ada.offer(&["a", "b"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    settle(&mut ada, &mut bob);
    let verdicts: Vec<&String> = ada.log.iter().filter(|l| l.contains("verdict")).collect();
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts[0].contains("NameTaken"), "{verdicts:?}");
    assert!(verdicts[1].contains("Saved"), "{verdicts:?}");
    assert_eq!(bob.partials[&path("a")], ada.files[&path("a")]);
    assert!(!bob.saved.contains_key(&path("a")));
    assert_eq!(bob.saved[&path("b")], ada.files[&path("b")]);
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
}

/// Starts a transfer of three files and stops in the middle of the second.
fn halfway() -> (Side, Side) {
    let (mut ada, mut bob) = pair();
    for (p, n) in [("a", 3000), ("b", 9000), ("c", 100)] {
        ada.files.insert(path(p), bytes(n, n as u8));
    }
    ada.offer(&["a", "b", "c"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    deliver(&mut bob, &mut ada).unwrap();
    ada.send_files(5, 1000); // all of a, two records of b
    deliver(&mut ada, &mut bob).unwrap();
    deliver(&mut bob, &mut ada).unwrap();
    assert!(bob.saved.contains_key(&path("a")));
    assert_eq!(bob.partials[&path("b")].len(), 2000);
    (ada, bob)
}

#[test]
fn the_sender_cancels_and_the_receiver_keeps_the_partial() {
    let (mut ada, mut bob) = halfway();
    let actions = ada
        .transfers
        .outgoing
        .cancel(1, CancelReason::User)
        .unwrap();
    ada.sender_actions(actions);
    ada.send_files(10, 1000);
    deliver(&mut ada, &mut bob).unwrap();
    assert_eq!(
        bob.log[bob.log.len() - 3..],
        [
            "Stop b keep=true",
            "CancelledByPeer { id: 1, reason: User }",
            "Finished { id: 1 }"
        ]
    );
    assert_eq!(bob.partials[&path("b")].len(), 2000, "kept for a resume");
    deliver(&mut bob, &mut ada).unwrap();
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    assert!(!bob.saved.contains_key(&path("c")));
    // Both sides are idle and can go on.
    assert_eq!(
        (ada.transfers.outgoing.open(), bob.transfers.incoming.open()),
        (0, 0)
    );
    ada.offer(&["c"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    settle(&mut ada, &mut bob);
    assert_eq!(bob.saved[&path("c")], ada.files[&path("c")]);
}

#[test]
fn the_receiver_cancels_and_data_in_flight_is_ignored() {
    let (mut ada, mut bob) = halfway();
    // Ada sends more of b, and all of c, before she sees bob's cancel.
    ada.send_files(20, 1000);
    let actions = bob
        .transfers
        .incoming
        .cancel(1, CancelReason::User)
        .unwrap();
    bob.receiver_actions(actions);
    assert_eq!(bob.log.last().unwrap(), "Stop b keep=false");
    assert!(
        !bob.partials.contains_key(&path("b")),
        "our user cancelled: deleted"
    );
    deliver(&mut ada, &mut bob).unwrap();
    assert!(
        !bob.saved.contains_key(&path("c")),
        "data after our cancel is not written"
    );
    deliver(&mut bob, &mut ada).unwrap();
    assert!(
        ada.log
            .contains(&"CancelledByPeer { id: 1, reason: User }".to_string())
    );
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    deliver(&mut ada, &mut bob).unwrap();
    assert_eq!(bob.log.last().unwrap(), "Finished { id: 1 }");
    assert_eq!(
        (ada.transfers.outgoing.open(), bob.transfers.incoming.open()),
        (0, 0)
    );
    // A write failure cancels too, but keeps the partial.
    let (mut ada, mut bob) = halfway();
    let actions = bob
        .transfers
        .incoming
        .cancel(1, CancelReason::WriteFailed)
        .unwrap();
    bob.receiver_actions(actions);
    assert_eq!(bob.partials[&path("b")].len(), 2000);
    settle(&mut ada, &mut bob);
    assert_eq!(
        (ada.transfers.outgoing.open(), bob.transfers.incoming.open()),
        (0, 0)
    );
}

#[test]
fn cancels_that_cross_end_the_offer_on_both_sides() {
    let (mut ada, mut bob) = halfway();
    let a = ada
        .transfers
        .outgoing
        .cancel(1, CancelReason::User)
        .unwrap();
    ada.sender_actions(a);
    let b = bob
        .transfers
        .incoming
        .cancel(1, CancelReason::User)
        .unwrap();
    bob.receiver_actions(b);
    deliver(&mut ada, &mut bob).unwrap();
    deliver(&mut bob, &mut ada).unwrap();
    assert!(
        ada.out.is_empty() && bob.out.is_empty(),
        "no answers to crossed cancels"
    );
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    assert_eq!(bob.log.last().unwrap(), "Finished { id: 1 }");
}

#[test]
fn a_cancel_that_crosses_the_last_verdict_or_a_reject_is_ignored() {
    // The last verdict.
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(100, 1));
    ada.offer(&["a"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    deliver(&mut bob, &mut ada).unwrap();
    ada.send_files(10, 1000);
    deliver(&mut ada, &mut bob).unwrap(); // bob saves and sends the verdict
    let actions = ada
        .transfers
        .outgoing
        .cancel(1, CancelReason::User)
        .unwrap();
    ada.sender_actions(actions);
    deliver(&mut ada, &mut bob).unwrap(); // bob ignores the cancel
    assert!(!bob.out.is_empty(), "bob's verdict is still on its way");
    deliver(&mut bob, &mut ada).unwrap();
    assert!(
        ada.log
            .contains(&"Outcome { id: 1, entry: 0, verdict: Saved }".to_string())
    );
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    assert_eq!(bob.saved[&path("a")], ada.files[&path("a")]);
    // A reject.
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(100, 1));
    ada.offer(&["a"]);
    deliver(&mut ada, &mut bob).unwrap();
    let actions = bob
        .transfers
        .incoming
        .reject(1, RejectReason::Declined)
        .unwrap();
    bob.receiver_actions(actions);
    let actions = ada
        .transfers
        .outgoing
        .cancel(1, CancelReason::User)
        .unwrap();
    ada.sender_actions(actions);
    deliver(&mut ada, &mut bob).unwrap();
    deliver(&mut bob, &mut ada).unwrap();
    assert!(bob.out.is_empty());
    assert_eq!(ada.log.last().unwrap(), "Finished { id: 1 }");
    // An accept that crosses a cancel.
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(100, 1));
    ada.offer(&["a"]);
    deliver(&mut ada, &mut bob).unwrap();
    accept_all(&mut bob, vec![]);
    let actions = ada
        .transfers
        .outgoing
        .cancel(1, CancelReason::User)
        .unwrap();
    ada.sender_actions(actions);
    settle(&mut ada, &mut bob);
    assert!(
        bob.log
            .contains(&"CancelledByPeer { id: 1, reason: User }".to_string())
    );
    assert_eq!(
        (ada.transfers.outgoing.open(), bob.transfers.incoming.open()),
        (0, 0)
    );
    assert!(bob.saved.is_empty());
}

#[test]
fn offers_are_rejected_withdrawn_or_expire() {
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(10, 1));
    ada.offer(&["a"]);
    ada.offer(&["a"]);
    ada.offer(&["a"]);
    deliver(&mut ada, &mut bob).unwrap();
    let actions = bob
        .transfers
        .incoming
        .reject(1, RejectReason::Declined)
        .unwrap();
    bob.receiver_actions(actions);
    let actions = ada
        .transfers
        .outgoing
        .cancel(2, CancelReason::User)
        .unwrap();
    ada.sender_actions(actions);
    deliver(&mut ada, &mut bob).unwrap();
    assert!(bob.log.contains(&"Withdrawn { id: 2 }".to_string()));
    let start = bob.now;
    assert_eq!(
        bob.transfers.incoming.next_expiry(),
        Some(start + OFFER_EXPIRY)
    );
    assert!(
        bob.transfers
            .incoming
            .expire(start + OFFER_EXPIRY - Duration::from_secs(1))
            .is_empty()
    );
    let actions = bob.transfers.incoming.expire(start + OFFER_EXPIRY);
    bob.receiver_actions(actions);
    assert!(bob.log.contains(&"Expired { id: 3 }".to_string()));
    deliver(&mut bob, &mut ada).unwrap();
    assert!(
        ada.log
            .contains(&"Rejected { id: 1, reason: Declined }".to_string())
    );
    assert!(
        ada.log
            .contains(&"Rejected { id: 3, reason: Expired }".to_string())
    );
    assert_eq!(
        (ada.transfers.outgoing.open(), bob.transfers.incoming.open()),
        (0, 0)
    );
}

#[test]
fn unsafe_or_too_large_offers_are_refused_without_asking() {
    let (mut ada, mut bob) = pair();
    bob.transfers.incoming.set_max_total(1000);
    // An offer the sending core would not build: forged.
    let forged = FileRecord::Offer(Offer {
        id: 1,
        entries: vec![Entry {
            path: vec!["..".into(), ".ssh".into(), "authorized_keys".into()],
            size: 10,
        }],
    });
    ada.seal(&forged);
    ada.files.insert(path("big"), bytes(1001, 1));
    ada.transfers.outgoing = Outgoing::new();
    let _ = ada.transfers.outgoing.offer(
        Manifest::new(vec![Entry {
            path: path("x"),
            size: 1,
        }])
        .unwrap(),
    );
    let (_, second) = ada
        .transfers
        .outgoing
        .offer(
            Manifest::new(vec![Entry {
                path: path("big"),
                size: 1001,
            }])
            .unwrap(),
        )
        .unwrap();
    ada.seal(&second);
    deliver(&mut ada, &mut bob).unwrap();
    assert!(bob.log[0].starts_with("Refused { id: 1,"), "{:?}", bob.log);
    assert!(bob.log[0].contains("reason: UnsafeName"));
    assert!(bob.log[0].contains("`.` and `..` are not names"));
    assert!(bob.log[1].starts_with("Refused { id: 2,"), "{:?}", bob.log);
    assert!(bob.log[1].contains("reason: TooLarge"));
    assert_eq!(bob.transfers.incoming.open(), 0);
    deliver(&mut bob, &mut ada).unwrap();
    assert!(
        ada.log
            .contains(&"Rejected { id: 1, reason: UnsafeName }".to_string())
    );
    assert!(
        ada.log
            .contains(&"Rejected { id: 2, reason: TooLarge }".to_string())
    );
}

#[test]
fn at_most_eight_offers_are_open() {
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(1, 1));
    for _ in 0..8 {
        ada.offer(&["a"]);
    }
    assert!(!ada.transfers.outgoing.can_offer());
    let manifest = Manifest::new(vec![Entry {
        path: path("a"),
        size: 1,
    }])
    .unwrap();
    assert!(matches!(
        ada.transfers.outgoing.offer(manifest),
        Err(ProtocolError::Misuse(_))
    ));
    deliver(&mut ada, &mut bob).unwrap();
    assert_eq!(bob.transfers.incoming.open(), 8);
    // A peer that sends a ninth anyway breaks the protocol.
    let ninth = FileRecord::Offer(Offer {
        id: 9,
        entries: vec![Entry {
            path: path("a"),
            size: 1,
        }],
    });
    ada.seal(&ninth);
    assert_eq!(
        deliver(&mut ada, &mut bob).unwrap_err(),
        ProtocolError::PeerMisbehaved("a ninth open offer")
    );
    // Once one is answered, the next may come.
    let (mut ada, mut bob) = pair();
    ada.files.insert(path("a"), bytes(1, 1));
    for _ in 0..8 {
        ada.offer(&["a"]);
    }
    deliver(&mut ada, &mut bob).unwrap();
    let actions = bob
        .transfers
        .incoming
        .reject(4, RejectReason::Declined)
        .unwrap();
    bob.receiver_actions(actions);
    deliver(&mut bob, &mut ada).unwrap();
    assert!(ada.transfers.outgoing.can_offer());
    ada.offer(&["a"]);
    deliver(&mut ada, &mut bob).unwrap();
    assert_eq!(bob.transfers.incoming.open(), 8);
}

#[test]
fn offers_after_done_are_refused_by_both_halves() {
    let offer = FileRecord::Offer(Offer {
        id: 1,
        entries: vec![Entry {
            path: path("a"),
            size: 1,
        }],
    });
    let (mut ada, mut bob) = pair();
    ada.session.send().done(&mut ada.out).unwrap();
    assert!(matches!(
        ada.session.send().file(&offer, &mut Vec::new()),
        Err(ProtocolError::Misuse(_))
    ));
    // A sender that ignores the rule: DONE (sequence number 0), then an
    // offer sealed at sequence number 1 by a twin under the same key.
    let mut twin = pair().0;
    let mut wire = Vec::new();
    twin.session.send().keepalive(&mut wire).unwrap();
    let keepalive_len = wire.len();
    twin.session.send().file(&offer, &mut wire).unwrap();
    ada.out.extend_from_slice(&wire[keepalive_len..]);
    assert_eq!(
        deliver(&mut ada, &mut bob).unwrap_err(),
        ProtocolError::PeerMisbehaved("offer after DONE")
    );
}

// ------------------------------------------------- out-of-order records

fn entry(p: &str, size: u64) -> Entry {
    Entry {
        path: path(p),
        size,
    }
}

fn offer_record(id: u64, sizes: &[u64]) -> FileRecord<'static> {
    FileRecord::Offer(Offer {
        id,
        entries: sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| entry(&format!("f{i}"), size))
            .collect(),
    })
}

fn start(id: u64, entry: u16, offset: u64) -> FileRecord<'static> {
    FileRecord::Start(Start { id, entry, offset })
}

fn cancel(id: u64, side: CancelSide, reason: CancelReason) -> FileRecord<'static> {
    FileRecord::Cancel(Cancel { id, side, reason })
}

/// Feeds `setup` then `bad` to a fresh receiving side; `bad` must be refused
/// as the peer's fault. Offers are accepted as they arrive unless `pending`.
fn receiver_refuses(setup: &[FileRecord<'static>], bad: FileRecord<'static>, pending: bool) {
    let mut incoming = Incoming::new();
    let now = Instant::now();
    for record in setup {
        let actions = incoming.handle(record.clone(), now).unwrap();
        for action in actions {
            match action {
                ReceiverAction::Offered { id, .. } if !pending => {
                    let mut resume = vec![];
                    if id == 2 {
                        let mut prefix = FileHasher::new();
                        prefix.update(&[0; 5]);
                        resume.push((0, prefix));
                    }
                    incoming.accept(id, resume).unwrap();
                }
                ReceiverAction::Save { .. } => {
                    incoming.saved(SaveOutcome::Saved).unwrap();
                }
                _ => {}
            }
        }
    }
    let shown = format!("{bad:?}");
    match incoming.handle(bad, now) {
        Err(ProtocolError::PeerMisbehaved(_)) => {}
        other => panic!("after {setup:?}, {shown} gave {other:?}"),
    }
}

#[test]
fn every_out_of_order_record_is_refused_by_the_receiver() {
    use CancelReason::{Answer, User};
    use CancelSide::Sender;
    let o1 = offer_record(1, &[10, 0]);
    let o2 = offer_record(2, &[10]);
    let data = FileRecord::Data(&[1; 4]);
    let end = FileRecord::End(End { sha256: [0; 32] });
    let ten = FileRecord::Data(&[1; 10]);
    let end10 = FileRecord::End(End {
        sha256: sha256(&[1; 10]),
    });
    let pending: Vec<(Vec<FileRecord<'static>>, FileRecord<'static>)> = vec![
        (vec![], offer_record(2, &[1])),
        (vec![o1.clone()], offer_record(1, &[1])),
        (vec![o1.clone()], offer_record(3, &[1])),
        (vec![o1.clone()], start(1, 0, 0)),
        (vec![], start(1, 0, 0)),
        (vec![], cancel(1, Sender, User)),
        (vec![o1.clone()], cancel(1, Sender, Answer)),
        (vec![o1.clone()], cancel(2, Sender, User)),
    ];
    for (setup, bad) in pending {
        receiver_refuses(&setup, bad, true);
    }
    let accepted: Vec<(Vec<FileRecord<'static>>, FileRecord<'static>)> = vec![
        (vec![o1.clone()], data.clone()),
        (vec![o1.clone()], end.clone()),
        (vec![o1.clone()], start(1, 1, 0)),
        (vec![o1.clone()], start(1, 2, 0)),
        (vec![o1.clone()], start(1, 0, 3)),
        (vec![o1.clone()], start(2, 0, 0)),
        (vec![o1.clone(), start(1, 0, 0)], start(1, 1, 0)),
        (vec![o1.clone(), start(1, 0, 0)], end.clone()),
        (vec![o1.clone(), start(1, 0, 0)], FileRecord::Data(&[1; 11])),
        (
            vec![o1.clone(), start(1, 0, 0), data.clone(), data.clone()],
            FileRecord::Data(&[1; 3]),
        ),
        (vec![o1.clone(), o2.clone(), start(1, 0, 0)], start(2, 0, 0)),
        (
            vec![
                o1.clone(),
                o2.clone(),
                start(1, 0, 0),
                ten.clone(),
                end10.clone(),
            ],
            start(2, 0, 0),
        ),
        (vec![o1.clone(), o2.clone()], start(2, 0, 4)),
        (vec![o1.clone(), o2.clone()], start(2, 0, 6)),
        (vec![o1.clone(), cancel(1, Sender, User)], start(1, 0, 0)),
        (
            vec![o1.clone(), cancel(1, Sender, User)],
            cancel(1, Sender, Answer),
        ),
        (vec![o1.clone()], cancel(1, Sender, Answer)),
    ];
    for (setup, bad) in accepted {
        receiver_refuses(&setup, bad, false);
    }
    // The control cases pass.
    let mut incoming = Incoming::new();
    let now = Instant::now();
    incoming.handle(o2.clone(), now).unwrap_err();
    let mut incoming = Incoming::new();
    incoming.handle(o1.clone(), now).unwrap();
    incoming.accept(1, vec![]).unwrap();
    incoming.handle(start(1, 0, 0), now).unwrap();
    incoming.handle(data.clone(), now).unwrap();
    // While a save is unreported, nothing more is taken.
    let mut incoming = Incoming::new();
    incoming.handle(offer_record(1, &[0, 0]), now).unwrap();
    incoming.accept(1, vec![]).unwrap();
    incoming.handle(start(1, 0, 0), now).unwrap();
    let empty = sha256(&[]);
    incoming
        .handle(FileRecord::End(End { sha256: empty }), now)
        .unwrap();
    assert!(matches!(
        incoming.handle(start(1, 1, 0), now),
        Err(ProtocolError::Misuse(_))
    ));
    incoming.saved(SaveOutcome::Saved).unwrap();
    incoming.handle(start(1, 1, 0), now).unwrap();
}

/// Feeds `setup` to a sending side with offers 1 (files of 10 and 0
/// bytes) and 2 (one file of 10 bytes), both sent; `bad` must be refused.
fn sender_refuses(setup: &[FileRecord<'static>], bad: FileRecord<'static>, send: bool) {
    let mut outgoing = Outgoing::new();
    for sizes in [&[10u64, 0][..], &[10]] {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| entry(&format!("f{i}"), size))
            .collect();
        outgoing.offer(Manifest::new(entries).unwrap()).unwrap();
    }
    for record in setup {
        outgoing.handle(record).unwrap();
    }
    if send {
        // All of offer 1.
        for _ in 0..2 {
            let next = outgoing.next().unwrap();
            outgoing.start(next.id, next.entry, None).unwrap();
            if next.size > 0 {
                outgoing.data(&vec![0; next.size as usize]).unwrap();
            }
            outgoing.end().unwrap();
        }
    }
    let shown = format!("{bad:?}");
    match outgoing.handle(&bad) {
        Err(ProtocolError::PeerMisbehaved(_)) => {}
        other => panic!("after {setup:?}, {shown} gave {other:?}"),
    }
}

#[test]
fn every_out_of_order_record_is_refused_by_the_sender() {
    use CancelReason::{Answer, User};
    use CancelSide::Receiver;
    let accept = |id, resume: &[(u16, u64)]| {
        FileRecord::Accept(Accept {
            id,
            resume: resume
                .iter()
                .map(|&(entry, offset)| Resume {
                    entry,
                    offset,
                    prefix_sha256: [0; 32],
                })
                .collect(),
        })
    };
    let reject = |id| {
        FileRecord::Reject(Reject {
            id,
            reason: RejectReason::Declined,
        })
    };
    let verdict = |id, entry| {
        FileRecord::Verdict(FileVerdict {
            id,
            entry,
            verdict: Verdict::Saved,
        })
    };
    let a1 = accept(1, &[]);
    let cases: Vec<(Vec<FileRecord<'static>>, FileRecord<'static>, bool)> = vec![
        (vec![], accept(3, &[]), false),
        (vec![], accept(0, &[]), false),
        (vec![a1.clone()], a1.clone(), false),
        (vec![], accept(1, &[(2, 1)]), false),
        (vec![], accept(1, &[(0, 11)]), false),
        (vec![], accept(1, &[(1, 1)]), false),
        (vec![], reject(3), false),
        (vec![a1.clone()], reject(1), false),
        (vec![reject(1)], reject(1), false),
        (vec![], verdict(1, 0), false),
        (vec![a1.clone()], verdict(1, 0), false),
        (vec![a1.clone()], verdict(1, 1), true),
        (vec![a1.clone()], verdict(2, 0), true),
        (vec![], cancel(1, Receiver, User), false),
        (vec![a1.clone()], cancel(1, Receiver, Answer), false),
        (vec![a1.clone()], cancel(3, Receiver, User), false),
        (vec![reject(1)], cancel(1, Receiver, User), false),
    ];
    for (setup, bad, send) in cases {
        sender_refuses(&setup, bad, send);
    }
    // A verdict closes a one-file offer; a second is refused.
    let mut outgoing = Outgoing::new();
    outgoing
        .offer(Manifest::new(vec![entry("a", 1)]).unwrap())
        .unwrap();
    outgoing.handle(&a1).unwrap();
    outgoing.start(1, 0, None).unwrap();
    outgoing.data(&[1]).unwrap();
    outgoing.end().unwrap();
    let actions = outgoing.handle(&verdict(1, 0)).unwrap();
    assert_eq!(actions.last(), Some(&SenderAction::Finished { id: 1 }));
    assert!(outgoing.handle(&verdict(1, 0)).is_err());
}

#[test]
fn the_sending_core_refuses_to_be_misused() {
    let mut outgoing = Outgoing::new();
    outgoing
        .offer(Manifest::new(vec![entry("a", 3), entry("b", 0)]).unwrap())
        .unwrap();
    assert!(outgoing.next().is_none(), "nothing before the accept");
    assert!(outgoing.start(1, 0, None).is_err());
    outgoing
        .handle(&FileRecord::Accept(Accept {
            id: 1,
            resume: vec![],
        }))
        .unwrap();
    assert!(outgoing.start(1, 1, None).is_err(), "not the next file");
    let mut prefix = FileHasher::new();
    prefix.update(b"a");
    assert!(outgoing.start(1, 0, Some(prefix)).is_err(), "no proposal");
    outgoing.start(1, 0, None).unwrap();
    assert!(outgoing.next().is_none(), "one file at a time");
    assert!(outgoing.end().is_err(), "bytes left");
    assert!(outgoing.data(&[]).is_err());
    assert!(outgoing.data(&[1; 4]).is_err(), "past the size");
    outgoing.data(&[1; 3]).unwrap();
    assert!(outgoing.data(&[1]).is_err());
    outgoing.end().unwrap();
    assert!(outgoing.end().is_err());
    assert!(outgoing.cancel(1, CancelReason::Answer).is_err());
    outgoing.cancel(1, CancelReason::User).unwrap();
    assert!(outgoing.cancel(1, CancelReason::User).is_err(), "twice");
    assert!(outgoing.next().is_none());
}

#[test]
fn the_receiving_core_refuses_to_be_misused() {
    let now = Instant::now();
    let mut incoming = Incoming::new();
    incoming.handle(offer_record(1, &[10, 5]), now).unwrap();
    assert!(
        incoming.cancel(1, CancelReason::User).is_err(),
        "reject it instead"
    );
    let prefix = |n: usize| {
        let mut h = FileHasher::new();
        h.update(&vec![0; n]);
        h
    };
    assert!(
        incoming.accept(1, vec![(2, prefix(1))]).is_err(),
        "no such file"
    );
    assert!(
        incoming.accept(1, vec![(0, prefix(11))]).is_err(),
        "longer than the file"
    );
    assert!(incoming.accept(1, vec![(0, prefix(0))]).is_err(), "empty");
    assert!(
        incoming
            .accept(1, vec![(1, prefix(1)), (0, prefix(1))])
            .is_err(),
        "out of order"
    );
    assert!(incoming.accept(2, vec![]).is_err());
    incoming.accept(1, vec![(0, prefix(4))]).unwrap();
    assert!(incoming.accept(1, vec![]).is_err(), "twice");
    assert!(
        incoming.reject(1, RejectReason::Declined).is_err(),
        "accepted"
    );
    assert!(
        incoming.saved(SaveOutcome::Saved).is_err(),
        "nothing to save"
    );
    assert!(incoming.cancel(1, CancelReason::Answer).is_err());
    incoming.cancel(1, CancelReason::User).unwrap();
    assert!(incoming.cancel(1, CancelReason::User).is_err(), "twice");
}

#[test]
fn a_session_that_ends_keeps_the_partial_in_flight() {
    let (_, mut bob) = halfway();
    let actions = bob.transfers.incoming.session_ended();
    assert_eq!(
        actions,
        [
            ReceiverAction::Stop {
                id: 1,
                entry: 1,
                keep_partial: true
            },
            ReceiverAction::Finished { id: 1 }
        ]
    );
    assert_eq!(bob.transfers.incoming.open(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the file, the chunk size, the partial (right, wrong or
    /// absent), the receiver saves exactly the sender's file.
    #[test]
    fn any_file_any_partial_arrives_intact(
        size in 0usize..6000,
        seed in any::<u8>(),
        partial in 0usize..7000,
        flip in proptest::option::of(0usize..7000),
        chunk in 1usize..3000,
    ) {
        let file = bytes(size, seed);
        let mut held = bytes(partial, seed);
        if let Some(at) = flip.filter(|&at| at < held.len()) {
            held[at] ^= 1;
        }
        let (mut ada, mut bob) = pair();
        ada.files.insert(path("f"), file.clone());
        bob.partials.insert(path("f"), held.clone());
        ada.offer(&["f"]);
        deliver(&mut ada, &mut bob).unwrap();
        let proposals = if held.is_empty() || held.len() > size {
            vec![]
        } else {
            let mut prefix = FileHasher::new();
            prefix.update(&held);
            vec![(0, prefix)]
        };
        accept_all(&mut bob, proposals);
        for _ in 0..1000 {
            ada.send_files(3, chunk);
            if ada.out.is_empty() && bob.out.is_empty() {
                break;
            }
            deliver(&mut ada, &mut bob).unwrap();
            deliver(&mut bob, &mut ada).unwrap();
        }
        prop_assert_eq!(&bob.saved[&path("f")], &file);
        let resumed = !held.is_empty() && held.len() <= size && file.starts_with(&held);
        prop_assert_eq!(bob.data_received, if resumed { (size - held.len()) as u64 } else { size as u64 });
    }
}
