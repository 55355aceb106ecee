//! Size arguments (`--max-size=1.5M`, `--bwlimit=100`, `-B 8k`...) read as
//! upstream's options.c parse_size_arg reads them, with its error texts.
//!
//! The grammar: a decimal number (`digits[.digits]`), then an optional unit
//! letter `b k m g t p` (any case; the option's default unit when there is
//! none), then `b` for powers of 1000 or `ib` (or nothing) for powers of
//! 1024, then an optional `+1` or `-1`. A bare `b` unit means bytes.

/// What one option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRule {
    /// The unit of a number without one (`b'b'` bytes, `b'K'` KiB...).
    pub default_unit: u8,
    /// The smallest value allowed.
    pub min: i64,
    /// The largest value allowed (`None`: the largest that fits).
    pub max: Option<i64>,
    /// 0 is allowed below `min` (it means "unlimited").
    pub zero_unlimited: bool,
}

/// `--max-size` / `--min-size`: bytes, no bounds.
pub const FILE_SIZE: SizeRule = SizeRule {
    default_unit: b'b',
    min: 0,
    max: None,
    zero_unlimited: false,
};

/// `--bwlimit`: KiB by default, at least 512 bytes a second (or 0).
pub const BWLIMIT: SizeRule = SizeRule {
    default_unit: b'K',
    min: 512,
    max: None,
    zero_unlimited: true,
};

/// `--max-alloc`: bytes, at least 1 MiB (or 0).
pub const MAX_ALLOC: SizeRule = SizeRule {
    default_unit: b'B',
    min: 1024 * 1024,
    max: None,
    zero_unlimited: true,
};

/// `--block-size` for `protocol` (the largest block length depends on it).
pub fn block_size_rule(protocol: i32) -> SizeRule {
    SizeRule {
        default_unit: b'b',
        min: 0,
        max: Some(i64::from(if protocol < 30 {
            crate::protocol::sums::OLD_MAX_BLOCK_SIZE
        } else {
            crate::protocol::sums::MAX_BLOCK_SIZE
        })),
        zero_unlimited: false,
    }
}

/// Why an argument was refused; `Display` is upstream's message
/// (`--max-size=1x is invalid`, `--block-size=1g is too large (max: 128.00K)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SizeError(pub String);

/// Parse `arg`, the value of `--opt`, by `rule`; the size in bytes.
pub fn parse(opt: &str, arg: &str, rule: &SizeRule) -> Result<i64, SizeError> {
    const INVALID: (&str, Option<(&str, i64)>) = ("invalid", None);
    let largest = rule.max.unwrap_or(i64::MAX);
    let too_large = ("too large", Some(("max", rule.max.unwrap_or(-1))));
    let too_small = ("too small", Some(("min", rule.min)));
    let fail = |(what, bound): (&str, Option<(&str, i64)>)| {
        let mut msg = format!("--{opt}={arg} is {what}");
        if let Some((name, limit)) = bound.filter(|(_, l)| *l >= 0) {
            let unlimited = if rule.zero_unlimited && name == "min" {
                " or 0 for unlimited"
            } else {
                ""
            };
            msg.push_str(&format!(
                " ({name}: {}{unlimited})",
                crate::role::stats::big_num(limit, 3)
            ));
        }
        SizeError(msg)
    };
    let b = arg.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits_from(0);
    if b.get(i) == Some(&b'.') {
        i = digits_from(i + 1);
    }
    let unit = match b.get(i) {
        Some(&c) if c != b'+' && c != b'-' => {
            i += 1;
            c
        }
        _ => rule.default_unit,
    };
    let reps = match unit.to_ascii_lowercase() {
        b'b' => 0,
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(fail(INVALID)),
    };
    let mult: i64 = match b.get(i) {
        Some(b'b' | b'B') => {
            i += 1;
            1000
        }
        None | Some(b'+' | b'-') => 1024,
        Some(_) if b.len() >= i + 2 && b[i..i + 2].eq_ignore_ascii_case(b"ib") => {
            i += 2;
            1024
        }
        Some(_) => return Err(fail(INVALID)),
    };
    let mut unit_size: i64 = 1;
    for _ in 0..reps {
        if unit_size > largest / mult {
            return Err(fail(too_large));
        }
        unit_size *= mult;
    }
    let number = leading_number(b);
    let ceiling = largest as f64 / unit_size as f64;
    if number < 0.0 || number > ceiling || (rule.max.is_none() && number >= ceiling) {
        return Err(fail(too_large));
    }
    let mut size = (number * unit_size as f64) as i64;
    if i > 0 && matches!(b.get(i), Some(b'+' | b'-')) && b.get(i + 1) == Some(&b'1') {
        if b[i] == b'+' {
            if size == largest {
                return Err(fail(too_large));
            }
            size += 1;
        } else {
            size -= 1;
        }
        i += 2;
    }
    if i < b.len() {
        return Err(fail(INVALID));
    }
    if size < 0 || rule.max.is_some_and(|m| size > m) {
        return Err(fail(too_large));
    }
    if size < rule.min && !(rule.zero_unlimited && size == 0) {
        return Err(fail(too_small));
    }
    Ok(size)
}

/// The number at the start of `b` as C's strtod reads it there: an
/// optional sign, digits, a `.` and more digits (what follows cannot
/// extend it: the caller has already refused anything else); 0 when
/// there is none.
fn leading_number(b: &[u8]) -> f64 {
    let (neg, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let end = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let end = if rest.get(end) == Some(&b'.') {
        end + 1
            + rest[end + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(rest.len() - end - 1)
    } else {
        end
    };
    // ("1." and ".5" parse; "" and "." are no number at all: 0.)
    let v = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(0.0);
    if neg {
        -v
    } else {
        v
    }
}

/// `--bwlimit`'s value in KiB per second, as upstream rounds it (0: no limit).
pub fn bwlimit_kib(arg: &str) -> Result<u64, SizeError> {
    let bytes = parse("bwlimit", arg, &BWLIMIT)?;
    Ok(((bytes + 512) / 1024) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(arg: &str) -> Result<i64, String> {
        parse("max-size", arg, &FILE_SIZE).map_err(|e| e.0)
    }

    #[test]
    fn units_and_adjustments() {
        assert_eq!(size("100"), Ok(100));
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("1K"), Ok(1024));
        assert_eq!(size("1kb"), Ok(1000));
        assert_eq!(size("1KiB"), Ok(1024));
        assert_eq!(size("1.5M"), Ok(1_572_864));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("1t"), Ok(1 << 40));
        assert_eq!(size("1p"), Ok(1 << 50));
        assert_eq!(size("1k-1"), Ok(1023));
        assert_eq!(size("1k+1"), Ok(1025));
        assert_eq!(size("5+1"), Ok(6));
        assert_eq!(size("7b"), Ok(7));
        assert_eq!(size(".5k"), Ok(512));
        assert_eq!(size("1.k"), Ok(1024));
        assert_eq!(size("k"), Ok(0));
        assert_eq!(size("."), Ok(0));
        assert_eq!(size(""), Ok(0));
        assert_eq!(size("0"), Ok(0));
    }

    #[test]
    fn refusals_read_as_upstream() {
        assert_eq!(size("zz").unwrap_err(), "--max-size=zz is invalid");
        assert_eq!(size("1x").unwrap_err(), "--max-size=1x is invalid");
        assert_eq!(size("1ki").unwrap_err(), "--max-size=1ki is invalid");
        assert_eq!(size("1k+2").unwrap_err(), "--max-size=1k+2 is invalid");
        assert_eq!(size("1k+10").unwrap_err(), "--max-size=1k+10 is invalid");
        assert_eq!(size("+1").unwrap_err(), "--max-size=+1 is invalid");
        assert_eq!(size(" 5").unwrap_err(), "--max-size= 5 is invalid");
        assert_eq!(size("1e3").unwrap_err(), "--max-size=1e3 is invalid");
        assert_eq!(size("-1").unwrap_err(), "--max-size=-1 is too large");
        assert_eq!(size("8191p"), Ok(8191 << 50));
        assert_eq!(size("8192p").unwrap_err(), "--max-size=8192p is too large");
        assert_eq!(
            size("9223372036854775807").unwrap_err(),
            "--max-size=9223372036854775807 is too large"
        );
        let block = block_size_rule(32);
        assert_eq!(
            parse("block-size", "100000000", &block).unwrap_err().0,
            "--block-size=100000000 is too large (max: 128.00K)"
        );
        assert_eq!(parse("block-size", "128k", &block), Ok(131_072));
        assert_eq!(
            parse("block-size", "128k+1", &block).unwrap_err().0,
            "--block-size=128k+1 is too large (max: 128.00K)"
        );
        assert_eq!(
            parse("block-size", "1p", &block).unwrap_err().0,
            "--block-size=1p is too large (max: 128.00K)"
        );
        assert_eq!(
            parse("block-size", "200000", &block_size_rule(29)),
            Ok(200_000)
        );
        assert_eq!(
            parse("bwlimit", "0.4", &BWLIMIT).unwrap_err().0,
            "--bwlimit=0.4 is too small (min: 512 or 0 for unlimited)"
        );
        assert_eq!(
            parse("max-alloc", "1", &MAX_ALLOC).unwrap_err().0,
            "--max-alloc=1 is too small (min: 1.00M or 0 for unlimited)"
        );
        assert_eq!(parse("max-alloc", "0", &MAX_ALLOC), Ok(0));
    }

    #[test]
    fn bwlimit_in_kib() {
        assert_eq!(bwlimit_kib("100"), Ok(100));
        assert_eq!(bwlimit_kib("1m"), Ok(1024));
        assert_eq!(bwlimit_kib("0"), Ok(0));
        assert_eq!(bwlimit_kib("1.5"), Ok(2));
        assert_eq!(bwlimit_kib("1000b"), Ok(1));
        assert!(bwlimit_kib("x").is_err());
    }

    proptest::proptest! {
        /// A plain number of bytes is itself, and its value written back
        /// reads the same (what a client forwards to its server). (Up to
        /// 2^53: the number is a double, as upstream's strtod makes it.)
        #[test]
        fn plain_numbers_round_trip(n in 0i64..=1 << 53) {
            proptest::prop_assert_eq!(size(&n.to_string()), Ok(n));
        }

        /// Whole numbers with a binary unit are exact multiples.
        #[test]
        fn binary_units_multiply(n in 1i64..1_000_000, u in 0usize..4) {
            let (c, m) = [('b', 1i64), ('k', 1 << 10), ('m', 1 << 20), ('g', 1 << 30)][u];
            proptest::prop_assert_eq!(size(&format!("{n}{c}")), Ok(n * m));
            proptest::prop_assert_eq!(size(&format!("{n}{c}-1")), Ok(n * m - 1));
        }

        /// Nothing panics, and whatever is accepted is within the bounds.
        #[test]
        fn any_text_is_refused_or_in_bounds(s in "[0-9.kKmMbBiI+\\-x ]{0,12}") {
            if let Ok(v) = parse("block-size", &s, &block_size_rule(31)) {
                proptest::prop_assert!((0..=131_072).contains(&v));
            }
            if let Ok(v) = parse("bwlimit", &s, &BWLIMIT) {
                proptest::prop_assert!(v == 0 || v >= 512);
            }
        }
    }
}
