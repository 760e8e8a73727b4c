//! `vigil kpi`: the lifecycle KPIs of a period (deployment frequency, lead time, change failure
//! rate, incidents, times to detect and remediate, lineage, governance exceptions), per model and
//! overall, from the lifecycle log and the monitor's policy checks in ClickHouse.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use vigil_lifecycle::kpi::{Durations, KpiReport, Kpis, MAX_PERIOD_DAYS};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Start of the period (UTC time like 2026-11-01T00:00:00Z, or seconds since the epoch);
    /// default 30 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// End of the period, excluded; default now.
    #[arg(long)]
    to: Option<String>,
    /// Answers to a remediation later than this count as late approvals.
    #[arg(long, default_value = "24h", value_parser = super::parse_duration)]
    approval_deadline: std::time::Duration,
    /// Leave ClickHouse out (no times to detect and remediate).
    #[arg(long)]
    no_clickhouse: bool,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let report = compute(config, &args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The period of `--from` and `--to`, checked, in milliseconds.
pub fn period(from: Option<&str>, to: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let parse = |flag: &str, text: &str| {
        super::replay::parse_time(text)
            .map(|s| i64::from(s) * 1000)
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let to_ms = to.map(|t| parse("--to", t)).transpose()?.unwrap_or(now_ms);
    let from_ms = from.map(|t| parse("--from", t)).transpose()?.unwrap_or(to_ms - 30 * 86_400_000);
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    anyhow::ensure!(
        to_ms - from_ms <= MAX_PERIOD_DAYS * 86_400_000,
        "the period is longer than {MAX_PERIOD_DAYS} days: choose a shorter one"
    );
    Ok((from_ms, to_ms))
}

async fn compute(config: &Config, args: &Args) -> anyhow::Result<KpiReport> {
    let (from_ms, to_ms) = period(args.from.as_deref(), args.to.as_deref())?;
    let (registry, _) = vigil_lifecycle::kafka::replay(&config.lifecycle_settings())
        .await
        .with_context(|| format!("replaying {} (is the broker running?)", config.topics.lifecycle))?;
    let store = (!args.no_clickhouse).then(|| config.store_config());
    vigil_lifecycle::kpi::store::report(
        &registry,
        store.as_ref(),
        from_ms,
        to_ms,
        args.model.as_deref(),
        args.approval_deadline.as_millis() as i64,
    )
    .await
    .context("reading policy_checks from ClickHouse (--no-clickhouse leaves them out)")
}

fn print_table(report: &KpiReport) {
    println!(
        "KPIs from {} to {}",
        vigil_alerts::rfc3339(report.from_ms),
        vigil_alerts::rfc3339(report.to_ms)
    );
    let hours = |d: &Durations| d.median_s.map_or("-".to_owned(), |s| format!("{:.2} h", s / 3600.0));
    let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    println!(
        "{:<20} {:>7} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10}",
        "model",
        "deploys",
        "per day",
        "lead time",
        "failures",
        "incidents",
        "detect",
        "remediate",
        "lineage",
        "exceptions"
    );
    let row = |k: &Kpis| {
        println!(
            "{:<20} {:>7} {:>8.3} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10}",
            k.model_id.as_deref().unwrap_or("(all)"),
            k.deployments,
            k.deployment_frequency_per_day,
            hours(&k.lead_time),
            ratio(k.change_failure_rate),
            k.incidents,
            hours(&k.time_to_detect),
            hours(&k.time_to_remediate),
            ratio(k.complete_lineage_share),
            k.exceptions.total()
        );
    };
    report.models.iter().for_each(row);
    row(&report.overall);
}
