//! Mapping: the analyst's SQL views over `events`, and the SQL the engine
//! generates around them.
//!
//! A topic's `mapping.sql` holds one or more `CREATE VIEW` statements over a
//! table named `events`; the view named `output` (or else the last one) is what
//! the files hold. The engine generates the compaction and the correction split
//! over the topic's partitioning and ordering keys (see [`compaction`]) and
//! applies the mapping to both inputs.

pub mod capped;
pub mod compaction;
pub mod deletes;
pub mod engine;
pub mod failure;
mod hints;
pub mod limits;
pub mod prune;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, Select, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

pub use compaction::Compaction;
pub use engine::{Engine, EngineSettings};
pub use failure::QueryFailure;

/// The name the mapping reads from.
pub const EVENTS_TABLE: &str = "events";
/// The view that is the output when a mapping defines it.
pub const OUTPUT_VIEW: &str = "output";

/// A position in a mapping file (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A problem at a place in the mapping file.
    #[error("{path}:{line}:{column}: {message}", path = path.display(), line = at.line, column = at.column)]
    At {
        path: PathBuf,
        at: Position,
        message: String,
    },
    /// A problem with the mapping as a whole.
    #[error("{path}: {message}", path = path.display())]
    File { path: PathBuf, message: String },
    /// The query engine failed while planning generated SQL.
    #[error("{context}")]
    Engine {
        context: String,
        #[source]
        source: DataFusionError,
    },
}

impl MappingError {
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

/// One analyst view.
#[derive(Clone, Debug)]
pub struct View {
    pub name: String,
    pub query: Box<Query>,
    pub at: Position,
}

impl View {
    /// The view's query as a SELECT over a FROM: its WITH clause as SQL
    /// (followed by a space; empty without one), its FROM as SQL, and the
    /// SELECT. `None` for any other query.
    pub(crate) fn select_parts(&self) -> Option<(String, String, &Select)> {
        let SetExpr::Select(select) = self.query.body.as_ref() else {
            return None;
        };
        if select.from.is_empty() {
            return None;
        }
        let with = self
            .query
            .with
            .as_ref()
            .map(|w| format!("{w} "))
            .unwrap_or_default();
        let from: Vec<String> = select.from.iter().map(ToString::to_string).collect();
        Some((with, from.join(", "), select))
    }
}

/// The analyst's mapping, parsed and checked for what it may do.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub path: PathBuf,
    pub text: String,
    pub views: Vec<View>,
    /// Index into `views` of the output view.
    pub output: usize,
}

impl Mapping {
    /// Parses `text` (the contents of `path`): only `CREATE VIEW` statements over
    /// `events` and earlier views are accepted, within the sizes of [`limits`].
    pub fn parse(path: &Path, text: &str) -> Result<Mapping, MappingError> {
        limits::check_size(path, text)?;
        let (owned_path, owned_text) = (path.to_path_buf(), text.to_string());
        limits::on_large_stack(move || Mapping::parse_here(&owned_path, &owned_text)).map_err(
            |e| MappingError::File {
                path: path.to_path_buf(),
                message: format!("cannot start the mapping parser: {e}"),
            },
        )?
    }

    fn parse_here(path: &Path, text: &str) -> Result<Mapping, MappingError> {
        let statements = parse_statements(text).map_err(|e| parse_error(path, e))?;
        let mut views: Vec<View> = Vec::new();
        for (at, statement) in statements {
            let view = sandbox::view_of(statement, path, at)?;
            if view.name == EVENTS_TABLE || view.name.starts_with("__") {
                return Err(MappingError::At {
                    path: path.to_path_buf(),
                    at: view.at,
                    message: format!(
                        "a view cannot be named {:?}: `events` and names starting with `__` belong to the engine",
                        view.name
                    ),
                });
            }
            if views.iter().any(|v| v.name == view.name) {
                return Err(MappingError::At {
                    path: path.to_path_buf(),
                    at: view.at,
                    message: format!("view {:?} is defined twice", view.name),
                });
            }
            limits::check_view_count(path, views.len() + 1, view.at)?;
            limits::check_depth(path, &view.query, view.at)?;
            let known: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
            sandbox::check_query(&view.query, &known, path, text)?;
            views.push(view);
        }
        if views.is_empty() {
            return Err(MappingError::File {
                path: path.to_path_buf(),
                message:
                    "no CREATE VIEW statement; a mapping needs at least one view over `events`"
                        .into(),
            });
        }
        let output = views
            .iter()
            .position(|v| v.name == OUTPUT_VIEW)
            .unwrap_or(views.len() - 1);
        Ok(Mapping {
            path: path.to_path_buf(),
            text: text.to_string(),
            views,
            output,
        })
    }

    pub fn output_view(&self) -> &str {
        &self.views[self.output].name
    }

    /// Registers `events` and the views in `ctx` and returns the output's rows.
    pub async fn apply(
        &self,
        ctx: &SessionContext,
        events: Arc<dyn TableProvider>,
    ) -> Result<DataFrame, MappingError> {
        ctx.register_table(EVENTS_TABLE, events)
            .map_err(|e| self.engine_error(e))?;
        for view in &self.views {
            let plan = self.plan_view(ctx, view).await?;
            ctx.register_table(
                view.name.as_str(),
                Arc::new(ViewTable::new(plan, Some(view.query.to_string()))),
            )
            .map_err(|e| self.engine_error(e))?;
        }
        ctx.table(self.output_view())
            .await
            .map_err(|e| self.engine_error(e))
    }

    /// Plans every view against an empty `events` table of `events_schema` and
    /// returns the output's schema. Errors point at the line and column.
    pub async fn validate(
        &self,
        engine: &Engine,
        events_schema: SchemaRef,
    ) -> Result<SchemaRef, MappingError> {
        let ctx = engine.session();
        let empty =
            MemTable::try_new(events_schema, vec![vec![]]).map_err(|e| self.engine_error(e))?;
        let frame = self.apply(&ctx, Arc::new(empty)).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        Ok(schema)
    }

    /// Checks that every output column has a flat type a CSV file can hold.
    pub fn check_flat(&self, output: &SchemaRef) -> Result<(), MappingError> {
        for field in output.fields() {
            if matches!(
                field.data_type(),
                DataType::Struct(_)
                    | DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(_, _)
                    | DataType::Map(_, _)
                    | DataType::Union(_, _)
            ) {
                let view = &self.views[self.output];
                return Err(MappingError::At {
                    path: self.path.clone(),
                    at: view.at,
                    message: format!(
                        "output column {:?} is {}; CSV holds flat columns only: select its fields \
                         (`col['field']` or `col.field`) or flatten it with unnest()",
                        field.name(),
                        crate::schema::sql_type(field.data_type())
                    ),
                });
            }
        }
        Ok(())
    }

    async fn plan_view(
        &self,
        ctx: &SessionContext,
        view: &View,
    ) -> Result<LogicalPlan, MappingError> {
        let statement = DfStatement::Statement(Box::new(Statement::Query(view.query.clone())));
        let plan = match ctx.state().statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.explain_planning_error(ctx, view, e).await),
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| self.planning_error(view, e))?;
        Ok(plan)
    }

    /// A view that does not plan: a field a struct does not have is pointed
    /// at where the view reads it, with the struct's fields; everything
    /// else as [`Self::planning_error`] says it.
    async fn explain_planning_error(
        &self,
        ctx: &SessionContext,
        view: &View,
        err: DataFusionError,
    ) -> MappingError {
        let root = tidy_engine_message(&err.find_root().strip_backtrace());
        let until = self
            .views
            .iter()
            .map(|v| v.at)
            .find(|at| at.line > view.at.line);
        let access = hints::missing_struct_field(&root).and_then(|field| {
            Some((
                field,
                hints::struct_access(&self.text, field, view.at, until)?,
            ))
        });
        let Some((field, (at, path))) = access else {
            return self.planning_error(view, err);
        };
        let message = match self.struct_fields(ctx, view, &path).await {
            Some(fields) => format!(
                "in view {}: {path} has no field {field}; its fields are {}{}",
                view.name,
                fields.join(", "),
                hints::did_you_mean(field, fields.iter().map(String::as_str))
            ),
            None => format!("in view {}: {path} has no field {field}", view.name),
        };
        MappingError::At {
            path: self.path.clone(),
            at,
            message,
        }
    }

    /// The fields of the struct `path` names in `view`'s FROM, when it is one.
    async fn struct_fields(
        &self,
        ctx: &SessionContext,
        view: &View,
        path: &str,
    ) -> Option<Vec<String>> {
        let (with, from, _) = view.select_parts()?;
        let sql = format!("{with}SELECT {path} FROM {from}");
        let plan = ctx.state().create_logical_plan(&sql).await.ok()?;
        match plan.schema().fields().first()?.data_type() {
            DataType::Struct(fields) => Some(fields.iter().map(|f| f.name().clone()).collect()),
            _ => None,
        }
    }

    fn planning_error(&self, view: &View, err: DataFusionError) -> MappingError {
        let diagnostic = err.iter().find_map(|e| e.diagnostic()).cloned();
        let root = err.find_root().strip_backtrace();
        let message = tidy_engine_message(&root);
        match diagnostic {
            Some(d) => {
                let at = d
                    .span
                    .filter(|s| s.start.line > 0)
                    .map(|s| Position {
                        line: s.start.line,
                        column: s.start.column,
                    })
                    .unwrap_or(view.at);
                // The type-mismatch diagnostic names neither the types nor
                // the operator; the engine's own message names both.
                let mut message = if d.message.is_empty() {
                    message
                } else if d.message.contains("incompatible types") && !message.is_empty() {
                    format!("{}: {}", d.message, with_sql_type_names(&message))
                } else {
                    d.message.clone()
                };
                for help in &d.helps {
                    message.push_str(&format!("; {}", help.message));
                }
                if let Some((field, valid)) = hints::missing_column(&err) {
                    message.push_str(&hints::missing_column_hint(field, valid));
                }
                MappingError::At {
                    path: self.path.clone(),
                    at,
                    message: format!("in view {}: {message}", view.name),
                }
            }
            None => MappingError::At {
                path: self.path.clone(),
                at: find_mentioned_column(&self.text, &root, view.at).unwrap_or(view.at),
                message: format!("in view {}: {message}", view.name),
            },
        }
    }

    fn engine_error(&self, source: DataFusionError) -> MappingError {
        MappingError::Engine {
            context: format!("{}", self.path.display()),
            source,
        }
    }
}

fn parse_error(path: &Path, err: ParserError) -> MappingError {
    let text = match &err {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "statement nests too deeply".into(),
    };
    // sqlparser ends its messages with " at Line: L, Column: C".
    if let Some(idx) = text.rfind(" at Line: ") {
        let (message, place) = text.split_at(idx);
        let mut numbers = place
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<u64>().ok());
        if let (Some(line), Some(column)) = (numbers.next(), numbers.next()) {
            return MappingError::At {
                path: path.to_path_buf(),
                at: Position { line, column },
                message: format!("SQL syntax: {message}"),
            };
        }
    }
    MappingError::File {
        path: path.to_path_buf(),
        message: format!("SQL syntax: {text}"),
    }
}

/// The statements of a mapping with the position of their first token
/// (statement spans are not complete for every kind of statement).
fn parse_statements(text: &str) -> Result<Vec<(Position, Statement)>, ParserError> {
    let mut parser = Parser::new(&GenericDialect {}).try_with_sql(text)?;
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let at = Position {
            line: next.span.start.line.max(1),
            column: next.span.start.column.max(1),
        };
        statements.push((at, parser.parse_statement()?));
        let after = parser.peek_token();
        if after.token != Token::SemiColon && after.token != Token::EOF {
            return parser.expected("';' at the end of the statement", after);
        }
    }
    Ok(statements)
}

/// DataFusion's messages start with the error kind; keep the part a user reads.
pub(crate) fn tidy_engine_message(message: &str) -> String {
    let mut m = message.trim();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
    }
    m.to_string()
}

/// The engine's message with the Arrow names of simple types (`Int64`,
/// `Utf8`) spelled as the mapping's SQL spells them (`BIGINT`, `VARCHAR`).
fn with_sql_type_names(message: &str) -> String {
    use arrow::datatypes::DataType;
    let sql_name = |word: &str| {
        let data_type: DataType = word.parse().ok()?;
        let simple = data_type.is_integer()
            || data_type.is_floating()
            || matches!(
                data_type,
                DataType::Boolean
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Date32
            );
        simple.then(|| crate::schema::sql_type(&data_type))
    };
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    for c in message.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        out.push_str(&sql_name(&word).unwrap_or_else(|| word.clone()));
        word.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// When the engine names a missing column without a position, find where the
/// view mentions it.
fn find_mentioned_column(text: &str, message: &str, from: Position) -> Option<Position> {
    let start = message.find("No field named ")? + "No field named ".len();
    let rest = &message[start..];
    let name: String = rest
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        return None;
    }
    for (i, line) in text.lines().enumerate().skip((from.line - 1) as usize) {
        if let Some(col) = line.find(&name) {
            return Some(Position {
                line: i as u64 + 1,
                column: col as u64 + 1,
            });
        }
    }
    None
}

/// Renders a dotted column path as SQL (`metadata.occurred_at` ->
/// `"metadata"['occurred_at']`).
pub fn sql_path(path: &str) -> String {
    let mut parts = path.split('.');
    let mut out = quote_ident(parts.next().unwrap_or_default());
    for part in parts {
        out.push_str(&format!("['{}']", part.replace('\'', "''")));
    }
    out
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::with_sql_type_names;

    #[test]
    fn type_mismatches_speak_sql_type_names() {
        assert_eq!(
            with_sql_type_names("Cannot coerce arithmetic expression Int64 + Utf8 to valid types"),
            "Cannot coerce arithmetic expression BIGINT + VARCHAR to valid types"
        );
        // Words that only contain a type's name stay as they are.
        assert_eq!(
            with_sql_type_names("column Int64_count: Float64 vs Boolean"),
            "column Int64_count: DOUBLE vs BOOLEAN"
        );
    }
}
