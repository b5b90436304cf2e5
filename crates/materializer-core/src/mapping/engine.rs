//! The query engine every run and every check shares: one DataFusion runtime
//! (memory pool, spill folder) and the session settings mappings rely on.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

/// Limits of the shared engine.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Bytes the sorts and windows of all runs may hold before they spill.
    pub memory_limit: usize,
    /// Where spilled data goes; the system temp folder when unset.
    pub spill_dir: Option<PathBuf>,
    /// Rows per batch inside the engine.
    pub batch_rows: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            memory_limit: 512 << 20,
            spill_dir: None,
            batch_rows: 8192,
        }
    }
}

/// Shared DataFusion runtime.
#[derive(Clone)]
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    settings: EngineSettings,
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Result<Engine, DataFusionError> {
        let mut builder = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(settings.memory_limit)));
        if let Some(dir) = &settings.spill_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        Ok(Engine {
            runtime: builder.build_arc()?,
            settings,
        })
    }

    /// The memory pool and temp folder shared by every query and run.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// A fresh session: one per query, so runs never see each other's tables.
    ///
    /// Plans run single-partitioned: the engine parallelises across Nakadi
    /// partitions instead, and a single stream keeps the order of output rows,
    /// and with it the bytes of every file, the same from one attempt of a run
    /// to the next.
    pub fn session(&self) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(self.settings.batch_rows)
            .with_information_schema(false);
        let options = config.options_mut();
        // JSON field names are case-sensitive; so are the mapping's identifiers.
        options.sql_parser.enable_ident_normalization = false;
        // Positions of columns in errors.
        options.sql_parser.collect_spans = true;
        options.sql_parser.map_string_types_to_utf8view = false;
        options.execution.parquet.schema_force_view_types = false;
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }
}

/// Wraps every operator of a physical plan so that each batch it hands on
/// counts against the async runtime's budget, and the plan gives way when the
/// budget is used up. Without it, a plan such as a cross join (which makes many
/// batches from each input batch) runs without ever yielding, and no timeout
/// can stop it.
pub fn cooperative(
    plan: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>, DataFusionError> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_plan::coop::CooperativeExec;
    plan.transform_up(|node| Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as _)))
        .map(|t| t.data)
}

/// Executes a query as a stream of batches, cooperatively (see [`cooperative`]):
/// a stopped run or a timed-out preview ends at the next batch.
pub async fn execute(
    frame: datafusion::prelude::DataFrame,
) -> Result<datafusion::execution::SendableRecordBatchStream, DataFusionError> {
    let task = Arc::new(frame.task_ctx());
    let plan = cooperative(frame.create_physical_plan().await?)?;
    datafusion::physical_plan::execute_stream(plan, task)
}
