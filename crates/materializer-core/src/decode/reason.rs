//! Why an event did not fit the topic's schema, in the words an analyst
//! reads the schema in: the field's path, the SQL type it has, and what the
//! event holds there (`field 'price.amount': expected DOUBLE, found the
//! string "12,50"`).
//!
//! arrow-json stays the judge of what fits: this module is asked only after
//! it refused an event, and walks the event beside the schema to name the
//! first value arrow-json cannot take, accepting what arrow-json accepts
//! (numbers written as strings, timestamps in any format it parses). When
//! the walk finds nothing, arrow-json's own message is used, without its
//! error type prefix.

use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::{
    DataType, Date32Type, Fields, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use chrono::Utc;
use serde_json::Value;

use crate::schema::sql_type;

/// The reason an event arrow-json refused is rejected with.
pub(super) fn rejection_reason(event: &[u8], fields: &Fields, err: &ArrowError) -> String {
    serde_json::from_slice::<Value>(event)
        .ok()
        .and_then(|value| first_misfit_in_object(&value, fields, ""))
        .unwrap_or_else(|| arrow_message(err))
}

/// The first field of `fields` whose value in `value` cannot be read as its type.
fn first_misfit_in_object(value: &Value, fields: &Fields, parent: &str) -> Option<String> {
    let Value::Object(object) = value else {
        return None;
    };
    fields.iter().find_map(|field| {
        let path = join(parent, field.name());
        match object.get(field.name()) {
            None | Some(Value::Null) if !field.is_nullable() => {
                Some(format!("required field '{path}' is missing or null"))
            }
            None | Some(Value::Null) => None,
            Some(child) => first_misfit(child, field.data_type(), &path),
        }
    })
}

fn first_misfit(value: &Value, data_type: &DataType, path: &str) -> Option<String> {
    let fits = match (data_type, value) {
        (_, Value::Null) => true,
        (DataType::Struct(children), Value::Object(_)) => {
            return first_misfit_in_object(value, children, path);
        }
        (DataType::List(item) | DataType::LargeList(item), Value::Array(items)) => {
            let item_path = format!("{path}[]");
            return items.iter().find_map(|v| {
                if v.is_null() && !item.is_nullable() {
                    Some(format!("field '{item_path}' holds a null, which it cannot"))
                } else {
                    first_misfit(v, item.data_type(), &item_path)
                }
            });
        }
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, v) => v.is_string(),
        (DataType::Boolean, v) => v.is_boolean(),
        (t, Value::Number(_)) if t.is_numeric() || t.is_temporal() => true,
        (t, Value::String(s)) if t.is_numeric() || t.is_temporal() => parses_as(t, s),
        // Types this check does not know: arrow-json's message says more.
        (DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_), _) => false,
        (t, _) if t.is_numeric() || t.is_temporal() => false,
        _ => true,
    };
    (!fits).then(|| {
        format!(
            "field '{path}': expected {}, found {}",
            expected(data_type),
            found(value)
        )
    })
}

/// Whether arrow-json reads the string `s` as a value of type `t`.
fn parses_as(t: &DataType, s: &str) -> bool {
    match t {
        DataType::Int8 => Int8Type::parse(s).is_some(),
        DataType::Int16 => Int16Type::parse(s).is_some(),
        DataType::Int32 => Int32Type::parse(s).is_some(),
        DataType::Int64 => Int64Type::parse(s).is_some(),
        DataType::UInt8 => UInt8Type::parse(s).is_some(),
        DataType::UInt16 => UInt16Type::parse(s).is_some(),
        DataType::UInt32 => UInt32Type::parse(s).is_some(),
        DataType::UInt64 => UInt64Type::parse(s).is_some(),
        DataType::Float32 => Float32Type::parse(s).is_some(),
        DataType::Float64 => Float64Type::parse(s).is_some(),
        DataType::Date32 => Date32Type::parse(s).is_some(),
        DataType::Timestamp(_, _) => string_to_datetime(&Utc, s).is_ok(),
        // Decimals and other types: left to arrow-json's message.
        _ => true,
    }
}

fn expected(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(_) => "an object".into(),
        DataType::List(_) | DataType::LargeList(_) => "an array".into(),
        other => sql_type(other),
    }
}

/// What an event holds, as a reader would name it; long strings shortened.
fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            const SHOWN: usize = 40;
            let shown: String = s.chars().take(SHOWN).collect();
            let quoted = serde_json::to_string(&shown).unwrap_or_default();
            if s.chars().count() > SHOWN {
                format!("the string {}...\"", &quoted[..quoted.len() - 1])
            } else {
                format!("the string {quoted}")
            }
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// arrow-json's message, without the error type prefix.
fn arrow_message(err: &ArrowError) -> String {
    let message = match err {
        ArrowError::JsonError(m)
        | ArrowError::ParseError(m)
        | ArrowError::InvalidArgumentError(m) => m.clone(),
        other => other.to_string(),
    };
    // "Encountered unmasked nulls in non-nullable StructArray child: Field { "version": Int64 }"
    if message.contains("non-nullable")
        && let Some(start) = message.find("Field { \"")
    {
        let rest = &message[start + "Field { \"".len()..];
        if let Some(end) = rest.find('"') {
            return format!("required field '{}' is missing or null", &rest[..end]);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn fields() -> Fields {
        let metadata = Field::new(
            "metadata",
            DataType::Struct(Fields::from(vec![
                Field::new("eid", DataType::Utf8, false),
                Field::new(
                    "occurred_at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
            ])),
            false,
        );
        let sizes = Field::new(
            "sizes",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(Fields::from(vec![Field::new("qty", DataType::Int64, true)])),
                true,
            ))),
            true,
        );
        Schema::new(vec![
            metadata,
            Field::new("article_id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
            Field::new("active", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            sizes,
        ])
        .fields()
        .clone()
    }

    /// The reason for one event, with arrow-json's error as a stand-in
    /// fallback message (the walk decides whether it is used).
    fn reason(event: &str) -> String {
        let fallback = ArrowError::JsonError("arrow-json's message".into());
        rejection_reason(event.as_bytes(), &fields(), &fallback)
    }

    const META: &str = r#""metadata":{"eid":"e1","occurred_at":"2026-01-02T03:04:05Z"}"#;

    #[test]
    fn a_mismatch_names_the_field_its_sql_type_and_the_value() {
        let cases = [
            (
                r#""article_id":"abc""#,
                r#"field 'article_id': expected BIGINT, found the string "abc""#,
            ),
            (
                r#""article_id":1,"price":"12,50""#,
                r#"field 'price': expected DOUBLE, found the string "12,50""#,
            ),
            (
                r#""article_id":1,"active":"yes""#,
                r#"field 'active': expected BOOLEAN, found the string "yes""#,
            ),
            (
                r#""article_id":1,"name":42"#,
                "field 'name': expected VARCHAR, found the number 42",
            ),
            (
                r#""article_id":1,"day":"tomorrow""#,
                r#"field 'day': expected DATE, found the string "tomorrow""#,
            ),
            (
                r#""article_id":1,"sizes":{"qty":1}"#,
                "field 'sizes': expected an array, found an object",
            ),
            (
                r#""article_id":1,"sizes":[{"qty":1},{"qty":[2]}]"#,
                "field 'sizes[].qty': expected BIGINT, found an array",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(reason(&format!("{{{META},{body}}}")), want, "{body}");
        }
    }

    #[test]
    fn nested_objects_and_required_fields_are_named_by_path() {
        assert_eq!(
            reason(r#"{"metadata":null,"article_id":1}"#),
            "required field 'metadata' is missing or null"
        );
        assert_eq!(
            reason(r#"{"metadata":{"eid":"e1","occurred_at":"yesterday"},"article_id":1}"#),
            "field 'metadata.occurred_at': expected TIMESTAMP WITH TIME ZONE, found the string \"yesterday\""
        );
        assert_eq!(
            reason(r#"{"metadata":{"occurred_at":null},"article_id":1}"#),
            "required field 'metadata.eid' is missing or null"
        );
        assert_eq!(
            reason(&format!("{{{META}}}")),
            "required field 'article_id' is missing or null"
        );
    }

    #[test]
    fn values_arrow_json_accepts_are_not_blamed() {
        // Numbers as strings and timestamps as numbers are read by arrow-json:
        // the walk finds nothing and arrow-json's message stands.
        let event = r#"{"metadata":{"eid":"e1","occurred_at":1700000000},"article_id":"17","price":"1.5","day":"2026-01-02"}"#;
        assert_eq!(reason(event), "arrow-json's message");
    }

    #[test]
    fn long_strings_are_shortened() {
        let long = "x".repeat(100);
        let got = reason(&format!(r#"{{{META},"article_id":"{long}"}}"#));
        assert_eq!(
            got,
            format!(
                "field 'article_id': expected BIGINT, found the string \"{}...\"",
                "x".repeat(40)
            )
        );
    }

    #[test]
    fn without_a_culprit_arrow_json_speaks_without_its_prefix() {
        let err = ArrowError::JsonError(
            "Encountered unmasked nulls in non-nullable StructArray child: Field { \"version\": Int64 }"
                .into(),
        );
        assert_eq!(
            rejection_reason(b"not json", &fields(), &err),
            "required field 'version' is missing or null"
        );
    }
}
