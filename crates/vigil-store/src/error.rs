use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("clickhouse at {url} is unreachable: {source}")]
    Unreachable { url: String, source: clickhouse::error::Error },
    #[error("clickhouse rejected the request: {0}")]
    Rejected(clickhouse::error::Error),
    #[error("clickhouse answered version {0:?}, which vigil cannot parse")]
    BadVersion(String),
}

impl StoreError {
    /// Network trouble may pass; a rejected query (bad schema, bad data) never does. Vector
    /// refuses to retry ClickHouse codes such as 53 and 117 for the same reason.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }

    pub(crate) fn classify(url: &str, error: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        let transient = match &error {
            E::Network(_) | E::TimedOut => true,
            E::BadResponse(text) => server_code(text).is_some_and(|code| TRANSIENT_CODES.contains(&code)),
            _ => false,
        };
        if transient {
            StoreError::Unreachable { url: url.to_owned(), source: error }
        } else {
            StoreError::Rejected(error)
        }
    }
}

/// Server error codes that describe load or a restart, not the request: timeouts (159, 209,
/// 210), memory limit (241), too many parts (252).
const TRANSIENT_CODES: [u32; 5] = [159, 209, 210, 241, 252];

fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_from_a_server_exception() {
        assert_eq!(server_code("Code: 252, e.displayText() = DB::Exception: Too many parts"), Some(252));
        assert_eq!(server_code("Code: 60. DB::Exception: Table x doesn't exist"), Some(60));
        assert_eq!(server_code("bad gateway"), None);
    }
}
