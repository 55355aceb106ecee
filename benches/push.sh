#!/usr/bin/env bash
# Fan-out benchmark (issue 6): a 20,000-file tree plus a 500 MiB file pushed
# to 4 stock rsync daemons on tmpfs, three ways, interleaved rounds:
#   push1   rrsync push to 1 target (the CPU baseline)
#   push4   rrsync push to all 4 targets
#   seq4    4 stock rsync clients one after another
#   par4    4 stock rsync clients in parallel
# Reports medians of wall time and source-side CPU (user+sys of the client
# processes), and the ratios the issue asks about: push4 CPU / push1 CPU
# (target <= 1.5) and push4 wall / par4 wall (target <= 0.8).
#
#   benches/push.sh [rounds]          (default 3)
set -euo pipefail
ROUNDS=${1:-3}
. "$(dirname "$0")/common.sh"
bench_init pbench

python3 - "$ROOT/src" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(7)
for d in range(200):
    dd = os.path.join(root, "small", f"d{d:03}")
    os.makedirs(dd)
    for f in range(100):
        with open(os.path.join(dd, f"f{f:03}.txt"), "wb") as fh:
            fh.write(r.randbytes(r.randint(0, 4096)))
with open(os.path.join(root, "big.bin"), "wb") as fh:
    for _ in range(500):
        fh.write(r.randbytes(1 << 20))
PY

URLS=()
for i in 1 2 3 4; do
  mkdir -p "$ROOT/t$i"
  cat > "$ROOT/t$i.conf" <<CONF
use chroot = no
uid = root
gid = root
[t]
    path = $ROOT/t$i
    read only = no
CONF
  p=$(port)
  rsync --daemon --no-detach --config="$ROOT/t$i.conf" --port="$p" --address=127.0.0.1 & PIDS+=($!)
  URLS+=("rsync://127.0.0.1:$p/t/")
done
sleep 1
clear_targets() { for i in 1 2 3 4; do rm -rf "$ROOT/t$i"/* ; done; }

# time_cmd name cmd... -> "wall cpu" (cpu: user+sys of the command and its children)
time_cmd() {
  local tf="$ROOT/time"
  /usr/bin/time -f "%e %U %S" -o "$tf" "$@" >/dev/null 2>&1
  read -r e u s < "$tf"
  echo "$e $(echo "$u + $s" | bc -l)"
}
export ROOT
declare -A W C
rec() { W[$1]+="$2 "; C[$1]+="$3 "; }
for round in $(seq "$ROUNDS"); do
  clear_targets; read -r w c < <(time_cmd "$BIN" push -a "$ROOT/src/" "${URLS[0]}"); rec push1 $w $c
  clear_targets; read -r w c < <(time_cmd "$BIN" push -a "$ROOT/src/" "${URLS[@]}"); rec push4 $w $c
  clear_targets; read -r w c < <(URLS="${URLS[*]}" time_cmd bash -c 'for u in $URLS; do rsync -a "$ROOT/src/" "$u"; done'); rec seq4 $w $c
  clear_targets; read -r w c < <(URLS="${URLS[*]}" time_cmd bash -c 'for u in $URLS; do rsync -a "$ROOT/src/" "$u" & done; wait'); rec par4 $w $c
done
printf "%-7s %9s %9s\n" run wall_s cpu_s
for s in push1 push4 seq4 par4; do
  printf "%-7s %9.3f %9.3f\n" "$s" "$(echo "${W[$s]}" | median)" "$(echo "${C[$s]}" | median)"
done
c1=$(echo "${C[push1]}" | median); c4=$(echo "${C[push4]}" | median)
w4=$(echo "${W[push4]}" | median); wp=$(echo "${W[par4]}" | median)
printf "push4 CPU / push1 CPU = %.2f (target <= 1.5)\n" "$(echo "$c4/$c1" | bc -l)"
# The floor of that ratio: what the source's kernel spends to put the big
# file alone on one loopback TCP connection, zero-copy (sendfile, 1 MiB at a
# time, into a socket a child drains). Every target beyond the first costs
# at least this much, whatever the sender does in user space.
floor=$(for r in $(seq "$ROUNDS"); do python3 - "$ROOT/src/big.bin" <<'PY'
import os, resource, socket, sys
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
if os.fork() == 0:
    c = socket.create_connection(ls.getsockname())
    while c.recv(1 << 18):
        pass
    os._exit(0)
s, _ = ls.accept()
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
r0 = resource.getrusage(resource.RUSAGE_SELF)
off = 0
while off < size:
    off += os.sendfile(s.fileno(), fd, off, 1 << 20)
r1 = resource.getrusage(resource.RUSAGE_SELF)
s.close()
os.wait()
print(f"{r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime:.3f}")
PY
done | median)
printf "floor: the big file alone to one loopback connection costs %.3f s CPU (sendfile);\n" "$floor"
printf "       so push4 CPU / push1 CPU >= (push1 + 3 x floor) / push1 = %.2f\n" "$(echo "($c1 + 3*$floor)/$c1" | bc -l)"
printf "push4 wall / par4 wall = %.2f (target <= 0.8)\n" "$(echo "$w4/$wp" | bc -l)"
