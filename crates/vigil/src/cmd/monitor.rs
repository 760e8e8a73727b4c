use anyhow::Context;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use vigil_monitor::{MonitorMetrics, Readiness};
use vigil_store::Store;

use crate::config::Config;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    run_until(config, super::shutdown_on_signal()).await
}

/// Runs the monitor and its HTTP endpoints until `shutdown` or a fatal error.
pub async fn run_until(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Store::new(config.store_config());
    store.migrate().await.context("preparing clickhouse (is it running? see deploy/local/up)")?;
    let settings = config.monitor_settings();
    vigil_monitor::ensure_topics(
        &settings.kafka,
        &[
            &settings.predictions_topic,
            &settings.outcomes_topic,
            &settings.deadletter_topic,
            &settings.remediations_topic,
        ],
        config.kafka.topic_partitions,
    )
    .await
    .context("preparing kafka topics (is the broker running? see deploy/local/up)")?;

    let registry = Registry::new();
    let metrics = MonitorMetrics::register(&registry)?;
    let readiness = Readiness::default();
    let http = vigil_monitor::serve(config.http_listen(), registry, readiness.clone(), shutdown.clone())
        .await
        .with_context(|| {
            format!("http.listen {}: cannot bind (is another vigil running?)", config.http.listen)
        })?;

    let result = vigil_monitor::run(settings, store, metrics, readiness, shutdown.clone()).await;
    // The first fatal error stops everything else too.
    shutdown.cancel();
    let _ = http.await;
    result.context("monitor stopped")
}
