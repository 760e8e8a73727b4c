//! The `vigil` binary: parses the command line and configuration, then wires the crates
//! together. Logic lives in the library crates.

mod cmd;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vigil", version, about = "Streaming model monitoring on Kafka and ClickHouse")]
struct Cli {
    /// TOML configuration file; `VIGIL__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the ClickHouse database and tables (idempotent).
    Migrate(cmd::migrate::Args),
    /// Rebuild closed windows from the retained topics (or an exported file) and diff them
    /// against ClickHouse: exit 0 when identical, 1 when anything differs, 2 on an error.
    Replay(cmd::replay::Args),
    /// Consume predictions, count them per window and store the counts in ClickHouse.
    Monitor,
    /// Publish synthetic predictions through the Rust SDK.
    Loadgen(cmd::loadgen::Args),
    /// Migrate, run the monitor and synthetic traffic, then print what landed in ClickHouse.
    Quickstart(cmd::quickstart::Args),
    /// Models, versions and stages with their latest closed window, drift and policy verdict.
    Status(cmd::status::Args),
    /// Compare two files (CSV, Parquet, Arrow IPC) column by column with vigil's drift tests, no
    /// Kafka or ClickHouse needed. Exit codes: 0 done (drift or not), 1 an error (unreadable or
    /// bad file, bad flag), 2 a malformed command line, 3 drift found with --fail-on-drift.
    Drift(vigil_offline::DriftArgs),
    /// Reference profiles: upload one from a CSV, Avro, Parquet or Arrow file, capture one from a time range of
    /// stored live traffic, list and show the stored ones.
    Reference(cmd::reference::Args),
    /// Run the lifecycle consumer (rollbacks and holds on remediations, alerts); `state` and
    /// `register` read and append to the lifecycle log.
    Lifecycle(cmd::lifecycle::Args),
    /// Lifecycle KPIs of a period per model: deployments, lead time, change failure rate,
    /// incidents, time to detect and remediate, lineage, governance exceptions.
    Kpi(cmd::kpi::Args),
    /// Governance records: `audit report` writes one model's lineage, stage history,
    /// remediations with evidence, approvals, deliveries and KPIs as HTML or JSON.
    Audit(cmd::audit::Args),
}

/// mimalloc instead of glibc malloc: the monitor creates and drops thousands of sketches per flush,
/// and glibc's free-list upkeep took a quarter of its CPU with 3,000 model versions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if let Command::Drift(args) = &cli.command {
        // Offline: needs neither the configuration nor a runtime.
        return match vigil_offline::run_drift(args, &mut std::io::stdout().lock()) {
            Ok(report) if args.fail_on_drift && report.drifted_columns > 0 => {
                ExitCode::from(vigil_offline::EXIT_DRIFT)
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match config::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    if let Command::Replay(args) = cli.command {
        return cmd::replay::exit_code(runtime.block_on(cmd::replay::run(&config, args)));
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => cmd::migrate::run(&config, args).await,
            Command::Replay(_) => unreachable!("handled with its own exit codes above"),
            Command::Monitor => cmd::monitor::run(&config).await,
            Command::Loadgen(args) => cmd::loadgen::run(&config, args).await,
            Command::Quickstart(args) => cmd::quickstart::run(&config, args).await,
            Command::Lifecycle(args) => cmd::lifecycle::run(&config, args).await,
            Command::Kpi(args) => cmd::kpi::run(&config, args).await,
            Command::Audit(args) => cmd::audit::run(&config, args).await,
            Command::Status(args) => cmd::status::run(&config, args).await,
            Command::Reference(args) => cmd::reference::run(&config, args).await,
            Command::Drift(_) => unreachable!("handled before the configuration is loaded"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
