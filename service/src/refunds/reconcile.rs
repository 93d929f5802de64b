//! Reconciliation (对账): the refunds a provider holds, from its own list, against the ledger.
//!
//! A run pages through the provider's `list-refunds` over a range (split into pieces no longer
//! than the plugin's longest list range), matches each refund the provider holds to the ledger's
//! (by provider refund id, else by the gateway's refund id), and records what differs:
//! - a refund the provider holds that the ledger does not (made in the provider's portal, or
//!   lost): `missing_in_ledger`;
//! - a refund of the range the ledger holds that the provider does not list, and does not find
//!   when asked for it by id: `missing_at_provider` (a failed refund the provider never gave an
//!   id is left out: it was refused before the provider made anything);
//! - a status that differs: `status_mismatch`, applied to the ledger when the move is forward
//!   (history source `reconcile`), reported only otherwise;
//! - an amount or currency that differs: `amount_mismatch`, `currency_mismatch`, reported only.
//!
//! Each run and its findings are kept in the ledger, with one outbound
//! `reconciliation.discrepancy` event per finding, and counted in the metrics.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::create::report_of;
use super::service::RefundService;
use crate::config::ReconcileSchedule;
use crate::registry::PluginVersion;
use refundry_ledger::{
    Finding, FindingKind, FindingSide, NewReconciliation, ReconciliationRecord, RefundRecord,
    Source, Stamp, Status, Trigger,
};
use refundry_runtime::ContractVersion;
use refundry_runtime::bindings::types::{
    Refund, RefundError, RefundLookup, RefusalKind, TimeRange,
};

const DAY_MS: i64 = 86_400_000;

/// The longest range one run covers, in days: a year (the longest schedule window), so that a
/// run asks the provider for a bounded number of lists and answers in seconds.
pub const MAX_RUN_DAYS: i64 = 366;

/// The most pages one piece of a range may take: a provider whose cursor never ends would
/// otherwise hold a run forever.
const MAX_PAGES: usize = 10_000;

/// Why a reconciliation could not run (nothing is recorded for it).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// No such provider is configured.
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// The range is empty, reversed, or longer than one run covers.
    #[error("bad range [{from}, {to}) (ms): {reason}")]
    BadRange {
        /// The start asked for (ms).
        from: i64,
        /// The end asked for (ms).
        to: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider's plugin cannot list refunds (built against contract 0.1, or a provider
    /// without a list).
    #[error("provider {provider} cannot list refunds: {reason}")]
    Unsupported {
        /// Provider id.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The provider could not be asked (unreachable, refused the list, plugin failure).
    #[error("provider {provider} could not list its refunds: {reason}")]
    Provider {
        /// Provider id.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(String),
}

impl RefundService {
    /// Reconciles `provider` over the refunds created in `[from_ms, to_ms)`, records the run and
    /// its findings, and answers the record.
    pub async fn reconcile(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
        trigger: Trigger,
    ) -> Result<ReconciliationRecord, ReconcileError> {
        let bad = |reason: String| ReconcileError::BadRange {
            from: from_ms,
            to: to_ms,
            reason,
        };
        if from_ms >= to_ms {
            return Err(bad("`from` must be before `to`".into()));
        }
        if to_ms.saturating_sub(from_ms) > MAX_RUN_DAYS * DAY_MS {
            return Err(bad(format!(
                "one run covers at most {MAX_RUN_DAYS} days; run several"
            )));
        }
        let plugin = self
            .inner
            .providers
            .provider(provider)
            .map_err(|_| ReconcileError::UnknownProvider(provider.to_owned()))?;
        let unsupported = |reason: String| ReconcileError::Unsupported {
            provider: provider.to_owned(),
            reason,
        };
        if let Some(c) = plugin.logic.component()
            && c.contract() < ContractVersion::V0_2_0
        {
            return Err(unsupported(format!(
                "its plugin is built against contract {}, which has no list-refunds",
                c.contract()
            )));
        }
        let started_at_ms = self.now_ms();
        let ledger_err = |e: refundry_ledger::db::DbError| ReconcileError::Ledger(e.to_string());
        let listed = match self.list_all(&plugin, provider, from_ms, to_ms).await {
            Ok(listed) => listed,
            // A provider that could not be asked is a run that failed: kept, so that the runs
            // show the gap (a plugin that cannot list is no run at all).
            Err(e @ ReconcileError::Provider { .. }) => {
                let failed = NewReconciliation {
                    provider: provider.to_owned(),
                    from_ms,
                    to_ms,
                    trigger,
                    started_at_ms,
                    finished_at_ms: self.now_ms(),
                    provider_refunds: 0,
                    ledger_refunds: 0,
                    error: Some(e.to_string()),
                    findings: Vec::new(),
                };
                self.inner
                    .ledger
                    .record_reconciliation(failed)
                    .await
                    .map_err(ledger_err)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let in_range = self
            .inner
            .ledger
            .refunds_created_between(provider, from_ms, to_ms)
            .await
            .map_err(ledger_err)?;
        // The ledger's refunds of the range answer most matches without a query; only a refund
        // the provider dates outside the ledger's range is looked for in the whole ledger.
        let by_provider_id: HashMap<&str, &RefundRecord> = in_range
            .iter()
            .filter_map(|r| r.provider_refund_id.as_deref().map(|id| (id, r)))
            .collect();
        let by_external_id: HashMap<&str, &RefundRecord> = in_range
            .iter()
            .map(|r| (r.external_refund_id.as_str(), r))
            .collect();
        let mut findings = Vec::new();
        let mut matched: HashSet<String> = HashSet::new();
        for theirs in &listed {
            let known = by_provider_id
                .get(theirs.provider_refund_id.as_str())
                .or_else(|| {
                    let ext = theirs.external_refund_id.as_deref()?;
                    by_external_id.get(ext)
                })
                .map(|r| (*r).clone());
            let ours = match known {
                Some(ours) => Some(ours),
                None => self
                    .inner
                    .ledger
                    .find_refund(
                        provider,
                        Some(&theirs.provider_refund_id),
                        theirs.external_refund_id.as_deref(),
                    )
                    .await
                    .map_err(ledger_err)?,
            };
            match ours {
                None => findings.push(missing_in_ledger(theirs)),
                Some(ours) => {
                    matched.insert(ours.id.clone());
                    findings.extend(self.compare(&plugin, &ours, theirs).await?);
                }
            }
        }
        for ours in in_range.iter().filter(|r| !matched.contains(&r.id)) {
            // Refused before the provider made anything: nothing to find there.
            if ours.status == Status::Failed && ours.provider_refund_id.is_none() {
                continue;
            }
            // The provider may date a refund a second apart from the ledger, across the range's
            // edge: ask for it by id before calling it missing.
            match self.look_up(&plugin, ours).await {
                Some(theirs) => findings.extend(self.compare(&plugin, ours, &theirs).await?),
                None => findings.push(missing_at_provider(ours)),
            }
        }
        for f in &findings {
            self.inner.providers.metrics().discrepancy(provider, f.kind);
        }
        let run = NewReconciliation {
            provider: provider.to_owned(),
            from_ms,
            to_ms,
            trigger,
            started_at_ms,
            finished_at_ms: self.now_ms(),
            provider_refunds: listed.len() as i64,
            ledger_refunds: in_range.len() as i64,
            error: None,
            findings,
        };
        let record = self
            .inner
            .ledger
            .record_reconciliation(run)
            .await
            .map_err(ledger_err)?;
        tracing::info!(
            provider, reconciliation_id = %record.id, outcome = record.outcome.as_str(),
            provider_refunds = record.provider_refunds, ledger_refunds = record.ledger_refunds,
            "reconciliation finished"
        );
        Ok(record)
    }

    /// Every refund the provider lists over `[from_ms, to_ms)`, piece by piece and page by page.
    async fn list_all(
        &self,
        plugin: &PluginVersion,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Refund>, ReconcileError> {
        let failed = |reason: String| ReconcileError::Provider {
            provider: provider.to_owned(),
            reason,
        };
        let longest = plugin.logic.info().max_list_range_days;
        let mut refunds = Vec::new();
        for range in pieces(from_ms, to_ms, longest) {
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                if pages > MAX_PAGES {
                    return Err(failed(format!("more than {MAX_PAGES} pages in one range")));
                }
                let answer = plugin
                    .logic
                    .list_refunds(&range, cursor.as_deref(), None)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let page = match answer {
                    Ok(page) => page,
                    Err(RefundError::Refused(r)) if r.kind == RefusalKind::Unsupported => {
                        return Err(ReconcileError::Unsupported {
                            provider: provider.to_owned(),
                            reason: r.message,
                        });
                    }
                    Err(e) => {
                        return Err(failed(crate::view::RefundErrorView::from(&e).message));
                    }
                };
                refunds.extend(page.refunds);
                match page.next_cursor {
                    Some(next) if Some(&next) == cursor.as_ref() => {
                        return Err(failed(format!("the cursor {next:?} repeats")));
                    }
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(refunds)
    }

    /// The provider's view of a refund of the ledger, when it has one.
    async fn look_up(&self, plugin: &PluginVersion, ours: &RefundRecord) -> Option<Refund> {
        if !plugin.logic.info().status_queries {
            return None;
        }
        let lookup = match &ours.provider_refund_id {
            Some(id) => RefundLookup::ProviderRefundId(id.clone()),
            None => RefundLookup::ExternalRefundId(ours.external_refund_id.clone()),
        };
        let original = Some(ours.original_transaction_id.as_str());
        match plugin.logic.get_refund(&lookup, original, None).await {
            Ok(Ok(found)) => Some(found),
            _ => None,
        }
    }

    /// What differs between the ledger's refund and the provider's; a forward status move is
    /// applied to the ledger.
    async fn compare(
        &self,
        plugin: &PluginVersion,
        ours: &RefundRecord,
        theirs: &Refund,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let mut findings = Vec::new();
        let base = |kind: FindingKind, detail: String| Finding {
            kind,
            refund_id: Some(ours.id.clone()),
            external_refund_id: Some(ours.external_refund_id.clone()),
            provider_refund_id: Some(theirs.provider_refund_id.clone()),
            ledger: Some(ledger_side(ours)),
            provider: Some(provider_side(theirs)),
            applied: false,
            detail,
        };
        if theirs.amount.amount_minor != ours.amount {
            findings.push(base(
                FindingKind::AmountMismatch,
                format!(
                    "the ledger has {} minor units, the provider {}",
                    ours.amount, theirs.amount.amount_minor
                ),
            ));
        }
        if theirs.amount.currency != ours.currency {
            findings.push(base(
                FindingKind::CurrencyMismatch,
                format!(
                    "the ledger has {}, the provider {}",
                    ours.currency, theirs.amount.currency
                ),
            ));
        }
        let status = Status::from(theirs.status);
        if status != ours.status {
            let forward = ours.status.can_move_to(status);
            let mut finding = base(
                FindingKind::StatusMismatch,
                format!(
                    "the ledger has {}, the provider {} ({}){}",
                    ours.status.as_str(),
                    status.as_str(),
                    theirs.provider_status,
                    if forward {
                        ": applied"
                    } else {
                        ": not applied (a refund never moves backwards)"
                    }
                ),
            );
            if forward {
                let stamp = Stamp::new(Source::Reconcile, "provider's list", self.now_ms())
                    .by(plugin.version());
                let next = self.next_check(self.now_ms(), 0);
                let applied = self
                    .inner
                    .ledger
                    .apply(&ours.id, report_of(theirs), stamp, None, Some(next))
                    .await
                    .map_err(|e| ReconcileError::Ledger(e.to_string()))?;
                finding.applied = applied.moved;
            }
            findings.push(finding);
        }
        Ok(findings)
    }

    /// Starts the scheduled reconciliation of every provider in the background: each provider
    /// every `schedule.interval` after its last scheduled run (or after this start, when it never
    /// had one), over the last `schedule.window_days`. Runs until the handle is aborted.
    pub fn spawn_reconciliation(&self, schedule: ReconcileSchedule) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let started = service.now_ms();
            let interval_ms = i64::try_from(schedule.interval.as_millis()).unwrap_or(i64::MAX);
            // Looking once a minute (or more often for a shorter interval) keeps a run within a
            // minute of its time without a timer per provider.
            let tick = schedule.interval.min(Duration::from_secs(60));
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let providers: Vec<String> = service
                    .inner
                    .providers
                    .providers()
                    .map(|(id, _)| id.to_owned())
                    .collect();
                for provider in providers {
                    let last = service
                        .last_scheduled_run(&provider)
                        .await
                        .unwrap_or(started);
                    let now = service.now_ms();
                    if now < last.saturating_add(interval_ms) {
                        continue;
                    }
                    // Hosts sharing a ledger take turns: the one that claims the run does it.
                    let lease = format!("reconcile:{provider}");
                    match service.inner.ledger.claim(&lease, now).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!(provider, error = %e, "reconciliation not claimed");
                            continue;
                        }
                    }
                    let from = now.saturating_sub(i64::from(schedule.window_days) * DAY_MS);
                    match service
                        .reconcile(&provider, from, now, Trigger::Schedule)
                        .await
                    {
                        Ok(_) => {}
                        Err(e @ ReconcileError::Unsupported { .. }) => {
                            tracing::info!(provider, error = %e, "reconciliation skipped")
                        }
                        Err(e) => tracing::error!(provider, error = %e, "reconciliation failed"),
                    }
                    let next = service.now_ms().saturating_add(interval_ms);
                    if let Err(e) = service.inner.ledger.release(&lease, next).await {
                        tracing::error!(provider, error = %e, "reconciliation lease not released");
                    }
                }
            }
        })
    }

    /// When `provider`'s last scheduled run started (ms), if it had one.
    async fn last_scheduled_run(&self, provider: &str) -> Option<i64> {
        let page = self
            .inner
            .ledger
            .reconciliations(refundry_ledger::ReconciliationQuery {
                provider: Some(provider.to_owned()),
                cursor: None,
                limit: 50,
            })
            .await
            .ok()?;
        page.reconciliations
            .iter()
            .find(|r| r.trigger == Trigger::Schedule)
            .map(|r| r.started_at.timestamp_millis())
    }
}

/// `[from_ms, to_ms)` cut into consecutive pieces that a provider listing at most `longest_days`
/// at once accepts (the whole range when it sets no limit). Providers take whole seconds, so a
/// plugin widens a piece to the seconds around it (up to a second more at each end): each piece is
/// one second shorter than the limit, which keeps the widened piece inside it.
pub fn pieces(from_ms: i64, to_ms: i64, longest_days: Option<u32>) -> Vec<TimeRange> {
    let step = longest_days.filter(|d| *d > 0).map_or(i64::MAX, |d| {
        i64::from(d).saturating_mul(DAY_MS).saturating_sub(1000)
    });
    let mut out = Vec::new();
    let mut from = from_ms;
    while from < to_ms {
        let to = from.saturating_add(step).min(to_ms);
        out.push(TimeRange { from, to });
        from = to;
    }
    out
}

fn ledger_side(r: &RefundRecord) -> FindingSide {
    FindingSide {
        status: r.status.as_str().to_owned(),
        amount_minor: r.amount,
        currency: r.currency.clone(),
    }
}

fn provider_side(r: &Refund) -> FindingSide {
    FindingSide {
        status: Status::from(r.status).as_str().to_owned(),
        amount_minor: r.amount.amount_minor,
        currency: r.amount.currency.clone(),
    }
}

fn missing_in_ledger(theirs: &Refund) -> Finding {
    Finding {
        kind: FindingKind::MissingInLedger,
        refund_id: None,
        external_refund_id: theirs.external_refund_id.clone(),
        provider_refund_id: Some(theirs.provider_refund_id.clone()),
        ledger: None,
        provider: Some(provider_side(theirs)),
        applied: false,
        detail: "the provider holds a refund the ledger does not (made in its portal, or lost)"
            .into(),
    }
}

fn missing_at_provider(ours: &RefundRecord) -> Finding {
    Finding {
        kind: FindingKind::MissingAtProvider,
        refund_id: Some(ours.id.clone()),
        external_refund_id: Some(ours.external_refund_id.clone()),
        provider_refund_id: ours.provider_refund_id.clone(),
        ledger: Some(ledger_side(ours)),
        provider: None,
        applied: false,
        detail: "the ledger holds a refund the provider neither lists nor finds".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range a plugin asks its provider for: `range` widened to whole seconds.
    fn widened_seconds(range: &TimeRange) -> i64 {
        let from = range.from.div_euclid(1000);
        let to = range.to.div_euclid(1000) + i64::from(range.to.rem_euclid(1000) != 0);
        to - from
    }

    #[test]
    fn a_range_longer_than_the_providers_longest_is_split() {
        let day = DAY_MS;
        let p = pieces(0, 70 * day, Some(31));
        let step = 31 * day - 1000;
        assert_eq!(
            p.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(),
            vec![(0, step), (step, 2 * step), (2 * step, 70 * day)]
        );
        assert_eq!(pieces(5, 10, Some(31)).len(), 1);
        assert_eq!(pieces(0, 400 * day, None).len(), 1);
        assert!(pieces(10, 10, Some(31)).is_empty());
        // Pieces cover the range exactly, without gap or overlap.
        let p = pieces(7, 100 * day + 3, Some(7));
        assert_eq!(p.first().unwrap().from, 7);
        assert_eq!(p.last().unwrap().to, 100 * day + 3);
        assert!(p.windows(2).all(|w| w[0].to == w[1].from));
        assert!(p.iter().all(|r| r.to - r.from <= 7 * day));
    }

    #[test]
    fn every_piece_stays_inside_the_limit_once_widened_to_whole_seconds() {
        // A range starting and ending off the second, as a scheduled run's `now` does.
        for (from, to) in [
            (123, 95 * DAY_MS + 456),
            (999, 62 * DAY_MS + 1),
            (1, 31 * DAY_MS),
        ] {
            let p = pieces(from, to, Some(31));
            assert!(
                p.iter().all(|r| widened_seconds(r) <= 31 * 86_400),
                "{:?}",
                p.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>()
            );
            assert_eq!((p[0].from, p.last().unwrap().to), (from, to));
        }
    }
}
