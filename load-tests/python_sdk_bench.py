#!/usr/bin/env python3
"""Python SDK benchmark: what `log_prediction` costs in the caller's thread, and how many events
per second one producer sustains into a real broker.

    deploy/local/up    # a local Kafka at 127.0.0.1:9092
    .local/venv/bin/pip install -e sdk/python
    .local/venv/bin/python load-tests/python_sdk_bench.py [--brokers HOST:PORT] [--calls 100000] [--events 300000]

Each event has 20 numeric features, 2 segment tags, 2 categorical features, a score and a
latency, like `vigil loadgen`. Phase 1 times every call (`time.perf_counter_ns` around it) in
two forms: a prebuilt `PredictionEvent` (validate + encode + enqueue) and the keyword form that
also builds the event and its ids. Phase 2 logs `--events` events as fast as one thread can and
waits for the broker to acknowledge them all (`flush`); events/s = events / that time.
The caller thread's CPU time (`time.thread_time`) is printed too: on a shared machine it says what
a call costs when the thread is not waiting for a core. Topics are fresh (`vigil-bench.*`) and
deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from vigil_sdk import Prediction, PredictionEvent, QueueFull, VigilProducer

FEATURES = [f"feature_{i:02d}" for i in range(20)]


def make_event(rng: random.Random, i: int) -> PredictionEvent:
    return PredictionEvent(
        model_id=f"model-{i % 3}",
        model_version=f"v{i % 2 + 1}",
        segment={"country": rng.choice(("DE", "FR", "US")), "channel": rng.choice(("web", "ios"))},
        numeric_features={name: rng.gauss(0.0, 1.0) for name in FEATURES},
        categorical_features={"device": rng.choice(("ios", "android")), "plan": rng.choice(("free", "pro"))},
        prediction=Prediction(score=rng.random()),
        serving_latency_ms=rng.uniform(0.5, 5.0),
    )


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def timed_calls(producer: VigilProducer, events: list[PredictionEvent], keyword: bool) -> tuple[list[int], int]:
    clock = time.perf_counter_ns
    log = producer.log_prediction
    durations = []
    dropped = 0
    for event in events:
        if keyword:
            p = event.prediction
            start = clock()
            try:
                log(model_id=event.model_id, model_version=event.model_version, segment=event.segment,
                    numeric_features=event.numeric_features, categorical_features=event.categorical_features,
                    score=p.score, serving_latency_ms=event.serving_latency_ms)
            except QueueFull:
                dropped += 1
            durations.append(clock() - start)
        else:
            start = clock()
            try:
                log(event)
            except QueueFull:
                dropped += 1
            durations.append(clock() - start)
    return durations, dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default=os.environ.get("VIGIL_TEST_KAFKA_BROKERS", "127.0.0.1:9092"))
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls per form (phase 1)")
    parser.add_argument("--events", type=int, default=300_000, help="events for the throughput run (phase 2)")
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.brokers})
    run = uuid.uuid4().hex[:8]
    topics = [f"vigil-bench.predictions.{run}", f"vigil-bench.throughput.{run}"]
    for future in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]).values():
        future.result(timeout=15)
    rng = random.Random(1)
    events = [make_event(rng, i) for i in range(max(args.calls, args.events))]
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load:.2f}, brokers {args.brokers}")

    try:
        # ---- phase 1: per-call cost in the caller's thread --------------------------------------
        for keyword in (False, True):
            with VigilProducer(args.brokers, predictions_topic=topics[0]) as producer:
                warm = events[: min(10_000, args.calls)]
                timed_calls(producer, warm, keyword)
                producer.flush(30)
                cpu = time.thread_time()
                durations, dropped = timed_calls(producer, events[: args.calls], keyword)
                cpu = time.thread_time() - cpu
                left = producer.flush(60)
            durations.sort()
            form = "log_prediction(**fields), builds the event and ids" if keyword else "log_prediction(event)"
            print(
                f"per call, {form}: median {percentile(durations, 0.5):.1f} us, p99 {percentile(durations, 0.99):.1f} us, "
                f"p99.9 {percentile(durations, 0.999):.1f} us, mean {statistics.fmean(durations) / 1000:.1f} us, "
                f"caller-thread CPU {cpu / len(durations) * 1e6:.1f} us/call, over {len(durations)} calls "
                f"({dropped} dropped, {left} unflushed)"
            )

        # ---- phase 2: events/s one producer sustains into the broker ---------------------------
        with VigilProducer(args.brokers, predictions_topic=topics[1]) as producer:
            log = producer.log_prediction
            dropped = 0
            start = time.perf_counter()
            cpu = time.thread_time()
            for event in events[: args.events]:
                try:
                    log(event)
                except QueueFull:
                    dropped += 1
            enqueued_s = time.perf_counter() - start
            cpu = time.thread_time() - cpu
            left = producer.flush(120)
            total_s = time.perf_counter() - start
            stats = producer.stats()
        print(
            f"throughput: {args.events} events in {total_s:.2f} s = {stats.delivered / total_s:,.0f} events/s delivered "
            f"(enqueue loop {args.events / enqueued_s:,.0f} calls/s, {args.events / cpu:,.0f} calls per CPU-second "
            f"of the caller thread); delivered {stats.delivered}, failed {stats.failed}, "
            f"dropped {dropped}, unflushed {left}"
        )
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        for future in admin.delete_topics(topics).values():
            try:
                future.result(timeout=15)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
