use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::codec::{Reader, Writer};
use crate::error::{CodecError, ValidationError};
use crate::schema::{cached, AvroRecord, LIFECYCLE_SCHEMA, LIFECYCLE_SCHEMA_1};
use crate::validate::{finite, non_empty};

/// One stage change of a model version (`schemas/lifecycle.avsc`).
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    pub stage: Stage,
    pub traffic_weight: Option<f64>,
    pub reason: String,
    pub actor: String,
    pub remediation_id: Option<String>,
    pub event_time_ms: i64,
    /// What the event records; events of revision 1 are all stage changes.
    pub kind: EventKind,
    /// Where the version came from, on the event that registers it.
    pub lineage: Option<Box<Lineage>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Candidate,
    Canary,
    Production,
    Retired,
    RolledBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventKind {
    /// The version moves to `stage`.
    #[default]
    StageChange,
    /// A retraining request went out for `remediation_id`; `stage` is the version's current one.
    RetrainRequested,
}

/// Where a model version came from (`Lineage` in `schemas/lifecycle.avsc`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lineage {
    pub training_run_id: Option<String>,
    pub training_run_uri: Option<String>,
    pub datasets: Vec<DatasetRef>,
    pub code_repository: Option<String>,
    pub code_commit: Option<String>,
    pub artifact_uri: Option<String>,
    /// Hex SHA-256 of the artifact.
    pub artifact_sha256: Option<String>,
    pub parent_version: Option<String>,
    pub team: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatasetRef {
    pub name: String,
    pub version: Option<String>,
    /// Hex SHA-256 of the dataset's content.
    pub sha256: Option<String>,
}

impl Lineage {
    /// Training run, at least one dataset with a version or hash, code commit and artifact with
    /// its hash: what an auditor needs to rebuild the version.
    pub fn is_complete(&self) -> bool {
        self.training_run_id.is_some()
            && !self.datasets.is_empty()
            && self.datasets.iter().all(|d| d.version.is_some() || d.sha256.is_some())
            && self.code_commit.is_some()
            && self.artifact_uri.is_some()
            && self.artifact_sha256.is_some()
    }

    /// The bounds the schema cannot state: hashes are 64 hex digits, strings at most
    /// [`MAX_LINEAGE_TEXT`] bytes, at most [`MAX_LINEAGE_ITEMS`] datasets and tags.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let texts = [
            ("lineage.training_run_id", &self.training_run_id),
            ("lineage.training_run_uri", &self.training_run_uri),
            ("lineage.code_repository", &self.code_repository),
            ("lineage.code_commit", &self.code_commit),
            ("lineage.artifact_uri", &self.artifact_uri),
            ("lineage.parent_version", &self.parent_version),
            ("lineage.team", &self.team),
        ];
        for (field, value) in texts {
            if let Some(v) = value {
                bounded_text(field, v)?;
            }
        }
        if let Some(h) = &self.artifact_sha256 {
            sha256_hex("lineage.artifact_sha256", h)?;
        }
        if self.datasets.len() > MAX_LINEAGE_ITEMS || self.tags.len() > MAX_LINEAGE_ITEMS {
            return Err(ValidationError::OutOfRange {
                field: "lineage".into(),
                detail: format!("at most {MAX_LINEAGE_ITEMS} datasets and {MAX_LINEAGE_ITEMS} tags"),
            });
        }
        for d in &self.datasets {
            bounded_text("lineage.datasets.name", &d.name)?;
            non_empty("lineage.datasets.name", &d.name)?;
            if let Some(v) = &d.version {
                bounded_text("lineage.datasets.version", v)?;
            }
            if let Some(h) = &d.sha256 {
                sha256_hex("lineage.datasets.sha256", h)?;
            }
        }
        for (k, v) in &self.tags {
            non_empty("lineage.tags", k)?;
            bounded_text("lineage.tags", k)?;
            bounded_text("lineage.tags", v)?;
        }
        Ok(())
    }
}

/// Longest lineage string, in bytes.
pub const MAX_LINEAGE_TEXT: usize = 1024;
/// Most datasets, and most tags, on one version.
pub const MAX_LINEAGE_ITEMS: usize = 64;

fn bounded_text(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_LINEAGE_TEXT {
        return Err(ValidationError::OutOfRange {
            field: field.into(),
            detail: format!("{} bytes, at most {MAX_LINEAGE_TEXT}", value.len()),
        });
    }
    Ok(())
}

fn sha256_hex(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValidationError::OutOfRange {
            field: field.into(),
            detail: "must be 64 hex digits (a SHA-256)".into(),
        });
    }
    Ok(())
}

const STAGES: [Stage; 5] =
    [Stage::Candidate, Stage::Canary, Stage::Production, Stage::Retired, Stage::RolledBack];
const KINDS: [EventKind; 2] = [EventKind::StageChange, EventKind::RetrainRequested];

/// The fields of revision 1, in its order.
fn decode_revision_1(r: &mut Reader<'_>) -> Result<LifecycleEvent, CodecError> {
    Ok(LifecycleEvent {
        event_id: r.string()?,
        model_id: r.string()?,
        model_version: r.string()?,
        stage: STAGES[r.index(STAGES.len())?],
        traffic_weight: r.optional(Reader::double)?,
        reason: r.string()?,
        actor: r.string()?,
        remediation_id: r.optional(Reader::string)?,
        event_time_ms: r.long()?,
        kind: EventKind::StageChange,
        lineage: None,
    })
}

fn write_lineage(w: &mut Writer, l: &Lineage) {
    w.optional(l.training_run_id.as_deref(), Writer::string);
    w.optional(l.training_run_uri.as_deref(), Writer::string);
    w.block_start(l.datasets.len());
    for d in &l.datasets {
        w.string(&d.name);
        w.optional(d.version.as_deref(), Writer::string);
        w.optional(d.sha256.as_deref(), Writer::string);
    }
    w.end_blocks();
    w.optional(l.code_repository.as_deref(), Writer::string);
    w.optional(l.code_commit.as_deref(), Writer::string);
    w.optional(l.artifact_uri.as_deref(), Writer::string);
    w.optional(l.artifact_sha256.as_deref(), Writer::string);
    w.optional(l.parent_version.as_deref(), Writer::string);
    w.optional(l.team.as_deref(), Writer::string);
    w.map(&l.tags, |w, v| w.string(v));
}

fn read_lineage(r: &mut Reader<'_>) -> Result<Lineage, CodecError> {
    let training_run_id = r.optional(Reader::string)?;
    let training_run_uri = r.optional(Reader::string)?;
    let mut datasets = Vec::new();
    r.blocks(|r| {
        datasets.push(DatasetRef {
            name: r.string()?,
            version: r.optional(Reader::string)?,
            sha256: r.optional(Reader::string)?,
        });
        Ok(())
    })?;
    Ok(Lineage {
        training_run_id,
        training_run_uri,
        datasets,
        code_repository: r.optional(Reader::string)?,
        code_commit: r.optional(Reader::string)?,
        artifact_uri: r.optional(Reader::string)?,
        artifact_sha256: r.optional(Reader::string)?,
        parent_version: r.optional(Reader::string)?,
        team: r.optional(Reader::string)?,
        tags: r.pairs(Reader::string)?.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}

impl AvroRecord for LifecycleEvent {
    const FULL_NAME: &'static str = "vigil.v1.LifecycleEvent";
    const SCHEMA_JSON: &'static str = LIFECYCLE_SCHEMA;

    fn fingerprint() -> u64 {
        static FP: OnceLock<u64> = OnceLock::new();
        cached(&FP, LIFECYCLE_SCHEMA)
    }

    fn older_fingerprints() -> Vec<u64> {
        static FP: OnceLock<u64> = OnceLock::new();
        vec![cached(&FP, LIFECYCLE_SCHEMA_1)]
    }

    fn encode_body(&self, w: &mut Writer) {
        w.string(&self.event_id);
        w.string(&self.model_id);
        w.string(&self.model_version);
        w.long(self.stage as i64);
        w.optional(self.traffic_weight.as_ref(), |w, v| w.double(*v));
        w.string(&self.reason);
        w.string(&self.actor);
        w.optional(self.remediation_id.as_deref(), Writer::string);
        w.long(self.event_time_ms);
        // A stage change is written as null, as revision 1 implied.
        let kind = (self.kind != EventKind::StageChange).then_some(self.kind);
        w.optional(kind.as_ref(), |w, k| w.long(*k as i64));
        w.optional(self.lineage.as_deref(), write_lineage);
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let mut event = decode_revision_1(r)?;
        event.kind = r.optional(|r| Ok(KINDS[r.index(KINDS.len())?]))?.unwrap_or_default();
        event.lineage = r.optional(read_lineage)?.map(Box::new);
        Ok(event)
    }

    fn decode_older(fingerprint: u64, r: &mut Reader<'_>) -> Option<Result<Self, CodecError>> {
        Self::older_fingerprints().contains(&fingerprint).then(|| decode_revision_1(r))
    }

    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("model_id", &self.model_id)?;
        non_empty("model_version", &self.model_version)?;
        finite("traffic_weight", self.traffic_weight)?;
        self.lineage.as_deref().map_or(Ok(()), Lineage::validate)
    }
}
