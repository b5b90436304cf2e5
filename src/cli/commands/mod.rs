//! One file per subcommand.

pub mod cluster;
pub mod explain;
pub mod healthcheck;
pub mod preview;
pub mod record;
pub mod run;
pub mod serve;
pub mod topics;
pub mod warehouse_sql;
