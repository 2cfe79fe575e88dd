//! The pure core's costs: handshake CPU per side for each identity size,
//! record sealing and opening by chunk size, and one small message.
//! Run with `cargo bench -p chat-benches --bench core`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chat::crypto::PrivateKey;
use chat::handshake::{Initiator, Responder};
use chat::protocol::{MAX_RECORD_FRAME, TAG_LEN};
use chat::wire::FrameDecoder;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A copy of a key by way of PKCS#8 (the responder consumes its transient key).
fn copy(key: &PrivateKey) -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&key.to_pkcs8_pem(), || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// One whole handshake; returns the time spent in the initiator's and in
/// the responder's steps (the transient key is made beforehand, as the
/// server's background generator does).
fn handshake(
    initiator: &PrivateKey,
    responder: &PrivateKey,
    transient: PrivateKey,
) -> (Duration, Duration) {
    let mut rng = rand::rng();
    let (mut ti, mut tr) = (Duration::ZERO, Duration::ZERO);
    let t = Instant::now();
    let (i, m1) = Initiator::start(&mut rng);
    ti += t.elapsed();
    let t = Instant::now();
    let (r, m2) = Responder::read_client_hello(&m1)
        .unwrap()
        .reply(&mut rng, transient)
        .unwrap();
    tr += t.elapsed();
    let t = Instant::now();
    let (i, m3) = i.read_server_hello(&mut rng, &m2).unwrap();
    ti += t.elapsed();
    let t = Instant::now();
    let (r, m45) = r
        .read_key_transport(&mut rng, responder, "bob", &m3)
        .unwrap();
    tr += t.elapsed();
    let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
    decoder.push(&m45);
    let mut m4 = decoder.next_frame().unwrap().unwrap().to_vec();
    let mut m5 = decoder.next_frame().unwrap().unwrap().to_vec();
    let t = Instant::now();
    let verified = i
        .read_responder_identity(&mut m4)
        .unwrap()
        .read_responder_auth(&mut m5)
        .unwrap();
    let (_, m67) = verified.finish(&mut rng, initiator, "ada").unwrap();
    ti += t.elapsed();
    decoder.push(&m67);
    let mut m6 = decoder.next_frame().unwrap().unwrap().to_vec();
    let mut m7 = decoder.next_frame().unwrap().unwrap().to_vec();
    let t = Instant::now();
    black_box(
        r.read_initiator_identity(&mut m6)
            .unwrap()
            .read_initiator_auth(&mut m7)
            .unwrap(),
    );
    tr += t.elapsed();
    (ti, tr)
}

fn handshakes(c: &mut Criterion) {
    let mut rng = rand::rng();
    let transient = PrivateKey::generate(&mut rng, 2048).unwrap();
    let mut group = c.benchmark_group("handshake");
    group.sample_size(20);
    for bits in [2048, 3072, 4096] {
        let initiator = PrivateKey::generate(&mut rng, bits).unwrap();
        let responder = PrivateKey::generate(&mut rng, bits).unwrap();
        for side in ["initiator", "responder"] {
            group.bench_function(BenchmarkId::new(side, bits), |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let (ti, tr) = handshake(&initiator, &responder, copy(&transient));
                        total += if side == "initiator" { ti } else { tr };
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

fn records(c: &mut Criterion) {
    let mut group = c.benchmark_group("records");
    for chunk in [1024usize, 16 * 1024, 64 * 1024, 256 * 1024] {
        group.throughput(Throughput::Bytes(chunk as u64));
        group.bench_with_input(BenchmarkId::new("seal", chunk), &chunk, |b, &chunk| {
            let (mut ada, _) = chat::fuzzing::session_pair();
            ada.send()
                .start_message(u64::MAX / 2, &mut Vec::new())
                .unwrap();
            let mut frame = vec![7u8; 5 + chunk + TAG_LEN];
            let mut key_update = Vec::new();
            b.iter(|| {
                key_update.clear();
                ada.send()
                    .chunk_in_place(black_box(&mut frame), &mut key_update)
                    .unwrap()
            });
        });
        group.bench_with_input(BenchmarkId::new("open", chunk), &chunk, |b, &chunk| {
            b.iter_custom(|iterations| {
                let (mut ada, mut bob) = chat::fuzzing::session_pair();
                bob.recv().set_max_message(u64::MAX);
                let mut sealed = Vec::new();
                ada.send().start_message(u64::MAX / 2, &mut sealed).unwrap();
                let mut start = sealed.clone();
                bob.recv().open(&mut start).unwrap();
                let mut frames: Vec<Vec<u8>> = Vec::new();
                for _ in 0..iterations {
                    let mut frame = vec![7u8; 5 + chunk + TAG_LEN];
                    let mut key_update = Vec::new();
                    ada.send()
                        .chunk_in_place(&mut frame, &mut key_update)
                        .unwrap();
                    if !key_update.is_empty() {
                        frames.push(key_update);
                    }
                    frames.push(frame);
                }
                let t = Instant::now();
                for mut frame in frames {
                    black_box(bob.recv().open(&mut frame).unwrap());
                }
                t.elapsed()
            })
        });
    }
    group.finish();
}

fn small_message(c: &mut Criterion) {
    c.bench_function("small message (100 bytes): seal and open", |b| {
        let (mut ada, mut bob) = chat::fuzzing::session_pair();
        let text = [b'x'; 100];
        let mut wire = Vec::with_capacity(256);
        let mut decoder = FrameDecoder::new(MAX_RECORD_FRAME);
        b.iter(|| {
            wire.clear();
            ada.send().message(&text, 64 * 1024, &mut wire).unwrap();
            decoder.push(&wire);
            while let Some(frame) = decoder.next_frame().unwrap() {
                black_box(bob.recv().open(frame).unwrap());
            }
        });
    });
}

/// One key update on each side: the sender's KEY_UPDATE (HKDF three times,
/// an AES key schedule, one sealed record) and the receiver's switch.
fn key_update(c: &mut Criterion) {
    c.bench_function("key update: send and receive one", |b| {
        let (mut ada, mut bob) = chat::fuzzing::session_pair();
        let mut wire = Vec::with_capacity(64);
        b.iter(|| {
            wire.clear();
            ada.send().update_key(&mut wire).unwrap();
            black_box(bob.recv().open(&mut wire).unwrap());
        });
    });
}

criterion_group!(benches, handshakes, records, small_message, key_update);
criterion_main!(benches);
