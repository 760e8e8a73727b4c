//! A serving app that logs every prediction and outcome to vigil, in Rust with axum.
//!
//! ```sh
//! cargo run -p axum-serving          # VIGIL_BROKERS=127.0.0.1:9092, LISTEN_ADDR=127.0.0.1:8000
//! curl -s localhost:8000/predict -H 'content-type: application/json' \
//!      -d '{"features": {"amount": 129.99, "velocity_1h": 3}, "country": "DE"}'
//! curl -s localhost:8000/outcome -H 'content-type: application/json' \
//!      -d '{"prediction_id": "<from /predict>", "label": "fraud"}'
//! curl -s localhost:8000/vigil/stats
//! ```
//!
//! The model is a stand-in; what matters is that logging costs the request well under a
//! microsecond and never fails it: the event moves to the SDK's background thread, and an
//! invalid event or a full queue is counted (see `/vigil/stats`) while the answer goes out
//! regardless. `log_prediction` never blocks, so it is called straight from the async handler.
//! On SIGINT or SIGTERM the server stops taking requests, finishes the ones in flight, then
//! closes the producer: queued events get up to 5 s to reach Kafka. The same app in Python is
//! `sdk/python/examples/fastapi_app.py`.
//!
//! Settings, from the environment: `VIGIL_BROKERS`, `VIGIL_PREDICTIONS_TOPIC`,
//! `VIGIL_OUTCOMES_TOPIC`, `LISTEN_ADDR` (port 0 picks a free port; the address is printed).

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use vigil_events::{OutcomeEvent, Prediction, PredictionEvent};
use vigil_sdk::{Producer, SdkConfig, SdkError};

const MODEL_ID: &str = "fraud-detector";
const MODEL_VERSION: &str = "2026.11.3";
/// How long shutdown waits for queued events to reach Kafka.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

struct App {
    vigil: Producer,
    ids: Ids,
}

#[derive(Deserialize)]
struct PredictRequest {
    features: BTreeMap<String, f64>,
    #[serde(default = "unknown")]
    country: String,
    #[serde(default = "web")]
    device: String,
}

fn unknown() -> String {
    "unknown".into()
}

fn web() -> String {
    "web".into()
}

#[derive(Serialize)]
struct PredictResponse {
    prediction_id: String,
    label: &'static str,
    score: f64,
}

#[derive(Deserialize)]
struct OutcomeRequest {
    prediction_id: String,
    label: Option<String>,
    value: Option<f64>,
}

/// A stand-in for a real model: a logistic score of the feature sum.
fn model(features: &BTreeMap<String, f64>) -> f64 {
    1.0 / (1.0 + (-features.values().sum::<f64>() / 100.0).exp())
}

async fn predict(State(app): State<Arc<App>>, body: String) -> Response {
    let started = Instant::now();
    let request: PredictRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let score = model(&request.features);
    let label = if score >= 0.5 { "fraud" } else { "legit" };
    let prediction_id = app.ids.next();
    let event = PredictionEvent {
        event_id: app.ids.next(),
        prediction_id: prediction_id.clone(),
        model_id: MODEL_ID.into(),
        model_version: MODEL_VERSION.into(),
        event_time_ms: now_ms(),
        segment: BTreeMap::from([("country".to_owned(), request.country)]),
        numeric_features: request.features,
        categorical_features: BTreeMap::from([("device".to_owned(), request.device)]),
        prediction: Prediction { label: Some(label.into()), score: Some(score), ..Default::default() },
        serving_latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
    };
    logged(app.vigil.log_prediction(event));
    json(StatusCode::OK, &PredictResponse { prediction_id, label, score })
}

async fn outcome(State(app): State<Arc<App>>, body: String) -> Response {
    let request: OutcomeRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    logged(app.vigil.log_outcome(OutcomeEvent {
        event_id: app.ids.next(),
        prediction_id: request.prediction_id,
        model_id: MODEL_ID.into(),
        event_time_ms: now_ms(),
        label: request.label,
        value: request.value,
    }));
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "accepted"}))
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    let s = app.vigil.stats();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "enqueued": s.enqueued, "delivered": s.delivered, "failed": s.failed,
            "dropped_queue_full": s.dropped_queue_full, "dropped_oldest": s.dropped_oldest,
            "sampled_out": s.sampled_out, "invalid": s.invalid,
        }),
    )
}

/// Logging never fails the request: what went wrong is counted in the SDK's stats.
fn logged(result: Result<(), SdkError>) {
    match result {
        Ok(()) | Err(SdkError::QueueFull { .. }) | Err(SdkError::Closed) => {}
        Err(SdkError::Invalid(error)) => {
            tracing::warn!(reason = error.reason(), %error, "vigil refused an event")
        }
        Err(error) => tracing::warn!(%error, "vigil did not take an event"),
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_string(body).expect("responses serialize");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// UUID-shaped random ids: a per-process random seed, a counter and splitmix64, no dependency.
struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        Self { seed: RandomState::new().hash_one(now_ms()), counter: AtomicU64::new(0) }
    }

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (splitmix64(self.seed ^ n), splitmix64(self.seed.rotate_left(32) ^ n ^ 0x5bd1_e995));
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    let mut config = SdkConfig::new(env("VIGIL_BROKERS", "127.0.0.1:9092"));
    config.predictions_topic = env("VIGIL_PREDICTIONS_TOPIC", &config.predictions_topic);
    config.outcomes_topic = env("VIGIL_OUTCOMES_TOPIC", &config.outcomes_topic);
    let app = Arc::new(App {
        vigil: Producer::new(config).context("starting the vigil producer")?,
        ids: Ids::new(),
    });

    let router = Router::new()
        .route("/predict", post(predict))
        .route("/outcome", post(outcome))
        .route("/vigil/stats", get(stats))
        .with_state(app.clone());
    let listen = env("LISTEN_ADDR", "127.0.0.1:8000");
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;

    // Requests are done; give queued events a bounded time to leave (close blocks, so not on
    // the runtime's worker).
    let closing = app.clone();
    let given_up = tokio::task::spawn_blocking(move || closing.vigil.close(CLOSE_TIMEOUT)).await?;
    let s = app.vigil.stats();
    println!(
        "vigil closed: enqueued={} delivered={} failed={} dropped_queue_full={} invalid={} given_up={given_up}",
        s.enqueued, s.delivered, s.failed, s.dropped_queue_full, s.invalid
    );
    Ok(())
}
