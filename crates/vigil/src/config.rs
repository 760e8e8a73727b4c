//! vigil's configuration: built-in defaults, then a TOML file, then `VIGIL__SECTION__KEY`
//! environment variables. Unknown keys are errors, and every invalid value is reported at once
//! with its key and how to fix it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use vigil_events::topics;

mod lifecycle;
mod policy;
mod windows;
pub use lifecycle::LifecycleSection;
pub use policy::{
    LatencyPolicySection, ModelPolicySection, NoTrafficPolicySection, PerformancePolicySection, PolicySection,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaSection,
    pub topics: TopicsSection,
    pub clickhouse: ClickHouseSection,
    pub monitor: MonitorSection,
    pub http: HttpSection,
    pub lifecycle: LifecycleSection,
    /// No receivers (the default): alerting is off.
    pub alerts: vigil_alerts::AlertsConfig,
    /// A Confluent-compatible Schema Registry, for events in its wire format; off by default.
    pub schema_registry: SchemaRegistrySection,
}

/// Where the monitor fetches the writer schemas of Confluent-framed events (magic byte 0 and a
/// 4-byte schema id; docs/schemas.md). vigil's own single-object events never need it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistrySection {
    /// Base URL of the Confluent API, e.g. `http://127.0.0.1:8081` (Confluent, Karapace) or
    /// `http://127.0.0.1:8081/apis/ccompat/v7` (Apicurio); empty turns it off.
    pub url: String,
    pub timeout_ms: u64,
    /// Writer schemas kept in memory (registry ids are immutable: a forgotten one is fetched again).
    pub cache_capacity: usize,
}

impl Default for SchemaRegistrySection {
    fn default() -> Self {
        Self { url: String::new(), timeout_ms: 5_000, cache_capacity: 1_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Comma-separated host:port list.
    pub brokers: String,
    /// Extra librdkafka settings for every client (security.protocol, sasl.*, timeouts).
    pub client: BTreeMap<String, String>,
    /// Partitions of topics vigil creates when they are missing.
    pub topic_partitions: i32,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self { brokers: "127.0.0.1:9092".into(), client: BTreeMap::new(), topic_partitions: 4 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsSection {
    pub predictions: String,
    pub outcomes: String,
    pub deadletter: String,
    pub remediations: String,
    pub lifecycle: String,
}

impl Default for TopicsSection {
    fn default() -> Self {
        Self {
            predictions: topics::PREDICTIONS.into(),
            outcomes: topics::OUTCOMES.into(),
            deadletter: topics::DEADLETTER.into(),
            remediations: topics::REMEDIATIONS.into(),
            lifecycle: topics::LIFECYCLE.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSection {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Days of rows kept on servers with TTL (20.3 and later); 0 keeps everything.
    pub retention_days: u32,
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "vigil".into(),
            user: "default".into(),
            password: String::new(),
            retention_days: 400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSection {
    pub group_id: String,
    /// Kafka static group membership (`group.instance.id`): a monitor restarted with the same
    /// id gets its partitions back at once instead of after the dead member's session timeout.
    /// Unique per running instance (e.g. the StatefulSet pod name); unset, membership is dynamic.
    pub instance_id: Option<String>,
    /// How long the broker keeps a silent member's partitions (ms); with `instance_id` set this
    /// is also how long a member may be down before its partitions move to another member.
    pub session_timeout_ms: u64,
    /// Threads that decode and update window state in parallel, each for a share of the
    /// assigned partitions (a partition is never split); 0 (the default) uses one per core.
    pub threads: usize,
    /// Window length in event time. Windows are tumbling unless `slide_seconds` is shorter.
    pub window_seconds: u32,
    /// A window starts every this many seconds (sliding windows overlap by `window_seconds -
    /// slide_seconds`); unset, it equals `window_seconds` (tumbling).
    pub slide_seconds: Option<u32>,
    /// Segment tags that get windows of their own besides all traffic.
    pub segment_tags: Vec<String>,
    pub max_segments_per_model: usize,
    /// A window closes once events this much newer than its end have been seen on its partition;
    /// later events still count (the window is recomputed) and are reported as late.
    pub allowed_lateness_seconds: u32,
    /// A partition whose event time stands still this long (wall clock) closes its windows as if
    /// time had moved on; 0 closes by event time only.
    pub idle_timeout_seconds: u64,
    /// A version without a reference takes its first closed window with at least this many
    /// events as its baseline.
    pub baseline_min_events: u64,
    /// How long (event time) a prediction waits for its outcome, and an outcome for its
    /// prediction, before it counts as expired. Sizing: docs/monitor.md.
    pub join_horizon_seconds: u64,
    /// Waiting predictions and outcomes kept per partition; the oldest beyond it are evicted.
    pub join_capacity: usize,
    /// The class a binary model's `score` is the probability of.
    pub positive_label: String,
    /// When drift verdicts become a remediation (`[monitor.policy]`).
    pub policy: PolicySection,
    /// Accuracy and error budgets (`[monitor.performance_policy]`).
    pub performance_policy: PerformancePolicySection,
    /// Serving latency budget (`[monitor.latency_policy]`); off until `max_p99_ms` is set.
    pub latency_policy: LatencyPolicySection,
    /// A version that goes quiet (`[monitor.no_traffic_policy]`); off until `windows` is set.
    pub no_traffic_policy: NoTrafficPolicySection,
    /// Per-model thresholds (`[monitor.models.<model id>]`), replacing the defaults above.
    pub models: BTreeMap<String, ModelPolicySection>,
    pub flush_interval_ms: u64,
    pub max_pending_messages: usize,
    pub drain_timeout_ms: u64,
}

impl Default for MonitorSection {
    fn default() -> Self {
        Self {
            group_id: "vigil-monitor".into(),
            instance_id: None,
            session_timeout_ms: 45_000,
            threads: 0,
            window_seconds: 60,
            slide_seconds: None,
            segment_tags: Vec::new(),
            max_segments_per_model: 100,
            allowed_lateness_seconds: 60,
            idle_timeout_seconds: 300,
            baseline_min_events: 500,
            join_horizon_seconds: 86_400,
            join_capacity: 250_000,
            positive_label: "1".into(),
            policy: PolicySection::default(),
            performance_policy: PerformancePolicySection::default(),
            latency_policy: LatencyPolicySection::default(),
            no_traffic_policy: NoTrafficPolicySection::default(),
            models: BTreeMap::new(),
            flush_interval_ms: 1_000,
            max_pending_messages: 100_000,
            drain_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address for /metrics and /healthz.
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

/// Every problem found in a configuration, each naming its key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads defaults, then `file` if given, then the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::load_from(file, environment())
    }

    fn load_from(file: Option<&Path>, env: config::Environment) -> Result<Self, ConfigErrors> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigErrors(vec![format!(
                    "config file {}: not found (pass --config with an existing file, or omit it to use defaults)",
                    path.display()
                )]));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let config: Config = builder
            .add_source(env)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(message);
            }
        };
        let brokers_ok = !self.kafka.brokers.trim().is_empty()
            && self.kafka.brokers.split(',').all(|b| {
                b.trim().rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            });
        check(
            brokers_ok,
            format!(
                "kafka.brokers: {:?} is not a host:port list (e.g. \"127.0.0.1:9092\")",
                self.kafka.brokers
            ),
        );
        check(
            (1..=1000).contains(&self.kafka.topic_partitions),
            format!("kafka.topic_partitions: {} must be between 1 and 1000", self.kafka.topic_partitions),
        );
        for (key, topic) in [
            ("topics.predictions", &self.topics.predictions),
            ("topics.outcomes", &self.topics.outcomes),
            ("topics.deadletter", &self.topics.deadletter),
            ("topics.remediations", &self.topics.remediations),
            ("topics.lifecycle", &self.topics.lifecycle),
        ] {
            check(valid_topic(topic), format!("{key}: {topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-', at most 249)"));
        }
        check(
            self.topics.deadletter != self.topics.predictions,
            "topics.deadletter: must differ from topics.predictions, or dead letters would be consumed again"
                .into(),
        );
        check(
            self.clickhouse.url.starts_with("http://") || self.clickhouse.url.starts_with("https://"),
            format!("clickhouse.url: {:?} must start with http:// or https:// (the HTTP interface, port 8123 by default)", self.clickhouse.url),
        );
        check(
            vigil_store::is_valid_identifier(&self.clickhouse.database),
            format!(
                "clickhouse.database: {:?} must be letters, digits and '_', not starting with a digit",
                self.clickhouse.database
            ),
        );
        let r = &self.schema_registry;
        check(
            r.url.is_empty() || r.url.starts_with("http://") || r.url.starts_with("https://"),
            format!(
                "schema_registry.url: {:?} must start with http:// or https:// (or be empty: off)",
                r.url
            ),
        );
        check(
            (100..=120_000).contains(&r.timeout_ms),
            format!("schema_registry.timeout_ms: {} must be between 100 and 120000", r.timeout_ms),
        );
        check(
            (1..=100_000).contains(&r.cache_capacity),
            format!("schema_registry.cache_capacity: {} must be between 1 and 100000", r.cache_capacity),
        );
        let m = &self.monitor;
        check(!m.group_id.trim().is_empty(), "monitor.group_id: must not be empty".into());
        check(
            m.instance_id.as_deref().is_none_or(|id| {
                !id.is_empty() && id.len() <= 249 && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            }),
            format!(
                "monitor.instance_id: {:?} must be 1 to 249 characters of letters, digits, '.', '_' and '-' (e.g. the pod name)",
                m.instance_id.as_deref().unwrap_or_default()
            ),
        );
        check(
            m.threads <= vigil_monitor::MAX_SHARDS,
            format!(
                "monitor.threads: {} must be at most {} (0 = one per core)",
                m.threads,
                vigil_monitor::MAX_SHARDS
            ),
        );
        check(
            (6_000..=300_000).contains(&m.session_timeout_ms),
            format!(
                "monitor.session_timeout_ms: {} must be between 6000 and 300000 (the broker's default bounds)",
                m.session_timeout_ms
            ),
        );
        check(
            (10..=600_000).contains(&m.flush_interval_ms),
            format!("monitor.flush_interval_ms: {} must be between 10 and 600000", m.flush_interval_ms),
        );
        check(
            m.segment_tags.iter().all(|t| !t.trim().is_empty() && !t.contains('=')),
            format!("monitor.segment_tags: {:?} must be non-empty tag names without '='", m.segment_tags),
        );
        check(
            (1..=10_000).contains(&m.max_segments_per_model),
            format!(
                "monitor.max_segments_per_model: {} must be between 1 and 10000",
                m.max_segments_per_model
            ),
        );
        check(
            m.allowed_lateness_seconds <= 7 * 86_400,
            format!(
                "monitor.allowed_lateness_seconds: {} must be at most 604800 (a week)",
                m.allowed_lateness_seconds
            ),
        );
        check(m.max_pending_messages > 0, "monitor.max_pending_messages: must be at least 1".into());
        check(
            (1..=30 * 86_400).contains(&m.join_horizon_seconds),
            format!(
                "monitor.join_horizon_seconds: {} must be between 1 and 2592000 (30 days)",
                m.join_horizon_seconds
            ),
        );
        check(
            (1..=100_000_000).contains(&m.join_capacity),
            format!(
                "monitor.join_capacity: {} must be between 1 and 100000000 (about 600 bytes each)",
                m.join_capacity
            ),
        );
        check(
            !m.positive_label.is_empty(),
            "monitor.positive_label: must not be empty (e.g. \"1\" or \"fraud\")".into(),
        );
        check(
            m.drain_timeout_ms > 0 && m.drain_timeout_ms < 300_000,
            format!(
                "monitor.drain_timeout_ms: {} must be between 1 and 299999 (below Kafka's max.poll.interval.ms of 300000)",
                m.drain_timeout_ms
            ),
        );
        check(
            self.http.listen.parse::<SocketAddr>().is_ok(),
            format!("http.listen: {:?} is not an address like 127.0.0.1:9464", self.http.listen),
        );
        check(
            self.topics.lifecycle != self.topics.remediations,
            "topics.lifecycle: must differ from topics.remediations (one is the registry log, the other its input)".into(),
        );
        windows::check(&self.monitor, &mut errors);
        policy::check(&self.monitor, &mut errors);
        self.lifecycle.check(&mut errors);
        lifecycle::check_alerts(&self.alerts, &self.lifecycle, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    pub fn kafka_settings(&self) -> vigil_monitor::KafkaSettings {
        vigil_monitor::KafkaSettings {
            brokers: self.kafka.brokers.clone(),
            client: self.kafka.client.clone(),
        }
    }

    pub fn store_config(&self) -> vigil_store::StoreConfig {
        let c = &self.clickhouse;
        vigil_store::StoreConfig {
            url: c.url.clone(),
            database: c.database.clone(),
            user: c.user.clone(),
            password: c.password.clone(),
            retention_days: (c.retention_days > 0).then_some(c.retention_days),
        }
    }

    pub fn monitor_settings(&self) -> vigil_monitor::MonitorSettings {
        let m = &self.monitor;
        vigil_monitor::MonitorSettings {
            kafka: self.kafka_settings(),
            group_id: m.group_id.clone(),
            instance_id: m.instance_id.clone(),
            session_timeout: Duration::from_millis(m.session_timeout_ms),
            schema_registry: (!self.schema_registry.url.is_empty()).then(|| {
                let mut registry = vigil_registry::RegistryConfig::new(self.schema_registry.url.clone());
                registry.timeout = Duration::from_millis(self.schema_registry.timeout_ms);
                (registry, self.schema_registry.cache_capacity)
            }),
            threads: match m.threads {
                0 => {
                    std::thread::available_parallelism().map_or(1, |n| n.get()).min(vigil_monitor::MAX_SHARDS)
                }
                n => n,
            },
            predictions_topic: self.topics.predictions.clone(),
            outcomes_topic: self.topics.outcomes.clone(),
            deadletter_topic: self.topics.deadletter.clone(),
            windows: windows::windowing(m),
            segment_tags: m.segment_tags.clone(),
            max_segments_per_model: m.max_segments_per_model,
            allowed_lateness: Duration::from_secs(m.allowed_lateness_seconds.into()),
            idle_timeout: (m.idle_timeout_seconds > 0).then(|| Duration::from_secs(m.idle_timeout_seconds)),
            baseline_min_events: m.baseline_min_events,
            remediations_topic: self.topics.remediations.clone(),
            policies: policy::book(m),
            join: vigil_monitor::JoinSettings {
                horizon_seconds: m.join_horizon_seconds,
                capacity: m.join_capacity,
            },
            positive_label: m.positive_label.clone(),
            flush_interval: Duration::from_millis(m.flush_interval_ms),
            max_pending_messages: m.max_pending_messages,
            drain_timeout: Duration::from_millis(m.drain_timeout_ms),
        }
    }

    pub fn lifecycle_settings(&self) -> vigil_lifecycle::kafka::LifecycleSettings {
        vigil_lifecycle::kafka::LifecycleSettings {
            brokers: self.kafka.brokers.clone(),
            client: self.kafka.client.clone(),
            lifecycle_topic: self.topics.lifecycle.clone(),
            remediations_topic: self.topics.remediations.clone(),
            group_id: self.lifecycle.group_id.clone(),
            policy: self.lifecycle.policy(),
            replay_timeout: self.lifecycle.replay_timeout(),
        }
    }

    pub fn http_listen(&self) -> SocketAddr {
        self.http.listen.parse().expect("validated in Config::validate")
    }
}

/// `VIGIL__SECTION__KEY` variables; list-valued keys take comma-separated values.
fn environment() -> config::Environment {
    config::Environment::with_prefix("VIGIL")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("monitor.segment_tags")
        .with_list_parse_key("lifecycle.api.token_hashes")
}

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let source = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        environment().source(Some(source))
    }

    fn write(toml: &str) -> tempfile_path::TempToml {
        tempfile_path::TempToml::new(toml)
    }

    mod tempfile_path {
        pub struct TempToml(pub std::path::PathBuf);
        impl TempToml {
            pub fn new(text: &str) -> Self {
                let path = std::env::temp_dir().join(format!(
                    "vigil-config-test-{}-{:?}.toml",
                    std::process::id(),
                    std::thread::current().id()
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }
        }
        impl Drop for TempToml {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.monitor.window_seconds, 60);
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = write("[kafka]\nbrokers = \"10.0.0.1:9092\"\n[monitor]\nwindow_seconds = 300\n");
        let vars = [
            ("VIGIL__KAFKA__BROKERS", "127.0.0.1:19092"),
            ("VIGIL__MONITOR__SEGMENT_TAGS", "country,channel"),
        ];
        let config = Config::load_from(Some(&file.0), env(&vars)).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
        assert_eq!(config.monitor.segment_tags, vec!["country", "channel"]);
        assert_eq!(config.monitor.window_seconds, 300);
    }

    #[test]
    fn unknown_keys_are_named() {
        let file = write("[kafka]\nbroker = \"x:1\"\n");
        let err = Config::load_from(Some(&file.0), env(&[])).unwrap_err().to_string();
        assert!(err.contains("broker"), "{err}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_key() {
        let file = write("[kafka]\nbrokers = \"nonsense\"\n[monitor]\nwindow_seconds = 7\n[clickhouse]\nurl = \"127.0.0.1:8123\"\n");
        let err = Config::load_from(Some(&file.0), env(&[])).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(keys, vec!["kafka.brokers", "clickhouse.url", "monitor.window_seconds"], "{err}");
    }

    #[test]
    fn the_shipped_local_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/vigil.toml");
        Config::load_from(Some(&path), env(&[])).unwrap();
    }

    #[test]
    fn instance_id_and_no_traffic_are_checked_and_reach_the_monitor() {
        let file = write("[monitor]\ninstance_id = \"pod/0\"\n[monitor.no_traffic_policy]\nwindows = 0\n");
        let err = Config::load_from(Some(&file.0), env(&[])).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(keys, vec!["monitor.instance_id", "monitor.no_traffic_policy.windows"], "{err}");

        let file = write(
            "[monitor]\ninstance_id = \"vigil-monitor-0\"\n[monitor.no_traffic_policy]\nwindows = 3\n\
             [monitor.models.batch]\nno_traffic_windows = 0\n",
        );
        let settings = Config::load_from(Some(&file.0), env(&[])).unwrap().monitor_settings();
        assert_eq!(settings.instance_id.as_deref(), Some("vigil-monitor-0"));
        assert_eq!(settings.policies.for_model("fraud").no_traffic.windows, Some(3));
        assert_eq!(settings.policies.for_model("batch").no_traffic.windows, None);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err =
            Config::load_from(Some(Path::new("/nonexistent/vigil.toml")), env(&[])).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vigil.toml"), "{err}");
    }
}
