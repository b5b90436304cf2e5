//! The rows of a partition's KEYS file: one per version the run decided,
//! with the key parts and the ordering key under the warehouse's column
//! names, whether the version deletes its key, and its kind.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::class::Class;
use crate::config::Topic;
use crate::decode::DELETED_COLUMN;

/// KEYS column: whether the version deletes its key.
pub const KEYS_DELETED: &str = "deleted";
/// KEYS column: `main` (the key's newest version in the run), `correction`
/// (a late version) or `older` (an older version kept for the history).
pub const KEYS_KIND: &str = "kind";

/// The columns of a KEYS file: the key parts and the ordering key under the
/// warehouse's names, whether the version deletes its key, and its kind.
pub(super) struct KeysSchema {
    names: Vec<String>,
    schema: Option<SchemaRef>,
}

impl KeysSchema {
    pub(super) fn new(key_names: Vec<String>, ordering_name: String) -> KeysSchema {
        let mut names = key_names;
        names.push(ordering_name);
        KeysSchema {
            names,
            schema: None,
        }
    }

    /// The KEYS rows of `batches`: one per event this run decided (every
    /// class but superseded).
    pub(super) fn rows(
        &mut self,
        batches: &[RecordBatch],
        classes: &[Class],
    ) -> Result<Vec<RecordBatch>, ArrowError> {
        let width = self.names.len();
        let mut out = Vec::with_capacity(batches.len());
        let mut start = 0;
        for batch in batches {
            let rows = classes
                .get(start..start + batch.num_rows())
                .ok_or_else(|| {
                    ArrowError::InvalidArgumentError(
                        "events and their classification differ in length".into(),
                    )
                })?;
            start += batch.num_rows();
            let decided: BooleanArray =
                rows.iter().map(|c| Some(*c != Class::Superseded)).collect();
            let batch = filter_record_batch(batch, &decided)?;
            let kinds: StringArray = rows
                .iter()
                .filter(|c| **c != Class::Superseded)
                .map(|c| {
                    Some(match c {
                        Class::Main => "main",
                        Class::Older => "older",
                        _ => "correction",
                    })
                })
                .collect();
            let deleted: ArrayRef = match batch.column_by_name(DELETED_COLUMN) {
                Some(flags) => flags.clone(),
                None => Arc::new(BooleanArray::from(vec![false; batch.num_rows()])),
            };
            let mut columns: Vec<ArrayRef> = batch.columns()[..width].to_vec();
            columns.push(deleted);
            columns.push(Arc::new(kinds));
            let schema = self.schema.get_or_insert_with(|| {
                keys_schema(
                    self.names
                        .iter()
                        .zip(&columns)
                        .map(|(name, column)| (name.as_str(), column.data_type().clone())),
                )
            });
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }
}

/// The schema of a KEYS file whose key parts and ordering key are
/// `columns` (names and types).
fn keys_schema<'a>(columns: impl Iterator<Item = (&'a str, DataType)>) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .map(|(name, data_type)| Field::new(name, data_type, false))
        .collect();
    fields.push(Field::new(KEYS_DELETED, DataType::Boolean, false));
    fields.push(Field::new(KEYS_KIND, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The schema of a topic's KEYS files, from its event type (`None` for a
/// topic that keeps no key state).
pub(crate) fn topic_keys_schema(topic: &Topic) -> Option<SchemaRef> {
    let state = topic
        .compaction()
        .key_state_schema(&topic.schema().payload)?;
    let (mut names, ordering) = topic.warehouse().key_names(topic.compaction());
    names.push(ordering);
    if names.len() != state.fields().len() {
        return None;
    }
    Some(keys_schema(names.iter().zip(state.fields()).map(
        |(name, field)| (name.as_str(), field.data_type().clone()),
    )))
}
