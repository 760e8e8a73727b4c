//! The analysis provider for progressive-delivery controllers (Argo Rollouts' `web` metric
//! provider, Flagger's webhooks): `GET /api/v1/models/{model}/versions/{version}/analysis?windows=N`
//! answers whether a model version has been healthy over its last N closed windows, from what
//! the monitor stored in ClickHouse (`window_metrics`, `policy_checks`, `feature_drift`), with the
//! values behind the verdict. Read-only; behind the API's bearer token.
//!
//! The verdict is one of three words, so a controller's condition is a string comparison:
//! - `failed`: a policy breached in at least one of those windows;
//! - `inconclusive`: no breach, but fewer than N windows are closed, or a window's checks lack
//!   the data to decide (insufficient data is never a pass);
//! - `healthy`: N closed windows, every policy check healthy in each.
//!
//! The answer is 200 whatever the verdict (Argo reads `$.verdict`), unless the request says
//! `require=healthy`: then any other verdict is answered 412 with the same body, for checks that
//! judge by status code alone (Flagger's webhooks, `curl --fail`).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use vigil_store::StoreConfig;

use crate::{policy_verdict, Verdict};

/// Windows judged when the request does not say.
pub const DEFAULT_WINDOWS: u32 = 3;
/// The most windows one request may ask for.
pub const MAX_WINDOWS: u32 = 100;

/// Reads the monitor's tables; given to the router as an `Extension` by the service when
/// `[lifecycle] store` is on.
#[derive(Clone)]
pub struct Provider {
    db: Client,
    url: String,
}

impl Provider {
    pub fn new(config: &StoreConfig) -> Self {
        // As vigil-store: no validation (18.16 lacks RowBinaryWithNamesAndTypes), no compression.
        let db = Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_database(&config.database)
            .with_compression(clickhouse::Compression::None)
            .with_validation(false);
        Self { db, url: config.url.clone() }
    }

    /// The analysis of `version` of `model` over its newest `windows` closed windows.
    pub async fn analyse(&self, model: &str, version: &str, windows: u32) -> Result<Analysis, String> {
        let closed: Vec<ClosedWindow> = self
            .db
            .query(
                // Aliases differ from column names: 18.16 substitutes aliases into WHERE.
                "SELECT toUInt32(window_start) AS ws, window_seconds AS seconds, events AS n_events \
                 FROM window_metrics FINAL WHERE model_id = ? AND model_version = ? AND segment = '' \
                 ORDER BY ws DESC LIMIT ?",
            )
            .bind(model)
            .bind(version)
            .bind(windows)
            .fetch_all()
            .await
            .map_err(|e| self.failed(e))?;
        let since = closed.iter().map(|w| w.ws).min().unwrap_or(u32::MAX);
        let checks: Vec<CheckRow> = if closed.is_empty() {
            Vec::new()
        } else {
            self.db
                .query(
                    "SELECT toUInt32(window_start) AS ws, policy AS check_policy, verdict AS check_verdict, \
                     value AS check_value, threshold AS check_threshold, detail AS check_detail \
                     FROM policy_checks FINAL WHERE model_id = ? AND model_version = ? \
                     AND window_start >= toDateTime(?) ORDER BY ws, check_policy",
                )
                .bind(model)
                .bind(version)
                .bind(since)
                .fetch_all()
                .await
                .map_err(|e| self.failed(e))?
        };
        let drift: Vec<DriftRow> = if closed.is_empty() {
            Vec::new()
        } else {
            self.db
                .query(
                    "SELECT toUInt32(window_start) AS ws, toUInt64(count()) AS tested, \
                     toUInt64(sum(drifted)) AS drifted_features FROM feature_drift FINAL \
                     WHERE model_id = ? AND model_version = ? AND segment = '' \
                     AND window_start >= toDateTime(?) GROUP BY ws",
                )
                .bind(model)
                .bind(version)
                .bind(since)
                .fetch_all()
                .await
                .map_err(|e| self.failed(e))?
        };
        Ok(judge(model, version, windows, &closed, &checks, &drift))
    }

    fn failed(&self, error: clickhouse::error::Error) -> String {
        format!("clickhouse at {}: {error}", self.url)
    }
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct ClosedWindow {
    pub ws: u32,
    pub seconds: u32,
    pub n_events: u64,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct CheckRow {
    pub ws: u32,
    pub check_policy: String,
    pub check_verdict: String,
    pub check_value: f64,
    pub check_threshold: f64,
    pub check_detail: String,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct DriftRow {
    pub ws: u32,
    pub tested: u64,
    pub drifted_features: u64,
}

/// The answer, shaped for a controller's JSON path (`$.verdict`) and for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub model_id: String,
    pub model_version: String,
    /// `healthy`, `failed` or `inconclusive`.
    pub verdict: String,
    /// Why, in one sentence.
    pub reason: String,
    pub windows_requested: u32,
    /// Closed windows found (at most `windows_requested`).
    pub windows_closed: u32,
    pub windows_healthy: u32,
    pub windows_failed: u32,
    pub windows_inconclusive: u32,
    /// The most features found drifted in one of these windows.
    pub max_drifted_features: u64,
    /// Newest first.
    pub windows: Vec<WindowAnalysis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAnalysis {
    /// Seconds since the Unix epoch.
    pub window_start: u32,
    pub window_seconds: u32,
    pub events: u64,
    /// The window's verdict: `healthy`, `failed` or `inconclusive`.
    pub verdict: String,
    pub features_tested: u64,
    pub drifted_features: u64,
    pub checks: Vec<CheckView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub policy: String,
    /// As stored by the monitor: `healthy`, `breach` or `insufficient_data`.
    pub verdict: String,
    pub value: f64,
    pub threshold: f64,
    pub detail: String,
}

fn word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Healthy => "healthy",
        Verdict::Failed => "failed",
        Verdict::InsufficientData => "inconclusive",
    }
}

/// The verdict from the rows (pure; `closed` newest first).
pub fn judge(
    model: &str,
    version: &str,
    requested: u32,
    closed: &[ClosedWindow],
    checks: &[CheckRow],
    drift: &[DriftRow],
) -> Analysis {
    let mut by_window: BTreeMap<u32, Vec<&CheckRow>> = BTreeMap::new();
    for check in checks {
        by_window.entry(check.ws).or_default().push(check);
    }
    let drift: BTreeMap<u32, &DriftRow> = drift.iter().map(|d| (d.ws, d)).collect();
    let mut windows = Vec::with_capacity(closed.len());
    let (mut healthy, mut failed, mut inconclusive) = (0, 0, 0);
    for window in closed {
        let checks = by_window.get(&window.ws).map(Vec::as_slice).unwrap_or_default();
        // A closed window without checks has nothing to judge on.
        let verdict = Verdict::combine(checks.iter().map(|c| policy_verdict(&c.check_verdict)));
        match verdict {
            Verdict::Healthy => healthy += 1,
            Verdict::Failed => failed += 1,
            Verdict::InsufficientData => inconclusive += 1,
        }
        let (tested, drifted) = drift.get(&window.ws).map_or((0, 0), |d| (d.tested, d.drifted_features));
        windows.push(WindowAnalysis {
            window_start: window.ws,
            window_seconds: window.seconds,
            events: window.n_events,
            verdict: word(verdict).to_owned(),
            features_tested: tested,
            drifted_features: drifted,
            checks: checks
                .iter()
                .map(|c| CheckView {
                    policy: c.check_policy.clone(),
                    verdict: c.check_verdict.clone(),
                    value: c.check_value,
                    threshold: c.check_threshold,
                    detail: c.check_detail.clone(),
                })
                .collect(),
        });
    }
    let found = windows.len() as u32;
    let (verdict, reason) = if failed > 0 {
        let policies: Vec<&str> = windows
            .iter()
            .flat_map(|w| &w.checks)
            .filter(|c| c.verdict == "breach")
            .map(|c| c.policy.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        (Verdict::Failed, format!("{failed} of {found} windows breached ({})", policies.join(", ")))
    } else if found < requested {
        (Verdict::InsufficientData, format!("insufficient data: {found} of {requested} windows closed"))
    } else if inconclusive > 0 {
        (
            Verdict::InsufficientData,
            format!("insufficient data: {inconclusive} of {found} windows lack the data to decide"),
        )
    } else {
        (Verdict::Healthy, format!("all {found} windows healthy"))
    };
    Analysis {
        model_id: model.to_owned(),
        model_version: version.to_owned(),
        verdict: word(verdict).to_owned(),
        reason,
        windows_requested: requested,
        windows_closed: found,
        windows_healthy: healthy,
        windows_failed: failed,
        windows_inconclusive: inconclusive,
        max_drifted_features: windows.iter().map(|w| w.drifted_features).max().unwrap_or(0),
        windows,
    }
}

/// What a request asks: how many windows, and whether a verdict other than healthy should be
/// answered 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub windows: u32,
    pub require_healthy: bool,
}

/// `windows=N` (1..=MAX_WINDOWS) and `require=healthy` from the query string; anything else is
/// refused, naming the parameter.
pub fn parse_query(query: Option<&str>) -> Result<Query, String> {
    let mut windows = DEFAULT_WINDOWS;
    let mut require_healthy = false;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "windows" => {
                windows = value.parse().ok().filter(|n| (1..=MAX_WINDOWS).contains(n)).ok_or_else(|| {
                    format!("windows must be a whole number from 1 to {MAX_WINDOWS}, got {value:?}")
                })?;
            }
            "require" if value == "healthy" => require_healthy = true,
            "require" => return Err(format!("require must be healthy, got {value:?}")),
            other => return Err(format!("unknown query parameter {other:?} (known: windows, require)")),
        }
    }
    Ok(Query { windows, require_healthy })
}

/// The route's handler.
pub async fn analysis(
    State(state): State<crate::api::ApiState>,
    Extension(caller): Extension<crate::auth::Caller>,
    Path((model, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    provider: Option<Extension<Provider>>,
) -> Response {
    // Read-only: a viewer token whose scope covers the model.
    if let Err(refused) = crate::api::check(&state, &caller, crate::auth::Role::Viewer, Some(&model)) {
        return refused.into_response();
    }
    let query = match parse_query(query.as_deref()) {
        Ok(q) => q,
        Err(message) => return reply(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": message })),
    };
    let Some(Extension(provider)) = provider else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": "the analysis needs ClickHouse: set [lifecycle] audit = true (it gives the lifecycle service ClickHouse)" }),
        );
    };
    match provider.analyse(&model, &version, query.windows).await {
        Ok(analysis) if query.require_healthy && analysis.verdict != "healthy" => {
            reply(StatusCode::PRECONDITION_FAILED, &analysis)
        }
        Ok(analysis) => reply(StatusCode::OK, &analysis),
        Err(message) => {
            tracing::warn!(%message, model = %model, version = %version, "analysis provider: could not read the windows");
            reply(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "error": message }))
        }
    }
}

fn reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ws: u32) -> ClosedWindow {
        ClosedWindow { ws, seconds: 60, n_events: 1000 }
    }

    fn check(ws: u32, policy: &str, verdict: &str) -> CheckRow {
        CheckRow {
            ws,
            check_policy: policy.into(),
            check_verdict: verdict.into(),
            check_value: 0.1,
            check_threshold: 0.2,
            check_detail: String::new(),
        }
    }

    #[test]
    fn verdicts_fail_on_any_breach_and_never_pass_without_data() {
        let closed = [window(180), window(120), window(60)];
        let healthy: Vec<_> =
            [60, 120, 180].iter().map(|&ws| check(ws, "feature_drift", "healthy")).collect();
        let a = judge("m", "v", 3, &closed, &healthy, &[]);
        assert_eq!((a.verdict.as_str(), a.windows_healthy), ("healthy", 3));

        let mut breached = healthy.clone();
        breached.push(check(120, "performance", "breach"));
        let a =
            judge("m", "v", 3, &closed, &breached, &[DriftRow { ws: 120, tested: 20, drifted_features: 4 }]);
        assert_eq!(a.verdict, "failed");
        assert_eq!(a.reason, "1 of 3 windows breached (performance)");
        assert_eq!(a.max_drifted_features, 4);

        // Two windows closed of three asked: inconclusive, even though both are healthy.
        let a = judge("m", "v", 3, &closed[..2], &healthy, &[]);
        assert_eq!(a.verdict, "inconclusive");
        assert!(a.reason.starts_with("insufficient data: 2 of 3"), "{}", a.reason);
        // ...but a breach in them is already a failure.
        let a = judge("m", "v", 3, &closed[..2], &breached, &[]);
        assert_eq!(a.verdict, "failed");

        // A window whose checks lack data, or that has no checks at all.
        let mut thin = healthy.clone();
        thin[0] = check(60, "feature_drift", "insufficient_data");
        assert_eq!(judge("m", "v", 3, &closed, &thin, &[]).verdict, "inconclusive");
        assert_eq!(judge("m", "v", 3, &closed, &healthy[1..], &[]).verdict, "inconclusive");
        assert_eq!(judge("m", "v", 3, &[], &[], &[]).verdict, "inconclusive");
    }

    #[test]
    fn the_query_names_only_windows_within_bounds() {
        assert_eq!(parse_query(None), Ok(Query { windows: DEFAULT_WINDOWS, require_healthy: false }));
        assert_eq!(
            parse_query(Some("windows=5&require=healthy")),
            Ok(Query { windows: 5, require_healthy: true })
        );
        assert!(parse_query(Some("require=failed")).unwrap_err().contains("require must be healthy"));
        assert!(parse_query(Some("windows=0")).unwrap_err().contains("from 1 to 100"));
        assert!(parse_query(Some("windows=101")).is_err());
        assert!(parse_query(Some("window=5")).unwrap_err().contains("unknown query parameter \"window\""));
    }
}
