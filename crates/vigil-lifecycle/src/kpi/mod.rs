//! The lifecycle KPIs of a period, per model and overall, from the lifecycle log (stages, actors,
//! lineage) and the monitor's policy checks in ClickHouse (when a breach started, when its
//! remediation was sent). [`compute`] is pure; [`store`] reads the checks.
//!
//! Definitions (every time in milliseconds since the epoch, the period `[from, to)`):
//! - **deployments**: versions that became production for the first time in the period (a
//!   rollback restoring an earlier production version is no deployment); **deployment frequency**
//!   is deployments per day of the period.
//! - **lead time**: for each deployment, its time minus the version's registration (its first
//!   event).
//! - **change failure rate**: of the versions that first entered canary or production in the
//!   period, the share rolled back (by `to`).
//! - **incidents**: remediations sent in the period (distinct ids, from the policy checks and the
//!   log); **incident rate**: incidents per day.
//! - **time to detect**: remediation time minus the start of the first breached window of the
//!   breach streak that led to it.
//! - **time to remediate**: the first lifecycle event answering the remediation (rollback, hold,
//!   approval, rejection, retraining request) minus the remediation time.
//! - **lineage**: versions registered in the period, with lineage, with complete lineage
//!   ([`vigil_events::Lineage::is_complete`]), and the complete share.
//! - **governance exceptions**: manual overrides (a person kept a version a remediation was
//!   about), manual rollbacks (by a person, without a remediation), late approvals (a person's
//!   answer to a remediation later than the approval deadline), gates bypassed (a version made
//!   production without having been a canary).

pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_events::{EventKind, LifecycleEvent, Stage};

use crate::AUTOMATION_ACTOR;

const DAY_MS: f64 = 86_400_000.0;

/// One remediation as the monitor's policy checks show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationRecord {
    pub remediation_id: String,
    pub model_id: String,
    pub model_version: String,
    pub policy: String,
    /// The window whose check sent the remediation.
    pub window_start_ms: i64,
    /// Start of the first window of the breach streak that led to it.
    pub first_breach_ms: i64,
    /// When the check that sent it was computed.
    pub remediated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KpiInput<'a> {
    /// The lifecycle log in order (every model; those outside `model` are ignored).
    pub events: &'a [LifecycleEvent],
    pub remediations: &'a [RemediationRecord],
    pub from_ms: i64,
    pub to_ms: i64,
    /// Answers to a remediation later than this are late approvals.
    pub approval_deadline_ms: i64,
    /// Only this model; `None`: every model.
    pub model: Option<&'a str>,
}

/// Mean, median and count of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub count: usize,
    pub mean_s: Option<f64>,
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
}

impl Durations {
    fn of(mut ms: Vec<i64>) -> Self {
        ms.sort_unstable();
        let count = ms.len();
        if count == 0 {
            return Self::default();
        }
        let s = |v: i64| v as f64 / 1000.0;
        let median =
            if count % 2 == 1 { s(ms[count / 2]) } else { (s(ms[count / 2 - 1]) + s(ms[count / 2])) / 2.0 };
        Self {
            count,
            mean_s: Some(ms.iter().map(|v| s(*v)).sum::<f64>() / count as f64),
            median_s: Some(median),
            max_s: ms.last().map(|v| s(*v)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exceptions {
    pub manual_overrides: usize,
    pub manual_rollbacks: usize,
    pub late_approvals: usize,
    pub gates_bypassed: usize,
}

impl Exceptions {
    pub fn total(&self) -> usize {
        self.manual_overrides + self.manual_rollbacks + self.late_approvals + self.gates_bypassed
    }
}

/// The KPIs of one model (or of all, `model_id` `None`) over the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub model_id: Option<String>,
    pub deployments: usize,
    pub deployment_frequency_per_day: f64,
    pub lead_time: Durations,
    pub versions_deployed: usize,
    pub versions_rolled_back: usize,
    pub change_failure_rate: Option<f64>,
    pub incidents: usize,
    pub incident_rate_per_day: f64,
    pub time_to_detect: Durations,
    pub time_to_remediate: Durations,
    pub versions_registered: usize,
    pub versions_with_lineage: usize,
    pub versions_with_complete_lineage: usize,
    pub complete_lineage_share: Option<f64>,
    pub exceptions: Exceptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub overall: Kpis,
    pub models: Vec<Kpis>,
}

/// Longest period, in days: the KPIs of longer ones are computed per period and compared.
pub const MAX_PERIOD_DAYS: i64 = 3_660;

pub fn compute(input: &KpiInput<'_>) -> KpiReport {
    let mut models: BTreeSet<&str> = input.events.iter().map(|e| e.model_id.as_str()).collect();
    models.extend(input.remediations.iter().map(|r| r.model_id.as_str()));
    models.retain(|m| input.model.is_none_or(|only| only == *m));
    let per_model: Vec<Kpis> = models.iter().map(|m| kpis(input, Some(m))).collect();
    let mut overall = kpis(input, None);
    overall.model_id = None;
    KpiReport { from_ms: input.from_ms, to_ms: input.to_ms, overall, models: per_model }
}

fn kpis(input: &KpiInput<'_>, model: Option<&str>) -> Kpis {
    let in_scope = |m: &str| model.or(input.model).is_none_or(|only| only == m);
    let in_period = |t: i64| t >= input.from_ms && t < input.to_ms;
    let days = ((input.to_ms - input.from_ms) as f64 / DAY_MS).max(f64::MIN_POSITIVE);

    // Per (model, version): what happened to it, in log order.
    #[derive(Default)]
    struct Version {
        registered_ms: Option<i64>,
        first_production_ms: Option<i64>,
        first_deployed_ms: Option<i64>,
        was_canary_before_production: bool,
        rolled_back_ms: Option<i64>,
        lineage: Option<bool>,
    }
    let mut versions: BTreeMap<(&str, &str), Version> = BTreeMap::new();
    let mut answers: BTreeMap<&str, i64> = BTreeMap::new();
    let mut exceptions = Exceptions::default();
    let remediated: BTreeMap<&str, &RemediationRecord> =
        input.remediations.iter().map(|r| (r.remediation_id.as_str(), r)).collect();
    let mut incidents: BTreeSet<&str> = BTreeSet::new();

    for e in input.events.iter().filter(|e| in_scope(&e.model_id) && e.event_time_ms < input.to_ms) {
        let v = versions.entry((&e.model_id, &e.model_version)).or_default();
        let t = e.event_time_ms;
        if v.registered_ms.is_none() {
            v.registered_ms = Some(t);
        }
        if let Some(l) = &e.lineage {
            v.lineage = Some(v.lineage.unwrap_or(false) || l.is_complete());
        }
        let human = e.actor != AUTOMATION_ACTOR;
        if let Some(r) = &e.remediation_id {
            answers.entry(r).or_insert(t);
            if in_period(t) {
                incidents.insert(r);
            }
        }
        if e.kind == EventKind::RetrainRequested {
            continue;
        }
        match e.stage {
            Stage::Canary => {
                if v.first_deployed_ms.is_none() {
                    v.first_deployed_ms = Some(t);
                }
                if v.first_production_ms.is_none() {
                    v.was_canary_before_production = true;
                }
            }
            Stage::Production if v.first_production_ms.is_none() => {
                v.first_production_ms = Some(t);
                if v.first_deployed_ms.is_none() {
                    v.first_deployed_ms = Some(t);
                }
                if in_period(t) && !v.was_canary_before_production {
                    exceptions.gates_bypassed += 1;
                }
            }
            Stage::RolledBack if v.rolled_back_ms.is_none() => {
                v.rolled_back_ms = Some(t);
                if in_period(t) && human && e.remediation_id.is_none() {
                    exceptions.manual_rollbacks += 1;
                }
            }
            _ => {}
        }
        if let (true, Some(r)) = (human && in_period(t), &e.remediation_id) {
            if matches!(e.stage, Stage::Canary | Stage::Production | Stage::Candidate) {
                exceptions.manual_overrides += 1;
            }
            if remediated
                .get(r.as_str())
                .is_some_and(|rem| t - rem.remediated_ms > input.approval_deadline_ms)
            {
                exceptions.late_approvals += 1;
            }
        }
    }

    let deployed_in_period: Vec<&Version> =
        versions.values().filter(|v| v.first_deployed_ms.is_some_and(in_period)).collect();
    let deployments: Vec<&Version> =
        versions.values().filter(|v| v.first_production_ms.is_some_and(in_period)).collect();
    let registered: Vec<&Version> =
        versions.values().filter(|v| v.registered_ms.is_some_and(in_period)).collect();
    let rolled_back = deployed_in_period.iter().filter(|v| v.rolled_back_ms.is_some()).count();
    let with_lineage = registered.iter().filter(|v| v.lineage.is_some()).count();
    let complete = registered.iter().filter(|v| v.lineage == Some(true)).count();

    let mut detect = Vec::new();
    let mut remediate = Vec::new();
    for r in input.remediations.iter().filter(|r| in_scope(&r.model_id) && in_period(r.remediated_ms)) {
        incidents.insert(&r.remediation_id);
        detect.push(r.remediated_ms - r.first_breach_ms);
        if let Some(answered) = answers.get(r.remediation_id.as_str()) {
            remediate.push((answered - r.remediated_ms).max(0));
        }
    }
    let share = |part: usize, whole: usize| (whole > 0).then(|| part as f64 / whole as f64);
    Kpis {
        model_id: model.map(str::to_owned),
        deployments: deployments.len(),
        deployment_frequency_per_day: deployments.len() as f64 / days,
        lead_time: Durations::of(
            deployments.iter().filter_map(|v| Some(v.first_production_ms? - v.registered_ms?)).collect(),
        ),
        versions_deployed: deployed_in_period.len(),
        versions_rolled_back: rolled_back,
        change_failure_rate: share(rolled_back, deployed_in_period.len()),
        incidents: incidents.len(),
        incident_rate_per_day: incidents.len() as f64 / days,
        time_to_detect: Durations::of(detect),
        time_to_remediate: Durations::of(remediate),
        versions_registered: registered.len(),
        versions_with_lineage: with_lineage,
        versions_with_complete_lineage: complete,
        complete_lineage_share: share(complete, registered.len()),
        exceptions,
    }
}

/// Remediation records from a model version's policy checks, in window order: each check
/// with a remediation id gets the start of the breach streak it ends (consecutive `breach`
/// windows of the same model, version and policy).
pub fn remediations_from_checks(checks: &[store::CheckRow]) -> Vec<RemediationRecord> {
    let mut out: Vec<RemediationRecord> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut streak: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for c in checks {
        let key = (c.model_id.as_str(), c.model_version.as_str(), c.policy.as_str());
        let start_ms = i64::from(c.window_start) * 1000;
        if c.verdict == "breach" {
            let first = *streak.entry(key).or_insert(start_ms);
            if !c.remediation_id.is_empty() && seen.insert(c.remediation_id.clone()) {
                out.push(RemediationRecord {
                    remediation_id: c.remediation_id.clone(),
                    model_id: c.model_id.clone(),
                    model_version: c.model_version.clone(),
                    policy: c.policy.clone(),
                    window_start_ms: start_ms,
                    first_breach_ms: first,
                    remediated_ms: i64::from(c.computed_at) * 1000,
                });
            }
        } else if c.verdict == "healthy" {
            streak.remove(&key);
        }
    }
    out
}

/// Prometheus gauges of the latest KPIs (`vigil_lifecycle_kpi_*`), labelled by model (bounded
/// by the registry) and `all`.
#[derive(Clone)]
pub struct KpiGauges {
    gauges: Vec<(&'static str, prometheus::GaugeVec)>,
}

type Getter = fn(&Kpis) -> Option<f64>;

const GAUGES: [(&str, &str, Getter); 12] = [
    (
        "vigil_lifecycle_kpi_deployments",
        "Versions made production for the first time in the KPI period",
        |k| Some(k.deployments as f64),
    ),
    ("vigil_lifecycle_kpi_deployments_per_day", "Deployment frequency over the KPI period", |k| {
        Some(k.deployment_frequency_per_day)
    }),
    ("vigil_lifecycle_kpi_lead_time_seconds", "Median registration to production", |k| k.lead_time.median_s),
    ("vigil_lifecycle_kpi_change_failure_ratio", "Share of deployed versions rolled back", |k| {
        k.change_failure_rate
    }),
    ("vigil_lifecycle_kpi_incidents", "Remediations sent in the KPI period", |k| Some(k.incidents as f64)),
    ("vigil_lifecycle_kpi_incidents_per_day", "Remediations per day", |k| Some(k.incident_rate_per_day)),
    (
        "vigil_lifecycle_kpi_time_to_detect_seconds",
        "Median first breached window start to remediation",
        |k| k.time_to_detect.median_s,
    ),
    ("vigil_lifecycle_kpi_time_to_remediate_seconds", "Median remediation to the lifecycle's answer", |k| {
        k.time_to_remediate.median_s
    }),
    (
        "vigil_lifecycle_kpi_complete_lineage_ratio",
        "Share of versions registered with complete lineage",
        |k| k.complete_lineage_share,
    ),
    ("vigil_lifecycle_kpi_versions_without_lineage", "Versions registered without lineage", |k| {
        Some((k.versions_registered - k.versions_with_lineage) as f64)
    }),
    (
        "vigil_lifecycle_kpi_governance_exceptions",
        "Manual overrides, manual rollbacks, late approvals, gates bypassed",
        |k| Some(k.exceptions.total() as f64),
    ),
    ("vigil_lifecycle_kpi_period_seconds", "Length of the trailing KPI period", |_| None),
];

impl KpiGauges {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let mut gauges = Vec::new();
        for (name, help, _) in GAUGES {
            let g = prometheus::GaugeVec::new(prometheus::Opts::new(name, help), &["model"])?;
            registry.register(Box::new(g.clone()))?;
            gauges.push((name, g));
        }
        Ok(Self { gauges })
    }

    pub fn set(&self, report: &KpiReport) {
        for ((name, gauge), (_, _, get)) in self.gauges.iter().zip(GAUGES) {
            gauge.reset();
            if *name == "vigil_lifecycle_kpi_period_seconds" {
                gauge.with_label_values(&["all"]).set((report.to_ms - report.from_ms) as f64 / 1000.0);
                continue;
            }
            for k in std::iter::once(&report.overall).chain(&report.models) {
                if let Some(value) = get(k) {
                    gauge.with_label_values(&[k.model_id.as_deref().unwrap_or("all")]).set(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
