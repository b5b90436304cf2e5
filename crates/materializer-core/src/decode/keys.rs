//! The key columns: the paths an event must have to be placed
//! ([`RequiredKeys`]), where a decoder sends its rows' key columns
//! ([`KeySink`]), and how they are taken from a decoded batch. Apart from the
//! decoder because they serve the classification, not the mapping.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StructArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::DecodeError;
use crate::mapping::deletes::CompiledDeletes;

/// The columns an event must have to be placed: dotted paths into the payload.
#[derive(Debug, Clone, Default)]
pub struct RequiredKeys {
    pub paths: Vec<String>,
    /// When set, the key columns gain [`DELETED_COLUMN`]: whether each event
    /// deletes its key.
    pub deletes: Option<CompiledDeletes>,
}

/// The key column that tells a delete (present when the topic has deletes).
pub const DELETED_COLUMN: &str = "__deleted";

impl RequiredKeys {
    /// The partitioning key parts and the ordering key of `compaction`.
    pub fn of(
        compaction: &crate::mapping::Compaction,
        deletes: Option<CompiledDeletes>,
    ) -> RequiredKeys {
        RequiredKeys {
            paths: compaction
                .partitioning_key
                .iter()
                .chain([&compaction.ordering_key])
                .cloned()
                .collect(),
            deletes,
        }
    }
}

/// Where a decoder sends the key columns of its rows.
pub trait KeySink: Send {
    /// The key columns of rows `first..first + keys.num_rows()` of the
    /// partition (positions in arrival order).
    fn push(&mut self, first: u64, keys: RecordBatch) -> Result<(), DecodeError>;
}

pub(super) enum KeyOutput {
    Memory(Vec<RecordBatch>),
    Sink(Box<dyn KeySink>),
}

/// The key columns of `batch` (the required paths, in their order).
pub(super) fn key_columns(
    required: &RequiredKeys,
    batch: &RecordBatch,
) -> Result<RecordBatch, DecodeError> {
    let mut fields = Vec::with_capacity(required.paths.len());
    let mut columns = Vec::with_capacity(required.paths.len());
    for path in &required.paths {
        let column = column_at_path(batch, path).ok_or_else(|| {
            DecodeError::Assemble(ArrowError::SchemaError(format!(
                "key column {path} is not in the decoded events"
            )))
        })?;
        fields.push(Field::new(path, column.data_type().clone(), true));
        columns.push(column);
    }
    if let Some(deletes) = &required.deletes {
        let flags = deletes.evaluate(batch).map_err(DecodeError::Deletes)?;
        fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
        columns.push(Arc::new(flags));
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(DecodeError::Assemble)
}

/// The column at a dotted path, with parents' nulls applied.
pub fn column_at_path(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    let mut parts = path.split('.');
    let mut column = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        let DataType::Struct(_) = column.data_type() else {
            return None;
        };
        let parent = column.as_any().downcast_ref::<StructArray>()?;
        let child = parent.column_by_name(part)?.clone();
        column = match parent.nulls() {
            Some(parent_nulls) => {
                let merged = arrow::buffer::NullBuffer::union(Some(parent_nulls), child.nulls());
                arrow::array::make_array(child.to_data().into_builder().nulls(merged).build().ok()?)
            }
            None => child,
        };
    }
    Some(column)
}
