//! Map: apply the mapping to each class of a decoded partition's events (MAIN,
//! CORRECTION, OLDER) as they stream out of its spool, and hand the rows to
//! the writer; partitions are mapped side by side.

mod mapper;
mod streamed;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(crate) use mapper::{Mapper, PartitionOutput};
pub(crate) use streamed::MainWriters;

use super::attempt::Attempt;
use super::decide::Decision;
use super::error::RunFailure;
use crate::decode::DecodedPartition;
use crate::sink::WrittenFile;
use crate::source::partition_cmp;

/// Maps and writes the partitions, `parallelism` at a time, each as its
/// own task so that they run on all cores. `main_files`: the MAIN files
/// written while the partitions were read.
pub(crate) async fn map_and_write(
    attempt: &Attempt<'_>,
    mapper: &Arc<Mapper>,
    decoded: BTreeMap<String, DecodedPartition>,
    mut main_files: HashMap<String, Vec<WrittenFile>>,
    mut decisions: HashMap<String, Decision>,
) -> Result<Vec<PartitionOutput>, RunFailure> {
    let parallelism = attempt.request.parallelism.max(1);
    let mut parts = decoded.into_values();
    // Dropped on an error or a stop: the partitions still running are aborted.
    let mut tasks = tokio::task::JoinSet::new();
    let mut outputs = Vec::new();
    loop {
        while tasks.len() < parallelism
            && let Some(part) = parts.next()
        {
            let mapper = mapper.clone();
            let main = main_files.remove(&*part.partition);
            let decision = decisions.remove(&*part.partition);
            tasks.spawn(async move { mapper.map_partition(part, main, decision).await });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let output = done.map_err(RunFailure::Internal)??;
        outputs.push(output);
    }
    outputs.sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
    Ok(outputs)
}
