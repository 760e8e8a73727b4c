//! vigil's lifecycle consumer: the model registry rebuilt from `vigil.lifecycle.v1`, canary
//! analysis, and the promotion and rollback decisions taken on remediation events.
//!
//! Everything under [`registry`] is pure (no tokio, Kafka or clock); [`kafka`] is the thin
//! adapter that replays the log, consumes remediations and publishes decisions.

pub mod approvals;
pub mod audit;
pub mod engine;
mod error;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod view;

pub use error::LifecycleError;
pub use registry::canary::{
    relative_verdict, CanaryAnalysis, CanaryConfig, CanaryStep, Direction, RelativeCheck, Sample,
    Verdict,
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
