//! Delivery against local receivers on 127.0.0.1:0 that fail, hang, rate-limit and recover.
//! Backoffs are milliseconds here so the whole file runs in a few seconds.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;
use vigil_alerts::payload::sign;
use vigil_alerts::{
    Alert, AlertSeverity, AlertState, AlertsConfig, DeliveryConfig, ReceiverConfig, ReceiverKind,
    StageChange, StatsSnapshot, TrafficUpdate,
};

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    TooManyRequests { retry_after_s: u64 },
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A receiver that answers from a script, then 200 (or `otherwise`), and records every request.
#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    otherwise: Arc<Mutex<Reply>>,
    url: String,
}

impl Receiver {
    async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            otherwise: Arc::new(Mutex::new(Reply::Status(200))),
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new().fallback(answer).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn set_otherwise(&self, reply: Reply) {
        *self.otherwise.lock().unwrap() = reply;
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.hits().iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect()
    }
}

async fn answer(
    State(receiver): State<Receiver>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body,
    });
    let reply = receiver.script.lock().unwrap().pop_front().unwrap_or(*receiver.otherwise.lock().unwrap());
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::TooManyRequests { retry_after_s } => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", retry_after_s.to_string())]).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// An outbox directory of its own, removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(test: &str) -> TempDir {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    TempDir(std::env::temp_dir().join(format!("vigil-alerts-it-{test}-{}-{nanos}", std::process::id())))
}

fn config(dir: &TempDir, receivers: Vec<(&str, ReceiverKind)>) -> AlertsConfig {
    AlertsConfig {
        outbox_dir: dir.0.clone(),
        receivers: receivers
            .into_iter()
            .map(|(name, kind)| ReceiverConfig { name: name.into(), kind })
            .collect(),
        delivery: DeliveryConfig {
            request_timeout: Duration::from_millis(300),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
            max_attempts: 5,
            lane_capacity: 16,
        },
        queue_capacity: 16,
    }
}

fn generic(receiver: &Receiver) -> ReceiverKind {
    ReceiverKind::Generic { url: format!("{}/hook", receiver.url), secret: "s3cret".into() }
}

fn alert(policy: &str) -> Alert {
    Alert {
        key: Alert::key_for("fraud", "v2", policy),
        state: AlertState::Firing,
        severity: AlertSeverity::Critical,
        model_id: "fraud".into(),
        model_version: "v2".into(),
        policy: policy.into(),
        summary: format!("fraud v2 breached {policy}"),
        details: BTreeMap::new(),
        remediation_id: Some("rem-1".into()),
        starts_at_ms: 1_795_727_340_000,
        ends_at_ms: None,
        link: None,
    }
}

/// Polls until `done` holds for the stats, or panics with them after `within`.
async fn wait_for(
    stats: impl Fn() -> StatsSnapshot,
    within: Duration,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let started = Instant::now();
    loop {
        let snapshot = stats();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(started.elapsed() < within, "timed out; stats: {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn failing_receiver_gets_trigger_then_resolve_in_order_after_retries() {
    let receiver = Receiver::start([Reply::Status(500), Reply::Status(502)]).await;
    let dir = temp_dir("order");
    let shutdown = CancellationToken::new();
    let (audit, mut audit_rows) = tokio::sync::mpsc::channel(16);
    let config = config(&dir, vec![("hook", generic(&receiver))]);
    let (notifier, _tasks) = vigil_alerts::start_with_audit(&config, shutdown.clone(), Some(audit)).unwrap();
    notifier.notify(alert("error-rate")).unwrap();
    notifier.notify(alert("error-rate").resolved(1_795_727_400_000)).unwrap();
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 2).await;
    assert_eq!((stats.retried, stats.failed), (2, 0));
    let hits = receiver.hits();
    assert_eq!(hits.len(), 4);
    let states: Vec<_> = receiver.bodies().iter().map(|b| b["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["firing", "firing", "firing", "resolved"]);
    for hit in &hits {
        assert_eq!(hit.uri, "/hook");
        let signature = hit.headers["x-vigil-signature"].to_str().unwrap();
        assert_eq!(signature, sign(b"s3cret", &hit.body), "signature of the raw body");
    }
    // A retry repeats its delivery id; the resolve has its own.
    let ids: Vec<_> =
        hits.iter().map(|h| h.headers["x-vigil-delivery"].to_str().unwrap().to_owned()).collect();
    assert_eq!((ids[0] == ids[2], ids[2] == ids[3]), (true, false));
    let mut rows = Vec::new();
    while let Ok(row) = audit_rows.try_recv() {
        rows.push((
            row.message.mark(),
            row.attempt,
            row.outcome.as_str().to_owned(),
            row.http_status.unwrap_or(0),
        ));
    }
    let expected = [
        ("firing", 1, "retrying", 500),
        ("firing", 2, "retrying", 502),
        ("firing", 3, "delivered", 200),
        ("resolved", 1, "delivered", 200),
    ];
    let expected: Vec<_> =
        expected.iter().map(|(s, a, o, h)| (s.to_string(), *a, o.to_string(), *h)).collect();
    assert_eq!(rows, expected, "one audit row per attempt");
    shutdown.cancel();
}

#[tokio::test]
async fn duplicates_by_key_and_state_are_sent_once() {
    let receiver = Receiver::start([]).await;
    let dir = temp_dir("dedup");
    let shutdown = CancellationToken::new();
    let (notifier, _tasks) =
        vigil_alerts::start(&config(&dir, vec![("hook", generic(&receiver))]), shutdown.clone()).unwrap();
    let firing = alert("error-rate");
    for a in [
        firing.clone(),
        firing.clone(),
        firing.resolved(1),
        firing.resolved(2),
        alert("drift").resolved(3),
        firing.clone(),
    ] {
        notifier.notify(a).unwrap();
    }
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.hits().len(), 3, "firing, resolved, firing again");
    assert_eq!(stats.deduplicated, 3, "a repeated firing, a repeated resolve, a resolve never fired");
    shutdown.cancel();
}

#[tokio::test]
async fn rate_limited_receiver_is_retried_after_retry_after() {
    let receiver = Receiver::start([Reply::TooManyRequests { retry_after_s: 1 }]).await;
    let dir = temp_dir("429");
    let shutdown = CancellationToken::new();
    let slack = ReceiverKind::Slack { webhook_url: format!("{}/services/T/B/X", receiver.url) };
    let (notifier, _tasks) =
        vigil_alerts::start(&config(&dir, vec![("slack", slack)]), shutdown.clone()).unwrap();
    notifier.notify(alert("error-rate")).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 1).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    let waited = hits[1].at - hits[0].at;
    // The backoff alone would be at most 20 ms.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert!(receiver.bodies()[1]["text"].as_str().unwrap().contains("[FIRING]"));
    shutdown.cancel();
}

#[tokio::test]
async fn hanging_receiver_times_out_without_delaying_the_others() {
    let hanging = Receiver::start([Reply::Hang]).await;
    let healthy = Receiver::start([]).await;
    let dir = temp_dir("hang");
    let shutdown = CancellationToken::new();
    let receivers = vec![("hangs", generic(&hanging)), ("healthy", generic(&healthy))];
    let mut config = config(&dir, receivers);
    config.delivery.request_timeout = Duration::from_millis(1500);
    let (notifier, _tasks) = vigil_alerts::start(&config, shutdown.clone()).unwrap();
    let started = Instant::now();
    notifier.notify(alert("error-rate")).unwrap();
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(2), |s| s.delivered == 1).await;
    assert_eq!(healthy.hits().len(), 1);
    assert_eq!(stats.retried, 0, "the healthy receiver was served while the other request still hung");
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 2).await;
    assert_eq!(stats.retried, 1, "the hung request timed out once");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(hanging.hits().len(), 2);
    shutdown.cancel();
}

#[tokio::test]
async fn client_errors_are_not_retried_and_server_errors_give_up_after_max_attempts() {
    let rejecting = Receiver::start([Reply::Status(400)]).await;
    let failing = Receiver::start([]).await;
    failing.set_otherwise(Reply::Status(503));
    let dir = temp_dir("giveup");
    let shutdown = CancellationToken::new();
    let receivers = vec![("rejects", generic(&rejecting)), ("fails", generic(&failing))];
    let (notifier, _tasks) = vigil_alerts::start(&config(&dir, receivers), shutdown.clone()).unwrap();
    notifier.notify(alert("error-rate")).unwrap();
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.failed == 2).await;
    assert_eq!((rejecting.hits().len(), failing.hits().len()), (1, 5));
    assert_eq!((stats.delivered, stats.retried), (0, 4));
    shutdown.cancel();
}

#[tokio::test]
async fn undelivered_alerts_survive_a_restart_and_are_sent_once() {
    let receiver = Receiver::start([]).await;
    receiver.set_otherwise(Reply::Status(503));
    let dir = temp_dir("restart");
    let mut config = config(
        &dir,
        vec![(
            "pd",
            ReceiverKind::Pagerduty {
                routing_key: "KEY".into(),
                url: format!("{}/v2/enqueue", receiver.url),
            },
        )],
    );
    config.delivery.max_attempts = 1000;

    let shutdown = CancellationToken::new();
    let (notifier, mut tasks) = vigil_alerts::start(&config, shutdown.clone()).unwrap();
    notifier.notify(alert("error-rate")).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.retried >= 2).await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}

    receiver.set_otherwise(Reply::Status(202));
    let failed_attempts = receiver.hits().len();
    let shutdown = CancellationToken::new();
    let (notifier, mut tasks) = vigil_alerts::start(&config, shutdown.clone()).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 1).await;
    // The alert is remembered as firing: sending it again is a duplicate.
    notifier.notify(alert("error-rate")).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.deduplicated == 1).await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}

    let shutdown = CancellationToken::new();
    let (notifier, _tasks) = vigil_alerts::start(&config, shutdown.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(notifier.stats().delivered, 0, "nothing left to resend");
    assert_eq!(receiver.hits().len(), failed_attempts + 1);
    let body = &receiver.bodies()[failed_attempts];
    assert_eq!(
        (body["event_action"].as_str(), body["dedup_key"].as_str()),
        (Some("trigger"), Some("fraud/v2/error-rate"))
    );
    shutdown.cancel();
}

#[tokio::test]
async fn every_format_reaches_its_documented_path() {
    let receiver = Receiver::start([]).await;
    let dir = temp_dir("formats");
    let shutdown = CancellationToken::new();
    let receivers = vec![
        ("am", ReceiverKind::Alertmanager { url: receiver.url.clone() }),
        ("opsgenie", ReceiverKind::Opsgenie { api_key: "KEY".into(), url: receiver.url.clone() }),
    ];
    let (notifier, _tasks) = vigil_alerts::start(&config(&dir, receivers), shutdown.clone()).unwrap();
    notifier.notify(alert("error-rate")).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 2).await;
    notifier.notify(alert("error-rate").resolved(1_795_727_400_000)).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 4).await;
    let mut uris: Vec<_> = receiver.hits().iter().map(|h| h.uri.clone()).collect();
    uris.sort();
    assert_eq!(
        uris,
        [
            "/api/v2/alerts",
            "/api/v2/alerts",
            "/v2/alerts",
            "/v2/alerts/fraud%2Fv2%2Ferror-rate/close?identifierType=alias",
        ]
    );
    let opsgenie = receiver.hits().into_iter().find(|h| h.uri == "/v2/alerts").unwrap();
    assert_eq!(opsgenie.headers["authorization"], "GenieKey KEY");
    shutdown.cancel();
}

#[test]
fn config_reads_from_toml_shaped_values_and_lists_every_problem() {
    let config: AlertsConfig = serde_json::from_value(serde_json::json!({
        "outbox_dir": "/var/lib/vigil/alerts",
        "receivers": [
            {"name": "pd", "kind": "pagerduty", "routing_key": ""},
            {"name": "pd", "kind": "slack", "webhook_url": "hooks.slack.example/x"},
        ],
        "delivery": {"max_attempts": 0},
    }))
    .unwrap();
    let vigil_alerts::AlertError::Config(problems) = config.validate("alerts").unwrap_err() else { panic!() };
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems.iter().any(|p| p.starts_with("alerts.receivers[0].routing_key")));
    assert!(problems.iter().any(|p| p.starts_with("alerts.receivers[1].name")));
    assert!(problems.iter().any(|p| p.starts_with("alerts.receivers[1].webhook_url")));
    assert!(problems.iter().any(|p| p.starts_with("alerts.delivery.max_attempts")));
    let unknown =
        serde_json::from_value::<AlertsConfig>(serde_json::json!({"outbox_dir": "x", "retries": 3}));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `retries`"));
    let unknown = serde_json::from_value::<AlertsConfig>(serde_json::json!({
        "outbox_dir": "x",
        "receivers": [{"name": "am", "kind": "alertmanager", "url": "http://am", "token": "t"}],
    }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `token`"));
}

fn rollback_update() -> TrafficUpdate {
    TrafficUpdate {
        model_id: "fraud".into(),
        event_id: "rem-1:ROLLED_BACK:v2".into(),
        production: Some("v1".into()),
        canary: None,
        changes: vec![StageChange {
            event_id: "rem-1:ROLLED_BACK:v2".into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            stage: "ROLLED_BACK".into(),
            traffic_weight: None,
            reason: "canary rolled back".into(),
            actor: "vigil".into(),
            remediation_id: Some("rem-1".into()),
            event_time_ms: 1_795_727_340_000,
            kind: "STAGE_CHANGE".into(),
            lineage: None,
        }],
        at_ms: 1_795_727_340_000,
    }
}

#[tokio::test]
async fn platform_updates_are_signed_retried_with_one_idempotency_key_and_kept_from_alert_receivers() {
    let serving = Receiver::start([Reply::Status(503)]).await;
    let mlflow = Receiver::start([]).await;
    let hook = Receiver::start([]).await;
    let dir = temp_dir("platform");
    let shutdown = CancellationToken::new();
    let (notifier, _tasks) = vigil_alerts::start(
        &config(
            &dir,
            vec![
                (
                    "serving",
                    ReceiverKind::Platform { url: format!("{}/traffic", serving.url), secret: "plat".into() },
                ),
                (
                    "registry",
                    ReceiverKind::Mlflow {
                        url: mlflow.url.clone(),
                        token: "T".into(),
                        production_alias: "champion".into(),
                        canary_alias: "challenger".into(),
                        version_prefix: "v".into(),
                    },
                ),
                ("hook", generic(&hook)),
            ],
        ),
        shutdown.clone(),
    )
    .unwrap();
    let update = rollback_update();
    notifier.notify_traffic(update.clone()).unwrap();
    notifier.notify_traffic(update.clone()).unwrap();
    notifier.notify(alert("drift")).unwrap();
    // serving: one delivery in two attempts; registry: one delivery; hook: the alert.
    let stats = wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 3).await;
    assert_eq!((stats.retried, stats.deduplicated), (1, 2), "{stats:?}");

    let hits = serving.hits();
    assert_eq!(hits.len(), 2, "a 503, then the retry");
    for hit in &hits {
        assert_eq!((hit.method.as_str(), hit.uri.as_str()), ("POST", "/traffic"));
        assert_eq!(hit.headers["idempotency-key"], "rem-1:ROLLED_BACK:v2");
        assert_eq!(hit.headers["x-vigil-signature"].to_str().unwrap(), sign(b"plat", &hit.body));
    }
    assert_eq!(hits[0].headers["x-vigil-delivery"], hits[1].headers["x-vigil-delivery"]);
    let body: serde_json::Value = serde_json::from_slice(&hits[1].body).unwrap();
    assert_eq!(body["traffic"], serde_json::json!([{"model_version": "v1", "weight": 1.0}]));
    assert_eq!(body["events"][0]["stage"], "ROLLED_BACK");

    let calls: Vec<_> = mlflow
        .hits()
        .iter()
        .map(|h| {
            (
                h.method.clone(),
                h.uri.clone(),
                serde_json::from_slice::<serde_json::Value>(&h.body).unwrap(),
                h.headers["authorization"].to_str().unwrap().to_owned(),
            )
        })
        .collect();
    let path = "/api/2.0/mlflow/registered-models/alias".to_owned();
    assert_eq!(
        calls,
        vec![
            (
                "POST".into(),
                path.clone(),
                serde_json::json!({"name": "fraud", "alias": "champion", "version": "1"}),
                "Bearer T".into()
            ),
            (
                "DELETE".into(),
                path,
                serde_json::json!({"name": "fraud", "alias": "challenger"}),
                "Bearer T".into()
            ),
        ]
    );
    let alerts = hook.bodies();
    assert_eq!(alerts.len(), 1, "the alert receiver got no platform update");
    assert_eq!(alerts[0]["policy"], "drift");
    assert_eq!(serving.hits().len() + mlflow.hits().len(), 4, "the platform receivers got no alert");
    shutdown.cancel();
}

#[tokio::test]
async fn open_alerts_survive_a_restart_and_their_resolve_closes_them() {
    let receiver = Receiver::start([]).await;
    let dir = temp_dir("open");
    let pagerduty = config(
        &dir,
        vec![(
            "pd",
            ReceiverKind::Pagerduty { routing_key: "R".into(), url: format!("{}/v2/enqueue", receiver.url) },
        )],
    );
    let shutdown = CancellationToken::new();
    let (notifier, mut tasks) = vigil_alerts::start(&pagerduty, shutdown.clone()).unwrap();
    notifier.notify(alert("drift")).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 1).await;
    assert_eq!(notifier.open_alerts().len(), 1);
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}

    let shutdown = CancellationToken::new();
    let (notifier, _tasks) = vigil_alerts::start(&pagerduty, shutdown.clone()).unwrap();
    let open = notifier.open_alerts();
    assert_eq!(
        open.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
        ["fraud/v2/drift"],
        "restored from the outbox"
    );
    notifier.notify(open[0].resolved(1_795_727_460_000)).unwrap();
    wait_for(|| notifier.stats(), Duration::from_secs(5), |s| s.delivered == 1).await;
    assert!(notifier.open_alerts().is_empty());
    let bodies = receiver.bodies();
    assert_eq!(
        bodies[1],
        serde_json::json!({"routing_key": "R", "event_action": "resolve", "dedup_key": "fraud/v2/drift"}),
        "PagerDuty resolve with the trigger's dedup key"
    );
    shutdown.cancel();
}
