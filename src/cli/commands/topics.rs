//! `materializer topics`: every topic, and why a broken one does not load.

use materializer_core::mapping::Engine;

use crate::cli::args::Context;
use crate::cli::error::CliError;
use crate::cli::load_catalog;

pub(crate) async fn topics(engine: &Engine, ctx: &Context) -> Result<(), CliError> {
    let catalog = load_catalog(engine, ctx).await?;
    if catalog.topics.is_empty() && catalog.broken.is_empty() {
        println!("no topics under {}", catalog.dir.display());
    }
    for (name, topic) in &catalog.topics {
        println!(
            "{name}\n  event type      {}\n  keys            partitioning {} / ordering {}\n  output          {} {}\n  mapping         {} (output view {})",
            topic.event_type(),
            topic.compaction().partitioning_key.join(", "),
            topic.compaction().ordering_key,
            topic.output().format.extension(),
            topic
                .output()
                .location
                .as_deref()
                .unwrap_or("(run's --output)"),
            topic.mapping().path.display(),
            topic.mapping().output_view(),
        );
    }
    for (name, reason) in &catalog.broken {
        println!("{name}  DOES NOT LOAD\n  {reason}");
    }
    if catalog.broken.is_empty() {
        Ok(())
    } else {
        Err(CliError::TopicsBroken {
            count: catalog.broken.len(),
        })
    }
}
