//! Test fixtures shared by the delta tests: the capture trees' file
//! contents (tools/mktrees.py), regenerated in Rust.

/// `big.txt` from the capture tree: 3000 bytes of numbered lines.
pub(crate) fn big_txt() -> Vec<u8> {
    (0..60)
        .flat_map(|i| {
            format!("line {i:04}: the quick brown fox jumps over the lazy dog\n").into_bytes()
        })
        .take(3000)
        .collect()
}

/// MT19937, seeded like CPython's `random.Random(42)` (`init_by_array`).
pub(crate) struct Mt {
    mt: [u32; 624],
    idx: usize,
}

impl Mt {
    pub(crate) fn python_seed(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = 19650218;
        for i in 1..624 {
            mt[i] = 1812433253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1664525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1566083941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        Mt { mt, idx: 624 }
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// The first `n` bytes (n a multiple of 4) of
/// `random.Random(42).randbytes(67108864)`: the `sizes/` tree's data.
pub(crate) fn sizes_data(n: usize) -> Vec<u8> {
    let mut mt = Mt::python_seed(42);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(&mt.next_u32().to_le_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn sizes_data_matches_python() {
    let d = sizes_data(16);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "9d79b1a37f31801cd11a6706fb40d6bd");
}
