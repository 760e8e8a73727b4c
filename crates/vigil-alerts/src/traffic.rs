//! What the serving platform is told after a lifecycle change, and the message type the delivery
//! carries (an alert or such an update).

use serde::{Deserialize, Serialize};

use crate::{Alert, AlertState};

/// One model's desired serving state after a lifecycle change: which version is production,
/// which is the canary at what share, and the events that led there. It is the whole state,
/// not a delta, so sending it again (a retry, a restart) is harmless; `event_id`, the last
/// lifecycle event applied, is the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficUpdate {
    pub model_id: String,
    pub event_id: String,
    pub production: Option<String>,
    pub canary: Option<CanarySplit>,
    /// The lifecycle events of this change, oldest first (empty for a start-up resend).
    pub changes: Vec<StageChange>,
    /// When the change was applied, milliseconds since the epoch.
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySplit {
    pub model_version: String,
    /// Share of the model's traffic in (0, 1].
    pub traffic_weight: f64,
}

/// One lifecycle event as JSON (`vigil-lifecycle`'s API shows events in this shape too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageChange {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    /// The Avro symbol (`ROLLED_BACK`, `PRODUCTION`, ...).
    pub stage: String,
    pub traffic_weight: Option<f64>,
    pub reason: String,
    pub actor: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
    /// `STAGE_CHANGE` or `RETRAIN_REQUESTED` (then `stage` is the version's current one).
    #[serde(default = "stage_change")]
    pub kind: String,
    /// Where the version came from, on the event that registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageView>,
}

fn stage_change() -> String {
    "STAGE_CHANGE".into()
}

/// A version's lineage as JSON (`Lineage` in `schemas/lifecycle.avsc`); every field optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_run_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetView {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl TrafficUpdate {
    /// Each serving version's share of traffic: production gets what the canary does not.
    pub fn weights(&self) -> Vec<(String, f64)> {
        let canary = self.canary.as_ref().map_or(0.0, |c| c.traffic_weight);
        let mut weights = Vec::new();
        if let Some(production) = &self.production {
            weights.push((production.clone(), 1.0 - canary));
        }
        if let Some(c) = &self.canary {
            weights.push((c.model_version.clone(), c.traffic_weight));
        }
        weights
    }

    /// The version the change is about: the first event's (a rollback names the failed one).
    pub fn model_version(&self) -> &str {
        self.changes
            .first()
            .map(|c| c.model_version.as_str())
            .or(self.production.as_deref())
            .unwrap_or_default()
    }
}

/// What one delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Alert(Alert),
    Traffic(TrafficUpdate),
    Retrain(Box<crate::RetrainRequest>),
}

impl Message {
    /// What dedup is keyed by, per receiver: the alert key, or the model for platform updates
    /// (each update supersedes the last).
    pub fn key(&self) -> String {
        match self {
            Message::Alert(alert) => alert.key.clone(),
            Message::Traffic(update) => format!("traffic/{}", update.model_id),
            Message::Retrain(request) => format!("retrain/{}", request.remediation_id),
        }
    }

    /// The state of `key` this message brings: `firing`/`resolved`, or the update's event id.
    pub fn mark(&self) -> String {
        match self {
            Message::Alert(alert) => alert.state.as_str().to_owned(),
            Message::Traffic(update) => update.event_id.clone(),
            Message::Retrain(request) => request.idempotency_key.clone(),
        }
    }

    pub fn model_id(&self) -> &str {
        match self {
            Message::Alert(alert) => &alert.model_id,
            Message::Traffic(update) => &update.model_id,
            Message::Retrain(request) => &request.model_id,
        }
    }

    /// Whether a receiver that last got `last` for this key must get this message too. The same
    /// state twice is a duplicate, and a resolve for an alert the receiver never got has nothing
    /// to close.
    /// The receivers that take this message.
    pub fn channel(&self) -> crate::config::Channel {
        match self {
            Message::Alert(_) => crate::config::Channel::Alerts,
            Message::Traffic(_) => crate::config::Channel::Traffic,
            Message::Retrain(_) => crate::config::Channel::Retrain,
        }
    }

    pub fn is_news(&self, last: Option<&str>) -> bool {
        match self {
            Message::Alert(alert) if alert.state == AlertState::Resolved && last.is_none() => false,
            _ => last != Some(self.mark().as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::fixtures::{alert, traffic};

    #[test]
    fn weights_give_production_the_rest() {
        assert_eq!(traffic().weights(), vec![("v1".to_owned(), 0.8), ("v2".to_owned(), 0.2)]);
        let rolled_back = TrafficUpdate { canary: None, ..traffic() };
        assert_eq!(rolled_back.weights(), vec![("v1".to_owned(), 1.0)]);
    }

    #[test]
    fn news_per_key_and_mark() {
        let firing = Message::Alert(alert());
        let resolved = Message::Alert(alert().resolved(1));
        assert!(firing.is_news(None));
        assert!(!firing.is_news(Some("firing")));
        assert!(resolved.is_news(Some("firing")));
        assert!(!resolved.is_news(None), "nothing to close");
        assert!(!resolved.is_news(Some("resolved")));
        let update = Message::Traffic(traffic());
        assert_eq!(update.key(), "traffic/fraud");
        assert!(update.is_news(None));
        assert!(!update.is_news(Some("api:fraud:v2:CANARY:1")));
        assert!(update.is_news(Some("an-earlier-event")));
    }
}
