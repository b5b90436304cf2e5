//! One measured run of an engine on a case: `materializer run` (file or
//! Nakadi source) and the analyst's DuckDB script, each with the files
//! that hold its rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dataset::Dataset;
use crate::measure::measure;
use crate::{BIN, Bench, Case, Sample};

impl Bench {
    /// `materializer run` of a case's topic into `out`, its summary as JSON;
    /// the caller adds the source.
    pub(crate) fn run_command(&self, case: Case, out: &Path) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--sql-dir")
            .arg(&self.sql_dir)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn")
            .env_remove("NAKADI_URL")
            .env_remove("MATERIALIZER_OUTPUT");
        command.args(["run", "--topic", &case.topic(), "--json", "--no-progress"]);
        // An option of `run`, not of the program.
        if let Some(mb) = self.options.memory_mb {
            command.args(["--memory-mb", &mb.to_string()]);
        }
        command.arg("--output").arg(out);
        command
    }

    pub(crate) fn materializer(
        &self,
        case: Case,
        data: &Dataset,
        nakadi: Option<&str>,
    ) -> Result<(Sample, Vec<PathBuf>), String> {
        let out = self.work.join("out-materializer");
        let _ = std::fs::remove_dir_all(&out);
        let mut command = self.run_command(case, &out);
        match nakadi {
            Some(url) => command.args(["--nakadi-url", url]),
            None => command
                .arg("--source")
                .arg(data.recordings.join(case.topic())),
        };
        let measurement = measure(&mut command)?;
        if !measurement.success {
            return Err(format!(
                "materializer failed on {} ({}): {}",
                case.name(),
                if nakadi.is_some() { "nakadi" } else { "file" },
                measurement.stderr
            ));
        }
        let summary: serde_json::Value = serde_json::from_str(&measurement.stdout)
            .map_err(|e| format!("run summary is not JSON ({e}): {}", measurement.stdout))?;
        let rows = summary["counts"]["main_rows"].as_u64().unwrap_or(0);
        let timings = Some(summary["timings"].clone());
        let topic_dir = out.join(case.topic());
        let files = summary["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter(|f| f["kind"] == "main")
                    .filter_map(|f| f["path"].as_str().map(|p| topic_dir.join(p)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok((
            Sample {
                measurement,
                rows,
                timings,
            },
            files,
        ))
    }

    pub(crate) fn duckdb(
        &self,
        case: Case,
        data: &Dataset,
    ) -> Result<(Sample, Vec<PathBuf>), String> {
        let out = self.work.join("out-duckdb");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        let target = out.join(if case.parquet() {
            "out.parquet"
        } else {
            "out.csv"
        });
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let measurement = measure(
            Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/benches/pipeline/duckdb_script.py"
                ))
                .arg(if case.compact() { "compact" } else { "flatten" })
                .arg(&data.ndjson)
                .arg(&target)
                .arg(if case.parquet() { "parquet" } else { "csv" })
                .arg(threads.to_string()),
        )?;
        if !measurement.success {
            return Err(format!(
                "duckdb failed on {}: {}",
                case.name(),
                measurement.stderr
            ));
        }
        let rows = measurement
            .stdout
            .trim()
            .parse()
            .map_err(|_| format!("duckdb printed {:?}", measurement.stdout))?;
        Ok((
            Sample {
                measurement,
                rows,
                timings: None,
            },
            vec![target],
        ))
    }
}

pub(crate) fn duckdb_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}
