//! The durable outbox: an append-only JSON-lines file, `<outbox_dir>/outbox.jsonl`.
//!
//! Each accepted delivery is appended (and synced) before it is attempted; its end (delivered
//! or given up) is appended after. On start the file is read back: deliveries without an end
//! are sent again, in their original order, and the last state per (receiver, key) feeds the
//! dedup, with the open (firing) alerts kept for their resolve. Then the file is compacted to
//! exactly that (pending deliveries plus one `seen` line per key) and atomically replaced. A torn
//! last line (a crash mid-write) is skipped.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Alert, AlertError, AlertState, Message};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique within the outbox; sent as `X-Vigil-Delivery` by the signed receivers.
    pub id: u64,
    pub receiver: String,
    pub message: Message,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Enqueued(Box<Delivery>),
    Done {
        id: u64,
        delivered: bool,
    },
    /// `state` is the key's last mark (`firing`, `resolved`, or a platform update's event id);
    /// a firing alert comes with its alert, so it can still be resolved after a restart.
    Seen {
        receiver: String,
        key: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alert: Option<Box<Alert>>,
    },
    /// Kept by compaction so delivery ids are never reused.
    NextId {
        id: u64,
    },
}

/// What a restart recovers from the file.
#[derive(Debug, Default)]
pub struct Recovered {
    pub pending: Vec<Delivery>,
    /// Last mark per (receiver, key).
    pub seen: HashMap<(String, String), String>,
    /// Firing alerts by key: what a resolve closes.
    pub open: HashMap<String, Alert>,
    pub next_id: u64,
}

pub struct Outbox {
    path: PathBuf,
    file: File,
}

impl Outbox {
    /// Opens (creating `dir` if needed), recovers, and compacts the outbox.
    pub fn open(dir: &Path) -> Result<(Self, Recovered), AlertError> {
        let path = dir.join("outbox.jsonl");
        let io = |source| AlertError::Outbox { path: path.display().to_string(), source };
        fs::create_dir_all(dir).map_err(io)?;
        let recovered = match File::open(&path) {
            Ok(file) => recover(BufReader::new(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Recovered::default(),
            Err(e) => return Err(io(e)),
        };
        // Compact into a temporary file, then rename over: a crash leaves one whole file.
        let tmp = dir.join("outbox.jsonl.tmp");
        let mut lines = vec![Record::NextId { id: recovered.next_id }];
        let mut seen: Vec<_> = recovered.seen.iter().collect();
        seen.sort_by(|a, b| a.0.cmp(b.0));
        for ((receiver, key), state) in seen {
            lines.push(Record::Seen {
                receiver: receiver.clone(),
                key: key.clone(),
                state: state.clone(),
                alert: recovered
                    .open
                    .get(key)
                    .filter(|_| state == AlertState::Firing.as_str())
                    .map(|alert| Box::new(alert.clone())),
            });
        }
        lines.extend(recovered.pending.iter().map(|d| Record::Enqueued(Box::new(d.clone()))));
        let mut out = File::create(&tmp).map_err(io)?;
        for record in &lines {
            write_line(&mut out, record).map_err(io)?;
        }
        out.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok((Self { path, file }, recovered))
    }

    pub fn enqueued(&mut self, delivery: &Delivery) -> Result<(), AlertError> {
        self.append(&Record::Enqueued(Box::new(delivery.clone())))
    }

    pub fn done(&mut self, id: u64, delivered: bool) -> Result<(), AlertError> {
        self.append(&Record::Done { id, delivered })
    }

    /// Alerts are rare, so each record is synced at once rather than batched.
    fn append(&mut self, record: &Record) -> Result<(), AlertError> {
        let result = write_line(&mut self.file, record).and_then(|()| self.file.sync_data());
        result.map_err(|source| AlertError::Outbox { path: self.path.display().to_string(), source })
    }
}

fn write_line(out: &mut File, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

fn recover(reader: impl BufRead) -> Recovered {
    let mut pending: BTreeMap<u64, Delivery> = BTreeMap::new();
    let mut seen = HashMap::new();
    let mut open = HashMap::new();
    let mut next_id = 0;
    for (number, line) in reader.lines().enumerate() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Record>(&line) {
            Ok(Record::Enqueued(delivery)) => {
                next_id = next_id.max(delivery.id + 1);
                seen.insert((delivery.receiver.clone(), delivery.message.key()), delivery.message.mark());
                if let Message::Alert(alert) = &delivery.message {
                    track_open(&mut open, alert);
                }
                pending.insert(delivery.id, *delivery);
            }
            Ok(Record::Done { id, .. }) => {
                pending.remove(&id);
            }
            Ok(Record::Seen { receiver, key, state, alert }) => {
                if let Some(alert) = alert {
                    track_open(&mut open, &alert);
                }
                seen.insert((receiver, key), state);
            }
            Ok(Record::NextId { id }) => next_id = next_id.max(id),
            Err(error) => tracing::warn!(line = number + 1, %error, "outbox line skipped"),
        }
    }
    Recovered { pending: pending.into_values().collect(), seen, open, next_id }
}

/// A firing alert opens its key (the newest copy wins), a resolved one closes it.
pub fn track_open(open: &mut HashMap<String, Alert>, alert: &Alert) {
    match alert.state {
        AlertState::Firing => {
            open.insert(alert.key.clone(), alert.clone());
        }
        AlertState::Resolved => {
            open.remove(&alert.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::fixtures::alert;

    fn temp_dir(test: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("vigil-alerts-{test}-{}-{nanos}", std::process::id()))
    }

    #[test]
    fn pending_deliveries_and_dedup_state_survive_reopening() {
        let dir = temp_dir("reopen");
        let (mut outbox, recovered) = Outbox::open(&dir).unwrap();
        assert!(recovered.pending.is_empty());
        let firing = Delivery { id: 0, receiver: "pd".into(), message: Message::Alert(alert()) };
        let resolved =
            Delivery { id: 1, receiver: "pd".into(), message: Message::Alert(alert().resolved(5)) };
        let slack = Delivery { id: 2, receiver: "slack".into(), message: Message::Alert(alert()) };
        for d in [&firing, &resolved, &slack] {
            outbox.enqueued(d).unwrap();
        }
        outbox.done(0, true).unwrap();
        outbox.done(2, false).unwrap();
        drop(outbox);
        // A torn last line, as a crash mid-append leaves it.
        OpenOptions::new()
            .append(true)
            .open(dir.join("outbox.jsonl"))
            .unwrap()
            .write_all(b"{\"op\":\"done\",\"i")
            .unwrap();

        let (_, recovered) = Outbox::open(&dir).unwrap();
        assert_eq!(recovered.pending, vec![resolved.clone()]);
        assert_eq!(recovered.next_id, 3);
        assert_eq!(recovered.seen[&("pd".to_owned(), alert().key)], "resolved");
        assert_eq!(recovered.seen[&("slack".to_owned(), alert().key)], "firing");
        assert!(
            recovered.open.contains_key(&alert().key),
            "the last delivery for the key fired it: it stays open for its resolve"
        );
        // Compacted: the id counter, one seen line per key and the pending delivery.
        let (mut outbox, again) = Outbox::open(&dir).unwrap();
        assert_eq!(again.pending, vec![resolved]);
        assert_eq!((again.seen.len(), again.next_id), (2, 3));
        assert_eq!(fs::read_to_string(dir.join("outbox.jsonl")).unwrap().lines().count(), 4);
        outbox.done(1, true).unwrap();
        drop(outbox);
        let (_, finished) = Outbox::open(&dir).unwrap();
        assert_eq!(
            (finished.pending.len(), finished.next_id),
            (0, 3),
            "ids are not reused once all is delivered"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
