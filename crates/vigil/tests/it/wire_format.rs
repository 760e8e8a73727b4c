//! The Confluent Schema Registry wire format end to end: the SDK registers vigil's schemas with
//! the real registry (`VIGIL_TEST_SCHEMA_REGISTRY_URL`, default
//! `http://127.0.0.1:8081/apis/ccompat/v7`, started by `deploy/local/up`), frames events with the
//! ids it got, and the monitor, told the registry's URL (`VIGIL__SCHEMA_REGISTRY__URL`), stores
//! every event exactly once; on a topic with both formats mixed too, with nothing dead-lettered.
//!
//! The monitor detects each message's framing with `vigil_events::detect` and fetches Confluent
//! writer schemas once per id with `vigil_registry::Cache::schema`.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_registry::{Client, RegistryConfig, SubjectNameStrategy};
use vigil_sdk::{Producer, SdkConfig, WireFormat};

use crate::harness::{self, await_port, terminate, TestEnv};
use crate::monitor::generator;

fn registry_url() -> String {
    std::env::var("VIGIL_TEST_SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// `vigil monitor` for the test, told the registry's URL, once its HTTP port answers.
async fn monitor_with_registry(env: &TestEnv) -> harness::ChildGuard {
    let child = env
        .vigil_command(&["monitor"])
        .env("VIGIL__SCHEMA_REGISTRY__URL", registry_url())
        .spawn()
        .expect("vigil binary starts");
    await_port(env.http_port, Duration::from_secs(60)).await;
    harness::ChildGuard(child)
}

/// A producer on the test's topics in `format`.
fn producer(env: &TestEnv, format: WireFormat) -> Producer {
    let mut config = SdkConfig::new(harness::brokers());
    config.predictions_topic = env.predictions.clone();
    config.outcomes_topic = env.outcomes.clone();
    config.wire_format = format;
    Producer::new(config).unwrap()
}

async fn confluent_format(env: &TestEnv) -> WireFormat {
    let client = Client::new(RegistryConfig::new(registry_url())).unwrap();
    let ids = client
        .register_vigil_schemas(SubjectNameStrategy::TopicName, &env.predictions, &env.outcomes)
        .await
        .expect("registered (is the registry up? deploy/local/up)");
    WireFormat::Confluent { prediction_schema_id: ids.prediction, outcome_schema_id: ids.outcome }
}

/// Sends `n` predictions over three one-minute windows, every `every_nth_confluent`-th through the
/// Confluent producer and the rest single-object, then one late event per model to close the
/// windows. Returns the events sent per (model, version) and the number of closing events.
fn send(
    single: &Producer,
    confluent: &Producer,
    n: u64,
    every_nth_confluent: u64,
) -> (BTreeMap<(String, String), u64>, u64) {
    let mut generator = generator(29);
    let now = 1_764_000_000_000;
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..n {
        let event = generator.next_prediction(now + (i as i64 % 3) * 60_000);
        *expected.entry((event.model_id.clone(), event.model_version.clone())).or_default() += 1;
        let producer = if i % every_nth_confluent == 0 { confluent } else { single };
        producer.log_prediction(&event).unwrap();
    }
    let models: std::collections::BTreeSet<String> = expected.keys().map(|(m, _)| m.clone()).collect();
    for model in &models {
        let mut event = generator.next_prediction(now + 600_000);
        event.model_id = model.clone();
        confluent.log_prediction(&event).unwrap();
    }
    for p in [single, confluent] {
        p.flush(Duration::from_secs(30)).unwrap();
    }
    (expected, models.len() as u64)
}

/// Every event stored once, per (model, version) as sent, and nothing dead-lettered.
async fn assert_stored_exactly(env: &TestEnv, expected: &BTreeMap<(String, String), u64>, total: u64) {
    env.await_stored_exactly(total, Duration::from_secs(90)).await;
    let mut stored = BTreeMap::new();
    for t in env.store().window_count_totals().await.unwrap() {
        if t.segment.is_empty() && t.window_start < 1_764_000_600 {
            *stored.entry((t.model_id, t.model_version)).or_default() += t.events;
        }
    }
    assert_eq!(&stored, expected);
    assert!(env.dead_letters(0, Duration::from_secs(3)).is_empty(), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_events_in_the_confluent_format_are_stored_by_the_monitor() {
    let env = TestEnv::new("wire_confluent");
    let format = confluent_format(&env).await;
    let mut monitor = monitor_with_registry(&env).await;
    let confluent = producer(&env, format);
    let (expected, clock) = send(&confluent, &confluent, 3_000, 1);
    assert_stored_exactly(&env, &expected, 3_000 + clock).await;
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_with_both_formats_is_read_exactly() {
    let env = TestEnv::new("wire_mixed");
    let format = confluent_format(&env).await;
    let mut monitor = monitor_with_registry(&env).await;
    let single = producer(&env, WireFormat::SingleObject);
    let confluent = producer(&env, format);
    // Every other event Confluent-framed, on the same topic and partitions.
    let (expected, clock) = send(&single, &confluent, 4_000, 2);
    assert_stored_exactly(&env, &expected, 4_000 + clock).await;
    // Restarted, it reads neither format twice.
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    let mut monitor = monitor_with_registry(&env).await;
    env.await_stored_exactly(4_000 + clock, Duration::from_secs(30)).await;
    assert!(terminate(&mut monitor, Duration::from_secs(30)).success());
    env.cleanup().await;
}
