//! The webhook inbox: every verified provider event, deduplicated by event id, applied to the
//! refund it names or kept unmatched.

pub mod model;

pub use model::*;

use rusqlite::{OptionalExtension, params};

use rusqlite::Connection;

use super::{Ledger, apply_report};
use crate::db::DbError;

impl Ledger {
    /// Takes a verified webhook event: dedupes it by event id, then applies it to the refund it
    /// names (by provider refund id, else by the gateway's refund id), or keeps it unmatched.
    pub async fn receive_webhook(&self, event: InboxEvent) -> Result<Inboxed, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::inbox::receive_webhook(pg, event).await;
        }
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let inserted = tx.execute(
                    "INSERT INTO webhook_inbox (provider, event_id, event_type, provider_refund_id,
                        external_refund_id, status, body, received_at, result)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'received')
                     ON CONFLICT (provider, event_id) DO NOTHING",
                    params![
                        event.provider,
                        event.event_id,
                        event.event_type,
                        event.report.provider_refund_id,
                        event.external_refund_id,
                        event.report.status.as_str(),
                        event.body,
                        event.now_ms
                    ],
                )?;
                if inserted == 0 {
                    return Ok(Inboxed::Duplicate);
                }
                let refund_id = find_refund_id(
                    &tx,
                    &event.provider,
                    event.report.provider_refund_id.as_deref(),
                    event.external_refund_id.as_deref(),
                )?;
                let result = match refund_id {
                    None => Inboxed::Unmatched,
                    Some(id) => {
                        let stamp = event.stamp();
                        let applied = apply_report(&tx, &id, &event.report, &stamp, None)?;
                        Inboxed::Matched(Box::new(applied))
                    }
                };
                let (word, refund_id) = result.kept_as();
                tx.execute(
                    "UPDATE webhook_inbox SET result = ?3, refund_id = ?4
                     WHERE provider = ?1 AND event_id = ?2",
                    params![event.provider, event.event_id, word, refund_id],
                )?;
                tx.commit()?;
                Ok(result)
            })
            .await
    }

    /// Keeps a verified delivery its plugin does not handle (an event type it ignores), under
    /// `key` (the service uses a digest of the body, so a redelivery is kept once), with the
    /// plugin's `reason` as its event type. Returns false when that key was kept before.
    pub async fn keep_ignored_webhook(
        &self,
        provider: &str,
        key: &str,
        reason: &str,
        body: Vec<u8>,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::inbox::keep_ignored_webhook(
                pg, provider, key, reason, body, now_ms,
            )
            .await;
        }
        let (provider, key, reason) = (provider.to_owned(), key.to_owned(), reason.to_owned());
        self.db
            .run(move |c| {
                let inserted = c.execute(
                    "INSERT INTO webhook_inbox (provider, event_id, event_type, status, body,
                        received_at, result)
                     VALUES (?1, ?2, ?3, 'ignored', ?4, ?5, 'ignored')
                     ON CONFLICT (provider, event_id) DO NOTHING",
                    params![provider, key, reason, body, now_ms],
                )?;
                Ok(inserted == 1)
            })
            .await
    }

    /// Events kept in the inbox that matched no refund, oldest first: `(provider, event id)`.
    pub async fn unmatched_webhooks(&self) -> Result<Vec<(String, String)>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::inbox::unmatched_webhooks(pg).await;
        }
        self.db
            .run(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT provider, event_id FROM webhook_inbox WHERE result = 'unmatched'
                     ORDER BY received_at",
                )?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .await
    }
}

/// The id of the refund of `provider` that a provider's report names: by the provider's refund
/// id first (what its webhooks and lists carry), else by the gateway's refund id.
pub(super) fn find_refund_id(
    c: &Connection,
    provider: &str,
    provider_refund_id: Option<&str>,
    external_refund_id: Option<&str>,
) -> Result<Option<String>, rusqlite::Error> {
    let by_provider_id: Option<String> = match provider_refund_id {
        Some(prid) => c
            .prepare_cached(
                "SELECT id FROM refunds WHERE provider = ?1 AND provider_refund_id = ?2",
            )?
            .query_row(params![provider, prid], |r| r.get(0))
            .optional()?,
        None => None,
    };
    match (by_provider_id, external_refund_id) {
        (Some(id), _) => Ok(Some(id)),
        (None, Some(ext)) => c
            .prepare_cached(
                "SELECT refund_id FROM idempotency_keys
                 WHERE provider = ?1 AND external_refund_id = ?2",
            )?
            .query_row(params![provider, ext], |r| r.get(0))
            .optional(),
        (None, None) => Ok(None),
    }
}

/// Applies, oldest first, the unmatched events of `provider` that named `provider_refund_id`,
/// now that it is known to be `refund_id`'s, inside the caller's transaction.
pub(super) fn apply_held(
    c: &Connection,
    provider: &str,
    provider_refund_id: &str,
    refund_id: &str,
    now_ms: i64,
) -> Result<(), rusqlite::Error> {
    let held: Vec<(String, String, String)> = c
        .prepare_cached(
            "SELECT event_id, event_type, status FROM webhook_inbox
             WHERE provider = ?1 AND provider_refund_id = ?2 AND result = 'unmatched'
             ORDER BY received_at, rowid",
        )?
        .query_map(params![provider, provider_refund_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (event_id, event_type, status) in held {
        let (report, stamp) =
            held_report(provider_refund_id, &event_id, &event_type, &status, now_ms);
        let applied = apply_report(c, refund_id, &report, &stamp, None)?;
        c.execute(
            "UPDATE webhook_inbox SET result = ?3, refund_id = ?4
             WHERE provider = ?1 AND event_id = ?2",
            params![provider, event_id, applied_word(applied.moved), refund_id],
        )?;
    }
    Ok(())
}
