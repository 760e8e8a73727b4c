#!/usr/bin/env bash
# Rust SDK load test on the local broker (deploy/local/up): what `log_prediction` costs the
# calling thread (each call timed alone: median, p99, p99.9, max; owned and borrowed events), then
# the events/s one producer sustains until the broker has acknowledged every event, with the CPU
# time of each thread (caller, vigil-sdk-sender, librdkafka's). Prints the load average around it:
# on a shared 2-core machine the figures move with it.
#
# Usage: load-tests/rust_sdk_bench.sh [--calls 200000] [--rate 100000] [--events 2000000]
#                                     [--kafka key=value ...]   (librdkafka settings, e.g. linger.ms=20)
# The program is benches/sdk_load.rs (release build through `cargo bench`); the criterion bench of
# the same call is `cargo bench -p vigil-benches --bench sdk`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export VIGIL_TEST_KAFKA_BROKERS="${VIGIL_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
echo "[rust-sdk] $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), broker $VIGIL_TEST_KAFKA_BROKERS"
# The local broker's CPU time is reported beside the producer's when its pid file is there.
pid_file="${VIGIL_LOCAL_DIR:-$repo/.local}/kafka/kafka.pid"
broker=()
[[ -r "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null && broker=(--broker-pid "$(cat "$pid_file")")
cargo bench -q -p vigil-benches --bench sdk_load -- "${broker[@]}" "$@"
echo "[rust-sdk] done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
