//! Parquet and Arrow IPC files into columns. Their columns are typed already: numeric types
//! (integers, floats, decimals) become numbers, strings, booleans and dictionaries of strings
//! become text, other types are cast to text. Nulls are missing cells.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use super::{
    format_number, looks_like, parse_cell, Column, InputFormat, Interner, Limits, NumericColumn, Table,
    TextColumn, Want, MISSING,
};
use crate::error::{OfflineError, Place};

fn open(path: &Path) -> Result<File, OfflineError> {
    File::open(path).map_err(|source| OfflineError::Io { path: path.into(), source })
}

fn wrong_format(path: &Path, format: InputFormat, error: impl std::fmt::Display) -> OfflineError {
    let detail = match looks_like(path) {
        Some(what) => format!("it looks like {what}; pass --input-format to read it as one"),
        None if format == InputFormat::Parquet => format!("not a Parquet file ({error})"),
        None => format!("not an Arrow IPC file or stream ({error})"),
    };
    OfflineError::WrongFormat { path: path.into(), expected: format.name(), detail }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub(super) fn read_parquet(
    path: &Path,
    want: &dyn Fn(&str) -> Want,
    limits: &Limits,
) -> Result<Table, OfflineError> {
    let file = open(path)?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|e| wrong_format(path, InputFormat::Parquet, e))?;
    let (header, columns) = columns_of(path, metadata.schema(), want, limits, &|i| {
        let file = open(path)?;
        let mask = ProjectionMask::roots(metadata.parquet_schema(), [i]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| parquet_error(path, e))?;
        let mut arrays = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| parquet_error(path, e))?;
            arrays.push(batch.column(0).clone());
        }
        Ok(arrays)
    })?;
    let rows = metadata.metadata().file_metadata().num_rows().max(0) as usize;
    Ok(Table { path: path.into(), format: InputFormat::Parquet, header, columns, rows, bytes: size(path) })
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> OfflineError {
    OfflineError::WrongFormat {
        path: path.into(),
        expected: InputFormat::Parquet.name(),
        detail: format!("could not be read: {e}"),
    }
}

pub(super) fn read_ipc(
    path: &Path,
    want: &dyn Fn(&str) -> Want,
    limits: &Limits,
) -> Result<Table, OfflineError> {
    let file = std::io::BufReader::new(open(path)?);
    let is_file = super::sniff(path)? == Some(InputFormat::Arrow) && {
        use std::io::Read;
        let mut head = [0u8; 6];
        open(path)?.read_exact(&mut head).is_ok() && &head == b"ARROW1"
    };
    let bad = |e: arrow_schema::ArrowError| wrong_format(path, InputFormat::Arrow, e);
    let reader: Box<dyn RecordBatchReader> = if is_file {
        Box::new(arrow_ipc::reader::FileReader::try_new(file, None).map_err(bad)?)
    } else {
        Box::new(arrow_ipc::reader::StreamReader::try_new(file, None).map_err(bad)?)
    };
    let schema: SchemaRef = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(bad)?;
    let (header, columns) = columns_of(path, &schema, want, limits, &|i| {
        Ok(batches.iter().map(|b| b.column(i).clone()).collect())
    })?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(Table { path: path.into(), format: InputFormat::Arrow, header, columns, rows, bytes: size(path) })
}

/// The header, and each column converted from its arrays (`arrays(i)`), in parallel.
fn columns_of(
    path: &Path,
    schema: &SchemaRef,
    want: &dyn Fn(&str) -> Want,
    limits: &Limits,
    arrays: &(dyn Fn(usize) -> Result<Vec<ArrayRef>, OfflineError> + Sync),
) -> Result<(Vec<String>, Vec<Column>), OfflineError> {
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    super::check_header(path, &header, limits)?;
    let wants: Vec<Want> = header.iter().map(|h| want(h)).collect();
    let columns = (0..header.len())
        .into_par_iter()
        .map(|i| convert(path, &header[i], &arrays(i)?, wants[i]))
        .collect::<Result<_, _>>()?;
    Ok((header, columns))
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// One column's arrays (one per batch) as a column of the table.
fn convert(path: &Path, name: &str, arrays: &[ArrayRef], want: Want) -> Result<Column, OfflineError> {
    let Some(data_type) = arrays.first().map(|a| a.data_type().clone()) else {
        return Ok(match want {
            Want::Text => Column::Text(TextColumn::default()),
            _ => Column::Numeric(NumericColumn::default()),
        });
    };
    let unsupported = |e: &dyn std::fmt::Display| OfflineError::BadValue {
        path: path.into(),
        place: Place::Header,
        column: name.to_owned(),
        message: format!("the type {data_type} cannot be compared ({e})"),
    };
    if is_number(&data_type) || matches!(data_type, DataType::Null) {
        let mut column = NumericColumn::default();
        for array in arrays {
            let cast = arrow_cast::cast(array, &DataType::Float64).map_err(|e| unsupported(&e))?;
            let floats = cast.as_primitive::<Float64Type>();
            let base = column.values.len() as u32;
            column.values.extend_from_slice(floats.values());
            if floats.null_count() > 0 {
                for i in 0..floats.len() {
                    if floats.is_null(i) {
                        column.missing.push(base + i as u32);
                        column.values[(base as usize) + i] = f64::NAN;
                    }
                }
            }
            if column.spellings.len() < 3 {
                for i in 0..floats.len() {
                    if floats.is_valid(i) {
                        column.observe_spelling(&format_number(floats.value(i)));
                        if column.spellings.len() >= 3 {
                            break;
                        }
                    }
                }
            }
        }
        return Ok(match want {
            Want::Text => Column::Text(Column::Numeric(column).into_text()),
            _ => Column::Numeric(column),
        });
    }
    if !is_text(&data_type) && want == Want::Numeric {
        return Err(unsupported(&"not a number type"));
    }
    // Text: strings, booleans, dictionaries, and whatever else casts to strings (dates, ...).
    let mut interner = Interner::default();
    let mut codes = Vec::new();
    let mut numbers = NumericColumn::default();
    let mut row = 0u64;
    for array in arrays {
        let cast = arrow_cast::cast(array, &DataType::Utf8).map_err(|e| unsupported(&e))?;
        let strings = cast.as_string::<i32>();
        for value in strings.iter() {
            row += 1;
            let value = value.map(str::trim).filter(|v| !super::is_missing_bytes(v.as_bytes()));
            if want == Want::Numeric {
                match value {
                    None => {
                        numbers.missing.push(numbers.values.len() as u32);
                        numbers.values.push(f64::NAN);
                    }
                    Some(v) => match parse_cell(v.as_bytes()) {
                        Some(Ok(x)) => {
                            numbers.values.push(x);
                            numbers.observe_spelling(v);
                        }
                        Some(Err(())) => {
                            return Err(OfflineError::BadValue {
                                path: path.into(),
                                place: Place::Record(row),
                                column: name.to_owned(),
                                message: format!(
                                    "{} does not fit a 64-bit float",
                                    super::csv::preview(v.as_bytes())
                                ),
                            })
                        }
                        None => {
                            return Err(OfflineError::BadValue {
                                path: path.into(),
                                place: Place::Record(row),
                                column: name.to_owned(),
                                message: format!("{v:?} is not a number (the column is numeric)"),
                            })
                        }
                    },
                }
            } else {
                codes.push(value.map_or(MISSING, |v| interner.code(v)));
            }
        }
    }
    Ok(if want == Want::Numeric {
        Column::Numeric(numbers)
    } else {
        Column::Text(TextColumn { codes, dictionary: interner.dictionary })
    })
}
