//! The query engine every run and every check shares: one DataFusion runtime
//! (memory pool, spill folder) and the session settings mappings rely on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Removes the engine's spill folder when the last clone goes.
    _spill: Arc<SpillFolder>,
}

/// Spill folders are named `materializer-spill-<pid>-<n>`: one per engine, so
/// that a process killed mid-run leaves a folder the next process can tell
/// is nobody's and remove.
const SPILL_PREFIX: &str = "materializer-spill-";

struct SpillFolder(PathBuf);

impl Drop for SpillFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl SpillFolder {
    /// A new folder under `base`, after removing the folders of processes
    /// that are gone.
    fn create(base: &Path) -> std::io::Result<SpillFolder> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        remove_abandoned(base);
        let name = format!(
            "{SPILL_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let folder = base.join(name);
        std::fs::create_dir_all(&folder)?;
        Ok(SpillFolder(folder))
    }
}

/// Removes the spill folders under `base` whose process no longer runs.
fn remove_abandoned(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPILL_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_runs(pid) {
            tracing::info!(folder = %entry.path().display(), "removing the spill folder of a process that is gone");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether a process with this id runs (on systems without `/proc`, every
/// process is taken to run, and nothing is removed).
fn process_runs(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    !proc_root.is_dir() || proc_root.join(pid.to_string()).exists()
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Result<Engine, DataFusionError> {
        let base = settings
            .spill_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let spill = SpillFolder::create(&base).map_err(|e| {
            DataFusionError::External(
                format!("cannot create a spill folder under {}: {e}", base.display()).into(),
            )
        })?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(settings.memory_limit)))
            .with_temp_file_path(spill.0.clone())
            .build_arc()?;
        Ok(Engine {
            runtime,
            settings,
            _spill: Arc::new(spill),
        })
    }

    /// The folder this engine spills to.
    pub fn spill_folder(&self) -> &Path {
        &self._spill.0
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
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        super::capped::register(&ctx);
        ctx
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
