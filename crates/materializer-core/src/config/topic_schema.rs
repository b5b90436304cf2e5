//! The schema of a topic's events: what the JSON schema gives, and the
//! narrower part of it a run decodes.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::mapping::deletes::DeletePredicate;
use crate::mapping::{Engine, Mapping};
use crate::schema::{
    Category, EventTypeSchema, SYSTEM_COLUMNS, SchemaError, with_some_system_columns,
    with_system_columns,
};

/// The schema of a topic's events.
#[derive(Clone, Debug)]
pub struct TopicSchema {
    pub category: Category,
    /// Columns as decoded from the JSON events.
    pub payload: SchemaRef,
    /// `payload` plus the system columns: the `events` table.
    pub events: SchemaRef,
    /// What a run decodes: `payload` without the struct fields that neither
    /// the mapping nor the keys read (see [`crate::mapping::prune`]).
    pub read_payload: SchemaRef,
    /// `read_payload` plus the system columns the mapping reads: the
    /// `events` table of a run.
    pub read_events: SchemaRef,
    /// Parts of the JSON schema that have no table form.
    pub warnings: Vec<String>,
    /// Where the schema came from.
    pub origin: String,
}

impl TopicSchema {
    pub fn from_event_type(
        doc: &EventTypeSchema,
        origin: String,
    ) -> Result<TopicSchema, SchemaError> {
        let (payload, warnings) = doc.to_arrow()?;
        let payload = Arc::new(payload);
        let events = with_system_columns(&payload);
        Ok(TopicSchema {
            category: doc.category,
            read_payload: payload.clone(),
            read_events: events.clone(),
            events,
            payload,
            warnings,
            origin,
        })
    }

    /// Narrows what runs decode to what `mapping` and `keys` read, when the
    /// mapping gives the same output over the narrower `events` table.
    pub(super) async fn prune_for(
        &mut self,
        engine: &Engine,
        mapping: &Mapping,
        deletes: Option<&DeletePredicate>,
        keys: &[String],
        output: &SchemaRef,
    ) {
        // The delete predicate reads columns too: analyse it with the mapping.
        let read = match deletes {
            Some(deletes) => format!("{}\n{}", mapping.text, deletes.sql()),
            None => mapping.text.clone(),
        };
        let pruned = crate::mapping::prune::pruned_payload(&self.payload, &read, keys);
        let system = crate::mapping::prune::system_columns_read(&read);
        if pruned.is_none() && system.len() == SYSTEM_COLUMNS.len() {
            return;
        }
        let pruned = pruned.unwrap_or_else(|| self.payload.as_ref().clone());
        let events = with_some_system_columns(&pruned, &system);
        let deletes_plan = deletes.is_none_or(|d| d.check(engine, &events).is_ok());
        match mapping.validate(engine, events.clone()).await {
            Ok(same) if same.fields() == output.fields() && deletes_plan => {
                self.read_payload = Arc::new(pruned);
                self.read_events = events;
            }
            _ => {}
        }
    }

    pub fn event_columns(&self) -> Vec<String> {
        self.events
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}
