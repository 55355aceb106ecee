//! The receiver-side patcher: rebuild a file from literal data and
//! references to blocks of the basis file.
//!
//! upstream: receiver.c `receive_data` (the token-applying part). Every
//! block index is checked against the sum header the generator sent; block
//! data is copied through a fixed 256 KiB buffer, so a peer-chosen block
//! length never sizes an allocation. Digest verification is the caller's
//! job (feed the bytes to a `StrongHasher` via the callbacks, or wrap the
//! writer). The same buffer reads the basis ahead, so a run of consecutive
//! blocks costs one read per 256 KiB, not one per block, and is written out
//! in one piece from that buffer when the run ends (no copy through the
//! writer's own buffer, one write per run or per 256 KiB).

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::matcher::TokenSink;
use super::sums::{read_full, SumHead};
use super::DeltaError;

const COPY_BUF: usize = 256 * 1024;

/// Applies tokens to an output, reading matched blocks from `basis`.
#[derive(Debug)]
pub struct Patcher<B, W> {
    basis: Option<B>,
    out: W,
    head: SumHead,
    /// Read-ahead of the basis: `buf[..cached]` holds the basis bytes from
    /// `cache_off` on (consecutive blocks are served from it, one read per
    /// COPY_BUF instead of one per block).
    buf: crate::iobuf::IoBuf,
    cache_off: u64,
    cached: usize,
    /// Where the basis reader is positioned, when known (saves seeks for
    /// runs of consecutive blocks).
    basis_pos: Option<u64>,
    /// `buf[pending.0..pending.1]`: copied blocks not yet handed to `out`
    /// (a run grows while the next block follows on in the read-ahead).
    pending: (usize, usize),
    written: u64,
}

impl<B: Read + Seek, W: Write> Patcher<B, W> {
    /// A patcher for one file. `head` is the sum header the generator sent
    /// for this file (its count bounds the block indices accepted);
    /// `basis` is `None` when there is no basis file.
    pub fn new(basis: Option<B>, out: W, head: SumHead) -> Self {
        Patcher {
            basis,
            out,
            head,
            buf: crate::iobuf::IoBuf::new(),
            cache_off: 0,
            cached: 0,
            basis_pos: None,
            pending: (0, 0),
            written: 0,
        }
    }

    /// Hand the pending run of copied blocks to the output.
    fn flush_pending(&mut self) -> Result<(), DeltaError> {
        let (a, b) = std::mem::take(&mut self.pending);
        if b > a {
            self.out.write_all(&self.buf[a..b])?;
        }
        Ok(())
    }

    /// Write literal data.
    pub fn literal(&mut self, data: &[u8]) -> Result<(), DeltaError> {
        self.flush_pending()?;
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Copy basis block `index` to the output, passing the copied bytes to
    /// `on_data` in pieces (e.g. for the whole-file digest). Fails when the
    /// index is outside the header's count, when there is no basis, or when
    /// the basis ends early.
    pub fn copy_block(
        &mut self,
        index: u32,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(), DeltaError> {
        if index as i64 >= self.head.count as i64 {
            return Err(DeltaError::BlockIndexOutOfRange {
                index,
                count: self.head.count,
            });
        }
        let mut pos = self.head.block_offset(index);
        let mut left = self.head.block_len(index);
        // Read ahead no further than the basis the header describes.
        let basis_end = self.head.basis_len();
        while left > 0 {
            let in_cache = pos >= self.cache_off && pos < self.cache_off + self.cached as u64;
            if !in_cache {
                self.flush_pending()?;
                let Some(basis) = self.basis.as_mut() else {
                    return Err(DeltaError::NoBasis(index));
                };
                if self.basis_pos != Some(pos) {
                    self.basis_pos = None;
                    basis.seek(SeekFrom::Start(pos))?;
                }
                // pos < basis_end: the block is one the header describes.
                let want = usize::try_from(basis_end.saturating_sub(pos))
                    .unwrap_or(usize::MAX)
                    .clamp(1, COPY_BUF);
                if self.buf.len() < want {
                    self.buf.resize(want);
                }
                let got = read_full(basis, &mut self.buf[..want])?;
                self.cache_off = pos;
                self.cached = got;
                self.basis_pos = Some(pos + got as u64);
                if got == 0 {
                    self.basis_pos = None;
                    return Err(DeltaError::BasisTooShort(index));
                }
            }
            let start = (pos - self.cache_off) as usize;
            let n = left.min(self.cached - start);
            let piece = &self.buf[start..start + n];
            on_data(piece);
            if self.pending.1 != start || self.pending.0 == self.pending.1 {
                self.flush_pending()?;
                self.pending.0 = start;
            }
            self.pending.1 = start + n;
            self.written += n as u64;
            pos += n as u64;
            left -= n;
        }
        Ok(())
    }

    /// Bytes written so far (including a run still held for one write).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flush and return the output and the number of bytes written.
    pub fn finish(mut self) -> Result<(W, u64), DeltaError> {
        self.flush_pending()?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

fn to_io(e: DeltaError) -> io::Error {
    match e {
        DeltaError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// Lets a matcher drive a patcher directly (local copies, tests). The
/// sender's block data is ignored: blocks always come from the basis.
impl<B: Read + Seek, W: Write> TokenSink for Patcher<B, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        Patcher::literal(self, data).map_err(to_io)
    }

    fn matched(&mut self, block_index: u32, _data: &[u8]) -> io::Result<()> {
        self.copy_block(block_index, |_| {}).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{ChecksumKind, StrongHasher};
    use std::io::Cursor;

    fn head(count: i32, blength: i32, remainder: i32) -> SumHead {
        SumHead {
            count,
            blength,
            s2length: 2,
            remainder,
        }
    }

    #[test]
    fn applies_tokens_and_feeds_digest() {
        let basis = b"0123456789abcdefghij!!".to_vec(); // blocks of 10, last 2
        let mut p = Patcher::new(Some(Cursor::new(basis)), Vec::new(), head(3, 10, 2));
        let mut h = StrongHasher::new_file(ChecksumKind::Md5, 0);
        p.literal(b"<").unwrap();
        h.update(b"<");
        p.copy_block(1, |d| h.update(d)).unwrap();
        p.copy_block(2, |d| h.update(d)).unwrap();
        p.copy_block(0, |d| h.update(d)).unwrap();
        let (out, n) = p.finish().unwrap();
        assert_eq!(out, b"<abcdefghij!!0123456789");
        assert_eq!(n, out.len() as u64);
        let mut h2 = StrongHasher::new_file(ChecksumKind::Md5, 0);
        h2.update(&out);
        assert_eq!(h.finish(), h2.finish());
    }

    #[test]
    fn rejects_bad_indices_and_missing_basis() {
        let mut p = Patcher::new(Some(Cursor::new(vec![0u8; 30])), Vec::new(), head(3, 10, 0));
        assert!(matches!(
            p.copy_block(3, |_| {}),
            Err(DeltaError::BlockIndexOutOfRange { index: 3, count: 3 })
        ));
        assert!(p.copy_block(u32::MAX, |_| {}).is_err());
        let mut p = Patcher::new(None::<Cursor<Vec<u8>>>, Vec::new(), head(3, 10, 0));
        assert!(matches!(
            p.copy_block(0, |_| {}),
            Err(DeltaError::NoBasis(0))
        ));
        // The empty header accepts no block at all.
        let mut p = Patcher::new(Some(Cursor::new(vec![0u8; 30])), Vec::new(), SumHead::EMPTY);
        assert!(p.copy_block(0, |_| {}).is_err());
    }

    #[test]
    fn blocks_in_any_order_come_from_the_read_ahead_intact() {
        // 100 blocks of 7,000 bytes (several per read-ahead) in a scattered
        // order with repeats, runs and jumps back.
        let basis: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let order: Vec<u32> = (0..300u32).map(|k| (k * 37 + k / 3) % 100).collect();
        let mut p = Patcher::new(
            Some(Cursor::new(basis.clone())),
            Vec::new(),
            head(100, 7000, 0),
        );
        let mut seen = Vec::new();
        for &b in &order {
            p.copy_block(b, |d| seen.extend_from_slice(d)).unwrap();
        }
        let (out, n) = p.finish().unwrap();
        let want: Vec<u8> = order
            .iter()
            .flat_map(|&b| basis[b as usize * 7000..(b as usize + 1) * 7000].to_vec())
            .collect();
        assert_eq!(n as usize, want.len());
        assert_eq!(out, want);
        assert_eq!(seen, want);
    }

    #[test]
    fn short_basis_is_an_error() {
        let mut p = Patcher::new(Some(Cursor::new(vec![0u8; 25])), Vec::new(), head(3, 10, 0));
        p.copy_block(1, |_| {}).unwrap();
        assert!(matches!(
            p.copy_block(2, |_| {}),
            Err(DeltaError::BasisTooShort(2))
        ));
    }

    #[test]
    fn big_blocks_copy_in_pieces() {
        let basis: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut p = Patcher::new(
            Some(Cursor::new(basis.clone())),
            Vec::new(),
            head(1, 1 << 20, 0),
        );
        let mut pieces = 0;
        p.copy_block(0, |d| {
            assert!(d.len() <= COPY_BUF);
            pieces += 1;
        })
        .unwrap();
        assert_eq!(pieces, 4);
        assert_eq!(p.finish().unwrap().0, basis);
    }

    /// Records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_run_of_blocks_is_one_write_and_literals_keep_their_place() {
        let basis: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        let mut p = Patcher::new(
            Some(Cursor::new(basis.clone())),
            Writes::default(),
            head(10, 10_000, 0),
        );
        for b in 0..5 {
            p.copy_block(b, |_| {}).unwrap();
        }
        p.literal(b"lit").unwrap();
        p.copy_block(5, |_| {}).unwrap();
        p.copy_block(5, |_| {}).unwrap();
        p.copy_block(6, |_| {}).unwrap();
        assert_eq!(p.written(), 80_003);
        let (w, n) = p.finish().unwrap();
        let sizes: Vec<usize> = w.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, [50_000, 3, 10_000, 20_000]);
        let out = w.0.concat();
        assert_eq!(n as usize, out.len());
        let mut want = basis[..50_000].to_vec();
        want.extend_from_slice(b"lit");
        want.extend_from_slice(&basis[50_000..60_000]);
        want.extend_from_slice(&basis[50_000..70_000]);
        assert_eq!(out, want);
    }

    proptest::proptest! {
        /// Any mix of literals and blocks (runs, repeats, jumps, blocks
        /// larger than the read-ahead) rebuilds what a naive copy builds.
        #[test]
        fn any_token_order_rebuilds_the_naive_copy(
            blength in 1i32..300_000,
            count in 1i32..12,
            tokens in proptest::collection::vec((proptest::bool::ANY, 0u32..12, 0usize..40), 0..40),
        ) {
            let len = blength as usize * count as usize;
            let basis: Vec<u8> = (0..len).map(|i| (i * 31 % 257) as u8).collect();
            let mut p = Patcher::new(Some(Cursor::new(basis.clone())), Vec::new(), head(count, blength, 0));
            let mut want = Vec::new();
            for (is_lit, b, l) in tokens {
                if is_lit {
                    let lit = vec![l as u8; l];
                    p.literal(&lit).unwrap();
                    want.extend_from_slice(&lit);
                } else {
                    let b = b % count as u32;
                    p.copy_block(b, |_| {}).unwrap();
                    let at = b as usize * blength as usize;
                    want.extend_from_slice(&basis[at..at + blength as usize]);
                }
            }
            let (out, n) = p.finish().unwrap();
            proptest::prop_assert_eq!(n as usize, want.len());
            proptest::prop_assert!(out == want);
        }
    }
}
