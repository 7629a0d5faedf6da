//! The engine's SQLite journal: events, runs, steps and realtime messages.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::Error;
use crate::types::{Event, RealtimeMessage, RunFilter, RunInfo, RunStatus, StepInfo, StepStatus};

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
pub(crate) struct NewRun {
    pub id: String,
    pub function_id: String,
    pub concurrency_key: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Journal {
    // Every write goes through one connection, so writers queue instead of failing with SQLITE_BUSY.
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Journal {
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a killed process; only an OS crash can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
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

    /// Stores an event and its runs in one transaction. Returns the existing event id instead
    /// when `client_id` was already seen within the dedup window.
    pub async fn insert_event(
        &self,
        event: &Event,
        client_id: Option<&str>,
        runs: &[NewRun],
    ) -> Result<Result<Vec<i64>, String>, Error> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        if let Some(client_id) = client_id {
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM events WHERE client_id = ? AND received_at > ? ORDER BY received_at DESC LIMIT 1",
            )
            .bind(client_id)
            .bind(now - DEDUP_WINDOW_MS)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(existing) = existing {
                return Ok(Err(existing));
            }
        }
        sqlx::query("INSERT INTO events (id, client_id, name, data, ts, received_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&event.id)
            .bind(client_id)
            .bind(&event.name)
            .bind(event.data.to_string())
            .bind(event.ts)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut seqs = Vec::with_capacity(runs.len());
        for run in runs {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO runs (id, function_id, event_id, concurrency_key, status, created_at)
                 VALUES (?, ?, ?, ?, 'queued', ?) RETURNING seq",
            )
            .bind(&run.id)
            .bind(&run.function_id)
            .bind(&event.id)
            .bind(&run.concurrency_key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            seqs.push(seq);
        }
        tx.commit().await?;
        Ok(Ok(seqs))
    }

    pub async fn unfinished_runs(&self) -> Result<Vec<PendingRun>, Error> {
        let rows = sqlx::query(
            "SELECT seq, id, function_id, concurrency_key FROM runs
             WHERE status IN ('queued', 'running') ORDER BY seq",
        )
        .fetch_all(&self.writer)
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
        .fetch_optional(&self.writer)
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
            .fetch_all(&self.writer)
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
        sqlx::query("UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?) WHERE id = ?")
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn set_run_attempt(&self, run_id: &str, attempt: u32) -> Result<(), Error> {
        sqlx::query("UPDATE runs SET attempt = ? WHERE id = ?")
            .bind(i64::from(attempt))
            .bind(run_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn set_run_failure(&self, run_id: &str, failure: &str) -> Result<(), Error> {
        sqlx::query("UPDATE runs SET failure = ? WHERE id = ?")
            .bind(failure)
            .bind(run_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE runs SET status = ?, output = ?, error = ?, ended_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(output.map(Value::to_string))
            .bind(error)
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Flags a run as cancelled; returns its status before the call, or None if unknown.
    pub async fn request_cancel(&self, run_id: &str) -> Result<Option<RunStatus>, Error> {
        let status: Option<String> =
            sqlx::query_scalar("UPDATE runs SET cancel_requested = 1 WHERE id = ? RETURNING status")
                .bind(run_id)
                .fetch_optional(&self.writer)
                .await?;
        Ok(status.as_deref().map(RunStatus::parse))
    }

    /// Records the outcome of one attempt of a step (one commit per attempt). The first
    /// attempt's start time is kept.
    pub async fn record_step(&self, step: &StepRecord<'_>) -> Result<(), Error> {
        let ended_at = matches!(step.status, StepStatus::Completed | StepStatus::Failed).then(now_ms);
        sqlx::query(
            "INSERT INTO steps (run_id, step_id, name, position, status, attempts, output, error, started_at, ended_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                 output = excluded.output, error = excluded.error, ended_at = excluded.ended_at",
        )
        .bind(step.run_id)
        .bind(step.step_id)
        .bind(step.name)
        .bind(i64::from(step.position))
        .bind(step.status.as_str())
        .bind(i64::from(step.attempts))
        .bind(step.output.map(Value::to_string))
        .bind(step.error)
        .bind(step.started_at)
        .bind(ended_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Stores a realtime message; when `journal_step` is given, records it as a completed step
    /// in the same transaction so a replay does not publish it again.
    pub async fn insert_realtime(
        &self,
        channel: &str,
        topic: &str,
        data: &Value,
        journal_step: Option<(&str, &str, u32)>,
    ) -> Result<RealtimeMessage, Error> {
        let created_at = now_ms();
        let mut tx = self.writer.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO realtime (channel, topic, data, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(channel)
        .bind(topic)
        .bind(data.to_string())
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?;
        if let Some((run_id, step_id, position)) = journal_step {
            sqlx::query(
                "INSERT INTO steps (run_id, step_id, name, position, status, attempts, output, started_at, ended_at)
                 VALUES (?, ?, 'publish', ?, 'completed', 1, ?, ?, ?)",
            )
            .bind(run_id)
            .bind(step_id)
            .bind(i64::from(position))
            .bind(id.to_string())
            .bind(created_at)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RealtimeMessage {
            id,
            channel: channel.to_owned(),
            topic: topic.to_owned(),
            data: data.clone(),
            created_at,
        })
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
        let result = sqlx::query("DELETE FROM realtime WHERE created_at < ?")
            .bind(cutoff_ms)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
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
