//! `--chmod` / `incoming chmod` / `outgoing chmod` rules (upstream: chmod.c
//! parse_chmod, tweak_mode): comma-separated clauses `[DF][ugoa]*[-+=]perms`
//! or `[DF]NNNN`, applied in order to a mode's permission bits.

/// The permission bits a rule may touch (CHMOD_BITS).
const PERM_BITS: u32 = 0o7777;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Eq,
    Set,
}

/// One parsed clause, in the AND/OR form upstream applies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    dirs_only: bool,
    files_only: bool,
    /// `X`: the execute bits only apply to dirs and already-executable files.
    x_keep: bool,
    op: Op,
    and: u32,
    or: u32,
    copy_src: u32,
    copy_dst: u32,
    copy_and: u32,
}

/// A parsed chmod specification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chmod {
    clauses: Vec<Clause>,
}

/// Special bits belonging to the permission groups named in `who`.
fn special_bits_of(who: u32) -> u32 {
    let mut b = 0;
    if who & 0o100 != 0 {
        b |= 0o4000;
    }
    if who & 0o010 != 0 {
        b |= 0o2000;
    }
    if who & 0o001 != 0 {
        b |= 0o1000;
    }
    b
}

impl Chmod {
    /// Parse `spec`; `umask` applies to clauses that name no `ugoa`.
    pub fn parse(spec: &str, umask: u32) -> Result<Chmod, String> {
        let bad = || format!("Invalid argument passed to --chmod ({spec})");
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let mut chars = part.chars().peekable();
            let (mut dirs_only, mut files_only) = (false, false);
            let (mut who, mut top_who) = (0u32, 0u32);
            let mut op = None;
            while let Some(&c) = chars.peek() {
                match c {
                    'D' if !files_only => dirs_only = true,
                    'F' if !dirs_only => files_only = true,
                    'u' => {
                        who |= 0o100;
                        top_who |= 0o4000;
                    }
                    'g' => {
                        who |= 0o010;
                        top_who |= 0o2000;
                    }
                    'o' => who |= 0o001,
                    'a' => {
                        who |= 0o111;
                        top_who |= 0o6000;
                    }
                    '+' => op = Some(Op::Add),
                    '-' => op = Some(Op::Sub),
                    '=' => op = Some(Op::Eq),
                    '0'..='7' if who == 0 => op = Some(Op::Set),
                    _ => return Err(bad()),
                }
                if op.is_some() {
                    break;
                }
                chars.next();
            }
            let Some(op) = op else { return Err(bad()) };
            if op == Op::Set {
                let digits: String = chars.collect();
                let v = u32::from_str_radix(&digits, 8).map_err(|_| bad())?;
                if digits.is_empty() || v > PERM_BITS {
                    return Err(bad());
                }
                clauses.push(Clause {
                    dirs_only,
                    files_only,
                    x_keep: false,
                    op,
                    and: 0,
                    or: v,
                    copy_src: 0,
                    copy_dst: 0,
                    copy_and: PERM_BITS,
                });
                continue;
            }
            chars.next(); // the operator
            let (mut what, mut top, mut copy, mut x_keep) = (0u32, 0u32, 0u32, false);
            for c in chars {
                match c {
                    'r' if copy == 0 => what |= 4,
                    'w' if copy == 0 => what |= 2,
                    'X' if copy == 0 => {
                        x_keep = true;
                        what |= 1;
                    }
                    'x' if copy == 0 => what |= 1,
                    's' if copy == 0 => top |= if top_who != 0 { top_who } else { 0o4000 },
                    't' if copy == 0 => top |= 0o1000,
                    'u' | 'g' | 'o' if what == 0 && top == 0 && copy == 0 => {
                        copy = match c {
                            'u' => 0o100,
                            'g' => 0o010,
                            _ => 0o001,
                        }
                    }
                    _ => return Err(bad()),
                }
            }
            let specified = who != 0;
            let (dst, bits) = if specified {
                (who, who * what)
            } else {
                (0o111, (0o111 * what) & !umask)
            };
            let copy_and = if specified {
                PERM_BITS
            } else {
                !umask & PERM_BITS
            };
            let (and, or) = match op {
                Op::Add => (PERM_BITS, bits | top),
                Op::Sub => (PERM_BITS & !(bits | top), 0),
                _ => {
                    let top_clear = if top != 0 { top_who } else { 0 };
                    let copy_clear = if copy != 0 { special_bits_of(dst) } else { 0 };
                    let clear = (dst * 7) | top_clear | copy_clear;
                    (PERM_BITS & !clear, bits | top)
                }
            };
            clauses.push(Clause {
                dirs_only,
                files_only,
                x_keep,
                op,
                and,
                or,
                copy_src: copy,
                copy_dst: dst,
                copy_and,
            });
        }
        Ok(Chmod { clauses })
    }

    /// Apply to a full `st_mode` (type bits kept).
    pub fn apply(&self, mode: u32) -> u32 {
        let is_dir = mode & 0o170000 == 0o040000;
        let was_x = mode & 0o111 != 0;
        let non_perm = mode & !PERM_BITS;
        let mut m = mode & PERM_BITS;
        for c in &self.clauses {
            if (c.dirs_only && !is_dir) || (c.files_only && is_dir) {
                continue;
            }
            let mut copied = 0;
            for (bit, shift) in [(0o100, 6), (0o010, 3), (0o001, 0)] {
                if c.copy_src & bit != 0 {
                    copied |= (m >> shift) & 7;
                }
            }
            let copied = (c.copy_dst * copied) & c.copy_and;
            m &= c.and;
            m |= if c.x_keep && !was_x && !is_dir {
                c.or & !0o111
            } else {
                c.or
            };
            if c.op == Op::Sub {
                m &= PERM_BITS & !copied;
            } else {
                m |= copied;
            }
        }
        (m & PERM_BITS) | non_perm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(spec: &str, mode: u32) -> u32 {
        Chmod::parse(spec, 0o022).unwrap().apply(mode)
    }

    #[test]
    fn common_specs() {
        assert_eq!(ap("Fo-w,D+x", 0o100666), 0o100664);
        assert_eq!(ap("Fo-w,D+x", 0o040700), 0o040711);
        assert_eq!(ap("D755,F644", 0o100777), 0o100644);
        assert_eq!(ap("D755,F644", 0o040700), 0o040755);
        assert_eq!(ap("a+X", 0o100644), 0o100644);
        assert_eq!(ap("a+X", 0o100744), 0o100755);
        assert_eq!(ap("a+X", 0o040600), 0o040711);
        assert_eq!(ap("go=", 0o100755), 0o100700);
        assert_eq!(ap("+w", 0o100444), 0o100644);
        assert_eq!(ap("u+s", 0o100755), 0o104755);
        assert_eq!(ap("g=u", 0o100640), 0o100660);
        assert_eq!(ap("ug-s", 0o106755), 0o100755);
    }

    #[test]
    fn bad_specs() {
        for s in ["", "x", "u", "D+q", "DF+x", "9", "u9", "7777777", "g=ur"] {
            assert!(Chmod::parse(s, 0o022).is_err(), "{s}");
        }
    }
}
