//! The plugin registry's rows on PostgreSQL ([`crate::plugin_versions`]).
//!
//! Every host runs the versions these rows name, so each change (a version kept or forgotten,
//! an activation, the configured component applied) is announced on [`REGISTRY_CHANNEL`] with
//! the provider as payload. The `NOTIFY` is sent inside the changing transaction: PostgreSQL
//! delivers it when, and only if, the change commits, so no host hears of a change it cannot
//! read yet, and no committed change goes unannounced.

use deadpool_postgres::GenericClient;

use super::{Pg, REGISTRY_CHANNEL};
use crate::error::DbError;
use crate::plugin_versions::model::{StoredProvider, StoredSummary, StoredVersion};

/// See [`crate::plugin_versions::artifact_key`].
pub(crate) async fn artifact_key(pg: &Pg, fresh: [u8; 32]) -> Result<[u8; 32], DbError> {
    let client = pg.client().await?;
    // Two hosts starting at once: the first insert wins (the second waits for its commit and
    // does nothing), both read it.
    client
        .execute(
            "INSERT INTO artifact_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await?;
    let bytes: Vec<u8> = client
        .query_one("SELECT key FROM artifact_key WHERE id = 1", &[])
        .await?
        .try_get(0)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| DbError::Config(format!("the artifact key is {} bytes, not 32", bytes.len())))
}

/// See [`crate::plugin_versions::stored`]: the three reads see one snapshot.
pub(crate) async fn stored(pg: &Pg, provider: &str) -> Result<StoredProvider, DbError> {
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let versions = tx
        .query(
            "SELECT version, sha256, component, loaded_at FROM plugin_versions
             WHERE provider = $1 ORDER BY loaded_at, version COLLATE \"C\"",
            &[&provider],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StoredVersion {
                version: r.try_get(0)?,
                sha256: r.try_get(1)?,
                component: r.try_get(2)?,
                loaded_at: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let active = active(&tx, provider).await?;
    let configured = one(
        &tx,
        "SELECT sha256 FROM plugin_configured WHERE provider = $1",
        provider,
    )
    .await?;
    tx.commit().await?;
    Ok(StoredProvider {
        versions,
        active,
        configured,
    })
}

/// See [`crate::plugin_versions::summary`]: one snapshot, no components read.
pub(crate) async fn summary(pg: &Pg, provider: &str) -> Result<StoredSummary, DbError> {
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let versions = tx
        .query(
            "SELECT version, sha256 FROM plugin_versions
             WHERE provider = $1 ORDER BY version COLLATE \"C\"",
            &[&provider],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let active = active(&tx, provider).await?;
    tx.commit().await?;
    Ok(StoredSummary { versions, active })
}

/// The provider's active version, if one is set.
async fn active(c: &impl GenericClient, provider: &str) -> Result<Option<String>, DbError> {
    one(
        c,
        "SELECT version FROM plugin_active WHERE provider = $1",
        provider,
    )
    .await
}

async fn one(c: &impl GenericClient, sql: &str, provider: &str) -> Result<Option<String>, DbError> {
    Ok(match c.query_opt(sql, &[&provider]).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// See [`crate::plugin_versions::insert`]; announced on [`REGISTRY_CHANNEL`] when it commits.
pub(crate) async fn insert(
    pg: &Pg,
    provider: &str,
    version: &StoredVersion,
) -> Result<(), DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO plugin_versions (provider, version, sha256, component, loaded_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &provider,
            &version.version,
            &version.sha256,
            &version.component,
            &version.loaded_at,
        ],
    )
    .await?;
    announce(&tx, provider).await?;
    tx.commit().await?;
    Ok(())
}

/// See [`crate::plugin_versions::activate`]; announced on [`REGISTRY_CHANNEL`] when it commits.
pub(crate) async fn activate(
    pg: &Pg,
    provider: &str,
    version: &str,
    configured: Option<&str>,
    now_ms: i64,
) -> Result<(), DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO plugin_active (provider, version, activated_at) VALUES ($1, $2, $3)
         ON CONFLICT (provider) DO UPDATE SET version = $2, activated_at = $3",
        &[&provider, &version, &now_ms],
    )
    .await?;
    if let Some(sha) = configured {
        tx.execute(
            "INSERT INTO plugin_configured (provider, sha256, applied_at) VALUES ($1, $2, $3)
             ON CONFLICT (provider) DO UPDATE SET sha256 = $2, applied_at = $3",
            &[&provider, &sha, &now_ms],
        )
        .await?;
    }
    announce(&tx, provider).await?;
    tx.commit().await?;
    Ok(())
}

/// See [`crate::plugin_versions::remove`]; announced on [`REGISTRY_CHANNEL`] when it commits.
pub(crate) async fn remove(pg: &Pg, provider: &str, version: &str) -> Result<(), DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM plugin_versions WHERE provider = $1 AND version = $2",
        &[&provider, &version],
    )
    .await?;
    announce(&tx, provider).await?;
    tx.commit().await?;
    Ok(())
}

/// See [`crate::plugin_versions::component`].
pub(crate) async fn component(
    pg: &Pg,
    provider: &str,
    sha256: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    let client = pg.client().await?;
    // SQLite's `query_row` takes the first of several rows (two versions of one component).
    let row = client
        .query_opt(
            "SELECT component FROM plugin_versions WHERE provider = $1 AND sha256 = $2
             ORDER BY loaded_at, version COLLATE \"C\" LIMIT 1",
            &[&provider, &sha256],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Tells every host, when `c`'s transaction commits, that `provider`'s registry rows changed.
async fn announce(c: &impl GenericClient, provider: &str) -> Result<(), DbError> {
    c.execute("SELECT pg_notify($1, $2)", &[&REGISTRY_CHANNEL, &provider])
        .await?;
    Ok(())
}
