//! Closing alerts when their model is healthy again. The monitor stores every policy check in
//! ClickHouse `policy_checks` (healthy, breach or insufficient data) but publishes only breaches,
//! so `vigil lifecycle` polls: for each open alert, the newest checked window of its (model,
//! version, policy); when that window starts at or after the breach's window ended and its verdict
//! is `healthy`, the alert is resolved (PagerDuty `resolve` with the same dedup key, Alertmanager
//! `endsAt`, Opsgenie close, a Slack `RESOLVED` message). Insufficient data resolves nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_alerts::{Alert, Notifier};
use vigil_store::{LatestVerdict, Store};

use crate::metrics::LifecycleMetrics;

/// The open alerts `verdicts` show healthy again, resolved at the time the healthy window was
/// judged.
pub fn resolutions(open: &[Alert], verdicts: &[LatestVerdict]) -> Vec<Alert> {
    open.iter()
        .filter_map(|alert| {
            let latest = verdicts.iter().find(|v| {
                v.model_id == alert.model_id
                    && v.model_version == alert.model_version
                    && v.policy == alert.policy
            })?;
            let after_breach = i64::from(latest.window_start) * 1000 >= alert.starts_at_ms;
            (latest.verdict == "healthy" && after_breach).then(|| {
                let mut resolved = alert.resolved(i64::from(latest.computed_at) * 1000);
                resolved.details.insert(
                    "resolved_by".into(),
                    format!(
                        "window starting {} was healthy",
                        vigil_alerts::rfc3339(i64::from(latest.window_start) * 1000)
                    ),
                );
                resolved
            })
        })
        .collect()
}

/// Polls every `interval` until `shutdown`; ClickHouse trouble is logged and tried again at the
/// next poll.
pub async fn run(
    store: Store,
    notifier: Notifier,
    interval: Duration,
    metrics: LifecycleMetrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let open = notifier.open_alerts();
        let Some(since) = open.iter().map(|a| a.starts_at_ms).min() else {
            continue;
        };
        let verdicts = match store.latest_verdicts((since.max(0) / 1000) as u32).await {
            Ok(verdicts) => verdicts,
            Err(error) => {
                tracing::warn!(%error, "resolve: could not read policy_checks");
                continue;
            }
        };
        for alert in resolutions(&open, &verdicts) {
            tracing::info!(key = %alert.key, "alert resolved: the policy is healthy again");
            match notifier.notify(alert) {
                Ok(()) => metrics.alerts_resolved.inc(),
                Err(error) => {
                    tracing::warn!(%error, "resolve not queued; tried again at the next poll")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_alerts::{AlertSeverity, AlertState};

    use super::*;

    fn alert(version: &str) -> Alert {
        Alert {
            key: Alert::key_for("fraud", version, "feature_drift"),
            state: AlertState::Firing,
            severity: AlertSeverity::Critical,
            model_id: "fraud".into(),
            model_version: version.into(),
            policy: "feature_drift".into(),
            summary: "drift".into(),
            details: BTreeMap::new(),
            remediation_id: Some("r1".into()),
            // The breached window ended at 120 s.
            starts_at_ms: 120_000,
            ends_at_ms: None,
            link: None,
        }
    }

    fn verdict(version: &str, window_start: u32, verdict: &str) -> LatestVerdict {
        LatestVerdict {
            model_id: "fraud".into(),
            model_version: version.into(),
            policy: "feature_drift".into(),
            window_start,
            verdict: verdict.into(),
            computed_at: window_start + 65,
        }
    }

    #[test]
    fn a_healthy_window_after_the_breach_resolves() {
        let open = [alert("v1"), alert("v2"), alert("v3"), alert("v4")];
        let verdicts = [
            verdict("v1", 120, "healthy"),
            verdict("v2", 60, "healthy"),
            verdict("v3", 180, "insufficient_data"),
            verdict("v4", 180, "breach"),
        ];
        let resolved = resolutions(&open, &verdicts);
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(
            (resolved[0].model_version.as_str(), resolved[0].state, resolved[0].ends_at_ms),
            ("v1", AlertState::Resolved, Some(185_000))
        );
        assert!(resolved[0].details["resolved_by"].contains("healthy"));
    }
}
