//! The statements that load one committed run and merge it.

use std::fmt::Write as _;

use super::dialect::{Dialect, FilePlace};
use super::error::WarehouseError;
use super::target::Target;
use crate::commit::Manifest;
use crate::config::Topic;
use crate::sink::FileKind;

/// The statements that load committed run `manifest` and merge it. The
/// files are described by the run's own shape; a run committed before runs
/// kept one is loaded as `topic` (its configuration now) describes it.
pub fn load_run_sql(
    manifest: &Manifest,
    topic: Option<&Topic>,
    dialect: &dyn Dialect,
    place: FilePlace<'_>,
) -> Result<String, WarehouseError> {
    let now;
    let shape = match (&manifest.shape, topic) {
        (Some(shape), _) => shape,
        (None, Some(topic)) => {
            now = topic.run_shape();
            &now
        }
        (None, None) => {
            return Err(WarehouseError::NoShape {
                topic: manifest.topic.clone(),
                sequence: manifest.sequence,
                reason: "no topic was given".into(),
            });
        }
    };
    let t = Target::new(&manifest.topic, shape, dialect)?;
    let mut sql = format!(
        "-- Load run {} of topic {} ({}).\n",
        manifest.sequence,
        manifest.topic,
        dialect.name()
    );
    let staged: Vec<(FileKind, String)> = if shape.compact {
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
