//! Filter rules (exclude/include/filter, merge files): parsing, wire form
//! and matching, with stock rsync's semantics (exclude.c, lib/wildmatch.c).
//!
//! * [`wildmatch`]: the wildcard matcher on byte strings.
//! * [`FilterList`]: the global list (`--filter`, `--exclude`, `--include`,
//!   `-F`, `-C`, `--exclude-from`, rules received from a client) and its
//!   first-match check.
//! * [`FilterStack`]: per-directory merge files for a directory walk.
//! * [`wire`]: the list on the wire (§11.1), sans-I/O.
//! * [`daemon`]: a module's own `filter`/`include`/`exclude` rules.
//!
//! Sides: a rule flagged sender-side (`s`, hide/show, and plain rules under
//! `--delete-excluded`) is used only by checks made for [`Side::Sender`],
//! a receiver-side one (`r`, protect/risk) only for [`Side::Receiver`], a
//! plain rule for both.  This is what stock achieves by "eliding" rules;
//! a client receiver validating the sender's file list checks with
//! `Side::Sender`.

pub mod daemon;
mod list;
pub(crate) mod parse;
pub mod rule;
mod stack;
pub mod wildmatch;
pub mod wire;

#[cfg(test)]
mod tests;

pub use daemon::{daemon_filter_list, DaemonFilterConfig};
pub use list::{FilterList, Hit};
pub use parse::{Reader, DEFAULT_CVSIGNORE};
pub use rule::Rule;
pub use stack::{DirToken, FilterStack, MAX_ACTIVE_MERGE_FILES};
pub use wire::{
    decode_rules, encode_raw, encode_rules, recv_filter_list, send_filter_list, XferOptions,
};

/// Which side of the transfer a check is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Building/sending the file list.
    Sender,
    /// Receiving: deletion, and protecting files.
    Receiver,
}

/// The verdict of the first matching rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// An include (or show/risk) rule matched.
    Include,
    /// An exclude (or hide/protect) rule matched.
    Exclude,
}

/// What kind of name is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A non-directory.
    File,
    /// A directory (directory-only rules apply).
    Dir,
    /// An extended-attribute name (only `x` rules apply).
    Xattr,
}

/// Settings that affect how rules are parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Protocol version in force (CVS defaults are perishable from 30 on).
    pub protocol: u32,
    /// `--delete-excluded`: plain include/exclude rules become sender-side.
    pub delete_excluded: bool,
    /// `--from0`: rule files are NUL-separated.
    pub eol_nulls: bool,
    /// Daemon without chroot: merge-file names cannot leave the module.
    pub sanitize_paths: bool,
    /// Path of `$HOME/.cvsignore` (read through the reader when `-C` rules
    /// are first loaded); None to skip.
    pub cvs_home_ignore: Option<Vec<u8>>,
    /// `$CVSIGNORE`, if set.
    pub cvs_env: Option<Vec<u8>>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            protocol: 32,
            delete_excluded: false,
            eol_nulls: false,
            sanitize_paths: false,
            cvs_home_ignore: None,
            cvs_env: None,
        }
    }
}

/// Errors from parsing, reading or transferring filter rules.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A rule with an unknown rule character/keyword.
    #[error("Unknown filter rule: {0}")]
    UnknownRule(String),
    /// A modifier not allowed here.
    #[error("invalid modifier{detail} in filter rule: {rule}")]
    InvalidModifier {
        /// " 'c' at position N" (empty for rules read from files).
        detail: String,
        /// The rule (or where it came from).
        rule: String,
    },
    /// `!` followed by more text.
    #[error("'!' rule has trailing characters: {0}")]
    ClearTrailing(String),
    /// A rule without a pattern.
    #[error("unexpected end of filter rule: {0}")]
    UnexpectedEnd(String),
    /// A side modifier inside a merge file that already has one.
    #[error("specified-side merge file contains specified-side filter: {0}")]
    SidedMergeRule(String),
    /// A required rules file could not be read.
    #[error("failed to open {kind}clude file {path}", kind = if *include { "in" } else { "ex" })]
    OpenFailed {
        /// Template was an include list.
        include: bool,
        /// The file (or where it was named).
        path: String,
    },
    /// Merge files nested too deeply.
    #[error("merge-file include depth limit ({0}) exceeded")]
    MergeDepth(usize),
    /// The rules cannot be expressed for the peer's protocol.
    #[error("filter rules are too modern for remote rsync.")]
    TooModern,
    /// A peer sent an over-long rule.
    #[error("buffer overflow: recv_rules (rule length {0})")]
    RuleTooLong(u32),
    /// A peer sent too many rules.
    #[error("too many filter rules (more than {0})")]
    TooManyRules(usize),
    /// Too many active per-directory merge files.
    #[error("too many active per-directory merge files (more than {0})")]
    TooManyMergeFiles(usize),
    /// Reading the wire failed.
    #[error("error reading filter list: {0}")]
    Io(#[from] std::io::Error),
}

impl FilterError {
    /// The exit code stock rsync uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            FilterError::UnknownRule(_)
            | FilterError::InvalidModifier { .. }
            | FilterError::ClearTrailing(_)
            | FilterError::UnexpectedEnd(_)
            | FilterError::SidedMergeRule(_) => 1,
            FilterError::OpenFailed { .. }
            | FilterError::MergeDepth(_)
            | FilterError::TooManyMergeFiles(_) => 11,
            FilterError::TooModern => 2,
            FilterError::RuleTooLong(_) | FilterError::TooManyRules(_) => 22,
            FilterError::Io(_) => 12,
        }
    }
}
