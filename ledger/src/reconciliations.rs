//! Reconciliation runs: the refunds a provider holds, created in a range, compared with the
//! ledger's; each run is kept with what it found, and every finding is also an outbound event
//! (`reconciliation.discrepancy`), written in the same transaction as the run.
//!
//! The comparison itself is the service's (it asks the provider through its plugin); the ledger
//! gives it the refunds to compare with ([`Ledger::refunds_created_between`],
//! [`Ledger::find_refund`]) and keeps the result ([`Ledger::record_reconciliation`]).

pub mod model;

pub use model::*;

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Ledger, REFUND_COLUMNS, RefundRecord, get_refund, inbox, outbox, refund, time};
use crate::db::DbError;
pub use crate::findings::{Finding, FindingKind, FindingSide};
use crate::outbox::DiscrepancyData;

const RUN_COLUMNS: &str = "id, provider, range_from, range_to, trigger, started_at, finished_at, \
    outcome, error, provider_refunds, ledger_refunds";

impl Ledger {
    /// Records a finished run with its findings, and one `reconciliation.discrepancy` event per
    /// finding, in one transaction: a run is never kept without its events, nor an event sent
    /// for a run that was not kept. The events reach endpoints like status events do (through
    /// [`Ledger::enqueue_deliveries`]). A finding's `refund_id` must name a refund the ledger
    /// holds: otherwise nothing is written and the error says so.
    pub async fn record_reconciliation(
        &self,
        run: NewReconciliation,
    ) -> Result<ReconciliationRecord, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::reconciliations::record_reconciliation(pg, run).await;
        }
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let id = format!("rec_{}", uuid::Uuid::now_v7().simple());
                tx.execute(
                    "INSERT INTO reconciliations (id, provider, range_from, range_to, trigger,
                        started_at, finished_at, outcome, error, provider_refunds, ledger_refunds)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        id,
                        run.provider,
                        run.from_ms,
                        run.to_ms,
                        run.trigger.as_str(),
                        run.started_at_ms,
                        run.finished_at_ms,
                        run.outcome().as_str(),
                        run.error,
                        run.provider_refunds,
                        run.ledger_refunds
                    ],
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO reconciliation_findings (reconciliation_id, seq, kind, refund_id,
                        external_refund_id, provider_refund_id, ledger_status, ledger_amount,
                        ledger_currency, provider_status, provider_amount, provider_currency,
                        applied, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?;
                for (seq, finding) in (1i64..).zip(&run.findings) {
                    let (l, p) = (finding.ledger.as_ref(), finding.provider.as_ref());
                    insert.execute(params![
                        id,
                        seq,
                        finding.kind.as_str(),
                        finding.refund_id,
                        finding.external_refund_id,
                        finding.provider_refund_id,
                        l.map(|s| &s.status),
                        l.map(|s| s.amount_minor),
                        l.map(|s| &s.currency),
                        p.map(|s| &s.status),
                        p.map(|s| s.amount_minor),
                        p.map(|s| &s.currency),
                        finding.applied,
                        finding.detail
                    ])?;
                    // The delivery-ordering key: the refund's own id when the ledger holds it,
                    // so an endpoint gets the finding after that refund's earlier status events
                    // (and a status event the run caused after it); else the run's id, which
                    // keeps a run's findings about unknown refunds in order among themselves.
                    let key = finding.refund_id.as_deref().unwrap_or(&id);
                    let data = DiscrepancyData {
                        reconciliation_id: id.clone(),
                        provider: run.provider.clone(),
                        finding: finding.clone(),
                    };
                    outbox::record_discrepancy(&tx, key, time(run.finished_at_ms), data)?;
                }
                drop(insert);
                let record = get_run(&tx, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                tx.commit()?;
                Ok(record)
            })
            .await
    }

    /// A page of runs, newest first, without their findings (counts by kind only).
    pub async fn reconciliations(
        &self,
        query: ReconciliationQuery,
    ) -> Result<ReconciliationPage, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::reconciliations::reconciliations(pg, query).await;
        }
        self.db
            .run(move |c| {
                let limit = query.limit.max(1);
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM reconciliations
                     WHERE (?1 IS NULL OR provider = ?1) AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))?;
                let mut reconciliations = stmt
                    .query_map(
                        params![query.provider, query.cursor, (limit + 1) as i64],
                        run_row,
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if reconciliations.len() > limit {
                    reconciliations.truncate(limit);
                    reconciliations.last().map(|r| r.id.clone())
                } else {
                    None
                };
                for run in &mut reconciliations {
                    run.finding_counts = finding_counts(c, &run.id)?;
                }
                Ok(ReconciliationPage {
                    reconciliations,
                    next_cursor,
                })
            })
            .await
    }

    /// One run with its findings, in the order recorded.
    pub async fn reconciliation(&self, id: &str) -> Result<Option<ReconciliationRecord>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::reconciliations::reconciliation(pg, id).await;
        }
        let id = id.to_owned();
        self.db.run(move |c| get_run(c, &id)).await
    }

    /// The ledger's refunds of `provider` created in `[from_ms, to_ms)`, oldest first: what a
    /// reconciliation compares the provider's list with. The caller bounds the range (every
    /// refund in it is returned).
    pub async fn refunds_created_between(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RefundRecord>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::reconciliations::refunds_created_between(
                pg, provider, from_ms, to_ms,
            )
            .await;
        }
        let provider = provider.to_owned();
        self.db
            .run(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds
                     WHERE provider = ?1 AND created_at >= ?2 AND created_at < ?3
                     ORDER BY created_at, id"
                ))?
                .query_map(params![provider, from_ms, to_ms], refund)?
                .collect()
            })
            .await
    }

    /// The refund of `provider` a provider's record names: by the provider's refund id first,
    /// else by the gateway's refund id (the lookup webhooks use).
    pub async fn find_refund(
        &self,
        provider: &str,
        provider_refund_id: Option<&str>,
        external_refund_id: Option<&str>,
    ) -> Result<Option<RefundRecord>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::reconciliations::find_refund(
                pg,
                provider,
                provider_refund_id,
                external_refund_id,
            )
            .await;
        }
        let provider = provider.to_owned();
        let provider_refund_id = provider_refund_id.map(str::to_owned);
        let external_refund_id = external_refund_id.map(str::to_owned);
        self.db
            .run(move |c| {
                let id = inbox::find_refund_id(
                    c,
                    &provider,
                    provider_refund_id.as_deref(),
                    external_refund_id.as_deref(),
                )?;
                match id {
                    Some(id) => get_refund(c, &id),
                    None => Ok(None),
                }
            })
            .await
    }
}

/// One run with its findings.
fn get_run(c: &Connection, id: &str) -> Result<Option<ReconciliationRecord>, rusqlite::Error> {
    let Some(mut run) = c
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM reconciliations WHERE id = ?1"
        ))?
        .query_row([id], run_row)
        .optional()?
    else {
        return Ok(None);
    };
    run.finding_counts = finding_counts(c, id)?;
    run.findings = c
        .prepare_cached(
            "SELECT kind, refund_id, external_refund_id, provider_refund_id, ledger_status,
                ledger_amount, ledger_currency, provider_status, provider_amount,
                provider_currency, applied, detail
             FROM reconciliation_findings WHERE reconciliation_id = ?1 ORDER BY seq",
        )?
        .query_map([id], finding_row)?
        .collect::<Result<_, _>>()?;
    Ok(Some(run))
}

fn finding_counts(c: &Connection, id: &str) -> Result<BTreeMap<String, i64>, rusqlite::Error> {
    let mut counts: BTreeMap<String, i64> = FindingKind::ALL
        .into_iter()
        .map(|k| (k.as_str().to_owned(), 0))
        .collect();
    let mut stmt = c.prepare_cached(
        "SELECT kind, COUNT(*) FROM reconciliation_findings WHERE reconciliation_id = ?1
         GROUP BY kind",
    )?;
    for row in stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (kind, n) = row?;
        counts.insert(kind, n);
    }
    Ok(counts)
}

fn run_row(r: &Row<'_>) -> Result<ReconciliationRecord, rusqlite::Error> {
    Ok(ReconciliationRecord {
        id: r.get(0)?,
        provider: r.get(1)?,
        from: time(r.get(2)?),
        to: time(r.get(3)?),
        trigger: word(r, 4, Trigger::parse)?,
        started_at: time(r.get(5)?),
        finished_at: time(r.get(6)?),
        outcome: word(r, 7, RunOutcome::parse)?,
        error: r.get(8)?,
        provider_refunds: r.get(9)?,
        ledger_refunds: r.get(10)?,
        finding_counts: BTreeMap::new(),
        findings: Vec::new(),
    })
}

fn finding_row(r: &Row<'_>) -> Result<Finding, rusqlite::Error> {
    Ok(Finding {
        kind: word(r, 0, FindingKind::parse)?,
        refund_id: r.get(1)?,
        external_refund_id: r.get(2)?,
        provider_refund_id: r.get(3)?,
        ledger: side(r.get(4)?, r.get(5)?, r.get(6)?),
        provider: side(r.get(7)?, r.get(8)?, r.get(9)?),
        applied: r.get(10)?,
        detail: r.get(11)?,
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

/// A word column read back with its parser. The columns' CHECK constraints admit only known
/// words, so an unknown one is a corrupt row: an error, not a guess.
fn word<T>(r: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> Result<T, rusqlite::Error> {
    let text: String = r.get(idx)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unknown word {text:?}").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Begin, DISCREPANCY_EVENT, EventData, EventQuery, NewRow, Report, Source, Stamp, Status,
    };

    /// Writes a refund of `provider` received at `at_ms`.
    async fn refund_at(l: &Ledger, provider: &str, ext: &str, at_ms: i64) -> RefundRecord {
        let row = NewRow {
            id: format!("rf_{}", uuid::Uuid::now_v7().simple()),
            provider: provider.into(),
            plugin_version: "1.0.0".into(),
            plugin_sha256: "abc".into(),
            external_refund_id: ext.into(),
            original_transaction_id: "txn-1".into(),
            amount: 100,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original_amount: None,
            fingerprint: format!("fp-{ext}"),
            now_ms: at_ms,
            first_check_ms: at_ms + 1_000,
        };
        match l.begin(row, None).await.unwrap() {
            Begin::New(r) => r,
            other => panic!("a new refund, got {other:?}"),
        }
    }

    /// The bodies of every event as stored, in order.
    async fn stored_event_bodies(l: &Ledger) -> Vec<serde_json::Value> {
        let bodies: Vec<String> = match l.db.pg() {
            Some(pg) => pg
                .client()
                .await
                .unwrap()
                .query("SELECT body FROM events ORDER BY seq", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            None => {
                l.db.run(|c| {
                    c.prepare("SELECT body FROM events ORDER BY seq")?
                        .query_map([], |r| r.get::<_, String>(0))?
                        .collect()
                })
                .await
                .unwrap()
            }
        };
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    fn side(status: &str, amount_minor: i64) -> Option<FindingSide> {
        Some(FindingSide {
            status: status.into(),
            amount_minor,
            currency: "KES".into(),
        })
    }

    fn missing_in_ledger(prid: &str) -> Finding {
        Finding {
            kind: FindingKind::MissingInLedger,
            refund_id: None,
            external_refund_id: None,
            provider_refund_id: Some(prid.into()),
            ledger: None,
            provider: side("processed", 500),
            applied: false,
            detail: "made in the provider's portal".into(),
        }
    }

    fn mismatch(refund: &RefundRecord, kind: FindingKind, applied: bool) -> Finding {
        Finding {
            kind,
            refund_id: Some(refund.id.clone()),
            external_refund_id: Some(refund.external_refund_id.clone()),
            provider_refund_id: Some("pr-1".into()),
            ledger: side(refund.status.as_str(), refund.amount),
            provider: side("processed", refund.amount + 1),
            applied,
            detail: format!("{} differs", kind.as_str()),
        }
    }

    fn run(provider: &str, findings: Vec<Finding>) -> NewReconciliation {
        NewReconciliation {
            provider: provider.into(),
            from_ms: 0,
            to_ms: 10_000,
            trigger: Trigger::Schedule,
            started_at_ms: 20_000,
            finished_at_ms: 21_000,
            provider_refunds: 3,
            ledger_refunds: 2,
            error: None,
            findings,
        }
    }

    both_backends! {
        async fn runs_are_listed_newest_first_by_page_and_provider_and_read_with_their_findings(l) {
            let r = refund_at(&l, "p", "a", 1_000).await;
            let findings = vec![
                mismatch(&r, FindingKind::StatusMismatch, true),
                missing_in_ledger("pr-x"),
                mismatch(&r, FindingKind::AmountMismatch, false),
                missing_in_ledger("pr-y"),
            ];
            let first = l
                .record_reconciliation(run("p", findings.clone()))
                .await
                .unwrap();
            assert!(first.id.starts_with("rec_"), "{}", first.id);
            assert_eq!(first.outcome, RunOutcome::Discrepancies);
            assert_eq!(first.findings, findings);
            let other = l.record_reconciliation(run("q", vec![])).await.unwrap();
            let last = l
                .record_reconciliation(NewReconciliation {
                    trigger: Trigger::Cli,
                    ..run("p", vec![])
                })
                .await
                .unwrap();

            let page = |provider: Option<&str>, cursor: Option<String>| {
                l.reconciliations(ReconciliationQuery {
                    provider: provider.map(str::to_owned),
                    cursor,
                    limit: 2,
                })
            };
            let one = page(None, None).await.unwrap();
            let ids: Vec<_> = one.reconciliations.iter().map(|r| r.id.clone()).collect();
            assert_eq!(ids, [last.id.clone(), other.id.clone()]);
            let two = page(None, one.next_cursor).await.unwrap();
            assert_eq!(two.reconciliations.len(), 1);
            assert_eq!(two.reconciliations[0].id, first.id);
            assert_eq!(two.next_cursor, None);
            // A listed run has its counts but not its findings.
            let listed = &two.reconciliations[0];
            assert!(listed.findings.is_empty());
            assert_eq!(listed.finding_counts["missing_in_ledger"], 2);
            assert_eq!(listed.finding_counts["status_mismatch"], 1);
            assert_eq!(listed.finding_counts["amount_mismatch"], 1);
            assert_eq!(listed.finding_counts["currency_mismatch"], 0);
            assert_eq!(listed.finding_counts.len(), FindingKind::ALL.len());

            let of_p = page(Some("p"), None).await.unwrap();
            let ids: Vec<_> = of_p.reconciliations.iter().map(|r| r.id.clone()).collect();
            assert_eq!(ids, [last.id.clone(), first.id.clone()]);
            assert_eq!(of_p.reconciliations[0].trigger, Trigger::Cli);

            let got = l.reconciliation(&first.id).await.unwrap().unwrap();
            assert_eq!(got, first);
            assert_eq!(got.findings, findings, "findings in the order recorded");
            assert_eq!(got.from, time(0));
            assert_eq!(got.to, time(10_000));
            assert_eq!(got.finished_at, time(21_000));
            assert_eq!((got.provider_refunds, got.ledger_refunds), (3, 2));
            assert_eq!(l.reconciliation("rec_nobody").await.unwrap(), None);
        }
    }

    both_backends! {
        async fn a_run_without_findings_matched_and_one_with_an_error_failed(l) {
            let matched = l.record_reconciliation(run("p", vec![])).await.unwrap();
            assert_eq!(matched.outcome, RunOutcome::Matched);
            assert_eq!(matched.error, None);
            let failed = NewReconciliation {
                error: Some("the provider's list timed out".into()),
                findings: vec![missing_in_ledger("pr-partial")],
                ..run("p", vec![])
            };
            let failed = l.record_reconciliation(failed).await.unwrap();
            assert_eq!(failed.outcome, RunOutcome::Error);
            assert_eq!(
                failed.error.as_deref(),
                Some("the provider's list timed out")
            );
            let read = l.reconciliation(&failed.id).await.unwrap().unwrap();
            assert_eq!(read.outcome, RunOutcome::Error);
            assert_eq!(read.findings.len(), 1);
        }
    }

    both_backends! {
        async fn each_finding_is_one_event_delivered_in_order_with_its_refunds_events(l) {
            l.enqueue_deliveries(vec!["http://e/".into()], 0)
                .await
                .unwrap();
            let r = refund_at(&l, "p", "a", 1_000).await;
            let rec = l
                .record_reconciliation(run(
                    "p",
                    vec![
                        mismatch(&r, FindingKind::StatusMismatch, false),
                        missing_in_ledger("pr-x"),
                        missing_in_ledger("pr-y"),
                    ],
                ))
                .await
                .unwrap();
            // The refund's own event, then one per finding (enqueued now on SQLite, written
            // with the events on PostgreSQL).
            let enqueued = if l.db.is_shared() { 0 } else { 4 };
            assert_eq!(
                l.enqueue_deliveries(vec!["http://e/".into()], 2_000)
                    .await
                    .unwrap(),
                enqueued
            );
            let all = l
                .events(EventQuery {
                    limit: 50,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            let kinds: Vec<_> = all.events.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(
                kinds,
                [
                    "refund.unknown",
                    DISCREPANCY_EVENT,
                    DISCREPANCY_EVENT,
                    DISCREPANCY_EVENT
                ]
            );
            // Bodies of both kinds parse; each event got a delivery.
            assert_eq!(all.events[0].body.refund().unwrap().id, r.id);
            let keys: Vec<_> = all.events.iter().map(|e| e.refund_id.as_str()).collect();
            assert_eq!(keys, [r.id.as_str(), &r.id, &rec.id, &rec.id]);
            for (event, finding) in all.events[1..].iter().zip(&rec.findings) {
                let EventData::Discrepancy(data) = &event.body.data else {
                    panic!("a discrepancy body, got {:?}", event.body.data);
                };
                assert_eq!(data.reconciliation_id, rec.id);
                assert_eq!(data.provider, "p");
                assert_eq!(&data.finding, finding);
                assert_eq!(event.body.created_at, time(21_000));
                assert_eq!(event.deliveries.len(), 1);
            }
            // The finding about the refund waits behind the refund's own event; the run's own
            // queue delivers its findings one after the other.
            let due = l.due_deliveries(21_000, 10).await.unwrap();
            let heads: Vec<_> = due.iter().map(|d| d.event_seq).collect();
            assert_eq!(heads, [all.events[0].seq, all.events[2].seq]);
        }
    }

    both_backends! {
        async fn a_run_that_cannot_be_written_leaves_no_run_and_no_event(l) {
            let r = refund_at(&l, "p", "a", 1_000).await;
            let mut dangling = mismatch(&r, FindingKind::CurrencyMismatch, false);
            dangling.refund_id = Some("rf_nobody".into());
            let findings = vec![missing_in_ledger("pr-x"), dangling];
            assert!(l.record_reconciliation(run("p", findings)).await.is_err());
            let page = l
                .reconciliations(ReconciliationQuery {
                    limit: 10,
                    ..ReconciliationQuery::default()
                })
                .await
                .unwrap();
            assert!(page.reconciliations.is_empty());
            let events = l
                .events(EventQuery {
                    limit: 50,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(events.events.len(), 1, "only the refund's own event");
        }
    }

    both_backends! {
        async fn event_bodies_keep_their_json_shapes(l) {
            let r = refund_at(&l, "p", "a", 1_000).await;
            let rec = l
                .record_reconciliation(run("p", vec![missing_in_ledger("pr-x")]))
                .await
                .unwrap();
            let stored = stored_event_bodies(&l).await;
            // A status event's data is the refund object itself, as before.
            assert_eq!(stored[0]["data"], serde_json::to_value(&r).unwrap());
            assert_eq!(stored[0]["type"], "refund.unknown");
            let discrepancy = &stored[1];
            let keys: Vec<_> = discrepancy.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, ["created_at", "data", "id", "type"]);
            assert!(discrepancy["id"].as_str().unwrap().starts_with("evt_"));
            assert_eq!(discrepancy["type"], "reconciliation.discrepancy");
            assert_eq!(discrepancy["created_at"], "1970-01-01T00:00:21Z");
            assert_eq!(
                discrepancy["data"],
                serde_json::json!({
                    "reconciliation_id": rec.id,
                    "provider": "p",
                    "finding": {
                        "kind": "missing_in_ledger",
                        "refund_id": null,
                        "external_refund_id": null,
                        "provider_refund_id": "pr-x",
                        "ledger": null,
                        "provider": {"status": "processed", "amount_minor": 500, "currency": "KES"},
                        "applied": false,
                        "detail": "made in the provider's portal"
                    }
                })
            );
        }
    }

    both_backends! {
        async fn refunds_created_between_is_half_open_and_of_one_provider(l) {
            refund_at(&l, "p", "before", 999).await;
            let from = refund_at(&l, "p", "from", 1_000).await;
            let inside = refund_at(&l, "p", "inside", 1_500).await;
            refund_at(&l, "p", "to", 2_000).await;
            refund_at(&l, "q", "other", 1_200).await;
            let got = l.refunds_created_between("p", 1_000, 2_000).await.unwrap();
            let ids: Vec<_> = got.iter().map(|r| r.id.clone()).collect();
            assert_eq!(ids, [from.id, inside.id]);
            assert!(
                l.refunds_created_between("p", 2_001, 3_000)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    both_backends! {
        async fn find_refund_by_the_providers_id_first_else_the_gateways(l) {
            let a = refund_at(&l, "p", "ext-a", 1_000).await;
            let b = refund_at(&l, "p", "ext-b", 1_000).await;
            let report = Report {
                status: Status::Pending,
                provider_refund_id: Some("pr-a".into()),
                provider_status: Some("PENDING".into()),
                failure: None,
            };
            let stamp = Stamp::new(Source::Api, "answered", 1_100);
            l.apply(&a.id, report, stamp, None, None).await.unwrap();
            let find = |prid: Option<&'static str>, ext: Option<&'static str>| {
                let l = l.clone();
                async move { l.find_refund("p", prid, ext).await.unwrap().map(|r| r.id) }
            };
            assert_eq!(find(Some("pr-a"), None).await, Some(a.id.clone()));
            assert_eq!(find(Some("pr-a"), Some("ext-b")).await, Some(a.id.clone()));
            assert_eq!(find(Some("pr-unknown"), Some("ext-b")).await, Some(b.id));
            assert_eq!(find(None, Some("ext-a")).await, Some(a.id));
            assert_eq!(find(None, None).await, None);
            assert_eq!(l.find_refund("q", Some("pr-a"), None).await.unwrap(), None);
        }
    }

    both_backends! {
        async fn a_reconciliation_applies_through_the_forward_only_rules(l) {
            let r = refund_at(&l, "p", "a", 1_000).await;
            let report = |status: Status| Report {
                status,
                provider_refund_id: Some("pr-a".into()),
                provider_status: None,
                failure: None,
            };
            let stamp = || Stamp::new(Source::Reconcile, "rec_1", 5_000);
            let forward = l
                .apply(&r.id, report(Status::Processed), stamp(), None, None)
                .await
                .unwrap();
            assert!(forward.moved);
            let backward = l
                .apply(&r.id, report(Status::Pending), stamp(), None, None)
                .await
                .unwrap();
            assert!(!backward.moved);
            let history = l.get(&r.id).await.unwrap().unwrap().history;
            let last: Vec<_> = history[1..].iter().map(|h| (h.source, h.applied)).collect();
            assert_eq!(
                last,
                [(Source::Reconcile, true), (Source::Reconcile, false)]
            );
        }
    }

    #[test]
    fn words_round_trip() {
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for o in RunOutcome::ALL {
            assert_eq!(RunOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    /// PostgreSQL: writes a refund of `provider` created at `at_ms` straight into the tables
    /// (the refund core's port brings `begin`), with its idempotency key.
    async fn pg_refund(
        l: &Ledger,
        provider: &str,
        ext: &str,
        at_ms: i64,
        provider_refund_id: Option<&str>,
    ) -> RefundRecord {
        let id = format!("rf_{}", uuid::Uuid::now_v7().simple());
        let client = l.db.pg().unwrap().client().await.unwrap();
        client
            .execute(
                "INSERT INTO refunds (id, provider, plugin_version, plugin_sha256,
                    external_refund_id, original_transaction_id, amount, currency, status,
                    provider_refund_id, fingerprint, created_at, updated_at)
                 VALUES ($1, $2, '1.0.0', 'abc', $3, 'txn-1', 100, 'KES', 'unknown', $4, 'fp',
                    $5, $5)",
                &[&id, &provider, &ext, &provider_refund_id, &at_ms],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO idempotency_keys (provider, external_refund_id, fingerprint,
                    refund_id, created_at) VALUES ($1, $2, 'fp', $3, $4)",
                &[&provider, &ext, &id, &at_ms],
            )
            .await
            .unwrap();
        l.find_refund(provider, None, Some(ext))
            .await
            .unwrap()
            .expect("the refund just written")
    }

    /// PostgreSQL: one number of a query.
    async fn pg_count(l: &Ledger, sql: &str) -> i64 {
        let client = l.db.pg().unwrap().client().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_runs_keep_their_findings_about_refunds_and_their_events() {
        let l = crate::testing::pg_ledger("recon_pg_runs").await;
        l.db.pg()
            .unwrap()
            .client()
            .await
            .unwrap()
            .execute(
                "INSERT INTO event_endpoints (endpoint, after_seq, added_at)
                 VALUES ('http://e/', 0, 0)",
                &[],
            )
            .await
            .unwrap();
        let r = pg_refund(&l, "p", "a", 1_000, None).await;
        let findings = vec![
            mismatch(&r, FindingKind::StatusMismatch, true),
            missing_in_ledger("pr-x"),
            mismatch(&r, FindingKind::AmountMismatch, false),
        ];
        let first = l
            .record_reconciliation(run("p", findings.clone()))
            .await
            .unwrap();
        assert!(first.id.starts_with("rec_"), "{}", first.id);
        assert_eq!(first.outcome, RunOutcome::Discrepancies);
        assert_eq!(first.findings, findings);
        assert_eq!(first.finding_counts["status_mismatch"], 1);
        assert_eq!(first.finding_counts["currency_mismatch"], 0);
        assert_eq!(first.finding_counts.len(), FindingKind::ALL.len());
        assert_eq!(l.reconciliation(&first.id).await.unwrap().unwrap(), first);
        let other = l.record_reconciliation(run("q", vec![])).await.unwrap();
        let page = l
            .reconciliations(ReconciliationQuery {
                limit: 1,
                ..ReconciliationQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.reconciliations[0].id, other.id);
        assert_eq!(
            page.reconciliations[0].finding_counts["missing_in_ledger"],
            0
        );
        let next = l
            .reconciliations(ReconciliationQuery {
                provider: Some("p".into()),
                cursor: page.next_cursor,
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!(next.reconciliations.len(), 1);
        assert_eq!(next.reconciliations[0].finding_counts, first.finding_counts);
        assert!(next.reconciliations[0].findings.is_empty());
        assert_eq!(next.next_cursor, None);

        // One event per finding, keyed by its refund (else the run), each with its delivery.
        let client = l.db.pg().unwrap().client().await.unwrap();
        let events: Vec<(String, String)> = client
            .query("SELECT refund_id, type FROM events ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let keys: Vec<_> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [r.id.as_str(), &first.id, &r.id]);
        assert!(events.iter().all(|(_, kind)| kind == DISCREPANCY_EVENT));
        assert_eq!(
            pg_count(&l, "SELECT COUNT(*) FROM event_deliveries").await,
            3
        );
        let bodies = stored_event_bodies(&l).await;
        assert_eq!(bodies[1]["created_at"], "1970-01-01T00:00:21Z");
        assert_eq!(bodies[1]["data"]["reconciliation_id"], first.id.as_str());
        assert_eq!(
            bodies[1]["data"]["finding"],
            serde_json::to_value(&findings[1]).unwrap()
        );

        // A finding about a refund the ledger lacks: nothing written.
        let mut dangling = mismatch(&r, FindingKind::CurrencyMismatch, false);
        dangling.refund_id = Some("rf_nobody".into());
        let refused = run("p", vec![missing_in_ledger("pr-y"), dangling]);
        assert!(l.record_reconciliation(refused).await.is_err());
        assert_eq!(
            pg_count(&l, "SELECT COUNT(*) FROM reconciliations").await,
            2
        );
        assert_eq!(pg_count(&l, "SELECT COUNT(*) FROM events").await, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_refunds_are_found_by_creation_and_by_either_id() {
        let l = crate::testing::pg_ledger("recon_pg_find").await;
        pg_refund(&l, "p", "before", 999, None).await;
        let from = pg_refund(&l, "p", "from", 1_000, Some("pr-a")).await;
        let inside = pg_refund(&l, "p", "inside", 1_500, None).await;
        pg_refund(&l, "p", "to", 2_000, None).await;
        pg_refund(&l, "q", "other", 1_200, Some("pr-a")).await;
        let got = l.refunds_created_between("p", 1_000, 2_000).await.unwrap();
        assert_eq!(got, [from.clone(), inside.clone()]);
        assert_eq!(got[0].provider_refund_id.as_deref(), Some("pr-a"));
        assert_eq!(got[0].created_at, time(1_000));
        let find = |prid: Option<&'static str>, ext: Option<&'static str>| {
            let l = l.clone();
            async move { l.find_refund("p", prid, ext).await.unwrap().map(|r| r.id) }
        };
        assert_eq!(find(Some("pr-a"), None).await, Some(from.id.clone()));
        assert_eq!(
            find(Some("pr-a"), Some("inside")).await,
            Some(from.id.clone())
        );
        assert_eq!(
            find(Some("pr-x"), Some("inside")).await,
            Some(inside.id.clone())
        );
        assert_eq!(find(None, Some("inside")).await, Some(inside.id));
        assert_eq!(find(Some("pr-x"), None).await, None);
        assert_eq!(find(None, None).await, None);
    }

    /// Two hosts: while one moves a refund (its row locked, its status event written and not
    /// yet committed), a run with a finding about that refund waits, so the finding's event
    /// becomes visible after the move's, as their sequence numbers say.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_finding_waits_for_its_refunds_move() {
        let (l, mover) = crate::testing::pg_hosts("recon_pg_wait").await;
        let l = Ledger::new(l);
        let r = pg_refund(&l, "p", "a", 1_000, None).await;
        let mut client = mover.pg().unwrap().client().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "UPDATE refunds SET status = 'pending', updated_at = 2000 WHERE id = $1",
            &[&r.id],
        )
        .await
        .unwrap();
        let moved: i64 = tx
            .query_one(
                "INSERT INTO events (id, refund_id, type, created_at, body)
                 VALUES ('evt_move', $1, 'refund.pending', 2000, '{}') RETURNING seq",
                &[&r.id],
            )
            .await
            .unwrap()
            .get(0);
        let recording = tokio::spawn({
            let l = l.clone();
            let finding = mismatch(&r, FindingKind::StatusMismatch, false);
            async move { l.record_reconciliation(run("p", vec![finding])).await }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let waiting = pg_count(
                &l,
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
            if waiting > 0 {
                break;
            }
            assert!(
                !recording.is_finished(),
                "the run did not wait for the move"
            );
            assert!(std::time::Instant::now() < deadline, "the run never waited");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!recording.is_finished());
        tx.commit().await.unwrap();
        let rec = recording.await.unwrap().unwrap();
        let found: i64 = client
            .query_one(
                "SELECT seq FROM events WHERE refund_id = $1 AND type = $2",
                &[&r.id, &DISCREPANCY_EVENT],
            )
            .await
            .unwrap()
            .get(0);
        assert!(found > moved, "the finding's event follows the move's");
        assert_eq!(rec.findings.len(), 1);
    }
}
