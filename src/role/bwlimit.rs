//! `--bwlimit`: a writer that keeps the average output rate under a limit
//! (upstream io.c sleep_for_bwlimit): writes are cut into pieces of at most
//! an eighth of a second's worth, and after each piece it sleeps off what
//! was written ahead of the rate.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// `--bwlimit` in KiB/s (a bare number is KiB; upstream parse_size_arg's
/// units, see [`crate::cli::size_arg`]); `None` when refused.
pub fn parse_kib(s: &str) -> Option<u64> {
    crate::cli::size_arg::bwlimit_kib(s).ok()
}

/// A rate-limited writer (`kib_per_sec` KiB/s).
pub struct BwLimit<W> {
    inner: W,
    rate: u64,
    max_write: usize,
    /// Bytes written beyond what the rate allows at `since`.
    ahead: f64,
    since: Option<Instant>,
}

impl<W: Write> BwLimit<W> {
    /// Wrap `inner`, limited to `kib_per_sec` KiB per second (0: no limit).
    pub fn new(inner: W, kib_per_sec: u64) -> Self {
        BwLimit {
            inner,
            rate: kib_per_sec,
            max_write: ((kib_per_sec as usize).saturating_mul(128)).max(512),
            ahead: 0.0,
            since: None,
        }
    }

    fn pace(&mut self, n: usize) {
        let now = Instant::now();
        let bytes_per_sec = self.rate as f64 * 1024.0;
        if let Some(t) = self.since {
            self.ahead -= now.duration_since(t).as_secs_f64() * bytes_per_sec;
            if self.ahead < 0.0 {
                self.ahead = 0.0;
            }
        }
        self.ahead += n as f64;
        let sleep = self.ahead / bytes_per_sec;
        if sleep < 0.1 {
            self.since = Some(now);
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(sleep));
        let after = Instant::now();
        let slept = after.duration_since(now).as_secs_f64();
        self.ahead = ((sleep - slept) * bytes_per_sec).max(0.0);
        self.since = Some(after);
    }
}

impl<W: Write> Write for BwLimit<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.rate == 0 {
            return self.inner.write(b);
        }
        let n = self.inner.write(&b[..b.len().min(self.max_write)])?;
        self.pace(n);
        Ok(n)
    }
    fn write_vectored(&mut self, b: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.rate == 0 {
            return self.inner.write_vectored(b);
        }
        let first = b
            .iter()
            .find(|s| !s.is_empty())
            .map(|s| &s[..])
            .unwrap_or(&[]);
        self.write(first)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_kib("100"), Some(100));
        assert_eq!(parse_kib("1m"), Some(1024));
        assert_eq!(parse_kib("x"), None);
    }

    #[test]
    fn unlimited_passes_through_and_limited_cuts_writes() {
        let mut w = BwLimit::new(Vec::new(), 0);
        assert_eq!(w.write(&[0u8; 100_000]).unwrap(), 100_000);
        let mut w = BwLimit::new(Vec::new(), 8);
        assert_eq!(w.write(&[0u8; 100_000]).unwrap(), 8 * 128);
    }

    #[test]
    fn limited_writer_keeps_the_rate() {
        // 64 KiB at 256 KiB/s takes about a quarter of a second.
        let mut w = BwLimit::new(Vec::new(), 256);
        let t = Instant::now();
        w.write_all(&vec![0u8; 64 * 1024]).unwrap();
        let e = t.elapsed().as_secs_f64();
        assert!(e > 0.1 && e < 2.0, "took {e}s");
    }
}
