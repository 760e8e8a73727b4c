use anyhow::Context;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use vigil_monitor::{MonitorMetrics, Readiness};
use vigil_store::Store;

use crate::config::Config;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    run_until(config, super::shutdown_on_signal()).await
}

/// Runs the monitor and its HTTP endpoints until `shutdown` or a fatal error. ClickHouse and Kafka
/// are waited for at start (readiness answers 503 meanwhile), never a reason to exit.
pub async fn run_until(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = MonitorMetrics::register(&registry)?;
    let readiness = Readiness::default();
    let http = vigil_monitor::serve(config.http_listen(), registry, readiness.clone(), shutdown.clone())
        .await
        .with_context(|| {
            format!("http.listen {}: cannot bind (is another vigil running?)", config.http.listen)
        })?;

    let store = Store::new(config.store_config());
    let settings = config.monitor_settings();
    let prepared = async {
        let clickhouse = format!("ClickHouse at {}", config.clickhouse.url);
        wait_for(&clickhouse, &shutdown, || async {
            match store.migrate().await {
                Ok(_) => Ok(Ready::Yes),
                Err(error) if error.is_retryable() => Ok(Ready::No(error.to_string())),
                Err(error) => Err(anyhow::Error::new(error).context("preparing clickhouse")),
            }
        })
        .await?;
        let topics = [
            settings.predictions_topic.as_str(),
            settings.outcomes_topic.as_str(),
            settings.deadletter_topic.as_str(),
            settings.remediations_topic.as_str(),
        ];
        let kafka = format!("the Kafka broker at {}", config.kafka.brokers);
        wait_for(&kafka, &shutdown, || async {
            // Any failure here is the broker not answering or refusing us: waited out, the
            // message says which.
            match vigil_monitor::ensure_topics(&settings.kafka, &topics, config.kafka.topic_partitions).await
            {
                Ok(()) => Ok(Ready::Yes),
                Err(error) => Ok(Ready::No(error.to_string())),
            }
        })
        .await
    };
    let result = match prepared.await {
        Ok(true) => vigil_monitor::run(settings, store, metrics, readiness, shutdown.clone())
            .await
            .context("monitor stopped"),
        Ok(false) => Ok(()),
        Err(error) => Err(error),
    };
    // The first fatal error stops everything else too.
    shutdown.cancel();
    let _ = http.await;
    result
}

enum Ready {
    Yes,
    No(String),
}

/// Calls `check` until it answers, with backoff from 500 ms to 30 s and a progress line per
/// attempt. `Ok(false)` when `shutdown` came first; an `Err` from `check` is fatal.
async fn wait_for<F, Fut>(what: &str, shutdown: &CancellationToken, mut check: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Ready>>,
{
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(500);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match check().await? {
            Ready::Yes => {
                if attempt > 1 {
                    tracing::info!(waited = ?started.elapsed(), "{what} answers");
                }
                return Ok(true);
            }
            Ready::No(error) => {
                tracing::warn!(%error, attempt, retry_in = ?wait, "waiting for {what} (see deploy/local/up)");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}
