//! Decisions waiting for a human (a manual gate): kept by the lifecycle consumer, which proposed
//! them, in `<state_dir>/approvals.json` so a restart does not forget them. The file is small (a
//! handful of open proposals) and rewritten whole on each change: written to a temporary file,
//! synced and renamed over the old one, so a crash leaves the old or the new file, never half.
//! Approved and rejected proposals leave the file; their record is the lifecycle log.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::view::EventView;
use crate::LifecycleError;

/// One proposal waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// What approve and reject name: the remediation id that caused the proposal.
    pub id: String,
    pub model_id: String,
    /// The version the proposal is about (the one a rollback would take out of service).
    pub model_version: String,
    pub remediation_id: Option<String>,
    /// What approving does, in one line.
    pub summary: String,
    /// The events approving publishes (with the approver as actor).
    pub proposed: Vec<EventView>,
    pub created_ms: i64,
    /// Who asked for the change, when a person did (automation's proposals have none); they may
    /// not approve it (four eyes), nor may whoever registered the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

#[derive(Debug, Default)]
pub struct Approvals {
    /// `None`: kept in memory only (tests).
    path: Option<PathBuf>,
    pending: BTreeMap<String, Pending>,
}

impl Approvals {
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Reads `<dir>/approvals.json`; no file (or no folder yet) is no proposals. The folder is
    /// created with the first proposal.
    pub fn open(dir: &Path) -> Result<Self, LifecycleError> {
        let path = dir.join("approvals.json");
        let io = |source| LifecycleError::StateFile { path: path.display().to_string(), source };
        let pending: Vec<Pending> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self { pending: pending.into_iter().map(|p| (p.id.clone(), p)).collect(), path: Some(path) })
    }

    pub fn list(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Pending> {
        self.pending.get(id)
    }

    /// Adds a proposal; one with the same id already waiting stays as it is (a redelivered
    /// remediation proposes the same thing). Whether it was new.
    pub fn insert(&mut self, pending: Pending) -> bool {
        if self.pending.contains_key(&pending.id) {
            return false;
        }
        self.pending.insert(pending.id.clone(), pending);
        self.save();
        true
    }

    pub fn remove(&mut self, id: &str) -> Option<Pending> {
        let removed = self.pending.remove(id);
        if removed.is_some() {
            self.save();
        }
        removed
    }

    /// Keeps the proposals `keep` accepts; the ids of those dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&Pending) -> bool) -> Vec<String> {
        let dropped: Vec<String> = self.pending.values().filter(|p| !keep(p)).map(|p| p.id.clone()).collect();
        for id in &dropped {
            self.pending.remove(id);
        }
        if !dropped.is_empty() {
            self.save();
        }
        dropped
    }

    /// Trouble with the file (a full disk) must not stop the consumer: the proposal is still
    /// held in memory, only not durable, and the error is logged.
    fn save(&self) {
        let Some(path) = &self.path else { return };
        let pending: Vec<&Pending> = self.pending.values().collect();
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(&pending).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        if let Err(error) = write() {
            tracing::error!(path = %path.display(), %error, "approvals file not written; pending approvals are not durable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str) -> Pending {
        Pending {
            requested_by: None,
            id: id.into(),
            model_id: "fraud".into(),
            model_version: "v2".into(),
            remediation_id: Some(id.into()),
            summary: "roll back canary v2".into(),
            proposed: vec![],
            created_ms: 1,
        }
    }

    #[test]
    fn proposals_survive_reopening_until_decided() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("vigil-approvals-{}-{nanos}", std::process::id()));
        let mut approvals = Approvals::open(&dir).unwrap();
        assert!(approvals.insert(pending("r1")));
        assert!(!approvals.insert(pending("r1")), "a second proposal with one id is the same");
        assert!(approvals.insert(pending("r2")));
        let mut reopened = Approvals::open(&dir).unwrap();
        assert_eq!(reopened.list().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
        assert_eq!(reopened.remove("r1").map(|p| p.id), Some("r1".into()));
        assert_eq!(reopened.retain(|p| p.id != "r2"), ["r2"]);
        assert!(Approvals::open(&dir).unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }
}
