//! Prometheus metrics of `vigil lifecycle` (`vigil_lifecycle_*`). Every label is bounded: origins,
//! outcomes, receivers (from the configuration), routes (the router's templates), status codes.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::Outcome;

#[derive(Clone)]
pub struct LifecycleMetrics {
    /// Events newly applied to the registry, by origin (replay, log, decision, command).
    pub events_applied: IntCounterVec,
    /// Decisions on remediations, by outcome.
    pub decisions: IntCounterVec,
    /// Webhook delivery attempts (alerts and serving-platform updates), by receiver and outcome.
    pub deliveries: IntCounterVec,
    /// HTTP requests, by route template, method and status code.
    pub api_requests: IntCounterVec,
    /// Audit rows, by table and result (written, dropped).
    pub audit_rows: IntCounterVec,
    /// API requests refused, by kind (`unauthenticated`: 401, `forbidden`: 403).
    pub auth_failures: IntCounterVec,
    pub alerts_resolved: IntCounter,
    pub pending_approvals: IntGauge,
}

impl LifecycleMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let metrics = Self {
            events_applied: counter(
                "vigil_lifecycle_events_applied_total",
                "Lifecycle events newly applied to the registry, by origin",
                &["origin"],
            )?,
            decisions: counter(
                "vigil_lifecycle_decisions_total",
                "Decisions on remediations, by outcome",
                &["outcome"],
            )?,
            deliveries: counter(
                "vigil_lifecycle_deliveries_total",
                "Webhook delivery attempts (alerts and platform updates), by receiver and outcome",
                &["receiver", "outcome"],
            )?,
            api_requests: counter(
                "vigil_lifecycle_api_requests_total",
                "HTTP requests, by route, method and status",
                &["route", "method", "status"],
            )?,
            audit_rows: counter(
                "vigil_lifecycle_audit_rows_total",
                "Audit rows for ClickHouse, by table and result (written, dropped)",
                &["table", "result"],
            )?,
            auth_failures: counter(
                "vigil_lifecycle_api_auth_failures_total",
                "API requests refused, by kind (unauthenticated, forbidden)",
                &["kind"],
            )?,
            alerts_resolved: IntCounter::new(
                "vigil_lifecycle_alerts_resolved_total",
                "Alerts resolved because their policy was healthy again",
            )?,
            pending_approvals: IntGauge::new(
                "vigil_lifecycle_pending_approvals",
                "Decisions waiting for a human",
            )?,
        };
        registry.register(Box::new(metrics.alerts_resolved.clone()))?;
        registry.register(Box::new(metrics.pending_approvals.clone()))?;
        Ok(metrics)
    }
}

/// The metric label of an outcome.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::NoAction { .. } => "no_action",
        Outcome::Duplicate => "duplicate",
        Outcome::RolledBackCanary { .. } => "rolled_back_canary",
        Outcome::RolledBackProduction { .. } => "rolled_back_production",
        Outcome::NoRollbackTarget { .. } => "no_rollback_target",
        Outcome::HeldPromotion { .. } => "held_promotion",
        Outcome::RetrainRequested { .. } => "retrain_requested",
        Outcome::CanaryWeight { .. } => "canary_weight",
        Outcome::Promoted { .. } => "promoted",
        Outcome::AwaitingApproval { .. } => "awaiting_approval",
    }
}
