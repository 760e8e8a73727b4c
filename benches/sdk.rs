//! What `vigil_sdk::Producer::log_prediction` costs the serving thread, for a realistic event
//! (20 numeric features, 3 categorical, 2 segment tags; `vigil_benches::realistic_prediction`),
//! against the real broker at `VIGIL_TEST_KAFKA_BROKERS` (default 127.0.0.1:9092).
//!
//! Run: cargo bench -p vigil-benches --bench sdk
//!
//! Each sample times a burst of at most 1,000 calls on an empty queue (the producer is flushed
//! and the events built beforehand, untimed) and reports the mean per call: criterion's figure is
//! the median over samples. The background thread runs beside the burst, as under steady load.
//! Criterion asks for more iterations per sample than a broker on this machine takes in a
//! reasonable time, so a sample of `iters` calls times `min(iters, 1,000)` of them and scales.
//! Short bursts also keep a busy machine's preemptions (milliseconds) out of most samples.
//! The per-call p99 needs single calls timed: `benches/sdk_load.rs` (load-tests/rust_sdk_bench.sh).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_benches::realistic_prediction;
use vigil_events::{AvroRecord, PredictionEvent};
use vigil_sdk::{Producer, SdkConfig};

const BURST: u64 = 1_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Times up to `BURST` calls of `log` on prebuilt events; the time scaled to `iters` calls.
fn burst(
    producer: &Producer,
    next: &mut impl FnMut() -> PredictionEvent,
    iters: u64,
    log: impl Fn(&Producer, Vec<PredictionEvent>) -> Vec<PredictionEvent>,
) -> Duration {
    let n = iters.clamp(1, BURST);
    let events: Vec<PredictionEvent> = (0..n).map(|_| next()).collect();
    producer.flush(Duration::from_secs(120)).expect("the broker takes the last burst");
    let started = Instant::now();
    let kept = log(producer, events);
    let elapsed = started.elapsed();
    drop(kept); // lent events are freed untimed
    elapsed.mul_f64(iters as f64 / n as f64)
}

fn log_prediction(c: &mut Criterion) {
    let brokers = std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut config = SdkConfig::new(&brokers);
    // Created by the broker on first use (deploy/local: auto.create.topics.enable, 4 partitions).
    let topic = format!("bench.sdk.{}.predictions", std::process::id());
    config.predictions_topic = topic.clone();
    let producer = Producer::new(config).unwrap();
    let mut sequence = 0u64;
    let mut next = || {
        sequence += 1;
        realistic_prediction(sequence, now_ms())
    };

    let mut group = c.benchmark_group("sdk_log_prediction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("owned_event", |b| {
        b.iter_custom(|iters| {
            burst(&producer, &mut next, iters, |producer, events| {
                for event in events {
                    producer.log_prediction(event).unwrap();
                }
                Vec::new()
            })
        })
    });
    group.bench_function("borrowed_event", |b| {
        b.iter_custom(|iters| {
            burst(&producer, &mut next, iters, |producer, events| {
                for event in &events {
                    producer.log_prediction(event).unwrap();
                }
                events
            })
        })
    });
    // One part of the caller's path, for comparison.
    group.bench_function("validate_only", |b| {
        b.iter_batched_ref(&mut next, |event| black_box(event.validate()).unwrap(), BatchSize::SmallInput)
    });
    group.finish();
    producer.flush(Duration::from_secs(120)).unwrap();
    let stats = producer.stats();
    println!("producer after the bench: {stats:?}");
    assert_eq!(stats.dropped_queue_full + stats.failed, 0, "every timed call took the accepted path");
    producer.close(Duration::from_secs(10));
    vigil_benches::delete_topics(&brokers, &[&topic]);
}

criterion_group!(benches, log_prediction);
criterion_main!(benches);
