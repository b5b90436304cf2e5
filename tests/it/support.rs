//! Shared helpers of the integration tests: a scratch copy of the bundled
//! topics and recordings, runs through the library, and a CSV reader that
//! keeps NULL (unquoted empty) apart from the empty string.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use materializer::nakadi::{RecordedSource, Source};
use materializer::run::{Progress, RunError, RunRequest, RunSummary};
use materializer::sink::{OutputLocation, S3Settings};
use materializer::{Catalog, Engine, EngineSettings};
use tokio_util::sync::CancellationToken;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A scratch folder with `sql/`, `recorded/` and `out/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("sql"), &dir.path().join("sql"));
        copy_dir(
            &repo().join("fixtures/recorded"),
            &dir.path().join("recorded"),
        );
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Workspace { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn sql(&self) -> PathBuf {
        self.path("sql")
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    pub fn engine() -> Engine {
        Engine::new(EngineSettings::default()).unwrap()
    }

    pub async fn catalog(&self) -> Catalog {
        Catalog::load(&self.sql(), &Self::engine()).await.unwrap()
    }

    /// Runs `topic` from its recording to `out/`.
    pub async fn run(&self, topic: &str) -> Result<RunSummary, RunError> {
        let output = self.out().display().to_string();
        self.run_to(topic, &output).await
    }

    pub async fn run_to(&self, topic: &str, output: &str) -> Result<RunSummary, RunError> {
        let engine = Self::engine();
        let catalog = Catalog::load(&self.sql(), &engine).await.unwrap();
        assert!(catalog.broken.is_empty(), "{:?}", catalog.broken);
        let topic = catalog.topic(topic).unwrap();
        let source = Source::Recorded(
            RecordedSource::open(&self.path("recorded").join(&topic.name)).unwrap(),
        );
        let request = RunRequest {
            topic,
            source: Arc::new(source),
            output: OutputLocation::parse(output, &S3Settings::default()).unwrap(),
            progress: Arc::new(Progress::default()),
            cancel: CancellationToken::new(),
            parallelism: 2,
        };
        materializer::run::execute(&engine, request).await
    }

    pub fn read_out(&self, relative: &str) -> String {
        let path = self.out().join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every file under `out/`, relative, sorted.
    pub fn out_files(&self) -> Vec<String> {
        let mut files = Vec::new();
        list_files(&self.out(), &self.out(), &mut files);
        files.sort();
        files
    }

    pub fn append(&self, relative: &str, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path(relative))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            list_files(root, &entry.path(), out);
        } else {
            out.push(
                entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string(),
            );
        }
    }
}

/// A CSV field: `None` for NULL (unquoted and empty).
pub type Field = Option<String>;

/// Parses RFC 4180 CSV, keeping NULL apart from "".
pub fn parse_csv(text: &str) -> Vec<Vec<Field>> {
    let mut rows = Vec::new();
    let mut row: Vec<Field> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut line_started = false;
    while let Some(c) = chars.next() {
        line_started = true;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_quotes = true;
            }
            ',' | '\n' => {
                let value = std::mem::take(&mut field);
                row.push(if value.is_empty() && !quoted {
                    None
                } else {
                    Some(value)
                });
                quoted = false;
                if c == '\n' {
                    rows.push(std::mem::take(&mut row));
                    line_started = false;
                }
            }
            _ => field.push(c),
        }
    }
    if line_started {
        row.push(if field.is_empty() && !quoted {
            None
        } else {
            Some(field)
        });
        rows.push(row);
    }
    rows
}

/// Shorthand for a row of expected fields: "" means NULL, "\"\"" the empty string.
pub fn row(fields: &[&str]) -> Vec<Field> {
    fields
        .iter()
        .map(|f| match *f {
            "" => None,
            "\"\"" => Some(String::new()),
            other => Some(other.to_string()),
        })
        .collect()
}

/// Header and rows of a CSV file, rows sorted (row order is not part of the contract).
pub fn csv_rows(text: &str) -> (Vec<Field>, Vec<Vec<Field>>) {
    let mut rows = parse_csv(text);
    assert!(!rows.is_empty(), "no header in {text:?}");
    let header = rows.remove(0);
    rows.sort();
    (header, rows)
}

pub fn sorted(mut rows: Vec<Vec<Field>>) -> Vec<Vec<Field>> {
    rows.sort();
    rows
}
