//! `-X` on the receiving side (upstream xattrs.c's generator and receiver
//! halves): the sets received with the list, which long values the
//! generator has asked for, which the receiver holds, and applying a set
//! to a destination entry.
//!
//! As upstream, the generator only reports and asks: it compares each
//! entry's set with the destination's (`x` in the item), and after an
//! item record asks the sender for the long values the destination lacks,
//! each at most once per set. The receiver sets the attributes: after a
//! file's data (on the temp file, before it is renamed), or when the
//! sender echoes a record that reports them.

use crate::fs::dest::DestRoot;
use crate::fs::xattr::{self, Names, Target};
use crate::protocol::flist::FileEntry;
use crate::protocol::xattr::{shared_get, SharedSets, Xattr, XattrSet};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The receiving side's attribute state for one transfer.
pub struct XattrState {
    /// Every set received with the lists.
    pub sets: SharedSets,
    /// Which names this side copies.
    pub names: Names,
    /// The generator: long items it asked for, or found here (upstream
    /// XSTATE_DONE), by (set, number).
    asked: Mutex<HashSet<(u32, u32)>>,
    /// The receiver: long values it holds (sent to it, or found here).
    values: Mutex<HashMap<(u32, u32), Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl std::fmt::Debug for XattrState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XattrState")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The outcome of applying a set: messages to report (as upstream words them).
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Something was set or removed.
    pub changed: bool,
    /// Transfer errors (`rsync_xal_set: lsetxattr(...) failed: ...`).
    pub errors: Vec<String>,
}

impl XattrState {
    /// State over the sets `sets` receives.
    pub fn new(sets: SharedSets, names: Names) -> XattrState {
        XattrState {
            sets,
            names,
            asked: Mutex::default(),
            values: Mutex::default(),
        }
    }

    /// The entry's set (`None` for an entry that came without one).
    pub fn set_of(&self, e: &FileEntry) -> Option<Arc<XattrSet>> {
        e.xattr
            .checked_sub(1)
            .and_then(|i| shared_get(&self.sets, i))
    }

    fn local(&self, dest: &DestRoot, rel: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Ok(at) = dest.at(rel) else {
            return Vec::new();
        };
        let leaf = at.leaf.clone();
        xattr::read(
            Target::At {
                dir: at.dirfd(),
                leaf: &leaf,
            },
            |n| self.names.local_keeps(n),
        )
        .unwrap_or_default()
    }

    /// Do the entry's attributes differ from those of `rel` (`exists`:
    /// it is there)? (upstream itemize's xattr_diff)
    pub fn differs(&self, e: &FileEntry, dest: &DestRoot, rel: &[u8], exists: bool) -> bool {
        let Some(set) = self.set_of(e) else {
            return false;
        };
        if !exists {
            return !set.items.is_empty();
        }
        xattr::differs(&set, &self.local(dest, rel), |_| {})
    }

    /// The generator's request after an item record for `e` (upstream
    /// send_xattr_request from itemize): with `report` (the record says
    /// the attributes differ), the numbers of the long items `rel` lacks
    /// that were not asked for yet; either way every long item of the set
    /// counts as asked for from now on.
    pub fn request(&self, e: &FileEntry, dest: &DestRoot, rel: &[u8], report: bool) -> Vec<u32> {
        let Some(set) = self.set_of(e) else {
            return Vec::new();
        };
        let set_ndx = e.xattr - 1;
        let mut asked = lock(&self.asked);
        let mut want = Vec::new();
        if report
            && set
                .items
                .iter()
                .any(|x| x.abbreviated() && !asked.contains(&(set_ndx, x.num)))
        {
            let local = self.local(dest, rel);
            xattr::differs(&set, &local, |x| {
                if x.abbreviated() && !asked.contains(&(set_ndx, x.num)) {
                    want.push(x.num);
                }
            });
        }
        for x in set.items.iter().filter(|x| x.abbreviated()) {
            asked.insert((set_ndx, x.num));
        }
        want.sort_unstable();
        want
    }

    /// The receiver: keep the long values the sender sent for `e`'s set
    /// (upstream recv_xattr_request); a number the set has no long item
    /// for breaks the protocol.
    pub fn received(&self, e: &FileEntry, values: Vec<(u32, Vec<u8>)>) -> Result<(), String> {
        if values.is_empty() {
            return Ok(());
        }
        let Some(set) = self.set_of(e) else {
            return Err("recv_xattr_request: internal data error!".into());
        };
        let set_ndx = e.xattr - 1;
        let mut held = lock(&self.values);
        for (num, v) in values {
            match set.by_num(num) {
                Some(x) if x.abbreviated() => {
                    held.insert((set_ndx, num), v);
                }
                _ => {
                    return Err(format!(
                        "could not find xattr #{num} for {}",
                        crate::protocol::text::name(&e.name)
                    ))
                }
            }
        }
        Ok(())
    }

    /// The value of a long item: held, or read from `basis` (the
    /// destination's entry) when its digest matches, and then held.
    fn long_value(&self, set_ndx: u32, x: &Xattr, basis: Option<Target<'_>>) -> Option<Vec<u8>> {
        if let Some(v) = lock(&self.values).get(&(set_ndx, x.num)) {
            return Some(v.clone());
        }
        let v = xattr::get(basis?, &x.name).ok()?;
        if !x.matches(&v) {
            return None;
        }
        lock(&self.values).insert((set_ndx, x.num), v.clone());
        Some(v)
    }

    /// Make `target`'s attributes equal `e`'s set (upstream set_xattr),
    /// long values found as [`XattrState::long_value`] says with `basis`.
    /// `shown`: the name messages give.
    pub fn apply(
        &self,
        e: &FileEntry,
        target: Target<'_>,
        basis: Option<Target<'_>>,
        shown: &str,
    ) -> ApplyReport {
        let mut rep = ApplyReport::default();
        let Some(set) = self.set_of(e) else {
            return rep;
        };
        let set_ndx = e.xattr - 1;
        let r = xattr::apply(target, &set, &self.names, |x| {
            self.long_value(set_ndx, x, basis)
        });
        match r {
            Ok(done) => {
                rep.changed = done.changed;
                for (what, errno) in done.failed {
                    rep.errors.push(format!(
                        "rsync_xal_set: l{what} failed on {shown}: {}",
                        crate::fs::dest::errno_text(errno)
                    ));
                }
                for name in done.missing {
                    rep.errors.push(format!(
                        "Missing abbreviated xattr value, {}, for {shown}",
                        String::from_utf8_lossy(&name)
                    ));
                }
            }
            Err(err) => rep.errors.push(format!(
                "get_xattr_names: llistxattr({shown},1024) failed: {}",
                crate::fs::dest::errno_text(err.raw_os_error().unwrap_or(0))
            )),
        }
        rep
    }

    /// [`XattrState::apply`] to `rel` in `dest`, long values from `rel` itself.
    pub fn apply_at(&self, e: &FileEntry, dest: &DestRoot, rel: &[u8]) -> ApplyReport {
        let Ok(at) = dest.at(rel) else {
            return ApplyReport::default();
        };
        let leaf = at.leaf.clone();
        let t = Target::At {
            dir: at.dirfd(),
            leaf: &leaf,
        };
        self.apply(e, t, Some(t), &dest.show(rel))
    }
}
