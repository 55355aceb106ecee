//! The end-of-run report of a client (upstream: main.c output_summary,
//! output_itemized_counts; lib/compat.c do_big_num, do_big_dnum): the
//! `--stats` block and the "sent ... received ..." lines, with rsync's
//! number formatting.

use crate::role::log::ClientLog;
use crate::role::stats::TypeCounts;

/// What the summary reports.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Bytes we wrote to the peer.
    pub total_written: i64,
    /// Bytes we read from the peer.
    pub total_read: i64,
    /// Size of all files in the list.
    pub total_size: i64,
    /// Size of the files whose data was sent.
    pub total_transferred_size: i64,
    /// Literal bytes.
    pub literal_data: i64,
    /// Matched bytes.
    pub matched_data: i64,
    /// File list bytes on the wire.
    pub flist_size: i64,
    /// List build time (ms).
    pub flist_buildtime: i64,
    /// List transfer time (ms).
    pub flist_xfertime: i64,
    /// Regular files transferred.
    pub xferred_files: u64,
    /// Entries in the file list.
    pub num_files: TypeCounts,
    /// Items created.
    pub created: TypeCounts,
    /// Items deleted.
    pub deleted: TypeCounts,
    /// Whole seconds the run took (upstream: endtime - starttime).
    pub seconds: u64,
    /// `-n`.
    pub dry_run: bool,
}

pub use crate::role::stats::{big_dnum, big_num};

fn counts_line(prefix: &str, c: &TypeCounts) -> String {
    let mut s = format!("{prefix}: {}", big_num(c.total as i64, 1));
    if c.total > 0 {
        let parts = [
            ("reg", c.regular()),
            ("dir", c.dirs),
            ("link", c.links),
            ("dev", c.devices),
            ("special", c.specials),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(l, n)| format!("{l}: {}", big_num(*n as i64, 1)))
            .collect();
        s.push_str(&format!(" ({})", shown.join(", ")));
    }
    s
}

/// output_summary: the `--stats` block (stats level 2+) and the two
/// closing lines (level 1+).
pub fn print(log: &ClientLog, s: &Summary, proto: u8, human: u8) {
    let stats = log.o.stats;
    if stats >= 2 {
        log.info("");
        log.info(&counts_line("Number of files", &s.num_files));
        if proto >= 29 {
            log.info(&counts_line("Number of created files", &s.created));
        }
        if proto >= 31 {
            log.info(&counts_line("Number of deleted files", &s.deleted));
        }
        log.info(&format!(
            "Number of regular files transferred: {}",
            big_num(s.xferred_files as i64, 1)
        ));
        log.info(&format!(
            "Total file size: {} bytes",
            big_num(s.total_size, human)
        ));
        log.info(&format!(
            "Total transferred file size: {} bytes",
            big_num(s.total_transferred_size, human)
        ));
        log.info(&format!(
            "Literal data: {} bytes",
            big_num(s.literal_data, human)
        ));
        log.info(&format!(
            "Matched data: {} bytes",
            big_num(s.matched_data, human)
        ));
        log.info(&format!("File list size: {}", big_num(s.flist_size, human)));
        if s.flist_buildtime != 0 {
            log.info(&format!(
                "File list generation time: {} seconds",
                big_dnum(s.flist_buildtime as f64 / 1000.0, 1, 3)
            ));
            log.info(&format!(
                "File list transfer time: {} seconds",
                big_dnum(s.flist_xfertime as f64 / 1000.0, 1, 3)
            ));
        }
        log.info(&format!(
            "Total bytes sent: {}",
            big_num(s.total_written, human)
        ));
        log.info(&format!(
            "Total bytes received: {}",
            big_num(s.total_read, human)
        ));
    }
    if stats >= 1 {
        log.info("");
        let rate = (s.total_written + s.total_read) as f64 / (0.5 + s.seconds as f64);
        log.info(&format!(
            "sent {} bytes  received {} bytes  {} bytes/sec",
            big_num(s.total_written, human),
            big_num(s.total_read, human),
            big_dnum(rate, human, 2)
        ));
        let moved = s.total_written + s.total_read;
        let speedup = if moved > 0 {
            s.total_size as f64 / moved as f64
        } else {
            0.0
        };
        log.info(&format!(
            "total size is {}  speedup is {}{}",
            big_num(s.total_size, human),
            big_dnum(speedup, 1, 2),
            if s.dry_run { " (DRY RUN)" } else { "" }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_upstream() {
        assert_eq!(big_num(0, 1), "0");
        assert_eq!(big_num(999, 1), "999");
        assert_eq!(big_num(1000, 1), "1,000");
        assert_eq!(big_num(1234567, 1), "1,234,567");
        assert_eq!(big_num(1234567, 0), "1234567");
        assert_eq!(big_num(1234567, 2), "1.23M");
        assert_eq!(big_num(2048, 3), "2.00K");
        assert_eq!(big_num(999, 2), "999");
        assert_eq!(big_dnum(12.345, 1, 2), "12.35");
        assert_eq!(big_dnum(123456.5, 1, 2), "123,456.50");
        assert_eq!(big_dnum(0.0, 1, 2), "0.00");
    }

    #[test]
    fn itemized_counts() {
        let mut c = TypeCounts::default();
        assert_eq!(counts_line("Number of files", &c), "Number of files: 0");
        c.add(0o100644);
        c.add(0o040755);
        assert_eq!(
            counts_line("Number of files", &c),
            "Number of files: 2 (reg: 1, dir: 1)"
        );
    }
}
