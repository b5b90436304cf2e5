//! Integration tests: whole runs through the public surface.

mod support;

mod cli;
mod config;
mod foundation;
