//! [`Producer`]: the serving thread's side.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use vigil_events::{AvroRecord, OutcomeEvent, PredictionEvent};

use crate::config::SdkConfig;
use crate::error::SdkError;
use crate::queue::{Item, Queue, Refused, Topic};
use crate::sampling::sample_point;
use crate::sender::{encode_with_hint, DeliveryContext, Headers, Sender, SenderCounts, Shared};

/// Counters since the producer started. Once [`Producer::flush`] returned `Ok` or
/// [`Producer::close`] returned, `enqueued == delivered + failed + dropped_oldest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SdkStats {
    /// Accepted into the queue.
    pub enqueued: u64,
    /// Acknowledged by the broker.
    pub delivered: u64,
    /// Accepted but not delivered: librdkafka gave up (`message.timeout.ms`), refused the message,
    /// or the producer was closed before it left.
    pub failed: u64,
    /// Refused because the queue was full ([`DropPolicy::DropNewest`](crate::DropPolicy)).
    pub dropped_queue_full: u64,
    /// Accepted, then evicted from a full queue by a newer event ([`DropPolicy::DropOldest`](crate::DropPolicy)).
    pub dropped_oldest: u64,
    /// Not sent because sampling left its prediction id out.
    pub sampled_out: u64,
    /// Refused at the call site by validation.
    pub invalid: u64,
}

/// Counters the serving threads write, on a cache line of their own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct CallerCounts {
    sampled_out: AtomicU64,
    invalid: AtomicU64,
}

/// An event [`Producer::log_prediction`] or [`Producer::log_outcome`] accepts: the event itself or
/// a reference to it.
///
/// - **Owned** (`producer.log_prediction(event)`): the event moves to the background thread, which
///   encodes it. The cheapest call for the serving thread (validation and a queue push).
/// - **Borrowed** (`producer.log_prediction(&event)`): the event is encoded (Avro) in the caller's
///   thread, so nothing is cloned; this adds the encoding time (about half a microsecond for 20
///   features) to the call.
pub trait Loggable<E>: sealed::Sealed<E> {}

mod sealed {
    use super::*;
    use crate::Loggable;

    /// A queued event; public only so the sealed trait can name it.
    pub struct Queued(pub(super) Item);

    pub trait Sealed<E> {
        fn event(&self) -> &E;
        fn into_item(self, headers: &Headers) -> Queued;
    }

    /// The owned form moves into the queue; the borrowed form is encoded at once.
    macro_rules! loggable {
        ($event:ty, $variant:ident, $topic:expr, $field:ident) => {
            impl Sealed<$event> for $event {
                fn event(&self) -> &$event {
                    self
                }
                fn into_item(self, _: &Headers) -> Queued {
                    Queued(Item::$variant(self))
                }
            }

            impl Sealed<$event> for &$event {
                fn event(&self) -> &$event {
                    self
                }
                fn into_item(self, headers: &Headers) -> Queued {
                    encoded($topic, &self.model_id, headers.$field, self)
                }
            }

            impl Loggable<$event> for $event {}
            impl Loggable<$event> for &$event {}
        };
    }

    loggable!(PredictionEvent, Prediction, Topic::Predictions, prediction);
    loggable!(OutcomeEvent, Outcome, Topic::Outcomes, outcome);

    /// The largest encoding seen so far (key included), so one allocation fits the next one.
    static SIZE_HINT: AtomicUsize = AtomicUsize::new(512);

    fn encoded<T: AvroRecord>(topic: Topic, key: &str, header: vigil_events::Header, event: &T) -> Queued {
        let hint = SIZE_HINT.load(Ordering::Relaxed);
        let mut grown = hint;
        // Key and value in one allocation.
        let bytes = encode_with_hint(key.as_bytes(), header, event, &mut grown);
        if grown > hint {
            SIZE_HINT.store(grown, Ordering::Relaxed);
        }
        Queued(Item::Encoded { topic, key_len: key.len(), bytes })
    }
}

/// Logs predictions and outcomes to Kafka without blocking the caller. Share one per process
/// (`Arc<Producer>`); every method takes `&self` and is safe to call from any thread, async tasks
/// included (a call never waits on the network or on a full queue).
///
/// **Dropping** a producer that was not closed closes it with [`SdkConfig::close_timeout`]
/// (5 s by default): the drop blocks until the queued events are delivered or that time is up,
/// then gives up the rest (counted in `failed`). Call [`Producer::close`] at shutdown to choose
/// the time and learn how many events were lost; in async code, from `spawn_blocking`.
pub struct Producer {
    shared: Arc<Shared>,
    callers: CallerCounts,
    sender: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    sample_rate: f64,
    close_timeout: Duration,
    headers: Headers,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Producer {
    /// Checks every setting, creates the librdkafka producer and starts the background thread.
    /// Does not wait for the broker: an unreachable broker shows later as undelivered events.
    pub fn new(config: SdkConfig) -> Result<Self, SdkError> {
        config.validate()?;
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
        let started = Instant::now();
        let counts = Arc::new(SenderCounts::default());
        let kafka = client.create_with_context(DeliveryContext { counts: counts.clone(), started })?;
        let shared = Arc::new(Shared {
            queue: Queue::new(config.queue_capacity, config.drop_policy),
            counts,
            stop: AtomicBool::new(false),
            started,
        });
        let headers = config.wire_format.headers();
        let sender = Sender {
            kafka,
            shared: shared.clone(),
            predictions_topic: config.predictions_topic,
            outcomes_topic: config.outcomes_topic,
            headers,
        };
        let handle = std::thread::Builder::new()
            .name("vigil-sdk-sender".into())
            .spawn(move || sender.run())
            .map_err(|error| SdkError::Config(format!("cannot start the sender thread: {error}")))?;
        Ok(Self {
            shared,
            callers: CallerCounts::default(),
            sender: Mutex::new(Some(handle)),
            closed: AtomicBool::new(false),
            sample_rate: config.sample_rate,
            close_timeout: config.close_timeout,
            headers,
        })
    }

    /// Samples, validates and queues a prediction, keyed by model id. Never blocks.
    ///
    /// `Ok` also when sampling left it out (counted in `sampled_out`). Errors:
    /// [`SdkError::Invalid`] (not sent), [`SdkError::QueueFull`] (dropped), [`SdkError::Closed`];
    /// each is counted, so a caller that does not care may ignore them.
    pub fn log_prediction(&self, event: impl Loggable<PredictionEvent>) -> Result<(), SdkError> {
        let e = event.event();
        if self.admit(&e.prediction_id, e)? {
            self.enqueue(event.into_item(&self.headers).0)?;
        }
        Ok(())
    }

    /// Samples (with its prediction's decision), validates and queues an outcome, keyed by model
    /// id so it meets its prediction. Never blocks; errors as for [`Producer::log_prediction`].
    pub fn log_outcome(&self, event: impl Loggable<OutcomeEvent>) -> Result<(), SdkError> {
        let e = event.event();
        if self.admit(&e.prediction_id, e)? {
            self.enqueue(event.into_item(&self.headers).0)?;
        }
        Ok(())
    }

    /// Whether sampling keeps the event, once it is valid.
    fn admit(&self, prediction_id: &str, event: &impl AvroRecord) -> Result<bool, SdkError> {
        if self.sample_rate < 1.0 && sample_point(prediction_id) >= self.sample_rate {
            self.callers.sampled_out.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if let Err(error) = event.validate() {
            self.callers.invalid.fetch_add(1, Ordering::Relaxed);
            return Err(error.into());
        }
        Ok(true)
    }

    fn enqueue(&self, item: Item) -> Result<(), SdkError> {
        match self.shared.queue.push(item) {
            // An evicted event (DropOldest) is freed here, outside the queue's lock.
            Ok(evicted) => {
                drop(evicted);
                Ok(())
            }
            Err(Refused::Full) => Err(SdkError::QueueFull { capacity: self.shared.queue.capacity() }),
            Err(Refused::Closed) => Err(SdkError::Closed),
        }
    }

    /// Waits until every event queued before the call is delivered or has failed, up to
    /// `timeout`. [`SdkError::FlushTimeout`] says how many are still on their way.
    pub fn flush(&self, timeout: Duration) -> Result<(), SdkError> {
        let target = self.shared.queue.counts().enqueued;
        let deadline = Instant::now() + timeout;
        loop {
            let resolved = self.resolved();
            if resolved >= target {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SdkError::FlushTimeout { in_flight: target - resolved });
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
        }
    }

    /// Stops accepting events, gives the queued ones up to `timeout` to be delivered, then gives
    /// up the rest (counted in `failed`) and stops the background thread, so closing never hangs.
    /// Returns how many events were given up. Idempotent: later calls return 0.
    pub fn close(&self, timeout: Duration) -> u64 {
        if self.closed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        self.shared.queue.close();
        let given_up = match self.flush(timeout) {
            Ok(()) => 0,
            Err(SdkError::FlushTimeout { in_flight }) => in_flight,
            Err(_) => unreachable!("flush fails only by timing out"),
        };
        self.shared.stop.store(true, Ordering::Release);
        let handle = self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("vigil sdk sender thread panicked");
            }
        }
        if given_up > 0 {
            tracing::warn!(given_up, "vigil producer closed with events undelivered");
        }
        given_up
    }

    /// Events queued and not yet delivered or failed.
    pub fn in_flight(&self) -> u64 {
        let stats = self.stats();
        stats.enqueued.saturating_sub(stats.delivered + stats.failed + stats.dropped_oldest)
    }

    /// Counters since the producer started.
    pub fn stats(&self) -> SdkStats {
        let queue = self.shared.queue.counts();
        let sender = &self.shared.counts;
        SdkStats {
            enqueued: queue.enqueued,
            delivered: sender.delivered.load(Ordering::Relaxed),
            failed: sender.failed.load(Ordering::Relaxed),
            dropped_queue_full: queue.dropped_queue_full,
            dropped_oldest: queue.dropped_oldest,
            sampled_out: self.callers.sampled_out.load(Ordering::Relaxed),
            invalid: self.callers.invalid.load(Ordering::Relaxed),
        }
    }

    /// Delivered, failed or evicted: events that need nothing more.
    fn resolved(&self) -> u64 {
        let sender = &self.shared.counts;
        sender.delivered.load(Ordering::Relaxed)
            + sender.failed.load(Ordering::Relaxed)
            + self.shared.queue.counts().dropped_oldest
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close(self.close_timeout);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_events::{Prediction, ValidationError};

    use super::*;
    use crate::config::DropPolicy;

    /// Nothing listens on port 9: events wait in librdkafka until given up.
    const NO_BROKER: &str = "127.0.0.1:9";

    fn producer(configure: impl FnOnce(&mut SdkConfig)) -> Producer {
        let mut config = SdkConfig::new(NO_BROKER);
        config.close_timeout = Duration::from_millis(100);
        configure(&mut config);
        Producer::new(config).unwrap()
    }

    fn prediction(id: &str) -> PredictionEvent {
        PredictionEvent {
            event_id: format!("e-{id}"),
            prediction_id: id.into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            event_time_ms: 1_764_000_000_000,
            numeric_features: BTreeMap::from([("amount".into(), f64::NAN)]),
            prediction: Prediction { score: Some(0.5), ..Default::default() },
            ..Default::default()
        }
    }

    fn outcome(id: &str) -> OutcomeEvent {
        OutcomeEvent {
            event_id: format!("o-{id}"),
            prediction_id: id.into(),
            model_id: "fraud".into(),
            event_time_ms: 1_764_000_000_000,
            label: Some("1".into()),
            value: None,
        }
    }

    fn invalid_reason(result: Result<(), SdkError>) -> &'static str {
        match result {
            Err(SdkError::Invalid(error)) => error.reason(),
            other => panic!("expected an invalid-event error, got {other:?}"),
        }
    }

    #[test]
    fn bad_settings_are_refused_before_connecting() {
        let mut config = SdkConfig::new(NO_BROKER);
        config.sample_rate = 0.0;
        assert!(matches!(Producer::new(config), Err(SdkError::Config(_))));
        let mut config = SdkConfig::new(NO_BROKER);
        config.kafka.insert("no.such.setting".into(), "1".into());
        assert!(matches!(Producer::new(config), Err(SdkError::Kafka(_))));
    }

    #[test]
    fn invalid_events_are_refused_at_the_call_site_with_their_reason() {
        let producer = producer(|_| {});
        let mut no_model = prediction("p1");
        no_model.model_id.clear();
        assert_eq!(invalid_reason(producer.log_prediction(&no_model)), "missing_model_id");
        assert_eq!(invalid_reason(producer.log_prediction(no_model)), "missing_model_id");

        let mut no_id = prediction("p2");
        no_id.prediction_id.clear();
        let Err(SdkError::Invalid(ValidationError::Empty { field })) = producer.log_prediction(no_id) else {
            panic!()
        };
        assert_eq!(field, "prediction_id");

        let mut nan_score = prediction("p3");
        nan_score.prediction.score = Some(f64::NAN);
        assert_eq!(invalid_reason(producer.log_prediction(nan_score)), "non_finite_value");

        let mut bad_probability = prediction("p4");
        bad_probability.prediction.probabilities = Some(BTreeMap::from([("1".into(), 1.5)]));
        assert_eq!(invalid_reason(producer.log_prediction(bad_probability)), "out_of_range");

        let mut unlabeled = outcome("p5");
        unlabeled.label = None;
        assert_eq!(invalid_reason(producer.log_outcome(&unlabeled)), "missing_field");

        let mut infinite = outcome("p6");
        infinite.value = Some(f64::INFINITY);
        assert_eq!(invalid_reason(producer.log_outcome(infinite)), "non_finite_value");

        // A NaN feature is a missing value, not an error.
        producer.log_prediction(prediction("ok")).unwrap();
        let stats = producer.stats();
        assert_eq!((stats.invalid, stats.enqueued), (7, 1));
    }

    #[test]
    #[allow(clippy::needless_borrows_for_generic_args)] // the borrowed form is under test
    fn sampling_decides_by_prediction_id_for_predictions_and_outcomes_alike() {
        let producer = producer(|c| c.sample_rate = 0.3);
        let ids: Vec<String> = (0..2000).map(|i| format!("pred-{i}")).collect();
        for id in &ids {
            producer.log_prediction(prediction(id)).unwrap();
            producer.log_outcome(&outcome(id)).unwrap();
        }
        let kept = ids.iter().filter(|id| sample_point(id) < 0.3).count() as u64;
        let stats = producer.stats();
        assert_eq!(stats.enqueued, 2 * kept);
        assert_eq!(stats.sampled_out, 2 * (2000 - kept));
        assert!(kept > 0 && kept < 2000);
        // A sampled-out event is not validated (as in the Python SDK).
        let mut invalid = prediction(ids.iter().find(|id| sample_point(id) >= 0.3).unwrap());
        invalid.model_id.clear();
        producer.log_prediction(invalid).unwrap();
    }

    #[test]
    fn a_full_queue_drops_the_newest_event_and_counts_it() {
        // librdkafka's buffer and the SDK's queue both hold 10; nothing can leave.
        let producer = producer(|c| c.queue_capacity = 10);
        let mut full = 0;
        for i in 0..100 {
            match producer.log_prediction(prediction(&format!("p{i}"))) {
                Ok(()) => {}
                Err(error @ SdkError::QueueFull { capacity: 10 }) => {
                    assert!(error.retriable());
                    full += 1;
                }
                Err(error) => panic!("{error}"),
            }
        }
        let stats = producer.stats();
        assert_eq!(stats.dropped_queue_full, full);
        assert_eq!(stats.enqueued + stats.dropped_queue_full, 100);
        assert!((10..=20).contains(&stats.enqueued), "{stats:?}");
        assert_eq!(stats.dropped_oldest, 0);
    }

    #[test]
    #[allow(clippy::needless_borrows_for_generic_args)] // the borrowed form is under test
    fn drop_oldest_keeps_accepting_and_counts_the_evicted() {
        let producer = producer(|c| {
            c.queue_capacity = 10;
            c.drop_policy = DropPolicy::DropOldest;
        });
        // Let the sender fill librdkafka's buffer first, so the SDK's queue holds what follows.
        for i in 0..10 {
            producer.log_prediction(prediction(&format!("p{i}"))).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        for i in 10..100 {
            producer.log_prediction(&prediction(&format!("p{i}"))).unwrap();
        }
        let stats = producer.stats();
        assert_eq!(stats.enqueued, 100);
        assert_eq!(stats.dropped_queue_full, 0);
        assert!(stats.dropped_oldest >= 70, "{stats:?}");
        assert!(producer.in_flight() <= 2 * 10 + 1, "bounded by the two queues and one over: {stats:?}");
        assert_eq!(producer.in_flight(), 100 - stats.dropped_oldest);
    }

    #[test]
    fn flush_and_close_are_bounded_and_account_for_every_event() {
        let producer = producer(|_| {});
        for i in 0..50 {
            producer.log_prediction(prediction(&format!("p{i}"))).unwrap();
        }
        let started = Instant::now();
        let Err(SdkError::FlushTimeout { in_flight: 50 }) = producer.flush(Duration::from_millis(50)) else {
            panic!()
        };
        assert_eq!(producer.close(Duration::from_millis(50)), 50);
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        let stats = producer.stats();
        assert_eq!((stats.enqueued, stats.delivered, stats.failed), (50, 0, 50));
        assert_eq!(producer.in_flight(), 0);
        producer.flush(Duration::ZERO).unwrap();
        // Closed: nothing more is accepted, and closing again does nothing.
        assert!(matches!(producer.log_prediction(prediction("late")), Err(SdkError::Closed)));
        assert!(!SdkError::Closed.retriable());
        assert_eq!(producer.close(Duration::from_secs(1)), 0);
    }

    #[test]
    fn dropping_an_open_producer_waits_at_most_its_close_timeout() {
        let producer = producer(|c| c.close_timeout = Duration::from_millis(200));
        producer.log_prediction(prediction("p")).unwrap();
        let started = Instant::now();
        drop(producer);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn the_producer_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Producer>();
        let producer = Arc::new(producer(|_| {}));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let producer = producer.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        producer.log_prediction(prediction(&format!("t{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(producer.stats().enqueued, 1000);
    }
}
