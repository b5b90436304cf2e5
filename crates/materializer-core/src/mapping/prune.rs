//! Decode only what a topic reads: the fields of struct columns (Nakadi's
//! `metadata` above all) that neither the mapping nor the keys name are left
//! out of the schema the JSON decoder fills. Decoding a field costs about as
//! much as the mapping that would ignore it.
//!
//! Pruning is conservative: a struct column is pruned only when every mention
//! of it in the mapping is a dotted path (`metadata.occurred_at`); a bare
//! mention, a subscript or any wildcard keeps everything. Required
//! (non-nullable) fields are always kept, so a missing one still rejects the
//! event. The caller checks that the mapping plans to the same output over the
//! pruned schema, and keeps the full one otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::schema::SYSTEM_COLUMNS;

/// What a text reads of each struct column.
#[derive(Debug, Default, PartialEq)]
enum Use {
    /// Only these fields, by dotted paths.
    #[default]
    Fields,
    /// The column as a whole.
    Whole,
}

#[derive(Debug, Default)]
struct Uses {
    kind: HashMap<String, Use>,
    fields: HashMap<String, HashSet<String>>,
}

impl Uses {
    fn whole(&mut self, column: &str) {
        self.kind.insert(column.to_string(), Use::Whole);
    }

    fn field(&mut self, column: &str, field: &str) {
        self.kind.entry(column.to_string()).or_default();
        self.fields
            .entry(column.to_string())
            .or_default()
            .insert(field.to_string());
    }
}

/// The payload schema a run decodes for a mapping text and key paths, or
/// `None` when nothing can be left out.
pub fn pruned_payload(payload: &Schema, mapping_sql: &str, key_paths: &[String]) -> Option<Schema> {
    let structs: HashSet<&str> = payload
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Struct(_)))
        .map(|f| f.name().as_str())
        .collect();
    if structs.is_empty() {
        return None;
    }
    let mut uses = mentions(mapping_sql, &structs)?;
    for path in key_paths {
        let mut parts = path.split('.');
        if let (Some(column), next) = (parts.next(), parts.next())
            && structs.contains(column)
        {
            match next {
                Some(field) => uses.field(column, field),
                None => uses.whole(column),
            }
        }
    }
    let mut pruned_any = false;
    let fields: Vec<Field> = payload
        .fields()
        .iter()
        .map(|field| {
            let (DataType::Struct(children), Some(Use::Fields)) =
                (field.data_type(), uses.kind.get(field.name()))
            else {
                return field.as_ref().clone();
            };
            let named = uses.fields.get(field.name());
            let kept: Vec<Arc<Field>> = children
                .iter()
                .filter(|c| !c.is_nullable() || named.is_some_and(|n| n.contains(c.name())))
                .cloned()
                .collect();
            if kept.len() == children.len() || kept.is_empty() {
                return field.as_ref().clone();
            }
            pruned_any = true;
            field
                .as_ref()
                .clone()
                .with_data_type(DataType::Struct(Fields::from(kept)))
        })
        .collect();
    pruned_any.then(|| Schema::new_with_metadata(fields, payload.metadata().clone()))
}

/// The system columns (`_partition`, `_offset`, `_seq`) a mapping text names;
/// all of them when it has a wildcard or does not tokenize.
pub fn system_columns_read(mapping_sql: &str) -> Vec<&'static str> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, mapping_sql).tokenize() else {
        return SYSTEM_COLUMNS.to_vec();
    };
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if (0..tokens.len()).any(|i| tokens[i] == Token::Mul && is_wildcard(&tokens, i)) {
        return SYSTEM_COLUMNS.to_vec();
    }
    SYSTEM_COLUMNS
        .into_iter()
        .filter(|column| {
            tokens
                .iter()
                .any(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(column)))
        })
        .collect()
}

/// Mentions of the struct columns in a SQL text; `None` when it has a
/// wildcard (which reads every column) or does not tokenize.
fn mentions(sql: &str, structs: &HashSet<&str>) -> Option<Uses> {
    let tokens: Vec<Token> = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut uses = Uses::default();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Mul if is_wildcard(&tokens, i) => return None,
            Token::Word(_) if i == 0 || tokens[i - 1] != Token::Period => {
                // A chain of words joined by periods: alias.column.field...
                let mut chain: Vec<&str> = Vec::new();
                let mut j = i;
                while let Some(Token::Word(w)) = tokens.get(j) {
                    chain.push(w.value.as_str());
                    if tokens.get(j + 1) == Some(&Token::Period) {
                        j += 2;
                    } else {
                        break;
                    }
                }
                let after = tokens.get(j + 1);
                if let Some(k) = chain.iter().position(|w| structs.contains(w)) {
                    match chain.get(k + 1) {
                        Some(field) if after != Some(&Token::LBracket) || k + 2 < chain.len() => {
                            uses.field(chain[k], field)
                        }
                        _ => uses.whole(chain[k]),
                    }
                }
                i = j + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Some(uses)
}

/// `*` as a wildcard (`SELECT *`, `, *`, `t.*`), not a product or `count(*)`.
fn is_wildcard(tokens: &[Token], i: usize) -> bool {
    match i.checked_sub(1).map(|p| &tokens[p]) {
        None | Some(Token::Comma | Token::Period) => true,
        Some(Token::Word(w)) => matches!(
            w.keyword,
            Keyword::SELECT | Keyword::DISTINCT | Keyword::ALL
        ),
        Some(Token::LParen) => false,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Schema {
        let text = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
        Schema::new(vec![
            Field::new(
                "metadata",
                DataType::Struct(Fields::from(vec![
                    text("eid", false),
                    text("flow_id", true),
                    text("partition", true),
                    text("event_type", true),
                ])),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new(
                "price",
                DataType::Struct(Fields::from(vec![
                    text("amount", true),
                    text("currency", true),
                ])),
                true,
            ),
        ])
    }

    fn kept(sql: &str, keys: &[&str]) -> Option<Vec<String>> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let schema = pruned_payload(&payload(), sql, &keys)?;
        let mut names = Vec::new();
        for field in schema.fields() {
            match field.data_type() {
                DataType::Struct(children) => names.extend(
                    children
                        .iter()
                        .map(|c| format!("{}.{}", field.name(), c.name())),
                ),
                _ => names.push(field.name().clone()),
            }
        }
        Some(names)
    }

    #[test]
    fn dotted_paths_keep_their_fields_and_the_required_ones() {
        let sql = "CREATE VIEW output AS SELECT id, metadata.flow_id AS flow, e.price.amount FROM events e";
        assert_eq!(
            kept(sql, &["id"]).unwrap(),
            ["metadata.eid", "metadata.flow_id", "id", "price.amount"]
        );
        // Keys count as mentions.
        assert_eq!(
            kept(sql, &["metadata.partition"]).unwrap(),
            [
                "metadata.eid",
                "metadata.flow_id",
                "metadata.partition",
                "id",
                "price.amount"
            ]
        );
    }

    #[test]
    fn bare_mentions_subscripts_and_wildcards_keep_everything() {
        // metadata whole; price read by a dotted path only.
        assert_eq!(
            kept(
                "CREATE VIEW output AS SELECT metadata, price.currency FROM events",
                &[]
            )
            .unwrap(),
            [
                "metadata.eid",
                "metadata.flow_id",
                "metadata.partition",
                "metadata.event_type",
                "id",
                "price.currency"
            ]
        );
        assert_eq!(
            kept(
                "CREATE VIEW output AS SELECT metadata['eid'] AS e, price FROM events",
                &[]
            ),
            None
        );
        assert_eq!(
            kept("CREATE VIEW output AS SELECT * FROM events", &[]),
            None
        );
        assert_eq!(
            kept("CREATE VIEW output AS SELECT id, e.* FROM events e", &[]),
            None
        );
        // A product and count(*) are not wildcards.
        assert!(kept("CREATE VIEW output AS SELECT id * 2 AS d, count(*) AS n, price.amount FROM events GROUP BY id, price.amount", &[]).is_some());
    }

    #[test]
    fn system_columns_are_read_when_named_or_under_a_wildcard() {
        assert_eq!(
            system_columns_read("CREATE VIEW output AS SELECT id, price.amount FROM events"),
            Vec::<&str>::new()
        );
        assert_eq!(
            system_columns_read(
                "CREATE VIEW output AS SELECT id, e._OFFSET AS o FROM events e ORDER BY \"_seq\""
            ),
            ["_offset", "_seq"]
        );
        assert_eq!(
            system_columns_read("CREATE VIEW output AS SELECT * FROM events"),
            SYSTEM_COLUMNS
        );
        assert_eq!(system_columns_read("SELECT 'unclosed"), SYSTEM_COLUMNS);
    }
}
