//! The key state: per key, the highest ordering key committed by any run of the
//! topic. It lets a run send a late event to CORRECTION even when the newer
//! version of its key was committed by an earlier run.
//!
//! Each run that changes it writes a new Parquet file,
//! `_state/keys-<seq>-<attempt>.parquet`, and names it in its manifest: the state
//! changes exactly when the run commits, and a failed run changes nothing.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::config::{Format, OutputSettings, Topic};
use crate::mapping::Engine;
use crate::mapping::compaction::KEY_STATE_TABLE;
use crate::sink::layout::seq_name;
use crate::sink::{FileWriter, OutputLocation, TopicLayout};

/// The key state file a manifest names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Path relative to the topic's folder.
    pub path: String,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStateError {
    #[error("the key state of the topic cannot be built: a key column is missing from its schema")]
    Schema,
    #[error("reading the key state {path}: {message}")]
    Read { path: String, message: String },
    #[error("computing the key state")]
    Query(#[from] DataFusionError),
    #[error("writing the key state: {0}")]
    Write(String),
}

impl KeyStateError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            KeyStateError::Schema | KeyStateError::Query(_) => ErrorClass::Internal,
            KeyStateError::Read { .. } | KeyStateError::Write(_) => ErrorClass::SinkUnavailable,
        }
    }
}

/// The committed key state, in memory for one run.
#[derive(Clone)]
pub struct KeyState {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl KeyState {
    /// The state a manifest names (empty when none does).
    pub async fn load(
        topic: &Topic,
        location: &OutputLocation,
        layout: &TopicLayout,
        file: Option<&StateFile>,
    ) -> Result<KeyState, KeyStateError> {
        let schema = topic
            .compaction()
            .key_state_schema(&topic.schema().payload)
            .ok_or(KeyStateError::Schema)?;
        let Some(file) = file else {
            return Ok(KeyState {
                schema,
                batches: Vec::new(),
            });
        };
        let path = layout.resolve(&file.path);
        let read_error = |message: String| KeyStateError::Read {
            path: path.to_string(),
            message,
        };
        let bytes = location
            .store
            .get(&path)
            .await
            .map_err(|e| read_error(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| read_error(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| read_error(e.to_string()))?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| read_error(e.to_string()))?;
            batches.push(
                batch
                    .with_schema(schema.clone())
                    .map_err(|e| read_error(e.to_string()))?,
            );
        }
        Ok(KeyState { schema, batches })
    }

    pub fn table(&self) -> Result<MemTable, DataFusionError> {
        MemTable::try_new(self.schema.clone(), vec![self.batches.clone()])
    }

    /// This state with the run's MAIN versions merged in, written to the store.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_merged(
        &self,
        engine: &Engine,
        topic: &Topic,
        location: &OutputLocation,
        layout: &TopicLayout,
        sequence: u64,
        attempt: &str,
        versions: Vec<RecordBatch>,
    ) -> Result<StateFile, KeyStateError> {
        let ctx = engine.session();
        ctx.register_table(KEY_STATE_TABLE, Arc::new(self.table()?))?;
        ctx.register_table(
            "__new_versions",
            Arc::new(MemTable::try_new(self.schema.clone(), vec![versions])?),
        )?;
        let mut stream =
            crate::mapping::engine::execute(ctx.sql(&topic.compaction().merge_state_sql()).await?)
                .await?;
        let path: Path = layout
            .root()
            .clone()
            .join("_state")
            .join(format!("keys-{}-{attempt}.parquet", seq_name(sequence)));
        let settings = OutputSettings {
            format: Format::Parquet,
            ..OutputSettings::default()
        };
        let mut writer = FileWriter::create(
            location.store.clone(),
            path,
            &self.schema,
            &settings,
            Vec::new(),
        )
        .map_err(|e| KeyStateError::Write(e.to_string()))?;
        while let Some(batch) = stream.try_next().await? {
            let batch = batch
                .with_schema(self.schema.clone())
                .map_err(|e| KeyStateError::Query(e.into()))?;
            writer
                .write(&batch)
                .await
                .map_err(|e| KeyStateError::Write(e.to_string()))?;
        }
        let written = writer
            .finish()
            .await
            .map_err(|e| KeyStateError::Write(e.to_string()))?;
        Ok(StateFile {
            path: layout.relative(&written.path),
            keys: written.rows,
            bytes: written.bytes,
            sha256: written.sha256,
        })
    }
}
