//! Where the settings that name columns are in `topic.toml`, so that an
//! error about one points at its line and column (the TOML parser's own
//! errors carry their place already).

use serde::Deserialize;
use toml::Spanned;

use super::error::line_column;
use crate::mapping::Position;

#[derive(Deserialize, Default)]
struct Loose {
    partitioning_key: Option<Spanned<toml::Value>>,
    ordering_key: Option<Spanned<toml::Value>>,
    delete_when: Option<Spanned<toml::Value>>,
    #[serde(default)]
    output: LooseOutput,
    #[serde(default)]
    warehouse: LooseWarehouse,
}

#[derive(Deserialize, Default)]
struct LooseOutput {
    partition_by: Option<Spanned<toml::Value>>,
    csv: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
struct LooseWarehouse {
    key_columns: Option<Spanned<toml::Value>>,
    ordering_column: Option<Spanned<toml::Value>>,
}

/// Positions of the settings that name columns.
#[derive(Debug, Default)]
pub struct Places {
    partitioning_key: Vec<Position>,
    ordering_key: Option<Position>,
    delete_when: Option<Position>,
    partition_by: Vec<Position>,
    csv: Option<Position>,
    key_columns: Vec<Position>,
    ordering_column: Option<Position>,
}

impl Places {
    /// Reads the positions from `text`; a file that does not parse has none
    /// (its parse error names the place itself).
    pub fn find(text: &str) -> Places {
        let Ok(loose) = toml::from_str::<Loose>(text) else {
            return Places::default();
        };
        let at = |start: usize| line_column(text, start);
        // A list's elements carry no spans of their own: find where each starts.
        let all = |value: Option<Spanned<toml::Value>>| match value {
            None => Vec::new(),
            Some(value) => match value.get_ref() {
                toml::Value::Array(_) => element_starts(text, value.span().start)
                    .into_iter()
                    .map(at)
                    .collect(),
                _ => vec![at(value.span().start)],
            },
        };
        Places {
            partitioning_key: all(loose.partitioning_key),
            ordering_key: loose.ordering_key.map(|v| at(v.span().start)),
            delete_when: loose.delete_when.map(|v| at(v.span().start)),
            partition_by: all(loose.output.partition_by),
            csv: loose.output.csv.map(|v| at(v.span().start)),
            key_columns: all(loose.warehouse.key_columns),
            ordering_column: loose.warehouse.ordering_column.map(|v| at(v.span().start)),
        }
    }

    pub fn partitioning_key(&self, index: usize) -> Option<Position> {
        self.partitioning_key
            .get(index)
            .or(self.partitioning_key.first())
            .copied()
    }

    pub fn ordering_key(&self) -> Option<Position> {
        self.ordering_key
    }

    pub fn delete_when(&self) -> Option<Position> {
        self.delete_when
    }

    pub fn partition_by(&self, index: usize) -> Option<Position> {
        self.partition_by.get(index).copied()
    }

    pub fn csv(&self) -> Option<Position> {
        self.csv
    }

    pub fn key_columns(&self, index: usize) -> Option<Position> {
        self.key_columns.get(index).copied()
    }

    pub fn ordering_column(&self) -> Option<Position> {
        self.ordering_column
    }
}

/// Byte offsets where the elements of the array starting at `open` (its
/// `[`) start; elements are strings or bare values, comments may follow them.
fn element_starts(text: &str, open: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b']' => break,
            b' ' | b'\t' | b'\r' | b'\n' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                starts.push(i);
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if quote == b'"' && bytes[i] == b'\\' {
                        2
                    } else {
                        1
                    };
                }
                i += 1;
            }
            _ => {
                starts.push(i);
                while i < bytes.len() && !matches!(bytes[i], b',' | b']' | b'\n') {
                    i += 1;
                }
            }
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_column_setting() {
        let text = "event_type = \"x\"\npartitioning_key = [\"a\", \"b\"]\nordering_key = \"v\"\n\n[output]\npartition_by = \"day\"\n";
        let places = Places::find(text);
        assert_eq!(
            places.partitioning_key(1),
            Some(Position {
                line: 2,
                column: 26
            })
        );
        assert_eq!(
            places.ordering_key(),
            Some(Position {
                line: 3,
                column: 16
            })
        );
        assert_eq!(
            places.partition_by(0),
            Some(Position {
                line: 6,
                column: 16
            })
        );
        assert_eq!(places.key_columns(0), None);
    }
}
