//! materializer: the command line and the HTTP API over the engine in
//! `materializer-core`. Both are thin edges: they parse what the user asked
//! for, call [`materializer_core::run::execute`] and friends, and turn the
//! engine's errors into exit codes and problem documents.

pub mod api;
pub mod cli;
