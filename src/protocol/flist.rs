//! File-list entries on the wire (upstream: flist.c send_file_entry,
//! recv_file_entry, write_end_of_flist; uidlist.c send_id_lists), protocols 27-32.
//!
//! Both codecs keep the "previous entry" state upstream keeps in statics; one
//! `FlistEncoder`/`FlistDecoder` serves one direction of one session.

use super::varint::*;
use super::{ProtoError, Result, MAX_PATH_LEN};
use std::io::Read;

/// Entry flag bits (XMIT_*).
pub mod xmit {
    /// Top-level dir / filler.
    pub const TOP_DIR: u32 = 0x0001;
    /// Mode equals previous.
    pub const SAME_MODE: u32 = 0x0002;
    /// Second flag byte follows (proto 28+, non-varint).
    pub const EXTENDED_FLAGS: u32 = 0x0004;
    /// proto < 28: rdev equals previous.
    pub const SAME_RDEV_PRE28: u32 = 0x0004;
    /// uid equals previous.
    pub const SAME_UID: u32 = 0x0008;
    /// gid equals previous.
    pub const SAME_GID: u32 = 0x0010;
    /// A shared-prefix length byte follows.
    pub const SAME_NAME: u32 = 0x0020;
    /// Suffix length is a varint30.
    pub const LONG_NAME: u32 = 0x0040;
    /// mtime equals previous.
    pub const SAME_TIME: u32 = 0x0080;
    /// Devices: major equals previous.
    pub const SAME_RDEV_MAJOR: u32 = 0x0100;
    /// Dirs, proto 30+: contents not sent.
    pub const NO_CONTENT_DIR: u32 = 0x0100;
    /// Hard-linked.
    pub const HLINKED: u32 = 0x0200;
    /// proto 28-29: same hard-link dev as previous.
    pub const SAME_DEV_PRE30: u32 = 0x0400;
    /// proto 30+: user name follows.
    pub const USER_NAME_FOLLOWS: u32 = 0x0400;
    /// proto 28-29: minor fits a byte.
    pub const RDEV_MINOR_8_PRE30: u32 = 0x0800;
    /// proto 30+: group name follows.
    pub const GROUP_NAME_FOLLOWS: u32 = 0x0800;
    /// proto 30+: first of a hard-link group.
    pub const HLINK_FIRST: u32 = 0x1000;
    /// End marker carries an io_error.
    pub const IO_ERROR_ENDLIST: u32 = 0x1000;
    /// proto 31+: nanoseconds follow.
    pub const MOD_NSEC: u32 = 0x2000;
}

/// File type bits of `st_mode`.
pub mod mode {
    /// Type mask.
    pub const S_IFMT: u32 = 0o170000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Symlink.
    pub const S_IFLNK: u32 = 0o120000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;

    /// Is a directory.
    pub fn is_dir(m: u32) -> bool {
        m & S_IFMT == S_IFDIR
    }
    /// Is a regular file.
    pub fn is_reg(m: u32) -> bool {
        m & S_IFMT == S_IFREG
    }
    /// Is a symlink.
    pub fn is_lnk(m: u32) -> bool {
        m & S_IFMT == S_IFLNK
    }
    /// Is a char or block device.
    pub fn is_device(m: u32) -> bool {
        matches!(m & S_IFMT, S_IFCHR | S_IFBLK)
    }
    /// Is a fifo or socket.
    pub fn is_special(m: u32) -> bool {
        matches!(m & S_IFMT, S_IFIFO | S_IFSOCK)
    }
}

/// Hard-link information carried by an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HardLink {
    /// proto 30+: the first member of its group (sent in full).
    First,
    /// proto 30+: a later member; `first` is the group leader's index.
    Follower {
        /// Index of the group's first member.
        first: i32,
    },
    /// proto < 30: device and inode numbers.
    DevIno {
        /// st_dev.
        dev: i64,
        /// st_ino.
        ino: i64,
    },
}

/// One file-list entry as it travels.
///
/// The fields every entry has are inline; the ones few entries have (a
/// symlink's target, hard-link data, a `-c` digest, inline id names) live
/// in one boxed [`EntryExtra`], reached through accessors, so a list entry
/// costs 80 bytes plus its name, not 192. A sending daemon holds hundreds
/// of these per connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileEntry {
    /// Path relative to the transfer root (`.` for the root itself).
    pub name: Vec<u8>,
    /// `st_mode` including type bits.
    pub mode: u32,
    /// Length in bytes.
    pub size: i64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Nanoseconds of the mtime (sent from protocol 31).
    pub mtime_nsec: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device major (devices only).
    pub rdev_major: u32,
    /// Device minor (devices only).
    pub rdev_minor: u32,
    /// XMIT_TOP_DIR for directories.
    pub top_dir: bool,
    /// Directory whose contents are not sent (proto 30+: XMIT_NO_CONTENT_DIR).
    pub no_content_dir: bool,
    /// Implied directory of `--relative` (sent as TOP_DIR|NO_CONTENT_DIR).
    pub implied_dir: bool,
    /// `-X`: the entry's attribute set, as its index + 1 in the transfer's
    /// table of sets (0: none recorded).
    pub xattr: u32,
    /// The fields few entries have; `None` when all of them are unset.
    /// Public only so that `..Default::default()` works outside this
    /// module: go through the accessors.
    pub extra: Option<Box<EntryExtra>>,
}

/// The rarely set part of a [`FileEntry`] (see its accessors).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryExtra {
    link_target: Option<Vec<u8>>,
    hard_link: Option<HardLink>,
    checksum: Option<Vec<u8>>,
    user_name: Option<Vec<u8>>,
    group_name: Option<Vec<u8>>,
}

impl EntryExtra {
    fn is_empty(&self) -> bool {
        self.link_target.is_none()
            && self.hard_link.is_none()
            && self.checksum.is_none()
            && self.user_name.is_none()
            && self.group_name.is_none()
    }
}

/// Getter, mutable getter, setter and taker of one rare field.
macro_rules! extra_field {
    ($(#[$doc:meta])* $field:ident, $mut_:ident, $set:ident, $take:ident, $ty:ty, $ref_ty:ty, $as_ref:expr) => {
        $(#[$doc])*
        pub fn $field(&self) -> Option<$ref_ty> {
            self.extra.as_ref().and_then(|x| x.$field.as_ref()).map($as_ref)
        }
        /// The field, for changing in place (`None` when unset).
        pub fn $mut_(&mut self) -> Option<&mut $ty> {
            self.extra.as_mut().and_then(|x| x.$field.as_mut())
        }
        /// Set (or with `None` clear) the field.
        pub fn $set(&mut self, v: Option<$ty>) {
            match v {
                Some(v) => self.extra.get_or_insert_with(Default::default).$field = Some(v),
                None => {
                    self.$take();
                }
            }
        }
        /// Clear the field, returning what it held.
        pub fn $take(&mut self) -> Option<$ty> {
            let x = self.extra.as_mut()?;
            let v = x.$field.take();
            if x.is_empty() {
                self.extra = None;
            }
            v
        }
    };
}

impl FileEntry {
    extra_field!(
        /// Symlink target.
        link_target, link_target_mut, set_link_target, take_link_target,
        Vec<u8>, &[u8], |v: &Vec<u8>| v.as_slice()
    );
    extra_field!(
        /// Hard-link data when `-H` and the entry is linked.
        hard_link, hard_link_mut, set_hard_link, take_hard_link,
        HardLink, &HardLink, |v: &HardLink| v
    );
    extra_field!(
        /// `--checksum` digest (regular files).
        checksum, checksum_mut, set_checksum, take_checksum,
        Vec<u8>, &[u8], |v: &Vec<u8>| v.as_slice()
    );
    extra_field!(
        /// User name sent inline (incremental recursion, first use of the uid).
        user_name, user_name_mut, set_user_name, take_user_name,
        Vec<u8>, &[u8], |v: &Vec<u8>| v.as_slice()
    );
    extra_field!(
        /// Group name sent inline (incremental recursion, first use of the gid).
        group_name, group_name_mut, set_group_name, take_group_name,
        Vec<u8>, &[u8], |v: &Vec<u8>| v.as_slice()
    );
}

/// What the session negotiated that shapes entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlistOpts {
    /// Protocol version.
    pub proto: u8,
    /// CF_VARINT_FLIST_FLAGS.
    pub varint_flags: bool,
    /// -o
    pub preserve_uid: bool,
    /// -g
    pub preserve_gid: bool,
    /// --devices
    pub preserve_devices: bool,
    /// --specials
    pub preserve_specials: bool,
    /// -l
    pub preserve_links: bool,
    /// -H
    pub preserve_hard_links: bool,
    /// -c: length of the flist checksum, 0 when off.
    pub csum_len: usize,
    /// safe flist (CF_SAFE_FLIST or proto >= 31).
    pub safe_flist: bool,
    /// `-X`: an attribute set follows each entry.
    pub xattrs: bool,
}

/// Encoder state for one direction (upstream keeps these in statics).
#[derive(Debug, Default)]
pub struct FlistEncoder {
    opts: FlistOpts,
    last_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    rdev_minor: u32,
    dev: i64,
    ndx_start: i32,
    /// `-X`: the sets sent so far.
    pub xattrs: Option<super::xattr::XattrSendTable>,
    /// `-X`: which names the sender lists (set by the role; `None`: the
    /// options' defaults).
    pub xattr_names: Option<super::xattr::Names>,
    /// `-X`: each directory's set (by name, as [`FileEntry::xattr`]), for
    /// the requests that name a directory by the index before its list.
    pub dir_xattrs: std::collections::HashMap<Vec<u8>, u32>,
}

impl FlistEncoder {
    /// Index of the first entry of the list being written (hard-link
    /// followers of a leader in this list end early).
    pub fn set_ndx_start(&mut self, n: i32) {
        self.ndx_start = n;
    }
}

impl FlistEncoder {
    /// New encoder.
    pub fn new(opts: FlistOpts) -> Self {
        FlistEncoder {
            opts,
            xattrs: opts.xattrs.then(Default::default),
            ..Default::default()
        }
    }

    /// `-X`: write the entry's attribute set after it (upstream
    /// send_xattr); returns the value for [`FileEntry::xattr`] (0 without `-X`).
    pub fn encode_xattrs(&mut self, out: &mut Vec<u8>, set: super::xattr::XattrSet) -> u32 {
        match self.xattrs.as_mut() {
            Some(t) => t.send(out, set) + 1,
            None => 0,
        }
    }

    /// `send_file_entry`.
    pub fn encode(&mut self, out: &mut Vec<u8>, e: &FileEntry) {
        let o = self.opts;
        let proto = o.proto;
        let m = e.mode;
        let mut xf: u32 = if mode::is_dir(m) {
            if proto >= 30 {
                if e.implied_dir {
                    xmit::TOP_DIR | xmit::NO_CONTENT_DIR
                } else if e.no_content_dir {
                    xmit::NO_CONTENT_DIR
                } else if e.top_dir {
                    xmit::TOP_DIR
                } else {
                    0
                }
            } else if e.top_dir {
                xmit::TOP_DIR
            } else {
                0
            }
        } else {
            0
        };
        if m == self.mode {
            xf |= xmit::SAME_MODE;
        } else {
            self.mode = m;
        }
        let is_dev = o.preserve_devices && mode::is_device(m);
        let is_spec = !is_dev && o.preserve_specials && mode::is_special(m) && proto < 31;
        if is_dev {
            if proto < 28 {
                if e.rdev_major == self.rdev_major && e.rdev_minor == self.rdev_minor {
                    xf |= xmit::SAME_RDEV_PRE28;
                } else {
                    self.rdev_major = e.rdev_major;
                    self.rdev_minor = e.rdev_minor;
                }
            } else {
                self.rdev_minor = e.rdev_minor;
                if e.rdev_major == self.rdev_major {
                    xf |= xmit::SAME_RDEV_MAJOR;
                } else {
                    self.rdev_major = e.rdev_major;
                }
                if proto < 30 && e.rdev_minor <= 0xFF {
                    xf |= xmit::RDEV_MINOR_8_PRE30;
                }
            }
        } else if is_spec {
            if proto < 28 {
                xf |= xmit::SAME_RDEV_PRE28;
            } else {
                self.rdev_minor = 0;
                xf |= xmit::SAME_RDEV_MAJOR;
                if proto < 30 {
                    xf |= xmit::RDEV_MINOR_8_PRE30;
                }
            }
        } else if proto < 28 {
            self.rdev_major = 0;
            self.rdev_minor = 0;
        }
        let first = self.last_name.is_empty();
        if !o.preserve_uid || (e.uid == self.uid && !first) {
            xf |= xmit::SAME_UID;
        } else {
            self.uid = e.uid;
            if proto >= 30 && e.user_name().is_some() {
                xf |= xmit::USER_NAME_FOLLOWS;
            }
        }
        if !o.preserve_gid || (e.gid == self.gid && !first) {
            xf |= xmit::SAME_GID;
        } else {
            self.gid = e.gid;
            if proto >= 30 && e.group_name().is_some() {
                xf |= xmit::GROUP_NAME_FOLLOWS;
            }
        }
        if e.mtime == self.mtime {
            xf |= xmit::SAME_TIME;
        } else {
            self.mtime = e.mtime;
        }
        if e.mtime_nsec != 0 && proto >= 31 {
            xf |= xmit::MOD_NSEC;
        }
        let mut first_hlink: Option<i32> = None;
        let mut devino: Option<(i64, i64)> = None;
        if o.preserve_hard_links {
            match e.hard_link() {
                Some(HardLink::First) if proto >= 30 => xf |= xmit::HLINKED | xmit::HLINK_FIRST,
                Some(HardLink::Follower { first }) if proto >= 30 => {
                    xf |= xmit::HLINKED;
                    first_hlink = Some(*first);
                }
                Some(HardLink::DevIno { dev, ino }) if proto < 30 => {
                    if *dev == self.dev {
                        if proto >= 28 {
                            xf |= xmit::SAME_DEV_PRE30;
                        }
                    } else {
                        self.dev = *dev;
                    }
                    if proto >= 28 {
                        xf |= xmit::HLINKED;
                    }
                    devino = Some((*dev, *ino));
                }
                _ => {}
            }
        }
        let name = &e.name;
        let l1 = name
            .iter()
            .zip(self.last_name.iter())
            .take(255)
            .take_while(|(a, b)| a == b)
            .count();
        let l2 = name.len() - l1;
        if l1 > 0 {
            xf |= xmit::SAME_NAME;
        }
        if l2 > 255 {
            xf |= xmit::LONG_NAME;
        }
        if o.varint_flags {
            put_varint(
                out,
                if xf != 0 {
                    xf as i32
                } else {
                    xmit::EXTENDED_FLAGS as i32
                },
            );
        } else if proto >= 28 {
            if xf == 0 && !mode::is_dir(m) {
                xf |= xmit::TOP_DIR;
            }
            if xf & 0xFF00 != 0 || xf == 0 {
                xf |= xmit::EXTENDED_FLAGS;
                put_short(out, xf as u16);
            } else {
                put_byte(out, xf as u8);
            }
        } else {
            if xf & 0xFF == 0 {
                xf |= if mode::is_dir(m) {
                    xmit::LONG_NAME
                } else {
                    xmit::TOP_DIR
                };
            }
            put_byte(out, xf as u8);
        }
        if xf & xmit::SAME_NAME != 0 {
            put_byte(out, l1 as u8);
        }
        if xf & xmit::LONG_NAME != 0 {
            put_varint30(out, l2 as i32, proto);
        } else {
            put_byte(out, l2 as u8);
        }
        out.extend_from_slice(&name[l1..]);
        self.last_name.clear();
        self.last_name.extend_from_slice(name);
        if let Some(f) = first_hlink {
            put_varint(out, f);
            if f >= self.ndx_start {
                return;
            }
        }
        put_varlong30(out, e.size, 3, proto);
        if xf & xmit::SAME_TIME == 0 {
            if proto >= 30 {
                put_varlong(out, e.mtime, 4);
            } else {
                put_int(out, e.mtime as i32);
            }
        }
        if xf & xmit::MOD_NSEC != 0 {
            put_varint(out, e.mtime_nsec as i32);
        }
        if xf & xmit::SAME_MODE == 0 {
            put_int(out, m as i32);
        }
        if o.preserve_uid && xf & xmit::SAME_UID == 0 {
            put_varint30(out, e.uid as i32, proto);
            if let (true, Some(n)) = (xf & xmit::USER_NAME_FOLLOWS != 0, e.user_name()) {
                let n = &n[..n.len().min(255)];
                put_byte(out, n.len() as u8);
                out.extend_from_slice(n);
            }
        }
        if o.preserve_gid && xf & xmit::SAME_GID == 0 {
            put_varint30(out, e.gid as i32, proto);
            if let (true, Some(n)) = (xf & xmit::GROUP_NAME_FOLLOWS != 0, e.group_name()) {
                let n = &n[..n.len().min(255)];
                put_byte(out, n.len() as u8);
                out.extend_from_slice(n);
            }
        }
        if is_dev || is_spec {
            if proto < 28 {
                if xf & xmit::SAME_RDEV_PRE28 == 0 {
                    put_int(
                        out,
                        ((self.rdev_major << 8) | (self.rdev_minor & 0xFF)) as i32,
                    );
                }
            } else {
                if xf & xmit::SAME_RDEV_MAJOR == 0 {
                    put_varint30(out, self.rdev_major as i32, proto);
                }
                let minor = if is_spec { 0 } else { e.rdev_minor };
                if proto >= 30 {
                    put_varint(out, minor as i32);
                } else if xf & xmit::RDEV_MINOR_8_PRE30 != 0 {
                    put_byte(out, minor as u8);
                } else {
                    put_int(out, minor as i32);
                }
            }
        }
        if o.preserve_links && mode::is_lnk(m) {
            let t = e.link_target().unwrap_or(b"");
            put_varint30(out, t.len() as i32, proto);
            out.extend_from_slice(t);
        }
        if let Some((dev, ino)) = devino {
            if proto < 26 {
                put_int(out, (dev + 1) as i32);
                put_int(out, ino as i32);
            } else {
                if xf & xmit::SAME_DEV_PRE30 == 0 {
                    put_longint(out, dev + 1);
                }
                put_longint(out, ino);
            }
        }
        if o.csum_len > 0 && (mode::is_reg(m) || proto < 28) {
            match (e.checksum(), mode::is_reg(m)) {
                (Some(c), true) if c.len() >= o.csum_len => out.extend_from_slice(&c[..o.csum_len]),
                _ => out.extend(std::iter::repeat_n(0u8, o.csum_len)),
            }
        }
    }

    /// `write_end_of_flist`.
    pub fn end(&mut self, out: &mut Vec<u8>, io_error: i32) {
        if self.opts.varint_flags {
            put_varint(out, 0);
            put_varint(out, io_error);
        } else if io_error != 0 && self.opts.safe_flist && self.opts.proto >= 28 {
            put_short(out, (xmit::EXTENDED_FLAGS | xmit::IO_ERROR_ENDLIST) as u16);
            put_varint(out, io_error);
        } else {
            put_byte(out, 0);
        }
    }
}

/// Write one uid or gid list (`send_id_lists` half): `(id, name)` pairs for ids != 0,
/// terminated by 0 or, with `CF_ID0_NAMES`, by the full entry for id 0.
pub fn put_id_list(out: &mut Vec<u8>, ids: &[(u32, Vec<u8>)], proto: u8, id0_name: Option<&[u8]>) {
    for (id, name) in ids {
        if *id == 0 || name.is_empty() {
            continue;
        }
        let n = &name[..name.len().min(255)];
        put_varint30(out, *id as i32, proto);
        put_byte(out, n.len() as u8);
        out.extend_from_slice(n);
    }
    put_varint30(out, 0, proto);
    if let Some(n0) = id0_name {
        let n = &n0[..n0.len().min(255)];
        put_byte(out, n.len() as u8);
        out.extend_from_slice(n);
    }
}

/// Read one id list; returns `(id, name)` pairs (id 0 included when named).
pub fn read_id_list(r: &mut impl Read, proto: u8, id0_names: bool) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut v = Vec::new();
    loop {
        let id = read_varint30(r, proto)?;
        if id == 0 {
            if id0_names {
                let len = read_byte(r)? as usize;
                let mut n = vec![0u8; len];
                r.read_exact(&mut n)?;
                v.push((0, n));
            }
            return Ok(v);
        }
        let len = read_byte(r)? as usize;
        let mut n = vec![0u8; len];
        r.read_exact(&mut n)?;
        v.push((id as u32, n));
        if v.len() > 1 << 20 {
            return Err(ProtoError::invalid("id list too long"));
        }
    }
}

/// One decoded item of a file list: an entry or the end marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlistItem {
    /// An entry.
    Entry(FileEntry),
    /// End of list, with the io_error carried in the marker (if any).
    End(i32),
}

/// Decoder state for one direction (`recv_file_entry`).
#[derive(Debug, Default)]
pub struct FlistDecoder {
    opts: FlistOpts,
    last_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    nsec: u32,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    rdev_minor: u32,
    dev: i64,
    /// Entries decoded so far (for hard-link followers, which copy their leader; kept only with -H).
    entries: Vec<FileEntry>,
    /// Entries decoded so far.
    count: usize,
    ndx_start: i32,
    /// `-X`: the sets received so far (each entry's set follows it).
    pub xattrs: Option<super::xattr::XattrRecvTable>,
}

impl FlistDecoder {
    /// New decoder.
    pub fn new(opts: FlistOpts) -> Self {
        FlistDecoder {
            opts,
            ..Default::default()
        }
    }

    /// Index of the first entry of the list being read (hard-link references
    /// below it carry a full entry).
    pub fn set_ndx_start(&mut self, n: i32) {
        self.ndx_start = n;
        self.entries.clear();
    }

    /// Read the next entry or the end marker.
    pub fn decode(&mut self, r: &mut impl Read) -> Result<FlistItem> {
        let o = self.opts;
        let proto = o.proto;
        let mut xf: u32 = if o.varint_flags {
            read_varint(r)? as u32
        } else {
            let b = read_byte(r)? as u32;
            if proto >= 28 && b & xmit::EXTENDED_FLAGS != 0 {
                b | ((read_byte(r)? as u32) << 8)
            } else {
                b
            }
        };
        if xf == 0 {
            let err = if o.varint_flags { read_varint(r)? } else { 0 };
            return Ok(FlistItem::End(err));
        }
        if !o.varint_flags && xf == (xmit::EXTENDED_FLAGS | xmit::IO_ERROR_ENDLIST) && proto >= 28 {
            return Ok(FlistItem::End(read_varint(r)?));
        }
        if o.varint_flags && xf == xmit::EXTENDED_FLAGS {
            xf = 0;
        }
        let l1 = if xf & xmit::SAME_NAME != 0 {
            read_byte(r)? as usize
        } else {
            0
        };
        let l2 = if xf & xmit::LONG_NAME != 0 {
            read_varint30(r, proto)?
        } else {
            read_byte(r)? as i32
        };
        if l2 < 0 || l1 > self.last_name.len() || l1 + l2 as usize > MAX_PATH_LEN {
            return Err(ProtoError::invalid("overflow: file name too long"));
        }
        let mut name = self.last_name[..l1].to_vec();
        let start = name.len();
        name.resize(start + l2 as usize, 0);
        r.read_exact(&mut name[start..])?;
        self.last_name.clone_from(&name);
        let mut e = FileEntry {
            name,
            ..Default::default()
        };
        let mut follower_of = None;
        if proto >= 30 && xf & xmit::HLINKED != 0 && xf & xmit::HLINK_FIRST == 0 {
            let first = read_varint(r)?;
            let here = self.ndx_start as i64 + self.entries.len() as i64;
            if first < 0 || first as i64 >= here {
                return Err(ProtoError::invalid(format!(
                    "hard-link reference out of range: {first} ({here})"
                )));
            }
            follower_of = Some(first);
        }
        // A follower of an entry of this list comes abbreviated: it is its
        // leader under another name. One of an earlier list (incremental
        // recursion) comes whole (upstream recv_file_entry).
        if let Some(first) = follower_of.filter(|&f| f >= self.ndx_start) {
            let idx = (first - self.ndx_start) as usize;
            let Some(leader) = self.entries.get(idx) else {
                return Err(ProtoError::invalid(format!(
                    "hard-link reference out of range: {first}"
                )));
            };
            let mut f = leader.clone();
            // The next entries' "same as before" flags refer to the
            // leader's attributes, as the sender's state has them
            // (upstream recv_file_entry's abbreviated branch).
            self.mtime = f.mtime;
            self.mode = f.mode;
            if o.preserve_uid {
                self.uid = f.uid;
            }
            if o.preserve_gid {
                self.gid = f.gid;
            }
            if o.preserve_devices && mode::is_device(f.mode) {
                self.rdev_major = f.rdev_major;
            }
            f.name = e.name;
            f.set_hard_link(Some(HardLink::Follower { first }));
            f.top_dir = false;
            // Its own attribute set follows all the same (upstream
            // send_file_name sends one after every entry).
            if let Some(x) = self.xattrs.as_mut() {
                f.xattr = x.recv(r)? + 1;
            }
            self.count += 1;
            self.entries.push(f.clone());
            return Ok(FlistItem::Entry(f));
        }
        e.size = read_varlong30(r, 3, proto)?;
        if xf & xmit::SAME_TIME == 0 {
            self.mtime = if proto >= 30 {
                read_varlong(r, 4)?
            } else {
                read_int(r)? as u32 as i64
            };
        }
        e.mtime = self.mtime;
        e.mtime_nsec = if xf & xmit::MOD_NSEC != 0 {
            read_varint(r)? as u32
        } else {
            0
        };
        let _ = self.nsec;
        if xf & xmit::SAME_MODE == 0 {
            self.mode = read_int(r)? as u32;
        }
        e.mode = self.mode;
        if o.preserve_uid && xf & xmit::SAME_UID == 0 {
            self.uid = read_varint30(r, proto)? as u32;
            if proto >= 30 && xf & xmit::USER_NAME_FOLLOWS != 0 {
                let len = read_byte(r)? as usize;
                let mut n = vec![0u8; len];
                r.read_exact(&mut n)?;
                e.set_user_name(Some(n));
            }
        }
        e.uid = self.uid;
        if o.preserve_gid && xf & xmit::SAME_GID == 0 {
            self.gid = read_varint30(r, proto)? as u32;
            if proto >= 30 && xf & xmit::GROUP_NAME_FOLLOWS != 0 {
                let len = read_byte(r)? as usize;
                let mut n = vec![0u8; len];
                r.read_exact(&mut n)?;
                e.set_group_name(Some(n));
            }
        }
        e.gid = self.gid;
        let m = e.mode;
        let is_dev = o.preserve_devices && mode::is_device(m);
        let is_spec = !is_dev && o.preserve_specials && mode::is_special(m) && proto < 31;
        if is_dev || is_spec {
            if proto < 28 {
                if xf & xmit::SAME_RDEV_PRE28 == 0 {
                    let v = read_int(r)? as u32;
                    self.rdev_major = v >> 8;
                    self.rdev_minor = v & 0xFF;
                }
            } else {
                if xf & xmit::SAME_RDEV_MAJOR == 0 {
                    self.rdev_major = read_varint30(r, proto)? as u32;
                }
                self.rdev_minor = if proto >= 30 {
                    read_varint(r)? as u32
                } else if xf & xmit::RDEV_MINOR_8_PRE30 != 0 {
                    read_byte(r)? as u32
                } else {
                    read_int(r)? as u32
                };
            }
            if is_dev {
                e.rdev_major = self.rdev_major;
                e.rdev_minor = self.rdev_minor;
            }
        }
        if o.preserve_links && mode::is_lnk(m) {
            let len = read_varint30(r, proto)?;
            if !(0..=MAX_PATH_LEN as i32).contains(&len) {
                return Err(ProtoError::invalid(format!("invalid symlink length {len}")));
            }
            let mut t = vec![0u8; len as usize];
            r.read_exact(&mut t)?;
            e.set_link_target(Some(t));
        }
        if o.preserve_hard_links
            && proto < 30
            && (xf & xmit::HLINKED != 0 || (proto < 28 && mode::is_reg(m)))
        {
            if proto < 26 {
                self.dev = read_int(r)? as i64 - 1;
                let ino = read_int(r)? as i64;
                e.set_hard_link(Some(HardLink::DevIno { dev: self.dev, ino }));
            } else {
                if xf & xmit::SAME_DEV_PRE30 == 0 {
                    self.dev = read_longint(r)? - 1;
                }
                let ino = read_longint(r)?;
                e.set_hard_link(Some(HardLink::DevIno { dev: self.dev, ino }));
            }
        } else if let Some(first) = follower_of {
            e.set_hard_link(Some(HardLink::Follower { first }));
        } else if proto >= 30 && xf & xmit::HLINK_FIRST != 0 && xf & xmit::HLINKED != 0 {
            e.set_hard_link(Some(HardLink::First));
        }
        if o.csum_len > 0 && (mode::is_reg(m) || proto < 28) {
            let mut c = vec![0u8; o.csum_len];
            r.read_exact(&mut c)?;
            if mode::is_reg(m) {
                e.set_checksum(Some(c));
            }
        }
        if let Some(x) = self.xattrs.as_mut() {
            e.xattr = x.recv(r)? + 1;
        }
        if mode::is_dir(m) {
            e.top_dir = xf & xmit::TOP_DIR != 0;
            if proto >= 30 && xf & xmit::NO_CONTENT_DIR != 0 {
                if e.top_dir {
                    e.implied_dir = true;
                    e.top_dir = false;
                } else {
                    e.no_content_dir = true;
                }
            }
        }
        self.count += 1;
        if self.count >= 1 << 24 {
            return Err(ProtoError::invalid("file list too long"));
        }
        // Only hard-link followers look back at earlier entries.
        if o.preserve_hard_links && proto >= 30 {
            self.entries.push(e.clone());
        }
        Ok(FlistItem::Entry(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rare_fields_live_in_one_box_that_goes_when_emptied() {
        // The inline part stays small: a sending daemon holds hundreds.
        assert!(std::mem::size_of::<FileEntry>() <= 80);
        let mut e = FileEntry::default();
        e.set_link_target(Some(b"t".to_vec()));
        e.set_checksum(Some(vec![1, 2]));
        assert_eq!(e.link_target(), Some(&b"t"[..]));
        assert_eq!(e.checksum(), Some(&[1u8, 2][..]));
        e.link_target_mut().unwrap().push(b'2');
        assert_eq!(e.take_link_target(), Some(b"t2".to_vec()));
        assert!(e.extra.is_some());
        e.set_checksum(None);
        // Emptied: equal to an entry that never had any.
        assert!(e.extra.is_none());
        assert_eq!(e, FileEntry::default());
        assert_eq!(e.take_user_name(), None);
    }

    #[test]
    fn appendix_b_entry_bytes() {
        let opts = FlistOpts {
            proto: 32,
            varint_flags: true,
            safe_flist: true,
            ..Default::default()
        };
        let mut enc = FlistEncoder::new(opts);
        let mut out = Vec::new();
        let e = FileEntry {
            name: b"five.txt".to_vec(),
            mode: 0o100644,
            size: 5,
            mtime: 1_700_000_000,
            ..Default::default()
        };
        enc.encode(&mut out, &e);
        enc.end(&mut out, 0);
        let mut want = vec![0x18, 8];
        want.extend_from_slice(b"five.txt");
        want.extend_from_slice(&[
            0x00, 0x05, 0x00, 0x65, 0x00, 0xF1, 0x53, 0xA4, 0x81, 0x00, 0x00, 0x00, 0x00,
        ]);
        assert_eq!(out, want);
    }

    fn arb_entry() -> impl Strategy<Value = FileEntry> {
        (
            proptest::collection::vec(1u8..=255, 1..300),
            prop_oneof![
                Just(0o100644u32),
                Just(0o040755),
                Just(0o120777),
                Just(0o020600),
                Just(0o010644),
                Just(0o100600)
            ],
            0i64..1 << 40,
            -(1i64 << 33)..(1i64 << 34),
            0u32..1_000_000_000,
            0u32..70000,
            0u32..70000,
            (0u32..300, 0u32..300),
        )
            .prop_map(|(name, mode, size, mtime, nsec, uid, gid, (maj, min))| {
                let mut e = FileEntry {
                    name,
                    mode,
                    size,
                    mtime,
                    mtime_nsec: nsec,
                    uid,
                    gid,
                    ..Default::default()
                };
                if mode::is_lnk(mode) {
                    e.set_link_target(Some(b"target".to_vec()));
                }
                if mode::is_device(mode) {
                    e.rdev_major = maj;
                    e.rdev_minor = min;
                }
                if mode::is_dir(mode) || mode::is_special(mode) {
                    e.size = 0;
                }
                e
            })
    }

    /// Encode `entries` as one list and decode it again: the entries
    /// decoded (all of them, then the list's end, nothing after it).
    fn encode_then_decode(opts: FlistOpts, entries: &[FileEntry]) -> Vec<FileEntry> {
        encode_then_decode_at(opts, entries, 0)
    }

    /// The same for a list whose first index is `start`.
    fn encode_then_decode_at(opts: FlistOpts, entries: &[FileEntry], start: i32) -> Vec<FileEntry> {
        let mut enc = FlistEncoder::new(opts);
        enc.set_ndx_start(start);
        let mut out = Vec::new();
        for e in entries {
            enc.encode(&mut out, e);
        }
        enc.end(&mut out, 0);
        let mut dec = FlistDecoder::new(opts);
        dec.set_ndx_start(start);
        let mut r = &out[..];
        let mut got = Vec::new();
        for _ in entries {
            match dec.decode(&mut r) {
                Ok(FlistItem::Entry(d)) => got.push(d),
                other => panic!("entry {} decoded as {other:?}", got.len()),
            }
        }
        assert_eq!(dec.decode(&mut r).unwrap(), FlistItem::End(0));
        assert!(r.is_empty());
        got
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn entries_round_trip(entries in proptest::collection::vec(arb_entry(), 1..20), proto in 27u8..=32, varint in any::<bool>()) {
            let varint = varint && proto >= 30;
            let opts = FlistOpts { proto, varint_flags: varint, preserve_uid: true, preserve_gid: true, preserve_devices: true,
                preserve_specials: true, preserve_links: true, safe_flist: proto >= 31, ..Default::default() };
            for (e, mut d) in entries.iter().zip(encode_then_decode(opts, &entries)) {
                let mut want = e.clone();
                if proto < 31 { want.mtime_nsec = 0; d.mtime_nsec = 0; }
                if proto < 30 { want.mtime = want.mtime as u32 as i64; }
                if proto < 28 && mode::is_device(want.mode) { want.rdev_minor &= 0xFF; want.rdev_major &= 0xFF_FFFF; }
                prop_assert_eq!(d, want);
            }
        }

        /// Hard-linked followers (protocol 30+: only their name and the
        /// leader's index go out) between entries of other kinds: every
        /// entry after a follower still decodes as sent (the "same as
        /// before" state follows the leader's attributes on both sides).
        #[test]
        fn followers_round_trip(
            entries in proptest::collection::vec(arb_entry(), 1..20),
            links in proptest::collection::vec(proptest::option::of(0usize..20), 20),
            proto in 30u8..=32,
        ) {
            let mut entries = entries;
            for i in 0..entries.len() {
                let Some(j) = links[i].map(|j| j % (i + 1)).filter(|&j| j < i) else { continue };
                if !mode::is_reg(entries[j].mode) || matches!(entries[j].hard_link(), Some(HardLink::Follower { .. })) {
                    continue;
                }
                entries[j].set_hard_link(Some(HardLink::First));
                let name = entries[i].name.clone();
                let mut f = entries[j].clone();
                f.name = name;
                f.set_hard_link(Some(HardLink::Follower { first: j as i32 }));
                entries[i] = f;
            }
            let opts = FlistOpts { proto, varint_flags: proto >= 30, preserve_uid: true, preserve_gid: true, preserve_devices: true,
                preserve_specials: true, preserve_links: true, preserve_hard_links: true, safe_flist: proto >= 31, ..Default::default() };
            for (e, mut d) in entries.iter().zip(encode_then_decode(opts, &entries)) {
                let mut want = e.clone();
                if proto < 31 { want.mtime_nsec = 0; d.mtime_nsec = 0; }
                want.top_dir = d.top_dir;
                prop_assert_eq!(d, want);
            }
        }

        /// Incremental recursion: a follower of an entry of an earlier list
        /// comes whole, among abbreviated followers of this list's entries.
        #[test]
        fn followers_of_earlier_lists_round_trip(
            entries in proptest::collection::vec(arb_entry(), 1..20),
            links in proptest::collection::vec(proptest::option::of(0usize..40), 20),
            start in 1i32..1000,
        ) {
            let mut entries = entries;
            for i in 0..entries.len() {
                let Some(k) = links[i] else { continue };
                if k >= 20 {
                    // Of an earlier list: any index below this list's start.
                    if !mode::is_dir(entries[i].mode) && !matches!(entries[i].hard_link(), Some(HardLink::First)) {
                        entries[i].set_hard_link(Some(HardLink::Follower { first: (k as i32 * 7919) % start }));
                    }
                    continue;
                }
                let j = k % (i + 1);
                if j >= i || !mode::is_reg(entries[j].mode) || matches!(entries[j].hard_link(), Some(HardLink::Follower { .. })) {
                    continue;
                }
                entries[j].set_hard_link(Some(HardLink::First));
                let name = entries[i].name.clone();
                let mut f = entries[j].clone();
                f.name = name;
                f.set_hard_link(Some(HardLink::Follower { first: start + j as i32 }));
                entries[i] = f;
            }
            let opts = FlistOpts { proto: 32, varint_flags: true, preserve_uid: true, preserve_gid: true, preserve_devices: true,
                preserve_specials: true, preserve_links: true, preserve_hard_links: true, safe_flist: true, ..Default::default() };
            for (e, d) in entries.iter().zip(encode_then_decode_at(opts, &entries, start)) {
                let mut want = e.clone();
                want.top_dir = d.top_dir;
                prop_assert_eq!(d, want);
            }
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), proto in 27u8..=32) {
            let opts = FlistOpts { proto, varint_flags: proto >= 30, preserve_uid: true, preserve_gid: true,
                preserve_links: true, preserve_hard_links: true, preserve_devices: true, csum_len: 16, ..Default::default() };
            let mut dec = FlistDecoder::new(opts);
            let mut r = &bytes[..];
            for _ in 0..50 { match dec.decode(&mut r) { Ok(FlistItem::Entry(_)) => {}, _ => break } }
        }
    }
}
