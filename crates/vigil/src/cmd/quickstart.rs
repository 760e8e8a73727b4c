use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use vigil_store::Store;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// How long to send synthetic traffic.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Predictions per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
}

/// The README's first command ends here: migrate, monitor and loadgen together, then a table of
/// what landed in ClickHouse.
pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    // Short windows so a 30 s run closes several: the first becomes each version's baseline, the
    // later ones are tested for drift, and model-3 v2's inputs drift halfway through.
    let mut config = config.clone();
    config.monitor.window_seconds = 5;
    config.monitor.allowed_lateness_seconds = 1;
    config.monitor.baseline_min_events = 2_000;
    config.monitor.policy.consecutive_windows = 2;
    let config = &config;
    let store = Store::new(config.store_config());
    let report =
        store.migrate().await.context("migrating clickhouse (is it running? see deploy/local/up)")?;
    println!("clickhouse {} ready at {}", report.server_version, config.clickhouse.url);
    let run_started = unix_seconds();
    let window_start = run_started - run_started % 60;
    let by_version_before = stored_by_version(&store, window_start).await?;
    let stored_before: u64 = by_version_before.values().sum();

    let shutdown = super::shutdown_on_signal();
    let monitor_config = config.clone();
    let monitor_shutdown = shutdown.child_token();
    let monitor =
        tokio::spawn(async move { super::monitor::run_until(&monitor_config, monitor_shutdown).await });

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
    shutdown.cancel();
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
    Ok(())
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
