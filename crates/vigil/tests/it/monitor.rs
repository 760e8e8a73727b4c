use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use vigil_events::{encode, PredictionEvent, MAGIC};
use vigil_loadgen::{LoadSpec, Synthetic};
use vigil_sdk::{Producer, SdkConfig};

use crate::harness::{self, await_port, terminate, TestEnv};

pub fn sdk(env: &TestEnv) -> Producer {
    let mut config = SdkConfig::new(harness::brokers());
    config.predictions_topic = env.predictions.clone();
    config.outcomes_topic = env.outcomes.clone();
    Producer::new(config).unwrap()
}

pub fn generator(seed: u64) -> Synthetic {
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
        // Spread over three one-minute windows; in the third, feature f05 shifts by 3 sd.
        let mut event = generator.next_prediction(now + (i as i64 % 3) * 60_000);
        if i % 3 == 2 {
            *event.numeric_features.get_mut("f05").unwrap() += 3.0;
        }
        *expected.entry((event.model_id.clone(), event.model_version.clone())).or_default() += 1;
        producer.log_prediction(&event).unwrap();
    }
    // One event per model ten minutes later moves each partition's event time past the three
    // windows (plus the 300 s allowed lateness the harness sets), so they close.
    for model in expected.keys().map(|(m, _)| m.clone()).collect::<std::collections::BTreeSet<_>>() {
        let mut event = generator.next_prediction(now + 600_000);
        event.model_id = model;
        producer.log_prediction(&event).unwrap();
    }
    let clock_events = 4;
    let bad = malformed_messages();
    let raw = env.raw_producer();
    for (_, payload) in &bad {
        env.send_raw(&raw, "model-1", payload).await;
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.stats().delivered, N + clock_events);

    env.await_stored_exactly(N + clock_events, Duration::from_secs(60)).await;
    let totals: Vec<_> = env
        .store()
        .window_count_totals()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.window_start < 1_764_000_600)
        .collect();
    let mut stored: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_country: BTreeMap<(String, String), u64> = BTreeMap::new();
    for t in &totals {
        let per = if t.segment.is_empty() { &mut stored } else { &mut by_country };
        *per.entry((t.model_id.clone(), t.model_version.clone())).or_default() += t.events;
        assert!(t.segment.is_empty() || t.segment.starts_with("country="), "{t:?}");
    }
    assert_eq!(stored, expected, "per model and version");
    assert_eq!(by_country, expected, "every event is also in exactly one country segment");
    let countries: std::collections::BTreeSet<&str> =
        totals.iter().map(|t| t.segment.as_str()).filter(|s| !s.is_empty()).collect();
    assert_eq!(countries.len(), 4, "{countries:?}");
    assert_eq!(expected.len(), 12, "the traffic covered 4 models x 3 versions");
    let windows: std::collections::BTreeSet<u32> = totals.iter().map(|t| t.window_start).collect();
    let state = env.store().partials_of("model-1", "v1", "", *windows.iter().next().unwrap()).await.unwrap();
    assert!(!state.is_empty());
    let merged = state.iter().fold(vigil_monitor::WindowState::default(), |mut acc, p| {
        acc.merge(&vigil_monitor::WindowState::decode(&p.state).unwrap()).unwrap();
        acc
    });
    assert_eq!(merged.events, state.iter().map(|p| p.events).sum::<u64>());
    assert_eq!(merged.numeric.len(), 20, "20 numeric features summarised");
    assert_eq!(merged.latency_us.as_ref().unwrap().count(), merged.events, "every event had a latency");
    assert_eq!(windows.len(), 3, "three one-minute windows: {windows:?}");

    // The three windows closed: one metrics row per (model, version, segment), matching the counts.
    let store = env.store();
    let started = std::time::Instant::now();
    let closed = loop {
        let rows: Vec<_> = store
            .window_metrics()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.window_start < 1_764_000_600)
            .collect();
        if rows.len() == totals.len() || started.elapsed() > Duration::from_secs(30) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let closed_counts: BTreeMap<(String, String, String, u32), u64> = closed
        .iter()
        .map(|r| ((r.model_id.clone(), r.model_version.clone(), r.segment.clone(), r.window_start), r.events))
        .collect();
    let stored_counts: BTreeMap<(String, String, String, u32), u64> = totals
        .iter()
        .map(|t| ((t.model_id.clone(), t.model_version.clone(), t.segment.clone(), t.window_start), t.events))
        .collect();
    assert_eq!(closed_counts, stored_counts, "every window closed with its stored count");
    for row in closed.iter().filter(|r| r.segment.is_empty()) {
        let [p50, p99] = [row.latency_p50_ms.unwrap(), row.latency_p99_ms.unwrap()];
        assert!(
            (1.0..=5.1).contains(&p50) && p50 <= p99 && p99 <= 5.1,
            "loadgen latencies are 1-5 ms: {row:?}"
        );
        assert!(row.score_mean.is_some_and(|m| (0.3..0.7).contains(&m)), "{row:?}");
        assert_eq!(row.late_events, 0);
        assert_eq!(row.config_hash.len(), 16);
    }

    let letters = env.dead_letters(bad.len(), Duration::from_secs(30));
    assert_eq!(letters.len(), bad.len(), "dead letters");
    let mut want: Vec<(String, Vec<u8>)> = bad.iter().map(|(r, p)| (r.to_string(), p.clone())).collect();
    let mut got = letters;
    want.sort();
    got.sort();
    assert_eq!(got, want, "each dead letter keeps its original bytes and names its reason");

    let metrics = env.metrics_text().await;
    assert!(
        metrics.contains(&format!("vigil_monitor_events_decoded_total {}", N + clock_events)),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_monitor_deadlettered_total{reason=\"not_avro\"} 5"), "{metrics}");
    assert!(metrics.contains("vigil_monitor_deadlettered_total{reason=\"unknown_schema\"} 4"), "{metrics}");

    // Drift: window 0 became each version's baseline; windows 1 and 2 were tested against it,
    // every feature in every segment, and only the shifted feature drifted in window 2.
    let drift = store.feature_drift().await.unwrap();
    let (w0, w2) = (1_764_000_000, 1_764_000_120);
    let tested_keys = totals.iter().filter(|t| t.window_start != w0).count();
    assert_eq!(
        drift.len(),
        tested_keys * 21,
        "20 numeric features and `device` per tested (model, version, segment, window)"
    );
    for row in drift.iter().filter(|r| r.segment.is_empty()) {
        assert!(row.reference_id.ends_with(&format!(":{w0}")), "{row:?}");
        if row.feature == "device" {
            assert!(["chi_square_2samp", "jensen_shannon"].contains(&row.test.as_str()), "{row:?}");
        } else if row.feature == "f05" && row.window_start == w2 {
            assert!(row.drifted == 1 && row.statistic > 0.5, "the shifted feature drifts: {row:?}");
        } else {
            assert!(row.statistic < 0.3, "unshifted features stay close to the baseline: {row:?}");
        }
    }
    let shifted_drifted = drift
        .iter()
        .filter(|r| r.feature == "f05" && r.window_start == w2 && r.segment.is_empty() && r.drifted == 1)
        .count();
    assert_eq!(shifted_drifted, 12, "all 4 models x 3 versions");

    // The drift policy (Bonferroni-corrected, one window needed in tests) breached in window 2
    // for every model version and sent one remediation each, with the shifted feature as evidence.
    let checks = store.policy_checks().await.unwrap();
    let breaches: Vec<_> =
        checks.iter().filter(|c| c.window_start == w2 && c.policy == "feature_drift").collect();
    assert_eq!(breaches.len(), 12);
    // No outcomes in this test: every performance check is insufficient data, and no latency
    // budget is set, so there are no latency checks.
    assert!(
        checks
            .iter()
            .filter(|c| c.policy != "feature_drift")
            .all(|c| c.policy == "performance" && c.verdict == "insufficient_data"),
        "{checks:?}"
    );
    assert!(
        breaches
            .iter()
            .all(|c| c.verdict == "breach" && c.detail.contains("f05") && !c.remediation_id.is_empty()),
        "{breaches:?}"
    );
    let payloads = env.remediation_payloads(12, Duration::from_secs(30));
    let remediations: Vec<vigil_events::RemediationEvent> =
        payloads.iter().map(|p| vigil_events::decode(p).expect("a valid RemediationEvent")).collect();
    let in_window_2: Vec<_> =
        remediations.iter().filter(|r| r.window_start_ms == i64::from(w2) * 1000).collect();
    assert_eq!(in_window_2.len(), 12, "one remediation per model version");
    for r in &in_window_2 {
        assert!(r.evidence.iter().any(|e| e.feature.as_deref() == Some("f05")), "{r:?}");
        assert!(
            breaches.iter().any(|c| c.remediation_id == r.remediation_id),
            "stored check names the remediation"
        );
    }

    // Latest values as Prometheus gauges, and how long closes took.
    let metrics = env.metrics_text().await;
    for model in ["model-1", "model-2", "model-3", "model-4"] {
        let breach = format!(
            "vigil_monitor_latest_breach{{model=\"{model}\",policy=\"feature_drift\",version=\"v1\"}} 1"
        );
        assert!(metrics.contains(&breach), "{breach} in {metrics}");
    }
    assert!(
        metrics.contains("vigil_monitor_latest_window_events{model=\"model-1\",version=\"v2\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_monitor_window_close_latency_seconds_count"), "{metrics}");

    // `vigil status` shows each model version's latest closed window with its drift and verdict
    // (21 features tested: 20 numeric and `device`).
    let status = env
        .vigil_command(&["status", "--registry-timeout", "5s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("model-")).collect();
    assert_eq!(lines.len(), 12, "{text}");
    assert!(
        lines.iter().all(|l| l.contains("breach") && l.contains("/21")),
        "window 2 breached everywhere: {text}"
    );

    // A late event for a closed window counts, and the window is closed again with it.
    let first = closed
        .iter()
        .find(|r| r.segment.is_empty() && r.window_start == 1_764_000_000)
        .expect("window 0 closed")
        .clone();
    let mut late = generator.next_prediction(now + 1_000);
    late.model_id = first.model_id.clone();
    late.model_version = first.model_version.clone();
    producer.log_prediction(&late).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let started = std::time::Instant::now();
    let reclosed = loop {
        let row = store.window_metrics().await.unwrap().into_iter().find(|r| {
            (r.model_id.as_str(), r.model_version.as_str(), r.segment.as_str(), r.window_start)
                == (first.model_id.as_str(), first.model_version.as_str(), "", first.window_start)
        });
        if row.as_ref().is_some_and(|r| r.events > first.events)
            || started.elapsed() > Duration::from_secs(30)
        {
            break row.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!((reclosed.events, reclosed.late_events), (first.events + 1, 1), "{reclosed:?}");

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
        let spec = LoadSpec {
            rate: 6_000,
            duration: Duration::from_secs(120),
            max_events: Some(N),
            progress_every: Duration::from_secs(60),
            drift_after: None,
        };
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
    assert!(
        skipped >= at_kill,
        "the restarted monitor skipped {skipped} already-stored messages, expected at least {at_kill}"
    );

    let status = terminate(&mut restarted, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn positions_stored_past_the_end_of_a_recreated_topic_stop_the_monitor_with_the_fix() {
    let env = TestEnv::new("recreated");
    let migrate = env.vigil_command(&["migrate"]).status().expect("vigil runs");
    assert!(migrate.success());
    // What a monitor stored before the topic was deleted and created again: positions far
    // past the new, empty topic's end.
    let stale: Vec<vigil_store::WindowPartialRow> = (0..4)
        .map(|partition| vigil_store::WindowPartialRow {
            model_id: String::new(),
            model_version: String::new(),
            segment: String::new(),
            window_start: 0,
            window_seconds: 60,
            events: 0,
            state: Vec::new(),
            source_topic: env.predictions.clone(),
            source_partition: partition,
            source_end_offset: 250_000,
            written_at: 0,
        })
        .collect();
    env.store().insert_window_partials(&stale).await.unwrap();

    let mut command = env.vigil_command(&["monitor"]);
    command.stderr(std::process::Stdio::piped());
    let monitor = command.spawn().expect("vigil binary starts");
    await_port(env.http_port, Duration::from_secs(60)).await;
    let producer = sdk(&env);
    producer.log_prediction(generator(3).next_prediction(1_764_000_000_000)).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let output = tokio::task::spawn_blocking(move || monitor.wait_with_output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the monitor must stop rather than skip the new topic's messages");
    assert!(
        stderr.contains("topics.predictions")
            && stderr.contains("stored position of 250000")
            && stderr.contains("clickhouse.database"),
        "{stderr}"
    );
    env.cleanup().await;
}

/// Dead letters with all their headers, read from the start of `env`'s dead-letter topic.
fn dead_letters_with_headers(env: &TestEnv, expected: usize) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", harness::brokers())
        .set("group.id", format!("{}-dlq-headers", env.group))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.deadletter]).unwrap();
    let started = std::time::Instant::now();
    let mut letters = Vec::new();
    while letters.len() < expected && started.elapsed() < Duration::from_secs(60) {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into())
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push((headers, message.payload().unwrap_or_default().to_vec()));
        }
    }
    letters
}

/// One message too large to copy to the dead-letter topic, one over `monitor.max_event_bytes`
/// and one prediction dated 2105 used to stop the monitor or poison their partition's clock
/// (every later event late). Now each is dead-lettered and the traffic after them counts, on
/// time.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_far_future_messages_are_dead_lettered_and_monitoring_goes_on() {
    let env = TestEnv::new("door");
    let mut monitor = env.spawn_monitor_with(&[("VIGIL__MONITOR__MAX_EVENT_BYTES", "200000")]);
    await_port(env.http_port, Duration::from_secs(60)).await;

    // All on model-1's partition (keyed by model id), ahead of the traffic.
    let raw: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", harness::brokers())
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut noise = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..1_010_000)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            noise as u8
        })
        .collect();
    env.send_raw(&raw, "model-1", &random).await;
    let mut generator = generator(5);
    let mut bloated = generator.next_prediction(1_764_000_000_000);
    bloated.model_id = "model-1".into();
    bloated.prediction_id = "x".repeat(300_000);
    let bloated = encode(&bloated);
    env.send_raw(&raw, "model-1", &bloated).await;
    let mut future = generator.next_prediction(4_260_000_000_000);
    future.model_id = "model-1".into();
    let future = encode(&future);
    env.send_raw(&raw, "model-1", &future).await;

    const N: u64 = 400;
    let producer = sdk(&env);
    for _ in 0..N {
        producer.log_prediction(generator.next_prediction(1_764_000_000_000)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    env.await_stored_exactly(N, Duration::from_secs(60)).await;

    let mut letters = dead_letters_with_headers(&env, 3);
    letters.sort_by_key(|(h, _)| h.get("vigil.source.offset").cloned());
    assert_eq!(letters.len(), 3, "{:?}", letters.iter().map(|(h, _)| h).collect::<Vec<_>>());
    let reasons: Vec<&str> = letters.iter().map(|(h, _)| h["vigil.reason"].as_str()).collect();
    assert_eq!(reasons, ["too_large", "too_large", "event_time_ahead"]);
    // 1,010,000 bytes exceed the producer's 1,000,000: sent by reference.
    let (reference, payload) = &letters[0];
    assert!(payload.is_empty(), "no payload in a reference");
    assert_eq!(reference["vigil.source.size"], "1010000");
    assert_eq!(reference["vigil.source.topic"], env.predictions);
    assert!(reference["vigil.payload"].starts_with("omitted"), "{reference:?}");
    // The others fit and keep their bytes.
    assert_eq!(letters[1].1, bloated);
    assert!(letters[1].0["vigil.error"].contains("monitor.max_event_bytes"), "{:?}", letters[1].0);
    assert_eq!(letters[2].1, future);

    let metrics = env.metrics_text().await;
    assert!(metrics.contains("vigil_monitor_late_events_total 0"), "nothing counted late: {metrics}");
    assert!(metrics.contains("vigil_monitor_deadlettered_total{reason=\"event_time_ahead\"} 1"), "{metrics}");
    assert!(monitor.try_wait().unwrap().is_none(), "the monitor still runs");
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    env.cleanup().await;
}
