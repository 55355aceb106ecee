//! Extended attributes on the wire (`-X`; upstream xattrs.c): the set
//! sent after each file-list entry, the generator's request for the long
//! values it lacks, and the sender's answer carrying them.
//!
//! A set goes out once; a later entry with an equal set names it by
//! index (`ndx + 1`, `0` meaning a literal set follows). Values longer
//! than [`MAX_FULL_DATUM`] travel abbreviated, as their MD5 digest; a
//! receiver whose own file lacks the value asks for it by the item's
//! number (its 1-based place in the sender's sorted set).

use super::varint::{put_varint, read_varint};
use super::{ProtoError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};

/// Values up to this many bytes travel in full (upstream MAX_FULL_DATUM).
pub const MAX_FULL_DATUM: usize = 32;
/// Length of the digest an abbreviated value travels as (MD5).
pub const DIGEST_LEN: usize = 16;
/// Most items in one set we accept (upstream MAX_WIRE_XATTR_COUNT).
pub const MAX_ITEMS: i32 = 1 << 20;
/// Longest name we accept, its NUL included (upstream MAX_WIRE_XATTR_NAMELEN).
pub const MAX_NAME_LEN: i32 = 64 * 1024;
/// Longest value we accept (upstream MAX_XATTR_VALUE_BYTES).
pub const MAX_VALUE_LEN: i32 = 128 * 1024 * 1024;
/// Most bytes of names and values in one set (upstream MAX_XATTR_LIST_BYTES).
pub const MAX_SET_BYTES: usize = 512 * 1024 * 1024;
/// Most sets one transfer may define.
pub const MAX_SETS: usize = 1 << 24;

/// One attribute of a set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xattr {
    /// Its name, without the trailing NUL the wire carries.
    pub name: Vec<u8>,
    /// The value's length.
    pub len: usize,
    /// The value, or when [`Xattr::abbreviated`] its MD5 digest.
    pub value: Vec<u8>,
    /// Its number in the sender's set (1-based place in name order).
    pub num: u32,
}

impl Xattr {
    /// An attribute as the sender lists it: a long value abbreviated.
    pub fn from_value(name: Vec<u8>, value: &[u8]) -> Xattr {
        let v = if value.len() > MAX_FULL_DATUM {
            digest(value).to_vec()
        } else {
            value.to_vec()
        };
        Xattr {
            name,
            len: value.len(),
            value: v,
            num: 0,
        }
    }

    /// Does the value travel as a digest?
    pub fn abbreviated(&self) -> bool {
        self.len > MAX_FULL_DATUM
    }

    /// Is `value` the value this item stands for?
    pub fn matches(&self, value: &[u8]) -> bool {
        if value.len() != self.len {
            return false;
        }
        if self.abbreviated() {
            digest(value)[..] == self.value[..]
        } else {
            value == &self.value[..]
        }
    }
}

/// The digest an abbreviated value travels as.
pub fn digest(value: &[u8]) -> [u8; DIGEST_LEN] {
    use md5::Digest;
    md5::Md5::digest(value).into()
}

/// One entry's attributes, in name order, numbered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct XattrSet {
    /// The attributes.
    pub items: Vec<Xattr>,
}

impl XattrSet {
    /// A sender's set: sorted by name and numbered (upstream rsync_xal_get).
    pub fn sorted(mut items: Vec<Xattr>) -> XattrSet {
        items.sort_by(|a, b| a.name.cmp(&b.name));
        for (i, x) in items.iter_mut().enumerate() {
            x.num = i as u32 + 1;
        }
        XattrSet { items }
    }

    /// The item numbered `num`.
    pub fn by_num(&self, num: u32) -> Option<&Xattr> {
        self.items.iter().find(|x| x.num == num)
    }
}

/// Which attribute names a side copies (upstream rsync_xal_get,
/// receive_xattr and rsync_xal_set).
#[derive(Clone)]
pub struct Names {
    /// The side runs as root (it copies every namespace but `system.`,
    /// else only `user.`).
    pub am_root: bool,
    /// How many `-X` were given (two copy rsync's own `user.rsync.%` names).
    pub level: u8,
    /// Filter rules for attribute names (`x` rules), when there are any:
    /// true when a name is excluded. They replace the namespace choice.
    pub excluded: Option<NameRule>,
}

/// A test of a name against the `x` filter rules (true: excluded).
pub type NameRule = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("am_root", &self.am_root)
            .field("level", &self.level)
            .field("rules", &self.excluded.is_some())
            .finish()
    }
}

const USER: &[u8] = b"user.";
const SYSTEM: &[u8] = b"system.";
const RSYNC: &[u8] = b"user.rsync.";

fn rsync_internal(name: &[u8]) -> bool {
    name.len() > RSYNC.len() && name.starts_with(RSYNC) && name[RSYNC.len()] == b'%'
}

impl Names {
    /// Does a sender list `name`? (Every namespace but `system.`, which
    /// holds ACLs.)
    pub fn sender_keeps(&self, name: &[u8]) -> bool {
        let ok = match &self.excluded {
            Some(ex) => !ex(name),
            None => !name.starts_with(SYSTEM),
        };
        ok && !(rsync_internal(name) && self.level < 2)
    }

    /// Does a receiving side count its own `name` (to compare, or to
    /// remove when the sender lacks it)?
    pub fn local_keeps(&self, name: &[u8]) -> bool {
        match &self.excluded {
            Some(ex) => !ex(name),
            None if self.am_root => !name.starts_with(SYSTEM),
            None => name.starts_with(USER),
        }
    }

    /// The name a receiver stores a received `name` under, or `None` when
    /// it drops it (upstream receive_xattr: not root, another namespace
    /// is dropped, or with `x` rules kept under `user.rsync.`).
    pub fn wire_keep(&self, name: &[u8]) -> Option<Vec<u8>> {
        if let Some(ex) = &self.excluded {
            if ex(name) {
                return None;
            }
        }
        let mut n = name.to_vec();
        if !self.am_root && !name.starts_with(USER) {
            self.excluded.as_ref()?;
            n = [RSYNC, name].concat();
        }
        if self.level < 2 && rsync_internal(&n) {
            return None;
        }
        Some(n)
    }
}

/// The sender's sets (upstream rsync_xal_l): each sent once, then named.
#[derive(Debug, Default)]
pub struct XattrSendTable {
    /// By index; each shared with its key in `index`.
    sets: Vec<Arc<XattrSet>>,
    index: HashMap<Arc<XattrSet>, u32>,
}

impl XattrSendTable {
    /// Write `set` after an entry: its index when sent before, else in
    /// full. Returns the set's index.
    pub fn send(&mut self, out: &mut Vec<u8>, set: XattrSet) -> u32 {
        if let Some(&ndx) = self.index.get(&set) {
            put_varint(out, ndx as i32 + 1);
            return ndx;
        }
        put_varint(out, 0);
        put_varint(out, set.items.len() as i32);
        for x in &set.items {
            put_varint(out, x.name.len() as i32 + 1);
            put_varint(out, x.len as i32);
            out.extend_from_slice(&x.name);
            out.push(0);
            out.extend_from_slice(&x.value);
        }
        let ndx = self.sets.len() as u32;
        let set = Arc::new(set);
        self.index.insert(set.clone(), ndx);
        self.sets.push(set);
        ndx
    }

    /// The set sent as `ndx`.
    pub fn get(&self, ndx: u32) -> Option<&XattrSet> {
        self.sets.get(ndx as usize).map(|s| &**s)
    }
}

/// Sets received so far, shared by the list reader, the generator and the receiver.
pub type SharedSets = Arc<RwLock<Vec<Arc<XattrSet>>>>;

/// The set received as `ndx`.
pub fn shared_get(sets: &SharedSets, ndx: u32) -> Option<Arc<XattrSet>> {
    let g = match sets.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.get(ndx as usize).cloned()
}

/// What a receiver keeps of each received name: the name to store it
/// under, or `None` to drop it (upstream receive_xattr's namespace and
/// filter checks).
pub type NameKeeper = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// The receiving side of the sets (upstream receive_xattr).
pub struct XattrRecvTable {
    /// Every set received, by index.
    pub sets: SharedSets,
    keep: NameKeeper,
}

impl std::fmt::Debug for XattrRecvTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XattrRecvTable").finish_non_exhaustive()
    }
}

fn bounded(r: &mut impl Read, max: i32, what: &str) -> Result<usize> {
    let v = read_varint(r)?;
    if !(0..=max).contains(&v) {
        return Err(ProtoError::invalid(format!("invalid {what}: {v}")));
    }
    Ok(v as usize)
}

fn read_exact_vec(r: &mut impl Read, len: usize) -> Result<Vec<u8>> {
    // Grows as the bytes arrive: a length alone never allocates much.
    let mut v = Vec::with_capacity(len.min(64 * 1024));
    let got = r.take(len as u64).read_to_end(&mut v)?;
    if got != len {
        return Err(ProtoError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(v)
}

impl XattrRecvTable {
    /// A table whose names pass through `keep`.
    pub fn new(keep: NameKeeper) -> XattrRecvTable {
        XattrRecvTable {
            sets: Arc::new(RwLock::new(Vec::new())),
            keep,
        }
    }

    /// Read the set after an entry; returns its index.
    pub fn recv(&mut self, r: &mut impl Read) -> Result<u32> {
        let ndx = read_varint(r)?;
        let have = match self.sets.read() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        };
        if ndx < 0 || ndx as usize > have {
            return Err(ProtoError::invalid(format!(
                "receive_xattr: xa index {ndx} out of range"
            )));
        }
        if ndx != 0 {
            return Ok(ndx as u32 - 1);
        }
        if have >= MAX_SETS {
            return Err(ProtoError::invalid("too many xattr sets"));
        }
        let count = bounded(r, MAX_ITEMS, "xattr count")?;
        let mut items = Vec::new();
        let mut total = 0usize;
        for num in 1..=count {
            let name_len = bounded(r, MAX_NAME_LEN, "xattr name_len")?;
            let len = bounded(r, MAX_VALUE_LEN, "xattr datum_len")?;
            total = total.saturating_add(name_len).saturating_add(len);
            if total > MAX_SET_BYTES {
                return Err(ProtoError::invalid("xattr list exceeds per-file limit"));
            }
            let mut name = read_exact_vec(r, name_len)?;
            if name.pop() != Some(0) || name.contains(&0) {
                return Err(ProtoError::invalid(
                    "Invalid xattr name received (missing trailing \\0).",
                ));
            }
            let vlen = if len > MAX_FULL_DATUM {
                DIGEST_LEN
            } else {
                len
            };
            let value = read_exact_vec(r, vlen)?;
            if let Some(name) = (self.keep)(&name) {
                items.push(Xattr {
                    name,
                    len,
                    value,
                    num: num as u32,
                });
            }
        }
        // Names renamed on the way in may sort elsewhere now.
        items.sort_by(|a, b| a.name.cmp(&b.name));
        let mut g = match self.sets.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.push(Arc::new(XattrSet { items }));
        Ok(g.len() as u32 - 1)
    }
}

/// The generator's request for long values (upstream send_xattr_request
/// without a name): the items' numbers as increments, then a 0 byte.
pub fn put_request(out: &mut Vec<u8>, nums: &[u32]) {
    let mut prior = 0i64;
    for &n in nums {
        put_varint(out, (n as i64 - prior) as i32);
        prior = n as i64;
    }
    out.push(0);
}

/// Read a request (its numbers, in the order given).
pub fn read_request(r: &mut impl Read) -> Result<Vec<u32>> {
    let mut nums = Vec::new();
    let mut num: i64 = 0;
    loop {
        let rel = read_varint(r)?;
        if rel == 0 {
            return Ok(nums);
        }
        num += rel as i64;
        if num <= 0 || num > MAX_ITEMS as i64 || nums.len() >= MAX_ITEMS as usize {
            return Err(ProtoError::invalid(format!("invalid xattr number {num}")));
        }
        nums.push(num as u32);
    }
}

/// The sender's answer: each requested item's number (as an increment),
/// its length and its value, then a 0 byte.
pub fn put_values(out: &mut Vec<u8>, values: &[(u32, Vec<u8>)]) {
    let mut prior = 0i64;
    for (n, v) in values {
        put_varint(out, (*n as i64 - prior) as i32);
        prior = *n as i64;
        put_varint(out, v.len() as i32);
        out.extend_from_slice(v);
    }
    out.push(0);
}

/// Read the sender's answer: (number, value) pairs.
pub fn read_values(r: &mut impl Read) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut num: i64 = 0;
    let mut total = 0usize;
    loop {
        let rel = read_varint(r)?;
        if rel == 0 {
            return Ok(out);
        }
        num += rel as i64;
        if num <= 0 || num > MAX_ITEMS as i64 {
            return Err(ProtoError::invalid(format!("could not find xattr #{num}")));
        }
        let len = bounded(r, MAX_VALUE_LEN, "xattr datum_len")?;
        total = total.saturating_add(len);
        if total > MAX_SET_BYTES {
            return Err(ProtoError::invalid("xattr list exceeds per-file limit"));
        }
        out.push((num as u32, read_exact_vec(r, len)?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keep_all() -> NameKeeper {
        Arc::new(|n: &[u8]| Some(n.to_vec()))
    }

    #[test]
    fn a_set_goes_once_then_by_index() {
        let set = XattrSet::sorted(vec![
            Xattr::from_value(b"user.b".to_vec(), b"short"),
            Xattr::from_value(b"user.a".to_vec(), &[7u8; 40]),
        ]);
        assert_eq!(set.items[0].name, b"user.a");
        assert_eq!(set.items[0].num, 1);
        assert!(set.items[0].abbreviated());
        let mut tx = XattrSendTable::default();
        let mut out = Vec::new();
        assert_eq!(tx.send(&mut out, set.clone()), 0);
        let literal = out.len();
        assert_eq!(tx.send(&mut out, set.clone()), 0);
        assert_eq!(&out[literal..], &[1]);
        // name_len with the NUL, the full length, the name, the digest.
        assert_eq!(&out[..5], &[0, 2, 7, 40, b'u']);
        let mut rx = XattrRecvTable::new(keep_all());
        let mut r = &out[..];
        assert_eq!(rx.recv(&mut r).unwrap(), 0);
        assert_eq!(rx.recv(&mut r).unwrap(), 0);
        assert!(r.is_empty());
        let got = shared_get(&rx.sets, 0).unwrap();
        assert_eq!(*got, set);
        assert!(got.items[0].matches(&[7u8; 40]));
        assert!(!got.items[0].matches(&[8u8; 40]));
    }

    #[test]
    fn hostile_sets_are_refused() {
        let mut rx = XattrRecvTable::new(keep_all());
        // An index not yet defined.
        assert!(rx.recv(&mut &[5u8][..]).is_err());
        // A name without its NUL.
        let mut b = Vec::new();
        put_varint(&mut b, 0);
        put_varint(&mut b, 1);
        put_varint(&mut b, 2);
        put_varint(&mut b, 1);
        b.extend_from_slice(b"ab");
        b.push(b'v');
        assert!(rx.recv(&mut &b[..]).is_err());
        // A huge count with nothing behind it ends early, without allocating it.
        let mut b = Vec::new();
        put_varint(&mut b, 0);
        put_varint(&mut b, MAX_ITEMS);
        assert!(rx.recv(&mut &b[..]).is_err());
        let mut b = Vec::new();
        put_varint(&mut b, 0);
        put_varint(&mut b, 1);
        put_varint(&mut b, 3);
        put_varint(&mut b, MAX_VALUE_LEN);
        b.extend_from_slice(b"ab\0");
        assert!(rx.recv(&mut &b[..]).is_err());
        // A request that wraps below 1.
        let mut b = Vec::new();
        put_varint(&mut b, 2);
        put_varint(&mut b, -5);
        assert!(read_request(&mut &b[..]).is_err());
    }

    #[test]
    fn names_the_receiver_drops_keep_the_numbers() {
        let set = XattrSet::sorted(vec![
            Xattr::from_value(b"security.x".to_vec(), b"1"),
            Xattr::from_value(b"user.y".to_vec(), b"2"),
        ]);
        let mut out = Vec::new();
        XattrSendTable::default().send(&mut out, set);
        let mut rx = XattrRecvTable::new(Arc::new(|n: &[u8]| {
            n.starts_with(b"user.").then(|| n.to_vec())
        }));
        rx.recv(&mut &out[..]).unwrap();
        let got = shared_get(&rx.sets, 0).unwrap();
        assert_eq!(got.items.len(), 1);
        assert_eq!(got.items[0].num, 2);
    }

    proptest! {
        #[test]
        fn sets_round_trip(items in prop::collection::vec(
            (prop::collection::vec(1u8..=255, 1..20), prop::collection::vec(any::<u8>(), 0..80)), 0..6)) {
            let mut seen = std::collections::HashSet::new();
            let xs: Vec<Xattr> = items.into_iter()
                .filter(|(n, _)| seen.insert(n.clone()))
                .map(|(n, v)| Xattr::from_value(n, &v)).collect();
            let set = XattrSet::sorted(xs);
            let mut out = Vec::new();
            let mut tx = XattrSendTable::default();
            tx.send(&mut out, set.clone());
            tx.send(&mut out, set.clone());
            let mut rx = XattrRecvTable::new(keep_all());
            let mut r = &out[..];
            prop_assert_eq!(rx.recv(&mut r).unwrap(), 0);
            prop_assert_eq!(rx.recv(&mut r).unwrap(), 0);
            prop_assert!(r.is_empty());
            prop_assert_eq!(&*shared_get(&rx.sets, 0).unwrap(), &set);
        }

        #[test]
        fn requests_and_values_round_trip(nums in prop::collection::btree_set(1u32..1000, 0..10),
                                          vals in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 10)) {
            let nums: Vec<u32> = nums.into_iter().collect();
            let mut out = Vec::new();
            put_request(&mut out, &nums);
            prop_assert_eq!(read_request(&mut &out[..]).unwrap(), nums.clone());
            let pairs: Vec<(u32, Vec<u8>)> = nums.iter().zip(vals).map(|(n, v)| (*n, v)).collect();
            let mut out = Vec::new();
            put_values(&mut out, &pairs);
            prop_assert_eq!(read_values(&mut &out[..]).unwrap(), pairs);
        }
    }
}
