//! Why the ledger's database could not be used, whichever backend it is.

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (its message and what caused it, e.g. the connection's I/O error).
    #[error("database error: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the PostgreSQL pool.
    #[error("database unavailable: {0}")]
    Pool(String),
    /// The database's address or settings are unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// A blocking database task was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::Postgres(e),
            other => DbError::Pool(other.to_string()),
        }
    }
}

/// An error's message followed by those of its causes (`a: b: c`).
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
