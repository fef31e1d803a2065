#!/usr/bin/env bash
# The demo: builds the binaries, makes sure a Redis answers (installing and starting one if
# none does), starts a worker with the local executor and the simulated agent, submits
# tasks/demo.yaml (about 15 s, so the live view shows what runs where; one retry and one
# failure on purpose), writes the reports to results/ and says what to do next. It exits 0
# when the run ended as designed (the one failure included).
set -euo pipefail
cd "$(dirname "$0")/.."
export ZO_REDIS_URL="${ZO_REDIS_URL:-redis://127.0.0.1:6379}"
export ZO_NAMESPACE="${ZO_NAMESPACE:-zo-demo}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Where results/ goes (the repository by default; the test suite points it elsewhere).
out="${ZO_DEMO_DIR:-.}"

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

echo "==> running tasks/demo.yaml with a worker of its own (local executor, simulated agent;"
echo "    about 15 s; one task is retried, one fails on purpose)"
mkdir -p "$out/results"
set +e
./target/debug/zo-submit tasks/demo.yaml --with-worker configs/worker.local.yaml --results-dir "$out/results" --output-dir "$out" "$@"
code=$?
set -e
# 1: the run finished with the failure it has on purpose; anything else is a real problem.
if [ "$code" -gt 1 ]; then
  echo "zo-submit exited $code; the worker's log is in $out/results/ (worker_*.log)" >&2
  exit $code
fi
html=$(ls -t "$out"/results/report_*.html 2>/dev/null | head -n 1 || true)
cat <<EOF

==> done. The HTML report (timeline, failures with their reasons, every output):
      ${html:-$out/results/report_*.html}

Next steps (the demo used namespace \`$ZO_NAMESPACE\`; its worker has stopped):
  - Look around:       ZO_NAMESPACE=$ZO_NAMESPACE ./target/debug/zo-submit runs
                       ZO_NAMESPACE=$ZO_NAMESPACE ./target/debug/zo-submit show latest ["Security audit"]
  - Try a workflow:    ./target/debug/zo-submit tasks/example.yaml --with-worker configs/worker.simulate.yaml
                       (everything simulated: the plan, the live view and the reports of it)
  - Your own file:     ./target/debug/zo-submit my-tasks.yaml --with-worker configs/worker.local.yaml
                       (commands on this machine, simulated agent), or keep a worker running
                       with ./target/debug/zo-worker --config configs/worker.local.yaml
                       and submit without --with-worker
  - A real Zo: copy configs/worker.yaml, set executor.host (your SSH alias), the instances and
    their CCR configs (configs/README.md), check the keys with
                       ./target/debug/zo-worker --config my-worker.yaml secrets check
    then start it and submit as above. Completions: zo-submit completions bash|zsh|fish.
EOF
