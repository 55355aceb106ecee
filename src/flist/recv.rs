//! Receiving a file list (upstream: flist.c recv_file_list, recv_file_entry,
//! flist_sort_and_clean; uidlist.c recv_id_list): decode, validate every
//! name, sort, drop duplicates, and map owners by name.

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

/// A received, sorted list.
#[derive(Debug, Default)]
pub struct RecvList {
    /// Entries in sorted order (wire index = position).
    pub files: Vec<FileEntry>,
    /// False for entries dropped as duplicates (their index stays valid but unused).
    pub active: Vec<bool>,
    /// The sender's io_error.
    pub io_error: i32,
    /// For hard-link followers: the index of the entry they link to.
    pub hlink_leader: Vec<Option<usize>>,
}

/// Is `name` safe to create under the destination: relative, no `..`
/// component, not empty.
pub fn safe_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0] != b'/'
        && !name.split(|&c| c == b'/').any(|c| c == b"..")
        && !name.contains(&0)
}

/// Read the whole list (no incremental recursion), its id lists and io_error.
/// `map_ids`: translate uids/gids by name to local ids (as root, without --numeric-ids).
pub fn recv_file_list<R: Read>(
    r: &mut R,
    o: FlistOpts,
    numeric_ids: bool,
    id0_names: bool,
    map_ids: bool,
) -> Result<RecvList, RecvListError> {
    let mut dec = FlistDecoder::new(o);
    let mut files = Vec::new();
    let io_error = loop {
        match dec.decode(r)? {
            FlistItem::Entry(e) => {
                if !safe_name(&e.name) && e.name != b"." {
                    return Err(RecvListError::UnsafeName(
                        String::from_utf8_lossy(&e.name).into_owned(),
                    ));
                }
                files.push(e);
            }
            FlistItem::End(err) => break err,
        }
    };
    let mut uid_map = HashMap::new();
    let mut gid_map = HashMap::new();
    if !numeric_ids {
        if o.preserve_uid {
            for (id, name) in read_id_list(r, o.proto, id0_names)? {
                if let Some(local) = nix::unistd::User::from_name(&String::from_utf8_lossy(&name))
                    .ok()
                    .flatten()
                {
                    uid_map.insert(id, local.uid.as_raw());
                }
            }
        }
        if o.preserve_gid {
            for (id, name) in read_id_list(r, o.proto, id0_names)? {
                if let Some(local) = nix::unistd::Group::from_name(&String::from_utf8_lossy(&name))
                    .ok()
                    .flatten()
                {
                    gid_map.insert(id, local.gid.as_raw());
                }
            }
        }
    }
    let io_error = if o.proto < 30 { read_int(r)? } else { io_error };
    if map_ids {
        for e in files.iter_mut() {
            if let Some(u) = uid_map.get(&e.uid) {
                e.uid = *u;
            }
            if let Some(g) = gid_map.get(&e.gid) {
                e.gid = *g;
            }
        }
    }
    // Sort stably, as the sender did, then drop duplicate names (keep a dir
    // over a non-dir, else the first).
    let proto = o.proto;
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
    // Hard-link groups: a follower names its group's first member by arrival
    // index (protocol 30+); older protocols send dev/ino. As upstream's
    // receiver does (hlink.c match_gnums), the member that sorts last gets
    // the data and the others are linked to it.
    let mut groups: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (i, e) in files.iter().enumerate() {
        let key = match &e.hard_link {
            Some(HardLink::First) => Some((-1, order[i] as i64)),
            Some(HardLink::Follower { first }) => Some((-1, *first as i64)),
            Some(HardLink::DevIno { dev, ino }) => Some((*dev, *ino)),
            None => None,
        };
        if let Some(k) = key {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut hlink_leader = vec![None; files.len()];
    for members in groups.values() {
        if let Some(&last) = members.iter().max() {
            for &m in members {
                if m != last {
                    hlink_leader[m] = Some(last);
                }
            }
        }
    }
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
    Ok(RecvList {
        files,
        active,
        io_error,
        hlink_leader,
    })
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
            recv_file_list(&mut &v[..], o, true, false, false),
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
        let l = recv_file_list(&mut &v[..], o, true, false, false).unwrap();
        let names: Vec<_> = l
            .files
            .iter()
            .map(|f| String::from_utf8_lossy(&f.name).into_owned())
            .collect();
        assert_eq!(names, [".", "a", "b", "b"]);
        assert_eq!(l.active, [true, true, false, true]);
    }
}
