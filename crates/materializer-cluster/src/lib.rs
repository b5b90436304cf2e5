//! Runs on an Apache DataFusion Ballista cluster.
//!
//! The product's own binary starts both of Ballista's roles
//! ([`scheduler::serve`], [`executor::serve`]) with the product's plan node
//! and its codec, which the stock Ballista binaries do not know. A run with
//! `--cluster df://host:port` plans and commits as a local run does; in
//! between, [`Cluster`] submits one task per Nakadi partition that holds new
//! events: the executor reads, decodes, maps and writes that partition and
//! reports the files it wrote.
//!
//! ```text
//! driver     plan ──▶ PartitionRunExec ◀── DataSourceExec (one row per partition)
//! executor   PartitionRunExec: run_partition ──▶ report (JSON, one row per partition)
//! driver     reports ──▶ manifest, commit
//! ```

mod codec;
mod driver;
pub mod executor;
mod failure;
mod node;
pub mod scheduler;
mod worker;

pub use driver::{Cluster, ClusterAddress};
pub use worker::Worker;
