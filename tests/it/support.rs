//! Shared helpers of the integration tests: a scratch copy of the bundled
//! topics and recordings, runs through the library, and a CSV reader that
//! keeps NULL (unquoted empty) apart from the empty string.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use materializer_core::run::{Progress, RunError, RunRequest, RunSummary};
use materializer_core::sink::{OutputLocation, S3Settings};
use materializer_core::source::{RecordedSource, Source};
use materializer_core::{Catalog, Engine, EngineSettings};
use tokio_util::sync::CancellationToken;

/// The repository's top folder (the tests belong to the root package).
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

/// The example topics the tests use. Only these are copied: a topic a user
/// adds under `sql/` is none of the tests' business.
pub const EXAMPLE_TOPICS: [&str; 2] = ["article-stock-changed", "order-placed"];

/// A scratch folder with `sql/` (the example topics), `recorded/` and `out/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        for topic in EXAMPLE_TOPICS {
            copy_dir(
                &repo().join("sql").join(topic),
                &dir.path().join("sql").join(topic),
            );
        }
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
        Catalog::load(&self.sql(), &Self::engine(), None)
            .await
            .unwrap()
    }

    /// The binary, to run in the workspace, logging warnings and errors.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_materializer"));
        command.current_dir(self.dir.path()).env("RUST_LOG", "warn");
        command
    }

    /// The binary run in the workspace with `args`, without the settings a
    /// developer's shell may carry.
    pub fn materializer(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .env_remove("MATERIALIZER_OUTPUT")
            .env_remove("NAKADI_URL")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `topic` from its recording to `out/`.
    pub async fn run(&self, topic: &str) -> Result<RunSummary, RunError> {
        self.run_with(topic, self.local_output()).await
    }

    pub fn local_output(&self) -> OutputLocation {
        OutputLocation::parse(&self.out().display().to_string(), &S3Settings::default()).unwrap()
    }

    pub async fn run_with(
        &self,
        topic: &str,
        output: OutputLocation,
    ) -> Result<RunSummary, RunError> {
        let engine = Self::engine();
        let request = self.request(topic, output).await;
        materializer_core::run::execute(&engine, request).await
    }

    /// A run request of `topic` reading its recording.
    pub async fn request(&self, topic: &str, output: OutputLocation) -> RunRequest {
        let source =
            Source::Recorded(RecordedSource::open(&self.path("recorded").join(topic)).unwrap());
        self.request_from(topic, output, source).await
    }

    /// A run request of `topic` reading `source`.
    pub async fn request_from(
        &self,
        topic: &str,
        output: OutputLocation,
        source: Source,
    ) -> RunRequest {
        let catalog = Catalog::load(&self.sql(), &Self::engine(), None)
            .await
            .unwrap();
        assert!(catalog.broken.is_empty(), "{:?}", catalog.broken);
        RunRequest {
            topic: catalog.topic(topic).unwrap(),
            source: Arc::new(source),
            output,
            progress: Arc::new(Progress::default()),
            cancel: CancellationToken::new(),
            parallelism: 2,
            workers: None,
        }
    }

    /// Replaces a topic's recording with `lines`.
    pub fn record(&self, topic: &str, lines: &[String]) {
        let dir = self.path("recorded").join(topic);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stream.jsonl"), lines.join("\n") + "\n").unwrap();
    }

    pub fn read_out(&self, relative: &str) -> String {
        let path = self.out().join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A CSV file under `out/` with its rows sorted (the header stays first):
    /// for files whose row order is not part of what they promise, such as
    /// KEYS files (grouped by key bucket).
    pub fn read_out_sorted(&self, relative: &str) -> String {
        let text = self.read_out(relative);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let mut rows: Vec<&str> = lines.collect();
        rows.sort_unstable();
        std::iter::once(header)
            .chain(rows)
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Every file under `out/`, relative, sorted.
    pub fn out_files(&self) -> Vec<String> {
        files_under(&self.out())
    }

    /// A local output location in the folder `relative` of the workspace.
    pub fn output_at(&self, relative: &str) -> OutputLocation {
        OutputLocation::parse(
            &self.path(relative).display().to_string(),
            &S3Settings::default(),
        )
        .unwrap()
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

/// Every file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    list_files(root, root, &mut files);
    files.sort();
    files
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

/// Deterministic article events in Nakadi stream lines: `events` events over
/// `partitions` partitions (article_id mod partitions), batches of up to 50,
/// with repeated versions, redeliveries and late (out-of-order) versions.
pub fn article_stream(events: usize, partitions: u32, seed: u64) -> Vec<String> {
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let articles = (events / 3).max(1) as u64;
    let mut versions: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
    let mut per_partition: Vec<Vec<String>> = vec![Vec::new(); partitions as usize];
    for i in 0..events {
        let article = 100_000_000 + next(articles);
        let top = versions.entry(article).or_insert(0);
        let version = match next(10) {
            0 if *top > 1 => 1 + next(*top as u64 - 1) as i64, // late
            1 if *top > 0 => *top,                             // redelivery
            _ => {
                *top += 1 + next(2) as i64;
                *top
            }
        };
        let partition = (article % partitions as u64) as usize;
        let brand = [
            "Nike",
            "Jack & Jones",
            "Fjällräven",
            "Levi's",
            "\\\"Quoted\\\" Co",
        ][next(5) as usize];
        let model = match next(7) {
            0 => "null".to_string(),
            1 => "\"\"".to_string(),
            _ => format!("\"Model {}, size {}\"", next(50), next(12)),
        };
        per_partition[partition].push(format!(
            r#"{{"metadata":{{"eid":"00000000-0000-4000-8000-{i:012x}","occurred_at":"2024-06-03T{:02}:{:02}:{:02}.{:03}Z","event_type":"article.stock-changed","partition":"{partition}"}},"article_id":{article},"brand":"{brand}","model":{model},"version":{version},"available_qty":{}}}"#,
            8 + next(10),
            next(60),
            next(60),
            next(1000),
            next(100)
        ));
    }
    let mut lines = Vec::new();
    let mut offsets = vec![0u64; partitions as usize];
    let mut cursors = vec![0usize; partitions as usize];
    loop {
        let mut any = false;
        for p in 0..partitions as usize {
            if cursors[p] >= per_partition[p].len() {
                continue;
            }
            any = true;
            let take = (1 + next(50) as usize).min(per_partition[p].len() - cursors[p]);
            let batch = &per_partition[p][cursors[p]..cursors[p] + take];
            cursors[p] += take;
            offsets[p] += take as u64;
            lines.push(format!(
                r#"{{"cursor":{{"partition":"{p}","offset":"001-0001-{:018}"}},"events":[{}]}}"#,
                offsets[p] - 1,
                batch.join(",")
            ));
        }
        if !any {
            break;
        }
    }
    lines
}

/// What the committed runs of a topic hold, read through the object store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub sequences: Vec<u64>,
    /// Rows per file kind, header removed, sorted: each kind its own.
    pub main: Vec<Vec<Field>>,
    pub correction: Vec<Vec<Field>>,
    pub older: Vec<Vec<Field>>,
    pub keys: Vec<Vec<Field>>,
    pub rejected: Vec<String>,
}

pub async fn committed(output: &OutputLocation, topic: &str) -> Committed {
    let mut result = Committed::default();
    for run in run_files(output, topic).await {
        result.sequences.push(run.sequence);
        for (kind, text) in run.files {
            use materializer_core::sink::FileKind;
            let rows = match kind {
                FileKind::Rejected => {
                    result.rejected.extend(text.lines().map(String::from));
                    continue;
                }
                FileKind::Main => &mut result.main,
                FileKind::Correction => &mut result.correction,
                FileKind::Older => &mut result.older,
                FileKind::Keys => &mut result.keys,
            };
            let mut parsed = parse_csv(&text);
            assert!(
                !parsed.is_empty(),
                "a {} file without a header",
                kind.as_str()
            );
            parsed.remove(0);
            rows.extend(parsed);
        }
    }
    result.main.sort();
    result.correction.sort();
    result.older.sort();
    result.keys.sort();
    result.rejected.sort();
    result
}

/// `materializer serve` as its own process in a workspace, accepting
/// `tokens`; its log (info and up) goes to `serve.log` in the workspace.
pub struct Serve {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Serve {
    pub async fn start(ws: &Workspace, tokens: &[&str], args: &[&str]) -> Serve {
        Serve::start_with(ws, tokens, args, &[]).await
    }

    /// As [`Serve::start`], with these environment variables set too.
    pub async fn start_with(
        ws: &Workspace,
        tokens: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Serve {
        let log = ws.path("serve.log");
        let announced = ws.path("serve.out");
        let mut child = Command::new(env!("CARGO_BIN_EXE_materializer"))
            .current_dir(ws.dir.path())
            .env("RUST_LOG", "info")
            .env("MATERIALIZER_API_TOKENS", tokens.join(","))
            .envs(envs.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--output", "out"])
            .args(args)
            .stdout(std::fs::File::create(&announced).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = bound_url(&mut child, &announced, &log).await;
        let server = Serve { child, url, log };
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if reqwest::get(format!("{}/healthz", server.url))
                .await
                .is_ok()
            {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not start: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `method path` with `token`: the answer's status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a `serve` started on port 0 bound, read from the line it
/// prints on stdout (`announced`) once it listens: `http://127.0.0.1:<port>`.
pub async fn bound_url(child: &mut Child, announced: &Path, log: &Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(announced).unwrap_or_default();
        // "materializer on http://HOST:PORT: the console at ..."
        if let Some(rest) = text.split("materializer on ").nth(1)
            && let Some(url) = rest.split_whitespace().next()
        {
            return url.trim_end_matches(':').to_string();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "serve ended ({status}) before it listened: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not listen: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The files of one committed run, with their kinds.
pub struct RunFiles {
    pub sequence: u64,
    pub files: Vec<(materializer_core::sink::FileKind, String)>,
}

/// The bytes of an object of the output location.
pub async fn object(output: &OutputLocation, path: &object_store::path::Path) -> bytes::Bytes {
    use object_store::ObjectStoreExt;
    output.store.get(path).await.unwrap().bytes().await.unwrap()
}

/// The files of every committed run of `topic`, in run order.
pub async fn run_files(output: &OutputLocation, topic: &str) -> Vec<RunFiles> {
    let ledger = materializer_core::commit::Ledger::new(output.clone(), topic);
    let mut runs = Vec::new();
    for sequence in ledger.committed_sequences().await.unwrap() {
        let manifest = ledger.manifest(sequence).await.unwrap().unwrap();
        let mut files = Vec::new();
        for file in &manifest.files {
            let bytes = object(output, &ledger.layout().resolve(&file.path)).await;
            files.push((file.kind, String::from_utf8(bytes.to_vec()).unwrap()));
        }
        runs.push(RunFiles { sequence, files });
    }
    runs
}

/// Whether the tests run in CI (`CI` set, as CI services set it, and not
/// `false` or `0`): there a branch a test cannot exercise is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A check this machine cannot make: fails under CI, says so elsewhere.
pub fn untestable(what: &str) {
    assert!(!in_ci(), "not checked under CI=true: {what}");
    eprintln!("not checked on this machine: {what}");
}
