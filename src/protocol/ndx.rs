//! File indexes and item flags on the wire (upstream: io.c write_ndx/read_ndx,
//! rsync.c read_ndx_and_attrs).
//!
//! From protocol 30 an index is diff-encoded against the previous positive
//! (or negative) value of the same stream direction; each direction keeps its
//! own `NdxCodec`.

use super::varint::{put_int, read_array, read_byte, read_int};
use super::{ProtoError, Result};
use std::io::Read;

/// End of a phase or of a list.
pub const NDX_DONE: i32 = -1;
/// End of the incremental file lists.
pub const NDX_FLIST_EOF: i32 = -2;
/// Deletion statistics follow.
pub const NDX_DEL_STATS: i32 = -3;
/// Base for incremental sub-list announcements.
pub const NDX_FLIST_OFFSET: i32 = -101;

/// Item flags (low 16 bits go on the wire).
pub mod iflags {
    /// atime changed.
    pub const REPORT_ATIME: u16 = 0x0001;
    /// Checksum changed.
    pub const REPORT_CHANGE: u16 = 0x0002;
    /// Size changed.
    pub const REPORT_SIZE: u16 = 0x0004;
    /// mtime changed.
    pub const REPORT_TIME: u16 = 0x0008;
    /// Permissions changed.
    pub const REPORT_PERMS: u16 = 0x0010;
    /// Owner changed.
    pub const REPORT_OWNER: u16 = 0x0020;
    /// Group changed.
    pub const REPORT_GROUP: u16 = 0x0040;
    /// ACL changed.
    pub const REPORT_ACL: u16 = 0x0080;
    /// xattrs changed.
    pub const REPORT_XATTR: u16 = 0x0100;
    /// crtime changed.
    pub const REPORT_CRTIME: u16 = 0x0400;
    /// A basis-type byte follows.
    pub const BASIS_TYPE_FOLLOWS: u16 = 0x0800;
    /// An xname vstring follows.
    pub const XNAME_FOLLOWS: u16 = 0x1000;
    /// New item.
    pub const IS_NEW: u16 = 0x2000;
    /// Local change (hard link, deletion...).
    pub const LOCAL_CHANGE: u16 = 0x4000;
    /// The file's data is requested.
    pub const TRANSFER: u16 = 0x8000;
}

/// One direction's index codec state.
#[derive(Debug, Clone)]
pub struct NdxCodec {
    proto: u8,
    prev_positive: i32,
    prev_negative: i32,
}

impl NdxCodec {
    /// Fresh state for a stream at protocol `proto`.
    pub fn new(proto: u8) -> Self {
        NdxCodec {
            proto,
            prev_positive: -1,
            prev_negative: 1,
        }
    }

    /// `write_ndx`.
    pub fn write(&mut self, out: &mut Vec<u8>, ndx: i32) {
        if self.proto < 30 {
            put_int(out, ndx);
            return;
        }
        if ndx == NDX_DONE {
            out.push(0);
            return;
        }
        let (diff, n) = if ndx >= 0 {
            let d = ndx.wrapping_sub(self.prev_positive);
            self.prev_positive = ndx;
            (d, ndx)
        } else {
            out.push(0xFF);
            let n = ndx.wrapping_neg();
            let d = n.wrapping_sub(self.prev_negative);
            self.prev_negative = n;
            (d, n)
        };
        if diff > 0 && diff < 0xFE {
            out.push(diff as u8);
        } else if !(0..=0x7FFF).contains(&diff) {
            out.extend_from_slice(&[
                0xFE,
                ((n >> 24) as u8 & 0x7F) | 0x80,
                n as u8,
                (n >> 8) as u8,
                (n >> 16) as u8,
            ]);
        } else {
            out.extend_from_slice(&[0xFE, (diff >> 8) as u8, diff as u8]);
        }
    }

    /// `read_ndx`.
    pub fn read(&mut self, r: &mut impl Read) -> Result<i32> {
        if self.proto < 30 {
            return read_int(r);
        }
        let mut b = read_byte(r)?;
        if b == 0 {
            return Ok(NDX_DONE);
        }
        let neg = b == 0xFF;
        if neg {
            b = read_byte(r)?;
        }
        let prev = if neg {
            self.prev_negative
        } else {
            self.prev_positive
        };
        let n = if b == 0xFE {
            let c = read_array::<2>(r)?;
            if c[0] & 0x80 != 0 {
                let d = read_array::<2>(r)?;
                ((c[0] as i32 & 0x7F) << 24)
                    | c[1] as i32
                    | ((d[0] as i32) << 8)
                    | ((d[1] as i32) << 16)
            } else {
                (((c[0] as i32) << 8) | c[1] as i32).wrapping_add(prev)
            }
        } else {
            (b as i32).wrapping_add(prev)
        };
        if neg {
            self.prev_negative = n;
            Ok(n.wrapping_neg())
        } else {
            self.prev_positive = n;
            if n < 0 {
                return Err(ProtoError::invalid(format!("invalid file index {n}")));
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples_from_the_protocol_notes() {
        let mut c = NdxCodec::new(30);
        let mut v = Vec::new();
        for n in [0, 1, 5] {
            c.write(&mut v, n);
        }
        assert_eq!(v, [1, 1, 4]);
        let mut c = NdxCodec::new(30);
        let mut v = Vec::new();
        c.write(&mut v, NDX_FLIST_EOF);
        assert_eq!(v, [0xFF, 1]);
        let mut c = NdxCodec::new(32);
        let mut v = Vec::new();
        c.write(&mut v, NDX_DEL_STATS);
        assert_eq!(v, [0xFF, 2]);
        let mut c = NdxCodec::new(31);
        let mut v = Vec::new();
        c.write(&mut v, NDX_DONE);
        assert_eq!(v, [0]);
        let mut c = NdxCodec::new(29);
        let mut v = Vec::new();
        c.write(&mut v, NDX_DONE);
        assert_eq!(v, [0xFF; 4]);
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn round_trip(seq in proptest::collection::vec(prop_oneof![0i32..100_000, -200i32..-1, Just(0x7FFF_FFFF), 0i32..0x7FFF_FFFF], 0..50), proto in 27u8..=32) {
            let mut w = NdxCodec::new(proto);
            let mut v = Vec::new();
            for &n in &seq { w.write(&mut v, n); }
            let mut r = NdxCodec::new(proto);
            let mut s = &v[..];
            for &n in &seq { prop_assert_eq!(r.read(&mut s).unwrap(), n); }
            prop_assert!(s.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = NdxCodec::new(32);
            let mut s = &bytes[..];
            while r.read(&mut s).is_ok() {}
        }
    }
}
