//! Tests of the filter module as a whole: parsing, matching, merge files,
//! wire form and daemon lists.  Expected wire bytes were captured from
//! stock rsync 3.5.0.

use super::rule::flags as f;
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn no_files(_: &[u8]) -> Option<Vec<u8>> {
    None
}

fn list_of(filters: &[&str]) -> FilterList {
    let mut l = FilterList::new(ParseOptions::default());
    for r in filters {
        l.add_filter(r.as_bytes(), &mut no_files).unwrap();
    }
    l
}

fn texts(l: &FilterList) -> Vec<String> {
    l.rules()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.to_text()).into_owned())
        .collect()
}

fn chk(l: &FilterList, p: &str, dir: bool) -> Option<Action> {
    l.check(p.as_bytes(), dir, Side::Sender)
}

const EX: Option<Action> = Some(Action::Exclude);
const IN: Option<Action> = Some(Action::Include);

// ---------- parsing ----------

#[test]
fn short_forms() {
    let l = list_of(&[
        "- a", "+ b", "H c", "S d", "P e", "R f", "- g/", ": .m", "-! h", "-/ /i",
    ]);
    assert_eq!(
        texts(&l),
        ["- a", "+ b", "-s c", "+s d", "-r e", "+r f", "- g/", ": .m", "-! h", "-/ /i"]
    );
    let r = &l.rules()[6];
    assert!(r.is_dir_only());
    assert_eq!(r.pattern(), b"g");
}

#[test]
fn long_forms_and_separators() {
    let l = list_of(&[
        "exclude a",
        "include b",
        "hide c",
        "show d",
        "protect e",
        "risk f",
        "dir-merge .m",
        "exclude,sp g",
        "include_h",
        "-_i",
        "+,/ /j",
    ]);
    assert_eq!(
        texts(&l),
        ["- a", "+ b", "-s c", "+s d", "-r e", "+r f", ": .m", "-sp g", "+ h", "- i", "+/ /j"]
    );
}

#[test]
fn clear_rule() {
    let mut l = list_of(&["- a", "+ b"]);
    l.add_filter(b"!", &mut no_files).unwrap();
    assert!(l.is_empty());
    l.add_filter(b"- c", &mut no_files).unwrap();
    l.add_filter(b"clear", &mut no_files).unwrap();
    assert!(l.is_empty());
    assert!(matches!(
        l.add_filter(b"! x", &mut no_files),
        Err(FilterError::ClearTrailing(_))
    ));
    // --exclude: a lone '!' clears, "!x" is a pattern
    l.add_exclude(b"a").unwrap();
    l.add_exclude(b"!").unwrap();
    assert!(l.is_empty());
    l.add_exclude(b"!x").unwrap();
    assert_eq!(texts(&l), ["- !x"]);
}

#[test]
fn parse_errors() {
    let mut l = FilterList::new(ParseOptions::default());
    let e = |l: &mut FilterList, s: &str| l.add_filter(s.as_bytes(), &mut no_files).unwrap_err();
    assert!(matches!(e(&mut l, "x foo"), FilterError::UnknownRule(_)));
    assert!(matches!(
        e(&mut l, "excludes foo"),
        FilterError::UnknownRule(_)
    ));
    assert!(matches!(e(&mut l, "-"), FilterError::UnexpectedEnd(_)));
    assert!(matches!(
        e(&mut l, "exclude"),
        FilterError::UnexpectedEnd(_)
    ));
    let err = e(&mut l, "+foo");
    assert_eq!(
        err.to_string(),
        "invalid modifier 'f' at position 1 in filter rule: +foo"
    );
    assert_eq!(err.exit_code(), 1);
    assert!(matches!(
        e(&mut l, "-e x"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(matches!(
        e(&mut l, "-n x"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(matches!(
        e(&mut l, ".! x"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(matches!(
        e(&mut l, "Hs x"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(matches!(
        e(&mut l, "PC"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(matches!(
        e(&mut l, "-+ x"),
        FilterError::InvalidModifier { .. }
    ));
    assert!(l.is_empty());
}

#[test]
fn exclude_include_options() {
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"*.o").unwrap();
    l.add_exclude(b"+ keep.o").unwrap();
    l.add_exclude(b"- x").unwrap();
    l.add_include(b"- y").unwrap();
    l.add_include(b"z/").unwrap();
    l.add_exclude(b"P notaprefix").unwrap();
    l.add_exclude(b": nor this").unwrap();
    assert_eq!(
        texts(&l),
        [
            "- *.o",
            "+ keep.o",
            "- x",
            "- y",
            "+ z/",
            "- P notaprefix",
            "- : nor this"
        ]
    );
}

#[test]
fn dash_f() {
    let mut l = FilterList::new(ParseOptions::default());
    l.add_dash_f(1).unwrap();
    l.add_dash_f(2).unwrap();
    l.add_dash_f(3).unwrap();
    assert_eq!(texts(&l), [": /.rsync-filter", "- .rsync-filter"]);
}

#[test]
fn merge_modifiers() {
    let l = list_of(&[":n- .a", ":w+ .b", ":e .c", ":C", "dir-merge,s .d", ":p .e"]);
    // 'e' adds an exclude of the file's own name first and is not kept.
    assert_eq!(
        texts(&l),
        [
            ":n- .a",
            ":w+ .b",
            "- .c",
            ": .c",
            ":C .cvsignore",
            ":s .d",
            ":p .e"
        ]
    );
    // a second dir-merge of the same base name is dropped
    let l = list_of(&[": .f", ": sub/.f", ": .g"]);
    assert_eq!(texts(&l), [": .f", ": .g"]);
}

#[test]
fn rules_file_content() {
    let content = b"# comment\n; another\n\n- a\r\n+ b\rc\n  d  \n!x\n- e\0ignored\n";
    let mut l = FilterList::new(ParseOptions::default());
    l.add_rules_content(content, false).unwrap();
    assert_eq!(texts(&l), ["- a", "+ b", "- c", "-   d  ", "- !x", "- e"]);
    let mut l = FilterList::new(ParseOptions::default());
    l.add_rules_content(b"a\n- b\n+ c\n", true).unwrap();
    assert_eq!(texts(&l), ["+ a", "- b", "+ c"]);
    // --from0
    let mut l = FilterList::new(ParseOptions {
        eol_nulls: true,
        ..ParseOptions::default()
    });
    l.add_rules_content(b"a\nb\0c", false).unwrap();
    assert_eq!(l.rules()[0].pattern(), b"a\nb");
    assert_eq!(l.rules()[1].pattern(), b"c");
    // a missing file is fatal
    let mut l = FilterList::new(ParseOptions::default());
    let err = l
        .add_rules_file(b"/nonexistent", true, &mut no_files)
        .unwrap_err();
    assert_eq!(err.to_string(), "failed to open include file /nonexistent");
    assert_eq!(err.exit_code(), 11);
}

#[test]
fn overlong_rules_are_discarded() {
    let mut l = FilterList::new(ParseOptions::default());
    let long = vec![b'a'; 5000];
    l.add_exclude(&long).unwrap();
    assert!(l.is_empty());
    assert_eq!(l.take_warnings().len(), 1);
    let mut content = vec![b'b'; 6000];
    content.extend_from_slice(b"\nok\n");
    l.add_rules_content(&content, false).unwrap();
    assert_eq!(texts(&l), ["- ok"]);
}

#[test]
fn merge_rule_expansion() {
    let mut files: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    files.insert(b"rules".to_vec(), b"- a\n. sub/more\n+ b\n".to_vec());
    files.insert(b"sub/more".to_vec(), b"- c\n".to_vec());
    files.insert(b"words".to_vec(), b"x y\tz\n".to_vec());
    let mut read = |p: &[u8]| files.get(p).cloned();
    let mut l = FilterList::new(ParseOptions::default());
    l.add_filter(b". rules", &mut read).unwrap();
    l.add_filter(b"merge,w+ words", &mut read).unwrap();
    l.add_filter(b".e rules", &mut read).unwrap();
    assert_eq!(
        texts(&l),
        ["- a", "- c", "+ b", "+ x", "+ y", "+ z", "- rules", "- a", "- c", "+ b"]
    );
    let err = l.add_filter(b". missing", &mut read).unwrap_err();
    assert!(matches!(
        err,
        FilterError::OpenFailed { include: false, .. }
    ));
    // merge recursion is bounded
    let mut read = |_: &[u8]| Some(b". self\n".to_vec());
    assert!(matches!(
        l.add_filter(b". self", &mut read),
        Err(FilterError::MergeDepth(32))
    ));
}

#[test]
fn sided_merge_file_rejects_sided_rules() {
    let mut read = |_: &[u8]| Some(b"H x\n".to_vec());
    let mut l = FilterList::new(ParseOptions::default());
    let e = l.add_filter(b".s f", &mut read).unwrap_err();
    assert!(matches!(e, FilterError::SidedMergeRule(_)));
    // and rules from files are not echoed in errors
    let mut read = |_: &[u8]| Some(b"bogus rule\n".to_vec());
    let e = l.add_filter(b". f", &mut read).unwrap_err();
    assert_eq!(e.to_string(), "Unknown filter rule: <rule from f line 1>");
}

#[test]
fn cvs_exclude_list() {
    let mut l = list_of(&["-C"]);
    let cvs = l.cvs_rules().unwrap();
    assert_eq!(cvs.len(), 36);
    assert!(cvs.iter().all(|r| r.flags() & f::PERISHABLE != 0));
    assert!(l.is_excluded(b"a/b/foo.o", false, Side::Sender));
    assert!(l.is_excluded(b"x/.git", true, Side::Sender));
    assert!(!l.is_excluded(b"x/.git", false, Side::Sender));
    assert!(!l.is_excluded(b"main.c", false, Side::Sender));
    assert_eq!(
        l.check_ext(b"core", NameKind::File, Side::Receiver, true),
        None
    );
    // $CVSIGNORE with a '!' clears the defaults
    let opts = ParseOptions {
        cvs_env: Some(b"! only".to_vec()),
        ..ParseOptions::default()
    };
    l = FilterList::new(opts);
    l.add_filter(b"-C", &mut no_files).unwrap();
    assert_eq!(l.cvs_rules().unwrap().len(), 1);
    assert!(l.is_excluded(b"only", false, Side::Sender));
    assert!(!l.is_excluded(b"core", false, Side::Sender));
}

// ---------- matching ----------

#[test]
fn basename_vs_path_matching() {
    let l = list_of(&["- *.o", "- foo"]);
    assert_eq!(chk(&l, "a/b/x.o", false), EX);
    assert_eq!(chk(&l, "foo", false), EX);
    assert_eq!(chk(&l, "a/foo", true), EX);
    assert_eq!(chk(&l, "a/foox", false), None);
    // a slash anywhere but the end: match the trailing path elements
    let l = list_of(&["- b/c", "- d*/e"]);
    assert_eq!(chk(&l, "b/c", false), EX);
    assert_eq!(chk(&l, "a/b/c", false), EX);
    assert_eq!(chk(&l, "a/xb/c", false), None);
    assert_eq!(chk(&l, "x/dd/e", false), EX);
    assert_eq!(chk(&l, "x/d/y/e", false), None);
}

#[test]
fn anchoring() {
    let l = list_of(&["- /top", "- /a/*.c"]);
    assert_eq!(chk(&l, "top", false), EX);
    assert_eq!(chk(&l, "sub/top", false), None);
    assert_eq!(chk(&l, "a/x.c", false), EX);
    assert_eq!(chk(&l, "b/a/x.c", false), None);
    assert_eq!(chk(&l, "a/b/x.c", false), None);
}

#[test]
fn directory_only_and_negation() {
    let l = list_of(&["- sub/"]);
    assert_eq!(chk(&l, "sub", true), EX);
    assert_eq!(chk(&l, "x/sub", true), EX);
    assert_eq!(chk(&l, "sub", false), None);
    // negated: matches what the pattern does not (a negated dir-only rule
    // matches every non-directory, as in stock)
    let l = list_of(&["-! *.c"]);
    assert_eq!(chk(&l, "x.c", false), None);
    assert_eq!(chk(&l, "x.h", false), EX);
    let l = list_of(&["-! d/"]);
    assert_eq!(chk(&l, "f", false), EX);
    assert_eq!(chk(&l, "d", true), None);
    assert_eq!(chk(&l, "e", true), EX);
}

#[test]
fn double_star() {
    let l = list_of(&["+ /keep/**", "- a/**/z", "- **/deep", "- dir/***"]);
    assert_eq!(chk(&l, "keep/x/y", false), IN);
    assert_eq!(chk(&l, "keep", true), None);
    assert_eq!(chk(&l, "q/a/b/c/z", false), EX);
    assert_eq!(chk(&l, "a/z", false), None);
    assert_eq!(chk(&l, "a/b/z", false), EX);
    assert_eq!(chk(&l, "deep", false), EX);
    assert_eq!(chk(&l, "x/y/deep", false), EX);
    // "dir/***" matches the directory itself and everything below it
    assert_eq!(chk(&l, "dir", true), EX);
    assert_eq!(chk(&l, "dir", false), None);
    assert_eq!(chk(&l, "x/dir/f", false), EX);
}

#[test]
fn first_match_wins() {
    let l = list_of(&["+ *.c", "- *", "+ never"]);
    assert_eq!(chk(&l, "a.c", false), IN);
    assert_eq!(chk(&l, "never", false), EX);
    assert!(!l.is_excluded(b"a.c", false, Side::Sender));
}

#[test]
fn literal_with_backslash_and_brackets() {
    // no wildcard: the pattern is compared literally, '\' included
    let l = list_of(&["- a\\b", "- [x]"]);
    assert_eq!(chk(&l, "a\\b", false), EX);
    assert_eq!(chk(&l, "ab", false), None);
    assert_eq!(chk(&l, "x", false), EX);
    assert_eq!(chk(&l, "[x]", false), None);
    let l = list_of(&["- \\*"]);
    assert_eq!(chk(&l, "*", false), EX);
    assert_eq!(chk(&l, "a", false), None);
}

#[test]
fn sides_and_delete_excluded() {
    let l = list_of(&["H h", "S s", "P p", "R r", "- both"]);
    let s = |p: &str| l.check(p.as_bytes(), false, Side::Sender);
    let r = |p: &str| l.check(p.as_bytes(), false, Side::Receiver);
    assert_eq!((s("h"), r("h")), (EX, None));
    assert_eq!((s("s"), r("s")), (IN, None));
    assert_eq!((s("p"), r("p")), (None, EX));
    assert_eq!((s("r"), r("r")), (None, IN));
    assert_eq!((s("both"), r("both")), (EX, EX));
    let mut l = FilterList::new(ParseOptions {
        delete_excluded: true,
        ..ParseOptions::default()
    });
    l.add_exclude(b"x").unwrap();
    l.add_filter(b"P y", &mut no_files).unwrap();
    assert_eq!(texts(&l), ["-s x", "-r y"]);
    assert_eq!(l.check(b"x", false, Side::Receiver), None);
    assert_eq!(l.check(b"x", false, Side::Sender), EX);
}

#[test]
fn perishable_and_xattr() {
    let l = list_of(&["-p tmp", "-x user.*", "- user.foo"]);
    assert_eq!(
        l.check_ext(b"tmp", NameKind::File, Side::Receiver, false),
        EX
    );
    assert_eq!(
        l.check_ext(b"tmp", NameKind::File, Side::Receiver, true),
        None
    );
    assert_eq!(
        l.check_ext(b"user.foo", NameKind::Xattr, Side::Sender, false),
        EX
    );
    assert_eq!(
        l.check_ext(b"security.x", NameKind::Xattr, Side::Sender, false),
        None
    );
    // xattr rules never apply to file names, and plain rules never to xattrs
    assert_eq!(
        l.check_ext(b"user.bar", NameKind::File, Side::Sender, false),
        None
    );
    assert_eq!(
        l.check_ext(b"user.foo", NameKind::File, Side::Sender, false),
        EX
    );
}

#[test]
fn absolute_path_rules() {
    let mut l = list_of(&["-/ /home/u/src/x", "-/ *.c"]);
    l.set_root_abs(b"/home/u/src");
    assert_eq!(chk(&l, "x", false), EX);
    assert_eq!(chk(&l, "y/x", false), None);
    assert_eq!(chk(&l, "a.c", false), EX);
    l.set_root_abs(b"/other");
    assert_eq!(chk(&l, "x", false), None);
}

#[test]
fn non_utf8_names() {
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"caf\xe9*").unwrap();
    assert!(l.is_excluded(b"d/caf\xe9.txt", false, Side::Sender));
    assert!(!l.is_excluded(b"d/cafe.txt", false, Side::Sender));
}

// ---------- per-directory merge files ----------

struct Fs(HashMap<Vec<u8>, Vec<u8>>);

impl Fs {
    fn new(files: &[(&str, &str)]) -> Fs {
        Fs(files
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect())
    }
    fn reader(&self) -> impl FnMut(&[u8]) -> Option<Vec<u8>> + '_ {
        move |p: &[u8]| self.0.get(p).cloned()
    }
}

fn stack_of(rules: &[&str]) -> FilterStack {
    FilterStack::new(list_of(rules), Side::Sender)
}

#[test]
fn dir_merge_inheritance() {
    let fs = Fs::new(&[
        (".rules", "- *.tmp\n"),
        ("a/.rules", "- *.log\n+ keep.tmp\n"),
        ("a/b/.rules", "- /only-here\n"),
    ]);
    let mut st = stack_of(&[": .rules", "- *.bak"]);
    let mut rd = fs.reader();
    let t0 = st.enter_dir(b"", &mut rd).unwrap();
    assert!(st.is_excluded(b"x.tmp", false, Side::Sender));
    assert!(!st.is_excluded(b"x.log", false, Side::Sender));
    let t1 = st.enter_dir(b"a", &mut rd).unwrap();
    assert!(st.is_excluded(b"a/x.log", false, Side::Sender));
    assert!(st.is_excluded(b"a/x.tmp", false, Side::Sender));
    assert!(!st.is_excluded(b"a/keep.tmp", false, Side::Sender));
    let t2 = st.enter_dir(b"a/b", &mut rd).unwrap();
    assert!(st.is_excluded(b"a/b/only-here", false, Side::Sender));
    assert!(!st.is_excluded(b"a/b/c/only-here", false, Side::Sender));
    assert!(st.is_excluded(b"a/b/x.log", false, Side::Sender));
    assert!(st.is_excluded(b"a/b/z.bak", false, Side::Sender));
    st.leave_dir(t2);
    st.leave_dir(t1);
    let t1 = st.enter_dir(b"c", &mut rd).unwrap();
    assert!(!st.is_excluded(b"c/x.log", false, Side::Sender));
    assert!(st.is_excluded(b"c/x.tmp", false, Side::Sender));
    st.leave_dir(t1);
    st.leave_dir(t0);
    assert_eq!(st.depth(), 0);
    assert!(!st.is_excluded(b"x.tmp", false, Side::Sender));
}

#[test]
fn dir_merge_no_inherit_clear_and_exclude_self() {
    let fs = Fs::new(&[
        (".f", "- a\n"),
        ("d/.f", "- b\n"),
        ("e/.f", "!\n- c\n"),
        ("d/x/.g", "+ z\n"),
    ]);
    let mut rd = fs.reader();
    let mut st = stack_of(&[":n .f"]);
    let _t0 = st.enter_dir(b"", &mut rd).unwrap();
    let t1 = st.enter_dir(b"d", &mut rd).unwrap();
    assert!(st.is_excluded(b"d/b", false, Side::Sender));
    assert!(
        !st.is_excluded(b"d/a", false, Side::Sender),
        "n: parent rules not inherited"
    );
    st.leave_dir(t1);
    let mut st = stack_of(&[":e .f"]);
    let _t0 = st.enter_dir(b"", &mut rd).unwrap();
    assert!(st.is_excluded(b".f", false, Side::Sender));
    assert!(st.is_excluded(b"sub/.f", false, Side::Sender));
    let _t1 = st.enter_dir(b"e", &mut rd).unwrap();
    assert!(
        !st.is_excluded(b"e/a", false, Side::Sender),
        "! drops inherited rules"
    );
    assert!(st.is_excluded(b"e/c", false, Side::Sender));
}

#[test]
fn dir_merge_word_split_and_no_prefix() {
    // stock splits a word-split file into words before parsing, so "- p"
    // is two rules and fails ("-_p" works), as rsync 3.5.0 does
    let bad = Fs::new(&[(".w", "- p + q\n")]);
    let mut st = stack_of(&[":w .w"]);
    let e = st.enter_dir(b"", &mut bad.reader()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected end of filter rule: <rule from /.w>"
    );
    let fs = Fs::new(&[
        (".cvsignore", "*.x  y\n"),
        (".inc", "keep\n"),
        (".w", "-_p +_q\n"),
    ]);
    let mut rd = fs.reader();
    let mut st = stack_of(&[":C", ":+ .inc", ":w .w", "- *"]);
    let _t = st.enter_dir(b"", &mut rd).unwrap();
    assert!(st.is_excluded(b"a.x", false, Side::Sender));
    assert!(st.is_excluded(b"y", false, Side::Sender));
    assert_eq!(st.check(b"keep", false, Side::Sender), IN);
    assert_eq!(st.check(b"p", false, Side::Sender), EX);
    assert_eq!(st.check(b"q", false, Side::Sender), IN);
    assert_eq!(st.check(b"other", false, Side::Sender), EX);
}

#[test]
fn dir_merge_nested_and_side_drop() {
    // a per-dir file can declare another per-dir merge file; it is read in
    // the same directory and dropped when leaving it
    let fs = Fs::new(&[
        (".a", ": .b\nP prot\n"),
        (".b", "- fromb\n"),
        ("s/.b", "- sb\n"),
    ]);
    let mut rd = fs.reader();
    let mut st = FilterStack::new(list_of(&[": .a"]), Side::Sender);
    let t0 = st.enter_dir(b"", &mut rd).unwrap();
    assert!(st.is_excluded(b"fromb", false, Side::Sender));
    // receiver-only rules read by a sender are dropped
    assert!(!st.is_excluded(b"prot", false, Side::Receiver));
    let t1 = st.enter_dir(b"s", &mut rd).unwrap();
    assert!(st.is_excluded(b"s/sb", false, Side::Sender));
    assert!(st.is_excluded(b"s/fromb", false, Side::Sender));
    st.leave_dir(t1);
    st.leave_dir(t0);
    let mut st2 = FilterStack::new(list_of(&[": .a"]), Side::Receiver);
    let _t = st2.enter_dir(b"", &mut rd).unwrap();
    assert!(st2.is_excluded(b"prot", false, Side::Receiver));
}

#[test]
fn dash_f_parent_scan() {
    let fs = Fs::new(&[
        ("/.rsync-filter", "- fromroot\n"),
        ("/home/.rsync-filter", "- /u/src/anch\n- fromhome\n"),
        ("/home/u/.rsync-filter", "- fromu\n"),
        (".rsync-filter", "- fromtop\n"),
    ]);
    let mut seen = Vec::new();
    let mut rd = |p: &[u8]| {
        seen.push(String::from_utf8_lossy(p).into_owned());
        fs.0.get(p).cloned()
    };
    let mut l = FilterList::new(ParseOptions::default());
    l.add_dash_f(1).unwrap();
    l.set_root_abs(b"/home/u/src");
    let mut st = FilterStack::new(l, Side::Sender);
    let t = st.enter_dir(b".", &mut rd).unwrap();
    for n in [
        "fromroot",
        "fromhome",
        "fromu",
        "fromtop",
        "x/fromroot",
        "anch",
    ] {
        assert!(st.is_excluded(n.as_bytes(), false, Side::Sender), "{n}");
    }
    assert!(!st.is_excluded(b"x/anch", false, Side::Sender));
    st.leave_dir(t);
    assert!(!st.is_excluded(b"fromroot", false, Side::Sender));
    assert_eq!(
        seen,
        [
            "/.rsync-filter",
            "/home/.rsync-filter",
            "/home/u/.rsync-filter",
            ".rsync-filter"
        ]
    );
}

#[test]
fn anchored_rules_in_subdir_files() {
    let fs = Fs::new(&[("a/b/.f", "- /x\n- /y/\n")]);
    let mut rd = fs.reader();
    let mut st = stack_of(&[": .f"]);
    let _t0 = st.enter_dir(b"", &mut rd).unwrap();
    let _t1 = st.enter_dir(b"a", &mut rd).unwrap();
    let _t2 = st.enter_dir(b"a/b", &mut rd).unwrap();
    assert!(st.is_excluded(b"a/b/x", false, Side::Sender));
    assert!(!st.is_excluded(b"x", false, Side::Sender));
    assert!(!st.is_excluded(b"a/b/c/x", false, Side::Sender));
    assert!(st.is_excluded(b"a/b/y", true, Side::Sender));
    assert!(!st.is_excluded(b"a/b/y", false, Side::Sender));
}

#[test]
fn merge_file_slot_limit() {
    // one file declaring more per-dir merge files than allowed
    let mut many = Vec::new();
    for i in 0..1100 {
        many.extend_from_slice(format!(": .f{i}\n").as_bytes());
    }
    let mut rd = |p: &[u8]| {
        if p == b".top" {
            Some(many.clone())
        } else {
            None
        }
    };
    let mut st = stack_of(&[": .top"]);
    let e = st.enter_dir(b"", &mut rd).unwrap_err();
    assert!(matches!(
        e,
        FilterError::TooManyMergeFiles(MAX_ACTIVE_MERGE_FILES)
    ));
    // the failed enter left nothing behind
    assert_eq!(st.depth(), 0);
    let half: Vec<u8> = (0..500)
        .flat_map(|i| format!(": .f{i}\n").into_bytes())
        .collect();
    let mut rd = |p: &[u8]| {
        if p == b".top" {
            Some(half.clone())
        } else {
            None
        }
    };
    let t = st.enter_dir(b"", &mut rd).unwrap();
    st.leave_dir(t);
}

// ---------- wire ----------

fn xo(protocol: u32, am_sender: bool) -> XferOptions {
    XferOptions {
        protocol,
        am_sender,
        delete_mode: true,
        ..XferOptions::default()
    }
}

fn sent(filters: &[&str], x: XferOptions) -> Vec<String> {
    let mut l = list_of(filters);
    let bytes = send_filter_list(&mut l, &x).unwrap().unwrap();
    decode_rules(&mut bytes.as_slice())
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r).unwrap())
        .collect()
}

#[test]
fn capture_19_20_bytes() {
    // capture 19 (push, --delete, --exclude='*.tmp' --exclude='sub/')
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"*.tmp").unwrap();
    l.add_exclude(b"sub/").unwrap();
    let bytes = send_filter_list(&mut l, &xo(32, true)).unwrap().unwrap();
    let expect: &[u8] = &[
        0x07, 0, 0, 0, b'-', b' ', b'*', b'.', b't', b'm', b'p', 0x06, 0, 0, 0, b'-', b' ', b's',
        b'u', b'b', b'/', 0, 0, 0, 0,
    ];
    assert_eq!(bytes, expect);
    // capture 20 (pull, --delete --exclude='*.txt')
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"*.txt").unwrap();
    let bytes = send_filter_list(&mut l, &xo(32, false)).unwrap().unwrap();
    assert_eq!(bytes, b"\x07\0\0\0- *.txt\0\0\0\0");
    // and the server side reads it back
    let mut srv = FilterList::new(ParseOptions::default());
    recv_filter_list(
        &mut bytes.as_slice(),
        &mut srv,
        &xo(32, true),
        &mut no_files,
    )
    .unwrap();
    assert_eq!(texts(&srv), ["- *.txt"]);
}

#[test]
fn stock_client_sender_encodings() {
    assert_eq!(
        sent(&[": /.rsync-filter", "- .rsync-filter"], xo(32, true)),
        [": /.rsync-filter", "- .rsync-filter"]
    );
    assert_eq!(
        sent(&["P keep", "H hid", "-p per", "+ x"], xo(32, true)),
        ["-r keep", "-p per", "+ x"]
    );
    assert_eq!(
        sent(
            &[":e .filt", "dir-merge,n- .f2", "-! /neg", "-/ /abs"],
            xo(32, true)
        ),
        ["- .filt", ": .filt", ":n- .f2", "-! /neg", "-/ /abs"]
    );
    // protocol 28: old prefixes; an exclude carries "- " only when needed
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"- x").unwrap();
    l.add_exclude(b"y").unwrap();
    l.add_include(b"z").unwrap();
    l.add_exclude(b"- - w").unwrap();
    l.add_filter(b"P b", &mut no_files).unwrap();
    l.add_filter(b"H h", &mut no_files).unwrap();
    let b = send_filter_list(&mut l, &xo(28, true)).unwrap().unwrap();
    let r: Vec<_> = decode_rules(&mut b.as_slice()).unwrap();
    assert_eq!(r, [&b"x"[..], b"y", b"+ z", b"- - w", b"b"]);
    // perishable cannot go to protocol 29 from a sender
    let mut l = list_of(&["-p x"]);
    let e = send_filter_list(&mut l, &xo(29, true)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter rules are too modern for remote rsync."
    );
    assert_eq!(e.exit_code(), 2);
    // a sender-side rule elided and a modern one for protocol 28 → error
    let mut l = list_of(&[": .x"]);
    assert!(send_filter_list(&mut l, &xo(28, true)).is_err());
}

#[test]
fn stock_client_receiver_encodings() {
    assert_eq!(
        sent(&["P keep", "H hid", "S sh", "R rk", "- x/"], xo(32, false)),
        ["-s hid", "+s sh", "- x/"]
    );
    assert_eq!(
        sent(
            &["-x user.*", "exclude,sp foo", "include_bar"],
            xo(32, false)
        ),
        ["-x user.*", "-sp foo", "+ bar"]
    );
    // --delete-excluded seen before the rules: they are parsed sender-side
    let mut l = FilterList::new(ParseOptions {
        delete_excluded: true,
        ..ParseOptions::default()
    });
    l.add_exclude(b"a").unwrap();
    l.add_filter(b"P b", &mut no_files).unwrap();
    let x = XferOptions {
        delete_excluded: true,
        ..xo(32, false)
    };
    let b = send_filter_list(&mut l, &x).unwrap().unwrap();
    assert_eq!(decode_rules(&mut b.as_slice()).unwrap(), [b"-s a".to_vec()]);
    // ... seen after them: sent as plain, still matched sender-side only
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"a").unwrap();
    l.add_filter(b":- .f", &mut no_files).unwrap();
    let b = send_filter_list(&mut l, &x).unwrap().unwrap();
    assert_eq!(
        decode_rules(&mut b.as_slice()).unwrap(),
        [b"- a".to_vec(), b":- .f".to_vec()]
    );
    assert!(!l.is_excluded(b"a", false, Side::Receiver));
    assert!(l.is_excluded(b"a", false, Side::Sender));
    // client sender with --delete-excluded: plain rules stay home
    let mut l = FilterList::new(ParseOptions::default());
    l.add_exclude(b"a").unwrap();
    let x = XferOptions {
        delete_excluded: true,
        ..xo(32, true)
    };
    let b = send_filter_list(&mut l, &x).unwrap().unwrap();
    assert_eq!(b, [0, 0, 0, 0]);
}

#[test]
fn cvs_exclude_on_the_wire() {
    let x = XferOptions {
        cvs_exclude: true,
        ..xo(32, true)
    };
    let r = sent(&[], x);
    assert_eq!(r.len(), 37);
    assert_eq!(r[0], ":C .cvsignore");
    assert_eq!(r[1], "-p RCS");
    assert_eq!(r[36], "-p .bzr/");
    let x = XferOptions {
        cvs_exclude: true,
        ..xo(29, true)
    };
    let r = sent(&[], x);
    assert_eq!(
        (r[0].as_str(), r[1].as_str(), r.len()),
        (":C .cvsignore", "- RCS", 37)
    );
    let x = XferOptions {
        cvs_exclude: true,
        ..xo(28, true)
    };
    let r = sent(&[], x);
    assert_eq!(
        (r[0].as_str(), r[35].as_str(), r.len()),
        ("RCS", ".bzr/", 36)
    );
    // a client receiver sends none of it, but applies it itself
    let x = XferOptions {
        cvs_exclude: true,
        ..xo(32, false)
    };
    let mut l = list_of(&["- z"]);
    let b = send_filter_list(&mut l, &x).unwrap().unwrap();
    assert_eq!(decode_rules(&mut b.as_slice()).unwrap(), [b"- z".to_vec()]);
    assert!(l.is_excluded(b"foo.o", false, Side::Receiver));
    // a server sender adds the CVS rules itself
    let mut srv = FilterList::new(ParseOptions::default());
    let x = XferOptions {
        cvs_exclude: true,
        ..xo(31, true)
    };
    recv_filter_list(&mut &b"\0\0\0\0"[..], &mut srv, &x, &mut no_files).unwrap();
    assert_eq!(texts(&srv), [":C .cvsignore", "-C "]);
    assert!(srv.is_excluded(b"x/foo.o", false, Side::Sender));
}

#[test]
fn server_receives_old_prefixes() {
    let bytes = encode_raw(&[
        b"- a".to_vec(),
        b"+ b".to_vec(),
        b"P c".to_vec(),
        b"!".to_vec(),
        b"d".to_vec(),
    ]);
    let mut srv = FilterList::new(ParseOptions::default());
    recv_filter_list(
        &mut bytes.as_slice(),
        &mut srv,
        &xo(28, false),
        &mut no_files,
    )
    .unwrap();
    assert_eq!(texts(&srv), ["- d"]);
    let bytes = encode_raw(&[b"- a".to_vec(), b"P c".to_vec()]);
    let mut srv = FilterList::new(ParseOptions::default());
    recv_filter_list(
        &mut bytes.as_slice(),
        &mut srv,
        &xo(28, false),
        &mut no_files,
    )
    .unwrap();
    assert_eq!(texts(&srv), ["- a", "- P c"]);
    // a modern rule that does not parse is a syntax error
    let bytes = encode_raw(&[b"bogus".to_vec()]);
    let mut srv = FilterList::new(ParseOptions::default());
    let e = recv_filter_list(
        &mut bytes.as_slice(),
        &mut srv,
        &xo(30, false),
        &mut no_files,
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    // not read at all when the server is a receiver that does not want it
    let x = XferOptions {
        delete_mode: false,
        ..xo(30, false)
    };
    let mut srv = FilterList::new(ParseOptions::default());
    recv_filter_list(&mut &b""[..], &mut srv, &x, &mut no_files).unwrap();
}

#[test]
fn decode_bounds() {
    let mut b = Vec::new();
    b.extend_from_slice(&5120u32.to_le_bytes());
    assert!(matches!(
        decode_rules(&mut b.as_slice()),
        Err(FilterError::RuleTooLong(5120))
    ));
    let mut b = Vec::new();
    b.extend_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(
        decode_rules(&mut b.as_slice()),
        Err(FilterError::RuleTooLong(_))
    ));
    let b = encode_raw(&[b"- x".to_vec()]);
    assert!(matches!(
        decode_rules(&mut &b[..b.len() - 2]),
        Err(FilterError::Io(_))
    ));
    let mut b = Vec::new();
    b.extend_from_slice(&5119u32.to_le_bytes());
    b.extend(std::iter::repeat_n(b'a', 5119));
    b.extend_from_slice(&[0; 4]);
    assert_eq!(decode_rules(&mut b.as_slice()).unwrap().len(), 1);
    // the rule count is bounded
    let one = encode_raw(&[b"- x".to_vec()]);
    let mut many = Vec::new();
    for _ in 0..=wire::MAX_WIRE_RULES {
        many.extend_from_slice(&one[..one.len() - 4]);
    }
    many.extend_from_slice(&[0; 4]);
    assert!(matches!(
        decode_rules(&mut many.as_slice()),
        Err(FilterError::TooManyRules(_))
    ));
}

// ---------- daemon ----------

#[test]
fn daemon_lists() {
    let files = Fs::new(&[("/etc/ex", "secret/\n+ pub\n*.key\n")]);
    let mut rd = files.reader();
    let cfg = DaemonFilterConfig {
        filter: Some(b"- *.bak + keep.bak"),
        exclude: Some(b"a/b + c  d/"),
        exclude_from: Some(b"/etc/ex"),
        include: Some(b"inc"),
        ..DaemonFilterConfig::default()
    };
    let l = daemon_filter_list(&cfg, &ParseOptions::default(), &mut rd).unwrap();
    assert_eq!(
        texts(&l),
        [
            "- *.bak",
            "+ keep.bak",
            "+ inc",
            "- secret/***",
            "+ pub",
            "- *.key",
            "-/ a/b",
            "+ c",
            "- d/***"
        ]
    );
    for s in [Side::Sender, Side::Receiver] {
        assert!(l.is_excluded(b"x.bak", false, s));
        assert!(l.is_excluded(b"secret", true, s));
        assert!(l.is_excluded(b"secret/x/y", false, s));
        assert!(l.is_excluded(b"q/secret/x", false, s));
        assert!(!l.is_excluded(b"secret", false, s));
        assert!(l.is_excluded(b"a/b", false, s));
        assert!(l.is_excluded(b"d", true, s));
        assert!(!l.is_excluded(b"c.key", false, s) || l.check(b"c.key", false, s) == EX);
    }
    // missing exclude-from file is fatal; hide rules are dropped, protect
    // rules apply both ways
    let cfg = DaemonFilterConfig {
        exclude_from: Some(b"/nope"),
        ..DaemonFilterConfig::default()
    };
    assert!(daemon_filter_list(&cfg, &ParseOptions::default(), &mut no_files).is_err());
    let cfg = DaemonFilterConfig {
        filter: Some(b"H h P p"),
        ..DaemonFilterConfig::default()
    };
    let l = daemon_filter_list(&cfg, &ParseOptions::default(), &mut no_files).unwrap();
    assert_eq!(texts(&l), ["-r p"]);
    assert!(l.is_excluded(b"p", false, Side::Sender));
}

// ---------- round trips ----------

fn arb_rule() -> impl Strategy<Value = (bool, Vec<u8>, Vec<u8>)> {
    let mods = prop::sample::subsequence(vec![b'/', b'!', b'x', b's', b'p'], 0..=5);
    let pat = prop::collection::vec(prop::num::u8::ANY.prop_filter("no NUL", |&c| c != 0), 1..40);
    (any::<bool>(), mods, pat)
}

proptest! {
    #![proptest_config(crate::testing::proptest_config())]
    #[test]
    fn raw_codec_round_trip(rules in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 0..20)) {
        let b = encode_raw(&rules);
        prop_assert_eq!(decode_rules(&mut b.as_slice()).unwrap(), rules);
    }

    #[test]
    fn wire_round_trip(rules in prop::collection::vec(arb_rule(), 0..12), proto in 30u32..=32) {
        // what a client receiver sends, a server parses into the same rules
        let mut wire = Vec::new();
        for (inc, mods, pat) in &rules {
            let mut r = vec![if *inc { b'+' } else { b'-' }];
            r.extend_from_slice(mods);
            r.push(b' ');
            r.extend_from_slice(pat);
            wire.push(r);
        }
        let bytes = encode_raw(&wire);
        let mut srv = FilterList::new(ParseOptions::default());
        recv_filter_list(&mut bytes.as_slice(), &mut srv, &xo(proto, true), &mut no_files).unwrap();
        prop_assert_eq!(srv.rules().len(), rules.len());
        let again = encode_rules(&mut srv, &xo(proto, false)).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn wildmatch_never_panics(p in prop::collection::vec(any::<u8>(), 0..30), t in prop::collection::vec(any::<u8>(), 0..30)) {
        let _ = wildmatch::wildmatch(&p, &t);
        let _ = wildmatch::wildmatch_at(&p, &t, -1);
        let _ = wildmatch::wildmatch_at(&p, &t, 3);
    }

    #[test]
    fn parse_never_panics(s in prop::collection::vec(any::<u8>(), 0..60)) {
        let mut l = FilterList::new(ParseOptions::default());
        let _ = l.add_filter(&s, &mut |_: &[u8]| Some(s.clone()));
        let _ = l.add_wire_rule(&s, 28, &mut no_files);
        let _ = l.check(b"a/b/c", true, Side::Sender);
    }
}
