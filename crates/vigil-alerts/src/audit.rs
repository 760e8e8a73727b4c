//! What the delivery reports about each attempt, for an audit table (`alert_deliveries` in
//! ClickHouse, written by `vigil lifecycle`) and for metrics.

use crate::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed, another attempt follows after a backoff.
    Retrying,
    /// Failed for good: a non-retryable answer, or the last attempt.
    GaveUp,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retrying => "retrying",
            AttemptOutcome::GaveUp => "gave_up",
        }
    }
}

/// One attempt to deliver one message to one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    /// The outbox delivery id: the same for every attempt of one delivery.
    pub delivery_id: u64,
    pub receiver: String,
    pub message: Message,
    /// From 1; starts again at 1 when a delivery is resumed after a restart.
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    /// The receiver's answer; `None` without one (timeout, connection error).
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub at_ms: i64,
}
