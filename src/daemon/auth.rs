//! Daemon authentication (upstream: authenticate.c auth_server,
//! check_secret, generate_hash; compat.c negotiate_daemon_auth): the
//! challenge, the `auth users` list (`user`, `@group`, wildcards, `:ro`,
//! `:rw`, `:deny`), the secrets file with `strict modes`, and a
//! constant-time comparison of the response.

use md4::Digest as _;
use std::io::Read;

/// Digests we can verify, best first (what our greeting lists).
pub const DIGESTS: &[&str] = &["md5", "md4"];

/// How a client may use the module once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// As the module says.
    Default,
    /// Read only whatever the module says.
    ReadOnly,
    /// Writable whatever the module says.
    ReadWrite,
}

/// The digest for this connection: the first of the client's names we
/// support; without a list, md5 (protocol 30+) or the old seeded md4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDigest {
    /// MD5(password || challenge).
    Md5,
    /// MD4(password || challenge).
    Md4,
    /// MD4(0u32 || password || challenge), for old clients without a list.
    Md4Old,
}

/// Pick the digest from the client's greeting list.
pub fn choose_digest(client_list: &[String], proto: i32) -> Option<AuthDigest> {
    if client_list.is_empty() {
        return Some(if proto >= 30 {
            AuthDigest::Md5
        } else {
            AuthDigest::Md4Old
        });
    }
    client_list.iter().find_map(|n| match n.as_str() {
        "md5" => Some(AuthDigest::Md5),
        "md4" => Some(AuthDigest::Md4),
        _ => None,
    })
}

/// base64 without `=` padding (upstream base64_encode with pad = 0).
pub fn base64_nopad(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A fresh unpredictable challenge (the client only echoes it into its hash).
pub fn challenge() -> String {
    let mut b = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !filled {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    base64_nopad(&b)
}

/// generate_hash: the response a client with `password` gives to `challenge`.
pub fn response(digest: AuthDigest, password: &[u8], challenge: &str) -> String {
    match digest {
        AuthDigest::Md5 => {
            let mut h = md5::Md5::new();
            h.update(password);
            h.update(challenge.as_bytes());
            base64_nopad(&h.finalize())
        }
        AuthDigest::Md4 | AuthDigest::Md4Old => {
            let mut h = md4::Md4::new();
            if digest == AuthDigest::Md4Old {
                h.update([0u8; 4]);
            }
            h.update(password);
            h.update(challenge.as_bytes());
            base64_nopad(&h.finalize())
        }
    }
}

/// Compare without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One `auth users` entry: a name pattern or `@group`, with an access suffix.
fn entry_access(entry: &str) -> (&str, Option<Access>, bool) {
    let (pat, suffix) = match entry.rsplit_once(':') {
        Some((p, s)) => (p, Some(s.to_ascii_lowercase())),
        None => (entry, None),
    };
    match suffix.as_deref() {
        Some("deny") => (pat, None, true),
        Some("ro") => (pat, Some(Access::ReadOnly), false),
        Some("rw") => (pat, Some(Access::ReadWrite), false),
        _ => (pat, Some(Access::Default), false),
    }
}

/// The groups `user` belongs to (by name).
fn user_groups(user: &str) -> Vec<String> {
    let Some(u) = nix::unistd::User::from_name(user).ok().flatten() else {
        return Vec::new();
    };
    let mut gs = Vec::new();
    if let Some(g) = nix::unistd::Group::from_gid(u.gid).ok().flatten() {
        gs.push(g.name);
    }
    if let Ok(cname) = std::ffi::CString::new(user) {
        if let Ok(list) = nix::unistd::getgrouplist(&cname, u.gid) {
            for gid in list {
                if let Some(g) = nix::unistd::Group::from_gid(gid).ok().flatten() {
                    gs.push(g.name);
                }
            }
        }
    }
    gs
}

/// The first `auth users` entry matching `user`: its access and, for a
/// `@group` entry, the group (whose secret may be used).
pub fn match_user(auth_users: &str, user: &str) -> Option<(Access, Option<String>)> {
    let groups = user_groups(user);
    for entry in crate::daemon::config::split_conf_list(auth_users) {
        let (pat, access, deny) = entry_access(entry);
        let matched_group = if let Some(g) = pat.strip_prefix('@') {
            groups
                .iter()
                .find(|ug| crate::filter::wildmatch::wildmatch(g.as_bytes(), ug.as_bytes()))
                .cloned()
                .map(Some)
        } else if crate::filter::wildmatch::wildmatch(pat.as_bytes(), user.as_bytes()) {
            Some(None)
        } else {
            None
        };
        if let Some(g) = matched_group {
            if deny {
                return None;
            }
            return access.map(|a| (a, g));
        }
    }
    None
}

/// Why the secrets file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Not readable.
    #[error("could not open secrets file: {0}")]
    Open(std::io::Error),
    /// `strict modes`: other-accessible, or not owned by root when we are root.
    #[error("secrets file must not be other-accessible (see strict modes option)")]
    Modes,
    /// Owned by someone else.
    #[error("secrets file must be owned by root when running as root (see strict modes)")]
    Owner,
}

/// check_secret: the password for `user` (or for `@group` when `group`), from the secrets file.
pub fn find_secret(
    path: &str,
    strict: bool,
    user: &str,
    group: Option<&str>,
) -> Result<Option<Vec<u8>>, SecretsError> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(path).map_err(SecretsError::Open)?;
    let md = f.metadata().map_err(SecretsError::Open)?;
    if strict {
        if md.mode() & 0o006 != 0 {
            return Err(SecretsError::Modes);
        }
        if nix::unistd::geteuid().is_root() && md.uid() != 0 {
            return Err(SecretsError::Owner);
        }
    }
    let mut text = Vec::new();
    f.take(1 << 20)
        .read_to_end(&mut text)
        .map_err(SecretsError::Open)?;
    let mut user_pw = None;
    let mut group_pw = None;
    for line in text.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let Some(p) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (name, pw) = (&line[..p], &line[p + 1..]);
        if name == user.as_bytes() && user_pw.is_none() {
            user_pw = Some(pw.to_vec());
        }
        if let (Some(g), Some(rest)) = (group, name.strip_prefix(b"@")) {
            if rest == g.as_bytes() && group_pw.is_none() {
                group_pw = Some(pw.to_vec());
            }
        }
    }
    Ok(user_pw.or(group_pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_without_padding() {
        assert_eq!(base64_nopad(b""), "");
        assert_eq!(base64_nopad(b"f"), "Zg");
        assert_eq!(base64_nopad(b"fo"), "Zm8");
        assert_eq!(base64_nopad(b"foo"), "Zm9v");
        assert_eq!(base64_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(challenge().len(), 22);
    }

    #[test]
    fn md5_response_shape_and_comparison() {
        let r = response(AuthDigest::Md5, b"s3cret", "challenge");
        assert_eq!(r.len(), 22);
        assert!(constant_time_eq(
            r.as_bytes(),
            response(AuthDigest::Md5, b"s3cret", "challenge").as_bytes()
        ));
        assert!(!constant_time_eq(
            r.as_bytes(),
            response(AuthDigest::Md5, b"s3creT", "challenge").as_bytes()
        ));
        assert_ne!(
            response(AuthDigest::Md4, b"a", "b"),
            response(AuthDigest::Md4Old, b"a", "b")
        );
    }

    #[test]
    fn auth_users_entries() {
        assert_eq!(
            match_user("alice, bob:ro", "bob"),
            Some((Access::ReadOnly, None))
        );
        assert_eq!(
            match_user("alice bob:ro", "alice"),
            Some((Access::Default, None))
        );
        assert_eq!(match_user("eve:deny, *", "eve"), None);
        assert_eq!(
            match_user("eve:deny, *:rw", "mallory"),
            Some((Access::ReadWrite, None))
        );
        assert_eq!(match_user("alice", "bob"), None);
        assert_eq!(
            match_user("@root:ro", "root"),
            Some((Access::ReadOnly, Some("root".to_string())))
        );
    }

    #[test]
    fn digest_choice() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            choose_digest(&l(&["sha512", "sha256", "sha1", "md5", "md4"]), 32),
            Some(AuthDigest::Md5)
        );
        assert_eq!(choose_digest(&l(&["md4"]), 31), Some(AuthDigest::Md4));
        assert_eq!(choose_digest(&[], 29), Some(AuthDigest::Md4Old));
        assert_eq!(choose_digest(&l(&["sha1"]), 32), None);
    }
}
