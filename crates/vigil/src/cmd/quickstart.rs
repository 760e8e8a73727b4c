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
    let store = Store::new(config.store_config());
    let report = store.migrate().await.context("migrating clickhouse (is it running? see deploy/local/up)")?;
    println!("clickhouse {} ready at {}", report.server_version, config.clickhouse.url);
    let run_started = unix_seconds();
    let window_start = run_started - run_started % config.monitor.window_seconds;
    let stored_before = stored_since(&store, window_start).await?;

    let shutdown = super::shutdown_on_signal();
    let monitor_config = config.clone();
    let monitor_shutdown = shutdown.child_token();
    let monitor = tokio::spawn(async move { super::monitor::run_until(&monitor_config, monitor_shutdown).await });

    println!("sending {} predictions/s for {:?} (3 models x 2 versions, 20 features) ...", args.rate, args.duration);
    let load = super::loadgen::Args {
        rate: args.rate,
        duration: args.duration,
        max_events: None,
        models: 3,
        versions: 2,
        features: 20,
        seed: run_started.into(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = super::loadgen::publish(config, load, stop).await?;
    println!("sent {} predictions ({:.0}/s); waiting for the monitor to store them ...", sent.sent, sent.events_per_second());

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

    println!("\nevents per window in ClickHouse ({}.window_partials, all segments), windows of this run:", config.clickhouse.database);
    println!("{:<20} {:<10} {:<8} {:>10}", "window start (UTC)", "model", "version", "events");
    for total in store.window_count_totals().await?.iter().filter(|t| t.window_start >= window_start && t.model_id.starts_with("model-") && t.segment.is_empty()) {
        println!("{:<20} {:<10} {:<8} {:>10}", format_utc(total.window_start), total.model_id, total.model_version, total.events);
    }
    println!("\nthis run: sent {} / stored {} predictions (windows also hold earlier runs in the same minutes)", sent.sent, stored);
    anyhow::ensure!(stored == sent.sent, "stored {stored} events but sent {}", sent.sent);
    println!("metrics were served at http://{}/metrics while the monitor ran", config.http.listen);
    Ok(())
}

async fn stored_since(store: &Store, window_start: u32) -> anyhow::Result<u64> {
    let totals = store.window_count_totals().await?;
    Ok(totals
        .iter()
        .filter(|t| t.window_start >= window_start && t.model_id.starts_with("model-") && t.segment.is_empty())
        .map(|t| t.events)
        .sum())
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// `YYYY-MM-DD HH:MM:SS` from seconds since the epoch (civil-from-days, Howard Hinnant).
fn format_utc(seconds: u32) -> String {
    let days = i64::from(seconds / 86_400);
    let secs = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
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
