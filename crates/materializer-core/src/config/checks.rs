//! The checks a topic passes when it loads, beyond what its types ensure.

use std::path::Path;

use arrow::datatypes::{DataType, Schema};

use super::error::ConfigError;
use super::places::Places;
use super::settings::{OutputSettings, WarehouseSettings};
use crate::schema::field_at_path;

/// Topic names become object store prefixes and file names.
pub(super) fn check_topic_name(name: &str, dir: &Path) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '_'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            dir,
            format!(
                "topic name {name:?} must use letters, digits, '-', '_' or '.', and not start with '.' or '_'"
            ),
        ))
    }
}

/// Keys must be columns with a scalar type; the ordering key must be orderable.
pub fn check_keys(
    path: &Path,
    places: &Places,
    payload: &Schema,
    partitioning: &[String],
    ordering: &str,
) -> Result<(), ConfigError> {
    if partitioning.is_empty() {
        return Err(ConfigError::invalid_at(
            path,
            places.partitioning_key(0),
            "partitioning_key needs at least one column",
        ));
    }
    let columns = || {
        payload
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let keys = partitioning
        .iter()
        .enumerate()
        .map(|(i, k)| ("partitioning_key", k.as_str(), places.partitioning_key(i)))
        .chain([("ordering_key", ordering, places.ordering_key())]);
    for (setting, key, at) in keys {
        let invalid = |message: String| ConfigError::invalid_at(path, at, message);
        let field = field_at_path(payload, key).ok_or_else(|| {
            invalid(format!(
                "{setting} {key:?} is not a column of the events (columns: {}; nested fields as parent.child)",
                columns()
            ))
        })?;
        let scalar = matches!(
            field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Boolean
        );
        if !scalar {
            return Err(invalid(format!(
                "{setting} {key:?} is {}; keys must be single values (text, numbers, dates, timestamps)",
                field.data_type()
            )));
        }
    }
    Ok(())
}

pub(super) fn check_output(
    path: &Path,
    places: &Places,
    output: &OutputSettings,
    output_schema: &Schema,
) -> Result<(), ConfigError> {
    for (i, column) in output.partition_by.iter().enumerate() {
        let at = places.partition_by(i);
        let Ok(field) = output_schema.field_with_name(column) else {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                at,
                message: format!(
                    "output.partition_by names {column:?}, which is not an output column (output columns: {})",
                    output_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        if matches!(
            field.data_type(),
            DataType::Timestamp(_, _) | DataType::Float32 | DataType::Float64
        ) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                at,
                message: format!(
                    "output.partition_by column {column:?} is {}; partition by a date or text column \
                     (e.g. CAST(ts AS DATE) in the mapping)",
                    field.data_type()
                ),
            });
        }
    }
    let csv = &output.csv;
    if csv.delimiter == csv.quote || csv.delimiter == '\n' || csv.delimiter == '\r' {
        return Err(ConfigError::invalid_at(
            path,
            places.csv(),
            "output.csv: delimiter must differ from quote and from line breaks",
        ));
    }
    if !csv.delimiter.is_ascii()
        || !csv.quote.is_ascii()
        || csv.escape.is_some_and(|e| !e.is_ascii())
    {
        return Err(ConfigError::invalid_at(
            path,
            places.csv(),
            "output.csv: delimiter, quote and escape must be ASCII characters",
        ));
    }
    Ok(())
}

/// Columns named in `[warehouse]` must be output columns.
pub(super) fn check_warehouse(
    path: &Path,
    places: &Places,
    warehouse: &WarehouseSettings,
    output_schema: &Schema,
) -> Result<(), ConfigError> {
    let named = warehouse
        .key_columns
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("warehouse.key_columns", c, places.key_columns(i)))
        .chain(
            warehouse
                .ordering_column
                .iter()
                .map(|c| ("warehouse.ordering_column", c, places.ordering_column())),
        );
    for (setting, column, at) in named {
        if output_schema.field_with_name(column).is_err() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                at,
                message: format!(
                    "{setting} names {column:?}, which is not an output column of the mapping"
                ),
            });
        }
    }
    Ok(())
}
