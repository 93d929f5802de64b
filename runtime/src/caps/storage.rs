//! The `storage` capability: a small key-value store per provider (a cached auth token, say).
//!
//! A gateway brings its own store by implementing [`KeyValueStore`] for one provider's
//! namespace; [`MemoryStore`] is a ready one that forgets on restart. Whatever the store, the
//! runtime refuses keys over [`MAX_KEY`] and values over [`MAX_VALUE`] bytes before it is asked,
//! and notes the credentials the plugin keeps there, so that none leaves in an answer.
//!
//! Each namespace has a quota ([`PluginQuotas`]: keys, and bytes of keys and values) that the
//! store enforces (it alone can check and write atomically; [`over_quota`] is the rule): a write
//! past it is refused with `too-large`, whose payload is the bytes the value could still have had
//! (0 when the key count is the limit), and nothing is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::BoxFuture;
use crate::bindings::storage::StorageError;
use crate::limits::PluginQuotas;
use crate::secret;

/// Longest key accepted, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value accepted, in bytes: enough for tokens and small state, not a dumping ground.
pub const MAX_VALUE: usize = 64 * 1024;

/// One provider's key-value namespace. Other providers' keys must be invisible to it.
pub trait KeyValueStore: Send + Sync + 'static {
    /// The value under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>>;
    /// Stores `value` under `key`, within the namespace's quota.
    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// `None` when a value of `value_len` bytes under a key of `key_len` bytes fits beside the other
/// `keys` keys holding `bytes` bytes; else what `too-large` carries: the bytes the value could
/// still have had (0 when no other key fits).
pub fn over_quota(
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

/// A namespace in memory, within its quotas; gone when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    quotas: PluginQuotas,
    values: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty namespace with these quotas.
    pub fn new(quotas: PluginQuotas) -> Self {
        Self {
            quotas,
            values: Mutex::default(),
        }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeyValueStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        let value = self.values().get(key).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut values = self.values();
        let others = values.iter().filter(|(k, _)| k.as_str() != key);
        let (keys, bytes) = others.fold((0u64, 0u64), |(n, b), (k, v)| {
            (n + 1, b + (k.len() + v.len()) as u64)
        });
        let result = match over_quota(self.quotas, keys, bytes, key.len(), value.len()) {
            Some(allowed) => Err(StorageError::TooLarge(allowed)),
            None => {
                values.insert(key.to_owned(), value.to_vec());
                Ok(())
            }
        };
        Box::pin(async move { result })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        self.values().remove(key);
        Box::pin(async { Ok(()) })
    }
}

/// A provider's store as its plugin reaches it: size checks first, and the credentials kept in
/// it noted (see [`Storage::credentials`]).
#[derive(Clone)]
pub(crate) struct Storage {
    store: Arc<dyn KeyValueStore>,
    /// Credentials the provider issued that the plugin keeps here (its cached auth token), by key.
    credentials: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Storage {
    pub(crate) fn new(store: Arc<dyn KeyValueStore>) -> Self {
        Self {
            store,
            credentials: Arc::default(),
        }
    }

    /// The credentials found in the values read or written so far: string values of
    /// credential-named JSON fields, or the whole value of a credential-named key (as
    /// [`secret::credentials_in`] finds them). A plugin's answers are cleaned of them.
    pub(crate) fn credentials(&self) -> Vec<String> {
        self.credentials
            .lock()
            .map(|c| c.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    fn remember(&self, key: &str, value: Option<&[u8]>) {
        let found = value.map(|v| {
            let mut found = secret::credentials_in(v);
            if secret::names_a_credential(key)
                && let Ok(text) = std::str::from_utf8(v)
                && text.len() >= secret::MIN_TOKEN
            {
                found.push(text.to_owned());
            }
            found
        });
        if let Ok(mut credentials) = self.credentials.lock() {
            match found {
                Some(found) if !found.is_empty() => credentials.insert(key.to_owned(), found),
                _ => credentials.remove(key),
            };
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        let value = self.store.get(key).await?;
        self.remember(key, value.as_deref());
        Ok(value)
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(StorageError::TooLarge(MAX_VALUE as u32));
        }
        self.store.set(key, value).await?;
        self.remember(key, Some(value));
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.store.delete(key).await?;
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

/// Checks that a store keeps values and its quotas the way the runtime expects (the same checks
/// the runtime's and the ledger's stores pass): for the tests of a gateway's own store. `make`
/// gives an empty namespace with the quotas it is handed. Panics at the first difference.
pub async fn check_store<S: KeyValueStore>(make: impl Fn(PluginQuotas) -> S) {
    let quotas = |keys, bytes| PluginQuotas {
        storage_max_keys: keys,
        storage_max_bytes: bytes,
        ..PluginQuotas::default()
    };
    let s = make(PluginQuotas::default());
    assert_eq!(s.get("token").await, Ok(None), "an empty namespace");
    s.set("token", b"A").await.expect("a value is kept");
    assert_eq!(s.get("token").await, Ok(Some(b"A".to_vec())));
    s.set("token", b"A2").await.expect("a value is replaced");
    assert_eq!(s.get("token").await, Ok(Some(b"A2".to_vec())));
    s.delete("token").await.expect("a value is removed");
    assert_eq!(s.get("token").await, Ok(None));

    // The key count refuses a new key, not a replacement, and nothing is written.
    let s = make(quotas(2, 1 << 20));
    s.set("a", b"1").await.unwrap();
    s.set("b", b"2").await.unwrap();
    assert_eq!(s.set("c", b"3").await, Err(StorageError::TooLarge(0)));
    assert_eq!(s.get("c").await, Ok(None), "nothing written past the quota");
    s.set("b", b"22").await.expect("replacing a key adds none");
    s.delete("a").await.unwrap();
    s.set("c", b"3").await.expect("a delete frees a key");

    // The bytes count keys and values: key "a" and 600 bytes leave 1024 - 601 - 1 ("b") = 422.
    let s = make(quotas(100, 1024));
    s.set("a", &[0; 600]).await.unwrap();
    assert_eq!(
        s.set("b", &[0; 423]).await,
        Err(StorageError::TooLarge(422))
    );
    s.set("b", &[0; 422]).await.unwrap();
    // Replacing a value counts its new size, not both.
    s.set("a", &[0; 600]).await.unwrap();
    assert_eq!(
        s.set("a", &[0; 601]).await,
        Err(StorageError::TooLarge(600))
    );
    assert_eq!(s.get("a").await, Ok(Some(vec![0; 600])));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(quotas: PluginQuotas) -> Storage {
        Storage::new(Arc::new(MemoryStore::new(quotas)))
    }

    #[tokio::test]
    async fn the_memory_store_keeps_values_and_quotas() {
        check_store(MemoryStore::new).await;
    }

    #[tokio::test]
    async fn key_and_value_sizes_are_checked_before_the_store() {
        let s = storage(PluginQuotas::default());
        assert_eq!(
            s.set(&"k".repeat(MAX_KEY + 1), b"").await,
            Err(StorageError::TooLarge(MAX_KEY as u32))
        );
        assert_eq!(
            s.set("k", &vec![0; MAX_VALUE + 1]).await,
            Err(StorageError::TooLarge(MAX_VALUE as u32))
        );
    }

    #[tokio::test]
    async fn credentials_kept_in_storage_are_known() {
        let store: Arc<dyn KeyValueStore> = Arc::new(MemoryStore::new(PluginQuotas::default()));
        let s = Storage::new(store.clone());
        let token = "tok-0123456789abcdef";
        let auth = format!(r#"{{"token":"{token}","tokenExpires":"2026-11-25T17:42:51Z"}}"#);
        s.set("auth", auth.as_bytes()).await.unwrap();
        s.set("session_key", b"sess-0123456789abcdef")
            .await
            .unwrap();
        s.set("note", b"nothing secret here at all").await.unwrap();
        let mut found = s.credentials();
        found.sort();
        assert_eq!(found, ["sess-0123456789abcdef", token]);
        // Read back through a new capability (a restart): known again once read.
        let after = Storage::new(store);
        assert!(after.credentials().is_empty());
        after.get("auth").await.unwrap();
        assert_eq!(after.credentials(), [token]);
        after.delete("auth").await.unwrap();
        assert!(after.credentials().is_empty());
    }
}
