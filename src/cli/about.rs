//! What rrsync says about itself (upstream: usage.c print_rsync_version,
//! usage; options.c output_item_help): `--version` text, the `-VV` JSON
//! capability report that tools probe, `--help`, and the `--info=help` /
//! `--debug=help` word lists. Every capability reported true works.

use crate::protocol::handshake::{CHECKSUM_NAMES, COMPRESS_NAMES};

/// (JSON key, text label, supported) for each capability stock reports.
const CAPABILITIES: &[(&str, &str, bool)] = &[
    ("socketpairs", "socketpairs", true),
    ("symlinks", "symlinks", true),
    ("symtimes", "symtimes", true),
    ("hardlinks", "hardlinks", true),
    ("hardlink_specials", "hardlink-specials", true),
    ("hardlink_symlinks", "hardlink-symlinks", true),
    ("IPv6", "IPv6", true),
    ("atimes", "atimes", false),
    ("batchfiles", "batchfiles", false),
    ("inplace", "inplace", true),
    ("append", "append", true),
    ("ACLs", "ACLs", false),
    ("ACL_at", "ACL-at", false),
    ("xattrs", "xattrs", true),
    // (Reported as stock's: "optional", off unless asked for.)
    ("secluded_args", "secluded-args", true),
    ("iconv", "iconv", false),
    ("prealloc", "prealloc", true),
    ("stop_at", "stop-at", true),
    ("crtimes", "crtimes", false),
];

/// Options a client of this rrsync refuses as unknown, because what they
/// ask for is not implemented (tools probe with `rrsync OPT --version`).
pub const UNSUPPORTED_CLIENT_OPTIONS: &[&str] = &[
    "acls",
    "atimes",
    "crtimes",
    "iconv",
    "write-batch",
    "only-write-batch",
    "read-batch",
    "copy-as",
    "fake-super",
    "write-devices",
    "copy-devices",
];

fn checksum_list() -> Vec<&'static str> {
    let mut v = CHECKSUM_NAMES.to_vec();
    v.push("none");
    v
}

fn compress_list() -> Vec<&'static str> {
    let mut v = COMPRESS_NAMES.to_vec();
    v.push("none");
    v
}

/// `--version`: stock's layout, our facts.
pub fn version_text() -> String {
    let mut s = format!(
        "rrsync  version {}  protocol version {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::protocol::PROTOCOL_VERSION
    );
    s.push_str("A Rust reimplementation of rsync, compatible with rsync 3.x on the wire.\n");
    s.push_str(
        "Capabilities:\n    64-bit files, 64-bit inums, 64-bit timestamps, 64-bit long ints,\n   ",
    );
    let words: Vec<String> = CAPABILITIES
        .iter()
        .map(|(_, label, ok)| {
            if *label == "secluded-args" {
                format!("optional {label}")
            } else if *ok {
                label.to_string()
            } else {
                format!("no {label}")
            }
        })
        .collect();
    let mut line_len = 3;
    for (i, w) in words.iter().enumerate() {
        let piece = if i + 1 < words.len() {
            format!(" {w},")
        } else {
            format!(" {w}")
        };
        if line_len + piece.len() > 72 {
            s.push_str("\n   ");
            line_len = 3;
        }
        s.push_str(&piece);
        line_len += piece.len();
    }
    s.push('\n');
    s.push_str(&format!(
        "Checksum list:\n    {}\nCompress list:\n    {}\nDaemon auth list:\n    {}\n",
        checksum_list().join(" "),
        compress_list().join(" "),
        crate::daemon::auth::DIGESTS.join(" ")
    ));
    s.push_str(
        "\nrrsync comes with ABSOLUTELY NO WARRANTY.  This is free software (GPL-3.0-or-later).\n",
    );
    s
}

fn json_list(v: &[&str]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[\n    {}\n  ]", items.join(", "))
}

/// `-VV`: the JSON report of stock 3.4+.
pub fn version_json() -> String {
    let mut caps = vec![
        "\"file_bits\": 64".to_string(),
        "\"inum_bits\": 64".to_string(),
        "\"timestamp_bits\": 64".to_string(),
        "\"long_int_bits\": 64".to_string(),
    ];
    caps.extend(CAPABILITIES.iter().map(|(k, _, ok)| match *k {
        "secluded_args" => format!("\"{k}\": \"optional\""),
        _ => format!("\"{k}\": {ok}"),
    }));
    format!(
        "{{\n  \"program\": \"rrsync\",\n  \"version\": \"{}\",\n  \"protocol\": \"{}.0\",\n  \"copyright\": \"(C) 2026 the rrsync authors\",\n  \"url\": \"https://github.com/rrsync\",\n  \"capabilities\": {{\n    {}\n  }},\n  \"optimizations\": {{\n    \"SIMD_roll\": false, \"asm_roll\": false, \"openssl_crypto\": false, \"asm_MD5\": false\n  }},\n  \"checksum_list\": {},\n  \"compress_list\": {},\n  \"daemon_auth_list\": {},\n  \"license\": \"GPLv3\",\n  \"caveat\": \"rrsync comes with ABSOLUTELY NO WARRANTY\"\n}}\n",
        env!("CARGO_PKG_VERSION"),
        crate::protocol::PROTOCOL_VERSION,
        caps.join(", "),
        json_list(&checksum_list()),
        json_list(&compress_list()),
        json_list(crate::daemon::auth::DIGESTS),
    )
}

/// `--help`.
pub fn usage() -> String {
    format!(
        "{}\nUsage: rrsync [OPTION]... SRC [SRC]... DEST\n  or   rrsync [OPTION]... SRC [SRC]... [USER@]HOST:DEST\n  or   rrsync [OPTION]... SRC [SRC]... [USER@]HOST::DEST\n  or   rrsync [OPTION]... SRC [SRC]... rsync://[USER@]HOST[:PORT]/DEST\n  or   rrsync [OPTION]... [USER@]HOST:SRC [DEST]\n  or   rrsync [OPTION]... [USER@]HOST::SRC [DEST]\n  or   rrsync [OPTION]... rsync://[USER@]HOST[:PORT]/SRC [DEST]\n  or   rrsync --daemon [--no-detach] [--config=FILE] [--port=PORT] [--address=ADDR]\n  or   rrsync push [OPTION]... SRC TARGET...\n\nThe options are rsync's (see rsync(1)); rrsync refuses the ones it does not\nimplement as unknown: {}.\n",
        version_text().lines().next().unwrap_or(""),
        UNSUPPORTED_CLIENT_OPTIONS.join(", ")
    )
}

/// `--info=help`.
pub fn info_help() -> String {
    "Use OPT or OPT1 for level 1 output, OPT2 for level 2, etc.; OPT0 silences.\n\n\
DEL        Mention deletions on the receiving side\n\
FLIST      Mention file-list receiving/sending (levels 1-2)\n\
MISC       Mention miscellaneous information (levels 1-2)\n\
NAME       Mention 1) updated file/dir names, 2) unchanged names\n\
NONREG     Mention skipped non-regular files (default 1, 0 disables)\n\
PROGRESS   Mention 1) per-file progress or 2) total transfer progress\n\
SKIP       Mention files skipped due to transfer overrides (levels 1-2)\n\
STATS      Mention statistics at end of run (levels 1-3)\n\n\
Options added at each level of verbosity:\n\
0) NONREG\n\
1) DEL,FLIST,MISC,NAME,STATS\n\
2) MISC2,NAME2,SKIP\n"
        .to_string()
}

/// `--debug=help`.
pub fn debug_help() -> String {
    "Use OPT or OPT1 for level 1 output, OPT2 for level 2, etc.; OPT0 silences.\n\n\
rrsync logs its own diagnostics with RRSYNC_LOG=debug (or trace); the\n\
--debug words of rsync are accepted and have no further effect.\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_probed_keys() {
        let j = version_json();
        for key in [
            "\"ACLs\": false",
            "\"xattrs\": true",
            "\"symtimes\": true",
            "\"hardlinks\": true",
            "\"checksum_list\"",
            "\"compress_list\"",
            "\"daemon_auth_list\"",
            "\"xxh128\"",
            "\"zstd\"",
            "\"sha512\"",
        ] {
            assert!(j.contains(key), "{key} missing in {j}");
        }
        assert!(version_text().starts_with("rrsync  version "));
    }
}
