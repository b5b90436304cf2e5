//! `nakadi-server` as a publisher meets it: events validated as Nakadi
//! validates them (a `422` naming the field), its limits, and a plain log
//! when its output is not a terminal.

use std::process::{Command, Stdio};
use std::sync::Arc;

use nakadi_testkit::Bus;
use serde_json::{Value, json};

use crate::readme::nakadi_server_binary;
use crate::servers::announced_port;
use crate::support::Workspace;

/// A server with a business, a data change and an undefined event type of
/// one partition each.
async fn server() -> (Arc<Bus>, String) {
    let bus = Bus::new(None, 1);
    for (name, category) in [
        ("orders", "business"),
        ("rows", "data"),
        ("free", "undefined"),
    ] {
        bus.add_event_type(json!({"name": name, "category": category}), 1)
            .unwrap();
    }
    let (address, _) = bus.start("127.0.0.1:0").await.unwrap();
    (bus, format!("http://{address}"))
}

async fn publish(url: &str, name: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/event-types/{name}/events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn order(n: u64) -> Value {
    json!({
        "metadata": {"eid": format!("00000000-0000-4000-8000-{n:012x}"), "occurred_at": "2024-06-03T10:00:00Z"},
        "order_number": format!("O-{n}")
    })
}

/// The detail of the one failed item of a refused batch of `events`.
async fn refusal(url: &str, name: &str, events: Vec<Value>) -> String {
    let count = events.len();
    let (status, items) = publish(url, name, Value::Array(events).to_string()).await;
    assert_eq!(status, 422, "{items}");
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), count, "{items:?}");
    let failed: Vec<&Value> = items
        .iter()
        .filter(|i| i["publishing_status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{items:?}");
    assert!(
        items.iter().all(|i| i["step"] == "validating"
            && (i["publishing_status"] == "failed" || i["publishing_status"] == "aborted")),
        "{items:?}"
    );
    failed[0]["detail"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn business_and_data_change_events_are_validated_as_nakadi_does() {
    let (_bus, url) = server().await;
    let without_metadata = json!({"order_number": "O-1"});
    assert_eq!(
        refusal(&url, "orders", vec![order(1), without_metadata.clone()]).await,
        "#: required key [metadata] not found"
    );
    let mut no_time = order(2);
    no_time["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("occurred_at");
    assert_eq!(
        refusal(&url, "orders", vec![no_time]).await,
        "#/metadata: required key [occurred_at] not found"
    );
    let mut bad_eid = order(3);
    bad_eid["metadata"]["eid"] = "1".into();
    assert_eq!(
        refusal(&url, "orders", vec![bad_eid]).await,
        "#/metadata/eid: \"1\" is not a valid UUID (8-4-4-4-12 hexadecimal digits)"
    );
    let mut bad_time = order(4);
    bad_time["metadata"]["occurred_at"] = "yesterday".into();
    assert_eq!(
        refusal(&url, "orders", vec![bad_time]).await,
        "#/metadata/occurred_at: \"yesterday\" is not a valid date-time (RFC 3339, \
         2024-06-03T08:00:00Z)"
    );
    let mut row = order(5);
    row["data_type"] = "order".into();
    row["data"] = json!({"order_number": "O-5"});
    assert_eq!(
        refusal(&url, "rows", vec![row.clone()]).await,
        "#: required key [data_op] not found"
    );
    row["data_op"] = "X".into();
    assert_eq!(
        refusal(&url, "rows", vec![row.clone()]).await,
        "#/data_op: \"X\" is not a valid enum value (C, U, D or S)"
    );
    // Valid events are published; an undefined event type takes any JSON.
    row["data_op"] = "C".into();
    assert_eq!(publish(&url, "rows", json!([row]).to_string()).await.0, 200);
    assert_eq!(
        publish(&url, "orders", json!([order(6)]).to_string())
            .await
            .0,
        200
    );
    assert_eq!(
        publish(&url, "free", json!([without_metadata]).to_string())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn publishing_limits_are_the_documented_ones() {
    let (bus, url) = server().await;
    // 2.7 MB of events in one publish is taken.
    let padding = "x".repeat(2_700);
    let events: Vec<Value> = (0..1000)
        .map(|n| {
            let mut event = order(n);
            event["note"] = padding.clone().into();
            event
        })
        .collect();
    let body = Value::Array(events).to_string();
    assert!(body.len() > 2_700_000);
    assert_eq!(publish(&url, "orders", body).await.0, 200);
    assert_eq!(bus.events_in("orders", "0").unwrap().len(), 1000);
    // One event over 1,000,000 bytes is refused, naming its size.
    let mut large = order(2000);
    large["note"] = "x".repeat(1_000_000).into();
    let size = large.to_string().len();
    assert_eq!(
        refusal(&url, "orders", vec![large]).await,
        format!("event too large: {size} bytes, at most 1000000")
    );
    // A publish over 16 MiB is refused whole.
    let (status, problem) = publish(
        &url,
        "orders",
        "[".to_string() + &" ".repeat(17 << 20) + "]",
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        problem["detail"],
        "a publish takes at most 16777216 bytes: publish the events in smaller batches"
    );
}

#[test]
fn its_log_is_plain_text_in_a_file() {
    let ws = Workspace::new();
    let log = ws.path("nakadi-server.log");
    let mut child = Command::new(nakadi_server_binary())
        .current_dir(ws.dir.path())
        .args(["--recordings", "recorded"])
        .env("NAKADI_SERVER_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    announced_port(&mut child, &log, "address=127.0.0.1:", "nakadi-server");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("INFO") && text.contains("Nakadi-compatible server listening"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colours in a log file: {text:?}");
}
