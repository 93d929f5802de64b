//! The registry's rows in the ledger: every loaded version's component bytes, and each
//! provider's active version.

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

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

/// A provider's stored versions (oldest first) and its active one.
pub async fn stored(
    db: &Database,
    provider: &str,
) -> Result<(Vec<StoredVersion>, Option<String>), DbError> {
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
        let active = c
            .query_row(
                "SELECT version FROM plugin_active WHERE provider = ?1",
                [&provider],
                |r| r.get(0),
            )
            .optional()?;
        Ok((versions, active))
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

/// Makes `version` the provider's active one.
pub async fn activate(
    db: &Database,
    provider: &str,
    version: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    let (provider, version) = (provider.to_owned(), version.to_owned());
    db.run(move |c| {
        c.execute(
            "INSERT INTO plugin_active (provider, version, activated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (provider) DO UPDATE SET version = ?2, activated_at = ?3",
            params![provider, version, now_ms],
        )
        .map(drop)
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
