//! The ClickHouse schema as ordered migrations. One core DDL runs on Debian's 18.16 and on
//! current servers; current servers also get the features 18.16 lacks (LowCardinality, TTL).
//! `vigil migrate --print-ddl` prints what this module generates so CI can check the modern
//! variant with chdb, current ClickHouse in-process.

use crate::ServerVersion;

/// Options that change the generated DDL.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaOptions {
    pub database: String,
    /// Rows older than this are dropped by a TTL, on servers that have TTL; `None` keeps all.
    pub retention_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub id: u32,
    pub name: &'static str,
    pub sql: String,
}

/// The migrations for a server of `version`, in the order they must run. Each is idempotent
/// (`IF NOT EXISTS`) so a crash between running one and recording it is harmless.
pub fn migrations(version: ServerVersion, options: &SchemaOptions) -> Vec<Migration> {
    let db = &options.database;
    let modern = version.is_modern();
    let name_type = if modern { "LowCardinality(String)" } else { "String" };
    let ttl = match (modern, options.retention_days) {
        (true, Some(days)) => format!("\nTTL window_start + toIntervalDay({days})"),
        _ => String::new(),
    };
    // Migration 1 (the walking skeleton's `window_counts`) was superseded before any release by
    // `window_partials`; its id stays retired so old test databases are not confused.
    vec![
        Migration {
            id: 2,
            name: "window_partials",
            // Each row is what one monitor flush added to one (model, version, segment, window): its
            // event count and its mergeable sketches (`state`, JSON), plus the Kafka position the flush
            // covered. Data and positions land in one atomic INSERT, so a restarted monitor resumes
            // exactly behind what is stored (docs/exactly-once.md); a window's numbers are the merge of
            // its partials (docs/design/monitor-state.md).
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.window_partials (
    model_id {name_type},
    model_version {name_type},
    segment String,
    window_start DateTime,
    window_seconds UInt32,
    events UInt64,
    state String,
    source_topic String,
    source_partition UInt32,
    source_end_offset Int64,
    written_at DateTime
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, model_version, window_start, segment){ttl}"
            ),
        },
        Migration {
            id: 3,
            name: "window_metrics",
            // A closed window's numbers, recomputed from its partials whenever it (re)closes. Late
            // events only add to a window, so the row with the most events is the newest and
            // ReplacingMergeTree(events) keeps it (query with FINAL); recomputing the same partials
            // gives the same row. `source_partition` lets a restarted monitor find unclosed windows.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.window_metrics (
    model_id {name_type},
    model_version {name_type},
    segment String,
    window_start DateTime,
    window_seconds UInt32,
    events UInt64,
    late_events UInt64,
    latency_p50_ms Nullable(Float64),
    latency_p95_ms Nullable(Float64),
    latency_p99_ms Nullable(Float64),
    score_mean Nullable(Float64),
    predicted_labels String,
    feature_means String,
    features_missing UInt64,
    reference_id String,
    config_hash String,
    source_partition UInt32,
    computed_at DateTime
) ENGINE = ReplacingMergeTree(events)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, model_version, segment, window_start){ttl}"
            ),
        },
        Migration {
            id: 4,
            name: "reference_profiles",
            // What a model version's drift is measured against: a live baseline (its first closed
            // window with enough events) or, later, an uploaded file. `state` is a window state.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.reference_profiles (
    model_id {name_type},
    model_version {name_type},
    reference_id String,
    content_hash String,
    source String,
    events UInt64,
    state String,
    created_at DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY (model_id, model_version)"
            ),
        },
        Migration {
            id: 5,
            name: "feature_drift",
            // One drift test per feature per closed window, every verdict stored (not only breaches).
            // Like window_metrics, a re-close replaces the row; the most events wins.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.feature_drift (
    model_id {name_type},
    model_version {name_type},
    segment String,
    window_start DateTime,
    feature String,
    test String,
    statistic Float64,
    p_value Nullable(Float64),
    error_bound Nullable(Float64),
    threshold Float64,
    drifted UInt8,
    current_count UInt64,
    events UInt64,
    reference_id String,
    config_hash String,
    computed_at DateTime
) ENGINE = ReplacingMergeTree(events)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, model_version, segment, window_start, feature){ttl}"
            ),
        },
        Migration {
            id: 6,
            name: "policy_checks",
            // Every policy evaluation at window close, healthy or not: value, threshold, verdict,
            // and the remediation it emitted, if any.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.policy_checks (
    model_id {name_type},
    model_version {name_type},
    window_start DateTime,
    policy String,
    verdict String,
    value Float64,
    threshold Float64,
    detail String,
    streak UInt32,
    remediation_id String,
    events UInt64,
    reference_id String,
    config_hash String,
    computed_at DateTime
) ENGINE = ReplacingMergeTree(events)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, model_version, window_start, policy){ttl}"
            ),
        },
        Migration {
            id: 7,
            name: "window_performance",
            // A window's performance from the outcomes joined to its predictions so far. Outcomes
            // arrive late (hours, days), so a window's row is recomputed each time outcomes for it
            // land; both counts only grow, so `revision` (predictions + labeled) picks the newest row
            // (query with FINAL). Metrics that do not apply (AUC without scores, MAE for a
            // classifier) are NULL.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.window_performance (
    model_id {name_type},
    model_version {name_type},
    segment String,
    window_start DateTime,
    window_seconds UInt32,
    predictions UInt64,
    labeled UInt64,
    coverage Float64,
    accuracy Nullable(Float64),
    precision Nullable(Float64),
    recall Nullable(Float64),
    f1 Nullable(Float64),
    auc Nullable(Float64),
    brier Nullable(Float64),
    log_loss Nullable(Float64),
    ece Nullable(Float64),
    mae Nullable(Float64),
    rmse Nullable(Float64),
    mean_error Nullable(Float64),
    revision UInt64,
    reference_id String,
    config_hash String,
    computed_at DateTime
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, model_version, segment, window_start){ttl}"
            ),
        },
        Migration {
            id: 8,
            name: "lifecycle_events",
            // The audit copy of the lifecycle log (`vigil.lifecycle.v1`): one row per event with the
            // topic position it was read from. `vigil lifecycle` writes every event it applies, the
            // replayed ones included, so writing an event again is normal: ReplacingMergeTree keyed
            // by event id keeps one row (read with FINAL). No TTL: the audit trail is kept.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.lifecycle_events (
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
            ),
        },
        Migration {
            id: 9,
            name: "alert_deliveries",
            // One row per attempt to deliver an alert or a serving-platform update to one receiver:
            // outcome `delivered`, `retrying` or `gave_up`, with the HTTP status (0 without an
            // answer). Attempts are history, so a plain MergeTree; no TTL.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.alert_deliveries (
    delivery_id UInt64,
    receiver {name_type},
    alert_key String,
    state {name_type},
    severity {name_type},
    model_id {name_type},
    model_version {name_type},
    policy {name_type},
    remediation_id Nullable(String),
    attempt UInt32,
    outcome {name_type},
    http_status UInt16,
    error String,
    at DateTime
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (model_id, alert_key, at)"
            ),
        },
        Migration {
            id: 10,
            name: "reference_profiles_v2",
            // Every reference of a model version, one row per reference id: live baselines and
            // uploaded files side by side, so an upload never overwrites a baseline (nor the
            // reverse) and `vigil replay` can find the reference any stored row names.
            // `reference_profiles` kept one row per (model, version), the last inserted; it is no
            // longer written, and its rows are copied here. Storing an id again (the same file
            // uploaded twice) keeps one row, with the newest `created_at` (read with FINAL). Which
            // reference the monitor uses is `Store::references_in_use`'s rule. 18.16 cannot give a
            // column list together with AS SELECT: the columns are the select's, as in migration 4.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.reference_profiles_v2
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model_id, model_version, reference_id)
AS SELECT model_id, model_version, reference_id, content_hash, source, events, state, created_at
FROM {db}.reference_profiles"
            ),
        },
        Migration {
            id: 11,
            name: "lifecycle_lineage",
            // The lineage a lifecycle event recorded (a version's registration, usually): the
            // `Lineage` record of `schemas/lifecycle.avsc` as JSON, whether it is complete, and
            // who registered it. Written by `vigil lifecycle`'s audit next to `lifecycle_events`
            // (the row type is `vigil_lifecycle::audit::LineageRow`); one row per event id
            // (ReplacingMergeTree, read with FINAL). No TTL: the audit trail is kept.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.lifecycle_lineage (
    model_id {name_type},
    model_version {name_type},
    event_id String,
    actor String,
    lineage String,
    complete UInt8,
    event_time_ms Int64,
    written_at DateTime
) ENGINE = ReplacingMergeTree(written_at)
ORDER BY (model_id, model_version, event_id)"
            ),
        },
        Migration {
            id: 12,
            name: "remediation_outbox",
            // Remediations the monitor decided, written before their policy check and marked
            // published (a second row with published = 1) once Kafka acknowledged them: a monitor
            // killed in between publishes the unmarked ones again at its next start.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.remediation_outbox (
    remediation_id String,
    model_id {name_type},
    model_version {name_type},
    payload String,
    published UInt8,
    written_at DateTime
) ENGINE = ReplacingMergeTree(published)
ORDER BY remediation_id"
            ),
        },
    ]
}

/// Records which migrations ran; created before any migration.
pub fn migrations_table(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.schema_migrations (
    id UInt32,
    name String,
    server_version String,
    applied_at DateTime
) ENGINE = MergeTree()
ORDER BY id"
    )
}

pub fn create_database(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {database}")
}

/// Database names go into DDL unquoted, so only plain identifiers are accepted.
pub fn is_valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(retention_days: Option<u32>) -> SchemaOptions {
        SchemaOptions { database: "vigil".into(), retention_days }
    }

    #[test]
    fn old_servers_get_no_modern_only_syntax() {
        let old = ServerVersion { major: 18, minor: 16 };
        for m in migrations(old, &options(Some(30))) {
            assert!(!m.sql.contains("TTL"), "{}", m.sql);
            assert!(!m.sql.contains("LowCardinality"), "{}", m.sql);
        }
    }

    #[test]
    fn modern_servers_get_ttl_when_retention_is_set() {
        let new = ServerVersion { major: 24, minor: 8 };
        let sql = &migrations(new, &options(Some(30)))[0].sql;
        assert!(sql.contains("window_partials"));
        assert!(sql.contains("TTL window_start + toIntervalDay(30)"));
        assert!(!migrations(new, &options(None))[0].sql.contains("TTL"));
    }

    #[test]
    fn migration_ids_increase() {
        let ids: Vec<u32> = migrations(ServerVersion::MODERN, &options(None)).iter().map(|m| m.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    /// RowBinary is positional: every table's columns must be its row type's fields, in order.
    #[test]
    fn ddl_columns_are_the_row_fields_in_order() {
        use clickhouse::Row;
        let rows: [(&str, &[&str]); 9] = [
            ("window_partials", crate::WindowPartialRow::COLUMN_NAMES),
            ("window_metrics", crate::WindowMetricsRow::COLUMN_NAMES),
            ("reference_profiles", crate::ReferenceRow::COLUMN_NAMES),
            ("feature_drift", crate::FeatureDriftRow::COLUMN_NAMES),
            ("policy_checks", crate::PolicyCheckRow::COLUMN_NAMES),
            ("window_performance", crate::WindowPerformanceRow::COLUMN_NAMES),
            ("lifecycle_events", crate::LifecycleEventRow::COLUMN_NAMES),
            ("alert_deliveries", crate::AlertDeliveryRow::COLUMN_NAMES),
            ("remediation_outbox", crate::RemediationOutboxRow::COLUMN_NAMES),
        ];
        for version in [ServerVersion { major: 18, minor: 16 }, ServerVersion::MODERN] {
            let migrations = migrations(version, &options(Some(30)));
            for (table, fields) in rows {
                let sql = &migrations
                    .iter()
                    .find(|m| m.name == table)
                    .unwrap_or_else(|| panic!("no migration {table}"))
                    .sql;
                let columns: Vec<&str> = sql
                    .lines()
                    .skip(1)
                    .take_while(|l| !l.starts_with(')'))
                    .map(|l| l.split_whitespace().next().unwrap_or_default())
                    .collect();
                assert_eq!(columns, fields, "{table} on {version}");
            }
        }
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(is_valid_identifier("vigil_test_1"));
        assert!(!is_valid_identifier("vigil; DROP"));
        assert!(!is_valid_identifier("1abc"));
        assert!(!is_valid_identifier(""));
    }
}
