//! A CSV reference file, in two passes: the first types the columns no flag types (numeric when
//! every non-missing cell is a number, as `vigil drift` decides), the second hands over the rows.
//! Missing cells (empty, `NA`, `null`, ...) are NaN in a numeric column, as the SDKs send a
//! missing numeric feature, and absent in a categorical one.

use vigil_events::PredictionView;

use super::{check_score, row_view, BadRows, Reading, Role};
use crate::error::{OfflineError, Place};
use crate::table::{is_missing, parse_number, CsvRows, KindGuess};

pub(super) fn read(r: &mut Reading<'_>) -> Result<(), OfflineError> {
    let size = std::fs::metadata(r.path).ok().map(|m| m.len());
    let mut rows = CsvRows::open(r.path)?;
    let header = rows.header().to_vec();
    r.flags.check_present(r.path, header.iter().map(String::as_str))?;
    let mut roles: Vec<Option<Role>> = header.iter().map(|h| r.flags.role(h)).collect();

    let untyped: Vec<usize> = (0..header.len()).filter(|i| roles[*i].is_none()).collect();
    let label = |pass: &str| format!("reading {} ({pass})", r.path.display());
    let two_passes = !untyped.is_empty();
    if two_passes {
        r.progress.start(label("pass 1 of 2: column types"), size);
        let mut guesses = vec![KindGuess::default(); header.len()];
        let mut n = 0;
        while let Some(row) = next(&mut rows, &mut r.bad)? {
            if row.is_some() {
                for &i in &untyped {
                    guesses[i].observe(&rows.record()[i]);
                }
                n += 1;
                r.progress.update(n, rows.bytes_read());
            }
        }
        r.progress.done(n);
        for i in untyped {
            let guess = &guesses[i];
            roles[i] = Some(if guess.present() == 0 {
                Role::Empty
            } else if guess.all_numbers() {
                Role::Numeric
            } else {
                Role::Categorical
            });
        }
        r.bad.restart();
        rows = CsvRows::open(r.path)?;
    }
    let roles: Vec<Role> = roles.into_iter().map(|r| r.expect("every column typed")).collect();
    r.report.columns = header.iter().cloned().zip(roles.iter().copied()).collect();

    r.progress.start(label(if two_passes { "pass 2 of 2: rows" } else { "rows" }), size);
    let (numeric, categorical) = (count(&roles, Role::Numeric), count(&roles, Role::Categorical));
    while let Some(row) = next(&mut rows, &mut r.bad)? {
        let Some(line) = row else { continue };
        match view(rows.record(), &header, &roles, [numeric, categorical]) {
            Ok(view) => {
                (r.on_row)(&view);
                r.report.rows += 1;
            }
            Err((column, message)) => r.bad.skip(OfflineError::BadValue {
                path: r.path.into(),
                place: Place::Line(line),
                column: header[column].clone(),
                message,
            })?,
        }
        r.progress.update(r.report.rows, rows.bytes_read());
    }
    r.progress.done(r.report.rows);
    r.report.bytes = rows.bytes_read();
    Ok(())
}

/// The next row: `Some(Some(line))` for a row to use, `Some(None)` for a bad row that was
/// skipped, `None` at the end of the file.
fn next(rows: &mut CsvRows, bad: &mut BadRows) -> Result<Option<Option<u64>>, OfflineError> {
    match rows.next_row() {
        Ok(Some(line)) => Ok(Some(Some(line))),
        Ok(None) => Ok(None),
        Err(error @ (OfflineError::Ragged { .. } | OfflineError::Csv { .. })) => {
            bad.skip(error)?;
            Ok(Some(None))
        }
        Err(error) => Err(error),
    }
}

fn count(roles: &[Role], role: Role) -> usize {
    roles.iter().filter(|r| **r == role).count()
}

/// One row as a prediction, or the column that does not fit and why.
fn view<'r>(
    record: &'r csv::StringRecord,
    header: &'r [String],
    roles: &[Role],
    [numeric, categorical]: [usize; 2],
) -> Result<PredictionView<'r>, (usize, String)> {
    let mut numeric_features = Vec::with_capacity(numeric);
    let mut categorical_features = Vec::with_capacity(categorical);
    let (mut score, mut label) = (None, None);
    for (i, (cell, role)) in record.iter().zip(roles).enumerate() {
        let name = header[i].as_str();
        match role {
            Role::Numeric if is_missing(cell) => numeric_features.push((name, f64::NAN)),
            Role::Numeric => match parse_number(cell) {
                Some(x) => numeric_features.push((name, x)),
                None => return Err((i, format!("{cell:?} is not a number (the column is numeric)"))),
            },
            Role::Categorical if is_missing(cell) => {}
            Role::Categorical => categorical_features.push((name, cell)),
            Role::Score if is_missing(cell) => {}
            Role::Score => match parse_number(cell) {
                Some(x) => score = Some(check_score(x).map_err(|m| (i, m))?),
                None => return Err((i, format!("{cell:?} is not a number (the score column)"))),
            },
            Role::Label if is_missing(cell) => {}
            Role::Label => label = Some(cell),
            Role::Skipped | Role::Empty => {}
        }
    }
    Ok(row_view(numeric_features, categorical_features, score, label))
}
