//! The `storage` capability: a small key-value store per provider, in the host's SQLite database.
//!
//! Reads are served from a write-through cache in memory: a plugin reads its cached token on
//! every operation, and a round trip to SQLite's blocking thread would cost more than the whole
//! refund's logic. Writes reach SQLite before they are cached, so a restart loses nothing. The
//! cache assumes this process is the database's only writer of plugin storage (if two hosts
//! share a file, one may read a value the other has replaced; for a token that costs one
//! re-authorization).
//!
//! Each provider's namespace has a quota ([`PluginQuotas`]: keys, and bytes of keys and values):
//! a write past it is refused with `too-large`, whose payload is then the bytes the value could
//! still have had (0 when the key count is the limit), and nothing is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;

use crate::bindings::storage::StorageError;
use crate::config::PluginQuotas;
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
    quotas: PluginQuotas,
    /// Values read or written so far (`None`: known to be absent).
    cache: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>>,
    /// Credentials the provider issued that the plugin keeps here (its cached auth token), by
    /// key: see [`StorageCap::credentials`].
    credentials: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl StorageCap {
    /// The storage of one provider, within `quotas`. Other providers' keys are invisible to it.
    pub fn new(db: Database, provider: String, quotas: PluginQuotas) -> Self {
        Self {
            db,
            provider,
            quotas,
            cache: Arc::default(),
            credentials: Arc::default(),
        }
    }

    /// The credentials found in the values read or written so far: string values of
    /// credential-named JSON fields, or the whole value of a credential-named key (as
    /// [`crate::secret::credentials_in`] finds them). A plugin's answers are cleaned of them.
    pub fn credentials(&self) -> Vec<String> {
        self.credentials
            .lock()
            .map(|c| c.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    fn cached(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, value: Option<Vec<u8>>) {
        let found = value.as_deref().map(|v| {
            let mut found = crate::secret::credentials_in(v);
            if crate::secret::names_a_credential(&key)
                && let Ok(text) = std::str::from_utf8(v)
                && text.len() >= crate::secret::MIN_TOKEN
            {
                found.push(text.to_owned());
            }
            found
        });
        if let Ok(mut credentials) = self.credentials.lock() {
            match found {
                Some(found) if !found.is_empty() => credentials.insert(key.clone(), found),
                _ => credentials.remove(&key),
            };
        }
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
        let quotas = self.quotas;
        self.db
            .run(move |c| {
                // Checked and written under the one connection's lock: no other write can come
                // between the two.
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

/// `None` when a value of `value_len` bytes under a key of `key_len` bytes fits beside the other
/// `keys` keys holding `bytes` bytes; else what `too-large` carries: the bytes the value could
/// still have had (0 when no other key fits).
fn over_quota(
    quotas: PluginQuotas,
    keys: u64,
    bytes: u64,
    key_len: usize,
    value_len: usize,
) -> Option<u32> {
    if keys + 1 > quotas.storage_max_keys {
        return Some(0);
    }
    let room = quotas
        .storage_max_bytes
        .saturating_sub(bytes)
        .saturating_sub(key_len as u64);
    (value_len as u64 > room).then(|| u32::try_from(room).unwrap_or(u32::MAX))
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
        let a = StorageCap::new(db.clone(), "a".into(), PluginQuotas::default());
        let b = StorageCap::new(db, "b".into(), PluginQuotas::default());
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
        let first = StorageCap::new(db.clone(), "p".into(), PluginQuotas::default());
        assert_eq!(first.get("token".into()).await.unwrap(), None);
        first.set("token".into(), b"T1".to_vec()).await.unwrap();
        // A new capability (as after a restart) has an empty cache and reads the database.
        let second = StorageCap::new(db, "p".into(), PluginQuotas::default());
        assert_eq!(
            second.get("token".into()).await.unwrap(),
            Some(b"T1".to_vec())
        );
        second.delete("token".into()).await.unwrap();
        assert_eq!(
            StorageCap::new(second.db.clone(), "p".into(), PluginQuotas::default())
                .get("token".into())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        let s = StorageCap::new(
            Database::open(None).unwrap(),
            "p".into(),
            PluginQuotas::default(),
        );
        assert!(matches!(
            s.set("k".repeat(MAX_KEY + 1), vec![]).await,
            Err(StorageError::TooLarge(_))
        ));
        assert!(matches!(
            s.set("k".into(), vec![0; MAX_VALUE + 1]).await,
            Err(StorageError::TooLarge(_))
        ));
    }

    fn quotas(keys: u64, bytes: u64) -> PluginQuotas {
        PluginQuotas {
            storage_max_keys: keys,
            storage_max_bytes: bytes,
            ..PluginQuotas::default()
        }
    }

    #[tokio::test]
    async fn the_key_count_quota_refuses_a_new_key_not_a_replacement() {
        let db = Database::open(None).unwrap();
        let s = StorageCap::new(db.clone(), "p".into(), quotas(2, 1 << 20));
        s.set("a".into(), b"1".to_vec()).await.unwrap();
        s.set("b".into(), b"2".to_vec()).await.unwrap();
        assert_eq!(
            s.set("c".into(), b"3".to_vec()).await,
            Err(StorageError::TooLarge(0))
        );
        assert_eq!(s.get("c".into()).await.unwrap(), None, "nothing written");
        // Replacing a key adds none.
        s.set("b".into(), b"22".to_vec()).await.unwrap();
        // Another provider has its own quota.
        let other = StorageCap::new(db, "q".into(), quotas(2, 1 << 20));
        other.set("c".into(), b"3".to_vec()).await.unwrap();
        // Freed by a delete.
        s.delete("a".into()).await.unwrap();
        s.set("c".into(), b"3".to_vec()).await.unwrap();
    }

    #[tokio::test]
    async fn the_byte_quota_counts_keys_and_values() {
        let s = StorageCap::new(Database::open(None).unwrap(), "p".into(), quotas(100, 1024));
        // Key "a" (1 byte) + 600 bytes.
        s.set("a".into(), vec![0; 600]).await.unwrap();
        // 1024 - 601 - 1 ("b") = 422 bytes left for b's value.
        assert_eq!(
            s.set("b".into(), vec![0; 423]).await,
            Err(StorageError::TooLarge(422))
        );
        s.set("b".into(), vec![0; 422]).await.unwrap();
        // Replacing a value counts its new size, not both.
        s.set("a".into(), vec![0; 600]).await.unwrap();
        assert!(matches!(
            s.set("a".into(), vec![0; 601]).await,
            Err(StorageError::TooLarge(600))
        ));
        assert_eq!(s.get("a".into()).await.unwrap(), Some(vec![0; 600]));
    }

    #[tokio::test]
    async fn credentials_kept_in_storage_are_known() {
        let db = Database::open(None).unwrap();
        let s = StorageCap::new(db.clone(), "p".into(), PluginQuotas::default());
        let token = "tok-0123456789abcdef";
        s.set(
            "auth".into(),
            format!(r#"{{"token":"{token}","tokenExpires":"2026-11-25T17:42:51Z"}}"#).into_bytes(),
        )
        .await
        .unwrap();
        s.set("session_key".into(), b"sess-0123456789abcdef".to_vec())
            .await
            .unwrap();
        s.set("note".into(), b"nothing secret here at all".to_vec())
            .await
            .unwrap();
        let mut found = s.credentials();
        found.sort();
        assert_eq!(found, ["sess-0123456789abcdef", token]);
        // Read back by a new capability (a restart): known again once read.
        let after = StorageCap::new(db, "p".into(), PluginQuotas::default());
        assert!(after.credentials().is_empty());
        after.get("auth".into()).await.unwrap();
        assert_eq!(after.credentials(), [token]);
        after.delete("auth".into()).await.unwrap();
        assert!(after.credentials().is_empty());
    }
}
