//! Creating a refund: written to the ledger before any provider call, idempotent on provider +
//! external refund id, pre-checked against the original payment, retried while retryable, and
//! recorded as the provider answered.

use super::service::RefundService;
use super::types::{CreateError, Created, NewRefund, NotSent, internal, validate};

use crate::config::RetryPolicy;
use crate::exchange::Exchanges;
use crate::registry::PluginVersion;
use refundry_ledger::recordings::{OperationLog, PendingLog};
use refundry_ledger::{
    Begin, Failure, NewRow, Outcome, RefundRecord, Report, Source, Stamp, Status,
};
use refundry_runtime::bindings::types::{
    Money, ProviderInfo, Refund, RefundError, RefundRequest, RefundStatus,
};
use refundry_runtime::error::PluginError;
use std::time::Duration;
use tracing::Instrument;

impl RefundService {
    /// Creates (or replays) a refund.
    pub async fn create(&self, req: NewRefund) -> Result<Created, CreateError> {
        // The version active now creates this refund, even if another is activated meanwhile.
        let plugin = self
            .inner
            .providers
            .provider(&req.provider)
            .map_err(|_| CreateError::UnknownProvider(req.provider.clone()))?;
        validate(&req)?;
        let now = self.now_ms();
        let refusal = precheck(&req, plugin.logic.info(), now);
        // One request per key at a time in this process: a concurrent replay waits for the first
        // answer and then gets it, instead of racing it to the provider.
        let _key = self
            .inner
            .keys
            .lock(format!("{}\0{}", req.provider, req.external_refund_id))
            .await;
        let row = NewRow {
            id: format!("rf_{}", uuid::Uuid::now_v7().simple()),
            provider: req.provider.clone(),
            plugin_version: plugin.version().to_owned(),
            plugin_sha256: plugin.sha256().to_owned(),
            external_refund_id: req.external_refund_id.clone(),
            original_transaction_id: req.original_transaction_id.clone(),
            amount: req.amount,
            currency: req.currency.clone(),
            reason: req.reason.clone(),
            order_id: req.order_id.clone(),
            original_amount: req.original.as_ref().map(|o| o.amount),
            fingerprint: req.fingerprint(),
            now_ms: now,
            // Time enough for every attempt; after that an unanswered refund is the janitor's.
            first_check_ms: now + self.create_budget().as_millis() as i64,
        };
        let again = (row.clone(), refusal.clone());
        let begun = self
            .inner
            .ledger
            .begin(row, refusal)
            .await
            .map_err(internal)?;
        let (refund, replayed, plugin) = match begun {
            Begin::Conflict(refund_id) => {
                return Err(CreateError::IdempotencyConflict { refund_id });
            }
            // Never answered, and not in flight here: its request died with an earlier process.
            // The gateway's retry resumes it with the identical request (the provider replays on
            // the same external id, so this cannot refund twice).
            Begin::Existing(refund, None)
                if refund.status == Status::Unknown && !self.is_in_flight(&refund.id) =>
            {
                if let Some(created) = self.answered_elsewhere(&refund, again).await? {
                    return Ok(created);
                }
                tracing::info!(
                    refund_id = %refund.id, provider = %refund.provider,
                    "resuming a refund whose request was never answered"
                );
                let plugin = self
                    .plugin_for(&refund)
                    .ok_or_else(|| CreateError::UnknownProvider(refund.provider.clone()))?;
                (refund, true, plugin)
            }
            Begin::Existing(refund, outcome) => {
                return Ok(Created {
                    refund,
                    outcome: outcome.unwrap_or(Outcome::Unknown),
                    replayed: true,
                    not_sent: None,
                });
            }
            Begin::Refused(refund) => {
                tracing::info!(
                    refund_id = %refund.id, provider = %refund.provider,
                    code = refund.failure.as_ref().map(|f| f.code.as_str()).unwrap_or(""),
                    "refund refused by a pre-check; no provider call"
                );
                return Ok(Created {
                    refund,
                    outcome: Outcome::Refused,
                    replayed: false,
                    not_sent: None,
                });
            }
            Begin::New(refund) => (refund, false, plugin),
        };
        let span =
            tracing::info_span!("refund", refund_id = %refund.id, provider = %refund.provider);
        // The provider call runs as its own task: if the caller goes away (a client disconnects),
        // the answer is still recorded.
        let service = self.clone();
        let sent = refund.clone();
        let task = tokio::spawn(
            async move {
                let _in_flight = InFlight::mark(&service, &sent.id);
                service.send_create(&plugin, &sent).await
            }
            .instrument(span),
        );
        let result = task.await.map_err(internal)?;
        let Recorded {
            outcome,
            refund: after,
            not_sent,
        } = result.map_err(internal)?;
        let refund = match after {
            Some(r) => r,
            None => {
                let detail = self.inner.ledger.get(&refund.id).await.map_err(internal)?;
                let detail = detail.ok_or_else(|| {
                    CreateError::Internal("refund vanished from the ledger".into())
                })?;
                detail.refund
            }
        };
        Ok(Created {
            refund,
            outcome,
            replayed,
            not_sent,
        })
    }

    /// On a ledger shared by several hosts, a refund never answered and not in flight here may
    /// be in flight on another host (the same key sent to two hosts at once): waits, while its
    /// create budget runs, for that host to record the answer, and returns it; `None` when the
    /// budget has run out (that host died: the caller resumes the refund) or on SQLite.
    async fn answered_elsewhere(
        &self,
        refund: &RefundRecord,
        (row, refusal): (NewRow, Option<Failure>),
    ) -> Result<Option<Created>, CreateError> {
        if !self.inner.ledger.is_shared() {
            return Ok(None);
        }
        let budget_ms = self.create_budget().as_millis() as i64;
        let left_ms = refund.created_at.timestamp_millis() + budget_ms - self.now_ms();
        // Real time bounds the wait, whatever the service's clock does.
        let deadline =
            std::time::Instant::now() + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        let mut pause = Duration::from_millis(5);
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            let seen = self
                .inner
                .ledger
                .begin(row.clone(), refusal.clone())
                .await
                .map_err(internal)?;
            match seen {
                Begin::Existing(r, None) if r.status == Status::Unknown => continue,
                Begin::Existing(refund, outcome) => {
                    return Ok(Some(Created {
                        refund,
                        outcome: outcome.unwrap_or(Outcome::Unknown),
                        replayed: true,
                        not_sent: None,
                    }));
                }
                Begin::Conflict(refund_id) => {
                    return Err(CreateError::IdempotencyConflict { refund_id });
                }
                // The key holds a refund, so it cannot be written anew.
                Begin::New(_) | Begin::Refused(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The longest a create request can take, every attempt and wait included.
    fn create_budget(&self) -> Duration {
        let retry = &self.inner.retry;
        let attempts = retry.attempts.max(1);
        let per_attempt = self.inner.providers.engine().limits().deadline;
        per_attempt * attempts + retry.max_wait * (attempts - 1) + Duration::from_secs(5)
    }

    /// Asks the provider, with retries, and records the answer.
    async fn send_create(
        &self,
        plugin: &PluginVersion,
        refund: &RefundRecord,
    ) -> Result<Recorded, refundry_ledger::db::DbError> {
        let req = request_of(refund);
        let retry = &self.inner.retry;
        let mut sent_before = false;
        // Whether an earlier attempt's answer may have been acted on (a provider fault): then no
        // later failure can make the refund one that did not happen. (A plugin failure after
        // any attempt sent something is already unknown: `classify` is told `sent_before`.)
        let mut may_have_acted = false;
        let mut attempt = 1;
        // Each attempt's log, confirmed once the answer is recorded: one wait for the ledger
        // covers both.
        let mut logs = Vec::new();
        let answer = loop {
            let (result, sent, log) = self.call_create(plugin, refund, &req).await?;
            logs.push(log);
            sent_before |= sent;
            let classified = classify(result, sent_before);
            if let Classified::Retry(retryable) = &classified {
                may_have_acted |= retryable.may_have_acted;
            }
            match classified {
                Classified::Retry(r) if attempt < retry.attempts => {
                    let wait = retry_wait(retry, attempt, r.retry_after_ms);
                    tracing::warn!(
                        attempt, wait_ms = wait.as_millis() as u64, error = %r.failure.message,
                        "retryable provider failure; retrying with the same key"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Classified::Retry(r) => {
                    tracing::warn!(attempt, error = %r.failure.message, "provider still unavailable after the last attempt");
                    break r.after_last_attempt(may_have_acted);
                }
                Classified::Final(answer) => break answer,
            }
        };
        let recorded = self
            .record(refund, answer, Sender::Gateway, plugin.version())
            .await;
        SentLog::confirm_all(logs).await?;
        recorded
    }

    /// One `create-refund` call, its exchanges sent to the ledger's log against the refund
    /// ([`RefundService::queue_exchanges`]: confirm it once the answer is recorded); also says
    /// whether a request reached the wire.
    pub(crate) async fn call_create(
        &self,
        plugin: &PluginVersion,
        refund: &RefundRecord,
        req: &RefundRequest,
    ) -> Result<
        (
            Result<Result<Refund, RefundError>, PluginError>,
            bool,
            SentLog,
        ),
        refundry_ledger::db::DbError,
    > {
        let exchanges = self.operation_exchanges(plugin);
        let result = plugin.logic.create_refund(req, exchanges.observer()).await;
        let log = self
            .queue_exchanges(refund, "create-refund", &exchanges)
            .await?;
        Ok((result, exchanges.sent() > 0, log))
    }

    /// Logs the exchanges one plugin operation made for `refund`, and its recording, in one
    /// write of the ledger; says whether any request reached the wire. A recording that could
    /// not be kept is logged and the operation goes on.
    pub(crate) async fn keep_exchanges(
        &self,
        refund: &RefundRecord,
        operation: &str,
        exchanges: &Exchanges,
    ) -> Result<bool, refundry_ledger::db::DbError> {
        self.queue_exchanges(refund, operation, exchanges)
            .await?
            .confirmed()
            .await?;
        Ok(exchanges.sent() > 0)
    }

    /// Sends what [`RefundService::keep_exchanges`] writes without waiting for its commit.
    /// Writes the caller sends after it commit with it or after it, so a caller that records
    /// the operation's outcome next and then confirms the log waits for one commit, not two;
    /// and the log is durable before the outcome is answered.
    pub(crate) async fn queue_exchanges(
        &self,
        refund: &RefundRecord,
        operation: &str,
        exchanges: &Exchanges,
    ) -> Result<SentLog, refundry_ledger::db::DbError> {
        let log = OperationLog {
            refund_id: Some(refund.id.clone()),
            provider: refund.provider.clone(),
            operation: operation.to_owned(),
            exchanges: exchanges.take(),
        };
        let recording = self.recording_of(&refund.id, exchanges);
        let pending = if !log.exchanges.is_empty() || recording.is_some() {
            let recordings = &self.inner.recordings;
            Some(recordings.queue_operation(log, recording).await?)
        } else {
            None
        };
        Ok(SentLog {
            refund_id: refund.id.clone(),
            pending,
        })
    }

    /// Records a provider answer to a create request (the gateway's, or the janitor's re-send);
    /// returns the outcome and, when the answer settled it, the refund as it now is. `plugin` is
    /// the version that asked.
    pub(crate) async fn record(
        &self,
        refund: &RefundRecord,
        answer: ProviderAnswer,
        sender: Sender,
        plugin: &str,
    ) -> Result<Recorded, refundry_ledger::db::DbError> {
        let now = self.now_ms();
        let (source, first, checks) = match sender {
            Sender::Gateway => (Source::Api, true, None),
            Sender::Janitor { checks } => (Source::Janitor, false, Some(checks)),
        };
        // An answer that settles nothing is looked at again after the janitor's back-off: from
        // its first step after the gateway's request, from where the janitor's checks are after
        // a re-send (so a refund that keeps failing is not re-sent at the first step forever).
        let unsettled_next = self.next_check(now, checks.unwrap_or(0));
        let stamp = |detail: String| Stamp::new(source, detail, now).by(plugin);
        let ledger = &self.inner.ledger;
        let (report, outcome, detail) = match answer {
            ProviderAnswer::Took(r) => {
                let report = report_of(&r);
                let outcome = Outcome::of_answer(report.status);
                (report, outcome, "provider answered")
            }
            ProviderAnswer::Refused(f) => (failed(f), Outcome::Refused, "provider refused"),
            ProviderAnswer::Unknown(message) => {
                tracing::warn!(%message, "refund outcome unknown; the janitor will find out");
                let outcome = first.then_some(Outcome::Unknown);
                let stamp = stamp(format!("outcome unknown: {message}"));
                ledger
                    .note(&refund.id, outcome, stamp, checks, unsettled_next)
                    .await?;
                return Ok(Recorded::unsettled(Outcome::Unknown, None));
            }
            ProviderAnswer::NotSent(n) => {
                // No first answer is recorded: the same key sends the request again, and so does
                // the janitor at its next look (it asks the provider first, by external id).
                tracing::warn!(code = %n.failure.code, error = %n.failure.message,
                    "nothing reached the provider; the refund stays unknown and may be sent again");
                let stamp = stamp(format!(
                    "not sent ({}): {}",
                    n.failure.code, n.failure.message
                ));
                ledger
                    .note(&refund.id, None, stamp, checks, unsettled_next)
                    .await?;
                return Ok(Recorded::unsettled(Outcome::Unavailable, Some(n)));
            }
        };
        tracing::info!(
            status = report.status.as_str(),
            provider_refund_id = report.provider_refund_id.as_deref().unwrap_or(""),
            code = report
                .failure
                .as_ref()
                .map(|f| f.code.as_str())
                .unwrap_or(""),
            "{detail}"
        );
        let next = self.next_check(now, 0);
        let applied = ledger
            .apply(
                &refund.id,
                report,
                stamp(detail.to_owned()),
                Some(outcome),
                Some(next),
            )
            .await?;
        Ok(Recorded {
            outcome,
            refund: Some(applied.refund),
            not_sent: None,
        })
    }
}

/// What the provider's answer to a create request comes to.
pub(crate) enum ProviderAnswer {
    /// The provider took it (any status, failed included).
    Took(Refund),
    /// Refused, finally.
    Refused(Failure),
    /// The request may have reached the provider and been acted on; no usable answer.
    Unknown(String),
    /// Nothing that reached the provider can have acted on it (rate limited, no connection, or
    /// the plugin failed before sending): nothing final; the same request may be sent again.
    NotSent(NotSent),
}

/// Who sent a create request whose answer is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// The gateway (`POST /v1/refunds`, or a resumed key): its answer is the key's first answer.
    Gateway,
    /// The janitor's re-send, as its check number `checks` of the refund.
    Janitor {
        /// How many checks of the refund this one makes.
        checks: i64,
    },
}

/// What recording an answer to a create request gave: the outcome, the refund when the answer
/// settled it, and why nothing was sent when nothing was.
pub(crate) struct Recorded {
    pub(crate) outcome: Outcome,
    pub(crate) refund: Option<RefundRecord>,
    pub(crate) not_sent: Option<NotSent>,
}

impl Recorded {
    fn unsettled(outcome: Outcome, not_sent: Option<NotSent>) -> Self {
        Self {
            outcome,
            refund: None,
            not_sent,
        }
    }
}

pub(crate) enum Classified {
    Final(ProviderAnswer),
    Retry(Retry),
}

/// A retryable answer to one attempt.
pub(crate) struct Retry {
    pub(crate) failure: Failure,
    pub(crate) retry_after_ms: Option<u64>,
    /// Whether the provider may have acted on the request before failing it: it answered with a
    /// server error (5xx). A `429`, or a failure with no provider answer at all (the plugin maps a
    /// lost answer to a write to `unknown-outcome`, not to `retryable`), did not act.
    pub(crate) may_have_acted: bool,
}

impl Retry {
    /// What a retryable failure comes to when no attempt is left: the outcome is unknown when
    /// any attempt may have been acted on (the janitor finds the refund by its external id), else
    /// nothing reached the provider that did anything and nothing final is recorded.
    pub(crate) fn after_last_attempt(self, any_may_have_acted: bool) -> ProviderAnswer {
        if any_may_have_acted || self.may_have_acted {
            ProviderAnswer::Unknown(format!(
                "the provider failed every attempt and may have acted on one: {}",
                self.failure.message
            ))
        } else {
            ProviderAnswer::NotSent(NotSent {
                failure: Failure {
                    code: "provider_unavailable".into(),
                    ..self.failure
                },
                retry_after: retry_later(self.retry_after_ms),
            })
        }
    }
}

/// How long a gateway is told to wait before sending a request that reached no provider again
/// (`Retry-After`): the provider's own wait when it gave one, else one second.
fn retry_later(retry_after_ms: Option<u64>) -> Duration {
    Duration::from_millis(retry_after_ms.unwrap_or(0)).max(Duration::from_secs(1))
}

/// Sorts a plugin's answer to `create-refund`. `sent` says whether any request of this refund
/// reached the wire, which decides what a plugin failure means.
pub(crate) fn classify(
    result: Result<Result<Refund, RefundError>, PluginError>,
    sent: bool,
) -> Classified {
    match result {
        Ok(Ok(refund)) => Classified::Final(ProviderAnswer::Took(refund)),
        Ok(Err(RefundError::Refused(r))) => Classified::Final(ProviderAnswer::Refused(Failure {
            code: r.kind.as_str().replace('-', "_"),
            message: r.message,
            provider_code: r.provider_code,
        })),
        Ok(Err(RefundError::Retryable(r))) => Classified::Retry(Retry {
            may_have_acted: r.http_status.is_some_and(|s| (500..=599).contains(&s)),
            failure: Failure {
                code: "retryable".into(),
                message: r.message,
                provider_code: r.provider_code,
            },
            retry_after_ms: r.retry_after_ms,
        }),
        Ok(Err(RefundError::UnknownOutcome(m))) => Classified::Final(ProviderAnswer::Unknown(m)),
        Err(e) if sent => Classified::Final(ProviderAnswer::Unknown(format!(
            "the plugin failed after sending a request: {e}"
        ))),
        Err(e) => Classified::Final(ProviderAnswer::NotSent(NotSent {
            failure: Failure {
                code: "plugin_error".into(),
                message: e.to_string(),
                provider_code: None,
            },
            retry_after: retry_later(None),
        })),
    }
}

fn retry_wait(policy: &RetryPolicy, attempt: u32, retry_after_ms: Option<u64>) -> Duration {
    let i = (attempt as usize - 1).min(policy.backoff.len() - 1);
    let wait = policy.backoff[i].max(Duration::from_millis(retry_after_ms.unwrap_or(0)));
    wait.min(policy.max_wait)
}

fn failed(f: Failure) -> Report {
    Report {
        status: Status::Failed,
        provider_refund_id: None,
        provider_status: None,
        failure: Some(f),
    }
}

/// What a provider's refund says, as a ledger report.
pub(crate) fn report_of(r: &Refund) -> Report {
    let status = Status::from(r.status);
    Report {
        status,
        provider_refund_id: Some(r.provider_refund_id.clone()),
        provider_status: Some(r.provider_status.clone()),
        failure: (r.status == RefundStatus::Failed).then(|| Failure {
            code: "provider_failed".into(),
            message: r
                .failure_reason
                .clone()
                .unwrap_or_else(|| "the provider failed the refund".into()),
            provider_code: None,
        }),
    }
}

/// The contract request for a recorded refund: the same on every attempt and every re-send.
pub(crate) fn request_of(r: &RefundRecord) -> RefundRequest {
    RefundRequest {
        original_transaction_id: r.original_transaction_id.clone(),
        external_refund_id: r.external_refund_id.clone(),
        amount: Money {
            amount_minor: r.amount,
            currency: r.currency.clone(),
        },
        reason: r.reason.clone(),
        order_id: r.order_id.clone(),
    }
}

/// The checks that need no ledger: the provider refunds the currency; against the original
/// payment, currency, settlement and window. (The remaining amount is checked by the ledger,
/// atomically with the insert.) A well-formed request this provider cannot take is refused
/// here, recorded and answered like any refusal (422), not called malformed.
fn precheck(req: &NewRefund, info: &ProviderInfo, now_ms: i64) -> Option<Failure> {
    let refuse = |code: &str, message: String| {
        Some(Failure {
            code: code.to_owned(),
            message,
            provider_code: None,
        })
    };
    if !info.currencies.iter().any(|c| c == &req.currency) {
        return refuse(
            "unsupported_currency",
            format!(
                "{} does not refund {} (it refunds {})",
                req.provider,
                req.currency,
                info.currencies.join(", ")
            ),
        );
    }
    let original = req.original.as_ref()?;
    if original.currency != req.currency {
        return refuse(
            "currency_mismatch",
            format!(
                "the payment was in {}, the refund is in {}",
                original.currency, req.currency
            ),
        );
    }
    if original.settled == Some(false) {
        return refuse("not_settled", "the payment is not settled yet".into());
    }
    if let Some(days) = info.refund_window_days {
        let closes = original.completed_at + chrono::Duration::days(i64::from(days));
        if now_ms > closes.timestamp_millis() {
            return refuse(
                "window_expired",
                format!(
                    "{} refunds within {days} days of the payment; the window closed at {}",
                    req.provider,
                    closes.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
        }
    }
    None
}

/// A refund's place in the in-flight set, for as long as its create request is being served.
struct InFlight {
    service: RefundService,
    id: String,
}

impl InFlight {
    fn mark(service: &RefundService, id: &str) -> Self {
        let mut set = service
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_owned());
        Self {
            service: service.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let inner = &self.service.inner;
        let mut set = inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
    }
}

/// One plugin operation's log, sent to the ledger ([`RefundService::queue_exchanges`]) and not
/// yet known to be written.
#[must_use = "a log sent to the ledger must be confirmed: its write may have failed"]
pub(crate) struct SentLog {
    refund_id: String,
    pending: Option<PendingLog>,
}

impl SentLog {
    /// Waits for the log's write: an error when its exchanges were not written; a recording
    /// that could not be kept is logged, as a lost recording must not fail a refund.
    pub(crate) async fn confirmed(self) -> Result<(), refundry_ledger::db::DbError> {
        let Some(pending) = self.pending else {
            return Ok(());
        };
        if let Some(e) = pending.written().await? {
            tracing::warn!(refund_id = %self.refund_id, error = %e, "could not keep the operation's recording");
        }
        Ok(())
    }

    /// Confirms every log of `logs`; the first error, after all were awaited.
    pub(crate) async fn confirm_all(
        logs: Vec<SentLog>,
    ) -> Result<(), refundry_ledger::db::DbError> {
        let mut first_error = None;
        for log in logs {
            if let Err(e) = log.confirmed().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_runtime::bindings::types::{Refusal, RefusalKind, Retryable};

    #[test]
    fn retry_waits_follow_the_policy_and_honour_retry_after() {
        let p = RetryPolicy {
            attempts: 3,
            backoff: vec![Duration::from_millis(10), Duration::from_millis(40)],
            max_wait: Duration::from_millis(100),
        };
        assert_eq!(retry_wait(&p, 1, None), Duration::from_millis(10));
        assert_eq!(retry_wait(&p, 2, None), Duration::from_millis(40));
        assert_eq!(retry_wait(&p, 5, None), Duration::from_millis(40));
        assert_eq!(retry_wait(&p, 1, Some(70)), Duration::from_millis(70));
        assert_eq!(retry_wait(&p, 1, Some(10_000)), Duration::from_millis(100));
    }

    #[test]
    fn a_plugin_failure_is_unknown_once_a_request_was_sent() {
        let trap = || {
            Err(PluginError::Trap {
                provider: "p".into(),
                op: "create-refund",
                message: "boom".into(),
            })
        };
        assert!(matches!(
            classify(trap(), true),
            Classified::Final(ProviderAnswer::Unknown(_))
        ));
        assert!(matches!(
            classify(trap(), false),
            Classified::Final(ProviderAnswer::NotSent(_))
        ));
    }

    #[test]
    fn refusals_keep_the_kind_and_provider_code() {
        let refused = Ok(Err(RefundError::Refused(Refusal {
            kind: RefusalKind::AmountExceeded,
            provider_code: Some("E2".into()),
            message: "too much".into(),
            http_status: Some(422),
        })));
        let Classified::Final(ProviderAnswer::Refused(f)) = classify(refused, true) else {
            panic!("a refusal is final");
        };
        assert_eq!(
            (f.code.as_str(), f.provider_code.as_deref()),
            ("amount_exceeded", Some("E2"))
        );
        let retry = Ok(Err(RefundError::Retryable(Retryable {
            provider_code: None,
            message: "busy".into(),
            http_status: Some(503),
            retry_after_ms: Some(5),
        })));
        assert!(matches!(
            classify(retry, false),
            Classified::Retry(Retry {
                retry_after_ms: Some(5),
                may_have_acted: true,
                ..
            })
        ));
    }

    fn retryable(http_status: Option<u16>) -> Result<Result<Refund, RefundError>, PluginError> {
        Ok(Err(RefundError::Retryable(Retryable {
            provider_code: None,
            message: "busy".into(),
            http_status,
            retry_after_ms: None,
        })))
    }

    #[test]
    fn a_server_error_may_have_acted_a_rate_limit_or_no_answer_did_not() {
        let acted = |status| match classify(retryable(status), true) {
            Classified::Retry(r) => r.may_have_acted,
            Classified::Final(_) => panic!("retryable"),
        };
        assert!(acted(Some(500)));
        assert!(acted(Some(502)));
        assert!(acted(Some(599)));
        assert!(!acted(Some(429)));
        assert!(!acted(Some(408)));
        assert!(!acted(None));
    }

    #[test]
    fn after_the_last_attempt_a_maybe_acted_failure_is_unknown_never_final() {
        let last = |status, earlier| match classify(retryable(status), true) {
            Classified::Retry(r) => r.after_last_attempt(earlier),
            Classified::Final(_) => panic!("retryable"),
        };
        assert!(matches!(last(Some(500), false), ProviderAnswer::Unknown(_)));
        // An earlier 500 may have been acted on, whatever the last attempt got.
        assert!(matches!(last(Some(429), true), ProviderAnswer::Unknown(_)));
        let ProviderAnswer::NotSent(n) = last(Some(429), false) else {
            panic!("a rate limit on every attempt reached nothing");
        };
        assert_eq!(n.failure.code, "provider_unavailable");
        assert_eq!(n.retry_after, Duration::from_secs(1));
        assert!(matches!(last(None, false), ProviderAnswer::NotSent(_)));
    }
}
