//! Recordings on PostgreSQL ([`crate::recordings`]).
//!
//! Every host writes recordings, and their total size cap is the table's: each insert and the
//! trim of the oldest rows it may cause run under one advisory lock (one at a time across
//! hosts), and keep the total in `recordings_total` (a host cannot count the others' writes, as
//! SQLite's single writer does in memory).

use super::Pg;
use crate::error::DbError;
use crate::recordings::model::{NewRecording, RecordedBy, RecordingRow};

/// See [`crate::recordings::RecordingTable::insert`]: the next operation of its refund, then
/// the oldest recordings deleted while all of them pass `cap` (never the one just written).
pub(crate) async fn insert(pg: &Pg, new: &NewRecording, cap: i64) -> Result<(), DbError> {
    let size = new.json.len() as i64;
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // Serializes the inserts (their `seq` too) and trims of every host.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('recordings', 0))",
        &[],
    )
    .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO recordings (refund_id, seq, operation, provider, plugin_version,
                plugin_sha256, recorded_at, truncated, size, recording)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM recordings
                          WHERE refund_id = $1), $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id",
        )
        .await?;
    let newest: i64 = tx
        .query_one(
            &insert,
            &[
                &new.refund_id,
                &new.operation,
                &new.by.provider,
                &new.by.plugin_version,
                &new.by.plugin_sha256,
                &new.now_ms,
                &new.truncated,
                &size,
                &new.json,
            ],
        )
        .await?
        .try_get(0)?;
    let total = tx
        .prepare_cached(
            "UPDATE recordings_total SET bytes = bytes + $1 WHERE id = 1 RETURNING bytes",
        )
        .await?;
    let mut sum: i64 = tx.query_one(&total, &[&size]).await?.try_get(0)?;
    let before = sum;
    if sum > cap {
        let oldest = tx
            .prepare_cached(
                "DELETE FROM recordings WHERE id = (
                     SELECT id FROM recordings WHERE id < $1 ORDER BY id LIMIT 1)
                 RETURNING size",
            )
            .await?;
        while sum > cap {
            let Some(row) = tx.query_opt(&oldest, &[&newest]).await? else {
                break;
            };
            sum -= row.try_get::<_, i64>(0)?;
        }
    }
    if sum != before {
        tx.execute(
            "UPDATE recordings_total SET bytes = $1 WHERE id = 1",
            &[&sum],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// See [`crate::recordings::total_bytes`].
pub(crate) async fn total_bytes(pg: &Pg) -> Result<i64, DbError> {
    // SUM of BIGINT is NUMERIC in PostgreSQL: the cast brings it back.
    Ok(pg
        .client()
        .await?
        .query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM recordings", &[])
        .await?
        .try_get(0)?)
}

/// See [`crate::recordings::load`].
pub(crate) async fn load(pg: &Pg, refund_id: &str) -> Result<Vec<RecordingRow>, DbError> {
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached(
            "SELECT seq, provider, plugin_version, plugin_sha256, recorded_at, size, recording
             FROM recordings WHERE refund_id = $1 ORDER BY seq",
        )
        .await?;
    client
        .query(&stmt, &[&refund_id])
        .await?
        .iter()
        .map(|r| {
            Ok(RecordingRow {
                seq: r.try_get(0)?,
                by: RecordedBy {
                    provider: r.try_get(1)?,
                    plugin_version: r.try_get(2)?,
                    plugin_sha256: r.try_get(3)?,
                },
                recorded_at: r.try_get(4)?,
                size: r.try_get(5)?,
                json: r.try_get(6)?,
            })
        })
        .collect()
}
