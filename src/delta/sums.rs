//! The sum header (block count, block length, strong-sum length, remainder),
//! the block-size rule, received-header validation and the generator-side
//! computation of block sums.
//!
//! upstream: generator.c `sum_sizes_sqroot`, `generate_and_send_sums`;
//! io.c `read_sum_head` (bounds). Wire encoding lives in `protocol`.

use std::io::{self, Read};

use super::DeltaError;
use crate::checksum::{block_sum, checksum1, ChecksumKind};

/// Default block length for files up to 700*700 bytes (upstream: BLOCK_SIZE).
pub const BLOCK_SIZE: i32 = 700;
/// Largest block length for protocol >= 30 (upstream: MAX_BLOCK_SIZE).
pub const MAX_BLOCK_SIZE: i32 = 1 << 17;
/// Largest block length for protocol < 30 (upstream: OLD_MAX_BLOCK_SIZE).
pub const OLD_MAX_BLOCK_SIZE: i32 = 1 << 29;
/// Strong-sum length in the redo phase, and the most rrsync ever accepts
/// (upstream: SUM_LENGTH).
pub const SUM_LENGTH: i32 = 16;
/// Minimum strong-sum length in the normal phase (upstream: SHORT_SUM_LENGTH).
pub const SHORT_SUM_LENGTH: i32 = 2;
const BLOCKSUM_BIAS: i32 = 10;

/// The largest block length a header may carry for `protocol`.
pub fn max_block_size(protocol: u8) -> i32 {
    if protocol < 30 {
        OLD_MAX_BLOCK_SIZE
    } else {
        MAX_BLOCK_SIZE
    }
}

/// A sum header: `count, blength, s2length, remainder` (all int32 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SumHead {
    /// Number of blocks (0 = no basis: everything goes as literals).
    pub count: i32,
    /// Block length.
    pub blength: i32,
    /// Bytes of each strong sum on the wire.
    pub s2length: i32,
    /// Length of the last block when it is short (0 = all blocks full).
    pub remainder: i32,
}

impl SumHead {
    /// The all-zero header: no basis, send the whole file as literals.
    pub const EMPTY: SumHead = SumHead {
        count: 0,
        blength: 0,
        s2length: 0,
        remainder: 0,
    };

    /// The header a generator sends for a basis of `len` bytes
    /// (upstream: generator.c `sum_sizes_sqroot`).
    ///
    /// `block_size` is `--block-size` (None or Some(0) = automatic);
    /// `redo_phase` selects the full-length strong sums of the redo pass;
    /// `digest_len` is the transfer checksum's digest length, which caps
    /// `s2length` (as rsync >= 3.4 does). A zero-length basis gives
    /// [`SumHead::EMPTY`], as upstream's generator sends for it.
    pub fn for_file(
        len: i64,
        protocol: u8,
        block_size: Option<u32>,
        redo_phase: bool,
        digest_len: usize,
    ) -> Result<SumHead, DeltaError> {
        if len < 0 {
            return Err(DeltaError::FileTooLarge(len));
        }
        if len == 0 {
            return Ok(SumHead::EMPTY);
        }
        let max_blength = max_block_size(protocol);
        let max_s2length = (SUM_LENGTH as usize).min(digest_len) as i32;

        let blength: i32 = match block_size.filter(|&b| b != 0) {
            Some(b) => {
                if b > max_blength as u32 {
                    return Err(DeltaError::InvalidBlockSize {
                        block_size: b,
                        max: max_blength,
                    });
                }
                b as i32
            }
            None if len <= (BLOCK_SIZE as i64) * (BLOCK_SIZE as i64) => BLOCK_SIZE,
            None => {
                // c = 2^floor(log4(len)): roughly sqrt(len).
                let mut c: i64 = 1;
                let mut l = len;
                loop {
                    l >>= 2;
                    if l == 0 {
                        break;
                    }
                    c <<= 1;
                }
                if c >= max_blength as i64 {
                    max_blength
                } else {
                    // Largest multiple of 8 not above sqrt(len), bit by bit.
                    let mut b: i64 = 0;
                    loop {
                        b |= c;
                        if len < b * b {
                            b &= !c;
                        }
                        c >>= 1;
                        if c < 8 {
                            break;
                        }
                    }
                    b.max(BLOCK_SIZE as i64) as i32
                }
            }
        };

        let s2length = if protocol < 27 {
            let csum_length = if redo_phase {
                SUM_LENGTH
            } else {
                SHORT_SUM_LENGTH
            };
            csum_length.min(max_s2length)
        } else if redo_phase {
            max_s2length
        } else {
            let mut b = BLOCKSUM_BIAS;
            let mut l = len;
            loop {
                l >>= 1;
                if l == 0 {
                    break;
                }
                b += 2;
            }
            let mut c = blength;
            loop {
                c >>= 1;
                if c == 0 || b == 0 {
                    break;
                }
                b -= 1;
            }
            // "add a bit, subtract rollsum, round up" (C division truncates).
            let s2 = (b + 1 - 32 + 7) / 8;
            s2.max(SHORT_SUM_LENGTH).min(max_s2length)
        };

        let blen64 = blength as i64;
        let remainder = len % blen64;
        let count = len / blen64 + i64::from(remainder != 0);
        let count = i32::try_from(count).map_err(|_| DeltaError::FileTooLarge(len))?;
        Ok(SumHead {
            count,
            blength,
            s2length,
            remainder: remainder as i32,
        })
    }

    /// Check a header received from the peer (upstream: io.c
    /// `read_sum_head`): count >= 0; 0 <= blength <= the protocol maximum;
    /// blength > 0 when count > 0; 0 <= s2length <= 16; 0 <= remainder <=
    /// blength. `s2length` may exceed the digest length (3.2.7 sends 16 with
    /// 8-byte digests in the redo phase); the matcher compares only the
    /// digest's bytes.
    pub fn validate(&self, protocol: u8) -> Result<(), DeltaError> {
        let bad = |field, value: i32| {
            Err(DeltaError::InvalidSumHead {
                field,
                value: value as i64,
            })
        };
        if self.count < 0 {
            return bad("count", self.count);
        }
        if self.blength < 0 || self.blength > max_block_size(protocol) {
            return bad("blength", self.blength);
        }
        if self.count > 0 && self.blength == 0 {
            return bad("blength", self.blength);
        }
        if self.s2length < 0 || self.s2length > SUM_LENGTH {
            return bad("s2length", self.s2length);
        }
        if self.remainder < 0 || self.remainder > self.blength {
            return bad("remainder", self.remainder);
        }
        Ok(())
    }

    /// Whether there are no blocks (whole-file transfer).
    pub fn is_empty(&self) -> bool {
        self.count <= 0
    }

    /// Length of block `index` (`remainder` for a short last block), or 0
    /// when `index` is out of range.
    pub fn block_len(&self, index: u32) -> usize {
        let count = self.count.max(0) as u64;
        let i = index as u64;
        if i >= count {
            0
        } else if i + 1 == count && self.remainder != 0 {
            self.remainder.max(0) as usize
        } else {
            self.blength.max(0) as usize
        }
    }

    /// Offset of block `index` in the basis file.
    pub fn block_offset(&self, index: u32) -> u64 {
        index as u64 * self.blength.max(0) as u64
    }

    /// The basis length the header describes.
    pub fn basis_len(&self) -> u64 {
        if self.count <= 0 {
            return 0;
        }
        let last = (self.count - 1) as u32;
        self.block_offset(last) + self.block_len(last) as u64
    }
}

/// The block sums of a basis file: one rolling `sum1` and the first
/// `s2length` bytes of the strong sum per block, in block order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    head: SumHead,
    sum1: Vec<u32>,
    strong: Vec<u8>,
}

impl BlockSums {
    /// An empty set for `head`; fill it with [`BlockSums::push`]. Memory
    /// grows with what is pushed, not with the (peer-supplied) count.
    pub fn new(head: SumHead) -> Self {
        let cap = (head.count.max(0) as usize).min(1 << 16);
        BlockSums {
            head,
            sum1: Vec::with_capacity(cap),
            strong: Vec::with_capacity(cap * head.s2length.max(0) as usize),
        }
    }

    /// Append the next block's sums. `strong` must hold at least
    /// `s2length` bytes; only the first `s2length` are kept.
    pub fn push(&mut self, sum1: u32, strong: &[u8]) -> Result<(), DeltaError> {
        if self.sum1.len() >= self.head.count.max(0) as usize {
            return Err(DeltaError::SumsMismatch("more block sums than count"));
        }
        let s2 = self.head.s2length.max(0) as usize;
        let Some(prefix) = strong.get(..s2) else {
            return Err(DeltaError::SumsMismatch("strong sum shorter than s2length"));
        };
        self.sum1.push(sum1);
        self.strong.extend_from_slice(prefix);
        Ok(())
    }

    /// The header these sums belong to.
    pub fn head(&self) -> &SumHead {
        &self.head
    }

    /// Number of blocks pushed so far.
    pub fn len(&self) -> usize {
        self.sum1.len()
    }

    /// Whether no block has been pushed.
    pub fn is_empty(&self) -> bool {
        self.sum1.is_empty()
    }

    /// Whether all `count` blocks are present.
    pub fn is_complete(&self) -> bool {
        self.sum1.len() == self.head.count.max(0) as usize
    }

    /// The rolling sums, in block order.
    pub fn sum1s(&self) -> &[u32] {
        &self.sum1
    }

    /// Block `index`: `(sum1, strong prefix)`.
    pub fn get(&self, index: usize) -> Option<(u32, &[u8])> {
        let s1 = *self.sum1.get(index)?;
        Some((s1, self.strong_at(index)))
    }

    /// Iterate over `(sum1, strong prefix)` in block order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        (0..self.len()).map(move |i| (self.sum1[i], self.strong_at(i)))
    }

    /// Strong prefix of block `index` (empty when out of range).
    #[inline]
    pub(crate) fn strong_at(&self, index: usize) -> &[u8] {
        let s2 = self.head.s2length.max(0) as usize;
        self.strong
            .get(index * s2..(index + 1) * s2)
            .unwrap_or_default()
    }
}

/// Bytes of basis read at a time while computing block sums.
const SUMS_READ: usize = 256 * 1024;

/// Read until `buf` is full or EOF; returns the number of bytes read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Compute the block sums of a basis read from `reader`, streaming one
/// block at a time to `emit(sum1, strong)` (the strong slice has
/// `head.s2length` bytes). Memory is one read's worth of blocks
/// (`SUMS_READ`).
///
/// upstream: generator.c `generate_and_send_sums`. As upstream's `map_ptr`
/// does, a basis that turns out shorter than `head` describes is treated
/// as zero-filled (the sender's verification catches any damage); the
/// return value is the number of bytes actually read, so the caller can
/// notice.
pub fn generate_sums_with(
    reader: &mut impl Read,
    head: &SumHead,
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
    mut emit: impl FnMut(u32, &[u8]) -> Result<(), DeltaError>,
) -> Result<u64, DeltaError> {
    head.validate(0)?; // the loosest bounds: our own header, any protocol
    let s2 = head.s2length as usize;
    let count = head.count.max(0) as u32;
    // s2length <= 16 is guaranteed by validate(); bytes past the digest
    // length are zero (only reachable with a hand-made oversize header).
    sums_by_groups(
        head,
        0..count,
        SUMS_READ,
        |buf, _| read_full(reader, buf),
        (kind, seed, proper_seed_order),
        |s1, bytes| emit(s1, &bytes[..s2.min(bytes.len())]),
    )
}

/// The sums of blocks `range`, read `read_size` bytes' worth of blocks at a
/// time by `fill(buf, offset)` (which returns how much it read, short only
/// at the end), passed in block order to `f`; a short basis reads as zeros.
/// Returns the bytes actually read.
fn sums_by_groups<E: From<io::Error>>(
    head: &SumHead,
    range: std::ops::Range<u32>,
    read_size: usize,
    mut fill: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
    (kind, seed, proper_seed_order): (ChecksumKind, u32, bool),
    mut f: impl FnMut(u32, [u8; crate::checksum::MAX_DIGEST_LEN]) -> Result<(), E>,
) -> Result<u64, E> {
    let blen = head.blength.max(1) as usize;
    // Several blocks per read (fewer system calls), the buffer bounded and
    // no bigger than the basis (small files have small bases).
    let per_read = (read_size / blen).max(1) as u32;
    let cap = usize::try_from(head.basis_len())
        .unwrap_or(usize::MAX)
        .clamp(blen, blen * per_read as usize);
    // Page-aligned: block offsets are often page multiples (see crate::iobuf).
    let mut buf = crate::iobuf::IoBuf::zeroed(cap);
    let mut total = 0u64;
    let mut i = range.start;
    while i < range.end {
        let group = (range.end - i).min(per_read);
        // Every block but the last of the file is full length.
        let len: usize = (i..i + group).map(|b| head.block_len(b)).sum();
        let got = fill(&mut buf[..len], head.block_offset(i))?;
        buf[got..len].fill(0);
        total += got as u64;
        let mut off = 0usize;
        for b in i..i + group {
            let block = &buf[off..off + head.block_len(b)];
            off += block.len();
            f(
                checksum1(block),
                block_sum(kind, block, seed, proper_seed_order).to_array(),
            )?;
        }
        i += group;
    }
    Ok(total)
}

/// Bases at least this long get their sums from two threads.
const PARALLEL_MIN: u64 = 8 << 20;
/// Bytes of basis per parallel step (its sums are held until emitted).
const PARALLEL_WINDOW: u64 = 16 << 20;

/// One block's sums as the window keeps them until emitted.
type BlockSum = (u32, [u8; crate::checksum::MAX_DIGEST_LEN]);

/// A basis read at offsets (a file's `pread`, implemented by the `fs`
/// layer), shareable between the threads computing its sums.
pub trait PositionalRead: Sync {
    /// Read at `offset` into `buf`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl PositionalRead for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// The sums of blocks `range` of `file`, read at their offsets; a short
/// basis reads as zeros. Returns the sums and the bytes actually read.
fn sums_of_range<F: PositionalRead + ?Sized>(
    file: &F,
    head: &SumHead,
    range: std::ops::Range<u32>,
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
) -> io::Result<(Vec<BlockSum>, u64)> {
    let mut out = Vec::with_capacity(range.len());
    // Half the one-thread read size: two threads hold what one did.
    let total = sums_by_groups(
        head,
        range,
        SUMS_READ / 2,
        |buf, at| {
            let mut got = 0usize;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], at + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        },
        (kind, seed, proper_seed_order),
        |s1, bytes| {
            out.push((s1, bytes));
            Ok::<(), io::Error>(())
        },
    )?;
    Ok((out, total))
}

/// [`generate_sums_with`] for a basis file: on a large basis each window of
/// blocks is split between two threads (reading and hashing the basis is
/// the whole of a generator's work before the sender can start matching),
/// and the sums are emitted in block order as before.
pub fn generate_file_sums<F: PositionalRead + ?Sized>(
    file: &F,
    head: &SumHead,
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
    mut emit: impl FnMut(u32, &[u8]) -> Result<(), DeltaError>,
) -> Result<u64, DeltaError> {
    head.validate(0)?;
    let s2 = head.s2length as usize;
    let count = head.count.max(0) as u32;
    if head.basis_len() < PARALLEL_MIN || head.blength <= 0 {
        // Small: one thread, the sums (a few thousand) emitted at the end.
        let (sums, total) = sums_of_range(file, head, 0..count, kind, seed, proper_seed_order)?;
        for (s1, strong) in &sums {
            emit(*s1, &strong[..s2.min(strong.len())])?;
        }
        return Ok(total);
    }
    let per_window = (PARALLEL_WINDOW / head.blength as u64).max(2) as u32;
    let mut total = 0u64;
    let mut w = 0u32;
    while w < count {
        let end = (w + per_window).min(count);
        let mid = w + (end - w) / 2;
        let (first, second) = std::thread::scope(|sc| {
            let other =
                sc.spawn(|| sums_of_range(file, head, mid..end, kind, seed, proper_seed_order));
            let first = sums_of_range(file, head, w..mid, kind, seed, proper_seed_order);
            let second = other
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("block sum thread failed")));
            (first, second)
        });
        for part in [first?, second?] {
            total += part.1;
            for (s1, strong) in &part.0 {
                emit(*s1, &strong[..s2.min(strong.len())])?;
            }
        }
        w = end;
    }
    Ok(total)
}

/// Compute all block sums of a basis into a [`BlockSums`] (see
/// [`generate_sums_with`]).
pub fn generate_sums(
    reader: &mut impl Read,
    head: &SumHead,
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
) -> Result<BlockSums, DeltaError> {
    let mut sums = BlockSums::new(*head);
    generate_sums_with(reader, head, kind, seed, proper_seed_order, |s1, st| {
        sums.push(s1, st)
    })?;
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sums_in_two_threads_equal_the_streamed_ones() {
        let mut data = vec![0u8; (PARALLEL_MIN as usize) * 3 + 12_345];
        let mut x: u32 = 7;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (x >> 16) as u8;
        }
        let file: &[u8] = &data;
        for kind in [ChecksumKind::Xxh128, ChecksumKind::Md5, ChecksumKind::Md4] {
            for blen in [None, Some(700u32), Some(131_072)] {
                let head = SumHead::for_file(data.len() as i64, 31, blen, false, kind.digest_len())
                    .unwrap();
                let want = generate_sums(&mut &data[..], &head, kind, 42, true).unwrap();
                let mut got = BlockSums::new(head);
                let n = generate_file_sums(file, &head, kind, 42, true, |s1, st| got.push(s1, st))
                    .unwrap();
                assert_eq!(n, data.len() as u64);
                assert_eq!(got.len(), want.len());
                assert!(got.iter().eq(want.iter()), "{kind:?} {blen:?}");
                // A basis shorter than its header reads as zeros, as before.
                let longer =
                    SumHead::for_file(data.len() as i64 + 5000, 31, blen, false, kind.digest_len())
                        .unwrap();
                let mut padded = data.clone();
                padded.resize(data.len() + 5000, 0);
                let want = generate_sums(&mut &padded[..], &longer, kind, 42, true).unwrap();
                let mut got = BlockSums::new(longer);
                let n =
                    generate_file_sums(file, &longer, kind, 42, true, |s1, st| got.push(s1, st))
                        .unwrap();
                assert_eq!(n, data.len() as u64);
                assert!(got.iter().eq(want.iter()), "short basis {kind:?} {blen:?}");
            }
        }
        // A small basis takes the one-thread path, with the same result.
        let small = &data[..100_000];
        let head = SumHead::for_file(small.len() as i64, 31, None, false, 16).unwrap();
        let want = generate_sums(&mut &small[..], &head, ChecksumKind::Xxh128, 1, true).unwrap();
        let mut got = BlockSums::new(head);
        generate_file_sums(small, &head, ChecksumKind::Xxh128, 1, true, |s1, st| {
            got.push(s1, st)
        })
        .unwrap();
        assert!(got.iter().eq(want.iter()));
    }
    use crate::delta::testutil::{big_txt, sizes_data};
    use proptest::prelude::*;

    fn head(count: i32, blength: i32, s2length: i32, remainder: i32) -> SumHead {
        SumHead {
            count,
            blength,
            s2length,
            remainder,
        }
    }

    #[test]
    fn sum_heads_capture_27_and_28() {
        // 27-sizes-p32 (xxh128, 16-byte digest) and 28-sizes-p29 (MD4_OLD).
        for proto in [32u8, 29] {
            let f = |len| SumHead::for_file(len, proto, None, false, 16).unwrap();
            assert_eq!(f(0), SumHead::EMPTY);
            assert_eq!(f(700), head(1, 700, 2, 0));
            assert_eq!(f(490001), head(701, 700, 2, 1));
            assert_eq!(f(5000000), head(2241, 2232, 2, 320));
            assert_eq!(f(67108864), head(8192, 8192, 3, 0));
        }
        // 12-pull-delta / 15-pull-delta-p29: -B300 on 3000 bytes.
        assert_eq!(
            SumHead::for_file(3000, 32, Some(300), false, 16).unwrap(),
            head(10, 300, 2, 0)
        );
    }

    #[test]
    fn block_size_limits() {
        // Huge files hit the per-protocol maximum.
        let h = SumHead::for_file(1 << 40, 31, None, false, 16).unwrap();
        assert_eq!(h.blength, MAX_BLOCK_SIZE);
        let h = SumHead::for_file(1 << 40, 29, None, false, 16).unwrap();
        assert_eq!(h.blength, 1 << 20);
        let h = SumHead::for_file(1 << 58, 29, None, false, 16).unwrap();
        assert_eq!(h.blength, OLD_MAX_BLOCK_SIZE);
        assert_eq!(h.count, 1 << 29);
        assert!(SumHead::for_file(i64::MAX, 29, None, false, 16).is_err());
        assert!(SumHead::for_file(1 << 49, 31, None, false, 16).is_err());
        assert!(SumHead::for_file(-1, 31, None, false, 16).is_err());
        assert!(SumHead::for_file(10, 31, Some(1 << 18), false, 16).is_err());
        assert_eq!(
            SumHead::for_file(10, 31, Some(0), false, 16)
                .unwrap()
                .blength,
            700
        );
    }

    #[test]
    fn s2length_rules() {
        // Redo phase: full digest length, capped by the digest.
        assert_eq!(
            SumHead::for_file(5000, 31, None, true, 16)
                .unwrap()
                .s2length,
            16
        );
        assert_eq!(
            SumHead::for_file(5000, 31, None, true, 8).unwrap().s2length,
            8
        );
        // The normal phase grows with the file size.
        // b = 10 + 2*40 - 17 = 73 -> (73 + 1 - 32 + 7) / 8 = 6.
        let h = SumHead::for_file(1 << 40, 31, None, false, 16).unwrap();
        assert_eq!(h.s2length, 6);
        // (10 + 2*20 - 10 + 1 - 32 + 7) / 8 = 2 for a 1 MiB file (blength 1024).
        let h = SumHead::for_file(1 << 20, 31, None, false, 16).unwrap();
        assert_eq!((h.blength, h.s2length), (1024, 2));
        assert_eq!(
            SumHead::for_file(10, 31, None, false, 1).unwrap().s2length,
            1
        );
    }

    #[test]
    fn validate_bounds() {
        assert!(SumHead::EMPTY.validate(32).is_ok());
        assert!(head(10, 300, 2, 0).validate(32).is_ok());
        assert!(head(10, 300, 16, 300).validate(32).is_ok());
        assert!(head(-1, 300, 2, 0).validate(32).is_err());
        assert!(head(1, 0, 2, 0).validate(32).is_err());
        assert!(head(0, 0, 0, 0).validate(32).is_ok());
        assert!(head(1, (1 << 17) + 1, 2, 0).validate(30).is_err());
        assert!(head(1, (1 << 17) + 1, 2, 0).validate(29).is_ok());
        assert!(head(1, (1 << 29) + 1, 2, 0).validate(29).is_err());
        assert!(head(1, 300, 17, 0).validate(32).is_err());
        assert!(head(1, 300, -1, 0).validate(32).is_err());
        assert!(head(1, 300, 2, 301).validate(32).is_err());
        assert!(head(1, 300, 2, -1).validate(32).is_err());
    }

    #[test]
    fn block_geometry() {
        let h = head(3, 10, 2, 4);
        assert_eq!(h.block_len(0), 10);
        assert_eq!(h.block_len(2), 4);
        assert_eq!(h.block_len(3), 0);
        assert_eq!(h.block_offset(2), 20);
        assert_eq!(h.basis_len(), 24);
        assert_eq!(SumHead::EMPTY.basis_len(), 0);
    }

    #[test]
    fn block_sums_push_bounds() {
        let mut s = BlockSums::new(head(1, 10, 2, 0));
        assert!(s.push(1, &[1]).is_err());
        s.push(1, &[1, 2, 3]).unwrap();
        assert_eq!(s.get(0), Some((1, &[1u8, 2][..])));
        assert!(s.push(2, &[1, 2]).is_err());
        assert!(s.is_complete());
        // A huge peer-supplied count does not preallocate.
        let s = BlockSums::new(head(i32::MAX, 1 << 17, 16, 0));
        assert!(s.strong.capacity() <= 16 << 16);
    }

    fn stream_of(sums: &BlockSums) -> Vec<u8> {
        let mut out = Vec::new();
        for (s1, st) in sums.iter() {
            out.extend_from_slice(&s1.to_le_bytes());
            out.extend_from_slice(st);
        }
        out
    }

    #[test]
    fn block_sums_capture_12_md5() {
        let data = big_txt();
        let h = SumHead::for_file(3000, 32, Some(300), false, 16).unwrap();
        let sums = generate_sums(&mut &data[..], &h, ChecksumKind::Md5, 12345, true).unwrap();
        let want = "c266ec51ca69df6724d6ad7458662afa5107da67dafc89ed27665a33fc9d2568e06f9042\
                    85668a5d81ffca67f429e3f0676778906972f6661256bdd1";
        assert_eq!(hex(&stream_of(&sums)), want);
    }

    #[test]
    fn block_sums_capture_15_md4_old() {
        let data = big_txt();
        let h = SumHead::for_file(3000, 29, Some(300), false, 16).unwrap();
        let sums = generate_sums(&mut &data[..], &h, ChecksumKind::Md4Old, 12345, false).unwrap();
        let want = "c266ec5170fcdf6724d63a9e58662afa01b9da67dafc352727665a33d6892568e06fc27a\
                    85668a5d940cca67f4293a66676778902124f6661256db15";
        assert_eq!(hex(&stream_of(&sums)), want);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn md5_hex(b: &[u8]) -> String {
        use md5::Digest as _;
        hex(&md5::Md5::digest(b))
    }

    #[test]
    fn block_sums_capture_27_28_sizes() {
        // MD5 of each file's whole sum stream (sum1 LE + strong prefix per
        // block) as the stock generator sent it, seed 12345.
        let data = sizes_data(67108864);
        let cases: [(usize, &str, &str); 4] = [
            (
                490001,
                "9f3f5c901bcbd1bb44cd3f4ce820497f",
                "029533fbc8697d4f7b60baffc4dda78a",
            ),
            (
                5000000,
                "21ec7f26c005942d4e3fbccc73359daa",
                "35840e71354e689e055694033d942c47",
            ),
            (
                67108864,
                "9f4b62e559a2005495719235e449df28",
                "4bd5c5a85c99308d97e03560ebfa4b18",
            ),
            (
                700,
                "f8b1a3c84a2b35068595ba6e77d8c61a",
                "0b0ff0f46d8ea78e1cb4a5a0a2147931",
            ),
        ];
        for (len, p32, p29) in cases {
            let file = &data[..len];
            for (proto, kind, want) in [
                (32u8, ChecksumKind::Xxh128, p32),
                (29, ChecksumKind::Md4Old, p29),
            ] {
                let h = SumHead::for_file(len as i64, proto, None, false, 16).unwrap();
                let sums = generate_sums(&mut &file[..], &h, kind, 12345, proto >= 30).unwrap();
                assert_eq!(md5_hex(&stream_of(&sums)), want, "len {len} proto {proto}");
            }
        }
    }

    #[test]
    fn short_basis_is_zero_filled() {
        let h = head(2, 4, 2, 0);
        let mut seen = Vec::new();
        let n = generate_sums_with(
            &mut &b"abcde"[..],
            &h,
            ChecksumKind::Md5,
            0,
            true,
            |s, _| {
                seen.push(s);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 5);
        assert_eq!(seen, vec![checksum1(b"abcd"), checksum1(b"e\0\0\0")]);
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn for_file_is_consistent(len in 1i64..(1i64 << 42), proto in 27u8..=32, redo: bool, dl in prop::sample::select(vec![8usize, 16])) {
            let h = SumHead::for_file(len, proto, None, redo, dl).unwrap();
            prop_assert!(h.validate(proto).is_ok());
            prop_assert_eq!(h.basis_len(), len as u64);
            prop_assert!(h.s2length >= 2 && h.s2length as usize <= dl);
            prop_assert!(h.blength == 700 || h.blength % 8 == 0);
        }
    }
}
