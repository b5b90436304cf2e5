//! Integration tests: whole runs through the public surface.

// A test that meets an unexpected error should stop right there, loudly.
#![allow(clippy::unwrap_used)]

mod servers;
mod sql_errors;
mod stages;
mod support;
mod webdriver;

mod api;
mod cli;
mod cluster;
mod commit;
mod config;
mod console;
mod exit_codes;
mod foundation;
mod hostile;
mod model;
mod nakadi;
mod own_events;
mod readme;
mod state;
mod testkit;
mod warehouse;
