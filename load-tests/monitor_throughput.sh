#!/usr/bin/env bash
# Load test of the monitor on the local stack (deploy/local/up):
#   1. `vigil loadgen --rate 0` publishes N predictions (20 features) as fast as the Rust SDK can,
#      plus outcomes for LABEL_RATE of them;
#   2. `vigil monitor` starts on that backlog (5 s windows, so windows close while it works) and
#      the test times until ClickHouse holds all N predictions.
# Prints producer events/s, monitor predictions/s (decode, window state, outcome join, store and
# close, broker and ClickHouse on the same box), peak RSS, the p50/p99 of the time from a
# window becoming due to its rows being in ClickHouse (from the monitor's histogram), and then
# the rate at which Kafka's own ConsumerPerformance reads the same backlog, with the monitor's
# share of it (the figure to compare between machines and runs).
# Usage: [MODELS=20 VERSIONS=3 LABEL_RATE=0.3 WINDOW_SECONDS=5 SLIDE_SECONDS=5] load-tests/monitor_throughput.sh [N]
#   (SLIDE_SECONDS below WINDOW_SECONDS: sliding windows, e.g. WINDOW_SECONDS=20 SLIDE_SECONDS=5)
#   (default N 1000000; needs a release build: cargo build --release -p vigil)
# Memory at scale: MODELS=1000 VERSIONS=3 load-tests/monitor_throughput.sh 600000
# Also prints the monitor's CPU seconds (user + system) per million predictions, the figure to
# compare when other work shares the machine. PERF_DATA=file records a call-graph profile of the
# monitor while it works (perf record -g, or PERF_ARGS, e.g. "--call-graph dwarf -F 200").
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vigil="${VIGIL_BIN:-$repo/target/release/vigil}"
n="${1:-1000000}"
models="${MODELS:-20}"
versions="${VERSIONS:-3}"
label_rate="${LABEL_RATE:-0.3}"
[[ -x "$vigil" ]] || { echo "build first: cargo build --release -p vigil" >&2; exit 1; }
ch="${VIGIL_TEST_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
run="lt_$(date +%s)_$$"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

export VIGIL__KAFKA__BROKERS="${VIGIL_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
export VIGIL__TOPICS__PREDICTIONS="loadtest.$run.predictions"
export VIGIL__TOPICS__OUTCOMES="loadtest.$run.outcomes"
export VIGIL__TOPICS__DEADLETTER="loadtest.$run.deadletter"
export VIGIL__TOPICS__REMEDIATIONS="loadtest.$run.remediations"
export VIGIL__CLICKHOUSE__URL="$ch"
export VIGIL__CLICKHOUSE__DATABASE="$run"
export VIGIL__MONITOR__GROUP_ID="loadtest-$run"
export VIGIL__MONITOR__WINDOW_SECONDS="${WINDOW_SECONDS:-5}"
export VIGIL__MONITOR__SLIDE_SECONDS="${SLIDE_SECONDS:-${WINDOW_SECONDS:-5}}"
export VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS=1
export VIGIL__HTTP__LISTEN="127.0.0.1:$port"
export RUST_LOG="${RUST_LOG:-warn}"

query() { curl -sf "$ch/" --data-binary "$1"; }
now() { date +%s.%N; }
monitor_pid=""
cleanup() {
  [[ -n "$monitor_pid" ]] && kill "$monitor_pid" 2>/dev/null && wait "$monitor_pid" 2>/dev/null || true
  query "DROP DATABASE IF EXISTS $run" >/dev/null || true
}
trap cleanup EXIT

echo "[load] publishing $n predictions for $models models x $versions versions, outcomes for $label_rate of them ..."
"$vigil" loadgen --rate 0 --max-events "$n" --duration 1h --models "$models" --versions "$versions" --seed 7 \
  --label-rate "$label_rate" --label-delay 2s

echo "[load] starting the monitor on the backlog ..."
"$vigil" migrate >/dev/null
t0="$(now)"
"$vigil" monitor &
monitor_pid=$!
perf_pid=""
if [[ -n "${PERF_DATA:-}" ]]; then
  perf record ${PERF_ARGS:--g} -o "$PERF_DATA" -p "$monitor_pid" >/dev/null 2>&1 &
  perf_pid=$!
fi
stored=0
while (( stored < n )); do
  sleep 0.5
  stored="$(query "SELECT toUInt64(sum(events)) FROM $run.window_partials WHERE segment = ''")"
  kill -0 "$monitor_pid" 2>/dev/null || { echo "monitor exited early" >&2; exit 1; }
done
t1="$(now)"
rss_kb="$(awk '/VmHWM/ {print $2}' "/proc/$monitor_pid/status")"
# utime + stime (fields 14 and 15 of /proc/PID/stat, after the parenthesised command name).
cpu_ticks="$(sed 's/^.*) //' "/proc/$monitor_pid/stat" | awk '{print $12 + $13}')"
[[ -n "$perf_pid" ]] && kill -INT "$perf_pid" && wait "$perf_pid" || true
awk -v n="$n" -v a="$t0" -v b="$t1" -v rss="$rss_kb" -v ticks="$cpu_ticks" -v hz="$(getconf CLK_TCK)" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
  printf "[load] monitor stored %d predictions in %.2f s: %.0f predictions/s (peak RSS %.0f MiB)\n", n, b - a, n / (b - a), rss / 1024
  printf "[load] monitor CPU %.1f s: %.1f CPU s per million predictions (load average %s)\n", ticks / hz, ticks / hz / n * 1e6, load }'
[[ "$stored" == "$n" ]] || { echo "MISMATCH: stored $stored of $n" >&2; exit 1; }

# Close latency: quantiles of the histogram's buckets, interpolated within a bucket as
# Prometheus' histogram_quantile does.
curl -sf "http://127.0.0.1:$port/metrics" | awk '
  /^vigil_monitor_window_close_latency_seconds_bucket/ {
    match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); les[++k] = le; counts[k] = $2 }
  /^vigil_monitor_outcomes_matched_total/ { matched = $2 }
  /^vigil_monitor_outcomes_decoded_total/ { outcomes = $2 }
  /^vigil_monitor_join_evicted_total/ { evicted = $2 }
  /^vigil_monitor_flush_duration_seconds_sum/ { flush_s = $2 }
  /^vigil_monitor_flush_duration_seconds_count/ { flushes = $2 }
  END {
    total = counts[k]
    if (total == 0) { print "[load] no window closed"; exit }
    split("0.5 0.99", qs, " ")
    for (i = 1; i <= 2; i++) {
      rank = qs[i] * total; prev_le = 0; prev_c = 0
      for (j = 1; j <= k; j++) {
        if (counts[j] >= rank) {
          hi = (les[j] == "+Inf") ? prev_le : les[j]
          v = (counts[j] == prev_c) ? hi : prev_le + (hi - prev_le) * (rank - prev_c) / (counts[j] - prev_c)
          printf "[load] window close latency p%d: %.2f s (%d windows closed)\n", qs[i] * 100, v, total
          break
        }
        prev_le = les[j]; prev_c = counts[j]
      }
    }
    if (flushes > 0) printf "[load] %d flushes of partials took %.2f s in all (%.0f ms each on average)\n", flushes, flush_s, 1000 * flush_s / flushes
    printf "[load] outcomes matched: %d of %d read so far (the outcomes topic may still be catching up); join entries evicted: %d\n", matched, outcomes, evicted
  }'

# The same backlog read by Kafka's own consumer (org.apache.kafka.tools.ConsumerPerformance, from
# the jars deploy/local fetched), right after the monitor: what the broker delivers on this
# machine now, and the monitor's share of it.
libs="${VIGIL_LOCAL_DIR:-$repo/.local}/kafka/libs"
if [[ -d "$libs" ]]; then
  kill "$monitor_pid" 2>/dev/null && wait "$monitor_pid" 2>/dev/null || true
  monitor_pid=""
  perf_out="$(java -Xmx512m -Dlog4j2.configurationFile="$repo/deploy/local/kafka/tools-log4j2.properties" -cp "$libs/*" \
    org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$VIGIL__KAFKA__BROKERS" \
    --topic "$VIGIL__TOPICS__PREDICTIONS" --messages "$n" --group "bare-$run" --timeout 60000 2>&1)" || true
  # The data line: start, end, MB, MB/s, messages, messages/s, rebalance ms, fetch ms, ...
  bare="$(awk -F', *' 'NF >= 6 && $6 ~ /^[0-9.]+$/ { rate = $6 } END { print rate }' <<<"$perf_out")"
  if [[ -n "$bare" ]]; then
    awk -v m="$n" -v a="$t0" -v b="$t1" -v bare="$bare" 'BEGIN {
      rate = m / (b - a)
      printf "[load] bare Kafka consumer (ConsumerPerformance) read the predictions topic at %.0f msg/s\n", bare
      printf "[load] monitor / bare consumer: %.0f / %.0f = %.1f%%\n", rate, bare, 100 * rate / bare }'
  else
    echo "[load] ConsumerPerformance gave no rate:" >&2
    echo "$perf_out" | tail -5 >&2
  fi
else
  echo "[load] no Kafka jars at $libs: skipping the bare-consumer comparison (run deploy/local/up)"
fi
