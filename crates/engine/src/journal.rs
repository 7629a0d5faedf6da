//! The engine's SQLite journal: events, runs, steps and realtime messages.
//!
//! Writes go through the group-commit [`Writer`] (one connection, one transaction and one
//! fsync for all the writes that queued up meanwhile); reads go through a pool of read-only
//! connections, which see every write once it has been acknowledged.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::Error;
use crate::types::{Event, RealtimeMessage, RunFilter, RunInfo, RunStatus, StepInfo, StepStatus};
use crate::writer::{Durability, JournalStats, Writer};

const DEDUP_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A run that has not finished, as needed to schedule it.
pub(crate) struct PendingRun {
    pub seq: i64,
    pub id: String,
    pub function_id: String,
    pub concurrency_key: Option<String>,
}

/// Everything needed to execute or resume a run.
pub(crate) struct RunState {
    pub function_id: String,
    pub event: Event,
    pub attempt: u32,
    pub failure: Option<String>,
    pub cancel_requested: bool,
    pub status: RunStatus,
}

/// A journal entry as needed for replay.
#[derive(Clone)]
pub(crate) struct JournalEntry {
    pub status: StepStatus,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<String>,
}

/// One attempt of a step, as journaled when the attempt ends.
pub(crate) struct StepRecord<'a> {
    pub run_id: &'a str,
    pub step_id: &'a str,
    pub name: &'a str,
    pub position: u32,
    pub status: StepStatus,
    pub attempts: u32,
    pub output: Option<&'a Value>,
    pub error: Option<&'a str>,
    pub started_at: i64,
}

/// A run to create for an event.
#[derive(Clone)]
pub(crate) struct NewRun {
    pub id: String,
    pub function_id: String,
    pub concurrency_key: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Journal {
    // The only connection that writes, so writers queue (and group) instead of failing with
    // SQLITE_BUSY.
    writer: Writer,
    reader: SqlitePool,
}

impl Journal {
    /// Opens (creating and migrating if needed) the journal at `path`. `max_batch` caps the
    /// writes of one group commit.
    pub async fn open(path: &Path, durability: Durability, max_batch: usize) -> Result<Self, Error> {
        let synchronous = match durability {
            Durability::Fsync => SqliteSynchronous::Full,
            Durability::ProcessCrash => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // Migrations run on a connection of their own; from then on only the writer writes.
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&migrator).await?;
        let writer = Writer::start(path, durability, max_batch).await;
        migrator.close().await;
        let writer = writer?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub fn stats(&self) -> JournalStats {
        self.writer.stats()
    }

    /// Stores an event and its runs in one transaction. Returns the existing event id instead
    /// when `client_id` was already seen within the dedup window. `after_commit` gets the
    /// runs' sequence numbers right after the commit, in commit order (see
    /// [`Writer::write_then`]).
    pub async fn insert_event(
        &self,
        event: &Event,
        client_id: Option<&str>,
        runs: &[NewRun],
        after_commit: impl FnOnce(&[i64]) + Send + 'static,
    ) -> Result<Result<Vec<i64>, String>, Error> {
        let now = now_ms();
        let (event_id, name, data, ts) = (event.id.clone(), event.name.clone(), event.data.to_string(), event.ts);
        let client_id = client_id.map(str::to_owned);
        let runs = runs.to_vec();
        let work = move |conn: &rusqlite::Connection| {
            if let Some(client_id) = &client_id {
                let existing: Option<String> = conn
                    .prepare_cached(
                        "SELECT id FROM events WHERE client_id = ? AND received_at > ?
                         ORDER BY received_at DESC LIMIT 1",
                    )?
                    .query_row(params![client_id, now - DEDUP_WINDOW_MS], |row| row.get(0))
                    .optional()?;
                if let Some(existing) = existing {
                    return Ok(Err(existing));
                }
            }
            conn.prepare_cached(
                "INSERT INTO events (id, client_id, name, data, ts, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![event_id, client_id, name, data, ts, now])?;
            let mut insert_run = conn.prepare_cached(
                "INSERT INTO runs (id, function_id, event_id, concurrency_key, status, created_at)
                 VALUES (?, ?, ?, ?, 'queued', ?) RETURNING seq",
            )?;
            let seqs = runs
                .iter()
                .map(|run| {
                    insert_run.query_row(
                        params![run.id, run.function_id, event_id, run.concurrency_key, now],
                        |row| row.get(0),
                    )
                })
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(Ok(seqs))
        };
        self.writer
            .write_then(work, move |outcome: Result<Vec<i64>, String>| {
                if let Ok(seqs) = &outcome {
                    after_commit(seqs);
                }
                outcome
            })
            .await
    }

    pub async fn unfinished_runs(&self) -> Result<Vec<PendingRun>, Error> {
        let rows = sqlx::query(
            "SELECT seq, id, function_id, concurrency_key FROM runs
             WHERE status IN ('queued', 'running') ORDER BY seq",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| PendingRun {
                seq: row.get("seq"),
                id: row.get("id"),
                function_id: row.get("function_id"),
                concurrency_key: row.get("concurrency_key"),
            })
            .collect())
    }

    pub async fn run_state(&self, run_id: &str) -> Result<RunState, Error> {
        let row = sqlx::query(
            "SELECT r.function_id, r.attempt, r.failure, r.cancel_requested, r.status,
                    e.id AS event_id, e.name, e.data, e.ts
             FROM runs r JOIN events e ON e.id = r.event_id WHERE r.id = ?",
        )
        .bind(run_id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
        let data: String = row.get("data");
        Ok(RunState {
            function_id: row.get("function_id"),
            event: Event {
                id: row.get("event_id"),
                name: row.get("name"),
                data: serde_json::from_str(&data)?,
                ts: row.get("ts"),
            },
            attempt: u32::try_from(row.get::<i64, _>("attempt")).unwrap_or(0),
            failure: row.get("failure"),
            cancel_requested: row.get::<i64, _>("cancel_requested") != 0,
            status: RunStatus::parse(row.get("status")),
        })
    }

    pub async fn journal(&self, run_id: &str) -> Result<HashMap<String, JournalEntry>, Error> {
        let rows = sqlx::query("SELECT step_id, status, attempts, output, error FROM steps WHERE run_id = ?")
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?;
        let mut journal = HashMap::with_capacity(rows.len());
        for row in rows {
            let output: Option<String> = row.get("output");
            journal.insert(
                row.get("step_id"),
                JournalEntry {
                    status: StepStatus::parse(row.get("status")),
                    attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
                    output: output.map(|text| serde_json::from_str(&text)).transpose()?,
                    error: row.get("error"),
                },
            );
        }
        Ok(journal)
    }

    pub async fn mark_running(&self, run_id: &str) -> Result<(), Error> {
        let (run_id, now) = (run_id.to_owned(), now_ms());
        self.execute(move |conn| {
            conn.prepare_cached(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?",
            )?
            .execute(params![now, run_id])
        })
        .await
    }

    pub async fn set_run_attempt(&self, run_id: &str, attempt: u32) -> Result<(), Error> {
        let run_id = run_id.to_owned();
        self.execute(move |conn| {
            conn.prepare_cached("UPDATE runs SET attempt = ? WHERE id = ?")?
                .execute(params![attempt, run_id])
        })
        .await
    }

    pub async fn set_run_failure(&self, run_id: &str, failure: &str) -> Result<(), Error> {
        let (run_id, failure) = (run_id.to_owned(), failure.to_owned());
        self.execute(move |conn| {
            conn.prepare_cached("UPDATE runs SET failure = ? WHERE id = ?")?
                .execute(params![failure, run_id])
        })
        .await
    }

    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), Error> {
        let (run_id, now) = (run_id.to_owned(), now_ms());
        let (output, error) = (output.map(Value::to_string), error.map(str::to_owned));
        self.execute(move |conn| {
            conn.prepare_cached("UPDATE runs SET status = ?, output = ?, error = ?, ended_at = ? WHERE id = ?")?
                .execute(params![status.as_str(), output, error, now, run_id])
        })
        .await
    }

    /// Flags a run as cancelled; returns its status before the call, or None if unknown.
    pub async fn request_cancel(&self, run_id: &str) -> Result<Option<RunStatus>, Error> {
        let run_id = run_id.to_owned();
        let status: Option<String> = self
            .writer
            .write(move |conn| {
                conn.prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE id = ? RETURNING status")?
                    .query_row([&run_id], |row| row.get(0))
                    .optional()
            })
            .await?;
        Ok(status.as_deref().map(RunStatus::parse))
    }

    /// Records the outcome of one attempt of a step (one write per attempt, committed with
    /// whatever else is queued). The first attempt's start time is kept.
    pub async fn record_step(&self, step: &StepRecord<'_>) -> Result<(), Error> {
        let ended_at = matches!(step.status, StepStatus::Completed | StepStatus::Failed).then(now_ms);
        let (run_id, step_id, name) = (step.run_id.to_owned(), step.step_id.to_owned(), step.name.to_owned());
        let (position, status, attempts, started_at) = (step.position, step.status, step.attempts, step.started_at);
        let output = step.output.map(Value::to_string);
        let error = step.error.map(str::to_owned);
        self.execute(move |conn| {
            conn.prepare_cached(
                "INSERT INTO steps (run_id, step_id, name, position, status, attempts, output, error, started_at, ended_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                     output = excluded.output, error = excluded.error, ended_at = excluded.ended_at",
            )?
            .execute(params![
                run_id,
                step_id,
                name,
                position,
                status.as_str(),
                attempts,
                output,
                error,
                started_at,
                ended_at
            ])
        })
        .await
    }

    /// Stores a realtime message; when `journal_step` is given, records it as a completed step
    /// in the same transaction so a replay does not publish it again. `after_commit` gets the
    /// message right after the commit, in id order.
    pub async fn insert_realtime(
        &self,
        channel: &str,
        topic: &str,
        data: &Value,
        journal_step: Option<(&str, &str, u32)>,
        after_commit: impl FnOnce(&RealtimeMessage) + Send + 'static,
    ) -> Result<RealtimeMessage, Error> {
        let created_at = now_ms();
        let (channel_text, topic_text, data_text) = (channel.to_owned(), topic.to_owned(), data.to_string());
        let step = journal_step.map(|(run_id, step_id, position)| (run_id.to_owned(), step_id.to_owned(), position));
        let work = move |conn: &rusqlite::Connection| {
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO realtime (channel, topic, data, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                )?
                .query_row(params![channel_text, topic_text, data_text, created_at], |row| {
                    row.get(0)
                })?;
            if let Some((run_id, step_id, position)) = &step {
                conn.prepare_cached(
                    "INSERT INTO steps (run_id, step_id, name, position, status, attempts, output, started_at, ended_at)
                     VALUES (?, ?, 'publish', ?, 'completed', 1, ?, ?, ?)",
                )?
                .execute(params![run_id, step_id, position, id.to_string(), created_at, created_at])?;
            }
            Ok(id)
        };
        let message = RealtimeMessage {
            id: 0,
            channel: channel.to_owned(),
            topic: topic.to_owned(),
            data: data.clone(),
            created_at,
        };
        self.writer
            .write_then(work, move |id| {
                let message = RealtimeMessage { id, ..message };
                after_commit(&message);
                message
            })
            .await
    }

    pub async fn realtime_after(
        &self,
        channel: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<RealtimeMessage>, Error> {
        let rows = sqlx::query(
            "SELECT id, topic, data, created_at FROM realtime WHERE channel = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(channel)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                let data: String = row.get("data");
                Ok(RealtimeMessage {
                    id: row.get("id"),
                    channel: channel.to_owned(),
                    topic: row.get("topic"),
                    data: serde_json::from_str(&data)?,
                    created_at: row.get("created_at"),
                })
            })
            .collect()
    }

    pub async fn delete_realtime_before(&self, cutoff_ms: i64) -> Result<u64, Error> {
        let deleted = self
            .writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM realtime WHERE created_at < ?")?
                    .execute([cutoff_ms])
            })
            .await?;
        Ok(deleted as u64)
    }

    /// A write whose only result is success, committed with whatever else is queued.
    async fn execute<W>(&self, mut work: W) -> Result<(), Error>
    where
        W: FnMut(&rusqlite::Connection) -> rusqlite::Result<usize> + Send + 'static,
    {
        self.writer.write(move |conn| work(conn).map(drop)).await
    }

    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunInfo>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM runs
             WHERE (?1 IS NULL OR function_id = ?1) AND (?2 IS NULL OR concurrency_key = ?2)
             ORDER BY seq",
        )
        .bind(&filter.function_id)
        .bind(&filter.concurrency_key)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_info).collect()
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunInfo>, Error> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(run_info).transpose()
    }

    pub async fn steps(&self, run_id: &str) -> Result<Vec<StepInfo>, Error> {
        let rows = sqlx::query(
            "SELECT step_id, name, status, attempts, error, started_at, ended_at FROM steps
             WHERE run_id = ? ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StepInfo {
                id: row.get("step_id"),
                name: row.get("name"),
                status: StepStatus::parse(row.get("status")),
                attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
                error: row.get("error"),
                started_at: row.get("started_at"),
                ended_at: row.get("ended_at"),
            })
            .collect())
    }
}

fn run_info(row: &sqlx::sqlite::SqliteRow) -> Result<RunInfo, Error> {
    let output: Option<String> = row.get("output");
    Ok(RunInfo {
        id: row.get("id"),
        function_id: row.get("function_id"),
        event_id: row.get("event_id"),
        concurrency_key: row.get("concurrency_key"),
        status: RunStatus::parse(row.get("status")),
        error: row.get("error"),
        output: output.map(|text| serde_json::from_str(&text)).transpose()?,
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        ended_at: row.get("ended_at"),
    })
}
