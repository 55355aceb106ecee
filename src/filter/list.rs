//! The global rule list (`--filter`/`--exclude`/`--include`/`-F`/`-C`/
//! `--exclude-from` and rules received on the wire) and stock
//! `check_filter` matching over it (first matching rule wins).

use super::parse::{basename, Merges, Parser, Reader, Sink};
use super::rule::{flags as f, xflags as xf, Rule};
use super::stack::Slot;
use super::{Action, FilterError, NameKind, ParseOptions, Side};

/// A rule list, as rsync's `filter_list` (plus its `cvs_filter_list`).
#[derive(Clone, Debug)]
pub struct FilterList {
    pub(crate) rules: Vec<Rule>,
    pub(crate) cvs: Option<Vec<Rule>>,
    pub(crate) opts: ParseOptions,
    /// Transfer root relative to `/`, no leading slash ("" = the root).
    pub(crate) root_rel: Vec<u8>,
    /// Daemon lists apply every rule to both sides (stock never elides them).
    pub(crate) sideless: bool,
    pub(crate) warnings: Vec<String>,
}

/// Per-dir merge registry for a plain list: the base names of its `:` rules.
struct ListMerges {
    names: Vec<Option<Vec<u8>>>,
}

impl Merges for ListMerges {
    fn is_active(&self, base: &[u8]) -> bool {
        self.names.iter().flatten().any(|n| n.as_slice() == base)
    }
    fn register(&mut self, rule: &Rule) -> Result<usize, FilterError> {
        self.names.push(Some(basename(&rule.pattern).to_vec()));
        Ok(self.names.len() - 1)
    }
    fn release(&mut self, slot: usize) {
        if let Some(n) = self.names.get_mut(slot) {
            *n = None;
        }
    }
}

fn no_files(_: &[u8]) -> Option<Vec<u8>> {
    None
}

/// What a check needs besides the rules.
pub(crate) struct CheckCtx<'a> {
    pub name: &'a [u8],
    pub kind: NameKind,
    pub side: Side,
    pub ignore_perishable: bool,
    pub root_rel: &'a [u8],
    pub sideless: bool,
    pub cvs: Option<&'a [Rule]>,
    pub slots: &'a [Option<Slot>],
}

/// The rule that decided a check (for `--debug=filter`'s report).
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The matching rule.
    pub rule: &'a Rule,
    /// The per-directory merge file it came from (its name).
    pub per_dir: Option<&'a [u8]>,
}

impl Hit<'_> {
    /// Include (true) or exclude.
    pub fn include(&self) -> bool {
        self.rule.flags & f::INCLUDE != 0
    }

    /// upstream report_filter_result: `[WHO] hiding file NAME because of
    /// pattern PAT` (showing for an include; the generator says protecting
    /// / risking). A rule read from a file is not quoted.
    pub fn report(&self, who: &str, name: &[u8], is_dir: bool) -> String {
        let action = match (who.starts_with('g'), self.include()) {
            (false, true) => "show",
            (false, false) => "hid",
            (true, true) => "risk",
            (true, false) => "protect",
        };
        let (pattern, slash) = if self.rule.flags & f::FROM_FILE != 0 {
            ("<rule from a file read earlier>".to_string(), "")
        } else {
            let d = if self.rule.flags & f::DIRECTORY != 0 {
                "/"
            } else {
                ""
            };
            (String::from_utf8_lossy(&self.rule.pattern).into_owned(), d)
        };
        let kind = match self.per_dir {
            Some(n) => format!(" [per-dir {}]", String::from_utf8_lossy(n)),
            None => String::new(),
        };
        format!(
            "[{who}] {action}ing {} {} because of pattern {pattern}{slash}{kind}",
            if is_dir { "directory" } else { "file" },
            crate::protocol::text::name(name),
        )
    }
}

/// stock `check_filter`: the rule that matched first (its INCLUDE flag
/// says include or exclude), or none.
pub(crate) fn check_rules<'a>(rules: &'a [Rule], cx: &CheckCtx<'a>) -> Option<Hit<'a>> {
    for r in rules {
        if cx.ignore_perishable && r.flags & f::PERISHABLE != 0 {
            continue;
        }
        if r.flags & f::PERDIR_MERGE != 0 {
            if let Some(Some(slot)) = cx.slots.get(r.slot) {
                if let Some(hit) = slot.check(cx) {
                    return Some(hit);
                }
            }
            continue;
        }
        if r.flags & f::CVS_IGNORE != 0 {
            if let Some(cvs) = cx.cvs {
                if let Some(hit) = check_rules(cvs, cx) {
                    return Some(hit);
                }
            }
            continue;
        }
        if !cx.sideless && !r.applies_to(cx.side) {
            continue;
        }
        if r.matches(cx.name, cx.kind, cx.root_rel) {
            return Some(Hit {
                rule: r,
                per_dir: None,
            });
        }
    }
    None
}

impl FilterList {
    /// An empty list whose later parsing uses `opts`.
    pub fn new(opts: ParseOptions) -> FilterList {
        FilterList {
            rules: Vec::new(),
            cvs: None,
            opts,
            root_rel: Vec::new(),
            sideless: false,
            warnings: Vec::new(),
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// No rules at all?
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `-X`: when there are rules for attribute names (`x`; upstream
    /// saw_xattr_filter), the test they make of a name on `side` (true:
    /// excluded). They then replace the namespace choice.
    pub fn xattr_rule(&self, side: Side) -> Option<crate::fs::xattr::NameRule> {
        if !self.rules.iter().any(|r| r.flags & f::XATTR != 0) {
            return None;
        }
        let list = std::sync::Arc::new(self.clone());
        Some(std::sync::Arc::new(move |name: &[u8]| {
            list.check_ext(name, NameKind::Xattr, side, false) == Some(Action::Exclude)
        }))
    }
    /// The global CVS list, once a `-C` rule loaded it.
    pub fn cvs_rules(&self) -> Option<&[Rule]> {
        self.cvs.as_deref()
    }
    /// The parse options in force.
    pub fn options(&self) -> &ParseOptions {
        &self.opts
    }
    /// Change the parse options for later additions (e.g. the negotiated
    /// protocol, or `--delete-excluded` once seen).
    pub fn options_mut(&mut self) -> &mut ParseOptions {
        &mut self.opts
    }
    /// Any per-directory merge rule?  (stock `trust_sender_filter`: a
    /// receiver then cannot re-check the sender's file list.)
    pub fn has_perdir_merge(&self) -> bool {
        self.rules.iter().any(|r| r.flags & f::PERDIR_MERGE != 0)
    }
    /// Set the absolute path of the transfer root (stock `curr_dir`, made
    /// relative to the daemon module for daemons).  Absolute-path rules
    /// (`/` modifier, anchored per-directory rules) match against it + path.
    pub fn set_root_abs(&mut self, root: &[u8]) {
        let clean = super::parse::clean_path(root);
        self.root_rel = match clean.as_slice() {
            b"/" | b"." => Vec::new(),
            c => c.strip_prefix(b"/").unwrap_or(c).to_vec(),
        };
    }
    /// The transfer root as an absolute path ("/" by default).
    pub fn root_abs(&self) -> Vec<u8> {
        let mut v = vec![b'/'];
        v.extend_from_slice(&self.root_rel);
        v
    }
    /// Non-fatal diagnostics collected while parsing (over-long rules...).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Run `body` with a parser whose sink is this list.
    pub(crate) fn with_parser(
        &mut self,
        read: &mut Reader<'_>,
        dirbuf: Option<Vec<u8>>,
        am_sender: bool,
        body: impl FnOnce(&mut Parser<'_, '_>, &mut Sink) -> Result<(), FilterError>,
    ) -> Result<(), FilterError> {
        let mut names = Vec::new();
        for r in self.rules.iter_mut() {
            if r.flags & f::PERDIR_MERGE != 0 {
                r.slot = names.len();
                names.push(Some(basename(&r.pattern).to_vec()));
            }
        }
        let mut merges = ListMerges { names };
        let mut sink = Sink {
            rules: std::mem::take(&mut self.rules),
            cleared: false,
        };
        let opts = self.opts.clone();
        let mut parser = Parser {
            opts: &opts,
            read,
            merges: &mut merges,
            cvs: &mut self.cvs,
            warnings: &mut self.warnings,
            dirbuf,
            root_abs: None,
            parent_dirscan: false,
            am_sender,
            depth: 0,
            src: None,
        };
        let r = body(&mut parser, &mut sink);
        self.rules = sink.rules;
        r
    }

    /// Parse rule text with an explicit template and [`xflags`](super::rule::xflags).
    pub fn parse_with(
        &mut self,
        text: &[u8],
        template: u32,
        xflags: u32,
        read: &mut Reader<'_>,
    ) -> Result<(), FilterError> {
        self.with_parser(read, None, false, |p, s| {
            p.parse_str(s, text, template, xflags)
        })
    }

    /// `--filter=RULE` (`-f`): full rule syntax; `.` merges read via `read`.
    pub fn add_filter(&mut self, rule: &[u8], read: &mut Reader<'_>) -> Result<(), FilterError> {
        self.parse_with(rule, 0, 0, read)
    }

    /// `--exclude=PAT`: only the `- `/`+ ` prefixes (and a lone `!`) mean
    /// anything; the rest is the pattern.
    pub fn add_exclude(&mut self, pat: &[u8]) -> Result<(), FilterError> {
        self.parse_with(pat, 0, xf::OLD_PREFIXES, &mut no_files)
    }

    /// `--include=PAT`.
    pub fn add_include(&mut self, pat: &[u8]) -> Result<(), FilterError> {
        self.parse_with(pat, f::INCLUDE, xf::OLD_PREFIXES, &mut no_files)
    }

    /// `--exclude-from=FILE` / `--include-from=FILE`: line based, `;`/`#`
    /// comments, `- `/`+ ` prefixes; a missing file is an error.
    pub fn add_rules_file(
        &mut self,
        path: &[u8],
        include: bool,
        read: &mut Reader<'_>,
    ) -> Result<(), FilterError> {
        let t = if include { f::INCLUDE } else { 0 };
        self.with_parser(read, None, false, |p, s| {
            p.parse_file(s, path, t, xf::FATAL_ERRORS | xf::OLD_PREFIXES)
        })
    }

    /// As [`add_rules_file`](Self::add_rules_file) for already read contents.
    pub fn add_rules_content(&mut self, content: &[u8], include: bool) -> Result<(), FilterError> {
        let mut read = |_: &[u8]| Some(content.to_vec());
        self.add_rules_file(b"-", include, &mut read)
    }

    /// One `-F`: the first adds `dir-merge /.rsync-filter`, the second
    /// `- .rsync-filter`; later ones add nothing.
    pub fn add_dash_f(&mut self, occurrence: usize) -> Result<(), FilterError> {
        match occurrence {
            1 => self.parse_with(b": /.rsync-filter", 0, 0, &mut no_files),
            2 => self.parse_with(b"- .rsync-filter", 0, 0, &mut no_files),
            _ => Ok(()),
        }
    }

    /// A rule as received on the wire (protocol < 29: old prefixes only).
    pub fn add_wire_rule(
        &mut self,
        rule: &[u8],
        protocol: u32,
        read: &mut Reader<'_>,
    ) -> Result<(), FilterError> {
        let x = if protocol >= 29 { 0 } else { xf::OLD_PREFIXES };
        self.parse_with(rule, 0, x, read)
    }

    /// Check `path` (relative to the transfer root) for `side`.  Per-dir
    /// merge rules contribute nothing here; use a `FilterStack` for them.
    pub fn check(&self, path: &[u8], is_dir: bool, side: Side) -> Option<Action> {
        let kind = if is_dir {
            NameKind::Dir
        } else {
            NameKind::File
        };
        self.check_ext(path, kind, side, false)
    }

    /// [`check`](Self::check), with the rule that decided (`--debug=filter`).
    pub fn hit<'a>(&'a self, path: &'a [u8], is_dir: bool, side: Side) -> Option<Hit<'a>> {
        let kind = if is_dir {
            NameKind::Dir
        } else {
            NameKind::File
        };
        self.hit_in(path, kind, side, false, &[])
    }

    /// [`check`](Self::check) for any [`NameKind`], optionally skipping
    /// perishable rules (as stock does while deleting a directory's contents).
    pub fn check_ext(
        &self,
        path: &[u8],
        kind: NameKind,
        side: Side,
        ignore_perishable: bool,
    ) -> Option<Action> {
        self.check_in(path, kind, side, ignore_perishable, &[])
    }

    pub(crate) fn check_in(
        &self,
        path: &[u8],
        kind: NameKind,
        side: Side,
        ignore_perishable: bool,
        slots: &[Option<Slot>],
    ) -> Option<Action> {
        self.hit_in(path, kind, side, ignore_perishable, slots)
            .map(|h| {
                if h.include() {
                    Action::Include
                } else {
                    Action::Exclude
                }
            })
    }

    /// [`check_in`](Self::check_in), with the rule that decided.
    pub(crate) fn hit_in<'a>(
        &'a self,
        path: &'a [u8],
        kind: NameKind,
        side: Side,
        ignore_perishable: bool,
        slots: &'a [Option<Slot>],
    ) -> Option<Hit<'a>> {
        let cx = CheckCtx {
            name: path,
            kind,
            side,
            ignore_perishable,
            root_rel: &self.root_rel,
            sideless: self.sideless,
            cvs: self.cvs.as_deref(),
            slots,
        };
        check_rules(&self.rules, &cx)
    }

    /// Is `path` excluded for `side`?
    pub fn is_excluded(&self, path: &[u8], is_dir: bool, side: Side) -> bool {
        self.check(path, is_dir, side) == Some(Action::Exclude)
    }
}
