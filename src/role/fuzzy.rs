//! `--fuzzy` (`-y`): a basis for a file missing at the destination, taken
//! from the files of its directory (upstream generator.c find_fuzzy, util1.c
//! fuzzy_distance and find_filename_suffix): a regular file of the same size
//! and modification time, else the one whose name is closest, suffixes
//! weighing ten times more. With `-yy` the same directory in each
//! `--compare-dest`/`--copy-dest`/`--link-dest` dir is searched too.

use crate::fs::dest::Stat;

/// One unit of upstream's fixed-point distance (16 bits of fraction).
const UNIT: u32 = 1 << 16;

/// Distances above this are never chosen (upstream: 25 << 16).
const MAX_DISTANCE: u32 = 25 << 16;

/// The distance upstream gives up at (0xFFFF0000).
const NO_SUFFIX_WEIGHT: u32 = 0xFFFF_0000;

/// A regular file of a directory listing that may serve as a basis.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its name in the directory.
    pub name: Vec<u8>,
    /// What lstat said of it.
    pub st: Stat,
    /// It is being sent itself (upstream FLAG_FILE_SENT): no basis for others.
    pub sent: bool,
}

/// The chosen basis: which listing (0 = the destination's directory, `i`
/// = basis dir `i - 1`) and which candidate in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index of the listing.
    pub list: usize,
    /// Index of the candidate in it.
    pub at: usize,
}

/// What is looked for: the missing file's name (in its directory), size
/// and modification time.
pub struct Wanted<'a> {
    /// The file's name in its directory.
    pub name: &'a [u8],
    /// Its size.
    pub size: u64,
    /// Its modification time (seconds).
    pub mtime: i64,
}

/// upstream find_filename_suffix: the most significant suffix of a file
/// name, ignoring leading dots, a trailing `~`, and `.bak`, `.old`,
/// `.orig` and `.~N~` ones; an all-digit suffix only when nothing better
/// precedes it. Empty when there is none.
pub fn filename_suffix(name: &[u8]) -> &[u8] {
    let lead = name.iter().take_while(|&&c| c == b'.').count();
    let fn_ = &name[lead..];
    let mut len = fn_.len();
    let had_tilde = len > 1 && fn_[len - 1] == b'~';
    if had_tilde {
        len -= 1;
    }
    let mut suf: &[u8] = b"";
    // `s` walks back over the name; the part before it is still searched.
    let mut s = len;
    while len > 1 {
        // Back to the previous dot (or the start).
        loop {
            s -= 1;
            if fn_[s] == b'.' || s == 0 {
                break;
            }
        }
        if s == 0 {
            break;
        }
        let s_len = len - s;
        len = s;
        // upstream compares the rest of the whole name (strcmp).
        let rest = &fn_[s + 1..];
        let ignored = match s_len {
            4 => rest == b"bak" || rest == b"old",
            5 => rest == b"orig",
            _ => {
                s_len > 2
                    && had_tilde
                    && fn_.get(s + 1) == Some(&b'~')
                    && fn_.get(s + 2).is_some_and(u8::is_ascii_digit)
            }
        };
        if ignored {
            continue;
        }
        suf = &fn_[s..s + s_len];
        if s_len == 1 {
            break;
        }
        if !suf[1..].iter().all(u8::is_ascii_digit) {
            return suf;
        }
        // An all-digit suffix may not be that significant: look further back.
    }
    suf
}

/// upstream fuzzy_distance: a weighted edit distance between two names,
/// in 1/65536 units (each edit costs a unit plus the byte values
/// involved). Gives up (0xFFFF0001) when the lengths alone differ by
/// more than `upper`.
pub fn fuzzy_distance(s1: &[u8], s2: &[u8], upper: u32) -> u32 {
    let (len1, len2) = (s1.len() as u32, s2.len() as u32);
    if len1.abs_diff(len2).wrapping_mul(UNIT) > upper {
        return 0xFFFF_u32.wrapping_mul(UNIT).wrapping_add(1);
    }
    if s1.is_empty() || s2.is_empty() {
        let s = if s1.is_empty() { s2 } else { s1 };
        // upstream sums plain (signed) chars here.
        let cost: i32 = s.iter().map(|&c| i32::from(c as i8)).sum();
        return (s.len() as i32)
            .wrapping_mul(UNIT as i32)
            .wrapping_add(cost) as u32;
    }
    let mut a: Vec<u32> = (1..=len2).map(|i| i.wrapping_mul(UNIT)).collect();
    for (i1, &c1) in s1.iter().enumerate() {
        let mut diag = (i1 as u32).wrapping_mul(UNIT);
        let mut above = (i1 as u32 + 1).wrapping_mul(UNIT);
        for (i2, &c2) in s2.iter().enumerate() {
            let left = a[i2];
            let cost = match i32::from(c1) - i32::from(c2) {
                0 => 0,
                d => UNIT.wrapping_add(d.unsigned_abs()),
            };
            let diag_inc = diag.wrapping_add(cost);
            let left_inc = left.wrapping_add(UNIT).wrapping_add(u32::from(c1));
            let above_inc = above.wrapping_add(UNIT).wrapping_add(u32::from(c2));
            above = if left < above {
                left_inc.min(diag_inc)
            } else {
                above_inc.min(diag_inc)
            };
            a[i2] = above;
            diag = left;
        }
    }
    a[a.len() - 1]
}

/// upstream find_fuzzy over `lists` (the destination directory's files
/// first): the first regular, non-empty file not being sent with the same
/// size and modification time (`same_time` decides), else the one at the
/// smallest distance, the last of equals winning. `debug` hears of each
/// file weighed, as upstream's `--debug=fuzzy2` tells of it: a size and
/// time match (None), or its distance.
pub fn find(
    lists: &[Vec<Candidate>],
    want: &Wanted<'_>,
    same_time: impl Fn(i64, i64) -> bool,
    mut debug: impl FnMut(Choice, Option<u32>),
) -> Option<Choice> {
    let usable =
        |c: &Candidate| crate::protocol::flist::mode::is_reg(c.st.mode) && c.st.size > 0 && !c.sent;
    for (list, cands) in lists.iter().enumerate() {
        for (at, c) in cands.iter().enumerate() {
            if usable(c) && c.st.size == want.size && same_time(c.st.mtime, want.mtime) {
                debug(Choice { list, at }, None);
                return Some(Choice { list, at });
            }
        }
    }
    let want_suf = filename_suffix(want.name);
    let mut lowest = MAX_DISTANCE;
    let mut best = None;
    for (list, cands) in lists.iter().enumerate() {
        for (at, c) in cands.iter().enumerate() {
            if !usable(c) {
                continue;
            }
            let mut dist = fuzzy_distance(&c.name, want.name, lowest);
            if dist < NO_SUFFIX_WEIGHT {
                let suf = fuzzy_distance(filename_suffix(&c.name), want_suf, NO_SUFFIX_WEIGHT);
                dist = dist.wrapping_add(suf.wrapping_mul(10));
            }
            debug(Choice { list, at }, Some(dist));
            if dist <= lowest {
                lowest = dist;
                best = Some(Choice { list, at });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, size: u64, mtime: i64) -> Candidate {
        let st = Stat {
            mode: 0o100644,
            size,
            mtime,
            ..Stat::default()
        };
        Candidate {
            name: name.as_bytes().to_vec(),
            st,
            sent: false,
        }
    }

    #[test]
    fn suffixes_as_upstream() {
        let suf = |n: &str| String::from_utf8_lossy(filename_suffix(n.as_bytes())).into_owned();
        assert_eq!(suf("report.txt"), ".txt");
        assert_eq!(suf("archive.tar.gz"), ".gz");
        assert_eq!(suf("notes.txt.bak"), ".txt");
        assert_eq!(suf("notes.txt.old"), ".txt");
        assert_eq!(suf("notes.c.orig"), ".c");
        assert_eq!(suf("notes.txt~"), ".txt");
        assert_eq!(suf("notes.txt.~3~"), ".txt");
        assert_eq!(suf("log.tar.1"), ".tar");
        assert_eq!(suf("log.1"), ".1");
        assert_eq!(suf(".bashrc"), "");
        assert_eq!(suf("..x.y"), ".y");
        assert_eq!(suf("plain"), "");
        assert_eq!(suf("trailing."), ".");
        // strcmp against the rest of the name: the suffix before another one
        // is never ".bak" for this purpose.
        assert_eq!(suf("a.bak.old"), ".bak");
        assert_eq!(suf("a.bak~"), ".bak");
        assert_eq!(suf("x~"), "");
        assert_eq!(suf("~"), "");
    }

    #[test]
    fn distances_as_upstream() {
        // Values stock rsync 3.5 prints with --debug=fuzzy2.
        assert_eq!(
            fuzzy_distance(b"report-2023.txt", b"report-2024.txt", MAX_DISTANCE),
            0x1_0001
        );
        assert_eq!(fuzzy_distance(b"abc", b"abc", MAX_DISTANCE), 0);
        // Empty against a name: its length in units plus its bytes.
        assert_eq!(fuzzy_distance(b"", b"ab", MAX_DISTANCE), 2 * UNIT + 97 + 98);
        assert_eq!(fuzzy_distance(b"x", b"", MAX_DISTANCE), UNIT + 120);
        // Bytes above 0x7f count as negative (upstream's signed char).
        assert_eq!(fuzzy_distance(b"", &[0xff], MAX_DISTANCE), UNIT - 1);
        // What upstream's find_fuzzy weighs (candidate, wanted): stock's
        // --debug=fuzzy2 said 32.00713 for the first, its functions the rest.
        let total = |a: &[u8], b: &[u8]| {
            let d = fuzzy_distance(a, b, MAX_DISTANCE);
            if d >= NO_SUFFIX_WEIGHT {
                return (d >> 16, d & 0xFFFF);
            }
            let s = fuzzy_distance(filename_suffix(a), filename_suffix(b), NO_SUFFIX_WEIGHT);
            let t = d + 10 * s;
            (t >> 16, t & 0xFFFF)
        };
        assert_eq!(total(b"oldname.dat", b"report-2024.txt"), (32, 713));
        assert_eq!(total(b"a.bak.old", b"x.bak"), (45, 3868));
        assert_eq!(total(b"notes.txt.~3~", b"z.txt"), (9, 356));
        assert_eq!(total(b"kitten.c", b"sitting.h"), (14, 170));
        assert_eq!(total(b"README", b"readme.md"), (39, 2729));
        assert_eq!(total(b"photo_001.jpg", b"photo_002.JPG"), (34, 1057));
        assert_eq!(total(b"x.tar.gz", b"x.tgz"), (13, 1417));
        assert_eq!(total("caf\u{e9}.txt".as_bytes(), b"cafe.txt"), (2, 263));
        assert_eq!(total(b"abc", b"abcdefghijklmnopqrstuvwxyz0123"), (65535, 1));
        // Too different in length for the limit.
        assert_eq!(fuzzy_distance(b"a", b"abcdef", 2 * UNIT), 0xFFFF_0001);
        // Symmetric in its operands here.
        assert_eq!(
            fuzzy_distance(b"kitten", b"sitting", u32::MAX),
            fuzzy_distance(b"sitting", b"kitten", u32::MAX)
        );
    }

    #[test]
    fn exact_size_and_time_first_then_the_closest_name() {
        let lists = vec![vec![
            reg("moved-away.bin", 1000, 50),
            reg("report-2023.txt", 900, 40),
            reg("zzz.dat", 1000, 50),
        ]];
        let same = |a: i64, b: i64| a == b;
        let want = Wanted {
            name: b"report-2024.txt",
            size: 1000,
            mtime: 50,
        };
        // Size and time: the first such one, whatever its name.
        assert_eq!(
            find(&lists, &want, same, |_, _| {}),
            Some(Choice { list: 0, at: 0 })
        );
        let want = Wanted {
            name: b"report-2024.txt",
            size: 5,
            mtime: 1,
        };
        assert_eq!(
            find(&lists, &want, same, |_, _| {}),
            Some(Choice { list: 0, at: 1 })
        );
        // Nothing close enough.
        let want = Wanted {
            name: b"completely-unrelated-name-here.iso",
            size: 5,
            mtime: 1,
        };
        assert_eq!(find(&lists, &want, same, |_, _| {}), None);
    }

    #[test]
    fn sent_empty_and_other_files_are_no_basis() {
        let mut sent = reg("a.txt", 10, 1);
        sent.sent = true;
        let mut link = reg("b.txt", 10, 1);
        link.st.mode = 0o120777;
        let lists = vec![
            vec![sent, link, reg("c.txt", 0, 1)],
            vec![reg("d.txt", 10, 1)],
        ];
        let want = Wanted {
            name: b"e.txt",
            size: 10,
            mtime: 1,
        };
        // Only the basis dir's file is left, an exact match.
        assert_eq!(
            find(&lists, &want, |a, b| a == b, |_, _| {}),
            Some(Choice { list: 1, at: 0 })
        );
    }

    #[test]
    fn equal_distances_go_to_the_last() {
        let lists = vec![vec![reg("ab.txt", 3, 1), reg("ab.txt", 3, 1)]];
        let want = Wanted {
            name: b"ab.txt",
            size: 9,
            mtime: 9,
        };
        assert_eq!(
            find(&lists, &want, |a, b| a == b, |_, _| {}),
            Some(Choice { list: 0, at: 1 })
        );
    }
}
