//! README's commands, run as written. The walkthrough's shell blocks run in
//! order in a copy of the repository's topics and fixtures, with
//! `materializer` and `psql` on the PATH and a real PostgreSQL behind
//! `psql`; the other blocks run in tests of their own below, and
//! [`every_command_block_is_checked`] fails for a block no test knows.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::servers::{announced_port, postgres};
use crate::support::{Workspace, copy_dir, csv_rows, repo};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The bodies of the ```sh blocks in `text` (indented blocks included), in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(indent) = line.strip_suffix("```sh").filter(|i| i.trim().is_empty()) else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.strip_prefix(indent).unwrap_or(l))
            .collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

/// The walkthroughs README marks, by the name in their markers: `""` for
/// the first topic's, `"own events "` for a file of one's own events.
const WALKTHROUGHS: [&str; 2] = ["", "own events "];

/// A walkthrough: the text between its markers.
fn walkthrough<'a>(readme: &'a str, name: &str) -> &'a str {
    let start = readme
        .find(&format!("<!-- {name}walkthrough"))
        .unwrap_or_else(|| panic!("README marks its {name}walkthrough"));
    let end = readme[start..]
        .find(&format!("<!-- end of {name}walkthrough -->"))
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("README marks the {name}walkthrough's end"));
    &readme[start..end]
}

/// The README block whose first line starts with `prefix`.
fn block_starting(readme: &str, prefix: &str) -> String {
    let found: Vec<String> = sh_blocks(readme)
        .into_iter()
        .filter(|b| b.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one README block starts with {prefix:?}: {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// How each README block outside the walkthrough is checked, by the start
/// of its first line.
const CHECKED: &[(&str, &str)] = &[
    (
        "cargo run --release -- run --topic",
        "run by the_lead_commands_run_the_example_topic_and_the_test_script",
    ),
    (
        "cargo build --release --locked",
        "checked by the_install_commands_build_the_binary_they_name",
    ),
    (
        "cargo run -p nakadi-testkit",
        "run by a_run_reads_the_local_nakadi_server_as_shown",
    ),
    (
        "materializer run --topic article-stock-changed --nakadi-url",
        "run by a_run_reads_the_local_nakadi_server_as_shown",
    ),
    (
        "materializer serve --api-token",
        "run by serve_and_curl_work_as_shown",
    ),
    ("curl -s -X POST", "run by serve_and_curl_work_as_shown"),
    (
        "pip install duckdb",
        "the benchmark runs under cargo test on 3,000 events (benches/pipeline); its options are documented in its --help",
    ),
    // The container's commands need an image: scripts/container-test.sh
    // builds it (not part of scripts/test.sh: a cold build takes half an
    // hour) and runs the one-off run and serve lines as written.
    (
        "docker build -t materializer .",
        "scripts/container-test.sh builds the same Dockerfile",
    ),
    (
        "mkdir -p out && docker run --rm --user",
        "run as written by scripts/container-test.sh",
    ),
    (
        "docker run --rm -v \"$PWD/sql:/app/sql:ro\"",
        "not run: it needs a Nakadi and S3; its settings are the ones tested without a container",
    ),
    (
        "docker run -d --name materializer",
        "run as written by scripts/container-test.sh",
    ),
    ("scripts/container-test.sh", "the script itself"),
    (
        "materializer cluster scheduler --bind-port",
        "the three commands with local hosts and free ports: run by \
         cluster::a_cluster_run_writes_the_rows_of_a_local_run",
    ),
];

#[test]
fn every_command_block_is_checked() {
    let readme = readme();
    let walkthrough: Vec<String> = WALKTHROUGHS
        .iter()
        .flat_map(|name| sh_blocks(walkthrough(&readme, name)))
        .collect();
    for block in sh_blocks(&readme) {
        let first = block.lines().next().unwrap_or_default();
        assert!(
            walkthrough.contains(&block)
                || CHECKED.iter().any(|(start, _)| first.starts_with(start)),
            "README block that no test checks:\n{block}"
        );
    }
    // No stale entries: every entry still names a README block.
    for (start, _) in CHECKED {
        assert!(
            sh_blocks(&readme).iter().any(|b| b.starts_with(start)),
            "no README block starts with {start:?} any more"
        );
    }
}

/// A folder of links: `materializer` to the binary under test, and `psql`
/// to the PostgreSQL client when `with_psql`.
fn bin_dir(ws: &Workspace, with_psql: bool) -> std::path::PathBuf {
    let bin = ws.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_materializer"), bin.join("materializer"))
        .unwrap();
    let psql = if with_psql {
        Some(postgres().psql_path())
    } else {
        None
    };
    if let Some(psql) = psql.filter(|p| p.is_absolute()) {
        std::os::unix::fs::symlink(&psql, bin.join("psql")).unwrap();
    }
    bin
}

/// `bash` running `block` in the workspace, with `bin` first on the PATH
/// and none of the settings a developer's shell may carry.
fn shell(ws: &Workspace, bin: &Path, block: &str) -> Command {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(ws.dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .env_remove("MATERIALIZER_OUTPUT")
        .env_remove("MATERIALIZER_LISTEN")
        .env_remove("NAKADI_URL");
    command
}

/// Runs `command` (a README block) to success; its standard output.
fn succeed(mut command: Command, block: &str) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README block failed:\n{block}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn run_block(ws: &Workspace, bin: &Path, database: &str, block: &str) -> String {
    let mut command = shell(ws, bin, block);
    command.envs(postgres().client_env(database));
    succeed(command, block)
}

/// A workspace as the repository's top folder looks to a user: the example
/// topics under `sql/` and `fixtures/`.
fn repository_copy() -> Workspace {
    let ws = Workspace::new();
    copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    ws
}

/// A background process that is killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_lead_commands_run_the_example_topic_and_the_test_script() {
    let readme = readme();
    let lead = block_starting(&readme, "cargo run --release -- run --topic");
    let mut lines = lead.lines();
    let run = lines.next().unwrap();
    // `cargo run --release --` is the binary under test, built by cargo.
    let run = run.replacen("cargo run --release --", "materializer", 1);
    let ws = repository_copy();
    let bin = bin_dir(&ws, false);
    let first = succeed(shell(&ws, &bin, &run), &run);
    assert!(
        first.starts_with("article-stock-changed: run 1 committed in "),
        "{first}"
    );
    assert!(
        ws.path("out/article-stock-changed/_manifests/0000000001.json")
            .is_file()
    );
    let again = succeed(shell(&ws, &bin, &run), &run);
    assert_eq!(
        again,
        "article-stock-changed: nothing new since run 1; nothing written.\n"
    );
    // The second command is the one CI runs.
    let test = lines.next().unwrap();
    assert!(test.starts_with("scripts/test.sh "), "{test}");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "exec scripts/test.sh"),
        "{ci}"
    );
    assert!(repo().join("scripts/test.sh").is_file());
}

#[test]
fn the_install_commands_build_the_binary_they_name() {
    let readme = readme();
    let install = block_starting(&readme, "cargo build --release --locked");
    assert!(
        install.contains("# the binary: target/release/materializer"),
        "{install}"
    );
    assert!(
        install.contains("cargo install --path . --locked"),
        "{install}"
    );
    // A plain `cargo build` at the top builds the default members: the
    // root package, whose binary is `materializer`.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut metadata = Command::new(cargo);
    metadata
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--locked",
        ])
        .current_dir(repo());
    let metadata: serde_json::Value = serde_json::from_str(&succeed(metadata, &install)).unwrap();
    let defaults = metadata["workspace_default_members"].as_array().unwrap();
    let package = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == repo().join("Cargo.toml"))
        })
        .expect("a package at the top of the repository");
    assert_eq!(defaults, &vec![package["id"].clone()], "{defaults:?}");
    let binaries: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(binaries, vec!["materializer"]);
}

/// `nakadi-server`, built beside the test binary by `cargo test --workspace`.
pub(crate) fn nakadi_server_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("nakadi-server"))
        .unwrap();
    assert!(
        binary.is_file(),
        "{} is missing: build it with cargo build -p nakadi-testkit (scripts/test.sh does)",
        binary.display()
    );
    binary
}

#[test]
fn a_run_reads_the_local_nakadi_server_as_shown() {
    let readme = readme();
    let start = block_starting(&readme, "cargo run -p nakadi-testkit");
    assert!(start.lines().count() == 1, "{start}");
    let run = block_starting(
        &readme,
        "materializer run --topic article-stock-changed --nakadi-url",
    );
    let ws = repository_copy();
    let bin = bin_dir(&ws, false);
    // `cargo run -p nakadi-testkit` is the testkit's binary, on a port the
    // system chooses in place of its default 8080 (read from its log).
    let log = ws.path("nakadi-server.log");
    let mut server = Background(
        Command::new(nakadi_server_binary())
            .current_dir(ws.dir.path())
            .env("NAKADI_SERVER_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let port = announced_port(&mut server.0, &log, "address=127.0.0.1:", "nakadi-server");
    assert!(run.contains("http://127.0.0.1:8080"), "{run}");
    let run = run.replace("http://127.0.0.1:8080", &format!("http://127.0.0.1:{port}"));
    let live = succeed(shell(&ws, &bin, &run), &run);
    assert!(
        live.starts_with("article-stock-changed: run 1 committed in "),
        "{live}"
    );
    // The same rows as the run from the recording.
    let recorded = repository_copy();
    let line = "materializer run --topic article-stock-changed";
    succeed(shell(&recorded, &bin_dir(&recorded, false), line), line);
    let main = "out/article-stock-changed/main/run=0000000001/main-0000000001-p0.csv";
    let rows = |ws: &Workspace| {
        let (header, mut rows) = csv_rows(&std::fs::read_to_string(ws.path(main)).unwrap());
        rows.sort();
        (header, rows)
    };
    assert_eq!(rows(&ws), rows(&recorded));
}

#[test]
fn serve_and_curl_work_as_shown() {
    let readme = readme();
    let serve = block_starting(&readme, "materializer serve --api-token");
    let curl = block_starting(&readme, "curl -s -X POST");
    let ws = repository_copy();
    let bin = bin_dir(&ws, false);
    let token = "readme-token";
    let log = ws.path("serve.log");
    // serve's default address is 127.0.0.1:8000; the test takes port 0
    // through the setting README names for it, and reads the port serve took
    // from its banner.
    let banner = ws.path("serve.out");
    let mut command = shell(&ws, &bin, &serve);
    command
        .env("TOKEN", token)
        .env("MATERIALIZER_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&banner).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut server = Background(command.spawn().unwrap());
    let port = announced_port(
        &mut server.0,
        &banner,
        "materializer on http://127.0.0.1:",
        "serve",
    );
    assert_eq!(curl.matches("http://127.0.0.1:8000/").count(), 2, "{curl}");
    let curl = curl.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
    let mut command = shell(&ws, &bin, &curl);
    command.env("TOKEN", token);
    let answers = succeed(command, &curl);
    let mut answers = serde_json::Deserializer::from_str(&answers).into_iter::<serde_json::Value>();
    let triggered = answers.next().unwrap().unwrap();
    let id = triggered["id"].as_str().expect("the run's id");
    assert_eq!(
        triggered["status_url"],
        format!("/runs/{id}"),
        "{triggered}"
    );
    let listed = answers.next().unwrap().unwrap();
    assert_eq!(listed[0]["id"], id, "{listed}");
}

/// Runs the blocks of a walkthrough (`blocks` of them) in order in a copy
/// of the repository, `psql` connected to `database`; the workspace and
/// each block's output.
fn run_walkthrough(name: &str, blocks: usize, database: &str) -> (Workspace, Vec<String>) {
    let readme = readme();
    let found = sh_blocks(walkthrough(&readme, name));
    assert_eq!(found.len(), blocks, "{found:?}");
    let ws = repository_copy();
    let bin = bin_dir(&ws, true);
    let database = postgres().database(database);
    let outputs = found
        .iter()
        .map(|block| run_block(&ws, &bin, &database, block))
        .collect();
    (ws, outputs)
}

/// The rows `psql` printed as a table (the header is the line naming
/// `article_id`).
fn psql_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.contains('|') && !l.contains("article_id"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn the_first_topic_walkthrough_runs_as_written() {
    let (ws, outputs) = run_walkthrough("", 4, "readme");

    // The preview shows the new mapping's columns, from the sample events.
    let preview = &outputs[1];
    assert!(preview.starts_with("MAIN: "), "{preview}");
    assert!(
        preview.contains("article_id | brand") && preview.contains("version | available_qty"),
        "{preview}"
    );
    assert!(preview.contains("\nREJECTED: "), "{preview}");
    // The run commits run 1 of the copied topic.
    assert!(
        outputs[2].starts_with("my-stock: run 1 committed in "),
        "{}",
        outputs[2]
    );
    // PostgreSQL holds the latest version of every article with stock, as
    // the recorded events say: computed here from the recording's lines.
    let expected =
        latest_in_stock(&ws.path("fixtures/recorded/article-stock-changed/stream.jsonl"));
    assert!(!expected.is_empty(), "the recording has articles in stock");
    let mut loaded = psql_rows(&outputs[3]);
    loaded.sort();
    assert_eq!(loaded, expected, "{}", outputs[3]);
}

/// The walkthrough's rows from recorded stream lines, without the engine:
/// per article the event of the highest version (among equal versions the
/// last one recorded), kept when its `available_qty` is above 0, as
/// `article_id, brand, version, available_qty` (NULL as empty), sorted.
/// Events that do not fit the topic's schema (not JSON, a required field
/// missing or of another type) are left out, as the engine rejects them.
fn latest_in_stock(recording: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(recording).unwrap();
    let mut latest: std::collections::BTreeMap<i64, serde_json::Value> = Default::default();
    for line in text.lines() {
        for event in events_of_line(line)
            .iter()
            .filter_map(|e| fitting_article(e))
        {
            let article = event["article_id"].as_i64().unwrap_or_default();
            let newer = latest
                .get(&article)
                .is_none_or(|kept| event["version"].as_i64() >= kept["version"].as_i64());
            if newer {
                latest.insert(article, event);
            }
        }
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Vec<String>> = latest
        .values()
        .filter(|e| e["available_qty"].as_i64().is_some_and(|q| q > 0))
        .map(|e| {
            ["article_id", "brand", "version", "available_qty"]
                .iter()
                .map(|c| cell(&e[*c]))
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// An event of article.stock-changed that fits its schema: JSON, with the
/// required `article_id`, `version`, `available_qty` (integers) and `brand`
/// (text), and `model` text when given.
fn fitting_article(text: &str) -> Option<serde_json::Value> {
    let event: serde_json::Value = serde_json::from_str(text).ok()?;
    let integers = ["article_id", "version", "available_qty"]
        .iter()
        .all(|k| event[*k].is_i64());
    let texts =
        event["brand"].is_string() && (event["model"].is_null() || event["model"].is_string());
    (integers && texts).then_some(event)
}

/// The texts of the events of one stream line, each whole even when another
/// one of the line is not JSON: the items of its `"events"` array, split at
/// the commas outside strings and brackets.
fn events_of_line(line: &str) -> Vec<&str> {
    let Some(start) = line.find("\"events\":[").map(|i| i + "\"events\":[".len()) else {
        return Vec::new();
    };
    let (mut events, mut from, mut depth) = (Vec::new(), start, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for (i, b) in line.bytes().enumerate().skip(start) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'{' | b'[' => depth += 1,
            b']' if depth == 0 => {
                events.push(&line[from..i]);
                break;
            }
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                events.push(&line[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    events.retain(|e| !e.trim().is_empty());
    events
}

#[test]
fn the_own_events_walkthrough_runs_as_written() {
    let (_ws, outputs) = run_walkthrough("own events ", 2, "readme_own_events");
    // Three events, one file: a partition of three events, run 1.
    assert!(
        outputs[0].starts_with("my-articles: run 1 committed in "),
        "{}",
        outputs[0]
    );
    assert!(
        outputs[0].contains("  events read                3  "),
        "{}",
        outputs[0]
    );
    // PostgreSQL holds the newest version of each article.
    assert_eq!(
        psql_rows(&outputs[1]),
        [["1", "Nike", "2", "4"], ["2", "Puma", "1", "3"]],
        "{}",
        outputs[1]
    );
}
