//! The redacted log of provider HTTP exchanges ([`crate::exchanges`]) on PostgreSQL.

use super::Pg;
use crate::error::DbError;
use crate::exchange::Exchange;
use crate::{ExchangeRecord, from_json, to_json};

/// Keeps the redacted exchanges of one plugin operation, linked to its refund: all of them or
/// none (one transaction), in their order.
pub(crate) async fn log_exchanges(
    pg: &Pg,
    refund_id: Option<&str>,
    provider: &str,
    operation: &str,
    exchanges: Vec<Exchange>,
) -> Result<(), DbError> {
    if exchanges.is_empty() {
        return Ok(());
    }
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO http_exchanges (refund_id, provider, operation, method, url,
                 request_headers, request_body, status, response_headers, response_body, error,
                 latency_ms, sent_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await?;
    for e in &exchanges {
        tx.execute(
            &stmt,
            &[
                &refund_id,
                &provider,
                &operation,
                &e.method,
                &e.url,
                &to_json(&e.request_headers),
                &e.request_body,
                &e.status.map(i64::from),
                &to_json(&e.response_headers),
                &e.response_body,
                &e.error,
                &e.latency_ms,
                &e.sent_at_ms,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The exchanges made for a refund, oldest first.
pub(crate) async fn exchanges(pg: &Pg, refund_id: &str) -> Result<Vec<ExchangeRecord>, DbError> {
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached(
            "SELECT refund_id, provider, operation, method, url, request_headers, request_body,
                 status, response_headers, response_body, error, latency_ms, sent_at
             FROM http_exchanges WHERE refund_id = $1 ORDER BY seq",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&refund_id])
        .await?
        .iter()
        .map(|r| ExchangeRecord {
            refund_id: r.get(0),
            provider: r.get(1),
            operation: r.get(2),
            exchange: Exchange {
                method: r.get(3),
                url: r.get(4),
                request_headers: from_json(r.get(5)),
                request_body: r.get(6),
                status: r
                    .get::<_, Option<i64>>(7)
                    .and_then(|s| u16::try_from(s).ok()),
                response_headers: from_json(r.get(8)),
                response_body: r.get(9),
                error: r.get(10),
                latency_ms: r.get(11),
                sent_at_ms: r.get(12),
            },
        })
        .collect())
}
