//! A Parquet or Arrow IPC reference file, read by `vigil drift`'s columnar engine (all cores),
//! then handed over row by row. Columns are typed by the file (numbers are numeric features,
//! strings and booleans categorical) unless a flag says otherwise; a column without any value is
//! left out. Nulls are missing: NaN in a numeric column, absent in a categorical one.

use super::{check_score, row_view, Reading, Role};
use crate::engine::{self, Column, InputFormat, Limits, Want, MISSING};
use crate::error::{OfflineError, Place};

pub(super) fn read(r: &mut Reading<'_>, format: InputFormat) -> Result<(), OfflineError> {
    let flagged: Vec<(String, Role)> = r.flags.roles.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let want = |name: &str| match flagged.iter().find(|(k, _)| k == name).map(|(_, role)| *role) {
        Some(Role::Numeric | Role::Score) => Want::Numeric,
        Some(_) => Want::Text,
        None => Want::Infer,
    };
    r.progress.start(format!("reading {} ({})", r.path.display(), format.name()), None);
    let table = engine::read_table(r.path, format, &want, &Limits::default())?;
    r.flags.check_present(r.path, table.header.iter().map(String::as_str))?;
    let roles: Vec<Role> = table
        .header
        .iter()
        .zip(&table.columns)
        .map(|(name, column)| {
            r.flags.role(name).unwrap_or(match column {
                Column::Numeric(n) if n.values.len() > n.missing.len() => Role::Numeric,
                Column::Text(t) if t.codes.iter().any(|&c| c != MISSING) => Role::Categorical,
                _ => Role::Empty,
            })
        })
        .collect();
    r.report.columns = table.header.iter().cloned().zip(roles.iter().copied()).collect();
    // Per column: its numbers (NaN where missing) or its codes and dictionary.
    let numbers: Vec<Option<&[f64]>> = table
        .columns
        .iter()
        .map(|c| match c {
            Column::Numeric(n) => Some(n.values.as_slice()),
            Column::Text(_) => None,
        })
        .collect();
    let numeric_missing: Vec<Vec<bool>> = table
        .columns
        .iter()
        .map(|c| match c {
            Column::Numeric(n) if !n.missing.is_empty() => {
                let mut m = vec![false; n.values.len()];
                n.missing.iter().for_each(|&i| m[i as usize] = true);
                m
            }
            _ => Vec::new(),
        })
        .collect();
    for row in 0..table.rows {
        let mut numeric_features = Vec::new();
        let mut categorical_features = Vec::new();
        let (mut score, mut label) = (None, None);
        let mut bad = None;
        for (i, ((name, column), role)) in table.header.iter().zip(&table.columns).zip(&roles).enumerate() {
            let number = || {
                let missing = numeric_missing[i].get(row).copied().unwrap_or(false);
                (!missing).then(|| numbers[i].map(|v| v[row])).flatten()
            };
            let text = || match column {
                Column::Text(t) => t.dictionary.get(t.codes[row] as usize).map(String::as_str),
                Column::Numeric(_) => None,
            };
            match role {
                Role::Numeric => numeric_features.push((name.as_str(), number().unwrap_or(f64::NAN))),
                Role::Categorical => categorical_features.extend(text().map(|v| (name.as_str(), v))),
                Role::Score => match number().map(check_score) {
                    Some(Ok(x)) => score = Some(x),
                    Some(Err(message)) => bad = Some((name, message)),
                    None => {}
                },
                Role::Label => label = text(),
                Role::Skipped | Role::Empty => {}
            }
        }
        match bad {
            Some((column, message)) => r.bad.skip(OfflineError::BadValue {
                path: r.path.into(),
                place: Place::Record(row as u64 + 1),
                column: column.clone(),
                message,
            })?,
            None => {
                (r.on_row)(&row_view(numeric_features, categorical_features, score, label));
                r.report.rows += 1;
            }
        }
        r.progress.update(r.report.rows, table.bytes * (row as u64 + 1) / table.rows.max(1) as u64);
    }
    r.progress.done(r.report.rows);
    r.report.bytes = table.bytes;
    Ok(())
}
