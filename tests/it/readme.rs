//! README's walkthrough, run as written: its shell blocks, in order, in a
//! copy of the repository's topics and fixtures, with `materializer` and
//! `psql` on the PATH and a real PostgreSQL behind `psql`.

use std::path::Path;
use std::process::Command;

use crate::servers::postgres;
use crate::support::{Workspace, copy_dir, csv_rows, repo};

/// The ```sh blocks between the walkthrough's markers.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("<!-- walkthrough")
        .expect("README marks its walkthrough");
    let end = readme[start..]
        .find("<!-- end of walkthrough -->")
        .map(|e| start + e)
        .expect("README marks the walkthrough's end");
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 4..];
    }
    blocks
}

/// A folder of links: `materializer` to the binary under test, `psql` to
/// the server's client.
fn bin_dir(ws: &Workspace) -> std::path::PathBuf {
    let bin = ws.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_materializer"), bin.join("materializer"))
        .unwrap();
    let psql = postgres().psql_path();
    if psql.is_absolute() {
        std::os::unix::fs::symlink(&psql, bin.join("psql")).unwrap();
    }
    bin
}

fn run_block(ws: &Workspace, bin: &Path, database: &str, block: &str) -> String {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(ws.dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .envs(postgres().client_env(database))
        .env_remove("MATERIALIZER_OUTPUT")
        .env_remove("NAKADI_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README block failed:\n{block}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_first_topic_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);
    assert_eq!(blocks.len(), 4, "{blocks:?}");
    let ws = Workspace::new();
    copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    let bin = bin_dir(&ws);
    let database = postgres().database("readme");
    let outputs: Vec<String> = blocks
        .iter()
        .map(|block| run_block(&ws, &bin, &database, block))
        .collect();

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
    // PostgreSQL holds exactly the MAIN rows of the run: the latest version
    // of every article with stock.
    let main_folder = ws.path("out/my-stock/main/run=0000000001");
    let mut expected: Vec<Vec<String>> = Vec::new();
    for entry in std::fs::read_dir(&main_folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            let (_, rows) = csv_rows(&std::fs::read_to_string(&path).unwrap());
            expected.extend(
                rows.into_iter()
                    .map(|row| row.into_iter().map(Option::unwrap_or_default).collect()),
            );
        }
    }
    expected.sort();
    assert!(!expected.is_empty(), "the run wrote MAIN rows");
    let mut loaded: Vec<Vec<String>> = outputs[3]
        .lines()
        .filter(|l| l.contains('|') && !l.contains("article_id"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    loaded.sort();
    assert_eq!(loaded, expected, "{}", outputs[3]);
}
