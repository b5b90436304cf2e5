//! One file per subcommand.

pub mod run;
pub mod serve;
pub mod warehouse_sql;
