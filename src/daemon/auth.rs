//! Daemon authentication (upstream: authenticate.c auth_server,
//! check_secret, generate_hash; compat.c negotiate_daemon_auth): the
//! challenge, the `auth users` list (`user`, `@group`, wildcards, `:ro`,
//! `:rw`, `:deny`), the secrets file with `strict modes`, and a
//! constant-time comparison of the response.

use std::io::Read;

/// Digests we can verify, strongest first (upstream's auth list order).
pub const DIGESTS: &[&str] = &["sha512", "sha256", "sha1", "md5", "md4"];

/// Environment variable restricting the digests the daemon offers (a
/// space-separated subset of [`DIGESTS`]); for interop testing of each
/// digest against stock clients, which always prefer the strongest.
pub const OFFER_ENV: &str = "RRSYNC_AUTH_DIGESTS";

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

/// The digest for this connection: our most preferred one that the client
/// also lists; without a list, md5 (protocol 30+) or the old seeded md4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDigest {
    /// SHA-512(password || challenge).
    Sha512,
    /// SHA-256(password || challenge).
    Sha256,
    /// SHA-1(password || challenge).
    Sha1,
    /// MD5(password || challenge).
    Md5,
    /// MD4(password || challenge).
    Md4,
    /// MD4(0u32 || password || challenge), for old clients without a list.
    Md4Old,
}

impl AuthDigest {
    fn from_name(name: &str) -> Option<AuthDigest> {
        match name {
            "sha512" => Some(AuthDigest::Sha512),
            "sha256" => Some(AuthDigest::Sha256),
            "sha1" => Some(AuthDigest::Sha1),
            "md5" => Some(AuthDigest::Md5),
            "md4" => Some(AuthDigest::Md4),
            _ => None,
        }
    }

    /// The negotiated name (the old md4 is still "md4").
    pub fn name(self) -> &'static str {
        match self {
            AuthDigest::Sha512 => "sha512",
            AuthDigest::Sha256 => "sha256",
            AuthDigest::Sha1 => "sha1",
            AuthDigest::Md5 => "md5",
            AuthDigest::Md4 | AuthDigest::Md4Old => "md4",
        }
    }
}

/// Strength rank of a digest name (0 = strongest), `None` if unknown
/// (upstream auth_digest_rank, for the `auth digest` floor).
pub fn digest_rank(name: &str) -> Option<usize> {
    DIGESTS.iter().position(|d| d.eq_ignore_ascii_case(name))
}

/// The digests this daemon offers: [`DIGESTS`], narrowed by `restrict`
/// (the value of [`OFFER_ENV`]) when that names at least one of them.
pub fn offered(restrict: Option<&str>) -> Vec<&'static str> {
    let Some(list) = restrict else {
        return DIGESTS.to_vec();
    };
    let wanted: Vec<&str> = list.split_ascii_whitespace().collect();
    let v: Vec<&'static str> = DIGESTS
        .iter()
        .copied()
        .filter(|d| wanted.contains(d))
        .collect();
    if v.is_empty() {
        DIGESTS.to_vec()
    } else {
        v
    }
}

/// Pick the digest: the first of `offered` (our preference) that the
/// client lists; with no client list, the protocol's fallback.
pub fn choose_digest(client_list: &[String], proto: i32, offered: &[&str]) -> Option<AuthDigest> {
    if client_list.is_empty() {
        return Some(if proto >= 30 {
            AuthDigest::Md5
        } else {
            AuthDigest::Md4Old
        });
    }
    offered
        .iter()
        .find(|d| client_list.iter().any(|c| c == *d))
        .and_then(|d| AuthDigest::from_name(d))
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
    fn hash<D: md4::Digest>(prefix: &[u8], password: &[u8], challenge: &str) -> String {
        let mut h = D::new();
        h.update(prefix);
        h.update(password);
        h.update(challenge.as_bytes());
        base64_nopad(&h.finalize())
    }
    match digest {
        AuthDigest::Sha512 => hash::<sha2::Sha512>(&[], password, challenge),
        AuthDigest::Sha256 => hash::<sha2::Sha256>(&[], password, challenge),
        AuthDigest::Sha1 => hash::<sha1::Sha1>(&[], password, challenge),
        AuthDigest::Md5 => hash::<md5::Md5>(&[], password, challenge),
        AuthDigest::Md4 => hash::<md4::Md4>(&[], password, challenge),
        AuthDigest::Md4Old => hash::<md4::Md4>(&[0u8; 4], password, challenge),
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
        // Unpadded base64 of 64, 32 and 20 bytes.
        assert_eq!(response(AuthDigest::Sha512, b"a", "b").len(), 86);
        assert_eq!(response(AuthDigest::Sha256, b"a", "b").len(), 43);
        assert_eq!(response(AuthDigest::Sha1, b"a", "b").len(), 27);
        // SHA-1("abc") = a9993e36..., base64 "qZk+NkcGgWq6PiVxeFDCbJzQ2J0".
        assert_eq!(
            response(AuthDigest::Sha1, b"ab", "c"),
            "qZk+NkcGgWq6PiVxeFDCbJzQ2J0"
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
        let all = offered(None);
        assert_eq!(
            choose_digest(&l(&["sha512", "sha256", "sha1", "md5", "md4"]), 32, &all),
            Some(AuthDigest::Sha512)
        );
        // Our preference wins over the client's order.
        assert_eq!(
            choose_digest(&l(&["md5", "sha1"]), 32, &all),
            Some(AuthDigest::Sha1)
        );
        assert_eq!(choose_digest(&l(&["md4"]), 31, &all), Some(AuthDigest::Md4));
        assert_eq!(choose_digest(&[], 29, &all), Some(AuthDigest::Md4Old));
        assert_eq!(choose_digest(&[], 30, &all), Some(AuthDigest::Md5));
        assert_eq!(choose_digest(&l(&["sha3"]), 32, &all), None);
        let only_sha1 = offered(Some("sha1 bogus"));
        assert_eq!(only_sha1, vec!["sha1"]);
        assert_eq!(
            choose_digest(&l(&["sha512", "sha1", "md5"]), 32, &only_sha1),
            Some(AuthDigest::Sha1)
        );
        assert_eq!(choose_digest(&l(&["md5"]), 32, &only_sha1), None);
        assert_eq!(offered(Some("nothing")), all);
        assert_eq!(digest_rank("SHA256"), Some(1));
        assert_eq!(digest_rank("md4"), Some(4));
        assert_eq!(digest_rank("sha3"), None);
    }
}
