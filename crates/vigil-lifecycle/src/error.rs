use thiserror::Error;
use vigil_events::Stage;

/// Everything that can go wrong in the lifecycle consumer. [`LifecycleError::is_retryable`]
/// tells a caller whether trying again can help.
#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("lifecycle event {event_id:?} is invalid: {reason}")]
    InvalidEvent { event_id: String, reason: String },
    #[error("model {model_id:?} version {version:?}: {from} -> {} is not allowed: {why}", crate::stage_name(*to))]
    IllegalTransition { model_id: String, version: String, from: &'static str, to: Stage, why: &'static str },
    #[error("invalid lifecycle configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("kafka: could not {action}: {source}")]
    Kafka { action: &'static str, source: rdkafka::error::KafkaError },
    #[error("{topic} partition {partition} offset {offset}: {source}")]
    Decode { topic: String, partition: i32, offset: i64, source: vigil_events::DecodeError },
    #[error("lifecycle state file {path}: {source}")]
    StateFile { path: String, source: std::io::Error },
    #[error("http api on {addr}: {source}")]
    Http { addr: String, source: std::io::Error },
    #[error(transparent)]
    Alerts(#[from] vigil_alerts::AlertError),
    #[error("lifecycle api answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("lifecycle api at {url} did not answer: {source}")]
    ApiUnreachable { url: String, source: reqwest::Error },
    #[error("clickhouse at {url}: {source}")]
    Query { url: String, source: clickhouse::error::Error },
}

impl LifecycleError {
    /// Broker or network trouble may pass; a bad event, transition or configuration never does.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LifecycleError::Kafka { .. }
                | LifecycleError::ApiUnreachable { .. }
                | LifecycleError::Query {
                    source: clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut,
                    ..
                }
        )
    }
}
