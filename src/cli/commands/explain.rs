//! `materializer explain`: the columns of `events` and the SQL chain a run executes.

use materializer_core::mapping::Engine;

use crate::cli::args::Context;
use crate::cli::error::CliError;
use crate::cli::load_catalog;

pub(crate) async fn explain(engine: &Engine, ctx: &Context, topic: &str) -> Result<(), CliError> {
    let catalog = load_catalog(engine, ctx).await?;
    let topic = catalog.topic(topic)?;
    let mut out = String::new();
    out.push_str(&format!(
        "-- Columns of `events` (schema from {}):\n",
        topic.schema().origin
    ));
    for field in topic.schema().events.fields() {
        out.push_str(&format!(
            "--   {} {}{}\n",
            field.name(),
            materializer_core::schema::sql_type(field.data_type()),
            if field.is_nullable() { "" } else { " NOT NULL" }
        ));
    }
    for warning in &topic.schema().warnings {
        out.push_str(&format!("-- left out: {warning}\n"));
    }
    out.push('\n');
    out.push_str(&materializer_core::warehouse::explain(&topic));
    print!("{out}");
    Ok(())
}
