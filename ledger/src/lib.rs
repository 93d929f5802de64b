//! The ledger: refunds, their append-only history, idempotency records, the webhook inbox, the
//! outbound events outbox, reconciliation runs, the redacted log of provider HTTP exchanges,
//! recordings, plugin versions and the plugins' key-value storage, in one database: SQLite for one
//! host (schema in [`crate::db`]'s migrations), PostgreSQL for several ([`crate::postgres`]). The
//! service reaches the database only through this crate, and the same interface (this crate's
//! functions and types) over either backend; the ledger's tests run on both.
//!
//! Every method is one transaction, so checks and writes that belong together (the idempotency
//! lookup and the insert, the remaining-amount check and the insert, a status check and its
//! update) cannot interleave with another request's: on SQLite because one connection serves
//! them in turn, on PostgreSQL by the rows (or advisory locks) each transaction locks.

#![deny(missing_docs)]

/// Runs each test on both backends: `both_backends! { async fn name(l) { ... } }` makes
/// `name::sqlite` (an in-memory database) and `name::postgres` (a new database in the test
/// process's private PostgreSQL cluster), each calling the body with its [`Ledger`].
#[cfg(test)]
macro_rules! both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($l:ident) $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($l: $crate::Ledger) $body

                #[tokio::test]
                async fn sqlite() {
                    body($crate::Ledger::new($crate::db::Database::open(None).unwrap())).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::testing::pg_ledger(stringify!($name)).await).await
                }
            }
        )*
    };
}

/// Like `both_backends!`, for tests of what takes a [`Database`]:
/// `both_databases! { async fn name(db) { ... } }` makes `name::sqlite` (an in-memory database)
/// and `name::postgres` (a new database in the test process's private PostgreSQL cluster).
#[cfg(test)]
macro_rules! both_databases {
    ($($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($db: $crate::db::Database) $body

                #[tokio::test]
                async fn sqlite() {
                    body($crate::db::Database::open(None).unwrap()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::testing::pg_database(stringify!($name)).await).await
                }
            }
        )*
    };
}

pub mod db;
mod error;
pub mod exchange;
mod exchanges;
mod findings;
mod inbox;
mod leases;
mod outbox;
pub mod plugin_versions;
pub mod postgres;
mod reconciliations;
pub mod recordings;
mod stats;
pub mod storage;
pub mod testing;
mod types;
mod writer;

pub use inbox::{InboxEvent, Inboxed};
pub use outbox::{
    Attempt, AttemptRecord, DISCREPANCY_EVENT, DeliveryRecord, DeliveryState, DiscrepancyData,
    DueDelivery, EventBody, EventData, EventPage, EventQuery, EventRecord, Next,
};
pub use reconciliations::{
    Finding, FindingKind, FindingSide, NewReconciliation, ReconciliationPage, ReconciliationQuery,
    ReconciliationRecord, RunOutcome, Trigger,
};
pub use stats::{LedgerStats, StatusCount, Stuck, StuckRefund, Waiting};
pub use types::*;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::{Database, DbError};

/// The ledger over the host database. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    db: Database,
}

/// A refund about to be written, with its idempotency fingerprint.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// Refundry id to give it.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Version of the plugin that will serve it.
    pub plugin_version: String,
    /// Its component's SHA-256.
    pub plugin_sha256: String,
    /// Idempotency key, with `provider`.
    pub external_refund_id: String,
    /// The payment being refunded.
    pub original_transaction_id: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Why.
    pub reason: Option<String>,
    /// Merchant order id.
    pub order_id: Option<String>,
    /// Original payment amount, when the gateway gave it: refunds of it that have not failed
    /// may not add up to more.
    pub original_amount: Option<i64>,
    /// Hash of every request parameter: a replay must match it.
    pub fingerprint: String,
    /// When it was received (ms).
    pub now_ms: i64,
    /// When the janitor may first look at it, should the request never get an answer (ms).
    pub first_check_ms: i64,
}

/// What writing a new refund found.
#[derive(Debug, Clone)]
pub enum Begin {
    /// Written, status `unknown`, nothing sent yet: the caller now asks the provider.
    New(RefundRecord),
    /// Written as `failed` by the pre-check the ledger itself runs (amount above what remains).
    Refused(RefundRecord),
    /// The key exists with the same parameters: its refund and first answer (`None` while the
    /// first request has not been answered).
    Existing(RefundRecord, Option<Outcome>),
    /// The key exists with other parameters.
    Conflict(String),
}

/// A status report about a refund, from the provider (through any source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Reported status.
    pub status: Status,
    /// The provider's refund id, when known.
    pub provider_refund_id: Option<String>,
    /// The provider's own status word.
    pub provider_status: Option<String>,
    /// Why it failed, when it did.
    pub failure: Option<Failure>,
}

/// Who reported, what, and when: the history entry's source, detail and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Where the report came from.
    pub source: Source,
    /// Anything worth keeping with it (webhook event id, error).
    pub detail: Option<String>,
    /// When (ms).
    pub now_ms: i64,
    /// The plugin version that produced the report, when a plugin did.
    pub plugin_version: Option<String>,
}

impl Stamp {
    /// A stamp with a detail.
    pub fn new(source: Source, detail: impl Into<String>, now_ms: i64) -> Self {
        Self {
            source,
            detail: Some(detail.into()),
            now_ms,
            plugin_version: None,
        }
    }

    /// The same stamp, naming the plugin version that produced the report.
    pub fn by(self, plugin_version: &str) -> Self {
        Self {
            plugin_version: Some(plugin_version.to_owned()),
            ..self
        }
    }
}

/// What applying a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Whether the status moved.
    pub moved: bool,
    /// The refund after the report.
    pub refund: RefundRecord,
}

const REFUND_COLUMNS: &str = "id, provider, plugin_version, plugin_sha256, external_refund_id, \
    original_transaction_id, amount, currency, reason, order_id, status, provider_refund_id, \
    provider_status, failure, created_at, updated_at";

impl Ledger {
    /// The ledger in `db` (migrated when it was opened).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Writes a new refund under its idempotency key, before any provider call; or finds the
    /// refund that holds the key. With an original amount, refuses (recorded as failed) a refund
    /// that would take the refunds of that payment not failed (in flight included) above it.
    /// `refusal`, from the caller's own pre-checks, records the refund as failed with it.
    pub async fn begin(&self, row: NewRow, refusal: Option<Failure>) -> Result<Begin, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::begin(pg, row, refusal).await;
        }
        self.db
            .write(move |c| {
                let found: Option<(String, String)> = c
                    .prepare_cached(
                        "SELECT refund_id, fingerprint FROM idempotency_keys
                         WHERE provider = ?1 AND external_refund_id = ?2",
                    )?
                    .query_row(params![row.provider, row.external_refund_id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((refund_id, fingerprint)) = found {
                    if fingerprint != row.fingerprint {
                        return Ok(Begin::Conflict(refund_id));
                    }
                    let refund = get_refund(c, &refund_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                    let outcome: Option<String> = c
                        .prepare_cached("SELECT outcome FROM refunds WHERE id = ?1")?
                        .query_row([&refund_id], |r| r.get(0))?;
                    return Ok(Begin::Existing(refund, outcome.as_deref().and_then(Outcome::parse)));
                }
                let refusal = refusal.clone().or(match row.original_amount {
                    Some(original) => {
                        // Summed here with checked additions, not by SQLite's SUM (which
                        // fails on overflow): a total past i64 is past any original too.
                        let taken = c
                            .prepare_cached(
                                "SELECT amount FROM refunds
                                 WHERE provider = ?1 AND original_transaction_id = ?2
                                   AND status != 'failed'",
                            )?
                            .query_map(params![row.provider, row.original_transaction_id], |r| {
                                r.get::<_, i64>(0)
                            })?
                            .try_fold(Some(0i64), |sum, amount| {
                                let amount = amount?;
                                Ok::<_, rusqlite::Error>(sum.and_then(|s| s.checked_add(amount)))
                            })?;
                        over_original(&row, original, taken)
                    }
                    None => None,
                });
                let (status, outcome, next_check) = match &refusal {
                    Some(_) => (Status::Failed, Some(Outcome::Refused.as_str()), None),
                    None => (Status::Unknown, None, Some(row.first_check_ms)),
                };
                let failure = refusal.as_ref().map(to_json);
                c.prepare_cached(
                    "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256,
                        external_refund_id, original_transaction_id, amount, currency, reason,
                        order_id, status, failure, outcome, fingerprint, checks, next_check_at,
                        created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, ?15, ?16, ?16)",
                )?
                .execute(params![
                    row.id, row.provider, row.plugin_version, row.plugin_sha256,
                    row.external_refund_id, row.original_transaction_id, row.amount,
                    row.currency, row.reason, row.order_id, status.as_str(), failure,
                    outcome, row.fingerprint, next_check, row.now_ms
                ])?;
                c.prepare_cached(
                    "INSERT INTO idempotency_keys (provider, external_refund_id, fingerprint, refund_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    row.provider, row.external_refund_id, row.fingerprint, row.id, row.now_ms
                ])?;
                let stamp = begun(&row, refusal.as_ref());
                add_history(c, &row.id, &stamp, None, status, true, None)?;
                let refund = get_refund(c, &row.id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                outbox::record(c, &refund)?;
                Ok(match refusal {
                    Some(_) => Begin::Refused(refund),
                    None => Begin::New(refund),
                })
            })
            .await
    }

    /// Applies a provider report to a refund: moves it when the move is forward, records it in
    /// the history either way, and sets when the janitor next looks (`next_check_ms`, ignored
    /// once the refund is final). `outcome` sets the first answer if none is recorded yet.
    pub async fn apply(
        &self,
        refund_id: &str,
        report: Report,
        stamp: Stamp,
        outcome: Option<Outcome>,
        next_check_ms: Option<i64>,
    ) -> Result<Applied, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::apply(
                pg,
                refund_id,
                report,
                stamp,
                outcome,
                next_check_ms,
            )
            .await;
        }
        let refund_id = refund_id.to_owned();
        self.db
            .write(move |c| {
                let applied = apply_report(c, &refund_id, &report, &stamp, next_check_ms)?;
                set_first_outcome(c, &refund_id, outcome)?;
                Ok(applied)
            })
            .await
    }

    /// Records an answer that did not settle the refund (outcome unknown, or a check that found
    /// nothing new): sets the first answer if none yet, the janitor's next look, and a history
    /// note.
    pub async fn note(
        &self,
        refund_id: &str,
        outcome: Option<Outcome>,
        stamp: Stamp,
        checks: Option<i64>,
        next_check_ms: i64,
    ) -> Result<(), DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::note(
                pg,
                refund_id,
                outcome,
                stamp,
                checks,
                next_check_ms,
            )
            .await;
        }
        let refund_id = refund_id.to_owned();
        self.db
            .write(move |c| {
                let status: String = c
                    .prepare_cached("SELECT status FROM refunds WHERE id = ?1")?
                    .query_row([&refund_id], |r| r.get(0))?;
                let status = Status::parse(&status).unwrap_or(Status::Unknown);
                set_first_outcome(c, &refund_id, outcome)?;
                schedule(c, &refund_id, checks, next_check_ms)?;
                add_history(c, &refund_id, &stamp, Some(status), status, false, None)?;
                Ok(())
            })
            .await
    }

    /// Makes every refund that was written but never answered (its request died with an earlier
    /// process) due for the janitor at `now_ms`; returns how many there are.
    ///
    /// On PostgreSQL it only counts them and leaves their next check alone: with several hosts
    /// on one database, another host may be waiting for the answer to one of them right now,
    /// and making it due would have a janitor look it up meanwhile. Each unanswered refund has
    /// the first check time it was written with (`NewRow::first_check_ms`), which serves as its
    /// lease: the janitor of any host takes it over then, should its request have died.
    pub async fn recover_unanswered(&self, now_ms: i64) -> Result<usize, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::recover_unanswered(pg).await;
        }
        self.db
            .run(move |c| {
                c.execute(
                    "UPDATE refunds SET next_check_at = ?1
                     WHERE status = 'unknown' AND outcome IS NULL",
                    [now_ms],
                )
            })
            .await
    }

    /// Sets when the janitor next looks at a refund that is not final, after `checks` checks.
    pub async fn reschedule(
        &self,
        refund_id: &str,
        checks: i64,
        next_check_ms: i64,
    ) -> Result<(), DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::reschedule(pg, refund_id, checks, next_check_ms)
                .await;
        }
        let refund_id = refund_id.to_owned();
        self.db
            .run(move |c| schedule(c, &refund_id, Some(checks), next_check_ms))
            .await
    }

    /// Refunds whose check is due at `now_ms`, most overdue first, with how many checks each
    /// had: those not final, and those processed at or after `watch_processed_from_ms` (their
    /// reversal window is open). A processed refund whose window has closed leaves the queue.
    pub async fn due(
        &self,
        now_ms: i64,
        watch_processed_from_ms: i64,
        limit: usize,
    ) -> Result<Vec<(RefundRecord, i64)>, DbError> {
        self.due_by_provider(now_ms, watch_processed_from_ms, Vec::new(), limit)
            .await
    }

    /// [`Ledger::due`], where the providers in `by_provider` watch their processed refunds from
    /// their own time (a plugin that says how long its provider may still reverse a refund),
    /// and every other provider from `watch_processed_from_ms`.
    ///
    /// On PostgreSQL the refunds returned are claimed for this host: their next check moves a
    /// lease ahead (`PgOptions::lease`), so another host's janitor does not get them until the
    /// caller has checked them (which reschedules or settles them) or the lease has run out.
    pub async fn due_by_provider(
        &self,
        now_ms: i64,
        watch_processed_from_ms: i64,
        by_provider: Vec<(String, i64)>,
        limit: usize,
    ) -> Result<Vec<(RefundRecord, i64)>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::due_by_provider(
                pg,
                now_ms,
                watch_processed_from_ms,
                by_provider,
                limit,
            )
            .await;
        }
        self.db
            .run(move |c| {
                // Only rows due now are looked at (a range of the `next_check_at` index), not
                // every processed refund still watched.
                const CLOSED: &str = "UPDATE refunds SET next_check_at = NULL
                     WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
                       AND status = 'processed'
                       AND (processed_at IS NULL OR processed_at < ?2)";
                for (provider, from_ms) in &by_provider {
                    c.prepare_cached(&format!("{CLOSED} AND provider = ?3"))?
                        .execute(params![now_ms, from_ms, provider])?;
                }
                let named: Vec<&str> = by_provider.iter().map(|(p, _)| p.as_str()).collect();
                let named = serde_json::to_string(&named).unwrap_or_else(|_| "[]".into());
                c.prepare_cached(&format!(
                    "{CLOSED} AND provider NOT IN (SELECT value FROM json_each(?3))"
                ))?
                .execute(params![now_ms, watch_processed_from_ms, named])?;
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {REFUND_COLUMNS}, checks FROM refunds
                     WHERE next_check_at IS NOT NULL AND next_check_at <= ?1
                       AND status IN ('pending', 'unknown', 'processed')
                     ORDER BY next_check_at LIMIT ?2"
                ))?;
                stmt.query_map(params![now_ms, limit as i64], |r| {
                    Ok((refund(r)?, r.get(16)?))
                })?
                .collect()
            })
            .await
    }

    /// How many refunds are not final.
    pub async fn backlog(&self) -> Result<i64, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::backlog(pg).await;
        }
        self.db
            .run(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM refunds WHERE status IN ('pending', 'unknown')",
                    [],
                    |r| r.get(0),
                )
            })
            .await
    }

    /// One refund with its history.
    pub async fn get(&self, id: &str) -> Result<Option<RefundDetail>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::get(pg, id).await;
        }
        let id = id.to_owned();
        self.db
            .run(move |c| {
                let Some(refund) = get_refund(c, &id)? else {
                    return Ok(None);
                };
                let mut stmt = c.prepare_cached(
                    "SELECT at, source, from_status, to_status, applied, provider_status, detail,
                        plugin_version
                     FROM refund_history WHERE refund_id = ?1 ORDER BY seq",
                )?;
                let history = stmt
                    .query_map([&id], |r| {
                        Ok(HistoryEntry {
                            at: time(r.get(0)?),
                            source: Source::parse(&r.get::<_, String>(1)?).unwrap_or(Source::Api),
                            from: r
                                .get::<_, Option<String>>(2)?
                                .as_deref()
                                .and_then(Status::parse),
                            to: status(&r.get::<_, String>(3)?),
                            applied: r.get(4)?,
                            provider_status: r.get(5)?,
                            detail: r.get(6)?,
                            plugin_version: r.get(7)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(Some(RefundDetail { refund, history }))
            })
            .await
    }

    /// A page of refunds, oldest first (ids are time-ordered).
    pub async fn list(&self, query: ListQuery) -> Result<Page, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::refunds::list(pg, query).await;
        }
        self.db
            .run(move |c| {
                let limit = query.limit.max(1);
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds
                     WHERE (?1 IS NULL OR provider = ?1) AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR created_at < ?4)
                       AND (?5 IS NULL OR id > ?5)
                     ORDER BY id LIMIT ?6"
                ))?;
                let mut refunds = stmt
                    .query_map(
                        params![
                            query.provider,
                            query.status.map(Status::as_str),
                            query.created_from.map(|t| t.timestamp_millis()),
                            query.created_to.map(|t| t.timestamp_millis()),
                            query.cursor,
                            (limit + 1) as i64
                        ],
                        refund,
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
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
            })
            .await
    }
}

/// The pre-check's refusal of `row` when it would take the refunds of its payment not failed
/// (`taken` of them already, `None` past i64) above the `original` amount.
fn over_original(row: &NewRow, original: i64, taken: Option<i64>) -> Option<Failure> {
    let total = taken.and_then(|t| t.checked_add(row.amount));
    let exceeds = total.is_none_or(|t| t > original);
    let shown = |v: Option<i64>| v.map_or("more than 2^63".to_owned(), |v| v.to_string());
    exceeds.then(|| Failure {
        code: "amount_exceeded".into(),
        message: format!(
            "{} would take refunds of {} to {} of an original {} ({} already refunded or in flight)",
            row.amount,
            row.original_transaction_id,
            shown(total),
            original,
            shown(taken)
        ),
        provider_code: None,
    })
}

/// The stamp of a new refund's first history entry.
fn begun(row: &NewRow, refusal: Option<&Failure>) -> Stamp {
    let detail = match refusal {
        Some(f) => format!("refused before any provider call: {}", f.code),
        None => "received; written before the provider call".to_owned(),
    };
    Stamp::new(Source::Api, detail, row.now_ms)
}

/// The move rule and its bookkeeping, inside the caller's transaction.
fn apply_report(
    c: &Connection,
    refund_id: &str,
    report: &Report,
    stamp: &Stamp,
    next_check_ms: Option<i64>,
) -> Result<Applied, rusqlite::Error> {
    let mut before = get_refund(c, refund_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    if before.status == Status::Pending && report.status == Status::Reversed {
        // Only a processed refund can be reversed: the provider processed it and we missed that
        // report. Record the step it implies, then the reversal, each one forward.
        let (implied, stamp) = implied_processed(report, stamp);
        before = apply_report(c, refund_id, &implied, &stamp, next_check_ms)?.refund;
    }
    let moved = before.status.can_move_to(report.status);
    // The refund as this report left it, once read (for the event of a move).
    let mut after = None;
    if moved {
        // A refund the janitor no longer watches leaves its queue; one still watched (pending,
        // or processed inside its reversal window) keeps its place in it (a webhook gives no
        // next check) unless the caller sets a new one.
        c.prepare_cached(
            "UPDATE refunds SET status = ?2,
                provider_refund_id = COALESCE(?3, provider_refund_id),
                provider_status = COALESCE(?4, provider_status),
                failure = ?5, updated_at = ?6,
                next_check_at = CASE WHEN ?8 THEN COALESCE(?7, next_check_at) ELSE NULL END,
                checks = CASE WHEN ?7 IS NULL THEN checks ELSE 0 END,
                processed_at = CASE WHEN ?2 = 'processed' THEN ?6 ELSE processed_at END
             WHERE id = ?1",
        )?
        .execute(params![
            refund_id,
            report.status.as_str(),
            report.provider_refund_id,
            report.provider_status,
            report.failure.as_ref().map(to_json),
            stamp.now_ms,
            next_check_ms,
            report.status.is_watched()
        ])?;
        // The event carries the refund as this move left it (held webhook events applied
        // below write their own, later, events).
        let moved_to = get_refund(c, refund_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        outbox::record(c, &moved_to)?;
        after = Some(moved_to);
    } else if before.provider_refund_id.is_none() && report.provider_refund_id.is_some() {
        // Not a move, but the provider's id is worth keeping (lookups by it are cheaper).
        c.prepare_cached("UPDATE refunds SET provider_refund_id = ?2 WHERE id = ?1")?
            .execute(params![refund_id, report.provider_refund_id])?;
    }
    add_history(
        c,
        refund_id,
        stamp,
        Some(before.status),
        report.status,
        moved,
        report.provider_status.as_deref(),
    )?;
    if !moved {
        warn_backwards(refund_id, before.status, report.status, stamp.source);
    }
    if let (None, Some(prid)) = (&before.provider_refund_id, &report.provider_refund_id) {
        // The provider's id is known from now on: events that named only it and came first
        // (a webhook can beat the answer to the create request) are applied now, in order.
        inbox::apply_held(c, &before.provider, prid, refund_id, stamp.now_ms)?;
        // They may have moved it further.
        after = None;
    }
    let refund = match after {
        Some(refund) => refund,
        None => get_refund(c, refund_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?,
    };
    Ok(Applied { moved, refund })
}

/// Logs a report recorded, not applied, because it would move the refund backwards (one that
/// repeats the status is not worth a warning).
fn warn_backwards(refund_id: &str, from: Status, to: Status, source: Source) {
    if from != to {
        tracing::warn!(
            refund_id,
            from = from.as_str(),
            to = to.as_str(),
            source = source.as_str(),
            "status report would move the refund backwards: recorded, not applied"
        );
    }
}

/// The processed report (and its stamp) that a reversal of a pending refund implies.
fn implied_processed(reversed: &Report, stamp: &Stamp) -> (Report, Stamp) {
    let implied = Report {
        status: Status::Processed,
        failure: None,
        ..reversed.clone()
    };
    let stamp = Stamp {
        detail: Some("implied by a later reversed report".into()),
        ..stamp.clone()
    };
    (implied, stamp)
}

/// Records the first answer's outcome, unless one is recorded already.
fn set_first_outcome(
    c: &Connection,
    refund_id: &str,
    outcome: Option<Outcome>,
) -> Result<(), rusqlite::Error> {
    if let Some(o) = outcome {
        c.prepare_cached("UPDATE refunds SET outcome = ?2 WHERE id = ?1 AND outcome IS NULL")?
            .execute(params![refund_id, o.as_str()])?;
    }
    Ok(())
}

/// Sets when the janitor next looks at a refund that is not final, or processed and still watched
/// (a final one, or a processed one whose reversal window has closed, is left alone), and its
/// count of checks when given.
fn schedule(
    c: &Connection,
    refund_id: &str,
    checks: Option<i64>,
    next_check_ms: i64,
) -> Result<(), rusqlite::Error> {
    c.prepare_cached(
        "UPDATE refunds SET next_check_at = ?2, checks = COALESCE(?3, checks)
         WHERE id = ?1
           AND (status IN ('pending', 'unknown')
                OR (status = 'processed' AND next_check_at IS NOT NULL))",
    )?
    .execute(params![refund_id, next_check_ms, checks])?;
    Ok(())
}

fn add_history(
    c: &Connection,
    refund_id: &str,
    stamp: &Stamp,
    from: Option<Status>,
    to: Status,
    applied: bool,
    provider_status: Option<&str>,
) -> Result<(), rusqlite::Error> {
    c.prepare_cached(
        "INSERT INTO refund_history (refund_id, at, source, from_status, to_status, applied,
            provider_status, detail, plugin_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        refund_id,
        stamp.now_ms,
        stamp.source.as_str(),
        from.map(Status::as_str),
        to.as_str(),
        applied,
        provider_status,
        stamp.detail,
        stamp.plugin_version
    ])?;
    Ok(())
}

fn get_refund(c: &Connection, id: &str) -> Result<Option<RefundRecord>, rusqlite::Error> {
    c.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ?1"
    ))?
    .query_row([id], refund)
    .optional()
}

fn refund(r: &Row<'_>) -> Result<RefundRecord, rusqlite::Error> {
    Ok(RefundRecord {
        id: r.get(0)?,
        provider: r.get(1)?,
        plugin_version: r.get(2)?,
        plugin_sha256: r.get(3)?,
        external_refund_id: r.get(4)?,
        original_transaction_id: r.get(5)?,
        amount: r.get(6)?,
        currency: r.get(7)?,
        reason: r.get(8)?,
        order_id: r.get(9)?,
        status: status(&r.get::<_, String>(10)?),
        provider_refund_id: r.get(11)?,
        provider_status: r.get(12)?,
        failure: r.get::<_, Option<String>>(13)?.map(|f| from_json(&f)),
        created_at: time(r.get(14)?),
        updated_at: time(r.get(15)?),
    })
}

fn status(word: &str) -> Status {
    // Only this module writes the column, with `Status::as_str`.
    Status::parse(word).unwrap_or(Status::Unknown)
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("ledger values serialise")
}

fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn report(status: Status) -> Report {
        Report {
            status,
            provider_refund_id: Some("pr-1".into()),
            provider_status: Some(status.as_str().to_uppercase()),
            failure: None,
        }
    }

    #[test]
    fn status_only_moves_forward() {
        use Status::*;
        let forward = [
            (Unknown, Pending),
            (Unknown, Processed),
            (Unknown, Failed),
            (Unknown, Reversed),
            (Pending, Processed),
            (Pending, Failed),
            (Processed, Reversed),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    forward.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    both_backends! {
        async fn every_status_entered_writes_one_event_delivered_in_order_per_refund(l) {
            // An endpoint gets the events written after it was first seen.
            assert_eq!(
                l.enqueue_deliveries(vec!["http://e/".into()], 0)
                    .await
                    .unwrap(),
                0
            );
            let (a, b) = (row("a", 100, None), row("b", 100, None));
            l.begin(a.clone(), None).await.unwrap();
            l.begin(b.clone(), None).await.unwrap();
            let stamp = Stamp::new(Source::Api, "t", 1_500);
            l.apply(&a.id, report(Status::Pending), stamp.clone(), None, None)
                .await
                .unwrap();
            // Not a move: no event.
            l.apply(&a.id, report(Status::Pending), stamp.clone(), None, None)
                .await
                .unwrap();
            l.apply(&a.id, report(Status::Processed), stamp.clone(), None, None)
                .await
                .unwrap();
            let kinds = |page: EventPage| page.events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
            let query = |id: &str| EventQuery {
                refund_id: Some(id.into()),
                after_seq: None,
                limit: 50,
            };
            assert_eq!(
                kinds(l.events(query(&a.id)).await.unwrap()),
                ["refund.unknown", "refund.pending", "refund.processed"]
            );
            let page = l.events(query(&a.id)).await.unwrap();
            assert_eq!(
                page.events[2].body.refund().unwrap().status,
                Status::Processed
            );
            assert_eq!(page.events[2].body.kind, page.events[2].kind);

            // SQLite enqueues the four events now; PostgreSQL wrote their deliveries with them.
            let enqueued = if l.db.is_shared() { 0 } else { 4 };
            assert_eq!(
                l.enqueue_deliveries(vec!["http://e/".into()], 2_000)
                    .await
                    .unwrap(),
                enqueued
            );
            assert_eq!(
                l.events(EventQuery { limit: 50, ..EventQuery::default() })
                    .await
                    .unwrap()
                    .events
                    .iter()
                    .map(|e| e.deliveries.len())
                    .sum::<usize>(),
                4
            );
            // Only the head of each refund's queue is due.
            let due = l.due_deliveries(2_000, 10).await.unwrap();
            let heads: Vec<_> = due
                .iter()
                .map(|d| (d.refund_id.clone(), d.attempts))
                .collect();
            assert_eq!(heads, [(a.id.clone(), 0), (b.id.clone(), 0)]);
            let a_first = due[0].event_seq;
            let attempt = |then| Attempt {
                at_ms: 2_000,
                http_status: Some(503),
                error: Some("down".into()),
                latency_ms: 1.0,
                then,
            };
            l.record_attempt(a_first, "http://e/", attempt(Next::RetryAt(5_000)))
                .await
                .unwrap();
            // A's first event waits for its retry, and A's later events wait behind it. B's head
            // is due again on SQLite; on PostgreSQL the first call claimed it for a lease.
            let due = l.due_deliveries(4_999, 10).await.unwrap();
            assert!(due.iter().all(|d| d.refund_id != a.id), "{due:?}");
            assert_eq!(due.len(), usize::from(!l.db.is_shared()));
            let due = l.due_deliveries(5_000, 10).await.unwrap();
            let a_head = due.iter().find(|d| d.refund_id == a.id).unwrap();
            assert_eq!((a_head.event_seq, a_head.attempts), (a_first, 1));
            l.record_attempt(a_first, "http://e/", attempt(Next::Delivered))
                .await
                .unwrap();
            let due = l.due_deliveries(5_000, 10).await.unwrap();
            assert!(
                due.iter()
                    .any(|d| d.refund_id == a.id && d.event_seq > a_first)
            );
            // An abandoned event lets the next one go.
            let second = due.iter().find(|d| d.refund_id == a.id).unwrap().event_seq;
            l.record_attempt(second, "http://e/", attempt(Next::Abandon))
                .await
                .unwrap();
            let due = l.due_deliveries(5_000, 10).await.unwrap();
            assert!(
                due.iter()
                    .any(|d| d.refund_id == a.id && d.event_seq > second)
            );

            let page = l.events(query(&a.id)).await.unwrap();
            let first = &page.events[0].deliveries[0];
            assert_eq!(first.state, DeliveryState::Delivered);
            assert_eq!(first.attempts.len(), 2);
            assert_eq!(first.attempts[0].http_status, Some(503));
            assert_eq!(page.events[1].deliveries[0].state, DeliveryState::Abandoned);
            assert_eq!(page.events[2].deliveries[0].state, DeliveryState::Pending);
            let all = l
                .events(EventQuery {
                    limit: 50,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            let pending = all
                .events
                .iter()
                .flat_map(|e| &e.deliveries)
                .filter(|d| d.state == DeliveryState::Pending)
                .count();
            assert_eq!(pending, 2);
        }

        async fn a_key_is_written_once_and_replays_or_conflicts(l) {
            let Begin::New(first) = l.begin(row("e1", 100, None), None).await.unwrap() else {
                panic!("a new key is written");
            };
            assert_eq!(first.status, Status::Unknown);
            match l.begin(row("e1", 100, None), None).await.unwrap() {
                Begin::Existing(r, None) => assert_eq!(r.id, first.id),
                other => panic!("same parameters replay, got {other:?}"),
            }
            match l.begin(row("e1", 101, None), None).await.unwrap() {
                Begin::Conflict(id) => assert_eq!(id, first.id),
                other => panic!("other parameters conflict, got {other:?}"),
            }
        }

        async fn refunds_not_failed_never_exceed_the_original(l) {
            assert!(matches!(
                l.begin(row("a", 600, Some(1000)), None).await.unwrap(),
                Begin::New(_)
            ));
            let Begin::Refused(r) = l.begin(row("b", 500, Some(1000)), None).await.unwrap() else {
                panic!("600 in flight + 500 > 1000 is refused");
            };
            assert_eq!(r.status, Status::Failed);
            assert_eq!(r.failure.unwrap().code, "amount_exceeded");
            // A failed refund gives its amount back.
            let Begin::New(c) = l.begin(row("c", 400, Some(1000)), None).await.unwrap() else {
                panic!("600 + 400 fits");
            };
            let stamp = Stamp::new(Source::Api, "provider refused", 3_000);
            l.apply(
                &c.id,
                report(Status::Failed),
                stamp,
                Some(Outcome::Refused),
                None,
            )
            .await
            .unwrap();
            assert!(matches!(
                l.begin(row("d", 400, Some(1000)), None).await.unwrap(),
                Begin::New(_)
            ));
        }

        async fn a_sum_past_i64_is_refused_not_wrapped(l) {
            // Written before amounts were bounded at the API, or by a caller that does not bound.
            assert!(matches!(
                l.begin(row("huge", 9_223_372_036_854_775_000, None), None)
                    .await
                    .unwrap(),
                Begin::New(_)
            ));
            let Begin::Refused(r) = l.begin(row("small", 5_000, Some(100)), None).await.unwrap() else {
                panic!("a total past i64 exceeds any original");
            };
            let failure = r.failure.unwrap();
            assert_eq!(failure.code, "amount_exceeded");
            assert!(
                failure.message.contains("more than 2^63"),
                "{}",
                failure.message
            );
            // Two refunds whose sum alone overflows.
            assert!(matches!(
                l.begin(row("huge-2", 9_223_372_036_854_775_000, None), None)
                    .await
                    .unwrap(),
                Begin::New(_)
            ));
            assert!(matches!(
                l.begin(row("small-2", 1, Some(i64::MAX)), None)
                    .await
                    .unwrap(),
                Begin::Refused(_)
            ));
        }

        async fn backwards_reports_are_recorded_not_applied(l) {
            let Begin::New(r) = l.begin(row("e", 100, None), None).await.unwrap() else {
                panic!()
            };
            let apply = |s| {
                let stamp = Stamp::new(Source::Webhook, "event", 5_000);
                l.apply(&r.id, report(s), stamp, None, Some(9_000))
            };
            assert!(apply(Status::Pending).await.unwrap().moved);
            assert!(apply(Status::Processed).await.unwrap().moved);
            let late = apply(Status::Pending).await.unwrap();
            assert!(!late.moved);
            assert_eq!(late.refund.status, Status::Processed);
            let history = l.get(&r.id).await.unwrap().unwrap().history;
            let applied: Vec<_> = history.iter().map(|h| (h.to, h.applied)).collect();
            assert_eq!(
                applied,
                [
                    (Status::Unknown, true),
                    (Status::Pending, true),
                    (Status::Processed, true),
                    (Status::Pending, false)
                ]
            );
            // Processed at 5,000: watched for a reversal while its window is open (from 5,000 on),
            // out of the queue for good once it has closed.
            let due = l.due(i64::MAX, 5_000, 10).await.unwrap();
            assert_eq!(
                due.len(),
                1,
                "a processed refund is watched for its reversal window"
            );
            assert!(l.due(i64::MAX, 5_001, 10).await.unwrap().is_empty());
            assert!(
                l.due(i64::MAX, 0, 10).await.unwrap().is_empty(),
                "left the queue"
            );
        }

        async fn a_provider_may_watch_processed_refunds_for_a_window_of_its_own(l) {
            let stamp = || Stamp::new(Source::Janitor, "check", 5_000);
            let Begin::New(r) = l.begin(row("own-window", 100, None), None).await.unwrap() else {
                panic!()
            };
            l.apply(&r.id, report(Status::Processed), stamp(), None, Some(9_000))
                .await
                .unwrap();
            // Processed at 5,000. The default window has closed (watched from 6,000 on), but this
            // provider's own is open (from 4,000 on).
            let own = vec![(r.provider.clone(), 4_000)];
            let due = l
                .due_by_provider(i64::MAX, 6_000, own.clone(), 10)
                .await
                .unwrap();
            assert_eq!(due.len(), 1, "watched for its provider's own window");
            // Another provider's window does not count for it.
            let other = vec![("another".to_owned(), 4_000)];
            assert!(
                l.due_by_provider(i64::MAX, 6_000, other, 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "the default window applies"
            );
            assert!(
                l.due_by_provider(i64::MAX, 6_000, own, 10)
                    .await
                    .unwrap()
                    .is_empty(),
                "left the queue for good"
            );
        }

        async fn a_reversed_or_failed_refund_leaves_the_janitors_queue(l) {
            let stamp = || Stamp::new(Source::Janitor, "check", 5_000);
            for (ext, end) in [("rv-end", Status::Reversed), ("f-end", Status::Failed)] {
                let Begin::New(r) = l.begin(row(ext, 100, None), None).await.unwrap() else {
                    panic!()
                };
                if end == Status::Reversed {
                    l.apply(&r.id, report(Status::Processed), stamp(), None, Some(9_000))
                        .await
                        .unwrap();
                }
                let a = l
                    .apply(&r.id, report(end), stamp(), None, Some(9_000))
                    .await
                    .unwrap();
                assert!(a.moved);
            }
            assert!(l.due(i64::MAX, 0, 10).await.unwrap().is_empty());
        }

        async fn a_reversal_of_a_pending_refund_records_the_processed_step_it_implies(l) {
            let Begin::New(r) = l.begin(row("rv", 100, None), None).await.unwrap() else {
                panic!()
            };
            let stamp = || Stamp::new(Source::Janitor, "check", 5_000);
            l.apply(&r.id, report(Status::Pending), stamp(), None, Some(9_000))
                .await
                .unwrap();
            let a = l
                .apply(&r.id, report(Status::Reversed), stamp(), None, Some(9_000))
                .await
                .unwrap();
            assert!(a.moved);
            assert_eq!(a.refund.status, Status::Reversed);
            let history = l.get(&r.id).await.unwrap().unwrap().history;
            let steps: Vec<_> = history.iter().map(|h| (h.from, h.to, h.applied)).collect();
            assert_eq!(
                steps[2..],
                [
                    (Some(Status::Pending), Status::Processed, true),
                    (Some(Status::Processed), Status::Reversed, true)
                ]
            );
        }

        async fn a_refund_a_webhook_moves_to_pending_stays_in_the_janitors_queue(l) {
            let Begin::New(r) = l.begin(row("q", 100, None), None).await.unwrap() else {
                panic!()
            };
            let event = InboxEvent {
                provider: "p".into(),
                event_id: "ev-pending".into(),
                event_type: "refund.pending".into(),
                body: b"{}".to_vec(),
                report: report(Status::Pending),
                external_refund_id: Some("q".into()),
                now_ms: 1_500,
                plugin_version: "0.1.0".into(),
            };
            assert!(matches!(l.receive_webhook(event).await.unwrap(), Inboxed::Matched(a) if a.moved));
            let due = l.due(i64::MAX, 0, 10).await.unwrap();
            assert_eq!(due.len(), 1, "still checked by the janitor");
            assert_eq!(due[0].0.id, r.id);
        }

        async fn an_event_that_beat_its_refunds_answer_is_applied_once_the_id_is_known(l) {
            let Begin::New(r) = l.begin(row("early", 100, None), None).await.unwrap() else {
                panic!()
            };
            // The provider's webhook names only its own id, which the ledger does not know yet.
            let early = InboxEvent {
                provider: "p".into(),
                event_id: "ev-early".into(),
                event_type: "refund.processed".into(),
                body: b"{}".to_vec(),
                report: Report {
                    provider_refund_id: Some("pr-early".into()),
                    ..report(Status::Processed)
                },
                external_refund_id: None,
                now_ms: 1_100,
                plugin_version: "0.1.0".into(),
            };
            assert_eq!(l.receive_webhook(early).await.unwrap(), Inboxed::Unmatched);
            // Then the answer to the create request arrives: pending, with that id.
            let answer = Report {
                provider_refund_id: Some("pr-early".into()),
                ..report(Status::Pending)
            };
            let stamp = Stamp::new(Source::Api, "provider answered", 1_200);
            let a = l
                .apply(&r.id, answer, stamp, None, Some(9_000))
                .await
                .unwrap();
            assert_eq!(
                a.refund.status,
                Status::Processed,
                "the held event moved it on"
            );
            assert!(l.unmatched_webhooks().await.unwrap().is_empty());
            let history = l.get(&r.id).await.unwrap().unwrap().history;
            let last = history.last().unwrap();
            assert_eq!(
                (last.source, last.to, last.applied),
                (Source::Webhook, Status::Processed, true)
            );
        }

        async fn history_is_append_only(l) {
            l.begin(row("h", 100, None), None).await.unwrap();
            let err = match l.db.pg() {
                Some(pg) => {
                    let client = pg.client().await.unwrap();
                    let err = client
                        .execute("UPDATE refund_history SET applied = false", &[])
                        .await
                        .unwrap_err();
                    // The server's message is in the error's source, which Display leaves out.
                    format!("{err:?}")
                }
                None => l
                    .db
                    .run(|c| c.execute("UPDATE refund_history SET applied = 0", []))
                    .await
                    .unwrap_err()
                    .to_string(),
            };
            assert!(err.contains("append-only"), "{err}");
        }

        async fn webhooks_are_deduplicated_and_kept_when_unmatched(l) {
            let Begin::New(r) = l.begin(row("w", 100, None), None).await.unwrap() else {
                panic!()
            };
            let event = |id: &str, prid: &str| InboxEvent {
                provider: "p".into(),
                event_id: id.into(),
                event_type: "refund.processed".into(),
                body: b"{}".to_vec(),
                report: Report {
                    provider_refund_id: Some(prid.into()),
                    ..report(Status::Processed)
                },
                external_refund_id: Some("w".into()),
                now_ms: 7_000,
                plugin_version: "0.1.0".into(),
            };
            assert!(
                matches!(l.receive_webhook(event("ev1", "pr-w")).await.unwrap(), Inboxed::Matched(a) if a.moved && a.refund.id == r.id)
            );
            assert_eq!(
                l.receive_webhook(event("ev1", "pr-w")).await.unwrap(),
                Inboxed::Duplicate
            );
            let mut stray = event("ev2", "pr-other");
            stray.external_refund_id = Some("nobody".into());
            assert_eq!(l.receive_webhook(stray).await.unwrap(), Inboxed::Unmatched);
            assert_eq!(
                l.unmatched_webhooks().await.unwrap(),
                [("p".to_owned(), "ev2".to_owned())]
            );
        }

        async fn pages_follow_the_cursor(l) {
            for i in 0..5 {
                l.begin(row(&format!("k{i}"), 100, None), None)
                    .await
                    .unwrap();
            }
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = l
                    .list(ListQuery {
                        limit: 2,
                        cursor,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                seen.extend(page.refunds.iter().map(|r| r.external_refund_id.clone()));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, ["k0", "k1", "k2", "k3", "k4"]);
            let failed = l
                .list(ListQuery {
                    status: Some(Status::Failed),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(failed.refunds.is_empty());
        }
    }
}
