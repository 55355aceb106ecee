#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs stock rsync
# (Debian's 3.5.0 as /usr/bin/rsync, and 3.2.7 unpacked beside the build) when
# missing, then the unit, property and interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rsync >/dev/null 2>&1; then
  echo "installing stock rsync (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rsync >/dev/null
fi
if ! command -v ip >/dev/null 2>&1; then
  # One compat case brings up the loopback of a network namespace with it.
  echo "installing iproute2 (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq iproute2 >/dev/null
fi
if ! command -v strace >/dev/null 2>&1; then
  # One compat case counts the fsync calls of stock and of ours with it.
  echo "installing strace (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq strace >/dev/null
fi
first_line() { local v; v=$("$@" --version); echo "${v%%$'\n'*}"; }
first_line rsync

R327_DIR="${RSYNC_327_DIR:-$PWD/target/rsync-3.2.7}"
if [ ! -x "$R327_DIR/usr/bin/rsync" ]; then
  echo "fetching Debian's rsync 3.2.7 as a second stock peer"
  tmp=$(mktemp -d)
  ( cd "$tmp" && apt-get download rsync=3.2.7-1+deb12u6 >/dev/null 2>&1 || { apt-get update -qq && apt-get download rsync=3.2.7-1+deb12u6 >/dev/null; } )
  mkdir -p "$R327_DIR"
  dpkg -x "$tmp"/rsync_3.2.7*.deb "$R327_DIR"
  rm -rf "$tmp"
fi
export RSYNC_327="$R327_DIR/usr/bin/rsync"
first_line "$RSYNC_327"

# Layering rule: the sans-I/O layers never touch sockets, files or tokio.
if grep -rnE 'std::fs|tokio|nix::|std::net' src/protocol src/checksum src/delta >/dev/null; then
  echo "layering violation: protocol/checksum/delta must not use std::fs, std::net, tokio or nix" >&2
  grep -rnE 'std::fs|tokio|nix::|std::net' src/protocol src/checksum src/delta >&2
  exit 1
fi

cargo build --release --locked
cargo test --release --locked --all-targets 2>&1
