//! Transfer statistics shared by the roles and shown by a client (upstream:
//! rsync.h struct stats, main.c output_summary's itemized counts).

use crate::protocol::flist::mode;

/// A count of items by type: the total, and how many of them were
/// directories, symlinks, devices and specials (regular files are the rest).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TypeCounts {
    /// All items.
    pub total: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub links: u64,
    /// Character and block devices.
    pub devices: u64,
    /// FIFOs and sockets.
    pub specials: u64,
}

impl TypeCounts {
    /// Count one item of this mode.
    pub fn add(&mut self, m: u32) {
        self.total += 1;
        if mode::is_dir(m) {
            self.dirs += 1;
        } else if mode::is_lnk(m) {
            self.links += 1;
        } else if mode::is_device(m) {
            self.devices += 1;
        } else if mode::is_special(m) {
            self.specials += 1;
        }
    }

    /// Regular files (and anything not counted by type).
    pub fn regular(&self) -> u64 {
        self.total
            .saturating_sub(self.dirs + self.links + self.devices + self.specials)
    }

    /// From protocol 31's deletion statistics (files, dirs, symlinks, devices, specials).
    pub fn from_del_stats(v: [i32; 5]) -> Self {
        let n = |x: i32| x.max(0) as u64;
        TypeCounts {
            total: n(v[0]) + n(v[1]) + n(v[2]) + n(v[3]) + n(v[4]),
            dirs: n(v[1]),
            links: n(v[2]),
            devices: n(v[3]),
            specials: n(v[4]),
        }
    }
}

/// do_big_num: digits with `,` every three (human 1), or K/M/G units
/// (human 2: powers of 1000, 3: powers of 1024), or plain (human 0).
pub fn big_num(num: i64, human: u8) -> String {
    if human > 1 {
        let mult = if human == 2 { 1000.0 } else { 1024.0 };
        if num as f64 >= mult || num as f64 <= -mult {
            let mut d = (num as f64 / mult).abs();
            let mut units = 'K';
            for u in ['M', 'G', 'T', 'P'] {
                if d < mult {
                    break;
                }
                d /= mult;
                units = u;
            }
            if num < 0 {
                d = -d;
            }
            return format!("{d:.2}{units}");
        }
    }
    let digits = num.unsigned_abs().to_string();
    let mut out = String::new();
    if human > 0 {
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
    } else {
        out = digits;
    }
    if num < 0 {
        out.insert(0, '-');
    }
    out
}

/// do_big_dnum: a fraction with `decimals` digits, the integer part grouped
/// as `big_num` does when it reaches 1000.
pub fn big_dnum(d: f64, human: u8, decimals: usize) -> String {
    let s = format!("{d:.decimals$}");
    if human == 0 || (d < 1000.0 && d > -1000.0) {
        return s;
    }
    let fract = s.find('.').map(|p| &s[p..]).unwrap_or("");
    let whole = big_num(d as i64, human);
    if whole.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return whole;
    }
    format!("{whole}{fract}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type() {
        let mut c = TypeCounts::default();
        for m in [0o100644, 0o040755, 0o120777, 0o020644, 0o010644, 0o100600] {
            c.add(m);
        }
        assert_eq!(c.total, 6);
        assert_eq!(c.regular(), 2);
        assert_eq!((c.dirs, c.links, c.devices, c.specials), (1, 1, 1, 1));
        let d = TypeCounts::from_del_stats([2, 1, 0, 0, 0]);
        assert_eq!((d.total, d.regular(), d.dirs), (3, 2, 1));
    }
}
