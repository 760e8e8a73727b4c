//! vigil's producer SDK for Rust serving apps: log every prediction, and later its outcome, to
//! Kafka as Avro single-object messages keyed by model id, without ever blocking the serving
//! thread. It mirrors the Python SDK (`sdk/python`, `VigilProducer`) and writes the same bytes.
//!
//! ```no_run
//! use std::time::Duration;
//! use vigil_events::{OutcomeEvent, Prediction, PredictionEvent};
//! use vigil_sdk::{Producer, SdkConfig, SdkError};
//!
//! let mut config = SdkConfig::new("127.0.0.1:9092");
//! config.sample_rate = 0.5; // keep half the predictions, and exactly their outcomes
//! let producer = Producer::new(config)?;
//!
//! let event = PredictionEvent {
//!     event_id: "e-1".into(),
//!     prediction_id: "p-1".into(),
//!     model_id: "fraud".into(),
//!     model_version: "v3".into(),
//!     event_time_ms: 1_764_000_000_000,
//!     numeric_features: [("amount".to_owned(), 129.99)].into(),
//!     prediction: Prediction { score: Some(0.87), ..Default::default() },
//!     ..Default::default()
//! };
//! // Moved: the background thread encodes it (pass `&event` to keep it; then the call encodes).
//! match producer.log_prediction(event) {
//!     Ok(()) => {}
//!     Err(SdkError::QueueFull { .. }) => {} // dropped and counted: the request goes on
//!     Err(error) => eprintln!("not logged: {error}"), // e.g. Invalid: a NaN score, no model id
//! }
//! producer.log_outcome(OutcomeEvent {
//!     event_id: "e-2".into(),
//!     prediction_id: "p-1".into(),
//!     model_id: "fraud".into(),
//!     event_time_ms: 1_764_000_060_000,
//!     label: Some("fraud".into()),
//!     ..Default::default()
//! })?;
//! println!("{:?}", producer.stats());
//! producer.close(Duration::from_secs(5)); // at shutdown: deliver what is queued, at most 5 s
//! # Ok::<(), SdkError>(())
//! ```
//!
//! # What a call does
//!
//! [`Producer::log_prediction`] and [`Producer::log_outcome`], in the caller's thread: sample by
//! prediction id ([`sample_point`], the same function as the Python SDK's, so an outcome is kept
//! exactly when its prediction is), validate with `vigil-events`' rules (the event's
//! [`ValidationError`](vigil_events::ValidationError) comes back as [`SdkError::Invalid`], with the
//! dead-letter reason the monitor would give it), then push the event onto a bounded queue under a
//! short lock. A background thread takes the queue in batches, encodes, hands the bytes to
//! librdkafka (which batches per partition with `linger`, compresses with lz4 and sends with
//! idempotence on) and counts the delivery reports. A call never waits on the network.
//!
//! # When the broker is slow or away
//!
//! The queue holds [`SdkConfig::queue_capacity`] events waiting for the background thread, and
//! librdkafka as many again waiting for the broker. When both are full, [`DropPolicy`] decides:
//! `DropNewest` (the default, as in the Python SDK) refuses the new event with
//! [`SdkError::QueueFull`]; `DropOldest` evicts the oldest queued event instead and never refuses
//! one. Every outcome is counted in [`SdkStats`]: `enqueued`, `delivered`, `failed`,
//! `dropped_queue_full`, `dropped_oldest`, `sampled_out`, `invalid`.
//!
//! # Wire format
//!
//! Events are Avro single-object messages by default (no registry needed). For a Kafka shop whose
//! consumers expect the Confluent Schema Registry format, enable the `schema-registry` feature and
//! register vigil's schemas once at start-up; [`register_schemas`] sets
//! [`SdkConfig::wire_format`] to [`WireFormat::Confluent`] with the ids the registry gave:
//!
//! ```no_run
//! # #[cfg(feature = "schema-registry")]
//! # async fn start() -> Result<vigil_sdk::Producer, Box<dyn std::error::Error>> {
//! use vigil_sdk::schema_registry::{Client, RegistryConfig, SubjectNameStrategy};
//! use vigil_sdk::{register_schemas, Producer, SdkConfig};
//!
//! let mut config = SdkConfig::new("127.0.0.1:9092");
//! let registry = Client::new(RegistryConfig::new("http://127.0.0.1:8081/apis/ccompat/v7"))?;
//! register_schemas(&registry, SubjectNameStrategy::TopicName, &mut config).await?;
//! Ok(Producer::new(config)?)
//! # }
//! ```
//!
//! Subjects follow Confluent's `TopicNameStrategy` by default (`vigil.predictions.v1-value`,
//! `vigil.outcomes.v1-value`); the registry checks each schema against the subject's compatibility
//! level (vigil's schemas only ever evolve backward-compatibly: new fields come with defaults).
//!
//! # Shutdown
//!
//! [`Producer::flush`] waits (bounded) for what is queued; [`Producer::close`] stops accepting
//! events, waits up to its timeout, then gives up the rest (counted as `failed`) and returns how
//! many. Dropping an open producer closes it with [`SdkConfig::close_timeout`] (5 s by default).
//!
//! # Cost, and moving or lending
//!
//! Measured on the project's 2-core VM with other builds running (load average 6–12), for an event
//! with 20 numeric features, 3 categorical and 2 segment tags; `docs/BENCHMARKS.md` ("Rust SDK")
//! has the commands and the rest:
//!
//! | call, in the caller's thread | median | p99 |
//! |---|---|---|
//! | `log_prediction(event)`: moved, encoded on the SDK's thread | 0.10–0.16 µs | 0.51–0.64 µs |
//! | `log_prediction(&event)`: lent, encoded in the call | 0.42 µs | 1.4–11 µs |
//!
//! Moving is the cheapest call, but the event is then freed on the SDK's thread, and with glibc's
//! malloc those cross-thread frees slow allocation in both threads: about 7.6 µs of CPU per event
//! in all against about 4 µs lent, and about half the events/s. Move when the serving thread's
//! latency is what counts; lend when CPU or volume is.
//!
//! One producer sustained 94,000–339,000 events/s into the local broker (lent, prebuilt events;
//! the spread is the machine's load). Most of the CPU per event is librdkafka's own thread
//! (compression, framing) and the broker; [`SdkConfig::linger`] (bigger batches) is the first knob
//! for high volumes.

mod config;
mod error;
mod producer;
mod queue;
#[cfg(feature = "schema-registry")]
mod registry;
mod sampling;
mod sender;

#[cfg(feature = "schema-registry")]
pub use registry::register_schemas;
#[cfg(feature = "schema-registry")]
pub use vigil_registry as schema_registry;

pub use config::{DropPolicy, SdkConfig, WireFormat};
pub use error::SdkError;
pub use producer::{Loggable, Producer, SdkStats};
pub use sampling::sample_point;

/// The examples of README.md, compiled as doctests so the README cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
