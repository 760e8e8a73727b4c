//! `vigil lifecycle`: the lifecycle service (remediations in, rollbacks and holds out to the
//! lifecycle log, alerts and serving-platform webhooks, the HTTP API, the ClickHouse audit);
//! `state` and `register`, which read and append to the lifecycle log directly; and `approvals`,
//! `approve`, `reject` and `rollback`, which call the running service's API (pending approvals
//! live there, and it publishes every change in one order).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_events::{LifecycleEvent, Stage};
use vigil_lifecycle::client::Client;
use vigil_lifecycle::view::{EventView, StateView};
use vigil_lifecycle::{stage_name, Registry};

use crate::config::Config;

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
    Register(Box<RegisterArgs>),
    /// List the decisions waiting for approval (asks the running `vigil lifecycle`).
    Approvals {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Approve the pending decision about a model version (through the running service's API).
    Approve(DecideArgs),
    /// Reject the pending decision about a model version: it keeps its stage.
    Reject(DecideArgs),
    /// Roll a canary or production version back now (production returns to its last good version).
    Rollback(DecideArgs),
}

#[derive(clap::Args)]
struct DecideArgs {
    model: String,
    version: String,
    /// Deprecated: the log records your token's subject (`VIGIL_API_TOKEN`); when given, it must
    /// be that subject.
    #[arg(long)]
    actor: Option<String>,
    /// Why (recorded in the log).
    #[arg(long)]
    reason: String,
    /// The pending approval's id, when a version has more than one (see `approvals`).
    #[arg(long)]
    id: Option<String>,
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
    #[command(flatten)]
    lineage: LineageArgs,
}

/// Where the version came from: options, or a JSON file (`--lineage-file`) the options override.
#[derive(clap::Args, Default)]
struct LineageArgs {
    /// A JSON object with any of the fields below (`datasets` as [{"name", "version", "sha256"}],
    /// `tags` as an object); at most 1 MiB.
    #[arg(long, value_name = "FILE")]
    lineage_file: Option<std::path::PathBuf>,
    #[arg(long)]
    training_run_id: Option<String>,
    #[arg(long)]
    training_run_uri: Option<String>,
    /// A training dataset as NAME, NAME@VERSION, NAME#SHA256 or NAME@VERSION#SHA256; repeatable.
    #[arg(long = "dataset", value_name = "NAME[@VERSION][#SHA256]")]
    datasets: Vec<String>,
    #[arg(long)]
    code_repository: Option<String>,
    #[arg(long)]
    code_commit: Option<String>,
    #[arg(long)]
    artifact_uri: Option<String>,
    /// Hex SHA-256 of the artifact.
    #[arg(long)]
    artifact_sha256: Option<String>,
    #[arg(long)]
    parent_version: Option<String>,
    /// The owning team.
    #[arg(long)]
    team: Option<String>,
    /// A free tag as KEY=VALUE; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

/// Largest `--lineage-file`, in bytes.
const MAX_LINEAGE_FILE: u64 = 1024 * 1024;

impl LineageArgs {
    /// The lineage given, validated; `None` when no option and no file was given.
    fn lineage(&self) -> anyhow::Result<Option<vigil_events::Lineage>> {
        let mut view =
            match &self.lineage_file {
                Some(path) => {
                    let size = std::fs::metadata(path)
                        .with_context(|| format!("--lineage-file {}", path.display()))?
                        .len();
                    anyhow::ensure!(
                        size <= MAX_LINEAGE_FILE,
                        "--lineage-file {}: {size} bytes, at most {MAX_LINEAGE_FILE}",
                        path.display()
                    );
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("--lineage-file {}", path.display()))?;
                    Some(serde_json::from_str::<vigil_alerts::LineageView>(&text).with_context(|| {
                        format!("--lineage-file {}: not a lineage object", path.display())
                    })?)
                }
                None => None,
            };
        let given = [
            &self.training_run_id,
            &self.training_run_uri,
            &self.code_repository,
            &self.code_commit,
            &self.artifact_uri,
            &self.artifact_sha256,
            &self.parent_version,
            &self.team,
        ]
        .iter()
        .any(|o| o.is_some())
            || !self.datasets.is_empty()
            || !self.tags.is_empty();
        if given {
            let v = view.get_or_insert_with(Default::default);
            let set = |field: &mut Option<String>, value: &Option<String>| {
                if value.is_some() {
                    field.clone_from(value);
                }
            };
            set(&mut v.training_run_id, &self.training_run_id);
            set(&mut v.training_run_uri, &self.training_run_uri);
            set(&mut v.code_repository, &self.code_repository);
            set(&mut v.code_commit, &self.code_commit);
            set(&mut v.artifact_uri, &self.artifact_uri);
            set(&mut v.artifact_sha256, &self.artifact_sha256);
            set(&mut v.parent_version, &self.parent_version);
            set(&mut v.team, &self.team);
            for spec in &self.datasets {
                let (rest, sha256) = match spec.split_once('#') {
                    Some((rest, hash)) => (rest, Some(hash.to_owned())),
                    None => (spec.as_str(), None),
                };
                let (name, version) = match rest.split_once('@') {
                    Some((name, version)) => (name, Some(version.to_owned())),
                    None => (rest, None),
                };
                anyhow::ensure!(!name.is_empty(), "--dataset {spec:?}: the name is empty");
                v.datasets.push(vigil_alerts::DatasetView { name: name.to_owned(), version, sha256 });
            }
            for tag in &self.tags {
                let (key, value) =
                    tag.split_once('=').with_context(|| format!("--tag {tag:?}: expected KEY=VALUE"))?;
                v.tags.insert(key.to_owned(), value.to_owned());
            }
        }
        let Some(view) = view else { return Ok(None) };
        let lineage = vigil_lifecycle::view::lineage_of(&view);
        lineage.validate().map_err(|e| anyhow::anyhow!("lineage: {e}"))?;
        Ok(Some(lineage))
    }
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

#[derive(Clone, Copy)]
enum Decide {
    Approve,
    Reject,
    Rollback,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    match args.command {
        None => run_until(config, super::shutdown_on_signal()).await,
        Some(Sub::State { json }) => state(config, json).await,
        Some(Sub::Register(args)) => register(config, *args).await,
        Some(Sub::Approvals { model, version, json }) => {
            approvals(config, model.as_deref(), version.as_deref(), json).await
        }
        Some(Sub::Approve(args)) => decide(config, Decide::Approve, args).await,
        Some(Sub::Reject(args)) => decide(config, Decide::Reject, args).await,
        Some(Sub::Rollback(args)) => decide(config, Decide::Rollback, args).await,
    }
}

/// Runs the lifecycle service until `shutdown` or a fatal error.
pub async fn run_until(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.lifecycle_service().map_err(anyhow::Error::msg)?;
    ensure_topics(config).await?;
    if settings.api_auth.is_none() {
        tracing::warn!("lifecycle.api.enabled = false: no /api/v1 routes (metrics and health only)");
    }
    let listen = settings.listen;
    vigil_lifecycle::service::run(settings, shutdown)
        .await
        .with_context(|| format!("lifecycle service stopped (lifecycle.api.listen {listen})"))
}

fn client(config: &Config) -> anyhow::Result<Client> {
    let token = config.lifecycle.api.client_token().map_err(anyhow::Error::msg)?;
    Ok(Client::new(&config.lifecycle.api.base_url(), &token)?)
}

async fn approvals(
    config: &Config,
    model: Option<&str>,
    version: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let pending = client(config)?.approvals(model, version).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pending)?);
    } else if pending.is_empty() {
        println!("no decisions waiting for approval");
    }
    for p in pending.iter().filter(|_| !json) {
        println!(
            "{}  {} {}  {}  (since {})",
            p.id,
            p.model_id,
            p.model_version,
            p.summary,
            vigil_alerts::rfc3339(p.created_ms)
        );
    }
    Ok(())
}

async fn decide(config: &Config, what: Decide, args: DecideArgs) -> anyhow::Result<()> {
    let client = client(config)?;
    let events = match what {
        Decide::Rollback => {
            client.rollback(&args.model, &args.version, args.actor.as_deref(), &args.reason).await?
        }
        Decide::Approve | Decide::Reject => {
            let id = match args.id {
                Some(id) => id,
                None => {
                    let pending = client.approvals(Some(&args.model), Some(&args.version)).await?;
                    match pending.as_slice() {
                        [one] => one.id.clone(),
                        [] => anyhow::bail!("no decision about model {} version {} waits for approval (see vigil lifecycle approvals)", args.model, args.version),
                        many => anyhow::bail!(
                            "{} decisions about model {} version {} wait for approval; choose one with --id: {}",
                            many.len(),
                            args.model,
                            args.version,
                            many.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
            };
            match what {
                Decide::Approve => client.approve(&id, args.actor.as_deref(), &args.reason).await?,
                _ => client.reject(&id, args.actor.as_deref(), &args.reason).await?,
            }
        }
    };
    print_events(&events);
    Ok(())
}

fn print_events(events: &[EventView]) {
    for e in events {
        let weight = e.traffic_weight.map(|w| format!(" at weight {w}")).unwrap_or_default();
        println!(
            "model {} version {}: {}{weight} (event {}, actor {})",
            e.model_id, e.model_version, e.stage, e.event_id, e.actor
        );
    }
}

async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    vigil_monitor::ensure_topics(
        &config.kafka_settings(),
        &[&config.topics.lifecycle, &config.topics.remediations],
        config.kafka.topic_partitions,
    )
    .await
    .context("preparing kafka topics (is the broker running? see deploy/local/up)")
}

async fn replay(config: &Config) -> anyhow::Result<Registry> {
    let (registry, stats) =
        vigil_lifecycle::kafka::replay(&config.lifecycle_settings()).await.with_context(|| {
            format!("replaying {} (is the broker running? see deploy/local/up)", config.topics.lifecycle)
        })?;
    if stats.rejected > 0 {
        tracing::warn!(
            rejected = stats.rejected,
            "lifecycle log: events skipped (illegal or undecodable), see the log above"
        );
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
    println!(
        "{:<20} {:<12} {:<12} {:>6}  {:<24} {:<12} reason",
        "model", "version", "stage", "weight", "updated (UTC)", "actor"
    );
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
            if let Some(l) = &v.lineage {
                let show = |label: &str, value: &Option<String>| {
                    value.as_ref().map(|v| format!("{label} {v}")).unwrap_or_default()
                };
                let parts: Vec<String> = [
                    show("run", &l.training_run_id),
                    show("commit", &l.code_commit),
                    show("artifact", &l.artifact_uri),
                    show("team", &l.team),
                ]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
                let complete = if v.lineage_complete { "complete" } else { "incomplete" };
                println!("{:<20} lineage ({complete}): {}", "", parts.join(", "));
            }
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
    let actor = args
        .actor
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "cli".into());
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
        kind: vigil_events::EventKind::StageChange,
        lineage: args.lineage.lineage()?.map(Box::new),
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
