//! The plugin registry's rows: every loaded version's component bytes, each provider's active
//! version, and the key the artifact cache is authenticated with.

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

/// The ledger's artifact key (32 bytes): `fresh` the first time it is asked for, the stored one
/// after that.
pub async fn artifact_key(db: &Database, fresh: [u8; 32]) -> Result<[u8; 32], DbError> {
    db.run(move |c| {
        // Two processes starting on one ledger at once: the first insert wins, both read it.
        c.execute(
            "INSERT INTO artifact_key (id, key) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
            [fresh.as_slice()],
        )?;
        let bytes: Vec<u8> = c.query_row("SELECT key FROM artifact_key WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                format!("the artifact key is {} bytes, not 32", bytes.len()).into(),
            )
        })
    })
    .await
}

/// A version as the ledger keeps it.
pub struct StoredVersion {
    /// The plugin's version (from its `describe()`).
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The component.
    pub component: Vec<u8>,
    /// When it was first loaded (ms).
    pub loaded_at: i64,
}

/// What the ledger holds for one provider.
pub struct StoredProvider {
    /// Its versions, oldest first.
    pub versions: Vec<StoredVersion>,
    /// The active version.
    pub active: Option<String>,
    /// SHA-256 of the configured component a start last applied.
    pub configured: Option<String>,
}

/// A provider's stored versions, its active one, and the configured component last applied.
pub async fn stored(db: &Database, provider: &str) -> Result<StoredProvider, DbError> {
    let provider = provider.to_owned();
    db.run(move |c| {
        let mut stmt = c.prepare(
            "SELECT version, sha256, component, loaded_at FROM plugin_versions
             WHERE provider = ?1 ORDER BY loaded_at, version",
        )?;
        let versions = stmt
            .query_map([&provider], |r| {
                Ok(StoredVersion {
                    version: r.get(0)?,
                    sha256: r.get(1)?,
                    component: r.get(2)?,
                    loaded_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let one = |sql: &str| c.query_row(sql, [&provider], |r| r.get(0)).optional();
        Ok(StoredProvider {
            versions,
            active: one("SELECT version FROM plugin_active WHERE provider = ?1")?,
            configured: one("SELECT sha256 FROM plugin_configured WHERE provider = ?1")?,
        })
    })
    .await
}

/// Keeps a newly loaded version.
pub async fn insert(db: &Database, provider: &str, version: &StoredVersion) -> Result<(), DbError> {
    let (provider, v) = (provider.to_owned(), version.version.clone());
    let (sha, bytes, at) = (
        version.sha256.clone(),
        version.component.clone(),
        version.loaded_at,
    );
    db.run(move |c| {
        c.execute(
            "INSERT INTO plugin_versions (provider, version, sha256, component, loaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![provider, v, sha, bytes, at],
        )
        .map(drop)
    })
    .await
}

/// Makes `version` the provider's active one; with `configured`, also records that the
/// configured component with that hash was applied (both or neither).
pub async fn activate(
    db: &Database,
    provider: &str,
    version: &str,
    configured: Option<&str>,
    now_ms: i64,
) -> Result<(), DbError> {
    let (provider, version) = (provider.to_owned(), version.to_owned());
    let configured = configured.map(str::to_owned);
    db.run(move |c| {
        let tx = c.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO plugin_active (provider, version, activated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (provider) DO UPDATE SET version = ?2, activated_at = ?3",
            params![provider, version, now_ms],
        )?;
        if let Some(sha) = configured {
            tx.execute(
                "INSERT INTO plugin_configured (provider, sha256, applied_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (provider) DO UPDATE SET sha256 = ?2, applied_at = ?3",
                params![provider, sha, now_ms],
            )?;
        }
        tx.commit()
    })
    .await
}

/// Forgets a version.
pub async fn remove(db: &Database, provider: &str, version: &str) -> Result<(), DbError> {
    let (provider, version) = (provider.to_owned(), version.to_owned());
    db.run(move |c| {
        c.execute(
            "DELETE FROM plugin_versions WHERE provider = ?1 AND version = ?2",
            params![provider, version],
        )
        .map(drop)
    })
    .await
}

/// The component bytes of `provider`'s version with this SHA-256, if the ledger still has them.
pub async fn component(
    db: &Database,
    provider: &str,
    sha256: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    let (provider, sha) = (provider.to_owned(), sha256.to_owned());
    db.run(move |c| {
        c.query_row(
            "SELECT component FROM plugin_versions WHERE provider = ?1 AND sha256 = ?2",
            [&provider, &sha],
            |r| r.get(0),
        )
        .optional()
    })
    .await
}
