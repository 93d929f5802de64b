//! The SQLite commit rate of this machine with the ledger's settings: one of the limits
//! `bench-service` reports beside its figures. A ledger that committed once per write could
//! make no more refunds per second than this rate divided by its writes per refund.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;

/// Commits per second on a fresh database file in `dir`, opened as the ledger opens its own
/// (WAL, `synchronous` as given), each transaction inserting one row of about a refund's size,
/// for `duration`.
pub(crate) fn measure(dir: &Path, synchronous: &str, duration: Duration) -> Result<f64> {
    let path = dir.join("commit-rate.db");
    let conn = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT")?;
    let body = "x".repeat(512);
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < duration {
        let tx = conn.unchecked_transaction()?;
        tx.execute("INSERT INTO rows (body) VALUES (?1)", [&body])?;
        tx.commit()?;
        commits += 1;
    }
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_counted_and_the_file_is_removed() {
        let dir = std::env::temp_dir().join(format!("xtask-commit-rate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rate = measure(&dir, "normal", Duration::from_millis(100)).unwrap();
        assert!(rate > 0.0, "{rate}");
        assert!(!dir.join("commit-rate.db").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
