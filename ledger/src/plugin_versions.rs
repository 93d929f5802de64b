//! The plugin registry's rows: every loaded version's component bytes, each provider's active
//! version, and the key the artifact cache is authenticated with.
//!
//! On PostgreSQL these rows are shared by every host: each change ([`insert`], [`activate`],
//! [`remove`]) is announced on [`crate::postgres::REGISTRY_CHANNEL`] (payload: the provider)
//! when it commits, so that the other hosts reload the provider's versions.

pub mod model;

pub use model::*;

use rusqlite::{OptionalExtension, params};

use crate::db::{Database, DbError};

/// The ledger's artifact key (32 bytes): `fresh` the first time it is asked for, the stored one
/// after that.
pub async fn artifact_key(db: &Database, fresh: [u8; 32]) -> Result<[u8; 32], DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::artifact_key(pg, fresh).await;
    }
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

/// A provider's stored versions, its active one, and the configured component last applied.
pub async fn stored(db: &Database, provider: &str) -> Result<StoredProvider, DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::stored(pg, provider).await;
    }
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

/// A provider's stored versions (version and hash, by version) and its active one, without the
/// components: what a host compares its registry with.
pub async fn summary(db: &Database, provider: &str) -> Result<StoredSummary, DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::summary(pg, provider).await;
    }
    let provider = provider.to_owned();
    db.run(move |c| {
        let versions = c
            .prepare(
                "SELECT version, sha256 FROM plugin_versions WHERE provider = ?1 ORDER BY version",
            )?
            .query_map([&provider], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let active = c
            .query_row(
                "SELECT version FROM plugin_active WHERE provider = ?1",
                [&provider],
                |r| r.get(0),
            )
            .optional()?;
        Ok(StoredSummary { versions, active })
    })
    .await
}

/// Keeps a newly loaded version. On PostgreSQL, announced to every host on
/// [`crate::postgres::REGISTRY_CHANNEL`] when it commits.
pub async fn insert(db: &Database, provider: &str, version: &StoredVersion) -> Result<(), DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::insert(pg, provider, version).await;
    }
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
/// configured component with that hash was applied (both or neither). On PostgreSQL, announced
/// to every host on [`crate::postgres::REGISTRY_CHANNEL`] when it commits.
pub async fn activate(
    db: &Database,
    provider: &str,
    version: &str,
    configured: Option<&str>,
    now_ms: i64,
) -> Result<(), DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::activate(
            pg, provider, version, configured, now_ms,
        )
        .await;
    }
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

/// Forgets a version. On PostgreSQL, announced to every host on
/// [`crate::postgres::REGISTRY_CHANNEL`] when it commits.
pub async fn remove(db: &Database, provider: &str, version: &str) -> Result<(), DbError> {
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::remove(pg, provider, version).await;
    }
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
    if let Some(pg) = db.pg() {
        return crate::postgres::plugin_versions::component(pg, provider, sha256).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str, sha: &str, loaded_at: i64) -> StoredVersion {
        StoredVersion {
            version: v.into(),
            sha256: sha.into(),
            component: format!("component {v}").into_bytes(),
            loaded_at,
        }
    }

    fn names(p: &StoredProvider) -> Vec<&str> {
        p.versions.iter().map(|v| v.version.as_str()).collect()
    }

    both_databases! {
        async fn the_artifact_key_is_made_once(db) {
            let first = artifact_key(&db, [1; 32]).await.unwrap();
            assert_eq!(first, [1; 32]);
            assert_eq!(artifact_key(&db, [2; 32]).await.unwrap(), [1; 32]);
        }

        async fn versions_are_kept_activated_and_forgotten(db) {
            let empty = stored(&db, "p").await.unwrap();
            assert!(empty.versions.is_empty());
            assert_eq!((empty.active, empty.configured), (None, None));
            insert(&db, "p", &version("1.1.0", "sha-b", 20)).await.unwrap();
            insert(&db, "p", &version("1.0.0", "sha-a", 10)).await.unwrap();
            insert(&db, "p", &version("1.0.0-rc", "sha-r", 20)).await.unwrap();
            insert(&db, "q", &version("9.0.0", "sha-q", 1)).await.unwrap();
            assert!(
                insert(&db, "p", &version("1.0.0", "sha-x", 30)).await.is_err(),
                "a version is kept once"
            );
            let p = stored(&db, "p").await.unwrap();
            assert_eq!(names(&p), ["1.0.0", "1.0.0-rc", "1.1.0"], "by load time, then version");
            assert_eq!(p.versions[0].sha256, "sha-a");
            assert_eq!(p.versions[0].component, b"component 1.0.0");
            assert_eq!(p.versions[0].loaded_at, 10);

            activate(&db, "p", "1.0.0", Some("sha-a"), 100).await.unwrap();
            let p = stored(&db, "p").await.unwrap();
            assert_eq!(p.active.as_deref(), Some("1.0.0"));
            assert_eq!(p.configured.as_deref(), Some("sha-a"));
            activate(&db, "p", "1.1.0", None, 200).await.unwrap();
            let p = stored(&db, "p").await.unwrap();
            assert_eq!(p.active.as_deref(), Some("1.1.0"));
            assert_eq!(p.configured.as_deref(), Some("sha-a"), "kept without a new one");
            assert_eq!(stored(&db, "q").await.unwrap().active, None);

            assert_eq!(
                component(&db, "p", "sha-b").await.unwrap().as_deref(),
                Some(&b"component 1.1.0"[..])
            );
            assert_eq!(component(&db, "q", "sha-b").await.unwrap(), None);
            remove(&db, "p", "1.0.0").await.unwrap();
            assert_eq!(names(&stored(&db, "p").await.unwrap()), ["1.0.0-rc", "1.1.0"]);
            assert_eq!(component(&db, "p", "sha-a").await.unwrap(), None);
            // The summary: the same versions and active one, without the components.
            assert_eq!(
                summary(&db, "p").await.unwrap(),
                StoredSummary {
                    versions: vec![
                        ("1.0.0-rc".into(), "sha-r".into()),
                        ("1.1.0".into(), "sha-b".into())
                    ],
                    active: Some("1.1.0".into()),
                }
            );
            assert_eq!(summary(&db, "none").await.unwrap(), StoredSummary::default());
        }
    }

    /// Every change is announced to the other hosts when it commits; a failed one is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_announced_to_every_host() {
        let db = crate::testing::pg_database("registry_notify").await;
        let mut heard = db
            .pg()
            .unwrap()
            .listen(crate::postgres::REGISTRY_CHANNEL)
            .await
            .unwrap();
        insert(&db, "p", &version("1.0.0", "sha-a", 1))
            .await
            .unwrap();
        assert_eq!(heard.recv().await.as_deref(), Some("p"));
        activate(&db, "p", "1.0.0", Some("sha-a"), 2).await.unwrap();
        assert_eq!(heard.recv().await.as_deref(), Some("p"));
        assert!(
            insert(&db, "p", &version("1.0.0", "sha-a", 3))
                .await
                .is_err()
        );
        remove(&db, "q", "0.1.0").await.unwrap();
        assert_eq!(
            heard.recv().await.as_deref(),
            Some("q"),
            "nothing for the failed insert"
        );
        remove(&db, "p", "1.0.0").await.unwrap();
        assert_eq!(heard.recv().await.as_deref(), Some("p"));
    }
}
