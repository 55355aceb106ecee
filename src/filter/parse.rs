//! Building rule lists from text: stock `parse_filter_str`,
//! `parse_filter_file`, `add_rule` and `parse_merge_name` semantics, shared
//! by the global list, per-directory merge lists and daemon lists.  All file
//! access goes through a caller-supplied reader.

use super::rule::{flags as f, parse_rule_tok, shown, xflags as xf, Rule, MAXPATHLEN};
use super::{FilterError, ParseOptions};

/// stock `BIGPATHBUFLEN`: longest line read from a rules file is one less.
pub(crate) const BIGPATHBUFLEN: usize = MAXPATHLEN + 1024;
/// stock `MAX_MERGE_DEPTH`.
pub(crate) const MAX_MERGE_DEPTH: usize = 32;

/// rsync's built-in CVS ignore list (`--cvs-exclude`).
pub const DEFAULT_CVSIGNORE: &[u8] = b"RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS \
.make.state .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* \
*.a *.olb *.o *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";

/// A reader of rule files: given a path, its contents, or None when it
/// cannot (or may not) be opened.
pub type Reader<'a> = dyn FnMut(&[u8]) -> Option<Vec<u8>> + 'a;

/// Registry of the active per-directory merge lists (stock
/// `mergelist_parents`).
pub(crate) trait Merges {
    /// Is a per-dir merge file with this base name already active?
    fn is_active(&self, base: &[u8]) -> bool;
    /// Register a new per-dir merge rule; returns its slot.
    fn register(&mut self, rule: &Rule) -> Result<usize, FilterError>;
    /// The rule owning `slot` was dropped.
    fn release(&mut self, slot: usize);
}

/// Where parsed rules go.
#[derive(Default)]
pub(crate) struct Sink {
    pub rules: Vec<Rule>,
    /// A `!` emptied the list: stop inheriting the parent's rules.
    pub cleared: bool,
}

/// Cut a C string at its first NUL.
pub(crate) fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

pub(crate) fn basename(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// Normalise a path the way `clean_fname(.., CFN_COLLAPSE_DOT_DOT_DIRS)`
/// does: no empty or `.` components, `..` collapsed (never above `/`),
/// no trailing slash; an empty relative result is `.`.
pub(crate) fn clean_path(p: &[u8]) -> Vec<u8> {
    let abs = p.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if abs => {}
                _ => parts.push(c),
            },
            _ => parts.push(c),
        }
    }
    rooted_join(abs, &parts)
}

/// `parts` joined by slashes, after one when `abs`; an empty relative
/// result is `.`.
pub(crate) fn rooted_join(abs: bool, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
    if abs {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

pub(crate) struct Parser<'a, 'r> {
    pub opts: &'a ParseOptions,
    pub read: &'a mut Reader<'r>,
    pub merges: &'a mut dyn Merges,
    pub cvs: &'a mut Option<Vec<Rule>>,
    pub warnings: &'a mut Vec<String>,
    /// The directory being processed (absolute, with a trailing `/`), or
    /// None while parsing options.
    pub dirbuf: Option<Vec<u8>>,
    /// Transfer root (absolute, no trailing `/` unless it is `/`): paths
    /// under it are handed to the reader relative to it.
    pub root_abs: Option<Vec<u8>>,
    pub parent_dirscan: bool,
    pub am_sender: bool,
    pub depth: usize,
    /// Where the text being parsed came from, when it is a file's contents.
    pub src: Option<String>,
}

impl Parser<'_, '_> {
    fn warn(&mut self, msg: String) {
        if self.warnings.len() < 1000 {
            self.warnings.push(msg);
        }
    }

    /// The path to give the reader for an internal (maybe absolute) path.
    fn reader_path(&self, path: &[u8]) -> Vec<u8> {
        if let (Some(root), Some(b'/')) = (&self.root_abs, path.first()) {
            if root.as_slice() == b"/" {
                return if path.len() > 1 {
                    path[1..].to_vec()
                } else {
                    b".".to_vec()
                };
            }
            if path == root.as_slice() {
                return b".".to_vec();
            }
            if path.starts_with(root) && path.get(root.len()) == Some(&b'/') {
                return path[root.len() + 1..].to_vec();
            }
        }
        path.to_vec()
    }

    /// stock `parse_merge_name`.
    pub fn merge_name(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        if !self.parent_dirscan && pat.first() != Some(&b'/') && !pat.contains(&b'/') {
            return Some(pat.to_vec());
        }
        let mut name = pat;
        if self.opts.sanitize_paths && !self.parent_dirscan {
            while name.first() == Some(&b'/') {
                name = &name[1..];
            }
        }
        let out = if name.first() == Some(&b'/') {
            clean_path(name)
        } else {
            match &self.dirbuf {
                Some(d) => {
                    let mut full = d.clone();
                    full.extend_from_slice(name);
                    clean_path(&full)
                }
                None => clean_path(name),
            }
        };
        if out.len() >= MAXPATHLEN {
            let m = format!(
                "merge-file name overflows: {}",
                shown(pat, self.src.as_deref())
            );
            self.warn(m);
            return None;
        }
        Some(out)
    }

    /// stock `add_rule`.
    pub fn add_rule(
        &mut self,
        sink: &mut Sink,
        pat: &[u8],
        mut fl: u32,
        xfl: u32,
    ) -> Result<(), FilterError> {
        let other = if self.am_sender {
            f::RECEIVER_SIDE
        } else {
            f::SENDER_SIDE
        };
        if xfl & (xf::ANCHORED2ABS | xf::ABS_IF_SLASH) != 0 && fl & f::SIDES == other {
            return Ok(());
        }
        let mut pat = pat;
        if pat.len() > 1 && pat[pat.len() - 1] == b'/' {
            pat = &pat[..pat.len() - 1];
            fl |= f::DIRECTORY;
        }
        let mut slash_cnt = pat.iter().filter(|&&c| c == b'/').count() as u32;
        let mut pattern = Vec::with_capacity(pat.len() + 4);
        let lead = pat.first() == Some(&b'/');
        if fl & (f::ABS_PATH | f::MERGE_FILE) == 0
            && ((xfl & (xf::ANCHORED2ABS | xf::ABS_IF_SLASH) != 0 && lead)
                || (xfl & xf::ABS_IF_SLASH != 0 && slash_cnt != 0))
        {
            fl |= f::ABS_PATH;
            if lead {
                if let Some(d) = &self.dirbuf {
                    let pre = &d[..d.len().saturating_sub(1)];
                    slash_cnt += pre.iter().filter(|&&c| c == b'/').count() as u32;
                    pattern.extend_from_slice(pre);
                }
            }
        }
        pattern.extend_from_slice(pat);
        if xfl & xf::DIR2WILD3 != 0 && fl & f::DIRECTORY != 0 && fl & f::INCLUDE == 0 {
            fl &= !f::DIRECTORY;
            pattern.extend_from_slice(b"/***");
            slash_cnt += 1;
        }
        let mut rule = Rule::finish(pattern, fl, slash_cnt);
        if fl & f::PERDIR_MERGE != 0 {
            if self.merges.is_active(basename(&rule.pattern)) {
                return Ok(());
            }
            rule.slot = self.merges.register(&rule)?;
        }
        sink.rules.push(rule);
        Ok(())
    }

    /// A `!`: drop everything in the sink.
    pub fn clear(&mut self, sink: &mut Sink) {
        for r in sink.rules.drain(..) {
            if r.flags & f::PERDIR_MERGE != 0 {
                self.merges.release(r.slot);
            }
        }
        sink.cleared = true;
    }

    /// stock `parse_filter_str`.
    pub fn parse_str(
        &mut self,
        sink: &mut Sink,
        text: &[u8],
        template: u32,
        xfl: u32,
    ) -> Result<(), FilterError> {
        let text = cstr(text);
        let mut pos = 0;
        while let Some(tok) = parse_rule_tok(
            text,
            &mut pos,
            template,
            xfl,
            self.opts.delete_excluded,
            self.src.as_deref(),
        )? {
            let mut pat: &[u8] = &text[tok.pat_start..tok.pat_start + tok.pat_len];
            let mut fl = tok.flags;
            if pat.len() >= MAXPATHLEN {
                let m = format!(
                    "discarding over-long filter: {}",
                    shown(pat, self.src.as_deref())
                );
                self.warn(m);
                continue;
            }
            if fl & f::CLEAR_LIST != 0 {
                self.clear(sink);
                continue;
            }
            if fl & f::MERGE_FILE != 0 {
                if pat.is_empty() {
                    pat = b".cvsignore";
                }
                if fl & f::EXCLUDE_SELF != 0 {
                    self.add_rule(sink, basename(pat), fl & f::FROM_FILE, 0)?;
                    fl &= !f::EXCLUDE_SELF;
                }
                if fl & f::PERDIR_MERGE != 0 {
                    if self.parent_dirscan {
                        if let Some(p) = self.merge_name(pat) {
                            self.add_rule(sink, &p, fl, 0)?;
                        }
                        continue;
                    }
                } else {
                    if let Some(p) = self.merge_name(pat) {
                        self.parse_file(sink, &p, fl, xf::FATAL_ERRORS)?;
                    }
                    continue;
                }
            }
            self.add_rule(sink, pat, fl, xfl)?;
            if fl & f::CVS_IGNORE != 0 && fl & f::MERGE_FILE == 0 {
                self.load_cvs(fl)?;
            }
        }
        Ok(())
    }

    /// stock `parse_filter_file`, reading through the caller's reader.
    pub fn parse_file(
        &mut self,
        sink: &mut Sink,
        path: &[u8],
        template: u32,
        xfl: u32,
    ) -> Result<(), FilterError> {
        if path.is_empty() {
            return Ok(());
        }
        let fatal = xfl & xf::FATAL_ERRORS != 0;
        let shown_path = if self.src.is_some() || template & f::FROM_FILE != 0 {
            shown(path, Some("a file read earlier"))
        } else {
            String::from_utf8_lossy(path).into_owned()
        };
        if self.depth >= MAX_MERGE_DEPTH {
            if fatal {
                return Err(FilterError::MergeDepth(MAX_MERGE_DEPTH));
            }
            self.warn(format!(
                "merge-file include depth limit ({MAX_MERGE_DEPTH}) exceeded at {shown_path}"
            ));
            return Ok(());
        }
        let rpath = self.reader_path(path);
        let Some(content) = (self.read)(&rpath) else {
            if fatal {
                return Err(FilterError::OpenFailed {
                    include: template & f::INCLUDE != 0,
                    path: shown_path,
                });
            }
            return Ok(());
        };
        let named_by_file = self.src.is_some() || template & f::FROM_FILE != 0;
        let word_split = template & f::WORD_SPLIT != 0;
        let saved_src = self.src.take();
        self.depth += 1;
        let result = (|| {
            let mut lineno = 0usize;
            let mut i = 0;
            let n = content.len();
            loop {
                let start = i;
                let mut end;
                loop {
                    end = i;
                    if i >= n {
                        break;
                    }
                    let c = content[i];
                    i += 1;
                    if word_split && super::rule::is_space(c) {
                        break;
                    }
                    let eol = if self.opts.eol_nulls {
                        c == 0
                    } else {
                        c == b'\n' || c == b'\r'
                    };
                    if eol {
                        if c == b'\r' && content.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                        break;
                    }
                }
                let mut line = cstr(&content[start..end]);
                lineno += 1;
                if line.len() > BIGPATHBUFLEN - 1 {
                    self.warn("discarding over-long filter: <rule from a file>".to_string());
                    line = b"";
                }
                if !line.is_empty() && (word_split || (line[0] != b';' && line[0] != b'#')) {
                    self.src = Some(if named_by_file {
                        "a file read earlier".to_string()
                    } else if word_split {
                        String::from_utf8_lossy(path).into_owned()
                    } else {
                        format!("{} line {lineno}", String::from_utf8_lossy(path))
                    });
                    self.parse_str(sink, line, template, xfl)?;
                }
                if i >= n && end >= n {
                    break;
                }
            }
            Ok(())
        })();
        self.depth -= 1;
        self.src = saved_src;
        result
    }

    /// stock `get_cvs_excludes`: load the global CVS list once.
    pub fn load_cvs(&mut self, fl: u32) -> Result<(), FilterError> {
        if self.cvs.is_some() {
            return Ok(());
        }
        *self.cvs = Some(Vec::new());
        let mut sink = Sink::default();
        let perish = if self.opts.protocol >= 30 {
            f::PERISHABLE
        } else {
            0
        };
        let saved = self.src.take();
        let r = (|| {
            self.parse_str(&mut sink, DEFAULT_CVSIGNORE, fl | perish, 0)?;
            if let Some(home) = self.opts.cvs_home_ignore.clone() {
                self.parse_file(&mut sink, &home, fl, 0)?;
            }
            if let Some(env) = self.opts.cvs_env.clone() {
                self.parse_str(&mut sink, &env, fl, 0)?;
            }
            Ok(())
        })();
        self.src = saved;
        *self.cvs = Some(sink.rules);
        r
    }
}
