//! What `vigil_sdk::Producer::log_prediction` costs the serving thread, for a realistic event
//! (20 numeric features, 3 categorical, 2 segment tags; `vigil_benches::realistic_prediction`),
//! against the real broker at `VIGIL_TEST_KAFKA_BROKERS` (default 127.0.0.1:9092).
//!
//! Run: cargo bench -p vigil-benches --bench sdk
//!
//! Calls are timed in batches of 10,000 (criterion's mean per call in a batch; its report gives
//! the median over samples). Before each batch the producer is flushed, untimed, so every timed
//! call takes the accepted path with the background thread busy beside it, as under steady load;
//! building the events is untimed too. The per-call p99 needs single calls timed: see
//! `benches/sdk_load.rs` (load-tests/rust_sdk_bench.sh).

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vigil_benches::realistic_prediction;
use vigil_events::{AvroRecord, PredictionEvent};
use vigil_sdk::{Producer, SdkConfig};

const BATCH: u64 = 10_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
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
    let flushed = |producer: &Producer| producer.flush(Duration::from_secs(120)).expect("the broker takes the batch");

    let mut group = c.benchmark_group("sdk_log_prediction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("owned_event", |b| {
        b.iter_batched(
            || {
                flushed(&producer);
                next()
            },
            |event: PredictionEvent| producer.log_prediction(event).unwrap(),
            BatchSize::NumIterations(BATCH),
        )
    });
    group.bench_function("borrowed_event", |b| {
        b.iter_batched(
            || {
                flushed(&producer);
                next()
            },
            // The event is returned so that freeing it is not timed.
            |event: PredictionEvent| {
                producer.log_prediction(&event).unwrap();
                event
            },
            BatchSize::NumIterations(BATCH),
        )
    });
    // What the caller's path is made of, for comparison.
    group.bench_function("validate_only", |b| {
        b.iter_batched(&mut next, |event| black_box(event.validate()).unwrap(), BatchSize::NumIterations(BATCH))
    });
    group.finish();
    flushed(&producer);
    let stats = producer.stats();
    println!("producer after the bench: {stats:?}");
    assert_eq!(stats.dropped_queue_full + stats.failed, 0, "every timed call took the accepted path");
    producer.close(Duration::from_secs(10));
    vigil_benches::delete_topics(&brokers, &[&topic]);
}

criterion_group!(benches, log_prediction);
criterion_main!(benches);
