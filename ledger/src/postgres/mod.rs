//! The PostgreSQL backend: how several `refundry serve` hosts share one ledger.
//!
//! - A pool of connections ([`deadpool_postgres`]), no shared connection: each ledger call takes
//!   one, runs its statements (one transaction where they belong together) and gives it back.
//! - The idempotency key's row decides: a second insert of a key waits for the first one's
//!   transaction, then finds its row.
//! - Rows a transaction checks and then changes are locked first (`SELECT ... FOR UPDATE`), so
//!   two hosts' reports about one refund apply one after the other, as SQLite's single
//!   connection makes them.
//! - Work any host may do (janitor checks, event deliveries) is claimed with
//!   `FOR UPDATE SKIP LOCKED`, its due time moved a lease ahead: another host skips it, and takes
//!   it over if the lease runs out before the claiming host finishes (it died).
//! - What one host changes and the others cache (plugin versions, plugin storage) is announced
//!   with `NOTIFY`; [`Pg::listen`] gives a host the announcements.

pub(crate) mod exchanges;
pub(crate) mod inbox;
pub(crate) mod outbox;
pub(crate) mod plugin_versions;
pub(crate) mod reconciliations;
pub(crate) mod recordings;
pub(crate) mod refunds;
mod schema;
pub(crate) mod stats;
pub(crate) mod storage;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::DbError;

/// A PostgreSQL connection's settings, as parsed from its URL.
pub use tokio_postgres::Config as ConnectConfig;

/// The channel plugin version changes are announced on (payload: the provider).
pub const REGISTRY_CHANNEL: &str = "refundry_registry";
/// The channel plugin storage writes are announced on (payload: provider, a tab, the key).
pub const STORAGE_CHANNEL: &str = "refundry_storage";

/// How a host uses the PostgreSQL ledger.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a claim on shared work lasts before another host may take it over.
    pub lease: Duration,
    /// This host's name in leases (diagnostics only: a lease is held by time, not by name).
    pub host: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            lease: Duration::from_secs(30),
            host: default_host(),
        }
    }
}

/// This process, as named in leases: the machine's host name and the process id.
pub fn default_host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{name}:{}", std::process::id())
}

/// A pool of connections to one PostgreSQL database, migrated.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: tokio_postgres::Config,
    options: PgOptions,
}

impl Pg {
    /// Connects to `url` and applies pending migrations.
    pub(crate) async fn connect(url: &str, options: PgOptions) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Config(format!("`{}`: {e}", redact_url(url))))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| DbError::Config(e.to_string()))?;
        let pg = Self {
            pool,
            config,
            options,
        };
        pg.migrate().await.map_err(|e| {
            DbError::Config(format!(
                "the database at {} cannot be used: {}",
                redact_url(url),
                crate::error::with_causes(&e)
            ))
        })?;
        Ok(pg)
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// A read-only transaction on `client` that reads one snapshot (`REPEATABLE READ`): what
    /// SQLite's single connection gives a method that reads several statements.
    pub(crate) async fn snapshot(
        client: &mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'_>, DbError> {
        Ok(client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?)
    }

    /// How long a claim lasts (ms).
    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// This host's name in leases.
    pub(crate) fn host(&self) -> &str {
        &self.options.host
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.client().await?;
        // One host migrates at a time; the others wait here and then find nothing to do.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS refundry_schema (version BIGINT NOT NULL);
                     INSERT INTO refundry_schema (version)
                         SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM refundry_schema);",
                )
                .await?;
            let done: i64 = client
                .query_one("SELECT version FROM refundry_schema", &[])
                .await?
                .get(0);
            for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(done as usize) {
                let tx = client.transaction().await?;
                tx.batch_execute(sql).await?;
                tx.execute(
                    "UPDATE refundry_schema SET version = $1",
                    &[&(i as i64 + 1)],
                )
                .await?;
                tx.commit().await?;
            }
            Ok::<_, DbError>(())
        }
        .await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        result
    }

    /// The payloads announced on `channel`, on a connection of its own (outside the pool:
    /// LISTEN belongs to one session). They end when that connection is lost; the caller then
    /// listens again and rereads what it caches, since announcements made meanwhile are lost.
    pub async fn listen(&self, channel: &'static str) -> Result<Notifications, DbError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, rx) = mpsc::channel(1024);
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "database notifications lost");
                        return;
                    }
                }
            }
        });
        // LISTEN takes an identifier, not a parameter; the channels are this crate's constants.
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        Ok(Notifications {
            rx,
            _client: client,
        })
    }

    /// Claims the named scheduled work when it is due at `now_ms` and no other host holds it:
    /// true when this host now holds it until its lease ends. [`Pg::finish_lease`] sets when it
    /// is next due.
    pub(crate) async fn claim_lease(&self, name: &str, now_ms: i64) -> Result<bool, DbError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO leases (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .await?;
        let until = now_ms.saturating_add(self.lease_ms());
        let claimed = client
            .execute(
                "UPDATE leases SET holder = $2, leased_until = $3
                 WHERE name = $1 AND leased_until <= $4 AND next_due_at <= $4",
                &[&name, &self.host(), &until, &now_ms],
            )
            .await?;
        Ok(claimed == 1)
    }

    /// Gives the named work back, next due at `next_due_ms`.
    pub(crate) async fn finish_lease(&self, name: &str, next_due_ms: i64) -> Result<(), DbError> {
        self.client()
            .await?
            .execute(
                "UPDATE leases SET holder = NULL, leased_until = 0, next_due_at = $2
                 WHERE name = $1",
                &[&name, &next_due_ms],
            )
            .await?;
        Ok(())
    }
}

/// What [`Pg::listen`] hears.
pub struct Notifications {
    rx: mpsc::Receiver<String>,
    /// The session listening: dropping it ends the LISTEN.
    _client: tokio_postgres::Client,
}

impl Notifications {
    /// The next payload; `None` once the connection is lost.
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }
}

/// The advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7265_6675_6e64_7279; // "refundry"

/// `url` with its password (if any) replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/refundry"),
            "postgres://app:***@db:5432/refundry"
        );
        assert_eq!(
            redact_url("postgres://app@db/refundry"),
            "postgres://app@db/refundry"
        );
        assert_eq!(redact_url("host=db user=app"), "host=db user=app");
    }
}

#[cfg(test)]
mod cluster_tests {
    use crate::testing::{pg_database, shared_cluster};

    #[tokio::test]
    async fn a_private_cluster_starts_and_the_schema_migrates_once_per_database() {
        let db = pg_database("migrates").await;
        let pg = db.pg().unwrap();
        let client = pg.client().await.unwrap();
        let version: i64 = client
            .query_one("SELECT version FROM refundry_schema", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, super::schema::MIGRATIONS.len() as i64);
        // A second host on the same database finds nothing to do.
        let url = shared_cluster().url(
            &client
                .query_one("SELECT current_database()", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
        );
        let again = crate::db::Database::connect(&url, super::PgOptions::default())
            .await
            .unwrap();
        assert!(again.is_shared());
        // The history is append-only here too.
        client
            .batch_execute(
                "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256,
                    external_refund_id, original_transaction_id, amount, currency, status,
                    fingerprint, created_at, updated_at)
                 VALUES ('rf_1', 'p', '1', 'x', 'e1', 't1', 100, 'KES', 'pending', 'f', 1, 2);
                 INSERT INTO refund_history (refund_id, at, source, to_status, applied)
                 VALUES ('rf_1', 1, 'api', 'unknown', true);",
            )
            .await
            .unwrap();
        let err = client
            .batch_execute("DELETE FROM refund_history")
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{err:?}");
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_host_until_it_ends() {
        let a = pg_database("lease").await;
        let pg = a.pg().unwrap();
        assert!(pg.claim_lease("reconcile:p", 1_000).await.unwrap());
        assert!(!pg.claim_lease("reconcile:p", 1_001).await.unwrap(), "held");
        let expired = 1_000 + pg.lease_ms();
        assert!(
            pg.claim_lease("reconcile:p", expired).await.unwrap(),
            "taken over"
        );
        pg.finish_lease("reconcile:p", expired + 60_000)
            .await
            .unwrap();
        assert!(
            !pg.claim_lease("reconcile:p", expired + 1).await.unwrap(),
            "not due"
        );
        assert!(
            pg.claim_lease("reconcile:p", expired + 60_000)
                .await
                .unwrap(),
            "due"
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_clear_error_without_its_password() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://app:hunter22@127.0.0.1:{port}/refundry");
        let err = match crate::db::Database::connect(&url, super::PgOptions::default()).await {
            Ok(_) => panic!("nothing listens there"),
            Err(e) => e,
        };
        let text = format!("{err} {err:?}");
        assert!(matches!(err, crate::error::DbError::Config(_)), "{text}");
        // Where, and why.
        assert!(
            text.contains(&format!("app:***@127.0.0.1:{port}/refundry")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
        let bad = crate::db::Database::connect("postgres://app:pw@/", super::PgOptions::default());
        let bad = match bad.await {
            Ok(_) => panic!("no host"),
            Err(e) => format!("{e}"),
        };
        assert!(!bad.contains(":pw@"), "{bad}");
    }

    #[tokio::test]
    async fn notifications_reach_a_listener() {
        let db = pg_database("notify").await;
        let pg = db.pg().unwrap();
        let mut heard = pg.listen(super::REGISTRY_CHANNEL).await.unwrap();
        pg.client()
            .await
            .unwrap()
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&super::REGISTRY_CHANNEL, &"mfs-africa"],
            )
            .await
            .unwrap();
        assert_eq!(heard.recv().await.as_deref(), Some("mfs-africa"));
    }
}
