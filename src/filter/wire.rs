//! The filter list on the wire (protocol doc §11.1; stock `send_rules`,
//! `send_filter_list`, `recv_filter_list`): sans-I/O, decoding from any
//! `std::io::Read` and encoding into a `Vec<u8>`.
//!
//! Format: repeated `int32 len` (little endian) + `len` bytes of
//! `<prefix><pattern>[/]`, ended by `int32 0`.

use std::io::Read;

use super::list::FilterList;
use super::parse::{Reader, BIGPATHBUFLEN};
use super::rule::{flags as f, prefix, Rule, XferPrefix};
use super::FilterError;

/// Most rules accepted from a peer.
pub const MAX_WIRE_RULES: usize = 1 << 20;
/// Longest rule accepted from a peer (stock: `len >= BIGPATHBUFLEN` is a
/// buffer overflow error).
pub const MAX_WIRE_RULE_LEN: usize = BIGPATHBUFLEN - 1;

/// The transfer settings that decide what is sent and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XferOptions {
    /// Negotiated protocol version.
    pub protocol: u32,
    /// This side is the sender.
    pub am_sender: bool,
    /// Any `--delete*` mode.
    pub delete_mode: bool,
    /// `--delete-excluded`.
    pub delete_excluded: bool,
    /// `--prune-empty-dirs` (`-m`).
    pub prune_empty_dirs: bool,
    /// `--cvs-exclude` (`-C`).
    pub cvs_exclude: bool,
}

impl XferOptions {
    /// stock `receiver_wants_list`.
    pub fn receiver_wants_list(&self) -> bool {
        self.prune_empty_dirs
            || (self.delete_mode && (!self.delete_excluded || self.protocol >= 29))
    }
    /// Is a filter list exchanged at all (client sends / server reads)?
    pub fn list_exchanged(&self) -> bool {
        !self.am_sender || self.receiver_wants_list()
    }
}

fn read_i32<R: Read>(r: &mut R) -> Result<i32, FilterError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

/// Read the raw rule strings up to the terminating `int32 0`.
pub fn decode_rules<R: Read>(r: &mut R) -> Result<Vec<Vec<u8>>, FilterError> {
    let mut out = Vec::new();
    loop {
        let len = read_i32(r)? as u32;
        if len == 0 {
            return Ok(out);
        }
        if len as usize > MAX_WIRE_RULE_LEN {
            return Err(FilterError::RuleTooLong(len));
        }
        if out.len() >= MAX_WIRE_RULES {
            return Err(FilterError::TooManyRules(MAX_WIRE_RULES));
        }
        let mut buf = vec![0u8; len as usize];
        r.read_exact(&mut buf)?;
        out.push(buf);
    }
}

/// Frame raw rule strings (each must be non-empty) plus the terminator.
pub fn encode_raw(rules: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| !r.is_empty()) {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

const LOCAL_RULE: u8 = 1;
const REMOTE_RULE: u8 = 2;

/// stock `send_rules` over `rules`; `out` None = compute only.
fn send_rules(
    rules: &mut [Rule],
    cvs: &mut Option<Vec<Rule>>,
    x: &XferOptions,
    mut out: Option<&mut Vec<u8>>,
) -> Result<(), FilterError> {
    let px = XferPrefix {
        protocol: x.protocol,
        am_sender: x.am_sender,
        delete_excluded: x.delete_excluded,
    };
    let (mine, theirs) = if x.am_sender {
        (LOCAL_RULE, REMOTE_RULE)
    } else {
        (REMOTE_RULE, LOCAL_RULE)
    };
    for r in rules.iter_mut() {
        let mut elide = 0;
        if r.flags & f::SENDER_SIDE != 0 {
            elide = mine;
        }
        if r.flags & f::RECEIVER_SIDE != 0 {
            elide = if elide != 0 { 0 } else { theirs };
        } else if x.delete_excluded
            && elide == 0
            && (r.flags & f::PERDIR_MERGE == 0 || r.flags & f::NO_PREFIXES != 0)
        {
            elide = mine;
            r.flags |= f::IMPLIED_SENDER;
        }
        if elide == LOCAL_RULE {
            continue;
        }
        if r.flags & f::CVS_IGNORE != 0 && r.flags & f::MERGE_FILE == 0 {
            let to_wire = x.am_sender || x.protocol < 29;
            if let Some(mut list) = cvs.take() {
                let res = send_rules(
                    &mut list,
                    &mut None,
                    x,
                    if to_wire { out.as_deref_mut() } else { None },
                );
                *cvs = Some(list);
                res?;
            }
            if to_wire {
                continue;
            }
        }
        let p = prefix(r.flags, &r.pattern, Some(px)).ok_or(FilterError::TooModern)?;
        let Some(o) = out.as_deref_mut() else {
            continue;
        };
        let dlen = usize::from(r.flags & f::DIRECTORY != 0);
        let total = p.len() + r.pattern.len() + dlen;
        if total == 0 {
            continue;
        }
        o.extend_from_slice(&(total as u32).to_le_bytes());
        o.extend_from_slice(&p);
        o.extend_from_slice(&r.pattern);
        if dlen != 0 {
            o.push(b'/');
        }
    }
    Ok(())
}

/// Encode `list` as a client sends it (rules that only concern this side
/// are left out; `--delete-excluded` turns plain rules sender-side), ending
/// with `int32 0`.  Also marks those plain rules sender-side for local
/// matching, as stock's elision does.
pub fn encode_rules(list: &mut FilterList, x: &XferOptions) -> Result<Vec<u8>, FilterError> {
    let mut out = Vec::new();
    send_rules(&mut list.rules, &mut list.cvs, x, Some(&mut out))?;
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(out)
}

fn no_files(_: &[u8]) -> Option<Vec<u8>> {
    None
}

/// Client side (stock `send_filter_list`): adds the `-C` rules where stock
/// does and returns the bytes to send, or None when no list is sent (a
/// client sender whose receiver does not want it); errors are still
/// reported then (`filter rules are too modern for remote rsync.`).
pub fn send_filter_list(
    list: &mut FilterList,
    x: &XferOptions,
) -> Result<Option<Vec<u8>>, FilterError> {
    list.opts.protocol = x.protocol;
    if x.cvs_exclude && x.am_sender {
        if x.protocol >= 29 {
            list.parse_with(b":C", 0, 0, &mut no_files)?;
        }
        list.parse_with(b"-C", 0, 0, &mut no_files)?;
    }
    let bytes = encode_rules(list, x)?;
    if x.cvs_exclude {
        if !x.am_sender || x.protocol < 29 {
            list.parse_with(b":C", 0, 0, &mut no_files)?;
        }
        if !x.am_sender {
            list.parse_with(b"-C", 0, 0, &mut no_files)?;
        }
    }
    Ok(x.list_exchanged().then_some(bytes))
}

/// Server side (stock `recv_filter_list`): read the client's list when one
/// is sent, parse it into `list` (protocol < 29: old `+ `/`- ` prefixes
/// only), then add the `-C` rules where stock does.  `.` merge rules a
/// client sends are read through `read` (return None to refuse).
pub fn recv_filter_list<R: Read>(
    r: &mut R,
    list: &mut FilterList,
    x: &XferOptions,
    read: &mut Reader<'_>,
) -> Result<(), FilterError> {
    list.opts.protocol = x.protocol;
    if x.am_sender || x.receiver_wants_list() {
        let mut count = 0usize;
        loop {
            let len = read_i32(r)? as u32;
            if len == 0 {
                break;
            }
            if len as usize > MAX_WIRE_RULE_LEN {
                return Err(FilterError::RuleTooLong(len));
            }
            count += 1;
            if count > MAX_WIRE_RULES {
                return Err(FilterError::TooManyRules(MAX_WIRE_RULES));
            }
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf)?;
            list.add_wire_rule(&buf, x.protocol, read)?;
        }
    }
    if x.cvs_exclude {
        if x.am_sender || x.protocol < 29 {
            list.parse_with(b":C", 0, 0, &mut no_files)?;
        }
        if x.am_sender {
            list.parse_with(b"-C", 0, 0, &mut no_files)?;
        }
    }
    Ok(())
}
