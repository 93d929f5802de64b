//! The webhook inbox on PostgreSQL: [`crate::Ledger`]'s inbox methods with the same results as
//! SQLite's. The event's inbox row decides duplicates (a second host inserting the same event
//! waits for the first one's transaction, then finds it); locks follow [`super::refunds`]'s
//! order.

use super::Pg;
use super::refunds::{apply_report, lock_provider_refund_id};
use crate::error::DbError;
use crate::inbox::model::{InboxEvent, Inboxed};

/// [`crate::Ledger::receive_webhook`]. An event naming a provider's refund id takes that id's
/// lock before it looks the refund up: a report that makes the id known on another host either
/// commits first (this event then finds its refund) or finds this event held once it has
/// committed.
pub(crate) async fn receive_webhook(pg: &Pg, event: InboxEvent) -> Result<Inboxed, DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO webhook_inbox (provider, event_id, event_type, provider_refund_id,
                    external_refund_id, status, body, received_at, result)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received')
                 ON CONFLICT (provider, event_id) DO NOTHING",
            )
            .await?,
            &[
                &event.provider,
                &event.event_id,
                &event.event_type,
                &event.report.provider_refund_id,
                &event.external_refund_id,
                &event.report.status.as_str(),
                &event.body,
                &event.now_ms,
            ],
        )
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(Inboxed::Duplicate);
    }
    if let Some(prid) = &event.report.provider_refund_id {
        lock_provider_refund_id(&tx, prid).await?;
    }
    let refund_id = find_refund_id(
        &tx,
        &event.provider,
        event.report.provider_refund_id.as_deref(),
        event.external_refund_id.as_deref(),
    )
    .await?;
    let result = match refund_id {
        None => Inboxed::Unmatched,
        Some(id) => {
            let stamp = event.stamp();
            let applied = apply_report(&tx, &id, &event.report, &stamp, None).await?;
            Inboxed::Matched(Box::new(applied))
        }
    };
    let (word, refund_id) = result.kept_as();
    tx.execute(
        &tx.prepare_cached(
            "UPDATE webhook_inbox SET result = $3, refund_id = $4
             WHERE provider = $1 AND event_id = $2",
        )
        .await?,
        &[&event.provider, &event.event_id, &word, &refund_id],
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// [`crate::Ledger::keep_ignored_webhook`].
pub(crate) async fn keep_ignored_webhook(
    pg: &Pg,
    provider: &str,
    key: &str,
    reason: &str,
    body: Vec<u8>,
    now_ms: i64,
) -> Result<bool, DbError> {
    let client = pg.client().await?;
    let inserted = client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO webhook_inbox (provider, event_id, event_type, status, body,
                        received_at, result)
                     VALUES ($1, $2, $3, 'ignored', $4, $5, 'ignored')
                     ON CONFLICT (provider, event_id) DO NOTHING",
                )
                .await?,
            &[&provider, &key, &reason, &body, &now_ms],
        )
        .await?;
    Ok(inserted == 1)
}

/// [`crate::Ledger::unmatched_webhooks`].
pub(crate) async fn unmatched_webhooks(pg: &Pg) -> Result<Vec<(String, String)>, DbError> {
    let client = pg.client().await?;
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT provider, event_id FROM webhook_inbox WHERE result = 'unmatched'
                     ORDER BY received_at, seq",
                )
                .await?,
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// The id of the refund of `provider` that a provider's report names: by the provider's refund
/// id first, else by the gateway's refund id (as SQLite's `find_refund_id`).
pub(crate) async fn find_refund_id(
    c: &impl deadpool_postgres::GenericClient,
    provider: &str,
    provider_refund_id: Option<&str>,
    external_refund_id: Option<&str>,
) -> Result<Option<String>, DbError> {
    if let Some(prid) = provider_refund_id {
        let found = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT id FROM refunds WHERE provider = $1 AND provider_refund_id = $2
                     LIMIT 1",
                )
                .await?,
                &[&provider, &prid],
            )
            .await?;
        if let Some(row) = found {
            return Ok(Some(row.try_get(0)?));
        }
    }
    let Some(ext) = external_refund_id else {
        return Ok(None);
    };
    let found = c
        .query_opt(
            &c.prepare_cached(
                "SELECT refund_id FROM idempotency_keys
                 WHERE provider = $1 AND external_refund_id = $2",
            )
            .await?,
            &[&provider, &ext],
        )
        .await?;
    Ok(found.map(|row| row.try_get(0)).transpose()?)
}
