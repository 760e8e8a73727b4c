//! The alert every receiver format is built from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_events::{RemediationEvent, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Info,
    Warning,
    Critical,
}

impl AlertSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

/// One alert in one state. `key` names the problem (model, version, policy), not one window:
/// the next breaching window of the same policy is the same alert, and its resolve closes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub key: String,
    pub state: AlertState,
    pub severity: AlertSeverity,
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    /// One line, for titles and pager screens.
    pub summary: String,
    /// Evidence and context, shown as fields.
    pub details: BTreeMap<String, String>,
    pub remediation_id: Option<String>,
    pub starts_at_ms: i64,
    /// Set on resolve.
    pub ends_at_ms: Option<i64>,
    /// A link back to vigil (a dashboard), when configured.
    pub link: Option<String>,
}

impl Alert {
    pub fn key_for(model_id: &str, model_version: &str, policy: &str) -> String {
        format!("{model_id}/{model_version}/{policy}")
    }

    /// The firing alert for a remediation.
    pub fn from_remediation(r: &RemediationEvent) -> Self {
        let severity = match r.severity {
            Severity::Info => AlertSeverity::Info,
            Severity::Warning => AlertSeverity::Warning,
            Severity::Critical => AlertSeverity::Critical,
        };
        let mut details = BTreeMap::new();
        details.insert(
            "window".to_owned(),
            format!("[{}, {})", rfc3339(r.window_start_ms), rfc3339(r.window_end_ms)),
        );
        details.insert("action".to_owned(), format!("{:?}", r.action).to_lowercase());
        details.insert("config_hash".to_owned(), r.config_hash.clone());
        if let Some(reference) = &r.reference_id {
            details.insert("reference_id".to_owned(), reference.clone());
        }
        for e in &r.evidence {
            let name = match &e.feature {
                Some(feature) => format!("{}[{feature}]", e.metric),
                None => e.metric.clone(),
            };
            details.insert(name, format!("{} (threshold {})", e.value, e.threshold));
        }
        let first = r
            .evidence
            .first()
            .map(|e| format!(": {} = {} vs {}", e.metric, e.value, e.threshold))
            .unwrap_or_default();
        Self {
            key: Self::key_for(&r.model_id, &r.model_version, &r.policy),
            state: AlertState::Firing,
            severity,
            model_id: r.model_id.clone(),
            model_version: r.model_version.clone(),
            policy: r.policy.clone(),
            summary: format!("{} {} breached policy {}{first}", r.model_id, r.model_version, r.policy),
            details,
            remediation_id: Some(r.remediation_id.clone()),
            starts_at_ms: r.window_end_ms,
            ends_at_ms: None,
            link: None,
        }
    }

    /// The same alert, resolved at `at_ms` (the policy is healthy again).
    pub fn resolved(&self, at_ms: i64) -> Self {
        Self { state: AlertState::Resolved, ends_at_ms: Some(at_ms), ..self.clone() }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-26T21:09:00.000Z`), without a date
/// library: days to civil date after Howard Hinnant's `civil_from_days`.
pub fn rfc3339(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_727_340_000), "2026-11-26T21:09:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
