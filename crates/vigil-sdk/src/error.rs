use rdkafka::error::KafkaError;
use thiserror::Error;
use vigil_events::ValidationError;

/// What can go wrong in the SDK. [`SdkError::retriable`] says whether trying again can help.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The event breaks a rule the schema cannot express; it was not sent.
    /// [`ValidationError::reason`] is the dead-letter reason the monitor would have given it.
    #[error("invalid event: {0}")]
    Invalid(#[from] ValidationError),
    /// The queue held `capacity` events; this event was dropped and counted.
    #[error("the send queue is full ({capacity} events); the event was dropped")]
    QueueFull { capacity: usize },
    /// The producer was closed; nothing more can be logged with it.
    #[error("the producer is closed")]
    Closed,
    /// `flush` ran out of time with events still on their way.
    #[error("flush timed out with {in_flight} events in flight")]
    FlushTimeout { in_flight: u64 },
    /// A setting is invalid; reported by [`Producer::new`](crate::Producer::new) before connecting,
    /// every problem at once.
    #[error("invalid sdk configuration: {0}")]
    Config(String),
    /// librdkafka refused to create the producer.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

impl SdkError {
    /// Whether the same call can succeed later: a full queue drains at the broker's speed and a
    /// flush can be waited on again; bad input, bad settings and a closed producer stay so.
    pub fn retriable(&self) -> bool {
        matches!(self, SdkError::QueueFull { .. } | SdkError::FlushTimeout { .. })
    }
}
