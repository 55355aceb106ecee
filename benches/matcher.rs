//! Micro-benches of the sender's hot loops: the rolling checksum and the
//! delta matcher (`cargo bench --bench matcher`).
//!
//! Under `cargo test --all-targets` criterion runs each bench once, so the
//! inputs are built once per process and kept small enough for that.

use std::hint::black_box;
use std::io::{self, Cursor};
use std::sync::OnceLock;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rrsync::checksum::{checksum1, ChecksumKind, Rolling};
use rrsync::delta::{generate_sums, BlockSums, Matcher, SumHead, TokenSink};

const MIB: usize = 1 << 20;
const PROTO: u8 = 31;
const KIND: ChecksumKind = ChecksumKind::Xxh128;
const SEED: u32 = 0x1234_5678;

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut state: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        v.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The 16 MiB source the matcher scans.
fn source() -> &'static [u8] {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| random_bytes(16 * MIB, 0x9e37_79b9_7f4a_7c15))
}

/// Block sums of `basis` as a generator would send them.
fn sums_of(basis: &[u8]) -> BlockSums {
    let head = SumHead::for_file(basis.len() as i64, PROTO, None, false, KIND.digest_len())
        .expect("bench basis length is valid");
    generate_sums(&mut Cursor::new(basis), &head, KIND, SEED, true).expect("in-memory sums")
}

/// Sums of a lightly edited copy of the source: 64 scattered 32-byte edits.
fn edited_sums() -> &'static BlockSums {
    static S: OnceLock<BlockSums> = OnceLock::new();
    S.get_or_init(|| {
        let mut basis = source().to_vec();
        let noise = random_bytes(64 * 32, 42);
        for (i, patch) in noise.chunks(32).enumerate() {
            let at = (i * 7919 * 31 + 12345) % (basis.len() - 32);
            basis[at..at + 32].copy_from_slice(patch);
        }
        sums_of(&basis)
    })
}

/// Sums of unrelated data of the same length: nothing matches.
fn unrelated_sums() -> &'static BlockSums {
    static S: OnceLock<BlockSums> = OnceLock::new();
    S.get_or_init(|| sums_of(&random_bytes(16 * MIB, 7)))
}

/// Counts what the matcher produces, as cheaply as possible.
#[derive(Default)]
struct Count {
    literal: usize,
    matched: usize,
}

impl TokenSink for Count {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        self.literal += data.len();
        Ok(())
    }
    fn matched(&mut self, _block: u32, data: &[u8]) -> io::Result<()> {
        self.matched += data.len();
        Ok(())
    }
}

fn rolling(c: &mut Criterion) {
    let data = random_bytes(MIB, 1);
    let mut g = c.benchmark_group("rolling");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("checksum1_1MiB", |b| b.iter(|| checksum1(black_box(&data))));
    g.bench_function("roll_1MiB_window_700", |b| {
        let win = 700;
        b.iter(|| {
            let d = black_box(&data);
            let mut r = Rolling::new(&d[..win]);
            let mut acc = 0u32;
            for (&o, &i) in d.iter().zip(&d[win..]) {
                r.roll(o, i);
                acc ^= r.sum();
            }
            acc
        })
    });
    g.finish();
}

fn matcher(c: &mut Criterion) {
    let src = source();
    let mut g = c.benchmark_group("matcher");
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.sample_size(10);
    for (name, sums) in [
        ("16MiB_light_edits", edited_sums()),
        ("16MiB_no_match", unrelated_sums()),
    ] {
        let mut m = Matcher::new();
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Cursor::new(src),
                |reader| {
                    let mut sink = Count::default();
                    let out = m
                        .match_file(reader, sums, KIND, SEED, true, &mut sink)
                        .expect("in-memory match");
                    assert_eq!(sink.literal + sink.matched, src.len());
                    out.stats
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, rolling, matcher);
criterion_main!(benches);
