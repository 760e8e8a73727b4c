//! The SDK against the real broker at `VIGIL_TEST_KAFKA_BROKERS` (default 127.0.0.1:9092;
//! `deploy/local/up` starts one): fresh topics per test, deleted afterwards. The Confluent wire
//! format tests also need the Schema Registry at `VIGIL_TEST_SCHEMA_REGISTRY_URL`.

mod kafka;
mod registry;
