//! Wildcard expansion of the path arguments a server is given (upstream:
//! util1.c glob_expand / glob_match, called from io.c read_args for a
//! daemon's request and for `--server -s`).
//!
//! Each `/`-separated component holding `*`, `?` or `[` is matched
//! against the names in its directory (rsync's wildmatch, so `*` also
//! matches a leading dot); a component before the last must be a
//! directory (symlinks followed). Names the module's own filter rules
//! exclude are never matched. An argument that matches nothing, or has no
//! wildcard, is kept as it is, so the sender reports it missing in
//! rsync's words. Leading `./` pieces (a `-R` anchor) stay in the names
//! returned but not in the names the filter sees.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The module's filter as the expansion asks it: is this module-relative
/// name (a directory?) excluded.
pub type Excluded<'a> = &'a dyn Fn(&[u8], bool) -> bool;

/// Where and how arguments are expanded.
pub struct Glob<'a> {
    /// Paths are relative to this directory (a module root, or the
    /// server's working directory).
    pub base: &'a Path,
    /// Nothing outside this directory (canonical) is looked at: a symlink
    /// leading out of a module matches nothing.
    pub confine: Option<&'a Path>,
    /// The module's filter: true when a module-relative name is excluded.
    pub excluded: Option<Excluded<'a>>,
}

/// Upper bound on the names one argument may expand to.
const MAX_MATCHES: usize = 1 << 20;

/// Whether a path holds a wildcard character at all.
pub fn has_wildcard(arg: &[u8]) -> bool {
    arg.iter().any(|&b| matches!(b, b'*' | b'?' | b'['))
}

impl Glob<'_> {
    /// The names `arg` stands for (itself when it matches nothing).
    pub fn expand(&self, arg: &[u8]) -> Vec<Vec<u8>> {
        if !has_wildcard(arg) {
            return vec![arg.to_vec()];
        }
        let mut st = State {
            out: Vec::new(),
            buf: Vec::with_capacity(arg.len() + 64),
            filt: None,
        };
        self.match_rest(arg, &mut st);
        if st.out.is_empty() {
            vec![arg.to_vec()]
        } else {
            st.out
        }
    }

    /// Match `arg` (what is left of the pattern) below `st.buf`.
    fn match_rest(&self, mut arg: &[u8], st: &mut State) {
        while let Some(rest) = arg.strip_prefix(b"./") {
            if st.filt.is_none() {
                st.filt = Some(st.buf.clone());
            }
            st.buf.extend_from_slice(b"./");
            arg = rest;
        }
        let (comp, rest) = match arg.iter().position(|&b| b == b'/') {
            Some(i) => (&arg[..i], Some(&arg[i + 1..])),
            None => (arg, None),
        };
        if has_wildcard(comp) {
            let dir = if st.buf.is_empty() {
                self.base.to_path_buf()
            } else {
                self.base.join(OsStr::from_bytes(&st.buf))
            };
            if !self.inside(&dir) {
                return;
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                return;
            };
            let mut names: Vec<Vec<u8>> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().as_bytes().to_vec())
                .filter(|n| crate::filter::wildmatch::wildmatch(comp, n))
                .collect();
            names.sort();
            for n in names {
                if st.out.len() >= MAX_MATCHES {
                    return;
                }
                self.take(&n, true, rest, st);
            }
        } else {
            self.take(comp, false, rest, st);
        }
    }

    /// Append one name and go on with the rest of the pattern (upstream
    /// call_glob_match).
    fn take(&self, name: &[u8], from_glob: bool, rest: Option<&[u8]>, st: &mut State) {
        let (blen, flen) = (st.buf.len(), st.filt.as_ref().map(Vec::len));
        st.buf.extend_from_slice(name);
        if let Some(f) = st.filt.as_mut() {
            f.extend_from_slice(name);
        }
        if self.admit(from_glob, rest, name, st) {
            match rest {
                Some(r) => {
                    st.buf.push(b'/');
                    if let Some(f) = st.filt.as_mut() {
                        f.push(b'/');
                    }
                    self.match_rest(r, st);
                }
                None => st.out.push(st.buf.clone()),
            }
        }
        st.buf.truncate(blen);
        if let (Some(f), Some(l)) = (st.filt.as_mut(), flen) {
            f.truncate(l);
        }
        if flen.is_none() {
            st.filt = None;
        }
    }

    /// Whether the name now at the end of `st.buf` may be used: a matched
    /// name or a directory on the way must exist (a directory when more
    /// follows) and not be excluded by the module.
    fn admit(&self, from_glob: bool, rest: Option<&[u8]>, name: &[u8], st: &State) -> bool {
        if !from_glob && (rest.is_none() || name.is_empty()) {
            return true;
        }
        let p = self.base.join(OsStr::from_bytes(&st.buf));
        if !self.inside(&p) {
            return false;
        }
        let Ok(md) = std::fs::metadata(&p) else {
            return false;
        };
        if rest.is_some() && !md.is_dir() {
            return false;
        }
        match self.excluded {
            Some(x) => !x(st.filt.as_deref().unwrap_or(&st.buf), md.is_dir()),
            None => true,
        }
    }

    fn inside(&self, p: &Path) -> bool {
        match self.confine {
            None => true,
            Some(c) => std::fs::canonicalize(p).is_ok_and(|r: PathBuf| r.starts_with(c)),
        }
    }
}

struct State {
    /// The expansions found.
    out: Vec<Vec<u8>>,
    /// The name being built.
    buf: Vec<u8>,
    /// The same name without its `./` pieces, once one was seen (what the
    /// module's filter is asked about).
    filt: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dest::test_support::Scratch;

    fn tree(tag: &str) -> Scratch {
        let t = Scratch::new(tag);
        for d in ["d0", "d1", "e2", ".hid"] {
            std::fs::create_dir(t.root.join(d)).unwrap();
            std::fs::write(t.root.join(d).join("f.txt"), b"x").unwrap();
        }
        std::fs::write(t.root.join("d9"), b"file").unwrap();
        t
    }

    fn names(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect()
    }

    #[test]
    fn expands_like_upstream() {
        let t = tree("glob");
        let g = Glob {
            base: &t.root,
            confine: None,
            excluded: None,
        };
        assert_eq!(names(g.expand(b"d*")), ["d0", "d1", "d9"]);
        assert_eq!(names(g.expand(b"d[01]")), ["d0", "d1"]);
        assert_eq!(names(g.expand(b"*")), [".hid", "d0", "d1", "d9", "e2"]);
        // Only directories lead on; a trailing slash stays.
        assert_eq!(names(g.expand(b"d*/")), ["d0/", "d1/"]);
        assert_eq!(names(g.expand(b"?0/f.*")), ["d0/f.txt"]);
        // Nothing matched: the argument as given.
        assert_eq!(names(g.expand(b"zz*")), ["zz*"]);
        assert_eq!(names(g.expand(b"d9/*")), ["d9/*"]);
        // No wildcard: untouched, even when missing.
        assert_eq!(names(g.expand(b"nope/x")), ["nope/x"]);
        // -R anchors are kept.
        assert_eq!(names(g.expand(b"./d0/./f*")), ["./d0/./f.txt"]);
    }

    #[test]
    fn module_filter_hides_names() {
        let t = tree("globfilter");
        let seen = std::cell::RefCell::new(Vec::new());
        let x = |n: &[u8], _dir: bool| {
            seen.borrow_mut().push(n.to_vec());
            n == b"d1" || n.ends_with(b".txt")
        };
        let g = Glob {
            base: &t.root,
            confine: None,
            excluded: Some(&x),
        };
        assert_eq!(names(g.expand(b"d[01]")), ["d0"]);
        assert_eq!(names(g.expand(b"d0/*")), ["d0/*"]);
        seen.borrow_mut().clear();
        let _ = g.expand(b"./d0/./f*");
        assert!(seen.borrow().contains(&b"d0/f.txt".to_vec()));
    }

    #[test]
    fn confined_to_the_module() {
        let t = tree("globconfine");
        std::os::unix::fs::symlink(&t.outside, t.root.join("link")).unwrap();
        let root = std::fs::canonicalize(&t.root).unwrap();
        let g = Glob {
            base: &t.root,
            confine: Some(&root),
            excluded: None,
        };
        assert_eq!(names(g.expand(b"link/s*")), ["link/s*"]);
        assert_eq!(names(g.expand(b"d0/f*")), ["d0/f.txt"]);
    }
}
