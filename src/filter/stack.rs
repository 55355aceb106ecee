//! Per-directory merge files (`dir-merge`, `-F`'s `.rsync-filter`, `:C`):
//! the stack a directory walk pushes and pops (stock `push_local_filters`,
//! `pop_local_filters`, `setup_merge_file`), filesystem-agnostic: rule files
//! are read through a caller-supplied reader.

use super::list::{check_rules, CheckCtx, FilterList, Hit};
use super::parse::{basename, clean_path, Merges, Parser, Reader, Sink};
use super::rule::{flags as f, xflags as xf, Rule, MAXPATHLEN};
use super::{Action, FilterError, NameKind, Side};
use std::collections::HashMap;

/// Most per-directory merge files active at once (stock has no limit; this
/// bounds memory and the matcher's recursion on hostile trees).
pub const MAX_ACTIVE_MERGE_FILES: usize = 1024;

/// One directory's worth of rules from one merge file.
#[derive(Clone, Debug)]
pub(crate) struct Level {
    depth: usize,
    rules: Vec<Rule>,
    /// Continue with the parent directory's rules after these.
    inherit: bool,
    /// Merge slots created by `:` rules among `rules`.
    owned: Vec<usize>,
}

/// An active per-directory merge file (stock: a mergelist).
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// The `:` rule's flags: the template for the file's rules.
    flags: u32,
    /// File name to look for in each directory.
    name: Vec<u8>,
    finish_setup: bool,
    levels: Vec<Level>,
}

impl Slot {
    pub(crate) fn check<'a>(&'a self, cx: &CheckCtx<'a>) -> Option<Hit<'a>> {
        for lvl in self.levels.iter().rev() {
            if let Some(mut hit) = check_rules(&lvl.rules, cx) {
                hit.per_dir.get_or_insert(basename(&self.name));
                return Some(hit);
            }
            if !lvl.inherit {
                break;
            }
        }
        None
    }
}

/// The slots plus an index of their base names (stock scans the list; a
/// map keeps hostile trees from making this quadratic).
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotTable {
    slots: Vec<Option<Slot>>,
    names: HashMap<Vec<u8>, usize>,
}

impl SlotTable {
    fn add(&mut self, slot: Slot) -> usize {
        *self.names.entry(basename(&slot.name).to_vec()).or_insert(0) += 1;
        self.slots.push(Some(slot));
        self.slots.len() - 1
    }

    fn active(&self) -> usize {
        self.names.values().sum()
    }

    fn rename(&mut self, i: usize, name: Vec<u8>) {
        if let Some(Some(slot)) = self.slots.get_mut(i) {
            let old = basename(&slot.name).to_vec();
            if let Some(c) = self.names.get_mut(&old) {
                *c -= 1;
                if *c == 0 {
                    self.names.remove(&old);
                }
            }
            *self.names.entry(basename(&name).to_vec()).or_insert(0) += 1;
            slot.name = name;
        }
    }

    fn release(&mut self, slot: usize) {
        let mut work = vec![slot];
        while let Some(s) = work.pop() {
            if let Some(Some(gone)) = self.slots.get_mut(s).map(Option::take) {
                let base = basename(&gone.name);
                if let Some(c) = self.names.get_mut(base) {
                    *c -= 1;
                    if *c == 0 {
                        self.names.remove(base);
                    }
                }
                for l in gone.levels {
                    work.extend(l.owned);
                }
            }
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
    }
}

struct StackMerges<'a> {
    table: &'a mut SlotTable,
    created: Vec<usize>,
}

impl Merges for StackMerges<'_> {
    fn is_active(&self, base: &[u8]) -> bool {
        self.table.names.contains_key(base)
    }
    fn register(&mut self, rule: &Rule) -> Result<usize, FilterError> {
        if self.table.active() >= MAX_ACTIVE_MERGE_FILES {
            return Err(FilterError::TooManyMergeFiles(MAX_ACTIVE_MERGE_FILES));
        }
        let id = self.table.add(Slot {
            flags: rule.flags,
            name: rule.pattern.clone(),
            finish_setup: rule.flags & f::FINISH_SETUP != 0,
            levels: Vec::new(),
        });
        self.created.push(id);
        Ok(id)
    }
    fn release(&mut self, slot: usize) {
        self.created.retain(|&c| c != slot);
        self.table.release(slot);
    }
}

/// Returned by [`FilterStack::enter_dir`]; give it back to `leave_dir`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub struct DirToken {
    depth: usize,
}

/// A [`FilterList`] plus the per-directory merge rules of the directories
/// currently entered.
#[derive(Clone, Debug)]
pub struct FilterStack {
    list: FilterList,
    side: Side,
    table: SlotTable,
    depth: usize,
}

impl FilterStack {
    /// Wrap `list` for a walk done by `side` (rules from merge files that
    /// only concern the other side are dropped, as stock does).
    pub fn new(mut list: FilterList, side: Side) -> FilterStack {
        let mut table = SlotTable::default();
        for r in list.rules.iter_mut() {
            if r.flags & f::PERDIR_MERGE != 0 {
                r.slot = table.add(Slot {
                    flags: r.flags,
                    name: r.pattern.clone(),
                    finish_setup: r.flags & f::FINISH_SETUP != 0,
                    levels: Vec::new(),
                });
            }
        }
        FilterStack {
            list,
            side,
            table,
            depth: 0,
        }
    }

    /// The global list.
    pub fn list(&self) -> &FilterList {
        &self.list
    }
    /// The global list, mutably (e.g. to collect warnings).
    pub fn list_mut(&mut self) -> &mut FilterList {
        &mut self.list
    }
    /// Give the global list back.
    pub fn into_list(self) -> FilterList {
        self.list
    }
    /// Does the list hold per-directory merge rules (files to read as
    /// directories are entered)?
    pub fn has_dir_merge(&self) -> bool {
        self.table.slots.iter().any(|s| s.is_some())
    }
    /// How many directories are entered.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn dirbuf(&self, dir_rel: &[u8]) -> Vec<u8> {
        let mut p = self.list.root_abs();
        p.push(b'/');
        p.extend_from_slice(dir_rel);
        let mut c = clean_path(&p);
        if c.as_slice() != b"/" {
            c.push(b'/');
        }
        c
    }

    /// Parse one merge file of slot `i` into a fresh sink.
    fn parse_into(
        &mut self,
        dirbuf: Vec<u8>,
        parent_dirscan: bool,
        path: &[u8],
        template: u32,
        read: &mut Reader<'_>,
    ) -> Result<(Sink, Vec<usize>), FilterError> {
        let root_abs = self.list.root_abs();
        let FilterList {
            cvs,
            opts,
            warnings,
            ..
        } = &mut self.list;
        let mut merges = StackMerges {
            table: &mut self.table,
            created: Vec::new(),
        };
        let mut sink = Sink::default();
        let mut parser = Parser {
            opts,
            read,
            merges: &mut merges,
            cvs,
            warnings,
            dirbuf: Some(dirbuf),
            root_abs: Some(root_abs),
            parent_dirscan,
            am_sender: self.side == Side::Sender,
            depth: 0,
            src: None,
        };
        let r = parser.parse_file(&mut sink, path, template, xf::ANCHORED2ABS);
        let created = merges.created;
        match r {
            Ok(()) => Ok((sink, created)),
            Err(e) => {
                for c in created {
                    self.table.release(c);
                }
                Err(e)
            }
        }
    }

    /// stock `setup_merge_file`: a name with a path part is reduced to its
    /// base name, and when that path is an ancestor of the directory the
    /// file is also read in each directory from there down to (not
    /// including) this one, as inherited rules.
    fn setup_merge_file(
        &mut self,
        i: usize,
        dirbuf: &[u8],
        read: &mut Reader<'_>,
    ) -> Result<(), FilterError> {
        let Some(Some(slot)) = self.table.slots.get(i) else {
            return Ok(());
        };
        let mut name: &[u8] = &slot.name.clone();
        let flags = slot.flags;
        if name.first() != Some(&b'/') && !name.contains(&b'/') {
            return Ok(());
        }
        let owned_name = name.to_vec();
        name = &owned_name;
        if self.list.opts.sanitize_paths {
            while name.first() == Some(&b'/') {
                name = &name[1..];
            }
        }
        let x = if name.first() == Some(&b'/') {
            clean_path(name)
        } else {
            let mut full = dirbuf.to_vec();
            full.extend_from_slice(name);
            clean_path(&full)
        };
        let Some(pos) = x.iter().rposition(|&c| c == b'/') else {
            return Ok(());
        };
        let base = x[pos + 1..].to_vec();
        self.table.rename(i, base.clone());
        let mut dir = clean_path(if pos == 0 { b"/" } else { &x[..pos] });
        if dir.as_slice() != b"/" {
            dir.push(b'/');
        }
        if !dirbuf.starts_with(&dir) {
            return Ok(());
        }
        let rest = dirbuf[dir.len()..].to_vec();
        let mut cur = dir;
        for comp in rest.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
            let mut path = cur.clone();
            path.extend_from_slice(&base);
            let (sink, owned) = self.parse_into(cur.clone(), true, &path, flags, read)?;
            if flags & f::NO_INHERIT != 0 {
                for o in owned {
                    self.table.release(o);
                }
            } else if let Some(Some(slot)) = self.table.slots.get_mut(i) {
                let at = slot.levels.len().saturating_sub(1);
                slot.levels.insert(
                    at,
                    Level {
                        depth: self.depth,
                        rules: sink.rules,
                        inherit: !sink.cleared,
                        owned,
                    },
                );
            }
            cur.extend_from_slice(comp);
            cur.push(b'/');
        }
        Ok(())
    }

    /// Enter directory `dir_rel` (relative to the transfer root, "" or "."
    /// for the root itself): read every active per-directory merge file in
    /// it through `read`.  `read` gets a path relative to the transfer root,
    /// or an absolute one (starting with `/`, in the namespace of
    /// [`FilterList::set_root_abs`]) for files outside it (parent-directory
    /// scans, absolute merge names); it returns None when the file does not
    /// exist or may not be read.  After an error the stack is back where it
    /// was before the call.
    pub fn enter_dir(
        &mut self,
        dir_rel: &[u8],
        read: &mut Reader<'_>,
    ) -> Result<DirToken, FilterError> {
        self.depth += 1;
        let token = DirToken { depth: self.depth };
        match self.push_levels(dir_rel, read) {
            Ok(()) => Ok(token),
            Err(e) => {
                self.leave_dir(token);
                Err(e)
            }
        }
    }

    fn push_levels(&mut self, dir_rel: &[u8], read: &mut Reader<'_>) -> Result<(), FilterError> {
        let d = self.depth;
        let dirbuf = self.dirbuf(dir_rel);
        let mut i = 0;
        while i < self.table.slots.len() {
            let (setup, flags) = match self.table.slots.get_mut(i) {
                Some(Some(slot)) => {
                    slot.levels.push(Level {
                        depth: d,
                        rules: Vec::new(),
                        inherit: slot.flags & f::NO_INHERIT == 0,
                        owned: Vec::new(),
                    });
                    (std::mem::replace(&mut slot.finish_setup, false), slot.flags)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            if setup {
                self.setup_merge_file(i, &dirbuf, read)?;
            }
            let Some(Some(slot)) = self.table.slots.get(i) else {
                i += 1;
                continue;
            };
            let mut path = dirbuf.clone();
            path.extend_from_slice(&slot.name);
            if path.len() >= MAXPATHLEN {
                self.list.warnings.push(format!(
                    "cannot add local filter rules in long-named directory: {}",
                    String::from_utf8_lossy(&dirbuf)
                ));
                i += 1;
                continue;
            }
            let (sink, owned) = self.parse_into(dirbuf.clone(), false, &path, flags, read)?;
            if let Some(Some(slot)) = self.table.slots.get_mut(i) {
                if let Some(top) = slot.levels.last_mut() {
                    top.rules = sink.rules;
                    if sink.cleared {
                        top.inherit = false;
                    }
                    top.owned = owned;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Leave the directory `token` was returned for (and any entered after it).
    pub fn leave_dir(&mut self, token: DirToken) {
        let mut owned = Vec::new();
        for slot in self.table.slots.iter_mut().rev().flatten() {
            while slot.levels.last().is_some_and(|l| l.depth >= token.depth) {
                if let Some(l) = slot.levels.pop() {
                    owned.extend(l.owned);
                }
            }
        }
        for o in owned {
            self.table.release(o);
        }
        self.depth = token.depth.saturating_sub(1);
    }

    /// Check `path` (relative to the transfer root) against the global
    /// rules and the active per-directory rules, in rsync's order.
    pub fn check(&self, path: &[u8], is_dir: bool, side: Side) -> Option<Action> {
        let kind = if is_dir {
            NameKind::Dir
        } else {
            NameKind::File
        };
        self.list
            .check_in(path, kind, side, false, &self.table.slots)
    }

    /// [`check`](Self::check) with a [`NameKind`] and perishable handling.
    pub fn check_ext(
        &self,
        path: &[u8],
        kind: NameKind,
        side: Side,
        ignore_perishable: bool,
    ) -> Option<Action> {
        self.list
            .check_in(path, kind, side, ignore_perishable, &self.table.slots)
    }

    /// Is `path` excluded for `side`?
    pub fn is_excluded(&self, path: &[u8], is_dir: bool, side: Side) -> bool {
        self.check(path, is_dir, side) == Some(Action::Exclude)
    }

    /// [`check`](Self::check), with the rule that decided (`--debug=filter`).
    pub fn hit<'a>(&'a self, path: &'a [u8], is_dir: bool, side: Side) -> Option<Hit<'a>> {
        let kind = if is_dir {
            NameKind::Dir
        } else {
            NameKind::File
        };
        self.list.hit_in(path, kind, side, false, &self.table.slots)
    }
}
