//! The refund core on PostgreSQL: [`crate::Ledger`]'s refund methods with the same results as
//! SQLite's, safe with several hosts on one database.
//!
//! Locks, always taken in this order within a transaction (so no two transactions wait for each
//! other in a circle):
//!
//! 1. the idempotency key's row (`begin`: the insert of a key waits for another transaction
//!    inserting the same key), or the webhook inbox row of an event (`receive_webhook`);
//! 2. one advisory lock: of a payment (`provider:original_transaction_id`) while `begin` sums its
//!    refunds, or of a provider's refund id while a report carrying it is applied (see
//!    [`lock_provider_refund_id`]);
//! 3. the refund's row (`SELECT ... FOR UPDATE`) before its status is read, so reports about one
//!    refund apply one after another and their events are written in order;
//! 4. the inbox rows of the events held for that refund.
//!
//! The janitor's queue takes no waiting lock: [`due_by_provider`] skips the rows another
//! transaction holds.

use futures_util::future::{BoxFuture, FutureExt};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::Pg;
use super::outbox;
use crate::error::DbError;
use crate::inbox::model::{applied_word, held_report};
use crate::{
    Applied, Begin, HistoryEntry, ListQuery, NewRow, Outcome, Page, REFUND_COLUMNS, RefundDetail,
    RefundRecord, Report, Source, Stamp, Status, begun, from_json, implied_processed,
    over_original, status, time, to_json, warn_backwards,
};

type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// [`crate::Ledger::begin`]. The key row decides: it is inserted first (`ON CONFLICT DO
/// NOTHING`), so a second host writing the same key waits for the first one's transaction and
/// then finds its row, as a replay or a conflict. The key's reference to its refund is checked
/// at commit (the schema defers it): inserting the refund first would make the refund's own
/// `UNIQUE (provider, external_refund_id)` the point of conflict, an error to catch instead of a
/// row to read, and would run the amount pre-check for every replay.
pub(crate) async fn begin(
    pg: &Pg,
    row: NewRow,
    refusal: Option<crate::Failure>,
) -> Result<Begin, DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO idempotency_keys (provider, external_refund_id, fingerprint,
                    refund_id, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (provider, external_refund_id) DO NOTHING",
            )
            .await?,
            &[
                &row.provider,
                &row.external_refund_id,
                &row.fingerprint,
                &row.id,
                &row.now_ms,
            ],
        )
        .await?;
    if inserted == 0 {
        // Committed by another transaction (the insert waited for it if it was in flight): this
        // statement's snapshot, taken after that wait, sees it.
        let key = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT refund_id, fingerprint FROM idempotency_keys
                     WHERE provider = $1 AND external_refund_id = $2",
                )
                .await?,
                &[&row.provider, &row.external_refund_id],
            )
            .await?;
        let refund_id: String = key.try_get(0)?;
        let fingerprint: String = key.try_get(1)?;
        let found = if fingerprint != row.fingerprint {
            Begin::Conflict(refund_id)
        } else {
            let r = tx
                .query_one(
                    &tx.prepare_cached(&format!(
                        "SELECT {REFUND_COLUMNS}, outcome FROM refunds WHERE id = $1"
                    ))
                    .await?,
                    &[&refund_id],
                )
                .await?;
            let outcome: Option<String> = r.try_get(16)?;
            Begin::Existing(refund(&r)?, outcome.as_deref().and_then(Outcome::parse))
        };
        tx.rollback().await?;
        return Ok(found);
    }
    let refusal = match (refusal, row.original_amount) {
        (Some(refusal), _) => Some(refusal),
        (None, Some(original)) => {
            // Two hosts writing refunds of one payment at once would each sum without the
            // other's: one at a time, the second summing after the first has committed.
            tx.execute(
                "SELECT pg_advisory_xact_lock(
                     hashtextextended($1::TEXT || ':' || $2::TEXT, 0))",
                &[&row.provider, &row.original_transaction_id],
            )
            .await?;
            // Summed here with checked additions, as on SQLite: a total past i64 is past any
            // original too.
            let amounts = tx
                .query(
                    &tx.prepare_cached(
                        "SELECT amount FROM refunds
                         WHERE provider = $1 AND original_transaction_id = $2
                           AND status <> 'failed'",
                    )
                    .await?,
                    &[&row.provider, &row.original_transaction_id],
                )
                .await?;
            let mut taken = Some(0i64);
            for r in &amounts {
                let amount: i64 = r.try_get(0)?;
                taken = taken.and_then(|t| t.checked_add(amount));
            }
            over_original(&row, original, taken)
        }
        (None, None) => None,
    };
    let (status, outcome, next_check) = match &refusal {
        Some(_) => (Status::Failed, Some(Outcome::Refused.as_str()), None),
        None => (Status::Unknown, None, Some(row.first_check_ms)),
    };
    let failure = refusal.as_ref().map(to_json);
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256,
                external_refund_id, original_transaction_id, amount, currency, reason,
                order_id, status, failure, outcome, fingerprint, checks, next_check_at,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15,
                $16, $16)",
        )
        .await?,
        &[
            &row.id,
            &row.provider,
            &row.plugin_version,
            &row.plugin_sha256,
            &row.external_refund_id,
            &row.original_transaction_id,
            &row.amount,
            &row.currency,
            &row.reason,
            &row.order_id,
            &status.as_str(),
            &failure,
            &outcome,
            &row.fingerprint,
            &next_check,
            &row.now_ms,
        ],
    )
    .await?;
    let stamp = begun(&row, refusal.as_ref());
    add_history(&tx, &row.id, &stamp, None, status, true, None).await?;
    let refund = the_refund(&tx, &row.id).await?;
    outbox::record(&tx, &refund).await?;
    tx.commit().await?;
    Ok(match refusal {
        Some(_) => Begin::Refused(refund),
        None => Begin::New(refund),
    })
}

/// [`crate::Ledger::apply`].
pub(crate) async fn apply(
    pg: &Pg,
    refund_id: &str,
    report: Report,
    stamp: Stamp,
    outcome: Option<Outcome>,
    next_check_ms: Option<i64>,
) -> Result<Applied, DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let applied = apply_report(&tx, refund_id, &report, &stamp, next_check_ms).await?;
    set_first_outcome(&tx, refund_id, outcome).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`crate::Ledger::note`]: the refund's row is locked before its status is read, so the note
/// records the status it was written beside.
pub(crate) async fn note(
    pg: &Pg,
    refund_id: &str,
    outcome: Option<Outcome>,
    stamp: Stamp,
    checks: Option<i64>,
    next_check_ms: i64,
) -> Result<(), DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let word: String = tx
        .query_one(
            &tx.prepare_cached("SELECT status FROM refunds WHERE id = $1 FOR UPDATE")
                .await?,
            &[&refund_id],
        )
        .await?
        .try_get(0)?;
    let status = Status::parse(&word).unwrap_or(Status::Unknown);
    set_first_outcome(&tx, refund_id, outcome).await?;
    schedule(&tx, refund_id, checks, next_check_ms).await?;
    add_history(&tx, refund_id, &stamp, Some(status), status, false, None).await?;
    tx.commit().await?;
    Ok(())
}

/// [`crate::Ledger::recover_unanswered`]: counts the refunds written but never answered, and
/// leaves them as they are (see the method).
pub(crate) async fn recover_unanswered(pg: &Pg) -> Result<usize, DbError> {
    let count: i64 = pg
        .client()
        .await?
        .query_one(
            "SELECT COUNT(*) FROM refunds WHERE status = 'unknown' AND outcome IS NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// [`crate::Ledger::reschedule`].
pub(crate) async fn reschedule(
    pg: &Pg,
    refund_id: &str,
    checks: i64,
    next_check_ms: i64,
) -> Result<(), DbError> {
    let client = pg.client().await?;
    schedule(&client, refund_id, Some(checks), next_check_ms).await
}

/// Whether a processed refund's reversal window has closed, for refunds of `refunds`: the
/// providers in `$2` (with their window starts in `$3`; the latest counts when one is named
/// twice) from their own start, the others from `$4`.
const WINDOW_CLOSED: &str = "refunds.status = 'processed'
    AND (refunds.processed_at IS NULL
         OR refunds.processed_at < COALESCE(
             (SELECT MAX(w.from_ms) FROM unnest($2::TEXT[], $3::BIGINT[]) AS w (provider, from_ms)
              WHERE w.provider = refunds.provider),
             $4))";

/// [`crate::Ledger::due_by_provider`], claiming what it returns: in one transaction, the
/// processed refunds whose reversal window has closed leave the queue (as on SQLite), then the
/// due refunds no other transaction holds are locked (`FOR UPDATE SKIP LOCKED`), most overdue
/// first, and their next check moved a lease ahead. Another host's janitor does not get them
/// meanwhile; it does once the lease has run out, should this host die before it checks them
/// (a check reschedules or settles the refund).
pub(crate) async fn due_by_provider(
    pg: &Pg,
    now_ms: i64,
    watch_processed_from_ms: i64,
    by_provider: Vec<(String, i64)>,
    limit: usize,
) -> Result<Vec<(RefundRecord, i64)>, DbError> {
    let (providers, froms): (Vec<String>, Vec<i64>) = by_provider.into_iter().unzip();
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // Rows another transaction holds are left for a later pass (the claim below skips them
    // too, window closed or not), so two janitors never wait for each other.
    tx.execute(
        &tx.prepare_cached(&format!(
            "UPDATE refunds SET next_check_at = NULL
             WHERE id IN (
                 SELECT id FROM refunds
                 WHERE next_check_at IS NOT NULL AND next_check_at <= $1 AND {WINDOW_CLOSED}
                 FOR UPDATE SKIP LOCKED)"
        ))
        .await?,
        &[&now_ms, &providers, &froms, &watch_processed_from_ms],
    )
    .await?;
    let rows = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {REFUND_COLUMNS}, checks FROM refunds
                 WHERE next_check_at IS NOT NULL AND next_check_at <= $1
                   AND status IN ('pending', 'unknown', 'processed')
                   AND NOT ({WINDOW_CLOSED})
                 ORDER BY next_check_at LIMIT $5
                 FOR UPDATE SKIP LOCKED"
            ))
            .await?,
            &[
                &now_ms,
                &providers,
                &froms,
                &watch_processed_from_ms,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await?;
    let due = rows
        .iter()
        .map(|r| Ok((refund(r)?, r.try_get(16)?)))
        .collect::<Result<Vec<(RefundRecord, i64)>, tokio_postgres::Error>>()?;
    if !due.is_empty() {
        let ids: Vec<&str> = due.iter().map(|(r, _)| r.id.as_str()).collect();
        tx.execute(
            &tx.prepare_cached("UPDATE refunds SET next_check_at = $2 WHERE id = ANY($1::TEXT[])")
                .await?,
            &[&ids, &now_ms.saturating_add(pg.lease_ms())],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(due)
}

/// [`crate::Ledger::backlog`].
pub(crate) async fn backlog(pg: &Pg) -> Result<i64, DbError> {
    Ok(pg
        .client()
        .await?
        .query_one(
            "SELECT COUNT(*) FROM refunds WHERE status IN ('pending', 'unknown')",
            &[],
        )
        .await?
        .try_get(0)?)
}

/// [`crate::Ledger::get`]: the refund and its history read from one snapshot.
pub(crate) async fn get(pg: &Pg, id: &str) -> Result<Option<RefundDetail>, DbError> {
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let Some(refund) = get_refund(&tx, id).await? else {
        return Ok(None);
    };
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT at, source, from_status, to_status, applied, provider_status, detail,
                    plugin_version
                 FROM refund_history WHERE refund_id = $1 ORDER BY seq",
            )
            .await?,
            &[&id],
        )
        .await?;
    let history = rows
        .iter()
        .map(|r| {
            Ok(HistoryEntry {
                at: time(r.try_get(0)?),
                source: Source::parse(r.try_get(1)?).unwrap_or(Source::Api),
                from: r.try_get::<_, Option<&str>>(2)?.and_then(Status::parse),
                to: status(r.try_get(3)?),
                applied: r.try_get(4)?,
                provider_status: r.try_get(5)?,
                detail: r.try_get(6)?,
                plugin_version: r.try_get(7)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    tx.commit().await?;
    Ok(Some(RefundDetail { refund, history }))
}

/// [`crate::Ledger::list`]. Only the filters given are in the statement (one cached statement
/// per combination), so each combination gets a plan that uses its index.
pub(crate) async fn list(pg: &Pg, query: ListQuery) -> Result<Page, DbError> {
    let limit = query.limit.max(1);
    let status = query.status.map(Status::as_str);
    let from = query.created_from.map(|t| t.timestamp_millis());
    let to = query.created_to.map(|t| t.timestamp_millis());
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let filters: [(&str, Option<&(dyn ToSql + Sync)>); 5] = [
        ("provider =", query.provider.as_ref().map(|v| v as _)),
        ("status =", status.as_ref().map(|v| v as _)),
        ("created_at >=", from.as_ref().map(|v| v as _)),
        ("created_at <", to.as_ref().map(|v| v as _)),
        ("id >", query.cursor.as_ref().map(|v| v as _)),
    ];
    let mut conditions = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (condition, value) in filters {
        if let Some(value) = value {
            params.push(value);
            conditions.push(format!("{condition} ${}", params.len()));
        }
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    };
    params.push(&fetch);
    let sql = format!(
        "SELECT {REFUND_COLUMNS} FROM refunds {filter} ORDER BY id LIMIT ${}",
        params.len()
    );
    let client = pg.client().await?;
    let rows = client
        .query(&client.prepare_cached(&sql).await?, &params)
        .await?;
    let mut refunds = rows.iter().map(refund).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if refunds.len() > limit {
        refunds.truncate(limit);
        refunds.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Page {
        refunds,
        next_cursor,
    })
}

/// Serializes, across hosts, the applying of reports that carry `provider_refund_id` with the
/// receiving of webhooks that name it, so that an event that came before its refund's id was
/// known is either matched when it arrives or found held when the id becomes known (see
/// [`apply_report`]). Taken before the refund's row is locked (this module's lock order). The
/// lock is of the id alone, whatever the provider: the rare ids two providers share only wait
/// for each other.
pub(crate) async fn lock_provider_refund_id(
    tx: &Transaction<'_>,
    provider_refund_id: &str,
) -> Result<(), DbError> {
    tx.execute(
        &tx.prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended('provider_refund_id:' || $1::TEXT, 0))",
        )
        .await?,
        &[&provider_refund_id],
    )
    .await?;
    Ok(())
}

/// The move rule and its bookkeeping, inside the caller's transaction (as SQLite's
/// `apply_report`): the refund's row is locked first, so a concurrent report about it waits
/// until this one has committed and then reads the status this one left.
pub(crate) fn apply_report<'a>(
    tx: &'a Transaction<'_>,
    refund_id: &'a str,
    report: &'a Report,
    stamp: &'a Stamp,
    next_check_ms: Option<i64>,
) -> BoxFuture<'a, Result<Applied, DbError>> {
    async move {
        if let Some(prid) = &report.provider_refund_id {
            lock_provider_refund_id(tx, prid).await?;
        }
        let mut before = the_refund_for_update(tx, refund_id).await?;
        if before.status == Status::Pending && report.status == Status::Reversed {
            // Only a processed refund can be reversed: the provider processed it and we missed
            // that report. Record the step it implies, then the reversal, each one forward.
            let (implied, stamp) = implied_processed(report, stamp);
            before = apply_report(tx, refund_id, &implied, &stamp, next_check_ms)
                .await?
                .refund;
        }
        let moved = before.status.can_move_to(report.status);
        // The refund as this report left it, once read (for the event of a move).
        let mut after = None;
        if moved {
            // A refund the janitor no longer watches leaves its queue; one still watched
            // (pending, or processed inside its reversal window) keeps its place in it (a
            // webhook gives no next check) unless the caller sets a new one.
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE refunds SET status = $2,
                        provider_refund_id = COALESCE($3, provider_refund_id),
                        provider_status = COALESCE($4, provider_status),
                        failure = $5, updated_at = $6,
                        next_check_at = CASE WHEN $8 THEN COALESCE($7, next_check_at)
                                        ELSE NULL END,
                        checks = CASE WHEN $7::BIGINT IS NULL THEN checks ELSE 0 END,
                        processed_at = CASE WHEN $2 = 'processed' THEN $6 ELSE processed_at END
                     WHERE id = $1",
                )
                .await?,
                &[
                    &refund_id,
                    &report.status.as_str(),
                    &report.provider_refund_id,
                    &report.provider_status,
                    &report.failure.as_ref().map(to_json),
                    &stamp.now_ms,
                    &next_check_ms,
                    &report.status.is_watched(),
                ],
            )
            .await?;
            // The event carries the refund as this move left it (held webhook events applied
            // below write their own, later, events).
            let moved_to = the_refund(tx, refund_id).await?;
            outbox::record(tx, &moved_to).await?;
            after = Some(moved_to);
        } else if before.provider_refund_id.is_none() && report.provider_refund_id.is_some() {
            // Not a move, but the provider's id is worth keeping (lookups by it are cheaper).
            tx.execute(
                &tx.prepare_cached("UPDATE refunds SET provider_refund_id = $2 WHERE id = $1")
                    .await?,
                &[&refund_id, &report.provider_refund_id],
            )
            .await?;
        }
        add_history(
            tx,
            refund_id,
            stamp,
            Some(before.status),
            report.status,
            moved,
            report.provider_status.as_deref(),
        )
        .await?;
        if !moved {
            warn_backwards(refund_id, before.status, report.status, stamp.source);
        }
        if let (None, Some(prid)) = (&before.provider_refund_id, &report.provider_refund_id) {
            // The provider's id is known from now on: events that named only it and came first
            // (a webhook can beat the answer to the create request) are applied now, in order.
            // The lock on the id (taken above) keeps a webhook naming it from being kept
            // unmatched meanwhile by another host that cannot see the id yet.
            apply_held(tx, &before.provider, prid, refund_id, stamp.now_ms).await?;
            // They may have moved it further.
            after = None;
        }
        let refund = match after {
            Some(refund) => refund,
            None => the_refund(tx, refund_id).await?,
        };
        Ok(Applied { moved, refund })
    }
    .boxed()
}

/// Records the first answer's outcome, unless one is recorded already.
async fn set_first_outcome(
    tx: &Transaction<'_>,
    refund_id: &str,
    outcome: Option<Outcome>,
) -> Result<(), DbError> {
    if let Some(o) = outcome {
        tx.execute(
            &tx.prepare_cached("UPDATE refunds SET outcome = $2 WHERE id = $1 AND outcome IS NULL")
                .await?,
            &[&refund_id, &o.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// Sets when the janitor next looks at a refund that is not final, or processed and still
/// watched (as SQLite's `schedule`); one statement, so it needs no transaction.
async fn schedule(
    c: &impl deadpool_postgres::GenericClient,
    refund_id: &str,
    checks: Option<i64>,
    next_check_ms: i64,
) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached(
            "UPDATE refunds SET next_check_at = $2, checks = COALESCE($3, checks)
             WHERE id = $1
               AND (status IN ('pending', 'unknown')
                    OR (status = 'processed' AND next_check_at IS NOT NULL))",
        )
        .await?,
        &[&refund_id, &next_check_ms, &checks],
    )
    .await?;
    Ok(())
}

/// Appends a history entry.
pub(crate) async fn add_history(
    tx: &Transaction<'_>,
    refund_id: &str,
    stamp: &Stamp,
    from: Option<Status>,
    to: Status,
    applied: bool,
    provider_status: Option<&str>,
) -> Result<(), DbError> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO refund_history (refund_id, at, source, from_status, to_status, applied,
                provider_status, detail, plugin_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?,
        &[
            &refund_id,
            &stamp.now_ms,
            &stamp.source.as_str(),
            &from.map(Status::as_str),
            &to.as_str(),
            &applied,
            &provider_status,
            &stamp.detail,
            &stamp.plugin_version,
        ],
    )
    .await?;
    Ok(())
}

/// One refund.
pub(crate) async fn get_refund(
    c: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<Option<RefundRecord>, DbError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1");
    let row = c.query_opt(&c.prepare_cached(&sql).await?, &[&id]).await?;
    Ok(row.as_ref().map(refund).transpose()?)
}

/// A refund the caller knows is there (an error if it is not, as SQLite's
/// `QueryReturnedNoRows`).
async fn the_refund(tx: &Transaction<'_>, id: &str) -> Result<RefundRecord, DbError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1");
    let row = tx
        .query_one(&tx.prepare_cached(&sql).await?, &[&id])
        .await?;
    Ok(refund(&row)?)
}

/// [`the_refund`], its row locked until the caller's transaction ends.
async fn the_refund_for_update(tx: &Transaction<'_>, id: &str) -> Result<RefundRecord, DbError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 FOR UPDATE");
    let row = tx
        .query_one(&tx.prepare_cached(&sql).await?, &[&id])
        .await?;
    Ok(refund(&row)?)
}

/// A refund from a row whose first columns are [`REFUND_COLUMNS`].
pub(crate) fn refund(r: &Row) -> Result<RefundRecord, tokio_postgres::Error> {
    Ok(RefundRecord {
        id: r.try_get(0)?,
        provider: r.try_get(1)?,
        plugin_version: r.try_get(2)?,
        plugin_sha256: r.try_get(3)?,
        external_refund_id: r.try_get(4)?,
        original_transaction_id: r.try_get(5)?,
        amount: r.try_get(6)?,
        currency: r.try_get(7)?,
        reason: r.try_get(8)?,
        order_id: r.try_get(9)?,
        status: status(r.try_get(10)?),
        provider_refund_id: r.try_get(11)?,
        provider_status: r.try_get(12)?,
        failure: r.try_get::<_, Option<&str>>(13)?.map(from_json),
        created_at: time(r.try_get(14)?),
        updated_at: time(r.try_get(15)?),
    })
}

/// Applies (a step of applying a report: the webhook inbox's events held for want of the
/// provider's id), oldest first, the unmatched events of `provider` that named `provider_refund_id`,
/// now that it is known to be `refund_id`'s, inside the caller's transaction (which holds the
/// refund's row and the id's lock, so no other transaction applies them meanwhile).
pub(crate) async fn apply_held(
    tx: &Transaction<'_>,
    provider: &str,
    provider_refund_id: &str,
    refund_id: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    let held = tx
        .query(
            &tx.prepare_cached(
                "SELECT event_id, event_type, status FROM webhook_inbox
                 WHERE provider = $1 AND provider_refund_id = $2 AND result = 'unmatched'
                 ORDER BY received_at, seq",
            )
            .await?,
            &[&provider, &provider_refund_id],
        )
        .await?;
    for row in held {
        let (event_id, event_type, status): (&str, &str, &str) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (report, stamp) = held_report(provider_refund_id, event_id, event_type, status, now_ms);
        let applied = apply_report(tx, refund_id, &report, &stamp, None).await?;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE webhook_inbox SET result = $3, refund_id = $4
                 WHERE provider = $1 AND event_id = $2",
            )
            .await?,
            &[
                &provider,
                &event_id,
                &applied_word(applied.moved),
                &refund_id,
            ],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Two hosts (two `Ledger`s, each with its own pool) on one database, at once.

    use std::collections::HashSet;

    use crate::{Begin, InboxEvent, Inboxed, Ledger, NewRow, Report, Source, Stamp, Status};

    async fn two_hosts(label: &str) -> (Ledger, Ledger) {
        let (a, b) = crate::testing::pg_hosts(label).await;
        (Ledger::new(a), Ledger::new(b))
    }

    fn row(ext: &str, amount: i64, original: Option<i64>) -> NewRow {
        NewRow {
            id: format!("rf_{}", uuid::Uuid::now_v7().simple()),
            provider: "p".into(),
            plugin_version: "1.0.0".into(),
            plugin_sha256: "abc".into(),
            external_refund_id: ext.into(),
            original_transaction_id: "txn-1".into(),
            amount,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original_amount: original,
            fingerprint: format!("fp-{ext}-{amount}"),
            now_ms: 1_000,
            first_check_ms: 2_000,
        }
    }

    fn report(status: Status, provider_refund_id: &str) -> Report {
        Report {
            status,
            provider_refund_id: Some(provider_refund_id.into()),
            provider_status: None,
            failure: None,
        }
    }

    fn stamp() -> Stamp {
        Stamp::new(Source::Api, "t", 1_500)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_writing_one_key_make_one_refund() {
        let (a, b) = two_hosts("one_key").await;
        for i in 0..20 {
            let key = format!("k{i}");
            // The same request on both hosts: one writes it, the other replays it.
            let (x, y) = tokio::join!(
                a.begin(row(&key, 100, None), None),
                b.begin(row(&key, 100, None), None)
            );
            match (x.unwrap(), y.unwrap()) {
                (Begin::New(n), Begin::Existing(e, None))
                | (Begin::Existing(e, None), Begin::New(n)) => assert_eq!(n.id, e.id),
                other => panic!("one new, one replay: {other:?}"),
            }
            // Other parameters under one key: one writes it, the other conflicts.
            let key = format!("c{i}");
            let (x, y) = tokio::join!(
                a.begin(row(&key, 100, None), None),
                b.begin(row(&key, 200, None), None)
            );
            match (x.unwrap(), y.unwrap()) {
                (Begin::New(n), Begin::Conflict(id)) | (Begin::Conflict(id), Begin::New(n)) => {
                    assert_eq!(n.id, id)
                }
                other => panic!("one new, one conflict: {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_never_refund_more_than_the_original_between_them() {
        let (a, b) = two_hosts("over_refund").await;
        let begin = |l: &Ledger, i: usize| {
            let l = l.clone();
            async move { l.begin(row(&format!("o{i}"), 100, Some(1_000)), None).await }
        };
        let mut tasks = Vec::new();
        for i in 0..30 {
            let l = if i % 2 == 0 { &a } else { &b };
            tasks.push(tokio::spawn(begin(l, i)));
        }
        let (mut new, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Begin::New(_) => new += 1,
                Begin::Refused(r) => {
                    assert_eq!(r.failure.unwrap().code, "amount_exceeded");
                    refused += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            (new, refused),
            (10, 20),
            "exactly the original's worth written"
        );
    }

    /// Waits until `n` sessions of the test database wait for a lock.
    async fn waiting(l: &Ledger, n: i64) {
        let client = l.db.pg().unwrap().client().await.unwrap();
        for _ in 0..1_000 {
            let waiting: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{n} sessions never waited for a lock");
    }

    /// What `task` returned, or a failure if it took too long (a deadlock).
    async fn within<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(20), task)
            .await
            .expect("finished")
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_reporting_on_one_refund_apply_one_after_the_other() {
        let (a, b) = two_hosts("reports").await;
        let Begin::New(r) = a.begin(row("r", 100, None), None).await.unwrap() else {
            panic!()
        };
        // A third session holds the refund while both reports arrive, so that both have
        // started before either is applied.
        let mut holder = a.db.pg().unwrap().client().await.unwrap();
        let hold = holder.transaction().await.unwrap();
        hold.execute("SELECT 1 FROM refunds WHERE id = $1 FOR UPDATE", &[&r.id])
            .await
            .unwrap();
        let no_id = |status| Report {
            provider_refund_id: None,
            ..report(status, "")
        };
        let first = tokio::spawn({
            let (a, id) = (a.clone(), r.id.clone());
            async move {
                a.apply(&id, no_id(Status::Processed), stamp(), None, None)
                    .await
            }
        });
        waiting(&a, 1).await;
        let second = tokio::spawn({
            let (b, id) = (b.clone(), r.id.clone());
            async move {
                b.apply(&id, no_id(Status::Pending), stamp(), None, None)
                    .await
            }
        });
        waiting(&a, 2).await;
        hold.commit().await.unwrap();
        let (x, y) = (within(first).await.unwrap(), within(second).await.unwrap());
        // The second read the status the first left: processed, which pending cannot follow.
        assert!(x.moved && !y.moved, "{x:?} {y:?}");
        let detail = a.get(&r.id).await.unwrap().unwrap();
        assert_eq!(detail.refund.status, Status::Processed, "never moved back");
        let steps: Vec<_> = detail
            .history
            .iter()
            .map(|h| (h.from, h.to, h.applied))
            .collect();
        assert_eq!(
            steps,
            [
                (None, Status::Unknown, true),
                (Some(Status::Unknown), Status::Processed, true),
                (Some(Status::Processed), Status::Pending, false)
            ]
        );
        // One event per status entered, in the order entered.
        let kinds: Vec<String> =
            a.db.pg()
                .unwrap()
                .client()
                .await
                .unwrap()
                .query(
                    "SELECT type FROM events WHERE refund_id = $1 ORDER BY seq",
                    &[&r.id],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
        assert_eq!(kinds, ["refund.unknown", "refund.processed"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_webhook_racing_the_answer_that_names_its_id_is_never_left_unmatched() {
        let (a, b) = two_hosts("held_race").await;
        let Begin::New(r) = a.begin(row("h", 100, None), None).await.unwrap() else {
            panic!()
        };
        let pg = a.db.pg().unwrap();
        // The worst order: the webhook looks its refund up before the answer naming the
        // provider's id has committed, and would keep itself unmatched only after the answer
        // has looked for held events. An event kept unmatched waits here (for `gate`) before
        // its transaction commits.
        pg.client()
            .await
            .unwrap()
            .batch_execute(
                "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.result = 'unmatched' THEN PERFORM pg_advisory_xact_lock(42); END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER gate BEFORE UPDATE ON webhook_inbox
                     FOR EACH ROW EXECUTE FUNCTION gate();",
            )
            .await
            .unwrap();
        let mut gatekeeper = pg.client().await.unwrap();
        let gate = gatekeeper.transaction().await.unwrap();
        gate.execute("SELECT pg_advisory_xact_lock(42)", &[])
            .await
            .unwrap();
        let mut holder = pg.client().await.unwrap();
        let hold = holder.transaction().await.unwrap();
        hold.execute("SELECT 1 FROM refunds WHERE id = $1 FOR UPDATE", &[&r.id])
            .await
            .unwrap();
        // The answer carrying the provider's id, held back by the refund's row.
        let answer = tokio::spawn({
            let (a, id) = (a.clone(), r.id.clone());
            async move {
                a.apply(&id, report(Status::Pending, "pr-h"), stamp(), None, None)
                    .await
            }
        });
        waiting(&a, 1).await;
        // The webhook naming only that id, on the other host.
        let event = InboxEvent {
            provider: "p".into(),
            event_id: "ev-h".into(),
            event_type: "refund.processed".into(),
            body: b"{}".to_vec(),
            report: report(Status::Processed, "pr-h"),
            external_refund_id: None,
            now_ms: 1_400,
            plugin_version: "1.0.0".into(),
        };
        let webhook = tokio::spawn({
            let b = b.clone();
            async move { b.receive_webhook(event).await }
        });
        waiting(&a, 2).await;
        hold.commit().await.unwrap();
        within(answer).await.unwrap();
        gate.commit().await.unwrap();
        let kept = within(webhook).await.unwrap();
        assert!(
            matches!(&kept, Inboxed::Matched(a) if a.moved && a.refund.status == Status::Processed),
            "{kept:?}"
        );
        assert!(b.unmatched_webhooks().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_janitors_never_claim_one_refund_and_a_claim_lasts_its_lease() {
        let (a, b) = two_hosts("janitors").await;
        let mut all = HashSet::new();
        for i in 0..40 {
            let Begin::New(r) = a
                .begin(row(&format!("j{i}"), 100, None), None)
                .await
                .unwrap()
            else {
                panic!()
            };
            all.insert(r.id);
        }
        let drain = |l: Ledger| async move {
            let mut got = Vec::new();
            loop {
                let due = l.due(5_000, 0, 3).await.unwrap();
                if due.is_empty() {
                    return got;
                }
                got.extend(due.into_iter().map(|(r, checks)| {
                    assert_eq!(checks, 0);
                    r.id
                }));
                assert!(got.len() <= 40, "claimed again before its lease ran out");
            }
        };
        let (x, y) = tokio::join!(
            tokio::spawn(drain(a.clone())),
            tokio::spawn(drain(b.clone()))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let claimed: HashSet<_> = x.iter().chain(&y).cloned().collect();
        assert_eq!(x.len() + y.len(), claimed.len(), "no refund claimed twice");
        assert_eq!(claimed, all, "every due refund claimed");

        // Claimed at 5,000: due again once the lease has run out (the claiming host died
        // before it checked them), not before.
        let lease = a.db.pg().unwrap().lease_ms();
        assert!(a.due(5_000 + lease - 1, 0, 100).await.unwrap().is_empty());

        // A refund another transaction holds (a report being applied) is skipped, not waited
        // for.
        let held = x.first().or(y.first()).unwrap().clone();
        let mut holder = a.db.pg().unwrap().client().await.unwrap();
        let hold = holder.transaction().await.unwrap();
        hold.execute("SELECT 1 FROM refunds WHERE id = $1 FOR UPDATE", &[&held])
            .await
            .unwrap();
        let skipping = tokio::spawn({
            let b = b.clone();
            async move { b.due(5_000 + lease, 0, 100).await.unwrap() }
        });
        let skipped = within(skipping).await;
        assert_eq!(skipped.len(), all.len() - 1);
        assert!(skipped.iter().all(|(r, _)| r.id != held));
        hold.rollback().await.unwrap();
        let again = a.due(5_000 + lease, 0, 100).await.unwrap();
        assert_eq!(again.len(), 1, "the one skipped");
        assert_eq!(again[0].0.id, held);

        // Claimed again at 5,000 + lease: due a lease later.
        let later = 5_000 + 2 * lease;
        assert!(a.due(later - 1, 0, 100).await.unwrap().is_empty());
        assert_eq!(a.due(later, 0, 100).await.unwrap().len(), all.len());
        // A host that checked its refund reschedules it: then it is due when it said.
        a.reschedule(&held, 1, 6_000).await.unwrap();
        let due = a.due(6_000, 0, 100).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0.id.as_str(), due[0].1), (held.as_str(), 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovering_unanswered_refunds_counts_them_and_leaves_their_first_check() {
        let (a, _) = two_hosts("recover").await;
        for i in 0..2 {
            a.begin(row(&format!("u{i}"), 100, None), None)
                .await
                .unwrap();
        }
        // Another host may be waiting for their answers: they are not made due at once.
        assert_eq!(a.recover_unanswered(1_500).await.unwrap(), 2);
        assert!(a.due(1_999, 0, 10).await.unwrap().is_empty());
        assert_eq!(a.due(2_000, 0, 10).await.unwrap().len(), 2);
    }
}
