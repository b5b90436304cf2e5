//! Integration tests: whole runs through the public surface.

mod servers;
mod support;

mod api;
mod cli;
mod commit;
mod config;
mod foundation;
mod nakadi;
mod warehouse;
