//! The receiving side's owner and group mapping (upstream uidlist.c):
//! `--usermap`/`--groupmap` (and `--chown`, which is `*:USER` / `*:GROUP`)
//! parsed as upstream's `parse_name_map`, and the id translation of
//! `recv_add_id`/`match_uid`/`match_gid`: the first matching map rule, else
//! the local id of the sender's name, else the sender's id.

use crate::filter::wildmatch::wildmatch;
use std::collections::HashMap;

/// What a map rule's FROM side matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum From {
    /// A name with wildcards (`*`, `?`, `[`): matched against the sender's name.
    Wild(Vec<u8>),
    /// A plain name (possibly empty: ids the sender has no name for).
    Name(Vec<u8>),
    /// An inclusive id range `LOW-HIGH`.
    Range(u32, u32),
    /// One id.
    Id(u32),
}

/// One `FROM:TO` pair, TO resolved to a local id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    from: From,
    to: u32,
}

/// A parsed `--usermap` or `--groupmap`, rules in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameMap {
    rules: Vec<Rule>,
}

/// Users or groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// uids (`--usermap`).
    User,
    /// gids (`--groupmap`).
    Group,
}

impl IdKind {
    fn word(self) -> &'static str {
        match self {
            IdKind::User => "user",
            IdKind::Group => "group",
        }
    }

    /// The local id of `name` (a number when `num_ok` and all digits).
    fn lookup(self, name: &[u8], num_ok: bool) -> Result<Option<u32>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        if num_ok && name.iter().all(u8::is_ascii_digit) {
            return parse_id(name).map(Some);
        }
        let Ok(s) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        Ok(match self {
            IdKind::User => nix::unistd::User::from_name(s)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw()),
            IdKind::Group => nix::unistd::Group::from_name(s)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw()),
        })
    }
}

/// A map that cannot be used: the message (as upstream's) and exit 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MapError(pub String);

/// upstream id_parse: digits only, no overflow.
fn parse_id(s: &[u8]) -> Result<u32, String> {
    let bad = || format!("Invalid ID number: {}", String::from_utf8_lossy(s));
    let mut n: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(bad());
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(c - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(n)
}

impl NameMap {
    /// Parse `map` as upstream's parse_name_map: comma-separated
    /// `FROM:TO`, each checked from the last to the first (so the errors
    /// come in upstream's order). A TO name unknown here is reported in
    /// `warnings` and its rule dropped; a malformed pair is an error.
    pub fn parse(map: &[u8], kind: IdKind, warnings: &mut Vec<String>) -> Result<Self, MapError> {
        let w = kind.word();
        let mut rules = Vec::new();
        for item in map.rsplit(|&c| c == b',') {
            let shown = String::from_utf8_lossy(item);
            let Some(colon) = item.iter().position(|&c| c == b':') else {
                return Err(MapError(format!("No colon found in --{w}map: {shown}")));
            };
            let (from, to) = (&item[..colon], &item[colon + 1..]);
            if to.is_empty() {
                return Err(MapError(format!(
                    "No name found after colon --{w}map: {shown}"
                )));
            }
            let from = if from.first().is_some_and(u8::is_ascii_digit) {
                let dashes = from.iter().filter(|&&c| c == b'-').count();
                let ok = from.iter().all(|&c| c.is_ascii_digit() || c == b'-')
                    && dashes <= 1
                    && !from.ends_with(b"-");
                if !ok {
                    return Err(MapError(format!(
                        "Invalid number in --{w}map: {}",
                        String::from_utf8_lossy(from)
                    )));
                }
                match from.iter().position(|&c| c == b'-') {
                    Some(d) => {
                        let hi = parse_id(&from[d + 1..]).map_err(MapError)?;
                        let lo = parse_id(&from[..d]).map_err(MapError)?;
                        // upstream: a zero upper bound means "no range".
                        if hi == 0 {
                            From::Id(lo)
                        } else {
                            From::Range(lo, hi)
                        }
                    }
                    None => From::Id(parse_id(from).map_err(MapError)?),
                }
            } else if from.iter().any(|c| b"*[?".contains(c)) {
                From::Wild(from.to_vec())
            } else {
                From::Name(from.to_vec())
            };
            match kind.lookup(to, true).map_err(MapError)? {
                Some(to) => rules.push(Rule { from, to }),
                None => warnings.push(format!(
                    "Unknown --{w}map name on receiver: {}",
                    String::from_utf8_lossy(to)
                )),
            }
        }
        rules.reverse();
        Ok(NameMap { rules })
    }

    /// `--chown=USER:GROUP` as upstream turns it into maps: (`*:USER`, `*:GROUP`)
    /// for the parts that are not empty.
    pub fn chown_maps(spec: &str) -> (Option<String>, Option<String>) {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        (
            (!user.is_empty()).then(|| format!("*:{user}")),
            group.filter(|g| !g.is_empty()).map(|g| format!("*:{g}")),
        )
    }

    fn find(&self, id: u32, name: &[u8]) -> Option<u32> {
        self.rules
            .iter()
            .find(|r| match &r.from {
                From::Wild(p) => wildmatch(p, name),
                From::Name(n) => n == name,
                From::Range(lo, hi) => (*lo..=*hi).contains(&id),
                From::Id(i) => *i == id,
            })
            .map(|r| r.to)
    }
}

/// A session's user and group maps (each when given).
pub type Maps = (Option<NameMap>, Option<NameMap>);

/// A session's `--usermap` and `--groupmap`, parsed as upstream's
/// recv_file_list does (the user map first, nothing more after an error),
/// with the warnings to show before anything else.
pub fn parse_maps(
    usermap: Option<&str>,
    groupmap: Option<&str>,
) -> (Result<Maps, MapError>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut parse = |m: Option<&str>, kind| {
        m.map(|m| NameMap::parse(m.as_bytes(), kind, &mut warnings))
            .transpose()
    };
    let maps = parse(usermap, IdKind::User).and_then(|u| Ok((u, parse(groupmap, IdKind::Group)?)));
    (maps, warnings)
}

/// The ids of one kind received in a session, translated once each
/// (upstream's uidlist/gidlist).
#[derive(Debug)]
pub struct IdMapper {
    kind: IdKind,
    map: Option<NameMap>,
    /// Names from the sender are dropped (a daemon module's `numeric ids`).
    drop_names: bool,
    known: HashMap<u32, u32>,
}

impl IdMapper {
    /// A mapper for `kind` with an optional user map.
    pub fn new(kind: IdKind, map: Option<NameMap>, drop_names: bool) -> Self {
        IdMapper {
            kind,
            map,
            drop_names,
            known: HashMap::new(),
        }
    }

    /// Whether a map was given.
    pub fn has_map(&self) -> bool {
        self.map.is_some()
    }

    /// upstream recv_add_id: the local id for the sender's `id` with its
    /// `name` (empty when none came), remembered for later entries.
    pub fn add(&mut self, id: u32, name: &[u8]) -> u32 {
        let name: &[u8] = if self.drop_names { b"" } else { name };
        let mapped = self
            .map
            .as_ref()
            .and_then(|m| m.find(id, name))
            .or_else(|| {
                if name.is_empty() || id == 0 {
                    None
                } else {
                    self.kind.lookup(name, false).ok().flatten()
                }
            })
            .unwrap_or(id);
        self.known.insert(id, mapped);
        mapped
    }

    /// upstream match_uid/match_gid: an id seen before keeps its
    /// translation; a new one is translated without a name.
    pub fn get(&mut self, id: u32) -> u32 {
        match self.known.get(&id) {
            Some(m) => *m,
            None => self.add(id, b""),
        }
    }
}

/// How a receiver translates the owners and groups of received entries
/// (upstream recv_id_list's conditions).
#[derive(Debug)]
pub struct IdPolicy {
    /// Owners: the sender's names and `--usermap`.
    pub uids: IdMapper,
    /// Groups: the sender's names and `--groupmap`.
    pub gids: IdMapper,
    /// Translate uids (root, `-o`, and names or a map to go by).
    pub map_uid: bool,
    /// Translate gids (`-g`, and not root with `--numeric-ids` and no map).
    pub map_gid: bool,
}

impl IdPolicy {
    /// Nothing translated.
    pub fn keep() -> Self {
        IdPolicy {
            uids: IdMapper::new(IdKind::User, None, false),
            gids: IdMapper::new(IdKind::Group, None, false),
            map_uid: false,
            map_gid: false,
        }
    }

    /// The policy of a receiving session: `numeric` is `--numeric-ids` or
    /// a module's `numeric ids` (`module_numeric`: names are dropped, as
    /// upstream's numeric_ids = -1); `id0_names`: the sender names id 0
    /// (else a map sees id 0 as "root", as upstream's parse_name_map).
    #[allow(clippy::too_many_arguments)]
    pub fn for_receiver(
        am_root: bool,
        preserve_uid: bool,
        preserve_gid: bool,
        numeric: bool,
        module_numeric: bool,
        id0_names: bool,
        usermap: Option<NameMap>,
        groupmap: Option<NameMap>,
    ) -> Self {
        let numeric = numeric || module_numeric;
        let map_uid = am_root && preserve_uid && (!numeric || usermap.is_some());
        let map_gid = preserve_gid && (!am_root || !numeric || groupmap.is_some());
        let (had_u, had_g) = (usermap.is_some(), groupmap.is_some());
        let mut p = IdPolicy {
            uids: IdMapper::new(IdKind::User, usermap, module_numeric),
            gids: IdMapper::new(IdKind::Group, groupmap, module_numeric),
            map_uid,
            map_gid,
        };
        let root: &[u8] = if numeric { b"" } else { b"root" };
        if had_u && !id0_names {
            p.uids.add(0, root);
        }
        if had_g && !id0_names {
            p.gids.add(0, root);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, kind: IdKind) -> Result<(NameMap, Vec<String>), MapError> {
        let mut w = Vec::new();
        NameMap::parse(s.as_bytes(), kind, &mut w).map(|m| (m, w))
    }

    #[test]
    fn errors_and_warnings_as_upstream() {
        let e = |s: &str| parse(s, IdKind::User).unwrap_err().0;
        assert_eq!(e("foo"), "No colon found in --usermap: foo");
        assert_eq!(e("a:,0:0"), "No name found after colon --usermap: a:");
        assert_eq!(e("1x:0"), "Invalid number in --usermap: 1x");
        assert_eq!(e("1-2-3:0"), "Invalid number in --usermap: 1-2-3");
        assert_eq!(e("5-:0"), "Invalid number in --usermap: 5-");
        assert_eq!(e("99999999999:0"), "Invalid ID number: 99999999999");
        assert_eq!(
            parse("x:0,*:nosuchuser-here", IdKind::Group).unwrap().1,
            vec!["Unknown --groupmap name on receiver: nosuchuser-here".to_string()]
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        let (m, w) = parse("0-99:7,wayne:8,*:9", IdKind::User).unwrap();
        assert!(w.is_empty());
        let mut ids = IdMapper::new(IdKind::User, Some(m), false);
        assert_eq!(ids.add(5, b"x"), 7);
        assert_eq!(ids.add(1000, b"wayne"), 8);
        assert_eq!(ids.add(1001, b"other"), 9);
        // Ids without a name match "*" (an empty name), as upstream.
        assert_eq!(ids.get(4242), 9);
        assert_eq!(ids.get(5), 7);
    }

    #[test]
    fn without_a_map_names_are_looked_up_and_ids_kept() {
        let mut ids = IdMapper::new(IdKind::User, None, false);
        assert_eq!(ids.add(4711, b"root"), 0);
        assert_eq!(ids.add(4712, b"no-such-user-here"), 4712);
        // id 0 keeps 0 whatever its name.
        assert_eq!(ids.add(0, b"nobody"), 0);
        let mut numeric = IdMapper::new(IdKind::User, None, true);
        assert_eq!(numeric.add(4711, b"root"), 4711);
    }

    #[test]
    fn chown_becomes_wildcard_maps() {
        assert_eq!(
            NameMap::chown_maps("u:g"),
            (Some("*:u".into()), Some("*:g".into()))
        );
        assert_eq!(NameMap::chown_maps("u"), (Some("*:u".into()), None));
        assert_eq!(NameMap::chown_maps(":g"), (None, Some("*:g".into())));
        assert_eq!(NameMap::chown_maps("u:"), (Some("*:u".into()), None));
    }
}
