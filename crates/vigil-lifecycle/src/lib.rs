//! vigil's lifecycle consumer: the model registry rebuilt from `vigil.lifecycle.v1`, canary
//! analysis, and the promotion and rollback decisions taken on remediation events.
//!
//! Everything under [`registry`] is pure (no tokio, Kafka or clock), and so is [`engine`] (the
//! registry with its pending approvals, and the commands people send); [`kafka`] is the thin
//! adapter that replays the log, consumes remediations and commands and publishes decisions;
//! [`service`] runs it with the HTTP API ([`api`]), the webhooks, the ClickHouse [`audit`], the
//! alert [`resolve`] poll and the canary [`analysis`] fed by the monitor's windows.

pub mod analysis;
pub mod api;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod client;
pub mod engine;
mod error;
pub mod jwt;
pub mod kafka;
pub mod kpi;
pub mod metrics;
pub mod provider;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod service;
pub mod view;

pub use error::LifecycleError;
pub use registry::canary::{
    metric_source, policy_verdict, relative_verdict, CanaryAnalysis, CanaryConfig, CanaryStep, Direction,
    RelativeCheck, Sample, Verdict, WINDOW_METRICS,
};
pub use registry::decide::{
    approve, decide, decide_canary, reject, rollback_events, Cause, Decision, Outcome,
};
pub use registry::policy::{LifecyclePolicy, ModelPolicy};
pub use registry::{ModelState, Registry, VersionState, AUTOMATION_ACTOR};

/// The Avro symbol of a stage, as written in `schemas/lifecycle.avsc`.
pub fn stage_name(stage: vigil_events::Stage) -> &'static str {
    use vigil_events::Stage;
    match stage {
        Stage::Candidate => "CANDIDATE",
        Stage::Canary => "CANARY",
        Stage::Production => "PRODUCTION",
        Stage::Retired => "RETIRED",
        Stage::RolledBack => "ROLLED_BACK",
    }
}

/// Milliseconds since the Unix epoch, for event times (the pure parts take the time as input).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
