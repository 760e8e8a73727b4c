//! The vigil monitor: consumes prediction events, keeps mergeable window states per (model,
//! version, segment, event-time window), dead-letters what it cannot use, and stores counts together with the Kafka positions
//! they cover (partial states and positions in one atomic insert) so that a crash or restart neither loses nor double-counts an event.

mod clock;
mod close;
mod closing;
mod drift;
mod http;
mod join;
mod kafka;
mod metrics;
mod monitor_core;
mod partials;
mod performance;
mod pipeline;
mod policy;
pub mod reference;
pub mod replay;
pub mod rows;
mod shards;
mod window;
pub mod windowing;

use std::time::Duration;

use thiserror::Error;

pub use clock::WindowClock;
pub use drift::{categorical_drift, numeric_drift, FeatureDrift};
pub use http::{serve, Readiness};
pub use join::{JoinCounts, JoinSettings, Matched, OutcomeJoin, WaitingPrediction};
pub use kafka::{ensure_topics, KafkaSettings};
pub use metrics::{LatestGauges, LatestWindow, MonitorMetrics, MAX_LATEST_VERSIONS};
pub use monitor_core::{CoreCounts, CoreSettings, MonitorCore, Taken};
pub use partials::{PendingPartials, Segmenter, Source};
pub use performance::{Observed, PerformanceState, PerformanceSummary, Predicted};
pub use pipeline::run;
pub use policy::{
    check, check_latency, check_performance, remediation_id, DriftPolicySettings, Escalation, Judgement,
    LatencyPolicySettings, NoTrafficPolicySettings, PerformancePolicySettings, Policies, PolicyBook,
    PolicyCheck, Streaks, Verdict,
};
pub use shards::{Batch, ShardedCore, MAX_SHARDS};
pub use window::{StateCodecError, WindowState, WindowSummary};
pub use windowing::{Window, WindowSpec, Windowing};

/// What `run` needs, already validated by the caller.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub kafka: KafkaSettings,
    pub group_id: String,
    /// Static group membership (`group.instance.id`), unique per running instance.
    pub instance_id: Option<String>,
    /// The consumer's `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Threads (shards of partitions) that decode and update window state in parallel.
    pub threads: usize,
    /// A Confluent-compatible Schema Registry for messages in its wire format (magic byte 0 and
    /// a schema id), and how many writer schemas to keep; without one such messages are
    /// dead-lettered as `unknown_schema_id`.
    pub schema_registry: Option<(vigil_registry::RegistryConfig, usize)>,
    pub predictions_topic: String,
    /// Outcomes, keyed by model id like predictions and with as many partitions.
    pub outcomes_topic: String,
    pub deadletter_topic: String,
    /// Window length and slide per model (tumbling 60 s unless configured otherwise).
    pub windows: Windowing,
    /// Segment tags that get their own windows besides all traffic (e.g. `country`).
    pub segment_tags: Vec<String>,
    /// Segments per model beyond which new values share `tag=__other__`.
    pub max_segments_per_model: usize,
    /// How far past a window's end its partition's event time must be before the window closes.
    pub allowed_lateness: Duration,
    /// A partition whose event time has not moved for this long (wall clock) closes its windows
    /// as if it had kept pace; `None` closes by event time only.
    pub idle_timeout: Option<Duration>,
    /// A version without a reference takes its first closed window with at least this many
    /// events (all segments together) as its baseline reference.
    pub baseline_min_events: u64,
    pub remediations_topic: String,
    /// Drift, performance and latency policies, with per-model replacements.
    pub policies: PolicyBook,
    /// How outcomes wait for predictions and the other way round.
    pub join: JoinSettings,
    /// The class a binary model's `score` is the probability of (for AUC, Brier, precision).
    pub positive_label: String,
    /// Longest time counts wait in memory before they are stored.
    pub flush_interval: Duration,
    /// A flush also starts once this many messages are pending.
    pub max_pending_messages: usize,
    /// How long shutdown may spend on the final flush.
    pub drain_timeout: Duration,
}

impl MonitorSettings {
    /// Identifies the settings that change a window's numbers; stored on every metrics row so a
    /// replay can tell whether it computes under the same configuration. FNV-1a 64, hex.
    pub fn config_hash(&self) -> String {
        let canonical = format!(
            "window_seconds={};allowed_lateness_s={};segment_tags={};max_segments_per_model={};category_cap={};baseline_min_events={};reference_bins={};policy={:?};join_horizon_s={};join_capacity={};positive_label={}",
            self.windows.canonical(),
            self.allowed_lateness.as_secs(),
            self.segment_tags.join(","),
            self.max_segments_per_model,
            window::CATEGORY_CAP,
            self.baseline_min_events,
            drift::REFERENCE_BINS,
            self.policies.canonical(),
            self.join.horizon_seconds,
            self.join.capacity,
            self.positive_label,
        );
        format!("{:016x}", vigil_events::fnv1a64(canonical.as_bytes()))
    }
}

#[derive(Debug, Error)]
pub enum MonitorError {
    #[error("kafka: could not {action}: {source}")]
    Kafka { action: &'static str, source: rdkafka::error::KafkaError },
    #[error("clickhouse: {0}")]
    Store(#[from] vigil_store::StoreError),
    #[error("window state: {0}")]
    Stats(#[from] vigil_stats::StatsError),
    #[error("stored window state: {0}")]
    State(#[from] window::StateCodecError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
