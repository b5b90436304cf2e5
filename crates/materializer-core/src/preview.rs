//! Preview: the topic's mapping (or a draft of it) applied to a handful of
//! sample events, exactly as a run would apply it, with nothing written. The
//! analyst's loop: change the SQL, look at the rows, repeat.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use futures::StreamExt;
use serde::Serialize;

use crate::config::{Format, Topic};
use crate::decode::{DecodeError, PartitionDecoder, RequiredKeys};
use crate::mapping::{Engine, Mapping, MappingError};
use crate::run::{KeyState, RunCounts, classify};
use crate::source::{PartitionRange, Source, SourceError, framing, plan_ranges};

/// Rows of one output.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct PreviewTable {
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column.
    pub rows: Vec<serde_json::Value>,
}

/// A sample event that did not decode.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct PreviewRejected {
    /// Position of the event in the request (0-based).
    pub index: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PreviewOutcome {
    pub main: PreviewTable,
    pub correction: PreviewTable,
    pub rejected: Vec<PreviewRejected>,
    pub counts: RunCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("decoding the sample events")]
    Decode(#[from] DecodeError),
    #[error("the query failed")]
    Engine(#[from] DataFusionError),
}

impl PreviewError {
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            PreviewError::Mapping(e) => e.class(),
            PreviewError::Decode(_) | PreviewError::Engine(_) => crate::error::ErrorClass::Data,
        }
    }
}

/// The first `limit` events of `source`, from the oldest of each partition,
/// or those that arrived within `within`. Nothing is committed anywhere: give
/// it a source that reads with cursors (see
/// [`crate::run::RunEnvironment::sample_source`]).
pub async fn sample_events(
    source: &Source,
    limit: usize,
    within: std::time::Duration,
) -> Result<Vec<Bytes>, SourceError> {
    let partitions = source.partitions().await?;
    let ranges: Vec<PartitionRange> = plan_ranges(&partitions, &BTreeMap::new())
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    let mut stream = source.stream(&ranges);
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while events.len() < limit {
        let mut next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(batch)) => batch?,
            Ok(None) | Err(_) => break,
        };
        next.frame().map_err(|e| SourceError::Partition {
            partition: next.partition.to_string(),
            message: format!("{}: {e}", next.origin_or_unknown()),
        })?;
        let wanted = (limit - events.len()).min(next.event_count());
        events.extend((0..wanted).map(|i| next.line.slice(next.events[i].clone())));
    }
    Ok(events)
}

/// Name errors in a draft mapping point at.
pub const DRAFT_NAME: &str = "mapping";

/// Applies `draft` (or the topic's saved mapping) to `events`.
pub async fn preview(
    engine: &Engine,
    topic: &Topic,
    draft: Option<&str>,
    events: &[Bytes],
) -> Result<PreviewOutcome, PreviewError> {
    let (mapping, output_schema) = match draft {
        Some(text) => {
            let mapping = Mapping::parse(Path::new(DRAFT_NAME), text)?;
            let schema = mapping
                .validate(engine, topic.schema().events.clone())
                .await?;
            if topic.output().format == Format::Csv {
                mapping.check_flat(&schema)?;
            }
            (mapping, schema)
        }
        None => (topic.mapping().clone(), topic.output_schema().clone()),
    };
    let (batches, rejected) = decode(topic, events)?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let state = KeyState {
        schema: topic
            .compaction()
            .key_state_schema(&topic.schema().payload)
            .ok_or_else(|| {
                DataFusionError::Plan("the key columns are missing from the schema".into())
            })?,
        batches: Vec::new(),
    };
    let (main, correction) =
        classify(topic.compaction(), batches, &state).map_err(DataFusionError::from)?;
    let main_input: u64 = main.iter().map(|b| b.num_rows() as u64).sum();
    let correction_events: u64 = correction.iter().map(|b| b.num_rows() as u64).sum();
    let main = apply(engine, topic, &mapping, &output_schema, main).await?;
    let correction = apply(engine, topic, &mapping, &output_schema, correction).await?;
    Ok(PreviewOutcome {
        counts: RunCounts {
            events_read: events.len() as u64,
            events_rejected: rejected.len() as u64,
            main_input,
            superseded: rows - main_input - correction_events,
            correction_events,
            main_rows: main.rows.len() as u64,
            correction_rows: correction.rows.len() as u64,
        },
        main,
        correction,
        rejected,
    })
}

/// Decodes the sample events as if they were one batch of partition `preview`.
fn decode(
    topic: &Topic,
    events: &[Bytes],
) -> Result<(Vec<RecordBatch>, Vec<PreviewRejected>), PreviewError> {
    if events.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut line = format!(
        r#"{{"cursor":{{"partition":"preview","offset":"{}"}},"events":["#,
        events.len() - 1
    )
    .into_bytes();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(event);
    }
    line.extend_from_slice(b"]}");
    let batch = framing::parse_line(Bytes::from(line)).map_err(|e| {
        PreviewError::Engine(DataFusionError::Plan(format!(
            "the sample events are not a JSON array: {e}"
        )))
    })?;
    let mut decoder = PartitionDecoder::new(
        topic.schema().payload.clone(),
        topic.schema().events.clone(),
        Arc::from("preview"),
        RequiredKeys {
            paths: topic
                .compaction()
                .partitioning_key
                .iter()
                .chain([&topic.compaction().ordering_key])
                .cloned()
                .collect(),
        },
    )?;
    decoder.push(&batch)?;
    let decoded = decoder.finish()?;
    let rejected = decoded
        .rejected
        .iter()
        .map(|r| PreviewRejected {
            index: r.offset.parse().unwrap_or_default(),
            reason: r.reason.clone(),
        })
        .collect();
    let batches = decoded.events.into_batches().map_err(DecodeError::from)?;
    Ok((batches, rejected))
}

async fn apply(
    engine: &Engine,
    topic: &Topic,
    mapping: &Mapping,
    output_schema: &arrow::datatypes::SchemaRef,
    events: Vec<RecordBatch>,
) -> Result<PreviewTable, PreviewError> {
    let ctx = engine.session();
    let table = MemTable::try_new(topic.schema().events.clone(), vec![events])?;
    let frame = mapping.apply(&ctx, Arc::new(table)).await?;
    let batches: Vec<RecordBatch> =
        futures::TryStreamExt::try_collect(crate::mapping::engine::execute(frame).await?).await?;
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    for batch in &batches {
        writer.write(batch).map_err(DataFusionError::from)?;
    }
    writer.finish().map_err(DataFusionError::from)?;
    let bytes = writer.into_inner();
    let rows: Vec<serde_json::Value> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| DataFusionError::Plan(e.to_string()))?
    };
    Ok(PreviewTable {
        columns: output_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        rows,
    })
}
