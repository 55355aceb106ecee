//! The argument list a client gives the server (upstream: options.c
//! server_options, maybe_add_e_option, safe_arg): `--server`, the single
//! letter bundle with the `-e` capability string, then long options, in
//! stock's order so stock servers (and their logs) see what a stock client
//! would send.

use super::Settings;
use crate::cli::options::Options;

/// Characters a remote shell would interpret (safe_arg's SHELL_CHARS).
const SHELL_CHARS: &[u8] = b"!#$&;|<>(){}\"'` \t\n\r\\";
/// Wildcards, escaped in option values too (WILD_CHARS).
const WILD_CHARS: &[u8] = b"*?[]";

/// How arguments are quoted for the far side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Backslash-escape what a shell or the server's globbing would change
    /// (stock's default since 3.2.4).
    Escape,
    /// Pass as is (`--old-args`, or a local server that runs no shell).
    Raw,
}

/// safe_arg: `opt=arg` (or a file name when `opt` is `None`) escaped for the far side.
pub fn safe_arg(
    opt: Option<&str>,
    arg: &str,
    q: Quoting,
    am_sender: bool,
    relative: bool,
) -> String {
    let is_file = opt.is_none();
    let mut out = String::new();
    if let Some(o) = opt.filter(|o| !o.is_empty()) {
        out.push_str(o);
        out.push('=');
    }
    let a = arg.as_bytes();
    if is_file && a.first() == Some(&b'-') {
        out.push_str("./");
    }
    if q == Quoting::Raw {
        out.push_str(arg);
        return out;
    }
    let escapes: Vec<u8> = if is_file {
        SHELL_CHARS.to_vec()
    } else {
        [WILD_CHARS, SHELL_CHARS].concat()
    };
    let mut bytes: Vec<u8> = Vec::with_capacity(a.len() + 4);
    if a.first() == Some(&b'~')
        && is_file
        && !am_sender
        && ((relative && !arg.contains("/./")) || !arg.contains('/'))
    {
        bytes.push(b'\\');
    }
    for (i, &c) in a.iter().enumerate() {
        if c == b'\\' {
            let next_wild = a.get(i + 1).is_some_and(|n| WILD_CHARS.contains(n));
            if !is_file || !next_wild {
                bytes.push(b'\\');
            }
        } else if escapes.contains(&c) {
            bytes.push(b'\\');
        }
        bytes.push(c);
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

/// The `-e` capability string (maybe_add_e_option), without the leading `e`.
pub fn e_option(allow_inc_recurse: bool) -> String {
    let mut s = String::from(".");
    if allow_inc_recurse {
        s.push('i');
    }
    s.push_str("LsfxCIvu");
    s
}

/// With `-s` (not to a local server): where the secluded part of
/// [`server_options`]' list starts, right after the letter bundle (upstream
/// puts a NULL there; what follows reaches the server on its stdin).
pub fn secluded_from(o: &Options, s: &Settings) -> Option<usize> {
    (o.protect_args && !s.local_server).then_some(if s.am_sender { 2 } else { 3 })
}

/// send_protected_args: `rsync`, then each argument (an empty one as
/// "."), NUL-terminated, and an empty one to end the list.
pub fn protected_args_bytes(args: &[String]) -> Vec<u8> {
    let mut out = b"rsync\0".to_vec();
    for a in args {
        out.extend_from_slice(if a.is_empty() { b"." } else { a.as_bytes() });
        out.push(0);
    }
    out.push(0);
    out
}

/// server_options: the server's argument list up to (not including) the `.`.
/// The `--info` words a server is told (upstream make_output_option with
/// server_options' `where`): those the user set (not those `-v` implies)
/// that matter on the server's side, at their levels; `ALL`/`NONE` (or
/// `ALLn`) stands for the most common level when five or more share it
/// and every word is the user's.
fn info_option(o: &Options, am_sender: bool) -> Option<String> {
    // upstream info_words: name and where (1: client, 2: server, 4:
    // sender, 8: receiver).
    const WORDS: &[(&str, u8)] = &[
        ("BACKUP", 8),
        ("COPY", 8),
        ("DEL", 8),
        ("FLIST", 1),
        ("MISC", 4 | 8),
        ("MOUNT", 4 | 8),
        ("NAME", 4 | 8),
        ("NONREG", 8),
        ("PROGRESS", 1),
        ("REMOVE", 4),
        ("SKIP", 8),
        ("STATS", 1 | 2),
        ("SYMSAFE", 4 | 8),
    ];
    let where_ = 2 | if am_sender { 8 } else { 4 };
    let user_set = |w: &str| {
        o.info.iter().flat_map(|a| a.split(',')).any(|t| {
            let n = t.trim().trim_end_matches(|c: char| c.is_ascii_digit());
            n.eq_ignore_ascii_case(w)
                || n.eq_ignore_ascii_case("all")
                || n.eq_ignore_ascii_case("none")
        })
    };
    let mut words = Vec::new();
    let mut skipped = 0;
    for &(w, at) in WORDS {
        if at & where_ == 0 {
            continue;
        }
        if !user_set(w) {
            skipped += 1;
            continue;
        }
        words.push((w, o.info_level(&w.to_ascii_lowercase())));
    }
    if words.is_empty() {
        return None;
    }
    let mut counts = [0usize; 5];
    let (mut lev, mut max) = (0u8, 0usize);
    for &(_, l) in &words {
        let l = l.min(4);
        counts[l as usize] += 1;
        if counts[l as usize] > max {
            lev = l;
            max = counts[l as usize];
        }
    }
    let mut parts = Vec::new();
    let common = (skipped == 0 && max >= 5).then_some(lev);
    match common {
        Some(0) => parts.push("NONE".to_string()),
        Some(1) => parts.push("ALL".to_string()),
        Some(l) => parts.push(format!("ALL{l}")),
        None => {}
    }
    for (w, l) in words {
        if Some(l.min(4)) == common {
            continue;
        }
        parts.push(if l == 1 {
            w.to_string()
        } else {
            format!("{w}{l}")
        });
    }
    Some(format!("--info={}", parts.join(",")))
}

pub fn server_options(o: &Options, s: &Settings) -> Vec<String> {
    let am_sender = s.am_sender;
    let q = s.quoting;
    let sa = |opt: Option<&str>, arg: &str| safe_arg(opt, arg, q, am_sender, s.relative);
    let mut args: Vec<String> = vec!["--server".into()];
    if !am_sender {
        args.push("--sender".into());
    }
    let mut f = String::from("-");
    // (A local server is started with the whole list on its command line.)
    if o.protect_args && !s.local_server {
        f.push('s');
    }
    for _ in 0..o.verbose.min(9) {
        f.push('v');
    }
    if o.quiet {
        f.push('q');
    }
    if o.backup {
        f.push('b');
    }
    if o.update {
        f.push('u');
    }
    if o.dry_run {
        f.push('n');
    }
    if o.links {
        f.push('l');
    }
    if (s.xfer_dirs >= 2 && s.xfer_dirs < 4)
        || (s.xfer_dirs > 0 && !s.recursive && (s.list_only > 0 || (s.delete && am_sender)))
    {
        f.push('d');
    }
    if am_sender {
        if o.keep_dirlinks {
            f.push('K');
        }
        if o.prune_empty_dirs {
            f.push('m');
        }
        if o.omit_dir_times {
            f.push('O');
        }
        if o.omit_link_times {
            f.push('J');
        }
        // upstream: -yy is one listing per basis dir more, so without
        // one it is -y.
        if o.fuzzy > 0 {
            f.push('y');
        }
        if o.fuzzy > 1 && !o.basis_dirs.is_empty() {
            f.push('y');
        }
    } else {
        if o.copy_links {
            f.push('L');
        }
        if o.copy_dirlinks {
            f.push('k');
        }
    }
    if s.whole_file {
        f.push('W');
    }
    for _ in 0..o.hard_links.min(2) {
        f.push('H');
    }
    if o.owner {
        f.push('o');
    }
    if o.group {
        f.push('g');
    }
    if o.devices {
        f.push('D');
    }
    if o.times {
        f.push('t');
    }
    for _ in 0..o.atimes.min(2) {
        f.push('U');
    }
    if o.crtimes {
        f.push('N');
    }
    if o.perms {
        f.push('p');
    } else if o.executability && am_sender {
        f.push('E');
    }
    if o.acls {
        f.push('A');
    }
    for _ in 0..o.xattrs.min(2) {
        f.push('X');
    }
    if s.recursive {
        f.push('r');
    }
    if o.checksum {
        f.push('c');
    }
    if o.cvs_exclude {
        f.push('C');
    }
    if o.ignore_times {
        f.push('I');
    }
    if s.relative {
        f.push('R');
    }
    for _ in 0..o.one_file_system.min(2) {
        f.push('x');
    }
    if o.sparse {
        f.push('S');
    }
    let zlib = o.compress && matches!(o.compress_choice.as_deref(), None | Some("zlib"));
    if zlib {
        f.push('z');
    }
    if s.pre_proto >= 30 {
        f.push('e');
        f.push_str(&e_option(s.allow_inc_recurse));
    }
    if f.len() > 1 {
        args.push(f);
    }
    // (A forked local server inherits an implied listing; ours is started
    // fresh, so it is told.)
    if s.list_only > 1 || (s.list_only > 0 && s.local_server) {
        args.push("--list-only".into());
    }
    if s.xfer_dirs > 0 && !s.recursive && s.delete && am_sender {
        args.push("--no-r".into());
    }
    if let (true, Some(l)) = (o.compress, o.compress_level) {
        args.push(format!("--compress-level={l}"));
    }
    if o.devices {
        if !o.specials {
            args.push("--no-specials".into());
        }
    } else if o.specials {
        args.push("--specials".into());
    }
    // A forked local server below protocol 29 words its own deletions in
    // the client's whole format (upstream's child has it); ours is told it.
    let forked_format = s.local_server && o.protocol.is_some_and(|p| p < 29);
    if let (Some(f), true, true) = (&s.out.format, am_sender, forked_format) {
        args.push(format!("--log-format={f}"));
    } else if let (Some(_), true) = (&s.out.format, am_sender) {
        if s.out.has_i > 1 {
            args.push("--log-format=%i%I".into());
        } else if s.out.has_i > 0 {
            args.push("--log-format=%i".into());
        } else if s.out.has_o_or_i {
            args.push("--log-format=%o".into());
        } else if o.verbose == 0 {
            args.push("--log-format=X".into());
        }
    }
    match o.msgs2stderr {
        Some(true) => args.push("--msgs2stderr".into()),
        Some(false) => args.push("--no-msgs2stderr".into()),
        None => {}
    }
    if let Some(b) = o.block_size {
        args.push(format!("-B{b}"));
    }
    if let Some(t) = o.timeout.filter(|t| *t > 0) {
        args.push(format!("--timeout={t}"));
    }
    if let Some(b) = &o.bwlimit {
        if let Some(k) = super::bwlimit_kib(b).filter(|k| *k > 0) {
            args.push(format!("--bwlimit={k}"));
        }
    }
    if let Some(d) = &o.backup_dir {
        args.push("--backup-dir".into());
        args.push(sa(Some(""), d));
    }
    if let Some(sfx) = &o.suffix {
        let default = if o.backup_dir.is_some() { "" } else { "~" };
        if sfx != default {
            args.push(sa(Some("--suffix"), sfx));
        }
    }
    if let Some(c) = &o.checksum_choice {
        args.push(sa(Some("--checksum-choice"), c));
    }
    match o.compress_choice.as_deref() {
        Some("zlibx") => args.push("--new-compress".into()),
        Some("zlib") => args.push("--old-compress".into()),
        Some(c) => args.push(sa(Some("--compress-choice"), c)),
        None => {}
    }
    if am_sender {
        match o.max_delete {
            Some(n) if n > 0 => args.push(format!("--max-delete={n}")),
            Some(_) => args.push("--max-delete=-1".into()),
            None => {}
        }
        if let Some(m) = &o.min_size {
            args.push(sa(Some("--min-size"), m));
        }
        if let Some(m) = &o.max_size {
            args.push(sa(Some("--max-size"), m));
        }
        match o.delete_when {
            Some("delete-before") => args.push("--delete-before".into()),
            Some("delete-delay") => args.push("--delete-delay".into()),
            Some("delete-during") => args.push("--delete-during".into()),
            Some("delete-after") => args.push("--delete-after".into()),
            _ if s.delete && !o.delete_excluded => args.push("--delete".into()),
            _ => {}
        }
        if o.delete_excluded {
            args.push("--delete-excluded".into());
        }
        if o.force {
            args.push("--force".into());
        }
        if o.super_ {
            args.push("--super".into());
        }
        if o.size_only {
            args.push("--size-only".into());
        }
        if o.stats {
            args.push("--stats".into());
        }
    } else if let Some(sc) = &o.skip_compress {
        args.push(sa(Some("--skip-compress"), sc));
    }
    if let Some(m) = &o.max_alloc {
        args.push(sa(Some("--max-alloc"), m));
    }
    if o.delete_missing_args {
        args.push("--delete-missing-args".into());
    } else if o.ignore_missing_args && !am_sender {
        args.push("--ignore-missing-args".into());
    }
    if let (Some(w), true) = (o.modify_window, am_sender) {
        if w < 0 {
            args.push(format!("-@{w}"));
        } else {
            args.push(format!("--modify-window={w}"));
        }
    }
    if let Some(seed) = o.checksum_seed.filter(|s| *s != 0) {
        args.push(format!("--checksum-seed={seed}"));
    }
    if let (Some(pd), true) = (&o.partial_dir, am_sender) {
        args.push("--partial-dir".into());
        args.push(sa(Some(""), pd));
        if o.delay_updates {
            args.push("--delay-updates".into());
        }
    } else if am_sender && o.delay_updates {
        // --delay-updates alone implies the default partial dir, not sent.
        args.push("--delay-updates".into());
    } else if o.partial && am_sender {
        args.push("--partial".into());
    }
    if o.ignore_errors {
        args.push("--ignore-errors".into());
    }
    if o.copy_unsafe_links {
        args.push("--copy-unsafe-links".into());
    }
    if o.safe_links {
        args.push("--safe-links".into());
    }
    if o.numeric_ids {
        args.push("--numeric-ids".into());
    }
    if o.use_qsort() {
        args.push("--use-qsort".into());
    }
    if am_sender {
        if let Some(u) = &o.usermap {
            args.push(sa(Some("--usermap"), u));
        }
        if let Some(g) = &o.groupmap {
            args.push(sa(Some("--groupmap"), g));
        }
        if o.ignore_existing {
            args.push("--ignore-existing".into());
        }
        if o.existing {
            args.push("--existing".into());
        }
        if let Some(t) = &o.temp_dir {
            args.push("--temp-dir".into());
            args.push(sa(Some(""), t));
        }
        if o.misc.iter().any(|m| m == "fsync") {
            args.push("--fsync".into());
        }
        for (kind, dir) in &o.basis_dirs {
            args.push(format!("--{kind}"));
            args.push(sa(Some(""), dir));
        }
    }
    if let Some(a) = info_option(o, s.am_sender) {
        args.push(a);
    }
    // A forked local server would inherit the client's output levels; ours
    // is told the one it uses itself.
    if s.local_server && s.out.name > 0 && (o.verbose == 0 || !o.info.is_empty()) {
        args.push(format!("--info=name{}", s.out.name));
    }
    // Its skip notes too ("not creating new ..." is the generator's).
    if s.local_server && !o.info.is_empty() {
        args.push(format!("--info=skip{}", o.info_level("skip")));
    }
    // Its debug output too (--debug=fuzzy is the generator's).
    if s.local_server {
        args.extend(o.debug.iter().map(|d| format!("--debug={d}")));
    }
    if o.append > 0 {
        if o.append > 1 {
            args.push("--append".into());
        }
        args.push("--append".into());
    } else if o.inplace {
        args.push("--inplace".into());
        if o.sparse && !s.whole_file && am_sender {
            args.push("--no-W".into());
        }
    }
    if let Some(ff) = &o.files_from {
        if !am_sender || s.files_from_remote {
            if s.files_from_remote {
                args.push("--files-from".into());
                args.push(sa(
                    Some(""),
                    s.files_from_remote_path.as_deref().unwrap_or(ff),
                ));
                if o.from0 {
                    args.push("--from0".into());
                }
            } else {
                args.push("--files-from=-".into());
                args.push("--from0".into());
            }
            if !s.relative {
                args.push("--no-relative".into());
            }
        }
    }
    if s.relative && !s.implied_dirs && (!am_sender || s.pre_proto >= 30) {
        args.push("--no-implied-dirs".into());
    }
    if o.remove_source_files {
        args.push("--remove-source-files".into());
    }
    if am_sender && o.misc.iter().any(|m| m == "preallocate") {
        args.push("--preallocate".into());
    }
    if o.open_noatime {
        args.push("--open-noatime".into());
    }
    if o.mkpath && am_sender {
        args.push("--mkpath".into());
    }
    // -M/--remote-option: given to the far side as they are, last.
    for r in &o.dparams {
        args.push(sa(Some(""), r));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_args_as_upstream() {
        let q = Quoting::Escape;
        assert_eq!(safe_arg(None, "a b", q, true, false), "a\\ b");
        assert_eq!(safe_arg(None, "-x", q, true, false), "./-x");
        assert_eq!(safe_arg(None, "~x", q, false, false), "\\~x");
        assert_eq!(
            safe_arg(Some("--suffix"), "*.b", q, true, false),
            "--suffix=\\*.b"
        );
        assert_eq!(safe_arg(None, "a\\*", q, true, false), "a\\*");
        assert_eq!(safe_arg(Some(""), "d", q, true, false), "d");
        assert_eq!(safe_arg(None, "a b", Quoting::Raw, true, false), "a b");
    }

    #[test]
    fn e_option_letters() {
        assert_eq!(e_option(true), ".iLsfxCIvu");
        assert_eq!(e_option(false), ".LsfxCIvu");
    }
}
