//! The slow road: arrow-json, behind strict checks of its own. A chunk the
//! fast decoder gave up on is decoded here, and a run of events either
//! decodes here as a whole or fails, so that the decoder can split it until
//! the failing events are alone. Apart because the checks (nesting, syntax,
//! integers) guard arrow-json, not the decoder.

use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow_json::reader::Decoder;

use super::events::Pending;

pub(super) fn new_json_decoder(schema: &SchemaRef, rows: usize) -> Result<Decoder, ArrowError> {
    arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .build_decoder()
}

/// How deep objects and arrays may nest in an event. Deeper events are
/// rejected with that reason before any parser that recurses sees them.
pub const MAX_NESTING: usize = 128;

/// Whether objects and arrays in `bytes` nest deeper than `limit` (strings
/// skipped; the bytes need not be valid JSON).
fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Decodes a run of events into one record batch, or fails as a whole.
pub(super) fn decode_events(
    schema: &SchemaRef,
    events: &[Pending],
) -> Result<RecordBatch, ArrowError> {
    let mut decoder = new_json_decoder(schema, events.len())?;
    for event in events {
        let bytes = event.bytes();
        // arrow-json describes a value it did not expect by printing it,
        // recursively: an event nested thousands deep would end the process.
        if nests_deeper_than(bytes, MAX_NESTING) {
            return Err(ArrowError::JsonError(format!(
                "the event nests objects and arrays deeper than {MAX_NESTING} levels"
            )));
        }
        // arrow-json's tokenizer is lenient (it accepts `{"a":1,,"b":2}`) and
        // makes integers of fractions: check the syntax and the numbers first,
        // so that such events are rejected, not misread.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ArrowError::JsonError(format!("not valid JSON: {e}")))?;
        check_integers(&value, schema.fields(), "").map_err(ArrowError::JsonError)?;
        let read = decoder.decode(bytes)?;
        if read != bytes.len() || decoder.has_partial_record() {
            return Err(ArrowError::JsonError(
                "event is not one complete JSON object".into(),
            ));
        }
    }
    if decoder.len() != events.len() {
        return Err(ArrowError::JsonError(format!(
            "expected {} JSON objects, found {}",
            events.len(),
            decoder.len()
        )));
    }
    let batch = decoder
        .flush()?
        .ok_or_else(|| ArrowError::JsonError("no rows decoded".into()))?;
    Ok(batch)
}

/// Refuses a number that an integer column cannot hold as it is: a
/// fraction, or a value out of the 64-bit range. (Integral values written
/// with an exponent or `.0`, such as `1e3`, are integers.)
fn check_integers(
    value: &serde_json::Value,
    fields: &arrow::datatypes::Fields,
    parent: &str,
) -> Result<(), String> {
    let serde_json::Value::Object(object) = value else {
        return Ok(());
    };
    for field in fields {
        if let Some(child) = object.get(field.name()) {
            let path = if parent.is_empty() {
                field.name().clone()
            } else {
                format!("{parent}.{}", field.name())
            };
            check_value(child, field.data_type(), &path)?;
        }
    }
    Ok(())
}

fn check_value(value: &serde_json::Value, data_type: &DataType, path: &str) -> Result<(), String> {
    match (data_type, value) {
        (DataType::Int64, serde_json::Value::Number(n)) => {
            integer_fits(n).map_err(|problem| format!("field '{path}': {n} {problem}"))
        }
        (DataType::Struct(children), _) => check_integers(value, children, path),
        (DataType::List(item) | DataType::LargeList(item), serde_json::Value::Array(items)) => {
            items
                .iter()
                .try_for_each(|v| check_value(v, item.data_type(), &format!("{path}[]")))
        }
        _ => Ok(()),
    }
}

/// Whether a JSON number is a 64-bit integer; why not, otherwise.
fn integer_fits(n: &serde_json::Number) -> Result<(), &'static str> {
    if n.as_i64().is_some() {
        return Ok(());
    }
    if n.as_u64().is_some() {
        return Err("is out of the 64-bit integer range");
    }
    // Parsed as a double: written with a fraction or an exponent, or an
    // integer too long for 64 bits.
    let v = n.as_f64().unwrap_or(f64::NAN);
    if v.fract() != 0.0 || !v.is_finite() {
        return Err("is not an integer");
    }
    // 2^63: the first double out of range (and what -2^63 - 1 rounds to, in
    // the negative; exactly -2^63 is parsed as an integer above).
    if v.abs() >= 9_223_372_036_854_775_808.0 {
        return Err("is out of the 64-bit integer range");
    }
    Ok(())
}
