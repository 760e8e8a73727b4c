//! What the audit report reads: the registry (lineage, history) and ClickHouse (the monitor's
//! policy checks, drift tests and performance, the deliveries audit). Every read is bounded.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use vigil_store::StoreConfig;

use super::{
    approvals, AuditReport, DeliveryEntry, FeatureEvidence, Point, RemediationEntry, Series, REPORT_VERSION,
};
use crate::kpi::store::{client, store_error};
use crate::view::{event_view, ModelView};
use crate::{LifecycleError, Registry};

/// Most rows of one kind a report holds (remediations, deliveries, chart points).
pub const MAX_ROWS: usize = 20_000;

#[derive(Debug, Clone)]
pub struct ReportRequest<'a> {
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub approval_deadline_ms: i64,
    pub now_ms: i64,
}

#[derive(Debug, Row, Deserialize, Serialize)]
struct CheckRow {
    model_version: String,
    policy: String,
    window_start: u32,
    verdict: String,
    value: f64,
    threshold: f64,
    detail: String,
    streak: u32,
    remediation_id: String,
    reference_id: String,
    config_hash: String,
    computed_at: u32,
}

#[derive(Debug, Row, Deserialize, Serialize)]
struct FeatureRow {
    feature: String,
    test: String,
    statistic: f64,
    p_value: Option<f64>,
    threshold: f64,
    drifted: u8,
}

#[derive(Debug, Row, Deserialize, Serialize)]
struct PointRow {
    model_version: String,
    window_start: u32,
    value: f64,
}

#[derive(Debug, Row, Deserialize, Serialize)]
struct DeliveryRow {
    receiver: String,
    state: String,
    severity: String,
    model_version: String,
    policy: String,
    remediation_id: Option<String>,
    attempt: u32,
    outcome: String,
    http_status: u16,
    at: u32,
}

fn seconds(ms: i64) -> u32 {
    (ms / 1000).clamp(0, i64::from(u32::MAX)) as u32
}

/// Refuses more than [`MAX_ROWS`] rows instead of cutting the report short.
fn bounded<T>(rows: Vec<T>, what: &str) -> Result<Vec<T>, LifecycleError> {
    if rows.len() > MAX_ROWS {
        return Err(LifecycleError::Config(vec![format!(
            "more than {MAX_ROWS} {what} in the period: choose a shorter period or one version"
        )]));
    }
    Ok(rows)
}

/// The report of one model over `[from_ms, to_ms)`, sealed with its content hash.
pub async fn build(
    registry: &Registry,
    config: &StoreConfig,
    request: &ReportRequest<'_>,
) -> Result<AuditReport, LifecycleError> {
    let r = request;
    let model = registry.model(r.model);
    let of_version = |v: &str| r.version.is_none_or(|only| only == v);
    let in_period = |t: i64| t >= r.from_ms && t < r.to_ms;
    let mut versions = model.map(|m| ModelView::of(r.model, m).versions).unwrap_or_default();
    versions.retain(|v| of_version(&v.version));
    let history: Vec<_> = model
        .map(|m| {
            m.history
                .iter()
                .filter(|e| of_version(&e.model_version) && in_period(e.event_time_ms))
                .map(event_view)
                .collect()
        })
        .unwrap_or_default();

    let db = client(config);
    let error = |e| store_error(config, e);
    let version_filter = if r.version.is_some() { " AND model_version = ?" } else { "" };
    let range = (seconds(r.from_ms), seconds(r.to_ms));
    let bind_version = |q: clickhouse::query::Query| match r.version {
        Some(v) => q.bind(v),
        None => q,
    };

    let checks: Vec<CheckRow> = bind_version(
        db.query(&format!(
            "SELECT model_version, policy, toUInt32(window_start), verdict, value, threshold, detail, streak, \
             remediation_id, reference_id, config_hash, toUInt32(computed_at) FROM policy_checks FINAL \
             WHERE model_id = ? AND remediation_id != '' AND window_start >= toDateTime(?) \
             AND window_start < toDateTime(?){version_filter} ORDER BY window_start, model_version, policy LIMIT {}",
            MAX_ROWS + 1
        ))
        .bind(r.model)
        .bind(range.0)
        .bind(range.1),
    )
    .fetch_all()
    .await
    .map_err(error)?;
    let checks = bounded(checks, "remediations")?;
    let mut remediations = Vec::with_capacity(checks.len());
    for c in checks {
        let features: Vec<FeatureRow> = db
            .query(
                "SELECT feature, test, statistic, p_value, threshold, drifted FROM feature_drift FINAL \
                 WHERE model_id = ? AND model_version = ? AND segment = '' AND window_start = toDateTime(?) \
                 ORDER BY feature LIMIT 10000",
            )
            .bind(r.model)
            .bind(&c.model_version)
            .bind(c.window_start)
            .fetch_all()
            .await
            .map_err(error)?;
        let lifecycle = model
            .map(|m| {
                m.history
                    .iter()
                    .filter(|e| e.remediation_id.as_deref() == Some(c.remediation_id.as_str()))
                    .map(event_view)
                    .collect()
            })
            .unwrap_or_default();
        remediations.push(RemediationEntry {
            detail: serde_json::from_str(&c.detail).unwrap_or(serde_json::Value::String(c.detail.clone())),
            remediation_id: c.remediation_id,
            model_version: c.model_version,
            policy: c.policy,
            window_start_ms: i64::from(c.window_start) * 1000,
            verdict: c.verdict,
            value: c.value,
            threshold: c.threshold,
            streak: c.streak,
            reference_id: c.reference_id,
            config_hash: c.config_hash,
            computed_at_ms: i64::from(c.computed_at) * 1000,
            features: features
                .into_iter()
                .map(|f| FeatureEvidence {
                    feature: f.feature,
                    test: f.test,
                    statistic: f.statistic,
                    p_value: f.p_value,
                    threshold: f.threshold,
                    drifted: f.drifted != 0,
                })
                .collect(),
            lifecycle,
        });
    }

    let points = |sql: String| {
        let query = bind_version(db.query(&sql).bind(r.model).bind(range.0).bind(range.1));
        async move {
            let rows: Vec<PointRow> = query.fetch_all().await.map_err(error)?;
            Ok::<_, LifecycleError>(
                bounded(rows, "chart points")?
                    .into_iter()
                    .map(|p| Point {
                        model_version: p.model_version,
                        t_ms: i64::from(p.window_start) * 1000,
                        value: p.value,
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    let drift = points(format!(
        "SELECT model_version, toUInt32(window_start), toFloat64(sum(drifted)) FROM feature_drift FINAL \
         WHERE model_id = ? AND segment = '' AND window_start >= toDateTime(?) AND window_start < toDateTime(?)\
         {version_filter} GROUP BY model_version, window_start ORDER BY window_start, model_version LIMIT {}",
        MAX_ROWS + 1
    ))
    .await?;
    let performance = points(format!(
        "SELECT model_version, toUInt32(window_start), assumeNotNull(accuracy) FROM window_performance FINAL \
         WHERE model_id = ? AND segment = '' AND isNotNull(accuracy) AND window_start >= toDateTime(?) \
         AND window_start < toDateTime(?){version_filter} ORDER BY window_start, model_version LIMIT {}",
        MAX_ROWS + 1
    ))
    .await?;

    let deliveries: Vec<DeliveryRow> = bind_version(
        db.query(&format!(
            "SELECT receiver, state, severity, model_version, policy, remediation_id, attempt, outcome, http_status, \
             toUInt32(at) FROM alert_deliveries WHERE model_id = ? AND at >= toDateTime(?) AND at < toDateTime(?)\
             {version_filter} ORDER BY at, delivery_id LIMIT {}",
            MAX_ROWS + 1
        ))
        .bind(r.model)
        .bind(range.0)
        .bind(range.1),
    )
    .fetch_all()
    .await
    .map_err(error)?;
    let deliveries = bounded(deliveries, "deliveries")?
        .into_iter()
        .map(|d| DeliveryEntry {
            receiver: d.receiver,
            state: d.state,
            severity: d.severity,
            model_version: d.model_version,
            policy: d.policy,
            remediation_id: d.remediation_id,
            attempt: d.attempt,
            outcome: d.outcome,
            http_status: d.http_status,
            at_ms: i64::from(d.at) * 1000,
        })
        .collect();

    let kpis = crate::kpi::store::report(
        registry,
        Some(config),
        r.from_ms,
        r.to_ms,
        Some(r.model),
        r.approval_deadline_ms,
    )
    .await?
    .models
    .into_iter()
    .next()
    .unwrap_or_default();

    Ok(AuditReport {
        report_version: REPORT_VERSION,
        model_id: r.model.to_owned(),
        model_version: r.version.map(str::to_owned),
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        generated_at_ms: r.now_ms,
        approvals: approvals(&history),
        versions,
        stage_history: history,
        remediations,
        deliveries,
        kpis,
        series: Series { drift, performance },
        content_sha256: String::new(),
    }
    .seal())
}
