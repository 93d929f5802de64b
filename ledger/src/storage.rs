//! The plugins' `storage` capability in the ledger (table `plugin_kv`): one namespace per
//! provider.
//!
//! Reads are served from a write-through cache in memory: a plugin reads its cached token on
//! every operation, and a round trip to SQLite's blocking thread would cost more than the whole
//! refund's logic. Writes reach SQLite before they are cached, so a restart loses nothing. The
//! cache assumes this process is the database's only writer of plugin storage (if two hosts
//! share a file, one may read a value the other has replaced; for a token that costs one
//! re-authorization).
//!
//! The namespace's quota is checked and the value written under one lock of the connection, so
//! no other write can come between the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use refundry_runtime::BoxFuture;
use refundry_runtime::KeyValueStore;
use refundry_runtime::bindings::storage::StorageError;
use refundry_runtime::caps::storage::over_quota;
use refundry_runtime::limits::PluginQuotas;
use rusqlite::OptionalExtension;

use crate::db::{Database, DbError};

/// One provider's namespace in the ledger's key-value table.
#[derive(Clone)]
pub struct SqliteStore {
    db: Database,
    provider: String,
    quotas: PluginQuotas,
    /// Values read or written so far (`None`: known to be absent).
    cache: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>>,
}

impl SqliteStore {
    /// The storage of one provider, within `quotas`. Other providers' keys are invisible to it.
    pub fn new(db: Database, provider: String, quotas: PluginQuotas) -> Self {
        Self {
            db,
            provider,
            quotas,
            cache: Arc::default(),
        }
    }

    fn cached(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: &str, value: Option<Vec<u8>>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key.to_owned(), value);
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(value) = self.cached(key) {
            return Ok(value);
        }
        let (provider, k) = (self.provider.clone(), key.to_owned());
        let value: Option<Vec<u8>> = self
            .db
            .run(move |c| {
                c.query_row(
                    "SELECT value FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                    (&provider, &k),
                    |r| r.get(0),
                )
                .optional()
            })
            .await
            .map_err(unavailable)?;
        self.remember(key, value.clone());
        Ok(value)
    }

    async fn write(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let provider = self.provider.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let (k, v) = (key.to_owned(), value.to_vec());
        let quotas = self.quotas;
        self.db
            .run(move |c| {
                let (keys, bytes): (u64, u64) = c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
                     FROM plugin_kv WHERE provider = ?1 AND key != ?2",
                    (&provider, &k),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if let Some(allowed) = over_quota(quotas, keys, bytes, k.len(), v.len()) {
                    return Ok(Err(StorageError::TooLarge(allowed)));
                }
                c.execute(
                    "INSERT INTO plugin_kv (provider, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                    (&provider, &k, &v, now),
                )?;
                Ok(Ok(()))
            })
            .await
            .map_err(unavailable)??;
        self.remember(key, Some(value.to_vec()));
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StorageError> {
        let (provider, k) = (self.provider.clone(), key.to_owned());
        self.db
            .run(move |c| {
                c.execute(
                    "DELETE FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                    (&provider, &k),
                )
            })
            .await
            .map_err(unavailable)?;
        self.remember(key, None);
        Ok(())
    }
}

impl KeyValueStore for SqliteStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(self.read(key))
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.write(key, value))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.remove(key))
    }
}

fn unavailable(e: DbError) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use refundry_runtime::caps::storage::check_store;

    use super::*;

    fn store(db: &Database, provider: &str, quotas: PluginQuotas) -> SqliteStore {
        SqliteStore::new(db.clone(), provider.into(), quotas)
    }

    #[tokio::test]
    async fn namespaced_per_provider() {
        let db = Database::open(None).unwrap();
        let a = store(&db, "a", PluginQuotas::default());
        let b = store(&db, "b", PluginQuotas::default());
        a.set("token", b"A").await.unwrap();
        assert_eq!(a.get("token").await.unwrap(), Some(b"A".to_vec()));
        assert_eq!(b.get("token").await.unwrap(), None);
        a.set("token", b"A2").await.unwrap();
        assert_eq!(a.get("token").await.unwrap(), Some(b"A2".to_vec()));
        a.delete("token").await.unwrap();
        assert_eq!(a.get("token").await.unwrap(), None);
    }

    #[tokio::test]
    async fn writes_reach_the_database_and_survive_a_new_cache() {
        let db = Database::open(None).unwrap();
        let first = store(&db, "p", PluginQuotas::default());
        assert_eq!(first.get("token").await.unwrap(), None);
        first.set("token", b"T1").await.unwrap();
        // A new store (as after a restart) has an empty cache and reads the database.
        let second = store(&db, "p", PluginQuotas::default());
        assert_eq!(second.get("token").await.unwrap(), Some(b"T1".to_vec()));
        second.delete("token").await.unwrap();
        let third = store(&db, "p", PluginQuotas::default());
        assert_eq!(third.get("token").await.unwrap(), None);
    }

    #[tokio::test]
    async fn keeps_values_and_quotas_like_every_store() {
        // An empty namespace each time: a database of its own.
        let empty = |quotas| SqliteStore::new(Database::open(None).unwrap(), "p".into(), quotas);
        check_store(empty).await;
    }

    #[tokio::test]
    async fn each_provider_has_its_own_quota() {
        let db = Database::open(None).unwrap();
        let quotas = PluginQuotas {
            storage_max_keys: 1,
            ..PluginQuotas::default()
        };
        store(&db, "p", quotas).set("a", b"1").await.unwrap();
        store(&db, "q", quotas).set("a", b"1").await.unwrap();
        assert_eq!(
            store(&db, "p", quotas).set("b", b"2").await,
            Err(StorageError::TooLarge(0))
        );
    }
}
