# Shared by the bench scripts (sourced): a scratch dir on tmpfs, the binary
# under test, cleanup of everything started (by PID) on exit, a free
# loopback port, and the median of a list of numbers.

# bench_init NAME: ROOT (a fresh /dev/shm/rrsync-NAME.XXXXXX), BIN, PIDS.
bench_init() {
  ROOT=$(mktemp -d "/dev/shm/rrsync-$1.XXXXXX")
  BIN=${RRSYNC_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/rrsync}
  [ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
  PIDS=()
  trap cleanup EXIT
}

cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$ROOT"; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
