//! The ClickHouse audit table for lifecycle events: DDL and row type, for `vigil-store` to run as
//! a migration and write. Kept here (not in `vigil-store`) while the store's schema module is
//! being changed; see `docs/lifecycle.md`. The DDL runs on ClickHouse 18.16 and later.

use serde::{Deserialize, Serialize};
use vigil_events::LifecycleEvent;

use crate::stage_name;

/// `CREATE TABLE` for `<database>.lifecycle_events`. `name_type` is `String`, or
/// `LowCardinality(String)` on servers that have it (20.3 and later), as for `window_counts`.
/// ReplacingMergeTree keyed by `event_id`: writing an event again (a replay, a retry) leaves one
/// row after merges; read with `FINAL` or `argMax(.., written_at)` for exact answers.
pub fn lifecycle_events_ddl(database: &str, name_type: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.lifecycle_events (
    event_id String,
    model_id {name_type},
    model_version {name_type},
    stage {name_type},
    traffic_weight Nullable(Float64),
    reason String,
    actor String,
    remediation_id Nullable(String),
    event_time_ms Int64,
    event_date Date,
    source_partition Int32,
    source_offset Int64,
    written_at DateTime
) ENGINE = ReplacingMergeTree(written_at)
PARTITION BY toYYYYMM(event_date)
ORDER BY (model_id, event_id)"
    )
}

/// One row of `lifecycle_events`, fields in column order (RowBinary is positional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEventRow {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    pub stage: String,
    pub traffic_weight: Option<f64>,
    pub reason: String,
    pub actor: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
    /// Days since the Unix epoch (ClickHouse `Date`).
    pub event_date: u16,
    pub source_partition: i32,
    pub source_offset: i64,
    /// Seconds since the Unix epoch (ClickHouse `DateTime`).
    pub written_at: u32,
}

impl LifecycleEventRow {
    pub const COLUMNS: [&'static str; 13] = [
        "event_id",
        "model_id",
        "model_version",
        "stage",
        "traffic_weight",
        "reason",
        "actor",
        "remediation_id",
        "event_time_ms",
        "event_date",
        "source_partition",
        "source_offset",
        "written_at",
    ];

    /// The row for an event read at `partition`/`offset` of the lifecycle topic.
    pub fn new(event: &LifecycleEvent, partition: i32, offset: i64, written_at: u32) -> Self {
        Self {
            event_id: event.event_id.clone(),
            model_id: event.model_id.clone(),
            model_version: event.model_version.clone(),
            stage: stage_name(event.stage).to_owned(),
            traffic_weight: event.traffic_weight,
            reason: event.reason.clone(),
            actor: event.actor.clone(),
            remediation_id: event.remediation_id.clone(),
            event_time_ms: event.event_time_ms,
            event_date: event
                .event_time_ms
                .div_euclid(86_400_000)
                .clamp(0, i64::from(u16::MAX)) as u16,
            source_partition: partition,
            source_offset: offset,
            written_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use vigil_events::Stage;

    use super::*;

    #[test]
    fn row_from_event() {
        let event = LifecycleEvent {
            event_id: "r1:ROLLED_BACK:v2".into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            stage: Stage::RolledBack,
            traffic_weight: None,
            reason: "canary rolled back".into(),
            actor: "vigil".into(),
            remediation_id: Some("r1".into()),
            event_time_ms: 1_795_727_340_000,
        };
        let row = LifecycleEventRow::new(&event, 2, 41, 1_795_727_341);
        assert_eq!(
            (row.stage.as_str(), row.event_date, row.source_offset),
            ("ROLLED_BACK", 20_783, 41)
        );
        let ddl = lifecycle_events_ddl("vigil", "String");
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS vigil.lifecycle_events ("));
        // RowBinary is positional: the DDL's columns must be the row's fields, in order.
        let columns: Vec<&str> = ddl
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with(')'))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(columns, LifecycleEventRow::COLUMNS);
    }
}
