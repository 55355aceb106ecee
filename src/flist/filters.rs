//! The sender's view of the filter rules while it walks the tree: the
//! client's rules (with per-directory merge files read beside the files) and
//! the daemon module's own `exclude`/`include`/`filter` lines, which match
//! module-relative paths and are never sent.

use super::build::Excluder;
use crate::filter::{DirToken, FilterList, FilterStack, Side};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Largest merge file read (upstream reads them line by line without a limit;
/// we bound memory).
const MAX_MERGE_FILE: u64 = 16 << 20;

/// Excluder for a sending walk.
pub struct SenderFilters {
    stack: Option<FilterStack>,
    tokens: Vec<Option<DirToken>>,
    daemon: Option<FilterList>,
    /// The current argument's directory relative to the module root.
    prefix: Vec<u8>,
    /// The transfer root on disk.
    root: PathBuf,
    /// Merge files are only read under this directory (the module root).
    confine: Option<PathBuf>,
    /// A per-directory rules file that could not be parsed (fatal).
    fatal: Option<String>,
    /// `--debug=filter` (`-vv`): report which rule hid or showed a name.
    pub debug_filter: bool,
    notes: Vec<String>,
}

/// Read a merge file relative to `root`, refusing anything that resolves outside `confine`.
pub fn read_confined(root: &Path, confine: Option<&Path>, rel: &[u8]) -> Option<Vec<u8>> {
    if rel.first() == Some(&b'/') && confine.is_some() {
        return None;
    }
    let p = root.join(std::ffi::OsStr::from_bytes(rel));
    if let Some(c) = confine {
        let real = std::fs::canonicalize(&p).ok()?;
        if !real.starts_with(c) {
            return None;
        }
    }
    read_bounded(std::fs::File::open(&p).ok()?)
}

/// A rules file's contents, up to [`MAX_MERGE_FILE`] bytes.
pub(crate) fn read_bounded(f: std::fs::File) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    f.take(MAX_MERGE_FILE).read_to_end(&mut v).ok()?;
    Some(v)
}

impl SenderFilters {
    /// Combine the client's rules (`None` when it sent none) and the module's.
    pub fn new(
        client: Option<FilterList>,
        daemon: Option<FilterList>,
        confine: Option<PathBuf>,
    ) -> Self {
        SenderFilters {
            stack: client.map(|l| FilterStack::new(l, Side::Sender)),
            tokens: Vec::new(),
            daemon,
            prefix: Vec::new(),
            root: PathBuf::from("."),
            confine,
            fatal: None,
            debug_filter: false,
            notes: Vec::new(),
        }
    }

    fn module_path(&self, path: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.prefix.len() + path.len() + 1);
        if !self.prefix.is_empty() && self.prefix != b"." {
            v.extend_from_slice(&self.prefix);
            v.push(b'/');
        }
        v.extend_from_slice(path);
        v
    }
}

impl Excluder for SenderFilters {
    fn excluded(&mut self, path: &[u8], is_dir: bool) -> bool {
        if let Some(d) = &self.daemon {
            let mp = self.module_path(path);
            if d.is_excluded(&mp, is_dir, Side::Sender) {
                return true;
            }
        }
        match &self.stack {
            Some(s) if self.debug_filter => match s.hit(path, is_dir, Side::Sender) {
                Some(h) => {
                    self.notes.push(h.report("sender", path, is_dir));
                    !h.include()
                }
                None => false,
            },
            Some(s) => s.is_excluded(path, is_dir, Side::Sender),
            None => false,
        }
    }

    fn drain_notes(&mut self, out: &mut Vec<(super::build::MsgKind, String)>) {
        use super::build::MsgKind;
        out.extend(self.notes.drain(..).map(|n| (MsgKind::Info, n)));
        // Rules files' non-fatal problems ("discarding over-long filter"),
        // errors in upstream's words that leave the exit code alone.
        if let Some(s) = self.stack.as_mut() {
            out.extend(
                s.list_mut()
                    .take_warnings()
                    .into_iter()
                    .map(|w| (MsgKind::Error, w)),
            );
        }
    }

    fn take_fatal(&mut self) -> Option<String> {
        self.fatal.take()
    }

    fn set_base(&mut self, dir_in_module: &[u8], root: &Path) {
        self.prefix = dir_in_module.to_vec();
        self.root = root.to_path_buf();
        // Per-directory rules files are named by their absolute path (in
        // messages, and for their anchored rules), as upstream's dirbuf.
        if let Some(stack) = self.stack.as_mut() {
            let abs = match &self.confine {
                Some(c) => {
                    let mut v = c.as_os_str().as_bytes().to_vec();
                    if !dir_in_module.is_empty() && dir_in_module != b"." {
                        v.push(b'/');
                        v.extend_from_slice(dir_in_module);
                    }
                    v
                }
                None => match std::env::current_dir() {
                    Ok(cwd) => cwd.join(root).as_os_str().as_bytes().to_vec(),
                    Err(_) => return,
                },
            };
            stack.list_mut().set_root_abs(&abs);
        }
    }

    fn enter_dir(&mut self, dir: &[u8], _local: &Path) {
        let Some(stack) = self.stack.as_mut() else {
            return;
        };
        let root = self.root.clone();
        let confine = self.confine.clone();
        let mut read = |rel: &[u8]| read_confined(&root, confine.as_deref(), rel);
        match stack.enter_dir(dir, &mut read) {
            Ok(t) => self.tokens.push(Some(t)),
            Err(e) => {
                self.fatal = Some(e.to_string());
                self.tokens.push(None);
            }
        }
    }

    fn leave_dir(&mut self) {
        if let (Some(stack), Some(Some(t))) = (self.stack.as_mut(), self.tokens.pop()) {
            stack.leave_dir(t);
        }
    }
}
