//! The journal's only writer: one connection on a thread of its own, with group commit.
//!
//! Every write of the engine (an event and its runs, a step attempt, a run status, a realtime
//! message) is a request on one queue. The writer takes the first request, drains whatever else
//! is queued, runs them all in one transaction and commits it once: with
//! [`Durability::Fsync`] that commit is one fsync for the whole batch. While it commits, new
//! requests pile up in the queue and form the next batch, so concurrent runs share fsyncs
//! instead of paying one each. A request is answered only after the commit that holds it.
//!
//! A request that fails fails alone: the transaction is rolled back and the batch is run again
//! without it (failures are rare, so the common path pays no savepoint per request).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// How far a completed write is protected when it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is fsync'd (`synchronous=FULL`) before anything that depends on it runs:
    /// a completed step survives a power cut. Commits of concurrent runs are grouped so they
    /// share one fsync.
    #[default]
    Fsync,
    /// Commits reach the OS but are not fsync'd (`synchronous=NORMAL`): safe when the process
    /// is killed, not when the machine loses power (the last commits may be lost, never
    /// half-applied). Faster on disks with slow fsync.
    ProcessCrash,
}

impl Durability {
    fn synchronous_pragma(self) -> &'static str {
        match self {
            Self::Fsync => "FULL",
            Self::ProcessCrash => "NORMAL",
        }
    }
}

/// Counters of the journal writer since the engine started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Transactions committed (each one fsync with [`Durability::Fsync`]).
    pub commits: u64,
    /// Write requests committed; `writes / commits` is the average group size.
    pub writes: u64,
}

/// One queued write: run (possibly more than once, when a batch is replayed without a failed
/// neighbour), then told how its transaction ended.
trait Op: Send {
    fn execute(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Called after the commit that holds the last `execute`.
    fn committed(self: Box<Self>);
    fn failed(self: Box<Self>, error: Error);
}

struct Request<T, W, A, U> {
    work: W,
    output: Option<T>,
    after_commit: A,
    reply: oneshot::Sender<Result<U, Error>>,
}

impl<T, W, A, U> Op for Request<T, W, A, U>
where
    T: Send,
    W: FnMut(&Connection) -> rusqlite::Result<T> + Send,
    A: FnOnce(T) -> U + Send,
    U: Send,
{
    fn execute(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.output = Some((self.work)(conn)?);
        Ok(())
    }

    fn committed(self: Box<Self>) {
        let Request {
            output,
            after_commit,
            reply,
            ..
        } = *self;
        // `committed` only follows a successful `execute`, which always sets the output.
        let result = output.map(after_commit).ok_or(Error::JournalClosed);
        // The caller may have stopped waiting; the write is committed all the same.
        let _ = reply.send(result);
    }

    fn failed(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

enum Message {
    Write(Box<dyn Op>),
    Close(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// A handle on the writer thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Message>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Opens the journal at `path` (already created and migrated) for writing and starts the
    /// writer thread. `max_batch` caps the writes of one transaction (1: a commit per write).
    pub async fn start(path: &Path, durability: Durability, max_batch: usize) -> Result<Self, Error> {
        let (queue, requests) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (opened, open_result) = oneshot::channel();
        let path = path.to_owned();
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("forgeai-journal-writer".into())
            .spawn(move || match open(&path, durability) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    run(&conn, requests, max_batch.max(1), &thread_counters);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(Error::WriterThread)?;
        open_result.await.map_err(|_| Error::JournalClosed)??;
        Ok(Self { queue, counters })
    }

    /// Runs `work` in the next group commit and returns its result once it is committed.
    pub async fn write<T, W>(&self, work: W) -> Result<T, Error>
    where
        T: Send + 'static,
        W: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write_then(work, |output| output).await
    }

    /// Like [`Writer::write`], and calls `after_commit` with the result on the writer thread
    /// right after the commit, in commit order, even if the caller stopped waiting. That is
    /// where anything that must follow the journal's order goes (queueing runs by sequence
    /// number, broadcasting realtime messages by id) without holding a lock across the commit.
    pub async fn write_then<T, U, W, A>(&self, work: W, after_commit: A) -> Result<U, Error>
    where
        T: Send + 'static,
        U: Send + 'static,
        W: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
        A: FnOnce(T) -> U + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            work,
            output: None,
            after_commit,
            reply,
        };
        self.queue
            .send(Message::Write(Box::new(request)))
            .map_err(|_| Error::JournalClosed)?;
        // A dropped reply means the writer stopped before committing this request.
        answer.await.map_err(|_| Error::JournalClosed)?
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Commits what was queued before this call, then closes the connection. Later writes fail
    /// with [`Error::JournalClosed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn open(path: &Path, durability: Durability) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode FULL fsyncs the log at every commit; NORMAL only at checkpoints.
    conn.pragma_update(None, "synchronous", durability.synchronous_pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn run(conn: &Connection, mut requests: mpsc::UnboundedReceiver<Message>, max_batch: usize, counters: &Counters) {
    let mut closing = None;
    while closing.is_none() {
        let mut batch: Vec<Box<dyn Op>> = Vec::new();
        match requests.blocking_recv() {
            Some(Message::Write(op)) => batch.push(op),
            Some(Message::Close(done)) => closing = Some(done),
            // Every handle is gone: nothing can be queued any more.
            None => break,
        }
        // Everything that arrived while the previous batch was committing joins this one.
        while closing.is_none() && !batch.is_empty() && batch.len() < max_batch {
            match requests.try_recv() {
                Ok(Message::Write(op)) => batch.push(op),
                Ok(Message::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(conn, batch, counters);
        }
    }
    // Requests queued after the close are dropped here, which answers them `JournalClosed`.
    drop(requests);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction; a request that fails is answered with its error and the
/// others are run again without it.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Op>>, counters: &Counters) {
    while !batch.is_empty() {
        // IMMEDIATE: take the write lock up front, so no statement can hit SQLITE_BUSY midway.
        if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
            fail_all(batch, &Arc::new(error));
            return;
        }
        let failure = batch
            .iter_mut()
            .enumerate()
            .find_map(|(index, op)| op.execute(conn).err().map(|error| (index, error)));
        if let Some((index, error)) = failure {
            rollback(conn);
            batch.remove(index).failed(Error::Write(error));
            continue;
        }
        if let Err(error) = conn.execute_batch("COMMIT") {
            rollback(conn);
            fail_all(batch, &Arc::new(error));
            return;
        }
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for op in batch {
            op.committed();
        }
        return;
    }
}

fn rollback(conn: &Connection) {
    // Some errors (a full disk, an I/O error) already rolled the transaction back.
    if !conn.is_autocommit()
        && let Err(error) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(%error, "could not roll back a journal transaction");
    }
}

fn fail_all(batch: Vec<Box<dyn Op>>, error: &Arc<rusqlite::Error>) {
    tracing::error!(%error, writes = batch.len(), "journal transaction failed");
    for op in batch {
        op.failed(Error::Commit(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer(dir: &tempfile::TempDir, durability: Durability) -> Writer {
        let path = dir.path().join("test.db");
        let conn = Connection::open(&path).expect("database created");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        )
        .expect("schema");
        drop(conn);
        Writer::start(&path, durability, 1024).await.expect("writer starts")
    }

    fn insert(id: i64) -> impl FnMut(&Connection) -> rusqlite::Result<i64> + Send + 'static {
        move |conn| {
            conn.prepare_cached("INSERT INTO items (id, name) VALUES (?, 'x')")?
                .execute([id])?;
            Ok(id)
        }
    }

    #[tokio::test]
    async fn the_synchronous_mode_follows_the_durability() {
        for (durability, expected) in [(Durability::Fsync, 2), (Durability::ProcessCrash, 1)] {
            let dir = tempfile::TempDir::new().unwrap();
            let writer = writer(&dir, durability).await;
            let synchronous: i64 = writer
                .write(|conn| conn.query_row("PRAGMA synchronous", [], |row| row.get(0)))
                .await
                .unwrap();
            assert_eq!(synchronous, expected, "{durability:?}");
            writer.close().await;
        }
    }

    #[tokio::test]
    async fn queued_writes_share_one_commit_and_a_failing_one_fails_alone() {
        let dir = tempfile::TempDir::new().unwrap();
        let writer = writer(&dir, Durability::Fsync).await;
        // Hold the writer inside a first request until the others are queued, so they are
        // certain to form one batch.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Mutex::new(held);
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = tokio::spawn({
            let (writer, entered) = (writer.clone(), entered.clone());
            async move {
                writer
                    .write(move |_| {
                        entered.store(true, Ordering::SeqCst);
                        let _ = held.lock().map(|held| held.recv());
                        Ok(())
                    })
                    .await
            }
        });
        while !entered.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let writes: Vec<_> = [1, 2, 1, 3]
            .into_iter()
            .map(|id| {
                tokio::spawn({
                    let writer = writer.clone();
                    async move { writer.write(insert(id)).await }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        let mut results = Vec::new();
        for write in writes {
            results.push(write.await.unwrap());
        }
        // The second insert of id 1 violates the primary key: only it fails.
        let failed: Vec<_> = results.iter().map(Result::is_err).collect();
        assert_eq!(failed.iter().filter(|failed| **failed).count(), 1, "{results:?}");
        assert!(matches!(
            results.iter().find(|r| r.is_err()),
            Some(Err(Error::Write(_)))
        ));
        let count: i64 = writer
            .write(|conn| conn.query_row("SELECT count(*) FROM items", [], |row| row.get(0)))
            .await
            .unwrap();
        assert_eq!(count, 3);
        let stats = writer.stats();
        assert_eq!(
            stats.commits, 3,
            "the held write, the batch of three, the count: {stats:?}"
        );
        assert_eq!(stats.writes, 5);
        writer.close().await;
        assert!(matches!(writer.write(insert(9)).await, Err(Error::JournalClosed)));
    }
}
