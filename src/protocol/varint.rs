//! Integer and string encodings (upstream: io.c write_int/varint/varlong/longint/vstring).
//!
//! Writers append to a `Vec<u8>`; readers pull from any `Read` and reject
//! overflowing encodings.

use super::{ProtoError, Result};
use std::io::Read;

/// Extra bytes following a varint/varlong lead byte, indexed by `lead >> 2`.
fn extra_bytes(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 0,
        0x80..=0xBF => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        0xF8..=0xFB => 5,
        _ => 6,
    }
}

/// Read exactly `N` bytes.
pub fn read_array<const N: usize>(r: &mut impl Read) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// `write_byte`.
pub fn put_byte(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// `read_byte`.
pub fn read_byte(r: &mut impl Read) -> Result<u8> {
    Ok(read_array::<1>(r)?[0])
}

/// `write_shortint`: 2 bytes LE.
pub fn put_short(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `read_shortint`.
pub fn read_short(r: &mut impl Read) -> Result<u16> {
    Ok(u16::from_le_bytes(read_array(r)?))
}

/// `write_int`: 4 bytes LE signed.
pub fn put_int(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `read_int`.
pub fn read_int(r: &mut impl Read) -> Result<i32> {
    Ok(i32::from_le_bytes(read_array(r)?))
}

/// `write_longint`: int32 when it fits in 0..=0x7FFFFFFF, else FF FF FF FF + int64 LE.
pub fn put_longint(out: &mut Vec<u8>, v: i64) {
    if (0..=0x7FFF_FFFF).contains(&v) {
        put_int(out, v as i32);
    } else {
        put_int(out, -1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `read_longint`.
pub fn read_longint(r: &mut impl Read) -> Result<i64> {
    let v = read_int(r)?;
    if v != -1 {
        return Ok(v as i64);
    }
    Ok(i64::from_le_bytes(read_array(r)?))
}

/// `write_varint`.
pub fn put_varint(out: &mut Vec<u8>, x: i32) {
    let le = (x as u32).to_le_bytes();
    let mut b = [0u8; 5];
    b[1..5].copy_from_slice(&le);
    let mut cnt = 4;
    while cnt > 1 && b[cnt] == 0 {
        cnt -= 1;
    }
    let bit = 1u32 << (8 - cnt);
    if b[cnt] as u32 >= bit {
        cnt += 1;
        b[0] = !(bit as u8).wrapping_sub(1);
    } else if cnt > 1 {
        b[0] = b[cnt] | !((bit * 2 - 1) as u8);
    } else {
        b[0] = b[cnt];
    }
    out.extend_from_slice(&b[..cnt]);
}

/// `read_varint`.
pub fn read_varint(r: &mut impl Read) -> Result<i32> {
    let lead = read_byte(r)?;
    let extra = extra_bytes(lead);
    if extra > 4 {
        return Err(ProtoError::invalid("overflow in read_varint"));
    }
    let mut u = [0u8; 5];
    r.read_exact(&mut u[..extra])?;
    if extra == 0 {
        u[0] = lead;
    } else {
        u[extra] = lead & ((1u16 << (8 - extra)) - 1) as u8;
    }
    Ok(i32::from_le_bytes([u[0], u[1], u[2], u[3]]))
}

/// `write_varlong(x, min_bytes)`.
pub fn put_varlong(out: &mut Vec<u8>, x: i64, min_bytes: usize) {
    let le = (x as u64).to_le_bytes();
    let mut b = [0u8; 9];
    b[1..9].copy_from_slice(&le);
    let mut cnt = 8;
    while cnt > min_bytes && b[cnt] == 0 {
        cnt -= 1;
    }
    let bit = 1u32 << (7 + min_bytes - cnt);
    if b[cnt] as u32 >= bit {
        cnt += 1;
        b[0] = !((bit - 1) as u8);
    } else if cnt > min_bytes {
        b[0] = b[cnt] | !((bit * 2 - 1) as u8);
    } else {
        b[0] = b[cnt];
    }
    out.extend_from_slice(&b[..cnt]);
}

/// `read_varlong(min_bytes)`.
pub fn read_varlong(r: &mut impl Read, min_bytes: usize) -> Result<i64> {
    let mut first = [0u8; 9];
    r.read_exact(&mut first[..min_bytes])?;
    let lead = first[0];
    let mut u = [0u8; 9];
    u[..min_bytes - 1].copy_from_slice(&first[1..min_bytes]);
    let extra = extra_bytes(lead);
    if min_bytes + extra > 9 {
        return Err(ProtoError::invalid("overflow in read_varlong"));
    }
    if extra > 0 {
        r.read_exact(&mut u[min_bytes - 1..min_bytes - 1 + extra])?;
        u[min_bytes + extra - 1] = lead & ((1u16 << (8 - extra)) - 1) as u8;
    } else {
        u[min_bytes - 1] = lead;
    }
    Ok(i64::from_le_bytes([
        u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
    ]))
}

/// `write_varint30`: int32 below protocol 30.
pub fn put_varint30(out: &mut Vec<u8>, x: i32, proto: u8) {
    if proto < 30 {
        put_int(out, x)
    } else {
        put_varint(out, x)
    }
}

/// `read_varint30`.
pub fn read_varint30(r: &mut impl Read, proto: u8) -> Result<i32> {
    if proto < 30 {
        read_int(r)
    } else {
        read_varint(r)
    }
}

/// `write_varlong30`: longint below protocol 30.
pub fn put_varlong30(out: &mut Vec<u8>, x: i64, min_bytes: usize, proto: u8) {
    if proto < 30 {
        put_longint(out, x)
    } else {
        put_varlong(out, x, min_bytes)
    }
}

/// `read_varlong30`.
pub fn read_varlong30(r: &mut impl Read, min_bytes: usize, proto: u8) -> Result<i64> {
    if proto < 30 {
        read_longint(r)
    } else {
        read_varlong(r, min_bytes)
    }
}

/// `write_vstring`: 1- or 2-byte (big-endian, top bit set) length, then bytes.
pub fn put_vstring(out: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = s.len();
    if len > 0x7FFF {
        return Err(ProtoError::invalid("vstring too long"));
    }
    if len > 0x7F {
        out.push(0x80 | (len >> 8) as u8);
    }
    out.push(len as u8);
    out.extend_from_slice(s);
    Ok(())
}

/// `read_vstring`, refusing anything longer than `max`.
pub fn read_vstring(r: &mut impl Read, max: usize) -> Result<Vec<u8>> {
    let mut len = read_byte(r)? as usize;
    if len & 0x80 != 0 {
        len = ((len & 0x7F) << 8) | read_byte(r)? as usize;
    }
    if len > max {
        return Err(ProtoError::invalid(format!(
            "vstring too long ({len} > {max})"
        )));
    }
    let mut v = vec![0u8; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint_bytes(x: i32) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, x);
        v
    }

    #[test]
    fn varint_examples_from_the_protocol_notes() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(0x7F), [0x7F]);
        assert_eq!(varint_bytes(0x80), [0x80, 0x80]);
        assert_eq!(varint_bytes(0x3FFF), [0xBF, 0xFF]);
        assert_eq!(varint_bytes(0x4000), [0xC0, 0x00, 0x40]);
        assert_eq!(varint_bytes(-1), [0xF0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(varint_bytes(0x1FE), [0x81, 0xFE]);
    }

    #[test]
    fn varlong_examples_from_the_protocol_notes() {
        let enc = |x, m| {
            let mut v = Vec::new();
            put_varlong(&mut v, x, m);
            v
        };
        assert_eq!(enc(1000, 3), [0x00, 0xE8, 0x03]);
        assert_eq!(enc(0x6500_0000, 4), [0x65, 0x00, 0x00, 0x00]);
        assert_eq!(enc(0x1_0000_0000, 3), [0xC1, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(enc(5, 3), [0x00, 0x05, 0x00]);
        assert_eq!(enc(1_700_000_000, 4), [0x65, 0x00, 0xF1, 0x53]);
    }

    #[test]
    fn truncated_and_overflowing_inputs_are_errors() {
        assert!(read_varint(&mut &[0x80u8][..]).is_err());
        assert!(read_varint(&mut &[0xF8u8, 0, 0, 0, 0, 0][..]).is_err());
        assert!(read_varlong(&mut &[0xFFu8, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], 4).is_err());
        assert!(read_vstring(&mut &[0x05u8, b'a'][..], 255).is_err());
        assert!(read_vstring(&mut &[0x81u8, 0x00][..], 255).is_err());
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn varint_round_trip(x in any::<i32>()) {
            let v = varint_bytes(x);
            prop_assert_eq!(read_varint(&mut &v[..]).unwrap(), x);
        }

        #[test]
        fn varlong_round_trip(x in any::<i64>(), m in 3usize..=4) {
            let mut v = Vec::new();
            put_varlong(&mut v, x, m);
            let mut r = &v[..];
            prop_assert_eq!(read_varlong(&mut r, m).unwrap(), x);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn longint_round_trip(x in any::<i64>()) {
            let mut v = Vec::new();
            put_longint(&mut v, x);
            prop_assert_eq!(read_longint(&mut &v[..]).unwrap(), x);
        }

        #[test]
        fn vstring_round_trip(s in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut v = Vec::new();
            put_vstring(&mut v, &s).unwrap();
            prop_assert_eq!(read_vstring(&mut &v[..], 0x7FFF).unwrap(), s);
        }
    }
}
