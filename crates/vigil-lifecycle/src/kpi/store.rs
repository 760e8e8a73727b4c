//! What the KPIs read from ClickHouse: the monitor's policy checks of a period.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use vigil_store::StoreConfig;

use crate::LifecycleError;

/// Most policy-check rows one KPI computation reads; a larger period is refused, not truncated.
pub const MAX_CHECK_ROWS: usize = 500_000;

/// One policy check (`policy_checks`), the columns the KPIs need.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct CheckRow {
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    pub window_start: u32,
    pub verdict: String,
    pub remediation_id: String,
    pub computed_at: u32,
}

/// A client of the configured database, as `vigil-store` makes them (18.16 needs no validation
/// and no compression).
pub fn client(config: &StoreConfig) -> Client {
    Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_database(&config.database)
        .with_compression(clickhouse::Compression::None)
        .with_validation(false)
}

pub(crate) fn store_error(config: &StoreConfig, error: clickhouse::error::Error) -> LifecycleError {
    LifecycleError::Query { url: config.url.clone(), source: error }
}

/// The checks of windows starting in `[from_ms - lookback_ms, to_ms)`, in window order per model
/// version and policy; the lookback finds where a streak that ends in the period began.
pub async fn checks(
    config: &StoreConfig,
    from_ms: i64,
    to_ms: i64,
    lookback_ms: i64,
    model: Option<&str>,
) -> Result<Vec<CheckRow>, LifecycleError> {
    let sql = format!(
        "SELECT model_id, model_version, policy, toUInt32(window_start), verdict, remediation_id, toUInt32(computed_at) \
         FROM policy_checks FINAL \
         WHERE window_start >= toDateTime(?) AND window_start < toDateTime(?){} \
         ORDER BY model_id, model_version, policy, window_start LIMIT {}",
        if model.is_some() { " AND model_id = ?" } else { "" },
        MAX_CHECK_ROWS + 1
    );
    let mut query = client(config)
        .query(&sql)
        .bind(((from_ms - lookback_ms).max(0) / 1000) as u32)
        .bind((to_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32);
    if let Some(m) = model {
        query = query.bind(m);
    }
    let rows: Vec<CheckRow> = query.fetch_all().await.map_err(|e| store_error(config, e))?;
    if rows.len() > MAX_CHECK_ROWS {
        return Err(LifecycleError::Config(vec![format!(
            "more than {MAX_CHECK_ROWS} policy checks in the period: choose a shorter one or one model"
        )]));
    }
    Ok(rows)
}

/// How far before a period's start the checks are read to find where a streak began.
pub const STREAK_LOOKBACK_MS: i64 = 86_400_000;

/// The KPIs of `[from_ms, to_ms)` from the replayed registry and, when given, the policy checks
/// in ClickHouse (without them, times to detect and remediate are empty).
pub async fn report(
    registry: &crate::Registry,
    config: Option<&StoreConfig>,
    from_ms: i64,
    to_ms: i64,
    model: Option<&str>,
    approval_deadline_ms: i64,
) -> Result<super::KpiReport, LifecycleError> {
    let events: Vec<vigil_events::LifecycleEvent> =
        registry.models().flat_map(|(_, m)| m.history.iter().cloned()).collect();
    let remediations = match config {
        Some(config) => {
            let rows = checks(config, from_ms, to_ms, STREAK_LOOKBACK_MS, model).await?;
            super::remediations_from_checks(&rows)
        }
        None => Vec::new(),
    };
    Ok(super::compute(&super::KpiInput {
        events: &events,
        remediations: &remediations,
        from_ms,
        to_ms,
        approval_deadline_ms,
        model,
    }))
}
