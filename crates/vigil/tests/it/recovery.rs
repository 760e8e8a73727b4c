//! The monitor keeps going: a quiet model's windows close and its silence breaches without any
//! further message, a refused policy-check insert is retried to exactly one row and one
//! remediation, and a SIGKILLed monitor with a stable instance id consumes again within seconds.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_loadgen::LoadSpec;

use crate::harness::{await_port, terminate, TestEnv};
use crate::monitor::{generator, sdk};

/// 100 ms into the current 5 s window: 200 events a millisecond apart stay in one window.
fn window_start_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    now - now % 5_000 + 100
}

async fn query(env: &TestEnv, sql: &str) -> String {
    // The test's tables are named without their database: qualify the ones queried here.
    let sql = sql
        .replace("FROM window_metrics", &format!("FROM {}.window_metrics", env.database))
        .replace("FROM policy_checks", &format!("FROM {}.policy_checks", env.database))
        .replace("TABLE policy_checks", &format!("TABLE {}.policy_checks", env.database));
    crate::exactly_once::query(&sql).await.unwrap_or_else(|e| panic!("{}: {e}", env.name)).trim().to_owned()
}

async fn await_query(env: &TestEnv, sql: &str, want: &str, timeout: Duration) {
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < timeout {
        seen = query(env, sql).await;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{}: {sql} gave {seen:?}, expected {want:?} within {timeout:?}", env.name);
}

async fn metric(env: &TestEnv, name: &str) -> f64 {
    env.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Short windows closed by the wall clock: 5 s windows, 1 s lateness, a partition quiet for
/// 1 s of wall clock keeps pace with it.
const QUICK_WINDOWS: [(&str, &str); 4] = [
    ("VIGIL__MONITOR__WINDOW_SECONDS", "5"),
    ("VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS", "1"),
    ("VIGIL__MONITOR__IDLE_TIMEOUT_SECONDS", "1"),
    ("VIGIL__MONITOR__BASELINE_MIN_EVENTS", "1000000"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_models_last_window_closes_and_its_silence_breaches_without_another_message() {
    let env = TestEnv::new("quiet");
    let mut settings = QUICK_WINDOWS.to_vec();
    settings.push(("VIGIL__MONITOR__NO_TRAFFIC_POLICY__WINDOWS", "2"));
    let mut monitor = env.spawn_monitor_with(&settings);
    await_port(env.http_port, Duration::from_secs(60)).await;

    // 200 predictions of one model in the current 5 s window, then nothing at all.
    let producer = sdk(&env);
    let mut generator = generator(3);
    let start = window_start_ms();
    for i in 0..200 {
        let mut event = generator.next_prediction(start + i);
        event.model_id = "quiet-model".into();
        event.model_version = "v1".into();
        producer.log_prediction(&event).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    env.await_stored_exactly(200, Duration::from_secs(30)).await;

    // No other message reaches the topic: the window closes on the wall clock...
    await_query(
        &env,
        "SELECT toString(sum(events)) FROM window_metrics FINAL WHERE model_id = 'quiet-model' AND segment = ''",
        "200",
        Duration::from_secs(30),
    )
    .await;
    // ...and two silent windows later the version breaches no_traffic, once, with a remediation.
    await_query(
        &env,
        "SELECT toString(count()) FROM policy_checks FINAL WHERE model_id = 'quiet-model' AND policy = 'no_traffic' AND verdict = 'breach'",
        "1",
        Duration::from_secs(40),
    )
    .await;
    let remediations = env.remediation_payloads(1, Duration::from_secs(20));
    assert_eq!(remediations.len(), 1, "one no_traffic remediation");
    let event: vigil_events::RemediationEvent = vigil_events::decode(&remediations[0]).unwrap();
    assert_eq!((event.model_id.as_str(), event.policy.as_str()), ("quiet-model", "no_traffic"));
    // More silence does not breach again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        query(&env, "SELECT toString(count()) FROM policy_checks FINAL WHERE policy = 'no_traffic'").await,
        "1"
    );
    let status = terminate(&mut monitor, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_policy_check_insert_is_retried_to_one_row_and_one_remediation() {
    let env = TestEnv::new("refused");
    let mut settings = QUICK_WINDOWS.to_vec();
    // Every window with 50 events breaches the latency budget at once.
    settings.extend([
        ("VIGIL__MONITOR__LATENCY_POLICY__MAX_P99_MS", "0.001"),
        ("VIGIL__MONITOR__LATENCY_POLICY__MIN_EVENTS", "50"),
        ("VIGIL__MONITOR__LATENCY_POLICY__CONSECUTIVE_WINDOWS", "1"),
    ]);
    // The window closes 6 s of wall clock after its last event: time to take the table away.
    settings.retain(|(key, _)| *key != "VIGIL__MONITOR__IDLE_TIMEOUT_SECONDS");
    settings.push(("VIGIL__MONITOR__IDLE_TIMEOUT_SECONDS", "5"));
    let mut monitor = env.spawn_monitor_with(&settings);
    await_port(env.http_port, Duration::from_secs(60)).await;

    let producer = sdk(&env);
    let mut generator = generator(4);
    let start = window_start_ms();
    for i in 0..200 {
        let mut event = generator.next_prediction(start + i);
        event.model_id = "slow-model".into();
        event.model_version = "v1".into();
        producer.log_prediction(&event).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let store = env.store();
    let started = Instant::now();
    while store.total_events().await.unwrap_or(0) < 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "the monitor stored nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Counted and not closed yet; with the table detached every insert into it fails.
    query(&env, "DETACH TABLE policy_checks").await;

    // Closing fails while the table is away, and keeps retrying.
    let started = Instant::now();
    while metric(&env, "vigil_monitor_window_close_errors_total").await < 2.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "closing never failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        env.remediation_payloads(0, Duration::from_secs(3)).is_empty(),
        "nothing published before the check is stored"
    );
    query(&env, "ATTACH TABLE policy_checks").await;

    await_query(
        &env,
        "SELECT toString(count()) FROM policy_checks WHERE model_id = 'slow-model' AND policy = 'latency'",
        "1",
        Duration::from_secs(60),
    )
    .await;
    let remediations = env.remediation_payloads(1, Duration::from_secs(20));
    assert_eq!(remediations.len(), 1, "exactly one remediation");
    let event: vigil_events::RemediationEvent = vigil_events::decode(&remediations[0]).unwrap();
    assert_eq!(event.policy, "latency");
    let status = terminate(&mut monitor, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_monitor_with_a_stable_instance_id_consumes_again_within_ten_seconds() {
    let env = TestEnv::new("static");
    let instance = [("VIGIL__MONITOR__INSTANCE_ID", "monitor-0")];
    let mut monitor = env.spawn_monitor_with(&instance);
    await_port(env.http_port, Duration::from_secs(60)).await;

    const N: u64 = 40_000;
    let producer = sdk(&env);
    let sender = std::thread::spawn(move || {
        let spec = LoadSpec {
            rate: 4_000,
            duration: Duration::from_secs(120),
            max_events: Some(N),
            progress_every: Duration::from_secs(60),
            drift_after: None,
        };
        vigil_loadgen::run(&producer, &mut generator(29), &spec, &AtomicBool::new(false)).unwrap()
    });
    let store = env.store();
    let started = Instant::now();
    while store.total_events().await.unwrap_or(0) < N / 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "monitor stored nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let at_kill = store.total_events().await.unwrap();
    assert!(at_kill < N, "the kill came mid-stream ({at_kill} of {N} stored)");

    // Same group, same instance id: the broker hands the partitions straight back.
    let restarted_at = Instant::now();
    let mut restarted = env.spawn_monitor_with(&instance);
    let resumed = loop {
        if store.total_events().await.unwrap_or(0) > at_kill {
            break restarted_at.elapsed();
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(30),
            "the restarted monitor stored nothing in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("{}: restarted monitor stored again {:.1} s after its start", env.name, resumed.as_secs_f64());
    assert!(resumed < Duration::from_secs(10), "consuming again took {resumed:?}");
    let report = tokio::task::spawn_blocking(move || sender.join().unwrap()).await.unwrap();
    assert_eq!(report.sent, N);
    env.await_stored_exactly(N, Duration::from_secs(90)).await;
    let status = terminate(&mut restarted, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}
