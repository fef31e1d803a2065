#!/usr/bin/env bash
# Runs every check and test. Installs what the tests start by themselves when it is missing:
# redis-server, sshd, chromium (the HTML report in a browser), tmux (the live view in a
# terminal) and prometheus (scraping a worker) — Debian/Ubuntu packages. The tests never use a Redis you already
# run: each starts its own redis-server and sshd on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "note: the SSH end-to-end tests start sshd and create the login user zo-e2e, which needs root" >&2
fi

# Claude Code Router and the Claude Code CLI (with its optional native binary) for the CCR
# and real-chain tests, installed locally (no lock file: versions are pinned in package.json).
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x tools/node_modules/.bin/ccr ] || [ ! -x tools/node_modules/.bin/claude ]; then
  (cd tools && npm install --no-package-lock --no-audit --no-fund --loglevel=error)
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
python3 scripts/check-structure.py
cargo build --workspace --bins
cargo test --workspace -- --nocapture
# A seconds-long smoke run of the benchmark suite, so it never rots (full run: bench/run.py).
python3 bench/run.py --smoke --profile debug
