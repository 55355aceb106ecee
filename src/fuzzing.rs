//! Entry points for the cargo-fuzz targets in `fuzz/`: each drives one
//! decoder of untrusted bytes. They must never panic, whatever the input.

use crate::protocol::flist::{FlistDecoder, FlistItem, FlistOpts};
use crate::protocol::mux::Demux;
use crate::protocol::ndx::NdxCodec;
use crate::protocol::sums::{read_sums, WireSumHead};
use std::io::Read;

/// File-list entries: the first byte picks protocol and options.
pub fn flist(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let proto = 27 + (sel % 6);
    let opts = FlistOpts {
        proto,
        varint_flags: proto >= 30 && sel & 0x80 != 0,
        preserve_uid: sel & 0x08 != 0,
        preserve_gid: sel & 0x10 != 0,
        preserve_links: true,
        preserve_devices: true,
        preserve_specials: true,
        preserve_hard_links: sel & 0x20 != 0,
        csum_len: if sel & 0x40 != 0 { 16 } else { 0 },
        safe_flist: true,
        xattrs: proto >= 30 && sel & 0x04 != 0,
    };
    let mut dec = FlistDecoder::new(opts);
    if opts.xattrs {
        dec.xattrs = Some(crate::protocol::xattr::XattrRecvTable::new(
            std::sync::Arc::new(|n: &[u8]| Some(n.to_vec())),
        ));
    }
    let mut r = rest;
    for _ in 0..10_000 {
        match dec.decode(&mut r) {
            Ok(FlistItem::Entry(_)) => {}
            _ => break,
        }
    }
}

/// Multiplexed frames.
pub fn mux(data: &[u8]) {
    let mut d = Demux::new(data);
    d.set_mux(true);
    let mut buf = [0u8; 4096];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// File indexes, then a sum header and its sums.
pub fn ndx_and_sums(data: &[u8]) {
    let mut r = data;
    let mut c = NdxCodec::new(32);
    for _ in 0..16 {
        if c.read(&mut r).is_err() {
            break;
        }
    }
    if let Ok(h) = WireSumHead::read(&mut r, 31) {
        let _ = read_sums(&mut r, &h);
    }
}

/// Daemon greeting and argument lines.
pub fn greeting(data: &[u8]) {
    let mut r = data;
    while let Ok(Some(l)) = crate::protocol::greeting::read_line(&mut r) {
        let _ = crate::protocol::greeting::parse_greeting(&l);
    }
}

/// A PROXY protocol header (versions 1 and 2), as a daemon behind a
/// balancer reads it before the greeting.
pub fn proxy_header(data: &[u8]) {
    let mut r = data;
    let _ = crate::daemon::proxy::read_header(&mut r);
}

/// Delta tokens (all compressions).
pub fn tokens(data: &[u8]) {
    crate::protocol::tokens::decoder_fuzz_entry(data);
}

/// A client's filter list as a server reads it, then matching a few names.
pub fn filter_wire(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let proto = 27 + (sel % 6) as u32;
    let mut list = crate::filter::FilterList::new(crate::filter::ParseOptions {
        protocol: proto,
        ..Default::default()
    });
    let x = crate::filter::XferOptions {
        protocol: proto,
        am_sender: true,
        delete_mode: false,
        delete_excluded: false,
        prune_empty_dirs: false,
        cvs_exclude: false,
    };
    let mut r = rest;
    let mut no_files = |_: &[u8]| None;
    if crate::filter::recv_filter_list(&mut r, &mut list, &x, &mut no_files).is_ok() {
        for name in [&b"a"[..], b"a/b.txt", b"dir/sub/x", r] {
            let _ = list.is_excluded(name, false, crate::filter::Side::Sender);
            let _ = list.is_excluded(name, true, crate::filter::Side::Sender);
        }
    }
}

/// rsyncd.conf text.
pub fn config(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::daemon::config::parse_str(s, "fuzz.conf");
    }
}

/// `-X` on the wire: attribute sets, the generator's requests and the
/// sender's answers (the first byte picks which).
pub fn xattr(data: &[u8]) {
    use crate::protocol::xattr;
    let Some((&sel, mut r)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let mut t = xattr::XattrRecvTable::new(std::sync::Arc::new(|n: &[u8]| {
                n.starts_with(b"user.").then(|| n.to_vec())
            }));
            for _ in 0..1000 {
                if t.recv(&mut r).is_err() {
                    break;
                }
            }
        }
        1 => {
            let _ = xattr::read_request(&mut r);
        }
        _ => {
            let _ = xattr::read_values(&mut r);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn no_decoder_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::flist(&data);
            super::mux(&data);
            super::ndx_and_sums(&data);
            super::greeting(&data);
            super::proxy_header(&data);
            super::tokens(&data);
            super::config(&data);
            super::filter_wire(&data);
            super::xattr(&data);
        }
    }
}
