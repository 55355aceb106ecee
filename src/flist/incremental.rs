//! Incremental recursion on the sending side (upstream: flist.c
//! send_file_list with inc_recurse, send_extra_file_list, send1extra,
//! add_dirs_to_tree): the first list holds the top-level entries (and the
//! contents of a `dir/` argument); every directory's contents then follow as
//! a list of their own, depth first in sorted order, while files are already
//! being transferred.

use super::build::{finish_list, BuildOpts, Excluder, FileList, ListState, RelName, Walker};
use crate::protocol::flist::mode;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An argument the first list came from: its directory relative to the
/// root (for messages and module filters) and where that is on disk.
#[derive(Debug)]
struct ArgDir {
    dir: Vec<u8>,
    base: Arc<Path>,
    /// A `dir/` argument: its "." is the top of the filter stack.
    dot: bool,
}

/// A directory of a sent list; its index in `dirs` is the `dir_ndx` of
/// `NDX_FLIST_OFFSET - dir_ndx`.
#[derive(Debug)]
struct DirNode {
    name: Vec<u8>,
    entry: crate::protocol::flist::FileEntry,
    /// What its list is made from: itself, then the duplicates of its name
    /// that follow it (overlapping arguments, `a/ b/` with a subdirectory
    /// in both, or one implied by `-R` and named too: upstream's
    /// FLAG_DUPLICATE dirs). Empty for a duplicate, and once listed.
    sources: Vec<DirSource>,
    parent: i32,
    first_child: i32,
    next_sibling: i32,
}

/// One directory on disk that a list is made from.
#[derive(Debug)]
struct DirSource {
    local: PathBuf,
    base: Arc<Path>,
    dev: u64,
    top_dev: u64,
    escapes: bool,
    /// Its contents are listed (not an implied directory of `-R`).
    content: bool,
    /// `-R`: names to send below it (upstream F_DIR_RELNAMES).
    relnames: Vec<RelName>,
}

impl DirSource {
    /// Something to list: contents or kept names.
    fn lists(&self) -> bool {
        self.content || !self.relnames.is_empty()
    }
}

/// The walker's names kept below implied directories, by the sorted
/// position of their directory (arrival index mapped through the sort).
/// Sorted by that position (stable: a directory's names keep their order).
fn rel_by_position(list: &FileList, rel: Vec<(usize, RelName)>) -> Vec<(usize, RelName)> {
    let mut v: Vec<(usize, RelName)> = rel
        .into_iter()
        .filter_map(|(arrival, r)| list.send_order.get(arrival).map(|&p| (p, r)))
        .collect();
    v.sort_by_key(|(p, _)| *p);
    v
}

/// Produces the file lists of one transfer one directory at a time.
pub struct IncrementalLister<'a> {
    opts: &'a BuildOpts,
    walker: Walker<'a>,
    state: ListState,
    dirs: Vec<DirNode>,
    next_dir: i32,
    next_ndx_start: i32,
    args: Vec<ArgDir>,
    /// The per-directory filter stack currently entered, outermost first:
    /// each directory's name and the argument it belongs to.
    entered: Vec<(Vec<u8>, usize)>,
    /// All lists have been produced.
    pub eof: bool,
}

fn prefixes(name: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, &c) in name.iter().enumerate() {
        if c == b'/' {
            v.push(name[..i].to_vec());
        }
    }
    v.push(name.to_vec());
    v
}

impl<'a> IncrementalLister<'a> {
    /// Build the first list from `args` under `root`: each argument's own
    /// entry, and the contents of a `dir/` argument (upstream
    /// send_file_list with inc_recurse); every directory in it is listed
    /// later by [`IncrementalLister::next_list`].
    pub fn start(
        root: &Path,
        args: &[Vec<u8>],
        opts: &'a BuildOpts,
        ex: &'a mut dyn Excluder,
        state: ListState,
    ) -> (Self, FileList) {
        let mut walker = Walker::new(opts, ex, true);
        let mut arg_dirs: Vec<ArgDir> = Vec::new();
        let mut entered: Vec<(Vec<u8>, usize)> = Vec::new();
        let one = [Vec::new()];
        let args = if args.is_empty() { &one[..] } else { args };
        for a in args {
            // What the previous argument left entered belongs to it alone.
            for _ in entered.drain(..) {
                walker.ex.leave_dir();
            }
            walker.arg(root, a);
            let (dir, base) = walker.arg_context();
            let at = match arg_dirs.iter().position(|d| *d.base == *base) {
                Some(i) => i,
                None => {
                    arg_dirs.push(ArgDir {
                        dir,
                        base,
                        dot: false,
                    });
                    arg_dirs.len() - 1
                }
            };
            if let Some(top) = walker.entered_top.take() {
                if top == b"." {
                    arg_dirs[at].dot = true;
                }
                entered.push((top, at));
            }
        }
        let mut first = walker.take();
        let rel = std::mem::take(&mut walker.relnames);
        let mut state = state;
        finish_list(&mut first, opts, 1, &mut state);
        let rel = rel_by_position(&first, rel);
        let mut me = IncrementalLister {
            opts,
            walker,
            state,
            dirs: Vec::new(),
            next_dir: -1,
            next_ndx_start: 1 + first.files.len() as i32 + 1,
            args: arg_dirs,
            entered,
            eof: false,
        };
        me.add_dirs(-1, &first, rel);
        if me.next_dir < 0 {
            me.eof = true;
        }
        (me, first)
    }

    /// add_dirs_to_tree: append the list's directories, linked as children
    /// of `parent`. A directory of the same name as the one before it is a
    /// duplicate: it gets its index (the receiver counts it too), and its
    /// contents and kept names are listed with the first of the name.
    fn add_dirs(&mut self, parent: i32, list: &FileList, rel: Vec<(usize, RelName)>) {
        let mut prev: i32 = -1;
        let mut head: Option<usize> = None;
        let mut rel = rel.into_iter().peekable();
        for (p, f) in list.files.iter().enumerate() {
            if !mode::is_dir(f.entry.mode) {
                continue;
            }
            let idx = self.dirs.len() as i32;
            // `rel` is sorted by position: this directory's names are next
            // (one pass over the list, however many arguments).
            let mut relnames: Vec<RelName> = Vec::new();
            while rel.peek().is_some_and(|(at, _)| *at < p) {
                rel.next();
            }
            while let Some((_, r)) = rel.next_if(|(at, _)| *at == p) {
                relnames.push(r);
            }
            let source = DirSource {
                local: f.path(),
                base: f.base().clone(),
                dev: f.dev_of(),
                top_dev: f.top_dev,
                escapes: f.escapes,
                content: !(f.entry.implied_dir || f.entry.no_content_dir),
                relnames,
            };
            let dup_of = head.filter(|&h| self.dirs[h].name == f.entry.name);
            let mut node = DirNode {
                name: f.entry.name.clone(),
                entry: f.entry.clone(),
                sources: Vec::new(),
                parent,
                first_child: -1,
                next_sibling: -1,
            };
            let listed_by = match dup_of {
                Some(h) => h,
                None => {
                    head = Some(idx as usize);
                    idx as usize
                }
            };
            if dup_of.is_none() {
                node.sources.push(source);
                self.dirs.push(node);
            } else {
                self.dirs.push(node);
                self.dirs[listed_by].sources.push(source);
            }
            // A head may only now have something to list (its duplicate does).
            self.link(parent, listed_by as i32, &mut prev);
        }
    }

    /// Link `idx` into the tree under `parent` after `prev`, once, if it
    /// has something to list ("." never does: its contents are in the
    /// first list).
    fn link(&mut self, parent: i32, idx: i32, prev: &mut i32) {
        if *prev == idx {
            return;
        }
        let n = &self.dirs[idx as usize];
        let is_dot = n.name == b"." || n.name.ends_with(b"/.");
        if is_dot || !n.sources.iter().any(DirSource::lists) {
            return;
        }
        if *prev >= 0 {
            self.dirs[*prev as usize].next_sibling = idx;
        } else if parent >= 0 {
            self.dirs[parent as usize].first_child = idx;
        } else {
            self.next_dir = idx;
        }
        *prev = idx;
    }

    /// The argument whose directory is `base`.
    fn arg_of(&self, base: &Arc<Path>) -> usize {
        self.args
            .iter()
            .position(|d| Arc::ptr_eq(&d.base, base) || *d.base == **base)
            .unwrap_or(0)
    }

    /// Switch the walker to the argument whose directory is `base` (merge
    /// files are read relative to it), with the filter stack down to `name`.
    fn enter_arg_of(&mut self, base: &Arc<Path>, name: &[u8]) {
        let arg = self.arg_of(base);
        if let Some(a) = self.args.get(arg) {
            let dir = a.dir.clone();
            self.walker.set_dir(&dir, base);
        }
        self.sync_filters(arg, name);
    }

    /// Make the filter stack hold exactly the directories from argument
    /// `arg`'s root down to `name`.
    fn sync_filters(&mut self, arg: usize, name: &[u8]) {
        let mut want: Vec<(Vec<u8>, usize)> = Vec::new();
        if self.args.get(arg).is_some_and(|a| a.dot) {
            want.push((b".".to_vec(), arg));
        }
        want.extend(prefixes(name).into_iter().map(|p| (p, arg)));
        let common = self
            .entered
            .iter()
            .zip(want.iter())
            .take_while(|(a, b)| a == b)
            .count();
        while self.entered.len() > common {
            self.entered.pop();
            self.walker.ex.leave_dir();
        }
        let Some(base) = self.args.get(arg).map(|a| a.base.clone()) else {
            return;
        };
        for (d, _) in &want[common..] {
            let local = base.join(OsStr::from_bytes(d));
            self.walker.ex.enter_dir(d, &local);
            if self.walker.check_fatal() {
                break;
            }
        }
        self.entered.extend(want.into_iter().skip(common));
    }

    /// No directory is left to list.
    pub fn is_done(&self) -> bool {
        self.eof || self.next_dir < 0
    }

    /// The next directory's contents as a list, with the `dir_ndx` to
    /// announce it by; `None` once every directory was sent.
    pub fn next_list(&mut self) -> Option<(i32, FileList)> {
        if self.eof || self.next_dir < 0 {
            self.eof = true;
            return None;
        }
        let dir_ndx = self.next_dir;
        let name = self.dirs[dir_ndx as usize].name.clone();
        // upstream send1extra for it and for each duplicate after it: the
        // contents, then the kept names. A duplicate of the same directory
        // right after one whose contents were listed is not listed again.
        let group = std::mem::take(&mut self.dirs[dir_ndx as usize].sources);
        let head_base = group.first().map(|d| d.base.clone());
        let mut prev_listed = false;
        for (i, mut d) in group.into_iter().enumerate() {
            if i > 0 && prev_listed && head_base.as_ref().is_some_and(|b| **b == *d.base) {
                d.content = false;
            }
            prev_listed = d.content;
            if d.content {
                self.enter_arg_of(&d.base, &name);
                self.walker.root_dev = d.top_dev;
                self.walker.list_dir(&d.local, &name, d.dev, d.escapes);
            }
            for r in d.relnames {
                let base = r.base.clone();
                self.enter_arg_of(&base, &name);
                self.walker.root_dev = d.top_dev;
                self.walker.relname(r);
            }
        }
        let mut list = self.walker.take();
        let rel = std::mem::take(&mut self.walker.relnames);
        finish_list(&mut list, self.opts, self.next_ndx_start, &mut self.state);
        let rel = rel_by_position(&list, rel);
        list.parent_entry = Some(self.dirs[dir_ndx as usize].entry.clone());
        list.parent_base = head_base;
        self.next_ndx_start += list.files.len() as i32 + 1;
        self.add_dirs(dir_ndx, &list, rel);
        // Depth first: first child, else the next sibling of this dir or of an ancestor.
        let mut cur = dir_ndx;
        if self.dirs[cur as usize].first_child >= 0 {
            self.next_dir = self.dirs[cur as usize].first_child;
        } else {
            loop {
                let n = &self.dirs[cur as usize];
                if n.next_sibling >= 0 {
                    self.next_dir = n.next_sibling;
                    break;
                }
                if n.parent < 0 {
                    self.next_dir = -1;
                    break;
                }
                cur = n.parent;
            }
        }
        Some((dir_ndx, list))
    }
}
