#!/usr/bin/env bash
# Many clients at once (issue 5): N stock clients pull a 2,000-file tree at
# the same moment from a stock rsyncd and from an rrsync daemon (same
# config, tmpfs), in interleaved rounds. Reports medians of the total wall
# time (first start to last exit), the daemons' CPU time (user+sys of all
# per-connection processes) and their summed peak memory: the peak over
# time of the sum of RSS over the listener and every per-connection
# process, and the same for PSS (shared pages split between the processes
# that map them, so a forked and an exec'd server compare fairly).
#
#   benches/concurrent.sh [rounds] [clients...]    (default: 3 rounds, 32 200)
#
# Everything it starts is killed by PID on exit.
set -euo pipefail
ROUNDS=${1:-3}; shift || true
COUNTS=("$@"); [ ${#COUNTS[@]} -gt 0 ] || COUNTS=(32 200)
. "$(dirname "$0")/common.sh"
bench_init conc

python3 - "$ROOT" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(5)
for d in range(40):
    dd = os.path.join(root, "tree", f"d{d:02}")
    os.makedirs(dd)
    for f in range(50):
        with open(os.path.join(dd, f"f{f:02}.txt"), "wb") as fh:
            fh.write(r.randbytes(r.randint(0, 8192)))
PY
cat > "$ROOT/rsyncd.conf" <<CONF
use chroot = no
uid = root
gid = root
max connections = 0
[tree]
    path = $ROOT/tree
CONF
P_STOCK=$(port); P_OURS=$(port)
rsync --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_STOCK" --address=127.0.0.1 & PIDS+=($!)
"$BIN" --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_OURS" --address=127.0.0.1 & PIDS+=($!)
sleep 1

python3 - "$ROOT" "$ROUNDS" "${PIDS[0]}" "$P_STOCK" "${PIDS[1]}" "$P_OURS" "${COUNTS[@]}" <<'PY'
import os, subprocess, sys, threading, time, statistics, shutil
root, rounds = sys.argv[1], int(sys.argv[2])
sides = {"stock": (int(sys.argv[3]), sys.argv[4]), "ours": (int(sys.argv[5]), sys.argv[6])}
counts = [int(c) for c in sys.argv[7:]]
TICK = os.sysconf("SC_CLK_TCK")

def children_map():
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(p))
    return kids

def tree(pid):
    kids, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out

def mem(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss

def child_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[14]) + int(v[15])) / TICK  # cutime + cstime

def run(side, n):
    pid, port = sides[side]
    dests = [os.path.join(root, f"dst-{side}-{i}") for i in range(n)]
    for d in dests:
        shutil.rmtree(d, ignore_errors=True)
    peak = [0, 0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            rss = pss = 0
            for p in tree(pid):
                r, s = mem(p)
                rss += r; pss += s
            peak[0] = max(peak[0], rss); peak[1] = max(peak[1], pss)
            time.sleep(0.02)
    th = threading.Thread(target=sample); th.start()
    cpu0 = child_cpu(pid)
    t0 = time.monotonic()
    procs = [subprocess.Popen(["rsync", "-a", f"rsync://127.0.0.1:{port}/tree/", d + "/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for d in dests]
    fails = 0
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            fails += 1
            sys.stderr.write(f"{side}: client failed ({p.returncode}): {err.decode()[:200]}\n")
    wall = time.monotonic() - t0
    time.sleep(0.3)  # let the sessions be reaped before reading child CPU
    stop.set(); th.join()
    cpu = child_cpu(pid) - cpu0
    for d in dests:
        shutil.rmtree(d, ignore_errors=True)
    return wall, cpu, peak[0], peak[1], fails

res = {}
for n in counts:
    for r in range(rounds):
        order = ["stock", "ours"] if r % 2 == 0 else ["ours", "stock"]
        for side in order:
            res.setdefault((n, side), []).append(run(side, n))
print(f"{'clients':>7} {'stock_wall':>10} {'ours_wall':>9} {'ratio':>6} {'stock_cpu':>9} {'ours_cpu':>8} {'ratio':>6} "
      f"{'stock_rssMiB':>12} {'ours_rssMiB':>11} {'ratio':>6} {'stock_pssMiB':>12} {'ours_pssMiB':>11} {'ratio':>6} fails")
for n in counts:
    med = {}
    for side in ("stock", "ours"):
        rows = res[(n, side)]
        med[side] = [statistics.median(r[i] for r in rows) for i in range(4)] + [sum(r[4] for r in rows)]
    s, o = med["stock"], med["ours"]
    print(f"{n:>7} {s[0]:>10.2f} {o[0]:>9.2f} {o[0]/s[0]:>6.2f} {s[1]:>9.2f} {o[1]:>8.2f} {o[1]/max(s[1],1e-9):>6.2f} "
          f"{s[2]/1024:>12.1f} {o[2]/1024:>11.1f} {o[2]/s[2]:>6.2f} {s[3]/1024:>12.1f} {o[3]/1024:>11.1f} {o[3]/s[3]:>6.2f} {s[4]}/{o[4]}")
PY
