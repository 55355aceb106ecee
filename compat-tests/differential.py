#!/usr/bin/env python3
"""Randomized differential runs (a development tool, not part of CI).

Random source trees (files, dirs, symlinks, hard links, fifos, odd names),
random destination pre-states (partial, edited, extra files, type
conflicts) and random option sets, each transfer run once by stock rsync
and once with rrsync in one seat, then exit codes, stdout, stderr (paths
and versions normalised; line order alone is ignored, being a race in
stock too) and the resulting trees compared.

    python3 compat-tests/differential.py SEATS FIRST_SEED COUNT
    e.g. python3 compat-tests/differential.py local,push-daemon 0 50
    V=1 ... shows each difference in full; XATTRS=1 adds -X to every case.

Seats: local, pull-daemon, push-daemon (stock client, our daemon),
client-pull, client-push (our client, stock daemon), server-push,
server-pull (stock client, our --server), rsh-pull, rsh-push (our client,
stock --server). It starts a stock and an rrsync daemon on free loopback
ports and stops them on exit. OURS=path picks the binary (default
target/release/rrsync); WORK=dir the scratch directory (default
/dev/shm/rrsync-differential).
Known differences that are stock's own: seed 116 (stock: "Hlink node
data ... already has path", exit 13), 438 (stock hangs with
--list-only -aH --copy-unsafe-links); -P transfer rates vary by timing.
Stock races (which message arrives first decides): a stock client pulling
from a stock daemon sometimes adds "[Receiver] read error: Connection reset
by peer" after an exit-23 run (seeds 1026, 1030, 1200, 1233 in the pull
seats); "received SIGUSR1 (code 19)" from the other stock process after a
protocol error (seed 1319, --fuzzy at --protocol=27); a stock client's
"receiving file list ... " line is or is not broken before a sender's
error (files-from pulls from our server). Seed 1719 (local: -rlpt --delete
--backup-dir=bk inside the destination, --copy-unsafe-links): stock loops
backing bk up into bk/bk/... until the timeout, and the directory tree it
leaves is too deep for this tool's os.walk; in the daemon seats only the
mtimes of directories emptied by the run differ (timing).
Not implemented yet (differences expected): %c in --out-format (1505);
--debug=filter2's "pushing/popping local filters" lines (2042, 2153);
local copies at --protocol=28: with --out-format and -v (no -i) ours
names "src/" (2119), and an option error is printed by one process, where
stock's forked pair prints it twice (2171). With --remove-source-files
the source directories' mtimes are those of the removals (2165: timing).
Since session 11 -s, --chown, --usermap/--groupmap, --info=skip and
--debug=filter are in OPTS. Seeds 2200-2309 (session 12) found the
make-room order fix (2212), -s's "protected args:" line (2259) and -R
-d with "dir/" (2276); 2273 (--protocol=28 local, an error printed once)
is the 2171 quirk, 2309 the --debug=filter2 lines; the rest were the
stock races above. Seeds 2310-2349 (session 13): 2341 (a server's
SIGUSR1 line after its client failed, fixed); 2344 is the "receiving file
list" race above. Session 14 added random extended attributes to the
-X cases (XATTRS=1 adds -X to every case); seeds 3000-3049 with XATTRS=1
found a directory's request by its list's index (3030), %f of an empty
directory (3042), the make-room "backed up" line and the --info words a
client forwards (3047), all fixed; 3018 (-X at --protocol=28: which
stock process reports first is a race in the pull seats), 3037 (the
--remove-source-files timing above) and 3039 (the reset race above) are
not ours.
"""
import atexit, os, random, shutil, socket, subprocess, sys, stat, hashlib, re, time

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = os.environ.get("OURS", os.path.join(HERE, "..", "target", "release", "rrsync"))
STOCK = "rsync"
WORK = os.environ.get("WORK", "/dev/shm/rrsync-differential")
BASE = os.path.join(WORK, "run")
RSH = os.path.join(WORK, "rsh")


# The directories above the run's (the -R cases with absolute paths copy them).
ANCESTORS = set()
_p = BASE.strip("/")
while _p:
    ANCESTORS.add(_p)
    ANCESTORS.add(_p + "/X")
    _p = os.path.dirname(_p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STOCK_PORT, OURS_PORT = free_port(), free_port()

NAMES = ["a", "b", "c.txt", "d d", "-lead", "é", "x\udcff", ".hid", "z.o", "core", "n1", "n2", "tmp~", "sub", "k.bak"]


def rname(r):
    n = r.choice(NAMES)
    if r.random() < 0.3:
        n += str(r.randint(0, 9))
    return n


def mkfile(r, p, size=None):
    if size is None:
        size = r.choice([0, 1, 10, 100, 700, 4096, 5000, 70000, 300000])
    with open(p, "wb") as f:
        f.write(r.randbytes(size))
    os.chmod(p, r.choice([0o644, 0o600, 0o755, 0o444, 0o664, 0o640]))
    t = r.randint(1_000_000_000, 1_700_000_000)
    os.utime(p, ns=(t * 10**9, t * 10**9 + r.randint(0, 999_999_999)))


def gen_tree(r, root, depth=0, files=None):
    os.makedirs(root, exist_ok=True)
    if files is None:
        files = []
    for _ in range(r.randint(0, 6 if depth < 3 else 2)):
        n = rname(r)
        p = os.path.join(root, n)
        if os.path.lexists(p):
            continue
        k = r.random()
        if k < 0.55:
            mkfile(r, p)
            files.append(p)
        elif k < 0.75 and depth < 4:
            gen_tree(r, p, depth + 1, files)
        elif k < 0.87:
            tgt = r.choice(["a", "../a", "/etc/hostname", "nowhere", "sub/c.txt", "../../..", "."])
            os.symlink(tgt, p)
        elif k < 0.95 and files:
            try:
                os.link(r.choice(files), p)
            except OSError:
                pass
        else:
            os.mkfifo(p)
    t = r.randint(1_000_000_000, 1_700_000_000)
    os.chmod(root, r.choice([0o755, 0o700, 0o775, 0o750]))
    os.utime(root, ns=(t * 10**9, t * 10**9))
    return files


def mutate_dest(r, src, dst):
    """A destination that is a partial, modified copy of src with extras."""
    subprocess.run([STOCK, "-aH", src + "/", dst], capture_output=True)
    for dp, dns, fns in os.walk(dst):
        for fn in list(fns) + list(dns):
            p = os.path.join(dp, fn)
            k = r.random()
            try:
                if k < 0.15:
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p)
                    else:
                        os.unlink(p)
                elif k < 0.25 and os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "r+b") as f:
                        f.seek(r.randint(0, max(0, os.path.getsize(p) - 1)))
                        f.write(r.randbytes(r.randint(1, 50)))
                    if r.random() < 0.5:
                        os.utime(p, (1234567890, 1234567890))
                elif k < 0.3 and os.path.isfile(p) and not os.path.islink(p):
                    os.chmod(p, 0o600)
                elif k < 0.35 and not os.path.isdir(p):
                    os.unlink(p)
                    os.makedirs(os.path.join(p, "inner"))
                elif k < 0.4 and os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                    with open(p, "w") as f:
                        f.write("was a dir")
                elif k < 0.45:
                    q = os.path.join(p, "extra.o") if os.path.isdir(p) and not os.path.islink(p) else p + ".extra"
                    with open(q, "w") as f:
                        f.write("extra")
            except OSError:
                pass


OPTS = [
    ["-a"], ["-a"], ["-a"], ["-r"], ["-rl"], ["-rt"], ["-rlpt"], ["-aH"], ["-a", "--delete"], ["-a", "--delete-after"],
    ["-a", "--delete-delay"], ["-a", "--delete-before"], ["-a", "--delete", "--delete-excluded"],
    ["-c"], ["-u"], ["-I"], ["--size-only"], ["--existing"], ["--ignore-existing"], ["-W"],
    ["--inplace"], ["--append"], ["-b"], ["--backup-dir=bk"], ["-m"], ["-x"], ["-L"], ["-k"], ["-K"],
    ["--copy-unsafe-links"], ["--safe-links"], ["-O"], ["-J"], ["-D"], ["-n"], ["--max-size=5k"],
    ["--min-size=100"], ["--chmod=F600,D700"], ["-z"], ["--exclude=*.o"], ["--exclude=sub/"],
    ["--include=*/", "--include=*.txt", "--exclude=*"], ["-C"], ["--numeric-ids"], ["-R"],
    ["--delay-updates"], ["--partial-dir=.p"], ["-H"], ["--force"], ["--max-delete=1"],
    ["--remove-source-files"], ["--list-only"], ["-d"], ["--no-implied-dirs", "-R"], ["-F"],
    ["--del"], ["-S"], ["--preallocate"], ["--checksum-choice=md5"], ["--compress-choice=zlib", "-z"],
    ["-i"], ["-v"], ["-vv"], ["-ii"], ["--stats"], ["--out-format=%i %n%L %l"], ["-q"], ["--no-inc-recursive"],
    ["-o", "-g"], ["-E"], ["--ignore-errors"], ["--ignore-times"], ["--modify-window=1"], ["-8"],
    ["--protocol=29"], ["--protocol=30"], ["--protocol=31"], ["--protocol=28"], ["--link-dest=../pre"],
    ["--compare-dest=../pre"], ["--copy-dest=../pre"], ["--partial"], ["--ignore-missing-args"],
    ["--delete-missing-args"], ["-f", "- *.txt"], ["-f", "+ */", "-f", "- *"], ["-f", ": .rules"],
    ["--omit-link-times"], ["--copy-dirlinks"], ["--keep-dirlinks"], ["-P"], ["--info=skip2"],
    ["--out-format=%n %i %l %b %f %o"], ["--size-only", "-c"], ["-bu"], ["--suffix=.old", "-b"],
    ["--exclude=*/", "-r"], ["--prune-empty-dirs", "-r"], ["--whole-file", "--no-whole-file"],
    ["--existing", "--ignore-existing"], ["--max-delete=0", "--delete", "-r"], ["-W", "-z"],
    ["-y"], ["-yy", "--copy-dest=../pre"], ["-y", "--delete-delay"], ["--inplace", "-b"],
    ["--append-verify"], ["--protocol=27"], ["--no-W"], ["-b", "--delete"], ["--block-size=700"],
    ["--checksum-seed=5"], ["--mkpath"], ["--old-args"], ["--exclude-from=../list"], ["--files-from=../list"],
    ["--from0", "--files-from=../list0"], ["--include-from=../list", "--exclude=*"],
    ["--min-size=10", "--max-size=1k"], ["--max-size=0"], ["--info=name2,del"], ["--debug=del"],
    ["--log-file=../log"], ["--info=flist2"], ["--info=backup,copy,misc2,mount,nonreg,remove,symsafe"],
    ["--debug=filter2"], ["--info=skip,stats2"], ["--ignore-non-existing", "--size-only"],
    ["--trust-sender"], ["--inplace", "--protocol=28", "-b"], ["-c", "--checksum-choice=xxh64"],
    ["--fuzzy", "--delete-after"], ["--delete", "--backup-dir=bk"],
    ["-s"], ["--chown=daemon:bin"], ["--usermap=0-99:bin,*:daemon", "--groupmap=*:sys"],
    ["--info=skip2", "--ignore-existing"], ["-u", "--info=skip"], ["--max-size=5k", "--info=skip"],
    ["--debug=filter", "--exclude=*.txt"], ["--debug=filter", "--delete", "--exclude=a"],
    ["-X"], ["-aX"], ["-aXH"], ["-X", "-f", "-x user.k*"], ["-XX"], ["-aX", "--delete"],
]

XNAMES = ["user.a", "user.b", "user.k1", "user.long", "user.big", "trusted.t"]
XVALS = [b"", b"s", b"short value", b"L" * 40, b"M" * 100]


def add_xattrs(r3, root, dest=False):
    """Random extended attributes on files and dirs (their own generator,
    so that trees and options stay those of the seed without them)."""
    for dp, dns, fns in os.walk(root):
        for fn in [""] + dns + fns:
            p = os.path.join(dp, fn) if fn else dp
            if os.path.islink(p) or not (os.path.isfile(p) or os.path.isdir(p)):
                continue
            if r3.random() > (0.5 if dest else 0.4):
                continue
            for _ in range(r3.randint(1, 3)):
                n = r3.choice(XNAMES)
                v = r3.choice(XVALS) if r3.random() < 0.8 else r3.randbytes(r3.randint(33, 300))
                try:
                    if dest and r3.random() < 0.3:
                        os.removexattr(p, n, follow_symlinks=False)
                    else:
                        os.setxattr(p, n, v, follow_symlinks=False)
                except OSError:
                    pass


def pick_opts(r):
    o = []
    for _ in range(r.randint(1, 4)):
        o += r.choice(OPTS)
    if r.random() < 0.7:
        o.append(r.choice(["-i", "-v", "-iv"]))
    v = sum(x.count("v") for x in o if x.startswith("-") and not x.startswith("--"))
    while v > 2:
        for i, x in enumerate(o):
            if x in ("-v", "-vv", "-iv"):
                del o[i]
                break
        v = sum(x.count("v") for x in o if x.startswith("-") and not x.startswith("--"))
    return o


def snapshot(root, opts):
    """Type, mode, mtime, content, link target, owners, hardlink groups."""
    out = {}
    inodes = {}
    t = any(x in opts for x in ("-t", "-a", "-rt", "-rlpt", "-aH"))
    if not os.path.lexists(root):
        return None
    for dp, dns, fns in os.walk(root):
        for fn in sorted(dns + fns):
            p = os.path.join(dp, fn)
            rel = re.sub(r"run/[so](/|$)", r"run/X\1", os.path.relpath(p, root))
            st = os.lstat(p)
            m = st.st_mode
            e = [stat.S_IFMT(m), stat.S_IMODE(m), st.st_uid, st.st_gid]
            if stat.S_ISREG(m):
                with open(p, "rb") as f:
                    e.append(hashlib.md5(f.read()).hexdigest())
                e.append(st.st_mtime_ns if t else None)
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(m):
                e.append(os.readlink(p))
                e[1] = 0
            elif stat.S_ISDIR(m):
                # -b without --backup-dir implies -O (upstream).
                backup = any(x in opts for x in ("-b", "-bu", "--backup")) and not any(
                    x.startswith("--backup-dir") for x in opts)
                if "-O" not in opts and not backup:
                    e.append(st.st_mtime_ns if t else None)
            if not stat.S_ISLNK(m):
                try:
                    e.append(sorted((n, os.getxattr(p, n, follow_symlinks=False))
                                    for n in os.listxattr(p, follow_symlinks=False)
                                    if n.startswith(("user.", "trusted."))))
                except OSError:
                    pass
            if rel not in ANCESTORS:
                out[rel] = e
    groups = sorted(sorted(g) for g in inodes.values())
    return out, groups


def run(cmd, cwd, timeout=60):
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return "TIMEOUT", b"", b""


def norm(b, side):
    b = b.replace(b"/run/" + side.encode() + b"/", b"/run/X/")
    b = b.replace(side.encode() + b"src", b"Xsrc").replace(side.encode() + b"dst", b"Xdst")
    b = b.replace(str(OURS_PORT).encode(), str(STOCK_PORT).encode())
    # -vv's "opening connection using: ... --rsync-path's program --server".
    b = b.replace(os.fsencode(OURS) + b" --server", STOCK.encode() + b" --server")
    lines = []
    for l in b.split(b"\n"):
        if re.match(rb"^(sent |total size|total: |Total bytes|Literal data|Matched data|File list|Total file size|Total transferred)", l):
            continue
        l = re.sub(rb"at [a-z./0-9_]+\(\d+\)", b"at X", l)
        l = re.sub(rb"\[(\w+)=[^\]]+\]", rb"[\1=V]", l)
        lines.append(l)
    return b"\n".join(lines)


def case(seed, transport):
    r = random.Random(seed)
    shutil.rmtree(BASE, ignore_errors=True)
    os.makedirs(BASE)
    src = os.path.join(BASE, "src")
    gen_tree(r, src)
    pre = os.path.join(BASE, "pre")
    os.makedirs(pre)
    if r.random() < 0.7:
        mutate_dest(r, src, pre)
    opts = pick_opts(r)
    if os.environ.get("XATTRS") and "-X" not in opts:
        opts.append("-X")
    if any(o.startswith("-") and not o.startswith("--") and "X" in o for o in opts):
        r3 = random.Random(seed * 104729 + 3)
        add_xattrs(r3, src)
        add_xattrs(r3, pre, dest=True)
    trailing = r.random() < 0.8
    # The list files (--files-from, --exclude-from, ...), from their own
    # generator so that older seeds keep their trees and options.
    r2 = random.Random(seed * 7919 + 1)
    rels = sorted(os.path.relpath(os.path.join(dp, n), src)
                  for dp, dns, fns in os.walk(src) for n in dns + fns)
    names = r2.sample(rels, min(len(rels), r2.randint(0, 5))) + [r2.choice(["nowhere", "sub", "*.txt", "a"])]
    with open(os.path.join(BASE, "list"), "wb") as f:
        f.write(b"".join(os.fsencode(n) + b"\n" for n in names))
    with open(os.path.join(BASE, "list0"), "wb") as f:
        f.write(b"".join(os.fsencode(n) + b"\0" for n in names))
    res = {}
    for side in ("s", "o"):
        d = os.path.join(BASE, side)
        os.makedirs(d)
        subprocess.run(["cp", "-a", src, os.path.join(d, "src")])
        subprocess.run(["cp", "-a", pre, os.path.join(d, "dst")])
        s = "src/" if trailing else "src"
        me = STOCK if side == "s" else OURS
        port = STOCK_PORT if side == "s" else OURS_PORT
        m = side
        if transport == "local":
            cmd = [me] + opts + [s, "dst/"]
        elif transport == "pull-daemon":  # stock client, daemon differs
            cmd = [STOCK] + opts + [f"rsync://127.0.0.1:{port}/{m}src/", "dst/"]
        elif transport == "push-daemon":
            cmd = [STOCK] + opts + [s, f"rsync://127.0.0.1:{port}/{m}dst/"]
        elif transport == "client-pull":  # client differs, stock daemon
            cmd = [me] + opts + [f"rsync://127.0.0.1:{STOCK_PORT}/{m}src/", "dst/"]
        elif transport == "client-push":
            cmd = [me] + opts + [s, f"rsync://127.0.0.1:{STOCK_PORT}/{m}dst/"]
        elif transport == "server-push":  # stock client, server differs
            cmd = [STOCK, "-e", RSH, f"--rsync-path={me}"] + opts + [s, "lh:" + d + "/dst/"]
        elif transport == "server-pull":
            cmd = [STOCK, "-e", RSH, f"--rsync-path={me}"] + opts + ["lh:" + d + "/" + s, "dst/"]
        elif transport == "rsh-pull":  # client differs, stock server
            cmd = [me, "-e", RSH, f"--rsync-path={STOCK}"] + opts + ["lh:" + d + "/" + s, "dst/"]
        elif transport == "rsh-push":
            cmd = [me, "-e", RSH, f"--rsync-path={STOCK}"] + opts + [s, "lh:" + d + "/dst/"]
        rc, so, se = run(cmd, d)
        res[side] = (rc, norm(so, side), norm(se, side),
                     snapshot(os.path.join(d, "dst"), opts), snapshot(os.path.join(d, "src"), opts), cmd)
    diffs = []
    s, o = res["s"], res["o"]
    if s[0] != o[0]:
        diffs.append(f"exit {s[0]} vs {o[0]}")
    for i, n in ((1, "stdout"), (2, "stderr"), (3, "tree"), (4, "srctree")):
        if s[i] != o[i]:
            if i in (1, 2) and sorted(s[i].split(b"\n")) == sorted(o[i].split(b"\n")):
                if os.environ.get("ORDER"):
                    diffs.append(n + "-order")
                continue
            diffs.append(n)
    return diffs, opts, res


def show(res):
    s, o = res["s"], res["o"]
    print("  cmd:", " ".join(map(str, o[5])))
    for i, n in ((1, "stdout"), (2, "stderr")):
        if s[i] != o[i]:
            print(f"  --- stock {n}:\n" + s[i].decode(errors="replace"))
            print(f"  --- ours {n}:\n" + o[i].decode(errors="replace"))
    for i, n in ((3, "tree"), (4, "srctree")):
        if s[i] != o[i]:
            if s[i] is None or o[i] is None:
                print(f"  {n}: stock={s[i] is not None} ours={o[i] is not None}")
                continue
            a, b = s[i][0], o[i][0]
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    print(f"  {n} {k}: stock={a.get(k)} ours={b.get(k)}")
            if s[i][1] != o[i][1]:
                print(f"  {n} links stock={s[i][1]} ours={o[i][1]}")


def start_daemons():
    os.makedirs(WORK, exist_ok=True)
    with open(RSH, "w") as f:
        f.write("#!/bin/sh\nshift\nexec \"$@\"\n")
    os.chmod(RSH, 0o755)
    conf = os.path.join(WORK, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write("use chroot = no\nuid = root\ngid = root\nread only = no\n")
        for side in ("s", "o"):
            for what in ("src", "dst"):
                f.write(f"[{side}{what}]\n    path = {BASE}/{side}/{what}\n")
    procs = [
        subprocess.Popen([STOCK, "--daemon", "--no-detach", f"--config={conf}",
                          f"--port={STOCK_PORT}", "--address=127.0.0.1"]),
        subprocess.Popen([OURS, "--daemon", "--no-detach", f"--config={conf}",
                          f"--port={OURS_PORT}", "--address=127.0.0.1"]),
    ]

    def stop():
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(WORK, ignore_errors=True)

    atexit.register(stop)
    time.sleep(0.5)


def main():
    start_daemons()
    transports = sys.argv[1].split(",")
    start, count = int(sys.argv[2]), int(sys.argv[3])
    bad = 0
    for seed in range(start, start + count):
        for t in transports:
            diffs, opts, res = case(seed, t)
            if diffs:
                bad += 1
                print(f"seed={seed} {t} {opts}: {diffs}", flush=True)
                if os.environ.get("V"):
                    show(res)
    print(f"done: {bad} differing", flush=True)


if __name__ == "__main__":
    main()
