//! Integration tests against the real Kafka broker and ClickHouse server that
//! `deploy/local/up` starts. Endpoints come from `VIGIL_TEST_KAFKA_BROKERS` and
//! `VIGIL_TEST_CLICKHOUSE_URL` (loopback defaults); every test uses its own topics, consumer
//! group and database.

mod closed_loop;
mod drift;
mod exactly_once;
mod governance;
mod harness;
mod lifecycle;
mod monitor;
mod outcomes;
mod recovery;
mod reference;
mod replay;
mod windows;
mod wire_format;
