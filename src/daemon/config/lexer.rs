//! Line-level tokenizer for the rsyncd.conf dialect (upstream: params.c).
//!
//! Turns the text of one config file into a stream of [`Item`]s -- section
//! headers, `name = value` parameters and `&directive value` lines -- each
//! tagged with the line it starts on.  It knows nothing about which
//! parameters exist; that is `table.rs`, and includes/sections are `loader.rs`.
//!
//! Dialect, as stock rsync reads it:
//! * A line whose first non-blank character is `#` or `;` is a comment; a
//!   `#` anywhere else is part of the value.
//! * A line ending (ignoring trailing blanks) in `\` continues on the next
//!   line, in section headers, parameter names and values alike.  In a value
//!   the backslash is removed and the next line is appended verbatim,
//!   including its leading blanks.
//! * `[name]` is a section header.  Blank runs in the name collapse to one
//!   space, leading/trailing blanks are dropped, and anything after the `]`
//!   on that line is ignored.
//! * Otherwise the line is `name = value`: only the first `=` counts, blank
//!   runs in the name collapse to one space, the value is trimmed at both
//!   ends and `\r` characters are dropped from it.
//! * A line starting with `&` is a directive: its name ends at the first
//!   blank (or `=`), and an optional `=` may follow before the value.
//! * A stray `\` at the start of a line is skipped.
//! * A NUL character ends the file (stock reads it as end-of-file).
//!
//! Where stock merely logs and skips a malformed parameter line (no `=`, or
//! end of file inside a name) we report an error instead, so that a daemon
//! refuses to start with a config it would half-ignore.

use super::SyntaxError;

/// One syntactic element of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// `[name]`, with blanks normalised.
    Section { line: usize, name: String },
    /// `name = value`; `name` has blank runs collapsed to one space.
    Param {
        line: usize,
        name: String,
        value: String,
    },
    /// `&name value`; `name` includes the leading `&`.
    Directive {
        line: usize,
        name: String,
        value: String,
    },
}

/// C's `isspace()` in the "C" locale.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Blanks other than newline.
fn is_blank(c: char) -> bool {
    c != '\n' && is_c_space(c)
}

/// Collapse every run of blanks into one space and trim both ends.
fn collapse_blanks(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split(is_c_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// If `buf` ends (ignoring blanks) in a backslash, remove the backslash and
/// the blanks after it and return true: the line is continued.
fn strip_continuation(buf: &mut String) -> bool {
    let trimmed_len = buf.trim_end_matches(is_c_space).len();
    if buf[..trimmed_len].ends_with('\\') {
        buf.truncate(trimmed_len - 1);
        true
    } else {
        false
    }
}

/// Streaming tokenizer over one file's text.
pub(crate) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    /// Line number (1-based) of the next character to be read.
    line: usize,
    failed: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        // A NUL ends the input, as in stock.
        let text = match text.find('\0') {
            Some(pos) => &text[..pos],
            None => text,
        };
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            failed: false,
        }
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if is_blank(c) {
                self.chars.next();
            } else {
                break;
            }
        }
    }

    fn skip_rest_of_line(&mut self) {
        while let Some(c) = self.next_char() {
            if c == '\n' {
                break;
            }
        }
    }

    /// After the `[`: read up to `]`.
    fn section(&mut self, line: usize) -> Result<Item, SyntaxError> {
        let mut raw = String::new();
        loop {
            match self.next_char() {
                None => return Err(SyntaxError::UnterminatedSection(collapse_blanks(&raw))),
                Some(']') => break,
                Some('\n') => {
                    if !strip_continuation(&mut raw) {
                        return Err(SyntaxError::UnterminatedSection(collapse_blanks(&raw)));
                    }
                    // A continued line restarts after a blank boundary only
                    // if the text itself has one; collapse_blanks handles it.
                }
                Some(c) => raw.push(c),
            }
        }
        let name = collapse_blanks(&raw);
        if name.is_empty() {
            return Err(SyntaxError::EmptySectionName);
        }
        self.skip_rest_of_line();
        Ok(Item::Section { line, name })
    }

    /// Read a parameter or directive name; `first` is its first character.
    fn name(&mut self, first: char) -> Result<String, SyntaxError> {
        let directive = first == '&';
        let mut raw = String::new();
        let mut next = Some(first);
        loop {
            let Some(c) = next else {
                return Err(SyntaxError::MissingEquals(collapse_blanks(&raw)));
            };
            match c {
                '=' => {
                    let name = collapse_blanks(&raw);
                    if name.is_empty() {
                        return Err(SyntaxError::EmptyParameterName);
                    }
                    self.skip_blanks();
                    return Ok(name);
                }
                '\n' => {
                    if !strip_continuation(&mut raw) {
                        return Err(SyntaxError::MissingEquals(collapse_blanks(&raw)));
                    }
                }
                ' ' | '\t' if directive => {
                    // A directive's name ends at the first blank; an
                    // optional '=' may follow.
                    self.skip_blanks();
                    if self.chars.peek() == Some(&'=') {
                        self.chars.next();
                        self.skip_blanks();
                    }
                    return Ok(raw);
                }
                c => raw.push(c),
            }
            next = self.next_char();
        }
    }

    /// Read a value up to the end of its (possibly continued) line.
    fn value(&mut self) -> String {
        let mut buf = String::new();
        while let Some(c) = self.next_char() {
            match c {
                '\r' => {}
                '\n' => {
                    if !strip_continuation(&mut buf) {
                        break;
                    }
                }
                c => buf.push(c),
            }
        }
        let trimmed = buf.trim_end_matches(is_c_space).len();
        buf.truncate(trimmed);
        buf
    }

    fn item(&mut self) -> Option<Result<Item, (usize, SyntaxError)>> {
        loop {
            self.skip_blanks();
            let line = self.line;
            let c = self.next_char()?;
            let r = match c {
                '\n' | '\\' => continue,
                '#' | ';' => {
                    self.skip_rest_of_line();
                    continue;
                }
                '[' => self.section(line),
                first => self.name(first).map(|name| {
                    let value = self.value();
                    if first == '&' {
                        Item::Directive { line, name, value }
                    } else {
                        Item::Param { line, name, value }
                    }
                }),
            };
            // Errors are reported at the line the construct began on.
            return Some(r.map_err(|e| (line, e)));
        }
    }
}

impl Iterator for Lexer<'_> {
    /// An item, or an error together with the line it was found on.
    type Item = Result<Item, (usize, SyntaxError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.item()?;
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> Vec<Item> {
        Lexer::new(text).map(|r| r.unwrap()).collect()
    }

    fn p(line: usize, name: &str, value: &str) -> Item {
        Item::Param {
            line,
            name: name.into(),
            value: value.into(),
        }
    }

    fn s(line: usize, name: &str) -> Item {
        Item::Section {
            line,
            name: name.into(),
        }
    }

    #[test]
    fn basic_params_and_sections() {
        let items = lex("a = 1\n[mod]\n  path = /x y \n");
        assert_eq!(
            items,
            vec![p(1, "a", "1"), s(2, "mod"), p(3, "path", "/x y")]
        );
    }

    #[test]
    fn comments_only_at_line_start() {
        let items = lex("# c1\n   ; c2\nx = a # not comment ; no\n\t#c3\n");
        assert_eq!(items, vec![p(3, "x", "a # not comment ; no")]);
    }

    #[test]
    fn only_first_equals_counts() {
        assert_eq!(lex("x = a=b = c\n"), vec![p(1, "x", "a=b = c")]);
    }

    #[test]
    fn name_blanks_collapse() {
        assert_eq!(
            lex("  read \t  only   =yes"),
            vec![p(1, "read only", "yes")]
        );
    }

    #[test]
    fn value_continuation_keeps_next_line_verbatim() {
        assert_eq!(
            lex("x = a \\\n   b\\\nc\ny = 2\n"),
            vec![p(1, "x", "a    bc"), p(4, "y", "2")]
        );
    }

    #[test]
    fn continuation_with_trailing_blanks_after_backslash() {
        assert_eq!(lex("x = a\\  \t\nb\n"), vec![p(1, "x", "ab")]);
    }

    #[test]
    fn name_continuation() {
        assert_eq!(lex("read \\\n only = no\n"), vec![p(1, "read only", "no")]);
        assert_eq!(lex("read\\\nonly = no\n"), vec![p(1, "readonly", "no")]);
    }

    #[test]
    fn section_name_normalised_and_rest_ignored() {
        assert_eq!(
            lex("[  my   mod ] trailing junk = 3\nx=1"),
            vec![s(1, "my mod"), p(2, "x", "1")]
        );
    }

    #[test]
    fn section_continuation() {
        assert_eq!(lex("[foo \\\n bar]\n"), vec![s(1, "foo bar")]);
        assert_eq!(lex("[foo\\\nbar]\n"), vec![s(1, "foobar")]);
    }

    #[test]
    fn carriage_returns_dropped_from_values() {
        assert_eq!(
            lex("x = a\r\n[m]\r\ny = b\rc\r\n"),
            vec![p(1, "x", "a"), s(2, "m"), p(3, "y", "bc")]
        );
    }

    #[test]
    fn empty_value() {
        assert_eq!(lex("x =\ny=   \n"), vec![p(1, "x", ""), p(2, "y", "")]);
    }

    #[test]
    fn value_at_eof_without_newline() {
        assert_eq!(lex("x = v"), vec![p(1, "x", "v")]);
    }

    #[test]
    fn directives() {
        assert_eq!(
            lex("&include /a b\n&merge = /c\n&Include=/d\n"),
            vec![
                Item::Directive {
                    line: 1,
                    name: "&include".into(),
                    value: "/a b".into()
                },
                Item::Directive {
                    line: 2,
                    name: "&merge".into(),
                    value: "/c".into()
                },
                Item::Directive {
                    line: 3,
                    name: "&Include".into(),
                    value: "/d".into()
                },
            ]
        );
    }

    #[test]
    fn stray_leading_backslash_skipped() {
        assert_eq!(lex("\\ x = 1\n"), vec![p(1, "x", "1")]);
    }

    #[test]
    fn nul_ends_input() {
        assert_eq!(lex("x = 1\n\0y = 2\n"), vec![p(1, "x", "1")]);
    }

    #[test]
    fn errors_carry_line() {
        let r: Vec<_> = Lexer::new("x = 1\n\nbogus line\ny = 2").collect();
        assert_eq!(r.len(), 2);
        assert!(matches!(r[1], Err((3, SyntaxError::MissingEquals(ref n))) if n == "bogus line"));

        let r: Vec<_> = Lexer::new("\n[oops\n").collect();
        assert!(matches!(
            r[0],
            Err((2, SyntaxError::UnterminatedSection(_)))
        ));
        let r: Vec<_> = Lexer::new("[ ]").collect();
        assert!(matches!(r[0], Err((1, SyntaxError::EmptySectionName))));
        let r: Vec<_> = Lexer::new("  = v").collect();
        assert!(matches!(r[0], Err((1, SyntaxError::EmptyParameterName))));
        let r: Vec<_> = Lexer::new("name").collect();
        assert!(matches!(r[0], Err((1, SyntaxError::MissingEquals(_)))));
    }

    #[test]
    fn line_numbers_count_continuations() {
        let items = lex("a = 1 \\\n 2\n\n# c\nb = 3\n");
        assert_eq!(items, vec![p(1, "a", "1  2"), p(5, "b", "3")]);
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            for _ in Lexer::new(&text) {}
        }

        #[test]
        fn simple_param_roundtrip(
            name in "[a-z][a-z ]{0,10}[a-z]",
            value in "[!-~]([ -~]{0,20}[!-~])?",
        ) {
            // Values whose last char is a backslash would continue the line.
            proptest::prop_assume!(!value.ends_with('\\'));
            let text = format!("{name} = {value}\n");
            let items = lex(&text);
            proptest::prop_assert_eq!(items, vec![p(1, &collapse_blanks(&name), &value)]);
        }
    }
}
