//! Protocol setup after the version exchange (upstream: compat.c
//! setup_protocol, negotiate_the_strings): compat flags, checksum and
//! compression name negotiation, checksum seed.

use super::varint::{put_vstring, read_vstring};
use super::Result;
use std::io::Read;

/// Compat flag bits (CF_*).
pub mod cf {
    /// Incremental recursion.
    pub const INC_RECURSE: u32 = 0x001;
    /// The side can set symlink times.
    pub const SYMLINK_TIMES: u32 = 0x002;
    /// Symlink iconv.
    pub const SYMLINK_ICONV: u32 = 0x004;
    /// io_error in the end-of-list marker.
    pub const SAFE_FLIST: u32 = 0x008;
    /// No xattr hard-link optimisation.
    pub const AVOID_XATTR_OPTIM: u32 = 0x010;
    /// Seed first in MD5 block sums.
    pub const CHKSUM_SEED_FIX: u32 = 0x020;
    /// Inplace + partial-dir behaviour.
    pub const INPLACE_PARTIAL_DIR: u32 = 0x040;
    /// Varint flist flags and name negotiation.
    pub const VARINT_FLIST_FLAGS: u32 = 0x080;
    /// Names for id 0 in the id lists.
    pub const ID0_NAMES: u32 = 0x100;
}

/// Compute the compat flags a server sends, from the client's `-e` capability
/// letters (everything after `e` and an optional `.`/version prefix).
/// Incremental recursion is not decided here: the caller adds it when the
/// transfer allows it (`role::setup`).
pub fn server_compat_flags(client_caps: &str) -> u32 {
    let has = |c: char| client_caps.contains(c);
    let mut f = cf::SYMLINK_TIMES;
    if has('f') {
        f |= cf::SAFE_FLIST;
    }
    if has('x') {
        f |= cf::AVOID_XATTR_OPTIM;
    }
    if has('C') {
        f |= cf::CHKSUM_SEED_FIX;
    }
    if has('I') {
        f |= cf::INPLACE_PARTIAL_DIR;
    }
    if has('v') {
        f |= cf::VARINT_FLIST_FLAGS;
    }
    if has('u') {
        f |= cf::ID0_NAMES;
    }
    f
}

/// The checksum names we offer, best first (server list adds "none").
pub const CHECKSUM_NAMES: &[&str] = &["xxh128", "xxh3", "xxh64", "md5", "md4", "sha1"];
/// The compression names we offer, best first (server list adds "none").
pub const COMPRESS_NAMES: &[&str] = &["zstd", "lz4", "zlibx", "zlib"];

/// Our list as a space-separated vstring body.
pub fn name_list(names: &[&str], as_server: bool) -> String {
    let mut s = names.join(" ");
    if as_server {
        s.push_str(" none");
    }
    s
}

/// Append a negotiation list.
pub fn put_name_list(out: &mut Vec<u8>, list: &str) -> Result<()> {
    put_vstring(out, list.as_bytes())
}

/// Read the peer's negotiation list (at most 255 bytes, as upstream).
pub fn read_name_list(r: &mut impl Read) -> Result<String> {
    let v = read_vstring(r, 255)?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// The server's choice: the first name in the client's list that we support.
pub fn choose_as_server<'a>(client_list: &str, ours: &[&'a str]) -> Option<&'a str> {
    client_list.split_ascii_whitespace().find_map(|n| {
        ours.iter()
            .copied()
            .chain(std::iter::once("none"))
            .find(|o| *o == n)
    })
}

/// The client's choice: the entry of our own list, earliest in our order, that the server lists.
pub fn choose_as_client<'a>(server_list: &str, ours: &[&'a str]) -> Option<&'a str> {
    let theirs: Vec<&str> = server_list.split_ascii_whitespace().collect();
    ours.iter().copied().find(|o| theirs.contains(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_flags_match_captures_without_inc_recurse() {
        assert_eq!(
            server_compat_flags(".iLsfxCIvu"),
            0x1FE & !cf::SYMLINK_ICONV
        );
        assert_eq!(server_compat_flags(""), cf::SYMLINK_TIMES);
    }

    #[test]
    fn choice_rules() {
        assert_eq!(
            choose_as_server("xxh128 xxh3 xxh64 md5 md4 sha1", CHECKSUM_NAMES),
            Some("xxh128")
        );
        assert_eq!(choose_as_server("sha1 md5", CHECKSUM_NAMES), Some("sha1"));
        assert_eq!(choose_as_server("sha256 md5", CHECKSUM_NAMES), Some("md5"));
        assert_eq!(choose_as_server("sha256", CHECKSUM_NAMES), None);
        assert_eq!(
            choose_as_server("zstd lz4 zlibx zlib", COMPRESS_NAMES),
            Some("zstd")
        );
        assert_eq!(
            choose_as_client("md4 md5 none", CHECKSUM_NAMES),
            Some("md5")
        );
    }

    #[test]
    fn negotiation_strings_round_trip() {
        let mut v = Vec::new();
        put_name_list(&mut v, &name_list(CHECKSUM_NAMES, true)).unwrap();
        assert_eq!(v[0] as usize, v.len() - 1);
        assert_eq!(
            read_name_list(&mut &v[..]).unwrap(),
            "xxh128 xxh3 xxh64 md5 md4 sha1 none"
        );
    }
}
