//! For the tests of the ledger and of the crates that use it: sample rows, and a private
//! PostgreSQL server.

use chrono::{DateTime, Utc};

use crate::{Failure, RefundRecord, Status};

/// A refund record numbered `n`: failed, with a reason that needs CSV quoting.
pub fn record(n: u32) -> RefundRecord {
    let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.5Z")
        .unwrap()
        .with_timezone(&Utc);
    RefundRecord {
        id: format!("rf_{n:04}"),
        provider: "mfs-africa".into(),
        plugin_version: "0.1.0".into(),
        plugin_sha256: "ab".repeat(32),
        external_refund_id: format!("ext-{n}"),
        original_transaction_id: "tx-1".into(),
        amount: 150_050,
        currency: "KES".into(),
        reason: Some("customer, said \"no\"".into()),
        order_id: None,
        status: Status::Failed,
        provider_refund_id: None,
        provider_status: Some("FAILED".into()),
        failure: Some(Failure {
            code: "amount_exceeded".into(),
            message: "=cmd|' /C calc'!A0".into(),
            provider_code: Some("E12".into()),
        }),
        created_at: at,
        updated_at: at,
    }
}

/// A ledger on a new database of the test process's private PostgreSQL cluster.
pub async fn pg_ledger(label: &str) -> crate::Ledger {
    crate::Ledger::new(pg_database(label).await)
}

/// A new database of the test process's private PostgreSQL cluster, connected and migrated.
pub async fn pg_database(label: &str) -> crate::db::Database {
    connect(&test_url(label).await).await
}

/// Two hosts on one new database of the test process's private PostgreSQL cluster: two
/// connections of the ledger, each with its own pool (and listeners), as two processes have.
pub async fn pg_hosts(label: &str) -> (crate::db::Database, crate::db::Database) {
    let url = test_url(label).await;
    (connect(&url).await, connect(&url).await)
}

/// [`test_database`], off the async threads (it runs `createdb`).
async fn test_url(label: &str) -> String {
    let label = label.to_owned();
    tokio::task::spawn_blocking(move || test_database(&label))
        .await
        .expect("a test database")
}

async fn connect(url: &str) -> crate::db::Database {
    crate::db::Database::connect(url, crate::postgres::PgOptions::default())
        .await
        .expect("the test database connects and migrates")
}

pub use refundry_pg_cluster::{PgCluster, shared_cluster, test_database};
