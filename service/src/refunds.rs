//! The refund orchestrator: every refund is written to the ledger before any provider call,
//! is idempotent on provider + external refund id, is pre-checked against the original payment,
//! retries retryable failures, and only ever moves its status forward.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::config::{Config, JanitorConfig, RetryPolicy};
use crate::exchange::Exchanges;
use crate::money::MAX_AMOUNT_MINOR;
use crate::providers::{Providers, StartError, StartOptions};
use crate::registry::PluginVersion;
use crate::replay::SecretMasks;
use refundry_ledger::{
    Begin, ExchangeRecord, Failure, Ledger, ListQuery, NewRow, Outcome, Page, RefundDetail,
    RefundRecord, Report, Source, Stamp, Status,
};
use refundry_runtime::bindings::types::{
    Money, ProviderInfo, Refund, RefundError, RefundRequest, RefundStatus, WebhookError,
};
use refundry_runtime::caps::Clock;
use refundry_runtime::error::PluginError;

/// A refund request, as the gateway sends it (`POST /v1/refunds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// Provider id (`mfs-africa`, `pagoefectivo`).
    #[schema(example = "mfs-africa")]
    pub provider: String,
    /// The gateway's id for this refund: with `provider`, the idempotency key. 1 to 128
    /// characters, not blank, no control characters.
    // The pattern states [`NewRefund::check`]'s id rule (control characters are Unicode's Cc,
    // blanks its White_Space). utoipa takes only a literal, so each id field repeats it; the
    // API tests hold all three to what `check` accepts.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "rf-2026-000123"
    )]
    pub external_refund_id: String,
    /// The payment to refund, as the provider knows it (same rules as `external_refund_id`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "91000042"
    )]
    pub original_transaction_id: String,
    /// Amount in minor units (cents), 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 150_000)]
    #[serde(deserialize_with = "minor_units")]
    pub amount: i64,
    /// ISO 4217 code, one of those Refundry knows (the document lists them); the provider must
    /// refund in it too, or the refund is refused (`unsupported_currency`).
    #[schema(example = "KES")]
    pub currency: String,
    /// Why, at most 500 characters.
    #[schema(max_length = 500, example = "customer_return")]
    #[serde(default)]
    pub reason: Option<String>,
    /// The merchant's order id (PagoEfectivo requires it: its `transactionCode`); same rules as
    /// `external_refund_id`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "ORDER-991"
    )]
    #[serde(default)]
    pub order_id: Option<String>,
    /// The original payment, when the gateway knows it: checked before any provider call.
    #[serde(default)]
    pub original: Option<OriginalPayment>,
}

/// The payment being refunded, as the gateway recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalPayment {
    /// Amount paid, in minor units, 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 500_000)]
    #[serde(deserialize_with = "minor_units")]
    pub amount: i64,
    /// ISO 4217 code, one of those Refundry knows; another than the refund's is refused
    /// (`currency_mismatch`).
    #[schema(example = "KES")]
    pub currency: String,
    /// When the payment completed (RFC 3339).
    pub completed_at: DateTime<Utc>,
    /// Whether the provider has settled it; a refund of an unsettled payment is refused.
    #[serde(default)]
    pub settled: Option<bool>,
}

/// An amount in minor units: a JSON integer. `100.0` is the same JSON number as `100` and is
/// taken; `100.5` is no whole number of minor units and is refused.
fn minor_units<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number of minor units"
        ))),
    }
}

/// The answer to a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The refund as recorded.
    pub refund: RefundRecord,
    /// The first answer's outcome (a replay gets the same).
    pub outcome: Outcome,
    /// Whether this answer replays an earlier request with the same key.
    pub replayed: bool,
    /// Set when nothing reached the provider ([`Outcome::Unavailable`], HTTP 503): why, and when
    /// to send the same request again. Nothing final was recorded: the refund stays `unknown`
    /// and the key may be sent again (the janitor also sends it, should the gateway not).
    pub not_sent: Option<NotSent>,
}

/// Why a create request reached no provider that could have acted on it, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    /// `provider_unavailable` (rate limited, or no connection) or `plugin_error` (the host could
    /// not run the plugin: instance pool full, instantiation failed, a trap before any request).
    pub failure: Failure,
    /// When to send the request again (the provider's `Retry-After` when it gave one).
    pub retry_after: Duration,
}

/// Why a create request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// No such provider is configured (HTTP 404).
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// A field is missing or wrong (HTTP 400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as named in the request.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The key was used before with other parameters (HTTP 409); nothing was sent.
    #[error("external_refund_id was already used for refund {refund_id} with other parameters")]
    IdempotencyConflict {
        /// The refund that holds the key.
        refund_id: String,
    },
    /// The ledger failed (HTTP 500).
    #[error("ledger: {0}")]
    Internal(String),
}

/// What became of an accepted webhook (HTTP 200 in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAccepted {
    /// The event moved a refund.
    Applied {
        /// The refund.
        refund_id: String,
        /// Its new status.
        status: Status,
    },
    /// The event was recorded in the refund's history, but did not move it (same status, late
    /// or backwards).
    Recorded {
        /// The refund.
        refund_id: String,
    },
    /// This event id was received before.
    Duplicate,
    /// No refund matches the event: kept in the inbox and logged.
    Unmatched,
}

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookIntakeError {
    /// No such provider is configured (HTTP 404).
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// The plugin refused it: missing header, bad signature or stale timestamp (HTTP 401),
    /// malformed (HTTP 400).
    #[error("webhook rejected: {}", crate::providers::describe_webhook_error(.0))]
    Rejected(WebhookError),
    /// The plugin failed (HTTP 500).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The ledger failed (HTTP 500).
    #[error("ledger: {0}")]
    Internal(String),
}

/// A failure of the ledger behind a read (HTTP 500).
#[derive(Debug, thiserror::Error)]
#[error("ledger: {0}")]
pub struct ServiceError(pub String);

/// The refund service: the host runtime, the ledger, and the rules. Cheap to clone.
#[derive(Clone)]
pub struct RefundService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) runtime: Providers,
    pub(crate) ledger: Ledger,
    retry: RetryPolicy,
    pub(crate) janitor: JanitorConfig,
    keys: KeyLocks,
    /// Refunds whose create request is being served in this process: the janitor leaves them be.
    pub(crate) in_flight: Mutex<HashSet<String>>,
    /// Where the plugin operations run for refunds are recorded (see [`crate::replay`]).
    pub(crate) recordings: crate::replay::Recordings,
    /// Each provider's secrets as its recordings mark them.
    pub(crate) masks: HashMap<String, Arc<SecretMasks>>,
}

/// What the provider's answer to a create request comes to.
pub(crate) enum Answer {
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

impl RefundService {
    /// Starts the host runtime (engine, ledger, plugins) from `config`, with the system clock.
    /// The janitor is not started: call [`RefundService::spawn_janitor`].
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with(config, StartOptions::default()).await
    }

    /// Like [`RefundService::start`], with another clock.
    pub async fn start_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Self::start_with(config, StartOptions::with_clock(clock)).await
    }

    /// Like [`RefundService::start`], with these options.
    pub async fn start_with(config: &Config, options: StartOptions) -> Result<Self, StartError> {
        let runtime = Providers::start_with(config, options).await?;
        let ledger = Ledger::new(runtime.database().clone());
        // Refunds written but never answered were in flight when an earlier process stopped:
        // nothing is in flight yet in this one, so the janitor may look at them at once.
        let orphans = ledger
            .recover_unanswered(runtime.clock().now_ms())
            .await
            .map_err(StartError::Database)?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "refunds left unanswered by an earlier run: the janitor will resolve them"
            );
        }
        let recordings =
            crate::replay::Recordings::new(runtime.database().clone(), config.recording);
        let masks = config
            .providers
            .iter()
            .map(|(id, p)| (id.clone(), Arc::new(SecretMasks::new(&p.secrets))))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                ledger,
                retry: config.retry.clone(),
                janitor: config.janitor.clone(),
                keys: KeyLocks::default(),
                in_flight: Mutex::new(HashSet::new()),
                recordings,
                masks,
            }),
        })
    }

    /// The host runtime: providers and their plugins.
    pub fn runtime(&self) -> &Providers {
        &self.inner.runtime
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.runtime.clock().now_ms()
    }

    /// When the janitor should look at a refund after `checks` earlier checks.
    pub(crate) fn next_check(&self, now_ms: i64, checks: i64) -> i64 {
        let backoff = &self.inner.janitor.backoff;
        let i = (checks.max(0) as usize).min(backoff.len() - 1);
        now_ms + backoff[i].as_millis() as i64
    }

    /// Creates (or replays) a refund.
    pub async fn create(&self, req: NewRefund) -> Result<Created, CreateError> {
        // The version active now creates this refund, even if another is activated meanwhile.
        let plugin = self
            .inner
            .runtime
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

    fn is_in_flight(&self, id: &str) -> bool {
        let set = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.contains(id)
    }

    /// The longest a create request can take, every attempt and wait included.
    fn create_budget(&self) -> Duration {
        let retry = &self.inner.retry;
        let attempts = retry.attempts.max(1);
        let per_attempt = self.inner.runtime.engine().limits().deadline;
        per_attempt * attempts + retry.max_wait * (attempts - 1) + Duration::from_secs(5)
    }

    /// The plugin version that serves operations on an existing refund: the one that created it
    /// while it is loaded, else the active one.
    pub(crate) fn plugin_for(&self, refund: &RefundRecord) -> Option<Arc<PluginVersion>> {
        let registry = self.inner.runtime.registry();
        let serving = registry.for_refund(
            &refund.provider,
            &refund.plugin_version,
            &refund.plugin_sha256,
        )?;
        if !serving.pinned {
            tracing::info!(
                created_by = %refund.plugin_version, serving = %serving.version.version(),
                "the plugin version that created this refund is not loaded: using the active one"
            );
        }
        Some(serving.version)
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
        let answer = loop {
            let (result, sent) = self.call_create(plugin, refund, &req).await?;
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
        self.record(refund, answer, Sender::Gateway, plugin.version())
            .await
    }

    /// One `create-refund` call, its exchanges logged against the refund; also says whether a
    /// request reached the wire.
    pub(crate) async fn call_create(
        &self,
        plugin: &PluginVersion,
        refund: &RefundRecord,
        req: &RefundRequest,
    ) -> Result<
        (Result<Result<Refund, RefundError>, PluginError>, bool),
        refundry_ledger::db::DbError,
    > {
        let exchanges = self.operation_exchanges(plugin);
        let result = plugin.logic.create_refund(req, exchanges.observer()).await;
        let sent = self
            .keep_exchanges(refund, "create-refund", &exchanges)
            .await?;
        Ok((result, sent))
    }

    /// Logs the exchanges one plugin operation made for `refund`; says whether any request
    /// reached the wire.
    pub(crate) async fn keep_exchanges(
        &self,
        refund: &RefundRecord,
        operation: &str,
        exchanges: &Exchanges,
    ) -> Result<bool, refundry_ledger::db::DbError> {
        let (id, provider) = (Some(refund.id.as_str()), &refund.provider);
        let log = self
            .inner
            .ledger
            .log_exchanges(id, provider, operation, exchanges.take());
        log.await?;
        self.keep_recording(&refund.id, exchanges).await;
        Ok(exchanges.sent() > 0)
    }

    /// Records a provider answer to a create request (the gateway's, or the janitor's re-send);
    /// returns the outcome and, when the answer settled it, the refund as it now is. `plugin` is
    /// the version that asked.
    pub(crate) async fn record(
        &self,
        refund: &RefundRecord,
        answer: Answer,
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
            Answer::Took(r) => {
                let report = report_of(&r);
                let outcome = Outcome::of_answer(report.status);
                (report, outcome, "provider answered")
            }
            Answer::Refused(f) => (failed(f), Outcome::Refused, "provider refused"),
            Answer::Unknown(message) => {
                tracing::warn!(%message, "refund outcome unknown; the janitor will find out");
                let outcome = first.then_some(Outcome::Unknown);
                let stamp = stamp(format!("outcome unknown: {message}"));
                ledger
                    .note(&refund.id, outcome, stamp, checks, unsettled_next)
                    .await?;
                return Ok(Recorded::unsettled(Outcome::Unknown, None));
            }
            Answer::NotSent(n) => {
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

    /// One refund with its history; `None` when there is no such id.
    pub async fn get(&self, id: &str) -> Result<Option<RefundDetail>, ServiceError> {
        self.inner
            .ledger
            .get(id)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// The provider HTTP exchanges made for a refund, oldest first (redacted).
    pub async fn exchanges(&self, refund_id: &str) -> Result<Vec<ExchangeRecord>, ServiceError> {
        self.inner
            .ledger
            .exchanges(refund_id)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// A page of refunds.
    pub async fn list(&self, query: ListQuery) -> Result<Page, ServiceError> {
        self.inner
            .ledger
            .list(query)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// A page of outbound events with their deliveries and attempts.
    pub async fn events(
        &self,
        query: refundry_ledger::EventQuery,
    ) -> Result<refundry_ledger::EventPage, ServiceError> {
        self.inner
            .ledger
            .events(query)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }
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
    Final(Answer),
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
    pub(crate) fn after_last_attempt(self, any_may_have_acted: bool) -> Answer {
        if any_may_have_acted || self.may_have_acted {
            Answer::Unknown(format!(
                "the provider failed every attempt and may have acted on one: {}",
                self.failure.message
            ))
        } else {
            Answer::NotSent(NotSent {
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
        Ok(Ok(refund)) => Classified::Final(Answer::Took(refund)),
        Ok(Err(RefundError::Refused(r))) => Classified::Final(Answer::Refused(Failure {
            code: crate::view::refusal_word(r.kind).replace('-', "_"),
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
        Ok(Err(RefundError::UnknownOutcome(m))) => Classified::Final(Answer::Unknown(m)),
        Err(e) if sent => Classified::Final(Answer::Unknown(format!(
            "the plugin failed after sending a request: {e}"
        ))),
        Err(e) => Classified::Final(Answer::NotSent(NotSent {
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

impl NewRefund {
    /// A hash of every parameter of the request: a replay must carry the same.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a refund request serialises");
        hex::encode(Sha256::digest(json))
    }
}

fn internal(e: impl std::fmt::Display) -> CreateError {
    CreateError::Internal(e.to_string())
}

fn invalid(field: &str, message: impl Into<String>) -> CreateError {
    CreateError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Refuses input no provider call could make sense of.
fn validate(req: &NewRefund) -> Result<(), CreateError> {
    req.check()
}

impl NewRefund {
    /// The checks that need no provider: ids, amounts, currency codes Refundry knows, the
    /// reason's length (`refundry batch` runs them on every row before sending any).
    pub fn check(&self) -> Result<(), CreateError> {
        let req = self;
        let id_field = |field: &str, value: &str| {
            if value.trim().is_empty() {
                Err(invalid(field, "must not be empty"))
            } else if value.chars().count() > 128 {
                Err(invalid(field, "must be at most 128 characters"))
            } else if value.chars().any(char::is_control) {
                Err(invalid(field, "must not contain control characters"))
            } else {
                Ok(())
            }
        };
        id_field("external_refund_id", &req.external_refund_id)?;
        id_field("original_transaction_id", &req.original_transaction_id)?;
        if let Some(order) = &req.order_id {
            id_field("order_id", order)?;
        }
        check_amount("amount", req.amount)?;
        if crate::money::exponent(&req.currency).is_none() {
            return Err(invalid(
                "currency",
                format!("{:?} is not an ISO 4217 code Refundry knows", req.currency),
            ));
        }
        if req.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(invalid("reason", "must be at most 500 characters"));
        }
        if let Some(original) = &req.original {
            check_amount("original.amount", original.amount)?;
            if crate::money::exponent(&original.currency).is_none() {
                return Err(invalid(
                    "original.currency",
                    "is not an ISO 4217 code Refundry knows",
                ));
            }
        }
        Ok(())
    }
}

/// An amount a gateway sends: positive, and at most [`MAX_AMOUNT_MINOR`], so that no sum of
/// refunds can come near `i64`'s range.
fn check_amount(field: &str, amount: i64) -> Result<(), CreateError> {
    if amount <= 0 {
        Err(invalid(field, "must be a positive number of minor units"))
    } else if amount > MAX_AMOUNT_MINOR {
        Err(invalid(
            field,
            format!("must be at most {MAX_AMOUNT_MINOR} minor units (10^15)"),
        ))
    } else {
        Ok(())
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

/// Per-key async locks, dropped when nobody holds or waits for them.
#[derive(Default)]
struct KeyLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 4096 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(&key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key, Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
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
            Classified::Final(Answer::Unknown(_))
        ));
        assert!(matches!(
            classify(trap(), false),
            Classified::Final(Answer::NotSent(_))
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
        let Classified::Final(Answer::Refused(f)) = classify(refused, true) else {
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
        assert!(matches!(last(Some(500), false), Answer::Unknown(_)));
        // An earlier 500 may have been acted on, whatever the last attempt got.
        assert!(matches!(last(Some(429), true), Answer::Unknown(_)));
        let Answer::NotSent(n) = last(Some(429), false) else {
            panic!("a rate limit on every attempt reached nothing");
        };
        assert_eq!(n.failure.code, "provider_unavailable");
        assert_eq!(n.retry_after, Duration::from_secs(1));
        assert!(matches!(last(None, false), Answer::NotSent(_)));
    }

    #[test]
    fn amounts_are_whole_minor_units() {
        let parse = |amount: &str| {
            serde_json::from_str::<NewRefund>(&format!(
                r#"{{"provider": "p", "external_refund_id": "e", "original_transaction_id": "t",
                    "amount": {amount}, "currency": "KES"}}"#
            ))
            .map(|r| r.amount)
        };
        assert_eq!(parse("150").unwrap(), 150);
        assert_eq!(parse("150.0").unwrap(), 150);
        let err = parse("150.5").unwrap_err().to_string();
        assert!(err.contains("whole number of minor units"), "{err}");
        assert!(parse("\"150\"").is_err());
        assert!(parse("1e300").is_err());
    }

    #[test]
    fn amounts_are_bounded_at_ten_to_the_fifteen() {
        let req = |amount: i64, original: i64| NewRefund {
            provider: "p".into(),
            external_refund_id: "e".into(),
            original_transaction_id: "t".into(),
            amount,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original: Some(OriginalPayment {
                amount: original,
                currency: "KES".into(),
                completed_at: DateTime::UNIX_EPOCH,
                settled: None,
            }),
        };
        assert!(req(MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR).check().is_ok());
        for (r, field) in [
            (req(MAX_AMOUNT_MINOR + 1, 100), "amount"),
            (req(9_223_372_036_854_775_000, 100), "amount"),
            (req(0, 100), "amount"),
            (req(100, MAX_AMOUNT_MINOR + 1), "original.amount"),
        ] {
            match r.check() {
                Err(CreateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_fingerprint_covers_every_parameter() {
        let a = NewRefund {
            provider: "p".into(),
            external_refund_id: "e".into(),
            original_transaction_id: "t".into(),
            amount: 100,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original: None,
        };
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.amount = 101;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.reason = Some("x".into());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
