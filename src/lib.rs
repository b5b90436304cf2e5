//! materializer: the command line, the HTTP API and the web console over the
//! engine in `materializer-core`. They are thin edges: they parse what the
//! user asked for, call [`materializer_core::run::execute`] and friends, and
//! turn the engine's errors into exit codes and problem documents.

pub mod api;
pub mod cli;
pub mod console;
