//! The redacted log of provider HTTP exchanges, each linked to the refund it was made for.

use rusqlite::params;

use super::{ExchangeRecord, Ledger, from_json, to_json};
use crate::db::DbError;
use crate::exchange::Exchange;

impl Ledger {
    /// Keeps the redacted exchanges of one plugin operation, linked to its refund.
    pub async fn log_exchanges(
        &self,
        refund_id: Option<&str>,
        provider: &str,
        operation: &str,
        exchanges: Vec<Exchange>,
    ) -> Result<(), DbError> {
        if exchanges.is_empty() {
            return Ok(());
        }
        let (refund_id, provider, operation) = (
            refund_id.map(str::to_owned),
            provider.to_owned(),
            operation.to_owned(),
        );
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO http_exchanges (refund_id, provider, operation, method, url,
                            request_headers, request_body, status, response_headers,
                            response_body, error, latency_ms, sent_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )?;
                    for e in &exchanges {
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
                }
                tx.commit()
            })
            .await
    }

    /// The exchanges made for a refund, oldest first.
    pub async fn exchanges(&self, refund_id: &str) -> Result<Vec<ExchangeRecord>, DbError> {
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
