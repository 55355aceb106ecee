//! File-list order (upstream: flist.c f_name_cmp, fsort). Both sides sort the
//! list the same way, and the wire index of a file is its sorted position, so
//! this order must be bit-identical to upstream's.

use std::cmp::Ordering;

#[derive(PartialEq, Eq, Clone, Copy)]
enum SegType {
    Item,
    Path,
}

/// One segment of an entry: its type and its bytes (a PATH segment carries an implied trailing '/').
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

/// Compare two segment strings, PATH segments as if followed by '/'.
fn cmp_seg(a: &[u8], ap: bool, b: &[u8], bp: bool) -> Ordering {
    let ai = a.iter().copied().chain(if ap { Some(b'/') } else { None });
    let bi = b.iter().copied().chain(if bp { Some(b'/') } else { None });
    ai.cmp(bi)
}

/// `f_name_cmp`: the order of two entries given their full relative names
/// and whether each is a directory.
pub fn f_name_cmp(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool, proto: u8) -> Ordering {
    if proto < 29 {
        return a.cmp(b);
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
        let o = cmp_seg(sa, ta == SegType::Path, sb, tb == SegType::Path);
        if o != Ordering::Equal {
            return o;
        }
        if ta == SegType::Item {
            return Ordering::Equal;
        }
        i += 1;
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
