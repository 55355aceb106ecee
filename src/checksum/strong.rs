//! Strong digests: per-block sums, the whole-file transfer digest and the
//! `--checksum` file-list digest, for every checksum kind rrsync speaks.
//!
//! upstream: checksum.c `get_checksum2` (blocks), `sum_init`/`sum_update`/
//! `sum_end` (whole-file digest), `file_checksum` (`--checksum`),
//! `csum_len_for_type`, `parse_csum_name`; lib/mdfour.c.
//!
//! Quirks reproduced here (protocol notes §8.3-§8.5):
//! * MD4_OLD (protocols 27-29) block sums are `MD4(block ‖ seed_le32)` when
//!   the seed is non-zero; its whole-file digest is `MD4(seed_le32 ‖ data)`
//!   with the seed **always** prefixed, even when it is 0.
//! * lib/mdfour.c is standard MD4 for protocol >= 27 (its dropped high
//!   bit-count word only affects protocol < 27, which rrsync does not speak),
//!   so the `md4` crate is used as is.
//! * MD5 block sums put the seed first when `proper_seed_order`
//!   (`CF_CHKSUM_SEED_FIX`) is set, after the block otherwise; seed 0 means
//!   "no seed".
//! * xxh64/xxh3/xxh128 block sums are seeded with upstream's `int` seed
//!   converted to a 64-bit unsigned value (so a negative seed is
//!   sign-extended), and stored little-endian (xxh128: low 64 bits first).
//! * The whole-file digest of the negotiated kinds and every `--checksum`
//!   digest are unseeded.

use std::io::{self, Read};

use md4::Digest as _;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed, Xxh3Default};
use xxhash_rust::xxh64::{xxh64, Xxh64};

/// The longest digest any supported kind produces (SHA1).
pub const MAX_DIGEST_LEN: usize = 20;

/// Errors of the checksum layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// A checksum name that rrsync does not implement (upstream:
    /// "unknown checksum name").
    #[error("unknown checksum name: {0}")]
    UnknownName(String),
}

/// Which strong checksum a session uses (negotiated or implied by the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// Protocol 27-29 MD4 (seed handling of upstream's CSUM_MD4_OLD).
    Md4Old,
    /// Negotiated "md4".
    Md4,
    /// "md5" (protocol >= 30 default without negotiation).
    Md5,
    /// "xxh64".
    Xxh64,
    /// "xxh3" (64-bit).
    Xxh3,
    /// "xxh128".
    Xxh128,
    /// "sha1" (stock's OpenSSL digest: a block sum puts the seed first).
    Sha1,
    /// "none": forces whole-file transfers.
    None,
}

impl ChecksumKind {
    /// The kinds rrsync can negotiate, strongest preference first (the order
    /// of upstream's default list).
    pub const NEGOTIABLE: [ChecksumKind; 7] = [
        ChecksumKind::Xxh128,
        ChecksumKind::Xxh3,
        ChecksumKind::Xxh64,
        ChecksumKind::Md5,
        ChecksumKind::Md4,
        ChecksumKind::Sha1,
        ChecksumKind::None,
    ];

    /// Parse a negotiation / `--checksum-choice` name (case-insensitive, like
    /// upstream). `xxhash` is upstream's alias of `xxh64`. `auto` is not
    /// handled here: use [`ChecksumKind::default_for_protocol`].
    pub fn from_name(name: &str) -> Result<Self, ChecksumError> {
        let kind = match name.to_ascii_lowercase().as_str() {
            "xxh128" => ChecksumKind::Xxh128,
            "xxh3" => ChecksumKind::Xxh3,
            "xxh64" | "xxhash" => ChecksumKind::Xxh64,
            "md5" => ChecksumKind::Md5,
            "md4" => ChecksumKind::Md4,
            "sha1" => ChecksumKind::Sha1,
            "none" => ChecksumKind::None,
            _ => return Err(ChecksumError::UnknownName(name.to_owned())),
        };
        Ok(kind)
    }

    /// The wire / option name. MD4_OLD is reported as `md4`, as upstream does.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Md4Old | ChecksumKind::Md4 => "md4",
            ChecksumKind::Md5 => "md5",
            ChecksumKind::Xxh64 => "xxh64",
            ChecksumKind::Xxh3 => "xxh3",
            ChecksumKind::Xxh128 => "xxh128",
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::None => "none",
        }
    }

    /// Digest length in bytes (upstream: `csum_len_for_type(type, 0)`,
    /// i.e. `xfer_sum_len`).
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumKind::Md4Old | ChecksumKind::Md4 | ChecksumKind::Md5 | ChecksumKind::Xxh128 => {
                16
            }
            ChecksumKind::Xxh64 | ChecksumKind::Xxh3 => 8,
            ChecksumKind::Sha1 => 20,
            ChecksumKind::None => 1,
        }
    }

    /// Length of a `--checksum` sum in the file list (upstream:
    /// `csum_len_for_type(type, 1)`). Only the pre-27 MD4_ARCHAIC kind,
    /// which rrsync does not speak, differs from [`Self::digest_len`].
    pub fn flist_len(self) -> usize {
        self.digest_len()
    }

    /// The implied checksum when nothing is negotiated (upstream:
    /// `parse_csum_name(NULL)`): MD5 for protocol >= 30, MD4_OLD below.
    pub fn default_for_protocol(protocol: u8) -> Self {
        if protocol >= 30 {
            ChecksumKind::Md5
        } else {
            ChecksumKind::Md4Old
        }
    }
}

/// A digest of up to [`MAX_DIGEST_LEN`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigestBuf {
    bytes: [u8; MAX_DIGEST_LEN],
    len: usize,
}

impl DigestBuf {
    /// Build from raw bytes; anything past [`MAX_DIGEST_LEN`] is dropped.
    pub fn from_slice(data: &[u8]) -> Self {
        let len = data.len().min(MAX_DIGEST_LEN);
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        bytes[..len].copy_from_slice(&data[..len]);
        DigestBuf { bytes, len }
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The full buffer (zero-padded past `len()`).
    pub fn to_array(&self) -> [u8; MAX_DIGEST_LEN] {
        self.bytes
    }

    /// Digest length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the digest is empty (never true for a real digest).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for DigestBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for DigestBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// upstream's `int checksum_seed` widened to the 64-bit xxhash seed type.
#[inline]
fn xxh_seed(seed: u32) -> u64 {
    seed as i32 as i64 as u64
}

/// One digest over `parts` in order (MD4, MD5, SHA1 alike).
fn digest_of<D: md4::Digest>(parts: &[&[u8]]) -> DigestBuf {
    let mut h = D::new();
    for p in parts {
        h.update(p);
    }
    DigestBuf::from_slice(&h.finalize())
}

/// Strong sum of one block (upstream: checksum.c `get_checksum2`).
///
/// `seed` is the session's checksum seed as sent on the wire (an `int32`
/// reinterpreted as `u32`); 0 means unseeded for MD4/MD5.
/// `proper_seed_order` is `CF_CHKSUM_SEED_FIX` (only MD5 looks at it).
/// The result has `kind.digest_len()` bytes; a sum header's `s2length`
/// says how many of them go on the wire.
pub fn block_sum(kind: ChecksumKind, data: &[u8], seed: u32, proper_seed_order: bool) -> DigestBuf {
    let seed_le = seed.to_le_bytes();
    match kind {
        // Stock 3.2.7/3.5.0 (built-in mdfour, and with OpenSSL's MD4 alike)
        // append the seed for every MD4 flavour; verified against a stock
        // generator with --checksum-choice=md4 (see the tests).
        ChecksumKind::Md4Old | ChecksumKind::Md4 => {
            if seed != 0 {
                digest_of::<md4::Md4>(&[data, &seed_le])
            } else {
                digest_of::<md4::Md4>(&[data])
            }
        }
        ChecksumKind::Md5 => {
            if seed == 0 {
                digest_of::<md5::Md5>(&[data])
            } else if proper_seed_order {
                digest_of::<md5::Md5>(&[&seed_le, data])
            } else {
                digest_of::<md5::Md5>(&[data, &seed_le])
            }
        }
        ChecksumKind::Xxh64 => DigestBuf::from_slice(&xxh64(data, xxh_seed(seed)).to_le_bytes()),
        ChecksumKind::Xxh3 => {
            DigestBuf::from_slice(&xxh3_64_with_seed(data, xxh_seed(seed)).to_le_bytes())
        }
        ChecksumKind::Xxh128 => {
            DigestBuf::from_slice(&xxh3_128_with_seed(data, xxh_seed(seed)).to_le_bytes())
        }
        // upstream's OpenSSL path (EVP): the seed, when there is one, first.
        ChecksumKind::Sha1 => {
            if seed != 0 {
                digest_of::<sha1::Sha1>(&[&seed_le, data])
            } else {
                digest_of::<sha1::Sha1>(&[data])
            }
        }
        // upstream never computes block sums with "none" (it forces
        // whole-file); one zero byte keeps the length rule uniform.
        ChecksumKind::None => DigestBuf::from_slice(&[0]),
    }
}

enum HashState {
    Md4(md4::Md4),
    Md5(md5::Md5),
    Xxh64(Xxh64),
    Xxh3(Box<Xxh3Default>),
    Xxh128(Box<Xxh3Default>),
    Sha1(sha1::Sha1),
    None,
}

/// A streaming digest over a whole file.
///
/// upstream: checksum.c `sum_init`/`sum_update`/`sum_end` (transfer digest,
/// [`StrongHasher::new_file`]) and `file_checksum` (`--checksum`,
/// [`StrongHasher::new_unseeded`]).
pub struct StrongHasher {
    kind: ChecksumKind,
    state: HashState,
}

impl StrongHasher {
    /// The whole-file transfer digest sent after each file's tokens (§8.4):
    /// MD4_OLD prefixes the 4-byte little-endian seed (even when 0); every
    /// other kind is unseeded; `none` yields one zero byte.
    pub fn new_file(kind: ChecksumKind, seed: u32) -> Self {
        let mut h = Self::new_unseeded(kind);
        if kind == ChecksumKind::Md4Old {
            h.update(&seed.to_le_bytes());
        }
        h
    }

    /// An unseeded digest: the `--checksum` file-list sum (§8.5).
    pub fn new_unseeded(kind: ChecksumKind) -> Self {
        let state = match kind {
            ChecksumKind::Md4Old | ChecksumKind::Md4 => HashState::Md4(md4::Md4::new()),
            ChecksumKind::Md5 => HashState::Md5(md5::Md5::new()),
            ChecksumKind::Xxh64 => HashState::Xxh64(Xxh64::new(0)),
            ChecksumKind::Xxh3 => HashState::Xxh3(Box::new(Xxh3Default::new())),
            ChecksumKind::Xxh128 => HashState::Xxh128(Box::new(Xxh3Default::new())),
            ChecksumKind::Sha1 => HashState::Sha1(sha1::Sha1::new()),
            ChecksumKind::None => HashState::None,
        };
        StrongHasher { kind, state }
    }

    /// The kind this hasher computes.
    pub fn kind(&self) -> ChecksumKind {
        self.kind
    }

    /// Feed data.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HashState::Md4(h) => h.update(data),
            HashState::Md5(h) => h.update(data),
            HashState::Xxh64(h) => h.update(data),
            HashState::Xxh3(h) | HashState::Xxh128(h) => h.update(data),
            HashState::Sha1(h) => h.update(data),
            HashState::None => {}
        }
    }

    /// The digest so far; the hasher starts over as [`StrongHasher::new_file`]
    /// with `seed` would (reusing its state, so no allocation per file).
    pub fn finish_reset_file(&mut self, seed: u32) -> DigestBuf {
        let d = match &mut self.state {
            HashState::Md4(h) => DigestBuf::from_slice(&h.finalize_reset()),
            HashState::Md5(h) => DigestBuf::from_slice(&h.finalize_reset()),
            HashState::Xxh64(h) => {
                let d = DigestBuf::from_slice(&h.digest().to_le_bytes());
                h.reset(0);
                d
            }
            HashState::Xxh3(h) => {
                let d = DigestBuf::from_slice(&h.digest().to_le_bytes());
                h.reset();
                d
            }
            HashState::Xxh128(h) => {
                let d = DigestBuf::from_slice(&h.digest128().to_le_bytes());
                h.reset();
                d
            }
            HashState::Sha1(h) => DigestBuf::from_slice(&h.finalize_reset()),
            HashState::None => DigestBuf::from_slice(&[0]),
        };
        if self.kind == ChecksumKind::Md4Old {
            self.update(&seed.to_le_bytes());
        }
        d
    }

    /// The digest (`kind.digest_len()` bytes).
    pub fn finish(self) -> DigestBuf {
        match self.state {
            HashState::Md4(h) => DigestBuf::from_slice(&h.finalize()),
            HashState::Md5(h) => DigestBuf::from_slice(&h.finalize()),
            HashState::Xxh64(h) => DigestBuf::from_slice(&h.digest().to_le_bytes()),
            HashState::Xxh3(h) => DigestBuf::from_slice(&h.digest().to_le_bytes()),
            HashState::Xxh128(h) => DigestBuf::from_slice(&h.digest128().to_le_bytes()),
            HashState::Sha1(h) => DigestBuf::from_slice(&h.finalize()),
            HashState::None => DigestBuf::from_slice(&[0]),
        }
    }
}

impl std::fmt::Debug for StrongHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrongHasher")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The `--checksum` digest of a whole file read from `reader` (upstream:
/// checksum.c `file_checksum`; never seeded). For the MD4 family this is
/// plain MD4. Reads in 32 KiB chunks, so memory stays bounded.
pub fn file_checksum(kind: ChecksumKind, reader: &mut impl Read) -> io::Result<DigestBuf> {
    let mut h = StrongHasher::new_unseeded(kind);
    let mut buf = crate::iobuf::IoBuf::zeroed(32 * 1024);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finish_reset_file_equals_a_fresh_hasher() {
        let kinds = [
            ChecksumKind::Md4Old,
            ChecksumKind::Md4,
            ChecksumKind::Md5,
            ChecksumKind::Xxh64,
            ChecksumKind::Xxh3,
            ChecksumKind::Xxh128,
            ChecksumKind::Sha1,
            ChecksumKind::None,
        ];
        for kind in kinds {
            let mut reused = StrongHasher::new_file(kind, 77);
            for data in [&b"first file"[..], b"", &[7u8; 5000]] {
                reused.update(data);
                let mut fresh = StrongHasher::new_file(kind, 77);
                fresh.update(data);
                assert_eq!(reused.finish_reset_file(77), fresh.finish(), "{kind:?}");
            }
        }
    }

    fn hex(d: &DigestBuf) -> String {
        format!("{d:?}")
    }

    fn big_txt() -> Vec<u8> {
        (0..60)
            .flat_map(|i| {
                format!("line {i:04}: the quick brown fox jumps over the lazy dog\n").into_bytes()
            })
            .take(3000)
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for k in ChecksumKind::NEGOTIABLE {
            assert_eq!(ChecksumKind::from_name(k.name()).unwrap(), k);
        }
        assert_eq!(
            ChecksumKind::from_name("XXHASH").unwrap(),
            ChecksumKind::Xxh64
        );
        assert!(ChecksumKind::from_name("sha256").is_err());
        assert_eq!(ChecksumKind::Md4Old.name(), "md4");
        assert_eq!(ChecksumKind::default_for_protocol(29), ChecksumKind::Md4Old);
        assert_eq!(ChecksumKind::default_for_protocol(27), ChecksumKind::Md4Old);
        assert_eq!(ChecksumKind::default_for_protocol(30), ChecksumKind::Md5);
        assert_eq!(ChecksumKind::default_for_protocol(32), ChecksumKind::Md5);
    }

    #[test]
    fn lengths() {
        use ChecksumKind::*;
        for (k, n) in [
            (Md4Old, 16),
            (Md4, 16),
            (Md5, 16),
            (Xxh64, 8),
            (Xxh3, 8),
            (Xxh128, 16),
            (None, 1),
        ] {
            assert_eq!(k.digest_len(), n, "{k:?}");
            assert_eq!(k.flist_len(), n, "{k:?}");
            assert_eq!(block_sum(k, b"abc", 7, true).len(), n, "{k:?}");
            assert_eq!(StrongHasher::new_file(k, 7).finish().len(), n, "{k:?}");
        }
    }

    #[test]
    fn xxh128_hello_appendix_b() {
        let mut h = StrongHasher::new_file(ChecksumKind::Xxh128, 12345);
        h.update(b"hello");
        assert_eq!(hex(&h.finish()), "1838525eaacf79c77f3e1b07adc1e9b5");
        let d = file_checksum(ChecksumKind::Xxh128, &mut &b"hello"[..]).unwrap();
        assert_eq!(hex(&d), "1838525eaacf79c77f3e1b07adc1e9b5");
    }

    #[test]
    fn md5_block_sums_capture_12() {
        // 12-pull-delta: -B300, md5, seed 12345, CF_CHKSUM_SEED_FIX set.
        let data = big_txt();
        let want = [
            "ca69", "ad74", "5107", "89ed", "fc9d", "9042", "81ff", "e3f0", "6972", "bdd1",
        ];
        for (i, w) in want.iter().enumerate() {
            let d = block_sum(
                ChecksumKind::Md5,
                &data[i * 300..(i + 1) * 300],
                12345,
                true,
            );
            assert_eq!(&hex(&d)[..4], *w, "block {i}");
        }
    }

    #[test]
    fn md4_old_block_sums_capture_15() {
        // 15-pull-delta-p29: MD4_OLD, MD4(block || seed).
        let data = big_txt();
        let want = [
            "70fc", "3a9e", "01b9", "3527", "d689", "c27a", "940c", "3a66", "2124", "db15",
        ];
        for (i, w) in want.iter().enumerate() {
            let d = block_sum(
                ChecksumKind::Md4Old,
                &data[i * 300..(i + 1) * 300],
                12345,
                false,
            );
            assert_eq!(&hex(&d)[..4], *w, "block {i}");
        }
    }

    #[test]
    fn whole_file_digests_capture_12_and_15() {
        let mut data = big_txt();
        data[1400..1410].copy_from_slice(b"CHANGED!!!");
        let mut h = StrongHasher::new_file(ChecksumKind::Md5, 12345);
        h.update(&data);
        assert_eq!(hex(&h.finish()), "5201086ba835322425fb2cc2f9999c7c");
        let mut h = StrongHasher::new_file(ChecksumKind::Md4Old, 12345);
        h.update(&data);
        assert_eq!(hex(&h.finish()), "7703f452a7804e0236e2ae044d1c8a06");
    }

    #[test]
    fn md4_old_whole_file_prefixes_zero_seed() {
        let mut a = StrongHasher::new_file(ChecksumKind::Md4Old, 0);
        a.update(b"xyz");
        let mut b = StrongHasher::new_unseeded(ChecksumKind::Md4);
        b.update(&[0, 0, 0, 0]);
        b.update(b"xyz");
        assert_eq!(a.finish(), b.finish());
        // Negotiated md4 is unseeded.
        let mut c = StrongHasher::new_file(ChecksumKind::Md4, 99);
        c.update(b"xyz");
        assert_eq!(c.finish(), digest_of::<md4::Md4>(&[b"xyz"]));
    }

    #[test]
    fn md4_standard_vectors() {
        // RFC 1320 test suite: lib/mdfour.c is standard MD4 for proto >= 27,
        // including lengths that are multiples of 64 and 56..63.
        assert_eq!(
            hex(&digest_of::<md4::Md4>(&[b""])),
            "31d6cfe0d16ae931b73c59d7e0c089c0"
        );
        assert_eq!(
            hex(&digest_of::<md4::Md4>(&[b"abc"])),
            "a448017aaf21d8525fc10ae87aa6729d"
        );
        assert_eq!(
            hex(&digest_of::<md4::Md4>(&[
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ])),
            "e33b4ddc9c38f2199c3e7b164fcc0536"
        );
    }

    #[test]
    fn negotiated_md4_block_sum_matches_stock_generator() {
        // Recorded from stock rsync 3.5.0 and 3.2.7 (OpenSSL builds) as the
        // generator: --checksum-choice=md4 --checksum-seed=12345 -B300, one
        // 300-byte block of (i*7+3)%256; sum1 e2ff9c17, s2 prefix 2b1e.
        let data: Vec<u8> = (0..300u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
        assert_eq!(crate::checksum::rolling::checksum1(&data), 0x179cffe2);
        let d = block_sum(ChecksumKind::Md4, &data, 12345, true);
        assert_eq!(&hex(&d)[..4], "2b1e");
        let d = block_sum(ChecksumKind::Md5, &data, 12345, true);
        assert_eq!(&hex(&d)[..4], "4e3e");
    }

    #[test]
    fn md5_seed_order_and_zero_seed() {
        let d = b"some block";
        let s = 5u32.to_le_bytes();
        assert_eq!(
            block_sum(ChecksumKind::Md5, d, 5, true),
            digest_of::<md5::Md5>(&[&s, d])
        );
        assert_eq!(
            block_sum(ChecksumKind::Md5, d, 5, false),
            digest_of::<md5::Md5>(&[d, &s])
        );
        assert_eq!(
            block_sum(ChecksumKind::Md5, d, 0, true),
            digest_of::<md5::Md5>(&[d])
        );
        assert_eq!(
            block_sum(ChecksumKind::Md4Old, d, 0, false),
            digest_of::<md4::Md4>(&[d])
        );
    }

    #[test]
    fn xxh_seeds_sign_extend() {
        let d = b"data";
        assert_eq!(
            block_sum(ChecksumKind::Xxh64, d, u32::MAX, true).as_bytes(),
            xxh64(d, u64::MAX).to_le_bytes()
        );
        assert_eq!(
            block_sum(ChecksumKind::Xxh3, d, 12345, true).as_bytes(),
            xxh3_64_with_seed(d, 12345).to_le_bytes()
        );
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn streaming_equals_one_shot(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 0usize..2000,
        ) {
            let cut = cut.min(data.len());
            for k in ChecksumKind::NEGOTIABLE {
                let mut h = StrongHasher::new_file(k, 1234);
                h.update(&data[..cut]);
                h.update(&data[cut..]);
                let split = h.finish();
                let mut h = StrongHasher::new_file(k, 1234);
                h.update(&data);
                prop_assert_eq!(split, h.finish());
                // Unseeded block sum == whole-file digest for seedless kinds.
                if k != ChecksumKind::None {
                    prop_assert_eq!(block_sum(k, &data, 0, true), file_checksum(k, &mut &data[..]).unwrap());
                }
            }
        }
    }
}
