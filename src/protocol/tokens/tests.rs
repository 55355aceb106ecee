//! Tests for the token stream: capture vectors from stock rsync 3.5.0,
//! encoder framing, and encoder -> decoder round trips for every kind.

use proptest::prelude::*;

use super::*;

const ALL_KINDS: [CompressKind; 5] = [
    CompressKind::None,
    CompressKind::Zlib,
    CompressKind::Zlibx,
    CompressKind::Zstd,
    CompressKind::Lz4,
];

/// `big()` from tools/mktrees.py: 3000 bytes of numbered lines.
fn big() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..60 {
        out.extend_from_slice(
            format!("line {i:04}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
    }
    out.truncate(3000);
    out
}

/// The delta source of captures 12-15: big() with bytes 1400..1410 changed.
fn big_changed() -> Vec<u8> {
    let mut b = big();
    b[1400..1410].copy_from_slice(b"CHANGED!!!");
    b
}

/// Incompressible pseudo-random bytes (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A basis file cut into blocks of `blength`.
struct Basis<'a> {
    data: &'a [u8],
    blength: usize,
}

impl Basis<'_> {
    fn count(&self) -> usize {
        self.data.len().div_ceil(self.blength)
    }
    fn block(&self, i: usize) -> &[u8] {
        let start = i * self.blength;
        &self.data[start..(start + self.blength).min(self.data.len())]
    }
}

/// Decodes one file the way upstream's receive_data() applies it.
fn decode_file(
    dec: &mut TokenDecoder,
    r: &mut &[u8],
    basis: &Basis<'_>,
    blocks_seen: &mut Vec<u32>,
) -> Result<Vec<u8>, TokenError> {
    let mut out = Vec::new();
    loop {
        match dec.next(r)? {
            Token::Literal(d) => {
                assert!(!d.is_empty() && d.len() <= MAX_LITERAL_LEN);
                out.extend_from_slice(d);
            }
            Token::Block(i) => {
                assert!((i as usize) < basis.count(), "block {i} out of range");
                let data = basis.block(i as usize);
                out.extend_from_slice(data);
                blocks_seen.push(i);
                dec.see_block(data)?;
            }
            Token::End => return Ok(out),
        }
    }
}

fn tree_files() -> Vec<Vec<u8>> {
    vec![
        big(),
        Vec::new(),
        b"hello".to_vec(),
        b"hardlinked\n".to_vec(),
        b"hardlinked\n".to_vec(),
        b"inner\n".to_vec(),
    ]
}

fn check_whole_file_session(kind: CompressKind, stream: &[u8]) {
    let mut dec = TokenDecoder::new(kind, 32);
    let mut r = stream;
    let none = Basis {
        data: &[],
        blength: 1,
    };
    for (n, want) in tree_files().iter().enumerate() {
        let got = decode_file(&mut dec, &mut r, &none, &mut Vec::new()).unwrap();
        assert_eq!(&got, want, "{kind:?} file #{n}");
    }
    assert!(r.is_empty(), "{kind:?}: {} bytes left", r.len());
}

#[test]
fn capture_09_zlibx_session_decodes() {
    check_whole_file_session(
        CompressKind::Zlibx,
        include_bytes!("testdata/09-zlibx-session.bin"),
    );
}

#[test]
fn capture_10_zstd_session_decodes_with_one_stream() {
    // hard2's 9-byte payload only decodes with hard1 in the session history.
    check_whole_file_session(
        CompressKind::Zstd,
        include_bytes!("testdata/10-zstd-session.bin"),
    );
}

#[test]
fn capture_11_lz4_session_decodes() {
    check_whole_file_session(
        CompressKind::Lz4,
        include_bytes!("testdata/11-lz4-session.bin"),
    );
}

fn check_delta_capture(kind: CompressKind, stream: &[u8]) {
    let basis_data = big();
    let basis = Basis {
        data: &basis_data,
        blength: 300,
    };
    let mut dec = TokenDecoder::new(kind, 32);
    let mut r = stream;
    let mut blocks = Vec::new();
    let got = decode_file(&mut dec, &mut r, &basis, &mut blocks).unwrap();
    assert!(r.is_empty());
    assert_eq!(blocks, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(got, big_changed());
}

#[test]
fn capture_13_delta_zlibx_reconstructs_big_txt() {
    check_delta_capture(
        CompressKind::Zlibx,
        include_bytes!("testdata/13-delta-zlibx.bin"),
    );
}

#[test]
fn capture_14_delta_zlib_needs_history_insertion() {
    let stream = include_bytes!("testdata/14-delta-zlib.bin");
    check_delta_capture(CompressKind::Zlib, stream);
    // Without the history insertion the payload must not decode to the file.
    let basis_data = big();
    let basis = Basis {
        data: &basis_data,
        blength: 300,
    };
    let mut dec = TokenDecoder::new(CompressKind::Zlibx, 32);
    let mut r: &[u8] = stream;
    let res = decode_file(&mut dec, &mut r, &basis, &mut Vec::new());
    assert!(res.map_or(true, |f| f != big_changed()));
}

/// Encodes the capture-12 delta (blocks 0-3, literal 1200..1500, blocks 5-9).
fn encode_big_delta(enc: &mut TokenEncoder, out: &mut Vec<u8>) {
    let basis_data = big();
    let basis = Basis {
        data: &basis_data,
        blength: 300,
    };
    let src = big_changed();
    for i in 0..4 {
        enc.matched(out, i, basis.block(i as usize)).unwrap();
    }
    enc.literal(out, &src[1200..1500]).unwrap();
    for i in 5..10 {
        enc.matched(out, i, basis.block(i as usize)).unwrap();
    }
    enc.end_file(out).unwrap();
}

#[test]
fn encoder_framing_matches_stock_delta() {
    for kind in [
        CompressKind::Zlibx,
        CompressKind::Zlib,
        CompressKind::Zstd,
        CompressKind::Lz4,
    ] {
        let mut enc = TokenEncoder::new(kind, None, 32);
        let mut out = Vec::new();
        encode_big_delta(&mut enc, &mut out);
        // c0 03 00 = run of 4 from block 0; c2 04 00 = run of 5 from 3+2.
        assert_eq!(&out[..3], &[0xc0, 0x03, 0x00], "{kind:?}");
        assert_eq!(out[3] & 0xc0, 0x40, "{kind:?}");
        assert_eq!(&out[out.len() - 4..], &[0xc2, 0x04, 0x00, 0x00], "{kind:?}");
        check_delta_capture(kind, &out);
    }
    // Plain tokens are fully determined: compare with capture 12's layout.
    let mut enc = TokenEncoder::new(CompressKind::None, None, 32);
    let mut out = Vec::new();
    encode_big_delta(&mut enc, &mut out);
    let mut want = Vec::new();
    for t in [-1i32, -2, -3, -4, 300] {
        want.extend_from_slice(&t.to_le_bytes());
    }
    want.extend_from_slice(&big_changed()[1200..1500]);
    for t in [-6i32, -7, -8, -9, -10, 0] {
        want.extend_from_slice(&t.to_le_bytes());
    }
    assert_eq!(out, want);
}

#[test]
fn skipping_compression_stores_zlib_and_still_decodes() {
    for kind in [CompressKind::Zlib, CompressKind::Zlibx] {
        let (mut stored, mut deflated) = (Vec::new(), Vec::new());
        encode_big_delta(
            &mut TokenEncoder::skipping_compression(kind, None, 32),
            &mut stored,
        );
        encode_big_delta(&mut TokenEncoder::new(kind, None, 32), &mut deflated);
        // The 300 literal bytes go out whole (they squeeze to far less).
        assert!(
            stored.len() > 300 && deflated.len() < 250,
            "{kind:?}: {} vs {}",
            stored.len(),
            deflated.len()
        );
        check_delta_capture(kind, &stored);
    }
    // zstd keeps its level (upstream compresses it whatever the list says).
    let (mut a, mut b) = (Vec::new(), Vec::new());
    encode_big_delta(
        &mut TokenEncoder::skipping_compression(CompressKind::Zstd, None, 32),
        &mut a,
    );
    encode_big_delta(&mut TokenEncoder::new(CompressKind::Zstd, None, 32), &mut b);
    assert_eq!(a, b);
}

#[test]
fn zlib_history_insertion_shrinks_repeated_block() {
    // A literal equal to the block just matched compresses to a back
    // reference only when the block is in the history (legacy zlib).
    let block = noise(4000, 7);
    let mut sizes = Vec::new();
    for kind in [CompressKind::Zlib, CompressKind::Zlibx] {
        let mut enc = TokenEncoder::new(kind, None, 31);
        let mut out = Vec::new();
        enc.matched(&mut out, 0, &block).unwrap();
        enc.literal(&mut out, &block).unwrap();
        enc.end_file(&mut out).unwrap();
        let basis = Basis {
            data: &block,
            blength: 4000,
        };
        let mut dec = TokenDecoder::new(kind, 31);
        let mut r: &[u8] = &out;
        let got = decode_file(&mut dec, &mut r, &basis, &mut Vec::new()).unwrap();
        assert_eq!(got, [&block[..], &block[..]].concat());
        sizes.push(out.len());
    }
    assert!(sizes[0] < 100 && sizes[1] > 3000, "{sizes:?}");
}

#[test]
fn zlib_big_blocks_both_protocol_quirks() {
    // Blocks longer than 0xFFFF: before protocol 31 both sides feed the
    // first 0xFFFF bytes repeatedly; the literal references the history.
    for blen in [0x1_0000usize + 5, 0x2_0000 - 2, 0x1fffe, 0x1_0000 + 40000] {
        let basis_data: Vec<u8> = (0..blen as u32 * 2)
            .map(|i| (i.wrapping_mul(2246822519) >> 20) as u8)
            .collect();
        let basis = Basis {
            data: &basis_data,
            blength: blen,
        };
        for protocol in [29u8, 30, 31, 32] {
            let mut enc = TokenEncoder::new(CompressKind::Zlib, None, protocol);
            let mut out = Vec::new();
            enc.matched(&mut out, 1, basis.block(1)).unwrap();
            // Reference both the block's start and its end.
            let mut lit = basis.block(1)[..3000].to_vec();
            lit.extend_from_slice(&basis.block(1)[blen - 3000..]);
            lit.extend_from_slice(&basis.block(0)[..0xffff.min(blen) - 100][..2000]);
            enc.literal(&mut out, &lit).unwrap();
            enc.matched(&mut out, 0, basis.block(0)).unwrap();
            enc.literal(&mut out, &lit).unwrap();
            enc.end_file(&mut out).unwrap();
            let mut dec = TokenDecoder::new(CompressKind::Zlib, protocol);
            let mut r: &[u8] = &out;
            let got = decode_file(&mut dec, &mut r, &basis, &mut Vec::new()).unwrap();
            let want = [basis.block(1), &lit, basis.block(0), &lit].concat();
            assert!(got == want, "blen {blen:#x} protocol {protocol}");
        }
    }
}

#[test]
fn zlib_history_tail_matches_upstream_feed() {
    // Rebuild what upstream feeds, piece by piece, and compare the tail.
    for len in [
        1usize,
        100,
        32768,
        40000,
        0xffff,
        0x10000,
        0x10000 + 7,
        0x1fffe,
        0x1ffff,
        0x2_8000,
    ] {
        let block: Vec<u8> = (0..len as u32)
            .map(|i| (i % 253) as u8 ^ (i >> 8) as u8)
            .collect();
        for protocol in [30u8, 31] {
            let mut fed = Vec::new();
            let (mut off, mut left) = (0usize, len);
            while left > 0 {
                let n1 = left.min(0xffff);
                fed.extend_from_slice(&block[off..off + n1]);
                if protocol >= 31 {
                    off += n1;
                }
                left -= n1;
            }
            let want = &fed[fed.len().saturating_sub(32768)..];
            assert_eq!(
                &*zlib_history_tail(&block, protocol),
                want,
                "len {len} p{protocol}"
            );
        }
    }
}

#[test]
fn long_runs_and_far_jumps() {
    // 70000 consecutive one-byte blocks (runs are capped at 65536 blocks),
    // then jumps backwards and beyond 63 (TOKEN_LONG / TOKENRUN_LONG).
    let basis_data: Vec<u8> = (0..70_100u32).map(|i| (i % 251) as u8).collect();
    let basis = Basis {
        data: &basis_data,
        blength: 1,
    };
    let mut seq: Vec<u32> = (0..70_000).collect();
    seq.extend([5, 6, 7, 100, 200, 201, 264, 69_999, 70_000, 3, 3, 3, 67]);
    for kind in ALL_KINDS {
        let mut enc = TokenEncoder::new(kind, None, 32);
        let mut out = Vec::new();
        let mut want = Vec::new();
        for &i in &seq {
            enc.matched(&mut out, i, basis.block(i as usize)).unwrap();
            want.extend_from_slice(basis.block(i as usize));
        }
        enc.end_file(&mut out).unwrap();
        if kind != CompressKind::None {
            // 65536-block run (rel 0, count 65535) then the rest relative.
            assert_eq!(&out[..3], &[0xc0, 0xff, 0xff], "{kind:?}");
            assert!(out.len() < 64, "{kind:?}: {} bytes", out.len());
        }
        let mut dec = TokenDecoder::new(kind, 32);
        let mut r: &[u8] = &out;
        let mut blocks = Vec::new();
        let got = decode_file(&mut dec, &mut r, &basis, &mut blocks).unwrap();
        assert_eq!(blocks, seq, "{kind:?}");
        assert_eq!(got, want, "{kind:?}");
        assert!(r.is_empty());
    }
}

#[test]
fn max_block_index_round_trips() {
    for kind in ALL_KINDS {
        let mut enc = TokenEncoder::new(kind, None, 32);
        let mut out = Vec::new();
        enc.matched(&mut out, MAX_BLOCK_INDEX, &[]).unwrap();
        enc.matched(&mut out, 0, &[]).unwrap();
        enc.matched(&mut out, MAX_BLOCK_INDEX - 1, &[]).unwrap();
        enc.matched(&mut out, MAX_BLOCK_INDEX, &[]).unwrap();
        enc.end_file(&mut out).unwrap();
        assert!(matches!(
            enc.matched(&mut out, MAX_BLOCK_INDEX + 1, &[]),
            Err(TokenError::BlockIndex(_))
        ));
        let mut dec = TokenDecoder::new(kind, 32);
        let mut r: &[u8] = &out;
        let mut got = Vec::new();
        loop {
            match dec.next(&mut r).unwrap() {
                Token::Block(i) => got.push(i),
                Token::End => break,
                Token::Literal(_) => panic!("no literals sent"),
            }
        }
        assert_eq!(
            got,
            [MAX_BLOCK_INDEX, 0, MAX_BLOCK_INDEX - 1, MAX_BLOCK_INDEX]
        );
    }
}

#[test]
fn large_literals_are_chunked() {
    let mut data = noise(200_000, 3);
    data[100_000..150_000].fill(b'x');
    for kind in ALL_KINDS {
        let mut enc = TokenEncoder::new(kind, None, 32);
        let mut out = Vec::new();
        enc.literal(&mut out, &data).unwrap();
        enc.end_file(&mut out).unwrap();
        enc.end_file(&mut out).unwrap(); // an empty file
        let mut dec = TokenDecoder::new(kind, 32);
        let mut r: &[u8] = &out;
        let none = Basis {
            data: &[],
            blength: 1,
        };
        assert_eq!(
            decode_file(&mut dec, &mut r, &none, &mut Vec::new()).unwrap(),
            data
        );
        assert_eq!(
            decode_file(&mut dec, &mut r, &none, &mut Vec::new()).unwrap(),
            b""
        );
        assert!(r.is_empty());
        // Every compressed chunk respects MAX_DATA_COUNT (checked by walking).
        if kind == CompressKind::None {
            let mut r: &[u8] = &out;
            let mut buf = [0u8; 4];
            use std::io::Read;
            loop {
                r.read_exact(&mut buf).unwrap();
                let n = i32::from_le_bytes(buf);
                if n == 0 {
                    break;
                }
                assert!(n as usize <= CHUNK_SIZE);
                r = &r[n as usize..];
            }
        }
    }
}

#[test]
fn plain_decoder_accepts_long_literal_run_in_chunks() {
    // rsync >= 3.4.3 reads over-long literal tokens CHUNK_SIZE at a time.
    let mut s = Vec::new();
    s.extend_from_slice(&70_000i32.to_le_bytes());
    s.extend((0..70_000u32).map(|i| i as u8));
    s.extend_from_slice(&i32::MIN.to_le_bytes());
    s.extend_from_slice(&0i32.to_le_bytes());
    let mut dec = TokenDecoder::new(CompressKind::None, 32);
    let mut r: &[u8] = &s;
    let mut lens = Vec::new();
    loop {
        match dec.next(&mut r).unwrap() {
            Token::Literal(d) => lens.push(d.len()),
            Token::Block(i) => assert_eq!(i, 0x7fff_ffff),
            Token::End => break,
        }
    }
    assert_eq!(lens, [32768, 32768, 70_000 - 65536]);
}

#[test]
fn decoder_rejects_garbage() {
    let cases: &[(CompressKind, &[u8])] = &[
        (CompressKind::Zlibx, &[0x01]),                         // unknown flag
        (CompressKind::Zlibx, &[0x20, 0xff, 0xff, 0xff, 0xff]), // negative long
        (CompressKind::Zlibx, &[0x20, 0xff, 0xff, 0xff, 0x7f]), // > MAX_TOKEN_INDEX
        (CompressKind::Zlibx, &[0xc0, 0x00, 0x00]),             // zero run
        (CompressKind::Zstd, &[0x21, 0xfe, 0xff, 0xff, 0x7f, 1, 0]), // run overflow
        (CompressKind::Zlibx, &[0x40, 0x03, 0xff, 0xff, 0xff]), // bad deflate
        (CompressKind::Zstd, &[0x40, 0x03, 0xff, 0xff, 0xff]),  // bad zstd
        (CompressKind::Lz4, &[0x40, 0x02, 0xf0, 0x00]),         // bad lz4
        (CompressKind::Zlib, &[0x40, 0x05]),                    // truncated chunk
        (CompressKind::None, &[0x05, 0x00, 0x00, 0x00, b'a']),  // truncated literal
    ];
    for (kind, bytes) in cases {
        let mut dec = TokenDecoder::new(*kind, 32);
        let mut r: &[u8] = bytes;
        let mut res = Ok(());
        for _ in 0..10 {
            match dec.next(&mut r) {
                Ok(Token::End) => break,
                Ok(_) => {}
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        assert!(res.is_err(), "{kind:?} {bytes:02x?} accepted");
    }
    // Relative tokens must not overflow MAX_TOKEN_INDEX.
    let mut s = vec![0x20];
    s.extend_from_slice(&(MAX_BLOCK_INDEX as i32).to_le_bytes());
    s.push(0x81);
    let mut dec = TokenDecoder::new(CompressKind::Lz4, 32);
    let mut r: &[u8] = &s;
    assert_eq!(dec.next(&mut r).unwrap(), Token::Block(MAX_BLOCK_INDEX));
    assert!(matches!(dec.next(&mut r), Err(TokenError::BadTokenNumber)));
}

#[test]
fn codecs_can_move_to_role_threads() {
    fn is_send<T: Send>() {}
    is_send::<TokenEncoder>();
    is_send::<TokenDecoder>();
}

#[test]
fn resolve_level_follows_upstream() {
    assert_eq!(
        CompressKind::Zlib.resolve_level(None),
        (CompressKind::Zlib, 6)
    );
    assert_eq!(
        CompressKind::Zlibx.resolve_level(Some(0)),
        (CompressKind::None, 0)
    );
    assert_eq!(
        CompressKind::Zlib.resolve_level(Some(42)),
        (CompressKind::Zlib, 9)
    );
    assert_eq!(
        CompressKind::Zstd.resolve_level(Some(0)),
        (CompressKind::Zstd, 3)
    );
    assert_eq!(CompressKind::Zstd.resolve_level(Some(99)).1, 22);
    assert_eq!(
        CompressKind::Lz4.resolve_level(Some(5)),
        (CompressKind::Lz4, 0)
    );
}

#[test]
fn fuzz_entry_survives_capture_mutations() {
    let vectors: [&[u8]; 5] = [
        include_bytes!("testdata/09-zlibx-session.bin"),
        include_bytes!("testdata/10-zstd-session.bin"),
        include_bytes!("testdata/11-lz4-session.bin"),
        include_bytes!("testdata/13-delta-zlibx.bin"),
        include_bytes!("testdata/14-delta-zlib.bin"),
    ];
    for v in vectors {
        for sel in 0u8..10 {
            for cut in [0, 1, 7, v.len() / 2, v.len()] {
                let mut d = vec![sel | if sel & 1 == 1 { 0x80 } else { 0 }];
                d.extend_from_slice(&v[..cut]);
                decoder_fuzz_entry(&d);
                if cut > 3 {
                    d[cut - 2] ^= 0x5a;
                    decoder_fuzz_entry(&d);
                }
            }
        }
    }
}

/// One step of a generated file delta.
#[derive(Debug, Clone)]
enum Op {
    /// Literal data.
    Lit(Vec<u8>),
    /// Literal data copied from the basis (exercises history references).
    LitFromBasis(usize, usize),
    /// The block after the previous one (extends a run).
    NextBlock,
    /// Any block (`% count`).
    Block(u32),
}

#[derive(Debug, Clone)]
struct FileCase {
    basis: Vec<u8>,
    blength: usize,
    ops: Vec<Op>,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 1..300).prop_map(Op::Lit),
        1 => (1usize..40_000, any::<u8>()).prop_map(|(n, b)| {
            Op::Lit((0..n).map(|i| b.wrapping_add((i / 7) as u8)).collect())
        }),
        2 => (any::<usize>(), 1usize..2000).prop_map(|(a, b)| Op::LitFromBasis(a, b)),
        4 => Just(Op::NextBlock),
        3 => any::<u32>().prop_map(Op::Block),
    ]
}

fn file_strategy() -> impl Strategy<Value = FileCase> {
    (
        prop::collection::vec(any::<u8>(), 0..6000),
        1usize..700,
        prop::collection::vec(op_strategy(), 0..40),
    )
        .prop_map(|(mut basis, blength, ops)| {
            // Make the basis partly compressible and self-similar.
            for i in 0..basis.len() / 2 {
                basis[i] = (i % 37) as u8;
            }
            FileCase {
                basis,
                blength,
                ops,
            }
        })
}

/// Runs a session through encoder and decoder and compares every file.
fn round_trip(kind: CompressKind, protocol: u8, level: Option<i32>, files: &[FileCase]) {
    let mut enc = TokenEncoder::new(kind, level, protocol);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for f in files {
        let basis = Basis {
            data: &f.basis,
            blength: f.blength,
        };
        let count = basis.count();
        let mut want = Vec::new();
        let mut blocks = Vec::new();
        let mut prev: Option<usize> = None;
        for op in &f.ops {
            match op {
                Op::Lit(d) => {
                    enc.literal(&mut wire, d).unwrap();
                    want.extend_from_slice(d);
                }
                Op::LitFromBasis(start, len) => {
                    if f.basis.is_empty() {
                        continue;
                    }
                    let s = start % f.basis.len();
                    let d = &f.basis[s..(s + len).min(f.basis.len())];
                    enc.literal(&mut wire, d).unwrap();
                    want.extend_from_slice(d);
                }
                Op::NextBlock | Op::Block(_) => {
                    if count == 0 {
                        continue;
                    }
                    let i = match op {
                        Op::Block(b) => *b as usize % count,
                        _ => prev.map_or(0, |p| (p + 1) % count),
                    };
                    enc.matched(&mut wire, i as u32, basis.block(i)).unwrap();
                    want.extend_from_slice(basis.block(i));
                    blocks.push(i as u32);
                    prev = Some(i);
                }
            }
        }
        enc.end_file(&mut wire).unwrap();
        expected.push((want, blocks));
    }
    let mut dec = TokenDecoder::new(kind, protocol);
    let mut r: &[u8] = &wire;
    for (n, (f, (want, want_blocks))) in files.iter().zip(&expected).enumerate() {
        let basis = Basis {
            data: &f.basis,
            blength: f.blength,
        };
        let mut blocks = Vec::new();
        let got = decode_file(&mut dec, &mut r, &basis, &mut blocks)
            .unwrap_or_else(|e| panic!("{kind:?} p{protocol} file {n}: {e}"));
        assert_eq!(&blocks, want_blocks, "{kind:?} p{protocol} file {n}");
        assert!(
            &got == want,
            "{kind:?} p{protocol} file {n} content differs"
        );
    }
    assert!(r.is_empty(), "{kind:?}: trailing bytes");
}

proptest! {
    // Failing seeds are kept beside this file (tests.proptest-regressions);
    // the first one caught miniz_oxide holding inflated bytes back after
    // consuming a chunk (see decoder.rs `inflate_step`).
    #![proptest_config(ProptestConfig { cases: 48, ..crate::testing::proptest_config() })]

    #[test]
    fn round_trip_every_kind(files in prop::collection::vec(file_strategy(), 1..5)) {
        for kind in ALL_KINDS {
            round_trip(kind, 32, None, &files);
        }
        round_trip(CompressKind::Zlib, 30, Some(1), &files);
        round_trip(CompressKind::Zstd, 31, Some(-5), &files);
    }

    #[test]
    fn decoder_never_panics(kind in 0u8..10, bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut d = vec![kind | if kind >= 5 { 0x80 } else { 0 }];
        d.extend_from_slice(&bytes);
        decoder_fuzz_entry(&d);
    }
}
