//! `%VAR%` environment references in rsyncd.conf values
//! (upstream: loadparm.c expand_vars()).
//!
//! Stock rsync expands non-string parameters (booleans, integers, the
//! syslog facility) when the file is read, and string parameters only when
//! they are first used, so that variables set per connection
//! (`RSYNC_USER_NAME`, `RSYNC_MODULE_NAME`, ...) can be referenced.  The
//! parsed [`super::ModuleConfig`] therefore keeps string values raw; callers
//! expand them with [`expand_vars`] (ordinary strings such as `path`, `uid`)
//! or [`expand_vars_for_shell`] (the `early exec`, `pre-xfer exec`,
//! `post-xfer exec` and `name converter` commands, which go to `/bin/sh`).
//!
//! Rules: a reference is `%` + an ASCII uppercase letter + anything up to the
//! next `%`.  If the variable is not set, or the syntax does not match, the
//! raw characters are kept unchanged (so `%%` stays `%%`).

use std::borrow::Cow;

/// A peer-influenced variable holds characters that could become shell
/// syntax; the hook must not run (stock exits with RERR_UNSUPPORTED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to run shell hook: %{0}% holds a shell metacharacter")]
pub struct UnsafeHookValue(pub String);

/// Find the reference starting at `s[i] == '%'`: returns (name, end) where
/// `end` is the index just past the closing `%`.
fn reference_at(s: &str, i: usize) -> Option<(&str, usize)> {
    let rest = &s[i + 1..];
    if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let close = rest.find('%')?;
    Some((&rest[..close], i + 1 + close + 1))
}

/// Expand `%VAR%` references with `lookup`, leaving unknown ones verbatim.
pub fn expand_vars<'a, F>(s: &'a str, lookup: F) -> Cow<'a, str>
where
    F: Fn(&str) -> Option<String>,
{
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] == b'%' {
            if let Some((name, end)) = reference_at(s, i) {
                if let Some(val) = lookup(name) {
                    out.push_str(&val);
                    i = end;
                    continue;
                }
            }
        }
        // Copy one character.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

/// [`expand_vars`] against the process environment.
pub fn expand_vars_env(s: &str) -> Cow<'_, str> {
    expand_vars(s, |name| std::env::var(name).ok())
}

/// Characters that refuse an `RSYNC_*` value in a shell hook: anything a
/// (possibly nested) shell could read as syntax, plus control characters.
fn shell_unsafe(val: &str) -> bool {
    val.chars()
        .any(|c| "'\"`$\\;&|<>()*?[]# !~{}".contains(c) || (c as u32) < 0x20 || c == '\x7f')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Expand a shell-hook command template (`pre-xfer exec` etc.).
///
/// Values of `RSYNC_*` variables come from the peer, so they are refused if
/// they hold any shell metacharacter, and otherwise quoted for the quoting
/// context of the template at that point: inside `'...'` inserted as is,
/// elsewhere wrapped in single quotes (inside `"..."` the wrap shows up
/// literally but still protects a second `sh -c` level).  Other variables
/// are inserted verbatim, like [`expand_vars`].
pub fn expand_vars_for_shell<F>(s: &str, lookup: F) -> Result<String, UnsafeHookValue>
where
    F: Fn(&str) -> Option<String>,
{
    let mut out = String::with_capacity(s.len());
    let mut quote = Quote::None;
    let mut escaped = false;
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] == b'%' {
            if let Some((name, end)) = reference_at(s, i) {
                if let Some(val) = lookup(name) {
                    if name.starts_with("RSYNC_") {
                        if shell_unsafe(&val) {
                            return Err(UnsafeHookValue(name.to_string()));
                        }
                        match quote {
                            Quote::Single => out.push_str(&val),
                            Quote::None => {
                                out.push('\'');
                                out.push_str(&val);
                                out.push('\'');
                            }
                            Quote::Double => {
                                out.push('\'');
                                for c in val.chars() {
                                    if matches!(c, '\\' | '"' | '`' | '$') {
                                        out.push('\\');
                                    }
                                    out.push(c);
                                }
                                out.push('\'');
                            }
                        }
                    } else {
                        out.push_str(&val);
                    }
                    i = end;
                    continue;
                }
            }
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        // Track the template's quoting context.
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                }
            }
            _ if escaped => escaped = false,
            _ if c == '\\' => escaped = true,
            Quote::Double => {
                if c == '"' {
                    quote = Quote::None;
                }
            }
            Quote::None => {
                if c == '\'' {
                    quote = Quote::Single;
                } else if c == '"' {
                    quote = Quote::Double;
                }
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    Ok(out)
}

impl super::ModuleConfig {
    /// The module with its string parameters' `%VAR%` references expanded
    /// (upstream expands each string when it is first used, so per-connection
    /// variables such as `RSYNC_USER_NAME` can appear, e.g. in `path`). The
    /// shell hooks go through [`expand_vars_for_shell`].
    pub fn expanded<F>(&self, lookup: F) -> Result<super::ModuleConfig, UnsafeHookValue>
    where
        F: Fn(&str) -> Option<String>,
    {
        let mut m = self.clone();
        let plain = |v: &mut Option<String>| {
            if let Some(s) = v.as_mut() {
                if let Cow::Owned(x) = expand_vars(s, &lookup) {
                    *s = x;
                }
            }
        };
        for v in [
            &mut m.auth_users,
            &mut m.charset,
            &mut m.comment,
            &mut m.exclude,
            &mut m.exclude_from,
            &mut m.filter,
            &mut m.gid,
            &mut m.hosts_allow,
            &mut m.hosts_deny,
            &mut m.include,
            &mut m.include_from,
            &mut m.incoming_chmod,
            &mut m.log_file,
            &mut m.outgoing_chmod,
            &mut m.refuse_options,
            &mut m.secrets_file,
            &mut m.uid,
            &mut m.path,
            &mut m.temp_dir,
        ] {
            plain(v);
        }
        for s in [
            &mut m.dont_compress,
            &mut m.lock_file,
            &mut m.log_format,
            &mut m.syslog_tag,
        ] {
            if let Cow::Owned(x) = expand_vars(s, &lookup) {
                *s = x;
            }
        }
        for v in [
            &mut m.early_exec,
            &mut m.pre_xfer_exec,
            &mut m.post_xfer_exec,
            &mut m.name_converter,
        ] {
            if let Some(s) = v.as_mut() {
                *s = expand_vars_for_shell(s, &lookup)?;
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "RSYNC_USER_NAME" => Some("alice".into()),
            "RSYNC_BAD" => Some("a;b".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_expansion() {
        assert_eq!(expand_vars("%HOME%/x", env), "/home/u/x");
        assert_eq!(expand_vars("/a/%RSYNC_USER_NAME%", env), "/a/alice");
        assert_eq!(expand_vars("%EMPTY%x", env), "x");
        assert!(matches!(expand_vars("no refs", env), Cow::Borrowed(_)));
    }

    #[test]
    fn unknown_or_malformed_left_raw() {
        assert_eq!(expand_vars("%NOPE%", env), "%NOPE%");
        assert_eq!(expand_vars("%home%", env), "%home%");
        assert_eq!(expand_vars("100%", env), "100%");
        assert_eq!(expand_vars("%%", env), "%%");
        assert_eq!(expand_vars("%HOME", env), "%HOME");
        // An unknown reference does not swallow a following known one.
        assert_eq!(expand_vars("%X%HOME%", env), "%X/home/u");
        assert_eq!(expand_vars("é%HOME%é", env), "é/home/ué");
    }

    #[test]
    fn shell_quotes_peer_values_by_context() {
        let f = |s: &str| expand_vars_for_shell(s, env).unwrap();
        assert_eq!(f("check %RSYNC_USER_NAME%"), "check 'alice'");
        assert_eq!(f("check '%RSYNC_USER_NAME%'"), "check 'alice'");
        assert_eq!(f("check \"%RSYNC_USER_NAME%\""), "check \"'alice'\"");
        assert_eq!(f("a \"it's\" %RSYNC_USER_NAME%"), "a \"it's\" 'alice'");
        assert_eq!(f("a \\' %RSYNC_USER_NAME%"), "a \\' 'alice'");
        // Non-RSYNC variables are verbatim.
        assert_eq!(f("cd %HOME%"), "cd /home/u");
        assert_eq!(f("x %NOPE% y"), "x %NOPE% y");
    }

    #[test]
    fn shell_refuses_metacharacters() {
        assert_eq!(
            expand_vars_for_shell("x %RSYNC_BAD%", env),
            Err(UnsafeHookValue("RSYNC_BAD".into()))
        );
        for bad in ["a b", "!x", "~", "{a}", "a\nb", "$(id)", "`id`", "\x7f"] {
            let lookup = |n: &str| (n == "RSYNC_V").then(|| bad.to_string());
            assert!(
                expand_vars_for_shell("%RSYNC_V%", lookup).is_err(),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn no_percent_is_identity(s in "[^%]{0,50}") {
            proptest::prop_assert_eq!(expand_vars(&s, env), s.clone());
            proptest::prop_assert_eq!(expand_vars_for_shell(&s, env).unwrap(), s);
        }

        #[test]
        fn unknown_vars_are_identity(s in "\\PC{0,50}") {
            proptest::prop_assert_eq!(expand_vars(&s, |_| None), s.clone());
            proptest::prop_assert_eq!(expand_vars_for_shell(&s, |_| None).unwrap(), s);
        }
    }
}
