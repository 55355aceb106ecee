//! The rsync rolling ("weak") block checksum, `sum1`.
//!
//! upstream: checksum.c `get_checksum1`, match.c `hash_search` (the rolling
//! update). Owns the one C quirk that matters here: every byte is taken as a
//! **signed** char, so bytes >= 0x80 add negative values (CHAR_OFFSET is 0).
//! All arithmetic is modulo 2^32; the combined value is
//! `(s1 & 0xFFFF) | (s2 << 16)`.

/// A byte as upstream's `schar`, sign-extended and reinterpreted as `u32`.
#[inline(always)]
fn sb(b: u8) -> u32 {
    b as i8 as i32 as u32
}

/// Combine the two running sums the way upstream does.
#[inline(always)]
fn combine(s1: u32, s2: u32) -> u32 {
    (s1 & 0xFFFF) | (s2 << 16)
}

/// Bytes per lane group of the block sum.
const LANES: usize = 32;

/// Raw `(s1, s2)` over `data`.
///
/// `s2 = sum over i of (n - i) * x_i`. The bulk runs in `LANES` independent
/// columns (no dependency between them, so the compiler vectorises it):
/// for the column `j` of `k` groups, `a[j]` sums its bytes and `p[j]` sums
/// the `a[j]` seen before each group, which gives
/// `s2 = LANES * sum(p) + sum((LANES - j) * a[j])` and `s1 = sum(a)`;
/// the tail continues with the plain recurrence. Everything is modulo 2^32,
/// as upstream's, so the regrouping is exact.
#[inline(always)]
fn sums_generic(data: &[u8]) -> (u32, u32) {
    let mut a = [0u32; LANES];
    let mut p = [0u32; LANES];
    let mut groups = data.chunks_exact(LANES);
    for g in &mut groups {
        for j in 0..LANES {
            p[j] = p[j].wrapping_add(a[j]);
            a[j] = a[j].wrapping_add(sb(g[j]));
        }
    }
    let mut s1: u32 = 0;
    let mut s2: u32 = 0;
    for j in 0..LANES {
        s1 = s1.wrapping_add(a[j]);
        s2 = s2
            .wrapping_add(p[j].wrapping_mul(LANES as u32))
            .wrapping_add(a[j].wrapping_mul((LANES - j) as u32));
    }
    for &b in groups.remainder() {
        s1 = s1.wrapping_add(sb(b));
        s2 = s2.wrapping_add(s1);
    }
    (s1, s2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sums_avx2(data: &[u8]) -> (u32, u32) {
    sums_generic(data)
}

/// Raw `(s1, s2)` over `data`, with AVX2 when the CPU has it.
#[inline]
fn sums(data: &[u8]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= 256 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { sums_avx2(data) };
        }
    }
    sums_generic(data)
}

/// The rolling checksum of a whole block (upstream: `get_checksum1`).
pub fn checksum1(data: &[u8]) -> u32 {
    let (s1, s2) = sums(data);
    combine(s1, s2)
}

/// A rolling checksum over a window that can slide one byte at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rolling {
    s1: u32,
    s2: u32,
    /// Current window length (upstream's `k`), modulo 2^32.
    len: u32,
}

impl Rolling {
    /// Start a window over `data`.
    pub fn new(data: &[u8]) -> Self {
        let (s1, s2) = sums(data);
        Rolling {
            s1,
            s2,
            len: data.len() as u32,
        }
    }

    /// Slide the window by one byte: `out_byte` leaves at the front,
    /// `in_byte` enters at the back; the length stays the same.
    #[inline(always)]
    pub fn roll(&mut self, out_byte: u8, in_byte: u8) {
        let o = sb(out_byte);
        self.s1 = self.s1.wrapping_sub(o).wrapping_add(sb(in_byte));
        self.s2 = self
            .s2
            .wrapping_sub(self.len.wrapping_mul(o))
            .wrapping_add(self.s1);
    }

    /// Drop `out_byte` from the front without adding a byte (the window
    /// shrinks by one; used at the end of the file).
    #[inline]
    pub fn roll_out(&mut self, out_byte: u8) {
        let o = sb(out_byte);
        self.s1 = self.s1.wrapping_sub(o);
        self.s2 = self.s2.wrapping_sub(self.len.wrapping_mul(o));
        self.len = self.len.wrapping_sub(1);
    }

    /// The combined 32-bit checksum of the current window.
    #[inline(always)]
    pub fn sum(&self) -> u32 {
        combine(self.s1, self.s2)
    }

    /// The current window length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain definition from the protocol notes (§8.1).
    fn naive(data: &[u8]) -> u32 {
        let (mut s1, mut s2) = (0u32, 0u32);
        for &b in data {
            s1 = s1.wrapping_add(b as i8 as i32 as u32);
            s2 = s2.wrapping_add(s1);
        }
        (s1 & 0xFFFF) | (s2 << 16)
    }

    #[test]
    fn long_blocks_wrap_like_the_plain_loop() {
        // Long enough for every running sum to wrap modulo 2^32.
        let data: Vec<u8> = (0u64..(3 << 20) + 7)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(checksum1(&data), naive(&data));
        assert_eq!(checksum1(&vec![0x80; 1 << 20]), naive(&vec![0x80; 1 << 20]));
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(checksum1(&[]), 0);
    }

    #[test]
    fn high_bytes_count_as_negative() {
        // s1 = -1, s2 = -1 -> 0xFFFF | 0xFFFF0000
        assert_eq!(checksum1(&[0xFF]), 0xFFFF_FFFF);
        // 0x80 = -128: s1 = -128 (0xFF80), s2 = -128 -> 0xFF80 in both halves.
        assert_eq!(checksum1(&[0x80]), 0xFF80_FF80);
        assert_eq!(checksum1(&[1, 2, 3]), (6) | ((1 + 3 + 6) << 16));
    }

    #[test]
    fn captured_block_sums_of_big_txt() {
        // capture 12-pull-delta: block 0 of big.txt (-B300).
        let data: Vec<u8> = (0..60)
            .flat_map(|i| {
                format!("line {i:04}: the quick brown fox jumps over the lazy dog\n").into_bytes()
            })
            .take(3000)
            .collect();
        assert_eq!(checksum1(&data[0..300]), 0x51ec66c2);
        assert_eq!(checksum1(&data[2700..3000]), 0x561266f6);
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn unrolled_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(checksum1(&data), naive(&data));
        }

        #[test]
        fn vectorised_equals_naive(data in proptest::collection::vec(any::<u8>(), 250..3000)) {
            prop_assert_eq!(checksum1(&data), naive(&data));
            prop_assert_eq!(sums_generic(&data), sums(&data));
        }

        #[test]
        fn rolling_equals_recompute(
            data in proptest::collection::vec(any::<u8>(), 2..400),
            win in 1usize..64,
        ) {
            let win = win.min(data.len() - 1);
            let mut r = Rolling::new(&data[..win]);
            for off in 0..data.len() - win {
                prop_assert_eq!(r.sum(), checksum1(&data[off..off + win]));
                r.roll(data[off], data[off + win]);
            }
            // Shrink at the end.
            let mut off = data.len() - win;
            while off < data.len() {
                prop_assert_eq!(r.sum(), checksum1(&data[off..]));
                prop_assert_eq!(r.len(), data.len() - off);
                r.roll_out(data[off]);
                off += 1;
            }
            prop_assert!(r.is_empty());
        }
    }
}
