//! Runs on an Apache DataFusion Ballista cluster.
//!
//! The product's own binary starts both of Ballista's roles
//! ([`scheduler::serve`], [`executor::serve`]) with the product's plan node
//! and its codec, which the stock Ballista binaries do not know. A run with
//! `--cluster df://host:port` plans and commits as a local run does; in
//! between, [`Cluster`] submits the run as one Ballista job and takes the
//! tasks' reports of the files they wrote; a stopped run cancels its job.
//!
//! ```text
//! driver     plan ──▶ StepExec(s) ◀── DataSourceExec (one row per partition)
//! executor   compact = false: StepExec(run) per partition ──▶ reports
//!            compacting:      StepExec(keys) per partition ─ shuffle ─▶
//!                             StepExec(decide) per key bucket ─ shuffle ─▶
//!                             StepExec(write) per partition ──▶ reports
//! driver     reports ──▶ manifest (files, key state), commit
//! ```

mod codec;
mod driver;
mod exchange;
pub mod executor;
mod failure;
mod node;
mod received;
pub mod scheduler;
mod steps;
mod submit;
mod worker;

pub use driver::{Cluster, ClusterAddress};
pub use worker::Worker;
