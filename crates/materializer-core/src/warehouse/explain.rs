//! What `materializer explain` shows of a topic after its columns.
//!
//! Here, not on [`Topic`], because it ends with the warehouse contract: the
//! warehouse depends on the configuration, never the other way round.

use super::contract;
use crate::config::Topic;
use crate::mapping::compaction::Explained;

/// The SQL chain a run of `topic` executes, then the warehouse contract.
pub fn explain(topic: &Topic) -> String {
    topic.compaction().explain(&Explained {
        topic: topic.name(),
        event_columns: &topic.schema().event_columns(),
        mapping_path: &topic.mapping().path.display().to_string(),
        mapping_text: &topic.mapping().text,
        output_view: topic.mapping().output_view(),
        keep_history: topic.keeps_history(),
        deletes: topic.deletes().map(|d| d.sql()),
        contract: &contract(topic),
    })
}
