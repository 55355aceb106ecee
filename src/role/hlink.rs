//! Hard-link groups on the receiving side (upstream hlink.c): which member
//! of a group gets the data, which members wait for it, and in what order
//! the others are linked to it.
//!
//! Members are met in the generator's order, list after list. A member
//! missing here that is not the group's last one known so far is deferred:
//! the last one gets the data (upstream's FLAG_HLINK_LAST). A member already
//! current, or just made (symlinks, devices, specials), becomes the group's
//! file at once. When a member's file is in place, the members behind it are
//! linked to it: first those that waited for its transfer, in the order they
//! came, then the deferred ones from the latest back (upstream's F_HL_PREV
//! chain). Members met after that link to it as they come. This module only
//! keeps the books; the generator makes the files and the links.

use crate::flist::recv::{HlinkGroup, RecvList};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Missing here and not the last member: made when another one is.
    Deferred,
    /// Its data is on the way.
    Sent,
    /// Waits for the transfer of an earlier member.
    Waiting,
    /// In place: current, transferred or linked.
    Done,
    /// Handled without being made or linked (--max-size, --update, a
    /// failed transfer, ...).
    Other,
}

/// One member of a group.
#[derive(Debug)]
pub struct Member {
    /// Its wire index.
    pub wire: i32,
    /// Its list and position there, while it may still be made or linked.
    pub src: Option<(Arc<RecvList>, usize)>,
    /// Where it stands.
    pub state: State,
}

impl Member {
    /// Its name.
    pub fn name(&self) -> &[u8] {
        self.src
            .as_ref()
            .map(|(l, i)| &l.files[*i].name[..])
            .unwrap_or(b"")
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Members met and not left out, in the order met.
    members: Vec<Member>,
    /// The name of the member whose file is the group's, once one is
    /// (upstream: FLAG_HLINK_DONE with FLAG_HLINK_FIRST).
    done: Option<Vec<u8>>,
    /// Wire index of the group's last member in the lists seen so far.
    last: i32,
}

/// What to do with a member the generator meets.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Handle it as any file; report the outcome.
    Handle,
    /// Link it to this name now.
    LinkTo(Vec<u8>),
    /// An earlier member's data is on the way: it waits (already noted).
    Wait,
}

/// The groups of one transfer.
#[derive(Debug, Default)]
pub struct HardLinks {
    groups: HashMap<HlinkGroup, Group>,
    /// Group of each member whose data is on the way.
    in_flight: HashMap<i32, HlinkGroup>,
}

impl HardLinks {
    /// A list arrived: its members are the last of their groups so far
    /// (upstream match_gnums clears the earlier last's flag).
    pub fn note_list(&mut self, list: &RecvList) {
        for (i, k) in list.hlink.iter().enumerate() {
            if let Some(k) = k {
                if list.active[i] {
                    self.groups.entry(*k).or_default().last = list.ndx_start + i as i32;
                }
            }
        }
    }

    /// Whether `wire` is its group's last member known so far.
    pub fn is_last(&self, key: HlinkGroup, wire: i32) -> bool {
        self.groups.get(&key).is_none_or(|g| g.last == wire)
    }

    /// Meeting a member (upstream hard_link_check): what its predecessor in
    /// the group says about it.
    pub fn check(&mut self, key: HlinkGroup, wire: i32, src: (Arc<RecvList>, usize)) -> Check {
        let g = self.groups.entry(key).or_default();
        match g.members.last().map(|m| m.state) {
            Some(State::Done) => match &g.done {
                Some(name) => Check::LinkTo(name.clone()),
                None => Check::Handle,
            },
            Some(State::Sent) | Some(State::Waiting) => {
                g.members.push(Member {
                    wire,
                    src: Some(src),
                    state: State::Waiting,
                });
                Check::Wait
            }
            _ => Check::Handle,
        }
    }

    /// How the handling of a member ended (or a link to the group's file).
    pub fn handled(
        &mut self,
        key: HlinkGroup,
        wire: i32,
        src: (Arc<RecvList>, usize),
        state: State,
    ) {
        let g = self.groups.entry(key).or_default();
        let src = (state != State::Done).then_some(src);
        g.members.push(Member { wire, src, state });
        if state == State::Sent {
            self.in_flight.insert(wire, key);
        }
    }

    /// A member left out (refused, --existing, ...; upstream
    /// handle_skipped_hlink): when it was the last, the latest member
    /// before it that is neither in place nor on its way becomes the last,
    /// and is handed back to be handled again.
    pub fn skipped(&mut self, key: HlinkGroup, wire: i32) -> Option<Member> {
        let g = self.groups.get_mut(&key)?;
        if g.last != wire {
            return None;
        }
        let m = g.members.last()?;
        if matches!(m.state, State::Done | State::Sent | State::Waiting) {
            return None;
        }
        let m = g.members.pop()?;
        g.last = m.wire;
        Some(m)
    }

    /// The member on its way whose transfer ended, if `wire` is one:
    /// its group.
    pub fn arrived(&mut self, wire: i32) -> Option<HlinkGroup> {
        self.in_flight.remove(&wire)
    }

    /// The name of member `wire`, while it is not in place.
    pub fn name_of(&self, key: HlinkGroup, wire: i32) -> Option<Vec<u8>> {
        let g = self.groups.get(&key)?;
        let m = g.members.iter().find(|m| m.wire == wire)?;
        m.src.as_ref().map(|_| m.name().to_vec())
    }

    /// A transfer ended without the file (upstream: no MSG_SUCCESS): the
    /// members waiting for it stay as they are.
    pub fn failed(&mut self, key: HlinkGroup, wire: i32) {
        if let Some(m) = self
            .groups
            .get_mut(&key)
            .and_then(|g| g.members.iter_mut().find(|m| m.wire == wire))
        {
            m.state = State::Other;
            m.src = None;
        }
    }

    /// Member `wire`'s file, named `name`, is in place (upstream
    /// finish_hard_link): it becomes the group's file, and the members to
    /// link to it come back in linking order (those that waited for it,
    /// as they came, then the earlier ones from the latest back).
    pub fn finish(&mut self, key: HlinkGroup, wire: i32, name: &[u8]) -> Vec<Member> {
        let g = self.groups.entry(key).or_default();
        g.done = Some(name.to_vec());
        let at = g.members.iter().position(|m| m.wire == wire);
        let mut out = Vec::new();
        if let Some(at) = at {
            g.members[at].state = State::Done;
            g.members[at].src = None;
            for m in &mut g.members[at + 1..] {
                if m.state == State::Waiting {
                    out.push(take_done(m));
                }
            }
            for m in g.members[..at].iter_mut().rev() {
                if matches!(m.state, State::Deferred | State::Other) {
                    out.push(take_done(m));
                }
            }
        }
        // Only the latest member's state matters from here on.
        if let Some(last) = g.members.pop() {
            g.members.clear();
            g.members.push(Member {
                wire: last.wire,
                src: None,
                state: State::Done,
            });
        }
        out
    }
}

/// The member as it was, leaving it done.
fn take_done(m: &mut Member) -> Member {
    let taken = Member {
        wire: m.wire,
        src: m.src.take(),
        state: m.state,
    };
    m.state = State::Done;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flist::FileEntry;

    fn list(names: &[&str]) -> Arc<RecvList> {
        let files: Vec<FileEntry> = names
            .iter()
            .map(|n| FileEntry {
                name: n.as_bytes().to_vec(),
                mode: 0o100644,
                ..Default::default()
            })
            .collect();
        Arc::new(RecvList {
            active: vec![true; files.len()],
            hlink: vec![Some((-1, 0)); files.len()],
            files,
            ..Default::default()
        })
    }

    const K: HlinkGroup = (-1, 0);

    fn names(ms: &[Member]) -> Vec<String> {
        ms.iter()
            .map(|m| crate::protocol::text::name(m.name()).into_owned())
            .collect()
    }

    #[test]
    fn the_last_missing_member_gets_the_data_and_the_rest_link_back() {
        let l = list(&["a", "b", "c"]);
        let mut h = HardLinks::default();
        h.note_list(&l);
        for i in 0..2 {
            assert_eq!(h.check(K, i, (l.clone(), i as usize)), Check::Handle);
            assert!(!h.is_last(K, i));
            h.handled(K, i, (l.clone(), i as usize), State::Deferred);
        }
        assert_eq!(h.check(K, 2, (l.clone(), 2)), Check::Handle);
        assert!(h.is_last(K, 2));
        h.handled(K, 2, (l.clone(), 2), State::Sent);
        assert_eq!(h.arrived(2), Some(K));
        assert_eq!(names(&h.finish(K, 2, b"c")), ["b", "a"]);
    }

    #[test]
    fn a_current_member_is_the_file_the_later_ones_link_to() {
        let l = list(&["a", "b", "c"]);
        let mut h = HardLinks::default();
        h.note_list(&l);
        h.check(K, 0, (l.clone(), 0));
        h.handled(K, 0, (l.clone(), 0), State::Done);
        assert!(h.finish(K, 0, b"a").is_empty());
        assert_eq!(h.check(K, 1, (l.clone(), 1)), Check::LinkTo(b"a".to_vec()));
        h.handled(K, 1, (l.clone(), 1), State::Done);
        assert_eq!(h.check(K, 2, (l.clone(), 2)), Check::LinkTo(b"a".to_vec()));
    }

    #[test]
    fn members_after_a_transfer_wait_for_it_in_order() {
        let l = list(&["a", "b", "c", "d"]);
        let mut h = HardLinks::default();
        h.note_list(&l);
        h.check(K, 0, (l.clone(), 0));
        h.handled(K, 0, (l.clone(), 0), State::Deferred);
        // b is here but differs: it is sent.
        h.check(K, 1, (l.clone(), 1));
        h.handled(K, 1, (l.clone(), 1), State::Sent);
        assert_eq!(h.check(K, 2, (l.clone(), 2)), Check::Wait);
        assert_eq!(h.check(K, 3, (l.clone(), 3)), Check::Wait);
        assert_eq!(h.arrived(1), Some(K));
        assert_eq!(names(&h.finish(K, 1, b"b")), ["c", "d", "a"]);
        assert_eq!(h.check(K, 9, (l.clone(), 0)), Check::LinkTo(b"b".to_vec()));
    }

    #[test]
    fn a_later_list_moves_the_last_member_and_a_skipped_last_hands_it_back() {
        let l1 = list(&["a", "b"]);
        let mut h = HardLinks::default();
        h.note_list(&l1);
        let mut l2 = list(&["x/c"]);
        Arc::get_mut(&mut l2).unwrap().ndx_start = 5;
        h.note_list(&l2);
        for i in 0..2 {
            h.check(K, i, (l1.clone(), i as usize));
            assert!(!h.is_last(K, i));
            h.handled(K, i, (l1.clone(), i as usize), State::Deferred);
        }
        assert!(h.is_last(K, 5));
        // x/c is refused: b becomes the last and is handled again.
        let m = h.skipped(K, 5).unwrap();
        assert_eq!(m.name(), b"b");
        assert!(h.is_last(K, 1));
        assert_eq!(h.check(K, 1, m.src.clone().unwrap()), Check::Handle);
        h.handled(K, 1, m.src.unwrap(), State::Sent);
        assert_eq!(names(&h.finish(K, 1, b"b")), ["a"]);
    }

    #[test]
    fn waiters_of_a_failed_transfer_are_never_linked() {
        let l = list(&["a", "b"]);
        let mut h = HardLinks::default();
        h.note_list(&l);
        h.check(K, 0, (l.clone(), 0));
        h.handled(K, 0, (l.clone(), 0), State::Sent);
        assert_eq!(h.check(K, 1, (l.clone(), 1)), Check::Wait);
        assert_eq!(h.arrived(0), Some(K));
        h.failed(K, 0);
        assert_eq!(h.arrived(0), None);
    }
}
