//! `vigil lifecycle`: the lifecycle consumer (remediations in, rollbacks and holds out to the
//! lifecycle log, alerts to the configured receivers), and `state` and `register`, which read
//! and append to the lifecycle log by hand until the HTTP API exists.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_alerts::{Alert, Notifier};
use vigil_events::{LifecycleEvent, RemediationEvent, Stage};
use vigil_lifecycle::view::StateView;
use vigil_lifecycle::{stage_name, Decision, Outcome, Registry};

use crate::config::Config;

/// Longest wait at shutdown for accepted alerts to reach the outbox.
const ALERT_DRAIN: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Replay the lifecycle log and print every model's versions and stages.
    State {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Append a stage change for a model version, checked against the replayed registry first.
    Register(RegisterArgs),
}

#[derive(clap::Args)]
struct RegisterArgs {
    #[arg(long)]
    model: String,
    #[arg(long)]
    version: String,
    #[arg(long, value_enum)]
    stage: RegisterStage,
    /// Canary share of traffic in (0, 1]; defaults to the model's canary.step_weight.
    #[arg(long)]
    weight: Option<f64>,
    /// Who registers it (recorded in the log); defaults to $USER.
    #[arg(long)]
    actor: Option<String>,
    /// Why, recorded in the log.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RegisterStage {
    Candidate,
    Canary,
    Production,
}

impl From<RegisterStage> for Stage {
    fn from(stage: RegisterStage) -> Self {
        match stage {
            RegisterStage::Candidate => Stage::Candidate,
            RegisterStage::Canary => Stage::Canary,
            RegisterStage::Production => Stage::Production,
        }
    }
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    match args.command {
        None => run_until(config, super::shutdown_on_signal()).await,
        Some(Sub::State { json }) => state(config, json).await,
        Some(Sub::Register(args)) => register(config, args).await,
    }
}

/// Runs the lifecycle consumer, and the alert delivery when receivers are configured, until
/// `shutdown` or a fatal error.
pub async fn run_until(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.lifecycle_settings();
    ensure_topics(config).await?;
    // Alerts stop after the consumer, so the last decisions' alerts still reach the outbox.
    let alerts_shutdown = CancellationToken::new();
    let alerts = if config.alerts_enabled() {
        let (notifier, tasks) = vigil_alerts::start(&config.alerts, alerts_shutdown.clone())
            .with_context(|| format!("starting alerts (alerts.outbox_dir {})", config.alerts.outbox_dir.display()))?;
        tracing::info!(receivers = config.alerts.receivers.len(), "alerts on");
        Some((notifier, tasks))
    } else {
        tracing::info!("no alerts.receivers configured: alerts off");
        None
    };
    let notifier = alerts.as_ref().map(|(notifier, _)| notifier.clone());
    let result = vigil_lifecycle::kafka::run_with_hook(settings, shutdown.clone(), |remediation, decision| {
        if let Some(notifier) = &notifier {
            alert(notifier, remediation, decision);
        }
    })
    .await;
    // The first fatal error stops everything else too.
    shutdown.cancel();
    if let Some((notifier, mut tasks)) = alerts {
        let started = Instant::now();
        while notifier.queued() > 0 && started.elapsed() < ALERT_DRAIN {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        alerts_shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        let stats = notifier.stats();
        tracing::info!(delivered = stats.delivered, failed = stats.failed, dropped = stats.dropped, "alerts stopped");
    }
    result.context("lifecycle consumer stopped")?;
    Ok(())
}

/// Every remediation the consumer reads becomes a firing alert, with what the lifecycle did
/// about it; a redelivered one (already acted on) does not alert again.
fn alert(notifier: &Notifier, remediation: &RemediationEvent, decision: &Decision) {
    if decision.outcome == Outcome::Duplicate {
        return;
    }
    let mut alert = Alert::from_remediation(remediation);
    alert.details.insert("lifecycle".into(), describe(&decision.outcome));
    if let Err(error) = notifier.notify(alert) {
        tracing::error!(%error, remediation = %remediation.remediation_id, "alert not queued");
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NoAction { why } => format!("no change: {why}"),
        Outcome::Duplicate => "already acted on".into(),
        Outcome::RolledBackCanary { version } => format!("canary {version} rolled back"),
        Outcome::RolledBackProduction { from, to } => format!("production {from} rolled back to {to}"),
        Outcome::NoRollbackTarget { version } => format!("production {version} failed and there is no earlier version to roll back to"),
        Outcome::HeldPromotion { version } => format!("promotion of canary {version} held"),
        Outcome::CanaryWeight { version, weight } => format!("canary {version} at weight {weight}"),
        Outcome::Promoted { version } => format!("{version} promoted to production"),
        Outcome::AwaitingApproval { proposed } => {
            let steps: Vec<String> = proposed.iter().map(|e| format!("{} {}", e.model_version, stage_name(e.stage))).collect();
            format!("awaiting approval: {}", steps.join(", "))
        }
    }
}

async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    vigil_monitor::ensure_topics(&config.kafka_settings(), &[&config.topics.lifecycle, &config.topics.remediations], config.kafka.topic_partitions)
        .await
        .context("preparing kafka topics (is the broker running? see deploy/local/up)")
}

async fn replay(config: &Config) -> anyhow::Result<Registry> {
    let (registry, stats) = vigil_lifecycle::kafka::replay(&config.lifecycle_settings())
        .await
        .with_context(|| format!("replaying {} (is the broker running? see deploy/local/up)", config.topics.lifecycle))?;
    if stats.rejected > 0 {
        tracing::warn!(rejected = stats.rejected, "lifecycle log: events skipped (illegal or undecodable), see the log above");
    }
    Ok(registry)
}

async fn state(config: &Config, json: bool) -> anyhow::Result<()> {
    let registry = replay(config).await?;
    let view = StateView::of(&registry);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    if view.models.is_empty() {
        println!("no model versions in {}", config.topics.lifecycle);
        return Ok(());
    }
    println!("{:<20} {:<12} {:<12} {:>6}  {:<24} {:<12} reason", "model", "version", "stage", "weight", "updated (UTC)", "actor");
    for model in &view.models {
        for v in &model.versions {
            let weight = v.traffic_weight.map(|w| format!("{w:.2}")).unwrap_or_else(|| "-".into());
            let stage = match &v.held_by {
                Some(_) => format!("{} (held)", v.stage),
                None => v.stage.to_owned(),
            };
            println!(
                "{:<20} {:<12} {:<12} {:>6}  {:<24} {:<12} {}",
                model.model_id,
                v.version,
                stage,
                weight,
                vigil_alerts::rfc3339(v.updated_ms),
                v.actor,
                v.reason
            );
        }
    }
    Ok(())
}

async fn register(config: &Config, args: RegisterArgs) -> anyhow::Result<()> {
    let stage = Stage::from(args.stage);
    let weight = match (stage, args.weight) {
        (Stage::Canary, Some(w)) => Some(w),
        (Stage::Canary, None) => Some(config.lifecycle.policy().for_model(&args.model).canary.step_weight),
        (_, Some(_)) => anyhow::bail!("--weight applies to --stage canary only"),
        (_, None) => None,
    };
    let actor = args.actor.or_else(|| std::env::var("USER").ok()).filter(|a| !a.trim().is_empty()).unwrap_or_else(|| "cli".into());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let event = LifecycleEvent {
        event_id: format!("manual:{}:{}:{}:{now_ms}", args.model, args.version, stage_name(stage)),
        reason: args.reason.unwrap_or_else(|| format!("registered by {actor} with vigil lifecycle register")),
        model_id: args.model,
        model_version: args.version,
        stage,
        traffic_weight: weight,
        actor,
        remediation_id: None,
        event_time_ms: now_ms,
    };
    ensure_topics(config).await?;
    let mut registry = replay(config).await?;
    let from = registry.version(&event.model_id, &event.model_version).map_or("NEW", |v| stage_name(v.stage));
    // The log keeps whatever is sent (a replay would skip an illegal event): check first.
    registry.apply(&event).context("refused")?;
    vigil_lifecycle::kafka::publish(&config.lifecycle_settings(), std::slice::from_ref(&event))
        .await
        .with_context(|| format!("publishing to {}", config.topics.lifecycle))?;
    let weight = event.traffic_weight.map(|w| format!(" at weight {w}")).unwrap_or_default();
    println!(
        "model {} version {}: {from} -> {}{weight} (event {}, actor {})",
        event.model_id,
        event.model_version,
        stage_name(event.stage),
        event.event_id,
        event.actor
    );
    Ok(())
}
