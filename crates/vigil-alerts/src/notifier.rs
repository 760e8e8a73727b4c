//! Delivery: a dispatcher that deduplicates and records each message (an alert, or a serving-
//! platform update) in the outbox, then one lane per receiver that sends its deliveries in order
//! with retries. Lanes are independent tasks, so a receiver that hangs or rate-limits delays only
//! its own messages; within a lane a resolve can never overtake its trigger, nor an older traffic
//! split a newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audit::{AttemptOutcome, DeliveryAttempt};
use crate::config::{AlertsConfig, DeliveryConfig, ReceiverConfig};
use crate::outbox::{track_open, Delivery, Outbox};
use crate::payload::{self, WebhookRequest};
use crate::{Alert, AlertError, Message, TrafficUpdate};

/// Counters since start, for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    /// Refused because the queue was full.
    pub dropped: AtomicU64,
    /// Skipped: the receiver already had this alert in this state.
    pub deduplicated: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    /// Given up: a non-retryable answer, or every attempt failed.
    pub failed: AtomicU64,
    /// Audit rows dropped because the audit channel was full.
    pub audit_dropped: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub dropped: u64,
    pub deduplicated: u64,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub audit_dropped: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: get(&self.accepted),
            dropped: get(&self.dropped),
            deduplicated: get(&self.deduplicated),
            delivered: get(&self.delivered),
            retried: get(&self.retried),
            failed: get(&self.failed),
            audit_dropped: get(&self.audit_dropped),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

type OpenAlerts = Arc<Mutex<HashMap<String, Alert>>>;

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Message>,
    stats: Arc<Stats>,
    open: OpenAlerts,
}

impl Notifier {
    /// Queues an alert without waiting: a full queue refuses it (counted) so the caller, a
    /// pipeline, is never blocked by a slow receiver.
    pub fn notify(&self, alert: Alert) -> Result<(), AlertError> {
        self.send(Message::Alert(alert))
    }

    /// Queues a serving-platform update for the `platform` and `mlflow` receivers, like
    /// [`Notifier::notify`].
    pub fn notify_traffic(&self, update: TrafficUpdate) -> Result<(), AlertError> {
        self.send(Message::Traffic(update))
    }

    /// Queues a retraining request for the `airflow`, `argo_workflows`, `kubeflow` and
    /// `retrain_webhook` receivers, like [`Notifier::notify`].
    pub fn notify_retrain(&self, request: crate::RetrainRequest) -> Result<(), AlertError> {
        self.send(Message::Retrain(Box::new(request)))
    }

    /// The alerts fired and not resolved yet (the newest copy per key), restored from the outbox
    /// after a restart: what a "healthy again" check may resolve.
    pub fn open_alerts(&self) -> Vec<Alert> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut alerts: Vec<Alert> = open.values().cloned().collect();
        alerts.sort_by(|a, b| a.key.cmp(&b.key));
        alerts
    }

    fn send(&self, message: Message) -> Result<(), AlertError> {
        match self.queue.try_send(message) {
            Ok(()) => {
                bump(&self.stats.accepted);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.stats.dropped);
                Err(AlertError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AlertError::Stopped),
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Alerts accepted but not yet taken by the dispatcher (and so not yet in the outbox): wait
    /// for zero before cancelling at shutdown, or they are lost.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

type SharedOutbox = Arc<Mutex<Outbox>>;

/// Opens the outbox, re-queues what it still holds, and starts the dispatcher and one lane per
/// receiver. Everything stops when `shutdown` is cancelled; deliveries in flight then stay in the
/// outbox and go out after the next start (at least once: receivers dedup by alert key).
pub fn start(
    config: &AlertsConfig,
    shutdown: CancellationToken,
) -> Result<(Notifier, JoinSet<()>), AlertError> {
    start_with_audit(config, shutdown, None)
}

/// [`start`], and one [`DeliveryAttempt`] per attempt to `audit` (for ClickHouse and metrics). A
/// full audit channel drops the attempt (counted in `Stats::audit_dropped`) rather than delay a
/// delivery.
pub fn start_with_audit(
    config: &AlertsConfig,
    shutdown: CancellationToken,
    audit: Option<mpsc::Sender<DeliveryAttempt>>,
) -> Result<(Notifier, JoinSet<()>), AlertError> {
    config.validate("alerts")?;
    let (outbox, recovered) = Outbox::open(&config.outbox_dir)?;
    let outbox: SharedOutbox = Arc::new(Mutex::new(outbox));
    let client = reqwest::Client::builder()
        .timeout(config.delivery.request_timeout)
        .connect_timeout(config.delivery.request_timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let stats = Arc::new(Stats::default());
    let mut tasks = JoinSet::new();
    let mut lanes = HashMap::new();
    for receiver in &config.receivers {
        let (tx, rx) = mpsc::channel(config.delivery.lane_capacity);
        lanes.insert(receiver.name.clone(), tx);
        let lane = Lane {
            receiver: receiver.clone(),
            delivery: config.delivery.clone(),
            client: client.clone(),
            outbox: outbox.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            audit: audit.clone(),
        };
        tasks.spawn(lane.run(rx));
    }
    if !recovered.pending.is_empty() {
        tracing::info!(pending = recovered.pending.len(), "alert outbox: resending undelivered alerts");
    }
    let (queue, messages) = mpsc::channel(config.queue_capacity);
    let open: OpenAlerts = Arc::new(Mutex::new(recovered.open));
    let dispatcher = Dispatcher {
        receivers: config.receivers.iter().map(|r| (r.name.clone(), r.kind.channel())).collect(),
        lanes,
        seen: recovered.seen,
        open: open.clone(),
        next_id: recovered.next_id,
        outbox,
        stats: stats.clone(),
        shutdown,
    };
    tasks.spawn(dispatcher.run(recovered.pending, messages));
    Ok((Notifier { queue, stats, open }, tasks))
}

struct Dispatcher {
    /// Name, and the messages it takes.
    receivers: Vec<(String, crate::Channel)>,
    lanes: HashMap<String, mpsc::Sender<Delivery>>,
    /// Last mark queued per (receiver, key): the dedup.
    seen: HashMap<(String, String), String>,
    open: OpenAlerts,
    next_id: u64,
    outbox: SharedOutbox,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    async fn run(mut self, pending: Vec<Delivery>, mut messages: mpsc::Receiver<Message>) {
        for delivery in pending {
            if !self.lanes.contains_key(&delivery.receiver) {
                tracing::warn!(receiver = %delivery.receiver, id = delivery.id, "outbox delivery for a receiver no longer configured; dropped");
                record(&self.outbox, |o| o.done(delivery.id, false));
                continue;
            }
            if !self.to_lane(delivery).await {
                return;
            }
        }
        loop {
            let message = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            if let Message::Alert(alert) = &message {
                track_open(&mut self.open.lock().unwrap_or_else(|p| p.into_inner()), alert);
            }
            let channel = message.channel();
            let (key, mark) = (message.key(), message.mark());
            for (receiver, takes) in self.receivers.clone() {
                if takes != channel {
                    continue;
                }
                let slot = (receiver.clone(), key.clone());
                if !message.is_news(self.seen.get(&slot).map(String::as_str)) {
                    bump(&self.stats.deduplicated);
                    continue;
                }
                self.seen.insert(slot, mark.clone());
                let delivery = Delivery { id: self.next_id, receiver, message: message.clone() };
                self.next_id += 1;
                // Recorded before it is attempted, so a crash cannot lose it.
                record(&self.outbox, |o| o.enqueued(&delivery));
                if !self.to_lane(delivery).await {
                    return;
                }
            }
        }
    }

    /// Hands a delivery to its lane, waiting while the lane is full; false on shutdown.
    async fn to_lane(&self, delivery: Delivery) -> bool {
        let Some(lane) = self.lanes.get(&delivery.receiver) else {
            return true;
        };
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            sent = lane.send(delivery) => sent.is_ok(),
        }
    }
}

/// Outbox trouble (a full disk) must not stop alerting: the alert still goes out, it is only
/// not durable, and the error is logged.
fn record(outbox: &SharedOutbox, write: impl FnOnce(&mut Outbox) -> Result<(), AlertError>) {
    let mut outbox = outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(error) = write(&mut outbox) {
        tracing::error!(%error, "alert outbox write failed");
    }
}

struct Lane {
    receiver: ReceiverConfig,
    delivery: DeliveryConfig,
    client: reqwest::Client,
    outbox: SharedOutbox,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    audit: Option<mpsc::Sender<DeliveryAttempt>>,
}

impl Lane {
    async fn run(self, mut deliveries: mpsc::Receiver<Delivery>) {
        loop {
            let delivery = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return,
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let Some(delivered) = self.deliver(&delivery).await else {
                return;
            };
            record(&self.outbox, |o| o.done(delivery.id, delivered));
        }
    }

    /// Sends until delivered (`Some(true)`), given up (`Some(false)`) or shut down (`None`). A
    /// delivery of several requests (MLflow's aliases) sends them in order; a retry resumes at
    /// the first one not yet accepted.
    async fn deliver(&self, delivery: &Delivery) -> Option<bool> {
        let receiver = self.receiver.name.as_str();
        let key = delivery.message.key();
        let mut accepted = 0;
        for attempt in 1..=self.delivery.max_attempts {
            let requests = payload::build(&self.receiver.kind, &delivery.message, delivery.id, now_ms());
            let sent = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                sent = send_all(&self.client, &requests, &mut accepted) => sent,
            };
            let error = match sent {
                Ok(status) => {
                    self.audit(delivery, attempt, AttemptOutcome::Delivered, Ok(status));
                    bump(&self.stats.delivered);
                    tracing::debug!(receiver, id = delivery.id, %key, attempt, "delivered");
                    return Some(true);
                }
                Err(error) => error,
            };
            if !error.is_retryable() || attempt == self.delivery.max_attempts {
                self.audit(delivery, attempt, AttemptOutcome::GaveUp, Err(&error));
                bump(&self.stats.failed);
                tracing::error!(receiver, id = delivery.id, %key, attempt, %error, "delivery given up");
                return Some(false);
            }
            let wait = match &error {
                AlertError::Status { retry_after: Some(after), .. } => {
                    (*after).min(self.delivery.max_retry_after)
                }
                _ => full_jitter(&self.delivery, attempt),
            };
            self.audit(delivery, attempt, AttemptOutcome::Retrying, Err(&error));
            bump(&self.stats.retried);
            tracing::warn!(receiver, id = delivery.id, attempt, ?wait, %error, "delivery failed, retrying");
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        Some(false)
    }
}

impl Lane {
    fn audit(
        &self,
        delivery: &Delivery,
        attempt: u32,
        outcome: AttemptOutcome,
        result: Result<u16, &AlertError>,
    ) {
        let Some(audit) = &self.audit else { return };
        let attempt = DeliveryAttempt {
            delivery_id: delivery.id,
            receiver: self.receiver.name.clone(),
            message: delivery.message.clone(),
            attempt,
            outcome,
            http_status: match result {
                Ok(status) => Some(status),
                Err(AlertError::Status { status, .. }) => Some(*status),
                Err(_) => None,
            },
            error: result.err().map(ToString::to_string),
            at_ms: now_ms(),
        };
        if audit.try_send(attempt).is_err() {
            bump(&self.stats.audit_dropped);
        }
    }
}

/// Sends `requests[*accepted..]` in order, counting each one accepted; the last status.
async fn send_all(
    client: &reqwest::Client,
    requests: &[WebhookRequest],
    accepted: &mut usize,
) -> Result<u16, AlertError> {
    let mut status = 200;
    while let Some(request) = requests.get(*accepted) {
        status = send(client, request).await?;
        *accepted += 1;
    }
    Ok(status)
}

async fn send(client: &reqwest::Client, request: &WebhookRequest) -> Result<u16, AlertError> {
    let method = match request.method {
        "DELETE" => reqwest::Method::DELETE,
        _ => reqwest::Method::POST,
    };
    let mut builder = client.request(method, &request.url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await?;
    let status = response.status();
    // A 409 to a request named by its idempotency key: an earlier attempt created the run.
    if status.is_success() || (request.conflict_is_done && status == reqwest::StatusCode::CONFLICT) {
        return Ok(status.as_u16());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Err(AlertError::Status { status: status.as_u16(), retry_after })
}

/// A random wait in [0, min(max_backoff, initial_backoff * 2^(attempt-1))] ("full jitter"):
/// spreads retries of many senders instead of synchronising them.
fn full_jitter(config: &DeliveryConfig, attempt: u32) -> Duration {
    let ceiling =
        config.initial_backoff.saturating_mul(1u32 << (attempt - 1).min(20)).min(config.max_backoff);
    Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_exponential_ceiling() {
        let config = DeliveryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..DeliveryConfig::default()
        };
        for attempt in 1..30 {
            let ceiling = Duration::from_millis((100u64 << (attempt - 1).min(20)).min(1000));
            for _ in 0..50 {
                assert!(full_jitter(&config, attempt) <= ceiling);
            }
        }
    }
}
