use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use vigil_events::{decode, encode, OutcomeEvent, Prediction, PredictionEvent};
use vigil_sdk::{sample_point, DropPolicy, Producer, SdkConfig, SdkError};

fn brokers() -> String {
    std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A predictions and an outcomes topic no other test or run shares, deleted on drop.
pub(crate) struct Topics {
    pub(crate) predictions: String,
    pub(crate) outcomes: String,
    pub(crate) runtime: tokio::runtime::Runtime,
}

impl Topics {
    pub(crate) fn new(test: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
        let name = format!("{test}_{}_{nanos}", std::process::id());
        let topics = Self {
            predictions: format!("it.sdk.{name}.predictions"),
            outcomes: format!("it.sdk.{name}.outcomes"),
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        };
        let new =
            [&topics.predictions, &topics.outcomes].map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)));
        let results = topics
            .runtime
            .block_on(topics.admin().create_topics(&new, &AdminOptions::new()))
            .expect("create topics (is the broker up? deploy/local/up)");
        for result in results {
            result.expect("topic created");
        }
        topics
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap()
    }

    pub(crate) fn config(&self) -> SdkConfig {
        let mut config = SdkConfig::new(brokers());
        config.predictions_topic = self.predictions.clone();
        config.outcomes_topic = self.outcomes.clone();
        config
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        let admin = self.admin();
        let _ = self
            .runtime
            .block_on(admin.delete_topics(&[&self.predictions, &self.outcomes], &AdminOptions::new()));
    }
}

/// Every message of `topic` from the start as (key, value), until `expected` arrived and 1 s
/// passed without more (to catch duplicates), or `timeout`.
pub(crate) fn consume(topic: &str, expected: usize, timeout: Duration) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut messages = Vec::new();
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while started.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = None;
                messages
                    .push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None if messages.len() < expected => {}
            None if quiet_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) => break,
            None => {}
        }
    }
    messages
}

pub(crate) fn prediction(i: usize) -> PredictionEvent {
    PredictionEvent {
        event_id: format!("e-{i}"),
        prediction_id: format!("p-{i}"),
        model_id: format!("model-{}", i % 3),
        model_version: "v1".into(),
        event_time_ms: 1_764_000_000_000 + i as i64,
        segment: BTreeMap::from([("country".into(), ["DE", "FR", "日本"][i % 3].into())]),
        numeric_features: (0..20).map(|j| (format!("f{j:02}"), i as f64 / (j + 1) as f64)).collect(),
        categorical_features: BTreeMap::from([("device".into(), "ios".into())]),
        prediction: Prediction { label: Some((i % 2).to_string()), score: Some(0.25), ..Default::default() },
        serving_latency_ms: Some(1.5),
    }
}

pub(crate) fn outcome(i: usize) -> OutcomeEvent {
    OutcomeEvent {
        event_id: format!("o-{i}"),
        prediction_id: format!("p-{i}"),
        model_id: format!("model-{}", i % 3),
        event_time_ms: 1_764_000_060_000 + i as i64,
        label: Some((i % 2).to_string()),
        value: None,
    }
}

#[test]
#[allow(clippy::needless_borrows_for_generic_args)] // the borrowed form is under test
fn logged_events_arrive_keyed_by_model_byte_for_byte() {
    let topics = Topics::new("bytes");
    let n = 500;
    let producer = Producer::new(topics.config()).unwrap();
    for i in 0..n {
        // Both forms: moved (encoded by the sender) and lent (encoded by the caller).
        if i % 2 == 0 {
            producer.log_prediction(prediction(i)).unwrap();
            producer.log_outcome(&outcome(i)).unwrap();
        } else {
            producer.log_prediction(&prediction(i)).unwrap();
            producer.log_outcome(outcome(i)).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let stats = producer.stats();
    assert_eq!((stats.enqueued, stats.delivered, stats.failed), (2 * n as u64, 2 * n as u64, 0));
    assert_eq!(producer.close(Duration::from_secs(5)), 0);

    let expected_predictions: BTreeSet<(Vec<u8>, Vec<u8>)> =
        (0..n).map(|i| (prediction(i).model_id.into_bytes(), encode(&prediction(i)))).collect();
    let predictions = consume(&topics.predictions, n, Duration::from_secs(30));
    assert_eq!(predictions.len(), n, "no loss, no duplicate");
    assert_eq!(predictions.into_iter().collect::<BTreeSet<_>>(), expected_predictions);
    let outcomes = consume(&topics.outcomes, n, Duration::from_secs(30));
    assert_eq!(outcomes.len(), n);
    for (key, value) in outcomes {
        let event: OutcomeEvent = decode(&value).unwrap();
        assert_eq!(key, event.model_id.as_bytes());
        let i: usize = event.prediction_id[2..].parse().unwrap();
        assert_eq!(event, outcome(i));
    }
}

/// A random-looking id for `i` (splitmix64), like the UUIDs serving apps use.
fn random_id(i: usize) -> String {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

#[test]
fn sampled_outcomes_follow_their_predictions() {
    let topics = Topics::new("sampling");
    let mut config = topics.config();
    config.sample_rate = 0.25;
    let producer = Producer::new(config).unwrap();
    let n = 1000;
    for i in 0..n {
        producer.log_prediction(PredictionEvent { prediction_id: random_id(i), ..prediction(i) }).unwrap();
    }
    // Outcomes come later and in another order; the decision is the prediction id's.
    for i in (0..n).rev() {
        producer.log_outcome(OutcomeEvent { prediction_id: random_id(i), ..outcome(i) }).unwrap();
    }
    producer.close(Duration::from_secs(30));
    let kept: BTreeSet<String> = (0..n).map(random_id).filter(|id| sample_point(id) < 0.25).collect();
    assert!((200..300).contains(&kept.len()), "kept {} of {n} at 0.25", kept.len());
    let stats = producer.stats();
    assert_eq!(stats.delivered, 2 * kept.len() as u64);
    assert_eq!(stats.sampled_out, 2 * (n - kept.len()) as u64);

    let ids = |topic: &str| -> BTreeSet<String> {
        consume(topic, kept.len(), Duration::from_secs(30))
            .into_iter()
            .map(|(_, value)| match topic == topics.predictions {
                true => decode::<PredictionEvent>(&value).unwrap().prediction_id,
                false => decode::<OutcomeEvent>(&value).unwrap().prediction_id,
            })
            .collect()
    };
    assert_eq!(ids(&topics.predictions), kept);
    assert_eq!(ids(&topics.outcomes), kept);
}

/// Logs `n` events as fast as one thread can into a queue of 50 (librdkafka's buffer also 50),
/// then checks the counters against what the broker holds.
fn overload(test: &str, policy: DropPolicy) -> (vigil_sdk::SdkStats, Vec<PredictionEvent>, Vec<usize>) {
    let topics = Topics::new(test);
    let mut config = topics.config();
    config.queue_capacity = 50;
    config.drop_policy = policy;
    let producer = Producer::new(config).unwrap();
    let n = 20_000;
    let events: Vec<PredictionEvent> = (0..n).map(prediction).collect();
    let mut accepted = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        match producer.log_prediction(event) {
            Ok(()) => accepted.push(i),
            Err(SdkError::QueueFull { capacity: 50 }) => {}
            Err(error) => panic!("{error}"),
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.enqueued + stats.dropped_queue_full, n as u64, "{stats:?}");
    assert_eq!(stats.enqueued, stats.delivered + stats.failed + stats.dropped_oldest, "{stats:?}");
    assert_eq!(stats.failed, 0);
    let stored: Vec<PredictionEvent> =
        consume(&topics.predictions, stats.delivered as usize, Duration::from_secs(30))
            .into_iter()
            .map(|(_, value)| decode(&value).unwrap())
            .collect();
    assert_eq!(stored.len() as u64, stats.delivered, "the broker holds exactly the delivered events");
    (stats, stored, accepted)
}

#[test]
fn a_full_queue_drops_the_newest_events_and_counts_them() {
    let (stats, stored, accepted) = overload("drop_newest", DropPolicy::DropNewest);
    println!("drop newest: {stats:?}");
    assert!(stats.dropped_queue_full > 0, "the queue never filled: {stats:?}");
    assert_eq!(stats.dropped_oldest, 0);
    // What was accepted is exactly what arrived.
    let stored: BTreeSet<String> = stored.into_iter().map(|e| e.prediction_id).collect();
    assert_eq!(stored, accepted.iter().map(|i| format!("p-{i}")).collect());
}

#[test]
fn a_full_queue_under_drop_oldest_evicts_old_events_and_keeps_the_last() {
    let (stats, stored, accepted) = overload("drop_oldest", DropPolicy::DropOldest);
    println!("drop oldest: {stats:?}");
    assert!(stats.dropped_oldest > 0, "the queue never filled: {stats:?}");
    let stored: BTreeSet<String> = stored.into_iter().map(|e| e.prediction_id).collect();
    let last = accepted.last().unwrap();
    assert!(stored.contains(&format!("p-{last}")), "the newest accepted event arrived");
    assert!(stored.len() < accepted.len());
}
