//! The vigil monitor: consumes prediction events, counts them per (model, version, event-time
//! window), dead-letters what it cannot use, and stores counts together with the Kafka positions
//! they cover so that a crash or restart neither loses nor double-counts an event.

mod counts;
mod http;
mod kafka;
mod metrics;
mod pipeline;

use std::time::Duration;

use thiserror::Error;

pub use counts::PendingCounts;
pub use http::{serve, Readiness};
pub use kafka::{ensure_topics, KafkaSettings};
pub use metrics::MonitorMetrics;
pub use pipeline::run;

/// What `run` needs, already validated by the caller.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub kafka: KafkaSettings,
    pub group_id: String,
    pub predictions_topic: String,
    pub deadletter_topic: String,
    pub window_seconds: u32,
    /// Longest time counts wait in memory before they are stored.
    pub flush_interval: Duration,
    /// A flush also starts once this many messages are pending.
    pub max_pending_messages: usize,
    /// How long shutdown may spend on the final flush.
    pub drain_timeout: Duration,
}

#[derive(Debug, Error)]
pub enum MonitorError {
    #[error("kafka: could not {action}: {source}")]
    Kafka { action: &'static str, source: rdkafka::error::KafkaError },
    #[error("clickhouse: {0}")]
    Store(#[from] vigil_store::StoreError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
