//! The data layer of forgeai: it persists users and their tokens, projects, chat messages
//! and fragments in SQLite (the default, one file in the data directory) or PostgreSQL, and
//! scopes every read and write to the user who owns the project.
//!
//! ```no_run
//! # async fn demo() -> Result<(), forgeai_store::Error> {
//! let store = forgeai_store::Store::open_default(std::path::Path::new("/var/lib/forgeai")).await?;
//! let (user, token) = store.create_user("alice").await?;
//! let (project, first_message) = store.create_project(&user.id, "Build a todo app", None).await?;
//! # let _ = (token, project, first_message);
//! # Ok(()) }
//! ```

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

mod error;
mod model;

pub use access::SandboxOwner;
pub use error::{Error, Result};
pub use model::{
    AssistantReply, DEFAULT_PROJECT_NAME, Fragment, FragmentSummary, FragmentUpdate, ListedMessage, Message,
    MessageRole, MessageType, MessageWithFragment, NewFragment, Project, UnknownValue, User, files_size,
};
pub use realtime::{NOTIFY_CHANNEL, PgRealtime, PgRealtimeConfig};
pub use users::{LOGIN_LINK_TTL, MAX_SESSION_TTL, NewSession, TokenInfo, TokenKind};

/// Runs the same code against whichever pool the store holds. The body is expanded once per
/// backend, so one piece of query code is type-checked against both databases.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

mod access;
mod projects;
mod realtime;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

/// File name of the SQLite database inside the data directory.
pub const DEFAULT_DB_FILE: &str = "forgeai.db";

/// How long a writer waits for SQLite's single write lock, and a caller for a pooled connection.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Handle to the database. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Connects to `url` and brings its schema up to date.
    ///
    /// `postgres://…` and `postgresql://…` select PostgreSQL; `sqlite:…` URLs (for example
    /// `sqlite:///var/lib/forgeai/forgeai.db` or `sqlite::memory:`) select SQLite, creating the
    /// file if it is missing (its directory must exist).
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|source| Error::Connect {
                url: redact_password(url),
                source,
            })?;
            // Each connection to a private in-memory database would see a database of its
            // own, and the database vanishes with its last connection: keep exactly one.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            Self::connect_sqlite(options, in_memory, url).await
        } else {
            Err(Error::UnsupportedUrl(redact_password(url)))
        }
    }

    /// Opens (creating it and `data_dir` if missing) the SQLite database
    /// `<data_dir>/forgeai.db`.
    pub async fn open_default(data_dir: &Path) -> Result<Store> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|source| Error::DataDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        let path = data_dir.join(DEFAULT_DB_FILE);
        let options = SqliteConnectOptions::new().filename(&path);
        Self::connect_sqlite(options, false, &path.display().to_string()).await
    }

    async fn connect_sqlite(options: SqliteConnectOptions, in_memory: bool, label: &str) -> Result<Store> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a killed process; only an OS crash can lose the
            // last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(LOCK_TIMEOUT);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(LOCK_TIMEOUT);
        if in_memory {
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool.connect_with(options).await.map_err(|source| Error::Connect {
            url: redact_password(label),
            source,
        })?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate {
                url: redact_password(label),
                source,
            })?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
        })
    }

    async fn connect_postgres(url: &str) -> Result<Store> {
        let connect_error = |source| Error::Connect {
            url: redact_password(url),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        // One direct connection first: a pool would retry a refused connection until its
        // timeout and then report only "pool timed out", hiding the actual cause.
        let mut conn = PgConnection::connect_with(&options).await.map_err(connect_error)?;
        // The migrator takes an advisory lock, so servers starting together migrate once.
        sqlx::migrate!("migrations/postgres")
            .run(&mut conn)
            .await
            .map_err(|source| Error::Migrate {
                url: redact_password(url),
                source,
            })?;
        // Closing is a courtesy to the server; the schema is in place either way.
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .acquire_timeout(LOCK_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Store {
            backend: Backend::Postgres(pool),
        })
    }

    /// The PostgreSQL pool, for [`PgRealtime`]; `None` on SQLite.
    fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// Checks that the database answers, for health endpoints.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Waits for running queries and closes every connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// The current time at the microsecond precision both databases keep, so a value read back
/// equals the value written.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Time-ordered (v7) so that rows created within the same microsecond still sort by creation.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Hides the password of a database URL before it appears in an error message or a log.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, SecondsFormat, TimeZone, Utc};

    use super::redact_password;

    /// SQLite compares timestamps as the text sqlx writes, `to_rfc3339_opts(AutoSi, false)`,
    /// whose fraction has 0, 3 or 6 digits depending on the value; ORDER BY relies on that
    /// text still sorting in time order.
    #[test]
    fn sqlite_timestamp_text_sorts_in_time_order() {
        let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap();
        let texts: Vec<String> = [0, 1, 100_000, 100_001, 100_500, 999_999, 1_000_000]
            .into_iter()
            .map(|micros| (base + Duration::microseconds(micros)).to_rfc3339_opts(SecondsFormat::AutoSi, false))
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(sorted, texts);
    }

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact_password("postgres://forge:s3cr%40t@db:5432/forge?sslmode=require"),
            "postgres://forge:***@db:5432/forge?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://forge@db/forge"),
            "postgres://forge@db/forge"
        );
        assert_eq!(
            redact_password("sqlite:///data/forgeai.db"),
            "sqlite:///data/forgeai.db"
        );
        assert_eq!(redact_password("sqlite::memory:"), "sqlite::memory:");
    }
}
