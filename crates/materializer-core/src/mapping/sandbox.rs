//! What analyst SQL may do: define views over `events` and over earlier views.
//!
//! Anything else is refused before the engine sees it: other statements (DDL,
//! DML, `COPY`, `SET`...), tables that are not `events`, an earlier view or a
//! CTE, table functions that reach outside the run, and the lateral `UNNEST`
//! forms the engine cannot execute (the message says what works instead).

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;

use datafusion::sql::sqlparser::ast::{
    CreateView, ObjectName, ObjectNamePart, Query, Spanned, Statement, TableFactor, Visit, Visitor,
};

use super::{EVENTS_TABLE, MappingError, Position, View};

/// Table functions that only generate values.
const ALLOWED_TABLE_FUNCTIONS: [&str; 2] = ["generate_series", "range"];

fn error_at(path: &Path, at: Position, message: impl Into<String>) -> MappingError {
    MappingError::At {
        path: path.to_path_buf(),
        at,
        message: message.into(),
    }
}

fn position(span: datafusion::sql::sqlparser::tokenizer::Span, fallback: Position) -> Position {
    if span.start.line == 0 {
        fallback
    } else {
        Position {
            line: span.start.line,
            column: span.start.column,
        }
    }
}

/// The view a statement defines, or why the statement is not allowed.
pub fn view_of(statement: Statement, path: &Path, at: Position) -> Result<View, MappingError> {
    let Statement::CreateView(create) = statement else {
        let kind: String = statement
            .to_string()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        return Err(error_at(
            path,
            at,
            format!("only CREATE VIEW statements are allowed in a mapping, found `{kind} ...`"),
        ));
    };
    let CreateView {
        or_alter,
        materialized,
        secure,
        name,
        columns,
        query,
        to,
        params,
        ..
    } = create;
    if or_alter || materialized || secure || to.is_some() || params.is_some() {
        return Err(error_at(
            path,
            at,
            "write a plain `CREATE VIEW name AS SELECT ...`; view options are not supported",
        ));
    }
    if !columns.is_empty() {
        return Err(error_at(
            path,
            at,
            "a column list after the view name is not supported; name the columns with AS in the SELECT",
        ));
    }
    let view_name = single_name(&name).ok_or_else(|| {
        error_at(
            path,
            position(name.span(), at),
            format!("view name {name} must be a single name without schema"),
        )
    })?;
    Ok(View {
        name: view_name,
        query,
        at,
    })
}

fn single_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.clone()),
        _ => None,
    }
}

/// Checks the tables and table factors a view's query uses.
pub fn check_query(
    query: &Query,
    earlier_views: &[&str],
    path: &Path,
    text: &str,
) -> Result<(), MappingError> {
    let mut ctes = CteNames::default();
    let _ = query.visit(&mut ctes);
    let mut allowed: HashSet<String> = ctes.0;
    allowed.insert(EVENTS_TABLE.to_string());
    allowed.extend(earlier_views.iter().map(|v| v.to_string()));
    let fallback = position(query.span(), Position { line: 1, column: 1 });
    let mut checker = Checker {
        allowed,
        path,
        fallback,
        text,
    };
    match query.visit(&mut checker) {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[derive(Default)]
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.clone());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Checker<'a> {
    allowed: HashSet<String>,
    path: &'a Path,
    fallback: Position,
    text: &'a str,
}

impl Checker<'_> {
    fn at(&self, span: datafusion::sql::sqlparser::tokenizer::Span) -> Position {
        position(span, self.fallback)
    }

    /// Where `needle` first appears from the statement's start (for names the
    /// parser gives no position, such as quoted strings).
    fn find(&self, needle: &str) -> Option<Position> {
        let from = self.fallback;
        for (i, line) in self
            .text
            .lines()
            .enumerate()
            .skip(from.line.saturating_sub(1) as usize)
        {
            let skip = if i as u64 + 1 == from.line {
                from.column.saturating_sub(1) as usize
            } else {
                0
            };
            if let Some(col) = line.get(skip..).and_then(|rest| rest.find(needle)) {
                return Some(Position {
                    line: i as u64 + 1,
                    column: (line[..skip + col].chars().count() + 1) as u64,
                });
            }
        }
        None
    }
}

impl Visitor for Checker<'_> {
    type Break = MappingError;

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<MappingError> {
        let refuse = |message: &str| {
            ControlFlow::Break(error_at(self.path, self.at(factor.span()), message))
        };
        match factor {
            TableFactor::Table { name, args, .. } => {
                let at = if name.span().start.line == 0 {
                    self.find(&name.to_string()).unwrap_or(self.fallback)
                } else {
                    position(name.span(), self.fallback)
                };
                let refuse = |message: &str| ControlFlow::Break(error_at(self.path, at, message));
                let Some(table) = single_name(name) else {
                    return refuse(&format!(
                        "table {name} is not available: a mapping reads only `events` and its own views"
                    ));
                };
                if args.is_some() {
                    if ALLOWED_TABLE_FUNCTIONS.contains(&table.to_ascii_lowercase().as_str()) {
                        return ControlFlow::Continue(());
                    }
                    return refuse(&format!(
                        "table function {table}() is not available in a mapping"
                    ));
                }
                if !self.allowed.contains(&table) {
                    return refuse(&format!(
                        "table {table} is not available: a mapping reads only `events`, its CTEs and views defined above it"
                    ));
                }
                ControlFlow::Continue(())
            }
            TableFactor::Derived { lateral: true, .. } => refuse(
                "LATERAL subqueries are not supported; flatten arrays with unnest() in the SELECT list, \
                 e.g. `SELECT id, unnest(items) AS item FROM events`",
            ),
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            TableFactor::UNNEST { .. } => refuse(
                "UNNEST in FROM (CROSS JOIN UNNEST, `FROM t, UNNEST(t.col)`) is not supported; \
                 call unnest() in the SELECT list instead, e.g. `SELECT id, unnest(items) AS item FROM events`",
            ),
            _ => refuse("this kind of table expression is not supported in a mapping"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::mapping::Mapping;
    use std::path::Path;

    fn check(sql: &str) -> Result<Mapping, String> {
        Mapping::parse(Path::new("m.sql"), sql).map_err(|e| e.to_string())
    }

    #[test]
    fn views_over_events_and_earlier_views_pass() {
        let m = check(
            "CREATE VIEW a AS SELECT id FROM events;\n\
             CREATE VIEW b AS WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN a USING (id);",
        )
        .unwrap();
        assert_eq!(m.output_view(), "b");
        let m = check(
            "CREATE VIEW output AS SELECT 1 AS x FROM events; CREATE VIEW other AS SELECT 2 AS y;",
        )
        .unwrap();
        assert_eq!(m.output_view(), "output");
    }

    #[test]
    fn other_statements_are_refused_with_their_position() {
        let err = check("CREATE VIEW a AS SELECT 1;\nDROP TABLE events;").unwrap_err();
        assert!(err.starts_with("m.sql:2:1: only CREATE VIEW"), "{err}");
        let err = check("COPY events TO '/tmp/x.csv';").unwrap_err();
        assert!(err.contains("only CREATE VIEW"), "{err}");
        let err = check("CREATE VIEW a AS SELECT 1;\nINSERT INTO a VALUES (1);").unwrap_err();
        assert!(err.contains("m.sql:2:1"), "{err}");
    }

    #[test]
    fn other_tables_and_file_access_are_refused() {
        let err = check("CREATE VIEW a AS\nSELECT * FROM secrets;").unwrap_err();
        assert!(
            err.starts_with("m.sql:2:15: table secrets is not available"),
            "{err}"
        );
        let err = check("CREATE VIEW a AS SELECT * FROM '/etc/passwd';").unwrap_err();
        assert!(err.contains("not available"), "{err}");
        let err = check("CREATE VIEW a AS SELECT * FROM other.events;").unwrap_err();
        assert!(err.contains("not available"), "{err}");
        let err = check("CREATE VIEW a AS SELECT * FROM read_csv('/etc/passwd');").unwrap_err();
        assert!(err.contains("table function read_csv()"), "{err}");
        let err =
            check("CREATE VIEW b AS SELECT * FROM a; CREATE VIEW a AS SELECT 1;").unwrap_err();
        assert!(err.contains("table a is not available"), "{err}");
        check("CREATE VIEW a AS SELECT * FROM generate_series(1, 3);").unwrap();
    }

    #[test]
    fn lateral_unnest_gets_an_explanation() {
        let err =
            check("CREATE VIEW a AS SELECT * FROM events CROSS JOIN UNNEST(events.items) AS i;")
                .unwrap_err();
        assert!(err.contains("unnest() in the SELECT list"), "{err}");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = check("CREATE VIEW a AS\nSELECT id,, name FROM events;").unwrap_err();
        assert!(err.starts_with("m.sql:2:"), "{err}");
        assert!(err.contains("SQL syntax"), "{err}");
    }

    #[test]
    fn reserved_names_are_refused() {
        assert!(
            check("CREATE VIEW events AS SELECT 1;")
                .unwrap_err()
                .contains("cannot be named")
        );
        assert!(
            check("CREATE VIEW __x AS SELECT 1;")
                .unwrap_err()
                .contains("cannot be named")
        );
        assert!(
            check("CREATE VIEW a AS SELECT 1; CREATE VIEW a AS SELECT 2;")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            check("-- nothing\n")
                .unwrap_err()
                .contains("no CREATE VIEW")
        );
    }
}
