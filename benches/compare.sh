#!/usr/bin/env bash
# Side-by-side benchmark: a stock client pulling from / pushing to a stock
# rsyncd and an rrsync daemon serving the same trees, interleaved rounds, on tmpfs.
# Reports medians of wall time, of the daemon side's CPU time (perf's
# task-clock over the daemon and its per-connection children when perf can
# attach, else the reaped children's utime+stime from /proc), of the
# daemon's peak RSS, and of the stock client's own CPU time, and ratios.
#
#   benches/compare.sh [rounds]        (default 5)
#
# Scenarios, each as a pull and as a push: 20,000 small files; a no-change
# re-sync of that tree; one 1 GiB file; a delta re-sync of the 1 GiB file
# with 200 scattered edits. Also the daemon's peak RSS (max over its
# per-connection processes, sampled).
# Everything it starts is killed by PID on exit.
set -euo pipefail
ROUNDS=${1:-5}
. "$(dirname "$0")/common.sh"
bench_init bench

python3 - "$ROOT" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(7)
small = os.path.join(root, "small")
for d in range(200):
    dd = os.path.join(small, f"d{d:03}")
    os.makedirs(dd)
    for f in range(100):
        with open(os.path.join(dd, f"f{f:03}.txt"), "wb") as fh:
            fh.write(r.randbytes(r.randint(0, 4096)))
big = os.path.join(root, "big")
os.makedirs(big)
with open(os.path.join(big, "one.bin"), "wb") as fh:
    for _ in range(1024):
        fh.write(r.randbytes(1 << 20))
PY

mkdir -p "$ROOT/up-stock" "$ROOT/up-ours"
cat > "$ROOT/rsyncd.conf" <<CONF
use chroot = no
uid = root
gid = root
[small]
    path = $ROOT/small
[big]
    path = $ROOT/big
[up-stock]
    path = $ROOT/up-stock
    read only = no
[up-ours]
    path = $ROOT/up-ours
    read only = no
CONF

P_STOCK=$(port); P_OURS=$(port)
rsync --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_STOCK" --address=127.0.0.1 & PIDS+=($!)
"$BIN" --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_OURS" --address=127.0.0.1 & PIDS+=($!)
sleep 1

# Daemon-side CPU: sum utime+stime of finished children of the daemon (cutime/cstime in /proc/PID/stat).
child_cpu() { awk '{print $16+$17}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# Peak RSS (KiB) of the daemon's children while a command runs.
peak_rss() { # daemon_pid outfile
  local pid=$1 out=$2 peak=0
  while [ -e "$out.run" ]; do
    for c in $(pgrep -P "$pid" 2>/dev/null); do
      r=$(awk '/VmHWM/{print $2}' "/proc/$c/status" 2>/dev/null || echo 0)
      [ "${r:-0}" -gt "$peak" ] && peak=$r
    done
    sleep 0.05
  done
  echo "$peak" > "$out"
}

# Daemon CPU of one run: perf's task-clock over the daemon and the
# children it forks meanwhile (sub-millisecond), when perf can attach; else
# the reaped children's utime+stime (10 ms ticks).
PERF=0
if command -v perf >/dev/null && perf stat -e task-clock -p "${PIDS[0]}" -o /dev/null true 2>/dev/null; then PERF=1; fi
echo "daemon cpu from: $([ $PERF = 1 ] && echo 'perf task-clock' || echo 'cutime/cstime ticks')" >&2

run() { # name port src dst args...   (prints: wall daemon_cpu rss client_cpu)
  local name=$1 port=$2 src=$3 dst=$4; shift 4
  local pid=${PIDS[0]}; [ "$port" = "$P_OURS" ] && pid=${PIDS[1]}
  local before; before=$(child_cpu "$pid")
  local mark="$ROOT/rss-$name"; touch "$mark.run"; peak_rss "$pid" "$mark" &
  local rssp=$!
  local perfp=""
  if [ $PERF = 1 ]; then
    perf stat -x, -e task-clock -p "$pid" -o "$ROOT/perf-$name" & perfp=$!
    sleep 0.2
  fi
  local t0 t1; t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S'
  { time rsync "$@" "$src" "$dst" >/dev/null 2>&1; } 2> "$ROOT/ctime-$name"
  t1=$(date +%s.%N)
  sleep 0.2; rm -f "$mark.run"; wait $rssp 2>/dev/null || true
  local cpu
  if [ -n "$perfp" ]; then
    kill -INT "$perfp"; wait "$perfp" 2>/dev/null || true
    cpu=$(awk -F, '/task-clock/{printf "%.4f", $1/1000}' "$ROOT/perf-$name")
  else
    local after; after=$(child_cpu "$pid")
    cpu=$(echo "($after - $before) / $TICK" | bc -l)
  fi
  local ccpu; ccpu=$(awk '{print $1+$2}' "$ROOT/ctime-$name")
  echo "$(echo "$t1 - $t0" | bc) $cpu $(cat "$mark") $ccpu"
}

edit_big() {
  python3 - "$1" <<'PY'
import random, sys
r = random.Random(11)
with open(sys.argv[1], "r+b") as f:
    for _ in range(200):
        f.seek(r.randrange(0, (1 << 30) - 64)); f.write(r.randbytes(32))
PY
}

declare -A W C M K
rec() { W[$1]+="$2 "; C[$1]+="$3 "; M[$1]+="$4 "; K[$1]+="$5 "; }
for round in $(seq "$ROUNDS"); do
  for side in stock ours; do
    p=$P_STOCK; [ $side = ours ] && p=$P_OURS
    U="rsync://127.0.0.1:$p"
    D="$ROOT/dst-$side"; rm -rf "$D"
    read -r w c m k < <(run "$side" "$p" "$U/small/" "$D/" -a); rec "pull-small-$side" $w $c $m $k
    read -r w c m k < <(run "$side" "$p" "$U/small/" "$D/" -a); rec "pull-nochange-$side" $w $c $m $k
    rm -rf "$D"
    read -r w c m k < <(run "$side" "$p" "$U/big/" "$D/" -a); rec "pull-big-$side" $w $c $m $k
    edit_big "$D/one.bin"; touch -d '2001-01-01' "$D/one.bin"
    read -r w c m k < <(run "$side" "$p" "$U/big/" "$D/" -a --no-whole-file); rec "pull-delta-$side" $w $c $m $k
    rm -rf "$D"
    M_="up-$side"; UP="$ROOT/$M_"; rm -rf "$UP"/* "$UP"/.??* 2>/dev/null || true
    read -r w c m k < <(run "$side" "$p" "$ROOT/small/" "$U/$M_/small/" -a); rec "push-small-$side" $w $c $m $k
    read -r w c m k < <(run "$side" "$p" "$ROOT/small/" "$U/$M_/small/" -a); rec "push-nochange-$side" $w $c $m $k
    read -r w c m k < <(run "$side" "$p" "$ROOT/big/" "$U/$M_/big/" -a); rec "push-big-$side" $w $c $m $k
    edit_big "$UP/big/one.bin"; touch -d '2001-01-01' "$UP/big/one.bin"
    read -r w c m k < <(run "$side" "$p" "$ROOT/big/" "$U/$M_/big/" -a --no-whole-file); rec "push-delta-$side" $w $c $m $k
    rm -rf "$UP"/*
  done
done

printf "%-15s %10s %10s %6s %9s %9s %6s %9s %9s %8s %8s\n" scenario stock_wall ours_wall ratio stock_cpu ours_cpu ratio stock_kib ours_kib cli_stk cli_ours
for s in pull-small pull-nochange pull-big pull-delta push-small push-nochange push-big push-delta; do
  ws=$(echo "${W[$s-stock]}" | median); wo=$(echo "${W[$s-ours]}" | median)
  cs=$(echo "${C[$s-stock]}" | median); co=$(echo "${C[$s-ours]}" | median)
  ms=$(echo "${M[$s-stock]}" | median); mo=$(echo "${M[$s-ours]}" | median)
  ks=$(echo "${K[$s-stock]}" | median); ko=$(echo "${K[$s-ours]}" | median)
  printf "%-15s %10.3f %10.3f %6.2f %9.3f %9.3f %6.2f %9s %9s %8.3f %8.3f\n" "$s" "$ws" "$wo" "$(echo "$wo/$ws" | bc -l)" "$cs" "$co" "$(echo "if ($cs>0) $co/$cs else 0" | bc -l)" "$ms" "$mo" "$ks" "$ko"
done
echo "cli_*: the stock client's own CPU seconds (user+sys); when it is close to the wall time the client is the bottleneck"
