//! Delayed outcomes: joined to predictions in either order, attributed to the prediction's
//! window, updating closed windows idempotently, and still joined after a SIGKILL and restart
//! (the join is rebuilt from the log).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vigil_events::{OutcomeEvent, PredictionEvent};

use crate::harness::{await_port, terminate, TestEnv};
use crate::monitor::{generator, sdk};

const T0: i64 = 1_764_000_000_000;
const W0: u32 = 1_764_000_000;
const W1: u32 = 1_764_000_060;

/// Key of a window's overall numbers: (model, version, window start).
type Key = (String, String, u32);

/// What the stored window_performance rows must say, counted here by hand from what was sent.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    predictions: u64,
    labeled: u64,
    correct: u64,
}

/// Every third prediction never gets an outcome; every fifth outcome says the model was wrong,
/// and so does every outcome of model-1 v1 in the second window (its accuracy collapses).
fn outcome_for(i: usize, p: &PredictionEvent) -> Option<OutcomeEvent> {
    if i.is_multiple_of(3) {
        return None;
    }
    let predicted = p.prediction.label.clone().unwrap();
    let wrong = i.is_multiple_of(5) || (p.model_id == "model-1" && p.model_version == "v1" && i % 2 == 1);
    let truth = if wrong {
        if predicted == "1" {
            "0"
        } else {
            "1"
        }
    } else {
        predicted.as_str()
    };
    Some(OutcomeEvent {
        event_id: format!("o-{}", p.prediction_id),
        prediction_id: p.prediction_id.clone(),
        model_id: p.model_id.clone(),
        event_time_ms: p.event_time_ms + 30_000,
        label: Some(truth.to_owned()),
        value: None,
    })
}

async fn await_performance(
    env: &TestEnv,
    want: &BTreeMap<Key, Expected>,
    timeout: Duration,
) -> Vec<vigil_store::WindowPerformanceRow> {
    let store = env.store();
    let started = Instant::now();
    loop {
        let rows: Vec<_> =
            store.window_performance().await.unwrap().into_iter().filter(|r| r.window_start <= W1).collect();
        let got: BTreeMap<Key, Expected> = rows
            .iter()
            .filter(|r| r.segment.is_empty())
            .map(|r| {
                let correct = (r.accuracy.unwrap_or(0.0) * r.labeled as f64).round() as u64;
                (
                    (r.model_id.clone(), r.model_version.clone(), r.window_start),
                    Expected { predictions: r.predictions, labeled: r.labeled, correct },
                )
            })
            .collect();
        if &got == want {
            return rows;
        }
        assert!(
            started.elapsed() < timeout,
            "{}: window_performance\n got {got:#?}\nwant {want:#?}",
            env.name
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Rows of window_performance for the test's two windows (all segments).
async fn overall_and_segments(env: &TestEnv) -> usize {
    env.store().window_performance().await.unwrap().iter().filter(|r| r.window_start <= W1).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_join_in_either_order_update_closed_windows_and_survive_a_restart() {
    let env = TestEnv::new("outcomes");
    // About 40 outcomes per version and window: judge performance from 20, act on one breach.
    let settings = [
        ("VIGIL__MONITOR__PERFORMANCE_POLICY__MIN_LABELED", "20"),
        ("VIGIL__MONITOR__PERFORMANCE_POLICY__CONSECUTIVE_WINDOWS", "1"),
    ];
    let mut monitor = env.spawn_monitor_with(&settings);
    await_port(env.http_port, Duration::from_secs(60)).await;
    let producer = sdk(&env);
    let mut generator = generator(31);

    // Two one-minute windows of predictions; a third of the outcomes go out *before* their
    // predictions, the rest after, and those of predictions 1500.. are held back until the
    // windows have closed and the monitor has been killed and restarted.
    const N: usize = 3_000;
    let predictions: Vec<PredictionEvent> =
        (0..N).map(|i| generator.next_prediction(T0 + (i as i64 % 2) * 60_000 + i as i64)).collect();
    let outcomes: Vec<(usize, OutcomeEvent)> =
        predictions.iter().enumerate().filter_map(|(i, p)| outcome_for(i, p).map(|o| (i, o))).collect();
    let mut expected: BTreeMap<Key, Expected> = BTreeMap::new();
    let mut expected_now: BTreeMap<Key, Expected> = BTreeMap::new();
    for (i, p) in predictions.iter().enumerate() {
        let window = if i % 2 == 0 { W0 } else { W1 };
        let key = (p.model_id.clone(), p.model_version.clone(), window);
        for (map, counted) in [(&mut expected, true), (&mut expected_now, i < 1_500)] {
            let e = map.entry(key.clone()).or_default();
            e.predictions += 1;
            if let (Some(o), true) = (outcome_for(i, p), counted) {
                e.labeled += 1;
                e.correct += u64::from(o.label == p.prediction.label);
            }
        }
    }

    for (i, o) in outcomes.iter().filter(|(i, _)| i % 3 == 1 && *i < 1_500) {
        assert!(*i < N);
        producer.log_outcome(o).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    for p in &predictions {
        producer.log_prediction(p).unwrap();
    }
    for (_, o) in outcomes.iter().filter(|(i, _)| i % 3 == 2 && *i < 1_500) {
        producer.log_outcome(o).unwrap();
    }
    // One prediction per model ten minutes on closes both windows (300 s lateness in tests).
    let models: std::collections::BTreeSet<String> = predictions.iter().map(|p| p.model_id.clone()).collect();
    for model in &models {
        let mut clock = generator.next_prediction(T0 + 600_000);
        clock.model_id = model.clone();
        producer.log_prediction(&clock).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let rows = await_performance(&env, &expected_now, Duration::from_secs(60)).await;
    // Segments split the same outcomes by country.
    let by_country: u64 = rows.iter().filter(|r| r.segment.starts_with("country=")).map(|r| r.labeled).sum();
    let overall: u64 = rows.iter().filter(|r| r.segment.is_empty()).map(|r| r.labeled).sum();
    assert_eq!(by_country, overall);
    for r in rows.iter().filter(|r| r.segment.is_empty()) {
        assert!((r.coverage - r.labeled as f64 / r.predictions as f64).abs() < 1e-12, "{r:?}");
        assert!(r.auc.is_some_and(|a| (0.0..=1.0).contains(&a)) && r.brier.is_some(), "{r:?}");
        assert_eq!((r.mae, r.rmse), (None, None), "a classifier has no regression errors");
        assert_eq!(r.revision, r.predictions + r.labeled);
    }
    // A window's performance row is written just before its metrics row: wait for the latter.
    let started = Instant::now();
    let metrics_before = loop {
        let rows: Vec<_> = env
            .store()
            .window_metrics()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.window_start <= W1)
            .collect();
        if rows.len() >= overall_and_segments(&env).await || started.elapsed() > Duration::from_secs(30) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // SIGKILL, restart in the same group, then the held-back outcomes: their predictions were
    // stored before the kill, so only the rebuilt join can still match them.
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let mut restarted = env.spawn_monitor_with(&settings);
    await_port(env.http_port, Duration::from_secs(60)).await;
    for (_, o) in outcomes.iter().filter(|(i, _)| *i >= 1_500) {
        producer.log_outcome(o).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let rows = await_performance(&env, &expected, Duration::from_secs(90)).await;
    let overall: Vec<_> = rows.iter().filter(|r| r.segment.is_empty()).collect();
    assert!(!overall.is_empty());

    // Outcomes change only performance: the windows' prediction metrics stand.
    let metrics_after: Vec<_> =
        env.store().window_metrics().await.unwrap().into_iter().filter(|r| r.window_start <= W1).collect();
    let events = |rows: &[vigil_store::WindowMetricsRow]| -> BTreeMap<(String, String, String, u32), u64> {
        rows.iter()
            .map(|r| {
                ((r.model_id.clone(), r.model_version.clone(), r.segment.clone(), r.window_start), r.events)
            })
            .collect()
    };
    assert_eq!(events(&metrics_after), events(&metrics_before));

    // The performance policy: model-1 v1's second window fell far below its baseline window's
    // accuracy (a breach, with a remediation); every other judged window is healthy. Each window
    // was judged once, before or after the restart.
    let checks: Vec<_> = env
        .store()
        .policy_checks()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.policy == "performance")
        .collect();
    let judged: Vec<_> = checks.iter().filter(|c| c.verdict != "insufficient_data").collect();
    assert!(judged.len() >= 12, "{checks:#?}");
    for c in &judged {
        let collapsed =
            (c.model_id.as_str(), c.model_version.as_str(), c.window_start) == ("model-1", "v1", W1);
        assert_eq!(c.verdict, if collapsed { "breach" } else { "healthy" }, "{c:?}");
        assert_eq!(c.remediation_id.is_empty(), !collapsed, "{c:?}");
    }
    let payloads = env.remediation_payloads(1, Duration::from_secs(30));
    let performance: Vec<vigil_events::RemediationEvent> = payloads
        .iter()
        .map(|p| vigil_events::decode(p).unwrap())
        .filter(|r: &vigil_events::RemediationEvent| r.policy == "performance")
        .collect();
    assert_eq!(performance.len(), 1, "one remediation, not one per restart: {performance:?}");
    assert_eq!(performance[0].evidence[0].metric, "performance.accuracy_drop");
    assert!(performance[0].evidence[0].value > 0.5, "{:?}", performance[0]);

    let metrics = env.metrics_text().await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let held_back = outcomes.iter().filter(|(i, _)| *i >= 1_500).count() as u64;
    assert_eq!(value("vigil_monitor_outcomes_matched_total"), held_back, "{metrics}");
    assert_eq!(value("vigil_monitor_join_waiting_outcomes"), 0, "{metrics}");
    assert!(metrics.contains("vigil_monitor_latest_accuracy{model=\"model-2\",version=\"v1\"}"), "{metrics}");
    assert!(
        metrics.contains(
            "vigil_monitor_latest_breach{model=\"model-1\",policy=\"performance\",version=\"v1\"} 1"
        ),
        "{metrics}"
    );

    let status = terminate(&mut restarted, Duration::from_secs(30));
    assert!(status.success(), "{status}");

    // A late outcome whose flush landed just before a crash, before the close that would have
    // followed: a partial of model-2 v1's first window written after its last close. The next
    // start closes that window again, and its performance counts the outcome.
    let store = env.store();
    let row = store
        .window_performance()
        .await
        .unwrap()
        .into_iter()
        .find(|r| {
            (r.model_id.as_str(), r.model_version.as_str(), r.segment.as_str(), r.window_start)
                == ("model-2", "v1", "", W0)
        })
        .unwrap();
    let partition = store
        .window_metrics()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.model_id == "model-2")
        .unwrap()
        .source_partition;
    let position = store.stored_positions(&env.outcomes).await.unwrap()[&partition];
    let mut late = vigil_monitor::WindowState::default();
    let predicted = vigil_monitor::Predicted { label: Some("1".into()), score: Some(0.9), value: None };
    late.add_outcome(&predicted, &vigil_monitor::Observed { label: Some("1".into()), value: None }, "1");
    let written_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32 + 1;
    store
        .insert_window_partials(&[vigil_store::WindowPartialRow {
            model_id: "model-2".into(),
            model_version: "v1".into(),
            segment: String::new(),
            window_start: W0,
            window_seconds: 60,
            events: 0,
            state: late.encode().unwrap(),
            source_topic: env.outcomes.clone(),
            source_partition: partition,
            source_end_offset: position,
            written_at,
        }])
        .await
        .unwrap();
    let mut again = env.spawn_monitor_with(&settings);
    await_port(env.http_port, Duration::from_secs(60)).await;
    // The restarted clock needs an event on the partition to move.
    let mut clock = generator.next_prediction(T0 + 601_000);
    clock.model_id = "model-2".into();
    producer.log_prediction(&clock).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let started = Instant::now();
    loop {
        let now = store
            .window_performance()
            .await
            .unwrap()
            .into_iter()
            .find(|r| {
                (r.model_id.as_str(), r.model_version.as_str(), r.segment.as_str(), r.window_start)
                    == ("model-2", "v1", "", W0)
            })
            .unwrap();
        if now.labeled == row.labeled + 1 {
            assert_eq!(now.predictions, row.predictions);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the window was not closed again: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = terminate(&mut again, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}
