//! The sender-side matcher: scan the new file for blocks the receiver
//! already has and turn it into literal runs and block references.
//!
//! upstream: match.c `match_sums`, `hash_search`, `build_hash_table`,
//! `matched`. Same search as upstream (rolling sum over a `blength` window,
//! strong sum computed lazily once per offset, the adjacent block
//! `previous + 1` preferred, at most 1024 same-`sum1` candidates per offset,
//! early literal flushes once more than `blength + 32768` bytes are
//! pending), but over a bounded sliding buffer fed by any `Read`, so the
//! file never has to fit in memory. The hash table is rrsync's own (a
//! power-of-two table of tagged heads and next-links over the distinct
//! `sum1` values, with a per-process random multiplier); it only decides which of
//! several equal blocks is named, never what the receiver reconstructs.
//! For a receiver that rewrites its basis in place (`--inplace`, see
//! [`Matcher::set_in_place`]) a block is named only where it is still
//! intact there, as upstream's `updating_basis_file`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::sync::OnceLock;

use super::sums::{BlockSums, SumHead};
use super::{DeltaError, CHUNK_SIZE};
use crate::checksum::{block_sum, ChecksumKind, DigestBuf, Rolling, StrongHasher};
use crate::iobuf::{IoBuf, ALIGN};

/// Receives the delta of one file, in file order.
///
/// Consecutive `literal` calls form one literal run; each call carries at
/// most [`CHUNK_SIZE`] bytes. `matched` names a basis block and carries the
/// sender's copy of its data (which equals the basis block unless the strong
/// sums collide), e.g. for compressors that feed matched data into their
/// history.
pub trait TokenSink {
    /// Literal bytes.
    fn literal(&mut self, data: &[u8]) -> io::Result<()>;
    /// A reference to basis block `block_index`, whose content is `data`.
    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()>;
    /// A run of literal bytes of any length (part of the current literal
    /// run, like `literal`); by default handed to `literal` in pieces of
    /// at most [`CHUNK_SIZE`]. A sink that can send a long run at once
    /// (without copying it) overrides this.
    fn literal_run(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(CHUNK_SIZE) {
            self.literal(chunk)?;
        }
        Ok(())
    }
}

/// Counters of one [`Matcher::match_file`] run (upstream keeps the same
/// ones for `--debug=deltasum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchStats {
    /// Bytes read from the source.
    pub file_len: u64,
    /// Bytes sent as literals.
    pub literal_bytes: u64,
    /// Bytes covered by block references.
    pub matched_bytes: u64,
    /// Number of block references.
    pub matches: u64,
    /// Offsets whose rolling sum matched a block but the strong sum did not.
    pub false_alarms: u64,
    /// Offsets whose rolling sum is some block's (upstream's hash_hits
    /// counts its hash buckets' hits, a few more).
    pub hash_hits: u64,
}

/// The result of matching one file.
#[derive(Debug, Clone, Copy)]
pub struct MatchOutcome {
    /// The whole-file transfer digest of the data read (§8.4), to send
    /// after the end token.
    pub digest: DigestBuf,
    /// Counters.
    pub stats: MatchStats,
}

/// Most same-`sum1` candidates compared at one offset (upstream:
/// MAX_CHAIN_LEN).
const MAX_CHAIN_LEN: usize = 1024;
/// Smallest read buffer.
const MIN_BUF: usize = 256 * 1024;
/// Read size when the whole file goes out as literals: a multiple of
/// CHUNK_SIZE - 4, the literal token the sender cuts long runs into.
const WHOLE_READ: usize = 32 * (CHUNK_SIZE - 4);
/// The first read of such a file (most files are small; a session of
/// small files keeps only this much buffer resident). Reads that fill the
/// buffer grow it 4x at a time up to WHOLE_READ.
const FIRST_WHOLE_READ: usize = 16 * 1024;
/// Read buffer size the window grows to for large files.
const TARGET_BUF: usize = 1024 * 1024;
/// `Group::next` / table value meaning "no group".
const NO_GROUP: u32 = u32::MAX >> 1;
/// Table flag: the bucket holds more than one distinct sum1.
const MULTI: u32 = 1 << 31;

/// A per-process odd multiplier, so that a peer cannot pick `sum1` values
/// that all land in one bucket.
fn hash_multiplier() -> u32 {
    static MUL: OnceLock<u32> = OnceLock::new();
    *MUL.get_or_init(|| (RandomState::new().hash_one(0x5eed_u64) as u32) | 1)
}

/// A reusable matcher: keeps its hash table and read buffer between files.
#[derive(Debug, Default)]
pub struct Matcher {
    /// Buckets: low 32 bits = sum1 of the bucket's first group (or a value
    /// that cannot hash here when empty), high 32 bits = that group's index
    /// (NO_GROUP when empty) | MULTI when further groups share the bucket.
    table: Vec<u64>,
    /// Distinct sum1 values: (sum1, next group in the bucket, start, end)
    /// where `order[start..end]` are the blocks with that sum1.
    groups: Vec<Group>,
    /// Block indices sorted by sum1.
    order: Vec<u32>,
    /// The read buffer (page-aligned, see [`crate::iobuf`]).
    buf: IoBuf,
    /// The whole-file digest state of the last file, reset, with its seed.
    hasher: Option<(u32, StrongHasher)>,
    /// The receiver writes into its basis (upstream updating_basis_file).
    in_place: bool,
    /// In place: the blocks matched at their own offset (SUMFLG_SAME_OFFSET).
    same_offset: Vec<bool>,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    sum1: u32,
    next: u32,
    start: u32,
    end: u32,
}

/// Match one file; see [`Matcher::match_file`].
pub fn match_file<R: Read, S: TokenSink>(
    reader: &mut R,
    sums: &BlockSums,
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
    sink: &mut S,
) -> Result<MatchOutcome, DeltaError> {
    Matcher::default().match_file(reader, sums, kind, seed, proper_seed_order, sink)
}

/// The sliding window over the source: `buf[..filled]` holds file bytes
/// starting at some offset; `lit` is the first byte not yet emitted and
/// `pos` the start of the current search window.
struct Window<'b, R> {
    reader: &'b mut R,
    /// Index `i` holds file offset `total - filled + i`; the two stay
    /// congruent modulo [`ALIGN`], so reads copy page-aligned.
    buf: &'b mut IoBuf,
    filled: usize,
    lit: usize,
    pos: usize,
    eof: bool,
    cap: usize,
    total: u64,
}

impl<R: Read> Window<'_, R> {
    /// The file offset of `buf[pos]`.
    fn offset(&self) -> u64 {
        self.total - self.filled as u64 + self.pos as u64
    }

    /// Make `buf[pos..pos + want]` available unless the file ends first.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let need_end = self.pos + want;
        if need_end > self.buf.len() {
            // Drop what has been emitted already, in whole pages, so that
            // buffer and file offsets stay congruent (fast kernel copies).
            let drop = self.lit & !(ALIGN - 1);
            if drop > 0 {
                self.buf.copy_within(drop..self.filled, 0);
                self.filled -= drop;
                self.pos -= drop;
                self.lit -= drop;
            }
            // Grow while the retained data fills much of the buffer, so
            // large files get large reads and rare compactions.
            if self.filled > self.buf.len() / 8 && self.buf.len() < self.cap {
                let len = (self.buf.len() * 2).clamp(MIN_BUF, self.cap);
                self.buf.resize(len);
            }
        }
        let need_end = self.pos + want;
        while self.filled < need_end && !self.eof {
            if self.filled == self.buf.len() {
                let len = (self.buf.len() * 2).clamp(MIN_BUF, self.cap.max(need_end));
                self.buf.resize(len);
            }
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.filled += n;
                    self.total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Hand `data` to the sink as literal chunks and to the digest.
fn emit_literal<S: TokenSink>(
    sink: &mut S,
    hasher: &mut StrongHasher,
    stats: &mut MatchStats,
    data: &[u8],
) -> io::Result<()> {
    hasher.update(data);
    sink.literal_run(data)?;
    stats.literal_bytes += data.len() as u64;
    Ok(())
}

impl Matcher {
    /// A matcher with no allocations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the next files go to a receiver that writes into its basis
    /// as it goes (`--inplace` with the file itself as the basis): then a
    /// block is named only if the receiver has not overwritten it yet (its
    /// offset is not behind ours) or it was matched at its own offset, and
    /// the block at our own offset is preferred (upstream hash_search with
    /// updating_basis_file).
    pub fn set_in_place(&mut self, on: bool) {
        self.in_place = on;
    }

    /// Build the lookup structures for `sums`; returns the table's shift.
    fn build(&mut self, sums: &BlockSums) -> u32 {
        let sum1s = sums.sum1s();
        let count = sum1s.len();
        // Power of two, at least 4x the blocks (load <= 25%), at least 1024.
        let size = (count.saturating_mul(4)).max(1024).next_power_of_two();
        let bits = size.trailing_zeros();
        let shift = 32 - bits;
        let mul = hash_multiplier();
        let bucket = |s: u32| (s.wrapping_mul(mul) >> shift) as usize;

        self.order.clear();
        self.order.extend(0..count as u32);
        self.order.sort_unstable_by_key(|&i| (sum1s[i as usize], i));

        // Empty buckets hold a sum1 that cannot land in them, so the fast
        // test `key == sum` never fires on an empty bucket.
        let other_than_0 = (1u32..).find(|&c| bucket(c) != 0).unwrap_or(1);
        self.table.clear();
        self.table.extend((0..size).map(|h| {
            let key = if h == 0 { other_than_0 } else { 0 };
            (u64::from(NO_GROUP) << 32) | u64::from(key)
        }));
        self.groups.clear();
        let mut start = 0usize;
        while start < count {
            let s1 = sum1s[self.order[start] as usize];
            let mut end = start + 1;
            while end < count && sum1s[self.order[end] as usize] == s1 {
                end += 1;
            }
            let h = bucket(s1);
            let g = self.groups.len() as u32;
            let old = self.table[h];
            let old_head = (old >> 32) as u32 & !MULTI;
            self.groups.push(Group {
                sum1: s1,
                next: old_head,
                start: start as u32,
                end: end as u32,
            });
            let multi = if old_head == NO_GROUP { 0 } else { MULTI };
            self.table[h] = (u64::from(g | multi) << 32) | u64::from(s1);
            start = end;
        }
        shift
    }

    /// The group of blocks whose sum1 equals `sum`, if any.
    #[inline(always)]
    fn find_group(&self, sum: u32, shift: u32, mul: u32) -> Option<&Group> {
        let e = self.table[(sum.wrapping_mul(mul) >> shift) as usize];
        let mut g = (e >> 32) as u32 & !MULTI;
        while g != NO_GROUP {
            let grp = &self.groups[g as usize];
            if grp.sum1 == sum {
                return Some(grp);
            }
            g = grp.next;
        }
        None
    }

    /// No basis: the rest of `reader` in large reads, each one literal run
    /// (and one frame on the wire). The buffer starts small (most files
    /// are) and grows towards WHOLE_READ while reads fill it.
    fn send_literal<R: Read, S: TokenSink>(
        &mut self,
        reader: &mut R,
        hasher: &mut StrongHasher,
        stats: &mut MatchStats,
        sink: &mut S,
    ) -> Result<(), DeltaError> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut want = buf.len().clamp(FIRST_WHOLE_READ, WHOLE_READ);
        if buf.len() < want {
            buf.resize(want);
        }
        let r = loop {
            let n = match super::sums::read_full(reader, &mut buf[..want]) {
                Ok(n) => n,
                Err(e) => break Err(DeltaError::from(e)),
            };
            if n == 0 {
                break Ok(());
            }
            if n == want && want < WHOLE_READ {
                want = (want * 4).min(WHOLE_READ);
                buf.resize(want);
            }
            stats.file_len += n as u64;
            if let Err(e) = emit_literal(sink, hasher, stats, &buf[..n]) {
                break Err(DeltaError::from(e));
            }
        };
        self.buf = buf;
        r
    }

    /// `--append` (upstream match_sums with append_mode): the first
    /// `prefix` bytes of `reader` are already at the receiver and are
    /// skipped (hashed into the whole-file digest only when `verify`,
    /// `--append-verify`); the rest goes out as literal data.
    pub fn append_file<R: Read, S: TokenSink>(
        &mut self,
        reader: &mut R,
        prefix: u64,
        verify: bool,
        kind: ChecksumKind,
        seed: u32,
        sink: &mut S,
    ) -> Result<MatchOutcome, DeltaError> {
        let mut hasher = match self.hasher.take() {
            Some((s, h)) if s == seed && h.kind() == kind => h,
            _ => StrongHasher::new_file(kind, seed),
        };
        let mut stats = MatchStats::default();
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(buf.len().max(CHUNK_SIZE));
        let mut left = prefix;
        let skipped = loop {
            if left == 0 {
                break Ok(());
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match super::sums::read_full(reader, &mut buf[..want]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if verify {
                        hasher.update(&buf[..n]);
                    }
                    stats.file_len += n as u64;
                    left -= n as u64;
                }
                Err(e) => break Err(DeltaError::from(e)),
            }
        };
        self.buf = buf;
        skipped?;
        self.send_literal(reader, &mut hasher, &mut stats, sink)?;
        let digest = hasher.finish_reset_file(seed);
        self.hasher = Some((seed, hasher));
        Ok(MatchOutcome { digest, stats })
    }

    /// Scan the source read from `reader` against the receiver's block
    /// `sums` and feed the delta to `sink` (upstream: match.c `match_sums`).
    ///
    /// `kind`, `seed` and `proper_seed_order` are the session's transfer
    /// checksum settings: they define both the strong block sums compared
    /// (only the first `min(s2length, digest_len)` bytes) and the returned
    /// whole-file digest of everything read. With `count == 0` the whole
    /// file goes out as literals. The sums must be complete and their
    /// header valid (see [`SumHead::validate`]).
    pub fn match_file<R: Read, S: TokenSink>(
        &mut self,
        reader: &mut R,
        sums: &BlockSums,
        kind: ChecksumKind,
        seed: u32,
        proper_seed_order: bool,
        sink: &mut S,
    ) -> Result<MatchOutcome, DeltaError> {
        let head: SumHead = *sums.head();
        head.validate(0)?;
        if !sums.is_complete() {
            return Err(DeltaError::SumsMismatch("fewer block sums than count"));
        }
        // A reset hasher from the previous file, when it computes the same digest.
        let mut hasher = match self.hasher.take() {
            Some((s, h)) if s == seed && h.kind() == kind => h,
            _ => StrongHasher::new_file(kind, seed),
        };
        let mut stats = MatchStats::default();

        if head.count == 0 {
            self.send_literal(reader, &mut hasher, &mut stats, sink)?;
            let digest = hasher.finish_reset_file(seed);
            self.hasher = Some((seed, hasher));
            return Ok(MatchOutcome { digest, stats });
        }

        let shift = self.build(sums);
        self.same_offset.clear();
        if self.in_place {
            self.same_offset.resize(head.count.max(0) as usize, false);
        }
        let mul = hash_multiplier();
        let count = head.count as usize;
        let blen = head.blength as usize;
        let last_len = head.block_len(head.count as u32 - 1);
        let cmp_len = (head.s2length.max(0) as usize).min(kind.digest_len());
        let flush_at = blen + CHUNK_SIZE;

        let mut buf = std::mem::take(&mut self.buf);
        let mut w = Window {
            reader,
            buf: &mut buf,
            filled: 0,
            lit: 0,
            pos: 0,
            eof: false,
            cap: TARGET_BUF.max(2 * (blen + CHUNK_SIZE) + 2),
            total: 0,
        };
        let result = self.search(
            &mut w,
            sums,
            SearchParams {
                kind,
                seed,
                proper_seed_order,
                shift,
                mul,
                count,
                blen,
                last_len,
                cmp_len,
                flush_at,
                in_place: self.in_place,
            },
            &mut hasher,
            &mut stats,
            sink,
        );
        stats.file_len = w.total;
        self.buf = buf;
        result?;
        let digest = hasher.finish_reset_file(seed);
        self.hasher = Some((seed, hasher));
        Ok(MatchOutcome { digest, stats })
    }

    /// The search loop (upstream: match.c `hash_search`).
    fn search<R: Read, S: TokenSink>(
        &mut self,
        w: &mut Window<'_, R>,
        sums: &BlockSums,
        p: SearchParams,
        hasher: &mut StrongHasher,
        stats: &mut MatchStats,
        sink: &mut S,
    ) -> Result<(), DeltaError> {
        let sum1s = sums.sum1s();
        let head = *sums.head();
        let mut rolling = Rolling::default();
        let mut need_sum = true;
        // The block after the previous match, preferred among equal blocks.
        let mut want_i: usize = 0;

        loop {
            // The window plus the byte after it, unless the file ends.
            if w.filled < w.pos + p.blen + 1 && !w.eof {
                w.fill(p.blen + 1)?;
            }
            let avail = w.filled - w.pos;
            if w.eof && avail < p.last_len {
                break; // upstream: offset >= end
            }
            let k = avail.min(p.blen);
            if need_sum {
                rolling = Rolling::new(&w.buf[w.pos..w.pos + k]);
                need_sum = false;
            }
            while w.pos - w.lit >= p.flush_at {
                let (a, b) = (w.lit, w.lit + CHUNK_SIZE);
                emit_literal(sink, hasher, stats, &w.buf[a..b])?;
                w.lit = b;
            }

            // Fast scan while a full window and the next byte are buffered
            // and no flush is due: one table probe and one roll per byte.
            if k == p.blen && w.pos + p.blen < w.filled {
                let stop = (w.filled - p.blen).min(w.lit + p.flush_at);
                let outs = &w.buf[w.pos..stop];
                let ins = &w.buf[w.pos + p.blen..stop + p.blen];
                let mut hit = None;
                for (n, (&o, &i)) in outs.iter().zip(ins).enumerate() {
                    let sum = rolling.sum();
                    let e = self.table[(sum.wrapping_mul(p.mul) >> p.shift) as usize];
                    // Exact key hit, or a bucket shared by several sum1s.
                    if (e as u32 == sum || (e >> 32) as u32 & MULTI != 0)
                        && self.find_group(sum, p.shift, p.mul).is_some()
                    {
                        hit = Some(n);
                        break;
                    }
                    rolling.roll(o, i);
                }
                match hit {
                    Some(n) => w.pos += n,
                    None => {
                        w.pos = stop;
                        continue;
                    }
                }
            }

            // Candidate check at w.pos (window length k).
            let sum = rolling.sum();
            if let Some(grp) = self.find_group(sum, p.shift, p.mul).copied() {
                stats.hash_hits += 1;
                let off = w.offset();
                let window = &w.buf[w.pos..w.pos + k];
                if let Some((first, digest)) = self.first_match(&grp, window, off, sums, &p, stats)
                {
                    let ours = &digest.as_bytes()[..p.cmp_len];
                    let mut i = first;
                    let mut ahead = 0;
                    if p.in_place {
                        if let Some((at, skip)) =
                            self.aligned_block(w, sums, &p, (first, sum, k), ours)?
                        {
                            self.same_offset[at] = true;
                            (i, ahead, want_i) = (at, skip, at);
                        }
                    }
                    // Prefer the block right after the previous match.
                    let here = off + ahead as u64;
                    if i != want_i
                        && want_i < p.count
                        && (!p.in_place
                            || want_i as u64 * p.blen as u64 >= here
                            || self.same_offset[want_i])
                        && sum1s[want_i] == sum
                        && head.block_len(want_i as u32) == k
                        && &sums.strong_at(want_i)[..p.cmp_len] == ours
                    {
                        i = want_i;
                    }
                    want_i = i + 1;
                    w.pos += ahead;
                    emit_literal(sink, hasher, stats, &w.buf[w.lit..w.pos])?;
                    let window = &w.buf[w.pos..w.pos + k];
                    hasher.update(window);
                    sink.matched(i as u32, window)?;
                    stats.matches += 1;
                    stats.matched_bytes += k as u64;
                    w.pos += k;
                    w.lit = w.pos;
                    need_sum = true;
                    continue;
                }
            }

            // No match here: slide by one byte (shrinking at the very end).
            if w.pos + k < w.filled {
                rolling.roll(w.buf[w.pos], w.buf[w.pos + k]);
            } else {
                rolling.roll_out(w.buf[w.pos]);
            }
            w.pos += 1;
        }

        // Everything left is literal.
        emit_literal(sink, hasher, stats, &w.buf[w.lit..w.filled])?;
        w.lit = w.filled;
        Ok(())
    }
}

impl Matcher {
    /// The first block of `grp` (at most MAX_CHAIN_LEN tried) whose length
    /// and strong sum are those of `window`, at file offset `off`, with the
    /// window's strong sum. In place, a block behind `off` is passed over
    /// (uncounted) unless it was matched at its own offset: the receiver
    /// has overwritten it.
    fn first_match(
        &self,
        grp: &Group,
        window: &[u8],
        off: u64,
        sums: &BlockSums,
        p: &SearchParams,
        stats: &mut MatchStats,
    ) -> Option<(usize, DigestBuf)> {
        let head = sums.head();
        let mut strong: Option<DigestBuf> = None;
        let mut tried = 0;
        for &bi in &self.order[grp.start as usize..grp.end as usize] {
            let i = bi as usize;
            if p.in_place && (i as u64) * (p.blen as u64) < off && !self.same_offset[i] {
                continue;
            }
            tried += 1;
            if tried > MAX_CHAIN_LEN {
                break;
            }
            if head.block_len(bi) != window.len() {
                continue;
            }
            let digest = strong
                .get_or_insert_with(|| block_sum(p.kind, window, p.seed, p.proper_seed_order));
            if sums.strong_at(i)[..p.cmp_len] != digest.as_bytes()[..p.cmp_len] {
                stats.false_alarms += 1;
                continue;
            }
            return strong.map(|d| (i, d));
        }
        None
    }

    /// In place, the best match is the block at our own offset (upstream
    /// hash_search with updating_basis_file). `found` is the first matching
    /// block, the window's sum1 and length, `ours` its strong sum. Returns
    /// the block at the aligned offset (the next multiple of the block
    /// length) and how far ahead of the window it starts: at once when the
    /// window is aligned, or, for a window of zeros, further on when the
    /// source has that block there too (the zeros between go out as
    /// literal data and the receiver is back to skipping over unchanged
    /// blocks). None when there is no such block.
    fn aligned_block<R: Read>(
        &self,
        w: &mut Window<'_, R>,
        sums: &BlockSums,
        p: &SearchParams,
        found: (usize, u32, usize),
        ours: &[u8],
    ) -> io::Result<Option<(usize, usize)>> {
        let (first, sum, k) = found;
        let off = w.offset();
        let blen = p.blen as u64;
        let aligned = off.div_ceil(blen) * blen;
        let Ok(at) = usize::try_from(aligned / blen) else {
            return Ok(None);
        };
        let ahead = (aligned - off) as usize;
        let zeros = sum == 0 && k == p.blen;
        if at >= p.count || (ahead > 0 && !zeros) {
            return Ok(None);
        }
        let head = sums.head();
        if first != at
            && (sums.sum1s()[at] != sum
                || head.block_len(at as u32) != k
                || sums.strong_at(at)[..p.cmp_len] != *ours)
        {
            return Ok(None);
        }
        if ahead > 0 {
            w.fill(ahead + k)?;
            if w.filled - w.pos < ahead + k {
                return Ok(None);
            }
            let there = &w.buf[w.pos + ahead..w.pos + ahead + k];
            if Rolling::new(there).sum() != sums.sum1s()[at] {
                return Ok(None);
            }
            let d = block_sum(p.kind, there, p.seed, p.proper_seed_order);
            if sums.strong_at(at)[..p.cmp_len] != d.as_bytes()[..p.cmp_len] {
                return Ok(None);
            }
        }
        Ok(Some((at, ahead)))
    }
}

#[derive(Clone, Copy)]
struct SearchParams {
    kind: ChecksumKind,
    seed: u32,
    proper_seed_order: bool,
    shift: u32,
    mul: u32,
    count: usize,
    blen: usize,
    last_len: usize,
    cmp_len: usize,
    flush_at: usize,
    /// See [`Matcher::set_in_place`].
    in_place: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::patcher::Patcher;
    use crate::delta::sums::generate_sums;
    use crate::delta::testutil::{big_txt, sizes_data};
    use proptest::prelude::*;
    use std::io::Cursor;

    /// Records tokens like the wire would see them.
    #[derive(Default, Debug)]
    struct Rec {
        tokens: Vec<Tok>,
        max_literal: usize,
    }
    #[derive(Debug, PartialEq, Eq)]
    enum Tok {
        Lit(Vec<u8>),
        Block(u32),
    }
    impl TokenSink for Rec {
        fn literal(&mut self, data: &[u8]) -> io::Result<()> {
            self.max_literal = self.max_literal.max(data.len());
            match self.tokens.last_mut() {
                Some(Tok::Lit(v)) => v.extend_from_slice(data),
                _ => self.tokens.push(Tok::Lit(data.to_vec())),
            }
            Ok(())
        }
        fn matched(&mut self, block_index: u32, _data: &[u8]) -> io::Result<()> {
            self.tokens.push(Tok::Block(block_index));
            Ok(())
        }
    }

    fn digest_of(kind: ChecksumKind, seed: u32, data: &[u8]) -> DigestBuf {
        let mut h = StrongHasher::new_file(kind, seed);
        h.update(data);
        h.finish()
    }

    fn roundtrip(
        old: &[u8],
        new: &[u8],
        kind: ChecksumKind,
        block_size: Option<u32>,
        proto: u8,
    ) -> (Vec<u8>, MatchOutcome) {
        let head = SumHead::for_file(
            old.len() as i64,
            proto,
            block_size,
            false,
            kind.digest_len(),
        )
        .unwrap();
        let sums = generate_sums(&mut &old[..], &head, kind, 77, true).unwrap();
        let mut patcher = Patcher::new(Some(Cursor::new(old)), Vec::new(), head);
        let out = match_file(&mut &new[..], &sums, kind, 77, true, &mut patcher).unwrap();
        let (rebuilt, written) = patcher.finish().unwrap();
        assert_eq!(written, new.len() as u64);
        (rebuilt, out)
    }

    #[test]
    fn capture_12_token_stream() {
        // 12-pull-delta: blocks 0-3 and 5-9 match, block 4 is literal.
        let old = big_txt();
        let mut new = old.clone();
        new[1400..1410].copy_from_slice(b"CHANGED!!!");
        let head = SumHead::for_file(3000, 32, Some(300), false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md5, 12345, true).unwrap();
        let mut rec = Rec::default();
        let out = match_file(
            &mut &new[..],
            &sums,
            ChecksumKind::Md5,
            12345,
            true,
            &mut rec,
        )
        .unwrap();
        let mut want: Vec<Tok> = (0..4).map(Tok::Block).collect();
        want.push(Tok::Lit(new[1200..1500].to_vec()));
        want.extend((5..10).map(Tok::Block));
        assert_eq!(rec.tokens, want);
        assert_eq!(
            format!("{:?}", out.digest),
            "5201086ba835322425fb2cc2f9999c7c"
        );
        assert_eq!(out.stats.matched_bytes, 2700);
        assert_eq!(out.stats.literal_bytes, 300);

        // 15-pull-delta-p29: same tokens, MD4_OLD digest (seed || data).
        let head = SumHead::for_file(3000, 29, Some(300), false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md4Old, 12345, false).unwrap();
        let mut rec2 = Rec::default();
        let out = match_file(
            &mut &new[..],
            &sums,
            ChecksumKind::Md4Old,
            12345,
            false,
            &mut rec2,
        )
        .unwrap();
        assert_eq!(rec2.tokens, rec.tokens);
        assert_eq!(
            format!("{:?}", out.digest),
            "7703f452a7804e0236e2ae044d1c8a06"
        );
    }

    #[test]
    fn capture_27_28_all_blocks_match() {
        let data = sizes_data(5000000);
        for (proto, kind, digest) in [
            (
                32u8,
                ChecksumKind::Xxh128,
                "c232c8ff5f7148bd1f2a986bf3df35e4",
            ),
            (29, ChecksumKind::Md4Old, "6a5896df7717009a5e73d4bc4b206857"),
        ] {
            let head = SumHead::for_file(data.len() as i64, proto, None, false, 16).unwrap();
            let sums = generate_sums(&mut &data[..], &head, kind, 12345, proto >= 30).unwrap();
            let mut rec = Rec::default();
            let out =
                match_file(&mut &data[..], &sums, kind, 12345, proto >= 30, &mut rec).unwrap();
            let want: Vec<Tok> = (0..head.count as u32).map(Tok::Block).collect();
            assert_eq!(rec.tokens, want);
            assert_eq!(format!("{:?}", out.digest), digest);
        }
    }

    /// A reader that checks every read lands at a buffer address congruent
    /// with its file offset modulo ALIGN (fast kernel copies, see iobuf).
    struct AlignCheck<'a> {
        data: &'a [u8],
        pos: usize,
        reads: usize,
        misaligned: usize,
    }
    impl Read for AlignCheck<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.data.len() - self.pos).min(200_000);
            if n > 0 {
                self.reads += 1;
                if buf.as_ptr() as usize % ALIGN != self.pos % ALIGN {
                    self.misaligned += 1;
                }
            }
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn window_reads_keep_file_and_buffer_offsets_congruent() {
        // Edits and a literal stretch make the window compact and grow.
        let mut r = crate::delta::testutil::Mt::python_seed(5);
        let old: Vec<u8> = (0..3_000_000).map(|_| r.next_u32() as u8).collect();
        let mut new = old.clone();
        for i in (1000..2_900_000).step_by(97_001) {
            new[i] ^= 0x55;
        }
        let fresh: Vec<u8> = (0..1_500_000).map(|_| r.next_u32() as u8).collect();
        new.splice(1_200_000..1_200_000, fresh);
        let head = SumHead::for_file(old.len() as i64, 31, Some(7000), false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md5, 1, true).unwrap();
        let mut m = Matcher::new();
        let mut src = AlignCheck {
            data: &new,
            pos: 0,
            reads: 0,
            misaligned: 0,
        };
        let mut patcher = Patcher::new(Some(Cursor::new(&old[..])), Vec::new(), head);
        m.match_file(&mut src, &sums, ChecksumKind::Md5, 1, true, &mut patcher)
            .unwrap();
        let (rebuilt, _) = patcher.finish().unwrap();
        assert_eq!(rebuilt, new);
        assert!(src.reads > 20, "{} reads", src.reads);
        assert_eq!(src.misaligned, 0, "of {} reads", src.reads);
    }

    #[test]
    fn whole_file_when_no_sums() {
        let data = sizes_data(100_000);
        let sums = BlockSums::new(SumHead::EMPTY);
        let mut rec = Rec::default();
        let out = match_file(
            &mut &data[..],
            &sums,
            ChecksumKind::Xxh128,
            1,
            true,
            &mut rec,
        )
        .unwrap();
        assert_eq!(rec.tokens, vec![Tok::Lit(data.clone())]);
        assert_eq!(rec.max_literal, CHUNK_SIZE);
        assert_eq!(out.digest, digest_of(ChecksumKind::Xxh128, 1, &data));
        // Empty file, empty sums: no tokens; the digest of nothing.
        let mut rec = Rec::default();
        let out = match_file(
            &mut &b""[..],
            &sums,
            ChecksumKind::Xxh128,
            0,
            true,
            &mut rec,
        )
        .unwrap();
        assert!(rec.tokens.is_empty());
        assert_eq!(
            format!("{:?}", out.digest),
            "7f498d4624c30160d8984701d306aa99"
        );
    }

    #[test]
    fn append_skips_the_prefix() {
        let data = sizes_data(100_000);
        let kind = ChecksumKind::Md5;
        for (prefix, verify) in [
            (0u64, false),
            (30_000, false),
            (30_000, true),
            (200_000, true),
        ] {
            let mut rec = Rec::default();
            let out = Matcher::new()
                .append_file(&mut &data[..], prefix, verify, kind, 7, &mut rec)
                .unwrap();
            let skip = (prefix as usize).min(data.len());
            let rest = data[skip..].to_vec();
            let sent: Vec<Tok> = if rest.is_empty() {
                vec![]
            } else {
                vec![Tok::Lit(rest.clone())]
            };
            assert_eq!(rec.tokens, sent, "prefix {prefix}");
            let hashed = if verify { &data[..] } else { &rest[..] };
            assert_eq!(
                out.digest,
                digest_of(kind, 7, hashed),
                "prefix {prefix} verify {verify}"
            );
            assert_eq!(out.stats.literal_bytes, rest.len() as u64);
        }
    }

    #[test]
    fn literal_runs_stay_bounded() {
        // No block matches: literals must come out in <= 32 KiB chunks and
        // be flushed as the scan goes, not piled up.
        let old = vec![0u8; 70_000];
        let new = sizes_data(1_000_000);
        let head = SumHead::for_file(old.len() as i64, 31, None, false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md5, 3, true).unwrap();
        struct Watch {
            pending_max: usize,
            lit: usize,
            got: Vec<u8>,
        }
        impl TokenSink for Watch {
            fn literal(&mut self, d: &[u8]) -> io::Result<()> {
                assert!(d.len() <= CHUNK_SIZE);
                self.lit += d.len();
                self.pending_max = self.pending_max.max(d.len());
                self.got.extend_from_slice(d);
                Ok(())
            }
            fn matched(&mut self, _: u32, d: &[u8]) -> io::Result<()> {
                self.got.extend_from_slice(d);
                Ok(())
            }
        }
        let mut w = Watch {
            pending_max: 0,
            lit: 0,
            got: Vec::new(),
        };
        let out = match_file(&mut &new[..], &sums, ChecksumKind::Md5, 3, true, &mut w).unwrap();
        assert_eq!(w.got, new);
        assert_eq!(w.lit, new.len());
        assert_eq!(out.stats.literal_bytes, new.len() as u64);
        assert_eq!(out.stats.file_len, new.len() as u64);
    }

    #[test]
    fn short_last_block_matches_at_end() {
        let old = sizes_data(3000);
        // Prefix garbage shifts everything; the 3000 % 700 = 200-byte last
        // block must still be found at the end.
        let mut new = b"xyz".to_vec();
        new.extend_from_slice(&old);
        let (rebuilt, out) = roundtrip(&old, &new, ChecksumKind::Md5, None, 31);
        assert_eq!(rebuilt, new);
        assert_eq!(out.stats.matches, 5);
        assert_eq!(out.stats.literal_bytes, 3);
    }

    #[test]
    fn oversize_s2length_compares_digest_bytes_only() {
        // 3.2.7 redo phase with xxh64: s2length 16, 8-byte digests.
        let old = sizes_data(2000);
        let mut head = SumHead::for_file(2000, 31, None, true, 8).unwrap();
        head.s2length = 16;
        let mut sums = BlockSums::new(head);
        for (i, chunk) in old.chunks(700).enumerate() {
            let d = block_sum(ChecksumKind::Xxh64, chunk, 5, true);
            let mut s = d.to_array();
            s[8..].fill(0xAA ^ i as u8); // junk past the digest
            sums.push(crate::checksum::checksum1(chunk), &s).unwrap();
        }
        let mut rec = Rec::default();
        match_file(&mut &old[..], &sums, ChecksumKind::Xxh64, 5, true, &mut rec).unwrap();
        assert_eq!(
            rec.tokens,
            vec![Tok::Block(0), Tok::Block(1), Tok::Block(2)]
        );
    }

    #[test]
    fn adjacent_block_preferred() {
        // Every block is identical: upstream prefers previous + 1.
        let old = vec![7u8; 700 * 5];
        let new = old.clone();
        let head = SumHead::for_file(old.len() as i64, 31, None, false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md5, 0, true).unwrap();
        let mut rec = Rec::default();
        match_file(&mut &new[..], &sums, ChecksumKind::Md5, 0, true, &mut rec).unwrap();
        let want: Vec<Tok> = (0..5).map(Tok::Block).collect();
        assert_eq!(rec.tokens, want);
    }

    #[test]
    fn incomplete_sums_rejected() {
        let head = SumHead::for_file(3000, 31, None, false, 16).unwrap();
        let sums = BlockSums::new(head);
        let mut rec = Rec::default();
        assert!(match_file(
            &mut &b"abc"[..],
            &sums,
            ChecksumKind::Md5,
            0,
            true,
            &mut rec
        )
        .is_err());
    }

    /// A reader that returns data in small, irregular pieces.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = (self.1 * 7 + 3) % 977 + 1;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn trickling_reader_gives_same_tokens() {
        let old = sizes_data(200_000);
        let mut new = old.clone();
        new[50_000..50_100].fill(1);
        new.splice(120_000..120_000, b"inserted".iter().copied());
        let head = SumHead::for_file(old.len() as i64, 31, Some(1000), false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Xxh3, 9, true).unwrap();
        let mut a = Rec::default();
        let oa = match_file(&mut &new[..], &sums, ChecksumKind::Xxh3, 9, true, &mut a).unwrap();
        let mut b = Rec::default();
        let ob = match_file(
            &mut Trickle(&new, 1),
            &sums,
            ChecksumKind::Xxh3,
            9,
            true,
            &mut b,
        )
        .unwrap();
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(oa.digest, ob.digest);
        assert_eq!(oa.stats, ob.stats);
    }

    /// The all-match and no-match paths over 8 MiB (prints MB/s with
    /// `--nocapture`; speed is measured properly in benches/).
    #[test]
    fn matcher_all_match_and_no_match_paths() {
        let data = sizes_data(8 << 20);
        struct Null;
        impl TokenSink for Null {
            fn literal(&mut self, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
            fn matched(&mut self, _: u32, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
        }
        let kind = ChecksumKind::Xxh128;
        let head = SumHead::for_file(data.len() as i64, 31, None, false, 16).unwrap();
        let sums = generate_sums(&mut &data[..], &head, kind, 1, true).unwrap();
        let mut m = Matcher::new();
        let mb = data.len() as f64 / 1e6;
        let t = std::time::Instant::now();
        let out = m
            .match_file(&mut &data[..], &sums, kind, 1, true, &mut Null)
            .unwrap();
        println!("all-match: {:.0} MB/s", mb / t.elapsed().as_secs_f64());
        assert_eq!(out.stats.matches, head.count as u64);
        // Sums of a different file: nothing matches.
        let other: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
        let sums = generate_sums(&mut &other[..], &head, kind, 1, true).unwrap();
        let t = std::time::Instant::now();
        let out = m
            .match_file(&mut &data[..], &sums, kind, 1, true, &mut Null)
            .unwrap();
        println!("no-match: {:.0} MB/s", mb / t.elapsed().as_secs_f64());
        assert_eq!(out.stats.matches, 0);
        let t = std::time::Instant::now();
        let mut h = StrongHasher::new_file(kind, 1);
        h.update(&data);
        let _ = h.finish();
        println!("(xxh128 alone: {:.0} MB/s)", mb / t.elapsed().as_secs_f64());
    }

    /// An old file and a new one made from it by a few splices. Bytes come
    /// from the full range or from a tiny alphabet (many equal blocks and
    /// rolling-sum collisions).
    fn edited() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        any::<bool>()
            .prop_flat_map(|tiny| {
                let byte = if tiny {
                    prop::sample::select(vec![0u8, 1, 0x80]).boxed()
                } else {
                    any::<u8>().boxed()
                };
                (
                    proptest::collection::vec(byte.clone(), 0..6000),
                    proptest::collection::vec(
                        (
                            0usize..6000,
                            0usize..300,
                            proptest::collection::vec(byte, 0..300),
                        ),
                        0..6,
                    ),
                )
            })
            .prop_map(|(old, edits)| {
                let mut new = old.clone();
                for (at, del, ins) in edits {
                    let at = at.min(new.len());
                    let del = del.min(new.len() - at);
                    new.splice(at..at + del, ins);
                }
                (old, new)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..crate::testing::proptest_config() })]
        #[test]
        fn matcher_patcher_reconstruct(
            (old, new) in edited(),
            kind in prop::sample::select(vec![
                ChecksumKind::Md4Old, ChecksumKind::Md4, ChecksumKind::Md5,
                ChecksumKind::Xxh64, ChecksumKind::Xxh3, ChecksumKind::Xxh128,
            ]),
            bs in prop::option::of(1u32..900),
        ) {
            let proto = if kind == ChecksumKind::Md4Old { 29 } else { 31 };
            let (rebuilt, out) = roundtrip(&old, &new, kind, bs, proto);
            prop_assert_eq!(&rebuilt, &new);
            prop_assert_eq!(out.digest, digest_of(kind, 77, &new));
            prop_assert_eq!(out.stats.literal_bytes + out.stats.matched_bytes, new.len() as u64);
        }

        /// In place, the receiver reads each named block from the file it
        /// is writing: the delta still rebuilds the new file.
        #[test]
        fn in_place_delta_survives_overwriting_its_basis(
            (old, new) in edited(),
            bs in prop::option::of(1u32..900),
        ) {
            let kind = ChecksumKind::Md5;
            let head = SumHead::for_file(old.len() as i64, 31, bs, false, 16).unwrap();
            let sums = generate_sums(&mut &old[..], &head, kind, 77, true).unwrap();
            let mut rec = Rec::default();
            let mut m = Matcher::new();
            m.set_in_place(true);
            let out = m.match_file(&mut &new[..], &sums, kind, 77, true, &mut rec).unwrap();
            prop_assert_eq!(apply_in_place(&old, &head, &rec.tokens), new.clone());
            prop_assert_eq!(out.stats.literal_bytes + out.stats.matched_bytes, new.len() as u64);
        }
    }

    /// A receiver updating in place: literal data and named blocks are
    /// written one after the other into `old` itself, each block read from
    /// it as it is at that moment.
    fn apply_in_place(old: &[u8], head: &SumHead, tokens: &[Tok]) -> Vec<u8> {
        let mut buf = old.to_vec();
        let mut off = 0usize;
        let blen = head.blength as usize;
        for t in tokens {
            let data = match t {
                Tok::Lit(d) => d.clone(),
                Tok::Block(i) => {
                    let start = *i as usize * blen;
                    buf[start..start + head.block_len(*i)].to_vec()
                }
            };
            if buf.len() < off + data.len() {
                buf.resize(off + data.len(), 0);
            }
            buf[off..off + data.len()].copy_from_slice(&data);
            off += data.len();
        }
        buf.truncate(off);
        buf
    }

    #[test]
    fn in_place_names_no_block_behind_the_output() {
        // Data inserted at the front: every old block now lies behind the
        // offset it would be written at, so nothing is matched (stock sends
        // the whole file as literal data here too).
        let old = sizes_data(50_000);
        let mut new = vec![7u8; 1000];
        new.extend_from_slice(&old);
        let head = SumHead::for_file(old.len() as i64, 31, Some(700), false, 16).unwrap();
        let sums = generate_sums(&mut &old[..], &head, ChecksumKind::Md5, 1, true).unwrap();
        let mut m = Matcher::new();
        let mut matched = |data: &[u8], in_place: bool| {
            m.set_in_place(in_place);
            m.match_file(
                &mut &data[..],
                &sums,
                ChecksumKind::Md5,
                1,
                true,
                &mut Rec::default(),
            )
            .unwrap()
            .stats
            .matched_bytes
        };
        assert_eq!(matched(&new, true), 0);
        // Without the restriction the old blocks are all found.
        assert_eq!(matched(&new, false), old.len() as u64);
        // Data removed from the front: the blocks are ahead, still usable.
        assert_eq!(matched(&old[7000..], true), 43_000);
    }
}
