//! The operations views of the ledger ([`crate::stats`]) on PostgreSQL.
//!
//! Text is ordered byte by byte (`COLLATE "C"`), as SQLite orders it, whatever the database's
//! collation; the two statements of each view read one snapshot, as SQLite's single connection
//! gives them.

use super::Pg;
use crate::error::DbError;
use crate::stats::model::{LedgerStats, StatusCount, Stuck, StuckRefund, Waiting};
use crate::{REFUND_COLUMNS, status};

/// Refunds by provider, plugin version and status, and per provider the refunds not final and
/// the oldest of them.
pub(crate) async fn stats(pg: &Pg) -> Result<LedgerStats, DbError> {
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let by_status = tx
        .query(
            &tx.prepare_cached(
                "SELECT provider, plugin_version, status, COUNT(*) FROM refunds
                 GROUP BY provider, plugin_version, status
                 ORDER BY provider COLLATE \"C\", plugin_version COLLATE \"C\",
                     status COLLATE \"C\"",
            )
            .await?,
            &[],
        )
        .await?
        .iter()
        .map(|r| StatusCount {
            provider: r.get(0),
            plugin_version: r.get(1),
            status: status(r.get(2)),
            count: count(r.get(3)),
        })
        .collect();
    let waiting = tx
        .query(
            &tx.prepare_cached(
                "SELECT provider, COUNT(*), MIN(created_at) FROM refunds
                 WHERE status IN ('pending', 'unknown')
                 GROUP BY provider ORDER BY provider COLLATE \"C\"",
            )
            .await?,
            &[],
        )
        .await?
        .iter()
        .map(|r| Waiting {
            provider: r.get(0),
            count: count(r.get(1)),
            oldest_created_ms: r.get(2),
        })
        .collect();
    tx.commit().await?;
    Ok(LedgerStats {
        by_status,
        waiting,
        writes: None,
    })
}

/// Refunds not final created at or before `created_before_ms`, oldest first, at most `limit`, of
/// `provider` only when given, with how many match in all.
pub(crate) async fn stuck(
    pg: &Pg,
    provider: Option<String>,
    created_before_ms: i64,
    now_ms: i64,
    limit: usize,
) -> Result<Stuck, DbError> {
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let total = count(
        tx.query_one(
            &tx.prepare_cached(
                "SELECT COUNT(*) FROM refunds
                 WHERE status IN ('pending', 'unknown') AND created_at <= $1
                   AND ($2::TEXT IS NULL OR provider = $2)",
            )
            .await?,
            &[&created_before_ms, &provider],
        )
        .await?
        .get(0),
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let refunds = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {REFUND_COLUMNS} FROM refunds
                 WHERE status IN ('pending', 'unknown') AND created_at <= $1
                   AND ($2::TEXT IS NULL OR provider = $2)
                 ORDER BY created_at, id COLLATE \"C\" LIMIT $3"
            ))
            .await?,
            &[&created_before_ms, &provider, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            let refund = super::refunds::refund(r)?;
            Ok(StuckRefund {
                age_ms: now_ms - refund.created_at.timestamp_millis(),
                refund,
            })
        })
        .collect::<Result<_, DbError>>()?;
    tx.commit().await?;
    Ok(Stuck { refunds, total })
}

/// A `COUNT(*)`, never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::stats::model::{StatusCount, StuckRefund, Waiting};
    use crate::{Failure, Ledger, RefundRecord, Status, time};

    /// Writes a refund row as the ledger does.
    async fn insert(l: &Ledger, id: &str, provider: &str, version: &str, status: &str, at: i64) {
        let client = l.db.pg().unwrap().client().await.unwrap();
        let failure = (id == "rf_B")
            .then_some(r#"{"code":"window_expired","message":"late","provider_code":"E1"}"#);
        client
            .execute(
                "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256,
                     external_refund_id, original_transaction_id, amount, currency, reason,
                     order_id, status, provider_refund_id, provider_status, failure,
                     fingerprint, created_at, updated_at)
                 VALUES ($1, $2, $3, 'sha', 'ext-' || $1, 'txn', 100, 'KES', 'why', NULL, $4,
                     'p-' || $1, 'PENDING', $5, 'fp', $6::BIGINT, $6::BIGINT + 1)",
                &[&id, &provider, &version, &status, &failure, &at],
            )
            .await
            .unwrap();
    }

    /// Text is ordered byte by byte, as on SQLite, even when the database's own collation
    /// orders it otherwise (here ICU's root collation: `a-b`, `ab`, `B`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn views_order_text_as_sqlite_whatever_the_collation() {
        let l = crate::testing::pg_ledger("stats_collation").await;
        let client = l.db.pg().unwrap().client().await.unwrap();
        client
            .batch_execute(
                "ALTER TABLE refunds ALTER COLUMN id TYPE TEXT COLLATE \"und-x-icu\",
                     ALTER COLUMN provider TYPE TEXT COLLATE \"und-x-icu\",
                     ALTER COLUMN plugin_version TYPE TEXT COLLATE \"und-x-icu\"",
            )
            .await
            .unwrap();
        insert(&l, "rf_a", "ab", "1.0", "pending", 1_000).await;
        insert(&l, "rf_B", "ab", "1.0", "unknown", 1_000).await;
        insert(&l, "rf_c", "a-b", "1.0", "processed", 2_000).await;
        insert(&l, "rf_d", "B", "0.9", "failed", 3_000).await;
        insert(&l, "rf_e", "B", "1.0", "pending", 500).await;
        let collated: Vec<String> = client
            .query(
                "SELECT DISTINCT provider FROM refunds ORDER BY provider",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            collated,
            ["a-b", "ab", "B"],
            "the column's own order differs"
        );

        let stats = l.stats().await.unwrap();
        let count = |provider: &str, version: &str, status, count| StatusCount {
            provider: provider.into(),
            plugin_version: version.into(),
            status,
            count,
        };
        assert_eq!(
            stats.by_status,
            [
                count("B", "0.9", Status::Failed, 1),
                count("B", "1.0", Status::Pending, 1),
                count("a-b", "1.0", Status::Processed, 1),
                count("ab", "1.0", Status::Pending, 1),
                count("ab", "1.0", Status::Unknown, 1),
            ]
        );
        assert_eq!(
            stats.waiting,
            [
                Waiting {
                    provider: "B".into(),
                    count: 1,
                    oldest_created_ms: 500,
                },
                Waiting {
                    provider: "ab".into(),
                    count: 2,
                    oldest_created_ms: 1_000,
                },
            ]
        );

        let stuck = l.stuck(None, 1_000, 5_000, 10).await.unwrap();
        let ids: Vec<_> = stuck
            .refunds
            .iter()
            .map(|r| (r.refund.id.as_str(), r.age_ms))
            .collect();
        assert_eq!(ids, [("rf_e", 4_500), ("rf_B", 4_000), ("rf_a", 4_000)]);
        assert_eq!(stuck.total, 3);
        let one = l.stuck(Some("ab".into()), 1_000, 5_000, 1).await.unwrap();
        assert_eq!(one.total, 2);
        assert_eq!(
            one.refunds,
            [StuckRefund {
                refund: RefundRecord {
                    id: "rf_B".into(),
                    provider: "ab".into(),
                    plugin_version: "1.0".into(),
                    plugin_sha256: "sha".into(),
                    external_refund_id: "ext-rf_B".into(),
                    original_transaction_id: "txn".into(),
                    amount: 100,
                    currency: "KES".into(),
                    reason: Some("why".into()),
                    order_id: None,
                    status: Status::Unknown,
                    provider_refund_id: Some("p-rf_B".into()),
                    provider_status: Some("PENDING".into()),
                    failure: Some(Failure {
                        code: "window_expired".into(),
                        message: "late".into(),
                        provider_code: Some("E1".into()),
                    }),
                    created_at: time(1_000),
                    updated_at: time(1_001),
                },
                age_ms: 4_000,
            }]
        );
        let none = l.stuck(Some("a-b".into()), 9_000, 9_000, 10).await.unwrap();
        assert_eq!((none.refunds.len(), none.total), (0, 0));
    }
}
