#!/usr/bin/env bash
# The demo: builds the binaries, makes sure a Redis answers (installing and starting one if
# none does), starts a worker with the local executor and the simulated agent, submits
# tasks/demo.yaml, shows the dashboard and writes the reports to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export ZO_REDIS_URL="${ZO_REDIS_URL:-redis://127.0.0.1:6379}"
export ZO_NAMESPACE="${ZO_NAMESPACE:-zo-demo}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

echo "==> building (first build takes a few minutes)"
cargo build --bins -q

hostport="${ZO_REDIS_URL#redis://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" != "$host" ] || port=6379
if ! (command -v redis-cli >/dev/null && redis-cli -u "$ZO_REDIS_URL" ping 2>/dev/null | grep -q PONG); then
  if ! command -v redis-server >/dev/null; then
    echo "==> installing redis-server"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
  if ! redis-cli -u "$ZO_REDIS_URL" ping 2>/dev/null | grep -q PONG; then
    echo "==> starting redis-server on $host:$port"
    redis-server --daemonize yes --bind "$host" --port "$port" --appendonly yes --appendfsync everysec \
      --maxmemory-policy noeviction --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/zo-demo-redis.log"
    for _ in $(seq 50); do redis-cli -u "$ZO_REDIS_URL" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  fi
fi

echo "==> starting a worker (local executor, simulated agent); log: results/demo-worker.log"
mkdir -p results
./target/debug/zo-worker --config configs/worker.local.yaml 2>results/demo-worker.log &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT

echo "==> submitting tasks/demo.yaml"
set +e
./target/debug/zo-submit tasks/demo.yaml "$@"
code=$?
set -e
exit $code
