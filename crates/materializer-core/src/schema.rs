//! The Arrow schema of a topic's `events` table, derived from the event type's
//! JSON schema.
//!
//! Nakadi serves an event type as `{"name", "category", "schema": {"type":
//! "json_schema", "schema": "<JSON schema as a string>"}}`. The JSON schema
//! describes the payload; Nakadi adds the envelope by category: business events
//! carry `metadata` beside the payload fields, data change events nest the payload
//! under `data` beside `data_op`, `data_type` and `metadata`.
//!
//! Conversion: objects -> structs, arrays -> lists, `string` with format
//! `date-time` -> timestamp (UTC, microseconds), `date` -> date, other strings ->
//! text, `integer` -> 64-bit integer, `number` -> double, `boolean` -> boolean.
//! A field is nullable unless its object lists it as `required`. Parts that have
//! no table form (free-form maps, unions of different types) are left out with a
//! warning: their values are ignored, never misread.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// Nakadi's event type categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    #[default]
    Business,
    Data,
    Undefined,
}

/// System columns the decoder adds to every event.
pub const PARTITION_COLUMN: &str = "_partition";
pub const OFFSET_COLUMN: &str = "_offset";
pub const SEQ_COLUMN: &str = "_seq";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("not valid JSON")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The event type document Nakadi serves, as far as we read it.
#[derive(Debug, Clone)]
pub struct EventTypeSchema {
    pub category: Category,
    pub json_schema: Value,
}

impl EventTypeSchema {
    /// Reads either an event type document (`{"category", "schema": {"schema": "..."}}`)
    /// or a bare JSON schema, in which case `fallback` names the category.
    pub fn from_document(doc: &Value, fallback: Category) -> Result<Self, SchemaError> {
        let Some(inner) = doc.get("schema").filter(|s| s.get("schema").is_some()) else {
            return Ok(EventTypeSchema {
                category: fallback,
                json_schema: doc.clone(),
            });
        };
        let category = match doc.get("category") {
            Some(c) => serde_json::from_value(c.clone()).map_err(|_| SchemaError::Invalid {
                path: "category".into(),
                message: format!("unknown category {c}; expected business, data or undefined"),
            })?,
            None => fallback,
        };
        let json_schema = match &inner["schema"] {
            Value::String(text) => serde_json::from_str(text)?,
            obj @ Value::Object(_) => obj.clone(),
            other => {
                return Err(SchemaError::Invalid {
                    path: "schema.schema".into(),
                    message: format!("expected the JSON schema as a string, found {other}"),
                });
            }
        };
        Ok(EventTypeSchema {
            category,
            json_schema,
        })
    }

    /// The Arrow schema of the events as Nakadi delivers them (envelope included),
    /// with warnings about parts that were left out.
    pub fn to_arrow(&self) -> Result<(Schema, Vec<String>), SchemaError> {
        let mut converter = Converter {
            root: &self.json_schema,
            warnings: Vec::new(),
            resolving: HashSet::new(),
        };
        let payload = converter.object_fields(&self.json_schema, "")?;
        let fields: Vec<Field> = match self.category {
            Category::Undefined => payload,
            Category::Business => {
                let mut fields = payload;
                if !fields.iter().any(|f| f.name() == "metadata") {
                    fields.insert(0, metadata_field());
                }
                fields
            }
            Category::Data => vec![
                metadata_field(),
                Field::new("data_op", DataType::Utf8, false),
                Field::new("data_type", DataType::Utf8, false),
                Field::new("data", DataType::Struct(Fields::from(payload)), true),
            ],
        };
        Ok((Schema::new(fields), converter.warnings))
    }
}

/// The system columns, in the order they follow the payload.
pub const SYSTEM_COLUMNS: [&str; 3] = [PARTITION_COLUMN, OFFSET_COLUMN, SEQ_COLUMN];

/// The `events` table: payload columns plus the system columns.
pub fn with_system_columns(payload: &Schema) -> SchemaRef {
    with_some_system_columns(payload, &SYSTEM_COLUMNS)
}

/// Payload columns plus those of the system columns named in `wanted`.
pub fn with_some_system_columns(payload: &Schema, wanted: &[&str]) -> SchemaRef {
    let mut fields: Vec<Field> = payload
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for name in SYSTEM_COLUMNS.into_iter().filter(|c| wanted.contains(c)) {
        let data_type = if name == SEQ_COLUMN {
            DataType::UInt64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(name, data_type, false));
    }
    Arc::new(Schema::new(fields))
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Nakadi's metadata object of business and data change events.
fn metadata_field() -> Field {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let fields = vec![
        text("eid", false),
        Field::new("occurred_at", timestamp_type(), false),
        Field::new("received_at", timestamp_type(), true),
        text("event_type", true),
        text("version", true),
        text("flow_id", true),
        text("partition", true),
        Field::new(
            "parent_eids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        text("published_by", true),
        text("partition_compaction_key", true),
    ];
    Field::new("metadata", DataType::Struct(Fields::from(fields)), false)
}

struct Converter<'a> {
    root: &'a Value,
    warnings: Vec<String>,
    resolving: HashSet<String>,
}

impl Converter<'_> {
    fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
        SchemaError::Invalid {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }

    fn lookup(&self, reference: &str, path: &str) -> Result<&Value, SchemaError> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(Self::invalid(
                path,
                format!("only local $ref is supported, found {reference}"),
            ));
        };
        self.root
            .pointer(pointer)
            .ok_or_else(|| Self::invalid(path, format!("$ref {reference} points nowhere")))
    }

    /// Fields of an object schema (properties, `allOf` parts merged).
    fn object_fields(&mut self, node: &Value, path: &str) -> Result<Vec<Field>, SchemaError> {
        let node = self.deref(node, path)?;
        let mut fields: Vec<Field> = Vec::new();
        let required: HashSet<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = node.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| Self::invalid(path, "properties must be an object"))?;
            for (name, prop) in props {
                let child = join(path, name);
                if let Some((data_type, nullable)) = self.data_type(prop, &child)? {
                    fields.push(Field::new(
                        name,
                        data_type,
                        nullable || !required.contains(name.as_str()),
                    ));
                }
            }
        }
        if let Some(parts) = node.get("allOf").and_then(Value::as_array) {
            for part in parts {
                for field in self.object_fields(part, path)? {
                    let field = if required.contains(field.name().as_str()) {
                        field.with_nullable(false)
                    } else {
                        field
                    };
                    if let Some(existing) = fields.iter().position(|f| f.name() == field.name()) {
                        fields[existing] = field;
                    } else {
                        fields.push(field);
                    }
                }
            }
        }
        Ok(fields)
    }

    /// Follows local `$ref`s (`#/definitions/x`, `#/$defs/x`) to the node they name.
    fn deref(&self, node: &Value, path: &str) -> Result<Value, SchemaError> {
        let mut current = node.clone();
        for _ in 0..32 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                return Ok(current);
            };
            current = self.lookup(reference, path)?.clone();
        }
        Err(Self::invalid(path, "$ref chain too long (recursive?)"))
    }

    /// The Arrow type of one schema node and whether the node itself allows null.
    /// `None` when the node has no table form (a warning is recorded).
    fn data_type(
        &mut self,
        node: &Value,
        path: &str,
    ) -> Result<Option<(DataType, bool)>, SchemaError> {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            if !self.resolving.insert(reference.to_string()) {
                return Err(Self::invalid(
                    path,
                    format!("$ref {reference} is recursive; recursive types have no table form"),
                ));
            }
            let target = self.lookup(reference, path)?.clone();
            let result = self.data_type(&target, path);
            self.resolving.remove(reference);
            return result;
        }
        let (types, nullable) = type_names(node);
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = node.get(key).and_then(Value::as_array) {
                return self.union(variants, path, key);
            }
        }
        if types.is_empty() {
            if node.get("properties").is_some() || node.get("allOf").is_some() {
                return self.object(node, path).map(|t| t.map(|t| (t, nullable)));
            }
            if node.get("items").is_some() {
                return self.array(node, path).map(|t| t.map(|t| (t, nullable)));
            }
            if node.get("enum").is_some() || node.get("x-extensible-enum").is_some() {
                return Ok(Some((DataType::Utf8, nullable)));
            }
            self.warnings
                .push(format!("{path}: no type given; the field is left out"));
            return Ok(None);
        }
        if types.len() > 1 {
            self.warnings.push(format!(
                "{path}: values may be any of {}; the field is left out",
                types.join(", ")
            ));
            return Ok(None);
        }
        let data_type = match types[0].as_str() {
            "string" => match node.get("format").and_then(Value::as_str) {
                Some("date-time") => timestamp_type(),
                Some("date") => DataType::Date32,
                _ => DataType::Utf8,
            },
            "integer" => DataType::Int64,
            "number" => DataType::Float64,
            "boolean" => DataType::Boolean,
            "object" => match self.object(node, path)? {
                Some(t) => t,
                None => return Ok(None),
            },
            "array" => match self.array(node, path)? {
                Some(t) => t,
                None => return Ok(None),
            },
            "null" => {
                self.warnings
                    .push(format!("{path}: always null; the field is left out"));
                return Ok(None);
            }
            other => return Err(Self::invalid(path, format!("unknown type {other:?}"))),
        };
        Ok(Some((data_type, nullable)))
    }

    fn object(&mut self, node: &Value, path: &str) -> Result<Option<DataType>, SchemaError> {
        let has_properties = node
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty())
            || node.get("allOf").is_some();
        if !has_properties {
            self.warnings.push(format!(
                "{path}: object without declared properties (a free-form map); the field is left out"
            ));
            return Ok(None);
        }
        let fields = self.object_fields(node, path)?;
        if fields.is_empty() {
            self.warnings.push(format!(
                "{path}: object has no convertible properties; the field is left out"
            ));
            return Ok(None);
        }
        Ok(Some(DataType::Struct(Fields::from(fields))))
    }

    fn array(&mut self, node: &Value, path: &str) -> Result<Option<DataType>, SchemaError> {
        let Some(items) = node.get("items") else {
            self.warnings.push(format!(
                "{path}: array without items; the field is left out"
            ));
            return Ok(None);
        };
        if items.is_array() {
            self.warnings.push(format!(
                "{path}: tuple arrays have no table form; the field is left out"
            ));
            return Ok(None);
        }
        let item_path = format!("{path}[]");
        match self.data_type(items, &item_path)? {
            Some((item, _)) => Ok(Some(DataType::List(Arc::new(Field::new(
                "item", item, true,
            ))))),
            None => Ok(None),
        }
    }

    /// `oneOf`/`anyOf`: usable when every variant but `null` has one type.
    fn union(
        &mut self,
        variants: &[Value],
        path: &str,
        key: &str,
    ) -> Result<Option<(DataType, bool)>, SchemaError> {
        let mut found: Option<DataType> = None;
        let mut nullable = false;
        for variant in variants {
            let (types, _) = type_names(variant);
            if types == ["null"] {
                nullable = true;
                continue;
            }
            match self.data_type(variant, path)? {
                Some((t, n)) => {
                    nullable |= n;
                    if found.as_ref().is_some_and(|f| f != &t) {
                        self.warnings.push(format!(
                            "{path}: {key} mixes different types; the field is left out"
                        ));
                        return Ok(None);
                    }
                    found = Some(t);
                }
                None => return Ok(None),
            }
        }
        Ok(found.map(|t| (t, nullable)))
    }
}

/// The names in a node's `type` (a string or a list), without `null`, and
/// whether `null` was among them.
fn type_names(node: &Value) -> (Vec<String>, bool) {
    match node.get("type") {
        Some(Value::String(t)) => (vec![t.clone()], t == "null"),
        Some(Value::Array(ts)) => {
            let names: Vec<String> = ts
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            let nullable = names.iter().any(|t| t == "null");
            let rest: Vec<String> = names.into_iter().filter(|t| t != "null").collect();
            if rest.is_empty() && nullable {
                (vec!["null".into()], true)
            } else {
                (rest, nullable)
            }
        }
        _ => (Vec::new(), false),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Finds the type of a dotted column path (`metadata.occurred_at`) in a schema.
pub fn field_at_path<'s>(schema: &'s Schema, path: &str) -> Option<&'s Field> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut field = schema.fields().iter().find(|f| f.name() == first)?.as_ref();
    for part in parts {
        let DataType::Struct(children) = field.data_type() else {
            return None;
        };
        field = children.iter().find(|f| f.name() == part)?.as_ref();
    }
    Some(field)
}

/// The SQL name of an Arrow type, as the query engine's SQL spells it.
pub fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INTEGER UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(unit, zone) => timestamp(*unit, zone.is_some()),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            format!("DECIMAL({precision},{scale})")
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("LIST<{}>", sql_type(item.data_type()))
        }
        DataType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP<{}, {}>",
                sql_type(kv[0].data_type()),
                sql_type(kv[1].data_type())
            ),
            other => format!("MAP<{}>", sql_type(other)),
        },
        DataType::Dictionary(_, value) => sql_type(value),
        other => other.to_string().to_uppercase(),
    }
}

fn timestamp(unit: TimeUnit, zoned: bool) -> String {
    // Microseconds are the engine's default; other units are named.
    let precision = match unit {
        TimeUnit::Second => "(0)",
        TimeUnit::Millisecond => "(3)",
        TimeUnit::Microsecond => "",
        TimeUnit::Nanosecond => "(9)",
    };
    let zone = if zoned { " WITH TIME ZONE" } else { "" };
    format!("TIMESTAMP{precision}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(doc: Value) -> (Schema, Vec<String>) {
        EventTypeSchema::from_document(&doc, Category::Undefined)
            .unwrap()
            .to_arrow()
            .unwrap()
    }

    #[test]
    fn converts_the_json_types() {
        let (schema, warnings) = convert(json!({
            "type": "object",
            "required": ["id", "when"],
            "properties": {
                "id": {"type": "integer"},
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "price": {"type": "number"},
                "ok": {"type": ["boolean", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "owner": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "free": {"type": "object", "additionalProperties": true}
            }
        }));
        assert!(
            warnings.iter().any(|w| w.starts_with("free:")),
            "{warnings:?}"
        );
        let f = |n: &str| schema.field_with_name(n).unwrap().clone();
        assert_eq!(f("id").data_type(), &DataType::Int64);
        assert!(!f("id").is_nullable());
        assert_eq!(f("when").data_type(), &timestamp_type());
        assert!(!f("when").is_nullable());
        assert_eq!(f("day").data_type(), &DataType::Date32);
        assert_eq!(f("price").data_type(), &DataType::Float64);
        assert_eq!(f("ok").data_type(), &DataType::Boolean);
        assert!(f("ok").is_nullable());
        assert!(matches!(f("tags").data_type(), DataType::List(_)));
        let DataType::Struct(owner) = f("owner").data_type().clone() else {
            panic!()
        };
        assert!(!owner[0].is_nullable());
        assert!(schema.field_with_name("free").is_err());
    }

    #[test]
    fn business_events_get_metadata_and_data_events_an_envelope() {
        let doc = json!({"name": "x", "category": "business",
            "schema": {"type": "json_schema", "schema": "{\"properties\":{\"a\":{\"type\":\"string\"}}}"}});
        let (schema, _) = EventTypeSchema::from_document(&doc, Category::Undefined)
            .unwrap()
            .to_arrow()
            .unwrap();
        assert_eq!(schema.field(0).name(), "metadata");
        assert_eq!(schema.field(1).name(), "a");
        assert!(field_at_path(&schema, "metadata.occurred_at").is_some());

        let doc = json!({"name": "x", "category": "data",
            "schema": {"type": "json_schema", "schema": "{\"properties\":{\"a\":{\"type\":\"string\"}}}"}});
        let (schema, _) = EventTypeSchema::from_document(&doc, Category::Undefined)
            .unwrap()
            .to_arrow()
            .unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["metadata", "data_op", "data_type", "data"]);
        assert!(field_at_path(&schema, "data.a").is_some());
    }

    #[test]
    fn refs_are_followed_and_recursion_is_refused() {
        let (schema, _) = convert(json!({
            "definitions": {"money": {"type": "object", "properties": {"amount": {"type": "number"}}}},
            "properties": {"price": {"$ref": "#/definitions/money"}}
        }));
        assert!(field_at_path(&schema, "price.amount").is_some());

        let doc = json!({
            "definitions": {"node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/node"}}}},
            "properties": {"head": {"$ref": "#/definitions/node"}}
        });
        let err = EventTypeSchema::from_document(&doc, Category::Undefined)
            .unwrap()
            .to_arrow()
            .unwrap_err();
        assert!(err.to_string().contains("recursive"), "{err}");
    }
}
