//! `--stop-after=MINS` (`--time-limit`) and `--stop-at=WHEN` (upstream
//! options.c OPT_STOP_AFTER / OPT_STOP_AT and parse_time): the moment a
//! client stops its transfer with "stopping at requested limit" and exit
//! code 30.
//!
//! WHEN is `[[YYYY-]MM-]DDThh:mm`, `hh:mm`, `Thh:mm` or `:mm`, in local
//! time; the parts left out are today's, and a moment already past is moved
//! on by the smallest part left out (a day, month or year; an hour for
//! `:mm`), as upstream does.

use nix::libc;

/// The deadline (Unix time) of `--stop-after=MINS`, if MINS is a positive
/// number of minutes (leading digits, as C's atol reads them).
pub fn stop_after(arg: &str, now: i64) -> Option<i64> {
    let mins = crate::sockopts::atol(arg);
    let secs = mins.checked_mul(60)?;
    if secs <= 0 {
        return None;
    }
    now.checked_add(secs)
}

/// Which part of the date was left out (and so moves on when past).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filled {
    None,
    Year,
    Month,
    Day,
}

/// The Unix time `--stop-at=WHEN` names, or None when WHEN is malformed.
pub fn stop_at(arg: &str, now: i64) -> Option<i64> {
    let b = arg.as_bytes();
    let mut i = 0usize;
    // Date parts come first unless a 'T' (time only) or ':' (minutes) leads.
    // 1: reading the date, -1: a time must follow, 0: reading the time.
    let mut in_date: i32 = match b.first() {
        Some(b'T' | b't') => {
            i = 1;
            -1
        }
        Some(b':') => {
            i = 1;
            0
        }
        _ => 1,
    };
    let (mut year, mut mon, mut mday) = (-1i64, -1i64, -1i64);
    let (mut hour, mut min) = (-1i64, -1i64);
    loop {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let mut n: i64 = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
            i += 1;
        }
        if b.get(i) == Some(&b':') {
            in_date = 0;
        }
        if in_date > 0 {
            if year != -1 {
                return None;
            }
            year = mon;
            mon = mday;
            mday = n;
            match b.get(i) {
                None => break,
                Some(b'T' | b't') => {
                    if i + 1 == b.len() {
                        break;
                    }
                    in_date = -1;
                }
                Some(b'-' | b'/') => {}
                Some(_) => return None,
            }
            i += 1;
            continue;
        }
        if hour != -1 {
            return None;
        }
        hour = min;
        min = n;
        match b.get(i) {
            None => {
                if in_date < 0 {
                    return None;
                }
                break;
            }
            Some(b':') => {}
            Some(_) => return None,
        }
        in_date = 0;
        i += 1;
    }

    let today = local(now)?;
    let mut filled = Filled::None;
    let mut t: libc::tm = today;
    t.tm_sec = 0;
    t.tm_isdst = -1;
    t.tm_year = if year < 0 {
        filled = Filled::Year;
        today.tm_year
    } else if year < 100 {
        let mut y = year;
        while y < i64::from(today.tm_year) {
            y += 100;
        }
        i32::try_from(y).ok()?
    } else {
        i32::try_from(year - 1900).ok()?
    };
    t.tm_mon = if mon < 0 {
        filled = Filled::Month;
        today.tm_mon
    } else {
        i32::try_from(mon - 1).ok()?
    };
    t.tm_mday = if mday < 0 {
        filled = Filled::Day;
        today.tm_mday
    } else {
        i32::try_from(mday).ok()?
    };
    let mut step = 0i64;
    if min < 0 {
        t.tm_hour = 0;
        t.tm_min = 0;
    } else if hour < 0 {
        // ":mm": this hour (or a later one).
        if filled != Filled::Day {
            return None;
        }
        filled = Filled::None;
        t.tm_hour = today.tm_hour;
        t.tm_min = i32::try_from(min).ok()?;
        step = 3600;
    } else {
        t.tm_hour = i32::try_from(hour).ok()?;
        t.tm_min = i32::try_from(min).ok()?;
    }
    let mut old_mday = t.tm_mday;
    if t.tm_hour > 23
        || t.tm_min > 59
        || !(0..12).contains(&t.tm_mon)
        || !(1..=31).contains(&t.tm_mday)
    {
        return None;
    }
    let mut val = mktime(&mut t)?;
    while filled != Filled::None && (val <= now || t.tm_mday < old_mday) {
        match filled {
            Filled::Day => {
                t.tm_mday += 1;
                old_mday = t.tm_mday;
            }
            Filled::Month => {
                if t.tm_mday < old_mday {
                    // mktime already moved into the next month.
                    t.tm_mday = old_mday;
                } else {
                    t.tm_mon += 1;
                    if t.tm_mon == 12 {
                        t.tm_mon = 0;
                        t.tm_year += 1;
                    }
                }
            }
            Filled::Year => {
                if t.tm_mday < old_mday {
                    // Feb 29 became Mar 1: only that case moves on a year.
                    if t.tm_mon != 2 || old_mday != 29 {
                        return None;
                    }
                    t.tm_mon = 1;
                    t.tm_mday = 29;
                }
                t.tm_year += 1;
            }
            Filled::None => {}
        }
        val = match mktime(&mut t) {
            Some(v) => v,
            None => {
                if filled != Filled::Day || t.tm_mday <= 28 {
                    return None;
                }
                t.tm_mday = 1;
                old_mday = 1;
                filled = Filled::Month;
                continue;
            }
        };
    }
    if step > 0 {
        while val <= now {
            val += step;
        }
    }
    Some(val)
}

fn local(now: i64) -> Option<libc::tm> {
    let t: libc::time_t = now;
    let mut out = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: localtime_r fills `out` from a valid time_t; null on failure.
    let r = unsafe { libc::localtime_r(&t, out.as_mut_ptr()) };
    if r.is_null() {
        return None;
    }
    // SAFETY: filled by localtime_r above.
    Some(unsafe { out.assume_init() })
}

fn mktime(t: &mut libc::tm) -> Option<i64> {
    // SAFETY: mktime normalises a valid, initialised struct tm in place.
    let v = unsafe { libc::mktime(t) };
    (v != -1).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: i32, d: i32, h: i32, mi: i32) -> i64 {
        let mut t = local(0).unwrap();
        t.tm_year = y - 1900;
        t.tm_mon = mo - 1;
        t.tm_mday = d;
        t.tm_hour = h;
        t.tm_min = mi;
        t.tm_sec = 0;
        t.tm_isdst = -1;
        mktime(&mut t).unwrap()
    }

    #[test]
    fn minutes_after_now() {
        assert_eq!(stop_after("5", 1000), Some(1300));
        assert_eq!(stop_after("2x", 1000), Some(1120));
        assert_eq!(stop_after("0", 1000), None);
        assert_eq!(stop_after("abc", 1000), None);
        assert_eq!(stop_after("-3", 1000), None);
    }

    #[test]
    fn full_and_partial_times() {
        let now = at(2026, 12, 7, 23, 30);
        assert_eq!(stop_at("2027-01-02T03:04", now), Some(at(2027, 1, 2, 3, 4)));
        assert_eq!(stop_at("27/01/02T03:04", now), Some(at(2027, 1, 2, 3, 4)));
        // A time of day already past today means tomorrow.
        assert_eq!(stop_at("10:00", now), Some(at(2026, 12, 8, 10, 0)));
        assert_eq!(stop_at("T23:45", now), Some(at(2026, 12, 7, 23, 45)));
        // ":mm" is this hour's or the next.
        assert_eq!(stop_at(":15", now), Some(at(2026, 12, 8, 0, 15)));
        assert_eq!(stop_at(":45", now), Some(at(2026, 12, 7, 23, 45)));
        // A day alone is midnight of that day, this month or the next.
        assert_eq!(stop_at("12-25", now), Some(at(2026, 12, 25, 0, 0)));
        assert_eq!(stop_at("6", now), Some(at(2027, 1, 6, 0, 0)));
        // A past full date stays past (the caller refuses it).
        assert_eq!(stop_at("2001-01-01T00:00", now), Some(at(2001, 1, 1, 0, 0)));
    }

    #[test]
    fn malformed() {
        let now = at(2026, 12, 7, 23, 30);
        for bad in [
            "",
            "10:00x",
            "T",
            "T10",
            "25:00",
            "10:60",
            "1-2-3-4",
            "x",
            "2026-13-01",
            "10:00:00",
        ] {
            assert_eq!(stop_at(bad, now), None, "{bad}");
        }
    }
}
