//! The plugins' key-value storage on PostgreSQL ([`crate::storage`]).
//!
//! A namespace's quota is checked and its value written in one transaction under the
//! provider's advisory lock, so two hosts' writes to one namespace cannot both pass the check.
//! Every write and remove is announced on [`STORAGE_CHANNEL`] (payload: the provider, a tab, the
//! key) when it commits, from inside its transaction: the hosts caching the namespace forget
//! the key.

use refundry_runtime::bindings::storage::StorageError;
use refundry_runtime::caps::storage::over_quota;
use refundry_runtime::limits::PluginQuotas;

use super::{Pg, STORAGE_CHANNEL};
use crate::error::DbError;

/// The announcement of a change to `provider`'s `key`.
pub(crate) fn payload(provider: &str, key: &str) -> String {
    format!("{provider}\t{key}")
}

/// The provider and key an announcement names.
pub(crate) fn parse_payload(payload: &str) -> Option<(&str, &str)> {
    payload.split_once('\t')
}

/// The value of `provider`'s `key`.
pub(crate) async fn read(pg: &Pg, provider: &str, key: &str) -> Result<Option<Vec<u8>>, DbError> {
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached("SELECT value FROM plugin_kv WHERE provider = $1 AND key = $2")
        .await?;
    Ok(match client.query_opt(&stmt, &[&provider, &key]).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Writes `provider`'s `key` within `quotas`: the inner error when the namespace would pass
/// them (nothing written).
pub(crate) async fn write(
    pg: &Pg,
    provider: &str,
    key: &str,
    value: &[u8],
    quotas: PluginQuotas,
    now_ms: i64,
) -> Result<Result<(), StorageError>, DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // One write of a namespace at a time, across hosts: the check below holds until commit.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('kv:' || $1, 0))",
        &[&provider],
    )
    .await?;
    let usage = tx
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(octet_length(key) + octet_length(value)), 0)
             FROM plugin_kv WHERE provider = $1 AND key <> $2",
        )
        .await?;
    let row = tx.query_one(&usage, &[&provider, &key]).await?;
    let (keys, bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if let Some(allowed) = over_quota(quotas, keys as u64, bytes as u64, key.len(), value.len()) {
        return Ok(Err(StorageError::TooLarge(allowed)));
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO plugin_kv (provider, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at",
        )
        .await?;
    tx.execute(&upsert, &[&provider, &key, &value, &now_ms])
        .await?;
    announce(&tx, provider, key).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Removes `provider`'s `key`.
pub(crate) async fn remove(pg: &Pg, provider: &str, key: &str) -> Result<(), DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM plugin_kv WHERE provider = $1 AND key = $2",
        &[&provider, &key],
    )
    .await?;
    announce(&tx, provider, key).await?;
    tx.commit().await?;
    Ok(())
}

/// Tells every host, when `c`'s transaction commits, that `provider`'s `key` changed.
async fn announce(
    c: &deadpool_postgres::Transaction<'_>,
    provider: &str,
    key: &str,
) -> Result<(), DbError> {
    c.execute(
        "SELECT pg_notify($1, $2)",
        &[&STORAGE_CHANNEL, &payload(provider, key)],
    )
    .await?;
    Ok(())
}
