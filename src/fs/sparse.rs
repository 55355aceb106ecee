//! Sparse writing (--sparse): runs of zero bytes are skipped with a seek so
//! the filesystem leaves holes, and the final length is fixed up with
//! ftruncate when the file ends in a hole.
//!
//! upstream: fileio.c `write_sparse()`, `sparse_end()`. Leading and trailing
//! zero runs of each buffer are always deferred (they may join the holes of
//! neighbouring writes); interior runs become holes when at least
//! `SPARSE_WRITE_SIZE` long. The file offset must only be moved by these
//! functions while a transfer is written this way.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Shortest interior run of zeros turned into a hole.
pub const SPARSE_WRITE_SIZE: usize = 1024;

fn flush_hole(mut file: &File, pending_hole: &mut u64) -> io::Result<()> {
    if *pending_hole > 0 {
        let n = i64::try_from(*pending_hole)
            .map_err(|_| io::Error::from_raw_os_error(nix::libc::EFBIG))?;
        *pending_hole = 0;
        file.seek(SeekFrom::Current(n))?;
    }
    Ok(())
}

fn emit(mut file: &File, data: &[u8], pending_hole: &mut u64) -> io::Result<()> {
    flush_hole(file, pending_hole)?;
    file.write_all(data)
}

/// Write `buf` at the current offset, deferring zero runs in
/// `pending_hole` (start a file with `0`, end it with `finish_sparse`).
pub fn write_sparse(file: &File, buf: &[u8], pending_hole: &mut u64) -> io::Result<()> {
    let lead = buf.iter().take_while(|&&b| b == 0).count();
    if lead == buf.len() {
        *pending_hole += buf.len() as u64;
        return Ok(());
    }
    let trail = buf.iter().rev().take_while(|&&b| b == 0).count();
    *pending_hole += lead as u64;
    let end = buf.len() - trail;
    let mut start = lead;
    let mut i = lead;
    while i < end {
        if buf[i] != 0 {
            i += 1;
            continue;
        }
        let run = buf[i..end].iter().take_while(|&&b| b == 0).count();
        if run < SPARSE_WRITE_SIZE {
            i += run;
            continue;
        }
        if i > start {
            emit(file, &buf[start..i], pending_hole)?;
        }
        *pending_hole += run as u64;
        i += run;
        start = i;
    }
    if end > start {
        emit(file, &buf[start..end], pending_hole)?;
    }
    *pending_hole = trail as u64;
    Ok(())
}

/// End a sparse write: when a hole is still pending, extend the file to
/// its full length with ftruncate. Returns the final length.
pub fn finish_sparse(mut file: &File, pending_hole: &mut u64) -> io::Result<u64> {
    let pos = file.stream_position()?;
    if *pending_hole == 0 {
        return Ok(pos);
    }
    let len = pos
        .checked_add(*pending_hole)
        .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::EFBIG))?;
    *pending_hole = 0;
    file.set_len(len)?;
    file.seek(SeekFrom::Start(len))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dest::test_support::Scratch;
    use crate::fs::dest::DestRoot;
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    fn write_chunks(d: &DestRoot, name: &[u8], chunks: &[&[u8]]) -> std::fs::File {
        let (f, tn) = d.create_temp(name).unwrap();
        let mut pending = 0u64;
        for c in chunks {
            write_sparse(&f, c, &mut pending).unwrap();
        }
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        assert_eq!(finish_sparse(&f, &mut pending).unwrap(), total as u64);
        tn.commit(name).unwrap();
        f
    }

    #[test]
    fn sparse_file_has_holes_and_right_content() {
        let s = Scratch::new("sparse");
        let d = DestRoot::open(&s.root).unwrap();
        let mut data = vec![0u8; 4 << 20];
        data[..4096].fill(7);
        data[(2 << 20)..(2 << 20) + 100].fill(9);
        data[(3 << 20) + 5] = 1; // a lone byte amid zeros
                                 // trailing 1 MiB of zeros -> ftruncate at the end.
        let chunks: Vec<&[u8]> = data.chunks(32 * 1024 + 17).collect();
        let f = write_chunks(&d, b"sparse", &chunks);
        drop(f);
        let got = std::fs::read(s.r("sparse")).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        let md = std::fs::metadata(s.r("sparse")).unwrap();
        assert!(md.blocks() * 512 < 256 * 1024, "blocks {}", md.blocks());
        // All zeros: a single hole of the full length.
        let zeros = vec![0u8; 1 << 20];
        write_chunks(&d, b"zeros", &[&zeros, &zeros]);
        let md = std::fs::metadata(s.r("zeros")).unwrap();
        assert_eq!(md.len(), 2 << 20);
        assert_eq!(md.blocks(), 0);
        // Short zero runs inside data are written, not seeked.
        let mut mixed = vec![5u8; 8192];
        mixed[100..600].fill(0);
        write_chunks(&d, b"mixed", &[&mixed]);
        assert_eq!(std::fs::read(s.r("mixed")).unwrap(), mixed);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..crate::testing::proptest_config() })]
        #[test]
        fn sparse_content_roundtrip(
            runs in proptest::collection::vec((any::<bool>(), 1usize..5000), 0..12),
            split in 1usize..9000,
        ) {
            let s = Scratch::new("sparseprop");
            let d = DestRoot::open(&s.root).unwrap();
            let mut data = Vec::new();
            for (i, (zero, len)) in runs.iter().enumerate() {
                let b = if *zero { 0 } else { (i % 250 + 1) as u8 };
                data.extend(std::iter::repeat_n(b, *len));
            }
            let chunks: Vec<&[u8]> = data.chunks(split).collect();
            write_chunks(&d, b"p", &chunks);
            prop_assert_eq!(std::fs::read(s.r("p")).unwrap(), data);
        }
    }
}
