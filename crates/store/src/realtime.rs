//! Realtime channels on PostgreSQL ([`PgRealtime`]), shared by every server on one database: a
//! message published on one node reaches the subscribers of all nodes, and a browser that
//! reconnects to another node replays from its `Last-Event-ID` there.
//!
//! Publishing inserts the message into `realtime_messages` and notifies `forgeai_realtime` with
//! its id in the same transaction. Each [`PgRealtime`] keeps one listening connection; its task
//! fetches the notified messages and fans them out to the node's subscribers through a
//! broadcast channel. A subscriber replays from the table by id, then takes live messages; when
//! it may have missed some (the listener lost its connection, a fetch failed, or the subscriber
//! fell behind the broadcast) it catches up from the table again. Messages older than the
//! retention are deleted from time to time.
//!
//! # Ids commit in order, per channel
//!
//! BIGSERIAL ids are taken when a row is inserted but become visible when its transaction
//! commits, so id 8 could commit after id 9. A subscriber that had already read 9 (and so asks
//! for ids above 9 from then on) would never see 8. Publishes to one channel are therefore
//! serialized: each takes a transaction-scoped advisory lock on its channel before it takes its
//! id, and holds it until its commit. Within a channel ids then become visible in increasing
//! order, which is all a subscriber of that channel relies on; different channels still publish
//! in parallel (two channels whose names hash alike merely wait for each other). The cost is one
//! commit at a time per channel, plenty for status messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forgeai_engine::{FeedError, RealtimeFeed, RealtimeMessage};
use futures::stream::{self, BoxStream};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::types::Json;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::{Error, Result, Store};

/// The `LISTEN`/`NOTIFY` channel; payloads are message ids.
pub const NOTIFY_CHANNEL: &str = "forgeai_realtime";
/// First key of the advisory locks serializing a channel's publishes (the second is the hash of
/// the channel's name), so they cannot meet the locks of other code on the same database.
const LOCK_CLASS: i32 = 0x666f_7267; // "forg"
/// Live messages a subscriber may fall behind before it catches up from the table.
const LIVE_BUFFER: usize = 4096;
/// Messages read per query when replaying, and notifications fetched per query when relaying.
const PAGE: usize = 500;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Settings of [`PgRealtime`].
#[derive(Debug, Clone)]
pub struct PgRealtimeConfig {
    /// How long messages are kept for replay (24 h, as the embedded engine keeps its own).
    pub retention: Duration,
    /// Connections of the feed's own pool, kept apart from the store's so that replays cannot
    /// starve the API; one of them is held by the listener. At least 2.
    pub max_connections: u32,
}

impl Default for PgRealtimeConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 60 * 60),
            max_connections: 5,
        }
    }
}

/// Realtime channels kept in the PostgreSQL database of a [`Store`]. Cheap to clone; the
/// listener and the retention sweep stop when the last clone is dropped, and subscriptions
/// then end.
#[derive(Clone)]
pub struct PgRealtime {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    live: Arc<Live>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PgRealtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRealtime").finish_non_exhaustive()
    }
}

impl PgRealtime {
    /// Starts listening on the database of `store` (which must be PostgreSQL; the store's
    /// migrations created the table) and starts the retention sweep. Needs a Tokio runtime.
    pub async fn start(store: &Store, config: PgRealtimeConfig) -> Result<PgRealtime> {
        let Some(store_pool) = store.postgres_pool() else {
            return Err(Error::Invalid {
                field: "database",
                reason: "realtime messages in the database need PostgreSQL; with SQLite the \
                         embedded engine keeps them"
                    .into(),
            });
        };
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(crate::LOCK_TIMEOUT)
            .connect_lazy_with((*store_pool.connect_options()).clone());
        // Connected before returning, so that the first subscribers already start from the
        // newest id and a database that cannot be reached is reported here.
        let (listener, newest) = listen(&pool).await?;
        let live = Arc::new(Live::new(newest));
        let relay = tokio::spawn(relay(pool.clone(), live.clone(), listener));
        let sweep = tokio::spawn(sweep(pool.clone(), config.retention));
        Ok(PgRealtime {
            inner: Arc::new(Inner {
                pool,
                live,
                tasks: vec![relay.abort_handle(), sweep.abort_handle()],
            }),
        })
    }

    /// Stores a message and notifies every node's listener, in one transaction.
    pub async fn publish(&self, channel: &str, topic: &str, data: &Value) -> Result<RealtimeMessage> {
        let mut tx = self.inner.pool.begin().await?;
        // Serializes the channel's publishes until the commit; see the module docs.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(channel)
            .execute(&mut *tx)
            .await?;
        let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO realtime_messages (channel, topic, data) VALUES ($1, $2, $3) RETURNING id, created_at",
        )
        .bind(channel)
        .bind(topic)
        .bind(Json(data))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RealtimeMessage {
            id,
            channel: channel.to_owned(),
            topic: topic.to_owned(),
            data: data.clone(),
            created_at: created_at.timestamp_millis(),
        })
    }

    /// Kept messages of `channel` after `after_id` (none when `None`), then live ones.
    pub fn subscribe(&self, channel: &str, after_id: Option<i64>) -> BoxStream<'static, Result<RealtimeMessage>> {
        // Subscribed before anything is read from the table, so nothing committed in between
        // is missed (it may arrive twice; ids weed out the second copy).
        let (live, newest) = self.inner.live.subscribe();
        let subscription = Subscription {
            live,
            pool: self.inner.pool.clone(),
            channel: channel.to_owned(),
            backlog: VecDeque::new(),
            last_id: after_id.unwrap_or(newest),
            needs_replay: after_id.is_some(),
        };
        Box::pin(stream::unfold(subscription, Subscription::next))
    }
}

#[async_trait]
impl RealtimeFeed for PgRealtime {
    async fn publish(&self, channel: &str, topic: &str, data: &Value) -> Result<RealtimeMessage, FeedError> {
        PgRealtime::publish(self, channel, topic, data)
            .await
            .map_err(FeedError::backend)
    }

    fn subscribe(
        &self,
        channel: &str,
        after_id: Option<i64>,
    ) -> BoxStream<'static, Result<RealtimeMessage, FeedError>> {
        use futures::StreamExt;
        PgRealtime::subscribe(self, channel, after_id)
            .map(|message| message.map_err(FeedError::backend))
            .boxed()
    }
}

/// What the listener hands to the node's subscribers.
#[derive(Clone)]
enum Signal {
    Message(Arc<RealtimeMessage>),
    /// Messages may have been missed: read the table from your last id.
    CatchUp,
}

/// The node's broadcast, and the newest id notified so far. Both change under one lock, so a
/// new subscriber gets every message sent after the id it starts from.
struct Live {
    state: Mutex<LiveState>,
}

struct LiveState {
    sender: broadcast::Sender<Signal>,
    newest: i64,
}

impl Live {
    fn new(newest: i64) -> Self {
        Self {
            state: Mutex::new(LiveState {
                sender: broadcast::channel(LIVE_BUFFER).0,
                newest,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver, and the id to start after when the subscriber wants live messages only.
    /// Any publish that starts later takes a greater id, and its message is sent later.
    fn subscribe(&self) -> (broadcast::Receiver<Signal>, i64) {
        let state = self.lock();
        (state.sender.subscribe(), state.newest)
    }

    fn has_subscribers(&self) -> bool {
        self.lock().sender.receiver_count() > 0
    }

    fn deliver(&self, messages: Vec<RealtimeMessage>, newest: i64) {
        let mut state = self.lock();
        for message in messages {
            // Nobody listening is fine: the message is in the table for replay.
            let _ = state.sender.send(Signal::Message(Arc::new(message)));
        }
        state.newest = state.newest.max(newest);
    }

    fn catch_up(&self, newest: i64) {
        let mut state = self.lock();
        let _ = state.sender.send(Signal::CatchUp);
        state.newest = state.newest.max(newest);
    }
}

/// A listening connection, and the newest id committed once it listens: every later commit is
/// notified to it.
async fn listen(pool: &PgPool) -> Result<(PgListener, i64)> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let newest: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM realtime_messages")
        .fetch_one(pool)
        .await?;
    Ok((listener, newest.unwrap_or(0)))
}

/// The listener task: fetches notified messages and broadcasts them, forever; on a lost
/// connection it listens anew and has the subscribers catch up from the table.
async fn relay(pool: PgPool, live: Arc<Live>, mut listener: PgListener) {
    loop {
        let lost = relay_until_lost(&pool, &live, &mut listener).await;
        tracing::warn!(error = %lost, "realtime listener lost its connection; reconnecting");
        drop(listener);
        let mut delay = RECONNECT_MIN;
        listener = loop {
            tokio::time::sleep(delay).await;
            match listen(&pool).await {
                Ok((listener, newest)) => {
                    live.catch_up(newest);
                    break listener;
                }
                Err(error) => {
                    tracing::warn!(%error, "realtime listener cannot reconnect; retrying");
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        };
    }
}

/// Relays notifications until the connection fails; answers why it did.
async fn relay_until_lost(pool: &PgPool, live: &Live, listener: &mut PgListener) -> String {
    loop {
        // On a lost connection the listener is rebuilt from scratch, whatever sqlx made of it.
        let first = match listener.try_recv().await {
            Ok(Some(notification)) => notification,
            Ok(None) => return "the connection was closed".to_owned(),
            Err(error) => return error.to_string(),
        };
        let mut ids = Vec::new();
        let mut notification = Some(first);
        while let Some(current) = notification {
            match current.payload().parse::<i64>() {
                Ok(id) => ids.push(id),
                Err(_) => tracing::warn!(
                    payload = current.payload(),
                    "ignoring a foreign {NOTIFY_CHANNEL} notification"
                ),
            }
            notification = if ids.len() < PAGE {
                listener.next_buffered()
            } else {
                None
            };
        }
        let newest = ids.iter().copied().max().unwrap_or(0);
        if !live.has_subscribers() {
            live.deliver(Vec::new(), newest);
            continue;
        }
        match messages_by_id(pool, &ids).await {
            Ok(messages) => live.deliver(messages, newest),
            Err(error) => {
                tracing::warn!(%error, "cannot fetch notified realtime messages; subscribers catch up");
                live.catch_up(newest);
            }
        }
    }
}

/// Deletes expired messages every tenth of the retention (between 100 ms and a minute).
async fn sweep(pool: PgPool, retention: Duration) {
    let period = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        if let Err(error) = delete_older_than(&pool, retention).await {
            tracing::warn!(%error, "could not delete expired realtime messages");
        }
    }
}

async fn delete_older_than(pool: &PgPool, age: Duration) -> Result<u64> {
    let deleted =
        sqlx::query("DELETE FROM realtime_messages WHERE created_at < clock_timestamp() - make_interval(secs => $1)")
            .bind(age.as_secs_f64())
            .execute(pool)
            .await?;
    Ok(deleted.rows_affected())
}

type MessageRow = (i64, String, String, Json<Value>, DateTime<Utc>);

fn to_message((id, channel, topic, Json(data), created_at): MessageRow) -> RealtimeMessage {
    RealtimeMessage {
        id,
        channel,
        topic,
        data,
        created_at: created_at.timestamp_millis(),
    }
}

/// The messages with these ids that still exist, by id.
async fn messages_by_id(pool: &PgPool, ids: &[i64]) -> Result<Vec<RealtimeMessage>> {
    let rows: Vec<MessageRow> = sqlx::query_as(
        "SELECT id, channel, topic, data, created_at FROM realtime_messages WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(to_message).collect())
}

/// One subscriber: its backlog from the table, then live messages of its channel.
struct Subscription {
    live: broadcast::Receiver<Signal>,
    pool: PgPool,
    channel: String,
    backlog: VecDeque<RealtimeMessage>,
    last_id: i64,
    needs_replay: bool,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<RealtimeMessage>, Self)> {
        loop {
            if let Some(message) = self.backlog.pop_front() {
                self.last_id = message.id;
                return Some((Ok(message), self));
            }
            if self.needs_replay {
                match self.page().await {
                    Ok(page) => {
                        self.needs_replay = page.len() == PAGE;
                        self.backlog.extend(page);
                        continue;
                    }
                    Err(error) => return Some((Err(error), self)),
                }
            }
            match self.live.recv().await {
                Ok(Signal::Message(message)) if message.channel == self.channel && message.id > self.last_id => {
                    self.last_id = message.id;
                    return Some((Ok(RealtimeMessage::clone(&message)), self));
                }
                Ok(Signal::Message(_)) => {}
                Ok(Signal::CatchUp) | Err(broadcast::error::RecvError::Lagged(_)) => self.needs_replay = true,
                // The feed was dropped.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    async fn page(&self) -> Result<Vec<RealtimeMessage>> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT id, channel, topic, data, created_at FROM realtime_messages \
             WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(&self.channel)
        .bind(self.last_id)
        .bind(PAGE as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(to_message).collect())
    }
}
