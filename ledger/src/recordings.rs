//! Recordings (table `recordings`): one row per plugin operation, keyed by refund id and
//! operation sequence, written once when the operation ends. The oldest are deleted when all of
//! them together pass the configured total. What a recording holds is the service's business:
//! the ledger keeps it as the JSON text it is given.
//!
//! On PostgreSQL every host writes to the one table, and the cap is the table's: inserts and
//! their trims run one at a time across hosts (an advisory lock), and the total is kept in the
//! database rather than counted in memory ([`crate::postgres::recordings`]).

pub mod model;

pub use model::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};
use crate::writer::Rollbacks;

/// The recordings table, holding at most `max_total_bytes`. Cheap to clone.
#[derive(Clone)]
pub struct RecordingTable {
    db: Database,
    max_total_bytes: u64,
    /// Bytes of every recording in the table. The count is kept here (this process being the
    /// table's only writer) so that a write does not sum the table. Unused on PostgreSQL, where
    /// other hosts write too: the database keeps the total there.
    total: Arc<Total>,
}

/// Bytes of every recording in the table, as a write on the writer thread last counted them.
struct Total {
    /// The bytes; -1 until first counted, and after a write that may have counted a recording
    /// its batch did not keep.
    bytes: AtomicI64,
    /// The writer's rollbacks when they were counted: a batch rolled back since may have taken
    /// the recording that was counted (and run its write again).
    rollbacks: AtomicU64,
}

impl RecordingTable {
    /// The table in `db`, whose recordings together may take `max_total_bytes`.
    pub fn new(db: Database, max_total_bytes: u64) -> Self {
        Self {
            db,
            max_total_bytes,
            total: Arc::new(Total {
                bytes: AtomicI64::new(-1),
                rollbacks: AtomicU64::new(0),
            }),
        }
    }

    /// Writes `new` as the next operation of its refund, then deletes the oldest recordings
    /// while all of them pass the cap (never the one just written).
    pub async fn insert(&self, new: NewRecording) -> Result<(), DbError> {
        if let Some(pg) = self.db.pg() {
            let cap = self.max_total_bytes as i64;
            return crate::postgres::recordings::insert(pg, &new, cap).await;
        }
        let (total, cap) = (self.total.clone(), self.max_total_bytes as i64);
        let rollbacks = self.db.rollbacks()?;
        let written = self
            .db
            .write(move |c| insert_row(c, &new, &total, &rollbacks, cap))
            .await;
        forget_total_unless(&self.total, written.is_ok());
        written
    }

    /// Logs the exchanges of one plugin operation (as [`crate::Ledger::log_exchanges`]) and
    /// writes its recording, if any (as [`RecordingTable::insert`]), in one write of the ledger:
    /// one wait for a commit instead of two. A recording that cannot be written does not take
    /// the exchanges with it: its error comes back beside them (`Ok(Some(error))`).
    pub async fn log_operation(
        &self,
        log: OperationLog,
        recording: Option<NewRecording>,
    ) -> Result<Option<DbError>, DbError> {
        self.queue_operation(log, recording).await?.written().await
    }

    /// Sends [`RecordingTable::log_operation`]'s write without waiting for it: on SQLite the
    /// write is queued now and its answer is in once any write sent after it is answered (the
    /// ledger writes in the order it is sent and answers after each commit), so a caller that
    /// goes on to record the operation's outcome waits for one commit instead of two. On
    /// PostgreSQL, whose connections commit independently, the write is made before this
    /// returns.
    pub async fn queue_operation(
        &self,
        log: OperationLog,
        recording: Option<NewRecording>,
    ) -> Result<PendingLog, DbError> {
        if let Some(pg) = self.db.pg() {
            let OperationLog {
                refund_id,
                provider,
                operation,
                exchanges,
            } = log;
            crate::postgres::exchanges::log_exchanges(
                pg,
                refund_id.as_deref(),
                &provider,
                &operation,
                exchanges,
            )
            .await?;
            let recording_failed = match recording {
                Some(new) => self.insert(new).await.err(),
                None => None,
            };
            return Ok(PendingLog(Pending::Written(recording_failed)));
        }
        let (total, cap) = (self.total.clone(), self.max_total_bytes as i64);
        let rollbacks = self.db.rollbacks()?;
        let answer = self.db.queue_write(move |c| {
            crate::exchanges::insert_exchanges(
                c,
                log.refund_id.as_deref(),
                &log.provider,
                &log.operation,
                &log.exchanges,
            )?;
            let Some(new) = &recording else {
                return Ok(None);
            };
            // Under a savepoint of its own, so that its failure leaves the exchanges in.
            let insert = |c: &rusqlite::Connection| insert_row(c, new, &total, &rollbacks, cap);
            Ok(crate::writer::in_savepoint(c, insert).err())
        })?;
        Ok(PendingLog(Pending::Queued {
            answer,
            total: self.total.clone(),
        }))
    }

    /// Bytes of every recording in the table.
    pub async fn total_bytes(&self) -> Result<i64, DbError> {
        total_bytes(&self.db).await
    }
}

/// One operation's log sent by [`RecordingTable::queue_operation`], its answer to come.
#[must_use = "a queued log's answer says whether it was written"]
pub struct PendingLog(Pending);

enum Pending {
    /// Written already (PostgreSQL); a recording that could not be written.
    Written(Option<DbError>),
    /// Queued on SQLite's writer.
    Queued {
        answer: crate::writer::Queued<Option<rusqlite::Error>>,
        total: Arc<Total>,
    },
}

impl PendingLog {
    /// Whether the log was written: as [`RecordingTable::log_operation`] answers.
    pub async fn written(self) -> Result<Option<DbError>, DbError> {
        match self.0 {
            Pending::Written(recording_failed) => Ok(recording_failed),
            Pending::Queued { answer, total } => {
                let written = answer.answer().await;
                forget_total_unless(&total, matches!(written, Ok(None)));
                Ok(written?.map(DbError::from))
            }
        }
    }
}

/// After a write that may have counted a recording its batch did not commit (`written` false):
/// the `total` is unknown until counted again.
fn forget_total_unless(total: &Total, written: bool) {
    if !written {
        total.bytes.store(-1, Ordering::SeqCst);
    }
}

/// Bytes of every recording in `db`.
pub async fn total_bytes(db: &Database) -> Result<i64, DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::recordings::total_bytes(pg).await;
    }
    db.run(|c| {
        c.query_row("SELECT COALESCE(SUM(size), 0) FROM recordings", [], |r| {
            r.get(0)
        })
    })
    .await
}

/// Every recording of `refund_id`, in operation order.
pub async fn load(db: &Database, refund_id: &str) -> Result<Vec<RecordingRow>, DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::recordings::load(pg, refund_id).await;
    }
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

/// Inserts `new` as the next operation of its refund and trims the oldest recordings past
/// `cap` (SQLite), inside the caller's write; keeps `total` up to date, counting the table again
/// when it is unknown or the writer has rolled a batch back since it was counted.
fn insert_row(
    c: &rusqlite::Connection,
    new: &NewRecording,
    total: &Total,
    rollbacks: &Rollbacks,
    cap: i64,
) -> Result<(), rusqlite::Error> {
    let size = new.json.len() as i64;
    c.prepare_cached(
        "INSERT INTO recordings (refund_id, seq, operation, provider, plugin_version,
            plugin_sha256, recorded_at, truncated, size, recording)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM recordings
                      WHERE refund_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        new.refund_id,
        new.operation,
        new.by.provider,
        new.by.plugin_version,
        new.by.plugin_sha256,
        new.now_ms,
        new.truncated,
        size,
        new.json
    ])?;
    let newest = c.last_insert_rowid();
    let seen = rollbacks.count();
    let mut sum = total.bytes.load(Ordering::SeqCst);
    if sum < 0 || total.rollbacks.load(Ordering::SeqCst) != seen {
        sum = c.query_row("SELECT COALESCE(SUM(size), 0) FROM recordings", [], |r| {
            r.get(0)
        })?;
    } else {
        sum += size;
    }
    while sum > cap {
        let oldest: Option<(i64, i64)> = c
            .query_row(
                "SELECT id, size FROM recordings WHERE id < ?1 ORDER BY id LIMIT 1",
                [newest],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, bytes)) = oldest else { break };
        c.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
        sum -= bytes;
    }
    total.bytes.store(sum, Ordering::SeqCst);
    total.rollbacks.store(seen, Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(provider: &str) -> RecordedBy {
        RecordedBy {
            provider: provider.into(),
            plugin_version: "1.0.0".into(),
            plugin_sha256: "abc".into(),
        }
    }

    fn recording(refund_id: &str, bytes: usize, now_ms: i64) -> NewRecording {
        NewRecording {
            refund_id: refund_id.into(),
            operation: "create_refund",
            by: by("p"),
            truncated: bytes > 100,
            json: "x".repeat(bytes),
            now_ms,
        }
    }

    fn seqs(rows: &[RecordingRow]) -> Vec<i64> {
        rows.iter().map(|r| r.seq).collect()
    }

    fn exchange(url: &str) -> crate::exchange::Exchange {
        crate::exchange::Exchange {
            method: "POST".into(),
            url: url.into(),
            request_headers: vec![],
            request_body: Some("{}".into()),
            status: Some(201),
            response_headers: vec![],
            response_body: Some("{}".into()),
            error: None,
            latency_ms: 1.0,
            sent_at_ms: 5,
        }
    }

    fn log(refund_id: &str) -> OperationLog {
        OperationLog {
            refund_id: Some(refund_id.into()),
            provider: "p".into(),
            operation: "create-refund".into(),
            exchanges: vec![exchange("http://p/1"), exchange("http://p/2")],
        }
    }

    /// Makes `db` refuse (`refused`) every row of `table` for `refund_id`.
    async fn refuse_rows(db: &Database, table: &'static str, refund_id: &'static str) {
        db.run(move |c| {
            c.execute_batch(&format!(
                "CREATE TRIGGER no_{table}_{refund_id} BEFORE INSERT ON {table}
                 WHEN NEW.refund_id = '{refund_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ))
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_operations_exchanges_and_recording_are_one_write_and_a_failed_recording_keeps_the_exchanges()
     {
        let db = Database::open(None).unwrap();
        let ledger = crate::Ledger::new(db.clone());
        let table = RecordingTable::new(db.clone(), 10_000);
        let writes = |db: &Database| db.write_counts().unwrap().writes;
        let before = writes(&db);
        let failed = table
            .log_operation(log("a"), Some(recording("a", 40, 1)))
            .await
            .unwrap();
        assert!(failed.is_none(), "{failed:?}");
        assert_eq!(writes(&db), before + 1, "one write for both");
        assert_eq!(ledger.exchanges("a").await.unwrap().len(), 2);
        assert_eq!(seqs(&load(&db, "a").await.unwrap()), [1]);

        // A recording the database refuses: the exchanges are kept all the same.
        refuse_rows(&db, "recordings", "b").await;
        let failed = table
            .log_operation(log("b"), Some(recording("b", 40, 2)))
            .await
            .unwrap();
        assert!(failed.unwrap().to_string().contains("refused"));
        assert_eq!(ledger.exchanges("b").await.unwrap().len(), 2);
        assert!(load(&db, "b").await.unwrap().is_empty());
        // And the next recording is counted and numbered as if nothing happened.
        table
            .log_operation(log("a"), Some(recording("a", 40, 3)))
            .await
            .unwrap();
        assert_eq!(seqs(&load(&db, "a").await.unwrap()), [1, 2]);
    }

    #[tokio::test]
    async fn a_recording_whose_write_ran_again_after_a_rollback_is_counted_once() {
        let db = Database::open(None).unwrap();
        let table = RecordingTable::new(db.clone(), 100);
        // Hold the writer, so that the two writes below wait together and run in one batch.
        let (running, started) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let db = db.clone();
            async move {
                db.run(move |_| {
                    let _ = running.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
            }
        });
        started.await.unwrap();
        let pending = table
            .queue_operation(log("a"), Some(recording("a", 40, 1)))
            .await
            .unwrap();
        // The write after it fails: the batch is rolled back, and the log's write runs again.
        let failing = db
            .queue_write(|c| c.execute_batch("INSERT INTO no_such_table VALUES (1)"))
            .unwrap();
        drop(release);
        holder.await.unwrap().unwrap();
        assert!(pending.written().await.unwrap().is_none());
        assert!(failing.answer().await.is_err());
        assert_eq!(db.rollbacks().unwrap().count(), 1);

        // 40 + 40 bytes are under the cap of 100: nothing goes. Had the recording run twice
        // been counted twice, the total would pass the cap and take `a`.
        table.insert(recording("b", 40, 2)).await.unwrap();
        assert_eq!(seqs(&load(&db, "a").await.unwrap()), [1]);
        assert_eq!(table.total_bytes().await.unwrap(), 80);
    }

    #[tokio::test]
    async fn a_queued_operation_log_is_written_by_the_time_a_later_write_is_answered_and_its_failure_is_kept()
     {
        let db = Database::open(None).unwrap();
        let ledger = crate::Ledger::new(db.clone());
        let table = RecordingTable::new(db.clone(), 10_000);
        let pending = table
            .queue_operation(log("a"), Some(recording("a", 40, 1)))
            .await
            .unwrap();
        // A later write of the ledger's: once it is answered, the log is in.
        table.insert(recording("b", 10, 2)).await.unwrap();
        let read = db
            .run(|c| {
                c.query_row("SELECT COUNT(*) FROM http_exchanges", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(
            read, 2,
            "the queued exchanges were written before the later write's answer"
        );
        assert!(pending.written().await.unwrap().is_none());
        assert_eq!(seqs(&load(&db, "a").await.unwrap()), [1]);

        // Exchanges the database refuses: the failure comes back when the log is confirmed,
        // after a later write went through.
        refuse_rows(&db, "http_exchanges", "c").await;
        let pending = table
            .queue_operation(log("c"), Some(recording("c", 40, 3)))
            .await
            .unwrap();
        table.insert(recording("b", 10, 4)).await.unwrap();
        let err = pending.written().await.unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
        assert!(ledger.exchanges("c").await.unwrap().is_empty());
        assert!(
            load(&db, "c").await.unwrap().is_empty(),
            "nor its recording"
        );
        // The table holds what was written: a (40 bytes) and b twice (10 each).
        assert_eq!(table.total_bytes().await.unwrap(), 60);
    }

    both_databases! {
        async fn recordings_are_numbered_per_refund_and_the_oldest_go_past_the_cap(db) {
            let table = RecordingTable::new(db.clone(), 100);
            table.insert(recording("a", 40, 1)).await.unwrap();
            table.insert(recording("b", 10, 2)).await.unwrap();
            table.insert(recording("a", 40, 3)).await.unwrap();
            assert_eq!(table.total_bytes().await.unwrap(), 90);
            let a = load(&db, "a").await.unwrap();
            assert_eq!(seqs(&a), [1, 2]);
            assert_eq!(
                a[1],
                RecordingRow {
                    seq: 2,
                    by: by("p"),
                    recorded_at: 3,
                    size: 40,
                    json: "x".repeat(40),
                }
            );
            // 130 bytes: the oldest (a/1) goes, 90 remain.
            table.insert(recording("a", 40, 4)).await.unwrap();
            assert_eq!(table.total_bytes().await.unwrap(), 90);
            assert_eq!(seqs(&load(&db, "a").await.unwrap()), [2, 3]);
            assert_eq!(seqs(&load(&db, "b").await.unwrap()), [1]);
            // Numbering continues after the refund's last recording.
            table.insert(recording("a", 5, 5)).await.unwrap();
            assert_eq!(seqs(&load(&db, "a").await.unwrap()), [2, 3, 4]);
            // One above the cap by itself: every other goes, never the one just written.
            table.insert(recording("c", 150, 6)).await.unwrap();
            assert_eq!(table.total_bytes().await.unwrap(), 150);
            assert!(load(&db, "a").await.unwrap().is_empty());
            assert!(load(&db, "b").await.unwrap().is_empty());
            assert_eq!(seqs(&load(&db, "c").await.unwrap()), [1]);
            // A table opened later (a restart) counts what is there.
            let again = RecordingTable::new(db.clone(), 200);
            again.insert(recording("c", 60, 7)).await.unwrap();
            assert_eq!(total_bytes(&db).await.unwrap(), 60);
            assert_eq!(seqs(&load(&db, "c").await.unwrap()), [2]);
        }
    }

    /// Two hosts recording at once into one table keep its cap and number each refund's
    /// recordings one after the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_recording_at_once_keep_the_cap() {
        let (a, b) = crate::testing::pg_hosts("recordings_hosts").await;
        let tables = [
            RecordingTable::new(a.clone(), 1_000),
            RecordingTable::new(b, 1_000),
        ];
        let writes: Vec<_> = (0..40)
            .map(|i| {
                let table = tables[i % 2].clone();
                tokio::spawn(async move { table.insert(recording("r", 100, i as i64)).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert_eq!(total_bytes(&a).await.unwrap(), 1_000);
        assert_eq!(
            seqs(&load(&a, "r").await.unwrap()),
            (31..=40).collect::<Vec<_>>()
        );
        let kept: i64 = a
            .pg()
            .unwrap()
            .client()
            .await
            .unwrap()
            .query_one("SELECT bytes FROM recordings_total", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1_000, "the kept total is the table's");
    }
}
