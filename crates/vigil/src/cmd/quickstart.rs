use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_alerts::{ReceiverConfig, ReceiverKind};
use vigil_events::{LifecycleEvent, Stage};
use vigil_lifecycle::{stage_name, Registry};
use vigil_store::Store;

use crate::config::Config;

/// The demo's models and the stages they start in: each model's v1 in production, v2 a canary.
const MODELS: [&str; 3] = ["model-1", "model-2", "model-3"];
const CANARY_WEIGHT: f64 = 0.1;
/// How long to wait, once the monitor stored everything, for the lifecycle service to act on the
/// remediations and for its webhooks to reach the local receiver.
const LIFECYCLE_WAIT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct Args {
    /// How long to send synthetic traffic.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Predictions per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
}

/// The README's first command ends here: migrate, then the monitor, the lifecycle service and
/// loadgen together, then what landed in ClickHouse and what the lifecycle did about it.
pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let run_started = unix_seconds();
    // Short windows so a 30 s run closes several: the first becomes each version's baseline, the
    // later ones are tested for drift, and model-3 v2's inputs drift halfway through.
    let mut config = config.clone();
    config.monitor.window_seconds = 5;
    config.monitor.allowed_lateness_seconds = 1;
    config.monitor.baseline_min_events = 2_000;
    config.monitor.policy.consecutive_windows = 2;
    // A breach is critical and asks for a rollback, so the lifecycle service acts on it.
    for (action, severity) in [
        (&mut config.monitor.policy.action, &mut config.monitor.policy.severity),
        (&mut config.monitor.performance_policy.action, &mut config.monitor.performance_policy.severity),
    ] {
        *action = "rollback".into();
        *severity = "critical".into();
    }
    let receiver = Receiver::start().await?;
    let state_dir = lifecycle_for_this_run(&mut config, run_started, receiver.addr);
    let config = &config;
    let store = Store::new(config.store_config());
    let report =
        store.migrate().await.context("migrating clickhouse (is it running? see deploy/local/up)")?;
    println!("clickhouse {} ready at {}", report.server_version, config.clickhouse.url);
    let window_start = run_started - run_started % 60;
    let by_version_before = stored_by_version(&store, window_start).await?;
    let stored_before: u64 = by_version_before.values().sum();

    let shutdown = super::shutdown_on_signal();
    register_demo_versions(config).await?;
    let monitor_config = config.clone();
    let monitor_shutdown = shutdown.child_token();
    let monitor_shutdown_handle = monitor_shutdown.clone();
    let monitor =
        tokio::spawn(async move { super::monitor::run_until(&monitor_config, monitor_shutdown).await });
    // The monitor serves HTTP once it has created its topics, this run's remediations topic
    // among them: the lifecycle service subscribes to it after that.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(config.http_listen()).await.is_err() {
        anyhow::ensure!(!monitor.is_finished(), "the monitor stopped at start-up (its error is above)");
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the monitor did not start within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lifecycle_settings = config.lifecycle_service().map_err(anyhow::Error::msg)?;
    let lifecycle_shutdown = shutdown.child_token();
    let lifecycle =
        tokio::spawn(vigil_lifecycle::service::run(lifecycle_settings, lifecycle_shutdown.clone()));
    println!(
        "vigil lifecycle running: registry log {}, alerts and platform webhooks to a local receiver at http://{}",
        config.topics.lifecycle, receiver.addr
    );

    println!(
        "sending {} predictions/s for {:?} (3 models x 2 versions, 20 features; model-3 v2's inputs drift after {:?}) ...",
        args.rate,
        args.duration,
        args.duration / 2
    );
    let load = super::loadgen::Args {
        rate: args.rate,
        duration: args.duration,
        max_events: None,
        models: 3,
        versions: 2,
        features: 20,
        seed: run_started.into(),
        drift_model: Some("model-3".into()),
        drift_version: Some("v2".into()),
        drift_after: args.duration / 2,
        drift_shift: 1.5,
        drift_features: 3,
        label_rate: 0.5,
        label_delay: Duration::from_secs(2),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = super::loadgen::publish(config, load, stop).await?;
    println!(
        "sent {} predictions ({:.0}/s) and {} outcomes; waiting for the monitor to store them ...",
        sent.sent,
        sent.events_per_second(),
        sent.outcomes_sent
    );

    let before = Instant::now();
    let stored = loop {
        let stored = stored_since(&store, window_start).await? - stored_before;
        if stored >= sent.sent || before.elapsed() > Duration::from_secs(60) || monitor.is_finished() {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    monitor_shutdown_handle.cancel();
    monitor.await.context("monitor task")??;

    println!("\nstored in ClickHouse ({}.window_partials) by this run:", config.clickhouse.database);
    println!("{:<10} {:<8} {:>10}", "model", "version", "events");
    for ((model, version), events) in stored_by_version(&store, window_start).await? {
        let new = events - by_version_before.get(&(model.clone(), version.clone())).copied().unwrap_or(0);
        println!("{model:<10} {version:<8} {new:>10}");
    }
    println!("\nthis run: sent {} / stored {} predictions", sent.sent, stored);
    anyhow::ensure!(stored == sent.sent, "stored {stored} events but sent {}", sent.sent);
    println!("metrics were served at http://{}/metrics while the monitor ran", config.http.listen);

    println!("\nvigil status (5 s windows in this demo; the last ones were still open at the end):");
    super::status::run(config, super::status::Args::quick()).await?;
    print_performance(&store, window_start).await?;
    let drifted: Vec<_> = store
        .policy_checks()
        .await?
        .into_iter()
        .filter(|c| c.window_start >= window_start && !c.remediation_id.is_empty())
        .collect();
    println!("\nremediations sent to {} in this run: {}", config.topics.remediations, drifted.len());
    for c in drifted.iter().take(5) {
        println!(
            "  {} {} window {}: {} ({})",
            c.model_id,
            c.model_version,
            format_utc(c.window_start),
            c.remediation_id,
            c.detail
        );
    }

    // The loop closes: the lifecycle service rolls the drifted canary back and tells the alert
    // receiver and the serving platform.
    let waited = Instant::now();
    let registry = loop {
        let (registry, _) = vigil_lifecycle::kafka::replay(&config.lifecycle_settings())
            .await
            .context("replaying this run's lifecycle log")?;
        let rolled_back = registry.version("model-3", "v2").is_some_and(|v| v.stage == Stage::RolledBack);
        let told = receiver.deliveries().iter().any(|d| d.is_rollback_update());
        let alerted = receiver.deliveries().iter().any(|d| d.path == "/alerts");
        if (rolled_back && told && alerted) || waited.elapsed() > LIFECYCLE_WAIT || lifecycle.is_finished() {
            break registry;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    lifecycle_shutdown.cancel();
    lifecycle.await.context("lifecycle task")?.context("vigil lifecycle")?;
    print_lifecycle(&registry, &receiver, config);
    println!("(this run's lifecycle state and outboxes are in {})", state_dir.display());
    let rolled_back = registry.version("model-3", "v2").is_some_and(|v| v.stage == Stage::RolledBack);
    anyhow::ensure!(
        rolled_back || drifted.iter().all(|c| c.model_id != "model-3"),
        "model-3 v2 was not rolled back within {LIFECYCLE_WAIT:?} of its remediation"
    );
    Ok(())
}

/// Gives this run its own lifecycle log, remediations topic, consumer group and state folders (a
/// rolled-back canary stays rolled back in a registry, so a second run needs a fresh one), and
/// sends alerts and platform updates to the local receiver. Returns the state folder.
fn lifecycle_for_this_run(config: &mut Config, run: u32, receiver: SocketAddr) -> PathBuf {
    config.topics.lifecycle = format!("vigil.quickstart.{run}.lifecycle");
    config.topics.remediations = format!("vigil.quickstart.{run}.remediations");
    config.lifecycle.group_id = format!("vigil-quickstart-{run}");
    let state = std::env::temp_dir().join(format!("vigil-quickstart-{run}"));
    config.lifecycle.state_dir = state.join("lifecycle");
    config.alerts.outbox_dir = state.join("alerts");
    // The API is not needed here, and its port may be taken by a running `vigil lifecycle`:
    // off, and /metrics and /health on a free port.
    config.lifecycle.api.enabled = false;
    config.lifecycle.api.listen = "127.0.0.1:0".into();
    config.lifecycle.canary_interval_ms = 0;
    // Alerts stay open for the demo: resolving needs healthy windows after the breach, which a
    // 30 s run does not have.
    config.lifecycle.resolve_interval_ms = 0;
    config.alerts.receivers = vec![ReceiverConfig {
        name: "quickstart-alerts".into(),
        kind: ReceiverKind::Generic { url: format!("http://{receiver}/alerts"), secret: "quickstart".into() },
    }];
    config.lifecycle.platform = vec![ReceiverConfig {
        name: "quickstart-platform".into(),
        kind: ReceiverKind::Platform {
            url: format!("http://{receiver}/platform"),
            secret: "quickstart".into(),
        },
    }];
    state
}

/// Each model's v1 in production and v2 a canary at 10% of its traffic, in this run's log.
async fn register_demo_versions(config: &Config) -> anyhow::Result<()> {
    let now_ms = i64::from(unix_seconds()) * 1000;
    let mut registry = Registry::new();
    let mut events = Vec::new();
    for model in MODELS {
        for (version, stage, weight) in
            [("v1", Stage::Production, None), ("v2", Stage::Canary, Some(CANARY_WEIGHT))]
        {
            let event = LifecycleEvent {
                event_id: format!("quickstart:{model}:{version}:{}:{now_ms}", stage_name(stage)),
                model_id: model.into(),
                model_version: version.into(),
                stage,
                traffic_weight: weight,
                reason: "registered by vigil quickstart".into(),
                actor: "quickstart".into(),
                remediation_id: None,
                event_time_ms: now_ms,
                kind: vigil_events::EventKind::StageChange,
                lineage: None,
            };
            registry.apply(&event).context("demo registration")?;
            events.push(event);
        }
    }
    vigil_lifecycle::kafka::publish(&config.lifecycle_settings(), &events)
        .await
        .with_context(|| format!("publishing the demo registry to {}", config.topics.lifecycle))?;
    println!("registered each model's v1 in production and v2 as a canary at {CANARY_WEIGHT} of its traffic");
    Ok(())
}

fn print_lifecycle(registry: &Registry, receiver: &Receiver, config: &Config) {
    println!("\nvigil lifecycle: the registry after this run ({}):", config.topics.lifecycle);
    println!("{:<10} {:<8} {:<12} {:>7}  last change", "model", "version", "stage", "weight");
    for (model, state) in registry.models() {
        for (version, v) in &state.versions {
            let weight = v.traffic_weight.map(|w| format!("{w:.2}")).unwrap_or_else(|| "-".into());
            let note = if v.last_actor == "quickstart" {
                "registered".to_owned()
            } else {
                // The reason lists every drifted feature; its first clause says what happened.
                let first = v.last_reason.split("; ").next().unwrap_or_default();
                format!("{} (by {})", first.chars().take(110).collect::<String>(), v.last_actor)
            };
            println!("{model:<10} {version:<8} {:<12} {weight:>7}  {note}", stage_name(v.stage));
        }
    }
    for (model, state) in registry.models() {
        let rolled_back: Vec<&str> = state
            .versions
            .iter()
            .filter(|(_, v)| v.stage == Stage::RolledBack)
            .map(|(name, _)| name.as_str())
            .collect();
        if !rolled_back.is_empty() {
            println!(
                "=> {model}: canary {} rolled back, production kept on {}",
                rolled_back.join(", "),
                state.production.as_deref().unwrap_or("none")
            );
        }
    }
    let deliveries = receiver.deliveries();
    println!(
        "\nwebhook deliveries to the local receiver (http://{}): {} alert(s), {} platform update(s)",
        receiver.addr,
        deliveries.iter().filter(|d| d.path == "/alerts").count(),
        deliveries.iter().filter(|d| d.path == "/platform").count()
    );
    for d in deliveries.iter().filter(|d| d.path == "/alerts" || d.is_rollback_update()) {
        println!("  {}", d.summary());
    }
}

/// One request the local receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    signed: bool,
    body: serde_json::Value,
}

impl Delivery {
    /// A platform update that carries a rollback.
    fn is_rollback_update(&self) -> bool {
        self.path == "/platform"
            && self.body["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["stage"] == "ROLLED_BACK"))
    }

    fn summary(&self) -> String {
        let b = &self.body;
        let signed = if self.signed { "signed" } else { "UNSIGNED" };
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
        if self.path == "/alerts" {
            format!(
                "alert     {} {} {} {} {}: {} ({signed})",
                s(&b["state"]),
                s(&b["severity"]),
                s(&b["model_id"]),
                s(&b["model_version"]),
                s(&b["policy"]),
                s(&b["summary"])
            )
        } else {
            let canary = b["canary"]["model_version"].as_str().unwrap_or("none");
            format!(
                "platform  {}: production {}, canary {canary}; traffic {} (idempotency key {}, {signed})",
                s(&b["model_id"]),
                s(&b["production"]),
                b["traffic"],
                s(&b["idempotency_key"])
            )
        }
    }
}

/// A minimal HTTP receiver on a loopback port standing in for an alert channel and a serving
/// platform: records each POST's path, body and whether it was signed, and answers 200.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Delivery>>>,
}

/// The largest request the receiver reads (vigil's webhook bodies are a few KiB).
const MAX_REQUEST: usize = 1 << 20;

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the local receiver")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    if let Some(delivery) = read_request(&mut stream).await {
                        log.lock().unwrap_or_else(|p| p.into_inner()).push(delivery);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        Ok(Self { addr, received })
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Delivery> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return None;
    }
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body =
        serde_json::from_slice(&buf[header_end..header_end + length]).unwrap_or(serde_json::Value::Null);
    Some(Delivery { path, signed: head.contains("x-vigil-signature:"), body })
}

/// Accuracy and AUC per version over this run's windows, from the outcomes joined so far: the
/// drifted canary's inputs changed but the world did not, so it is wrong more often.
async fn print_performance(store: &Store, window_start: u32) -> anyhow::Result<()> {
    let mut by_version: std::collections::BTreeMap<(String, String), (u64, u64, f64, f64)> =
        Default::default();
    for row in store.window_performance().await? {
        if row.window_start < window_start || !row.segment.is_empty() || !row.model_id.starts_with("model-") {
            continue;
        }
        let entry = by_version.entry((row.model_id, row.model_version)).or_default();
        entry.0 += row.predictions;
        entry.1 += row.labeled;
        // Weighted by labeled outcomes, so windows with more outcomes count more.
        entry.2 += row.accuracy.unwrap_or(0.0) * row.labeled as f64;
        entry.3 += row.auc.unwrap_or(0.0) * row.labeled as f64;
    }
    println!("\nperformance from the outcomes joined so far (window_performance):");
    println!(
        "{:<10} {:<8} {:>11} {:>9} {:>9} {:>9} {:>7}",
        "model", "version", "predictions", "labeled", "coverage", "accuracy", "auc"
    );
    for ((model, version), (predictions, labeled, accuracy, auc)) in by_version {
        let per = |x: f64| if labeled == 0 { f64::NAN } else { x / labeled as f64 };
        let coverage = labeled as f64 / predictions.max(1) as f64;
        println!(
            "{model:<10} {version:<8} {predictions:>11} {labeled:>9} {coverage:>9.2} {:>9.3} {:>7.3}",
            per(accuracy),
            per(auc)
        );
    }
    Ok(())
}

/// Events stored per (model, version) in windows from `window_start` on (all traffic segment).
async fn stored_by_version(
    store: &Store,
    window_start: u32,
) -> anyhow::Result<std::collections::BTreeMap<(String, String), u64>> {
    let mut totals = std::collections::BTreeMap::new();
    for t in store.window_count_totals().await? {
        if t.window_start >= window_start && t.model_id.starts_with("model-") && t.segment.is_empty() {
            *totals.entry((t.model_id, t.model_version)).or_insert(0) += t.events;
        }
    }
    Ok(totals)
}

async fn stored_since(store: &Store, window_start: u32) -> anyhow::Result<u64> {
    let totals = store.window_count_totals().await?;
    Ok(totals
        .iter()
        .filter(|t| {
            t.window_start >= window_start && t.model_id.starts_with("model-") && t.segment.is_empty()
        })
        .map(|t| t.events)
        .sum())
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// `YYYY-MM-DD HH:MM:SS` from seconds since the epoch: the RFC 3339 form vigil's alerts use,
/// without the `T`, milliseconds and `Z`, for terminal tables.
pub fn format_utc(seconds: u32) -> String {
    vigil_alerts::rfc3339(i64::from(seconds) * 1000)[..19].replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_utc(1_764_190_245), "2025-11-26 20:50:45");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29 00:00:00");
    }
}
