//! `vigil lifecycle` end to end: versions registered by hand, a critical remediation rolls the
//! canary back, one signed alert and the platform update reach local webhooks, the audit lands in
//! ClickHouse and the alert resolves once the policy is healthy again, SIGTERM exits cleanly; the
//! API refuses a missing or wrong token and changes nothing, and a gated rollback waits for
//! `vigil lifecycle approve`, which records who and why.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sha2::Sha256;
use vigil_events::{encode, Evidence, RemediationAction, RemediationEvent, Severity};
use vigil_lifecycle::jwt::b64url_encode as b64url;

use crate::harness::{self, clickhouse_sql, terminate, version_of, ChildGuard, LifecycleEnv, API_TOKEN};

const SECRET: &str = "it-secret";

/// One request a webhook received: signature header, delivery id header, idempotency key, raw body.
pub type Received = (String, String, String, Bytes);

/// A signed-webhook receiver on 127.0.0.1:0 that answers 200 and keeps every request.
pub async fn webhook() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let header = |name: &str| {
                    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
                };
                sink.lock().unwrap().push((
                    header("x-vigil-signature"),
                    header("x-vigil-delivery"),
                    header("idempotency-key"),
                    body,
                ));
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`, as the receiver checks it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Waits until `done` holds for what `received` holds, or panics naming `what`.
pub async fn wait_for_requests(
    received: &Arc<Mutex<Vec<Received>>>,
    what: &str,
    within: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let started = Instant::now();
    loop {
        let requests = received.lock().unwrap().clone();
        if done(&requests) {
            return requests;
        }
        assert!(started.elapsed() < within, "{what} within {within:?}: got {requests:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `vigil lifecycle` answers ready (log replayed, ClickHouse migrated).
async fn await_ready(env: &LifecycleEnv) {
    harness::await_port(env.api_port, Duration::from_secs(60)).await;
    let started = Instant::now();
    while env.http("GET", "/health/readyz", None, None).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish_remediation(env: &LifecycleEnv, remediation: &RemediationEvent, copies: usize) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    let payload = encode(remediation);
    for _ in 0..copies {
        producer
            .send(FutureRecord::to(&env.remediations).key("fraud").payload(&payload), Duration::from_secs(10))
            .await
            .expect("remediation delivered");
    }
}

/// Polls until `done` holds for the audited lifecycle events, or panics with them.
async fn audited(
    env: &LifecycleEnv,
    within: Duration,
    done: impl Fn(&[vigil_store::LifecycleEventRow]) -> bool,
) -> Vec<vigil_store::LifecycleEventRow> {
    let started = Instant::now();
    loop {
        let rows = env.store().lifecycle_events().await.unwrap_or_default();
        if done(&rows) {
            return rows;
        }
        assert!(started.elapsed() < within, "audit rows within {within:?}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn critical_remediation(env: &LifecycleEnv) -> RemediationEvent {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    RemediationEvent {
        remediation_id: format!("rem-{}", env.name),
        model_id: "fraud".into(),
        model_version: "v2".into(),
        window_start_ms: now - 60_000,
        window_end_ms: now,
        severity: Severity::Critical,
        action: RemediationAction::Rollback,
        policy: "error_rate".into(),
        evidence: vec![Evidence { metric: "error_rate".into(), value: 0.31, threshold: 0.1, feature: None }],
        reference_id: None,
        config_hash: "it".into(),
        created_at_ms: now,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn critical_remediation_rolls_back_the_canary_alerts_once_tells_the_platform_and_is_audited() {
    let env = LifecycleEnv::new("lifecycle");
    let (url, received) = webhook().await;
    let (platform_url, platform) = webhook().await;
    let config = env.write_config(&format!(
        r#"
[lifecycle]
replay_timeout_ms = 30000
resolve_interval_ms = 1000

[[lifecycle.platform]]
name = "serving"
kind = "platform"
url = "{platform_url}"
secret = "platform-secret"

[alerts]
outbox_dir = "{outbox}"
[alerts.delivery]
initial_backoff_ms = 100
max_backoff_ms = 1000
request_timeout_ms = 5000

[[alerts.receivers]]
name = "it-hook"
kind = "generic"
url = "{url}"
secret = "{SECRET}"
"#,
        outbox = env.dir.join("outbox").display()
    ));

    for (version, stage, extra) in [("v1", "production", None), ("v2", "canary", Some("0.2"))] {
        let mut args = vec![
            "lifecycle",
            "register",
            "--model",
            "fraud",
            "--version",
            version,
            "--stage",
            stage,
            "--actor",
            "ci",
        ];
        if let Some(weight) = extra {
            args.extend(["--weight", weight]);
        }
        let (code, stdout, stderr) = env.run_vigil(&config, &args).await;
        assert_eq!(code, Some(0), "register {version} {stage}: {stderr}");
        assert!(
            stdout.contains(&format!("model fraud version {version}: NEW -> {}", stage.to_uppercase())),
            "{stdout}"
        );
    }
    // An illegal move is refused with model, version and both stages named, and not published.
    let (code, _, stderr) = env
        .run_vigil(
            &config,
            &["lifecycle", "register", "--model", "fraud", "--version", "v1", "--stage", "canary"],
        )
        .await;
    assert_eq!(code, Some(1), "{stderr}");
    for needle in ["\"fraud\"", "\"v1\"", "PRODUCTION -> CANARY"] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }

    // Killed when the test ends, passed or failed.
    let mut consumer = ChildGuard(
        env.vigil(&config, &["lifecycle"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil lifecycle starts"),
    );
    // Once running, the platform is told the state it should serve (v2 at 20%).
    let requests =
        wait_for_requests(&platform, "the start-up platform update", Duration::from_secs(60), |r| {
            !r.is_empty()
        })
        .await;
    let first: Value = serde_json::from_slice(&requests[0].3).unwrap();
    assert_eq!(
        first["traffic"],
        serde_json::json!([{"model_version": "v1", "weight": 0.8}, {"model_version": "v2", "weight": 0.2}]),
        "{first}"
    );

    // Published twice, as a redelivery would: one rollback, one alert, one platform update.
    let remediation = critical_remediation(&env);
    publish_remediation(&env, &remediation, 2).await;

    let started = Instant::now();
    let state = loop {
        let (code, stdout, stderr) = env.run_vigil(&config, &["lifecycle", "state", "--json"]).await;
        assert_eq!(code, Some(0), "state: {stderr}");
        let state: Value = serde_json::from_str(&stdout).expect("state --json is JSON");
        if version_of(&state, "fraud", "v2")["stage"] == "ROLLED_BACK" {
            break state;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "v2 not rolled back within 60 s: {state}");
        assert!(consumer.try_wait().unwrap().is_none(), "vigil lifecycle exited early");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(version_of(&state, "fraud", "v1")["stage"], "PRODUCTION", "{state}");
    let v2 = version_of(&state, "fraud", "v2");
    assert_eq!(v2["actor"], "vigil", "{state}");
    let rollback_id = format!("{}:ROLLED_BACK:v2", remediation.remediation_id);
    assert_eq!(v2["last_event_id"], rollback_id.as_str(), "{state}");

    // The platform: v1 takes all traffic, signed, with the rollback's event id as the key.
    let requests =
        wait_for_requests(&platform, "the rollback's platform update", Duration::from_secs(30), |r| {
            r.iter().any(|q| q.2 == rollback_id)
        })
        .await;
    let (signed, _, _, body) = requests.iter().find(|q| q.2 == rollback_id).unwrap();
    assert_eq!(signed, &signature("platform-secret", body), "HMAC of the raw body");
    let update: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(update["traffic"], serde_json::json!([{"model_version": "v1", "weight": 1.0}]), "{update}");
    assert_eq!((update["production"].as_str(), &update["canary"]), (Some("v1"), &Value::Null), "{update}");
    assert_eq!(update["events"][0]["remediation_id"], remediation.remediation_id.as_str(), "{update}");

    wait_for_requests(&received, "an alert", Duration::from_secs(30), |r| !r.is_empty()).await;
    // Anything more would come quickly (the consumer has read both copies by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "exactly one alert: {requests:?}");
    assert_eq!(platform.lock().unwrap().len(), 2, "the start-up state and the rollback, once each");
    let (signed, delivery, _, body) = &requests[0];
    assert_eq!(signed, &signature(SECRET, body), "HMAC of the raw body");
    assert!(!delivery.is_empty(), "X-Vigil-Delivery is set");
    let alert: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(alert["key"], "fraud/v2/error_rate", "{alert}");
    assert_eq!(alert["state"], "firing", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["remediation_id"], remediation.remediation_id.as_str(), "{alert}");
    assert!(
        alert.to_string().contains("canary v2 rolled back"),
        "the lifecycle outcome is in the details: {alert}"
    );

    // The audit: every event of the log once (the registrations replayed at start, the rollback
    // published), and the deliveries.
    let rows = audited(&env, Duration::from_secs(30), |rows| rows.len() == 3).await;
    let rolled = rows.iter().find(|r| r.event_id == rollback_id).expect("the rollback is audited");
    assert_eq!(
        (rolled.stage.as_str(), rolled.actor.as_str(), rolled.remediation_id.as_deref()),
        ("ROLLED_BACK", "vigil", Some(remediation.remediation_id.as_str()))
    );
    assert!(rows.iter().all(|r| r.source_offset >= 0), "{rows:#?}");
    let deliveries = env.store().alert_deliveries().await.unwrap();
    assert!(
        deliveries.iter().any(|d| d.receiver == "it-hook"
            && d.state == "firing"
            && d.outcome == "delivered"
            && d.http_status == 200),
        "{deliveries:#?}"
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d.receiver == "serving" && d.state == "traffic" && d.alert_key == rollback_id),
        "{deliveries:#?}"
    );

    // Healthy again: the monitor stores a healthy check of the window after the breach, and the
    // alert resolves with the same key.
    // Window boundaries are whole seconds: the first window starting at or after the breach's end.
    let window_after = (remediation.window_end_ms + 999) / 1000;
    clickhouse_sql(&format!(
        "INSERT INTO {}.policy_checks (model_id, model_version, window_start, policy, verdict, events, computed_at) \
         VALUES ('fraud', 'v2', toDateTime({window_after}), 'error_rate', 'healthy', 500, now())",
        env.database
    ))
    .await;
    let requests =
        wait_for_requests(&received, "the resolve", Duration::from_secs(30), |r| r.len() >= 2).await;
    let resolved: Value = serde_json::from_slice(&requests[1].3).unwrap();
    assert_eq!(
        (resolved["key"].as_str(), resolved["state"].as_str()),
        (Some("fraud/v2/error_rate"), Some("resolved")),
        "{resolved}"
    );
    assert!(resolved["ends_at"].is_string(), "{resolved}");

    let status = terminate(&mut consumer, Duration::from_secs(30));
    assert!(status.success(), "vigil lifecycle exit status after SIGTERM: {status:?}");
    env.drop_database().await;
    env.cleanup();
}

/// Runs `vigil` with `VIGIL_API_TOKEN` set, as a person with their own token would.
async fn run_vigil_as(
    env: &LifecycleEnv,
    config: &std::path::Path,
    token: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut command = env.vigil(config, args);
    command.env("VIGIL_API_TOKEN", token);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Hex SHA-256, as `printf %s TOKEN | sha256sum` prints it.
fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_checks_tokens_roles_scopes_and_four_eyes_and_records_the_subject() {
    let env = LifecycleEnv::new("lifecycle_api");
    // alice registers (approver, so only four eyes stop her), bob only reads, carol approves,
    // dave approves but only churn models.
    let (alice, bob, carol, dave) = ("alice-token", "bob-token", "carol-token", "dave-token");
    let toml = format!(
        r#"
[lifecycle]
replay_timeout_ms = 30000
[lifecycle.api]
token_hashes = ["alice:approver:fraud*:{}", "bob:viewer:*:{}"]
[[lifecycle.api.tokens]]
subject = "carol"
role = "approver"
sha256 = "{}"
[[lifecycle.api.tokens]]
subject = "dave"
role = "approver"
models = ["churn*"]
sha256 = "{}"
[lifecycle.models.fraud]
manual_rollback = true
"#,
        sha256_hex(alice),
        sha256_hex(bob),
        sha256_hex(carol),
        sha256_hex(dave)
    );
    // Without any token the API does not start, and the error says how to give one.
    let bare = env.write_config("[lifecycle]\nreplay_timeout_ms = 30000\n");
    let mut no_token = env.vigil(&bare, &["lifecycle"]);
    no_token.env_remove("VIGIL__LIFECYCLE__API__TOKEN");
    let output = tokio::task::spawn_blocking(move || no_token.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("lifecycle.api.tokens")
            && stderr.contains("lifecycle.api.enabled = false"),
        "{stderr}"
    );
    // A malformed hash is named by key and subject, and the hash is not echoed.
    let broken = env.dir.join("broken.toml");
    std::fs::write(&broken, "[lifecycle.api]\ntoken_hashes = [\"eve:viewer:*:abc123\"]\n").unwrap();
    let (code, _, stderr) = env.run_vigil(&broken, &["lifecycle"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("lifecycle.api.token_hashes[0] (subject \"eve\")") && !stderr.contains("abc123"),
        "{stderr}"
    );
    let config = env.write_config(&toml);

    // Killed when the test ends, passed or failed.
    let mut consumer = ChildGuard(
        env.vigil(&config, &["lifecycle"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil lifecycle starts"),
    );
    await_ready(&env).await;

    let register_v1 = r#"{"version": "v1", "stage": "production", "reason": "first release"}"#;
    for token in [None, Some("wrong-token"), Some("")] {
        assert_eq!(
            env.http("POST", "/api/v1/models/fraud/versions", token, Some(register_v1)).await.0,
            401,
            "token {token:?}"
        );
        assert_eq!(env.http("GET", "/api/v1/models", token, None).await.0, 401, "token {token:?}");
    }
    let (status, body) = env.http("GET", "/api/v1/models", Some(API_TOKEN), None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"models":[]}"#), "nothing changed");
    // A viewer cannot register, and the answer names the role it lacks.
    let (status, body) =
        env.http("POST", "/api/v1/models/fraud/versions", Some(bob), Some(register_v1)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("role viewer") && body.contains("role operator"), "{body}");
    // Nobody records a change in someone else's name.
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions",
            Some(alice),
            Some(r#"{"version": "v1", "stage": "production", "actor": "mallory"}"#),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subject (\\\"alice\\\")") && body.contains("mallory"), "{body}");

    let (status, body) =
        env.http("POST", "/api/v1/models/fraud/versions", Some(alice), Some(register_v1)).await;
    assert_eq!(status, 201, "{body}");
    let canary = format!(
        r#"{{"version": "v2", "stage": "canary", "traffic_weight": 0.2, "lineage": {{
            "training_run_id": "run-42", "training_run_uri": "mlflow://runs/run-42",
            "datasets": [{{"name": "transactions", "version": "2026-11"}}, {{"name": "labels", "sha256": "{h}"}}],
            "code_repository": "https://git.example/ml/fraud.git", "code_commit": "4f1c2d3",
            "artifact_uri": "s3://models/fraud/v2", "artifact_sha256": "{h}",
            "parent_version": "v1", "team": "risk", "tags": {{"ticket": "RISK-7"}}}}}}"#,
        h = "ab".repeat(32)
    );
    let (status, body) = env.http("POST", "/api/v1/models/fraud/versions", Some(alice), Some(&canary)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""actor":"alice""#) && body.contains(r#""training_run_id":"run-42""#), "{body}");
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions",
            Some(alice),
            Some(r#"{"version": "v2", "stage": "canary", "traffic_weight": 0.2}"#),
        )
        .await;
    assert_eq!(status, 201, "a canary event at its weight again is legal: {body}");
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions",
            Some(alice),
            Some(r#"{"version": "v1", "stage": "canary"}"#),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("PRODUCTION -> CANARY"), "{body}");
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions",
            Some(alice),
            Some(r#"{"version": "v3", "stage": "canary", "colour": "red"}"#),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions",
            Some(alice),
            Some(r#"{"version": "v3", "stage": "candidate", "lineage": {"artifact_sha256": "nothex"}}"#),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("lineage.artifact_sha256"), "{body}");

    // The lineage is in the model's state, for viewers too; out-of-scope models are hidden.
    let (status, model) = env.http("GET", "/api/v1/models/fraud", Some(bob), None).await;
    assert_eq!(status, 200, "{model}");
    let model: Value = serde_json::from_str(&model).unwrap();
    let v2 = model["versions"].as_array().unwrap().iter().find(|v| v["version"] == "v2").unwrap().clone();
    assert_eq!(v2["registered_by"], "alice", "{v2}");
    assert_eq!(v2["lineage"]["datasets"][1]["sha256"], "ab".repeat(32), "{v2}");
    assert_eq!(
        (v2["lineage"]["team"].as_str(), v2["lineage_complete"].as_bool()),
        (Some("risk"), Some(true))
    );
    let (status, body) = env.http("GET", "/api/v1/models/fraud", Some(dave), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not scoped to model") && body.contains("churn*"), "{body}");
    let (_, listed) = env.http("GET", "/api/v1/models", Some(dave), None).await;
    assert_eq!(listed, r#"{"models":[]}"#);

    // A critical remediation for the gated model waits for a human.
    let remediation = critical_remediation(&env);
    publish_remediation(&env, &remediation, 1).await;
    let started = Instant::now();
    loop {
        let (_, body) = env.http("GET", "/api/v1/approvals?model=fraud", Some(bob), None).await;
        if body.contains(&remediation.remediation_id) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no pending approval within 60 s: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (code, stdout, stderr) = run_vigil_as(&env, &config, bob, &["lifecycle", "approvals"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&remediation.remediation_id) && stdout.contains("v2 ROLLED_BACK"), "{stdout}");

    let decision = r#"{"reason": "drift confirmed"}"#;
    let path = format!("/api/v1/approvals/{}/approve", remediation.remediation_id);
    assert_eq!(env.http("POST", &path, Some("wrong-token"), Some(decision)).await.0, 401);
    let (status, body) = env.http("POST", &path, Some(bob), Some(decision)).await;
    assert_eq!(status, 403, "a viewer cannot approve: {body}");
    assert!(body.contains("role approver"), "{body}");
    let (status, body) = env.http("POST", &path, Some(dave), Some(decision)).await;
    assert_eq!(status, 403, "out of scope: {body}");
    let (status, body) = env.http("POST", &path, Some(alice), Some(decision)).await;
    assert_eq!(status, 403, "the registrant cannot approve: {body}");
    assert!(body.contains("four eyes") && body.contains("alice\\\" registered"), "{body}");
    let (_, model) = env.http("GET", "/api/v1/models/fraud", Some(API_TOKEN), None).await;
    assert!(model.contains(r#""stage":"CANARY""#), "still a canary after refused approvals: {model}");

    let (code, stdout, stderr) = run_vigil_as(
        &env,
        &config,
        carol,
        &["lifecycle", "approve", "fraud", "v2", "--reason", "drift confirmed"],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("model fraud version v2: ROLLED_BACK") && stdout.contains("actor carol"),
        "{stdout}"
    );
    let (code, _, stderr) =
        run_vigil_as(&env, &config, carol, &["lifecycle", "approve", "fraud", "v2", "--reason", "again"])
            .await;
    assert_eq!(code, Some(1), "nothing left to approve");
    assert!(stderr.contains("no decision about model fraud version v2"), "{stderr}");

    let (status, body) = env.http("GET", "/api/v1/models/fraud/history", Some(API_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    let last = history["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["stage"].as_str(), last["actor"].as_str()),
        (Some("ROLLED_BACK"), Some("carol")),
        "{history}"
    );
    assert_eq!(last["remediation_id"], remediation.remediation_id.as_str(), "{history}");
    assert!(last["reason"].as_str().unwrap().ends_with("approved by carol: drift confirmed"), "{history}");
    assert!(last["event_time_ms"].as_i64().unwrap() > remediation.created_at_ms, "{history}");

    // A manual rollback of production with nothing earlier to return to is refused; the legacy
    // token is an admin whose subject is lifecycle.api.token_subject.
    let (status, body) = env
        .http(
            "POST",
            "/api/v1/models/fraud/versions/v1/rollback",
            Some(API_TOKEN),
            Some(r#"{"reason": "test"}"#),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    let rows = audited(&env, Duration::from_secs(30), |rows| rows.iter().any(|r| r.actor == "carol")).await;
    let approved = rows.iter().find(|r| r.actor == "carol").unwrap();
    assert_eq!(
        (approved.stage.as_str(), approved.remediation_id.as_deref()),
        ("ROLLED_BACK", Some(remediation.remediation_id.as_str()))
    );

    // The KPIs through the API: all models need a token scoped to all of them.
    let (status, body) = env.http("GET", "/api/v1/kpis", Some(dave), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = env.http("GET", "/api/v1/kpis?model=fraud", Some(bob), None).await;
    assert_eq!(status, 200, "{body}");
    let kpis: Value = serde_json::from_str(&body).unwrap();
    let fraud = &kpis["models"][0];
    assert_eq!(
        (
            fraud["deployments"].as_u64(),
            fraud["versions_deployed"].as_u64(),
            fraud["versions_rolled_back"].as_u64()
        ),
        (Some(1), Some(2), Some(1)),
        "{kpis}"
    );
    assert_eq!(fraud["exceptions"]["gates_bypassed"], 1, "v1 went straight to production: {kpis}");

    let (_, metrics) = env.http("GET", "/metrics", None, None).await;
    for needle in [
        r#"vigil_lifecycle_decisions_total{outcome="awaiting_approval"} 1"#,
        r#"vigil_lifecycle_events_applied_total{origin="command"} 4"#,
        r#"vigil_lifecycle_api_auth_failures_total{kind="forbidden"} 6"#,
        r#"vigil_lifecycle_kpi_period_seconds{model="all"} 2592000"#,
    ] {
        assert!(metrics.contains(needle), "{needle} in {metrics}");
    }
    for (route, status) in [
        ("/api/v1/models/{model}/versions", "401"),
        ("/api/v1/approvals/{id}/approve", "401"),
        ("/api/v1/approvals/{id}/approve", "403"),
        ("/api/v1/approvals/{id}/approve", "200"),
    ] {
        let counted = metrics.lines().any(|l| {
            l.starts_with("vigil_lifecycle_api_requests_total{")
                && l.contains(&format!(r#"route="{route}""#))
                && l.contains(&format!(r#"status="{status}""#))
        });
        assert!(counted, "{route} {status} counted in {metrics}");
    }
    for token in [alice, bob, carol, dave, API_TOKEN] {
        assert!(!metrics.contains(token) && !metrics.contains(&sha256_hex(token)), "no token in metrics");
    }
    let (status, openapi) = env.http("GET", "/openapi.json", None, None).await;
    assert!(status == 200 && openapi.contains("\"/api/v1/approvals/{id}/approve\""), "{status}");

    assert!(terminate(&mut consumer, Duration::from_secs(30)).success());
    env.drop_database().await;
    env.cleanup();
}

#[tokio::test(flavor = "multi_thread")]
async fn canaries_step_promote_and_roll_back_on_the_monitors_stored_windows() {
    let env = LifecycleEnv::new("lifecycle_canary");
    let policy = |model: &str| {
        format!(
            r#"
[lifecycle.models.{model}.canary]
analysis = true
step_weight = 0.1
max_weight = 0.3
failed_check_threshold = 2
[[lifecycle.models.{model}.canary.checks]]
metric = "latency_p99_ms"
direction = "lower_is_better"
max_relative_degradation = 0.2
min_samples = 100
"#
        )
    };
    let config = env.write_config(&format!(
        "[lifecycle]\nreplay_timeout_ms = 30000\ncanary_interval_ms = 1000\n{}{}",
        policy("fraud"),
        policy("churn")
    ));
    for model in ["fraud", "churn"] {
        for (version, stage) in [("v1", "production"), ("v2", "canary")] {
            let (code, _, stderr) = env
                .run_vigil(
                    &config,
                    &[
                        "lifecycle",
                        "register",
                        "--model",
                        model,
                        "--version",
                        version,
                        "--stage",
                        stage,
                        "--actor",
                        "ci",
                    ],
                )
                .await;
            assert_eq!(code, Some(0), "{stderr}");
        }
    }
    let (code, _, stderr) = env.run_vigil(&config, &["migrate"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut consumer = ChildGuard(
        env.vigil(&config, &["lifecycle"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil lifecycle starts"),
    );
    await_ready(&env).await;
    // What the monitor stores, in its order, while the analysis polls (every second): three
    // one-minute windows, healthy policy checks for every version; fraud v2 as fast as v1, churn
    // v2 twice as slow. Each window's checks are there for two polls before its metrics rows: a
    // window must not be judged on samples that are not stored yet.
    let db = &env.database;
    for window in [60, 120, 180] {
        for model in ["fraud", "churn"] {
            for version in ["v1", "v2"] {
                clickhouse_sql(&format!(
                    "INSERT INTO {db}.policy_checks (model_id, model_version, window_start, policy, verdict, events, computed_at) \
                     VALUES ('{model}', '{version}', toDateTime({window}), 'feature_drift', 'healthy', 500, now())"
                ))
                .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        for (model, slow) in [("fraud", 11.0), ("churn", 20.0)] {
            for (version, p99) in [("v1", 10.0), ("v2", slow)] {
                clickhouse_sql(&format!(
                    "INSERT INTO {db}.window_metrics (model_id, model_version, segment, window_start, window_seconds, events, latency_p99_ms, computed_at) \
                     VALUES ('{model}', '{version}', '', toDateTime({window}), 60, 500, {p99}, now())"
                ))
                .await;
            }
        }
    }
    let started = Instant::now();
    let state = loop {
        let (_, body) = env.http("GET", "/api/v1/models", Some(API_TOKEN), None).await;
        let state: Value = serde_json::from_str(&body).unwrap();
        if version_of(&state, "fraud", "v2")["stage"] == "PRODUCTION"
            && version_of(&state, "churn", "v2")["stage"] == "ROLLED_BACK"
        {
            break state;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "analysis did not finish within 60 s: {state}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(version_of(&state, "fraud", "v1")["stage"], "RETIRED", "{state}");
    assert_eq!(version_of(&state, "churn", "v1")["stage"], "PRODUCTION", "{state}");

    // fraud v2: 0.1 -> 0.2 (window 60) -> 0.3 (120) -> production (180), each named by its window's end.
    let (_, body) = env.http("GET", "/api/v1/models/fraud/history", Some(API_TOKEN), None).await;
    let history: Value = serde_json::from_str(&body).unwrap();
    let steps: Vec<(String, Option<f64>, String)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "vigil")
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                e["traffic_weight"].as_f64(),
                e["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("canary:fraud:v2:120000:CANARY".to_owned(), Some(0.2), "CANARY".to_owned()),
            ("canary:fraud:v2:180000:CANARY".to_owned(), Some(0.3), "CANARY".to_owned()),
            ("canary:fraud:v2:240000:PRODUCTION".to_owned(), None, "PRODUCTION".to_owned()),
        ],
        "{history}"
    );
    // churn v2 failed two windows against production's latency: rolled back after the second.
    let (_, body) = env.http("GET", "/api/v1/models/churn/history", Some(API_TOKEN), None).await;
    assert!(body.contains("canary:churn:v2:180000:ROLLED_BACK"), "{body}");

    // A restart judges the same windows again: the same ids, nothing new in the log.
    assert!(terminate(&mut consumer, Duration::from_secs(30)).success());
    let mut consumer = ChildGuard(
        env.vigil(&config, &["lifecycle"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vigil lifecycle starts"),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, body) = env.http("GET", "/api/v1/models/fraud/history", Some(API_TOKEN), None).await;
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        again["events"].as_array().unwrap().len(),
        history["events"].as_array().unwrap().len(),
        "{again}"
    );
    assert!(terminate(&mut consumer, Duration::from_secs(30)).success());
    env.drop_database().await;
    env.cleanup();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_lifecycle_and_alerts_config_names_every_key() {
    let env = LifecycleEnv::new("lifecycle_config");
    let config = env.write_config(
        r#"
[lifecycle.defaults.canary]
failed_check_threshold = 0
[lifecycle.models.fraud.canary]
max_weight = 2.0

[[alerts.receivers]]
name = "hook"
kind = "generic"
url = "ftp://example.internal"
secret = ""
"#,
    );
    let (code, _, stderr) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    for key in [
        "lifecycle.defaults.canary.failed_check_threshold",
        "lifecycle.models.fraud.canary.max_weight",
        "alerts.receivers[0].url",
        "alerts.receivers[0].secret",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }

    // Webhooks in the wrong list are named, and so is a name used in both.
    let config = env.write_config(
        r#"
[[alerts.receivers]]
name = "hook"
kind = "mlflow"
url = "http://127.0.0.1:5000"

[[lifecycle.platform]]
name = "hook"
kind = "slack"
webhook_url = "https://hooks.slack.com/x"
"#,
    );
    let (code, _, stderr) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    for key in [
        "alerts.receivers[0].kind",
        "lifecycle.platform[0].kind",
        "lifecycle.platform[0].name \"hook\" is used twice",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }

    // A key in the wrong place is refused by name, not ignored.
    let config = env.write_config("[lifecycle.models.fraud]\nmax_weight = 0.5\n");
    let (code, _, stderr) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("max_weight"), "{stderr}");
    env.cleanup();
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_jwts_checked_against_a_jwks_file_name_the_actor() {
    use ring::rand::SystemRandom;
    use ring::signature::{KeyPair, RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
    // The test-only key of vigil-lifecycle's unit tests.
    let key = RsaKeyPair::from_pkcs8(include_bytes!("../../../vigil-lifecycle/tests/data/jwt-test-key.pk8"))
        .unwrap();
    let public: RsaPublicKeyComponents<Vec<u8>> = key.public_key().into();
    let env = LifecycleEnv::new("lifecycle_oidc");
    let jwks = env.dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [{"kty": "RSA", "kid": "idp-1", "use": "sig",
            "n": b64url(&public.n), "e": b64url(&public.e)}]})
        .to_string(),
    )
    .unwrap();
    let config = env.write_config(&format!(
        "[lifecycle]\nreplay_timeout_ms = 30000\n[lifecycle.api.oidc]\njwks_file = \"{}\"\nissuer = \"https://idp.example\"\naudience = \"vigil\"\n",
        jwks.display()
    ));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let sign = |claims: Value| {
        let signed = format!(
            "{}.{}",
            b64url(br#"{"alg":"RS256","typ":"JWT","kid":"idp-1"}"#),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature).unwrap();
        format!("{signed}.{}", b64url(&signature))
    };
    let claims = |sub: &str, role: &str, exp: i64| {
        serde_json::json!({"iss": "https://idp.example", "aud": "vigil", "sub": sub, "exp": exp,
            "vigil_role": role, "vigil_models": ["fraud*"]})
    };
    let erin = sign(claims("erin", "operator", now + 600));
    let viewer = sign(claims("frank", "viewer", now + 600));
    let expired = sign(claims("erin", "operator", now - 3600));
    let mut consumer = ChildGuard(
        env.vigil(&config, &["lifecycle"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap(),
    );
    await_ready(&env).await;
    let register = r#"{"version": "v1", "stage": "production", "reason": "first"}"#;
    let (status, body) =
        env.http("POST", "/api/v1/models/fraud/versions", Some(&viewer), Some(register)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        env.http("POST", "/api/v1/models/fraud/versions", Some(&expired), Some(register)).await.0,
        401
    );
    // The same header and signature over claims that make frank an admin.
    let parts: Vec<&str> = viewer.split('.').collect();
    let mut admin = claims("frank", "admin", now + 600);
    admin["vigil_models"] = serde_json::json!(["*"]);
    let forged = format!("{}.{}.{}", parts[0], b64url(admin.to_string().as_bytes()), parts[2]);
    assert_eq!(env.http("GET", "/api/v1/models", Some(&forged), None).await.0, 401);
    let trailing = format!("{}_", &erin[..erin.len() - 1]);
    assert_eq!(
        env.http("GET", "/api/v1/models", Some(&trailing), None).await.0,
        401,
        "non-canonical base64url"
    );
    let (status, body) = env.http("POST", "/api/v1/models/churn/versions", Some(&erin), Some(register)).await;
    assert_eq!(status, 403, "out of the token's scope: {body}");
    let (status, body) = env.http("POST", "/api/v1/models/fraud/versions", Some(&erin), Some(register)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""actor":"erin""#), "{body}");
    assert!(terminate(&mut consumer, Duration::from_secs(30)).success());
    env.drop_database().await;
    env.cleanup();
}
