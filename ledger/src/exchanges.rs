//! The redacted log of provider HTTP exchanges, each linked to the refund it was made for.

use rusqlite::params;

use super::{ExchangeRecord, Ledger, from_json, to_json};
use crate::db::DbError;
use crate::exchange::Exchange;

/// Inserts the exchanges of one plugin operation (SQLite), inside the caller's write.
pub(crate) fn insert_exchanges(
    c: &rusqlite::Connection,
    refund_id: Option<&str>,
    provider: &str,
    operation: &str,
    exchanges: &[Exchange],
) -> Result<(), rusqlite::Error> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO http_exchanges (refund_id, provider, operation, method, url,
            request_headers, request_body, status, response_headers,
            response_body, error, latency_ms, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in exchanges {
        stmt.execute(params![
            refund_id,
            provider,
            operation,
            e.method,
            e.url,
            to_json(&e.request_headers),
            e.request_body,
            e.status,
            to_json(&e.response_headers),
            e.response_body,
            e.error,
            e.latency_ms,
            e.sent_at_ms
        ])?;
    }
    Ok(())
}

impl Ledger {
    /// Keeps the redacted exchanges of one plugin operation, linked to its refund.
    pub async fn log_exchanges(
        &self,
        refund_id: Option<&str>,
        provider: &str,
        operation: &str,
        exchanges: Vec<Exchange>,
    ) -> Result<(), DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::exchanges::log_exchanges(
                pg, refund_id, provider, operation, exchanges,
            )
            .await;
        }
        if exchanges.is_empty() {
            return Ok(());
        }
        let (refund_id, provider, operation) = (
            refund_id.map(str::to_owned),
            provider.to_owned(),
            operation.to_owned(),
        );
        self.db
            .write(move |c| {
                insert_exchanges(c, refund_id.as_deref(), &provider, &operation, &exchanges)
            })
            .await
    }

    /// The exchanges made for a refund, oldest first.
    pub async fn exchanges(&self, refund_id: &str) -> Result<Vec<ExchangeRecord>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::exchanges::exchanges(pg, refund_id).await;
        }
        let refund_id = refund_id.to_owned();
        self.db
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT refund_id, provider, operation, method, url, request_headers,
                        request_body, status, response_headers, response_body, error,
                        latency_ms, sent_at
                     FROM http_exchanges WHERE refund_id = ?1 ORDER BY seq",
                )?;
                stmt.query_map([&refund_id], |r| {
                    Ok(ExchangeRecord {
                        refund_id: r.get(0)?,
                        provider: r.get(1)?,
                        operation: r.get(2)?,
                        exchange: Exchange {
                            method: r.get(3)?,
                            url: r.get(4)?,
                            request_headers: from_json(&r.get::<_, String>(5)?),
                            request_body: r.get(6)?,
                            status: r.get(7)?,
                            response_headers: from_json(&r.get::<_, String>(8)?),
                            response_body: r.get(9)?,
                            error: r.get(10)?,
                            latency_ms: r.get(11)?,
                            sent_at_ms: r.get(12)?,
                        },
                    })
                })?
                .collect()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(url: &str, status: Option<u16>, sent_at_ms: i64) -> Exchange {
        Exchange {
            method: "POST".into(),
            url: url.into(),
            request_headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), crate::exchange::REDACTED.into()),
            ],
            request_body: Some("{\"amount\":100}".into()),
            status,
            response_headers: status
                .map(|_| vec![("x-request-id".into(), "r-1".into())])
                .unwrap_or_default(),
            response_body: status.map(|s| format!("{{\"status\":{s}}}")),
            error: status.is_none().then(|| "connection refused".into()),
            latency_ms: 101.625,
            sent_at_ms,
        }
    }

    both_backends! {
        /// A refund's exchanges come back as written, in order, and only its own.
        async fn exchanges_are_kept_per_refund_in_order(l) {
            let first = vec![
                exchange("https://p/token", Some(200), 1_000),
                exchange("https://p/refunds", None, 1_001),
            ];
            l.log_exchanges(Some("rf_1"), "mfs-africa", "create-refund", first.clone())
                .await
                .unwrap();
            let unlinked = vec![exchange("https://p/x", Some(401), 1_500)];
            l.log_exchanges(None, "mfs-africa", "webhook", unlinked).await.unwrap();
            let other = vec![exchange("https://p/y", Some(500), 1_600)];
            l.log_exchanges(Some("rf_2"), "mfs-africa", "create-refund", other)
                .await
                .unwrap();
            l.log_exchanges(Some("rf_1"), "mfs-africa", "get-refund", Vec::new())
                .await
                .unwrap();
            let later = exchange("https://p/refunds/9", Some(202), 2_000);
            l.log_exchanges(Some("rf_1"), "mfs-africa", "get-refund", vec![later.clone()])
                .await
                .unwrap();

            let got = l.exchanges("rf_1").await.unwrap();
            let expected: Vec<ExchangeRecord> = first
                .into_iter()
                .map(|e| ("create-refund", e))
                .chain([("get-refund", later)])
                .map(|(operation, exchange)| ExchangeRecord {
                    refund_id: Some("rf_1".into()),
                    provider: "mfs-africa".into(),
                    operation: operation.into(),
                    exchange,
                })
                .collect();
            assert_eq!(got, expected);
            assert_eq!(l.exchanges("rf_2").await.unwrap().len(), 1);
            assert_eq!(l.exchanges("rf_3").await.unwrap(), []);
        }
    }
}
