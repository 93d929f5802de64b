//! The `storage` capability: a small key-value store per provider, in the host's SQLite database.
//!
//! Reads are served from a write-through cache in memory: a plugin reads its cached token on
//! every operation, and a round trip to SQLite's blocking thread would cost more than the whole
//! refund's logic. Writes reach SQLite before they are cached, so a restart loses nothing. The
//! cache assumes this process is the database's only writer of plugin storage (if two hosts
//! share a file, one may read a value the other has replaced; for a token that costs one
//! re-authorization).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;

use crate::bindings::storage::StorageError;
use crate::db::Database;

/// Longest key accepted, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value accepted, in bytes: enough for tokens and small state, not a dumping ground.
pub const MAX_VALUE: usize = 64 * 1024;

/// One provider's namespace in the key-value store.
#[derive(Clone)]
pub struct StorageCap {
    db: Database,
    provider: String,
    /// Values read or written so far (`None`: known to be absent).
    cache: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>>,
}

impl StorageCap {
    /// The storage of one provider. Other providers' keys are invisible to it.
    pub fn new(db: Database, provider: String) -> Self {
        Self {
            db,
            provider,
            cache: Arc::default(),
        }
    }

    fn cached(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, value: Option<Vec<u8>>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, value);
        }
    }

    /// The value under `key`.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(&key)?;
        if let Some(value) = self.cached(&key) {
            return Ok(value);
        }
        let provider = self.provider.clone();
        let k = key.clone();
        let value = self
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

    /// Stores `value` under `key`.
    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE {
            return Err(StorageError::TooLarge(MAX_VALUE as u32));
        }
        let provider = self.provider.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let (k, v) = (key.clone(), value.clone());
        self.db
            .run(move |c| {
                c.execute(
                    "INSERT INTO plugin_kv (provider, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                    (&provider, &k, &v, now),
                )
            })
            .await
            .map_err(unavailable)?;
        self.remember(key, Some(value));
        Ok(())
    }

    /// Removes `key`.
    pub async fn delete(&self, key: String) -> Result<(), StorageError> {
        check_key(&key)?;
        let provider = self.provider.clone();
        let k = key.clone();
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

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.len() > MAX_KEY {
        Err(StorageError::TooLarge(MAX_KEY as u32))
    } else {
        Ok(())
    }
}

fn unavailable(e: crate::db::DbError) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn namespaced_per_provider() {
        let db = Database::open(None).unwrap();
        let a = StorageCap::new(db.clone(), "a".into());
        let b = StorageCap::new(db, "b".into());
        a.set("token".into(), b"A".to_vec()).await.unwrap();
        assert_eq!(a.get("token".into()).await.unwrap(), Some(b"A".to_vec()));
        assert_eq!(b.get("token".into()).await.unwrap(), None);
        a.set("token".into(), b"A2".to_vec()).await.unwrap();
        assert_eq!(a.get("token".into()).await.unwrap(), Some(b"A2".to_vec()));
        a.delete("token".into()).await.unwrap();
        assert_eq!(a.get("token".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn writes_reach_the_database_and_survive_a_new_cache() {
        let db = Database::open(None).unwrap();
        let first = StorageCap::new(db.clone(), "p".into());
        assert_eq!(first.get("token".into()).await.unwrap(), None);
        first.set("token".into(), b"T1".to_vec()).await.unwrap();
        // A new capability (as after a restart) has an empty cache and reads the database.
        let second = StorageCap::new(db, "p".into());
        assert_eq!(
            second.get("token".into()).await.unwrap(),
            Some(b"T1".to_vec())
        );
        second.delete("token".into()).await.unwrap();
        assert_eq!(
            StorageCap::new(second.db.clone(), "p".into())
                .get("token".into())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        let s = StorageCap::new(Database::open(None).unwrap(), "p".into());
        assert!(matches!(
            s.set("k".repeat(MAX_KEY + 1), vec![]).await,
            Err(StorageError::TooLarge(_))
        ));
        assert!(matches!(
            s.set("k".into(), vec![0; MAX_VALUE + 1]).await,
            Err(StorageError::TooLarge(_))
        ));
    }
}
