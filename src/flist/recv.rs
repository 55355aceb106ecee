//! Receiving a file list (upstream: flist.c recv_file_list, recv_file_entry,
//! flist_sort_and_clean; uidlist.c recv_id_list): decode, validate every
//! name, sort, drop duplicates, and map owners by name.

use super::idmap::IdPolicy;
use super::sort::f_name_cmp;
use crate::protocol::flist::{
    mode, read_id_list, FileEntry, FlistDecoder, FlistItem, FlistOpts, HardLink,
};
use crate::protocol::varint::read_int;
use crate::protocol::ProtoError;
use std::collections::HashMap;
use std::io::Read;

/// Why a received list was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvListError {
    /// The stream failed.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// A name that could write outside the destination (upstream: "ABORTING due to unsafe pathname from sender").
    #[error("ABORTING due to unsafe pathname from sender: {0}")]
    UnsafeName(String),
}

/// A hard-link group's name (see [`RecvList::hlink`]).
pub type HlinkGroup = (i64, i64);

/// A received, sorted list.
#[derive(Debug, Default)]
pub struct RecvList {
    /// Entries in sorted order (wire index = position).
    pub files: Vec<FileEntry>,
    /// False for entries dropped as duplicates (their index stays valid but unused).
    pub active: Vec<bool>,
    /// The sender's io_error.
    pub io_error: i32,
    /// With -H, per entry: its hard-link group (empty when no entry is
    /// linked). Protocol 30+ names a group by the wire index its first
    /// member arrived at, older ones by the sender's (dev, inode).
    pub hlink: Vec<Option<HlinkGroup>>,
    /// Wire index of the first entry (0 without incremental recursion).
    pub ndx_start: i32,
    /// Incremental recursion: the directory (index into the received
    /// directories) whose contents this list holds; the first list's parent
    /// is its `.` entry.
    pub parent: Option<usize>,
    /// Finished (see [`RecvList::retired`]): only its directories are left,
    /// and no index resolves to it any more.
    pub retired: bool,
    /// Entries received in earlier lists (a file's place in the transfer).
    pub index_base: u64,
}

impl RecvList {
    /// What is left of a list once the sender ended it (its transfers are
    /// over): its active directories, for the final pass over directory
    /// times; everything else is dropped (upstream frees finished lists
    /// too), so memory follows the lists in flight, not the whole tree.
    pub fn retired(&self) -> RecvList {
        let files: Vec<FileEntry> = self
            .files
            .iter()
            .zip(&self.active)
            .filter(|(e, &a)| a && mode::is_dir(e.mode))
            .map(|(e, _)| e.clone())
            .collect();
        RecvList {
            active: vec![true; files.len()],
            files,
            io_error: self.io_error,
            hlink: Vec::new(),
            ndx_start: self.ndx_start,
            parent: self.parent,
            retired: true,
            index_base: self.index_base,
        }
    }

    /// The entry behind wire index `ndx`, if it is in this list.
    pub fn get(&self, ndx: i32) -> Option<(usize, &FileEntry)> {
        if self.retired {
            return None;
        }
        let rel = ndx.checked_sub(self.ndx_start)?;
        let i = usize::try_from(rel).ok()?;
        self.files.get(i).filter(|_| self.active[i]).map(|e| (i, e))
    }
}

/// Receives the lists of one transfer (upstream recv_file_list and the
/// directory list dir_flist of incremental recursion).
pub struct ListReceiver {
    dec: FlistDecoder,
    o: FlistOpts,
    inc: bool,
    numeric_ids: bool,
    id0_names: bool,
    /// Owner and group translation (names, `--usermap`/`--groupmap`).
    pub ids: IdPolicy,
    next_ndx_start: i32,
    /// Every directory received, in upstream's dir_flist order (sorted per list).
    pub dirs: Vec<FileEntry>,
    /// `-R`: names may be absolute; they are sorted as sent, then written
    /// beneath the destination (upstream strip_root).
    pub relative: bool,
    /// Entries received so far, over all lists.
    pub total: u64,
    /// A daemon without chroot: symlink targets may not climb above the
    /// transfer's root (upstream recv_file_entry's sanitize_path, done as the
    /// entry arrives so the log shows the target that is written).
    pub sanitize_links: bool,
    /// Munged symlinks (`--munge-links`, module `munge symlinks`): each
    /// received target gets upstream's "/rsyncd-munged/" prefix as it
    /// arrives (recv_file_entry), so the items show what is written.
    pub munge_links: bool,
    /// A receiving client's `--chmod`, applied to each mode as it arrives
    /// (upstream recv_file_entry's tweak_mode; not to symlinks).
    pub chmod: Option<crate::flist::chmod::Chmod>,
}

impl ListReceiver {
    /// `-X`: read each entry's attribute set into a table shared with
    /// the roles, keeping the names `keep` keeps; returns the table.
    pub fn receive_xattrs(
        &mut self,
        keep: crate::protocol::xattr::NameKeeper,
    ) -> crate::protocol::xattr::SharedSets {
        let t = crate::protocol::xattr::XattrRecvTable::new(keep);
        let sets = t.sets.clone();
        self.dec.xattrs = Some(t);
        sets
    }

    /// A receiver for a session.
    /// `numeric_ids`: the sender sends no names (the client's `--numeric-ids`).
    pub fn new(o: FlistOpts, inc: bool, numeric_ids: bool, id0_names: bool, ids: IdPolicy) -> Self {
        ListReceiver {
            dec: FlistDecoder::new(o),
            o,
            inc,
            numeric_ids,
            id0_names,
            ids,
            next_ndx_start: if inc { 1 } else { 0 },
            dirs: Vec::new(),
            relative: false,
            total: 0,
            sanitize_links: false,
            munge_links: false,
            chmod: None,
        }
    }

    fn sanitize(&self, l: &mut RecvList) {
        if let Some(c) = &self.chmod {
            for e in l.files.iter_mut() {
                if !mode::is_lnk(e.mode) && e.mode != 0 {
                    e.mode = c.apply(e.mode);
                }
            }
        }
        if !self.sanitize_links && !self.munge_links {
            return;
        }
        for e in l.files.iter_mut() {
            if !mode::is_lnk(e.mode) {
                continue;
            }
            if self.munge_links {
                if let Some(t) = e.link_target_mut() {
                    let mut m = crate::role::generator::MUNGE_PREFIX.to_vec();
                    m.extend_from_slice(t);
                    *t = m;
                }
                continue;
            }
            let depth = e.name.iter().filter(|&&c| c == b'/').count();
            if let Some(t) = e.link_target_mut() {
                if !t.is_empty() {
                    *t = crate::role::generator::sanitize_link_target(t, depth);
                }
            }
        }
    }

    fn entries<R: Read>(&mut self, r: &mut R) -> Result<(Vec<FileEntry>, i32), RecvListError> {
        self.dec.set_ndx_start(self.next_ndx_start);
        let mut files = Vec::new();
        let io_error = loop {
            match self.dec.decode(r)? {
                FlistItem::Entry(e) => {
                    if !received_name_ok(&e.name, self.relative) {
                        return Err(RecvListError::UnsafeName(
                            crate::protocol::text::name(&e.name).into_owned(),
                        ));
                    }
                    files.push(e);
                }
                FlistItem::End(err) => break err,
            }
        };
        files.shrink_to_fit();
        Ok((files, io_error))
    }

    /// Incremental lists carry each name with the first entry of its id
    /// (upstream recv_file_entry: recv_user_name, else match_uid).
    fn map_inline_names(&mut self, files: &mut [FileEntry]) {
        let ids = &mut self.ids;
        for e in files.iter_mut() {
            if let Some(n) = e.take_user_name() {
                e.uid = ids.uids.add(e.uid, &n);
            } else if ids.map_uid {
                e.uid = ids.uids.get(e.uid);
            }
            if let Some(n) = e.take_group_name() {
                e.gid = ids.gids.add(e.gid, &n);
            } else if ids.map_gid {
                e.gid = ids.gids.get(e.gid);
            }
        }
    }

    /// The first list (with its id lists and io_error when not incremental).
    pub fn first<R: Read>(&mut self, r: &mut R) -> Result<RecvList, RecvListError> {
        if !self.inc {
            let mut l = recv_file_list_ext(
                r,
                self.o,
                self.numeric_ids,
                self.id0_names,
                &mut self.ids,
                self.relative,
                self.dec.xattrs.take(),
            )?;
            if self.relative {
                strip_root(&mut l);
            }
            self.sanitize(&mut l);
            self.total = l.files.len() as u64;
            return Ok(l);
        }
        let (files, io_error) = self.entries(r)?;
        let mut l = self.finish_received(files, io_error);
        let first_is_dot = l
            .files
            .first()
            .is_some_and(|e| e.name == b"." && mode::is_dir(e.mode));
        l.parent = (first_is_dot && !self.dirs.is_empty()).then_some(0);
        Ok(l)
    }

    /// A sub-list announced for directory `dir_ndx`: every entry must lie directly in it.
    pub fn sub<R: Read>(&mut self, r: &mut R, dir_ndx: usize) -> Result<RecvList, RecvListError> {
        let Some(dir) = self.dirs.get(dir_ndx).map(|d| d.name.clone()) else {
            return Err(RecvListError::Proto(ProtoError::invalid(format!(
                "Invalid dir index: {dir_ndx}"
            ))));
        };
        let (files, io_error) = self.entries(r)?;
        for e in &files {
            // -R: one leading slash of an absolute name is not compared
            // (upstream recv_file_list's cur_dir++).
            let name = match e.name.strip_prefix(b"/") {
                Some(n) if self.relative => n,
                _ => &e.name[..],
            };
            let parent = match name.iter().rposition(|&c| c == b'/') {
                Some(p) => &name[..p],
                None => b".",
            };
            if parent != &dir[..] {
                return Err(RecvListError::UnsafeName(format!(
                    "ABORTING due to invalid path from sender: {}",
                    crate::protocol::text::name(&e.name)
                )));
            }
        }
        let mut l = self.finish_received(files, io_error);
        l.parent = Some(dir_ndx);
        Ok(l)
    }

    /// A list of incremental recursion as it arrived, made ready: ids
    /// mapped, sorted and cleaned, -R's absolute names stripped, links
    /// sanitized, numbered after the lists before it.
    fn finish_received(&mut self, mut files: Vec<FileEntry>, io_error: i32) -> RecvList {
        self.map_inline_names(&mut files);
        let mut l = sort_and_clean(files, io_error, self.o.proto, Some(self.next_ndx_start));
        if self.relative {
            strip_root(&mut l);
        }
        self.sanitize(&mut l);
        self.register(&mut l);
        l
    }

    fn register(&mut self, l: &mut RecvList) {
        l.index_base = self.total;
        self.total += l.files.len() as u64;
        l.ndx_start = self.next_ndx_start;
        self.next_ndx_start += l.files.len() as i32 + 1;
        // Every directory counts in the sender's numbering, a duplicate
        // this side drops too (its contents come in the kept one's list).
        for e in l.files.iter() {
            if mode::is_dir(e.mode) {
                self.dirs.push(e.clone());
            }
        }
    }
}

/// A received name the destination can take: safe, or "."; with `-R` an
/// absolute one too, sorted as sent and written beneath the destination
/// (strip_root after sorting).
fn received_name_ok(name: &[u8], relative: bool) -> bool {
    let rooted = relative && name.starts_with(b"/");
    let bare = if rooted {
        let n = name.iter().take_while(|&&c| c == b'/').count();
        &name[n..]
    } else {
        name
    };
    safe_name(bare) || bare == b"." || (rooted && bare.is_empty())
}

/// Is `name` safe to create under the destination: relative, no `..`
/// component, not empty.
pub fn safe_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0] != b'/'
        && !name.split(|&c| c == b'/').any(|c| c == b"..")
        && !name.contains(&0)
}

/// Read the whole list (no incremental recursion), its id lists and
/// io_error; `ids` translates owners and groups.
pub fn recv_file_list<R: Read>(
    r: &mut R,
    o: FlistOpts,
    numeric_ids: bool,
    id0_names: bool,
    ids: &mut IdPolicy,
) -> Result<RecvList, RecvListError> {
    recv_file_list_ext(r, o, numeric_ids, id0_names, ids, false, None)
}

/// Drop the leading slashes of `-R` names once the list is sorted (upstream
/// clean_flist's strip_root); the names were checked to be safe without them.
fn strip_root(l: &mut RecvList) {
    for e in l.files.iter_mut() {
        if e.name.starts_with(b"/") {
            let n = e.name.iter().take_while(|&&c| c == b'/').count();
            e.name.drain(..n);
            if e.name.is_empty() {
                e.name = b".".to_vec();
            }
        }
    }
}

fn recv_file_list_ext<R: Read>(
    r: &mut R,
    o: FlistOpts,
    numeric_ids: bool,
    id0_names: bool,
    ids: &mut IdPolicy,
    relative: bool,
    xattrs: Option<crate::protocol::xattr::XattrRecvTable>,
) -> Result<RecvList, RecvListError> {
    let mut dec = FlistDecoder::new(o);
    dec.xattrs = xattrs;
    let mut files = Vec::new();
    let io_error = loop {
        match dec.decode(r)? {
            FlistItem::Entry(e) => {
                if !received_name_ok(&e.name, relative) {
                    return Err(RecvListError::UnsafeName(
                        crate::protocol::text::name(&e.name).into_owned(),
                    ));
                }
                files.push(e);
            }
            FlistItem::End(err) => break err,
        }
    };
    // upstream recv_id_list: every named id is translated once, then
    // each entry's ids as the policy says.
    if !numeric_ids {
        if o.preserve_uid {
            for (id, name) in read_id_list(r, o.proto, id0_names)? {
                ids.uids.add(id, &name);
            }
        }
        if o.preserve_gid {
            for (id, name) in read_id_list(r, o.proto, id0_names)? {
                ids.gids.add(id, &name);
            }
        }
    }
    let io_error = if o.proto < 30 { read_int(r)? } else { io_error };
    for e in files.iter_mut() {
        if ids.map_uid {
            e.uid = ids.uids.get(e.uid);
        }
        if ids.map_gid {
            e.gid = ids.gids.get(e.gid);
        }
    }
    Ok(sort_and_clean(files, io_error, o.proto, None))
}

/// Sort stably, as the sender did, drop duplicate names (keep a dir over a
/// non-dir, else the first) and group hard links. `inc_start`: the list's
/// first wire index under incremental recursion (its groups may go on in
/// later lists).
fn sort_and_clean(
    mut files: Vec<FileEntry>,
    io_error: i32,
    proto: u8,
    inc_start: Option<i32>,
) -> RecvList {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&files[a], &files[b]);
        f_name_cmp(
            &a.name,
            mode::is_dir(a.mode),
            &b.name,
            mode::is_dir(b.mode),
            proto,
        )
    });
    super::sort::permute(&mut files, &order);
    let mut active = vec![true; files.len()];
    let mut prev: Option<usize> = None;
    for i in 0..files.len() {
        if let Some(p) = prev {
            if files[p].name == files[i].name {
                if mode::is_dir(files[i].mode) && !mode::is_dir(files[p].mode) {
                    active[p] = false;
                    prev = Some(i);
                } else {
                    active[i] = false;
                }
                continue;
            }
        }
        prev = Some(i);
    }
    // Hard-link groups (of the entries kept: a duplicate is no member, as
    // upstream clears it before match_hard_links): a follower names its
    // group's first member by arrival index (protocol 30+); older
    // protocols send dev/ino. A whole list's group of one is no group
    // (upstream match_gnums); under incremental recursion later lists may
    // add to it.
    let start = inc_start.unwrap_or(0) as i64;
    let mut hlink: Vec<Option<HlinkGroup>> = Vec::new();
    let mut sizes: HashMap<HlinkGroup, usize> = HashMap::new();
    for (i, e) in files.iter().enumerate() {
        let key = match e.hard_link() {
            // (A directory is never a member, whatever a sender claims.)
            _ if !active[i] || mode::is_dir(e.mode) => None,
            Some(HardLink::First) => Some((-1, start + order[i] as i64)),
            Some(HardLink::Follower { first }) => Some((-1, *first as i64)),
            Some(HardLink::DevIno { dev, ino }) => Some((*dev, *ino)),
            None => None,
        };
        if let Some(k) = key {
            if hlink.is_empty() {
                hlink = vec![None; files.len()];
            }
            hlink[i] = Some(k);
            *sizes.entry(k).or_default() += 1;
        }
    }
    if inc_start.is_none() {
        for k in hlink.iter_mut() {
            if k.is_some_and(|k| sizes.get(&k) == Some(&1)) {
                *k = None;
            }
        }
    }
    RecvList {
        files,
        active,
        io_error,
        hlink,
        ndx_start: 0,
        parent: None,
        retired: false,
        index_base: 0,
    }
}

/// `-m` (upstream flist_sort_and_clean with prune_empty_dirs): directories
/// with no file anywhere below them are left out (the top `.` stays).
pub fn prune_empty_dirs(list: &mut RecvList) {
    let mut needed: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (i, e) in list.files.iter().enumerate() {
        if !list.active[i] || mode::is_dir(e.mode) {
            continue;
        }
        let mut p = &e.name[..];
        while let Some(pos) = p.iter().rposition(|&c| c == b'/') {
            p = &p[..pos];
            if !needed.insert(p) {
                break;
            }
        }
    }
    let drop: Vec<usize> = list
        .files
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            list.active[*i]
                && mode::is_dir(e.mode)
                && e.name != b"."
                && !needed.contains(&e.name[..])
        })
        .map(|(i, _)| i)
        .collect();
    for i in drop {
        list.active[i] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flist::FlistEncoder;

    #[test]
    fn hard_link_groups_are_of_non_directories_and_of_two_in_a_whole_list() {
        let mk = |name: &[u8], mode: u32, h: Option<HardLink>| {
            let mut e = FileEntry {
                name: name.to_vec(),
                mode,
                ..Default::default()
            };
            e.set_hard_link(h);
            e
        };
        let files = vec![
            mk(b"a", 0o100644, Some(HardLink::First)),
            mk(b"b", 0o100644, Some(HardLink::Follower { first: 0 })),
            // A directory claiming to be a member (a hostile sender).
            mk(b"c", 0o040755, Some(HardLink::Follower { first: 0 })),
            mk(b"d", 0o100644, Some(HardLink::First)),
        ];
        let whole = sort_and_clean(files.clone(), 0, 31, None);
        assert_eq!(whole.hlink, [Some((-1, 0)), Some((-1, 0)), None, None]);
        // Incremental: the lone member may get company in later lists.
        // (Sorted: the files, then the directory.)
        let inc = sort_and_clean(files, 0, 31, Some(10));
        assert_eq!(inc.files[3].name, b"c");
        assert_eq!(
            inc.hlink,
            [Some((-1, 10)), Some((-1, 0)), Some((-1, 13)), None]
        );
    }

    #[test]
    fn a_retired_list_keeps_its_directories_and_resolves_no_index() {
        let mk = |name: &[u8], mode: u32| FileEntry {
            name: name.to_vec(),
            mode,
            ..Default::default()
        };
        let files = vec![
            mk(b"a", 0o100644),
            mk(b"d", 0o040755),
            mk(b"e", 0o040755),
            mk(b"f", 0o100644),
        ];
        let l = RecvList {
            active: vec![true, true, false, true],
            files,
            ndx_start: 10,
            ..Default::default()
        };
        assert!(l.get(11).is_some());
        let r = l.retired();
        assert!(r.retired);
        assert_eq!(r.ndx_start, 10);
        let names: Vec<&[u8]> = r.files.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"d"[..]]);
        assert_eq!(r.active, [true]);
        assert!((0..20).all(|n| r.get(n).is_none()));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/..", b""] {
            assert!(!safe_name(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(safe_name(b"a/b..c"));
        let o = FlistOpts {
            proto: 31,
            varint_flags: true,
            ..Default::default()
        };
        let mut enc = FlistEncoder::new(o);
        let mut v = Vec::new();
        enc.encode(
            &mut v,
            &FileEntry {
                name: b"../evil".to_vec(),
                mode: 0o100644,
                ..Default::default()
            },
        );
        enc.end(&mut v, 0);
        assert!(matches!(
            recv_file_list(&mut &v[..], o, true, false, &mut IdPolicy::keep()),
            Err(RecvListError::UnsafeName(_))
        ));
    }

    #[test]
    fn sorted_and_deduplicated() {
        let o = FlistOpts {
            proto: 31,
            varint_flags: true,
            ..Default::default()
        };
        let mut enc = FlistEncoder::new(o);
        let mut v = Vec::new();
        for (n, m) in [
            ("b", 0o100644),
            (".", 0o040755),
            ("a", 0o100644),
            ("b", 0o040755),
        ] {
            enc.encode(
                &mut v,
                &FileEntry {
                    name: n.as_bytes().to_vec(),
                    mode: m,
                    ..Default::default()
                },
            );
        }
        enc.end(&mut v, 0);
        let l = recv_file_list(&mut &v[..], o, true, false, &mut IdPolicy::keep()).unwrap();
        let names: Vec<_> = l
            .files
            .iter()
            .map(|f| crate::protocol::text::name(&f.name).into_owned())
            .collect();
        assert_eq!(names, [".", "a", "b", "b"]);
        assert_eq!(l.active, [true, true, false, true]);
    }
}
