//! A module's `refuse options` (upstream options.c set_refuse_options,
//! parse_one_refuse_match and the refusal checks of parse_arguments):
//! which of the options a client sent the daemon turns away.
//!
//! Each word is a pattern matched (rsync's wildmatch) against every
//! option's long name and its one-letter name; words apply left to right and
//! a later one wins, so `!NAME` accepts again what an earlier wildcard
//! refused. `a` or `archive` stands for `[ardlptgoD]` (and so for what `-a`
//! implies). A few options are refused only when named exactly, never by a
//! wildcard (`-e`, `-0`, `-s`, `-n`, `--iconv`, `--checksum-seed`,
//! `--log-format`, `--server`, `--sender`, ...). Whatever the module says,
//! `--copy-devices` and `--write-devices` are refused unless accepted by an
//! exact `!NAME`, and `--log-file*` and `--insecure-links` always are.
//! Refusing `delete` refuses every deletion mode, refusing `compress` (or
//! `z`) compression however asked for.

use crate::cli::options::{short_of, Options};
use crate::filter::wildmatch::wildmatch;

/// Options only an exact word refuses.
fn exact_only(name: &str, short: Option<char>) -> bool {
    matches!(short, Some('e' | '0' | 's' | 'n'))
        || matches!(
            name,
            "iconv"
                | "no-iconv"
                | "checksum-seed"
                | "copy-devices"
                | "write-devices"
                | "log-format"
                | "out-format"
                | "sender"
                | "server"
        )
}

/// Whether the words of `refuse options` (with the daemon's own refusals
/// around them) refuse option `name`.
fn refused_by(words: &[&str], name: &str) -> bool {
    let short = short_of(name);
    let letter = short.map(|c| c.to_string());
    let exact = exact_only(name, short);
    let matches = |pat: &str| {
        wildmatch(pat.as_bytes(), name.as_bytes())
            || letter
                .as_deref()
                .is_some_and(|l| wildmatch(pat.as_bytes(), l.as_bytes()))
    };
    // Refused by default, accepted only by an exact "!NAME".
    let mut refused = matches!(name, "copy-devices" | "write-devices");
    for w in words {
        let (negated, pat) = match w.strip_prefix('!') {
            Some(p) if !p.is_empty() => (true, p),
            _ => (false, *w),
        };
        let (pat, wild) = if pat == "a" || pat == "archive" {
            ("[ardlptgoD]", true)
        } else {
            (pat, pat.contains(['*', '?', '[']))
        };
        if wild && exact {
            continue;
        }
        if matches(pat) {
            refused = !negated;
        }
    }
    refused || name.starts_with("log-file") || name == "insecure-links"
}

/// How upstream names a refused option: `--name` and ` (-c)`.
fn shown(name: &str) -> String {
    match short_of(name) {
        Some(c) => format!("--{name} (-{c})"),
        None => format!("--{name}"),
    }
}

/// The first option the client sent that the module refuses, as upstream
/// names it ("--checksum (-c)"), if any.
pub fn refused_option(refuse: Option<&str>, opts: &Options) -> Option<String> {
    let words: Vec<&str> = refuse.unwrap_or("").split_ascii_whitespace().collect();
    for seen in &opts.seen {
        if opts.negated.contains(seen) {
            continue;
        }
        // `-a` is refused through the parts it implies.
        if seen == "archive" {
            if let Some(part) = [
                "recursive",
                "links",
                "perms",
                "times",
                "group",
                "owner",
                "devices",
            ]
            .iter()
            .find(|p| refused_by(&words, p))
            {
                return Some(shown(part));
            }
            continue;
        }
        if refused_by(&words, seen) {
            return Some(shown(seen));
        }
    }
    // What other options imply (upstream's refused_delete and
    // refused_compress checks after parsing).
    let deleting = opts
        .seen
        .iter()
        .any(|s| s.starts_with("del") && !opts.negated.contains(s));
    if deleting && refused_by(&words, "delete") {
        return Some(shown("delete"));
    }
    let compressing = opts.seen.iter().any(|s| {
        matches!(
            s.as_str(),
            "compress" | "compress-choice" | "old-compress" | "new-compress"
        ) && !opts.negated.contains(s)
    });
    if compressing && refused_by(&words, "compress") {
        return Some(shown("compress"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(args: &[&str]) -> Options {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        crate::cli::options::parse(&v).expect("options").0
    }

    #[test]
    fn long_short_wild_and_negated() {
        let o = sent(&["--server", "--sender", "-logDtprce.iLsfxCIvu", "."]);
        assert_eq!(
            refused_option(Some("c"), &o).as_deref(),
            Some("--checksum (-c)")
        );
        assert_eq!(
            refused_option(Some("checksum"), &o).as_deref(),
            Some("--checksum (-c)")
        );
        assert_eq!(
            refused_option(Some("*"), &o).as_deref(),
            Some("--links (-l)")
        );
        assert_eq!(
            refused_option(
                Some("* !l !o !g !D !t !p !r !c !i !L !f !x !C !I !v !u"),
                &o
            ),
            None
        );
        assert_eq!(
            refused_option(Some("a"), &o).as_deref(),
            Some("--links (-l)")
        );
        assert_eq!(refused_option(Some("*-dest"), &o), None);
        assert_eq!(refused_option(None, &o), None);
    }

    #[test]
    fn implied_and_forced() {
        let o = sent(&["--server", "-r", "--delete-after", "."]);
        assert_eq!(
            refused_option(Some("delete"), &o).as_deref(),
            Some("--delete")
        );
        let o = sent(&["--server", "-r", "--log-file=/tmp/x", "."]);
        assert_eq!(refused_option(None, &o).as_deref(), Some("--log-file"));
        let o = sent(&["--server", "-r", "--copy-devices", "."]);
        assert_eq!(refused_option(None, &o).as_deref(), Some("--copy-devices"));
        assert_eq!(refused_option(Some("!copy-devices"), &o), None);
        let o = sent(&["--server", "-rz", "."]);
        assert_eq!(
            refused_option(Some("compress"), &o).as_deref(),
            Some("--compress (-z)")
        );
    }
}
