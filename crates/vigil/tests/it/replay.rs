//! `vigil replay` over a monitor's own run, killed and restarted halfway: the closed windows
//! rebuilt from the topics match what ClickHouse stores (predictions, outcomes in either order,
//! late events, segments, drift against live baselines, each row against the reference it names
//! even after an upload took over); a tampered row is reported by table, key and column; an
//! exported file replays to the same result.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vigil_events::{OutcomeEvent, PredictionEvent};
use vigil_store::ReferenceRow;

use crate::harness::{await_port, terminate, TestEnv};
use crate::monitor::{generator, sdk};

const T0: i64 = 1_764_000_000_000;
const W1: u32 = 1_764_000_060;

/// `vigil replay <args>` for the test's topics and database: (exit code, stdout, stderr).
async fn replay(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = env.vigil_command(&[&["replay"], args].concat());
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output().expect("vigil runs")).await.unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (windows, identical, differing) from a table's summary line.
fn tally(stdout: &str, table: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no {table} line in\n{stdout}"));
    let n: Vec<u64> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// Every third prediction has no outcome; the outcomes of predictions `i % 3 == 1` go out before
/// their predictions.
fn outcome_for(i: usize, p: &PredictionEvent) -> Option<OutcomeEvent> {
    let predicted = p.prediction.label.clone().unwrap();
    let truth = if i.is_multiple_of(5) {
        if predicted == "1" {
            "0"
        } else {
            "1"
        }
    } else {
        predicted.as_str()
    };
    (!i.is_multiple_of(3)).then(|| OutcomeEvent {
        event_id: format!("o-{}", p.prediction_id),
        prediction_id: p.prediction_id.clone(),
        model_id: p.model_id.clone(),
        event_time_ms: p.event_time_ms + 20_000,
        label: Some(truth.to_owned()),
        value: None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_matches_the_stored_windows_and_reports_a_tampered_row() {
    let env = TestEnv::new("replay");
    // A new consumer group: no wait for the killed member's session to expire, and Kafka
    // redelivers everything, which the monitor skips up to its stored positions.
    let mut monitor = env.spawn_monitor_in_group(&format!("{}-restarted", env.group));
    await_port(env.http_port, Duration::from_secs(60)).await;
    let producer = sdk(&env);
    let mut generator = generator(47);

    // Two one-minute windows, ~100 predictions per version and window (live baselines need 50).
    const N: usize = 2_400;
    let predictions: Vec<PredictionEvent> =
        (0..N).map(|i| generator.next_prediction(T0 + (i as i64 % 2) * 60_000 + i as i64)).collect();
    let outcomes: Vec<(usize, OutcomeEvent)> =
        predictions.iter().enumerate().filter_map(|(i, p)| outcome_for(i, p).map(|o| (i, o))).collect();
    for (_, o) in outcomes.iter().filter(|(i, _)| i % 3 == 1) {
        producer.log_outcome(o).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // Half the predictions, then a SIGKILL and a restart: the rest goes to the restarted monitor,
    // which resumes from its stored positions with the outcome join rebuilt from the log.
    let (first_half, second_half) = predictions.split_at(N / 2);
    for p in first_half {
        producer.log_prediction(p).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    env.await_stored_exactly(first_half.len() as u64, Duration::from_secs(60)).await;
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let mut monitor = env.spawn_monitor();
    await_port(env.http_port, Duration::from_secs(60)).await;
    for p in second_half {
        producer.log_prediction(p).unwrap();
    }
    for (_, o) in outcomes.iter().filter(|(i, _)| i % 3 == 2) {
        producer.log_outcome(o).unwrap();
    }
    // One prediction per model ten minutes on closes both windows (300 s lateness in tests);
    // then one more per model for the first window: late, and it closes that window again.
    let models: BTreeSet<String> = predictions.iter().map(|p| p.model_id.clone()).collect();
    for at in [T0 + 600_000, T0 + 5_000] {
        for model in &models {
            let mut event = generator.next_prediction(at);
            event.model_id = model.clone();
            producer.log_prediction(&event).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    let late = models.len() as u64;
    env.await_stored_exactly(N as u64 + 2 * late, Duration::from_secs(60)).await;

    // Wait until every window is closed with its late event and its performance has every outcome.
    let store = env.store();
    let started = Instant::now();
    loop {
        let keys =
            store.window_count_totals().await.unwrap().into_iter().filter(|t| t.window_start <= W1).count();
        let metrics: Vec<_> =
            store.window_metrics().await.unwrap().into_iter().filter(|m| m.window_start <= W1).collect();
        let late_stored: u64 = metrics.iter().filter(|m| m.segment.is_empty()).map(|m| m.late_events).sum();
        let labeled: u64 = store
            .window_performance()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.segment.is_empty())
            .map(|p| p.labeled)
            .sum();
        if metrics.len() == keys && late_stored == late && labeled == outcomes.len() as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "windows not closed: {} of {keys} rows, {late_stored} late, {labeled} labeled",
            metrics.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    assert!(!store.feature_drift().await.unwrap().is_empty(), "drift against the live baselines was tested");

    // Untouched: every closed window rebuilds to what is stored.
    let started = Instant::now();
    let (code, stdout, stderr) = replay(&env, &[]).await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("identical"), "{stdout}");
    let stored_windows = store.window_metrics().await.unwrap().len() as u64;
    let (windows, identical, _) = tally(&stdout, "window_metrics");
    assert_eq!((windows, identical), (stored_windows, stored_windows), "{stdout}");
    let (drift_windows, _, _) = tally(&stdout, "feature_drift");
    assert!(drift_windows > 0 && tally(&stdout, "window_performance").0 == stored_windows, "{stdout}");
    assert!(stderr.contains(&format!("{} outcomes matched", outcomes.len())), "{stderr}");
    eprintln!("replay of {} messages took {took:?}", N + outcomes.len());

    // A reference uploaded after the windows closed is the one in use from now on; the stored
    // rows name the baseline they were computed against, and the replay uses that one.
    let other =
        store.reference("baseline:model-2:v1:1764000000").await.unwrap().expect("model-2 v1 has a baseline");
    let uploaded = ReferenceRow {
        model_id: "model-1".into(),
        model_version: "v1".into(),
        reference_id: format!("upload:model-1:v1:{}", other.content_hash),
        source: "replay test".into(),
        created_at: other.created_at + 1,
        ..other
    };
    store.insert_reference(&uploaded).await.unwrap();
    let in_use = store.references().await.unwrap();
    assert!(in_use.iter().any(|r| r.reference_id == uploaded.reference_id), "{in_use:?}");
    let (code, stdout, stderr) = replay(&env, &[]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    // A selection compares only its windows.
    let (code, stdout, stderr) =
        replay(&env, &["--model", "model-2", "--version", "v1", "--from", "2025-11-24T16:01:00Z"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let selected = store
        .window_metrics()
        .await
        .unwrap()
        .iter()
        .filter(|m| {
            (m.model_id.as_str(), m.model_version.as_str()) == ("model-2", "v1") && m.window_start >= W1
        })
        .count() as u64;
    assert!(selected > 0);
    assert_eq!(tally(&stdout, "window_metrics").0, selected, "{stdout}");

    // Tampered: a window_metrics row with another score mean, versioned above the real one.
    let mut row = store
        .window_metrics()
        .await
        .unwrap()
        .into_iter()
        .find(|m| {
            m.model_id == "model-1" && m.model_version == "v1" && m.segment.is_empty() && m.window_start == W1
        })
        .unwrap();
    row.score_mean = row.score_mean.map(|m| m + 0.25);
    row.events += 1;
    store.insert_window_metrics(&[row]).await.unwrap();
    let (code, tampered, stderr) = replay(&env, &[]).await;
    assert_eq!(code, Some(1), "{tampered}\n{stderr}");
    let line = tampered.lines().find(|l| l.contains("score_mean")).unwrap_or_else(|| panic!("{tampered}"));
    assert!(
        line.contains("window_metrics model-1/v1/(all) window 2025-11-24 16:01:00 (1764000060)"),
        "{line}"
    );
    assert!(
        tampered.lines().any(|l| l.contains("model-1/v1/(all)") && l.contains(" events: ")),
        "{tampered}"
    );
    assert_eq!(tally(&tampered, "window_metrics"), (stored_windows, stored_windows - 1, 1), "{tampered}");
    assert!(tampered.contains("differs: 1 of"), "{tampered}");

    // Exported, then replayed from the file: the same result.
    let file = std::env::temp_dir().join(format!("vigil-it-{}.log", env.name));
    let path = file.to_str().unwrap();
    let (code, stdout, stderr) = replay(&env, &["--export", path]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("exported {} messages", N + outcomes.len() + 2 * models.len())),
        "{stderr}"
    );
    let (code, from_file, stderr) = replay(&env, &["--input", path]).await;
    assert_eq!(code, Some(1), "{from_file}\n{stderr}");
    assert_eq!(from_file, tampered);
    let (code, _, stderr) = replay(&env, &["--input", "/nonexistent/vigil.log"]).await;
    assert_eq!(code, Some(2), "{stderr}");

    let _ = std::fs::remove_file(&file);
    env.cleanup().await;
}
