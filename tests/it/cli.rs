//! The binary: commands, exit codes and what they print.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use materializer_core::sink::ephemeral::{IN_CONTAINER, mount_point};
use nakadi_testkit::faults::{FaultPlan, Window};

use crate::nakadi::live;

use crate::support::{Serve, Workspace, article_stream, bound_url, repo};

fn command(ws: &Workspace) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_materializer"));
    command
        .current_dir(ws.dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("MATERIALIZER_OUTPUT")
        .env_remove("MATERIALIZER_LISTEN")
        .env_remove("MATERIALIZER_API_TOKENS")
        .env_remove("MATERIALIZER_API_TOKEN_FILE")
        .env_remove(IN_CONTAINER);
    command
}

fn materializer(ws: &Workspace, args: &[&str]) -> Output {
    command(ws).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_prints_a_summary_and_a_second_run_says_nothing_is_new() {
    let ws = Workspace::new();
    let args = [
        "run",
        "--topic",
        "article-stock-changed",
        "--source",
        "recorded/article-stock-changed",
        "--output",
        "out",
    ];
    let first = materializer(&ws, &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(
        text.starts_with("article-stock-changed: run 1 committed in "),
        "{text}"
    );
    assert!(
        text.contains(
            "  events read               15  (3 rejected, 5 superseded: compaction rate 41.7%)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  main rows                  5  from 5 latest events\n"),
        "{text}"
    );
    assert!(
        text.contains("  correction rows            2  from 2 out-of-order events\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  older rows                 3  of versions kept for the warehouse's history\n"
        ),
        "{text}"
    );
    assert!(!text.contains("deletes"), "no event deletes: {text}");
    assert!(
        text.contains("main/run=0000000001/main-0000000001-p0.csv"),
        "{text}"
    );

    let second = materializer(&ws, &args);
    assert!(second.status.success());
    assert_eq!(
        stdout(&second),
        "article-stock-changed: nothing new since run 1; nothing written.\n"
    );
}

#[test]
fn run_json_summary_is_machine_readable() {
    let ws = Workspace::new();
    let out = materializer(
        &ws,
        &[
            "run",
            "-t",
            "order-placed",
            "--source",
            "recorded/order-placed",
            "--output",
            "out",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["outcome"], "committed");
    assert_eq!(summary["counts"]["main_rows"], 6);
    // MAIN, CORRECTION, OLDER and KEYS of each of the two partitions.
    assert_eq!(summary["files"].as_array().unwrap().len(), 8);
}

#[test]
fn the_default_source_is_the_bundled_recording() {
    // Run from the repository layout: sql/ and fixtures/recorded/<topic>.
    let ws = Workspace::new();
    crate::support::copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    let out = materializer(&ws, &["run", "--topic", "order-placed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        ws.path("out/order-placed/_manifests/0000000001.json")
            .is_file()
    );
}

#[test]
fn explain_prints_the_generated_sql_and_the_mapping() {
    let ws = Workspace::new();
    let out = materializer(&ws, &["explain", "article-stock-changed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("--   article_id BIGINT NOT NULL\n"), "{text}");
    assert!(
        text.contains(r#"ROW_NUMBER() OVER (PARTITION BY "article_id" ORDER BY "version" DESC NULLS LAST, length("_partition") DESC, "_partition" DESC, "_seq" DESC) AS __rank"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"max("version") OVER (PARTITION BY "article_id", "_partition" ORDER BY "_seq""#
        ),
        "{text}"
    );
    assert!(
        text.contains("    metadata.occurred_at AS occurred_at,\n"),
        "{text}"
    );
    assert!(text.contains("SELECT * FROM \"output\";"), "{text}");
    // The warehouse contract, for this topic: no deletes, history on.
    assert!(
        text.contains("-- The warehouse contract:\n-- Load every committed run, in run order."),
        "{text}"
    );
    // The contract is one paragraph wrapped into comment lines.
    let unwrapped = text.replace("\n-- ", " ");
    assert!(
        unwrapped.contains("The history table holds the rows of every version"),
        "{text}"
    );
    assert!(
        unwrapped.contains("Here no event deletes its key (set delete_when in topic.toml)."),
        "{text}"
    );
}

#[test]
fn topics_lists_topics_and_fails_when_one_is_broken() {
    let ws = Workspace::new();
    let ok = materializer(&ws, &["topics"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("article-stock-changed\n  event type      article.stock-changed\n")
    );
    std::fs::write(
        ws.sql().join("order-placed/mapping.sql"),
        "CREATE VIEW output AS SELECT nope FROM events;",
    )
    .unwrap();
    let broken = materializer(&ws, &["topics"]);
    assert_eq!(
        broken.status.code(),
        Some(2),
        "a configuration error exits with 2"
    );
    assert!(stdout(&broken).contains("order-placed  DOES NOT LOAD\n  sql/order-placed/mapping.sql:1:30: in view output: column 'nope' not found"), "{}", stdout(&broken));
    assert!(stderr(&broken).contains("error: 1 topic does not load"));
}

#[test]
fn an_unknown_topic_is_an_error_listing_the_known_ones() {
    let ws = Workspace::new();
    let out = materializer(&ws, &["run", "--topic", "nope", "--source", "recorded"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a configuration error exits with 2"
    );
    assert_eq!(
        stderr(&out).trim_end(),
        "error: unknown topic \"nope\"; topics under sql: article-stock-changed, order-placed"
    );
}

#[test]
fn help_explains_the_commands() {
    let ws = Workspace::new();
    let out = materializer(&ws, &["--help"]);
    let text = stdout(&out);
    for needle in ["run", "explain", "topics", "--sql-dir", "committed cursor"] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
    let out = materializer(&ws, &["run", "--help"]);
    let text = stdout(&out);
    for needle in [
        "--topic",
        "--source",
        "--output",
        "s3://bucket/prefix",
        "fixtures/recorded/<topic>",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from run --help:\n{text}"
        );
    }
}

#[test]
fn exit_codes_tell_a_broken_setting_from_an_unreachable_source() {
    let ws = Workspace::new();
    // Nothing listens on port 9 of this machine: the source is unavailable,
    // and the run says so at once (no retries: nothing is there to recover).
    let unreachable = materializer(
        &ws,
        &[
            "run",
            "--topic",
            "article-stock-changed",
            "--nakadi-url",
            "http://127.0.0.1:9",
        ],
    );
    let message = stderr(&unreachable);
    assert_eq!(unreachable.status.code(), Some(3), "{message}");
    assert!(
        message.contains("cannot connect to Nakadi at http://127.0.0.1:9")
            && message.contains("nakadi-server"),
        "{message}"
    );
    assert!(!message.contains("retrying"), "{message}");
    // A topic that does not exist is a configuration error.
    let unknown = materializer(&ws, &["explain", "no-such-topic"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    // The codes are documented where an operator looks.
    let help = materializer(&ws, &["--help"]);
    let text = stdout(&help);
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(
        text.contains("3    event source unavailable (source-unavailable)"),
        "{text}"
    );
}

#[test]
fn preview_shows_the_rows_a_run_would_write_and_a_draft_mistake_with_its_place() {
    let ws = Workspace::new();
    crate::support::copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    let out = materializer(
        &ws,
        &[
            "preview",
            "article-stock-changed",
            "--events",
            "fixtures/samples/article-stock-changed.jsonl",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.starts_with("MAIN: 4 rows from 4 latest events\n"),
        "{text}"
    );
    assert!(
        text.contains("\nCORRECTION: 2 rows from 2 out-of-order events\n"),
        "{text}"
    );
    assert!(
        text.contains("\nREJECTED: 1 event\n  offset 9: ") && text.contains("article_id"),
        "{text}"
    );
    assert!(
        text.contains("100000004  | Jack & Jones | Slim Fit, \"Limited\" | 3"),
        "{text}"
    );
    // The same preview from the topic's source, as JSON.
    let json = materializer(
        &ws,
        &[
            "preview",
            "article-stock-changed",
            "--source",
            "recorded/article-stock-changed",
            "--limit",
            "3",
            "--json",
        ],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["counts"]["events_read"], 3, "{value}");
    // A draft with a mistake: the error names its line and column.
    std::fs::write(
        ws.path("draft.sql"),
        "CREATE VIEW output AS\nSELECT article_id, no_such_column\nFROM events;\n",
    )
    .unwrap();
    let bad = materializer(
        &ws,
        &[
            "preview",
            "article-stock-changed",
            "--events",
            "fixtures/samples/article-stock-changed.jsonl",
            "--mapping",
            "draft.sql",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("draft.sql:2:") && stderr(&bad).contains("no_such_column"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn each_subcommand_lists_its_own_options_and_the_global_ones_once() {
    let ws = Workspace::new();
    let topics = stdout(&materializer(&ws, &["topics", "--help"]));
    assert!(topics.contains("--nakadi-url"), "{topics}");
    assert!(topics.contains("[env: NAKADI_TOKEN]"), "{topics}");
    for absent in [
        "--nakadi-batch-limit",
        "--memory-mb",
        "--nakadi-max-retries",
    ] {
        assert!(
            !topics.contains(absent),
            "{absent} in topics --help:\n{topics}"
        );
    }
    let run = stdout(&materializer(&ws, &["run", "--help"]));
    for heading in [
        "Nakadi:",
        "Nakadi streams:",
        "S3:",
        "Memory:",
        "Global options:",
    ] {
        assert!(run.contains(heading), "{heading} missing:\n{run}");
    }
    assert_eq!(run.matches("--sql-dir <SQL_DIR>").count(), 1, "{run}");
    let warehouse = stdout(&materializer(&ws, &["warehouse-sql", "--help"]));
    assert!(!warehouse.contains("--memory-mb"), "{warehouse}");
}

#[test]
fn a_type_mistake_names_both_types_and_the_operator() {
    let ws = Workspace::new();
    crate::support::copy_dir(&repo().join("fixtures"), &ws.path("fixtures"));
    std::fs::write(
        ws.path("draft.sql"),
        "CREATE VIEW output AS\nSELECT article_id + brand AS x\nFROM events;\n",
    )
    .unwrap();
    let out = materializer(
        &ws,
        &[
            "preview",
            "article-stock-changed",
            "--events",
            "fixtures/samples/article-stock-changed.jsonl",
            "--mapping",
            "draft.sql",
        ],
    );
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains("draft.sql:2:8: in view output: expressions have incompatible types: ")
            && message.contains("BIGINT + VARCHAR"),
        "{message}"
    );
}

#[test]
fn serve_refuses_all_interfaces_without_a_token() {
    let ws = Workspace::new();
    let out = command(&ws)
        .env("MATERIALIZER_LISTEN", "0.0.0.0:0")
        .arg("serve")
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    // The address it bound, port and all.
    let port = text
        .split("refusing to serve on 0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{text}");
    assert!(
        text.contains(&format!(
            "refusing to serve on 0.0.0.0:{port} without API tokens"
        )),
        "{text}"
    );
}

/// A `serve` process, killed if the test fails before it stops it.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn healthcheck_asks_serve_which_stops_on_sigterm() {
    let ws = Workspace::new();
    let log = ws.path("serve.log");
    let announced = ws.path("serve.out");
    let mut server = Serving(
        command(&ws)
            .env("MATERIALIZER_LISTEN", "0.0.0.0:0")
            .args(["serve", "--api-token", "secret"])
            .stdout(std::fs::File::create(&announced).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = bound_url(&mut server.0, &announced, &log).await;
    let port = url
        .strip_prefix("http://0.0.0.0:")
        .unwrap_or_else(|| panic!("{url}"));
    let listen = format!("0.0.0.0:{port}");
    let healthcheck = || {
        command(&ws)
            .env("MATERIALIZER_LISTEN", &listen)
            .arg("healthcheck")
            .output()
            .unwrap()
    };
    let up = healthcheck();
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(
        stdout(&up),
        format!("http://127.0.0.1:{port}/healthz: HTTP/1.1 200 OK\n")
    );

    let status = terminate(&mut server.0, "serve", Duration::from_secs(10));
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Stopped, it answers no more.
    let down = healthcheck();
    assert_eq!(down.status.code(), Some(1), "{}", stderr(&down));
    assert!(
        stderr(&down).contains(&format!(
            "no health answer from http://127.0.0.1:{port}/healthz"
        )),
        "{}",
        stderr(&down)
    );
}

/// Sends SIGTERM to `child`, as a container runtime stops its process, and
/// waits (at most `within`) for it to end.
fn terminate(child: &mut Child, what: &str, within: Duration) -> std::process::ExitStatus {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} still runs after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_on_sigterm_and_commits_nothing() {
    let ws = Workspace::new();
    let live = live(&ws, None, &article_stream(200, 4, 5)).await;
    // The stream sends only keep-alives for a minute: the run stays reading.
    live.bus.set_faults(FaultPlan {
        keepalive_only: Some(Window {
            seconds: 60.0,
            streams: 100,
        }),
        ..Default::default()
    });
    let log = ws.path("run.log");
    let mut run = Serving(
        command(&ws)
            .env("RUST_LOG", "info")
            .args(["run", "--topic", "article-stock-changed", "--output", "out"])
            .args(["--nakadi-url", &live.url])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while live.bus.injected().keepalive_only == 0 {
        assert!(
            Instant::now() < deadline,
            "the run never started reading: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status =
        tokio::task::block_in_place(|| terminate(&mut run.0, "run", Duration::from_secs(10)));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(
        !ws.path("out/article-stock-changed/_manifests").exists(),
        "a stopped run committed: {text}"
    );
}

/// Where a local folder's mount is, from this process's mount table.
fn mount_of(folder: &Path) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_point(folder, &mountinfo)
}

#[test]
fn in_the_image_a_run_warns_when_its_output_is_not_a_mounted_volume() {
    let ws = Workspace::new();
    let run = |output: &Path, in_container: bool| {
        let mut command = command(&ws);
        if in_container {
            command.env(IN_CONTAINER, "1");
        }
        command
            .args(["run", "--topic", "article-stock-changed"])
            .args(["--source", "recorded/article-stock-changed"])
            .arg("--output")
            .arg(output)
            .output()
            .unwrap()
    };
    let warns = |out: &Output| stderr(out).contains("is not a mounted volume");

    // A folder on the root file system, as the image's /data without a volume.
    let candidates = [
        ws.out(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/tmp"),
    ];
    match candidates
        .iter()
        .map(|folder| folder.canonicalize().unwrap())
        .find(|folder| mount_of(folder).as_deref() == Some(Path::new("/")))
    {
        Some(on_root) => {
            let output = on_root.join(format!("lost-{}", std::process::id()));
            let warned = run(&output, true);
            let _ = std::fs::remove_dir_all(&output);
            assert!(warned.status.success(), "{}", stderr(&warned));
            assert!(
                stderr(&warned).contains(&format!(
                    "the output folder {} is not a mounted volume: its files are lost with \
                     the container",
                    output.display()
                )),
                "{}",
                stderr(&warned)
            );
            // Outside the image the same folder says nothing.
            let quiet = run(&output, false);
            let _ = std::fs::remove_dir_all(&output);
            assert!(quiet.status.success(), "{}", stderr(&quiet));
            assert!(!warns(&quiet), "{}", stderr(&quiet));
        }
        None => crate::support::untestable(
            "no test folder on the root file system: the missing volume's warning",
        ),
    }

    // A folder on a mount of its own, as a volume at /data.
    let shm = Path::new("/dev/shm");
    if mount_of(shm).as_deref() == Some(shm) {
        let output = shm.join(format!("materializer-test-{}", std::process::id()));
        let kept = run(&output, true);
        let _ = std::fs::remove_dir_all(&output);
        assert!(kept.status.success(), "{}", stderr(&kept));
        assert!(!warns(&kept), "{}", stderr(&kept));
    } else {
        crate::support::untestable("/dev/shm is no mount of its own: a volume's silence");
    }
}

#[test]
fn a_run_refuses_an_output_folder_it_cannot_write() {
    let ws = Workspace::new();
    let read_only = ws.path("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, PermissionsExt::from_mode(0o555)).unwrap();
    // Root may write anywhere: then the binary runs as nobody, from a copy
    // nobody may reach, in a workspace nobody may read.
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut command = if root {
        std::fs::set_permissions(ws.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let binary = ws.path("materializer");
        if std::fs::hard_link(env!("CARGO_BIN_EXE_materializer"), &binary).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_materializer"), &binary).unwrap();
        }
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(binary);
        command
    } else {
        Command::new(env!("CARGO_BIN_EXE_materializer"))
    };
    let out = command
        .current_dir(ws.dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("MATERIALIZER_OUTPUT")
        .args(["run", "--topic", "article-stock-changed"])
        .args(["--source", "recorded/article-stock-changed"])
        .args(["--output", "read-only"])
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "the output folder {} is not writable by uid ",
            read_only.display()
        )),
        "{text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
    assert_eq!(std::fs::read_dir(&read_only).unwrap().count(), 0);
}

/// `serve --config FILE` takes its settings from the file, tokens from the
/// `api_token_file` it names among them; `--api-token-file` alike. Every
/// token of the file (comments and blank lines aside) is accepted, any
/// other refused (403; 401 without a token).
#[tokio::test]
async fn serve_takes_a_token_file_and_a_config_file() {
    let ws = Workspace::new();
    let tokens = ws.path("tokens");
    std::fs::write(&tokens, "# operators\nfrom-file\n\n  second  \n").unwrap();
    std::fs::write(
        ws.path("serve.toml"),
        format!(
            "api_token_file = {:?}\npreview_timeout_seconds = 7.5\nallow_mapping_edits = true\n",
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let status = |url: String, token: &'static str| async move {
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    let configured = Serve::start(&ws, &[], &["--config", "serve.toml"]).await;
    let info = format!("{}/info", configured.url);
    let (code, body) = status(info.clone(), "from-file").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["preview_timeout_seconds"], 7.5, "{body}");
    assert_eq!(body["mapping_edits"], true, "{body}");
    assert_eq!(status(info.clone(), "second").await.0, 200);
    assert_eq!(status(info.clone(), "other").await.0, 403);
    let anonymous = reqwest::get(info).await.unwrap().status().as_u16();
    assert_eq!(anonymous, 401);
    drop(configured);

    let flagged = Serve::start(&ws, &[], &["--api-token-file", "tokens"]).await;
    let info = format!("{}/info", flagged.url);
    let (code, body) = status(info.clone(), "second").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["mapping_edits"], false, "{body}");
    assert_eq!(status(info, "from-fil").await.0, 403);
}

/// SIGHUP makes `serve` re-read `sql/`: a topic added since is listed, and
/// the reload is logged.
#[tokio::test]
async fn serve_reloads_its_topics_on_sighup() {
    let ws = Workspace::new();
    let server = Serve::start(&ws, &["t"], &[]).await;
    let topics = || async {
        let listed: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/topics", server.url))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut names: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(topics().await, ["article-stock-changed", "order-placed"]);
    crate::support::copy_dir(
        &ws.sql().join("article-stock-changed"),
        &ws.sql().join("article-copy"),
    );
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.logged().contains("reloaded on SIGHUP") {
        assert!(Instant::now() < deadline, "no reload: {}", server.logged());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        topics().await,
        ["article-copy", "article-stock-changed", "order-placed"]
    );
}

/// On SIGTERM `serve` takes no new runs and lets a run in flight finish
/// within `--shutdown-deadline`: it commits, and serve exits 0; past the
/// deadline (0 s here) the run is stopped with nothing of it visible, and
/// serve exits 0 too. The log says the run was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sigterm_lets_runs_finish_within_the_deadline_then_stops_them() {
    for (deadline, commits) in [("120", true), ("0", false)] {
        let ws = Workspace::new();
        ws.record("article-stock-changed", &article_stream(60_000, 4, 99));
        let mut server = Serve::start(
            &ws,
            &["t"],
            &["--recordings", "recorded", "--shutdown-deadline", deadline],
        )
        .await;
        let path = "/topics/article-stock-changed/runs";
        let (status, triggered) = server.call(reqwest::Method::POST, path, "t").await;
        assert_eq!(status, 202, "{triggered}");
        let id = triggered["id"].as_str().unwrap().to_string();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let path = format!("/runs/{id}");
            let (_, view) = server.call(reqwest::Method::GET, &path, "t").await;
            if view["progress"]["events_read"].as_u64().unwrap_or(0) > 0 {
                break;
            }
            assert!(Instant::now() < until, "the run never read: {view}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = tokio::task::block_in_place(|| {
            terminate(&mut server.child, "serve", Duration::from_secs(120))
        });
        let log = server.logged();
        assert!(status.success(), "{status}: {log}");
        assert!(log.contains("shutting down active=1"), "{log}");
        let committed =
            crate::support::committed(&ws.local_output(), "article-stock-changed").await;
        if commits {
            assert_eq!(committed.sequences, vec![1], "{log}");
            assert!(!log.contains("shutdown deadline reached"), "{log}");
        } else {
            assert!(committed.sequences.is_empty(), "{log}");
            assert!(log.contains("shutdown deadline reached"), "{log}");
        }
    }
}

/// `--log-format json`: every line a run logs on stderr is a JSON object
/// with its time, level and message (debug lines of the libraries too); the
/// run's own lines carry their fields as JSON values. A failed command's
/// last line is its error sentence, `error: ...`, as in the text format.
#[test]
fn json_logs_are_one_json_object_per_line() {
    let ws = Workspace::new();
    let json_lines = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|line| {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(value.is_object(), "{line}");
                assert!(value["timestamp"].is_string(), "no time: {line}");
                assert!(
                    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                        .contains(&value["level"].as_str().unwrap_or_default()),
                    "no level: {line}"
                );
                assert!(value["message"].is_string(), "no message: {line}");
                value
            })
            .collect()
    };
    let run = |format: &str, output: &str, source: &[&str]| {
        command(&ws)
            .env("RUST_LOG", "debug")
            .args(["run", "--topic", "article-stock-changed", "--no-progress"])
            .args(["--log-format", format, "--output", output])
            .args(source)
            .output()
            .unwrap()
    };
    let recorded = ["--source", "recorded/article-stock-changed"];

    let ok = run("json", "out", &recorded);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let lines = json_lines(&stderr(&ok));
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "no debug line: {}",
        stderr(&ok)
    );
    let committed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "run committed")
        .collect();
    assert_eq!(committed.len(), 1, "{}", stderr(&ok));
    assert_eq!(committed[0]["level"], "INFO");
    assert_eq!(committed[0]["topic"], "article-stock-changed");
    assert_eq!(committed[0]["sequence"], 1);
    // The summary stays on stdout, as text.
    assert!(
        stdout(&ok).starts_with("article-stock-changed: run 1 committed in "),
        "{}",
        stdout(&ok)
    );

    // The same run logging text writes lines that are not JSON.
    let text = run("text", "out-text", &recorded);
    assert!(text.status.success(), "{}", stderr(&text));
    let first = stderr(&text).lines().next().unwrap_or_default().to_string();
    assert!(
        serde_json::from_str::<serde_json::Value>(&first).is_err(),
        "{first}"
    );

    // A failure: its log lines are JSON, its error the last line.
    let failed = run(
        "json",
        "out-failed",
        &["--nakadi-url", "http://127.0.0.1:9"],
    );
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let text = stderr(&failed);
    let (logged, error) = text.trim_end().rsplit_once('\n').unwrap();
    let lines = json_lines(logged);
    assert!(
        lines.iter().any(|l| l["message"] == "run starting"),
        "{text}"
    );
    assert!(
        error.starts_with(
            "error: topic article-stock-changed: partitions of event type article.stock-changed: \
             cannot connect to Nakadi at http://127.0.0.1:9: "
        ),
        "{text}"
    );
}

/// A `serve` whose runs wait before their commit (the `commit` hold point)
/// until the file `gate` of the workspace exists; `gate.waiting` appears
/// when a run waits there.
async fn serve_holding_commits(ws: &Workspace, args: &[&str]) -> (Serve, PathBuf, PathBuf) {
    let gate = ws.path("gate");
    let gate_text = gate.display().to_string();
    let server = Serve::start_with(
        ws,
        &["t"],
        &[&["--recordings", "recorded"], args].concat(),
        &[
            ("MATERIALIZER_FAILPOINT", "commit"),
            ("MATERIALIZER_FAILPOINT_GATE", &gate_text),
        ],
    )
    .await;
    (server, gate, ws.path("gate.waiting"))
}

/// Starts a run of `topic` on `server`: its id.
pub(crate) async fn start_run(server: &Serve, topic: &str) -> String {
    let path = format!("/topics/{topic}/runs");
    let (status, triggered) = server.call(reqwest::Method::POST, &path, "t").await;
    assert_eq!(status, 202, "{triggered}");
    triggered["id"].as_str().unwrap().to_string()
}

/// Polls `GET /runs/{id}` of each run until `until` holds for all of their
/// views at once, within two minutes; answers those views.
pub(crate) async fn poll_runs(
    server: &Serve,
    ids: &[&str],
    what: &str,
    until: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut views = Vec::new();
        for id in ids {
            let (_, view) = server
                .call(reqwest::Method::GET, &format!("/runs/{id}"), "t")
                .await;
            views.push(view);
        }
        if until(&views) {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {views:?}\n{}",
            server.logged()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most two minutes) for `serve` to end.
async fn ended(server: &mut Serve) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "serve still runs: {}",
            server.logged()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On SIGTERM `serve` takes no new runs: while a run waits before its
/// commit, a run asked for (of another topic, or of the same) is refused
/// with a 503 problem saying the server is shutting down, and `/healthz`
/// says so too. The run in flight then commits, nothing of the refused
/// ones is written, and serve exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sigterm_refuses_new_runs_while_one_is_in_flight() {
    let ws = Workspace::new();
    let (mut server, gate, waiting) =
        serve_holding_commits(&ws, &["--shutdown-deadline", "120"]).await;
    let id = start_run(&server, "article-stock-changed").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.exists() {
        assert!(
            Instant::now() < deadline,
            "the run never reached its commit: {}",
            server.logged()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["status"] == "shutting down" {
            assert_eq!(health["runs_active"], 1, "{health}");
            break;
        }
        assert_eq!(health["status"], "ok", "{health}");
        assert!(Instant::now() < deadline, "SIGTERM not handled: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for topic in ["order-placed", "article-stock-changed"] {
        let path = format!("/topics/{topic}/runs");
        let (status, problem) = server.call(reqwest::Method::POST, &path, "t").await;
        assert_eq!(status, 503, "{topic}: {problem}");
        assert_eq!(problem["type"], "/problems/unavailable", "{problem}");
        assert_eq!(problem["status"], 503, "{problem}");
        assert_eq!(
            problem["detail"], "the server is shutting down",
            "{problem}"
        );
    }
    let (_, view) = server
        .call(reqwest::Method::GET, &format!("/runs/{id}"), "t")
        .await;
    assert_eq!(
        view["state"], "running",
        "the run in flight goes on: {view}"
    );
    std::fs::write(&gate, b"").unwrap();
    let status = ended(&mut server).await;
    let log = server.logged();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("shutting down active=1"), "{log}");
    let stock = crate::support::committed(&ws.local_output(), "article-stock-changed").await;
    assert_eq!(stock.sequences, vec![1], "{log}");
    assert!(
        !ws.out().join("order-placed").exists(),
        "a refused run wrote: {:?}",
        ws.out_files()
    );
}

/// Runs of different topics go in parallel: runs of two topics both wait
/// before their commit at once, each with all its events read and its files
/// written, then both commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_two_topics_at_once() {
    let ws = Workspace::new();
    let (server, gate, waiting) = serve_holding_commits(&ws, &[]).await;
    // Events in each topic's recording: a batch's cursor names its last
    // event and a partition's offsets count from 0, so a partition holds
    // its highest cursor offset plus one events.
    let recorded = |topic: &str| -> u64 {
        let text =
            std::fs::read_to_string(ws.path("recorded").join(topic).join("stream.jsonl")).unwrap();
        let mut last: std::collections::BTreeMap<String, u64> = Default::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // The cursor object opens the line; the events may not be JSON.
            let cursor = &line[..line.find('}').unwrap() + 1];
            let cursor: serde_json::Value = serde_json::from_str(&format!("{cursor}}}")).unwrap();
            let partition = cursor["cursor"]["partition"].as_str().unwrap().to_string();
            let offset = cursor["cursor"]["offset"].as_str().unwrap();
            let offset: u64 = offset.rsplit('-').next().unwrap().parse().unwrap();
            let highest = last.entry(partition).or_default();
            *highest = (*highest).max(offset);
        }
        last.values().map(|offset| offset + 1).sum()
    };
    let topics = ["article-stock-changed", "order-placed"];
    let expected: Vec<u64> = topics.iter().map(|t| recorded(t)).collect();
    assert!(expected.iter().all(|&n| n > 0), "{expected:?}");
    let a = start_run(&server, topics[0]).await;
    let b = start_run(&server, topics[1]).await;
    let held = poll_runs(&server, &[&a, &b], "both runs held at once", |views| {
        views.iter().zip(&expected).all(|(view, &events)| {
            view["state"] == "running"
                && view["progress"]["events_read"] == events
                && view["progress"]["files_written"].as_u64().unwrap_or(0) > 0
        })
    })
    .await;
    assert!(waiting.exists());
    for view in &held {
        assert!(view["sequence"].is_null(), "committed while held: {view}");
    }
    assert!(
        !ws.out().join(topics[0]).join("_manifests").exists()
            && !ws.out().join(topics[1]).join("_manifests").exists(),
        "{:?}",
        ws.out_files()
    );
    std::fs::write(&gate, b"").unwrap();
    let done = poll_runs(&server, &[&a, &b], "both runs committed", |views| {
        views.iter().all(|view| {
            !["queued", "running", "committing"]
                .contains(&view["state"].as_str().unwrap_or_default())
        })
    })
    .await;
    for (view, events) in done.iter().zip(&expected) {
        assert_eq!(view["state"], "succeeded", "{view}");
        assert_eq!(view["sequence"], 1, "{view}");
        assert_eq!(view["counts"]["events_read"], *events, "{view}");
    }
    for topic in topics {
        let committed = crate::support::committed(&ws.local_output(), topic).await;
        assert_eq!(committed.sequences, vec![1], "{topic}");
    }
}

/// A handler that fails unexpectedly (a panic, as a bug would make one) is
/// answered with a 500 problem document, and the server goes on answering.
#[tokio::test]
async fn a_handler_that_panics_gets_a_500_problem_and_the_server_goes_on() {
    let ws = Workspace::new();
    let serve = Serve::start_with(&ws, &["t"], &[], &[("MATERIALIZER_FAILPOINT", "info")]).await;
    let (status, problem) = serve.call(reqwest::Method::GET, "/info", "t").await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(problem["status"], 500, "{problem}");
    assert_eq!(
        problem["detail"], "the server failed while answering this request; nothing was changed",
        "{problem}"
    );
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/internal")),
        "{problem}"
    );
    // The server goes on: other routes answer, and the same one again.
    let (status, topics) = serve.call(reqwest::Method::GET, "/topics", "t").await;
    assert_eq!(status, 200, "{topics}");
    let (status, _) = serve.call(reqwest::Method::GET, "/info", "t").await;
    assert_eq!(status, 500);
    assert!(
        serve
            .logged()
            .contains("a handler panicked; the server goes on"),
        "{}",
        serve.logged()
    );
}
