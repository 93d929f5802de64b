//! The plugins' `storage` capability in the ledger (table `plugin_kv`): one namespace per
//! provider, on either backend ([`SqliteStore`], also named [`LedgerStore`]).
//!
//! Reads are served from a write-through cache in memory: a plugin reads its cached token on
//! every operation, and a round trip to the database would cost more than the whole refund's
//! logic. Writes reach the database before they are cached, so a restart loses nothing.
//!
//! - SQLite: the cache assumes this process is the database's only writer of plugin storage (if
//!   two hosts share a file, one may read a value the other has replaced; for a token that costs
//!   one re-authorization). The namespace's quota is checked and the value written under one
//!   lock of the connection, so no other write can come between the two.
//! - PostgreSQL: every host writes the one table. The quota check and the write are one
//!   transaction under the provider's advisory lock, and each write or remove is announced on
//!   [`crate::postgres::STORAGE_CHANNEL`] when it commits. A store listens for those
//!   announcements (from its first use, on a connection of its own) and forgets each key of
//!   its provider that another host (or itself) changed. While it is not listening (before the
//!   listener is up, or after its connection is lost and until it listens again) it caches
//!   nothing and reads through; when the connection is lost it forgets every value, since
//!   announcements made meanwhile are lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use refundry_runtime::BoxFuture;
use refundry_runtime::KeyValueStore;
use refundry_runtime::bindings::storage::StorageError;
use refundry_runtime::caps::storage::over_quota;
use refundry_runtime::limits::PluginQuotas;
use rusqlite::OptionalExtension;

use crate::db::{Database, DbError};

/// One provider's namespace in the ledger's key-value table, on either backend (the name is
/// historical: see [`LedgerStore`]).
#[derive(Clone)]
pub struct SqliteStore {
    db: Database,
    provider: String,
    quotas: PluginQuotas,
    cache: Arc<Mutex<Cache>>,
    /// PostgreSQL: the task that listens for other hosts' writes, started on first use and
    /// stopped when the last clone of the store is dropped.
    listener: Arc<Listener>,
}

/// [`SqliteStore`] by a name that says what it is: the ledger's plugin storage, on SQLite or
/// PostgreSQL.
pub type LedgerStore = SqliteStore;

/// The values a store remembers.
struct Cache {
    /// Values read or written so far (`None`: known to be absent).
    values: HashMap<String, Option<Vec<u8>>>,
    /// Whether values may be remembered: always on SQLite; on PostgreSQL while the listener
    /// hears the announcements of writes.
    caching: bool,
    /// Moves on at every change the store learns of (its own writes included): a value read
    /// before one is not remembered, as it may be older than the change.
    generation: u64,
}

impl Cache {
    /// The cached value of `key` when there is one, else the generation to read it at.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, u64> {
        match self.values.get(key) {
            Some(value) if self.caching => Ok(value.clone()),
            _ => Err(self.generation),
        }
    }

    /// Remembers `value`, read at `generation`, unless a change came since.
    fn remember(&mut self, key: &str, value: Option<Vec<u8>>, generation: u64) {
        if self.caching && self.generation == generation {
            self.values.insert(key.to_owned(), value);
        }
    }

    /// After this store's own write of `key` (begun at `generation`) committed.
    fn wrote(&mut self, key: &str, value: Option<Vec<u8>>, generation: u64) {
        if self.caching && self.generation == generation {
            self.values.insert(key.to_owned(), value);
        } else {
            self.values.remove(key);
        }
        // Reads begun before the commit may hold the old value.
        self.generation += 1;
    }

    /// Another host (or this one) changed `key`.
    fn forget(&mut self, key: &str) {
        self.values.remove(key);
        self.generation += 1;
    }

    /// Starts or stops caching; either way every value is forgotten.
    fn set_caching(&mut self, caching: bool) {
        self.caching = caching;
        self.values.clear();
        self.generation += 1;
    }
}

#[derive(Default)]
struct Listener(OnceLock<tokio::task::AbortHandle>);

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.0.get() {
            task.abort();
        }
    }
}

/// How long the listener waits before listening again, at first and at most.
const RELISTEN: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

impl SqliteStore {
    /// The storage of one provider, within `quotas`, on either backend. Other providers' keys
    /// are invisible to it.
    pub fn new(db: Database, provider: String, quotas: PluginQuotas) -> Self {
        let caching = !db.is_shared();
        Self {
            db,
            provider,
            quotas,
            cache: Arc::new(Mutex::new(Cache {
                values: HashMap::new(),
                caching,
                generation: 0,
            })),
            listener: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is consistent between statements: a panic cannot leave it half changed.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// PostgreSQL: starts the listener, once.
    fn listen(&self) {
        let Some(pg) = self.db.pg() else { return };
        self.listener.0.get_or_init(|| {
            let (pg, provider) = (pg.clone(), self.provider.clone());
            tokio::spawn(invalidate(pg, provider, Arc::downgrade(&self.cache))).abort_handle()
        });
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.listen();
        let generation = match self.cache().get(key) {
            Ok(value) => return Ok(value),
            Err(generation) => generation,
        };
        let value = if let Some(pg) = self.db.pg() {
            crate::postgres::storage::read(pg, &self.provider, key)
                .await
                .map_err(unavailable)?
        } else {
            let (provider, k) = (self.provider.clone(), key.to_owned());
            self.db
                .run(move |c| {
                    c.query_row(
                        "SELECT value FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                        (&provider, &k),
                        |r| r.get(0),
                    )
                    .optional()
                })
                .await
                .map_err(unavailable)?
        };
        self.cache().remember(key, value.clone(), generation);
        Ok(value)
    }

    async fn write(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.listen();
        let generation = self.cache().generation;
        let now = chrono::Utc::now().timestamp_millis();
        if let Some(pg) = self.db.pg() {
            crate::postgres::storage::write(pg, &self.provider, key, value, self.quotas, now)
                .await
                .map_err(unavailable)??;
            self.cache().wrote(key, Some(value.to_vec()), generation);
            return Ok(());
        }
        let provider = self.provider.clone();
        let (k, v) = (key.to_owned(), value.to_vec());
        let quotas = self.quotas;
        self.db
            .write(move |c| {
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
        self.cache().wrote(key, Some(value.to_vec()), generation);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StorageError> {
        self.listen();
        let generation = self.cache().generation;
        if let Some(pg) = self.db.pg() {
            crate::postgres::storage::remove(pg, &self.provider, key)
                .await
                .map_err(unavailable)?;
            self.cache().wrote(key, None, generation);
            return Ok(());
        }
        let (provider, k) = (self.provider.clone(), key.to_owned());
        self.db
            .write(move |c| {
                c.execute(
                    "DELETE FROM plugin_kv WHERE provider = ?1 AND key = ?2",
                    (&provider, &k),
                )
            })
            .await
            .map_err(unavailable)?;
        self.cache().wrote(key, None, generation);
        Ok(())
    }

    /// Whether `key`'s value is remembered (tests).
    /// Whether `key`'s value is remembered (tests).
    #[cfg(test)]
    fn is_cached(&self, key: &str) -> bool {
        let cache = self.cache();
        cache.caching && cache.values.contains_key(key)
    }

    /// Whether the store is caching (on PostgreSQL: its listener is listening; tests).
    #[cfg(test)]
    fn is_caching(&self) -> bool {
        self.cache().caching
    }
}

/// The listener of one PostgreSQL store: forgets the keys of `provider` that are announced
/// changed, caching only while it listens. Ends when the store is gone.
async fn invalidate(pg: crate::postgres::Pg, provider: String, cache: Weak<Mutex<Cache>>) {
    let with_cache = |f: &mut dyn FnMut(&mut Cache)| match cache.upgrade() {
        Some(cache) => {
            f(&mut cache.lock().unwrap_or_else(|p| p.into_inner()));
            true
        }
        None => false,
    };
    let mut wait = RELISTEN.0;
    loop {
        match pg.listen(crate::postgres::STORAGE_CHANNEL).await {
            Ok(mut heard) => {
                wait = RELISTEN.0;
                if !with_cache(&mut |c| c.set_caching(true)) {
                    return;
                }
                while let Some(payload) = heard.recv().await {
                    let Some((of, key)) = crate::postgres::storage::parse_payload(&payload) else {
                        continue;
                    };
                    if of == provider && !with_cache(&mut |c| c.forget(key)) {
                        return;
                    }
                }
                if !with_cache(&mut |c| c.set_caching(false)) {
                    return;
                }
                tracing::warn!(%provider, "plugin storage: announcements lost; reading through");
            }
            Err(e) => {
                tracing::warn!(%provider, error = %e, "plugin storage: cannot listen; reading through");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RELISTEN.1);
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
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use refundry_runtime::caps::storage::check_store;

    use super::*;

    fn store(db: &Database, provider: &str, quotas: PluginQuotas) -> SqliteStore {
        SqliteStore::new(db.clone(), provider.into(), quotas)
    }

    both_databases! {
        async fn namespaced_per_provider(db) {
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

        async fn writes_reach_the_database_and_survive_a_new_cache(db) {
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

        async fn keeps_values_and_quotas_like_every_store(db) {
            // An empty namespace each time: a provider of its own.
            let n = AtomicU32::new(0);
            let empty = |quotas| {
                let provider = format!("p{}", n.fetch_add(1, Ordering::Relaxed));
                SqliteStore::new(db.clone(), provider, quotas)
            };
            check_store(empty).await;
        }

        async fn each_provider_has_its_own_quota(db) {
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

    /// Two hosts on one PostgreSQL database: `a` and `b`, each with its own pool (and listener).
    async fn two_hosts(label: &str) -> (Database, Database) {
        crate::testing::pg_hosts(label).await
    }

    /// Polls `check` until it holds, failing after 5 s.
    async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(Instant::now() < deadline, "not within 5 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls until `s` reads `value` for `key` and has cached it (every announcement it was
    /// to hear heard).
    async fn reads_cached(s: &SqliteStore, key: &str, value: Option<&[u8]>) {
        eventually(&format!("{key} = {value:?}, cached"), || async {
            s.get(key).await.unwrap().as_deref() == value && s.is_cached(key)
        })
        .await;
    }

    /// A store's first use starts its listener; once it listens, it caches.
    async fn listening(s: &SqliteStore) {
        s.get("warm-up").await.unwrap();
        eventually("the store listens", || async { s.is_caching() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_hosts_write_reaches_a_cached_reader() {
        let (db_a, db_b) = two_hosts("kv_invalidate").await;
        let a = store(&db_a, "p", PluginQuotas::default());
        let b = store(&db_b, "p", PluginQuotas::default());
        listening(&a).await;
        // Cached absent first: a reads T1 only once it has heard of the write.
        reads_cached(&a, "token", None).await;
        b.set("token", b"T1").await.unwrap();
        reads_cached(&a, "token", Some(b"T1")).await;

        b.set("token", b"T2").await.unwrap();
        eventually("a reads b's new value", || async {
            a.get("token").await.unwrap() == Some(b"T2".to_vec())
        })
        .await;
        b.delete("token").await.unwrap();
        eventually("a reads b's delete", || async {
            a.get("token").await.unwrap().is_none()
        })
        .await;

        // Another provider's writes leave a's values alone (announcements arrive in commit
        // order: once a has heard of "other", it has heard of q's write).
        reads_cached(&a, "token", None).await;
        reads_cached(&a, "other", None).await;
        store(&db_b, "q", PluginQuotas::default())
            .set("token", b"Q")
            .await
            .unwrap();
        b.set("other", b"O").await.unwrap();
        eventually("a hears b's write of another key", || async {
            a.get("other").await.unwrap().is_some()
        })
        .await;
        assert!(
            a.is_cached("token"),
            "not forgotten for another key or provider"
        );
        assert_eq!(a.get("token").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listener_forgets_every_value_and_listens_again() {
        let (db_a, db_b) = two_hosts("kv_relisten").await;
        let a = store(&db_a, "p", PluginQuotas::default());
        let b = store(&db_b, "p", PluginQuotas::default());
        listening(&a).await;
        // Cached absent first: a reads T1 only once it has heard of the write.
        reads_cached(&a, "token", None).await;
        b.set("token", b"T1").await.unwrap();
        reads_cached(&a, "token", Some(b"T1")).await;
        // A change a's listener never hears of (as while its connection is down).
        let pg = db_b.pg().unwrap();
        let client = pg.client().await.unwrap();
        client
            .execute(
                "UPDATE plugin_kv SET value = 'T2' WHERE provider = 'p' AND key = 'token'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            a.get("token").await.unwrap(),
            Some(b"T1".to_vec()),
            "cached"
        );
        // Every listener of the database loses its connection.
        let ended = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN %'",
                &[],
            )
            .await
            .unwrap();
        assert!(!ended.is_empty(), "a's listener was found");
        eventually("a forgets what it cached", || async {
            a.get("token").await.unwrap() == Some(b"T2".to_vec())
        })
        .await;
        // It listens again, and hears the next write.
        reads_cached(&a, "token", Some(b"T2")).await;
        b.set("token", b"T3").await.unwrap();
        eventually("a reads T3", || async {
            a.get("token").await.unwrap() == Some(b"T3".to_vec())
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_writing_one_namespace_keep_its_quota() {
        let (db_a, db_b) = two_hosts("kv_quota").await;
        let quotas = PluginQuotas {
            storage_max_keys: 5,
            ..PluginQuotas::default()
        };
        let (a, b) = (store(&db_a, "p", quotas), store(&db_b, "p", quotas));
        let writes = (0..40).map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.set(&format!("k{i}"), b"v").await })
        });
        let mut kept = 0;
        for w in writes.collect::<Vec<_>>() {
            match w.await.unwrap() {
                Ok(()) => kept += 1,
                Err(e) => assert_eq!(e, StorageError::TooLarge(0)),
            }
        }
        assert_eq!(kept, 5, "exactly the quota's keys were written");
        let rows: i64 = db_a
            .pg()
            .unwrap()
            .client()
            .await
            .unwrap()
            .query_one("SELECT COUNT(*) FROM plugin_kv WHERE provider = 'p'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 5);
    }
}
