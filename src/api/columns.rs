//! Columns as the API shows them: SQL type names (the words an analyst writes
//! in a mapping, not Arrow's) and the fields of nested types as children.

use arrow::datatypes::{DataType, Field, Schema};
pub(crate) use materializer_core::schema::sql_type;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A column.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ColumnView {
    pub name: String,
    /// The SQL type: `BIGINT`, `VARCHAR`, `TIMESTAMP WITH TIME ZONE`,
    /// `STRUCT<...>`, `LIST<...>`, ...
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// Fields of a struct, or of the structs a list holds (named relative to
    /// the element: unnest the list first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub children: Option<Vec<ColumnView>>,
}

pub(crate) fn columns(schema: &Schema) -> Vec<ColumnView> {
    schema.fields().iter().map(|f| column(f)).collect()
}

fn column(field: &Field) -> ColumnView {
    ColumnView {
        name: field.name().clone(),
        data_type: sql_type(field.data_type()),
        nullable: field.is_nullable(),
        children: nested_fields(field.data_type())
            .map(|fields| fields.iter().map(|f| column(f)).collect()),
    }
}

/// The fields a column holds: a struct's, or those of the structs in a list.
fn nested_fields(data_type: &DataType) -> Option<&arrow::datatypes::Fields> {
    match data_type {
        DataType::Struct(fields) => Some(fields),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            nested_fields(item.data_type())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Fields, TimeUnit};

    use super::*;

    #[test]
    fn nested_types_have_sql_names_and_children() {
        let item = Fields::from(vec![
            Field::new("sku", DataType::Utf8, false),
            Field::new("qty", DataType::Int64, true),
        ]);
        let schema = Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(
                "items",
                DataType::List(Arc::new(Field::new("item", DataType::Struct(item), true))),
                true,
            ),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let columns = columns(&schema);
        assert_eq!(columns[0].data_type, "TIMESTAMP WITH TIME ZONE");
        assert!(columns[0].children.is_none());
        assert_eq!(
            columns[1].data_type,
            "LIST<STRUCT<sku VARCHAR, qty BIGINT>>"
        );
        let children = columns[1].children.as_ref().unwrap();
        assert_eq!(
            children
                .iter()
                .map(|c| (c.name.as_str(), c.data_type.as_str(), c.nullable))
                .collect::<Vec<_>>(),
            vec![("sku", "VARCHAR", false), ("qty", "BIGINT", true)]
        );
        assert_eq!(columns[2].data_type, "LIST<VARCHAR>");
        assert!(columns[2].children.is_none());
    }
}
