//! The `[lifecycle]` section: the lifecycle consumer's group, replay bound and per-model policy,
//! its HTTP API (`[lifecycle.api]`), audit, alert resolving and serving-platform webhooks
//! (`[[lifecycle.platform]]`). `[alerts]` is `vigil_alerts::AlertsConfig` as it is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_alerts::{AlertsConfig, ReceiverConfig};
use vigil_lifecycle::{LifecycleError, LifecyclePolicy, ModelPolicy};

/// `defaults` and `models` are spelled out rather than a flattened `LifecyclePolicy`, because
/// `#[serde(flatten)]` would switch off `deny_unknown_fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSection {
    /// Consumer group for remediations; the lifecycle log itself is always read whole.
    pub group_id: String,
    /// Longest time the start-up replay of the lifecycle log may take.
    pub replay_timeout_ms: u64,
    /// For every model not listed in `models`.
    pub defaults: ModelPolicy,
    /// A model's entry replaces `defaults` whole.
    pub models: BTreeMap<String, ModelPolicy>,
    /// Where pending approvals are kept (`approvals.json`); created with the first one.
    pub state_dir: PathBuf,
    /// Write every lifecycle event and webhook delivery attempt to ClickHouse (`[clickhouse]`).
    pub audit: bool,
    /// Audit rows waiting for ClickHouse; more are dropped (counted), never waited for.
    pub audit_queue: usize,
    /// How often open alerts are checked against the monitor's `policy_checks` and resolved when
    /// healthy again; 0 never resolves them. Needs `audit` (ClickHouse).
    pub resolve_interval_ms: u64,
    /// How often canaries whose policy has `canary.analysis = true` are judged on the monitor's
    /// stored windows; 0 never. Needs `audit` (ClickHouse).
    pub canary_interval_ms: u64,
    pub api: ApiSection,
    /// Serving-platform webhooks (`kind = "platform"` or `"mlflow"`), told after every change.
    pub platform: Vec<ReceiverConfig>,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        Self {
            group_id: "vigil-lifecycle".into(),
            replay_timeout_ms: 60_000,
            defaults: ModelPolicy::default(),
            models: BTreeMap::new(),
            state_dir: PathBuf::from("/var/lib/vigil/lifecycle"),
            audit: true,
            audit_queue: 10_000,
            resolve_interval_ms: 30_000,
            canary_interval_ms: 30_000,
            api: ApiSection::default(),
            platform: Vec::new(),
        }
    }
}

/// `[lifecycle.api]`: the registry API of `vigil lifecycle`, with `/metrics` and `/health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Off only by choice: `vigil lifecycle` refuses to start the API without a token.
    pub enabled: bool,
    /// Address of the API, `/metrics` and `/health` (served even with the API off).
    pub listen: String,
    /// The bearer token (better: `VIGIL__LIFECYCLE__API__TOKEN` or `token_file`).
    pub token: String,
    /// A file holding the token (a mounted secret); surrounding white space is ignored.
    pub token_file: PathBuf,
    /// Where `vigil lifecycle approve|reject|rollback|approvals` reach the API; empty:
    /// `http://<listen>`.
    pub url: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9465".into(),
            token: String::new(),
            token_file: PathBuf::new(),
            url: String::new(),
        }
    }
}

const TOKEN_FIX: &str = "set lifecycle.api.token (or the VIGIL__LIFECYCLE__API__TOKEN environment variable, or lifecycle.api.token_file), \
                         or run without the API with lifecycle.api.enabled = false";

impl ApiSection {
    /// The token from `token` or `token_file`; an error names the key and the fix.
    pub fn token(&self) -> Result<String, String> {
        let token = if self.token_file.as_os_str().is_empty() {
            self.token.trim().to_owned()
        } else {
            std::fs::read_to_string(&self.token_file)
                .map_err(|e| {
                    format!("lifecycle.api.token_file: cannot read {}: {e}", self.token_file.display())
                })?
                .trim()
                .to_owned()
        };
        if token.is_empty() {
            return Err(format!("lifecycle.api.token: the lifecycle API needs a bearer token: {TOKEN_FIX}"));
        }
        Ok(token)
    }

    pub fn base_url(&self) -> String {
        if self.url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.url.clone()
        }
    }
}

impl LifecycleSection {
    pub fn policy(&self) -> LifecyclePolicy {
        LifecyclePolicy { defaults: self.defaults.clone(), models: self.models.clone() }
    }

    pub fn replay_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_timeout_ms)
    }

    /// Adds every problem to `errors`, each naming its key (`lifecycle.models.fraud.canary.max_weight`).
    pub fn check(&self, errors: &mut Vec<String>) {
        if self.group_id.trim().is_empty() {
            errors.push("lifecycle.group_id: must not be empty".into());
        }
        if !(1_000..=3_600_000).contains(&self.replay_timeout_ms) {
            errors.push(format!(
                "lifecycle.replay_timeout_ms: {} must be between 1000 and 3600000",
                self.replay_timeout_ms
            ));
        }
        match self.policy().validate("lifecycle") {
            Err(LifecycleError::Config(problems)) => errors.extend(problems),
            Err(other) => errors.push(other.to_string()),
            Ok(()) => {}
        }
        if self.state_dir.as_os_str().is_empty() {
            errors.push("lifecycle.state_dir: must not be empty (e.g. /var/lib/vigil/lifecycle)".into());
        }
        if self.audit_queue == 0 {
            errors.push("lifecycle.audit_queue: must be at least 1".into());
        }
        for (key, value) in [
            ("resolve_interval_ms", self.resolve_interval_ms),
            ("canary_interval_ms", self.canary_interval_ms),
        ] {
            if value != 0 && value < 1_000 {
                errors.push(format!("lifecycle.{key}: {value} must be 0 (never) or at least 1000"));
            }
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!(
                "lifecycle.api.listen: {:?} is not an address like 127.0.0.1:9465",
                self.api.listen
            ));
        }
        if !self.api.token.is_empty() && !self.api.token_file.as_os_str().is_empty() {
            errors.push("lifecycle.api.token and lifecycle.api.token_file: set one, not both".into());
        }
        if !(self.api.url.is_empty()
            || self.api.url.starts_with("http://")
            || self.api.url.starts_with("https://"))
        {
            errors.push(format!(
                "lifecycle.api.url: {:?} must be an http:// or https:// URL, or empty for http://<listen>",
                self.api.url
            ));
        }
        for (i, receiver) in self.platform.iter().enumerate() {
            if !receiver.kind.takes_traffic() {
                errors.push(format!(
                    "lifecycle.platform[{i}].kind: an alert receiver; platform webhooks are kind \"platform\" or \"mlflow\" (alert receivers go under [[alerts.receivers]])"
                ));
            }
        }
    }
}

/// Adds every problem of `[alerts]` and the platform webhooks to `errors`; no receivers is valid
/// (alerting is off). Receiver names are unique across both lists (the outbox keys by name).
pub fn check_alerts(alerts: &AlertsConfig, lifecycle: &LifecycleSection, errors: &mut Vec<String>) {
    match alerts.validate("alerts") {
        Err(vigil_alerts::AlertError::Config(problems)) => errors.extend(problems),
        Err(other) => errors.push(other.to_string()),
        Ok(()) => {}
    }
    let alert_count = alerts.receivers.len();
    for (i, receiver) in alerts.receivers.iter().enumerate() {
        if receiver.kind.takes_traffic() {
            errors.push(format!("alerts.receivers[{i}].kind: a serving-platform webhook takes no alerts; put it under [[lifecycle.platform]]"));
        }
    }
    let all: Vec<ReceiverConfig> = alerts.receivers.iter().chain(&lifecycle.platform).cloned().collect();
    let mut problems = Vec::new();
    let key = |i: usize| {
        if i < alert_count {
            format!("alerts.receivers[{i}]")
        } else {
            format!("lifecycle.platform[{}]", i - alert_count)
        }
    };
    vigil_alerts::check_receivers(&all, &key, &mut problems);
    // The alert receivers' own problems are already listed above.
    errors.extend(problems.into_iter().filter(|p| p.starts_with("lifecycle.platform")));
}

impl super::Config {
    /// Everything `vigil lifecycle` runs with; the API's token is read here, so a missing one
    /// stops the start with the key and the fix.
    pub fn lifecycle_service(&self) -> Result<vigil_lifecycle::service::ServiceSettings, String> {
        let l = &self.lifecycle;
        let api_token = if l.api.enabled { Some(l.api.token()?) } else { None };
        let mut webhooks = self.alerts.clone();
        webhooks.receivers.extend(l.platform.iter().cloned());
        Ok(vigil_lifecycle::service::ServiceSettings {
            kafka: self.lifecycle_settings(),
            listen: l
                .api
                .listen
                .parse()
                .map_err(|_| format!("lifecycle.api.listen: {:?} is not an address", l.api.listen))?,
            api_token,
            state_dir: l.state_dir.clone(),
            store: l.audit.then(|| self.store_config()),
            audit_queue: l.audit_queue,
            webhooks: (!webhooks.receivers.is_empty()).then_some(webhooks),
            resolve_interval: (l.audit && l.resolve_interval_ms > 0)
                .then(|| Duration::from_millis(l.resolve_interval_ms)),
            canary_interval: (l.audit && l.canary_interval_ms > 0)
                .then(|| Duration::from_millis(l.canary_interval_ms)),
            window_seconds: self.monitor.window_seconds,
        })
    }
}
