//! Read-only views of the whole ledger for operations: what `GET /metrics` reports at each
//! scrape (refunds by provider, plugin version and status; the refunds not final yet and the
//! oldest of them) and what `refundry refund list --stuck` lists.
//!
//! Both read the ledger rather than counters kept in memory, so they survive a restart and agree
//! with `refund list`. Each is one SQLite statement (or two in one call) on the indexes of
//! migration 5 in [`crate::db`]; on PostgreSQL, the same statements read one snapshot
//! (`crate::postgres::stats`).

pub mod model;

pub use model::*;

use rusqlite::params;

use super::{Ledger, REFUND_COLUMNS, refund, status};
use crate::db::DbError;

impl Ledger {
    /// Refunds by provider, plugin version and status, and per provider the refunds not final
    /// and the oldest of them.
    pub async fn stats(&self) -> Result<LedgerStats, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::stats::stats(pg).await;
        }
        self.db
            .run(|c| {
                let by_status = c
                    .prepare_cached(
                        "SELECT provider, plugin_version, status, COUNT(*) FROM refunds
                         GROUP BY provider, plugin_version, status
                         ORDER BY provider, plugin_version, status",
                    )?
                    .query_map([], |r| {
                        Ok(StatusCount {
                            provider: r.get(0)?,
                            plugin_version: r.get(1)?,
                            status: status(&r.get::<_, String>(2)?),
                            count: r.get(3)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                let waiting = c
                    .prepare_cached(
                        "SELECT provider, COUNT(*), MIN(created_at) FROM refunds
                         WHERE status IN ('pending', 'unknown')
                         GROUP BY provider ORDER BY provider",
                    )?
                    .query_map([], |r| {
                        Ok(Waiting {
                            provider: r.get(0)?,
                            count: r.get(1)?,
                            oldest_created_ms: r.get(2)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok((by_status, waiting))
            })
            .await
            .map(|(by_status, waiting)| LedgerStats {
                by_status,
                waiting,
                writes: self.db.write_counts(),
            })
    }

    /// Refunds not final (`pending` or `unknown`) created at or before `created_before_ms`,
    /// oldest first, at most `limit`, of `provider` only when given; ages are counted to `now_ms`.
    pub async fn stuck(
        &self,
        provider: Option<String>,
        created_before_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Stuck, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::stats::stuck(pg, provider, created_before_ms, now_ms, limit)
                .await;
        }
        self.db
            .run(move |c| {
                let total: u64 = c.query_row(
                    "SELECT COUNT(*) FROM refunds
                     WHERE status IN ('pending', 'unknown') AND created_at <= ?1
                       AND (?2 IS NULL OR provider = ?2)",
                    params![created_before_ms, provider],
                    |r| r.get(0),
                )?;
                let refunds = c
                    .prepare_cached(&format!(
                        "SELECT {REFUND_COLUMNS} FROM refunds
                         WHERE status IN ('pending', 'unknown') AND created_at <= ?1
                           AND (?2 IS NULL OR provider = ?2)
                         ORDER BY created_at, id LIMIT ?3"
                    ))?
                    .query_map(params![created_before_ms, provider, limit as i64], refund)?
                    .map(|r| {
                        r.map(|refund| StuckRefund {
                            age_ms: now_ms - refund.created_at.timestamp_millis(),
                            refund,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Stuck { refunds, total })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Failure, NewRow, Report, Source, Stamp, Status};

    fn row(id: &str, provider: &str, version: &str, at_ms: i64) -> NewRow {
        NewRow {
            id: id.into(),
            provider: provider.into(),
            plugin_version: version.into(),
            plugin_sha256: "00".into(),
            external_refund_id: format!("ext-{id}"),
            original_transaction_id: "txn".into(),
            amount: 100,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original_amount: None,
            fingerprint: format!("fp-{id}"),
            now_ms: at_ms,
            first_check_ms: at_ms + 1000,
        }
    }

    async fn report(ledger: &Ledger, id: &str, to: Status, at_ms: i64) {
        let report = Report {
            status: to,
            provider_refund_id: Some(format!("p-{id}")),
            provider_status: None,
            failure: (to == Status::Failed).then(|| Failure {
                code: "provider_failed".into(),
                message: "no".into(),
                provider_code: None,
            }),
        };
        let stamp = Stamp::new(Source::Api, "test", at_ms).by("0.1.0");
        ledger
            .apply(id, report, stamp, None, Some(at_ms + 1000))
            .await
            .unwrap();
    }

    /// Writes refunds at controlled times: a (processed), b (pending, the oldest waiting), c
    /// (unknown, never answered), d (failed), e (pagoefectivo, pending), f (refused by a
    /// pre-check: failed without a provider call).
    async fn fill(ledger: &Ledger) {
        let rows = [
            ("a", "mfs-africa", "0.1.0", 1_000),
            ("b", "mfs-africa", "0.1.0", 2_000),
            ("c", "mfs-africa", "0.2.0", 5_000),
            ("d", "mfs-africa", "0.2.0", 6_000),
            ("e", "pagoefectivo", "0.1.0", 9_000),
        ];
        for (id, provider, version, at) in rows {
            ledger
                .begin(row(id, provider, version, at), None)
                .await
                .unwrap();
        }
        report(ledger, "a", Status::Processed, 3_000).await;
        report(ledger, "b", Status::Pending, 3_000).await;
        report(ledger, "d", Status::Failed, 7_000).await;
        report(ledger, "e", Status::Pending, 9_500).await;
        let refusal = Failure {
            code: "window_expired".into(),
            message: "late".into(),
            provider_code: None,
        };
        ledger
            .begin(row("f", "mfs-africa", "0.2.0", 10_000), Some(refusal))
            .await
            .unwrap();
    }

    both_backends! {
        async fn stats_count_by_status_and_find_the_oldest_waiting(ledger) {
            fill(&ledger).await;
            let stats = ledger.stats().await.unwrap();
            let counts: Vec<_> = stats
                .by_status
                .iter()
                .map(|s| {
                    (
                        s.provider.as_str(),
                        s.plugin_version.as_str(),
                        s.status,
                        s.count,
                    )
                })
                .collect();
            assert_eq!(
                counts,
                [
                    ("mfs-africa", "0.1.0", Status::Pending, 1),
                    ("mfs-africa", "0.1.0", Status::Processed, 1),
                    ("mfs-africa", "0.2.0", Status::Failed, 2),
                    ("mfs-africa", "0.2.0", Status::Unknown, 1),
                    ("pagoefectivo", "0.1.0", Status::Pending, 1),
                ]
            );
            assert_eq!(
                stats.waiting,
                [
                    Waiting {
                        provider: "mfs-africa".into(),
                        count: 2,
                        oldest_created_ms: 2_000,
                    },
                    Waiting {
                        provider: "pagoefectivo".into(),
                        count: 1,
                        oldest_created_ms: 9_000,
                    },
                ]
            );
            assert_eq!(
                ledger.backlog().await.unwrap(),
                3,
                "the same count as the janitor's"
            );
        }

        async fn stuck_lists_only_refunds_not_final_older_than_asked_oldest_first(ledger) {
            fill(&ledger).await;
            let ids = |s: &Stuck| {
                s.refunds
                    .iter()
                    .map(|r| (r.refund.id.clone(), r.age_ms))
                    .collect::<Vec<_>>()
            };
            // At 12 s, "older than 4 s" is created at or before 8 s: b and c, not e (9 s).
            let stuck = ledger.stuck(None, 8_000, 12_000, 50).await.unwrap();
            assert_eq!(ids(&stuck), [("b".into(), 10_000), ("c".into(), 7_000)]);
            assert_eq!(stuck.total, 2);
            // The limit keeps the oldest, the total still counts every match.
            let first = ledger.stuck(None, 12_000, 12_000, 1).await.unwrap();
            assert_eq!(ids(&first), [("b".into(), 10_000)]);
            assert_eq!(first.total, 3);
            let pe = ledger
                .stuck(Some("pagoefectivo".into()), 12_000, 12_000, 50)
                .await
                .unwrap();
            assert_eq!(ids(&pe), [("e".into(), 3_000)]);
            let none = ledger.stuck(None, 1_500, 12_000, 50).await.unwrap();
            assert_eq!((none.refunds.len(), none.total), (0, 0));
        }
    }
}
