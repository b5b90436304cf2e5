//! What a mistake in a mapping most likely was: the name meant by a name
//! that is not there (by edit distance), the fields of a struct a missing
//! field was asked of, and where a view mentions a name the engine's message
//! gives no place for.

use datafusion::common::{Column, DataFusionError, SchemaError};

use super::Position;

/// The edits (insertions, deletions, substitutions) that turn `a` into `b`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Of `candidates`, the one nearest to `name` (case aside), when it is
/// near enough to be what was meant: at most half of the longer name edited.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let distance = edit_distance(&lower, &c.to_lowercase());
            let longer = lower.chars().count().max(c.chars().count());
            (longer > 0 && distance * 2 <= longer).then_some((distance, c))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `"; did you mean 'x'?"` when one of `candidates` is near `name`.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    nearest(name, candidates)
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

/// The column the engine did not find, and the columns it had, when that is
/// what `err` says.
pub(crate) fn missing_column(err: &DataFusionError) -> Option<(&Column, &[Column])> {
    err.iter().chain([err.find_root()]).find_map(|e| match e {
        DataFusionError::SchemaError(error, _) => match error.as_ref() {
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } => Some((field.as_ref(), valid_fields.as_slice())),
            _ => None,
        },
        _ => None,
    })
}

/// What to add to the engine's message about a missing column: for a name
/// qualified by a table that the view does not read, what it reads; else
/// the nearest column.
pub(crate) fn missing_column_hint(field: &Column, valid: &[Column]) -> String {
    let mut relations: Vec<&str> = valid
        .iter()
        .filter_map(|c| c.relation.as_ref().map(|r| r.table()))
        .collect();
    relations.dedup();
    let names = || valid.iter().map(|c| c.name());
    match &field.relation {
        Some(relation) if !relations.contains(&relation.table()) => {
            let reads = if relations.is_empty() {
                String::new()
            } else {
                format!(" (the view reads {})", relations.join(", "))
            };
            format!(
                "; there is no table or view {} here{reads}, and a column's nested field is \
                 written column.field{}",
                relation.table(),
                did_you_mean(relation.table(), names().chain(relations.iter().copied()))
            )
        }
        _ => did_you_mean(field.name(), names()),
    }
}

/// The field a "Field X not found in struct" message names.
pub(crate) fn missing_struct_field(message: &str) -> Option<&str> {
    let rest = message.split("Field ").nth(1)?;
    let name = rest
        .strip_suffix(" not found in struct")
        .or_else(|| rest.find(" not found in struct").map(|end| &rest[..end]))?;
    (!name.is_empty()).then_some(name)
}

/// Where a view's text (from `from`, before `until`) first reads `field` of
/// a struct, `path.field`: the place of `path` and `path` itself.
pub(crate) fn struct_access(
    text: &str,
    field: &str,
    from: Position,
    until: Option<Position>,
) -> Option<(Position, String)> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    for (i, line) in text
        .lines()
        .enumerate()
        .skip((from.line.max(1) - 1) as usize)
    {
        let line_no = i as u64 + 1;
        if until.is_some_and(|u| line_no > u.line) {
            break;
        }
        let needle = format!(".{field}");
        let mut searched = 0;
        while let Some(found) = line[searched..].find(&needle) {
            let dot = searched + found;
            searched = dot + needle.len();
            let after = line[searched..].chars().next();
            if after.is_some_and(is_name) {
                continue;
            }
            let start = line[..dot]
                .char_indices()
                .rev()
                .take_while(|(_, c)| is_name(*c) || *c == '.')
                .last()
                .map_or(dot, |(k, _)| k);
            let path = line[start..dot].trim_start_matches('.');
            if path.is_empty() {
                continue;
            }
            let column = line[..start].chars().count() as u64 + 1;
            return Some((
                Position {
                    line: line_no,
                    column,
                },
                path.to_string(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(edit_distance("revison", "revision"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let columns = ["article_id", "brand", "version", "available_qty"];
        assert_eq!(nearest("verison", columns), Some("version"));
        assert_eq!(nearest("Brand", columns), Some("brand"));
        assert_eq!(nearest("price", columns), None);
        assert_eq!(
            did_you_mean("availabe_qty", columns),
            "; did you mean 'available_qty'?"
        );
    }

    #[test]
    fn a_struct_access_is_found_where_the_view_reads_it() {
        let text = "CREATE VIEW output AS\nSELECT order_number,\n       item.sku AS sku,\n       \
                    item.quantity AS quantity\nFROM lines;\n";
        let from = Position { line: 1, column: 1 };
        assert_eq!(
            struct_access(text, "quantity", from, None),
            Some((Position { line: 4, column: 8 }, "item".to_string()))
        );
        assert_eq!(
            missing_struct_field("Field quantity not found in struct"),
            Some("quantity")
        );
        assert_eq!(struct_access(text, "qty", from, None), None);
    }
}
