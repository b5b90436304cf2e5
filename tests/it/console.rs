//! The web console in a real browser: a headless Chromium driven through
//! chromedriver, against `materializer serve` as its own process reading a
//! Nakadi-compatible server. Logging in, the topics, a mapping typed with a
//! mistake and fixed (the same rows as the preview API), saving it, a run
//! watched to its end with its files, a long run stopped, the keyboard, a
//! narrow window, and a token the server does not accept. Then an
//! analyst's day: drafts, safe saves, broken topics fixed in place, sample
//! events as the CLI reads them, a run's whole story, the source's events;
//! every page checked with axe-core (from the console's npm packages).
//!
//! The screenshot of the workbench is written to
//! `<target>/tmp/console.png` on every run (README's picture is one of them).

use std::sync::Arc;

use nakadi_testkit::Bus;
use nakadi_testkit::faults::{FaultPlan, Window};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::{Serve, Workspace, article_stream};
use crate::webdriver::{Browser, keys};

const TOKEN: &str = "console-test-token-5d1c";
const OTHER_TOKEN: &str = "console-test-token-other";
const TOPIC: &str = "article-stock-changed";
const EVENT_TYPE: &str = "article.stock-changed";
const WRONG: &str = "console-test-token-wrong";

/// A Nakadi-compatible server holding the example event types: `events`
/// generated articles, and the recorded orders.
async fn nakadi(ws: &Workspace, events: usize) -> (Arc<Bus>, String) {
    let bus = Bus::new(None, 4);
    for topic in [TOPIC, "order-placed"] {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(ws.sql().join(topic).join("schema.json")).unwrap(),
        )
        .unwrap();
        bus.add_event_type(doc, 4).unwrap();
    }
    let lines = article_stream(events, 4, 31);
    bus.append_recording(EVENT_TYPE, (lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let orders = std::fs::read(ws.path("recorded/order-placed/stream.jsonl")).unwrap();
    bus.append_recording("shop.order-placed", &orders).unwrap();
    let (address, _handle) = bus.start("127.0.0.1:0").await.unwrap();
    (bus, format!("http://{address}"))
}

/// Events pasted into the sample editor: two versions of one article, one
/// of another, and one that does not decode.
fn pasted_events() -> Value {
    let article = |id: u64, version: u64, qty: u64| {
        json!({"metadata": {"eid": format!("5a1e0000-0000-4000-8000-{:012}", id * 10 + version),
                            "occurred_at": "2024-06-03T08:00:00Z"},
               "article_id": id, "brand": "Fjällräven", "model": "Kånken",
               "version": version, "available_qty": qty})
    };
    json!([
        article(100_000_001, 1, 5),
        article(100_000_002, 1, 7),
        article(100_000_001, 2, 4),
        {"article_id": "not a number"},
    ])
}

const BROKEN: [&str; 2] = [
    "CREATE VIEW output AS",
    "SELECT article_id, nope AS x FROM events;",
];
const FIXED: [&str; 2] = [
    "CREATE VIEW output AS",
    "SELECT article_id, upper(brand) AS brand_upper, available_qty, version FROM events;",
];

/// Replaces the sample events with `text`, pasted as from the clipboard.
async fn paste_sample(browser: &Browser, text: &str) {
    browser.click_on("#tab-sample").await;
    let sample = browser.wait_for("#sample-editor .cm-content").await;
    browser
        .type_into(&sample, &format!("{}a{}", keys::CONTROL, keys::RELEASE))
        .await;
    browser
        .script(
            "const data = new DataTransfer();
             data.setData('text/plain', arguments[0]);
             document.querySelector('#sample-editor .cm-content')
               .dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));",
            json!([text]),
        )
        .await;
}

/// The mapping editor's text, line by line.
async fn editor_lines(browser: &Browser) -> Vec<String> {
    let lines = browser
        .script(
            "return Array.from(document.querySelectorAll('#mapping-editor .cm-line')).map(l => l.textContent);",
            json!([]),
        )
        .await;
    serde_json::from_value(lines).unwrap()
}

/// The first word marked as an error in the mapping editor: its line
/// (from 1) and its text; null when none is.
async fn marked_error(browser: &Browser) -> Value {
    browser
        .script(
            "const lines = Array.from(document.querySelectorAll('#mapping-editor .cm-line'));
             const i = lines.findIndex(l => l.querySelector('.cm-lintRange-error'));
             return i < 0 ? null : [i + 1, lines[i].querySelector('.cm-lintRange-error').textContent];",
            json!([]),
        )
        .await
}

/// Replaces the mapping by typing it, a line at a time (Escape first closes
/// the completion list, which Enter would otherwise accept).
async fn type_mapping(browser: &Browser, lines: &[&str]) {
    let editor = browser.wait_for("#mapping-editor .cm-content").await;
    browser.click(&editor).await;
    browser
        .type_into(
            &editor,
            &format!("{}a{}{}", keys::CONTROL, keys::RELEASE, keys::BACKSPACE),
        )
        .await;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            browser
                .type_into(&editor, &format!("{}{}", keys::ESCAPE, keys::ENTER))
                .await;
        }
        browser.type_into(&editor, line).await;
    }
}

/// Whether the editor holds `lines` (the editor may indent a line it opens).
fn holds(editor: &[String], lines: &[&str]) -> bool {
    editor.len() == lines.len() && editor.iter().zip(lines).all(|(a, b)| a.trim() == *b)
}

/// The rows of a preview table on the page, as their cells' text, sorted.
async fn page_rows(browser: &Browser, table: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let found = browser
        .script(
            "const t = document.getElementById(arguments[0]);
             const cells = (row, tag) => Array.from(row.querySelectorAll(tag)).map(c => c.textContent);
             return [cells(t.tHead.rows[0] || document.createElement('tr'), 'th'),
                     Array.from(t.tBodies[0].rows).map(r => cells(r, 'td'))];",
            json!([table]),
        )
        .await;
    let (columns, mut rows): (Vec<String>, Vec<Vec<String>>) =
        serde_json::from_value(found).unwrap();
    rows.sort();
    (columns, rows)
}

/// A value as the console writes it in a cell.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows of a table the preview API answered, as the console shows them, sorted.
fn api_rows(table: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let columns: Vec<String> = serde_json::from_value(table["columns"].clone()).unwrap();
    let mut rows: Vec<Vec<String>> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[c])).collect())
        .collect();
    rows.sort();
    (columns, rows)
}

/// Whether the page is as wide as the window at most (nothing to scroll sideways).
async fn fits_the_window(browser: &Browser) -> bool {
    browser
        .script(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            json!([]),
        )
        .await
        == true
}

async fn api(server: &Serve, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn api_get(server: &Serve, path: &str) -> Value {
    api(server, reqwest::Method::GET, path, None).await
}

async fn log_in(browser: &Browser, token: &str) {
    let field = browser.wait_for("#token").await;
    // Clear what is there, type the token, send the form with Enter.
    browser
        .type_into(
            &field,
            &format!("{}a{}{}", keys::CONTROL, keys::RELEASE, keys::BACKSPACE),
        )
        .await;
    browser
        .type_into(&field, &format!("{token}{}", keys::ENTER))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let ws = Workspace::new();
    let (bus, nakadi_url) = nakadi(&ws, 2000).await;
    let server = Serve::start(
        &ws,
        &[OTHER_TOKEN, TOKEN],
        &["--nakadi-url", &nakadi_url, "--allow-mapping-edits"],
    )
    .await;
    let browser = Browser::start(&ws.path(""), 1280, 800).await;
    let topic_row = format!("[data-testid=topic-row][data-topic={TOPIC}]");

    // A token the server does not accept: the login page says so and stays.
    browser.goto(&server.url).await;
    log_in(&browser, WRONG).await;
    browser
        .wait_text("#login-error", |t| t.contains("403"))
        .await;
    assert!(browser.find(&topic_row).await.is_none());

    // The right one: the topics, with keys, format and state.
    log_in(&browser, TOKEN).await;
    let row = browser
        .wait_text(&topic_row, |t| t.contains("article.stock-changed"))
        .await;
    for shown in ["article_id", "version", "csv", "ok"] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    let stored = browser
        .script(
            "return sessionStorage.getItem('materializer.token');",
            json!([]),
        )
        .await;
    assert_eq!(stored, TOKEN);
    assert!(
        !browser
            .script("return location.href;", json!([]))
            .await
            .as_str()
            .unwrap()
            .contains(TOKEN)
    );

    // The keyboard reaches the workbench of the topic.
    let open = format!("{topic_row} [data-testid=open-workbench]");
    browser
        .wait(&format!("the focus on {open}"), async || {
            browser.press(&[keys::TAB]).await;
            let focused = browser
                .script(
                    "return document.activeElement.matches(arguments[0]);",
                    json!([open]),
                )
                .await;
            (focused == true).then_some(())
        })
        .await;
    browser.press(&[keys::ENTER]).await;
    browser.wait_text("#preview-status", |t| t == "ok").await;
    let original = std::fs::read_to_string(ws.sql().join(TOPIC).join("mapping.sql")).unwrap();

    // A mistake is marked where it is, with the message.
    type_mapping(&browser, &BROKEN).await;
    browser
        .wait("the mistake marked on line 2", async || {
            let lines = editor_lines(&browser).await;
            let marked = marked_error(&browser).await;
            let status = browser.text("#preview-status").await?;
            (holds(&lines, &BROKEN) && status == "error" && marked == json!([2, "nope"]))
                .then_some(())
        })
        .await;
    let error = browser.text("#preview-error").await.unwrap();
    assert!(
        error.contains("nope") && error.contains("line 2"),
        "{error}"
    );
    assert!(browser.find(".cm-lint-marker-error").await.is_some());

    // Fixed, on pasted events: the rows the preview API answers for them.
    type_mapping(&browser, &FIXED).await;
    let events = pasted_events();
    paste_sample(&browser, &serde_json::to_string_pretty(&events).unwrap()).await;
    browser
        .wait("the preview of the pasted events", async || {
            let lines = editor_lines(&browser).await;
            let status = browser.text("#preview-status").await?;
            let note = browser.text(".status-note").await?;
            (holds(&lines, &FIXED) && status == "ok" && note == "4 events read from the sample.")
                .then_some(())
        })
        .await;
    let mapping = editor_lines(&browser).await.join("\n");
    let expected = api(
        &server,
        reqwest::Method::POST,
        &format!("/topics/{TOPIC}/preview"),
        Some(json!({"mapping": mapping, "events": events})),
    )
    .await;
    for (table, answer) in [("main-rows", "main"), ("correction-rows", "correction")] {
        assert_eq!(
            page_rows(&browser, table).await,
            api_rows(&expected[answer]),
            "{table}"
        );
    }
    assert_eq!(
        page_rows(&browser, "main-rows").await.0,
        ["article_id", "brand_upper", "available_qty", "version"]
    );
    let rejected = page_rows(&browser, "rejected-rows").await.1;
    let reasons: Vec<Vec<String>> = expected["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                // Numbered from 0, as the CLI's preview and the API number them.
                format!("offset {}", r["index"].as_u64().unwrap()),
                r["reason"].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    assert_eq!(rejected, reasons);
    for (count, field) in [
        ("#main-count", "main_rows"),
        ("#correction-count", "correction_rows"),
        ("#rejected-count", "events_rejected"),
    ] {
        let shown = browser
            .script(
                "return document.querySelector(arguments[0]).dataset.count;",
                json!([count]),
            )
            .await;
        assert_eq!(shown, expected["counts"][field].to_string(), "{count}");
    }
    // Saved: checked, written, the old file kept, who saved logged.
    browser.click_on("#save-mapping").await;
    browser
        .wait_text("#save-status", |t| t.starts_with("Saved"))
        .await;
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mapping);
    assert_eq!(
        std::fs::read_to_string(ws.sql().join(TOPIC).join("mapping.sql.previous")).unwrap(),
        original
    );
    let logged = server.logged();
    let saved = logged
        .lines()
        .find(|l| l.contains("mapping saved"))
        .unwrap_or_else(|| panic!("no save logged:\n{logged}"));
    assert!(saved.contains("token #2"), "{saved}");
    assert!(!logged.contains(TOKEN), "the token is never logged");

    // A run, watched live to its end, with its files.
    browser
        .click_on(&format!("a.button-link[href='#/topics/{TOPIC}/runs']"))
        .await;
    browser.click_on("#run-now").await;
    browser.wait_text("#run-state", |t| t == "succeeded").await;
    let files = api_get(&server, &format!("/runs/{TOPIC}@1/files")).await;
    let files = files.as_array().unwrap().len();
    assert!(files > 0);
    items(&browser, "the files listed", FILE_ROWS, files).await;
    let bars = browser
        .script(
            "return ['run-progress', 'run-events-progress'].map(id => {
               const bar = document.getElementById(id);
               return [bar.getAttribute('aria-valuenow'), bar.getAttribute('aria-valuemax')];
             });",
            json!([]),
        )
        .await;
    assert_eq!(bars, json!([["4", "4"], ["2000", "2000"]]));
    let stats = browser.text("#run-stats").await.unwrap();
    assert!(stats.contains("2,000"), "{stats}");

    // A run that cannot finish (the server sends only keep-alives) is stopped.
    let more = article_stream(100, 4, 32);
    bus.append_recording(EVENT_TYPE, (more.join("\n") + "\n").as_bytes())
        .unwrap();
    bus.set_faults(FaultPlan {
        keepalive_only: Some(Window {
            seconds: 3600.0,
            streams: 1000,
        }),
        ..Default::default()
    });
    browser.click_on("#run-now").await;
    browser.wait_text("#run-state", |t| t == "running").await;
    browser.click_on("#stop-run").await;
    browser.wait_text("#run-state", |t| t == "stopped").await;
    let error = browser.wait_text("#run-error", |t| !t.is_empty()).await;
    assert!(error.contains("stopped"), "{error}");
    // Its totals are the same in its panel and in its row of the history.
    let stopped = browser.text("#live-run").await.unwrap_or_default();
    let (panel, row) = browser
        .wait("the stopped run's row", async || {
            let totals = totals_shown(&browser).await;
            totals.1.is_some().then_some(totals)
        })
        .await;
    assert_eq!(Some(panel), row, "{stopped}");
    bus.set_faults(FaultPlan::default());
    let runs = api_get(&server, &format!("/topics/{TOPIC}/runs")).await;
    assert_eq!(runs[0]["state"], "stopped");
    assert_eq!(runs[1]["sequence"], 1);

    // A narrow window: nothing wider than the window on any page.
    browser.set_window(420, 860).await;
    for (route, ready) in [
        ("#/topics", topic_row.as_str()),
        (
            &format!("#/topics/{TOPIC}") as &str,
            "#mapping-editor .cm-content",
        ),
        (
            &format!("#/topics/{TOPIC}/runs") as &str,
            "[data-testid=run-row]",
        ),
        (&format!("#/runs/{TOPIC}@1") as &str, "#run-cursor-table"),
        (
            &format!("#/topics/{TOPIC}/events") as &str,
            "[data-testid=source-event]",
        ),
    ] {
        go(&browser, route).await;
        browser.wait_for(ready).await;
        browser
            .wait(&format!("{route} to fit 420 pixels"), async || {
                fits_the_window(&browser).await.then_some(())
            })
            .await;
    }
    browser.set_window(1280, 800).await;

    // The picture: the workbench of the orders, nested schema open, with
    // the preview of their sample events.
    go(&browser, "#/topics/order-placed").await;
    browser
        .wait_text(".status-note", |t| t.ends_with("read from the sample."))
        .await;
    browser.wait_text("#preview-status", |t| t == "ok").await;
    browser
        .script(
            "document.querySelectorAll('.schema details').forEach((d, i) => { d.open = i < 2; });",
            json!([]),
        )
        .await;
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&screenshot, browser.page_screenshot().await).unwrap();
    eprintln!("the console, as the test saw it: {}", screenshot.display());

    // A token the server no longer accepts (as after a restart with other
    // tokens): the next page asked for is the login page, saying why.
    browser
        .script(
            "sessionStorage.setItem('materializer.token', arguments[0]); location.hash = '#/topics';",
            json!([WRONG]),
        )
        .await;
    browser
        .wait_text("#login-error", |t| t.contains("403"))
        .await;
    assert!(browser.find("#token").await.is_some());

    no_complaints(&browser).await;
}

/// The totals of the run in the run panel, and in its row of the history
/// (when it has one), as shown.
async fn totals_shown(browser: &Browser) -> (Vec<String>, Option<Vec<String>>) {
    let shown = browser
        .script(
            "const link = document.getElementById('run-page-link');
             const id = link ? decodeURIComponent(link.getAttribute('href').slice('#/runs/'.length)) : null;
             const row = Array.from(document.querySelectorAll('[data-testid=run-row]')).find(r => r.dataset.runId === id);
             const panel = ['stat-events-read', 'stat-rejected', 'stat-main-rows', 'stat-correction-rows', 'stat-files']
               .map(i => document.getElementById(i).textContent);
             const cells = row ? ['events_read', 'events_rejected', 'main_rows', 'correction_rows', 'files']
               .map(k => row.querySelector(`[data-total=${k}]`).textContent) : null;
             return [panel, cells];",
            json!([]),
        )
        .await;
    serde_json::from_value(shown).unwrap()
}

/// axe-core's script, from the console's npm packages (`npm ci` in
/// `src/console/web` installs it; the first test that needs it runs that
/// when it is missing).
fn axe_core() -> &'static str {
    static SCRIPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        let web = crate::support::repo().join("src/console/web");
        let script = web.join("node_modules/axe-core/axe.min.js");
        if !script.is_file() {
            let installed = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&web)
                .status();
            assert!(
                matches!(installed, Ok(status) if status.success()),
                "axe-core is not installed and npm ci failed ({installed:?}): run npm ci in {}",
                web.display()
            );
        }
        std::fs::read_to_string(&script).unwrap()
    })
}

/// Checks the page as it is now with axe-core (every rule it runs by
/// default, WCAG 2.x A and AA and its best practices): no violation.
async fn assert_accessible(browser: &Browser, page: &str) {
    let loaded = browser
        .script("return typeof window.axe === 'object';", json!([]))
        .await;
    if loaded != true {
        browser
            .script(&format!("{}\nreturn true;", axe_core()), json!([]))
            .await;
    }
    let violations = browser
        .script(
            "return axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({
               rule: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || ''))})));",
            json!([]),
        )
        .await;
    assert_eq!(violations, json!([]), "axe-core on {page}: {violations:#}");
}

/// A console reading the recorded streams, logged in on the topics page
/// (the login page checked on the way).
async fn console(ws: &Workspace, args: &[&str]) -> (Serve, Browser) {
    let args = [&["--recordings", "recorded"], args].concat();
    let server = Serve::start(ws, &[TOKEN], &args).await;
    let browser = Browser::start(&ws.path(""), 1280, 800).await;
    browser.goto(&server.url).await;
    browser.wait_for("#token").await;
    assert_accessible(&browser, "the login page").await;
    log_in(&browser, TOKEN).await;
    browser.wait_for("[data-testid=topic-row]").await;
    (server, browser)
}

/// Shows the page of the console at `route` (a hash route).
async fn go(browser: &Browser, route: &str) {
    browser
        .script("location.hash = arguments[0];", json!([route]))
        .await;
}

/// Opens the workbench of `topic` and waits for its first preview.
async fn open_workbench(browser: &Browser, topic: &str) {
    go(browser, &format!("#/topics/{topic}")).await;
    browser.wait_for("#mapping-editor .cm-content").await;
    browser.wait_text("#preview-status", |t| t == "ok").await;
}

/// The paths of the files a run's panel lists.
const FILE_ROWS: &str = "return Array.from(document.querySelectorAll('#run-files tr[data-testid=file-row]')).map(r => r.dataset.path);";

/// Waits until `script` answers a list of `n` items; answers it.
async fn items(browser: &Browser, what: &str, script: &str, n: usize) -> Value {
    browser
        .wait(what, async || {
            let found = browser.script(script, json!([])).await;
            (found.as_array().map(Vec::len) == Some(n)).then_some(found)
        })
        .await
}

/// The text of an element by id, as shown.
async fn shown(browser: &Browser, id: &str) -> String {
    browser
        .text(&format!("#{id}"))
        .await
        .unwrap_or_else(|| panic!("no #{id}"))
}

/// The events read, as shown with their parts (ids `{prefix}-read`, ...),
/// checked to be the sum of them: into MAIN, superseded, corrections and
/// rejected.
async fn events_read_add_up(browser: &Browser, prefix: &str) -> u64 {
    let read = number(&shown(browser, &format!("{prefix}-read")).await);
    let mut sum = 0;
    for part in ["main-input", "superseded", "corrections", "rejected"] {
        sum += number(&shown(browser, &format!("{prefix}-{part}")).await);
    }
    assert_eq!(
        read, sum,
        "read = into MAIN + superseded + corrections + rejected"
    );
    read
}

/// A number as the console writes it ("1,234").
fn number(text: &str) -> u64 {
    text.replace(',', "")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// The contrast ratio of the text of the first element matching `css`
/// against the white of the panels (WCAG's relative luminance).
async fn contrast(browser: &Browser, css: &str) -> f64 {
    let ratio = browser
        .script(
            "const color = getComputedStyle(document.querySelector(arguments[0])).color;
             const [r, g, b] = color.match(/\\d+/g).map(Number).map(v => {
               const c = v / 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
             const l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
             return 1.05 / (l + 0.05);",
            json!([css]),
        )
        .await;
    ratio.as_f64().unwrap()
}

/// The workbench: the figures are the CLI's, a draft survives leaving and
/// reloading, a save never overwrites a change made since, samples are read one per line, an event
/// that is not JSON is explained as the CLI does, Enter keeps the
/// indentation, NULL cells are readable, and the sample limit is the
/// server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workbench_keeps_drafts_saves_safely_and_reads_samples_as_the_cli_does() {
    let ws = Workspace::new();
    let (server, browser) = console(&ws, &["--allow-mapping-edits"]).await;
    assert_accessible(&browser, "the topics page").await;
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    open_workbench(&browser, TOPIC).await;
    assert_accessible(&browser, "the workbench").await;

    // The sample file as it is, one event per line, opened in the sample
    // events tab, is read as the CLI reads it.
    let samples = crate::support::repo().join("fixtures/samples/article-stock-changed.jsonl");
    let lines = std::fs::read_to_string(&samples).unwrap();
    let count = lines.lines().filter(|l| !l.trim().is_empty()).count();
    browser.click_on("#tab-sample").await;
    let upload = browser.wait_for("#sample-file").await;
    browser
        .type_into(&upload, &samples.display().to_string())
        .await;
    browser
        .wait_text("#sample-source", |t| {
            t.contains("article-stock-changed.jsonl")
        })
        .await;
    browser
        .wait_text(".status-note", |t| {
            t == format!("{count} events read from the sample.")
        })
        .await;
    browser.wait_text("#preview-status", |t| t == "ok").await;

    // The compaction figure is the CLI's and the API's, and the counts add up.
    let cli = ws
        .command()
        .args(["preview", TOPIC, "--events"])
        .arg(&samples)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout).to_string();
    let figure = said
        .split("compaction rate ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .unwrap_or_else(|| panic!("no compaction rate in:\n{said}"))
        .to_string();
    let api_answer = api(
        &server,
        reqwest::Method::POST,
        &format!("/topics/{TOPIC}/preview"),
        Some(json!({"mapping": original,
                    "raw_events": lines.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>()})),
    )
    .await;
    let rate = api_answer["compaction_rate"].as_f64().unwrap();
    assert_eq!(format!("{:.1}", rate * 100.0), figure);
    assert_eq!(
        shown(&browser, "count-compaction").await,
        format!("{figure} %")
    );
    let read = events_read_add_up(&browser, "count").await;
    assert_eq!(read, count as u64);
    assert_eq!(
        number(&shown(&browser, "count-superseded").await),
        api_answer["counts"]["superseded"].as_u64().unwrap()
    );

    // A line that is not JSON is explained as the API and the CLI explain it.
    let bad = r#"{"article_id": 100000009, oops}"#;
    paste_sample(&browser, &format!("{lines}\n{bad}")).await;
    browser
        .wait_text("#rejected-count", |t| t == "2 events")
        .await;
    let rejected = page_rows(&browser, "rejected-rows").await.1;
    let reason = &rejected
        .iter()
        .find(|r| r[0] == format!("offset {count}"))
        .unwrap_or_else(|| panic!("{rejected:?}"))[1];
    assert!(
        reason.contains("not valid JSON") && reason.contains("line 1 column"),
        "{reason}"
    );
    let answer = api(
        &server,
        reqwest::Method::POST,
        &format!("/topics/{TOPIC}/preview"),
        Some(json!({"mapping": original, "raw_events": [bad]})),
    )
    .await;
    assert_eq!(answer["rejected"][0]["reason"], json!(reason));

    // The sample limit is the server's (1,000), and says so.
    browser.click_on("#tab-sample").await;
    let limit = browser.wait_for("#sample-limit").await;
    browser
        .type_into(&limit, &format!("{}a{}5000", keys::CONTROL, keys::RELEASE))
        .await;
    let said = browser
        .wait_text("#sample-limit-error", |t| !t.is_empty())
        .await;
    assert!(said.contains("1,000") && !said.contains("5,000"), "{said}");
    browser
        .type_into(&limit, &format!("{}a{}20", keys::CONTROL, keys::RELEASE))
        .await;

    // Enter keeps the line's indentation (none here), and NULL is readable.
    let nulls = [
        "CREATE VIEW output AS",
        "SELECT article_id, NULL AS nothing, version",
        "FROM events;",
    ];
    type_mapping(&browser, &nulls).await;
    browser
        .wait("the mapping typed, nothing indented", async || {
            (editor_lines(&browser).await == nulls).then_some(())
        })
        .await;
    browser.wait_for("#main-rows td.null").await;
    browser.wait_text("#preview-status", |t| t == "ok").await;
    let ratio = contrast(&browser, "#main-rows td.null").await;
    assert!(ratio >= 4.5, "NULL cells: contrast {ratio:.2}:1");

    // The draft survives leaving the workbench, and a reload (which asks first).
    assert_eq!(shown(&browser, "draft-state").await, "Draft · not saved");
    assert_accessible(&browser, "the workbench with a draft").await;
    go(&browser, &format!("#/topics/{TOPIC}/runs")).await;
    browser.wait_for("#run-now").await;
    open_workbench(&browser, TOPIC).await;
    assert_eq!(editor_lines(&browser).await, nulls);
    assert_eq!(shown(&browser, "draft-state").await, "Draft · not saved");
    assert!(shown(&browser, "draft-note").await.contains("draft"));
    // Leaving the page asks first (the browser's question before unloading).
    let asks = browser
        .script(
            "const leaving = new Event('beforeunload', {cancelable: true});
             window.dispatchEvent(leaving);
             return leaving.defaultPrevented;",
            json!([]),
        )
        .await;
    assert_eq!(asks, true);
    // Loaded again from the server (navigating answers the question).
    browser
        .goto(&format!("{}/?again#/topics/{TOPIC}", server.url))
        .await;
    open_workbench(&browser, TOPIC).await;
    assert_eq!(editor_lines(&browser).await, nulls);
    // Reverted, the editor holds the file again and the draft is gone.
    browser.click_on("#revert-mapping").await;
    browser.wait_text("#draft-state", |t| t == "Saved").await;
    assert_eq!(editor_lines(&browser).await.join("\n"), original);
    let kept = browser
        .script(
            "return localStorage.getItem('materializer.draft.' + arguments[0]);",
            json!([TOPIC]),
        )
        .await;
    assert_eq!(kept, Value::Null);

    // A change made to the file since it was loaded is not overwritten:
    // the save is refused, both versions are shown, the analyst chooses.
    type_mapping(&browser, &FIXED).await;
    browser
        .wait_text("#draft-state", |t| t == "Draft · not saved")
        .await;
    let theirs = format!("-- tuned on the server\n{original}");
    std::fs::write(&file, &theirs).unwrap();
    api(&server, reqwest::Method::POST, "/reload", None).await;
    browser.click_on("#save-mapping").await;
    browser
        .wait_for("#save-conflict:not([hidden]) #conflict-diff")
        .await;
    assert!(
        shown(&browser, "save-status")
            .await
            .starts_with("Not saved")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), theirs);
    let only_theirs = browser
        .script(
            "return Array.from(document.querySelectorAll('#conflict-diff tr[data-kind=theirs]')).map(r => r.innerText.trim());",
            json!([]),
        )
        .await;
    assert!(
        only_theirs
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("tuned on the server")),
        "{only_theirs}"
    );
    assert_accessible(&browser, "the workbench showing a conflict").await;
    browser.click_on("#conflict-keep-mine").await;
    browser
        .wait_text("#save-status", |t| t.starts_with("Saved"))
        .await;
    let mine = editor_lines(&browser).await.join("\n");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);
    assert_eq!(shown(&browser, "draft-state").await, "Saved");
    // Another change on the server; this time the server's version is taken.
    let theirs = format!("-- tuned again\n{mine}");
    std::fs::write(&file, &theirs).unwrap();
    type_mapping(&browser, &nulls).await;
    browser
        .wait_text("#draft-state", |t| t == "Draft · not saved")
        .await;
    browser.click_on("#save-mapping").await;
    browser.click_on("#conflict-take-theirs").await;
    browser.wait_text("#draft-state", |t| t == "Saved").await;
    assert_eq!(editor_lines(&browser).await.join("\n"), theirs);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), theirs);
    assert!(browser.find("#save-conflict:not([hidden])").await.is_none());
    no_complaints(&browser).await;
}

/// A topic whose mapping does not load opens in the workbench
/// with its text and the error marked; fixed and saved there, it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_topic_opens_in_the_workbench_and_is_fixed_there() {
    let ws = Workspace::new();
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    std::fs::write(
        &file,
        "CREATE VIEW output AS\nSELECT article_id,\n       nope\nFROM events;\n",
    )
    .unwrap();
    let (server, browser) = console(&ws, &["--allow-mapping-edits"]).await;
    let row = format!("[data-testid=topic-row][data-topic={TOPIC}]");
    browser.wait_text(&row, |t| t.contains("broken")).await;
    assert_accessible(&browser, "the topics page with a broken topic").await;
    browser
        .click_on(&format!("{row} [data-testid=open-workbench]"))
        .await;
    let said = browser
        .wait_text("#topic-error", |t| t.contains("does not load"))
        .await;
    assert!(said.contains("nope"), "{said}");
    browser
        .wait("the error marked on line 3", async || {
            let marked = marked_error(&browser).await;
            (marked == json!([3, "nope"])).then_some(())
        })
        .await;
    assert_accessible(&browser, "the workbench of a broken topic").await;

    type_mapping(&browser, &FIXED).await;
    browser.wait_text("#preview-status", |t| t == "ok").await;
    browser.click_on("#save-mapping").await;
    browser
        .wait_text("#save-status", |t| t.contains("loads with this mapping"))
        .await;
    let topics = api_get(&server, "/topics").await;
    let topic = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == TOPIC)
        .unwrap();
    assert_eq!(topic["status"], "ok", "{topic}");
    assert!(browser.find("#topic-error:not([hidden])").await.is_none());
    assert!(holds(&editor_lines(&browser).await, &FIXED));
    no_complaints(&browser).await;
}

/// Runs have distinct labels (one that found nothing
/// too), a failed run says its class and what to do, and a run's page has
/// its cursors, stages, counts that add up, files with a preview of their
/// first rows and their bytes, and the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_page_tells_its_whole_story() {
    let ws = Workspace::new();
    let (server, browser) = console(&ws, &[]).await;
    go(&browser, &format!("#/topics/{TOPIC}/runs")).await;
    browser.click_on("#run-now").await;
    browser.wait_text("#run-state", |t| t == "succeeded").await;
    // A second run finds nothing new: it is not labelled like the first.
    browser.click_on("#run-now").await;
    browser
        .wait_text("#live-title", |t| t.contains("nothing new"))
        .await;
    browser.wait_text("#run-state", |t| t == "succeeded").await;
    let labels = items(
        &browser,
        "both runs listed",
        "return Array.from(document.querySelectorAll('[data-testid=run-label]')).map(a => a.textContent);",
        2,
    )
    .await;
    assert_eq!(labels, json!(["nothing new after #1", "#1"]));
    assert_accessible(&browser, "the runs page").await;

    // The first run's page.
    let runs = api_get(&server, &format!("/topics/{TOPIC}/runs")).await;
    let first = runs[1].clone();
    let id = first["id"].as_str().unwrap().to_string();
    browser
        .click_on(&format!("[data-run-id='{id}'] [data-testid=run-label]"))
        .await;
    browser.wait_text("h1", |t| t.contains("Run #1")).await;
    // Cursors per partition, before and after.
    let partitions = first["partitions"].as_array().unwrap().len();
    assert!(partitions > 0);
    let cursors = items(
        &browser,
        "the cursors",
        "return Array.from(document.querySelectorAll('#run-cursor-table tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent));",
        partitions,
    )
    .await;
    for (shown, given) in cursors
        .as_array()
        .unwrap()
        .iter()
        .zip(first["partitions"].as_array().unwrap())
    {
        assert_eq!(shown[0], given["partition"]);
        assert_eq!(shown[1], given["before"]);
        assert_eq!(shown[2], given["after"]);
    }
    // Time per stage, the rate, counts that add up.
    assert!(browser.find("#run-stages").await.is_some());
    assert_ne!(shown(&browser, "stat-rate").await, "–");
    let read = events_read_add_up(&browser, "run-count").await;
    assert_eq!(read, first["counts"]["events_read"].as_u64().unwrap());
    assert_eq!(
        number(&shown(&browser, "run-count-keys-rows").await),
        first["keys_rows"].as_u64().unwrap()
    );
    // Every file with its checksum; the first rows of one; its bytes.
    let files = api_get(&server, &format!("/runs/{id}/files")).await;
    let files = files.as_array().unwrap().clone();
    items(&browser, "the files listed", FILE_ROWS, files.len()).await;
    let main = files
        .iter()
        .find(|f| f["kind"] == "main")
        .expect("a MAIN file");
    let path = main["path"].as_str().unwrap();
    let sha = main["sha256"].as_str().unwrap();
    let row = format!("#run-files-box tr[data-path='{path}']");
    let text = browser.text(&row).await.unwrap();
    assert!(text.contains(&sha[..12]), "{text}");
    browser
        .click_on(&format!("{row} [data-testid=preview-file]"))
        .await;
    let note = browser
        .wait_text("#file-preview-note", |t| !t.is_empty())
        .await;
    let total = main["rows"].as_u64().unwrap();
    assert!(note.contains(&format!("of {total}")), "{note}");
    let previewed = browser
        .script(
            "return document.querySelectorAll('#file-preview-rows tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(previewed, total.min(20));
    let content = reqwest::Client::new()
        .get(format!(
            "{}/runs/{id}/files/content?path={}",
            server.url,
            path.replace('=', "%3D")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(content.status().is_success(), "{}", content.status());
    let body = content.bytes().await.unwrap();
    assert_eq!(body.len() as u64, main["bytes"].as_u64().unwrap());
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), sha);
    // The manifest, with the checksums.
    browser.click_on("#show-manifest").await;
    let manifest = browser
        .wait_text("#run-manifest", |t| t.contains("sha256"))
        .await;
    assert!(manifest.contains(sha), "the manifest names {sha}");
    assert_accessible(&browser, "a run's page").await;

    // A failed run: its class and what to do, no full bar. Its recording
    // repeats its first batch at its end (a recording that cannot be read).
    let recording = ws.path("recorded/order-placed/stream.jsonl");
    let text = std::fs::read_to_string(&recording).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&recording, format!("{}\n{first}\n", text.trim_end())).unwrap();
    go(&browser, "#/topics/order-placed/runs").await;
    browser.click_on("#run-now").await;
    browser.wait_text("#run-state", |t| t == "failed").await;
    let class = browser
        .wait_text("#run-error-class", |t| !t.is_empty())
        .await;
    let view = api_get(&server, "/topics/order-placed/runs").await;
    let failed = &view[0];
    assert!(
        class.contains(failed["error_class"]["class"].as_str().unwrap()),
        "{class}"
    );
    let advice = shown(&browser, "run-advice").await;
    assert!(
        advice.contains(failed["error_class"]["advice"].as_str().unwrap()),
        "{advice}"
    );
    let progress = shown(&browser, "run-progress-label").await;
    assert!(
        !progress.contains("No partition had new events"),
        "{progress}"
    );
    let bar = browser
        .script(
            "const b = document.getElementById('run-progress'); return b.value >= b.max;",
            json!([]),
        )
        .await;
    assert_eq!(bar, false, "{progress}");
    assert_accessible(&browser, "the runs page with a failed run").await;
    no_complaints(&browser).await;
}

/// A server without tokens that does not save mappings: without tokens
/// no login and no "Log out", Ctrl+S says why nothing was saved, the script
/// is served gzipped; the source's events are browsed from an offset with
/// a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tokens_needs_no_login_and_explains_a_save_it_does_not_make() {
    let ws = Workspace::new();
    let server = Serve::start(&ws, &[], &["--recordings", "recorded"]).await;
    let browser = Browser::start(&ws.path(""), 1280, 800).await;
    browser.goto(&server.url).await;
    browser.wait_for("[data-testid=topic-row]").await;
    assert!(browser.find("#logout").await.is_none());
    assert!(browser.find("#no-login").await.is_some());
    assert!(browser.find("#token").await.is_none());

    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    open_workbench(&browser, TOPIC).await;
    assert!(browser.find("#save-mapping").await.is_none());
    type_mapping(&browser, &FIXED).await;
    browser
        .type_into(
            &browser.wait_for("#mapping-editor .cm-content").await,
            &format!("{}s{}", keys::CONTROL, keys::RELEASE),
        )
        .await;
    let said = browser
        .wait_text("#save-status", |t| t.starts_with("Not saved"))
        .await;
    assert!(said.contains("--allow-mapping-edits"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);

    // The source's events: a partition from an offset, with a filter.
    go(&browser, &format!("#/topics/{TOPIC}/events")).await;
    let rows = "[data-testid=source-event]";
    browser.wait_for(rows).await;
    assert_accessible(&browser, "the source events").await;
    let first = browser
        .script(
            "const r = document.querySelector(arguments[0]); return [r.dataset.partition, r.dataset.offset, r.cells[2].textContent];",
            json!([rows]),
        )
        .await;
    let (partition, offset, event): (String, String, String) =
        serde_json::from_value(first).unwrap();
    let article: Value = serde_json::from_str(&event).unwrap();
    let id = article["article_id"].to_string();
    browser
        .script(
            "const select = document.getElementById('events-partition');
             select.value = arguments[0];
             document.getElementById('events-from').value = arguments[1];
             document.getElementById('events-filter').value = arguments[2];",
            json!([partition, offset, id]),
        )
        .await;
    browser.click_on("#events-show").await;
    browser
        .wait("the filtered events", async || {
            let found = browser
                .script(
                    "return Array.from(document.querySelectorAll(arguments[0])).map(r => [r.dataset.partition, r.cells[2].textContent]);",
                    json!([rows]),
                )
                .await;
            let found: Vec<(String, String)> = serde_json::from_value(found).ok()?;
            let status = browser.text("#events-status").await?;
            (!status.starts_with("Loading")
                && !found.is_empty()
                && found
                    .iter()
                    .all(|(p, e)| *p == partition && e.contains(&id)))
            .then_some(())
        })
        .await;

    // The script, gzipped for a browser that takes gzip.
    let built = std::fs::read(crate::support::repo().join("src/console/web/dist/app.js")).unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/assets/app.js", server.url))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let body = response.bytes().await.unwrap();
    assert!(
        body.len() * 2 < built.len(),
        "{} of {}",
        body.len(),
        built.len()
    );
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut unzipped)
        .unwrap();
    assert_eq!(unzipped, built);
    no_complaints(&browser).await;
}

/// Nothing was refused by the page's policy, nothing failed in its scripts.
async fn no_complaints(browser: &Browser) {
    let complaints: Vec<Value> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|entry| {
            let message = entry["message"].as_str().unwrap_or_default();
            message.contains("Content Security Policy")
                || message.contains("Refused to")
                || message.contains("Uncaught")
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
}
