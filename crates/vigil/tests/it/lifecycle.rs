//! `vigil lifecycle` end to end: versions registered by hand, a critical remediation rolls the
//! canary back, one signed alert reaches a local webhook, SIGTERM exits cleanly.

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

use crate::harness::{self, terminate, version_of, LifecycleEnv};

const SECRET: &str = "it-secret";

/// One request the webhook received: signature header, delivery id header, raw body.
type Received = (String, String, Bytes);

/// A generic-webhook receiver on 127.0.0.1:0 that answers 200 and keeps every request.
async fn webhook() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                sink.lock().unwrap().push((header("x-vigil-signature"), header("x-vigil-delivery"), body));
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
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
async fn critical_remediation_rolls_back_the_canary_and_alerts_once() {
    let env = LifecycleEnv::new("lifecycle");
    let (url, received) = webhook().await;
    let config = env.write_config(&format!(
        r#"
[lifecycle]
replay_timeout_ms = 30000

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
        let mut args = vec!["lifecycle", "register", "--model", "fraud", "--version", version, "--stage", stage, "--actor", "ci"];
        if let Some(weight) = extra {
            args.extend(["--weight", weight]);
        }
        let (code, stdout, stderr) = env.run_vigil(&config, &args).await;
        assert_eq!(code, Some(0), "register {version} {stage}: {stderr}");
        assert!(stdout.contains(&format!("model fraud version {version}: NEW -> {}", stage.to_uppercase())), "{stdout}");
    }
    // An illegal move is refused with model, version and both stages named, and not published.
    let (code, _, stderr) = env.run_vigil(&config, &["lifecycle", "register", "--model", "fraud", "--version", "v1", "--stage", "canary"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    for needle in ["\"fraud\"", "\"v1\"", "PRODUCTION -> CANARY"] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }

    let mut consumer = env.vigil(&config, &["lifecycle"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("vigil lifecycle starts");

    // Published twice, as a redelivery would: one rollback, one alert.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    let remediation = critical_remediation(&env);
    let payload = encode(&remediation);
    for _ in 0..2 {
        producer.send(FutureRecord::to(&env.remediations).key("fraud").payload(&payload), Duration::from_secs(10)).await.expect("remediation delivered");
    }

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
    assert_eq!(v2["last_event_id"], format!("{}:ROLLED_BACK:v2", remediation.remediation_id), "{state}");

    let started = Instant::now();
    while received.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no alert within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything more would come quickly (the consumer has read both copies by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "exactly one alert: {requests:?}");
    let (signature, delivery, body) = &requests[0];
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, &format!("sha256={expected}"), "HMAC of the raw body");
    assert!(!delivery.is_empty(), "X-Vigil-Delivery is set");
    let alert: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(alert["key"], "fraud/v2/error_rate", "{alert}");
    assert_eq!(alert["state"], "firing", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["remediation_id"], remediation.remediation_id.as_str(), "{alert}");
    assert!(alert.to_string().contains("canary v2 rolled back"), "the lifecycle outcome is in the details: {alert}");

    let status = terminate(&mut consumer, Duration::from_secs(30));
    assert!(status.success(), "vigil lifecycle exit status after SIGTERM: {status:?}");
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

    // A key in the wrong place is refused by name, not ignored.
    let config = env.write_config("[lifecycle.models.fraud]\nmax_weight = 0.5\n");
    let (code, _, stderr) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("max_weight"), "{stderr}");
    env.cleanup();
}
