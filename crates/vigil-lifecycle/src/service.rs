//! `vigil lifecycle` as one service: the consumer (the registry's one writer), the HTTP API with
//! metrics and health, the webhooks (alerts for every remediation, the serving platform after
//! every change), the ClickHouse audit, and the poll that resolves alerts once their policy is
//! healthy again. The binary only builds [`ServiceSettings`] from its configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_alerts::audit::DeliveryAttempt;
use vigil_alerts::{Alert, AlertsConfig, CanarySplit, Notifier, TrafficUpdate};
use vigil_events::RemediationEvent;

use crate::api::{self, ApiState, Readiness};
use crate::approvals::Approvals;
use crate::audit::{self, AuditRow, Auditor, StoreHealth};
use crate::engine::Engine;
use crate::kafka::{self, LifecycleSettings, Logged, Observer, Origin, SharedEngine};
use crate::metrics::{outcome_label, LifecycleMetrics};
use crate::view::event_view;
use crate::{now_ms, stage_name, Decision, LifecycleError, Outcome, Registry};

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub kafka: LifecycleSettings,
    /// Where the API, `/metrics` and `/health` are served.
    pub listen: SocketAddr,
    /// The API's tokens (and OIDC verifier); `None` serves no `/api/v1` routes (an explicit choice).
    pub api_auth: Option<crate::auth::Authenticator>,
    /// Where the pending approvals are kept (`approvals.json`).
    pub state_dir: PathBuf,
    /// ClickHouse for the audit and the resolve poll; `None` turns both off.
    pub store: Option<vigil_store::StoreConfig>,
    /// Audit rows waiting for the writer; more are dropped (counted).
    pub audit_queue: usize,
    /// Alert and serving-platform receivers together; `None` when there are none.
    pub webhooks: Option<AlertsConfig>,
    /// How often open alerts are checked against `policy_checks`; `None`: never resolved.
    pub resolve_interval: Option<Duration>,
    /// How often canaries with `canary.analysis` are judged on the monitor's stored windows;
    /// `None`: never (needs `store`).
    pub canary_interval: Option<Duration>,
    /// The monitor's window length: a window's end names its canary analysis events.
    pub window_seconds: u32,
    /// How often the KPI gauges (`vigil_lifecycle_kpi_*`) are recomputed; `None`: never.
    pub kpi_interval: Option<Duration>,
    /// The trailing period the KPI gauges cover.
    pub kpi_period: Duration,
    /// Answers to a remediation later than this are late approvals (KPIs).
    pub approval_deadline: Duration,
}

/// Longest wait at shutdown for accepted alerts and updates to reach the outbox.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(5);

/// Runs everything until `shutdown` or the first fatal error (which stops the rest too).
pub async fn run(settings: ServiceSettings, shutdown: CancellationToken) -> Result<(), LifecycleError> {
    let registry = prometheus::Registry::new();
    let metrics = LifecycleMetrics::register(&registry)
        .map_err(|e| LifecycleError::Config(vec![format!("metrics: {e}")]))?;
    let kpi_gauges = crate::kpi::KpiGauges::register(&registry)
        .map_err(|e| LifecycleError::Config(vec![format!("metrics: {e}")]))?;
    let approvals = Approvals::open(&settings.state_dir)?;
    let engine: SharedEngine =
        Arc::new(Mutex::new(Engine::new(Registry::new(), approvals, settings.kafka.policy.clone())));

    // The audit outlives the webhooks (their last attempts are audited too).
    let audit_shutdown = CancellationToken::new();
    let (auditor, audit_task, store_health) = match &settings.store {
        Some(config) => {
            let health = StoreHealth::default();
            let store = vigil_store::Store::new(config.clone());
            let (auditor, task) = audit::start(
                store,
                settings.audit_queue,
                metrics.clone(),
                health.clone(),
                audit_shutdown.clone(),
            );
            (Some(auditor), Some(task), Some(health))
        }
        None => (None, None, None),
    };

    let webhooks_shutdown = CancellationToken::new();
    let mut webhooks = None;
    if let Some(config) = &settings.webhooks {
        let (attempts_tx, attempts) = mpsc::channel(1024);
        let (notifier, tasks) =
            vigil_alerts::start_with_audit(config, webhooks_shutdown.clone(), Some(attempts_tx))?;
        let attempts_task = tokio::spawn(count_attempts(attempts, metrics.clone(), auditor.clone()));
        let platform = config.receivers.iter().any(|r| r.kind.takes_traffic());
        tracing::info!(receivers = config.receivers.len(), platform, "webhooks on");
        webhooks = Some((notifier, tasks, attempts_task, platform));
    }
    let notifier = webhooks.as_ref().map(|(n, _, _, _)| n.clone());
    let platform = webhooks.as_ref().is_some_and(|(_, _, _, p)| *p);

    let readiness = Readiness { running: Arc::new(AtomicBool::new(false)), store: store_health };
    let (commands, requests) = mpsc::channel(16);
    let state = ApiState {
        engine: engine.clone(),
        commands: commands.clone(),
        auth: settings.api_auth.clone().map(Arc::new),
        metrics: metrics.clone(),
        registry,
        readiness: readiness.clone(),
        store: settings.store.clone(),
        approval_deadline_ms: settings.approval_deadline.as_millis() as i64,
    };
    let mut router = api::router(state);
    if let Some(config) = &settings.store {
        // The analysis provider for Argo Rollouts and Flagger reads the monitor's tables.
        router = router.layer(axum::Extension(crate::provider::Provider::new(config)));
    }
    let http = api::serve(settings.listen, router, shutdown.clone()).await?;

    let resolver = match (&settings.store, &notifier, settings.resolve_interval) {
        (Some(config), Some(notifier), Some(interval)) => Some(tokio::spawn(crate::resolve::run(
            vigil_store::Store::new(config.clone()),
            notifier.clone(),
            interval,
            metrics.clone(),
            shutdown.clone(),
        ))),
        _ => None,
    };
    let analysis = match (&settings.store, settings.canary_interval) {
        (Some(config), Some(interval)) => Some(tokio::spawn(crate::analysis::run(
            vigil_store::Store::new(config.clone()),
            engine.clone(),
            commands,
            interval,
            settings.window_seconds,
            shutdown.clone(),
        ))),
        _ => None,
    };

    let kpis = settings.kpi_interval.map(|interval| {
        tokio::spawn(kpi_loop(
            engine.clone(),
            settings.store.clone(),
            kpi_gauges,
            interval,
            settings.kpi_period,
            settings.approval_deadline,
            readiness.running.clone(),
            shutdown.clone(),
        ))
    });

    let mut wiring = Wiring {
        notifier,
        platform,
        auditor: auditor.clone(),
        metrics: metrics.clone(),
        running: readiness.running.clone(),
        engine: engine.clone(),
    };
    let result =
        kafka::run_engine(settings.kafka.clone(), engine, requests, &mut wiring, shutdown.clone()).await;
    readiness.running.store(false, Ordering::Relaxed);
    // The first fatal error stops everything else too.
    shutdown.cancel();
    drop(wiring);
    let _ = http.await;
    for task in [resolver, analysis, kpis].into_iter().flatten() {
        let _ = task.await;
    }
    if let Some((notifier, mut tasks, attempts_task, _)) = webhooks {
        let started = Instant::now();
        while notifier.queued() > 0 && started.elapsed() < WEBHOOK_DRAIN {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        webhooks_shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        drop(notifier);
        let _ = attempts_task.await;
    }
    drop(auditor);
    audit_shutdown.cancel();
    if let Some(task) = audit_task {
        let _ = task.await;
    }
    result
}

/// Recomputes the KPI gauges over the trailing period every `interval`, once the log is replayed.
/// A failed ClickHouse read leaves the gauges as they were (logged, retried next time).
#[allow(clippy::too_many_arguments)]
async fn kpi_loop(
    engine: SharedEngine,
    store: Option<vigil_store::StoreConfig>,
    gauges: crate::kpi::KpiGauges,
    interval: Duration,
    period: Duration,
    deadline: Duration,
    running: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    // The first computation as soon as the log is replayed, then every `interval`.
    while !running.load(Ordering::Relaxed) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let registry = kafka::lock(&engine).registry.clone();
        let to_ms = now_ms();
        let from_ms = to_ms - period.as_millis() as i64;
        match crate::kpi::store::report(
            &registry,
            store.as_ref(),
            from_ms,
            to_ms,
            None,
            deadline.as_millis() as i64,
        )
        .await
        {
            Ok(report) => gauges.set(&report),
            Err(error) => tracing::warn!(%error, "kpis not recomputed"),
        }
    }
}

/// Every delivery attempt: counted by receiver and outcome, and audited.
async fn count_attempts(
    mut attempts: mpsc::Receiver<DeliveryAttempt>,
    metrics: LifecycleMetrics,
    auditor: Option<Auditor>,
) {
    while let Some(attempt) = attempts.recv().await {
        metrics.deliveries.with_label_values(&[attempt.receiver.as_str(), attempt.outcome.as_str()]).inc();
        if let Some(auditor) = &auditor {
            auditor.send(AuditRow::Delivery(audit::delivery_row(&attempt)));
        }
    }
}

/// What the consumer's news turns into: metrics, audit rows, alerts and platform updates.
struct Wiring {
    notifier: Option<Notifier>,
    /// Whether any receiver takes platform updates.
    platform: bool,
    auditor: Option<Auditor>,
    metrics: LifecycleMetrics,
    running: Arc<AtomicBool>,
    /// To look up the lineage a retraining request carries.
    engine: SharedEngine,
}

impl Observer for Wiring {
    fn applied(&mut self, registry: &Registry, events: &[Logged], origin: Origin) {
        self.metrics.events_applied.with_label_values(&[origin.as_str()]).inc_by(events.len() as u64);
        if let Some(auditor) = &self.auditor {
            auditor.events(events);
        }
        if origin == Origin::Replay || !self.platform {
            return;
        }
        // One update per model the events touched, after all of them (a production rollback is
        // two events; the platform must not see the state between them).
        let mut models: Vec<&str> = events.iter().map(|l| l.event.model_id.as_str()).collect();
        models.dedup();
        for model in models {
            let changes: Vec<_> =
                events.iter().filter(|l| l.event.model_id == model).map(|l| event_view(&l.event)).collect();
            let last = changes.last().map(|c| c.event_id.clone()).unwrap_or_default();
            if let Some(update) = traffic_update(registry, model, last, changes) {
                self.send_traffic(update);
            }
        }
    }

    /// Every model's current state once, keyed by its last event: the outbox's dedup skips what
    /// a receiver already has, so this only fills gaps (a crash between publishing a decision
    /// and queueing its update, or a receiver configured since).
    fn running(&mut self, registry: &Registry) {
        self.running.store(true, Ordering::Relaxed);
        if !self.platform {
            return;
        }
        for (model, state) in registry.models() {
            let Some(last) = state.history.last() else {
                continue;
            };
            if let Some(update) = traffic_update(registry, model, last.event_id.clone(), Vec::new()) {
                self.send_traffic(update);
            }
        }
    }

    fn decided(&mut self, remediation: &RemediationEvent, decision: &Decision) {
        self.metrics.decisions.with_label_values(&[outcome_label(&decision.outcome)]).inc();
        if let Some(notifier) = &self.notifier {
            alert(notifier, remediation, decision);
            let requested =
                decision.events.iter().any(|e| e.kind == vigil_events::EventKind::RetrainRequested);
            if requested {
                let lineage = kafka::lock(&self.engine)
                    .registry
                    .version(&remediation.model_id, &remediation.model_version)
                    .and_then(|v| v.lineage.as_ref().map(crate::view::lineage_view));
                if let Err(error) = notifier.notify_retrain(retrain_request(remediation, lineage)) {
                    tracing::error!(%error, remediation = %remediation.remediation_id, "retraining request not queued");
                }
            }
        }
    }
}

impl Wiring {
    fn send_traffic(&self, update: TrafficUpdate) {
        if let Some(notifier) = &self.notifier {
            if let Err(error) = notifier.notify_traffic(update) {
                tracing::error!(%error, "platform update not queued");
            }
        }
    }
}

/// The serving state of `model_id` as the registry has it now.
pub fn traffic_update(
    registry: &Registry,
    model_id: &str,
    event_id: String,
    changes: Vec<vigil_alerts::StageChange>,
) -> Option<TrafficUpdate> {
    let model = registry.model(model_id)?;
    let canary = model.canary.as_ref().and_then(|c| {
        let weight = model.versions.get(c)?.traffic_weight?;
        Some(CanarySplit { model_version: c.clone(), traffic_weight: weight })
    });
    Some(TrafficUpdate {
        model_id: model_id.to_owned(),
        event_id,
        production: model.production.clone(),
        canary,
        changes,
        at_ms: now_ms(),
    })
}

/// What the training pipelines get for a `retrain` remediation.
pub fn retrain_request(
    remediation: &RemediationEvent,
    lineage: Option<vigil_alerts::LineageView>,
) -> vigil_alerts::RetrainRequest {
    vigil_alerts::RetrainRequest {
        idempotency_key: vigil_alerts::retrain_key(&remediation.remediation_id),
        remediation_id: remediation.remediation_id.clone(),
        model_id: remediation.model_id.clone(),
        model_version: remediation.model_version.clone(),
        policy: remediation.policy.clone(),
        severity: format!("{:?}", remediation.severity).to_lowercase(),
        window_start_ms: remediation.window_start_ms,
        window_end_ms: remediation.window_end_ms,
        evidence: remediation
            .evidence
            .iter()
            .map(|e| vigil_alerts::RetrainEvidence {
                metric: e.metric.clone(),
                value: e.value,
                threshold: e.threshold,
                feature: e.feature.clone(),
            })
            .collect(),
        lineage,
        requested_at_ms: remediation.created_at_ms,
    }
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

/// What the lifecycle did, in words, for the alert's details.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NoAction { why } => format!("no change: {why}"),
        Outcome::Duplicate => "already acted on".into(),
        Outcome::RolledBackCanary { version } => format!("canary {version} rolled back"),
        Outcome::RolledBackProduction { from, to } => {
            format!("production {from} rolled back to {to}")
        }
        Outcome::NoRollbackTarget { version } => {
            format!("production {version} failed and there is no earlier version to roll back to")
        }
        Outcome::HeldPromotion { version } => format!("promotion of canary {version} held"),
        Outcome::RetrainRequested { version } => format!("retraining of {version} requested"),
        Outcome::CanaryWeight { version, weight } => format!("canary {version} at weight {weight}"),
        Outcome::Promoted { version } => format!("{version} promoted to production"),
        Outcome::AwaitingApproval { proposed } => {
            let steps: Vec<String> =
                proposed.iter().map(|e| format!("{} {}", e.model_version, stage_name(e.stage))).collect();
            format!("awaiting approval: {}", steps.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use vigil_events::Stage;

    use super::*;
    use crate::registry::tests::lifecycle;

    #[test]
    fn the_update_is_the_whole_serving_state() {
        let registry = Registry::replay(&[
            lifecycle("e1", "fraud", "v1", Stage::Production, None),
            lifecycle("e2", "fraud", "v2", Stage::Canary, Some(0.25)),
        ])
        .unwrap();
        let update = traffic_update(&registry, "fraud", "e2".into(), Vec::new()).unwrap();
        assert_eq!(update.weights(), vec![("v1".to_owned(), 0.75), ("v2".to_owned(), 0.25)]);
        assert_eq!(update.event_id, "e2");
        assert!(traffic_update(&registry, "other", "x".into(), Vec::new()).is_none());
    }
}
