//! File-list order (upstream: flist.c f_name_cmp, fsort). Both sides sort the
//! list the same way, and the wire index of a file is its sorted position, so
//! this order must be bit-identical to upstream's.

use std::cmp::Ordering;

#[derive(PartialEq, Eq, Clone, Copy)]
enum SegType {
    Item,
    Path,
}

/// The segments of an entry name, lazily (no allocation per comparison):
/// every component but the last is a PATH segment; the last is a PATH
/// segment for a directory (an ITEM `""` for a directory named `.`) and an
/// ITEM for anything else; after it come empty ITEMs.
struct Segs<'a> {
    rest: &'a [u8],
    is_dir: bool,
    last_done: bool,
}

impl<'a> Segs<'a> {
    #[inline]
    fn new(name: &'a [u8], is_dir: bool) -> Self {
        Segs {
            rest: name,
            is_dir,
            last_done: false,
        }
    }

    #[inline]
    fn next_seg(&mut self) -> (SegType, &'a [u8]) {
        if self.last_done {
            return (SegType::Item, b"");
        }
        match self.rest.iter().position(|&c| c == b'/') {
            Some(p) => {
                let c = &self.rest[..p];
                self.rest = &self.rest[p + 1..];
                (SegType::Path, c)
            }
            None => {
                self.last_done = true;
                let c = self.rest;
                if !self.is_dir {
                    (SegType::Item, c)
                } else if c == b"." {
                    (SegType::Item, b"")
                } else {
                    (SegType::Path, c)
                }
            }
        }
    }
}

/// Compare two segment strings, PATH segments as if followed by '/'.
#[inline]
fn cmp_seg(a: &[u8], ap: bool, b: &[u8], bp: bool) -> Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal => {}
        o => return o,
    }
    // One is a prefix of the other: compare what follows, the implied '/'
    // of a PATH segment counting as a byte.
    let next = |s: &[u8], p: bool| -> (Option<u8>, bool) {
        // (byte after the common prefix, whether anything follows that byte)
        if s.len() > n {
            (Some(s[n]), s.len() > n + 1 || p)
        } else if p {
            (Some(b'/'), false)
        } else {
            (None, false)
        }
    };
    let (ca, ma) = next(a, ap);
    let (cb, mb) = next(b, bp);
    match ca.cmp(&cb) {
        Ordering::Equal => ma.cmp(&mb),
        o => o,
    }
}

/// `f_name_cmp`: the order of two entries given their full relative names
/// and whether each is a directory.
pub fn f_name_cmp(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool, proto: u8) -> Ordering {
    if proto < 29 {
        return a.cmp(b);
    }
    // Components up to the last '/' of the common prefix are equal PATH
    // segments on both sides: start after them (entries of one directory
    // then compare by their last component only).
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let skip = a[..common]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |p| p + 1);
    let mut sa = Segs::new(&a[skip..], a_dir);
    let mut sb = Segs::new(&b[skip..], b_dir);
    loop {
        let (ta, xa) = sa.next_seg();
        let (tb, xb) = sb.next_seg();
        if ta != tb {
            return if ta == SegType::Item {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let o = cmp_seg(xa, ta == SegType::Path, xb, tb == SegType::Path);
        if o != Ordering::Equal {
            return o;
        }
        if ta == SegType::Item {
            return Ordering::Equal;
        }
    }
}

/// Reorder `v` in place so that `v[i]` becomes the old `v[order[i]]`
/// (`order` is a permutation), without a second copy of the list.
pub fn permute<T>(v: &mut [T], order: &[usize]) {
    let mut done = vec![false; v.len()];
    for start in 0..v.len() {
        if done[start] {
            continue;
        }
        let mut i = start;
        loop {
            done[i] = true;
            let j = order[i];
            if j == start {
                break;
            }
            v.swap(i, j);
            i = j;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn permute_gathers(mut order in Just((0..40usize).collect::<Vec<_>>()).prop_shuffle()) {
            let src: Vec<usize> = (100..140).collect();
            let mut v = src.clone();
            super::permute(&mut v, &order);
            for (i, &o) in order.iter().enumerate() {
                prop_assert_eq!(v[i], src[o]);
            }
            order.clear();
        }
    }

    use super::*;

    /// The straightforward form (split into components, compare segment
    /// strings with their implied '/'): the oracle for the fast one.
    fn f_name_cmp_reference(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> Ordering {
        fn seg<'a>(comps: &[&'a [u8]], is_dir: bool, i: usize) -> (SegType, &'a [u8]) {
            let last = comps.len() - 1;
            if i < last {
                (SegType::Path, comps[i])
            } else if i == last {
                if is_dir {
                    if comps[i] == b"." {
                        (SegType::Item, b"")
                    } else {
                        (SegType::Path, comps[i])
                    }
                } else {
                    (SegType::Item, comps[i])
                }
            } else {
                (SegType::Item, b"")
            }
        }
        let ac: Vec<&[u8]> = a.split(|&c| c == b'/').collect();
        let bc: Vec<&[u8]> = b.split(|&c| c == b'/').collect();
        let mut i = 0;
        loop {
            let (ta, sa) = seg(&ac, a_dir, i);
            let (tb, sb) = seg(&bc, b_dir, i);
            if ta != tb {
                return if ta == SegType::Item {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            let ai = sa
                .iter()
                .copied()
                .chain((ta == SegType::Path).then_some(b'/'));
            let bi = sb
                .iter()
                .copied()
                .chain((tb == SegType::Path).then_some(b'/'));
            let o = ai.cmp(bi);
            if o != Ordering::Equal {
                return o;
            }
            if ta == SegType::Item {
                return Ordering::Equal;
            }
            i += 1;
        }
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn fast_cmp_equals_reference(
            a in "[ab./-]{0,9}", ad in any::<bool>(),
            b in "[ab./-]{0,9}", bd in any::<bool>(),
        ) {
            prop_assert_eq!(
                f_name_cmp(a.as_bytes(), ad, b.as_bytes(), bd, 31),
                f_name_cmp_reference(a.as_bytes(), ad, b.as_bytes(), bd)
            );
        }
    }

    fn sorted(items: &[(&str, bool)], proto: u8) -> Vec<String> {
        let mut v = items.to_vec();
        v.sort_by(|x, y| f_name_cmp(x.0.as_bytes(), x.1, y.0.as_bytes(), y.1, proto));
        v.into_iter().map(|x| x.0.to_string()).collect()
    }

    #[test]
    fn files_before_subdirs_and_dot_first() {
        let items = [
            ("b/y/z", false),
            ("b/y", true),
            ("b", true),
            ("c", false),
            (".", true),
            ("a", false),
            ("b/x", false),
        ];
        assert_eq!(
            sorted(&items, 31),
            [".", "a", "c", "b", "b/x", "b/y", "b/y/z"]
        );
    }

    #[test]
    fn dot_and_slash_order() {
        assert_eq!(sorted(&[("b", true), ("b.txt", false)], 31), ["b.txt", "b"]);
        assert_eq!(sorted(&[("b", true), ("b.d", true)], 31), ["b.d", "b"]);
        assert_eq!(sorted(&[("b", true), ("b.d", true)], 28), ["b", "b.d"]);
    }

    /// The order stock rsync used in capture 25-sort-p32 (shared/captures/dumps).
    #[test]
    fn sorttree_matches_capture_25() {
        let items: Vec<(&str, bool)> = vec![
            (".", true),
            ("a", true),
            ("a/b", false),
            ("a/b-", false),
            ("a/ba", false),
            ("a/b.c", true),
            ("a/b.c/x", false),
            ("a.d", true),
            ("a.d/y", false),
            ("x", true),
            ("x/a.b", false),
            ("x/a-", false),
            ("x/ab", false),
            ("x/a", true),
            ("x/a/b", false),
            ("a b", false),
            ("a-", false),
            ("a.b", false),
            ("a0", false),
            ("ab", false),
            ("B", false),
            ("Z", false),
            ("b", false),
            ("x-", false),
            ("x.txt", false),
            ("z", false),
        ];
        let got = sorted(&items, 32);
        let want = [
            ".", "B", "Z", "a b", "a-", "a.b", "a0", "ab", "b", "x-", "x.txt", "z", "a.d", "a.d/y",
            "a", "a/b", "a/b-", "a/ba", "a/b.c", "a/b.c/x", "x", "x/a-", "x/a.b", "x/ab", "x/a",
            "x/a/b",
        ];
        assert_eq!(got, want);
    }
}
