use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use vigil_events::{encode, PredictionEvent, MAGIC};
use vigil_loadgen::{LoadSpec, Synthetic};
use vigil_sdk::{Producer, SdkConfig};

use crate::harness::{self, await_port, terminate, TestEnv};

fn sdk(env: &TestEnv) -> Producer {
    let mut config = SdkConfig::new(harness::brokers());
    config.predictions_topic = env.predictions.clone();
    Producer::new(config).unwrap()
}

fn generator(seed: u64) -> Synthetic {
    let models = (1..=4).map(|i| format!("model-{i}")).collect();
    let versions = vec!["v1".into(), "v2".into(), "v3".into()];
    Synthetic::new(seed, models, versions, 20)
}

/// Every kind of bad input the monitor must dead-letter, with the reason it must give.
fn malformed_messages() -> Vec<(&'static str, Vec<u8>)> {
    let valid = PredictionEvent {
        prediction_id: "p-bad".into(),
        model_id: "model-1".into(),
        model_version: "v1".into(),
        event_time_ms: 1_764_000_000_000,
        ..Default::default()
    };
    let mut unknown_schema = encode(&valid);
    unknown_schema[2..10].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    let mut truncated = encode(&valid);
    truncated.truncate(truncated.len() - 4);
    let no_model = encode(&PredictionEvent { model_id: String::new(), ..valid.clone() });
    let mut messages = Vec::new();
    for i in 0..4 {
        messages.push(("not_avro", format!("{{\"model_id\": \"m\", \"n\": {i}}}").into_bytes()));
        messages.push(("unknown_schema", unknown_schema.clone()));
        messages.push(("missing_model_id", no_model.clone()));
        messages.push(("malformed", truncated.clone()));
    }
    messages.push(("not_avro", MAGIC.to_vec()));
    messages
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_every_valid_prediction_once_and_dead_letters_the_rest() {
    let env = TestEnv::new("counts");
    let mut monitor = env.spawn_monitor();
    await_port(env.http_port, Duration::from_secs(60)).await;

    const N: u64 = 5_000;
    let producer = sdk(&env);
    let mut generator = generator(11);
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let now = 1_764_000_000_000;
    for i in 0..N {
        // Spread over three one-minute windows.
        let event = generator.next_prediction(now + (i as i64 % 3) * 60_000);
        *expected.entry((event.model_id.clone(), event.model_version.clone())).or_default() += 1;
        producer.log_prediction(&event).unwrap();
    }
    let bad = malformed_messages();
    let raw = env.raw_producer();
    for (_, payload) in &bad {
        env.send_raw(&raw, "model-1", payload).await;
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.stats().delivered, N);

    env.await_stored_exactly(N, Duration::from_secs(60)).await;
    let totals = env.store().window_count_totals().await.unwrap();
    let mut stored: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_country: BTreeMap<(String, String), u64> = BTreeMap::new();
    for t in &totals {
        let per = if t.segment.is_empty() { &mut stored } else { &mut by_country };
        *per.entry((t.model_id.clone(), t.model_version.clone())).or_default() += t.events;
        assert!(t.segment.is_empty() || t.segment.starts_with("country="), "{t:?}");
    }
    assert_eq!(stored, expected, "per model and version");
    assert_eq!(by_country, expected, "every event is also in exactly one country segment");
    let countries: std::collections::BTreeSet<&str> = totals.iter().map(|t| t.segment.as_str()).filter(|s| !s.is_empty()).collect();
    assert_eq!(countries.len(), 4, "{countries:?}");
    assert_eq!(expected.len(), 12, "the traffic covered 4 models x 3 versions");
    let windows: std::collections::BTreeSet<u32> = totals.iter().map(|t| t.window_start).collect();
    let state = env.store().partials_of("model-1", "v1", "", *windows.iter().next().unwrap()).await.unwrap();
    assert!(!state.is_empty());
    let merged = state.iter().fold(vigil_monitor::WindowState::default(), |mut acc, p| {
        acc.merge(&serde_json::from_str(&p.state).unwrap()).unwrap();
        acc
    });
    assert_eq!(merged.events, state.iter().map(|p| p.events).sum::<u64>());
    assert_eq!(merged.numeric.len(), 20, "20 numeric features summarised");
    assert_eq!(merged.latency_us.as_ref().unwrap().count(), merged.events, "every event had a latency");
    assert_eq!(windows.len(), 3, "three one-minute windows: {windows:?}");

    let letters = env.dead_letters(bad.len(), Duration::from_secs(30));
    assert_eq!(letters.len(), bad.len(), "dead letters");
    let mut want: Vec<(String, Vec<u8>)> = bad.iter().map(|(r, p)| (r.to_string(), p.clone())).collect();
    let mut got = letters;
    want.sort();
    got.sort();
    assert_eq!(got, want, "each dead letter keeps its original bytes and names its reason");

    let metrics = env.metrics_text().await;
    assert!(metrics.contains(&format!("vigil_monitor_events_decoded_total {N}")), "{metrics}");
    assert!(metrics.contains("vigil_monitor_deadlettered_total{reason=\"not_avro\"} 5"), "{metrics}");
    assert!(metrics.contains("vigil_monitor_deadlettered_total{reason=\"unknown_schema\"} 4"), "{metrics}");

    let status = terminate(&mut monitor, Duration::from_secs(30));
    assert!(status.success(), "monitor exits cleanly on SIGTERM: {status}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitor_killed_mid_stream_and_restarted_neither_loses_nor_double_counts() {
    let env = TestEnv::new("sigkill");
    let mut monitor = env.spawn_monitor();
    await_port(env.http_port, Duration::from_secs(60)).await;

    const N: u64 = 30_000;
    let producer = sdk(&env);
    let sender = std::thread::spawn(move || {
        let spec = LoadSpec { rate: 6_000, duration: Duration::from_secs(120), max_events: Some(N), progress_every: Duration::from_secs(60) };
        vigil_loadgen::run(&producer, &mut generator(23), &spec, &AtomicBool::new(false)).unwrap()
    });

    // Kill once some counts are stored and more are in flight.
    let store = env.store();
    let started = std::time::Instant::now();
    while store.total_events().await.unwrap_or(0) < N / 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "monitor stored nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let at_kill = store.total_events().await.unwrap();
    assert!(at_kill < N, "the kill came mid-stream ({at_kill} of {N} stored)");

    // The restart joins a new consumer group, so Kafka redelivers everything from offset 0:
    // only the positions stored with the counts in ClickHouse stand between that and a double
    // count (the harsher case of a commit lost in the crash).
    let mut restarted = env.spawn_monitor_in_group(&format!("{}-after-kill", env.group));
    let report = tokio::task::spawn_blocking(move || sender.join().unwrap()).await.unwrap();
    assert_eq!(report.sent, N);
    env.await_stored_exactly(N, Duration::from_secs(90)).await;
    let metrics = env.metrics_text().await;
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_monitor_messages_skipped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(skipped >= at_kill, "the restarted monitor skipped {skipped} already-stored messages, expected at least {at_kill}");

    let status = terminate(&mut restarted, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}
