//! The fast decoder against arrow-json: the very same batches where it
//! decodes, and giving up wherever arrow-json must decide.

use std::sync::Arc;

use super::columns::same_key;
use super::*;
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};

fn schema() -> SchemaRef {
    let size = Fields::from(vec![
        Field::new("size", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "meta",
            DataType::Struct(Fields::from(vec![
                Field::new("v", DataType::Int64, false),
                Field::new("tag", DataType::Utf8, true),
            ])),
            true,
        ),
        Field::new(
            "sizes",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(size), true))),
            true,
        ),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]))
}

fn arrow_json(schema: &SchemaRef, events: &[&str]) -> Option<RecordBatch> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(events.len().max(1))
        .build_decoder()
        .ok()?;
    for event in events {
        decoder.decode(event.as_bytes()).ok()?;
    }
    decoder.flush().ok()?
}

fn fast(schema: &SchemaRef, events: &[&str]) -> Option<RecordBatch> {
    let mut decoder = FastDecoder::new(schema).expect("schema supported");
    decoder.decode(events.iter().map(|e| e.as_bytes()))
}

/// Events the fast road takes: the same batch as arrow-json's.
#[test]
fn decodes_like_arrow_json() {
    let schema = schema();
    let events = [
        r#"{"id":1,"name":"plain","price":12.5,"ok":true,"day":"2024-02-29","at":"2024-01-02T03:04:05.123456Z","meta":{"v":1,"tag":"x"},"sizes":[{"size":"M","qty":2},{"size":"L"}],"tags":["a","b"]}"#,
        r#"{"id":-2,"name":null,"price":-0.0,"ok":false,"meta":null,"sizes":[],"tags":null}"#,
        r#" { "id" : 3 , "name" : "esc \"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 ü€" , "price" : 1e-3 , "sizes" : null , "unknown" : {"deep":[1,{"x":null},"s\"",true,false,-1.5E+3]} } "#,
        r#"{"id":9223372036854775807,"price":1.7976931348623157e308,"meta":{"v":-9223372036854775808},"sizes":[null,{"qty":null,"size":"XL","extra":[]}],"tags":["",null]}"#,
        r#"{"at":"2024-06-01 10:00:00+02:00","id":5,"day":"1970-01-01","price":3}"#,
        r#"{"id":6}"#,
    ];
    let expected = arrow_json(&schema, &events).expect("arrow-json decodes these");
    let got = fast(&schema, &events).expect("the fast road decodes these");
    assert_eq!(got, expected);
}

#[test]
fn keys_compare_as_bytes_do() {
    let keys: Vec<Vec<u8>> = (0..=20)
        .flat_map(|n| {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut variants = vec![base.clone()];
            for at in 0..n {
                let mut changed = base.clone();
                changed[at] = b'Z';
                variants.push(changed);
            }
            variants
        })
        .collect();
    for a in &keys {
        for b in &keys {
            assert_eq!(same_key(a, b), a == b, "{a:?} {b:?}");
        }
    }
}

/// Keys are placed by the order the last object had; objects that change
/// it, drop or add keys, or hold more keys than remembered still decode
/// as arrow-json decodes them.
#[test]
fn key_order_changes_decode_like_arrow_json() {
    let schema = schema();
    let many_keys: String = (0..300).map(|i| format!(",\"k{i}\":{i}")).collect();
    let wide = format!(r#"{{"id":7,"meta":{{"v":1{many_keys},"tag":"w"}}}}"#);
    let events = [
        r#"{"id":1,"name":"a","x":1,"meta":{"v":1,"tag":"t"}}"#,
        r#"{"id":2,"name":"b","x":2,"meta":{"v":2,"tag":"u"}}"#,
        r#"{"name":"c","id":3,"meta":{"tag":"v","v":3},"x":3}"#,
        r#"{"id":4,"x":4,"meta":{"v":4}}"#,
        r#"{"y":0,"id":5,"name":"e","x":5,"z":[1],"meta":{"v":5,"tag":"t"}}"#,
        &wide,
        r#"{"id":8,"name":"h","x":8,"meta":{"v":8,"tag":"t"}}"#,
    ];
    let expected = arrow_json(&schema, &events).expect("arrow-json decodes these");
    assert_eq!(fast(&schema, &events).expect("decodes"), expected);
    // a duplicate key is still seen once the order is known
    let duplicate = [
        r#"{"id":1,"name":"a"}"#,
        r#"{"id":2,"name":"b","name":"c"}"#,
    ];
    assert!(fast(&schema, &duplicate).is_none());
}

/// Anything arrow-json might read differently, or reject, is left to it.
#[test]
fn gives_up_where_arrow_json_must_decide() {
    let schema = schema();
    for event in [
        r#"{"id":"5"}"#,                     // number as text
        r#"{"id":1.0}"#,                     // fraction in an integer column
        r#"{"id":1,"id":2}"#,                // duplicate key
        r#"{"i\u0064":1}"#,                  // escaped key
        r#"{"name":"x"}"#,                   // required id missing
        r#"{"id":null}"#,                    // required id null
        r#"{"id":1,"meta":{"tag":"t"}}"#,    // required meta.v missing
        r#"{"id":1,"name":5}"#,              // number in a text column
        r#"{"id":1,,"name":"a"}"#,           // malformed
        r#"{"id":1,"name":"a",}"#,           // trailing comma
        r#"{"id":01}"#,                      // leading zero
        r#"{"id":1,"x":[1,]}"#,              // malformed in a skipped field
        r#"{"id":1,"x":"\x"}"#,              // bad escape
        r#"{"id":1,"name":"\ud800"}"#,       // lone surrogate
        "{\"id\":1,\"name\":\"tab\there\"}", // raw control character
        r#"{"id":1,"at":"yesterday"}"#,      // not a timestamp
        r#"{"id":1} {"id":2}"#,              // two objects
        r#"[{"id":1}]"#,                     // not an object
        r#"{"id":1,"x":nul}"#,               // truncated literal
        r#"{"id":1"#,                        // cut short
    ] {
        assert!(fast(&schema, &[event]).is_none(), "{event}");
    }
    let invalid_utf8: &[u8] = b"{\"id\":1,\"x\":\"\xff\"}";
    let mut decoder = FastDecoder::new(&schema).expect("schema supported");
    assert!(decoder.decode([invalid_utf8].into_iter()).is_none());
    // after giving up, the next chunk starts clean
    let next = decoder
        .decode([br#"{"id":7}"#.as_slice()].into_iter())
        .expect("decodes");
    assert_eq!(next.num_rows(), 1);
}

#[test]
fn unsupported_types_keep_to_arrow_json() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "d",
        DataType::Decimal128(10, 2),
        true,
    )]));
    assert!(FastDecoder::new(&schema).is_none());
}
