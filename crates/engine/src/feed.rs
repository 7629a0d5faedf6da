//! The seam between realtime readers (the SSE endpoint) and whatever keeps the messages: the
//! embedded engine's journal, or a database shared by several servers.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::Error;
use crate::types::{NewEvent, RealtimeMessage, SendOutcome};

/// Realtime channels: messages with increasing ids per feed, replayable after an id, then live.
///
/// `subscribe(channel, None)` delivers the channel's messages published from then on;
/// `subscribe(channel, Some(n))` first replays every kept message of the channel with an id
/// above `n`, then goes live, with no gap and no duplicate even while messages are published
/// during the replay. Either way a subscriber sees the channel's ids in increasing order.
///
/// Functions running on the embedded engine publish through `RunContext::publish` (journaled,
/// so a replayed run does not publish twice); [`RealtimeFeed::publish`] is for other engines,
/// tools and tests. The trait is `#[async_trait]` and `subscribe` returns a boxed stream, so
/// that `Arc<dyn RealtimeFeed>` works.
#[async_trait]
pub trait RealtimeFeed: Send + Sync {
    /// Stores a message on `channel` and hands it to the channel's live subscribers.
    async fn publish(&self, channel: &str, topic: &str, data: &Value) -> Result<RealtimeMessage, FeedError>;

    /// Kept messages of `channel` after `after_id` (none when `None`), then live ones. The
    /// stream ends after yielding an error, or when the feed shuts down.
    fn subscribe(&self, channel: &str, after_id: Option<i64>)
    -> BoxStream<'static, Result<RealtimeMessage, FeedError>>;
}

/// Why a realtime feed could not store or deliver a message.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The embedded engine's journal failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// The storage of another feed failed (for example its PostgreSQL database).
    #[error("realtime feed storage failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl FeedError {
    /// Wraps a failure of a feed's own storage.
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(error))
    }
}

/// Sends events to an engine (what the Inngest-compatible endpoint does), so that callers hold
/// this trait rather than the embedded [`Engine`](crate::Engine).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Stores the event and starts the runs it triggers (none for a duplicate id).
    async fn send_event(&self, event: NewEvent) -> Result<SendOutcome, Error>;
}
