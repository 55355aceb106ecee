//! A daemon module's own filter list (rsyncd.conf `filter`, `include from`,
//! `include`, `exclude from`, `exclude`), built as stock `rsync_module`
//! does.  It is matched against module-relative paths, applies to both
//! directions and is never sent on the wire.

use super::list::FilterList;
use super::parse::Reader;
use super::rule::{flags as f, xflags as xf};
use super::{FilterError, ParseOptions};

/// The module's filter parameters (raw values from rsyncd.conf).
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonFilterConfig<'a> {
    /// `filter = RULES` (whitespace-split, full rule syntax).
    pub filter: Option<&'a [u8]>,
    /// `include from = FILE`.
    pub include_from: Option<&'a [u8]>,
    /// `include = PATTERNS` (whitespace-split).
    pub include: Option<&'a [u8]>,
    /// `exclude from = FILE`.
    pub exclude_from: Option<&'a [u8]>,
    /// `exclude = PATTERNS` (whitespace-split).
    pub exclude: Option<&'a [u8]>,
}

/// Build the daemon filter list.  `read` opens the `include from` /
/// `exclude from` files (and any merge files named by `filter`); a missing
/// one is an error.  Rules with a slash are matched against the whole
/// module-relative path; a directory exclude `d/` also hides everything
/// under `d`.
pub fn daemon_filter_list(
    cfg: &DaemonFilterConfig<'_>,
    opts: &ParseOptions,
    read: &mut Reader<'_>,
) -> Result<FilterList, FilterError> {
    let mut o = opts.clone();
    o.delete_excluded = false;
    let mut list = FilterList::new(o);
    list.sideless = true;
    let base = xf::ABS_IF_SLASH | xf::DIR2WILD3;
    let old = base | xf::OLD_PREFIXES;
    let root = Some(b"/".to_vec());
    if let Some(p) = cfg.filter {
        list.with_parser(read, root.clone(), false, |ps, s| {
            ps.parse_str(s, p, f::WORD_SPLIT, base)
        })?;
    }
    if let Some(p) = cfg.include_from {
        list.with_parser(read, root.clone(), false, |ps, s| {
            ps.parse_file(s, p, f::INCLUDE, old | xf::FATAL_ERRORS)
        })?;
    }
    if let Some(p) = cfg.include {
        list.with_parser(read, root.clone(), false, |ps, s| {
            ps.parse_str(s, p, f::INCLUDE | f::WORD_SPLIT, old)
        })?;
    }
    if let Some(p) = cfg.exclude_from {
        list.with_parser(read, root.clone(), false, |ps, s| {
            ps.parse_file(s, p, 0, old | xf::FATAL_ERRORS)
        })?;
    }
    if let Some(p) = cfg.exclude {
        list.with_parser(read, root, false, |ps, s| {
            ps.parse_str(s, p, f::WORD_SPLIT, old)
        })?;
    }
    Ok(list)
}
