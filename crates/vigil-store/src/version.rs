use std::fmt;

/// A ClickHouse server version, as `SELECT version()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// TTL (19.6), LowCardinality without a flag (19.x) and DateTime64 (20.1) are all present
    /// from 20.3, the oldest release line vigil treats as current.
    pub const MODERN: ServerVersion = ServerVersion { major: 20, minor: 3 };

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    pub fn is_modern(self) -> bool {
        self >= Self::MODERN
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_old_and_new_version_strings() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(ServerVersion { major: 18, minor: 16 }));
        assert_eq!(ServerVersion::parse("24.8.4.13"), Some(ServerVersion { major: 24, minor: 8 }));
        assert_eq!(ServerVersion::parse("nonsense"), None);
        assert!(!ServerVersion::parse("18.16.1").unwrap().is_modern());
        assert!(ServerVersion::parse("24.8.4.13").unwrap().is_modern());
    }
}
