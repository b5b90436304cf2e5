//! The statements that load one committed run and merge it.

use std::fmt::Write as _;

use super::dialect::{Dialect, FilePlace};
use super::error::WarehouseError;
use super::target::Target;
use crate::commit::Manifest;
use crate::config::Topic;
use crate::sink::FileKind;

/// The statements that load one committed run and merge it.
pub fn load_run_sql(
    topic: &Topic,
    dialect: &dyn Dialect,
    manifest: &Manifest,
    place: FilePlace<'_>,
) -> Result<String, WarehouseError> {
    let t = Target::new(topic, dialect)?;
    let mut sql = format!(
        "-- Load run {} of topic {} ({}).\n",
        manifest.sequence,
        topic.name(),
        dialect.name()
    );
    let staged: Vec<(FileKind, String)> = if topic.compaction().compact {
        t.staged_kinds()
            .into_iter()
            .zip(t.staging_tables())
            .collect()
    } else {
        vec![(FileKind::Main, dialect.appended_files_table(&t))]
    };
    sql.push_str(&dialect.load_run(&t, manifest, place, &staged)?);
    Ok(sql)
}

impl Target<'_> {
    /// The merge, as statements of a load script.
    pub(super) fn merge_script(&self) -> String {
        let mut sql = String::new();
        for statement in self.merge_statements() {
            let _ = writeln!(sql, "{statement};");
        }
        sql
    }

    /// Records run `sequence` as loaded and ends the load's transaction.
    pub(super) fn record_run(&self, sequence: u64) -> String {
        format!(
            "INSERT INTO {} (sequence) VALUES ({sequence});\nCOMMIT;\n",
            self.table("loaded_runs")
        )
    }
}
