//! rsync's wildcard matcher (`lib/wildmatch.c` semantics) on byte strings.
//!
//! `*` matches any run of bytes except `/`, `**` (two or more stars) matches
//! across `/`, `?` matches one byte except `/`, `[...]` is a class with
//! ranges, `[!...]`/`[^...]` negation, `[:name:]` POSIX classes (C locale,
//! ASCII only) and `\` escapes; a class never matches `/`.  `\x` matches `x`.
//! The early-abort results of the reference matcher are reproduced, because
//! they change the outcome of some patterns (not just their speed).

/// Internal outcome of one matching attempt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum M {
    True,
    False,
    /// The text ran out: no later start position can match either.
    AbortAll,
    /// A single `*` hit a `/`: only an enclosing `**` may keep trying.
    AbortToStarStar,
}

/// Patterns come from C strings on the wire: stop at the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

fn class_matches(name: &[u8], c: u8) -> Option<bool> {
    let r = match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c < 0x20 || c == 0x7f,
        b"digit" => c.is_ascii_digit(),
        b"graph" => (0x21..=0x7e).contains(&c),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => (0x20..=0x7e).contains(&c),
        b"punct" => (0x21..=0x7e).contains(&c) && !c.is_ascii_alphanumeric(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    };
    Some(r)
}

/// Byte at `i` of the pattern, 0 past its end (the C terminator).
#[inline]
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

/// Match a bracket expression starting at `p[*pi] == b'['` against `tc`.
/// On return `*pi` indexes the closing `]`.
fn bracket(p: &[u8], pi: &mut usize, tc: u8) -> M {
    let mut i = *pi + 1;
    let mut pc = at(p, i);
    if pc == b'^' {
        pc = b'!';
    }
    let negated = pc == b'!';
    if negated {
        i += 1;
        pc = at(p, i);
    }
    let mut prev: u8 = 0;
    let mut matched = false;
    loop {
        if pc == 0 {
            return M::AbortAll;
        }
        if pc == b'\\' {
            i += 1;
            pc = at(p, i);
            if pc == 0 {
                return M::AbortAll;
            }
            if tc == pc {
                matched = true;
            }
        } else if pc == b'-' && prev != 0 && at(p, i + 1) != 0 && at(p, i + 1) != b']' {
            i += 1;
            pc = at(p, i);
            if pc == b'\\' {
                i += 1;
                pc = at(p, i);
                if pc == 0 {
                    return M::AbortAll;
                }
            }
            if tc <= pc && tc >= prev {
                matched = true;
            }
            pc = 0; // a range end never starts another range
        } else if pc == b'[' && at(p, i + 1) == b':' {
            let start = i + 2;
            let mut q = start;
            while at(p, q) != 0 && at(p, q) != b']' {
                q += 1;
            }
            if at(p, q) == 0 {
                return M::AbortAll;
            }
            if q == start || at(p, q - 1) != b':' {
                // Not a "[:name:]": the '[' is an ordinary member.
                pc = b'[';
                if tc == pc {
                    matched = true;
                }
            } else {
                match class_matches(&p[start..q - 1], tc) {
                    None => return M::AbortAll,
                    Some(true) => matched = true,
                    Some(false) => {}
                }
                i = q;
                pc = 0;
            }
        } else if tc == pc {
            matched = true;
        }
        prev = pc;
        i += 1;
        pc = at(p, i);
        if pc == b']' {
            break;
        }
    }
    *pi = i;
    if matched == negated || tc == b'/' {
        M::False
    } else {
        M::True
    }
}

fn dowild(p: &[u8], t: &[u8]) -> M {
    let mut pi = 0;
    let mut ti = 0;
    while pi < p.len() {
        let pc = p[pi];
        let tc = match t.get(ti) {
            Some(&c) => c,
            None if pc != b'*' => return M::AbortAll,
            None => 0,
        };
        match pc {
            b'\\' => {
                pi += 1;
                match p.get(pi) {
                    Some(&c) if c == tc => {}
                    _ => return M::False,
                }
            }
            b'?' => {
                if tc == b'/' {
                    return M::False;
                }
            }
            b'*' => {
                pi += 1;
                let special = at(p, pi) == b'*';
                while at(p, pi) == b'*' {
                    pi += 1;
                }
                let rest = &p[pi.min(p.len())..];
                if rest.is_empty() {
                    // A trailing "**" eats everything; a trailing '*' only
                    // what contains no '/'.
                    if !special && t[ti..].contains(&b'/') {
                        return M::False;
                    }
                    return M::True;
                }
                let mut j = ti;
                while j < t.len() {
                    let m = dowild(rest, &t[j..]);
                    if m != M::False {
                        if !special || m != M::AbortToStarStar {
                            return m;
                        }
                    } else if !special && t[j] == b'/' {
                        return M::AbortToStarStar;
                    }
                    j += 1;
                }
                return M::AbortAll;
            }
            b'[' => match bracket(p, &mut pi, tc) {
                M::True => {}
                other => return other,
            },
            _ => {
                if tc != pc {
                    return M::False;
                }
            }
        }
        pi += 1;
        ti += 1;
    }
    if ti < t.len() {
        M::False
    } else {
        M::True
    }
}

/// Does `pattern` match all of `text`?
pub fn wildmatch(pattern: &[u8], text: &[u8]) -> bool {
    dowild(cstr(pattern), text) == M::True
}

/// Start of the last `count` slash-separated elements of `text`, if it has
/// that many.
fn trailing_elements(text: &[u8], count: usize) -> Option<usize> {
    let mut count = count;
    for i in (0..text.len()).rev() {
        if text[i] == b'/' {
            count -= 1;
            if count == 0 {
                return Some(i + 1);
            }
        }
    }
    if count == 1 {
        Some(0)
    } else {
        None
    }
}

/// rsync's `wildmatch_array` on an already joined text: `where_ == 0` is a
/// plain match, `> 0` matches only the trailing `where_` path elements, and
/// `< 0` tries the pattern at the start and after every `/`.
pub fn wildmatch_at(pattern: &[u8], text: &[u8], where_: i32) -> bool {
    let p = cstr(pattern);
    let start = if where_ > 0 {
        match trailing_elements(text, where_ as usize) {
            Some(s) => s,
            None => return false,
        }
    } else {
        0
    };
    let t = &text[start..];
    let mut m = dowild(p, t);
    if m != M::True && where_ < 0 && m != M::AbortAll {
        let mut found = false;
        for (i, &c) in t.iter().enumerate() {
            if c == b'/' {
                m = dowild(p, &t[i + 1..]);
                if m != M::False && m != M::AbortToStarStar {
                    found = true;
                    break;
                }
            }
        }
        if !found {
            return false;
        }
    }
    m == M::True
}

/// rsync's `litmatch_array`: literal comparison, `where_ > 0` restricting the
/// text to its trailing `where_` path elements.
pub fn litmatch_at(literal: &[u8], text: &[u8], where_: i32) -> bool {
    let start = if where_ > 0 {
        match trailing_elements(text, where_ as usize) {
            Some(s) => s,
            None => return false,
        }
    } else {
        0
    };
    &text[start..] == cstr(literal)
}

/// Does the pattern contain a wildcard character (`*`, `[` or `?`)?  If not,
/// rsync compares it literally (a `\` is then an ordinary byte).
pub fn has_wildcards(pattern: &[u8]) -> bool {
    pattern.iter().any(|&c| matches!(c, b'*' | b'[' | b'?'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (expected, text, pattern), the cases of rsync's `wildtest.txt`.
    const CASES: &[(bool, &[u8], &[u8])] = &[
    (true, b"foo", b"foo"),
    (false, b"foo", b"bar"),
    (true, b"", b""),
    (true, b"foo", b"???"),
    (false, b"foo", b"??"),
    (true, b"foo", b"*"),
    (true, b"foo", b"f*"),
    (false, b"foo", b"*f"),
    (true, b"foo", b"*foo*"),
    (true, b"foobar", b"*ob*a*r*"),
    (true, b"aaaaaaabababab", b"*ab"),
    (true, b"foo*", b"foo\\*"),
    (false, b"foobar", b"foo\\*bar"),
    (true, b"f\\oo", b"f\\\\oo"),
    (true, b"ball", b"*[al]?"),
    (false, b"ten", b"[ten]"),
    (true, b"ten", b"**[!te]"),
    (false, b"ten", b"**[!ten]"),
    (true, b"ten", b"t[a-g]n"),
    (false, b"ten", b"t[!a-g]n"),
    (true, b"ton", b"t[!a-g]n"),
    (true, b"ton", b"t[^a-g]n"),
    (true, b"a]b", b"a[]]b"),
    (true, b"a-b", b"a[]-]b"),
    (true, b"a]b", b"a[]-]b"),
    (false, b"aab", b"a[]-]b"),
    (true, b"aab", b"a[]a-]b"),
    (true, b"]", b"]"),
    (false, b"foo/baz/bar", b"foo*bar"),
    (true, b"foo/baz/bar", b"foo**bar"),
    (false, b"foo/bar", b"foo?bar"),
    (false, b"foo/bar", b"foo[/]bar"),
    (false, b"foo/bar", b"f[^eiu][^eiu][^eiu][^eiu][^eiu]r"),
    (true, b"foo-bar", b"f[^eiu][^eiu][^eiu][^eiu][^eiu]r"),
    (false, b"foo", b"**/foo"),
    (true, b"/foo", b"**/foo"),
    (true, b"bar/baz/foo", b"**/foo"),
    (false, b"bar/baz/foo", b"*/foo"),
    (false, b"foo/bar/baz", b"**/bar*"),
    (true, b"deep/foo/bar/baz", b"**/bar/*"),
    (false, b"deep/foo/bar/baz/", b"**/bar/*"),
    (true, b"deep/foo/bar/baz/", b"**/bar/**"),
    (false, b"deep/foo/bar", b"**/bar/*"),
    (true, b"deep/foo/bar/", b"**/bar/**"),
    (true, b"foo/bar/baz", b"**/bar**"),
    (true, b"foo/bar/baz/x", b"*/bar/**"),
    (false, b"deep/foo/bar/baz/x", b"*/bar/**"),
    (true, b"deep/foo/bar/baz/x", b"**/bar/*/*"),
    (false, b"acrt", b"a[c-c]st"),
    (true, b"acrt", b"a[c-c]rt"),
    (false, b"]", b"[!]-]"),
    (true, b"a", b"[!]-]"),
    (false, b"", b"\\"),
    (false, b"\\", b"\\"),
    (false, b"/\\", b"*/\\"),
    (true, b"/\\", b"*/\\\\"),
    (true, b"foo", b"foo"),
    (true, b"@foo", b"@foo"),
    (false, b"foo", b"@foo"),
    (true, b"[ab]", b"\\[ab]"),
    (true, b"[ab]", b"[[]ab]"),
    (true, b"[ab]", b"[[:]ab]"),
    (false, b"[ab]", b"[[::]ab]"),
    (true, b"[ab]", b"[[:digit]ab]"),
    (true, b"[ab]", b"[\\[:]ab]"),
    (true, b"?a?b", b"\\??\\?b"),
    (true, b"abc", b"\\a\\b\\c"),
    (false, b"foo", b""),
    (true, b"foo/bar/baz/to", b"**/t[o]"),
    (true, b"a1B", b"[[:alpha:]][[:digit:]][[:upper:]]"),
    (false, b"a", b"[[:digit:][:upper:][:space:]]"),
    (true, b"A", b"[[:digit:][:upper:][:space:]]"),
    (true, b"1", b"[[:digit:][:upper:][:space:]]"),
    (false, b"1", b"[[:digit:][:upper:][:spaci:]]"),
    (true, b" ", b"[[:digit:][:upper:][:space:]]"),
    (false, b".", b"[[:digit:][:upper:][:space:]]"),
    (true, b".", b"[[:digit:][:punct:][:space:]]"),
    (true, b"5", b"[[:xdigit:]]"),
    (true, b"f", b"[[:xdigit:]]"),
    (true, b"D", b"[[:xdigit:]]"),
    (true, b"_", b"[[:alnum:][:alpha:][:blank:][:cntrl:][:digit:][:graph:][:lower:][:print:][:punct:][:space:][:upper:][:xdigit:]]"),
    (true, b"\x7f", b"[^[:alnum:][:alpha:][:blank:][:digit:][:graph:][:lower:][:print:][:punct:][:space:][:upper:][:xdigit:]]"),
    (true, b".", b"[^[:alnum:][:alpha:][:blank:][:cntrl:][:digit:][:lower:][:space:][:upper:][:xdigit:]]"),
    (true, b"5", b"[a-c[:digit:]x-z]"),
    (true, b"b", b"[a-c[:digit:]x-z]"),
    (true, b"y", b"[a-c[:digit:]x-z]"),
    (false, b"q", b"[a-c[:digit:]x-z]"),
    (true, b"]", b"[\\\\-^]"),
    (false, b"[", b"[\\\\-^]"),
    (true, b"-", b"[\\-_]"),
    (true, b"]", b"[\\]]"),
    (false, b"\\]", b"[\\]]"),
    (false, b"\\", b"[\\]]"),
    (false, b"ab", b"a[]b"),
    (false, b"a[]b", b"a[]b"),
    (false, b"ab[", b"ab["),
    (false, b"ab", b"[!"),
    (false, b"ab", b"[-"),
    (true, b"-", b"[-]"),
    (false, b"-", b"[a-"),
    (false, b"-", b"[!a-"),
    (true, b"-", b"[--A]"),
    (true, b"5", b"[--A]"),
    (true, b" ", b"[ --]"),
    (true, b"$", b"[ --]"),
    (true, b"-", b"[ --]"),
    (false, b"0", b"[ --]"),
    (true, b"-", b"[---]"),
    (true, b"-", b"[------]"),
    (false, b"j", b"[a-e-n]"),
    (true, b"-", b"[a-e-n]"),
    (true, b"a", b"[!------]"),
    (false, b"[", b"[]-a]"),
    (true, b"^", b"[]-a]"),
    (false, b"^", b"[!]-a]"),
    (true, b"[", b"[!]-a]"),
    (true, b"^", b"[a^bc]"),
    (true, b"-b]", b"[a-]b]"),
    (false, b"\\", b"[\\]"),
    (true, b"\\", b"[\\\\]"),
    (false, b"\\", b"[!\\\\]"),
    (true, b"G", b"[A-\\\\]"),
    (false, b"aaabbb", b"b*a"),
    (false, b"aabcaa", b"*ba*"),
    (true, b",", b"[,]"),
    (true, b",", b"[\\\\,]"),
    (true, b"\\", b"[\\\\,]"),
    (true, b"-", b"[,-.]"),
    (false, b"+", b"[,-.]"),
    (false, b"-.]", b"[,-.]"),
    (true, b"2", b"[\\1-\\3]"),
    (true, b"3", b"[\\1-\\3]"),
    (false, b"4", b"[\\1-\\3]"),
    (true, b"\\", b"[[-\\]]"),
    (true, b"[", b"[[-\\]]"),
    (true, b"]", b"[[-\\]]"),
    (false, b"-", b"[[-\\]]"),
    (true, b"-adobe-courier-bold-o-normal--12-120-75-75-m-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
    (false, b"-adobe-courier-bold-o-normal--12-120-75-75-X-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
    (false, b"-adobe-courier-bold-o-normal--12-120-75-75-/-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
    (true, b"/adobe/courier/bold/o/normal//12/120/75/75/m/70/iso8859/1", b"/*/*/*/*/*/*/12/*/*/*/m/*/*/*"),
    (false, b"/adobe/courier/bold/o/normal//12/120/75/75/X/70/iso8859/1", b"/*/*/*/*/*/*/12/*/*/*/m/*/*/*"),
    (true, b"abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txt", b"**/*a*b*g*n*t"),
    (false, b"abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txtz", b"**/*a*b*g*n*t"),
    ];

    #[test]
    fn wildtest_cases() {
        let mut bad = Vec::new();
        for (i, &(exp, text, pat)) in CASES.iter().enumerate() {
            if wildmatch(pat, text) != exp {
                bad.push((
                    i,
                    String::from_utf8_lossy(text).into_owned(),
                    String::from_utf8_lossy(pat).into_owned(),
                    exp,
                ));
            }
        }
        assert!(bad.is_empty(), "failures: {bad:?}");
        assert_eq!(CASES.len(), 144);
    }

    #[test]
    fn non_utf8_bytes() {
        assert!(wildmatch(b"caf\xe9*", b"caf\xe9.txt"));
        assert!(wildmatch(b"[\xe0-\xef]x", b"\xe9x"));
        assert!(!wildmatch(b"[[:alpha:]]", b"\xe9"));
    }

    #[test]
    fn array_modes() {
        // trailing elements
        assert!(wildmatch_at(b"b/c*", b"a/b/cd", 2));
        assert!(!wildmatch_at(b"b/c*", b"a/b/cd", 3));
        assert!(wildmatch_at(b"a/b/c", b"a/b/c", 3));
        assert!(!wildmatch_at(b"x/b/c", b"b/c", 3));
        // any slash boundary
        assert!(wildmatch_at(b"b/**", b"a/b/c/d", -1));
        assert!(!wildmatch_at(b"b/**", b"a/xb/c", -1));
        assert!(litmatch_at(b"b/c", b"a/b/c", 2));
        assert!(!litmatch_at(b"b/c", b"a/xb/c", 2));
    }
}
