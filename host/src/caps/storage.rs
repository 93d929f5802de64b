//! The `storage` capability: a small key-value store per provider, in the host's SQLite database.

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
}

impl StorageCap {
    /// The storage of one provider. Other providers' keys are invisible to it.
    pub fn new(db: Database, provider: String) -> Self {
        Self { db, provider }
    }

    /// The value under `key`.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(&key)?;
        let provider = self.provider.clone();
        self.db
            .run(move |c| {
                c.query_row(
                    "SELECT value FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                    (&provider, &key),
                    |r| r.get(0),
                )
                .optional()
            })
            .await
            .map_err(unavailable)
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE {
            return Err(StorageError::TooLarge(MAX_VALUE as u32));
        }
        let provider = self.provider.clone();
        let now = chrono::Utc::now().timestamp_millis();
        self.db
            .run(move |c| {
                c.execute(
                    "INSERT INTO plugin_kv (provider, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                    (&provider, &key, &value, now),
                )
            })
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Removes `key`.
    pub async fn delete(&self, key: String) -> Result<(), StorageError> {
        check_key(&key)?;
        let provider = self.provider.clone();
        self.db
            .run(move |c| {
                c.execute(
                    "DELETE FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                    (&provider, &key),
                )
            })
            .await
            .map(|_| ())
            .map_err(unavailable)
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
