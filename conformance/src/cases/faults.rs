//! Provider faults while creating a refund, resolved the way the host resolves them: the service
//! retries a retryable failure with the same external id, and its janitor looks an unknown
//! outcome up by external id. Every fault ends with exactly one refund at the provider.

use std::time::{Duration, Instant};

use refundry_ledger::{Outcome, RefundRecord, Status};

use super::refunds::PAYMENT;
use crate::check::{KitError, ensure, host, retryable};
use crate::fixture::Fault;
use crate::harness::Harness;

/// How late a sandbox answers in the timeout case...
const LATE: Duration = Duration::from_secs(3);
/// ...and how long the host waits for an answer there (`[http] timeout_ms`).
pub(crate) const HOST_TIMEOUT_MS: u64 = 1_000;

/// The provider makes the refund, then answers 500: the service retries with the same external
/// id, the provider replays, and the refund is created once.
pub async fn fault_500_after_acting(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("after-500");
    h.sandbox()
        .inject(Fault::FailAfterActing { status: 500 })
        .await?;
    let created = h
        .service()
        .create(h.new_refund(&payment, &external_id, 2_500))
        .await
        .map_err(host)?;
    ensure!(
        created.outcome == Outcome::Created && created.refund.status == Status::Pending,
        "after a 500 and a retry the refund should be created and pending, is {:?} ({:?})",
        created.refund.status,
        created.outcome
    );
    ensure_answered(h, &created.refund, |status| status == Some(500), "a 500").await?;
    h.exactly_one(&external_id).await
}

/// The provider makes the refund but answers after the host gave up: the outcome is unknown until
/// the janitor finds the refund by its external id.
pub async fn fault_timeout_after_acting(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("timeout");
    h.sandbox()
        .inject(Fault::AnswerLate { delay: LATE })
        .await?;
    unknown_then_settled(h, &payment, &external_id).await?;
    h.exactly_one(&external_id).await
}

/// The provider makes the refund and answers, but the answer never reaches the host (the
/// connection closes first): unknown until the janitor finds it by its external id.
pub async fn fault_lost_answer(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("lost");
    h.proxy()?.lose_next_answer_to(&external_id);
    unknown_then_settled(h, &payment, &external_id).await?;
    let lost = h.proxy()?.answers_lost();
    ensure!(lost == 1, "{lost} answers were lost, the case lost one");
    h.exactly_one(&external_id).await
}

/// A 429 carries its `Retry-After` through the plugin, and the service waits that long before it
/// sends the same request again, once.
pub async fn fault_429_with_retry_after(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("rate-limited");
    let limited = Fault::RateLimited {
        retry_after_secs: 1,
    };
    h.sandbox().inject(limited).await?;
    let answer = h.create(&h.request(&payment, &external_id, 2_500)).await;
    let r = retryable("a 429 through the plugin", answer)?;
    ensure!(
        r.http_status == Some(429) && r.retry_after_ms == Some(1_000),
        "a 429 with Retry-After: 1 should be retryable after 1000 ms, is {r:?}"
    );
    h.sandbox().inject(limited).await?;
    let started = Instant::now();
    let created = h
        .service()
        .create(h.new_refund(&payment, &external_id, 2_500))
        .await
        .map_err(host)?;
    let waited = started.elapsed();
    ensure!(
        created.outcome == Outcome::Created,
        "after a 429 and a retry the refund should be created, is {:?} ({:?})",
        created.refund.status,
        created.outcome
    );
    ensure!(
        waited >= Duration::from_secs(1),
        "the service sent again after {waited:?}, before the 1 s the provider asked for"
    );
    ensure_answered(h, &created.refund, |status| status == Some(429), "a 429").await?;
    h.exactly_one(&external_id).await
}

/// A token that expired between two refunds is renewed, and the second refund goes through.
pub async fn fault_expired_token(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let before_id = h.external_id("token");
    let before = h
        .create_in_service(h.new_refund(&payment, &before_id, 2_500))
        .await?;
    h.sandbox().expire_tokens().await?;
    let after_id = h.external_id("token");
    let after = h
        .create_in_service(h.new_refund(&payment, &after_id, 2_500))
        .await?;
    ensure!(
        after.provider_refund_id != before.provider_refund_id,
        "two refunds share provider id {:?}",
        after.provider_refund_id
    );
    ensure_answered(h, &after, |status| status == Some(401), "a 401").await?;
    h.exactly_one(&before_id).await?;
    h.exactly_one(&after_id).await
}

/// Creates through the service, expects the outcome unknown, and runs the janitor until it knows
/// the refund is pending at the provider.
async fn unknown_then_settled(
    h: &Harness,
    payment: &str,
    external_id: &str,
) -> Result<(), KitError> {
    let created = h
        .service()
        .create(h.new_refund(payment, external_id, 2_500))
        .await
        .map_err(host)?;
    ensure!(
        created.outcome == Outcome::Unknown && created.refund.status == Status::Unknown,
        "without an answer the outcome should be unknown, is {:?} ({:?})",
        created.refund.status,
        created.outcome
    );
    ensure_answered(h, &created.refund, |status| status.is_none(), "no answer").await?;
    let settled = h.janitor_settles(&created.refund.id).await?;
    ensure!(
        settled.status == Status::Pending && settled.provider_refund_id.is_some(),
        "the janitor should find the refund pending at the provider, found {settled:?}"
    );
    Ok(())
}

/// Among the exchanges the service logged for `refund`, one's answer status is `wanted` (`None`
/// when no answer came): the fault did happen.
async fn ensure_answered(
    h: &Harness,
    refund: &RefundRecord,
    wanted: impl Fn(Option<u16>) -> bool,
    what: &str,
) -> Result<(), KitError> {
    let exchanges = h.service().exchanges(&refund.id).await.map_err(host)?;
    let answers: Vec<(Option<u16>, Option<&str>)> = exchanges
        .iter()
        .map(|e| (e.exchange.status, e.exchange.error.as_deref()))
        .collect();
    ensure!(
        answers.iter().any(|&(status, _)| wanted(status)),
        "the service's exchanges for {} show no {what}: {answers:?}",
        refund.id
    );
    Ok(())
}
