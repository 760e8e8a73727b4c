//! `vigil reference` end to end through the binary, on the real ClickHouse (and Kafka for the
//! monitor): upload, list, idempotency, precedence over live baselines, drift measured against
//! an uploaded reference, and a reference captured from a range of stored live windows.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use vigil_loadgen::Synthetic;
use vigil_store::ReferenceRow;

use crate::harness::{await_port, terminate, ChildGuard, TestEnv};

/// A CSV file of `rows` predictions drawn like loadgen's (20 features from N(0, 1), `device`
/// from three values, a score), with an id column that is not a feature.
fn reference_csv(dir: &Path, rows: usize) -> PathBuf {
    let mut generator = Synthetic::new(99, vec!["model-1".into()], vec!["v1".into()], 20);
    let mut csv = String::from("id");
    for i in 0..20 {
        csv.push_str(&format!(",f{i:02}"));
    }
    csv.push_str(",device,score\n");
    for _ in 0..rows {
        let event = generator.next_prediction(0);
        csv.push_str(&event.prediction_id);
        for x in event.numeric_features.values() {
            csv.push_str(&format!(",{x}"));
        }
        csv.push_str(&format!(
            ",{},{}\n",
            event.categorical_features["device"],
            event.prediction.score.unwrap()
        ));
    }
    let path = dir.join("reference.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn scratch(env: &TestEnv) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-it-{}", env.name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn vigil(env: &TestEnv, args: &[&str]) -> Output {
    let mut command = env.vigil_command(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || command.output().expect("vigil runs")).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn upload(env: &TestEnv, model: &str, file: &Path) -> String {
    let out = vigil(
        env,
        &[
            "reference",
            "upload",
            "--model",
            model,
            "--version",
            "v1",
            file.to_str().unwrap(),
            "--skip-column",
            "id",
            "--score-column",
            "score",
        ],
    )
    .await;
    assert!(out.status.success(), "upload failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("stored reference "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        id.starts_with(&format!("upload:{model}:v1:"))
            && id.len() == format!("upload:{model}:v1:").len() + 16,
        "{stdout}"
    );
    id.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_reference_is_stored_once_listed_and_preferred_to_baselines() {
    let env = TestEnv::new("reference_upload");
    let dir = scratch(&env);
    let file = reference_csv(&dir, 5_000);
    let id = upload(&env, "model-1", &file).await;

    let store = env.store();
    let stored = store.reference(&id).await.unwrap().expect("the uploaded reference is stored");
    assert_eq!(stored.events, 5_000);
    assert!(
        stored.source.contains("reference.csv") && stored.source.contains("5,000 rows"),
        "{}",
        stored.source
    );
    let state = vigil_monitor::WindowState::decode(&stored.state).unwrap();
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        stored.content_hash,
        format!("{:016x}", vigil_events::fnv1a64(json.as_bytes())),
        "the hash is of the state's JSON"
    );
    assert_eq!(
        (state.numeric.len(), state.categorical.len()),
        (20, 1),
        "f00..f19 and device; id skipped, score apart"
    );
    assert_eq!(state.scores.as_ref().unwrap().count(), 5_000);

    // The same file again: the same id and hash, still one row.
    assert_eq!(upload(&env, "model-1", &file).await, id);
    let listed = store.reference_list(Some("model-1")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].reference_id.as_str(), listed[0].content_hash.as_str(), listed[0].in_use),
        (id.as_str(), stored.content_hash.as_str(), true)
    );

    // A live baseline created later (a monitor that had not loaded the upload yet) does not
    // replace it: uploads come first, and both stay stored.
    let baseline = ReferenceRow {
        reference_id: "baseline:model-1:v1:1764000000".into(),
        source: "live baseline".into(),
        created_at: stored.created_at + 60,
        ..stored.clone()
    };
    store.insert_reference(&baseline).await.unwrap();
    let in_use: Vec<_> =
        store.references_in_use().await.unwrap().into_iter().filter(|r| r.model_id == "model-1").collect();
    assert_eq!(in_use.len(), 1);
    assert_eq!(in_use[0].reference_id, id, "the upload is used");
    let all: Vec<String> = store.references().await.unwrap().into_iter().map(|r| r.reference_id).collect();
    assert_eq!(all, ["baseline:model-1:v1:1764000000", id.as_str()], "every reference, the one in use last");
    assert_eq!(store.reference_list(None).await.unwrap().len(), 2);

    let out = vigil(&env, &["reference", "list", "--model", "model-1"]).await;
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = listing.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains(&stored.content_hash) && line.trim_end().ends_with("yes"), "{listing}");
    assert!(
        listing.lines().any(|l| l.contains("baseline:model-1:v1:1764000000") && l.trim_end().ends_with("no")),
        "{listing}"
    );

    let out = vigil(&env, &["reference", "show", "--model", "model-1", "--version", "v1"]).await;
    let shown = text(&out.stdout);
    assert!(
        out.status.success()
            && shown.contains(&id)
            && shown.lines().any(|l| l.starts_with("f05 ") && l.contains("numeric")),
        "{shown}"
    );
    let out = vigil(&env, &["reference", "show", "--model", "model-9", "--version", "v1"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no reference for model-9 v1"), "{}", text(&out.stderr));

    // A bad file names its line and what to do; nothing is stored.
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "x,y\n1,2\n3\n").unwrap();
    let out = vigil(
        &env,
        &["reference", "upload", "--model", "model-2", "--version", "v1", ragged.to_str().unwrap()],
    )
    .await;
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ragged.csv: line 3") && err.contains("--max-bad-rows"),
        "{err}"
    );
    assert!(store.reference_list(Some("model-2")).await.unwrap().is_empty());

    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_measures_drift_against_the_uploaded_reference() {
    let env = TestEnv::new("reference_drift");
    let dir = scratch(&env);
    let file = reference_csv(&dir, 20_000);
    let ids = [upload(&env, "model-1", &file).await, upload(&env, "model-2", &file).await];

    // Five-second windows, closed a second after their end.
    let monitor = env
        .vigil_command(&["monitor"])
        .env("VIGIL__MONITOR__WINDOW_SECONDS", "5")
        .env("VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS", "1")
        .spawn()
        .expect("vigil monitor starts");
    let mut monitor = ChildGuard(monitor);
    await_port(env.http_port, Duration::from_secs(60)).await;

    // model-1's first three features shift by 1.5 sd from the start; model-2's do not.
    let out = vigil(
        &env,
        &[
            "loadgen",
            "--models",
            "2",
            "--versions",
            "1",
            "--rate",
            "2000",
            "--duration",
            "14s",
            "--drift-model",
            "model-1",
            "--drift-version",
            "v1",
            "--drift-after",
            "0s",
        ],
    )
    .await;
    assert!(out.status.success(), "loadgen: {}", text(&out.stderr));

    // Full windows (about 5,000 events per model) that closed, per model.
    let store = env.store();
    let started = Instant::now();
    let full = |rows: &[vigil_store::FeatureDriftRow], model: &str| -> std::collections::BTreeSet<u32> {
        rows.iter()
            .filter(|r| r.model_id == model && r.segment.is_empty() && r.events >= 3_000)
            .map(|r| r.window_start)
            .collect()
    };
    let drift = loop {
        let rows = store.feature_drift().await.unwrap_or_default();
        if (!full(&rows, "model-1").is_empty() && !full(&rows, "model-2").is_empty())
            || started.elapsed() > Duration::from_secs(60)
        {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (model, id) in [("model-1", &ids[0]), ("model-2", &ids[1])] {
        let windows = full(&drift, model);
        assert!(!windows.is_empty(), "no full window of {model} closed: {drift:?}");
        let rows: Vec<_> =
            drift.iter().filter(|r| r.model_id == model && windows.contains(&r.window_start)).collect();
        assert!(rows.iter().all(|r| &r.reference_id == id), "every row names the uploaded reference {id}");
        assert_eq!(
            rows.iter().filter(|r| r.segment.is_empty()).count(),
            windows.len() * 21,
            "20 numeric features and device per window"
        );
        for row in rows.iter().filter(|r| r.segment.is_empty()) {
            let shifted = model == "model-1" && ["f00", "f01", "f02"].contains(&row.feature.as_str());
            assert_eq!(row.drifted == 1, shifted, "{row:?}");
            if shifted {
                assert!((row.statistic - 1.5).abs() < 0.3, "a 1.5 sd shift: {row:?}");
            }
        }
    }
    let metrics = store.window_metrics().await.unwrap();
    assert!(
        metrics.iter().filter(|m| m.model_id == "model-1").all(|m| m.reference_id == ids[0]),
        "{metrics:?}"
    );
    let stored = store.reference_list(None).await.unwrap();
    assert!(
        stored.iter().all(|r| r.reference_id.starts_with("upload:")),
        "no baseline was created: {stored:?}"
    );

    let status = terminate(&mut monitor, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_captured_from_stored_windows_replaces_the_baseline() {
    let env = TestEnv::new("reference_capture");
    let capture = |from: String, to: String| {
        let env = &env;
        async move {
            vigil(
                env,
                &[
                    "reference",
                    "capture",
                    "--model",
                    "model-1",
                    "--version",
                    "v1",
                    "--from",
                    &from,
                    "--to",
                    &to,
                ],
            )
            .await
        }
    };
    let out = capture("1764000100".into(), "2025-11-24T16:01:40Z".into()).await;
    assert!(
        !out.status.success() && text(&out.stderr).contains("--from must be before --to"),
        "{}",
        text(&out.stderr)
    );
    let out = capture("1764000000".into(), "1764000060".into()).await;
    assert!(
        !out.status.success() && text(&out.stderr).contains("no stored windows of model-1 v1 at all"),
        "{}",
        text(&out.stderr)
    );

    // Five-second windows closed a second after their end; a baseline from the first window.
    let mut monitor = env.spawn_monitor_with(&[
        ("VIGIL__MONITOR__WINDOW_SECONDS", "5"),
        ("VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS", "1"),
        ("VIGIL__MONITOR__BASELINE_MIN_EVENTS", "500"),
    ]);
    await_port(env.http_port, Duration::from_secs(60)).await;
    let out =
        vigil(&env, &["loadgen", "--models", "1", "--versions", "1", "--rate", "1000", "--duration", "23s"])
            .await;
    assert!(out.status.success(), "loadgen: {}", text(&out.stderr));

    let store = env.store();
    let started = Instant::now();
    let closed = loop {
        let metrics = store.window_metrics().await.unwrap_or_default();
        let closed: Vec<u32> = metrics
            .iter()
            .filter(|m| m.model_id == "model-1" && m.segment.is_empty())
            .map(|m| m.window_start)
            .collect();
        if closed.len() >= 4 || started.elapsed() > Duration::from_secs(60) {
            break closed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(closed.len() >= 4, "windows closed: {closed:?}");
    let baseline = store
        .references_in_use()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.model_id == "model-1")
        .expect("a live baseline");
    assert!(baseline.reference_id.starts_with("baseline:model-1:v1:"), "{}", baseline.reference_id);

    // The closed windows but the first (the baseline's) and the last.
    let (from, to) = (closed[1], closed[closed.len() - 1]);
    let out = capture(from.to_string(), vigil_alerts::rfc3339(i64::from(to) * 1000)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "capture failed: {}{stdout}", text(&out.stderr));
    let id = format!("capture:model-1:v1:{from}-{to}");
    assert_eq!(
        stdout.lines().next(),
        Some(format!("stored reference {id} for model-1 v1").as_str()),
        "{stdout}"
    );
    assert!(
        stdout.contains("in use        yes")
            && stdout.contains(&format!("instead of {}", baseline.reference_id)),
        "{stdout}"
    );

    let stored = store.reference(&id).await.unwrap().expect("the captured reference is stored");
    let in_range: u64 = store
        .window_count_totals()
        .await
        .unwrap()
        .iter()
        .filter(|t| {
            t.model_id == "model-1"
                && t.model_version == "v1"
                && t.segment.is_empty()
                && (from..to).contains(&t.window_start)
        })
        .map(|t| t.events)
        .sum();
    assert!(in_range >= 2 * 4_000, "about 5,000 events per window: {in_range}");
    assert_eq!(stored.events, in_range, "the events of the stored windows in the range");
    let state = vigil_monitor::WindowState::decode(&stored.state).unwrap();
    assert_eq!(state.events, in_range);
    assert_eq!(state.numeric.len(), 20);
    assert_eq!(stored.content_hash, vigil_monitor::reference::state_content_hash(&state).unwrap());
    assert!(stored.source.contains(&format!("{} windows", (to - from) / 5)), "{}", stored.source);
    let in_use =
        store.references_in_use().await.unwrap().into_iter().find(|r| r.model_id == "model-1").unwrap();
    assert_eq!(in_use.reference_id, id, "a capture comes before live baselines");

    // Ranges it refuses: one that has not ended, one older than anything stored.
    let out = capture(from.to_string(), (u32::MAX - 1).to_string()).await;
    assert!(
        !out.status.success() && text(&out.stderr).contains("ends in the future"),
        "{}",
        text(&out.stderr)
    );
    let out = capture("1000000000".into(), "1000000060".into()).await;
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no stored windows of model-1 v1 start in")
            && err.contains("retention_days"),
        "{err}"
    );

    // More traffic: windows closed once the monitor has taken the capture up name it.
    let taken_up = unix_now();
    let mut loadgen = ChildGuard(
        env.vigil_command(&[
            "loadgen",
            "--models",
            "1",
            "--versions",
            "1",
            "--rate",
            "500",
            "--duration",
            "75s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadgen starts"),
    );
    let started = Instant::now();
    let named = loop {
        let drift = store.feature_drift().await.unwrap_or_default();
        let named: Vec<_> = drift
            .into_iter()
            .filter(|r| {
                r.model_id == "model-1"
                    && r.segment.is_empty()
                    && r.window_start > taken_up
                    && r.reference_id == id
            })
            .collect();
        if !named.is_empty() || started.elapsed() > Duration::from_secs(90) {
            break named;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(!named.is_empty(), "no drift row names {id} within 90 s");
    let later: Vec<_> = store
        .window_metrics()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.model_id == "model-1" && m.window_start > named[0].window_start)
        .collect();
    assert!(later.iter().all(|m| m.reference_id == id), "once taken up it stays: {later:?}");

    let _ = terminate(&mut loadgen.0, Duration::from_secs(10));
    let status = terminate(&mut monitor.0, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    env.cleanup().await;
}

fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32
}
