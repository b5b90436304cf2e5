//! What the steps of a compacting run hand each other through the
//! cluster's shuffles: rows whose payload is Arrow IPC, and the routes that
//! send each bucket's, and each partition's, rows to a task of their own.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;

use materializer_core::run::remote::{DecidedShare, share_events_schema};

/// The column the shuffles hash: a value chosen so that its hash lands in
/// the task meant for the row ([`routes`]).
pub(crate) const ROUTE: &str = "route";

/// Partitioning on [`ROUTE`] (the first column) into `tasks`.
pub(crate) fn by_route(tasks: usize) -> Partitioning {
    Partitioning::Hash(vec![Arc::new(Column::new(ROUTE, 0))], tasks)
}

/// For each of `tasks` tasks, a route value that the shuffle's hash sends
/// to it: the rows of bucket (or partition) `i` go to task `i`, none shares
/// a task with another. The same hash as the shuffle's, computed by
/// DataFusion's own partitioner.
pub(crate) fn routes(tasks: usize) -> Result<Vec<u64>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        ROUTE,
        DataType::UInt64,
        false,
    )]));
    let mut found: Vec<Option<u64>> = vec![None; tasks];
    let mut next = 0u64;
    let mut partitioner = BatchPartitioner::try_new(by_route(tasks), Time::default(), 0, 1)?;
    while found.iter().any(Option::is_none) {
        // Each task takes about one value in `tasks`.
        let candidates = UInt64Array::from_iter_values(next..next + 64 * tasks as u64);
        next += 64 * tasks as u64;
        if next > 1 << 32 {
            return Err(DataFusionError::Internal(format!(
                "no route found for every one of {tasks} tasks"
            )));
        }
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(candidates)])?;
        for part in partitioner.partition_iter(batch)? {
            let (task, rows) = part?;
            if found[task].is_some() || rows.num_rows() == 0 {
                continue;
            }
            let values = rows
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.value(0));
            found[task] = values;
        }
    }
    Ok(found.into_iter().flatten().collect())
}

/// `batches` (of `schema`) as an Arrow IPC stream.
pub(crate) fn to_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// The batches of an Arrow IPC stream.
pub(crate) fn from_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// A share as bytes: its events' stream, then its KEYS rows' stream (none
/// when it has no KEYS rows), the first one's length in front.
pub(crate) fn share_bytes(share: &DecidedShare) -> Result<Vec<u8>> {
    let events = to_ipc(&share_events_schema(), std::slice::from_ref(&share.events))?;
    let mut bytes = Vec::with_capacity(events.len() + 8);
    bytes.extend_from_slice(&(events.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&events);
    if let Some(first) = share.keys.first() {
        bytes.extend_from_slice(&to_ipc(&first.schema(), &share.keys)?);
    }
    Ok(bytes)
}

/// A share back from [`share_bytes`].
pub(crate) fn share_of(
    bucket: u32,
    pass: u32,
    partition: u32,
    bytes: &[u8],
) -> Result<DecidedShare> {
    let bad = || DataFusionError::Internal("a decided share's bytes are cut short".into());
    let (length, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
    let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| bad())?;
    let (events, keys) = rest.split_at_checked(length).ok_or_else(bad)?;
    let events = from_ipc(events)?.into_iter().next().ok_or_else(bad)?;
    let keys = if keys.is_empty() {
        Vec::new()
    } else {
        from_ipc(keys)?
    };
    Ok(DecidedShare {
        bucket,
        pass,
        partition,
        events,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_gets_a_route_of_its_own() {
        for tasks in [1, 2, 3, 8, 16, 64] {
            let routes = routes(tasks).expect("routes");
            assert_eq!(routes.len(), tasks);
            let schema = Arc::new(Schema::new(vec![Field::new(
                ROUTE,
                DataType::UInt64,
                false,
            )]));
            let batch = RecordBatch::try_new(
                schema,
                vec![Arc::new(UInt64Array::from(routes.clone())) as Arc<dyn Array>],
            )
            .expect("batch");
            let mut partitioner =
                BatchPartitioner::try_new(by_route(tasks), Time::default(), 0, 1).expect("p");
            for part in partitioner.partition_iter(batch).expect("partitioned") {
                let (task, rows) = part.expect("rows");
                let values = rows.column(0).as_any().downcast_ref::<UInt64Array>();
                assert_eq!(
                    values.map(|v| v.values().to_vec()),
                    Some(vec![routes[task]])
                );
            }
        }
    }
}
