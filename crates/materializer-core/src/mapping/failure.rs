//! Where a mapping that planned fails on events: the first event it fails
//! on, the view and the expression that fail on it, and what the engine
//! said, once.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{SelectItem, Spanned};

use super::{EVENTS_TABLE, Engine, Mapping, Position, View, tidy_engine_message};
use crate::schema::OFFSET_COLUMN;

/// A mapping failing on an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path}:{line}:{column}: in view {view}: {message} (the first event it fails on: {event})",
    path = path.display(),
    line = at.line,
    column = at.column
)]
pub struct QueryFailure {
    pub path: PathBuf,
    pub view: String,
    /// The expression that fails (the view's start when no single one does).
    pub at: Position,
    pub message: String,
    /// The event, as the message names it: `partition 0, offset ...`.
    pub event: String,
    /// The failing event's place among the rows given (0-based).
    pub row: u64,
}

/// The rows a mapping was applied to, each batch with the numbers its rows
/// are known by.
pub type NumberedBatch = (RecordBatch, Vec<u64>);

impl Mapping {
    /// The first event of `batches` the mapping fails on, with its view and
    /// expression, or `None` when no single batch fails on its own. `event`
    /// names the event from its row number and its `_offset` (when the rows
    /// carry it).
    pub async fn locate_failure(
        &self,
        engine: &Engine,
        batches: impl Iterator<Item = NumberedBatch>,
        event: impl Fn(u64, Option<&str>) -> String,
    ) -> Option<QueryFailure> {
        for (batch, numbers) in batches {
            if batch.num_rows() == 0 || self.error_on(engine, &batch).await.is_none() {
                continue;
            }
            // The shortest failing prefix ends with the first failing event.
            let (mut lo, mut hi) = (1, batch.num_rows());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.error_on(engine, &batch.slice(0, mid)).await.is_some() {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let index = hi - 1;
            let single = batch.slice(index, 1);
            let failing = if self.error_on(engine, &single).await.is_some() {
                single.clone()
            } else {
                batch.slice(0, hi)
            };
            let (view, at, message) = self.failing_expression(engine, &failing).await?;
            let offset = offset_of(&single);
            let row = numbers.get(index).copied().unwrap_or(index as u64);
            return Some(QueryFailure {
                path: self.path.clone(),
                view: view.name.clone(),
                at,
                message,
                event: event(row, offset.as_deref()),
                row,
            });
        }
        None
    }

    /// What the mapping's output fails with on `events`, if it does.
    async fn error_on(&self, engine: &Engine, events: &RecordBatch) -> Option<DataFusionError> {
        let ctx = engine.session();
        let table = MemTable::try_new(events.schema(), vec![vec![events.clone()]]).ok()?;
        let frame = self.apply(&ctx, Arc::new(table)).await.ok()?;
        frame.collect().await.err()
    }

    /// The first view that fails on `events`, the place of its expression
    /// that fails, and the engine's message.
    async fn failing_expression(
        &self,
        engine: &Engine,
        events: &RecordBatch,
    ) -> Option<(&View, Position, String)> {
        let ctx = engine.session();
        let table = MemTable::try_new(events.schema(), vec![vec![events.clone()]]).ok()?;
        ctx.register_table(EVENTS_TABLE, Arc::new(table)).ok()?;
        for view in &self.views {
            let plan = self.plan_view(&ctx, view).await.ok()?;
            let error = match ctx.execute_logical_plan(plan.clone()).await {
                Ok(frame) => frame.collect().await.err(),
                Err(e) => Some(e),
            };
            if let Some(error) = error {
                let (at, message) = match expression_failing(&ctx, view).await {
                    Some(found) => found,
                    None => (view.at, engine_message(&error)),
                };
                return Some((view, at, message));
            }
            ctx.register_table(
                view.name.as_str(),
                Arc::new(ViewTable::new(plan, Some(view.query.to_string()))),
            )
            .ok()?;
        }
        None
    }
}

/// Of `view`'s condition and selected expressions (in this order), the
/// first that fails over what `ctx` holds: its place and the message.
async fn expression_failing(ctx: &SessionContext, view: &View) -> Option<(Position, String)> {
    let (with, from, select) = view.select_parts()?;
    let filter = match &select.selection {
        Some(condition) => {
            let sql = format!("{with}SELECT 1 FROM {from} WHERE {condition}");
            if let Some(error) = fails(ctx, &sql).await {
                return Some((place(condition.span(), view.at), engine_message(&error)));
            }
            format!(" WHERE {condition}")
        }
        None => String::new(),
    };
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => continue,
        };
        let sql = format!("{with}SELECT {expr} FROM {from}{filter}");
        if let Some(error) = fails(ctx, &sql).await {
            return Some((place(expr.span(), view.at), engine_message(&error)));
        }
    }
    None
}

async fn fails(ctx: &SessionContext, sql: &str) -> Option<DataFusionError> {
    match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await.err(),
        Err(_) => None,
    }
}

fn place(span: datafusion::sql::sqlparser::tokenizer::Span, otherwise: Position) -> Position {
    if span.start.line == 0 {
        return otherwise;
    }
    Position {
        line: span.start.line,
        column: span.start.column.max(1),
    }
}

/// The engine's message, once: its innermost error without the kind it was
/// wrapped in.
pub(crate) fn engine_message(error: &DataFusionError) -> String {
    let root = error.find_root().strip_backtrace();
    let mut message = tidy_engine_message(&root);
    for prefix in ["Arrow error: ", "External error: ", "Execution error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    message
}

/// The `_offset` of a one-row batch, when it carries one.
fn offset_of(batch: &RecordBatch) -> Option<String> {
    let column = batch.column_by_name(OFFSET_COLUMN)?;
    let offsets = column.as_any().downcast_ref::<StringArray>()?;
    (offsets.len() == 1 && offsets.is_valid(0)).then(|| offsets.value(0).to_string())
}
