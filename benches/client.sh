#!/usr/bin/env bash
# Client benchmark (issue 4): rrsync client <-> rrsync daemon against stock
# rsync client <-> stock rsyncd, interleaved rounds, on tmpfs. Pulls of a
# 20,000-file tree, a no-change re-sync of it, a 1 GiB file, and a delta
# re-sync of the 1 GiB file after 200 scattered edits.
#
#   benches/client.sh [rounds]        (default 3)
#
# Reports medians of wall time, CPU time (client + daemon side: the
# client's user+sys from /usr/bin/time, the daemon's reaped children) and
# peak RSS (client and per-connection daemon process, KiB), and the ratios
# ours/stock. Everything it starts is killed by PID on exit.
set -euo pipefail
ROUNDS=${1:-3}
. "$(dirname "$0")/common.sh"
bench_init cbench

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
uid = root
gid = root
[small]
    path = $ROOT/small
[big]
    path = $ROOT/big
CONF

P_STOCK=$(port); P_OURS=$(port)
rsync --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_STOCK" --address=127.0.0.1 & PIDS+=($!)
"$BIN" --daemon --no-detach --config="$ROOT/rsyncd.conf" --port="$P_OURS" --address=127.0.0.1 & PIDS+=($!)
sleep 1
TICK=$(getconf CLK_TCK)
child_cpu() { awk '{print $16+$17}' "/proc/$1/stat"; }

# Peak RSS (KiB) of the daemon's per-connection children while a command runs.
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

# run side client src dst args... -> "wall cpu client_rss daemon_rss"
run() {
  local side=$1 client=$2 src=$3 dst=$4; shift 4
  local pid=${PIDS[0]}; [ "$side" = ours ] && pid=${PIDS[1]}
  local before; before=$(child_cpu "$pid")
  local mark="$ROOT/rss-$side"; touch "$mark.run"; peak_rss "$pid" "$mark" &
  local tf="$ROOT/time-$side"
  /usr/bin/time -f "%e %U %S %M" -o "$tf" "$client" "$@" "$src" "$dst" >/dev/null
  sleep 0.2; rm -f "$mark.run"; wait $! 2>/dev/null || true
  local after; after=$(child_cpu "$pid")
  read -r e u s m < "$tf"
  local cpu; cpu=$(echo "$u + $s + ($after - $before) / $TICK" | bc -l)
  echo "$e $cpu $m $(cat "$mark")"
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

declare -A W C CM DM
rec() { W[$1]+="$2 "; C[$1]+="$3 "; CM[$1]+="$4 "; DM[$1]+="$5 "; }
for round in $(seq "$ROUNDS"); do
  for side in stock ours; do
    p=$P_STOCK; client=rsync
    [ $side = ours ] && { p=$P_OURS; client=$BIN; }
    U="rsync://127.0.0.1:$p"
    D="$ROOT/dst-$side"; rm -rf "$D"
    read -r w c cm dm < <(run "$side" "$client" "$U/small/" "$D/" -a); rec "small-$side" $w $c $cm $dm
    read -r w c cm dm < <(run "$side" "$client" "$U/small/" "$D/" -a); rec "nochange-$side" $w $c $cm $dm
    rm -rf "$D"
    read -r w c cm dm < <(run "$side" "$client" "$U/big/" "$D/" -a); rec "big-$side" $w $c $cm $dm
    edit_big "$D/one.bin"; touch -d '2001-01-01' "$D/one.bin"
    read -r w c cm dm < <(run "$side" "$client" "$U/big/" "$D/" -a --no-whole-file); rec "delta-$side" $w $c $cm $dm
    rm -rf "$D"
  done
done

printf "%-9s %9s %9s %6s %9s %9s %6s %10s %10s %10s %10s\n" scenario stock_s ours_s wall stock_cpu ours_cpu cpu st_cli_kib our_cli_kib st_dmn_kib our_dmn_kib
for s in small nochange big delta; do
  ws=$(echo "${W[$s-stock]}" | median); wo=$(echo "${W[$s-ours]}" | median)
  cs=$(echo "${C[$s-stock]}" | median); co=$(echo "${C[$s-ours]}" | median)
  ms=$(echo "${CM[$s-stock]}" | median); mo=$(echo "${CM[$s-ours]}" | median)
  ds=$(echo "${DM[$s-stock]}" | median); do_=$(echo "${DM[$s-ours]}" | median)
  printf "%-9s %9.3f %9.3f %6.2f %9.3f %9.3f %6.2f %10s %10s %10s %10s\n" "$s" "$ws" "$wo" "$(echo "$wo/$ws" | bc -l)" "$cs" "$co" "$(echo "if ($cs>0) $co/$cs else 0" | bc -l)" "$ms" "$mo" "$ds" "$do_"
done
