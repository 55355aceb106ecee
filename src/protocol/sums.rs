//! Sum header and block checksums on the wire (upstream: io.c write_sum_head,
//! read_sum_head; sender.c receive_sums).

use super::varint::{put_int, read_int};
use super::{ProtoError, Result};
use std::io::Read;

/// Largest block length for protocol < 30 (OLD_MAX_BLOCK_SIZE).
pub const OLD_MAX_BLOCK_SIZE: i32 = 1 << 29;
/// Largest block length for protocol >= 30 (MAX_BLOCK_SIZE).
pub const MAX_BLOCK_SIZE: i32 = 1 << 17;
/// Longest strong block sum (MAX_DIGEST_LEN).
pub const MAX_DIGEST_LEN: i32 = 64;
/// Most blocks we accept for one file (bounds memory: 2^27 blocks ~ 16 GiB files at 128 B).
pub const MAX_BLOCK_COUNT: i32 = 1 << 26;

/// The four (three below protocol 27) ints announcing a file's block sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireSumHead {
    /// Number of blocks.
    pub count: i32,
    /// Block length.
    pub blength: i32,
    /// Bytes of each strong sum.
    pub s2length: i32,
    /// Length of the last block (0 = full).
    pub remainder: i32,
}

impl WireSumHead {
    /// `write_sum_head`.
    pub fn write(&self, out: &mut Vec<u8>, proto: u8) {
        put_int(out, self.count);
        put_int(out, self.blength);
        if proto >= 27 {
            put_int(out, self.s2length);
        }
        put_int(out, self.remainder);
    }

    /// `read_sum_head`, with upstream's validation.
    pub fn read(r: &mut impl Read, proto: u8) -> Result<Self> {
        let count = read_int(r)?;
        let blength = read_int(r)?;
        let s2length = if proto >= 27 { read_int(r)? } else { 2 };
        let remainder = read_int(r)?;
        let max_bl = if proto < 30 {
            OLD_MAX_BLOCK_SIZE
        } else {
            MAX_BLOCK_SIZE
        };
        if !(0..=MAX_BLOCK_COUNT).contains(&count) {
            return Err(ProtoError::invalid(format!(
                "Invalid checksum count {count}"
            )));
        }
        if !(0..=max_bl).contains(&blength) {
            return Err(ProtoError::invalid(format!(
                "Invalid block length {blength}"
            )));
        }
        if !(0..=MAX_DIGEST_LEN).contains(&s2length) {
            return Err(ProtoError::invalid(format!(
                "Invalid checksum length {s2length}"
            )));
        }
        if !(0..=blength).contains(&remainder) {
            return Err(ProtoError::invalid(format!(
                "Invalid remainder length {remainder}"
            )));
        }
        if count > 0 && blength == 0 {
            return Err(ProtoError::invalid("block sums with a zero block length"));
        }
        Ok(WireSumHead {
            count,
            blength,
            s2length,
            remainder,
        })
    }
}

/// Block sums as read off the wire: `sum1` and the strong-sum prefix of each block.
#[derive(Debug, Clone, Default)]
pub struct WireSums {
    /// Rolling checksum per block.
    pub sum1: Vec<u32>,
    /// Strong sums, `s2length` bytes each, concatenated.
    pub sum2: Vec<u8>,
    /// Bytes per strong sum.
    pub s2length: usize,
}

/// Read `head.count` block sums (sender.c receive_sums).
pub fn read_sums(r: &mut impl Read, head: &WireSumHead) -> Result<WireSums> {
    let n = head.count as usize;
    let s2 = head.s2length as usize;
    let mut sums = WireSums {
        sum1: Vec::with_capacity(n.min(1 << 16)),
        sum2: Vec::with_capacity((n * s2).min(1 << 20)),
        s2length: s2,
    };
    let mut buf = [0u8; MAX_DIGEST_LEN as usize];
    for _ in 0..n {
        sums.sum1.push(read_int(r)? as u32);
        r.read_exact(&mut buf[..s2])?;
        sums.sum2.extend_from_slice(&buf[..s2]);
    }
    Ok(sums)
}

/// Write block sums (generator side).
pub fn write_sums(out: &mut Vec<u8>, sums: &WireSums) {
    for (i, s1) in sums.sum1.iter().enumerate() {
        put_int(out, *s1 as i32);
        out.extend_from_slice(&sums.sum2[i * sums.s2length..(i + 1) * sums.s2length]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_heads_are_refused() {
        let enc = |c: i32, b: i32, s: i32, r: i32| {
            let mut v = Vec::new();
            WireSumHead {
                count: c,
                blength: b,
                s2length: s,
                remainder: r,
            }
            .write(&mut v, 31);
            v
        };
        assert!(WireSumHead::read(&mut &enc(-1, 700, 2, 0)[..], 31).is_err());
        assert!(WireSumHead::read(&mut &enc(1, (1 << 17) + 1, 2, 0)[..], 31).is_err());
        assert!(WireSumHead::read(&mut &enc(1, 700, 65, 0)[..], 31).is_err());
        assert!(WireSumHead::read(&mut &enc(1, 700, 2, 701)[..], 31).is_err());
        assert!(WireSumHead::read(&mut &enc(0, 0, 0, 0)[..], 31).is_ok());
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn head_and_sums_round_trip(count in 0i32..50, bl in 1i32..5000, s2 in 0i32..=16, seed in any::<u32>()) {
            let head = WireSumHead { count, blength: bl, s2length: s2, remainder: bl / 2 };
            let mut sums = WireSums { s2length: s2 as usize, ..Default::default() };
            for i in 0..count as u32 {
                sums.sum1.push(seed.wrapping_mul(i + 1));
                sums.sum2.extend((0..s2).map(|j| (i as u8).wrapping_add(j as u8)));
            }
            let mut v = Vec::new();
            head.write(&mut v, 31);
            write_sums(&mut v, &sums);
            let mut r = &v[..];
            let h2 = WireSumHead::read(&mut r, 31).unwrap();
            prop_assert_eq!(h2, head);
            let s2r = read_sums(&mut r, &h2).unwrap();
            prop_assert_eq!(s2r.sum1, sums.sum1);
            prop_assert_eq!(s2r.sum2, sums.sum2);
        }
    }
}
