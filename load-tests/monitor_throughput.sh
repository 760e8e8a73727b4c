#!/usr/bin/env bash
# Load test of the walking skeleton on the local stack (deploy/local/up):
#   1. `vigil loadgen --rate 0` publishes N predictions (20 features) as fast as the Rust SDK can;
#   2. `vigil monitor` starts on that backlog and the test times until ClickHouse holds all N.
# Prints producer events/s and monitor events/s (decode + count + store, broker on the same box).
# Usage: load-tests/monitor_throughput.sh [N]   (default 1000000; needs a release build)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vigil="$repo/target/release/vigil"
n="${1:-1000000}"
[[ -x "$vigil" ]] || { echo "build first: cargo build --release -p vigil" >&2; exit 1; }
ch="${VIGIL_TEST_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
run="lt_$(date +%s)_$$"

export VIGIL__KAFKA__BROKERS="${VIGIL_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
export VIGIL__TOPICS__PREDICTIONS="loadtest.$run.predictions"
export VIGIL__TOPICS__DEADLETTER="loadtest.$run.deadletter"
export VIGIL__CLICKHOUSE__URL="$ch"
export VIGIL__CLICKHOUSE__DATABASE="$run"
export VIGIL__MONITOR__GROUP_ID="loadtest-$run"
export VIGIL__HTTP__LISTEN="127.0.0.1:0"
export RUST_LOG="${RUST_LOG:-warn}"

query() { curl -sf "$ch/" --data-binary "$1"; }
now() { date +%s.%N; }
monitor_pid=""
cleanup() {
  [[ -n "$monitor_pid" ]] && kill "$monitor_pid" 2>/dev/null && wait "$monitor_pid" 2>/dev/null || true
  query "DROP DATABASE IF EXISTS $run" >/dev/null || true
}
trap cleanup EXIT

echo "[load] publishing $n predictions (topic $VIGIL__TOPICS__PREDICTIONS) ..."
"$vigil" loadgen --rate 0 --max-events "$n" --duration 1h --models 20 --versions 3 --seed 7

echo "[load] starting the monitor on the backlog ..."
"$vigil" migrate >/dev/null
t0="$(now)"
"$vigil" monitor &
monitor_pid=$!
stored=0
while (( stored < n )); do
  sleep 0.5
  stored="$(query "SELECT toUInt64(sum(events)) FROM $run.window_partials WHERE segment = ''")"
  kill -0 "$monitor_pid" 2>/dev/null || { echo "monitor exited early" >&2; exit 1; }
done
t1="$(now)"
rss_kb="$(awk '/VmHWM/ {print $2}' "/proc/$monitor_pid/status")"
awk -v n="$n" -v a="$t0" -v b="$t1" -v rss="$rss_kb" 'BEGIN {
  printf "[load] monitor stored %d events in %.2f s: %.0f events/s (peak RSS %.0f MiB)\n", n, b - a, n / (b - a), rss / 1024 }'
[[ "$stored" == "$n" ]] || { echo "MISMATCH: stored $stored of $n" >&2; exit 1; }
