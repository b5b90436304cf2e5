//! Preview: the topic's mapping (or a draft of it) applied to a handful of
//! sample events, exactly as a run would apply it, with nothing written. The
//! analyst's loop: change the SQL, look at the rows, repeat.
//!
//! A draft is untrusted input. [`preview_bounded`] runs it on a thread of its
//! own with a deadline that covers parsing and planning too, answers at most
//! [`PreviewLimits::max_rows`] rows and [`PreviewLimits::max_bytes`] bytes per
//! table (the rest is cut off and the table says so), and the query engine
//! it runs on has its own memory pool.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use futures::StreamExt;
use serde::Serialize;

use crate::commit::RunCounts;
use crate::config::{Format, Topic};
use crate::decode::{DecodeError, PartitionDecoder, RequiredKeys};
use crate::mapping::{Engine, Mapping, MappingError};
use crate::run::classify;
use crate::source::{PartitionRange, Source, SourceError, framing, plan_ranges};
use crate::state::KeyState;

/// Rows of one output.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct PreviewTable {
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column.
    pub rows: Vec<serde_json::Value>,
    /// The mapping made more rows or bytes than a preview answers; `rows`
    /// holds the first of them.
    #[serde(default)]
    pub truncated: bool,
}

/// How much a preview may take and give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviewLimits {
    /// Longest a preview may take, parsing and planning included.
    pub timeout: std::time::Duration,
    /// Most rows answered per table.
    pub max_rows: usize,
    /// Most bytes (of Arrow data) answered per table.
    pub max_bytes: usize,
}

impl Default for PreviewLimits {
    fn default() -> Self {
        PreviewLimits {
            timeout: std::time::Duration::from_secs(5),
            max_rows: 1000,
            max_bytes: 4 << 20,
        }
    }
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
    #[error(transparent)]
    Failed(#[from] crate::mapping::QueryFailure),
    #[error("the preview took longer than {seconds} s")]
    Timeout { seconds: f64 },
    #[error("the preview could not run")]
    Thread(#[source] std::io::Error),
}

impl PreviewError {
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            PreviewError::Mapping(e) => e.class(),
            PreviewError::Decode(_)
            | PreviewError::Engine(_)
            | PreviewError::Failed(_)
            | PreviewError::Timeout { .. } => crate::error::ErrorClass::Data,
            PreviewError::Thread(_) => crate::error::ErrorClass::Internal,
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
    let mut stream = match source {
        // Every partition from its oldest event, reading no further than needed.
        Source::Recorded(recorded) => recorded.stream_extent(
            HashMap::new(),
            &recorded.extent()?,
            Arc::new(AtomicU64::new(0)),
        ),
        Source::Nakadi(nakadi) => {
            let partitions = nakadi.partitions().await?;
            let ranges: Vec<PartitionRange> = plan_ranges(&partitions, &BTreeMap::new())
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect();
            source.stream(&ranges)
        }
    };
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

/// A mapping tried in place of the topic's saved one, with the name its
/// errors point at: the file it came from, or `mapping` for text sent over
/// HTTP.
#[derive(Debug, Clone)]
pub struct Draft {
    name: PathBuf,
    text: String,
}

impl Draft {
    /// Text without a file (the API's `{"mapping": "..."}`).
    pub fn text(text: String) -> Self {
        Self {
            name: PathBuf::from("mapping"),
            text,
        }
    }

    /// Text read from `path`: errors name the file.
    pub fn from_file(path: PathBuf, text: String) -> Self {
        Self { name: path, text }
    }
}

/// [`preview`] on a thread of its own, within `limits`: the answer comes by
/// the deadline whatever the draft does (a draft still planning then is left
/// to finish on its thread, its result dropped).
pub async fn preview_bounded(
    engine: Engine,
    topic: Arc<Topic>,
    draft: Option<Draft>,
    events: Vec<Bytes>,
    limits: PreviewLimits,
) -> Result<PreviewOutcome, PreviewError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    std::thread::Builder::new()
        .name("preview".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let outcome = match runtime {
                Ok(runtime) => runtime.block_on(async {
                    tokio::select! {
                        outcome = preview(&engine, &topic, draft.as_ref(), &events, limits) => outcome,
                        _ = stop.cancelled() => Err(PreviewError::Timeout { seconds: limits.timeout.as_secs_f64() }),
                    }
                }),
                Err(e) => Err(PreviewError::Thread(e)),
            };
            let _ = answer.send(outcome);
        })
        .map_err(PreviewError::Thread)?;
    let outcome = match tokio::time::timeout(limits.timeout, answered).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(PreviewError::Thread(std::io::Error::other(
            "the preview thread ended without an answer",
        ))),
        Err(_) => Err(PreviewError::Timeout {
            seconds: limits.timeout.as_secs_f64(),
        }),
    };
    cancel.cancel();
    outcome
}

/// Applies `draft` (or the topic's saved mapping) to `events`, answering at
/// most `limits.max_rows` rows and `limits.max_bytes` bytes per table.
pub async fn preview(
    engine: &Engine,
    topic: &Topic,
    draft: Option<&Draft>,
    events: &[Bytes],
    limits: PreviewLimits,
) -> Result<PreviewOutcome, PreviewError> {
    let (mapping, output_schema) = match draft {
        Some(draft) => {
            let mapping = Mapping::parse(&draft.name, &draft.text)?;
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
    let (batches, rejected) = decode(topic, events, None)?;
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
    // Deletes end their key: the mapping never sees them, as in a run.
    let (main, main_deletes) = without_deletes(engine, topic, main)?;
    let (correction, correction_deletes) = without_deletes(engine, topic, correction)?;
    let mapped = apply(
        engine,
        topic,
        &mapping,
        &output_schema,
        main.clone(),
        limits,
    )
    .await;
    let main = located(engine, &mapping, main, mapped).await?;
    let mapped = apply(
        engine,
        topic,
        &mapping,
        &output_schema,
        correction.clone(),
        limits,
    )
    .await;
    let correction = located(engine, &mapping, correction, mapped).await?;
    Ok(PreviewOutcome {
        counts: RunCounts {
            events_read: events.len() as u64,
            events_rejected: rejected.len() as u64,
            main_input,
            superseded: rows - main_input - correction_events,
            correction_events,
            main_rows: main.rows.len() as u64,
            correction_rows: correction.rows.len() as u64,
            deletes: main_deletes + correction_deletes,
            // A preview shows the ODS side; older versions only feed history.
            older_rows: 0,
        },
        main,
        correction,
        rejected,
    })
}

/// Decodes the sample events as if they were one batch of partition `preview`.
/// `batches` without the events that delete their key, and how many those were.
fn without_deletes(
    engine: &Engine,
    topic: &Topic,
    batches: Vec<RecordBatch>,
) -> Result<(Vec<RecordBatch>, u64), PreviewError> {
    let Some(deletes) = topic.deletes().filter(|_| topic.compaction().compact) else {
        return Ok((batches, 0));
    };
    let deletes = deletes.compile(engine, &topic.schema().events)?;
    let mut kept = Vec::with_capacity(batches.len());
    let mut removed = 0;
    for batch in batches {
        let deleted = deletes.evaluate(&batch)?;
        removed += deleted.true_count() as u64;
        let keep = arrow::compute::not(&deleted).map_err(DataFusionError::from)?;
        kept.push(
            arrow::compute::filter_record_batch(&batch, &keep).map_err(DataFusionError::from)?,
        );
    }
    Ok((kept, removed))
}

fn decode(
    topic: &Topic,
    events: &[Bytes],
    deletes: Option<crate::mapping::deletes::CompiledDeletes>,
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
        RequiredKeys::of(topic.compaction(), deletes),
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

/// `result`, the mapping applied to `events`; when its query failed, the
/// view, the expression and the first event it fails on.
async fn located(
    engine: &Engine,
    mapping: &Mapping,
    events: Vec<RecordBatch>,
    result: Result<PreviewTable, PreviewError>,
) -> Result<PreviewTable, PreviewError> {
    let Err(PreviewError::Engine(error)) = result else {
        return result;
    };
    let numbered = events.into_iter().map(|batch| {
        let rows = (0..batch.num_rows() as u64).collect();
        (batch, rows)
    });
    let located = mapping
        .locate_failure(engine, numbered, |row, offset| match offset {
            Some(offset) => format!("partition preview, offset {offset}"),
            None => format!("partition preview, row {row}"),
        })
        .await;
    Err(match located {
        Some(failure) => PreviewError::Failed(failure),
        None => PreviewError::Engine(error),
    })
}

async fn apply(
    engine: &Engine,
    topic: &Topic,
    mapping: &Mapping,
    output_schema: &arrow::datatypes::SchemaRef,
    events: Vec<RecordBatch>,
    limits: PreviewLimits,
) -> Result<PreviewTable, PreviewError> {
    let ctx = engine.session();
    let table = MemTable::try_new(topic.schema().events.clone(), vec![events])?;
    let frame = mapping.apply(&ctx, Arc::new(table)).await?;
    // One row more than answered tells that there were more.
    let frame = frame.limit(0, Some(limits.max_rows + 1))?;
    let mut stream = crate::mapping::engine::execute(frame).await?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let (mut rows, mut bytes, mut truncated) = (0usize, 0usize, false);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let room = limits.max_rows - rows;
        let batch = if batch.num_rows() > room {
            truncated = true;
            batch.slice(0, room)
        } else {
            batch
        };
        let size = batch.get_array_memory_size();
        if bytes + size > limits.max_bytes {
            // Keep the rows that fit, by their average size.
            let per_row = (size / batch.num_rows().max(1)).max(1);
            let fit = (limits.max_bytes.saturating_sub(bytes) / per_row).min(batch.num_rows());
            batches.push(batch.slice(0, fit));
            truncated = true;
            break;
        }
        bytes += size;
        rows += batch.num_rows();
        batches.push(batch);
        if truncated || rows >= limits.max_rows {
            // A full table may still have more rows behind it.
            truncated = truncated || stream.next().await.is_some();
            break;
        }
    }
    drop(stream);
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
        truncated,
    })
}
