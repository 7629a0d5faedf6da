use std::path::PathBuf;

use sqlx::error::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed. "Not found" is never an error: lookups answer `None` (or
/// `false`) both for rows that do not exist and for rows another user owns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unsupported database URL {0:?}: use a postgres:// (or postgresql://) URL, or a sqlite: \
         URL such as sqlite:///var/lib/forgeai/forgeai.db"
    )]
    UnsupportedUrl(String),

    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open the database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot bring the schema of the database {url} up to date; it may belong to another \
         application or to a newer forgeai"
    )]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("a user named {0:?} already exists")]
    UserExists(String),

    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// A constraint of the schema refused the data, e.g. an empty message; nothing of the
    /// operation was stored.
    #[error("the database refused the data: {0}")]
    Rejected(String),

    /// A change would make a fragment's files bigger than its limit; nothing was stored.
    #[error("the fragment's files would have {size} bytes, more than the {limit} bytes a fragment may have")]
    FragmentTooLarge { size: usize, limit: usize },

    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && matches!(
                db.kind(),
                ErrorKind::CheckViolation | ErrorKind::ForeignKeyViolation | ErrorKind::NotNullViolation
            )
        {
            return Error::Rejected(db.message().to_owned());
        }
        Error::Database(err)
    }
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}
