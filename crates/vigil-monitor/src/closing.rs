//! The closing task: takes closable windows from the consume task over a bounded channel, merges
//! their stored partials, computes them with the pure [`PolicyState::close`] off the async
//! reactor, and makes the result durable in order: baselines, rows and checks stored, then
//! remediations published, then the streaks and decided windows committed in memory. Any
//! failure retries the same request with backoff (nothing is decided before it is durable), so
//! a ClickHouse or broker outage stalls closing, and through the full channel the consume task,
//! but never ends the monitor.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_store::{RemediationOutboxRow, Store};

use crate::close::{CloseSettings, ClosedWindow, Merged, PolicyState, Traffic, WindowKey};
use crate::kafka::Remediations;
use crate::policy::Verdict;
use crate::window::WindowState;
use crate::windowing::Window;
use crate::{MonitorError, MonitorMetrics, MonitorSettings};

/// Requests from the consume task, handled in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseRequest {
    /// The watermark passed the window's end `waited` before `handed_at`, and its partials are
    /// stored.
    Window { partition: i32, window: Window, waited: Duration, handed_at: Instant },
    /// Outcomes reached a window closed before: its performance again.
    Performance { partition: i32, window: Window },
    /// Each partition's watermark (wall-clock progress of quiet ones included), for the
    /// no-traffic policy; also when references and retired versions are read again.
    Tick { watermarks: Vec<(i32, u64)> },
    /// Partitions changed hands: read the policy state again from the store.
    Reload,
}

/// Requests that may wait between the two tasks; the consume task blocks when they are full.
pub const CLOSE_QUEUE: usize = 256;

/// How often references and retired versions are compared with the store.
const REFRESH: Duration = Duration::from_secs(30);

pub struct Closing {
    settings: CloseSettings,
    store: Store,
    remediations: Remediations,
    metrics: MonitorMetrics,
    state: PolicyState,
    /// How far back (event time) from the newest windows decided performance is read at reload.
    lookback_seconds: u64,
    refreshed: Option<Instant>,
    /// Versions already reported as having no reference (reported once each).
    missing_reference_noted: std::collections::HashSet<(String, String)>,
}

impl Closing {
    pub fn new(
        settings: &MonitorSettings,
        store: Store,
        metrics: MonitorMetrics,
        remediations: Remediations,
    ) -> Self {
        Self {
            settings: CloseSettings {
                config_hash: settings.config_hash(),
                positive_label: settings.positive_label.clone(),
                drift_policy: crate::rows::drift_policy(),
                policies: settings.policies.clone(),
                windows: settings.windows.clone(),
                baseline_min_events: settings.baseline_min_events,
            },
            store,
            remediations,
            metrics,
            state: PolicyState::default(),
            lookback_seconds: u64::from(settings.windows.longest())
                + settings.allowed_lateness.as_secs()
                + settings.join.horizon_seconds,
            refreshed: None,
            missing_reference_noted: Default::default(),
        }
    }

    /// Handles requests until the consume task hangs up, retrying each until it succeeds or
    /// `abandon` is cancelled (what is not closed then is reopened by the next start).
    pub async fn run(mut self, mut requests: mpsc::Receiver<CloseRequest>, abandon: CancellationToken) {
        let mut loaded = false;
        while let Some(request) = requests.recv().await {
            let mut backoff = Duration::from_millis(100);
            loop {
                let result = self.attempt(&request, &mut loaded).await;
                let Err(error) = result else { break };
                self.metrics.close_errors.inc();
                tracing::warn!(%error, ?request, retry_in = ?backoff, "closing failed; retrying (nothing was decided)");
                tokio::select! {
                    _ = abandon.cancelled() => return,
                    _ = tokio::time::sleep(jittered(backoff)) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }

    async fn attempt(&mut self, request: &CloseRequest, loaded: &mut bool) -> Result<(), MonitorError> {
        if !*loaded || *request == CloseRequest::Reload {
            self.reload().await?;
            *loaded = true;
        }
        self.handle(request).await
    }

    async fn handle(&mut self, request: &CloseRequest) -> Result<(), MonitorError> {
        match request {
            CloseRequest::Window { partition, window, waited, handed_at } => {
                let started = Instant::now();
                let merged = self.merged_partials(*partition, *window).await?;
                let read = started.elapsed();
                let now = unix_seconds();
                let closed = tokio::task::block_in_place(|| {
                    self.state.close(&self.settings, *partition, *window, &merged, now)
                })?;
                let computed = started.elapsed() - read;
                let windows = closed.metrics.len() as u64;
                self.make_durable(closed).await?;
                self.metrics.windows_closed.inc_by(windows);
                tracing::debug!(partition, window_start = window.start, windows, ?read, ?computed, stored = ?(started.elapsed() - read - computed), "window closed");
                // From due to durable: the wait for a flush, the queue and the close itself.
                self.metrics.close_latency_seconds.observe((*waited + handed_at.elapsed()).as_secs_f64());
            }
            CloseRequest::Performance { partition, window } => {
                let merged = self.merged_partials(*partition, *window).await?;
                let closed = tokio::task::block_in_place(|| {
                    self.state.close_performance(&self.settings, *window, &merged, unix_seconds())
                });
                self.make_durable(closed).await?;
            }
            CloseRequest::Tick { watermarks } => {
                if self.refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
                    self.refresh().await?;
                    self.refreshed = Some(Instant::now());
                }
                let closed = self.state.no_traffic(&self.settings, watermarks, unix_seconds());
                if !closed.checks.is_empty() {
                    self.make_durable(closed).await?;
                }
            }
            CloseRequest::Reload => {}
        }
        Ok(())
    }

    /// The states of the models that cut `window`, merged from the partials of its panes.
    async fn merged_partials(&self, partition: i32, window: Window) -> Result<Merged, MonitorError> {
        let partials =
            self.store.partials_on_partition(partition as u32, window.start, window.end() as u32).await?;
        tokio::task::block_in_place(|| {
            let mut merged = Merged::new();
            for p in partials {
                if !self.settings.windows.for_model(&p.model_id).has(window) {
                    continue;
                }
                let state = WindowState::decode(&p.state)?;
                merged.entry((p.model_id, p.model_version, p.segment)).or_default().merge(&state)?;
            }
            Ok(merged)
        })
    }

    /// Stores what a close produced, publishes its remediations, then commits its decisions.
    /// The remediations go to the outbox before the checks that name them, and are marked
    /// published once Kafka acknowledged them: a stored check whose remediation a crash kept
    /// from Kafka is published at the next start ([`Self::publish_unpublished`]).
    async fn make_durable(&mut self, closed: ClosedWindow) -> Result<(), MonitorError> {
        let outbox = |published: u8| -> Vec<RemediationOutboxRow> {
            closed
                .remediations
                .iter()
                .map(|event| RemediationOutboxRow {
                    remediation_id: event.remediation_id.clone(),
                    model_id: event.model_id.clone(),
                    model_version: event.model_version.clone(),
                    payload: vigil_events::encode(event),
                    published,
                    written_at: unix_seconds(),
                })
                .collect()
        };
        self.store.insert_outbox(&outbox(0)).await?;
        self.store.insert_references(&closed.baselines).await?;
        // Drift and checks first: a window counts as closed once its metrics row exists.
        self.store.insert_feature_drift(&closed.drift).await?;
        self.store.insert_policy_checks(&closed.checks).await?;
        self.store.insert_window_performance(&closed.performance).await?;
        self.store.insert_window_metrics(&closed.metrics).await?;
        for event in &closed.remediations {
            self.remediations.send(event).await?;
            tracing::warn!(model_id = %event.model_id, model_version = %event.model_version, window_start_ms = event.window_start_ms, remediation_id = %event.remediation_id, policy = %event.policy, "policy breached: remediation sent");
        }
        self.store.insert_outbox(&outbox(1)).await?;
        self.note(&closed);
        self.state.commit(closed);
        Ok(())
    }

    /// Publishes remediations decided before a crash whose publishing was not recorded: those
    /// the topic does not hold yet (a crash can fall between the broker's acknowledgement and the
    /// outbox row that records it; the topic is read back from the row's time to tell).
    async fn publish_unpublished(&mut self) -> Result<(), MonitorError> {
        let mut rows = self.store.unpublished_remediations().await?;
        if rows.is_empty() {
            return Ok(());
        }
        let ids: std::collections::HashSet<String> = rows.iter().map(|r| r.remediation_id.clone()).collect();
        // Less a minute: the row's time and the record's come from clocks that may differ a little.
        let since_ms = i64::from(rows.iter().map(|r| r.written_at).min().unwrap_or(0)) * 1000 - 60_000;
        let sent = self.remediations.already_sent(&ids, since_ms).await?;
        for row in &mut rows {
            row.published = 1;
            row.written_at = unix_seconds();
            let event: vigil_events::RemediationEvent = match vigil_events::decode(&row.payload) {
                Ok(event) => event,
                Err(error) => {
                    // Written by this code from a valid event; retrying a damaged row would stop
                    // closing for good.
                    tracing::error!(%error, remediation_id = %row.remediation_id, "remediation_outbox row does not decode; skipped");
                    continue;
                }
            };
            if sent.contains(&row.remediation_id) {
                tracing::info!(remediation_id = %row.remediation_id, "remediation sent before a restart, already in the topic");
                continue;
            }
            self.remediations.send(&event).await?;
            self.metrics.remediations.inc();
            tracing::warn!(model_id = %event.model_id, model_version = %event.model_version, remediation_id = %event.remediation_id, policy = %event.policy, "remediation decided before a restart published");
        }
        self.store.insert_outbox(&rows).await?;
        Ok(())
    }

    /// Counters, gauges and log lines for a durable close.
    fn note(&mut self, closed: &ClosedWindow) {
        let m = &self.metrics;
        m.remediations.inc_by(closed.remediations.len() as u64);
        m.references_created.inc_by(closed.baselines.len() as u64);
        m.drift_tests.inc_by(closed.drift_tests);
        m.features_drifted.inc_by(closed.features_drifted);
        m.performance_rows.inc_by(closed.performance.len() as u64);
        for b in &closed.baselines {
            tracing::info!(model_id = %b.model_id, model_version = %b.model_version, reference_id = %b.reference_id, events = b.events, "baseline reference created");
        }
        for (model_id, model_version, events) in &closed.without_reference {
            m.windows_without_reference.inc();
            if self.missing_reference_noted.insert((model_id.clone(), model_version.clone())) {
                tracing::warn!(
                    model_id,
                    model_version,
                    events,
                    baseline_min_events = self.settings.baseline_min_events,
                    "no reference for this version yet: drift is not tested until a window reaches \
                     monitor.baseline_min_events or a reference is uploaded (vigil reference upload)"
                );
            }
        }
        for row in closed.metrics.iter().filter(|r| r.segment.is_empty()) {
            let drifted = closed.drift.iter().filter(|d| {
                d.segment.is_empty() && d.model_id == row.model_id && d.model_version == row.model_version
            });
            let tested = drifted.clone().count();
            let window = crate::metrics::LatestWindow {
                events: row.events,
                drifted_features: (tested > 0).then(|| drifted.filter(|d| d.drifted == 1).count()),
                latency_p99_ms: row.latency_p99_ms,
            };
            m.latest.window(&row.model_id, &row.model_version, &window);
        }
        for c in closed.checks.iter().filter(|c| c.verdict != Verdict::InsufficientData.name()) {
            m.latest.verdict(&c.model_id, &c.model_version, &c.policy, c.verdict == Verdict::Breach.name());
        }
        for p in closed.performance.iter().filter(|p| p.segment.is_empty() && p.labeled > 0) {
            m.latest.performance(&p.model_id, &p.model_version, p.accuracy, p.coverage);
        }
    }

    /// The policy state as stored: streaks, decided windows, references, baseline performance,
    /// traffic, retired versions. At start and whenever partitions change hands.
    async fn reload(&mut self) -> Result<(), MonitorError> {
        let mut state = PolicyState::default();
        for decision in self.store.latest_decisions().await? {
            state.streaks.restore(
                &decision.model_id,
                &decision.model_version,
                &decision.policy,
                decision.window_start,
                decision.streak,
            );
            self.metrics.latest.verdict(
                &decision.model_id,
                &decision.model_version,
                &decision.policy,
                decision.verdict == Verdict::Breach.name(),
            );
        }
        // Performance is judged when a window first has enough outcomes, not in window order:
        // the windows outcomes can still reach keep their own record.
        let newest = self.store.newest_windows().await?;
        let since =
            newest.values().min().map_or(0, |w| u64::from(*w).saturating_sub(self.lookback_seconds) as u32);
        let policy = self.settings.policies.default.performance.escalation.name.clone();
        for (model_id, model_version, window_start) in self.store.decided_windows(&policy, since).await? {
            state.performance_decided.insert(WindowKey { model_id, model_version, window_start });
        }
        for row in self.store.baseline_performance().await? {
            let summary = crate::performance::PerformanceSummary {
                labeled: row.labeled,
                accuracy: row.accuracy,
                mae: row.mae,
                ..Default::default()
            };
            state.reference_performance.insert(row.reference_id, summary);
        }
        for reference in self.store.references_in_use().await? {
            let decoded = tokio::task::block_in_place(|| WindowState::decode(&reference.state))?;
            state
                .references
                .insert((reference.model_id, reference.model_version), (reference.reference_id, decoded));
        }
        for (model_id, model_version, partition, until_s) in self.store.version_traffic().await? {
            state.traffic.insert((model_id, model_version), Traffic { partition: partition as i32, until_s });
        }
        state.retired = self.store.retired_versions().await?.into_iter().collect();
        self.state = state;
        self.refreshed = Some(Instant::now());
        self.publish_unpublished().await
    }

    /// Takes up references uploaded (or otherwise changed) since they were loaded, and the
    /// versions the lifecycle retired since.
    async fn refresh(&mut self) -> Result<(), MonitorError> {
        let mut changed = HashMap::new();
        for info in self.store.reference_list(None).await?.into_iter().filter(|r| r.in_use) {
            let key = (info.model_id.clone(), info.model_version.clone());
            if self.state.references.get(&key).is_some_and(|(id, _)| *id == info.reference_id) {
                continue;
            }
            let Some(row) = self.store.reference(&info.reference_id).await? else { continue };
            let state = tokio::task::block_in_place(|| WindowState::decode(&row.state))?;
            tracing::info!(model_id = %key.0, model_version = %key.1, reference_id = %info.reference_id, source = %info.source, "reference changed: later windows are tested against it");
            changed.insert(key, (info.reference_id, state));
        }
        for (key, reference) in changed {
            self.missing_reference_noted.remove(&key);
            self.state.references.insert(key, reference);
        }
        self.state.retired = self.store.retired_versions().await?.into_iter().collect();
        Ok(())
    }
}

/// `base` plus up to a quarter of it at random, so many monitors do not retry in step.
fn jittered(base: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

fn unix_seconds() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}
