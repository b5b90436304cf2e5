//! A live Nakadi: the HTTP client, its token, and the two ways of reading an
//! event type (the low-level API with the engine's own cursors, or a
//! subscription whose cursors Nakadi keeps).

pub mod auth;
pub mod client;
pub mod lowlevel;
pub mod subscription;

use std::sync::Arc;

pub use auth::TokenSource;
pub use client::{NakadiClient, NakadiError, NakadiSettings};
pub use subscription::{ReadFrom, SubscriptionReader, SubscriptionSettings};

/// Reading from a live Nakadi: with cursors (low-level API) or through a subscription.
pub struct NakadiSource {
    pub client: Arc<NakadiClient>,
    pub event_type: String,
    pub subscription: Option<SubscriptionReader>,
}

impl NakadiSource {
    /// The partitions of the event type and their offsets now.
    pub async fn partitions(&self) -> Result<Vec<super::PartitionInfo>, super::SourceError> {
        self.client
            .partitions(&self.event_type)
            .await
            .map_err(super::SourceError::Nakadi)
    }

    /// The cursor before the oldest event `partition` holds (Nakadi names
    /// the oldest event itself).
    pub fn first_cursor(partition: &super::PartitionInfo) -> super::Offset {
        partition
            .oldest_available_offset
            .minus(1)
            .unwrap_or_else(super::Offset::begin)
    }
}
