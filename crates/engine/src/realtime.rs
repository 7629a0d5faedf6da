//! Realtime channels: messages are stored with increasing ids, then broadcast to live subscribers.

use std::collections::VecDeque;

use futures::stream::{self, BoxStream};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::Error;
use crate::journal::Journal;
use crate::types::RealtimeMessage;

const LIVE_BUFFER: usize = 4096;
const REPLAY_PAGE: i64 = 500;

pub(crate) struct Realtime {
    journal: Journal,
    live: broadcast::Sender<RealtimeMessage>,
}

impl Realtime {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }

    pub async fn publish(
        &self,
        channel: &str,
        topic: &str,
        data: &Value,
        journal_step: Option<(&str, &str, u32)>,
    ) -> Result<RealtimeMessage, Error> {
        let live = self.live.clone();
        // Broadcast right after the commit, on the writer thread, so live subscribers get ids
        // in increasing order without a lock held across the commit (which would give every
        // publish an fsync of its own).
        let broadcast = move |message: &RealtimeMessage| {
            // Nobody listening is fine: the message is stored for replay.
            let _ = live.send(message.clone());
        };
        self.journal
            .insert_realtime(channel, topic, data, journal_step, broadcast)
            .await
    }

    /// Every kept message of `channel` after `after_id` (none when `None`), then live ones.
    pub fn subscribe(
        &self,
        channel: &str,
        after_id: Option<i64>,
    ) -> BoxStream<'static, Result<RealtimeMessage, Error>> {
        // Subscribe before reading the backlog so nothing published in between is missed.
        let state = Subscription {
            live: self.live.subscribe(),
            journal: self.journal.clone(),
            channel: channel.to_owned(),
            backlog: VecDeque::new(),
            last_id: after_id.unwrap_or(0),
            needs_replay: after_id.is_some(),
        };
        Box::pin(stream::unfold(state, Subscription::next))
    }
}

struct Subscription {
    live: broadcast::Receiver<RealtimeMessage>,
    journal: Journal,
    channel: String,
    backlog: VecDeque<RealtimeMessage>,
    last_id: i64,
    needs_replay: bool,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<RealtimeMessage, Error>, Self)> {
        loop {
            if let Some(message) = self.backlog.pop_front() {
                self.last_id = message.id;
                return Some((Ok(message), self));
            }
            if self.needs_replay {
                match self
                    .journal
                    .realtime_after(&self.channel, self.last_id, REPLAY_PAGE)
                    .await
                {
                    Ok(page) => {
                        self.needs_replay = page.len() as i64 == REPLAY_PAGE;
                        self.backlog.extend(page);
                        continue;
                    }
                    Err(error) => return Some((Err(error), self)),
                }
            }
            match self.live.recv().await {
                Ok(message) if message.channel == self.channel && message.id > self.last_id => {
                    self.last_id = message.id;
                    return Some((Ok(message), self));
                }
                Ok(_) => {}
                // Fell behind the live buffer: the journal still has everything.
                Err(broadcast::error::RecvError::Lagged(_)) => self.needs_replay = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
