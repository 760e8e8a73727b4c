//! The whole loop on real Kafka and ClickHouse: a canary's inputs drift, the monitor's policy
//! breaches and publishes a critical rollback remediation, and `vigil lifecycle` rolls the canary
//! back while production stays, tells the serving platform (a signed webhook: all traffic to v1)
//! and audits the rollback in ClickHouse. Prints the time from the first drifted event to the
//! rollback in the log and to the platform's webhook.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_loadgen::Synthetic;
use vigil_sdk::{Producer, SdkConfig};

use crate::harness::{self, await_port, terminate, version_of, ChildGuard, TestEnv};
use crate::lifecycle::{signature, wait_for_requests, webhook};

fn stage_of(state: &Value, model: &str, version: &str) -> String {
    version_of(state, model, version)["stage"].as_str().unwrap_or_default().to_owned()
}

fn run(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    let out = env.vigil_command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drifting_canary_is_rolled_back_without_a_human() {
    let env = TestEnv::new("loop");
    for (version, stage) in [("v1", "production"), ("v2", "canary")] {
        let (ok, _, stderr) = tokio::task::block_in_place(|| {
            run(&env, &["lifecycle", "register", "--model", "fraud", "--version", version, "--stage", stage])
        });
        assert!(ok, "register {version}: {stderr}");
    }
    let mut monitor = ChildGuard(
        env.vigil_command(&["monitor"])
            .env("VIGIL__MONITOR__POLICY__ACTION", "rollback")
            .env("VIGIL__MONITOR__POLICY__SEVERITY", "critical")
            // Two breached windows in a row: one chance breach (about 5% of windows by design)
            // must not roll anything back.
            .env("VIGIL__MONITOR__POLICY__CONSECUTIVE_WINDOWS", "2")
            .spawn()
            .unwrap(),
    );
    // The serving platform's webhook, in a config file ([[lifecycle.platform]] is a list).
    let (platform_url, platform) = webhook().await;
    let lifecycle_config = std::env::temp_dir().join(format!("vigil-it-{}-lifecycle.toml", env.name));
    let outbox = std::env::temp_dir().join(format!("vigil-it-{}-outbox", env.name));
    std::fs::write(
        &lifecycle_config,
        format!(
            "[[lifecycle.platform]]\nname = \"serving\"\nkind = \"platform\"\nurl = \"{platform_url}\"\nsecret = \"loop-secret\"\n\n[alerts]\noutbox_dir = \"{}\"\n",
            outbox.display()
        ),
    )
    .unwrap();
    let mut lifecycle = ChildGuard(
        env.vigil_command(&["lifecycle", "--config", lifecycle_config.to_str().unwrap()]).spawn().unwrap(),
    );
    await_port(env.http_port, Duration::from_secs(60)).await;

    let mut config = SdkConfig::new(harness::brokers());
    config.predictions_topic = env.predictions.clone();
    let producer = Producer::new(config).unwrap();
    let mut generator = Synthetic::new(5, vec!["fraud".into()], vec!["v1".into(), "v2".into()], 20);
    let t0 = 1_764_000_000_000i64;
    // Windows 0 and 1 are normal (0 becomes the baseline); from window 2 on, v2's first three
    // features shift by 3 sd. Each window closes once the next-but-five minutes' events arrive
    // (the harness allows 300 s of lateness), so time runs on to window 9.
    let mut first_drifted: Option<Instant> = None;
    for window in 0..10i64 {
        for i in 0..400 {
            let mut event = generator.next_prediction(t0 + window * 60_000 + i * 100);
            if window >= 2 && event.model_version == "v2" {
                for f in ["f00", "f01", "f02"] {
                    *event.numeric_features.get_mut(f).unwrap() += 3.0;
                }
                first_drifted.get_or_insert_with(Instant::now);
            }
            producer.log_prediction(&event).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let first_drifted = first_drifted.unwrap();

    let started = Instant::now();
    let state = loop {
        let (ok, stdout, stderr) =
            tokio::task::block_in_place(|| run(&env, &["lifecycle", "state", "--json"]));
        assert!(ok, "state: {stderr}");
        let state: Value = serde_json::from_str(&stdout).expect("state --json is JSON");
        if stage_of(&state, "fraud", "v2") == "ROLLED_BACK" {
            break state;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "v2 not rolled back within 90 s: {state}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let to_rollback = first_drifted.elapsed();
    assert_eq!(stage_of(&state, "fraud", "v1"), "PRODUCTION", "{state}");
    let rollback_id =
        version_of(&state, "fraud", "v2")["last_event_id"].as_str().unwrap_or_default().to_owned();
    let requests =
        wait_for_requests(&platform, "the platform's rollback update", Duration::from_secs(30), |r| {
            r.iter().any(|q| q.2 == rollback_id)
        })
        .await;
    let to_platform = first_drifted.elapsed();
    eprintln!(
        "closed loop: first drifted event to rollback in {:.2} s, to the platform webhook in {:.2} s",
        to_rollback.as_secs_f64(),
        to_platform.as_secs_f64()
    );
    let (signed, _, _, body) = requests.iter().find(|q| q.2 == rollback_id).unwrap();
    assert_eq!(signed, &signature("loop-secret", body));
    let update: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(update["traffic"], serde_json::json!([{"model_version": "v1", "weight": 1.0}]), "{update}");

    // The decision rests on stored evidence: the breach that sent the remediation names the
    // shifted features, and it came from a drifted window (2 or later).
    let checks = env.store().policy_checks().await.unwrap();
    let remediated = checks
        .iter()
        .find(|c| c.model_version == "v2" && !c.remediation_id.is_empty())
        .expect("a stored breach for v2 with its remediation");
    assert!(remediated.detail.contains("f00") && remediated.window_start >= 1_764_000_120, "{remediated:?}");

    // The audit: the rollback, by `vigil`, answering the remediation the breach sent.
    let started = Instant::now();
    let audited = loop {
        let rows = env.store().lifecycle_events().await.unwrap_or_default();
        if let Some(row) = rows.into_iter().find(|r| r.event_id == rollback_id) {
            break row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rollback {rollback_id} not audited within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!((audited.stage.as_str(), audited.actor.as_str()), ("ROLLED_BACK", "vigil"));
    let answered =
        checks.iter().any(|c| audited.remediation_id.as_deref() == Some(c.remediation_id.as_str()));
    assert!(answered, "the audited rollback names a stored breach's remediation: {audited:?}");

    assert!(terminate(&mut lifecycle, Duration::from_secs(30)).success());
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    env.cleanup().await;
    let _ = std::fs::remove_file(lifecycle_config);
    let _ = std::fs::remove_dir_all(outbox);
}
