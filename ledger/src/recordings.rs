//! Recordings (table `recordings`): one row per plugin operation, keyed by refund id and
//! operation sequence, written once when the operation ends. The oldest are deleted when all of
//! them together pass the configured total. What a recording holds is the service's business:
//! the ledger keeps it as the JSON text it is given.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

/// Which plugin version an operation ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedBy {
    /// Provider id.
    pub provider: String,
    /// Plugin version (`describe()`).
    pub plugin_version: String,
    /// SHA-256 of the component.
    pub plugin_sha256: String,
}

/// One recording to write.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// The refund it was made for.
    pub refund_id: String,
    /// The operation's name in the contract.
    pub operation: &'static str,
    /// Which plugin version ran it.
    pub by: RecordedBy,
    /// Whether it was cut at the per-operation cap.
    pub truncated: bool,
    /// The recording, as JSON text.
    pub json: String,
    /// When it is written (ms since the epoch).
    pub now_ms: i64,
}

/// A recording as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow {
    /// Its place among the refund's operations, from 1.
    pub seq: i64,
    /// Which plugin version ran it.
    pub by: RecordedBy,
    /// When it was written (ms since the epoch).
    pub recorded_at: i64,
    /// Its size in the table, in bytes.
    pub size: i64,
    /// The recording, as JSON text.
    pub json: String,
}

/// The recordings table, holding at most `max_total_bytes`. Cheap to clone.
#[derive(Clone)]
pub struct RecordingTable {
    db: Database,
    max_total_bytes: u64,
    /// Bytes of every recording in the table; -1 until first counted. The count is kept here
    /// (this process being the table's only writer) so that a write does not sum the table.
    total: Arc<AtomicI64>,
}

impl RecordingTable {
    /// The table in `db`, whose recordings together may take `max_total_bytes`.
    pub fn new(db: Database, max_total_bytes: u64) -> Self {
        Self {
            db,
            max_total_bytes,
            total: Arc::new(AtomicI64::new(-1)),
        }
    }

    /// Writes `new` as the next operation of its refund, then deletes the oldest recordings
    /// while all of them pass the cap (never the one just written).
    pub async fn insert(&self, new: NewRecording) -> Result<(), DbError> {
        let size = new.json.len() as i64;
        let (total, cap) = (self.total.clone(), self.max_total_bytes as i64);
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                tx.execute(
                    "INSERT INTO recordings (refund_id, seq, operation, provider, plugin_version,
                        plugin_sha256, recorded_at, truncated, size, recording)
                     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM recordings
                                  WHERE refund_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        new.refund_id,
                        new.operation,
                        new.by.provider,
                        new.by.plugin_version,
                        new.by.plugin_sha256,
                        new.now_ms,
                        new.truncated,
                        size,
                        new.json
                    ],
                )?;
                let newest = tx.last_insert_rowid();
                let mut sum = total.load(Ordering::SeqCst);
                if sum < 0 {
                    sum =
                        tx.query_row("SELECT COALESCE(SUM(size), 0) FROM recordings", [], |r| {
                            r.get(0)
                        })?;
                } else {
                    sum += size;
                }
                while sum > cap {
                    let oldest: Option<(i64, i64)> = tx
                        .query_row(
                            "SELECT id, size FROM recordings WHERE id < ?1 ORDER BY id LIMIT 1",
                            [newest],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    let Some((id, bytes)) = oldest else { break };
                    tx.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
                    sum -= bytes;
                }
                tx.commit()?;
                total.store(sum, Ordering::SeqCst);
                Ok(())
            })
            .await
    }

    /// Bytes of every recording in the table.
    pub async fn total_bytes(&self) -> Result<i64, DbError> {
        total_bytes(&self.db).await
    }
}

/// Bytes of every recording in `db`.
pub async fn total_bytes(db: &Database) -> Result<i64, DbError> {
    db.run(|c| {
        c.query_row("SELECT COALESCE(SUM(size), 0) FROM recordings", [], |r| {
            r.get(0)
        })
    })
    .await
}

/// Every recording of `refund_id`, in operation order.
pub async fn load(db: &Database, refund_id: &str) -> Result<Vec<RecordingRow>, DbError> {
    let id = refund_id.to_owned();
    db.run(move |c| {
        let mut stmt = c.prepare(
            "SELECT seq, provider, plugin_version, plugin_sha256, recorded_at, size, recording
             FROM recordings WHERE refund_id = ?1 ORDER BY seq",
        )?;
        stmt.query_map([&id], |r| {
            Ok(RecordingRow {
                seq: r.get(0)?,
                by: RecordedBy {
                    provider: r.get(1)?,
                    plugin_version: r.get(2)?,
                    plugin_sha256: r.get(3)?,
                },
                recorded_at: r.get(4)?,
                size: r.get(5)?,
                json: r.get(6)?,
            })
        })?
        .collect()
    })
    .await
}
