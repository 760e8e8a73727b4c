//! Rust SDK load test against a real broker: the per-call cost of `log_prediction` in the
//! caller's thread (each call timed alone into an HDR histogram: median, p99, p99.9, max), then
//! the events/s one producer sustains (events logged as fast as one thread builds them, until the
//! broker has acknowledged all of them), with the CPU time of each thread.
//!
//!     load-tests/rust_sdk_bench.sh [--calls 200000] [--rate 100000] [--events 2000000] [--kafka key=value ...] [--only NAME]
//!
//! or `cargo bench -p vigil-benches --bench sdk_load -- [options]`. Events are
//! `vigil_benches::realistic_prediction` (20 numeric features, 3 categorical, 2 segment tags, about
//! 600 bytes encoded). The topic is fresh (`bench.sdk-load.*`, 4 partitions from the broker's
//! default) and deleted at the end.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use vigil_benches::{delete_topics, realistic_prediction};
use vigil_events::PredictionEvent;
use vigil_sdk::{Producer, SdkConfig, SdkError};

struct Args {
    brokers: String,
    calls: u64,
    rate: u64,
    events: u64,
    kafka: Vec<(String, String)>,
    /// Run only the throughput phases whose name contains this (and skip the per-call phase).
    only: Option<String>,
    /// The broker's process, to report its CPU time too (when it runs on this machine).
    broker_pid: Option<u32>,
}

fn args() -> Args {
    let mut args = Args {
        brokers: std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        calls: 200_000,
        rate: 100_000,
        events: 2_000_000,
        kafka: Vec::new(),
        only: None,
        broker_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => args.brokers = value(),
            "--calls" => args.calls = value().parse().expect("--calls N"),
            "--rate" => args.rate = value().parse().expect("--rate N"),
            "--events" => args.events = value().parse().expect("--events N"),
            "--kafka" => {
                let kv = value();
                let (k, v) = kv.split_once('=').expect("--kafka key=value");
                args.kafka.push((k.to_owned(), v.to_owned()));
            }
            "--only" => args.only = Some(value()),
            "--broker-pid" => args.broker_pid = Some(value().parse().expect("--broker-pid PID")),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other}; see the comment at the top of benches/sdk_load.rs"),
        }
    }
    args
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// User + system CPU seconds from a /proc `stat` file.
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let ticks = 100.0; // USER_HZ on Linux
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    Some((stat[open + 1..close].to_owned(), cpu))
}

/// CPU seconds per thread name of this process, and the broker's as "kafka broker": where the
/// time goes.
fn thread_cpu(broker_pid: Option<u32>) -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Some((name, cpu)) =
            std::fs::read_to_string(task.path().join("stat")).ok().as_deref().and_then(stat_cpu)
        else {
            continue;
        };
        match threads.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += cpu,
            None => threads.push((name, cpu)),
        }
    }
    if let Some((_, cpu)) = broker_pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .as_deref()
        .and_then(stat_cpu)
    {
        threads.push(("kafka broker".to_owned(), cpu));
    }
    threads
}

fn cpu_delta(before: &[(String, f64)], after: &[(String, f64)]) -> String {
    after
        .iter()
        .map(|(name, cpu)| (name, cpu - before.iter().find(|(n, _)| n == name).map_or(0.0, |(_, c)| *c)))
        .filter(|(_, cpu)| *cpu >= 0.01)
        .map(|(name, cpu)| format!("{name} {cpu:.2}s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn producer(args: &Args, topic: &str) -> Producer {
    let mut config = SdkConfig::new(&args.brokers);
    config.predictions_topic = topic.to_owned();
    for (k, v) in &args.kafka {
        config.kafka.insert(k.clone(), v.clone());
    }
    Producer::new(config).expect("producer")
}

/// Times each call alone, paced at `rate` calls/s; the event is built just before its call
/// (untimed), as a serving app builds it right before logging.
fn per_call(producer: &Producer, args: &Args, borrowed: bool, first: u64) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let started = Instant::now();
    let time_ms = now_ms();
    for i in 0..args.calls {
        let due = started + interval * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let event = realistic_prediction(first + i, time_ms);
        let (result, took) = if borrowed {
            let t0 = Instant::now();
            let result = producer.log_prediction(&event);
            (result, t0.elapsed())
        } else {
            let t0 = Instant::now();
            let result = producer.log_prediction(event);
            (result, t0.elapsed())
        };
        result.expect("accepted (raise the rate only as far as the broker keeps up)");
        histogram.saturating_record(took.as_nanos() as u64);
    }
    histogram
}

fn report(name: &str, h: &Histogram<u64>) {
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{name}: {} calls, median {:.3} µs, p90 {:.3} µs, p99 {:.3} µs, p99.9 {:.3} µs, max {:.1} µs, mean {:.3} µs",
        h.len(),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.9)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
        h.mean() / 1000.0,
    );
}

/// How the throughput phase gets its events.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// Built in the calling thread for each call and moved into the SDK.
    BuiltMoved,
    /// Built in the calling thread for each call and lent (encoded by the call).
    BuiltLent,
    /// Lent from 1,000 prebuilt events (their ids repeat): what the SDK alone sustains, without
    /// the cost of building events.
    PoolLent,
}

/// Logs `events` as fast as one thread can; keeps at most 50,000 in flight so none is dropped;
/// events/s = events / (first call until the broker acknowledged the last).
#[allow(clippy::needless_borrows_for_generic_args)] // lending is what BuiltLent measures
fn throughput(producer: &Producer, args: &Args, source: Source, first: u64) -> (f64, u64) {
    let time_ms = now_ms();
    let pool: Vec<PredictionEvent> = match source {
        Source::PoolLent => (0..1000).map(|i| realistic_prediction(first + i, time_ms)).collect(),
        _ => Vec::new(),
    };
    let mut queue_full = 0;
    let started = Instant::now();
    for i in 0..args.events {
        if i % 1024 == 0 {
            while producer.in_flight() > 50_000 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let result = match source {
            Source::BuiltMoved => producer.log_prediction(realistic_prediction(first + i, time_ms)),
            Source::BuiltLent => producer.log_prediction(&realistic_prediction(first + i, time_ms)),
            Source::PoolLent => producer.log_prediction(&pool[(i % 1000) as usize]),
        };
        match result {
            Ok(()) => {}
            Err(SdkError::QueueFull { .. }) => queue_full += 1,
            Err(error) => panic!("{error}"),
        }
    }
    producer.flush(Duration::from_secs(300)).expect("all delivered");
    (args.events as f64 / started.elapsed().as_secs_f64(), queue_full)
}

fn main() {
    let args = args();
    let topic = format!("bench.sdk-load.{}.{}", std::process::id(), now_ms());
    let producer = producer(&args, &topic);
    println!("rust sdk load test: topic {topic}, load average at start {}", load_average());

    // Warm-up: connection, metadata, allocator.
    for i in 0..20_000 {
        producer.log_prediction(realistic_prediction(u64::MAX - i, now_ms())).unwrap();
    }
    producer.flush(Duration::from_secs(60)).expect("the broker answers (deploy/local/up)");
    let calibration = {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for _ in 0..100_000 {
            let t0 = Instant::now();
            h.saturating_record(t0.elapsed().as_nanos() as u64);
        }
        h
    };
    println!(
        "timer overhead (Instant pair, included in each figure below): median {} ns, p99 {} ns",
        calibration.value_at_quantile(0.5),
        calibration.value_at_quantile(0.99)
    );

    let per_call_phases = if args.only.is_some() {
        &[][..]
    } else {
        &[("log_prediction(event) [moved]", false), ("log_prediction(&event) [lent]", true)][..]
    };
    for &(name, borrowed) in per_call_phases {
        let before = thread_cpu(args.broker_pid);
        let h = per_call(&producer, &args, borrowed, if borrowed { args.calls } else { 0 });
        producer.flush(Duration::from_secs(60)).unwrap();
        report(&format!("{name} at {} calls/s", args.rate), &h);
        println!("  cpu: {}", cpu_delta(&before, &thread_cpu(args.broker_pid)));
    }

    let sources = [
        ("built per call, moved", Source::BuiltMoved),
        ("built per call, lent", Source::BuiltLent),
        ("lent from 1,000 prebuilt", Source::PoolLent),
    ];
    for (n, (name, source)) in sources.into_iter().enumerate() {
        if args.only.as_ref().is_some_and(|only| !name.contains(only.as_str())) {
            continue;
        }
        let before = thread_cpu(args.broker_pid);
        let (rate, queue_full) =
            throughput(&producer, &args, source, 2 * args.calls + n as u64 * args.events);
        println!("throughput, events {name}: {} events, all delivered, at {rate:.0} events/s; queue-full drops {queue_full}", args.events);
        println!("  cpu: {}", cpu_delta(&before, &thread_cpu(args.broker_pid)));
    }
    let stats = producer.stats();
    println!("stats: {stats:?}; load average at end {}", load_average());
    producer.close(Duration::from_secs(10));
    delete_topics(&args.brokers, &[&topic]);
}
