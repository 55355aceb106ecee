#!/usr/bin/env bash
# Side-by-side pull benchmark: a stock client pulling from a stock rsyncd and
# from an rrsync daemon serving the same trees, interleaved rounds, on tmpfs.
# Reports medians of wall time and of the daemon side's CPU time (user+sys of
# the per-connection process tree, read from the daemons' cgroup-free
# accounting: we time the whole daemon process group via /proc), and ratios.
#
#   benches/pull_compare.sh [rounds]        (default 5)
#
# Scenarios: 20,000 small files; one 1 GiB file; a no-change re-sync of the
# small-file tree; a delta re-sync of the 1 GiB file with 200 scattered edits.
# Everything it starts is killed by PID on exit.
set -euo pipefail
ROUNDS=${1:-5}
ROOT=$(mktemp -d /dev/shm/rrsync-bench.XXXXXX)
BIN=${RRSYNC_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/rrsync}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$ROOT"; }
trap cleanup EXIT

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

cat > "$ROOT/rsyncd.conf" <<CONF
use chroot = no
[small]
    path = $ROOT/small
[big]
    path = $ROOT/big
CONF

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_STOCK=$(port); P_OURS=$(port)
rsync --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_STOCK" --address=127.0.0.1 & PIDS+=($!)
"$BIN" --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_OURS" --address=127.0.0.1 & PIDS+=($!)
sleep 1

# Daemon-side CPU: sum utime+stime of finished children of the daemon (cutime/cstime in /proc/PID/stat).
child_cpu() { awk '{print $16+$17}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

run() { # name port module args...
  local name=$1 port=$2 mod=$3; shift 3
  local pid=${PIDS[0]}; [ "$port" = "$P_OURS" ] && pid=${PIDS[1]}
  local before; before=$(child_cpu "$pid")
  local t0 t1; t0=$(date +%s.%N)
  rsync "$@" "rsync://127.0.0.1:$port/$mod/" "$ROOT/dst-$name/" >/dev/null
  t1=$(date +%s.%N)
  sleep 0.2
  local after; after=$(child_cpu "$pid")
  echo "$(echo "$t1 - $t0" | bc) $(echo "($after - $before) / $TICK" | bc -l)"
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

declare -A W C
for round in $(seq "$ROUNDS"); do
  for side in stock ours; do
    p=$P_STOCK; [ $side = ours ] && p=$P_OURS
    rm -rf "$ROOT/dst-$side"
    read -r w c < <(run "$side" "$p" small -a); W[small-$side]+="$w "; C[small-$side]+="$c "
    read -r w c < <(run "$side" "$p" small -a); W[nochange-$side]+="$w "; C[nochange-$side]+="$c "
    rm -rf "$ROOT/dst-$side"
    read -r w c < <(run "$side" "$p" big -a); W[big-$side]+="$w "; C[big-$side]+="$c "
    cp "$ROOT/dst-$side/one.bin" "$ROOT/basis-$side"
    edit_big "$ROOT/dst-$side/one.bin"; touch -d '2001-01-01' "$ROOT/dst-$side/one.bin"
    read -r w c < <(run "$side" "$p" big -a --no-whole-file); W[delta-$side]+="$w "; C[delta-$side]+="$c "
    rm -f "$ROOT/basis-$side"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
printf "%-10s %12s %12s %8s %12s %12s %8s\n" scenario stock_wall ours_wall ratio stock_cpu ours_cpu ratio
for s in small nochange big delta; do
  ws=$(echo "${W[$s-stock]}" | median); wo=$(echo "${W[$s-ours]}" | median)
  cs=$(echo "${C[$s-stock]}" | median); co=$(echo "${C[$s-ours]}" | median)
  printf "%-10s %12.3f %12.3f %8.2f %12.3f %12.3f %8.2f\n" "$s" "$ws" "$wo" "$(echo "$wo/$ws" | bc -l)" "$cs" "$co" "$(echo "if ($cs>0) $co/$cs else 0" | bc -l)"
done
