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
