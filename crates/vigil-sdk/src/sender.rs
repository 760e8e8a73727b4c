//! The background thread: takes queued events in batches, encodes what the callers moved to it,
//! hands the bytes to librdkafka and serves its delivery reports. It is the only thread that
//! touches librdkafka after start-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use vigil_events::{AvroRecord, Header, Writer};

use crate::queue::{Item, Queue, Topic};

/// How long the sender sleeps when the queue is empty: the longest an event waits before
/// librdkafka sees it, on top of `linger`.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// How long it sleeps when librdkafka's buffer is full, before serving delivery reports (which
/// free room) and trying again.
const FULL_SLEEP: Duration = Duration::from_millis(2);
/// How long closing waits at most for librdkafka to report the events it purged (it returns as
/// soon as they are all reported, normally at once).
const PURGE_REPORTS: Duration = Duration::from_secs(2);

/// Counters written by the sender thread, on their own cache line so the serving threads'
/// counters do not share it.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct SenderCounts {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Milliseconds since `started` of the last failure logged (failures are logged at most once
    /// a second, with the running count).
    last_warning_ms: AtomicU64,
}

impl SenderCounts {
    pub fn add_failed(&self, n: u64, started: Instant, error: &dyn std::fmt::Display) {
        let failed = self.failed.fetch_add(n, Ordering::Relaxed) + n;
        let now_ms = started.elapsed().as_millis() as u64 + 1000;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now_ms >= last + 1000
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, failed_total = failed, "vigil events not delivered");
        }
    }
}

pub(crate) struct DeliveryContext {
    pub counts: Arc<SenderCounts>,
    pub started: Instant,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counts.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => self.counts.add_failed(1, self.started, error),
        }
    }
}

/// What the sender shares with the [`Producer`](crate::Producer).
pub(crate) struct Shared {
    pub queue: Queue,
    pub counts: Arc<SenderCounts>,
    /// Set by `close` once the flush is over: give up what is left and exit.
    pub stop: AtomicBool,
    pub started: Instant,
}

pub(crate) struct Sender {
    pub kafka: BaseProducer<DeliveryContext>,
    pub shared: Arc<Shared>,
    pub predictions_topic: String,
    pub outcomes_topic: String,
    pub headers: Headers,
}

/// The header written before each event type's body (see [`WireFormat`](crate::WireFormat)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers {
    pub prediction: Header,
    pub outcome: Header,
}

enum Handed {
    Yes,
    Full,
    Refused(KafkaError),
}

impl Sender {
    pub fn run(self) {
        let queue = &self.shared.queue;
        let mut batch = VecDeque::with_capacity(Queue::initial_room(queue.capacity()));
        let mut size_hint = 512;
        // librdkafka's buffer was full at the last try: offer one event at a time, so the rest
        // stays in the queue where the drop policy can evict it.
        let mut congested = false;
        while !self.shared.stop.load(Ordering::Acquire) {
            if congested {
                let Some(item) = queue.take_one() else {
                    congested = false;
                    continue;
                };
                match self.hand_over(&item, &mut size_hint) {
                    Handed::Yes => congested = false,
                    Handed::Full => {
                        queue.put_back(item);
                        self.wait(FULL_SLEEP);
                        continue;
                    }
                    Handed::Refused(error) => self.shared.counts.add_failed(1, self.shared.started, &error),
                }
                queue.batch_done();
                continue;
            }
            queue.take(&mut batch);
            if batch.is_empty() {
                self.wait(IDLE_SLEEP);
                continue;
            }
            while let Some(item) = batch.front() {
                match self.hand_over(item, &mut size_hint) {
                    Handed::Yes => {}
                    Handed::Full => {
                        // A slow or unreachable broker: what is left goes back to the queue, and
                        // delivery reports free room meanwhile.
                        queue.give_back(&mut batch);
                        congested = true;
                        self.wait(FULL_SLEEP);
                        break;
                    }
                    Handed::Refused(error) => self.shared.counts.add_failed(1, self.shared.started, &error),
                }
                batch.pop_front();
            }
            queue.batch_done();
            self.serve_reports();
        }
        self.give_up(batch);
    }

    /// Sleeps, then serves the delivery reports that arrived meanwhile. (Not `poll(timeout)`:
    /// `BaseProducer::poll` loops until its deadline and passes the time left to librdkafka in
    /// whole milliseconds, so its last millisecond is a busy loop.)
    fn wait(&self, sleep: Duration) {
        std::thread::sleep(sleep);
        self.serve_reports();
    }

    /// Serves waiting delivery reports without blocking: each `poll(0)` serves one event (a
    /// delivery-report event covers a whole produce request), so poll while they resolve events.
    fn serve_reports(&self) {
        let counts = &self.shared.counts;
        let resolved = || counts.delivered.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
        for _ in 0..64 {
            let before = resolved();
            self.kafka.poll(Duration::ZERO);
            if resolved() == before {
                break;
            }
        }
    }

    fn hand_over(&self, item: &Item, size_hint: &mut usize) -> Handed {
        let owned;
        let (topic, key, payload): (&str, &[u8], &[u8]) = match item {
            Item::Prediction(event) => {
                owned = encode_with_hint(&[], self.headers.prediction, event, size_hint);
                (&self.predictions_topic, event.model_id.as_bytes(), &owned)
            }
            Item::Outcome(event) => {
                owned = encode_with_hint(&[], self.headers.outcome, event, size_hint);
                (&self.outcomes_topic, event.model_id.as_bytes(), &owned)
            }
            Item::Encoded { topic, key_len, bytes } => {
                let (key, payload) = bytes.split_at(*key_len);
                (self.topic(*topic), key, payload)
            }
        };
        match self.kafka.send::<[u8], [u8]>(BaseRecord::to(topic).key(key).payload(payload)) {
            Ok(()) => Handed::Yes,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Handed::Full,
            Err((error, _)) => Handed::Refused(error),
        }
    }

    fn topic(&self, topic: Topic) -> &str {
        match topic {
            Topic::Predictions => &self.predictions_topic,
            Topic::Outcomes => &self.outcomes_topic,
        }
    }

    /// After `close` stopped the sender: whatever is still queued or in librdkafka counts as
    /// failed, so `enqueued == delivered + failed + dropped_oldest` holds at the end.
    fn give_up(self, mut batch: VecDeque<Item>) {
        let queue = &self.shared.queue;
        queue.close();
        let mut rest = VecDeque::new();
        queue.take(&mut rest);
        let unsent = (batch.len() + rest.len()) as u64;
        if unsent > 0 {
            self.shared.counts.add_failed(
                unsent,
                self.shared.started,
                &"producer closed before they were handed to kafka",
            );
        }
        batch.clear();
        queue.batch_done();
        self.kafka.purge(PurgeConfig::default().queue().inflight());
        // Serves the purged events' delivery reports (counted as failed).
        let _ = self.kafka.flush(PURGE_REPORTS);
    }
}

/// `prefix`, then `header` and the event's Avro body (with the single-object header, the bytes of
/// [`vigil_events::encode`]), in one buffer sized from the largest so far (`size_hint`, updated).
pub(crate) fn encode_with_hint<T: AvroRecord>(
    prefix: &[u8],
    header: Header,
    event: &T,
    size_hint: &mut usize,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(*size_hint);
    w.raw(prefix);
    header.write::<T>(&mut w);
    event.encode_body(&mut w);
    let bytes = w.into_bytes();
    *size_hint = (*size_hint).max(bytes.len());
    bytes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_events::{encode, encode_confluent, OutcomeEvent, Prediction, PredictionEvent};

    use super::*;

    #[test]
    fn encoding_with_a_hint_gives_the_codec_bytes() {
        let event = PredictionEvent {
            event_id: "e".into(),
            prediction_id: "p".into(),
            model_id: "m".into(),
            model_version: "v".into(),
            event_time_ms: 1_764_000_000_000,
            numeric_features: (0..20).map(|i| (format!("f{i:02}"), i as f64)).collect(),
            segment: BTreeMap::from([("country".into(), "DE".into())]),
            prediction: Prediction { score: Some(0.5), ..Default::default() },
            ..Default::default()
        };
        let mut hint = 8;
        assert_eq!(encode_with_hint(&[], Header::SingleObject, &event, &mut hint), encode(&event));
        assert_eq!(hint, encode(&event).len());
        let outcome = OutcomeEvent {
            prediction_id: "p".into(),
            model_id: "m".into(),
            label: Some("1".into()),
            ..Default::default()
        };
        let with_key = encode_with_hint(b"key", Header::SingleObject, &outcome, &mut hint);
        assert_eq!((&with_key[..3], &with_key[3..]), (&b"key"[..], &encode(&outcome)[..]));
        let confluent = encode_with_hint(b"key", Header::Confluent { schema_id: 42 }, &outcome, &mut hint);
        assert_eq!(&confluent[3..], &encode_confluent(42, &outcome)[..]);
    }
}
