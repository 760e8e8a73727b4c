//! The producer's settings and their validation.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_events::{topics, Header};

use crate::error::SdkError;
use crate::sender::Headers;

/// How each message is framed on the wire. Consumers of vigil's topics (`vigil monitor`) read
/// both, message by message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WireFormat {
    /// Avro single-object encoding (`c3 01` and the schema's fingerprint): needs no registry.
    #[default]
    SingleObject,
    /// The Confluent Schema Registry format (byte `00` and the schema's 4-byte registry id), for
    /// shops whose other consumers expect it. The ids are those the registry gave vigil's
    /// prediction and outcome schemas: [`register_schemas`](crate::register_schemas) (feature
    /// `schema-registry`) registers them and fills this in.
    Confluent { prediction_schema_id: u32, outcome_schema_id: u32 },
}

impl WireFormat {
    pub(crate) fn headers(self) -> Headers {
        match self {
            WireFormat::SingleObject => Headers::default(),
            WireFormat::Confluent { prediction_schema_id, outcome_schema_id } => Headers {
                prediction: Header::Confluent { schema_id: prediction_schema_id },
                outcome: Header::Confluent { schema_id: outcome_schema_id },
            },
        }
    }
}

/// What happens to an event logged while the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DropPolicy {
    /// Refuse the new event: the call returns [`SdkError::QueueFull`] and counts it in
    /// `dropped_queue_full`. The Python SDK's behaviour, and the default.
    #[default]
    DropNewest,
    /// Accept the new event and evict the oldest one still waiting in the SDK's queue, counted in
    /// `dropped_oldest`: under a long outage the freshest traffic is kept, and a call never fails
    /// for a full queue. Events already handed to librdkafka are not evicted; while the background
    /// thread holds every waiting event (handing a batch over), one event is taken over the
    /// capacity instead. The evicted event is freed in the caller's thread.
    DropOldest,
}

/// Settings of a [`Producer`](crate::Producer). Start from [`SdkConfig::new`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SdkConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub predictions_topic: String,
    pub outcomes_topic: String,
    /// Events the SDK holds waiting for its background thread before the drop policy applies.
    /// librdkafka's own buffer (`queue.buffering.max.messages`) is set to the same number, so at
    /// most twice this many events are in memory.
    pub queue_capacity: usize,
    /// What a full queue does to a new event.
    pub drop_policy: DropPolicy,
    /// How long librdkafka waits to fill a batch (`linger.ms`). For high volumes try 20 to 100 ms:
    /// bigger batches should cost librdkafka's thread less per event (see `docs/BENCHMARKS.md`).
    pub linger: Duration,
    /// Share of predictions kept, in (0, 1], decided per prediction id so an outcome is kept
    /// exactly when its prediction is (see [`sample_point`](crate::sample_point)).
    pub sample_rate: f64,
    /// How long dropping the producer waits for queued events (see [`Producer`](crate::Producer)).
    pub close_timeout: Duration,
    /// Any further librdkafka producer settings, applied last.
    pub kafka: BTreeMap<String, String>,
    /// Single-object (the default) or the Confluent Schema Registry format.
    pub wire_format: WireFormat,
}

impl SdkConfig {
    /// Defaults: the `vigil.*.v1` topics, 100,000 queued events, drop newest, 5 ms linger, no
    /// sampling, 5 s to deliver on drop.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            predictions_topic: topics::PREDICTIONS.to_owned(),
            outcomes_topic: topics::OUTCOMES.to_owned(),
            queue_capacity: 100_000,
            drop_policy: DropPolicy::DropNewest,
            linger: Duration::from_millis(5),
            sample_rate: 1.0,
            close_timeout: Duration::from_secs(5),
            kafka: BTreeMap::new(),
            wire_format: WireFormat::SingleObject,
        }
    }

    /// Every problem at once, each naming its setting.
    pub(crate) fn validate(&self) -> Result<(), SdkError> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push("brokers must name at least one host:port".to_owned());
        }
        for (key, topic) in
            [("predictions_topic", &self.predictions_topic), ("outcomes_topic", &self.outcomes_topic)]
        {
            if topic.is_empty() || topic.contains('\0') {
                problems.push(format!("{key} must be a non-empty topic name, got {topic:?}"));
            }
        }
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            problems.push(format!("sample_rate must be in (0, 1], got {}", self.sample_rate));
        }
        // librdkafka's own limit for queue.buffering.max.messages.
        if !(1..=i32::MAX as usize).contains(&self.queue_capacity) {
            problems.push(format!(
                "queue_capacity must be between 1 and {}, got {}",
                i32::MAX,
                self.queue_capacity
            ));
        }
        if self.linger > Duration::from_secs(900) {
            problems
                .push(format!("linger must be at most 900 s (librdkafka linger.ms), got {:?}", self.linger));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SdkError::Config(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = SdkConfig::new(" ");
        config.sample_rate = 0.0;
        config.queue_capacity = 0;
        config.outcomes_topic = String::new();
        let Err(SdkError::Config(message)) = config.validate() else { panic!("expected a config error") };
        for key in ["brokers", "outcomes_topic", "sample_rate", "queue_capacity"] {
            assert!(message.contains(key), "{key} missing from {message:?}");
        }
        assert!(!message.contains("predictions_topic"));
    }

    #[test]
    fn defaults_are_valid() {
        SdkConfig::new("127.0.0.1:9092").validate().unwrap();
    }
}
