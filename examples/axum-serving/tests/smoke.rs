//! Runs the example against the real broker at `VIGIL_TEST_KAFKA_BROKERS` (default
//! 127.0.0.1:9092): predictions and outcomes over HTTP, SIGTERM, then reads the topics back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use vigil_events::{decode, OutcomeEvent, PredictionEvent};

fn brokers() -> String {
    std::env::var("VIGIL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Kills the app if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Payloads of `topic` from the start, until `expected` arrived and 1 s passed without more.
fn read(topic: &str, expected: usize) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let (started, mut last) = (Instant::now(), Instant::now());
    let mut payloads = Vec::new();
    while started.elapsed() < Duration::from_secs(30)
        && (payloads.len() < expected || last.elapsed() < Duration::from_secs(1))
    {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            payloads.push(message.unwrap().payload().unwrap().to_vec());
            last = Instant::now();
        }
    }
    payloads
}

#[test]
fn predictions_and_outcomes_reach_kafka_and_shutdown_flushes() {
    let run = format!(
        "{}_{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
    );
    let (predictions, outcomes) =
        (format!("it.example.{run}.predictions"), format!("it.example.{run}.outcomes"));
    let mut app = Guard(
        Command::new(env!("CARGO_BIN_EXE_axum-serving"))
            .env("VIGIL_BROKERS", brokers())
            .env("VIGIL_PREDICTIONS_TOPIC", &predictions)
            .env("VIGIL_OUTCOMES_TOPIC", &outcomes)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(app.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, body) = http(
            &addr,
            "POST",
            "/predict",
            &format!(r#"{{"features": {{"amount": {i}.5, "velocity_1h": 3}}, "country": "DE"}}"#),
        );
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(answer["prediction_id"].as_str().unwrap().to_owned());
    }
    for id in &ids[..10] {
        let (status, body) =
            http(&addr, "POST", "/outcome", &format!(r#"{{"prediction_id": "{id}", "label": "fraud"}}"#));
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(http(&addr, "POST", "/predict", "not json").0, 400);
    // An outcome with neither label nor value is refused by the SDK, counted, and the request still succeeds.
    assert_eq!(http(&addr, "POST", "/outcome", r#"{"prediction_id": "x"}"#).0, 202);
    let (_, stats) = http(&addr, "GET", "/vigil/stats", "");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!((stats["enqueued"].as_u64(), stats["invalid"].as_u64()), (Some(30), Some(1)), "{stats}");

    // SIGTERM: the app drains requests and closes the producer.
    Command::new("kill").args(["-TERM", &app.0.id().to_string()]).status().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("enqueued=30 delivered=30 failed=0"), "{rest}");

    let logged: Vec<String> =
        read(&predictions, 20).iter().map(|p| decode::<PredictionEvent>(p).unwrap().prediction_id).collect();
    let mut expected = ids.clone();
    expected.sort();
    let mut logged_sorted = logged.clone();
    logged_sorted.sort();
    assert_eq!(logged_sorted, expected);
    let outcome_ids: Vec<String> =
        read(&outcomes, 10).iter().map(|p| decode::<OutcomeEvent>(p).unwrap().prediction_id).collect();
    assert_eq!(outcome_ids.len(), 10);
    assert!(outcome_ids.iter().all(|id| ids[..10].contains(id)));
    delete_topics(&[&predictions, &outcomes]);
}

fn delete_topics(topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _ = runtime.block_on(admin.delete_topics(topics, &AdminOptions::new()));
}
