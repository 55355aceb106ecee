//! The client's checks of its options once all are read (upstream: the end
//! of options.c parse_arguments, in its order, and the option checks at the
//! start of main.c start_client): what cannot work together is refused
//! with stock's message and exit code before anything is started.

use super::{fail, Fail};
use crate::cli::options::{Options, DEL_AFTER, DEL_BEFORE, DEL_DURING};
use crate::exit::{RERR_FILEIO, RERR_SYNTAX, RERR_UNSUPPORTED};

/// The longest `--temp-dir` (upstream: shorter than MAXPATHLEN - 10).
const MAX_TEMP_DIR: usize = 4096 - 10;
/// The longest `--backup-dir` (upstream: its buffer less 128 bytes).
const MAX_BACKUP_DIR: usize = 4096 - 128;

/// An option error as upstream's option_error prints it ("rsync: ", exit 1).
fn refuse(msg: impl std::fmt::Display) -> Fail {
    fail(RERR_SYNTAX, format!("rsync: {msg}"))
}

/// Is `name` a checksum stock knows (and we do), or `auto`?
fn known_checksum(name: &str) -> bool {
    name.eq_ignore_ascii_case("auto") || crate::checksum::ChecksumKind::from_name(name).is_ok()
}

/// `--checksum-choice`: each name known (upstream parse_checksum_choice,
/// which names the whole argument when its first part is unknown).
fn check_checksum_choice(c: &str) -> Result<(), Fail> {
    if c.eq_ignore_ascii_case("auto") || c.eq_ignore_ascii_case("auto,auto") {
        return Ok(());
    }
    let unknown = |shown: &str| fail(RERR_UNSUPPORTED, format!("unknown checksum name: {shown}"));
    match c.split_once(',') {
        Some((xfer, _)) if !known_checksum(xfer) => Err(unknown(c)),
        Some((_, file)) if !known_checksum(file) => Err(unknown(file)),
        Some(_) => Ok(()),
        None if known_checksum(c) => Ok(()),
        None => Err(unknown(c)),
    }
}

/// `--compress-choice`: a name stock knows (and we do).
fn check_compress_choice(c: &str) -> Result<(), Fail> {
    let known = crate::protocol::handshake::COMPRESS_NAMES
        .iter()
        .chain(&["none"])
        .any(|n| n.eq_ignore_ascii_case(c));
    if known {
        Ok(())
    } else {
        Err(fail(
            RERR_UNSUPPORTED,
            format!("unknown compress name: {c}"),
        ))
    }
}

/// The backup options (upstream: the suffix and backup-dir checks).
fn check_backup(o: &Options) -> Result<(), Fail> {
    let suffix = o
        .suffix
        .as_deref()
        .unwrap_or(if o.backup_dir.is_some() { "" } else { "~" });
    if suffix.contains('/') {
        return Err(refuse(format!("--suffix cannot contain slashes: {suffix}")));
    }
    // A backup dir of "." (or "./") is the destination itself.
    let dir = o.backup_dir.as_deref().map(|d| {
        let mut d = d;
        while let Some(rest) = d.strip_prefix("./") {
            d = rest;
        }
        if d == "." {
            ""
        } else {
            d
        }
    });
    if dir.is_some_and(|d| d.len() > MAX_BACKUP_DIR) {
        return Err(refuse("the --backup-dir path is WAY too long."));
    }
    match dir {
        Some(d) if !d.is_empty() => Ok(()),
        _ if suffix.is_empty() => Err(refuse(format!(
            "--suffix cannot be empty {}",
            if dir.is_some() {
                "when --backup-dir is the same as the dest dir"
            } else {
                "without a --backup-dir"
            }
        ))),
        _ => Ok(()),
    }
}

/// The in-place options (upstream: --append and --inplace against
/// --whole-file, --partial-dir and --delay-updates).
fn check_inplace(o: &Options) -> Result<(), Fail> {
    let append = o.append > 0;
    if append && o.whole_file == Some(true) {
        return Err(refuse("--append cannot be used with --whole-file"));
    }
    let inplace = o.inplace || append || o.misc.iter().any(|m| m == "write-devices");
    if inplace && (o.partial_dir.is_some() || o.delay_updates) {
        return Err(refuse(format!(
            "--{} cannot be used with --{}",
            if append { "append" } else { "inplace" },
            if o.delay_updates {
                "delay-updates"
            } else {
                "partial-dir"
            }
        )));
    }
    Ok(())
}

/// Whether directories are transferred (upstream xfer_dirs after its
/// defaults): `-r`, `-d`, `--files-from`, or a listing.
fn transfers_dirs(o: &Options, nargs: usize) -> bool {
    let seen = |n: &str| o.seen.iter().any(|s| s == n);
    let files_from = o.files_from.is_some();
    let recursive = o.recursive && (!files_from || seen("recursive") || seen("r"));
    if recursive {
        return true;
    }
    if seen("dirs") {
        return o.dirs;
    }
    files_from || o.list_only || nargs < 2
}

/// The option checks, in upstream's order; `args` are the path arguments.
pub fn check_options(o: &Options, args: &[String]) -> Result<(), Fail> {
    for one in &o.chmod {
        crate::flist::chmod::Chmod::parse(one, 0).map_err(refuse)?;
    }
    if let Some(c) = &o.checksum_choice {
        check_checksum_choice(c)?;
    }
    if let Some(c) = &o.compress_choice {
        check_compress_choice(c)?;
    }
    if let Some(mode) = &o.outbuf {
        let first = mode.bytes().next().map(|c| c.to_ascii_uppercase());
        if !matches!(first, Some(b'N' | b'U' | b'L' | b'B' | b'F')) {
            return Err(refuse("Invalid --outbuf setting -- specify N, L, or B."));
        }
    }
    if o.temp_dir.as_ref().is_some_and(|t| t.len() >= MAX_TEMP_DIR) {
        return Err(refuse("the --temp-dir path is WAY too long."));
    }
    let whens = [DEL_BEFORE, DEL_DURING, DEL_AFTER]
        .iter()
        .filter(|b| o.delete_whens & **b != 0)
        .count();
    if whens > 1 {
        return Err(refuse(
            "You may not combine multiple --delete-WHEN options.",
        ));
    }
    let delete = o.delete || o.delete_excluded || o.delete_when.is_some();
    if delete && !transfers_dirs(o, args.len()) {
        return Err(refuse(
            "--delete does not work without --recursive (-r) or --dirs (-d).",
        ));
    }
    check_backup(o)?;
    check_inplace(o)?;
    if let Some(ff) = &o.files_from {
        // Exactly one source and a destination: stock's usage, on stderr.
        if args.len() != 2 {
            eprint!("{}", crate::cli::about::usage());
            return Err(Fail {
                msg: None,
                ..fail(RERR_SYNTAX, "")
            });
        }
        if let Some(h) = super::args::check_for_hostspec(ff) {
            if h.path == "-" {
                return Err(refuse("Invalid --files-from remote filename"));
            }
        }
    }
    Ok(())
}

/// What the negotiated protocol `proto` cannot do (upstream compat.c
/// setup_protocol, below protocol 29), said as stock says it.
pub fn needs_protocol_29(o: &Options, proto: u8) -> Option<String> {
    if proto >= 29 {
        return None;
    }
    if o.fuzzy > 0 {
        return Some(format!(
            "--fuzzy requires protocol 29 or higher (negotiated {proto})."
        ));
    }
    let inplace = o.inplace || o.append > 0 || o.misc.iter().any(|m| m == "write-devices");
    let basis = o.basis_dirs.first().map(|(kind, _)| kind.as_str());
    match basis {
        Some(kind) if inplace => Some(format!(
            "--{kind} with --inplace requires protocol 29 or higher (negotiated {proto})."
        )),
        Some(kind) if o.basis_dirs.len() > 1 => Some(format!(
            "Using more than one --{kind} option requires protocol 29 or higher (negotiated {proto})."
        )),
        _ if o.prune_empty_dirs => Some(format!(
            "--prune-empty-dirs requires protocol 29 or higher (negotiated {proto})."
        )),
        _ => None,
    }
}

/// A filter file the client cannot open: stock's rsyserr line (who, then
/// why with errno), exit 11 (upstream exclude.c parse_filter_file).
pub fn filter_open_failure(include: bool, path: &str, err: &std::io::Error) -> Fail {
    fail(
        RERR_FILEIO,
        format!(
            "rsync: [client] failed to open {}clude file {path}: {}",
            if include { "in" } else { "ex" },
            crate::fs::os_error_text(err)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: &[&str]) -> Result<(), (i32, Option<String>)> {
        let argv: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        let (o, rest) = crate::cli::options::parse(&argv).expect("parses");
        check_options(&o, &rest).map_err(|f| (f.code, f.msg))
    }

    fn refused(v: &[&str]) -> String {
        check(v).unwrap_err().1.unwrap_or_default()
    }

    #[test]
    fn protocol_28_refusals_in_stock_order() {
        let at = |v: &[&str], proto| {
            let argv: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            let (o, _) = crate::cli::options::parse(&argv).expect("parses");
            needs_protocol_29(&o, proto)
        };
        assert_eq!(
            at(&["-y", "--link-dest=a", "--inplace"], 28).as_deref(),
            Some("--fuzzy requires protocol 29 or higher (negotiated 28).")
        );
        assert_eq!(at(&["-yy"], 29), None);
        assert!(
            at(&["--link-dest=a", "--inplace"], 28).is_some_and(|m| m.starts_with("--link-dest"))
        );
    }

    #[test]
    fn choices_name_what_stock_names() {
        assert!(check(&["--cc=MD5", "--zc=ZSTD", "a", "b"]).is_ok());
        assert!(check(&["--cc=auto,xxhash", "--zc=none", "a", "b"]).is_ok());
        assert_eq!(
            check(&["--cc=bogus,md5", "a", "b"]),
            Err((4, Some("unknown checksum name: bogus,md5".into())))
        );
        assert_eq!(refused(&["--cc=md5,", "a", "b"]), "unknown checksum name: ");
        assert_eq!(
            refused(&["--zc=zstd,lz4", "a", "b"]),
            "unknown compress name: zstd,lz4"
        );
    }

    #[test]
    fn combinations_refused_as_stock() {
        assert_eq!(
            refused(&["--delete-before", "--del", "-r", "a", "b"]),
            "rsync: You may not combine multiple --delete-WHEN options."
        );
        assert!(check(&["--delete-during", "--delete-delay", "-r", "a", "b"]).is_ok());
        assert_eq!(
            refused(&["--delete", "a", "b"]),
            "rsync: --delete does not work without --recursive (-r) or --dirs (-d)."
        );
        assert!(check(&["--delete", "-d", "a", "b"]).is_ok());
        assert!(check(&["--delete", "--files-from=x", "a", "b"]).is_ok());
        assert_eq!(
            refused(&["--suffix=", "a", "b"]),
            "rsync: --suffix cannot be empty without a --backup-dir"
        );
        assert_eq!(
            refused(&["--backup-dir=././", "a", "b"]),
            "rsync: --suffix cannot be empty when --backup-dir is the same as the dest dir"
        );
        assert!(check(&["--backup-dir=bak", "--suffix=", "a", "b"]).is_ok());
        assert_eq!(
            refused(&["--append-verify", "-W", "a", "b"]),
            "rsync: --append cannot be used with --whole-file"
        );
        assert_eq!(
            refused(&["--append", "--partial-dir=p", "a", "b"]),
            "rsync: --append cannot be used with --partial-dir"
        );
        assert_eq!(
            refused(&["--inplace", "--delay-updates", "--partial-dir=p", "a", "b"]),
            "rsync: --inplace cannot be used with --delay-updates"
        );
        assert!(check(&["--inplace", "--partial", "--no-W", "a", "b"]).is_ok());
        assert_eq!(
            refused(&["--outbuf=x", "a", "b"]),
            "rsync: Invalid --outbuf setting -- specify N, L, or B."
        );
        assert!(check(&["--outbuf=line", "a", "b"]).is_ok());
        assert_eq!(
            refused(&["--files-from=h:-", "a", "b"]),
            "rsync: Invalid --files-from remote filename"
        );
        assert_eq!(check(&["--files-from=x", "a", "b", "c"]), Err((1, None)));
    }
}
