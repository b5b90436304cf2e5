//! How big a mapping may be: analyst SQL is input, and no input may end the
//! process.
//!
//! The parser builds a left-deep tree for `1 + 1 + ... + 1` without
//! recursing, but everything after it (checking, planning, printing, even
//! dropping the tree) recurses once per level. So a mapping is parsed and
//! measured on a thread with a large stack, and refused there, with the
//! position, when it is larger or deeper than the limits below; what passes
//! is shallow enough for any thread.

use std::ops::ControlFlow;
use std::path::Path;

use datafusion::sql::sqlparser::ast::{Expr, Query, Spanned, Visit, Visitor};

use super::{MappingError, Position};

/// Bytes of SQL a mapping may hold.
pub const MAX_MAPPING_BYTES: usize = 256 << 10;
/// Views a mapping may define.
pub const MAX_VIEWS: usize = 100;
/// How deep expressions and subqueries may nest in one view.
pub const MAX_DEPTH: usize = 100;

/// The stack of the thread a mapping is parsed and measured on: enough for
/// the deepest tree [`MAX_MAPPING_BYTES`] of SQL can describe. Only the
/// pages a deep tree touches are ever used.
const PARSE_STACK_BYTES: usize = 512 << 20;

/// Runs `work` on a thread with a stack large enough for any mapping of at
/// most [`MAX_MAPPING_BYTES`], and gives back its result.
pub(super) fn on_large_stack<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    std::thread::Builder::new()
        .name("mapping-parse".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(work)?
        .join()
        .map_err(|_| std::io::Error::other("the mapping parser panicked"))
}

/// Refuses a mapping text longer than [`MAX_MAPPING_BYTES`].
pub(super) fn check_size(path: &Path, text: &str) -> Result<(), MappingError> {
    if text.len() > MAX_MAPPING_BYTES {
        return Err(MappingError::File {
            path: path.to_path_buf(),
            message: format!(
                "the mapping is {} KiB; a mapping may hold at most {} KiB of SQL",
                text.len().div_ceil(1024),
                MAX_MAPPING_BYTES >> 10
            ),
        });
    }
    Ok(())
}

/// Refuses the view that makes the mapping hold more than [`MAX_VIEWS`].
pub(super) fn check_view_count(
    path: &Path,
    count: usize,
    at: Position,
) -> Result<(), MappingError> {
    if count > MAX_VIEWS {
        return Err(MappingError::At {
            path: path.to_path_buf(),
            at,
            message: format!("a mapping may define at most {MAX_VIEWS} views"),
        });
    }
    Ok(())
}

/// Refuses a query whose expressions or subqueries nest deeper than
/// [`MAX_DEPTH`], pointing at the first node too deep. Call it on a large
/// stack: the walk recurses once per level.
pub(super) fn check_depth(
    path: &Path,
    query: &Query,
    fallback: Position,
) -> Result<(), MappingError> {
    let mut depth = Depth {
        current: 0,
        fallback,
    };
    match query.visit(&mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(at) => Err(MappingError::At {
            path: path.to_path_buf(),
            at,
            message: format!(
                "expressions and subqueries nest deeper than {MAX_DEPTH} levels; split the \
                 expression over several views or columns"
            ),
        }),
    }
}

struct Depth {
    current: usize,
    fallback: Position,
}

impl Depth {
    fn enter(
        &mut self,
        span: datafusion::sql::sqlparser::tokenizer::Span,
    ) -> ControlFlow<Position> {
        self.current += 1;
        if self.current > MAX_DEPTH {
            let at = if span.start.line == 0 {
                self.fallback
            } else {
                Position {
                    line: span.start.line,
                    column: span.start.column,
                }
            };
            return ControlFlow::Break(at);
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = Position;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Position> {
        self.enter(query.span())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<Position> {
        self.current -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Position> {
        self.enter(expr.span())
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<Position> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}
