//! Loading `known_peers.toml`: decoding and checking a store of 12,000 and
//! of 100,000 entries (issue 11, item 16: loading was quadratic, 8.4 s at
//! 12,000 entries). Run with `cargo bench -p chat-benches --bench known_peers`; results in
//! docs/PERFORMANCE.md.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use chat::crypto::Fingerprint;
use chat::trust::KnownPeers;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A store of `count` entries as `chat` writes them, each with an address.
fn store(count: u32) -> String {
    let mut text = String::with_capacity(count as usize * 170);
    for i in 0..count {
        let fingerprint = Fingerprint::of_spki_der(&i.to_be_bytes());
        let _ = write!(
            text,
            "[[peer]]\nname = \"peer{i}\"\nfingerprint = \"{fingerprint}\"\n\
             addresses = [\"host{i}.example.org:7777\"]\nadded = 2026-01-01T00:00:00Z\n\n"
        );
    }
    text
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("known_peers_parse");
    group.sample_size(10);
    for count in [12_000u32, 100_000] {
        let text = store(count);
        group.throughput(Throughput::Elements(u64::from(count)));
        group.bench_with_input(BenchmarkId::from_parameter(count), &text, |b, text| {
            b.iter(|| {
                KnownPeers::parse(Path::new("known_peers.toml"), black_box(text))
                    .expect("a valid store")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
