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

use crate::steps::{Step, StepExec};
use crate::worker::Worker;

/// Marks the bytes of a [`StepExec`] (its step and job follow as JSON),
/// with the version of their layout.
const STEP_MAGIC: &[u8] = b"materializer.step.v1:";

#[derive(serde::Deserialize)]
struct StepSpec {
    step: Step,
    job: PartitionJob,
}

#[derive(serde::Serialize)]
struct StepSpecRef<'a> {
    step: Step,
    job: &'a PartitionJob,
}

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
        if let Some(json) = buf.strip_prefix(STEP_MAGIC) {
            let spec: StepSpec = serde_json::from_slice(json)
                .map_err(|e| DataFusionError::Internal(format!("the job of a StepExec: {e}")))?;
            let [input] = inputs else {
                return Err(DataFusionError::Internal(format!(
                    "StepExec takes one input, not {}",
                    inputs.len()
                )));
            };
            return Ok(Arc::new(StepExec::new(
                spec.step,
                input.clone(),
                Arc::new(spec.job),
                self.worker.clone(),
            )));
        }
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(step) = node.downcast_ref::<StepExec>() {
            buf.extend_from_slice(STEP_MAGIC);
            let spec = StepSpecRef {
                step: step.step,
                job: step.job.as_ref(),
            };
            return serde_json::to_writer(&mut *buf, &spec)
                .map_err(|e| DataFusionError::Internal(format!("the job of a StepExec: {e}")));
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion::physical_plan::repartition::RepartitionExec;
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
            compact: false,
            state: None,
        }
    }

    /// `plan` through the codec, as the scheduler and the executors get it.
    fn round_trip(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let codec = Codec::planning();
        let proto = PhysicalPlanNode::try_from_physical_plan(plan, &codec).expect("encoded");
        proto
            .try_into_physical_plan(&TaskContext::default(), &codec)
            .expect("decoded")
    }

    /// The plan the driver submits decodes, on the scheduler and the
    /// executors, to the same node over the same work items (a node that
    /// does not decode would look to Ballista like a dead executor).
    #[test]
    fn the_submitted_plan_survives_the_codec() {
        let back = round_trip(Cluster::plan(job(3)).expect("a plan"));
        let node = back.downcast_ref::<StepExec>().expect("the product's node");
        assert_eq!((node.step, &*node.job), (Step::Run, &job(3)));
        assert_eq!(back.output_partitioning().partition_count(), 3);
    }

    /// A compacting topic's plan: its three steps, with a shuffle on the
    /// route into a task per key bucket, then into a task per partition.
    #[test]
    fn a_compacting_plan_survives_the_codec_step_by_step() {
        let mut compacting = job(3);
        compacting.compact = true;
        let mut node = round_trip(Cluster::plan(compacting.clone()).expect("a plan"));
        let mut seen = Vec::new();
        loop {
            let partitions = node.output_partitioning().partition_count();
            if let Some(step) = node.downcast_ref::<StepExec>() {
                assert_eq!(*step.job, compacting);
                seen.push(format!("{:?} {partitions}", step.step));
            } else if let Some(shuffle) = node.downcast_ref::<RepartitionExec>() {
                assert_eq!(
                    shuffle.partitioning(),
                    &crate::exchange::by_route(partitions)
                );
                seen.push(format!("shuffle {partitions}"));
            }
            let Some(child) = node.children().first().map(|c| Arc::clone(c)) else {
                break;
            };
            node = child;
        }
        assert_eq!(
            seen,
            ["Write 3", "shuffle 3", "Decide 16", "shuffle 16", "Keys 3"]
        );
    }
}
