//! One filter rule: its flags, the rule-token parser (`parse_rule_tok`
//! semantics of rsync's exclude.c), the prefix builder (`get_rule_prefix`)
//! and the per-rule matcher (`rule_matches`).

use super::wildmatch::{has_wildcards, litmatch_at, wildmatch_at};
use super::{FilterError, NameKind, Side};

/// Rule flag bits (internal values; the wire carries prefixes, not these).
pub mod flags {
    /// Pattern has `*`, `[` or `?`.
    pub const WILD: u32 = 1 << 0;
    /// Pattern has `**`.
    pub const WILD2: u32 = 1 << 1;
    /// Pattern starts with `**`.
    pub const WILD2_PREFIX: u32 = 1 << 2;
    /// Pattern ends with `***`.
    pub const WILD3_SUFFIX: u32 = 1 << 3;
    /// Match against the absolute path (`/` modifier, per-dir anchored rules).
    pub const ABS_PATH: u32 = 1 << 4;
    /// Include (else exclude).
    pub const INCLUDE: u32 = 1 << 5;
    /// Matches directories only (pattern had a trailing `/`).
    pub const DIRECTORY: u32 = 1 << 6;
    /// Merge file: split on whitespace (`w`).
    pub const WORD_SPLIT: u32 = 1 << 7;
    /// Merge file: rules are not inherited by subdirectories (`n`).
    pub const NO_INHERIT: u32 = 1 << 8;
    /// Merge file: lines carry no prefixes (`+`/`-` modifiers).
    pub const NO_PREFIXES: u32 = 1 << 9;
    /// A merge rule (`.` or `:`).
    pub const MERGE_FILE: u32 = 1 << 10;
    /// A per-directory merge rule (`:`).
    pub const PERDIR_MERGE: u32 = 1 << 11;
    /// Merge file name is excluded too (`e`).
    pub const EXCLUDE_SELF: u32 = 1 << 12;
    /// Per-dir merge whose name still needs the parent-dir scan setup.
    pub const FINISH_SETUP: u32 = 1 << 13;
    /// Rule matches when the pattern does not (`!`).
    pub const NEGATE: u32 = 1 << 14;
    /// `C`: CVS-ignore semantics.
    pub const CVS_IGNORE: u32 = 1 << 15;
    /// Applies to the sending side only (`s`, hide/show).
    pub const SENDER_SIDE: u32 = 1 << 16;
    /// Applies to the receiving side only (`r`, protect/risk).
    pub const RECEIVER_SIDE: u32 = 1 << 17;
    /// The `!` clear token.
    pub const CLEAR_LIST: u32 = 1 << 18;
    /// Perishable (`p`): ignored when deleting a directory's contents.
    pub const PERISHABLE: u32 = 1 << 19;
    /// Applies to xattr names only (`x`).
    pub const XATTR: u32 = 1 << 20;
    /// Rule text came from a file's contents (error messages hide it).
    pub const FROM_FILE: u32 = 1 << 21;
    /// Made sender-side by `--delete-excluded` at send time: matched as a
    /// sender-side rule but not given an `s` on the wire (stock "elide").
    pub const IMPLIED_SENDER: u32 = 1 << 24;

    /// Both side bits.
    pub const SIDES: u32 = SENDER_SIDE | RECEIVER_SIDE;
    /// What a rule inherits from its merge-file template.
    pub const FROM_CONTAINER: u32 = ABS_PATH | INCLUDE | DIRECTORY | NEGATE | PERISHABLE;
}
use flags as f;

/// Parser behaviour switches (rsync's `XFLG_*`).
pub mod xflags {
    /// A failure to open a merge file is fatal.
    pub const FATAL_ERRORS: u32 = 1 << 0;
    /// Only `+ `/`- ` prefixes (and `!`) are recognised.
    pub const OLD_PREFIXES: u32 = 1 << 1;
    /// A leading `/` anchors to the directory being parsed (per-dir files).
    pub const ANCHORED2ABS: u32 = 1 << 2;
    /// A leading or interior `/` makes the rule absolute (daemon rules).
    pub const ABS_IF_SLASH: u32 = 1 << 3;
    /// A directory-only exclude gets `/***` appended (daemon rules).
    pub const DIR2WILD3: u32 = 1 << 4;
}

/// Longest pattern kept (`MAXPATHLEN`); longer ones are discarded.
pub const MAXPATHLEN: usize = 4096;

/// A parsed filter rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub(crate) pattern: Vec<u8>,
    pub(crate) flags: u32,
    pub(crate) slash_cnt: u32,
    /// Per-dir merge rules: index of their merge list in a `FilterStack`.
    pub(crate) slot: usize,
}

pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

impl Rule {
    /// Build a rule the way stock `add_rule` finishes one: `pat` is already
    /// stripped of its trailing `/` (DIRECTORY set) and any prefix added.
    pub(crate) fn finish(pattern: Vec<u8>, mut flags: u32, slash_cnt: u32) -> Rule {
        flags &= !(f::WILD | f::WILD2 | f::WILD2_PREFIX | f::WILD3_SUFFIX);
        if has_wildcards(&pattern) {
            flags |= f::WILD;
            if pattern.windows(2).any(|w| w == b"**") {
                flags |= f::WILD2;
                if pattern.starts_with(b"**") {
                    flags |= f::WILD2_PREFIX;
                }
                if pattern.ends_with(b"***") {
                    flags |= f::WILD3_SUFFIX;
                }
            }
        }
        Rule {
            pattern,
            flags,
            slash_cnt,
            slot: 0,
        }
    }

    /// The stored pattern (without the trailing `/` of a directory rule).
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }
    /// The flag bits (see [`flags`]).
    pub fn flags(&self) -> u32 {
        self.flags
    }
    /// Include rule?
    pub fn is_include(&self) -> bool {
        self.flags & f::INCLUDE != 0
    }
    /// Directory-only rule?
    pub fn is_dir_only(&self) -> bool {
        self.flags & f::DIRECTORY != 0
    }
    /// Per-directory merge rule (`:`)?
    pub fn is_perdir_merge(&self) -> bool {
        self.flags & f::PERDIR_MERGE != 0
    }

    /// Does this rule take part in checks made for `side`?
    pub(crate) fn applies_to(&self, side: Side) -> bool {
        let mut sides = self.flags & f::SIDES;
        if self.flags & f::IMPLIED_SENDER != 0 && sides == 0 {
            sides = f::SENDER_SIDE;
        }
        match side {
            _ if sides == 0 => true,
            Side::Sender => sides & f::SENDER_SIDE != 0,
            Side::Receiver => sides & f::RECEIVER_SIDE != 0,
        }
    }

    /// The rule's text as rsync would show it (`get_rule_prefix` without
    /// `for_xfer`, the pattern, and a `/` for directory rules).
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = prefix(self.flags, &self.pattern, None).unwrap_or_default();
        out.extend_from_slice(&self.pattern);
        if self.flags & f::DIRECTORY != 0 {
            out.push(b'/');
        }
        out
    }

    /// stock `rule_matches`: does this rule fire for `fname`?  `root_rel`
    /// is the transfer root relative to `/` (no leading slash; empty when
    /// the root is `/` itself), prepended for absolute-path rules.
    pub(crate) fn matches(&self, fname: &[u8], kind: NameKind, root_rel: &[u8]) -> bool {
        let neg = self.flags & f::NEGATE != 0;
        let leading_slash = fname.first() == Some(&b'/');
        let mut name = if leading_slash { &fname[1..] } else { fname };
        if name.is_empty() {
            return false;
        }
        if (kind == NameKind::Xattr) != (self.flags & f::XATTR != 0) {
            return false;
        }
        let mut pre: &[u8] = b"";
        let mut pre_slash = false;
        if self.slash_cnt == 0 && self.flags & f::WILD2 == 0 {
            if let Some(p) = name.iter().rposition(|&c| c == b'/') {
                name = &name[p + 1..];
            }
        } else if self.flags & f::ABS_PATH != 0 && !leading_slash && !root_rel.is_empty() {
            pre = root_rel;
            pre_slash = true;
        } else if self.flags & f::WILD2_PREFIX != 0 && !leading_slash {
            pre_slash = true;
        }
        let mut suf_slash = false;
        if kind == NameKind::Dir {
            if self.flags & f::WILD3_SUFFIX != 0 {
                suf_slash = true;
            }
        } else if self.flags & f::DIRECTORY != 0 {
            return neg;
        }
        let str_cnt =
            1 + usize::from(!pre.is_empty()) + usize::from(pre_slash) + usize::from(suf_slash);
        let (pattern, anchored) = match self.pattern.first() {
            Some(b'/') => (&self.pattern[1..], true),
            _ => (&self.pattern[..], false),
        };
        let wild2 = self.flags & f::WILD2 != 0;
        let slash_handling = if !anchored && self.slash_cnt != 0 && !wild2 {
            self.slash_cnt as i32 + 1
        } else if !anchored && self.flags & f::WILD2_PREFIX == 0 && wild2 {
            -1
        } else {
            0
        };
        let hit = if self.flags & f::WILD != 0 || str_cnt > 1 {
            let mut text = Vec::with_capacity(pre.len() + name.len() + 2);
            text.extend_from_slice(pre);
            if pre_slash {
                text.push(b'/');
            }
            text.extend_from_slice(name);
            if suf_slash {
                text.push(b'/');
            }
            if self.flags & f::WILD != 0 {
                wildmatch_at(pattern, &text, slash_handling)
            } else {
                litmatch_at(pattern, &text, slash_handling)
            }
        } else if anchored {
            name == pattern
        } else {
            name.len() >= pattern.len()
                && name.ends_with(pattern)
                && (name.len() == pattern.len() || name[name.len() - pattern.len() - 1] == b'/')
        };
        hit != neg
    }
}

/// Settings for building a transfer prefix (`get_rule_prefix(.., for_xfer=1)`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct XferPrefix {
    pub protocol: u32,
    pub am_sender: bool,
    pub delete_excluded: bool,
}

/// stock `get_rule_prefix`.  `xfer` = None builds the display form.
/// Returns None when the rule cannot be expressed for the peer's protocol.
pub(crate) fn prefix(flags: u32, pat: &[u8], xfer: Option<XferPrefix>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    let old = matches!(xfer, Some(x) if x.protocol < 29);
    let mut legal_len: usize = if old { 1 } else { 15 };
    if flags & f::PERDIR_MERGE != 0 {
        if legal_len == 1 {
            return None;
        }
        out.push(b':');
    } else if flags & f::INCLUDE != 0 {
        out.push(b'+');
    } else if legal_len != 1
        || (matches!(pat.first(), Some(b'-' | b'+')) && pat.get(1) == Some(&b' '))
    {
        out.push(b'-');
    } else {
        legal_len = 0;
    }
    if flags & f::ABS_PATH != 0 {
        out.push(b'/');
    }
    if flags & f::NEGATE != 0 {
        out.push(b'!');
    }
    if flags & f::CVS_IGNORE != 0 {
        out.push(b'C');
    } else {
        if flags & f::NO_INHERIT != 0 {
            out.push(b'n');
        }
        if flags & f::WORD_SPLIT != 0 {
            out.push(b'w');
        }
        if flags & f::NO_PREFIXES != 0 {
            out.push(if flags & f::INCLUDE != 0 { b'+' } else { b'-' });
        }
    }
    if flags & f::EXCLUDE_SELF != 0 {
        out.push(b'e');
    }
    if flags & f::XATTR != 0 {
        out.push(b'x');
    }
    let proto = xfer.map(|x| x.protocol);
    if flags & f::SENDER_SIDE != 0 && proto.is_none_or(|p| p >= 29) {
        out.push(b's');
    }
    if flags & f::RECEIVER_SIDE != 0
        && (proto.is_none_or(|p| p >= 29)
            || matches!(xfer, Some(x) if x.delete_excluded && x.am_sender))
    {
        out.push(b'r');
    }
    if flags & f::PERISHABLE != 0 {
        if proto.is_none_or(|p| p >= 30) {
            out.push(b'p');
        } else if matches!(xfer, Some(x) if x.am_sender) {
            return None;
        }
    }
    if out.len() > legal_len {
        return None;
    }
    if legal_len != 0 {
        out.push(b' ');
    }
    Some(out)
}

/// Result of [`parse_rule_tok`]: the new rule's flags and its pattern span.
pub(crate) struct Tok {
    pub flags: u32,
    pub pat_start: usize,
    pub pat_len: usize,
}

/// How error messages may show a rule's text.
pub(crate) fn shown(text: &[u8], from_file: Option<&str>) -> String {
    match from_file {
        Some(w) => format!("<rule from {w}>"),
        None => String::from_utf8_lossy(text).into_owned(),
    }
}

/// stock `parse_rule_tok`: parse the next rule of `s` starting at `*pos`
/// (a C string: the caller has cut it at any NUL).  `template` gives the
/// inherited flags, `xfl` the [`xflags`].  Returns Ok(None) at the end.
pub(crate) fn parse_rule_tok(
    s: &[u8],
    pos: &mut usize,
    template: u32,
    xfl: u32,
    delete_excluded: bool,
    from_file: Option<&str>,
) -> Result<Option<Tok>, FilterError> {
    let mut i = *pos;
    if template & f::WORD_SPLIT != 0 {
        while is_space(at(s, i)) {
            i += 1;
        }
        *pos = i;
    }
    if at(s, i) == 0 {
        return Ok(None);
    }
    let start = i;
    let rule_text = || shown(&s[start..], from_file);
    let mut fl = template & f::FROM_CONTAINER;
    if from_file.is_some() {
        fl |= f::FROM_FILE;
    }
    if template & f::NO_PREFIXES != 0 {
        if at(s, i) == b'!' && template & f::CVS_IGNORE != 0 {
            fl |= f::CLEAR_LIST;
        }
    } else if xfl & xflags::OLD_PREFIXES != 0 {
        if at(s, i) == b'-' && at(s, i + 1) == b' ' {
            fl &= !f::INCLUDE;
            i += 2;
        } else if at(s, i) == b'+' && at(s, i + 1) == b' ' {
            fl |= f::INCLUDE;
            i += 2;
        } else if at(s, i) == b'!' {
            fl |= f::CLEAR_LIST;
        }
    } else {
        let keyword: Option<(&[u8], u8)> = match at(s, i) {
            b'c' => Some((b"clear", b'!')),
            b'd' => Some((b"dir-merge", b':')),
            b'e' => Some((b"exclude", b'-')),
            b'h' => Some((b"hide", b'H')),
            b'i' => Some((b"include", b'+')),
            b'm' => Some((b"merge", b'.')),
            b'p' => Some((b"protect", b'P')),
            b'r' => Some((b"risk", b'R')),
            b's' => Some((b"show", b'S')),
            _ => None,
        };
        let ch = match keyword {
            Some((word, ch)) => {
                if !s[i..].starts_with(word) {
                    return Err(FilterError::UnknownRule(rule_text()));
                }
                let n = at(s, i + word.len());
                if is_space(n) || n == b'_' || n == 0 {
                    i += word.len() - 1;
                } else if n == b',' {
                    i += word.len();
                } else {
                    return Err(FilterError::UnknownRule(rule_text()));
                }
                ch
            }
            None => {
                let ch = at(s, i);
                if at(s, i + 1) == b',' {
                    i += 1;
                }
                ch
            }
        };
        let mut side_from_prefix = false;
        match ch {
            b':' => fl |= f::PERDIR_MERGE | f::FINISH_SETUP | f::MERGE_FILE,
            b'.' => fl |= f::MERGE_FILE,
            b'+' => fl |= f::INCLUDE,
            b'-' => {}
            b'S' | b'H' => {
                if ch == b'S' {
                    fl |= f::INCLUDE;
                }
                fl |= f::SENDER_SIDE;
                side_from_prefix = true;
            }
            b'R' | b'P' => {
                if ch == b'R' {
                    fl |= f::INCLUDE;
                }
                fl |= f::RECEIVER_SIDE;
                side_from_prefix = true;
            }
            b'!' => fl |= f::CLEAR_LIST,
            _ => return Err(FilterError::UnknownRule(rule_text())),
        }
        if ch != b'!' {
            loop {
                i += 1;
                let c = at(s, i);
                if c == 0 || c == b' ' || c == b'_' {
                    break;
                }
                if template & f::WORD_SPLIT != 0 && is_space(c) {
                    i -= 1;
                    break;
                }
                let invalid = || FilterError::InvalidModifier {
                    detail: if from_file.is_some() {
                        String::new()
                    } else {
                        format!(" '{}' at position {}", c as char, i - start)
                    },
                    rule: rule_text(),
                };
                match c {
                    b'-' | b'+' => {
                        if fl & f::MERGE_FILE == 0 || fl & f::NO_PREFIXES != 0 {
                            return Err(invalid());
                        }
                        fl |= f::NO_PREFIXES;
                        if c == b'+' {
                            fl |= f::INCLUDE;
                        }
                    }
                    b'/' => fl |= f::ABS_PATH,
                    b'!' => {
                        if fl & f::MERGE_FILE != 0 {
                            return Err(invalid());
                        }
                        fl |= f::NEGATE;
                    }
                    b'C' => {
                        if fl & f::NO_PREFIXES != 0 || side_from_prefix {
                            return Err(invalid());
                        }
                        fl |= f::NO_PREFIXES | f::WORD_SPLIT | f::NO_INHERIT | f::CVS_IGNORE;
                    }
                    b'e' | b'n' | b'w' => {
                        if fl & f::MERGE_FILE == 0 {
                            return Err(invalid());
                        }
                        fl |= match c {
                            b'e' => f::EXCLUDE_SELF,
                            b'n' => f::NO_INHERIT,
                            _ => f::WORD_SPLIT,
                        };
                    }
                    b'p' => fl |= f::PERISHABLE,
                    b'r' | b's' => {
                        if side_from_prefix {
                            return Err(invalid());
                        }
                        fl |= if c == b'r' {
                            f::RECEIVER_SIDE
                        } else {
                            f::SENDER_SIDE
                        };
                    }
                    b'x' => fl |= f::XATTR,
                    _ => return Err(invalid()),
                }
            }
        }
        if at(s, i) != 0 {
            i += 1;
        }
    }
    if template & f::SIDES != 0 {
        if fl & f::SIDES != 0 {
            return Err(FilterError::SidedMergeRule(rule_text()));
        }
        fl |= template & f::SIDES;
    }
    let len = if template & f::WORD_SPLIT != 0 {
        let mut e = i;
        while at(s, e) != 0 && !is_space(at(s, e)) {
            e += 1;
        }
        e - i
    } else {
        s.len().saturating_sub(i)
    };
    if fl & f::CLEAR_LIST != 0 {
        if template & f::NO_PREFIXES == 0 && xfl & xflags::OLD_PREFIXES == 0 && len != 0 {
            return Err(FilterError::ClearTrailing(rule_text()));
        }
        if len > 1 {
            fl &= !f::CLEAR_LIST;
        }
    } else if len == 0 && fl & f::CVS_IGNORE == 0 {
        return Err(FilterError::UnexpectedEnd(rule_text()));
    }
    if delete_excluded && fl & (f::SIDES | f::MERGE_FILE | f::PERDIR_MERGE) == 0 {
        fl |= f::SENDER_SIDE;
    }
    *pos = i + len;
    Ok(Some(Tok {
        flags: fl,
        pat_start: i,
        pat_len: len,
    }))
}
