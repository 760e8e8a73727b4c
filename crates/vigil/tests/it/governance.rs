//! Governance end to end on the real broker (and ClickHouse where stated): a lifecycle log
//! written before lineage existed still replays; lineage given to `vigil lifecycle register`
//! shows in `vigil lifecycle state`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::harness::{self, version_of, LifecycleEnv};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

pub async fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    let results = admin
        .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Appends raw messages to `topic`, keyed by model.
pub async fn produce(topic: &str, key: &str, payloads: &[Vec<u8>]) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", harness::brokers()).create().unwrap();
    for payload in payloads {
        producer
            .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_with_the_old_schema_replays_and_lineage_shows_in_state() {
    let env = LifecycleEnv::new("governance_old_log");
    let config = env.write_config("[lifecycle]\nreplay_timeout_ms = 30000\n");
    let vectors: Value =
        serde_json::from_str(include_str!("../../../../schemas/testdata/lifecycle-v1-log.json"))
            .expect("the committed old log");
    let old: Vec<Vec<u8>> =
        vectors["events"].as_array().unwrap().iter().map(|e| unhex(e["hex"].as_str().unwrap())).collect();
    create_topic(&env.lifecycle).await;
    produce(&env.lifecycle, "fraud", &old).await;

    // On top of the old log, a version registered today with lineage.
    let lineage = env.dir.join("lineage.json");
    std::fs::write(
        &lineage,
        r#"{"training_run_id": "run-from-file", "datasets": [{"name": "tx", "version": "7"}],
             "code_commit": "abc1234", "artifact_uri": "s3://m/fraud/v4", "tags": {"from": "file"}}"#,
    )
    .unwrap();
    let hash = "cd".repeat(32);
    let (code, stdout, stderr) = env
        .run_vigil(
            &config,
            &[
                "lifecycle",
                "register",
                "--model",
                "fraud",
                "--version",
                "v4",
                "--stage",
                "canary",
                "--actor",
                "ci",
                "--lineage-file",
                lineage.to_str().unwrap(),
                "--training-run-id",
                "run-77",
                "--dataset",
                &format!("labels#{hash}"),
                "--artifact-sha256",
                &hash,
                "--parent-version",
                "v1",
                "--team",
                "risk",
                "--tag",
                "ticket=RISK-9",
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("model fraud version v4: NEW -> CANARY"), "{stdout}");
    // Bad lineage is refused with the field named, before anything is published.
    let (code, _, stderr) = env
        .run_vigil(
            &config,
            &[
                "lifecycle",
                "register",
                "--model",
                "fraud",
                "--version",
                "v5",
                "--stage",
                "candidate",
                "--artifact-sha256",
                "xyz",
            ],
        )
        .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("lineage.artifact_sha256"), "{stderr}");

    let (code, stdout, stderr) = env.run_vigil(&config, &["lifecycle", "state", "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let state: Value = serde_json::from_str(&stdout).unwrap();
    let stage = |v: &str| version_of(&state, "fraud", v)["stage"].as_str().unwrap().to_owned();
    assert_eq!(
        [stage("v1"), stage("v2"), stage("v3"), stage("v4")],
        ["PRODUCTION", "ROLLED_BACK", "CANDIDATE", "CANARY"],
        "{state}"
    );
    let v2 = version_of(&state, "fraud", "v2");
    assert_eq!((v2["actor"].as_str(), v2["registered_by"].as_str()), (Some("vigil"), Some("ci")), "{v2}");
    assert_eq!(v2["lineage"], Value::Null, "old events carry no lineage: {v2}");
    let v4 = version_of(&state, "fraud", "v4");
    let l = &v4["lineage"];
    assert_eq!(l["training_run_id"], "run-77", "the option overrides the file: {v4}");
    assert_eq!(l["code_commit"], "abc1234", "the file's field stays: {v4}");
    assert_eq!(l["datasets"][0]["name"], "tx", "{v4}");
    assert_eq!(l["datasets"][1]["sha256"], hash.as_str(), "{v4}");
    assert_eq!((l["tags"]["from"].as_str(), l["tags"]["ticket"].as_str()), (Some("file"), Some("RISK-9")));
    assert_eq!(v4["lineage_complete"], true, "{v4}");

    let (code, table, _) = env.run_vigil(&config, &["lifecycle", "state"]).await;
    assert_eq!(code, Some(0));
    assert!(table.contains("lineage (complete): run run-77, commit abc1234"), "{table}");
    env.cleanup();
}
