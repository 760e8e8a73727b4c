//! Sliding and per-model windows end to end: one model gets 3-minute windows sliding every
//! minute, the others the default 1-minute tumbling windows. Each stored window holds exactly the
//! predictions of the minutes it spans, policies judge each window once, and `vigil replay`
//! rebuilds every window identically from the topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{await_port, TestEnv};
use crate::monitor::{generator, sdk};

const T0: i64 = 1_764_000_000_000;
const MINUTE: u32 = 60;

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_sliding_windows_gets_each_window_from_its_minutes() {
    let env = TestEnv::new("windows");
    let config = std::env::temp_dir().join(format!("vigil-it-{}.toml", env.name));
    std::fs::write(&config, "[monitor.models.model-1]\nwindow_seconds = 180\nslide_seconds = 60\n").unwrap();
    let config_path = config.to_str().unwrap().to_owned();
    let mut monitor = env.spawn_monitor_with(&[("VIGIL_CONFIG", config_path.as_str())]);
    await_port(env.http_port, Duration::from_secs(60)).await;

    const N: u64 = 3_000;
    let producer = sdk(&env);
    let mut generator = generator(5);
    // Predictions per (model, version, minute).
    let mut per_minute: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    for i in 0..N {
        let minute = (i % 3) as i64;
        let event = generator.next_prediction(T0 + minute * 60_000 + (i as i64 % 50) * 1_000);
        let start = (T0 / 1000) as u32 + minute as u32 * MINUTE;
        *per_minute.entry((event.model_id.clone(), event.model_version.clone(), start)).or_default() += 1;
        producer.log_prediction(&event).unwrap();
    }
    // Ten minutes later, one event per model moves every partition's watermark past the windows.
    for model in 1..=4 {
        let mut event = generator.next_prediction(T0 + 600_000);
        event.model_id = format!("model-{model}");
        producer.log_prediction(&event).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    env.await_stored_exactly(N + 4, Duration::from_secs(60)).await;

    let t0 = (T0 / 1000) as u32;
    let expected_rows = {
        let versions = per_minute
            .keys()
            .map(|(m, v, _)| (m.clone(), v.clone()))
            .collect::<std::collections::BTreeSet<_>>();
        versions.iter().map(|(m, _)| if m == "model-1" { 5 } else { 3 }).sum::<usize>()
    };
    let store = env.store();
    let started = Instant::now();
    let rows = loop {
        let rows: Vec<_> = store
            .window_metrics()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.segment.is_empty() && r.window_start < t0 + 300)
            .collect();
        if rows.len() >= expected_rows || started.elapsed() > Duration::from_secs(60) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        rows.len(),
        expected_rows,
        "model-1: 5 sliding windows hold the 3 minutes; the others 3 tumbling: {rows:#?}"
    );
    for row in &rows {
        let length = if row.model_id == "model-1" { 3 * MINUTE } else { MINUTE };
        assert_eq!(row.window_seconds, length, "{row:?}");
        let want: u64 = per_minute
            .iter()
            .filter(|((m, v, minute), _)| {
                *m == row.model_id
                    && *v == row.model_version
                    && (row.window_start..row.window_start + length).contains(minute)
            })
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            row.events, want,
            "window [{}, +{length}) of {}/{}",
            row.window_start, row.model_id, row.model_version
        );
    }
    let sliding_starts: std::collections::BTreeSet<u32> =
        rows.iter().filter(|r| r.model_id == "model-1").map(|r| r.window_start).collect();
    assert_eq!(
        sliding_starts,
        (0..5).map(|k| t0 - 2 * MINUTE + k * MINUTE).collect(),
        "a window starts every minute"
    );

    // Each version's first window became its baseline; every later window was judged by the
    // drift policy against it.
    let checks: Vec<_> = store
        .policy_checks()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.model_id == "model-1" && c.policy == "feature_drift")
        .collect();
    for version in ["v1", "v2", "v3"] {
        let judged: Vec<u32> =
            checks.iter().filter(|c| c.model_version == version).map(|c| c.window_start).collect();
        assert_eq!(
            judged,
            sliding_starts.iter().skip(1).copied().collect::<Vec<_>>(),
            "{version}: {checks:#?}"
        );
        assert!(checks
            .iter()
            .filter(|c| c.model_version == version)
            .all(|c| c.reference_id == format!("baseline:model-1:{version}:{}", t0 - 2 * MINUTE)));
    }

    let _ = monitor.0.kill();
    let _ = monitor.0.wait();
    let mut replay = env.vigil_command(&["replay"]);
    replay
        .env("VIGIL_CONFIG", &config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || replay.output().expect("vigil runs")).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find(|l| l.starts_with("window_metrics")).unwrap_or_else(|| panic!("{stdout}"));
    let tally: Vec<u64> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    assert!(
        tally[0] >= expected_rows as u64 && tally[0] == tally[1] && tally[2] == 0,
        "every window rebuilt identically: {stdout}"
    );

    let _ = std::fs::remove_file(&config);
    env.cleanup().await;
}
