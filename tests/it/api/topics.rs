//! Topics over HTTP: listed and shown with their schema and SQL, a broken
//! one saying where, reloads, the events' columns and sample events, the
//! warehouse SQL, and mappings saved only when allowed.

use reqwest::StatusCode;
use serde_json::json;

use super::{TOPIC, article, settings, start};
use crate::support::Workspace;

#[tokio::test]
async fn topics_are_listed_and_shown_with_schema_and_sql() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, topics) = api.get("/topics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        topics,
        json!([
            {"name": "article-stock-changed", "event_type": "article.stock-changed", "status": "ok",
             "error": null, "error_at": null, "running": false, "partitioning_key": ["article_id"],
             "ordering_key": "version", "format": "csv", "last_run": null},
            {"name": "order-placed", "event_type": "shop.order-placed", "status": "ok",
             "error": null, "error_at": null, "running": false, "partitioning_key": ["order_number"],
             "ordering_key": "metadata.occurred_at", "format": "csv", "last_run": null},
        ])
    );
    let (status, topic) = api.get("/topics/article-stock-changed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(topic["partitioning_key"], json!(["article_id"]));
    assert_eq!(topic["ordering_key"], "version");
    assert_eq!(topic["output"]["format"], "csv");
    assert_eq!(
        topic["events"][1],
        json!({"name": "article_id", "type": "BIGINT", "nullable": false})
    );
    assert!(
        topic["mapping_sql"]
            .as_str()
            .unwrap()
            .contains("CREATE VIEW output AS")
    );
    assert!(
        topic["generated_sql"]
            .as_str()
            .unwrap()
            .contains("ROW_NUMBER() OVER (PARTITION BY \"article_id\"")
    );
    assert_eq!(topic["output_columns"].as_array().unwrap().len(), 7);
    let (status, problem) = api.get("/topics/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["title"], "Unknown topic");
    assert_eq!(
        problem["detail"],
        "unknown topic \"nope\"; topics: article-stock-changed, order-placed"
    );
}

#[tokio::test]
async fn reload_keeps_the_last_good_config_of_a_broken_topic() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    std::fs::write(
        ws.sql().join("order-placed/mapping.sql"),
        "CREATE VIEW output AS SELECT nope FROM events;",
    )
    .unwrap();
    let (status, report) = api.post("/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["kept_last_good"], json!(["order-placed"]));
    assert!(
        report["broken"]["order-placed"]
            .as_str()
            .unwrap()
            .contains("column 'nope' not found")
    );
    let (_, topics) = api.get("/topics").await;
    assert_eq!(topics[1]["status"], "stale");
    // The last good mapping still runs.
    let (status, t) = api.post("/topics/order-placed/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let last = api.follow(t["id"].as_str().unwrap()).await.pop().unwrap();
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["counts"]["main_rows"], 6);
}

#[tokio::test]
async fn a_topic_that_does_not_load_says_where() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    std::fs::write(
        ws.sql().join("order-placed/mapping.sql"),
        "CREATE VIEW output AS\nSELECT order_number, nope FROM events;",
    )
    .unwrap();
    api.post("/reload", None).await;
    let (_, topics) = api.get("/topics").await;
    let stale = &topics[1];
    assert_eq!(stale["status"], "stale");
    let file = ws.sql().join("order-placed/mapping.sql");
    assert_eq!(
        stale["error_at"],
        json!({"file": file.display().to_string(), "line": 2, "column": 22})
    );
    assert!(
        stale["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:2:22: ", file.display())),
        "{stale}"
    );
    // Its last good configuration still says what it is.
    assert_eq!(stale["partitioning_key"], json!(["order_number"]));
    // A topic.toml that does not parse points into topic.toml.
    std::fs::write(
        ws.sql().join("order-placed/topic.toml"),
        "event_type = \"shop.order-placed\"\npartitioning_key = [\n",
    )
    .unwrap();
    api.post("/reload", None).await;
    let (_, topics) = api.get("/topics").await;
    let at = &topics[1]["error_at"];
    assert!(
        at["file"]
            .as_str()
            .unwrap()
            .ends_with("order-placed/topic.toml"),
        "{at}"
    );
    assert!(at["line"].as_u64().unwrap() >= 2, "{at}");
}

#[tokio::test]
async fn events_columns_have_sql_types_and_their_nested_fields() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, topic) = api.get("/topics/order-placed").await;
    assert_eq!(status, StatusCode::OK);
    let column = |name: &str| {
        topic["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}: {topic}"))
            .clone()
    };
    let metadata = column("metadata");
    assert!(metadata["type"].as_str().unwrap().starts_with("STRUCT<"));
    let occurred_at = metadata["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "occurred_at")
        .unwrap();
    assert_eq!(occurred_at["type"], "TIMESTAMP WITH TIME ZONE");
    let items = column("items");
    assert!(
        items["type"].as_str().unwrap().starts_with("LIST<STRUCT<"),
        "{items}"
    );
    let item_fields: Vec<&str> = items["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(item_fields.contains(&"sku"), "{items}");
    assert_eq!(column("_offset")["type"], "VARCHAR");
    assert!(column("_offset").get("children").is_none());
}

#[tokio::test]
async fn sample_events_are_the_first_of_the_source() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let (status, sample) = api
        .get("/topics/article-stock-changed/sample?limit=3")
        .await;
    assert_eq!(status, StatusCode::OK, "{sample}");
    let events = sample["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        sample["source"]
            .as_str()
            .unwrap()
            .contains("recorded/article-stock-changed"),
        "{sample}"
    );
    // The same events as a preview without events reads.
    let (_, preview) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"limit": 3})),
        )
        .await;
    let (_, given) = api
        .post(
            "/topics/article-stock-changed/preview",
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(preview["main"], given["main"]);
    assert_eq!(preview["counts"], given["counts"]);
    let (_, default) = api.get("/topics/article-stock-changed/sample").await;
    assert!(!default["events"].as_array().unwrap().is_empty());
    for limit in ["0", "1001", "-1", "x"] {
        let (status, problem) = api
            .get(&format!(
                "/topics/article-stock-changed/sample?limit={limit}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {problem}");
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    let (status, _) = api.get("/topics/nope/sample").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn warehouse_sql_is_what_the_command_line_writes() {
    let ws = Workspace::new();
    let api = start(&ws, settings(2)).await;
    let topic = ws.catalog().await.topic(TOPIC).unwrap();
    // The dialects the README names, each answered as the command line writes it.
    assert_eq!(
        materializer_core::warehouse::dialect_names(),
        ["postgres", "redshift", "oracle"]
    );
    for &dialect in materializer_core::warehouse::dialects() {
        let name = dialect.name();
        let (status, answer) = api
            .get(&format!("/topics/{TOPIC}/warehouse-sql?dialect={name}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["dialect"], name);
        assert_eq!(
            answer["sql"],
            materializer_core::warehouse::setup_sql(&topic, dialect, 1).unwrap()
        );
    }
    let (_, default) = api.get(&format!("/topics/{TOPIC}/warehouse-sql")).await;
    assert_eq!(default["dialect"], "postgres");
    let (status, problem) = api
        .get(&format!("/topics/{TOPIC}/warehouse-sql?dialect=mysql"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "/problems/bad-request");
}

#[tokio::test]
async fn mappings_are_saved_only_when_allowed_checked_first_and_the_old_one_kept() {
    let ws = Workspace::new();
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    let draft = "CREATE VIEW output AS\nSELECT article_id, upper(brand) AS brand FROM events;\n";

    // Not allowed: refused, nothing written.
    let api = start(&ws, settings(2)).await;
    let (status, problem) = api.put_mapping(json!({"mapping": draft})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["type"], "/problems/forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--allow-mapping-edits")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    api.stop.cancel();
    api.server.await.unwrap().unwrap();

    let mut allowed = settings(2);
    allowed.allow_mapping_edits = true;
    let api = start(&ws, allowed).await;
    let (_, info) = api.get("/info").await;
    assert_eq!(info["mapping_edits"], true);

    // Not valid: the errors with their place, nothing written.
    let (status, problem) = api
        .put_mapping(
            json!({"mapping": "CREATE VIEW output AS\nSELECT article_id, nope FROM events;"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/config");
    assert_eq!(problem["errors"][0]["line"], 2);
    assert_eq!(problem["errors"][0]["column"], 20);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    // Nor is a body that is not the documented one.
    for body in [json!({"sql": draft}), json!({"mapping": draft, "extra": 1})] {
        let (status, problem) = api.put_mapping(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            "/topics/nope/mapping",
            Some(json!({"mapping": draft})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Valid: written, the old text kept, the topic served with it at once.
    let (status, topic) = api.put_mapping(json!({"mapping": draft})).await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    assert_eq!(topic["mapping_sql"], draft);
    assert_eq!(
        topic["output_columns"],
        json!([{"name": "article_id", "type": "BIGINT", "nullable": false},
               {"name": "brand", "type": "VARCHAR", "nullable": true}])
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), draft);
    assert_eq!(
        std::fs::read_to_string(ws.sql().join(TOPIC).join("mapping.sql.previous")).unwrap(),
        original
    );
    let mut names: Vec<String> = std::fs::read_dir(ws.sql().join(TOPIC))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "mapping.sql",
            "mapping.sql.previous",
            "schema.json",
            "topic.toml"
        ]
    );
    let (_, preview) = api
        .post(
            &format!("/topics/{TOPIC}/preview"),
            Some(json!({"events": [article(1, 1)]})),
        )
        .await;
    assert_eq!(
        preview["main"]["rows"],
        json!([{"article_id": 101, "brand": "NIKE"}])
    );
    // A reload reads the same file.
    let (_, report) = api.post("/reload", None).await;
    assert_eq!(report["broken"], json!({}));
    let (_, reloaded) = api.get(&format!("/topics/{TOPIC}")).await;
    assert_eq!(reloaded["mapping_sql"], draft);
}

#[tokio::test]
async fn a_save_with_the_version_it_replaces_never_overwrites_a_change_made_since() {
    let ws = Workspace::new();
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let mut allowed = settings(2);
    allowed.allow_mapping_edits = true;
    let api = start(&ws, allowed).await;
    let (status, loaded) = api.get(&format!("/topics/{TOPIC}/mapping")).await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    assert_eq!(loaded["mapping"], std::fs::read_to_string(&file).unwrap());
    assert_eq!(loaded["status"], "ok");
    let base = loaded["version"].as_str().unwrap().to_string();
    assert!(base.starts_with("sha256:"), "{base}");

    // Changed on the server since: refused, with the file as it is now.
    let theirs = format!("-- tuned\n{}", loaded["mapping"].as_str().unwrap());
    std::fs::write(&file, &theirs).unwrap();
    let mine = "CREATE VIEW output AS\nSELECT article_id, version FROM events;\n";
    let (status, problem) = api
        .put_mapping(json!({"mapping": mine, "base_version": base}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/conflict");
    assert_eq!(problem["current"]["mapping"], theirs);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), theirs);
    // Saved over it knowingly, with the version it replaces.
    let (status, topic) = api
        .put_mapping(json!({"mapping": mine, "base_version": problem["current"]["version"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);
}

#[tokio::test]
async fn a_topic_that_does_not_load_gives_its_mapping_and_is_fixed_by_a_save() {
    let ws = Workspace::new();
    let file = ws.sql().join(TOPIC).join("mapping.sql");
    let broken = "CREATE VIEW output AS\nSELECT article_id,\n       nope\nFROM events;\n";
    std::fs::write(&file, broken).unwrap();
    let mut allowed = settings(2);
    allowed.allow_mapping_edits = true;
    let api = start(&ws, allowed).await;
    let (status, loaded) = api.get(&format!("/topics/{TOPIC}/mapping")).await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    assert_eq!(loaded["mapping"], broken);
    assert_eq!(loaded["status"], "broken");
    assert_eq!(loaded["errors"][0]["line"], 3, "{loaded}");
    // A preview of a draft works before the topic loads.
    let fixed = "CREATE VIEW output AS\nSELECT article_id,\n       version\nFROM events;\n";
    let (status, answer) = api
        .post(
            &format!("/topics/{TOPIC}/preview"),
            Some(json!({"mapping": fixed, "limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, topic) = api
        .put_mapping(json!({"mapping": fixed, "base_version": loaded["version"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    let (_, topics) = api.get("/topics").await;
    let listed = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == TOPIC)
        .unwrap();
    assert_eq!(listed["status"], "ok", "{listed}");
}
