//! An Avro object container file, read with apache-avro: either vigil `PredictionEvent`s (the
//! records a serving app publishes, e.g. exported from the predictions topic), taken as the
//! monitor takes them, or flat records whose fields are features, typed by the writer schema:
//! `double`, `float`, `int`, `long` numeric; `string`, `enum`, `boolean` categorical; a union
//! with `null` as its type, `null` being a missing value.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value;
use vigil_events::{AvroRecord, PredictionEvent, PredictionView};

use super::{check_score, row_view, ColumnFlags, Reading, Role};
use crate::error::{OfflineError, Place};
use crate::table::{is_missing, parse_number};

pub(super) fn read(r: &mut Reading<'_>) -> Result<(), OfflineError> {
    let file =
        std::fs::File::open(r.path).map_err(|source| OfflineError::Io { path: r.path.into(), source })?;
    let size = file.metadata().ok().map(|m| m.len());
    let bytes = Rc::new(Cell::new(0));
    let counted = Counted { inner: BufReader::with_capacity(1 << 16, file), bytes: bytes.clone() };
    let reader = apache_avro::Reader::new(counted).map_err(|e| OfflineError::Avro {
        path: r.path.into(),
        place: Place::Header,
        message: format!("not an Avro object container file ({e}); for a CSV file pass --format csv"),
    })?;
    let Schema::Record(record) = reader.writer_schema().clone() else {
        return Err(header_error(
            r.path,
            format!("the file holds {:?} values, not records", reader.writer_schema()),
        ));
    };
    let plan = if is_prediction_event(&record) {
        if !r.flags.is_empty() {
            return Err(OfflineError::BadArgument {
                flag: "columns",
                message: format!(
                    "{} holds vigil PredictionEvents, whose features, score and label are typed already: \
                     --column, --skip-column, --score-column and --label-column apply to CSV files and flat records",
                    r.path.display()
                ),
            });
        }
        r.report.prediction_events = true;
        None
    } else {
        let plan = Plan::of(r.path, &record, &r.flags)?;
        r.report.columns = plan.fields.iter().map(|f| (f.name.clone(), f.role)).collect();
        Some(plan)
    };

    r.progress.start(format!("reading {}", r.path.display()), size);
    let mut index = 0;
    for value in reader {
        index += 1;
        let place = Place::Record(index);
        let value = value.map_err(|e| OfflineError::Avro {
            path: r.path.into(),
            place,
            message: format!("{e}; the file is damaged or was not written as one Avro object container file"),
        })?;
        let row = match &plan {
            None => event_view(&value).map(|view| {
                *r.report
                    .event_versions
                    .entry((view.model_id.to_owned(), view.model_version.to_owned()))
                    .or_default() += 1;
                (r.on_row)(&view);
            }),
            Some(plan) => plan.visit(&value, r.on_row),
        };
        match row {
            Ok(()) => r.report.rows += 1,
            Err((column, message)) if column.is_empty() => {
                r.bad.skip(OfflineError::Avro { path: r.path.into(), place, message })?
            }
            Err((column, message)) => {
                r.bad.skip(OfflineError::BadValue { path: r.path.into(), place, column, message })?
            }
        }
        r.progress.update(index, bytes.get());
    }
    r.progress.done(index);
    r.report.bytes = bytes.get();
    Ok(())
}

fn header_error(path: &Path, message: String) -> OfflineError {
    OfflineError::Avro { path: path.into(), place: Place::Header, message }
}

/// Counts the bytes the Avro reader consumed, for progress.
struct Counted<R> {
    inner: R,
    bytes: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

fn is_prediction_event(record: &RecordSchema) -> bool {
    record.name.fullname(None) == PredictionEvent::FULL_NAME
}

/// A prediction event as the monitor decodes it; an event the monitor would dead-letter (it
/// fails validation) is a bad row.
fn event_view(value: &Value) -> Result<PredictionView<'_>, (String, String)> {
    let fields = record_fields(value).map_err(|m| (String::new(), m))?;
    let field = |name: &'static str| -> Result<&Value, (String, String)> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| unwrap_union(v))
            .ok_or_else(|| (name.to_owned(), "missing".to_owned()))
    };
    let string = |name: &'static str| -> Result<&str, (String, String)> {
        match field(name)? {
            Value::String(s) => Ok(s.as_str()),
            other => Err((name.to_owned(), format!("expected a string, found {other:?}"))),
        }
    };
    let optional_double = |v: &Value, name: &str| -> Result<Option<f64>, (String, String)> {
        match unwrap_union(v) {
            Value::Null => Ok(None),
            Value::Double(x) => Ok(Some(*x)),
            other => Err((name.to_owned(), format!("expected a double, found {other:?}"))),
        }
    };
    let map = |name: &'static str| -> Result<&std::collections::HashMap<String, Value>, (String, String)> {
        match field(name)? {
            Value::Map(m) => Ok(m),
            other => Err((name.to_owned(), format!("expected a map, found {other:?}"))),
        }
    };
    let mut numeric = Vec::new();
    for (feature, v) in map("numeric_features")? {
        let x = optional_double(v, "numeric_features")?.unwrap_or(f64::NAN);
        numeric.push((feature.as_str(), x));
    }
    let mut categorical = Vec::new();
    for (feature, v) in map("categorical_features")? {
        match v {
            Value::String(s) => categorical.push((feature.as_str(), s.as_str())),
            other => {
                return Err(("categorical_features".into(), format!("expected a string, found {other:?}")))
            }
        }
    }
    let prediction = record_fields(field("prediction")?).map_err(|m| ("prediction".to_owned(), m))?;
    let part = |name: &str| {
        prediction.iter().find(|(n, _)| n == name).map_or(&Value::Null, |(_, v)| unwrap_union(v))
    };
    let label = match part("label") {
        Value::Null => None,
        Value::String(s) => Some(s.as_str()),
        other => return Err(("prediction.label".into(), format!("expected a string, found {other:?}"))),
    };
    let mut view = row_view(numeric, categorical, optional_double(part("score"), "prediction.score")?, label);
    view.value = optional_double(part("value"), "prediction.value")?;
    view.serving_latency_ms = optional_double(field("serving_latency_ms")?, "serving_latency_ms")?;
    view.model_id = string("model_id")?;
    view.model_version = string("model_version")?;
    view.prediction_id = string("prediction_id")?;
    view.event_id = string("event_id")?;
    view.event_time_ms = match field("event_time_ms")? {
        Value::Long(ms) => *ms,
        other => return Err(("event_time_ms".into(), format!("expected a long, found {other:?}"))),
    };
    view.validate().map_err(|e| {
        (String::new(), format!("an invalid prediction, which the monitor would dead-letter: {e}"))
    })?;
    Ok(view)
}

fn record_fields(value: &Value) -> Result<&[(String, Value)], String> {
    match unwrap_union(value) {
        Value::Record(fields) => Ok(fields),
        other => Err(format!("expected a record, found {other:?}")),
    }
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// What each field of a flat record becomes.
struct Plan {
    fields: Vec<PlannedField>,
    numeric: usize,
    categorical: usize,
}

struct PlannedField {
    name: String,
    role: Role,
}

/// The types a flat record's field may have.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Number,
    Text,
}

impl Plan {
    fn of(path: &Path, record: &RecordSchema, flags: &ColumnFlags) -> Result<Plan, OfflineError> {
        flags.check_present(path, record.fields.iter().map(|f| f.name.as_str()))?;
        let mut problems = Vec::new();
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let scalars = scalars(&field.schema);
            let role = match (flags.role(&field.name), scalars.as_deref()) {
                (Some(Role::Skipped), _) => Role::Skipped,
                (Some(role), Some(_)) => role,
                (None, Some([])) => Role::Empty,
                (None, Some(kinds)) if kinds.iter().all(|k| *k == Scalar::Number) => Role::Numeric,
                (None, Some(kinds)) if kinds.iter().all(|k| *k == Scalar::Text) => Role::Categorical,
                (None, Some(_)) => {
                    problems.push(format!(
                        "field {:?} mixes numbers and text ({}): pass --column {}=numeric or --column {}=categorical",
                        field.name,
                        type_name(&field.schema),
                        field.name,
                        field.name
                    ));
                    Role::Skipped
                }
                (_, None) => {
                    problems.push(format!(
                        "field {:?} has type {}, which is not a feature (numbers, strings, enums, booleans): pass --skip-column {}",
                        field.name,
                        type_name(&field.schema),
                        field.name
                    ));
                    Role::Skipped
                }
            };
            fields.push(PlannedField { name: field.name.clone(), role });
        }
        if !problems.is_empty() {
            return Err(header_error(path, problems.join("; ")));
        }
        let count = |role| fields.iter().filter(|f| f.role == role).count();
        Ok(Plan { numeric: count(Role::Numeric), categorical: count(Role::Categorical), fields })
    }

    /// Hands one record to `on_row` as a prediction, or returns the field that does not fit and
    /// why.
    fn visit(
        &self,
        value: &Value,
        on_row: &mut dyn FnMut(&PredictionView<'_>),
    ) -> Result<(), (String, String)> {
        let values = record_fields(value).map_err(|m| (String::new(), m))?;
        if values.len() != self.fields.len() {
            return Err((
                String::new(),
                format!("{} fields where the schema has {}", values.len(), self.fields.len()),
            ));
        }
        let mut numeric = Vec::with_capacity(self.numeric);
        let mut categories: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(self.categorical);
        let (mut score, mut label) = (None, None);
        for (field, (_, value)) in self.fields.iter().zip(values) {
            let name = field.name.as_str();
            let fail = |message: String| (name.to_owned(), message);
            match field.role {
                Role::Numeric => numeric.push((name, number(value).map_err(fail)?.unwrap_or(f64::NAN))),
                Role::Categorical => {
                    if let Some(text) = text(value).map_err(fail)? {
                        categories.push((name, text));
                    }
                }
                Role::Score => {
                    if let Some(x) = number(value).map_err(fail)? {
                        score = Some(check_score(x).map_err(fail)?);
                    }
                }
                Role::Label => label = text(value).map_err(fail)?,
                Role::Skipped | Role::Empty => {}
            }
        }
        // Categories made from numbers are owned here; the view borrows them for the call.
        let categorical = categories.iter().map(|(name, text)| (*name, text.as_ref())).collect();
        on_row(&row_view(numeric, categorical, score, label.as_deref()));
        Ok(())
    }
}

/// The scalar kinds a field may hold (`null` aside), or `None` when it may hold something else.
fn scalars(schema: &Schema) -> Option<Vec<Scalar>> {
    match schema {
        Schema::Null => Some(vec![]),
        Schema::Double | Schema::Float | Schema::Int | Schema::Long => Some(vec![Scalar::Number]),
        Schema::String | Schema::Enum(_) | Schema::Boolean => Some(vec![Scalar::Text]),
        Schema::Union(union) => {
            let mut kinds = Vec::new();
            for variant in union.variants() {
                kinds.extend(scalars(variant)?);
            }
            Some(kinds)
        }
        _ => None,
    }
}

fn type_name(schema: &Schema) -> String {
    match schema {
        Schema::Union(union) => {
            format!("[{}]", union.variants().iter().map(type_name).collect::<Vec<_>>().join(", "))
        }
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

/// A number from a numeric field (or a string field forced numeric); `None` for null.
fn number(value: &Value) -> Result<Option<f64>, String> {
    match unwrap_union(value) {
        Value::Null => Ok(None),
        Value::Double(x) => Ok(Some(*x)),
        Value::Float(x) => Ok(Some(f64::from(*x))),
        Value::Int(x) => Ok(Some(f64::from(*x))),
        Value::Long(x) => Ok(Some(*x as f64)),
        Value::String(s) if is_missing(s) => Ok(None),
        Value::String(s) => {
            parse_number(s).map(Some).ok_or_else(|| format!("{s:?} is not a number (the column is numeric)"))
        }
        other => Err(format!("{other:?} is not a number (the column is numeric)")),
    }
}

/// A category from a text field (or a numeric field forced categorical); `None` for null.
fn text(value: &Value) -> Result<Option<Cow<'_, str>>, String> {
    match unwrap_union(value) {
        Value::Null => Ok(None),
        Value::String(s) | Value::Enum(_, s) => Ok(Some(Cow::Borrowed(s))),
        Value::Boolean(b) => Ok(Some(Cow::Borrowed(if *b { "true" } else { "false" }))),
        Value::Int(x) => Ok(Some(Cow::Owned(x.to_string()))),
        Value::Long(x) => Ok(Some(Cow::Owned(x.to_string()))),
        Value::Float(x) => Ok(Some(Cow::Owned(x.to_string()))),
        Value::Double(x) => Ok(Some(Cow::Owned(x.to_string()))),
        other => Err(format!("{other:?} is not a category")),
    }
}
