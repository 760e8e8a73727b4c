//! Integration tests against the real Kafka broker `deploy/local/up` starts
//! (`VIGIL_TEST_KAFKA_BROKERS`, default 127.0.0.1:9092). Every test uses its own topics and
//! consumer groups.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use vigil_events::{
    encode, AvroRecord, Evidence, LifecycleEvent, RemediationAction, RemediationEvent, Severity, Stage,
};
use vigil_lifecycle::kafka::{self, LifecycleSettings};
use vigil_lifecycle::{LifecyclePolicy, Registry};

fn brokers() -> String {
    std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn settings(test: &str) -> LifecycleSettings {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
    let name = format!("{test}.{}.{nanos}", std::process::id());
    LifecycleSettings {
        brokers: brokers(),
        client: BTreeMap::new(),
        lifecycle_topic: format!("it.{name}.lifecycle"),
        remediations_topic: format!("it.{name}.remediations"),
        group_id: format!("it-{name}"),
        policy: LifecyclePolicy::default(),
        replay_timeout: Duration::from_secs(20),
    }
}

async fn create_topics(settings: &LifecycleSettings, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &settings.brokers).create().unwrap();
    let topics = [&settings.lifecycle_topic, &settings.remediations_topic];
    let new: Vec<_> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
}

async fn publish<T: AvroRecord>(producer: &FutureProducer, topic: &str, key: &str, event: &T) {
    let payload = encode(event);
    producer
        .send(FutureRecord::to(topic).key(key).payload(&payload), Duration::from_secs(10))
        .await
        .expect("delivered");
}

fn lifecycle(id: &str, version: &str, stage: Stage, weight: Option<f64>) -> LifecycleEvent {
    LifecycleEvent {
        event_id: id.into(),
        model_id: "fraud".into(),
        model_version: version.into(),
        stage,
        traffic_weight: weight,
        reason: "deployed".into(),
        actor: "alice".into(),
        remediation_id: None,
        event_time_ms: 1_000,
        kind: vigil_events::EventKind::StageChange,
        lineage: None,
    }
}

fn critical(version: &str) -> RemediationEvent {
    RemediationEvent {
        remediation_id: format!("rem-{version}-w1"),
        model_id: "fraud".into(),
        model_version: version.into(),
        window_start_ms: 0,
        window_end_ms: 60_000,
        severity: Severity::Critical,
        action: RemediationAction::Rollback,
        policy: "error-rate".into(),
        evidence: vec![Evidence { metric: "error_rate".into(), value: 0.4, threshold: 0.1, feature: None }],
        reference_id: None,
        config_hash: "cfg".into(),
        created_at_ms: 61_000,
    }
}

/// Replays the log until `done` holds for it (or the time is up), then returns it.
async fn replay_until(settings: &LifecycleSettings, done: impl Fn(&Registry) -> bool) -> Registry {
    let started = Instant::now();
    loop {
        let (registry, _) = kafka::replay(settings).await.unwrap();
        if done(&registry) || started.elapsed() > Duration::from_secs(30) {
            return registry;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event in the log, by reading it raw (not through the registry, which folds duplicates).
async fn raw_log(settings: &LifecycleSettings) -> Vec<LifecycleEvent> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", format!("{}-raw", settings.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&settings.lifecycle_topic]).unwrap();
    let mut events = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            events.push(vigil_events::decode::<LifecycleEvent>(message.payload().unwrap()).unwrap());
            quiet_since = Instant::now();
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_remediation_rolls_back_the_canary_exactly_once() {
    let settings = settings("rollback_once");
    create_topics(&settings, 2).await;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &settings.brokers).create().unwrap();
    for event in [
        lifecycle("d1", "v1", Stage::Production, None),
        lifecycle("d2", "v2", Stage::Candidate, None),
        lifecycle("d3", "v2", Stage::Canary, Some(0.1)),
    ] {
        publish(&producer, &settings.lifecycle_topic, "fraud", &event).await;
    }
    // The remediation and a duplicate of it (a monitor replaying its window after a restart).
    publish(&producer, &settings.remediations_topic, "fraud", &critical("v2")).await;
    publish(&producer, &settings.remediations_topic, "fraud", &critical("v2")).await;

    let shutdown = CancellationToken::new();
    let running = tokio::spawn(kafka::run(settings.clone(), shutdown.clone()));
    let rolled_back = |r: &Registry| r.version("fraud", "v2").is_some_and(|v| v.stage == Stage::RolledBack);
    assert!(rolled_back(&replay_until(&settings, rolled_back).await), "no rollback reached the log");
    // A third copy after the decision is in the log.
    publish(&producer, &settings.remediations_topic, "fraud", &critical("v2")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let in_process = running.await.unwrap().unwrap();

    // A restarted consumer in a fresh group reads every remediation again: nothing new.
    let restarted =
        LifecycleSettings { group_id: format!("{}-again", settings.group_id), ..settings.clone() };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(kafka::run(restarted, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let after_restart = running.await.unwrap().unwrap();

    let log = raw_log(&settings).await;
    let rollbacks: Vec<_> = log.iter().filter(|e| e.stage == Stage::RolledBack).collect();
    assert_eq!(rollbacks.len(), 1, "log: {log:#?}");
    assert_eq!(rollbacks[0].model_version, "v2");
    assert_eq!(rollbacks[0].remediation_id.as_deref(), Some("rem-v2-w1"));
    assert_eq!(rollbacks[0].actor, "vigil");
    assert_eq!(log.len(), 4, "three deployments and one decision: {log:#?}");

    let (replayed, stats) = kafka::replay(&settings).await.unwrap();
    assert_eq!((stats.applied, stats.rejected), (4, 0));
    assert_eq!(replayed, in_process, "state replayed from the topic equals the consumer's");
    assert_eq!(replayed, after_restart);
    let model = replayed.model("fraud").unwrap();
    assert_eq!((model.production.as_deref(), model.canary.as_deref()), (Some("v1"), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_missing_or_empty_topic_is_an_empty_registry() {
    let settings = settings("empty_replay");
    let (registry, stats) = kafka::replay(&settings).await.unwrap();
    assert_eq!(registry, Registry::new());
    assert_eq!(stats.applied, 0);
    create_topics(&settings, 1).await;
    let (registry, _) = kafka::replay(&settings).await.unwrap();
    assert_eq!(registry, Registry::new());
}
