//! The database behind the ledger: SQLite (one host, embedded, the default) or PostgreSQL (several
//! hosts on one database, [`crate::postgres`]). Opened once, migrated at start, shared by every
//! part of the service. Only this crate runs SQL on it: the service holds the [`Database`] handle
//! and calls the ledger's functions, which run the backend's own SQL.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

pub use crate::error::DbError;
use crate::writer::Writer;

/// Schema migrations, applied in order; the database's `user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the plugins' key-value storage, namespaced by provider.
    "CREATE TABLE plugin_kv (
        provider   TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, key)
    ) STRICT;",
    // 2: the refund ledger.
    "CREATE TABLE refunds (
        id                      TEXT PRIMARY KEY,
        provider                TEXT NOT NULL,
        plugin_version          TEXT NOT NULL,
        plugin_sha256           TEXT NOT NULL,
        external_refund_id      TEXT NOT NULL,
        original_transaction_id TEXT NOT NULL,
        amount                  INTEGER NOT NULL CHECK (amount > 0),
        currency                TEXT NOT NULL,
        reason                  TEXT,
        order_id                TEXT,
        status                  TEXT NOT NULL
            CHECK (status IN ('pending', 'processed', 'failed', 'reversed', 'unknown')),
        provider_refund_id      TEXT,
        provider_status         TEXT,
        failure                 TEXT,
        outcome                 TEXT,
        fingerprint             TEXT NOT NULL,
        checks                  INTEGER NOT NULL DEFAULT 0,
        next_check_at           INTEGER,
        created_at              INTEGER NOT NULL,
        updated_at              INTEGER NOT NULL,
        UNIQUE (provider, external_refund_id)
    ) STRICT;
    CREATE INDEX refunds_due ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
    CREATE INDEX refunds_by_original ON refunds (provider, original_transaction_id);
    CREATE INDEX refunds_by_provider_id ON refunds (provider, provider_refund_id);
    CREATE INDEX refunds_by_created ON refunds (created_at);

    CREATE TABLE idempotency_keys (
        provider           TEXT NOT NULL,
        external_refund_id TEXT NOT NULL,
        fingerprint        TEXT NOT NULL,
        refund_id          TEXT NOT NULL REFERENCES refunds (id),
        created_at         INTEGER NOT NULL,
        PRIMARY KEY (provider, external_refund_id)
    ) STRICT;

    CREATE TABLE refund_history (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        refund_id       TEXT NOT NULL REFERENCES refunds (id),
        at              INTEGER NOT NULL,
        source          TEXT NOT NULL CHECK (source IN ('api', 'webhook', 'janitor')),
        from_status     TEXT,
        to_status       TEXT NOT NULL,
        applied         INTEGER NOT NULL,
        provider_status TEXT,
        detail          TEXT
    ) STRICT;
    CREATE INDEX refund_history_by_refund ON refund_history (refund_id, seq);
    CREATE TRIGGER refund_history_no_update BEFORE UPDATE ON refund_history
        BEGIN SELECT RAISE(ABORT, 'refund history is append-only'); END;
    CREATE TRIGGER refund_history_no_delete BEFORE DELETE ON refund_history
        BEGIN SELECT RAISE(ABORT, 'refund history is append-only'); END;

    CREATE TABLE webhook_inbox (
        provider           TEXT NOT NULL,
        event_id           TEXT NOT NULL,
        event_type         TEXT NOT NULL,
        provider_refund_id TEXT,
        external_refund_id TEXT,
        status             TEXT NOT NULL,
        body               BLOB NOT NULL,
        received_at        INTEGER NOT NULL,
        result             TEXT NOT NULL,
        refund_id          TEXT,
        PRIMARY KEY (provider, event_id)
    ) STRICT;

    CREATE TABLE http_exchanges (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        refund_id        TEXT,
        provider         TEXT NOT NULL,
        operation        TEXT NOT NULL,
        method           TEXT NOT NULL,
        url              TEXT NOT NULL,
        request_headers  TEXT NOT NULL,
        request_body     TEXT,
        status           INTEGER,
        response_headers TEXT NOT NULL,
        response_body    TEXT,
        error            TEXT,
        latency_ms       REAL NOT NULL,
        sent_at          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX http_exchanges_by_refund ON http_exchanges (refund_id, seq);",
    // 3: plugin versions (the component bytes, so a restart loads the same ones) and the active
    // version of each provider; which version served each status report.
    "CREATE TABLE plugin_versions (
        provider  TEXT NOT NULL,
        version   TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        component BLOB NOT NULL,
        loaded_at INTEGER NOT NULL,
        PRIMARY KEY (provider, version)
    ) STRICT;
    CREATE TABLE plugin_active (
        provider     TEXT PRIMARY KEY,
        version      TEXT NOT NULL,
        activated_at INTEGER NOT NULL
    ) STRICT;
    -- The configured component (plugin = file) a start last applied: a start activates the
    -- configured file only when it differs (a deploy), not again after an admin's changes.
    CREATE TABLE plugin_configured (
        provider   TEXT PRIMARY KEY,
        sha256     TEXT NOT NULL,
        applied_at INTEGER NOT NULL
    ) STRICT;
    ALTER TABLE refund_history ADD COLUMN plugin_version TEXT;",
    // 4: the outbound events outbox: one event per status a refund enters, written in the
    // transaction that moved it; per configured endpoint, a delivery of each event and its
    // attempts.
    "CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        refund_id  TEXT NOT NULL REFERENCES refunds (id),
        type       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_by_refund ON events (refund_id, seq);
    -- Where each endpoint's deliveries start: an endpoint added to the config is sent the events
    -- written from then on, not the whole history.
    CREATE TABLE event_endpoints (
        endpoint   TEXT PRIMARY KEY,
        after_seq  INTEGER NOT NULL,
        added_at   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE event_deliveries (
        event_seq       INTEGER NOT NULL REFERENCES events (seq),
        endpoint        TEXT NOT NULL,
        refund_id       TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER,
        PRIMARY KEY (event_seq, endpoint)
    ) STRICT;
    CREATE INDEX event_deliveries_pending ON event_deliveries (endpoint, refund_id, event_seq)
        WHERE state = 'pending';
    CREATE TABLE event_attempts (
        event_seq   INTEGER NOT NULL,
        endpoint    TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        http_status INTEGER,
        error       TEXT,
        latency_ms  REAL NOT NULL,
        PRIMARY KEY (event_seq, endpoint, attempt)
    ) STRICT;",
    // 5: what `GET /metrics` reads at every scrape and `refund list --stuck` lists: refunds by
    // provider, plugin version and status (a covering index: the count never reads the table),
    // and the refunds not final (few) by provider and age.
    "CREATE INDEX refunds_by_status ON refunds (provider, plugin_version, status);
    CREATE INDEX refunds_not_final ON refunds (provider, created_at)
        WHERE status IN ('pending', 'unknown');",
    // 6: recordings of the plugin operations run for refunds (`refundry replay`): one row per
    // operation, numbered per refund; `size` (bytes of `recording`) drives the total size cap,
    // which deletes the oldest rows (by `id`) first.
    "CREATE TABLE recordings (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        refund_id      TEXT NOT NULL,
        seq            INTEGER NOT NULL,
        operation      TEXT NOT NULL,
        provider       TEXT NOT NULL,
        plugin_version TEXT NOT NULL,
        plugin_sha256  TEXT NOT NULL,
        recorded_at    INTEGER NOT NULL,
        truncated      INTEGER NOT NULL,
        size           INTEGER NOT NULL,
        recording      TEXT NOT NULL,
        UNIQUE (refund_id, seq)
    ) STRICT;",
    // 7: when a refund was processed: the janitor keeps checking a processed refund, to find a
    // reversal no webhook told of, until the reversal window after this time has passed. Refunds
    // processed before this migration are watched from their last update (the janitor stops at
    // once for those whose window has closed).
    "ALTER TABLE refunds ADD COLUMN processed_at INTEGER;
    UPDATE refunds SET processed_at = updated_at, next_check_at = updated_at
        WHERE status = 'processed';",
    // 8: the key the plugin artifact cache is authenticated with (one row): kept here, not in the
    // cache folder, so that write access to the folder cannot forge an artifact.
    "CREATE TABLE artifact_key (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        key BLOB NOT NULL
    ) STRICT;",
    // 9: reconciliation runs (the provider's refunds in a creation range compared with the
    // ledger's) and their findings. Two tables are rebuilt, SQLite having no way to change a
    // constraint in place: the history takes the source `reconcile`, and an event's `refund_id`
    // (the key its deliveries are ordered by) no longer references `refunds`, since a finding
    // about a refund the ledger lacks is keyed by its run's id. Rows, `seq` values (and so the
    // AUTOINCREMENT counters), indexes and the history's append-only triggers are kept.
    "CREATE TABLE refund_history_new (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        refund_id       TEXT NOT NULL REFERENCES refunds (id),
        at              INTEGER NOT NULL,
        source          TEXT NOT NULL
            CHECK (source IN ('api', 'webhook', 'janitor', 'reconcile')),
        from_status     TEXT,
        to_status       TEXT NOT NULL,
        applied         INTEGER NOT NULL,
        provider_status TEXT,
        detail          TEXT,
        plugin_version  TEXT
    ) STRICT;
    INSERT INTO refund_history_new (seq, refund_id, at, source, from_status, to_status, applied,
        provider_status, detail, plugin_version)
        SELECT seq, refund_id, at, source, from_status, to_status, applied, provider_status,
            detail, plugin_version
        FROM refund_history;
    DROP TABLE refund_history;
    ALTER TABLE refund_history_new RENAME TO refund_history;
    CREATE INDEX refund_history_by_refund ON refund_history (refund_id, seq);
    CREATE TRIGGER refund_history_no_update BEFORE UPDATE ON refund_history
        BEGIN SELECT RAISE(ABORT, 'refund history is append-only'); END;
    CREATE TRIGGER refund_history_no_delete BEFORE DELETE ON refund_history
        BEGIN SELECT RAISE(ABORT, 'refund history is append-only'); END;

    CREATE TABLE events_new (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        refund_id  TEXT NOT NULL,
        type       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body       TEXT NOT NULL
    ) STRICT;
    INSERT INTO events_new (seq, id, refund_id, type, created_at, body)
        SELECT seq, id, refund_id, type, created_at, body FROM events;
    DROP TABLE events;
    ALTER TABLE events_new RENAME TO events;
    CREATE INDEX events_by_refund ON events (refund_id, seq);

    CREATE TABLE reconciliations (
        id               TEXT PRIMARY KEY,
        provider         TEXT NOT NULL,
        range_from       INTEGER NOT NULL,
        range_to         INTEGER NOT NULL,
        trigger          TEXT NOT NULL CHECK (trigger IN ('schedule', 'cli', 'api')),
        started_at       INTEGER NOT NULL,
        finished_at      INTEGER NOT NULL,
        outcome          TEXT NOT NULL CHECK (outcome IN ('matched', 'discrepancies', 'error')),
        error            TEXT,
        provider_refunds INTEGER NOT NULL,
        ledger_refunds   INTEGER NOT NULL
    ) STRICT;
    -- Runs newest first (ids are time-ordered), of one provider.
    CREATE INDEX reconciliations_by_provider ON reconciliations (provider, id);
    CREATE TABLE reconciliation_findings (
        reconciliation_id  TEXT NOT NULL REFERENCES reconciliations (id),
        seq                INTEGER NOT NULL,
        kind               TEXT NOT NULL CHECK (kind IN ('missing_in_ledger',
            'missing_at_provider', 'status_mismatch', 'amount_mismatch', 'currency_mismatch')),
        refund_id          TEXT REFERENCES refunds (id),
        external_refund_id TEXT,
        provider_refund_id TEXT,
        ledger_status      TEXT,
        ledger_amount      INTEGER,
        ledger_currency    TEXT,
        provider_status    TEXT,
        provider_amount    INTEGER,
        provider_currency  TEXT,
        applied            INTEGER NOT NULL CHECK (applied IN (0, 1)),
        detail             TEXT NOT NULL,
        PRIMARY KEY (reconciliation_id, seq)
    ) STRICT;
    -- A reconciliation reads one provider's refunds created in a range.
    CREATE INDEX refunds_by_provider_created ON refunds (provider, created_at);",
];

/// How SQLite makes a commit durable (`[database] synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit is synced to disk before it returns: a power failure loses no committed
    /// refund. The default: a ledger of money is no place to lose the last commits.
    #[default]
    Full,
    /// WAL commits are synced at checkpoints only: durable across a crash of the process, but
    /// the last commits may be lost on a power failure or an OS crash. Faster.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// The writes one SQLite ledger has committed, and in how many transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Writes committed (a refund's creation, an answer, its exchanges, ...).
    pub writes: u64,
    /// Transactions that committed them.
    pub commits: u64,
}

/// The ledger's database: one SQLite connection owned by the writer thread ([`crate::writer`],
/// group commit), or a pool of PostgreSQL connections.
#[derive(Clone)]
pub struct Database {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Writer),
    Postgres(Arc<crate::postgres::Pg>),
}

impl Database {
    /// Opens (creating if needed) the database file, or an in-memory one for `None`,
    /// and applies pending migrations; commits are synced in full ([`Synchronous::Full`]).
    pub fn open(path: Option<&Path>) -> Result<Self, DbError> {
        Self::open_with(path, Synchronous::Full)
    }

    /// Like [`Database::open`], with commits made durable as `synchronous` says.
    pub fn open_with(path: Option<&Path>, synchronous: Synchronous) -> Result<Self, DbError> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        // WAL lets readers run beside the writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        // A savepoint's journal (the recording's own, and each write's when a batch runs again
        // after a failure) goes to a temporary file once it outgrows a small buffer: in memory
        // instead.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement of the refund path (rusqlite keeps 16 by default), so that
        // none is parsed again per refund.
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&conn)?;
        Ok(Self {
            backend: Backend::Sqlite(Writer::start(conn)?),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`) with a pool
    /// of connections, and applies pending migrations (one host at a time, under a lock of the
    /// database's own, so several hosts may start together).
    pub async fn connect(url: &str, options: crate::postgres::PgOptions) -> Result<Self, DbError> {
        Ok(Self {
            backend: Backend::Postgres(Arc::new(crate::postgres::Pg::connect(url, options).await?)),
        })
    }

    /// Whether several hosts may share this database (PostgreSQL): work is then claimed with
    /// leases, and what one host changes another learns from the database.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The payloads announced on `channel` by any host of a shared database
    /// ([`crate::postgres::Pg::listen`]); `None` on SQLite, where this process is the only host.
    pub async fn listen(
        &self,
        channel: &'static str,
    ) -> Result<Option<crate::postgres::Notifications>, DbError> {
        match &self.backend {
            Backend::Postgres(pg) => Ok(Some(pg.listen(channel).await?)),
            Backend::Sqlite(_) => Ok(None),
        }
    }

    /// The PostgreSQL backend, when it is the one.
    pub(crate) fn pg(&self) -> Option<&crate::postgres::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    /// Runs `f` alone with the SQLite connection, on the writer thread: it opens its own
    /// transaction when it needs one. Every caller has taken the PostgreSQL branch first (see
    /// [`Database::pg`]).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, DbError> {
        self.sqlite()?.run(f).await
    }

    /// Runs the writes `f` makes as one atomic unit, committed with the other writes waiting
    /// at the same time (group commit, [`crate::writer`]); answers once they are durable. `f`
    /// must not begin or commit a transaction itself, and may run more than once: it must do
    /// nothing but its SQL.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, DbError> {
        self.sqlite()?.write(f).await
    }

    /// Sends the writes `f` makes to run as [`Database::write`] runs them, now, and returns
    /// their answer to await later ([`crate::writer::Writer::queue`]): it is in once any write
    /// sent after it is answered.
    pub(crate) fn queue_write<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<crate::writer::Queued<R>, DbError> {
        self.sqlite()?.queue(f)
    }

    /// On SQLite, the writes committed by this process so far and the transactions they took
    /// (fewer under load: group commit); `None` on PostgreSQL.
    pub fn write_counts(&self) -> Option<WriteCounts> {
        match &self.backend {
            Backend::Sqlite(writer) => {
                let (writes, commits) = writer.counts();
                Some(WriteCounts { writes, commits })
            }
            Backend::Postgres(_) => None,
        }
    }

    /// How many times the SQLite writer has rolled back a batch ([`crate::writer::Rollbacks`]).
    pub(crate) fn rollbacks(&self) -> Result<crate::writer::Rollbacks, DbError> {
        Ok(self.sqlite()?.rollbacks())
    }

    fn sqlite(&self) -> Result<&Writer, DbError> {
        match &self.backend {
            Backend::Sqlite(writer) => Ok(writer),
            Backend::Postgres(_) => Err(DbError::Task(
                "a SQLite statement was sent to the PostgreSQL ledger".into(),
            )),
        }
    }
}

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    migrate_with(conn, MIGRATIONS)
}

/// Applies the `migrations` not yet applied, each in its own transaction.
fn migrate_with(conn: &Connection, migrations: &[&str]) -> Result<(), rusqlite::Error> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done >= migrations.len() {
        return Ok(());
    }
    // A migration that rebuilds a table drops the old one, which enforced foreign keys refuse
    // while other rows reference it. So they are off while migrations run (the pragma does
    // nothing inside a transaction, hence here), and every reference is checked before each
    // commit instead, as SQLite's own procedure for changing a table's schema does.
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = migrations
        .iter()
        .enumerate()
        .skip(done)
        .try_for_each(|(i, sql)| {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            if tx
                .prepare("PRAGMA foreign_key_check")?
                .query([])?
                .next()?
                .is_some()
            {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!("migration {} leaves a dangling reference", i + 1)),
                ));
            }
            tx.commit()
        });
    conn.pragma_update(None, "foreign_keys", enforced)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_synced_in_full_unless_told_otherwise() {
        let dir = std::env::temp_dir().join(format!("refundry-db-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sync.db");
        // SQLite's numbers: 1 NORMAL, 2 FULL.
        let sync = async |db: &Database| {
            db.run(|c| c.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)))
                .await
                .unwrap()
        };
        assert_eq!(sync(&Database::open(Some(&path)).unwrap()).await, 2);
        let normal = Database::open_with(Some(&path), Synchronous::Normal).unwrap();
        assert_eq!(sync(&normal).await, 1);
        drop(normal);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn savepoint_journals_are_kept_in_memory() {
        let dir = std::env::temp_dir().join(format!("refundry-db-temp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::open(Some(&dir.join("temp.db"))).unwrap();
        // SQLite's numbers: 0 DEFAULT (a file), 1 FILE, 2 MEMORY.
        let temp_store = db
            .run(|c| c.pragma_query_value(None, "temp_store", |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(temp_store, 2);
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_reconciliation_migration_keeps_history_and_events_and_frees_the_event_key() {
        // A database as the previous release left it, with a refund, its history, an event
        // and a delivery of it.
        let conn = Connection::open_in_memory().unwrap();
        migrate_with(&conn, &MIGRATIONS[..8]).unwrap();
        conn.execute_batch(
            "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256, external_refund_id,
                original_transaction_id, amount, currency, status, fingerprint, created_at,
                updated_at)
             VALUES ('rf_1', 'p', '1', 'x', 'e1', 't1', 100, 'KES', 'pending', 'f', 1, 2);
             INSERT INTO refund_history (refund_id, at, source, to_status, applied, plugin_version)
             VALUES ('rf_1', 1, 'api', 'unknown', 1, '1'), ('rf_1', 2, 'janitor', 'pending', 1, '1');
             INSERT INTO events (id, refund_id, type, created_at, body)
             VALUES ('evt_1', 'rf_1', 'refund.unknown', 1, '{}'),
                    ('evt_2', 'rf_1', 'refund.pending', 2, '{}');
             INSERT INTO event_deliveries (event_seq, endpoint, refund_id, state, next_attempt_at)
             VALUES (2, 'http://e/', 'rf_1', 'pending', 2);",
        )
        .unwrap();
        let fk = |c: &Connection| {
            c.pragma_query_value(None, "foreign_keys", |r| r.get::<_, bool>(0))
                .unwrap()
        };
        assert!(fk(&conn), "the bundled SQLite enforces foreign keys");

        migrate(&conn).unwrap();
        assert!(fk(&conn), "enforced again after the migrations");
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let rows = |sql: &str| -> Vec<(i64, String)> {
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            rows("SELECT seq, source FROM refund_history ORDER BY seq"),
            [(1, "api".to_owned()), (2, "janitor".to_owned())]
        );
        assert_eq!(
            rows("SELECT seq, id FROM events ORDER BY seq"),
            [(1, "evt_1".to_owned()), (2, "evt_2".to_owned())]
        );
        // The delivery still joins its event, and new rows continue the numbering.
        assert_eq!(
            rows(
                "SELECT d.event_seq, e.type FROM event_deliveries d
                 JOIN events e ON e.seq = d.event_seq"
            ),
            [(2, "refund.pending".to_owned())]
        );
        conn.execute_batch(
            "INSERT INTO refund_history (refund_id, at, source, to_status, applied)
             VALUES ('rf_1', 3, 'reconcile', 'processed', 1);
             INSERT INTO events (id, refund_id, type, created_at, body)
             VALUES ('evt_3', 'rec_1', 'reconciliation.discrepancy', 3, '{}');",
        )
        .unwrap();
        assert_eq!(
            rows("SELECT seq, id FROM events WHERE refund_id = 'rec_1'"),
            [(3, "evt_3".to_owned())]
        );
        assert_eq!(rows("SELECT seq, source FROM refund_history")[2].0, 3);
        // The history is still append-only, still references its refund, and still refuses
        // an unknown source.
        let err = conn.execute("DELETE FROM refund_history", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert!(
            conn.execute(
                "INSERT INTO refund_history (refund_id, at, source, to_status, applied)
                 VALUES ('rf_nobody', 4, 'api', 'pending', 1)",
                [],
            )
            .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO refund_history (refund_id, at, source, to_status, applied)
                 VALUES ('rf_1', 4, 'portal', 'pending', 1)",
                [],
            )
            .is_err()
        );
    }

    #[test]
    fn a_migration_that_leaves_a_dangling_reference_is_rolled_back() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let mut migrations = MIGRATIONS.to_vec();
        migrations.push(
            "INSERT INTO refund_history (refund_id, at, source, to_status, applied)
             VALUES ('rf_nobody', 1, 'api', 'pending', 1);",
        );
        let err = migrate_with(&conn, &migrations).unwrap_err();
        assert!(err.to_string().contains("dangling reference"), "{err}");
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM refund_history", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(enforced, "enforced again after a failed migration");
    }

    #[tokio::test]
    async fn migrations_run_once() {
        let dir = std::env::temp_dir().join(format!("refundry-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("migrate.db");
        let _ = std::fs::remove_file(&path);
        Database::open(Some(&path)).unwrap();
        let db = Database::open(Some(&path)).unwrap();
        let version: usize = db
            .run(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
