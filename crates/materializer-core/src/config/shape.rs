//! What a run's files are, as a warehouse loads them: the output's columns
//! and types, the key and ordering columns, the file format. A run keeps its
//! shape in its manifest, so that the SQL that loads it is the SQL of that
//! run, whatever its topic's files say today.

use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use super::{OutputSettings, Topic};

/// A run's files, as a warehouse loads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunShape {
    /// Base name of the warehouse tables.
    pub table: String,
    /// The output columns, in file order.
    pub columns: Vec<ShapeColumn>,
    /// The key columns' output names.
    pub keys: Vec<String>,
    /// The ordering column's output name.
    pub ordering: String,
    /// False when the topic keeps every event (no KEYS files, no merge).
    pub compact: bool,
    /// Whether the run wrote OLDER files for the warehouse's history.
    pub history: bool,
    /// The files' format and CSV dialect.
    pub output: OutputSettings,
}

/// One output column: its name and its Arrow type, written as Arrow writes
/// it (`Int64`, `Timestamp(Microsecond, Some("UTC"))`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl ShapeColumn {
    /// The column's Arrow type; text for a type this release cannot read.
    pub fn arrow_type(&self) -> DataType {
        self.data_type.parse().unwrap_or(DataType::Utf8)
    }
}

impl Topic {
    /// The shape of the files a run of this topic writes now.
    pub fn run_shape(&self) -> RunShape {
        let (keys, ordering) = self.warehouse().key_names(self.compaction());
        RunShape {
            table: self
                .warehouse()
                .table
                .clone()
                .unwrap_or_else(|| self.name().replace(['-', '.'], "_")),
            columns: self
                .output_schema()
                .fields()
                .iter()
                .map(|f| ShapeColumn {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                })
                .collect(),
            keys,
            ordering,
            compact: self.compaction().compact,
            history: self.keeps_history(),
            output: self.output().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Fields, TimeUnit};

    use super::*;

    #[test]
    fn column_types_read_back_as_written() {
        let types = [
            DataType::Int64,
            DataType::UInt64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Utf8,
            DataType::Date32,
            DataType::Decimal128(18, 2),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            DataType::Struct(Fields::from(vec![
                Field::new("sku", DataType::Utf8, false),
                Field::new("qty", DataType::Int64, true),
            ])),
        ];
        for data_type in types {
            let column = ShapeColumn {
                name: "c".into(),
                data_type: data_type.to_string(),
            };
            assert_eq!(column.arrow_type(), data_type, "{}", column.data_type);
        }
    }
}
