//! Reconciliation runs on PostgreSQL ([`crate::reconciliations`]).
//!
//! A run is inserted with its findings and their `reconciliation.discrepancy` events in one
//! transaction. Before its events are written, the refunds its findings name are locked
//! (`FOR SHARE`, in id order): a transaction moving one of them (which locks it for update and
//! writes its status event) finishes first, or waits for the run, so a refund's events take
//! sequence numbers in the order they commit, the order its deliveries follow.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

use super::Pg;
use crate::error::DbError;
use crate::findings::{Finding, FindingKind, FindingSide};
use crate::outbox::model::DiscrepancyData;
use crate::reconciliations::model::{
    NewReconciliation, ReconciliationPage, ReconciliationQuery, ReconciliationRecord, RunOutcome,
    Trigger,
};
use crate::{REFUND_COLUMNS, RefundRecord, time};

const RUN_COLUMNS: &str = "id, provider, range_from, range_to, trigger, started_at, finished_at, \
    outcome, error, provider_refunds, ledger_refunds";

/// See [`crate::Ledger::record_reconciliation`].
pub(crate) async fn record_reconciliation(
    pg: &Pg,
    run: NewReconciliation,
) -> Result<ReconciliationRecord, DbError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let mut named: Vec<&str> = run
        .findings
        .iter()
        .filter_map(|f| f.refund_id.as_deref())
        .collect();
    named.sort_unstable();
    named.dedup();
    if !named.is_empty() {
        // A name the ledger lacks is refused by the findings' foreign key below.
        tx.query(
            "SELECT id FROM refunds WHERE id = ANY($1::TEXT[]) ORDER BY id FOR SHARE",
            &[&named],
        )
        .await?;
    }
    let id = format!("rec_{}", uuid::Uuid::now_v7().simple());
    tx.execute(
        "INSERT INTO reconciliations (id, provider, range_from, range_to, trigger,
            started_at, finished_at, outcome, error, provider_refunds, ledger_refunds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &id,
            &run.provider,
            &run.from_ms,
            &run.to_ms,
            &run.trigger.as_str(),
            &run.started_at_ms,
            &run.finished_at_ms,
            &run.outcome().as_str(),
            &run.error,
            &run.provider_refunds,
            &run.ledger_refunds,
        ],
    )
    .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO reconciliation_findings (reconciliation_id, seq, kind, refund_id,
                external_refund_id, provider_refund_id, ledger_status, ledger_amount,
                ledger_currency, provider_status, provider_amount, provider_currency,
                applied, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .await?;
    for (seq, finding) in (1i64..).zip(&run.findings) {
        let (l, p) = (finding.ledger.as_ref(), finding.provider.as_ref());
        tx.execute(
            &insert,
            &[
                &id,
                &seq,
                &finding.kind.as_str(),
                &finding.refund_id,
                &finding.external_refund_id,
                &finding.provider_refund_id,
                &l.map(|s| s.status.as_str()),
                &l.map(|s| s.amount_minor),
                &l.map(|s| s.currency.as_str()),
                &p.map(|s| s.status.as_str()),
                &p.map(|s| s.amount_minor),
                &p.map(|s| s.currency.as_str()),
                &finding.applied,
                &finding.detail,
            ],
        )
        .await?;
        // The delivery-ordering key, as on SQLite: the refund's id, else the run's.
        let key = finding.refund_id.as_deref().unwrap_or(&id);
        let data = DiscrepancyData {
            reconciliation_id: id.clone(),
            provider: run.provider.clone(),
            finding: finding.clone(),
        };
        super::outbox::record_discrepancy(&tx, key, time(run.finished_at_ms), data).await?;
    }
    let record = get_run(&tx, &id)
        .await?
        .ok_or_else(|| DbError::Task(format!("run {id} vanished while being recorded")))?;
    tx.commit().await?;
    Ok(record)
}

/// See [`crate::Ledger::reconciliations`].
pub(crate) async fn reconciliations(
    pg: &Pg,
    query: ReconciliationQuery,
) -> Result<ReconciliationPage, DbError> {
    let client = pg.client().await?;
    let limit = query.limit.max(1);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM reconciliations
             WHERE ($1::TEXT IS NULL OR provider = $1) AND ($2::TEXT IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        ))
        .await?;
    let mut reconciliations = client
        .query(
            &stmt,
            &[&query.provider, &query.cursor, &((limit + 1) as i64)],
        )
        .await?
        .iter()
        .map(run_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if reconciliations.len() > limit {
        reconciliations.truncate(limit);
        reconciliations.last().map(|r| r.id.clone())
    } else {
        None
    };
    let ids: Vec<&str> = reconciliations.iter().map(|r| r.id.as_str()).collect();
    let mut counts = finding_counts(&client, &ids).await?;
    for run in &mut reconciliations {
        run.finding_counts = counts.remove(&run.id).unwrap_or_else(zero_counts);
    }
    Ok(ReconciliationPage {
        reconciliations,
        next_cursor,
    })
}

/// See [`crate::Ledger::reconciliation`].
pub(crate) async fn reconciliation(
    pg: &Pg,
    id: &str,
) -> Result<Option<ReconciliationRecord>, DbError> {
    get_run(&pg.client().await?, id).await
}

/// See [`crate::Ledger::refunds_created_between`].
pub(crate) async fn refunds_created_between(
    pg: &Pg,
    provider: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RefundRecord>, DbError> {
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds
             WHERE provider = $1 AND created_at >= $2 AND created_at < $3
             ORDER BY created_at, id"
        ))
        .await?;
    client
        .query(&stmt, &[&provider, &from_ms, &to_ms])
        .await?
        .iter()
        .map(refund_row)
        .collect()
}

/// See [`crate::Ledger::find_refund`]: one statement, the provider's refund id first, else the
/// gateway's (through its idempotency key).
pub(crate) async fn find_refund(
    pg: &Pg,
    provider: &str,
    provider_refund_id: Option<&str>,
    external_refund_id: Option<&str>,
) -> Result<Option<RefundRecord>, DbError> {
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds
             WHERE id = COALESCE(
                 (SELECT id FROM refunds WHERE provider = $1 AND provider_refund_id = $2::TEXT
                  ORDER BY id LIMIT 1),
                 (SELECT refund_id FROM idempotency_keys
                  WHERE provider = $1 AND external_refund_id = $3::TEXT))"
        ))
        .await?;
    client
        .query_opt(
            &stmt,
            &[&provider, &provider_refund_id, &external_refund_id],
        )
        .await?
        .as_ref()
        .map(refund_row)
        .transpose()
}

/// One run with its findings.
async fn get_run(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<ReconciliationRecord>, DbError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM reconciliations WHERE id = $1"
        ))
        .await?;
    let Some(row) = c.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    let mut run = run_row(&row)?;
    run.finding_counts = finding_counts(c, &[id])
        .await?
        .remove(id)
        .unwrap_or_else(zero_counts);
    let stmt = c
        .prepare_cached(
            "SELECT kind, refund_id, external_refund_id, provider_refund_id, ledger_status,
                ledger_amount, ledger_currency, provider_status, provider_amount,
                provider_currency, applied, detail
             FROM reconciliation_findings WHERE reconciliation_id = $1 ORDER BY seq",
        )
        .await?;
    run.findings = c
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(finding_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(run))
}

/// Every kind at zero.
fn zero_counts() -> BTreeMap<String, i64> {
    FindingKind::ALL
        .into_iter()
        .map(|k| (k.as_str().to_owned(), 0))
        .collect()
}

/// The findings of each of the runs `ids` counted by kind (every kind, zero included); a run
/// without findings is absent.
async fn finding_counts(
    c: &impl GenericClient,
    ids: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, i64>>, DbError> {
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(counts);
    }
    let stmt = c
        .prepare_cached(
            "SELECT reconciliation_id, kind, COUNT(*) FROM reconciliation_findings
             WHERE reconciliation_id = ANY($1::TEXT[])
             GROUP BY reconciliation_id, kind",
        )
        .await?;
    for row in c.query(&stmt, &[&ids]).await? {
        let (run, kind, n): (String, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        counts
            .entry(run)
            .or_insert_with(zero_counts)
            .insert(kind, n);
    }
    Ok(counts)
}

fn run_row(r: &Row) -> Result<ReconciliationRecord, DbError> {
    Ok(ReconciliationRecord {
        id: r.try_get(0)?,
        provider: r.try_get(1)?,
        from: time(r.try_get(2)?),
        to: time(r.try_get(3)?),
        trigger: r.try_get::<_, Word<Trigger>>(4)?.0,
        started_at: time(r.try_get(5)?),
        finished_at: time(r.try_get(6)?),
        outcome: r.try_get::<_, Word<RunOutcome>>(7)?.0,
        error: r.try_get(8)?,
        provider_refunds: r.try_get(9)?,
        ledger_refunds: r.try_get(10)?,
        finding_counts: BTreeMap::new(),
        findings: Vec::new(),
    })
}

fn finding_row(r: &Row) -> Result<Finding, DbError> {
    Ok(Finding {
        kind: r.try_get::<_, Word<FindingKind>>(0)?.0,
        refund_id: r.try_get(1)?,
        external_refund_id: r.try_get(2)?,
        provider_refund_id: r.try_get(3)?,
        ledger: side(r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
        provider: side(r.try_get(7)?, r.try_get(8)?, r.try_get(9)?),
        applied: r.try_get(10)?,
        detail: r.try_get(11)?,
    })
}

/// A side is written with its three columns together, or not at all.
fn side(
    status: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
) -> Option<FindingSide> {
    match (status, amount, currency) {
        (Some(status), Some(amount_minor), Some(currency)) => Some(FindingSide {
            status,
            amount_minor,
            currency,
        }),
        _ => None,
    }
}

/// A refund read with [`REFUND_COLUMNS`].
fn refund_row(r: &Row) -> Result<RefundRecord, DbError> {
    Ok(super::refunds::refund(r)?)
}

/// A stored word column and its parser.
trait Stored: Sized {
    fn parse(word: &str) -> Option<Self>;
}

impl Stored for Trigger {
    fn parse(word: &str) -> Option<Self> {
        Trigger::parse(word)
    }
}

impl Stored for RunOutcome {
    fn parse(word: &str) -> Option<Self> {
        RunOutcome::parse(word)
    }
}

impl Stored for FindingKind {
    fn parse(word: &str) -> Option<Self> {
        FindingKind::parse(word)
    }
}

/// A word column read back with its parser. The columns' CHECK constraints admit only known
/// words, so an unknown one is a corrupt row: a conversion error, not a guess (as on SQLite).
struct Word<T>(T);

impl<'a, T: Stored> FromSql<'a> for Word<T> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        T::parse(text)
            .map(Word)
            .ok_or_else(|| format!("unknown word {text:?}").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}
