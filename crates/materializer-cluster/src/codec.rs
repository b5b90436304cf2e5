//! How the product's plan node travels from the driver to the scheduler and
//! the executors; every other node (Ballista's shuffles, DataFusion's own)
//! goes through Ballista's codec.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use materializer_core::run::remote::PartitionJob;

use crate::node::PartitionRunExec;
use crate::worker::Worker;

/// Marks the bytes of a [`PartitionRunExec`], with the version of their
/// layout.
const MAGIC: &[u8] = b"materializer.partition-run.v1:";

/// The codec of the product's node, in front of Ballista's.
#[derive(Debug)]
pub(crate) struct Codec {
    /// What the decoded nodes run with, on an executor.
    worker: Option<Arc<Worker>>,
    ballista: BallistaPhysicalExtensionCodec,
}

impl Codec {
    /// The codec of a process that plans but does not run (the driver and
    /// the scheduler).
    pub(crate) fn planning() -> Codec {
        Codec {
            worker: None,
            ballista: BallistaPhysicalExtensionCodec::default(),
        }
    }

    /// The codec of an executor.
    pub(crate) fn running(worker: Arc<Worker>) -> Codec {
        Codec {
            worker: Some(worker),
            ballista: BallistaPhysicalExtensionCodec::default(),
        }
    }
}

impl PhysicalExtensionCodec for Codec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let job: PartitionJob = serde_json::from_slice(json).map_err(|e| {
            DataFusionError::Internal(format!("the job of a PartitionRunExec: {e}"))
        })?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "PartitionRunExec takes one input, not {}",
                inputs.len()
            )));
        };
        Ok(Arc::new(PartitionRunExec::new(
            input.clone(),
            Arc::new(job),
            self.worker.clone(),
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(run) = node.downcast_ref::<PartitionRunExec>() else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(&mut *buf, run.job.as_ref())
            .map_err(|e| DataFusionError::Internal(format!("the job of a PartitionRunExec: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use materializer_core::commit::PartitionCursors;
    use materializer_core::config::TopicTexts;
    use materializer_core::source::Offset;

    use super::*;
    use crate::driver::Cluster;

    fn job(partitions: usize) -> PartitionJob {
        PartitionJob {
            topic: TopicTexts {
                name: "t".into(),
                toml: "event_type = \"e\"\n".into(),
                mapping: "CREATE VIEW output AS SELECT 1 AS one FROM events;\n".into(),
                schema: "{}".into(),
            },
            topic_dir: "sql/t".into(),
            fingerprint: "f".into(),
            output: "s3://b/p".into(),
            nakadi_url: "http://nakadi".into(),
            event_type: "e".into(),
            sequence: 7,
            attempt: "a1".into(),
            partitions: (0..partitions)
                .map(|p| PartitionCursors {
                    partition: p.to_string(),
                    start: Offset::begin(),
                    end: Offset::begin(),
                    events: None,
                })
                .collect(),
        }
    }

    /// The plan the driver submits decodes, on the scheduler and the
    /// executors, to the same node over the same work items (a node that
    /// does not decode would look to Ballista like a dead executor).
    #[test]
    fn the_submitted_plan_survives_the_codec() {
        let plan = Cluster::plan(job(3)).expect("a plan");
        let codec = Codec::planning();
        let proto = PhysicalPlanNode::try_from_physical_plan(plan, &codec).expect("encoded");
        let back = proto
            .try_into_physical_plan(&TaskContext::default(), &codec)
            .expect("decoded");
        let node = back
            .downcast_ref::<PartitionRunExec>()
            .expect("the product's node");
        assert_eq!(*node.job, job(3));
        assert_eq!(back.output_partitioning().partition_count(), 3);
    }
}
