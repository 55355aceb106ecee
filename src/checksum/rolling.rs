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

/// Raw `(s1, s2)` over `data`.
///
/// `s2 = sum over i of (n - i) * x_i`, computed four bytes at a time so the
/// dependency chain is shorter than the naive `s1 += b; s2 += s1` loop.
#[inline]
fn sums(data: &[u8]) -> (u32, u32) {
    let mut s1: u32 = 0;
    let mut s2: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let (a, b, cc, d) = (sb(c[0]), sb(c[1]), sb(c[2]), sb(c[3]));
        // After four steps: s2 += 4*s1 + 4a + 3b + 2c + d; s1 += a+b+c+d.
        s2 = s2
            .wrapping_add(s1.wrapping_mul(4))
            .wrapping_add(a.wrapping_mul(4))
            .wrapping_add(b.wrapping_mul(3))
            .wrapping_add(cc.wrapping_mul(2))
            .wrapping_add(d);
        s1 = s1
            .wrapping_add(a)
            .wrapping_add(b)
            .wrapping_add(cc)
            .wrapping_add(d);
    }
    for &b in chunks.remainder() {
        s1 = s1.wrapping_add(sb(b));
        s2 = s2.wrapping_add(s1);
    }
    (s1, s2)
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
        #[test]
        fn unrolled_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(checksum1(&data), naive(&data));
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
