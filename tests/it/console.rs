//! The web console in a real browser: a headless Chromium driven through
//! chromedriver, against `materializer serve` as its own process reading a
//! Nakadi-compatible server. Logging in, the topics, a mapping typed with a
//! mistake and fixed (the same rows as the preview API), saving it, a run
//! watched to its end with its files, a long run stopped, the keyboard, a
//! narrow window, and a token the server does not accept.
//!
//! The screenshot of the workbench is written to
//! `<target>/tmp/console.png` on every run (README's picture is one of them).

use std::sync::Arc;

use nakadi_testkit::Bus;
use nakadi_testkit::faults::{FaultPlan, Window};
use serde_json::{Value, json};

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
            let marked = browser
                .script(
                    "const lines = Array.from(document.querySelectorAll('#mapping-editor .cm-line'));
                     const i = lines.findIndex(l => l.querySelector('.cm-lintRange-error'));
                     return i < 0 ? null : [i + 1, lines[i].querySelector('.cm-lintRange-error').textContent];",
                    json!([]),
                )
                .await;
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
    browser.click_on("#tab-sample").await;
    let sample = browser.wait_for("#sample-editor .cm-content").await;
    browser
        .type_into(&sample, &format!("{}a{}", keys::CONTROL, keys::RELEASE))
        .await;
    let events = pasted_events();
    browser
        .script(
            "const data = new DataTransfer();
             data.setData('text/plain', arguments[0]);
             document.querySelector('#sample-editor .cm-content')
               .dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));",
            json!([serde_json::to_string_pretty(&events).unwrap()]),
        )
        .await;
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
                format!("#{}", r["index"].as_u64().unwrap() + 1),
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
    let files = api(
        &server,
        reqwest::Method::GET,
        &format!("/runs/{TOPIC}@1/files"),
        None,
    )
    .await;
    let files = files.as_array().unwrap().len();
    assert!(files > 0);
    browser
        .wait(&format!("{files} files listed"), async || {
            let shown = browser
                .script(
                    "return document.querySelectorAll('#run-files tr[data-testid=file-row]').length;",
                    json!([]),
                )
                .await;
            (shown == files).then_some(())
        })
        .await;
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
    bus.set_faults(FaultPlan::default());
    let runs = api(
        &server,
        reqwest::Method::GET,
        &format!("/topics/{TOPIC}/runs"),
        None,
    )
    .await;
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
    ] {
        browser
            .script("location.hash = arguments[0];", json!([route]))
            .await;
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
    browser
        .script(
            "location.hash = arguments[0];",
            json!(["#/topics/order-placed"]),
        )
        .await;
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

    // Nothing was refused by the page's policy, nothing failed in its scripts.
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
