//! The janitor: a background task that drives every refund left `pending` or `unknown` to a final
//! status, with or without webhooks. It asks the plugin (`get-refund`, by the provider's id when
//! known, else by the gateway's), backs off per refund (`[janitor] backoff_ms`), and re-sends
//! the identical create request for an `unknown` refund the provider has never seen (both
//! providers replay on the same external id, so a re-send cannot refund twice). A `processed`
//! refund stays watched, on the same back-off, for `[janitor] reversal_window_days` after it was
//! processed (or the reversal window its plugin gives), so that a reversal is found even when its
//! webhook is lost.

use std::sync::Arc;

use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::create::{Classified, Sender, classify, report_of, request_of};
use super::service::RefundService;
use super::types::ServiceError;
use refundry_ledger::{Outcome, RefundRecord, Source, Stamp, Status};
use refundry_runtime::bindings::types::{RefundError, RefundLookup, RefusalKind};

const DAY_MS: i64 = 86_400_000;

impl RefundService {
    /// Starts the janitor in the background; it runs until the handle is aborted.
    pub fn spawn_janitor(&self) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(service.inner.janitor.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.janitor_pass().await {
                    tracing::error!(error = %e, "janitor pass failed");
                }
            }
        })
    }

    /// Checks every refund whose check is due now (at most `concurrency` at once); returns how
    /// many it checked.
    pub async fn janitor_pass(&self) -> Result<usize, ServiceError> {
        let inner = &self.inner;
        let limit = inner.janitor.concurrency * 4;
        let now = self.now_ms();
        let window = i64::try_from(inner.janitor.reversal_window.as_millis()).unwrap_or(i64::MAX);
        // A plugin that says how long its provider may still reverse a refund (contract 0.2)
        // sets that provider's window; the others keep `[janitor] reversal_window_days`.
        let own: Vec<(String, i64)> = inner
            .providers
            .providers()
            .filter_map(|(id, plugin)| {
                let days = plugin.logic.info().reversal_window_days?;
                Some((id.to_owned(), now.saturating_sub(i64::from(days) * DAY_MS)))
            })
            .collect();
        let due = inner
            .ledger
            .due_by_provider(now, now.saturating_sub(window), own, limit)
            .await
            .map_err(|e| ServiceError(e.to_string()))?;
        let due: Vec<_> = {
            let in_flight = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            due.into_iter()
                .filter(|(r, _)| !in_flight.contains(&r.id))
                .collect()
        };
        let count = due.len();
        let permits = Arc::new(tokio::sync::Semaphore::new(inner.janitor.concurrency));
        let mut tasks = JoinSet::new();
        for (refund, checks) in due {
            let service = self.clone();
            let permits = permits.clone();
            let span =
                tracing::info_span!("refund", refund_id = %refund.id, provider = %refund.provider);
            tasks.spawn(
                async move {
                    let _permit = permits.acquire_owned().await;
                    if let Err(e) = service.check(&refund, checks).await {
                        tracing::error!(error = %e, "janitor check failed");
                    }
                }
                .instrument(span),
            );
        }
        while tasks.join_next().await.is_some() {}
        Ok(count)
    }

    /// One check of one refund.
    async fn check(
        &self,
        refund: &RefundRecord,
        checks: i64,
    ) -> Result<(), refundry_ledger::db::DbError> {
        let ledger = &self.inner.ledger;
        let now = self.now_ms();
        let next = self.next_check(now, checks + 1);
        // The version that created the refund while it is loaded, else the active one.
        let Some(plugin) = self.plugin_for(refund) else {
            let detail = format!(
                "not checked: no provider {:?} is configured",
                refund.provider
            );
            let stamp = Stamp::new(Source::Janitor, detail, now);
            return ledger
                .note(&refund.id, None, stamp, Some(checks + 1), next)
                .await;
        };
        // A check that leaves the refund as it was: noted in its history, next check backed off.
        let unsettled = |detail: String| {
            let stamp = Stamp::new(Source::Janitor, detail, now).by(plugin.version());
            ledger.note(&refund.id, None, stamp, Some(checks + 1), next)
        };
        let lookup = match &refund.provider_refund_id {
            Some(id) => RefundLookup::ProviderRefundId(id.clone()),
            None => RefundLookup::ExternalRefundId(refund.external_refund_id.clone()),
        };
        // A provider that only reports by callback has no status to ask for: its refunds are
        // settled by webhooks and by reconciliation against its list.
        if !plugin.logic.info().status_queries {
            return unsettled("no status queries at this provider".into()).await;
        }
        let exchanges = self.operation_exchanges(&plugin);
        let original = Some(refund.original_transaction_id.as_str());
        let result = plugin
            .logic
            .get_refund(&lookup, original, exchanges.observer())
            .await;
        self.keep_exchanges(refund, "get-refund", &exchanges)
            .await?;
        match result {
            Ok(Ok(found)) => {
                let report = report_of(&found);
                if report.status == refund.status {
                    return ledger.reschedule(&refund.id, checks + 1, next).await;
                }
                let outcome = Outcome::of_answer(report.status);
                ledger
                    .apply(
                        &refund.id,
                        report,
                        Stamp::new(Source::Janitor, "status check", now).by(plugin.version()),
                        Some(outcome),
                        Some(next),
                    )
                    .await
                    .map(drop)
            }
            Ok(Err(RefundError::Refused(r)))
                if r.kind == RefusalKind::NotFound && refund.status == Status::Unknown =>
            {
                tracing::info!("the provider has no such refund: re-sending the identical request");
                self.resend(&plugin, refund, checks + 1).await
            }
            Ok(Err(e)) => {
                let detail = format!(
                    "check failed: {}",
                    crate::providers::describe_refund_error(&e)
                );
                tracing::warn!(%detail, "janitor check did not settle the refund");
                unsettled(detail).await
            }
            Err(e) => {
                let detail = format!("check failed: {e}");
                unsettled(detail).await
            }
        }
    }

    /// Re-sends the recorded create request of an `unknown` refund the provider has not seen, as
    /// the refund's check number `checks`.
    async fn resend(
        &self,
        plugin: &crate::registry::PluginVersion,
        refund: &RefundRecord,
        checks: i64,
    ) -> Result<(), refundry_ledger::db::DbError> {
        let (result, sent, log) = self
            .call_create(plugin, refund, &request_of(refund))
            .await?;
        let answer = match classify(result, sent) {
            Classified::Final(answer) => answer,
            // Not final: leave it unknown; the next check looks again.
            Classified::Retry(r) => super::create::ProviderAnswer::Unknown(r.failure.message),
        };
        let recorded = self
            .record(refund, answer, Sender::Janitor { checks }, plugin.version())
            .await;
        log.confirmed().await?;
        recorded.map(drop)
    }
}
