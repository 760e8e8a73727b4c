use thiserror::Error;

/// Everything that can go wrong sending alerts; [`AlertError::is_retryable`] tells whether a
/// retry can help.
#[derive(Debug, Error)]
pub enum AlertError {
    #[error("invalid alerts configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("receiver answered {status}")]
    Status { status: u16, retry_after: Option<std::time::Duration> },
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("outbox {path}: {source}")]
    Outbox { path: String, source: std::io::Error },
    #[error("the alert queue is full; alert dropped")]
    QueueFull,
    #[error("the notifier has stopped")]
    Stopped,
}

impl AlertError {
    /// Timeouts, connection trouble, 408, 429 and 5xx may pass; another 4xx means the request is
    /// wrong (bad key, bad payload) and repeating it cannot help.
    pub fn is_retryable(&self) -> bool {
        match self {
            AlertError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            AlertError::Transport(_) | AlertError::QueueFull => true,
            AlertError::Config(_) | AlertError::Outbox { .. } | AlertError::Stopped => false,
        }
    }
}
