//! Deletes: a SQL predicate over `events` that marks an event as the
//! deletion of its key. Data change events delete on `data_op = 'D'`; any
//! topic can set `delete_when` in `topic.toml` (`"false"` deletes nothing).
//!
//! A delete is a version like any other for compaction and corrections: a
//! late delete corrects the past, it does not delete the newer state. The
//! mapping never sees deletes; the run's KEYS file says which keys they end.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::physical_expr::PhysicalExpr;

use super::Engine;
use super::limits::MAX_MAPPING_BYTES;

/// What marks an event as a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletePredicate {
    sql: String,
}

impl DeletePredicate {
    /// The predicate of Nakadi's data change events.
    pub fn data_change() -> DeletePredicate {
        DeletePredicate {
            sql: "data_op = 'D'".into(),
        }
    }

    pub fn new(sql: impl Into<String>) -> DeletePredicate {
        DeletePredicate { sql: sql.into() }
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Plans the predicate over `events`: it must be a boolean expression of
    /// the events' columns.
    pub fn check(&self, engine: &Engine, events: &SchemaRef) -> Result<(), DataFusionError> {
        self.compile(engine, events).map(|_| ())
    }

    /// The predicate, ready to evaluate over decoded batches of `events`.
    pub fn compile(
        &self,
        engine: &Engine,
        events: &SchemaRef,
    ) -> Result<CompiledDeletes, DataFusionError> {
        if self.sql.len() > MAX_MAPPING_BYTES {
            return Err(DataFusionError::Plan(format!(
                "the predicate is longer than {} KiB",
                MAX_MAPPING_BYTES >> 10
            )));
        }
        let ctx = engine.session();
        let schema = DFSchema::try_from(events.as_ref().clone())?;
        let expr = ctx.parse_sql_expr(&self.sql, &schema)?;
        let data_type = datafusion::logical_expr::ExprSchemable::get_type(&expr, &schema)?;
        if data_type != DataType::Boolean {
            return Err(DataFusionError::Plan(format!(
                "the predicate is {data_type}, not a boolean (true for an event that deletes its key)"
            )));
        }
        Ok(CompiledDeletes {
            expr: ctx.create_physical_expr(expr, &schema)?,
        })
    }
}

/// A delete predicate compiled for one events schema.
#[derive(Clone, Debug)]
pub struct CompiledDeletes {
    expr: Arc<dyn PhysicalExpr>,
}

impl CompiledDeletes {
    /// Which events of `batch` delete their key (NULL counts as no).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, DataFusionError> {
        let value = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let flags = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                DataFusionError::Internal("the delete predicate is not boolean".into())
            })?;
        Ok(flags
            .iter()
            .map(|flag| Some(flag.unwrap_or(false)))
            .collect())
    }
}
