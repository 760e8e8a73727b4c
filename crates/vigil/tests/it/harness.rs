use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_store::{Store, StoreConfig};

pub fn brokers() -> String {
    std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("VIGIL_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// Names for one test: topics, group and database no other test or run shares.
pub struct TestEnv {
    pub name: String,
    pub predictions: String,
    pub outcomes: String,
    pub deadletter: String,
    pub remediations: String,
    pub lifecycle: String,
    pub database: String,
    pub group: String,
    pub http_port: u16,
    /// `vigil lifecycle`'s API, metrics and health.
    pub lifecycle_port: u16,
}

impl TestEnv {
    pub fn new(test: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("{test}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        let http_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self {
            predictions: format!("it.{name}.predictions"),
            outcomes: format!("it.{name}.outcomes"),
            deadletter: format!("it.{name}.deadletter"),
            remediations: format!("it.{name}.remediations"),
            lifecycle: format!("it.{name}.lifecycle"),
            database: format!("it_{name}"),
            group: format!("it-{name}"),
            http_port,
            lifecycle_port: free_port(),
            name,
        }
    }

    pub fn store(&self) -> Store {
        Store::new(StoreConfig {
            url: clickhouse_url(),
            database: self.database.clone(),
            user: "default".into(),
            password: String::new(),
            retention_days: None,
        })
    }

    /// `vigil monitor` as a child process configured for this test through the environment.
    pub fn spawn_monitor(&self) -> ChildGuard {
        self.spawn_monitor_in_group(&self.group)
    }

    /// `vigil <args>` configured for this test's topics, group and database.
    pub fn vigil_command(&self, args: &[&str]) -> Command {
        self.vigil_command_in_group(&self.group, args)
    }

    /// `vigil monitor` with extra `VIGIL__...` settings on top of the test defaults.
    pub fn spawn_monitor_with(&self, settings: &[(&str, &str)]) -> ChildGuard {
        let mut command = self.vigil_command(&["monitor"]);
        command.envs(settings.iter().copied());
        ChildGuard(command.spawn().expect("vigil binary starts"))
    }

    pub fn spawn_monitor_in_group(&self, group: &str) -> ChildGuard {
        let child = self.vigil_command_in_group(group, &["monitor"]).spawn().expect("vigil binary starts");
        ChildGuard(child)
    }

    fn vigil_command_in_group(&self, group: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .args(args)
            .env_remove("VIGIL_CONFIG")
            .env("VIGIL__KAFKA__BROKERS", brokers())
            .env("VIGIL__TOPICS__PREDICTIONS", &self.predictions)
            .env("VIGIL__TOPICS__OUTCOMES", &self.outcomes)
            .env("VIGIL__TOPICS__DEADLETTER", &self.deadletter)
            .env("VIGIL__TOPICS__REMEDIATIONS", &self.remediations)
            .env("VIGIL__TOPICS__LIFECYCLE", &self.lifecycle)
            .env("VIGIL__LIFECYCLE__GROUP_ID", format!("{}-lifecycle", self.group))
            // One breached window is enough for a remediation in tests.
            .env("VIGIL__MONITOR__POLICY__CONSECUTIVE_WINDOWS", "1")
            .env("VIGIL__CLICKHOUSE__URL", clickhouse_url())
            .env("VIGIL__CLICKHOUSE__DATABASE", &self.database)
            .env("VIGIL__MONITOR__GROUP_ID", group)
            .env("VIGIL__MONITOR__FLUSH_INTERVAL_MS", "200")
            .env("VIGIL__MONITOR__SEGMENT_TAGS", "country")
            // Test traffic interleaves three one-minute windows.
            .env("VIGIL__MONITOR__ALLOWED_LATENESS_SECONDS", "300")
            // ~140 events per model version and window: enough for a baseline in tests.
            .env("VIGIL__MONITOR__BASELINE_MIN_EVENTS", "50")
            .env("VIGIL__HTTP__LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env("VIGIL__LIFECYCLE__API__LISTEN", format!("127.0.0.1:{}", self.lifecycle_port))
            .env("VIGIL__LIFECYCLE__API__TOKEN", API_TOKEN)
            .env(
                "VIGIL__LIFECYCLE__STATE_DIR",
                std::env::temp_dir().join(format!("vigil-it-{}-state", self.name)),
            )
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }

    pub fn raw_producer(&self) -> FutureProducer {
        ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap()
    }

    pub async fn send_raw(&self, producer: &FutureProducer, key: &str, payload: &[u8]) {
        producer
            .send(FutureRecord::to(&self.predictions).key(key).payload(payload), Duration::from_secs(10))
            .await
            .expect("raw message delivered");
    }

    /// Polls until `total_events` equals `expected`, then checks it stays there (no late
    /// double count). Panics with what was seen on timeout.
    pub async fn await_stored_exactly(&self, expected: u64, timeout: Duration) {
        let store = self.store();
        let started = Instant::now();
        let mut seen = 0;
        while started.elapsed() < timeout {
            seen = store.total_events().await.unwrap_or(0);
            if seen >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(seen, expected, "{}: events stored in clickhouse", self.name);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            store.total_events().await.unwrap(),
            expected,
            "{}: stored count moved after settling",
            self.name
        );
    }

    /// Reads the whole dead-letter topic: (reason header, payload) per message.
    pub fn dead_letters(&self, expected: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        read_topic(&self.deadletter, &format!("{}-dlq-reader", self.group), expected, timeout)
    }

    /// Reads the whole remediations topic as payloads.
    pub fn remediation_payloads(&self, expected: usize, timeout: Duration) -> Vec<Vec<u8>> {
        read_topic(&self.remediations, &format!("{}-rem-reader", self.group), expected, timeout)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    pub async fn metrics_text(&self) -> String {
        self.monitor_get("/metrics").await.1
    }

    /// `GET path` on the monitor's HTTP port: the status code and the whole response.
    pub async fn monitor_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_port, path).await
    }

    pub async fn cleanup(&self) {
        let _ = self.store().drop_database().await;
    }
}

/// Reads `topic` from the start: (vigil.reason header, payload) per message, until `expected`
/// arrived and 2 s passed without more (to catch duplicates), or `timeout`.
fn read_topic(topic: &str, group: &str, expected: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut letters = Vec::new();
    let started = Instant::now();
    // Past `expected`, keep reading a little to catch duplicates.
    let mut quiet_since: Option<Instant> = None;
    while started.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let reason = message
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "vigil.reason")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default();
                letters.push((reason, message.payload().unwrap_or_default().to_vec()));
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None if letters.len() >= expected => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            None => {}
        }
    }
    letters
}

/// A child process killed when the test ends, passed or failed, so no monitor outlives its test.
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!("monitor did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the monitor's HTTP port answers (it binds after migrating and creating topics).
pub async fn await_port(port: u16, timeout: Duration) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < timeout, "monitor did not open port {port} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Names for one lifecycle test (topics, group, a scratch directory), handed to `vigil` through
/// the environment; the configuration file comes from [`LifecycleEnv::write_config`].
pub struct LifecycleEnv {
    pub name: String,
    pub lifecycle: String,
    pub remediations: String,
    pub group: String,
    pub dir: std::path::PathBuf,
    /// The audit's ClickHouse database.
    pub database: String,
    /// `vigil lifecycle`'s API, metrics and health.
    pub api_port: u16,
}

impl LifecycleEnv {
    pub fn new(test: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("{test}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        let dir = std::env::temp_dir().join(format!("vigil-it-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            lifecycle: format!("it.{name}.lifecycle"),
            remediations: format!("it.{name}.remediations"),
            group: format!("it-{name}"),
            dir,
            database: format!("it_{name}"),
            api_port: free_port(),
            name,
        }
    }

    pub fn write_config(&self, toml: &str) -> std::path::PathBuf {
        let path = self.dir.join("vigil.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// `vigil --config <config> <args>` for this test's topics and group.
    pub fn vigil(&self, config: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("VIGIL_CONFIG")
            .env("VIGIL__KAFKA__BROKERS", brokers())
            .env("VIGIL__TOPICS__LIFECYCLE", &self.lifecycle)
            .env("VIGIL__TOPICS__REMEDIATIONS", &self.remediations)
            .env("VIGIL__LIFECYCLE__GROUP_ID", &self.group)
            .env("VIGIL__LIFECYCLE__STATE_DIR", self.dir.join("state"))
            .env("VIGIL__LIFECYCLE__API__LISTEN", format!("127.0.0.1:{}", self.api_port))
            .env("VIGIL__LIFECYCLE__API__TOKEN", API_TOKEN)
            .env("VIGIL__CLICKHOUSE__URL", clickhouse_url())
            .env("VIGIL__CLICKHOUSE__DATABASE", &self.database)
            .env("RUST_LOG", "info,rdkafka=warn");
        command
    }

    pub fn store(&self) -> Store {
        store_of(&self.database)
    }

    /// One request to `vigil lifecycle`'s HTTP port: (status, body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        http_request(self.api_port, method, path, token, body).await
    }

    /// Runs `vigil` to the end on a blocking thread: (exit code, stdout, stderr).
    pub async fn run_vigil(&self, config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
        let mut command = self.vigil(config, args);
        let output =
            tokio::task::spawn_blocking(move || command.output().expect("vigil binary runs")).await.unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub async fn drop_database(&self) {
        let _ = self.store().drop_database().await;
    }
}

/// The test ClickHouse's `database`.
pub fn store_of(database: &str) -> Store {
    Store::new(StoreConfig {
        url: clickhouse_url(),
        database: database.to_owned(),
        user: "default".into(),
        password: String::new(),
        retention_days: None,
    })
}

/// The bearer token the tests give `vigil lifecycle`'s API.
pub const API_TOKEN: &str = "it-api-token";

/// One HTTP/1.1 request to 127.0.0.1:`port`, read to the end: (status, body).
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the port answers");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Runs one statement on the test ClickHouse over its HTTP interface; panics on an error.
pub async fn clickhouse_sql(sql: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = clickhouse_url();
    let host = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = tokio::net::TcpStream::connect(host.as_str()).await.expect("clickhouse answers");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{sql}: {response}");
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The `state --json` entry of one version, or Null.
pub fn version_of(state: &serde_json::Value, model: &str, version: &str) -> serde_json::Value {
    state["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["model_id"] == model)
        .flat_map(|m| m["versions"].as_array().cloned().unwrap_or_default())
        .find(|v| v["version"] == version)
        .unwrap_or(serde_json::Value::Null)
}

/// One monitor's own consumer group, ClickHouse database, remediations topic and HTTP port, for
/// tests that run several monitors over one [`TestEnv`]'s predictions and outcomes (an
/// uninterrupted run next to a killed one; two members of one group).
#[derive(Debug, Clone)]
pub struct MonitorInstance {
    pub name: String,
    pub group: String,
    pub database: String,
    pub remediations: String,
    pub http_port: u16,
}

impl TestEnv {
    /// A monitor identity named `label`, sharing only this env's input topics.
    pub fn instance(&self, label: &str) -> MonitorInstance {
        MonitorInstance {
            name: format!("{}_{label}", self.name),
            group: format!("{}-{label}", self.group),
            database: format!("{}_{label}", self.database),
            remediations: format!("{}.{label}", self.remediations),
            http_port: free_port(),
        }
    }

    /// `vigil monitor` as `instance`, with the test defaults and then `settings` (`VIGIL__...`
    /// pairs) on top.
    pub fn spawn_monitor_as(&self, instance: &MonitorInstance, settings: &[(&str, &str)]) -> ChildGuard {
        let mut command = self.vigil_command_in_group(&instance.group, &["monitor"]);
        command
            .env("VIGIL__CLICKHOUSE__DATABASE", &instance.database)
            .env("VIGIL__TOPICS__REMEDIATIONS", &instance.remediations)
            .env("VIGIL__HTTP__LISTEN", format!("127.0.0.1:{}", instance.http_port))
            .envs(settings.iter().copied());
        // `VIGIL_TEST_LOG_DIR=<dir>`: each instance logs to `<dir>/<name>.log` instead of stderr.
        if let Some(dir) = std::env::var_os("VIGIL_TEST_LOG_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{}.log", instance.name));
            command.stderr(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file opens"),
            );
        }
        ChildGuard(command.spawn().expect("vigil binary starts"))
    }
}

impl MonitorInstance {
    /// The same group, database and remediations topic on another HTTP port: a second member.
    pub fn another_member(&self, label: &str) -> MonitorInstance {
        MonitorInstance { name: format!("{}_{label}", self.name), http_port: free_port(), ..self.clone() }
    }

    pub fn store(&self) -> Store {
        Store::new(StoreConfig {
            url: clickhouse_url(),
            database: self.database.clone(),
            user: "default".into(),
            password: String::new(),
            retention_days: None,
        })
    }

    pub async fn metrics_text(&self) -> String {
        self.monitor_get("/metrics").await.1
    }

    /// `GET path` on the monitor's HTTP port: the status code and the whole response.
    pub async fn monitor_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_port, path).await
    }

    /// Reads this monitor's whole remediations topic as payloads (see [`read_topic`]).
    pub fn remediation_payloads(&self, expected: usize, timeout: Duration) -> Vec<Vec<u8>> {
        read_topic(&self.remediations, &format!("{}-rem-reader", self.group), expected, timeout)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    pub async fn cleanup(&self) {
        let _ = self.store().drop_database().await;
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A metric's value summed over its label sets, from Prometheus text; 0 when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// `GET path` on a loopback port: the status code and the whole response.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("http port answers");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}
