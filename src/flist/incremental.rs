//! Incremental recursion on the sending side (upstream: flist.c
//! send_file_list with inc_recurse, send_extra_file_list, send1extra,
//! add_dirs_to_tree): the first list holds the top-level entries (and the
//! contents of a `dir/` argument); every directory's contents then follow as
//! a list of their own, depth first in sorted order, while files are already
//! being transferred.

use super::build::{finish_list, BuildOpts, Excluder, FileList, ListState, Walker};
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

/// A directory whose contents are (or were) sent as a sub-list; its index in
/// `dirs` is the `dir_ndx` of `NDX_FLIST_OFFSET - dir_ndx`.
#[derive(Debug)]
struct DirNode {
    name: Vec<u8>,
    entry: crate::protocol::flist::FileEntry,
    local: PathBuf,
    /// Index in `args` of the argument it came from.
    arg: usize,
    /// Directories of the same name from other arguments: their contents
    /// join this one's list (upstream FLAG_DUPLICATE dirs).
    dups: Vec<DupDir>,
    dev: u64,
    top_dev: u64,
    escapes: bool,
    parent: i32,
    first_child: i32,
    next_sibling: i32,
}

/// A directory listed twice under one name (overlapping arguments, `a/ b/`
/// with a subdirectory in both).
#[derive(Debug, Clone)]
struct DupDir {
    name: Vec<u8>,
    local: PathBuf,
    base: Arc<Path>,
    dev: u64,
    top_dev: u64,
    escapes: bool,
}

/// Every directory of a list not yet cleaned, when some name occurs twice
/// (cleaning keeps the first; the others' contents must still be listed).
fn dup_dirs(list: &FileList) -> Vec<DupDir> {
    let mut seen = std::collections::HashSet::new();
    let dirs = || list.files.iter().filter(|f| mode::is_dir(f.entry.mode));
    if dirs().all(|f| seen.insert(&f.entry.name)) {
        return Vec::new();
    }
    dirs()
        .map(|f| DupDir {
            name: f.entry.name.clone(),
            local: f.path(),
            base: f.base().clone(),
            dev: f.dev_of(),
            top_dev: f.top_dev,
            escapes: f.escapes,
        })
        .collect()
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
        let dups = dup_dirs(&first);
        let mut state = state;
        finish_list(&mut first, opts, 1, &mut state);
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
        me.add_dirs(-1, &first, &dups);
        if me.next_dir < 0 {
            me.eof = true;
        }
        (me, first)
    }

    /// add_dirs_to_tree: append the list's directories, linked as children of `parent`.
    /// The argument whose directory is `base`.
    fn arg_of(&self, base: &Arc<Path>) -> usize {
        self.args
            .iter()
            .position(|d| Arc::ptr_eq(&d.base, base) || *d.base == **base)
            .unwrap_or(0)
    }

    /// add_dirs_to_tree: append the list's directories, linked as children
    /// of `parent`; `dups` are the list's directories before cleaning, when
    /// a name occurred twice.
    fn add_dirs(&mut self, parent: i32, list: &FileList, dups: &[DupDir]) {
        let mut prev: i32 = -1;
        for f in &list.files {
            if !mode::is_dir(f.entry.mode) {
                continue;
            }
            let idx = self.dirs.len() as i32;
            let arg = self.arg_of(f.base());
            let local = f.path();
            let dups: Vec<DupDir> = dups
                .iter()
                .filter(|d| d.name == f.entry.name && d.local != local)
                .cloned()
                .collect();
            self.dirs.push(DirNode {
                name: f.entry.name.clone(),
                entry: f.entry.clone(),
                local,
                arg,
                dups,
                dev: f.dev_of(),
                top_dev: f.top_dev,
                escapes: f.escapes,
                parent,
                first_child: -1,
                next_sibling: -1,
            });
            let is_dot = f.entry.name == b"." || f.entry.name.ends_with(b"/.");
            // Only directories whose contents are to be sent join the tree.
            if is_dot || f.entry.no_content_dir || f.entry.implied_dir {
                continue;
            }
            if prev >= 0 {
                self.dirs[prev as usize].next_sibling = idx;
            } else if parent >= 0 {
                self.dirs[parent as usize].first_child = idx;
            } else {
                self.next_dir = idx;
            }
            prev = idx;
        }
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
        let (name, local, arg, dev, top_dev, escapes) = {
            let n = &self.dirs[dir_ndx as usize];
            (
                n.name.clone(),
                n.local.clone(),
                n.arg,
                n.dev,
                n.top_dev,
                n.escapes,
            )
        };
        // The argument's base first: merge files are read relative to it.
        if let Some(a) = self.args.get(arg) {
            let (dir, base) = (a.dir.clone(), a.base.clone());
            self.walker.set_dir(&dir, &base);
        }
        self.sync_filters(arg, &name);
        self.walker.root_dev = top_dev;
        self.walker.list_dir(&local, &name, dev, escapes);
        // The same directory from other arguments: one list for all of them.
        for d in std::mem::take(&mut self.dirs[dir_ndx as usize].dups) {
            let arg = self.arg_of(&d.base);
            if let Some(a) = self.args.get(arg) {
                let dir = a.dir.clone();
                self.walker.set_dir(&dir, &d.base);
            }
            self.sync_filters(arg, &d.name);
            self.walker.root_dev = d.top_dev;
            self.walker.list_dir(&d.local, &d.name, d.dev, d.escapes);
        }
        let mut list = self.walker.take();
        let dups = dup_dirs(&list);
        finish_list(&mut list, self.opts, self.next_ndx_start, &mut self.state);
        list.parent_entry = Some(self.dirs[dir_ndx as usize].entry.clone());
        self.next_ndx_start += list.files.len() as i32 + 1;
        self.add_dirs(dir_ndx, &list, &dups);
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
