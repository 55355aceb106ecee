//! Incremental recursion on the sending side (upstream: flist.c
//! send_file_list with inc_recurse, send_extra_file_list, send1extra,
//! add_dirs_to_tree): the first list holds the top-level entries (and the
//! contents of a `dir/` argument); every directory's contents then follow as
//! a list of their own, depth first in sorted order, while files are already
//! being transferred.

use super::build::{finish_list, BuildOpts, Excluder, FileList, ListState, Walker};
use crate::protocol::flist::mode;
use std::path::{Path, PathBuf};

/// A directory whose contents are (or were) sent as a sub-list; its index in
/// `dirs` is the `dir_ndx` of `NDX_FLIST_OFFSET - dir_ndx`.
#[derive(Debug)]
struct DirNode {
    name: Vec<u8>,
    entry: crate::protocol::flist::FileEntry,
    local: PathBuf,
    dev: u64,
    top_dev: u64,
    escapes: bool,
    parent: i32,
    first_child: i32,
    next_sibling: i32,
}

/// Produces the file lists of one transfer one directory at a time.
pub struct IncrementalLister<'a> {
    opts: &'a BuildOpts,
    walker: Walker<'a>,
    state: ListState,
    dirs: Vec<DirNode>,
    next_dir: i32,
    next_ndx_start: i32,
    root: PathBuf,
    arg_dir: Vec<u8>,
    /// The per-directory filter stack currently entered, outermost first.
    entered: Vec<Vec<u8>>,
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
    /// Build the first list for the single argument `arg` under `root`.
    pub fn start(
        root: &Path,
        arg: &[u8],
        opts: &'a BuildOpts,
        ex: &'a mut dyn Excluder,
        state: ListState,
    ) -> (Self, FileList) {
        let mut walker = Walker::new(opts, ex, true);
        walker.arg(root, arg);
        let mut first = walker.take();
        let mut state = state;
        finish_list(&mut first, opts, 1, &mut state);
        // The argument's directory (the part before the last '/').
        let mut a = arg.to_vec();
        if a.is_empty() || a.ends_with(b"/") {
            a.push(b'.');
        }
        let arg_dir = a
            .iter()
            .rposition(|&c| c == b'/')
            .map(|p| a[..p].to_vec())
            .unwrap_or_default();
        let dot_root = first
            .files
            .first()
            .is_some_and(|f| f.entry.name == b"." && mode::is_dir(f.entry.mode));
        let mut me = IncrementalLister {
            opts,
            walker,
            state,
            dirs: Vec::new(),
            next_dir: -1,
            next_ndx_start: 1 + first.files.len() as i32 + 1,
            root: root.to_path_buf(),
            arg_dir,
            entered: if dot_root {
                vec![b".".to_vec()]
            } else {
                Vec::new()
            },
            eof: false,
        };
        me.add_dirs(-1, &first);
        if me.next_dir < 0 {
            me.eof = true;
        }
        (me, first)
    }

    /// add_dirs_to_tree: append the list's directories, linked as children of `parent`.
    fn add_dirs(&mut self, parent: i32, list: &FileList) {
        let mut prev: i32 = -1;
        for f in &list.files {
            if !mode::is_dir(f.entry.mode) {
                continue;
            }
            let idx = self.dirs.len() as i32;
            self.dirs.push(DirNode {
                name: f.entry.name.clone(),
                entry: f.entry.clone(),
                local: f.path(),
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

    /// Make the filter stack hold exactly the directories from the transfer
    /// root down to `name`.
    fn sync_filters(&mut self, name: &[u8]) {
        let mut want: Vec<Vec<u8>> = Vec::new();
        if self.entered.first().map(|d| d.as_slice()) == Some(b".") {
            want.push(b".".to_vec());
        }
        want.extend(prefixes(name));
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
        let base = if self.arg_dir.is_empty() {
            self.root.clone()
        } else {
            self.root
                .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&self.arg_dir))
        };
        for d in &want[common..] {
            let local = base.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(d));
            self.walker.ex.enter_dir(d, &local);
            self.entered.push(d.clone());
        }
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
        let (name, local, dev, top_dev, escapes) = {
            let n = &self.dirs[dir_ndx as usize];
            (n.name.clone(), n.local.clone(), n.dev, n.top_dev, n.escapes)
        };
        self.sync_filters(&name);
        let base = if self.arg_dir.is_empty() {
            self.root.clone()
        } else {
            self.root
                .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&self.arg_dir))
        };
        let arg_dir = self.arg_dir.clone();
        self.walker.set_dir(&arg_dir, &base);
        self.walker.root_dev = top_dev;
        self.walker.list_dir(&local, &name, dev, escapes);
        let mut list = self.walker.take();
        finish_list(&mut list, self.opts, self.next_ndx_start, &mut self.state);
        list.parent_entry = Some(self.dirs[dir_ndx as usize].entry.clone());
        self.next_ndx_start += list.files.len() as i32 + 1;
        self.add_dirs(dir_ndx, &list);
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
