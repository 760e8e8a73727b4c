//! Governance end to end on the real broker and ClickHouse: a lifecycle log written before
//! lineage existed still replays, and lineage given to `vigil lifecycle register` shows in `vigil
//! lifecycle state`; `vigil kpi --json` on a scripted day gives the KPIs computed by hand; a
//! `retrain` remediation reaches fake Airflow (once, despite a 500 first), Argo Workflows,
//! Kubeflow Pipelines and signed-webhook servers that check their APIs' request shapes, and is
//! recorded; the audit report of the scripted day holds lineage, evidence, KPIs and a hash that
//! verifies. (Access control is in `lifecycle.rs`.)

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::harness::{self, version_of, ChildGuard, LifecycleEnv};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

pub async fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    let results = admin
        .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Appends raw messages to `topic`, keyed by model.
pub async fn produce(topic: &str, key: &str, payloads: &[Vec<u8>]) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    for payload in payloads {
        producer
            .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_with_the_old_schema_replays_and_lineage_shows_in_state() {
    let env = LifecycleEnv::new("governance_old_log");
    let config = env.write_config("[lifecycle]\nreplay_timeout_ms = 30000\n");
    let vectors: Value =
        serde_json::from_str(include_str!("../../../../schemas/testdata/lifecycle-v1-log.json"))
            .expect("the committed old log");
    let old: Vec<Vec<u8>> =
        vectors["events"].as_array().unwrap().iter().map(|e| unhex(e["hex"].as_str().unwrap())).collect();
    create_topic(&env.lifecycle).await;
    produce(&env.lifecycle, "fraud", &old).await;

    // On top of the old log, a version registered today with lineage.
    let lineage = env.dir.join("lineage.json");
    std::fs::write(
        &lineage,
        r#"{"training_run_id": "run-from-file", "datasets": [{"name": "tx", "version": "7"}],
             "code_commit": "abc1234", "artifact_uri": "s3://m/fraud/v4", "tags": {"from": "file"}}"#,
    )
    .unwrap();
    let hash = "cd".repeat(32);
    let (code, stdout, stderr) = env
        .run_vigil(
            &config,
            &[
                "lifecycle",
                "register",
                "--model",
                "fraud",
                "--version",
                "v4",
                "--stage",
                "canary",
                "--actor",
                "ci",
                "--lineage-file",
                lineage.to_str().unwrap(),
                "--training-run-id",
                "run-77",
                "--dataset",
                &format!("labels#{hash}"),
                "--artifact-sha256",
                &hash,
                "--parent-version",
                "v1",
                "--team",
                "risk",
                "--tag",
                "ticket=RISK-9",
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("model fraud version v4: NEW -> CANARY"), "{stdout}");
    // Bad lineage is refused with the field named, before anything is published.
    let (code, _, stderr) = env
        .run_vigil(
            &config,
            &[
                "lifecycle",
                "register",
                "--model",
                "fraud",
                "--version",
                "v5",
                "--stage",
                "candidate",
                "--artifact-sha256",
                "xyz",
            ],
        )
        .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("lineage.artifact_sha256"), "{stderr}");

    let (code, stdout, stderr) = env.run_vigil(&config, &["lifecycle", "state", "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let state: Value = serde_json::from_str(&stdout).unwrap();
    let stage = |v: &str| version_of(&state, "fraud", v)["stage"].as_str().unwrap().to_owned();
    assert_eq!(
        [stage("v1"), stage("v2"), stage("v3"), stage("v4")],
        ["PRODUCTION", "ROLLED_BACK", "CANDIDATE", "CANARY"],
        "{state}"
    );
    let v2 = version_of(&state, "fraud", "v2");
    assert_eq!((v2["actor"].as_str(), v2["registered_by"].as_str()), (Some("vigil"), Some("ci")), "{v2}");
    assert_eq!(v2["lineage"], Value::Null, "old events carry no lineage: {v2}");
    let v4 = version_of(&state, "fraud", "v4");
    let l = &v4["lineage"];
    assert_eq!(l["training_run_id"], "run-77", "the option overrides the file: {v4}");
    assert_eq!(l["code_commit"], "abc1234", "the file's field stays: {v4}");
    assert_eq!(l["datasets"][0]["name"], "tx", "{v4}");
    assert_eq!(l["datasets"][1]["sha256"], hash.as_str(), "{v4}");
    assert_eq!((l["tags"]["from"].as_str(), l["tags"]["ticket"].as_str()), (Some("file"), Some("RISK-9")));
    assert_eq!(v4["lineage_complete"], true, "{v4}");

    let (code, table, _) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(0));
    assert!(table.contains("lineage (complete): run run-77, commit abc1234"), "{table}");
    env.cleanup();
}

/// 2026-09-21T11:33:20Z, the start of the scripted history's day.
const BASE_MS: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn scripted_event(
    id: &str,
    version: &str,
    stage: vigil_events::Stage,
    actor: &str,
    remediation: Option<&str>,
    at: i64,
    lineage: bool,
) -> vigil_events::LifecycleEvent {
    vigil_events::LifecycleEvent {
        event_id: id.into(),
        model_id: "fraud".into(),
        model_version: version.into(),
        stage,
        traffic_weight: (stage == vigil_events::Stage::Canary).then_some(0.1),
        reason: format!("scripted {id}"),
        actor: actor.into(),
        remediation_id: remediation.map(Into::into),
        event_time_ms: BASE_MS + at,
        kind: vigil_events::EventKind::StageChange,
        lineage: lineage.then(|| {
            Box::new(vigil_events::Lineage {
                training_run_id: Some(format!("run-{version}")),
                datasets: vec![vigil_events::DatasetRef {
                    name: "transactions".into(),
                    version: Some("2026-09".into()),
                    sha256: None,
                }],
                code_commit: Some("9f8e7d6".into()),
                artifact_uri: Some(format!("s3://models/fraud/{version}")),
                artifact_sha256: Some("ef".repeat(32)),
                team: Some("risk".into()),
                ..Default::default()
            })
        }),
    }
}

/// A day of model fraud: v1 straight to production (a bypassed gate), v2 registered without
/// lineage, canary, drifting, rolled back by its remediation, v3 canary then promoted by alice;
/// the monitor's policy checks of v2 in ClickHouse. Returns the config.
pub async fn scripted_history(env: &LifecycleEnv) -> std::path::PathBuf {
    use vigil_events::Stage::*;
    let config = env.write_config("[lifecycle]\nreplay_timeout_ms = 30000\n");
    let (code, _, stderr) = env.run_vigil(&config, &["migrate"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let events = [
        scripted_event("k1", "v1", Production, "ci", None, 0, true),
        scripted_event("k2", "v2", Candidate, "ci", None, HOUR, false),
        scripted_event("k3", "v2", Canary, "ci", None, 2 * HOUR, false),
        scripted_event("k4", "v2", RolledBack, "vigil", Some("rem-kpi"), 3 * HOUR + 20 * MIN, false),
        scripted_event("k5", "v3", Canary, "ci", None, 4 * HOUR, true),
        scripted_event("k6", "v3", Production, "alice", None, 6 * HOUR, false),
    ];
    create_topic(&env.lifecycle).await;
    produce(&env.lifecycle, "fraud", &events.iter().map(vigil_events::encode).collect::<Vec<_>>()).await;
    let s = |ms: i64| ms / 1000;
    let check = |at: i64, verdict: &str, value: f64, rem: &str, computed: i64| {
        format!(
            "('fraud', 'v2', toDateTime({}), 'drift', '{verdict}', {value}, 0.25, '{{\"drifted\":[\"amount\"]}}', 0, '{rem}', 500, 'ref-1', 'cfg', toDateTime({}))",
            s(BASE_MS + at),
            s(BASE_MS + computed)
        )
    };
    let rows = [
        check(3 * HOUR, "healthy", 0.1, "", 3 * HOUR + 5 * MIN + 10_000),
        check(3 * HOUR + 5 * MIN, "breach", 0.4, "", 3 * HOUR + 10 * MIN + 10_000),
        check(3 * HOUR + 10 * MIN, "breach", 0.5, "rem-kpi", 3 * HOUR + 15 * MIN + 10_000),
    ];
    harness::clickhouse_sql(&format!(
        "INSERT INTO {}.policy_checks (model_id, model_version, window_start, policy, verdict, value, threshold, detail, \
         streak, remediation_id, events, reference_id, config_hash, computed_at) VALUES {}",
        env.database,
        rows.join(", ")
    ))
    .await;
    // Drift tests of the three windows (amount drifts from 3:05) and accuracy per window.
    let mut drift = Vec::new();
    let mut performance = Vec::new();
    for (i, at) in [3 * HOUR, 3 * HOUR + 5 * MIN, 3 * HOUR + 10 * MIN].into_iter().enumerate() {
        for (feature, statistic) in [("amount", 0.1 + 0.2 * i as f64), ("age", 0.05)] {
            let drifted = u8::from(statistic > 0.25);
            drift.push(format!(
                "('fraud', 'v2', '', toDateTime({}), '{feature}', 'psi', {statistic}, NULL, NULL, 0.25, {drifted}, 500, 500, 'ref-1', 'cfg', toDateTime({}))",
                s(BASE_MS + at),
                s(BASE_MS + at + 5 * MIN)
            ));
        }
        performance.push(format!(
            "('fraud', 'v2', '', toDateTime({}), 300, 500, 400, 0.8, {}, 400, 'ref-1', 'cfg', toDateTime({}))",
            s(BASE_MS + at),
            0.9 - 0.1 * i as f64,
            s(BASE_MS + at + 5 * MIN)
        ));
    }
    harness::clickhouse_sql(&format!(
        "INSERT INTO {}.feature_drift (model_id, model_version, segment, window_start, feature, test, statistic, p_value, \
         error_bound, threshold, drifted, current_count, events, reference_id, config_hash, computed_at) VALUES {}",
        env.database,
        drift.join(", ")
    ))
    .await;
    harness::clickhouse_sql(&format!(
        "INSERT INTO {}.window_performance (model_id, model_version, segment, window_start, window_seconds, predictions, \
         labeled, coverage, accuracy, revision, reference_id, config_hash, computed_at) VALUES {}",
        env.database,
        performance.join(", ")
    ))
    .await;
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_report_holds_lineage_evidence_kpis_and_its_hash() {
    let env = LifecycleEnv::new("governance_report");
    let config = scripted_history(&env).await;
    let (from, to) = ((BASE_MS / 1000).to_string(), ((BASE_MS + 24 * HOUR) / 1000).to_string());
    let json_path = env.dir.join("report.json");
    let (code, stdout, stderr) = env
        .run_vigil(
            &config,
            &[
                "audit",
                "report",
                "--model",
                "fraud",
                "--from",
                &from,
                "--to",
                &to,
                "--format",
                "json",
                "--out",
                json_path.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let hash = report["content_sha256"].as_str().unwrap().to_owned();
    assert_eq!(stdout.trim(), format!("content sha256 {hash}"));
    // The hash verifies: the canonical JSON with the hash empty and the time 0.
    let mut content = report.clone();
    content["content_sha256"] = Value::String(String::new());
    content["generated_at_ms"] = Value::from(0);
    let mut text = String::new();
    vigil_lifecycle::report::canonical(&content, &mut text);
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(digest, hash);

    let version =
        |v: &str| report["versions"].as_array().unwrap().iter().find(|x| x["version"] == v).unwrap().clone();
    assert_eq!(version("v1")["lineage"]["training_run_id"], "run-v1", "{report}");
    assert_eq!(version("v3")["lineage"]["artifact_uri"], "s3://models/fraud/v3");
    assert_eq!(version("v2")["lineage"], Value::Null);
    let history = report["stage_history"].as_array().unwrap();
    assert_eq!(history.len(), 6);
    assert_eq!(
        (history[5]["actor"].as_str(), history[5]["stage"].as_str()),
        (Some("alice"), Some("PRODUCTION"))
    );
    let remediation = &report["remediations"][0];
    assert_eq!(
        (
            remediation["remediation_id"].as_str(),
            remediation["value"].as_f64(),
            remediation["threshold"].as_f64()
        ),
        (Some("rem-kpi"), Some(0.5), Some(0.25))
    );
    assert_eq!(remediation["detail"]["drifted"][0], "amount");
    let features = remediation["features"].as_array().unwrap();
    assert_eq!(features.len(), 2, "{remediation}");
    let amount = features.iter().find(|f| f["feature"] == "amount").unwrap();
    assert_eq!((amount["statistic"].as_f64(), amount["drifted"].as_bool()), (Some(0.5), Some(true)));
    assert_eq!(remediation["lifecycle"][0]["stage"], "ROLLED_BACK");
    assert_eq!(report["kpis"]["deployments"], 2);
    let drift: Vec<f64> =
        report["series"]["drift"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(drift, [0.0, 1.0, 1.0]);
    assert_eq!(report["series"]["performance"].as_array().unwrap().len(), 3);

    let html_path = env.dir.join("report.html");
    let (code, _, stderr) = env
        .run_vigil(
            &config,
            &[
                "audit",
                "report",
                "--model",
                "fraud",
                "--version",
                "v2",
                "--from",
                &from,
                "--to",
                &to,
                "--out",
                html_path.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("rem-kpi") && html.contains("chart-timeline")
    );
    assert!(!html.contains("run-v1"), "--version v2 leaves v1 out");
    env.drop_database().await;
    env.cleanup();
}

#[tokio::test(flavor = "multi_thread")]
async fn kpis_of_a_scripted_history_match_the_hand_computed_ones() {
    let env = LifecycleEnv::new("governance_kpi");
    let config = scripted_history(&env).await;
    let (from, to) = ((BASE_MS / 1000).to_string(), ((BASE_MS + 24 * HOUR) / 1000).to_string());
    let (code, stdout, stderr) =
        env.run_vigil(&config, &["kpi", "--model", "fraud", "--from", &from, "--to", &to, "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let k = &report["models"][0];
    assert_eq!(k["model_id"], "fraud", "{report}");
    // By hand: v1 (0 h) and v3 (6 h) became production: 2 in one day.
    assert_eq!((k["deployments"].as_u64(), k["deployment_frequency_per_day"].as_f64()), (Some(2), Some(2.0)));
    // Lead times: v1 0 s (registered into production), v3 4 h -> 6 h = 7200 s.
    assert_eq!(k["lead_time"]["median_s"].as_f64(), Some(3600.0), "{k}");
    assert_eq!(k["lead_time"]["max_s"].as_f64(), Some(7200.0), "{k}");
    // v1, v2, v3 deployed, v2 rolled back.
    assert_eq!((k["versions_deployed"].as_u64(), k["versions_rolled_back"].as_u64()), (Some(3), Some(1)));
    assert_eq!(k["change_failure_rate"].as_f64(), Some(1.0 / 3.0));
    // Breach from the 3:05 window, remediation computed at 3:15:10: 610 s to detect; the
    // rollback at 3:20 is 290 s later.
    assert_eq!(k["incidents"].as_u64(), Some(1));
    assert_eq!(k["time_to_detect"]["median_s"].as_f64(), Some(610.0), "{k}");
    assert_eq!(k["time_to_remediate"]["median_s"].as_f64(), Some(290.0), "{k}");
    // v1 and v3 with complete lineage, v2 without.
    assert_eq!(
        (
            k["versions_registered"].as_u64(),
            k["versions_with_lineage"].as_u64(),
            k["versions_with_complete_lineage"].as_u64()
        ),
        (Some(3), Some(2), Some(2))
    );
    assert_eq!(k["exceptions"]["gates_bypassed"].as_u64(), Some(1), "v1 never was a canary: {k}");
    assert_eq!(k["exceptions"]["manual_rollbacks"].as_u64(), Some(0));
    assert_eq!(report["overall"]["deployments"].as_u64(), Some(2));

    let (code, table, stderr) = env.run_vigil(&config, &["kpi", "--from", &from, "--to", &to]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.lines().any(|l| l.starts_with("fraud") && l.contains("33.3 %")), "{table}");
    let (code, _, stderr) = env.run_vigil(&config, &["kpi", "--from", &to, "--to", &from]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--from must be before --to"), "{stderr}");
    env.drop_database().await;
    env.cleanup();
}

/// A fake Airflow webserver: checks each request against the stable REST API's shape
/// (`POST /api/v1/dags/<dag>/dagRuns`, basic auth, a JSON body with `dag_run_id` and `conf`),
/// answers 500 to the first and 200 (or 409 to a run id it already has) after.
async fn fake_airflow() -> (String, Arc<Mutex<Vec<(u16, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(u16, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().route(
        "/api/v1/dags/{dag_id}/dagRuns",
        post(move |Path(dag_id): Path<String>, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let json_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let well_formed = dag_id == "retrain_fraud"
                    && auth == "Basic dmlnaWw6YWlyZmxvdy1wdw==" // vigil:airflow-pw
                    && json_type
                    && body["dag_run_id"].as_str().is_some_and(|id| id.starts_with("vigil-retrain-"))
                    && body["conf"].is_object();
                let mut log = log.lock().unwrap();
                let status = if !well_formed {
                    400
                } else if log.is_empty() {
                    500
                } else if log.iter().any(|(s, b)| *s == 200 && b["dag_run_id"] == body["dag_run_id"]) {
                    409
                } else {
                    200
                };
                log.push((status, body.clone()));
                (axum::http::StatusCode::from_u16(status).unwrap(), body.to_string())
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Requests a fake pipeline got: (status answered, headers, JSON body).
type Got = Arc<Mutex<Vec<(u16, HeaderMap, Value)>>>;

/// A fake training-pipeline API at `route` that answers 200 to what `valid` accepts and 400 to
/// anything else, keeping every request.
async fn fake_pipeline(route: &'static str, valid: fn(&HeaderMap, &Bytes) -> bool) -> (String, Got) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    let app = Router::new().route(
        route,
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let status = if valid(&headers, &body) { 200 } else { 400 };
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((status, headers, json));
                (axum::http::StatusCode::from_u16(status).unwrap(), "{}")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Argo Workflows' `WorkflowSubmitRequest` from a WorkflowTemplate, with the bearer token.
fn argo_request(headers: &HeaderMap, body: &Bytes) -> bool {
    let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    header(headers, "authorization") == "Bearer argo-token"
        && b["namespace"] == "ml"
        && b["resourceKind"] == "WorkflowTemplate"
        && b["resourceName"] == "retrain-model"
        && b["submitOptions"]["name"].as_str().is_some_and(|n| {
            n.starts_with("vigil-retrain-")
                && n.len() <= 63
                && n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
        && b["submitOptions"]["parameters"].as_array().is_some_and(|p| {
            p.iter().all(|x| x.as_str().is_some_and(|x| x.contains('='))) && p[0] == "model_id=fraud"
        })
}

/// Kubeflow Pipelines v2beta1 `CreateRun`: a pipeline version reference and runtime parameters.
fn kubeflow_request(_: &HeaderMap, body: &Bytes) -> bool {
    let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    b["display_name"].as_str().is_some_and(|n| n.starts_with("vigil-retrain-"))
        && b["pipeline_version_reference"]
            == serde_json::json!({"pipeline_id": "p-1", "pipeline_version_id": "pv-7"})
        && b["experiment_id"] == "exp-1"
        && b["runtime_config"]["parameters"]["model_id"] == "fraud"
        && b["runtime_config"]["parameters"]["request"].as_str().is_some_and(|r| r.contains("remediation_id"))
}

/// The signed retrain webhook: a valid `X-Vigil-Signature` and an `Idempotency-Key`.
fn webhook_request(headers: &HeaderMap, body: &Bytes) -> bool {
    header(headers, "x-vigil-signature") == crate::lifecycle::signature("retrain-secret", body)
        && header(headers, "idempotency-key").starts_with("vigil-retrain-")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retrain_remediation_reaches_every_pipeline_once_airflow_despite_a_500_and_is_recorded() {
    use vigil_events::{Evidence, RemediationAction, RemediationEvent, Severity};
    let env = LifecycleEnv::new("governance_retrain");
    let (airflow, seen) = fake_airflow().await;
    let (argo, argo_got) = fake_pipeline("/api/v1/workflows/{namespace}/submit", argo_request).await;
    let (kubeflow, kubeflow_got) = fake_pipeline("/apis/v2beta1/runs", kubeflow_request).await;
    let (hook, hook_got) = fake_pipeline("/retrain", webhook_request).await;
    let config = env.write_config(&format!(
        r#"
[lifecycle]
replay_timeout_ms = 30000
[[lifecycle.retrain]]
name = "airflow"
kind = "airflow"
url = "{airflow}"
dag_id = "retrain_fraud"
username = "vigil"
password = "airflow-pw"
[[lifecycle.retrain]]
name = "argo"
kind = "argo_workflows"
url = "{argo}"
namespace = "ml"
workflow_template = "retrain-model"
token = "argo-token"
[[lifecycle.retrain]]
name = "kubeflow"
kind = "kubeflow"
url = "{kubeflow}/"
pipeline_id = "p-1"
pipeline_version_id = "pv-7"
experiment_id = "exp-1"
[[lifecycle.retrain]]
name = "hook"
kind = "retrain_webhook"
url = "{hook}/retrain"
secret = "retrain-secret"

[alerts]
outbox_dir = "{outbox}"
[alerts.delivery]
initial_backoff_ms = 100
max_backoff_ms = 500
"#,
        outbox = env.dir.join("outbox").display()
    ));
    let (code, _, stderr) = env.run_vigil(&config, &["migrate"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let lineage = ["--training-run-id", "run-v1", "--code-commit", "abc"];
    let mut args =
        vec!["lifecycle", "register", "--model", "fraud", "--version", "v1", "--stage", "production"];
    args.extend(lineage);
    let (code, _, stderr) = env.run_vigil(&config, &args).await;
    assert_eq!(code, Some(0), "{stderr}");

    let mut service = ChildGuard(
        env.vigil(&config, &["lifecycle"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap(),
    );
    harness::await_port(env.api_port, Duration::from_secs(60)).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let remediation = RemediationEvent {
        remediation_id: format!("rem-retrain-{}", env.name),
        model_id: "fraud".into(),
        model_version: "v1".into(),
        window_start_ms: now - 60_000,
        window_end_ms: now,
        severity: Severity::Warning,
        action: RemediationAction::Retrain,
        policy: "drift".into(),
        evidence: vec![Evidence {
            metric: "psi".into(),
            value: 0.4,
            threshold: 0.2,
            feature: Some("amount".into()),
        }],
        reference_id: Some("ref-1".into()),
        config_hash: "it".into(),
        created_at_ms: now,
    };
    // Twice: a redelivered remediation requests nothing new.
    produce(
        &env.remediations,
        "fraud",
        &[vigil_events::encode(&remediation), vigil_events::encode(&remediation)],
    )
    .await;

    let started = Instant::now();
    loop {
        let requests = seen.lock().unwrap().clone();
        if requests.iter().any(|(status, _)| *status == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no accepted airflow run within 60 s: {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a second (wrong) delivery show up, if there were one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = seen.lock().unwrap().clone();
    let statuses: Vec<u16> = requests.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [500, 200], "one retry after the 500, then nothing: {requests:?}");
    let (_, body) = &requests[1];
    assert_eq!(body["dag_run_id"], vigil_alerts::retrain_key(&remediation.remediation_id).as_str());
    assert_eq!(body, &requests[0].1, "the retry is the same request");
    let conf = &body["conf"];
    assert_eq!(
        (
            conf["model_id"].as_str(),
            conf["remediation_id"].as_str(),
            conf["lineage"]["training_run_id"].as_str()
        ),
        (Some("fraud"), Some(remediation.remediation_id.as_str()), Some("run-v1")),
        "{conf}"
    );
    assert_eq!(conf["evidence"][0]["feature"], "amount", "{conf}");
    // Argo, Kubeflow and the signed webhook: one well-formed request each, named by the same key.
    let key = vigil_alerts::retrain_key(&remediation.remediation_id);
    for (name, got) in [("argo", &argo_got), ("kubeflow", &kubeflow_got), ("hook", &hook_got)] {
        let got = got.lock().unwrap().clone();
        let statuses: Vec<u16> = got.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(statuses, [200], "{name}: {got:?}");
        let (_, headers, body) = &got[0];
        let named = [
            &body["submitOptions"]["name"],
            &body["display_name"],
            &Value::String(header(headers, "idempotency-key").to_owned()),
        ];
        assert!(named.iter().any(|n| n.as_str() == Some(key.as_str())), "{name}: {body}");
    }

    // Recorded in the lifecycle log (the history) and in the audit's deliveries.
    let (_, history) = env.http("GET", "/api/v1/models/fraud/history", Some(harness::API_TOKEN), None).await;
    let history: Value = serde_json::from_str(&history).unwrap();
    let retrains: Vec<&Value> =
        history["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "RETRAIN_REQUESTED").collect();
    assert_eq!(retrains.len(), 1, "{history}");
    assert_eq!(
        (retrains[0]["stage"].as_str(), retrains[0]["remediation_id"].as_str()),
        (Some("PRODUCTION"), Some(remediation.remediation_id.as_str()))
    );
    let started = Instant::now();
    loop {
        let rows = env.store().alert_deliveries().await.unwrap_or_default();
        let outcomes: Vec<(String, String)> = rows
            .iter()
            .filter(|r| r.state == "retrain")
            .map(|r| (r.receiver.clone(), r.outcome.clone()))
            .collect();
        if outcomes.iter().filter(|(_, o)| o == "delivered").count() >= 4 {
            assert!(outcomes.contains(&("airflow".to_owned(), "retrying".to_owned())), "{outcomes:?}");
            if ["airflow", "argo", "kubeflow", "hook"]
                .iter()
                .all(|r| outcomes.contains(&((*r).to_owned(), "delivered".to_owned())))
            {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "audited deliveries: {outcomes:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(harness::terminate(&mut service, Duration::from_secs(30)).success());
    env.drop_database().await;
    env.cleanup();
}
