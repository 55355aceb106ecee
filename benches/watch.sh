#!/usr/bin/env bash
# Watch benchmark (issue 6): `rrsync push --watch` side by side with lsyncd
# (Debian's lsyncd, default.rsync, delay = 0), each keeping one stock rsync
# daemon target in sync from its own source dir on tmpfs.
#   latency: a small file is written (write + close); time until it is
#            complete at the target; N samples, p50 and p95.
#   burst:   10,000 new files; time from the last write until all are at
#            the target; CPU of the watcher and its children meanwhile.
#
#   benches/watch.sh [samples]        (default 40)
set -euo pipefail
SAMPLES=${1:-40}
. "$(dirname "$0")/common.sh"
bench_init wbench
command -v lsyncd >/dev/null || { echo "installing lsyncd"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lsyncd >/dev/null; }

for side in ours lsyncd; do
  mkdir -p "$ROOT/$side/src" "$ROOT/$side/dst"
  cat > "$ROOT/$side/rsyncd.conf" <<CONF
use chroot = no
uid = root
gid = root
[t]
    path = $ROOT/$side/dst
    read only = no
CONF
  p=$(port)
  rsync --daemon --no-detach --config="$ROOT/$side/rsyncd.conf" --port="$p" --address=127.0.0.1 & PIDS+=($!)
  echo "$p" > "$ROOT/$side/port"
done
sleep 0.5
"$BIN" push --watch -a --delete "$ROOT/ours/src/" "rsync://127.0.0.1:$(cat "$ROOT/ours/port")/t/" >/dev/null 2>"$ROOT/ours.log" & PIDS+=($!)
OURS_PID=$!
cat > "$ROOT/lsyncd.lua" <<LUA
settings { nodaemon = true, logfile = "$ROOT/lsyncd.log" }
sync {
  default.rsync,
  source = "$ROOT/lsyncd/src",
  target = "rsync://127.0.0.1:$(cat "$ROOT/lsyncd/port")/t/",
  delay = 0,
  rsync = { archive = true }
}
LUA
lsyncd "$ROOT/lsyncd.lua" >/dev/null 2>&1 & PIDS+=($!)
LSYNCD_PID=$!
sleep 2

python3 - "$ROOT" "$SAMPLES" "$OURS_PID" "$LSYNCD_PID" <<'PY'
import os, sys, time
root, samples, ours_pid, lsyncd_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    # utime+stime of the process and its reaped children, plus live children.
    total = 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
    for t in os.listdir("/proc"):
        if not t.isdigit(): continue
        try:
            s = open(f"/proc/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(s[1]) == pid:
            total += (int(s[11]) + int(s[12])) / tick
    return total
def wait_for(path, data, limit=30.0):
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.0005)
    return None
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
res = {}
for side in ("ours", "lsyncd"):
    lat = []
    for i in range(samples):
        data = f"sample {i} {side}\n".encode() * 4
        src = f"{root}/{side}/src/small{i}.txt"
        dst = f"{root}/{side}/dst/small{i}.txt"
        t0 = time.perf_counter()
        with open(src, "wb") as f:
            f.write(data)
        t1 = wait_for(dst, data)
        lat.append((t1 - t0) * 1000 if t1 else float("inf"))
        time.sleep(0.05)
    res[side] = {"p50": pct(lat, 50), "p95": pct(lat, 95)}
for side, pid in (("ours", ours_pid), ("lsyncd", lsyncd_pid)):
    os.makedirs(f"{root}/{side}/src/burst")
    c0 = cpu(pid)
    for i in range(10000):
        with open(f"{root}/{side}/src/burst/f{i:05}", "wb") as f:
            f.write(b"%d\n" % i)
    last = time.perf_counter()
    want = f"{root}/{side}/dst/burst/f09999"
    done = None
    end = last + 120
    while time.perf_counter() < end:
        try:
            n = len(os.listdir(f"{root}/{side}/dst/burst"))
        except OSError:
            n = 0
        if n >= 10000 and os.path.exists(want):
            done = time.perf_counter(); break
        time.sleep(0.005)
    time.sleep(0.5)
    res[side]["burst_s"] = (done - last) if done else float("inf")
    res[side]["burst_cpu_s"] = cpu(pid) - c0
print(f"{'side':8} {'p50_ms':>8} {'p95_ms':>8} {'burst_s':>8} {'burst_cpu_s':>11}")
for side in ("ours", "lsyncd"):
    r = res[side]
    print(f"{side:8} {r['p50']:8.1f} {r['p95']:8.1f} {r['burst_s']:8.2f} {r['burst_cpu_s']:11.2f}")
PY
