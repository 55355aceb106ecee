//! Server-side protocol setup (upstream: compat.c setup_protocol,
//! negotiate_the_strings): compat flags, checksum/compression choice, seed.

use super::RoleError;
use crate::checksum::ChecksumKind;
use crate::cli::options::Options;
use crate::protocol::handshake::{self, cf};
use crate::protocol::tokens::CompressKind;
use crate::protocol::varint::{put_int, put_varint};
use std::io::{Read, Write};

/// What a session settled on.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// Protocol version in use.
    pub proto: u8,
    /// Compat flags (0 below protocol 30).
    pub compat: u32,
    /// Transfer checksum (block and whole-file sums).
    pub checksum: ChecksumKind,
    /// `--checksum` file-list checksum.
    pub file_checksum: ChecksumKind,
    /// Token compression.
    pub compress: CompressKind,
    /// Checksum seed.
    pub seed: i32,
}

impl Negotiated {
    /// CF_VARINT_FLIST_FLAGS.
    pub fn varint_flags(&self) -> bool {
        self.compat & cf::VARINT_FLIST_FLAGS != 0
    }
    /// io_error travels in the end-of-list marker.
    pub fn safe_flist(&self) -> bool {
        self.compat & cf::SAFE_FLIST != 0 || self.proto >= 31
    }
    /// CF_CHKSUM_SEED_FIX.
    pub fn proper_seed_order(&self) -> bool {
        self.compat & cf::CHKSUM_SEED_FIX != 0
    }
    /// CF_ID0_NAMES.
    pub fn id0_names(&self) -> bool {
        self.compat & cf::ID0_NAMES != 0
    }
    /// `-X`: does an item record with `iflags` carry no attribute request
    /// or answer? (upstream want_xattr_optim: from protocol 31, unless the
    /// client asked otherwise, a local hard link or copy needs none).
    pub fn xattr_optim(&self, iflags: u16) -> bool {
        use crate::protocol::ndx::iflags as i;
        self.proto >= 31
            && self.compat & cf::AVOID_XATTR_OPTIM == 0
            && iflags & (i::XNAME_FOLLOWS | i::LOCAL_CHANGE) == i::XNAME_FOLLOWS | i::LOCAL_CHANGE
    }
}

/// The peer's checksum and compression lists (those the negotiation
/// includes, in wire order), each resolved the way our side picks.
fn read_choices<R: Read>(
    r: &mut R,
    list_checksums: bool,
    list_compress: bool,
    as_server: bool,
) -> Result<(Option<ChecksumKind>, Option<CompressKind>), RoleError> {
    let mut pick = |ours: &[&'static str], what: &str| -> Result<&'static str, RoleError> {
        let theirs = handshake::read_name_list(r)?;
        let chosen = if as_server {
            handshake::choose_as_server(&theirs, ours)
        } else {
            handshake::choose_as_client(&theirs, ours)
        };
        chosen
            .ok_or_else(|| RoleError::Unsupported(format!("Failed to negotiate a {what} choice.")))
    };
    let sum = if list_checksums {
        Some(checksum_by_name(pick(
            handshake::CHECKSUM_NAMES,
            "checksum",
        )?)?)
    } else {
        None
    };
    let comp = if list_compress {
        Some(compress_by_name(pick(
            handshake::COMPRESS_NAMES,
            "compression",
        )?)?)
    } else {
        None
    };
    Ok((sum, comp))
}

fn checksum_by_name(name: &str) -> Result<ChecksumKind, RoleError> {
    let n = if name == "xxhash" { "xxh64" } else { name };
    ChecksumKind::from_name(n)
        .map_err(|_| RoleError::Unsupported(format!("unknown checksum name: {name}")))
}

/// An explicit `--checksum-choice` (`XFER[,FILE]`, any case; an `auto`
/// part is the protocol's default), or none: the choice is negotiated.
fn explicit_checksums(
    choice: Option<&str>,
    proto: u8,
) -> Result<(Option<ChecksumKind>, Option<ChecksumKind>), RoleError> {
    let Some(c) =
        choice.filter(|c| !c.eq_ignore_ascii_case("auto") && !c.eq_ignore_ascii_case("auto,auto"))
    else {
        return Ok((None, None));
    };
    let one = |n: &str| {
        if n.eq_ignore_ascii_case("auto") {
            Ok(ChecksumKind::default_for_protocol(proto))
        } else {
            checksum_by_name(n)
        }
    };
    let (a, b) = c.split_once(',').unwrap_or((c, c));
    Ok((Some(one(a)?), Some(one(b)?)))
}

fn compress_by_name(name: &str) -> Result<CompressKind, RoleError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "zstd" => CompressKind::Zstd,
        "lz4" => CompressKind::Lz4,
        "zlibx" => CompressKind::Zlibx,
        "zlib" => CompressKind::Zlib,
        "none" => CompressKind::None,
        _ => {
            return Err(RoleError::Unsupported(format!(
                "unknown compress name: {name}"
            )))
        }
    })
}

/// `-X` has no wire form before protocol 30 (upstream setup_protocol).
fn xattrs_need_30(proto: u8, opts: &Options) -> Result<(), RoleError> {
    if proto < 30 && opts.xattrs > 0 && !opts.local_server {
        return Err(RoleError::Protocol(format!(
            "--xattrs requires protocol 30 or higher (negotiated {proto})."
        )));
    }
    Ok(())
}

/// Run setup_protocol as the server, on the raw stream (before multiplexing).
/// `allow_inc_recurse`: we may offer incremental recursion (used when the
/// client's capabilities include `i`).
pub fn server_setup<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    proto: u8,
    opts: &Options,
    seed: i32,
    allow_inc_recurse: bool,
) -> Result<Negotiated, RoleError> {
    xattrs_need_30(proto, opts)?;
    let mut out = Vec::new();
    let mut compat = 0;
    let caps = opts.caps.clone().unwrap_or_default();
    if proto >= 30 {
        compat = handshake::server_compat_flags(&caps);
        if allow_inc_recurse && caps.contains('i') {
            compat |= cf::INC_RECURSE;
        }
        put_varint(&mut out, compat as i32);
    }
    let negotiate = proto >= 30 && compat & cf::VARINT_FLIST_FLAGS != 0;
    // Explicit choices (also what applies without negotiation).
    let (mut xfer_sum, mut file_sum) = explicit_checksums(opts.checksum_choice.as_deref(), proto)?;
    let mut compress = match opts.compress_choice.as_deref() {
        Some(c) => compress_by_name(c)?,
        None if opts.compress => CompressKind::Zlib,
        None => CompressKind::None,
    };
    let list_checksums = negotiate && xfer_sum.is_none();
    let list_compress = negotiate && opts.compress && opts.compress_choice.is_none();
    if list_checksums {
        handshake::put_name_list(
            &mut out,
            &handshake::name_list(handshake::CHECKSUM_NAMES, true),
        )?;
    }
    if list_compress {
        handshake::put_name_list(
            &mut out,
            &handshake::name_list(handshake::COMPRESS_NAMES, true),
        )?;
    }
    w.write_all(&out)?;
    w.flush()?;
    out.clear();
    let (sum, comp) = read_choices(r, list_checksums, list_compress, true)?;
    if let Some(k) = sum {
        xfer_sum = Some(k);
        file_sum = Some(k);
    }
    compress = comp.unwrap_or(compress);
    let default = ChecksumKind::default_for_protocol(proto);
    let seed = opts.checksum_seed.unwrap_or(seed);
    put_int(&mut out, seed);
    w.write_all(&out)?;
    w.flush()?;
    Ok(Negotiated {
        proto,
        compat,
        checksum: xfer_sum.unwrap_or(default),
        file_checksum: file_sum.unwrap_or(default),
        compress,
        seed,
    })
}

/// Protocol setup as the client (upstream: compat.c setup_protocol with
/// `am_server` off): read the compat flags, exchange the checksum and
/// compression lists (both sent before either is read), read the seed.
pub fn client_setup<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    proto: u8,
    opts: &Options,
) -> Result<Negotiated, RoleError> {
    let compat = if proto >= 30 {
        crate::protocol::varint::read_varint(r)? as u32
    } else {
        0
    };
    let negotiate = proto >= 30 && compat & cf::VARINT_FLIST_FLAGS != 0;
    let (mut xfer_sum, mut file_sum) = explicit_checksums(opts.checksum_choice.as_deref(), proto)?;
    let mut compress = match opts.compress_choice.as_deref() {
        Some(c) => compress_by_name(c)?,
        None if opts.compress => CompressKind::Zlib,
        None => CompressKind::None,
    };
    let list_checksums = negotiate && xfer_sum.is_none();
    let list_compress = negotiate && opts.compress && opts.compress_choice.is_none();
    let mut out = Vec::new();
    if list_checksums {
        handshake::put_name_list(
            &mut out,
            &handshake::name_list(handshake::CHECKSUM_NAMES, false),
        )?;
    }
    if list_compress {
        handshake::put_name_list(
            &mut out,
            &handshake::name_list(handshake::COMPRESS_NAMES, false),
        )?;
    }
    if !out.is_empty() {
        w.write_all(&out)?;
        w.flush()?;
    }
    let (sum, comp) = read_choices(r, list_checksums, list_compress, false)?;
    if let Some(k) = sum {
        xfer_sum = Some(k);
        file_sum = Some(k);
    }
    compress = comp.unwrap_or(compress);
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    let seed = i32::from_le_bytes(b);
    let default = ChecksumKind::default_for_protocol(proto);
    Ok(Negotiated {
        proto,
        compat,
        checksum: xfer_sum.unwrap_or(default),
        file_checksum: file_sum.unwrap_or(default),
        compress,
        seed,
    })
}
