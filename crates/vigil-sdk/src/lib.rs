//! The Rust producer SDK. `log_prediction` and `log_outcome` validate and encode in the caller's
//! thread and hand the bytes to librdkafka's bounded queue; a background thread does the network
//! work. A full queue drops the event and counts it: the serving path never waits on vigil.
//!
//! ```no_run
//! use vigil_sdk::{Producer, SdkConfig};
//! use vigil_events::PredictionEvent;
//! let producer = Producer::new(SdkConfig::new("127.0.0.1:9092"))?;
//! let event = PredictionEvent { prediction_id: "p-1".into(), model_id: "fraud".into(),
//!     model_version: "v3".into(), ..Default::default() };
//! producer.log_prediction(&event)?;
//! producer.flush(std::time::Duration::from_secs(5))?;
//! # Ok::<(), vigil_sdk::SdkError>(())
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use thiserror::Error;
use vigil_events::{encode, topics, AvroRecord, OutcomeEvent, PredictionEvent, ValidationError};

#[derive(Debug, Clone)]
pub struct SdkConfig {
    pub brokers: String,
    pub predictions_topic: String,
    pub outcomes_topic: String,
    /// Events held in memory before new ones are dropped (librdkafka `queue.buffering.max.messages`).
    pub queue_capacity: usize,
    /// How long librdkafka waits to fill a batch.
    pub linger: Duration,
    /// Share of predictions kept, decided per prediction id so a kept prediction keeps its outcome.
    pub sample_rate: f64,
    /// Any further librdkafka producer settings.
    pub kafka: BTreeMap<String, String>,
}

impl SdkConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            predictions_topic: topics::PREDICTIONS.to_owned(),
            outcomes_topic: topics::OUTCOMES.to_owned(),
            queue_capacity: 100_000,
            linger: Duration::from_millis(5),
            sample_rate: 1.0,
            kafka: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum SdkError {
    #[error("invalid event: {0}")]
    Invalid(#[from] ValidationError),
    #[error("the send queue is full ({capacity} events); the event was dropped")]
    QueueFull { capacity: usize },
    #[error("invalid sdk configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Counters since the producer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdkStats {
    pub enqueued: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped_queue_full: u64,
    pub sampled_out: u64,
    pub invalid: u64,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped_queue_full: AtomicU64,
    sampled_out: AtomicU64,
    invalid: AtomicU64,
}

struct DeliveryContext {
    counters: Arc<Counters>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.counters.delivered.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                tracing::warn!(%error, "vigil event not delivered");
                self.counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

pub struct Producer {
    inner: ThreadedProducer<DeliveryContext>,
    counters: Arc<Counters>,
    config: SdkConfig,
}

impl Producer {
    pub fn new(config: SdkConfig) -> Result<Self, SdkError> {
        if !(config.sample_rate > 0.0 && config.sample_rate <= 1.0) {
            return Err(SdkError::Config(format!("sample_rate must be in (0, 1], got {}", config.sample_rate)));
        }
        if config.queue_capacity == 0 {
            return Err(SdkError::Config("queue_capacity must be at least 1".into()));
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("queue.buffering.max.messages", config.queue_capacity.to_string());
        for (key, value) in &config.kafka {
            client.set(key, value);
        }
        let counters = Arc::new(Counters::default());
        let inner = client.create_with_context(DeliveryContext { counters: counters.clone() })?;
        Ok(Self { inner, counters, config })
    }

    /// Validates, encodes and enqueues a prediction, keyed by model id. Never blocks.
    pub fn log_prediction(&self, event: &PredictionEvent) -> Result<(), SdkError> {
        if !self.sampled(&event.prediction_id) {
            self.counters.sampled_out.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.send(&self.config.predictions_topic, event, &event.model_id)
    }

    /// Validates, encodes and enqueues an outcome, keyed by model id so it meets its prediction.
    pub fn log_outcome(&self, event: &OutcomeEvent) -> Result<(), SdkError> {
        if !self.sampled(&event.prediction_id) {
            self.counters.sampled_out.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.send(&self.config.outcomes_topic, event, &event.model_id)
    }

    fn sampled(&self, prediction_id: &str) -> bool {
        self.config.sample_rate >= 1.0 || sample_point(prediction_id) < self.config.sample_rate
    }

    fn send<T: AvroRecord>(&self, topic: &str, event: &T, key: &str) -> Result<(), SdkError> {
        if let Err(error) = event.validate() {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            return Err(error.into());
        }
        let payload = encode(event);
        match self.inner.send(BaseRecord::to(topic).key(key).payload(&payload)) {
            Ok(()) => {
                self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                self.counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                Err(SdkError::QueueFull { capacity: self.config.queue_capacity })
            }
            Err((error, _)) => Err(error.into()),
        }
    }

    /// Waits until every enqueued event is delivered or failed, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), SdkError> {
        self.inner.flush(timeout).map_err(SdkError::from)
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight_count().max(0) as usize
    }

    pub fn stats(&self) -> SdkStats {
        let c = &self.counters;
        SdkStats {
            enqueued: c.enqueued.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            sampled_out: c.sampled_out.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Producer {
    /// Gives queued events a bounded chance to leave on shutdown.
    fn drop(&mut self) {
        if let Err(error) = self.inner.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, in_flight = self.in_flight(), "vigil producer dropped with events unsent");
        }
    }
}

/// Where a prediction id falls in [0, 1): FNV-1a 64, a fixed and documented hash, so every SDK
/// (and every process and restart) keeps the same predictions and their outcomes.
pub fn sample_point(prediction_id: &str) -> f64 {
    let hash = vigil_events::fnv1a64(prediction_id.as_bytes());
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_points_follow_fnv1a_and_spread_evenly() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (published test vector).
        assert_eq!(sample_point("a"), (0xaf63_dc4c_8601_ec8cu64 >> 11) as f64 / (1u64 << 53) as f64);
        let kept = (0..100_000).filter(|i| sample_point(&format!("pred-{i}")) < 0.25).count();
        assert!((24_000..26_000).contains(&kept), "kept {kept} of 100000 at rate 0.25");
    }

    #[test]
    fn bad_settings_are_refused_before_connecting() {
        let mut config = SdkConfig::new("127.0.0.1:9");
        config.sample_rate = 0.0;
        assert!(matches!(Producer::new(config), Err(SdkError::Config(_))));
    }

    #[test]
    fn invalid_events_are_refused_at_the_call_site() {
        let producer = Producer::new(SdkConfig::new("127.0.0.1:9")).unwrap();
        let event = PredictionEvent { prediction_id: "p".into(), model_version: "v1".into(), ..Default::default() };
        assert!(matches!(producer.log_prediction(&event), Err(SdkError::Invalid(_))));
        assert_eq!(producer.stats().invalid, 1);
        assert_eq!(producer.stats().enqueued, 0);
    }
}
