//! The SQLite database behind the host: opened once, migrated at start, shared by every capability.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A blocking database task was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Schema migrations, applied in order; the database's `user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the plugins' key-value storage, namespaced by provider.
    "CREATE TABLE plugin_kv (
        provider   TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, key)
    ) STRICT;",
];

/// A shared SQLite connection. Calls go through [`Database::run`], on tokio's blocking pool.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (creating if needed) the database file, or an in-memory one for `None`,
    /// and applies pending migrations.
    pub fn open(path: Option<&Path>) -> Result<Self, DbError> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        // WAL lets readers run beside the writer; NORMAL sync is durable across process crashes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, DbError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&lock(&conn)).map_err(DbError::from))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves the connection usable: SQLite rolls back any open
    // transaction itself, so the poison flag carries no information here.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        conn.execute_batch(&format!(
            "BEGIN; {sql} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_run_once() {
        let dir = std::env::temp_dir().join(format!("refundry-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("migrate.db");
        let _ = std::fs::remove_file(&path);
        Database::open(Some(&path)).unwrap();
        let db = Database::open(Some(&path)).unwrap();
        let version: usize = db
            .run(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
