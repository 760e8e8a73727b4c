//! `vigil audit report`: one model's governance record over a period (lineage, stage history
//! with subjects and reasons, remediations with their evidence, approvals, deliveries, KPIs,
//! drift and performance charts) as JSON or one self-contained HTML file, with its content hash.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use vigil_lifecycle::report::store::ReportRequest;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Write the audit report of one model (or one version) over a period.
    Report(ReportArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Html,
    Json,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[arg(long)]
    model: String,
    /// Only this version's records.
    #[arg(long)]
    version: Option<String>,
    /// Start of the period (UTC time like 2026-11-01T00:00:00Z, or seconds since the epoch).
    #[arg(long)]
    from: String,
    /// End of the period, excluded.
    #[arg(long)]
    to: String,
    #[arg(long, value_enum, default_value = "html")]
    format: Format,
    /// Where to write the report; `-` for standard output.
    #[arg(long)]
    out: PathBuf,
    /// Answers to a remediation later than this count as late approvals in the KPIs.
    #[arg(long, default_value = "24h", value_parser = super::parse_duration)]
    approval_deadline: std::time::Duration,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let Sub::Report(args) = args.command;
    let (from_ms, to_ms) = super::kpi::period(Some(&args.from), Some(&args.to))?;
    let (registry, _) = vigil_lifecycle::kafka::replay(&config.lifecycle_settings())
        .await
        .with_context(|| format!("replaying {} (is the broker running?)", config.topics.lifecycle))?;
    if registry.model(&args.model).is_none() {
        tracing::warn!(model = %args.model, "the model is not in the lifecycle log; the report has only what ClickHouse holds");
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let request = ReportRequest {
        model: &args.model,
        version: args.version.as_deref(),
        from_ms,
        to_ms,
        approval_deadline_ms: args.approval_deadline.as_millis() as i64,
        now_ms,
    };
    let report = vigil_lifecycle::report::store::build(&registry, &config.store_config(), &request)
        .await
        .context("reading the monitor's tables in ClickHouse (run vigil migrate first)")?;
    let bytes = match args.format {
        Format::Json => serde_json::to_vec_pretty(&report)?,
        Format::Html => vigil_lifecycle::report::html::render(&report).into_bytes(),
    };
    if args.out.as_os_str() == "-" {
        std::io::stdout().write_all(&bytes)?;
    } else {
        std::fs::write(&args.out, &bytes).with_context(|| format!("--out {}", args.out.display()))?;
        eprintln!(
            "wrote {} ({} bytes): {} versions, {} stage changes, {} remediations, {} approvals, {} deliveries",
            args.out.display(),
            bytes.len(),
            report.versions.len(),
            report.stage_history.len(),
            report.remediations.len(),
            report.approvals.len(),
            report.deliveries.len()
        );
    }
    // On standard output only when the report is not there.
    if args.out.as_os_str() == "-" {
        eprintln!("content sha256 {}", report.content_sha256);
    } else {
        println!("content sha256 {}", report.content_sha256);
    }
    Ok(())
}
