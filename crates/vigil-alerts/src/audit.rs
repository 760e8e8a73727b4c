//! The ClickHouse audit table for alert delivery attempts: DDL and row type, for `vigil-store` to
//! run as a migration and write (see `docs/alerts.md`). Runs on ClickHouse 18.16 and later.

use serde::{Deserialize, Serialize};

/// `CREATE TABLE` for `<database>.alert_deliveries`, one row per attempt. `name_type` is
/// `String`, or `LowCardinality(String)` on servers that have it (20.3 and later).
pub fn alert_deliveries_ddl(database: &str, name_type: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.alert_deliveries (
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
    )
}

/// One attempt to deliver one alert to one receiver, fields in column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDeliveryRow {
    pub delivery_id: u64,
    pub receiver: String,
    pub alert_key: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    pub remediation_id: Option<String>,
    pub attempt: u32,
    /// `delivered`, `retrying` or `gave_up`.
    pub outcome: String,
    /// 0 when there was no answer (timeout, connection error).
    pub http_status: u16,
    pub error: String,
    /// Seconds since the Unix epoch.
    pub at: u32,
}

impl AlertDeliveryRow {
    pub const COLUMNS: [&'static str; 14] = [
        "delivery_id",
        "receiver",
        "alert_key",
        "state",
        "severity",
        "model_id",
        "model_version",
        "policy",
        "remediation_id",
        "attempt",
        "outcome",
        "http_status",
        "error",
        "at",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_columns_are_the_row_fields_in_order() {
        let ddl = alert_deliveries_ddl("vigil", "String");
        let columns: Vec<&str> = ddl
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with(')'))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(columns, AlertDeliveryRow::COLUMNS);
    }
}
