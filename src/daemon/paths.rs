//! Client path arguments of a daemon request (upstream: util1.c
//! glob_expand_module, sanitize_path): module prefix removal and confinement
//! of every path to the module.

/// Remove the module name prefix from a path argument, splitting it where
/// ` <module>/` occurs (a protected space), and sanitize each piece.
pub fn module_args(module: &str, arg: &[u8]) -> Vec<Vec<u8>> {
    let m = module.as_bytes();
    let mut a = arg;
    if a.starts_with(m) && (a.len() == m.len() || a[m.len()] == b'/') {
        a = &a[m.len()..];
    }
    let mut sep = vec![b' '];
    sep.extend_from_slice(m);
    sep.push(b'/');
    let mut out = Vec::new();
    let mut rest = a;
    loop {
        match rest.windows(sep.len()).position(|w| w == &sep[..]) {
            Some(p) => {
                out.push(sanitize(&rest[..p]));
                rest = &rest[p + sep.len()..];
            }
            None => {
                out.push(sanitize(rest));
                break;
            }
        }
    }
    out
}

/// `sanitize_path` with dot dirs kept: drop leading slashes, resolve `..`
/// without ever climbing above the root, keep a trailing slash.
pub fn sanitize(p: &[u8]) -> Vec<u8> {
    let trailing = p.ends_with(b"/") || p.ends_with(b"/.") && p.len() > 2;
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => {}
            b".." => {
                while comps.last() == Some(&&b"."[..]) {
                    comps.pop();
                }
                comps.pop();
            }
            _ => comps.push(c),
        }
    }
    let mut v = comps.join(&b'/');
    if v.is_empty() {
        return if p.is_empty() || trailing || p.starts_with(b"/") {
            Vec::new()
        } else {
            b".".to_vec()
        };
    }
    if trailing && !v.ends_with(b"/") {
        v.push(b'/');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_prefix_and_confinement() {
        assert_eq!(module_args("pub", b"pub/"), vec![b"".to_vec()]);
        assert_eq!(module_args("pub", b"pub/sub/"), vec![b"sub/".to_vec()]);
        assert_eq!(module_args("pub", b"pub"), vec![b"".to_vec()]);
        assert_eq!(
            module_args("pub", b"pub/../etc/passwd"),
            vec![b"etc/passwd".to_vec()]
        );
        assert_eq!(module_args("pub", b"pub/a/../../../x"), vec![b"x".to_vec()]);
        assert_eq!(module_args("pub", b"pub//etc"), vec![b"etc".to_vec()]);
        assert_eq!(
            module_args("pub", b"pub/a pub/b"),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(module_args("pub", b"pub/./x/y"), vec![b"./x/y".to_vec()]);
    }
}
