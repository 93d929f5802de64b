//! Webhooks: deliveries the sandbox signs when a refund moves, verified and parsed by the plugin
//! and taken by the service's intake (inbox, deduplication, forward-only moves).

use refundry_ledger::{RefundRecord, Status};
use refundry_runtime::{RefundStatus, WebhookError, WebhookEvent, WebhookOutcome};
use refundry_service::OperationError;
use refundry_service::refunds::{EventResult, WebhookAccepted, WebhookIntakeError};

use super::refunds::PAYMENT;
use crate::check::{KitError, ensure};
use crate::fixture::Signing;
use crate::harness::{Harness, Webhook};

/// A genuine delivery is verified, names the refund and its new status, and moves the refund in
/// the service.
pub async fn webhook_valid(h: &Harness) -> Result<(), KitError> {
    let (refund, external_id) = refund_in_service(h, "valid").await?;
    let delivery = moved(h, &refund, RefundStatus::Processed).await?;
    let event = one_event("a genuine delivery", h.parse(&delivery).await)?;
    ensure_about(&event, &refund, &external_id, RefundStatus::Processed)?;
    let taken = h.deliver(&delivery).await;
    ensure_results(
        "a genuine delivery",
        taken,
        &[Expect::Applied(Status::Processed)],
    )?;
    ensure_ledger(h, &refund, Status::Processed).await?;
    h.exactly_one(&external_id).await
}

/// A delivery whose body changed after signing, or signed with another secret, is refused and
/// moves nothing; the genuine one still does.
pub async fn webhook_forged(h: &Harness) -> Result<(), KitError> {
    let (refund, external_id) = refund_in_service(h, "forged").await?;
    let delivery = moved(h, &refund, RefundStatus::Processed).await?;
    let mut tampered = delivery.clone();
    // The same JSON, other bytes: a signature over the raw body no longer matches.
    tampered.body.push(b' ');
    let resigned = Webhook {
        headers: h.sandbox().sign_webhook(&delivery.body, Signing::Forged)?,
        body: delivery.body.clone(),
    };
    for (what, forged) in [
        ("a body changed after signing", &tampered),
        ("a body signed with another secret", &resigned),
    ] {
        let parsed = h.parse(forged).await;
        ensure!(
            matches!(
                parsed,
                Err(OperationError::Webhook(WebhookError::InvalidSignature))
            ),
            "{what}: expected an invalid signature, got {parsed:?}"
        );
        let taken = h.deliver(forged).await;
        ensure!(
            matches!(
                taken,
                Err(WebhookIntakeError::Rejected(WebhookError::InvalidSignature))
            ),
            "{what}: the service should refuse it, answered {taken:?}"
        );
        ensure_ledger(h, &refund, Status::Pending).await?;
    }
    let taken = h.deliver(&delivery).await;
    ensure_results(
        "the genuine delivery",
        taken,
        &[Expect::Applied(Status::Processed)],
    )?;
    h.exactly_one(&external_id).await
}

/// A delivery signed at a time older than the provider's tolerance is refused as stale; the same
/// body signed now is accepted.
pub async fn webhook_stale(h: &Harness) -> Result<(), KitError> {
    let (refund, external_id) = refund_in_service(h, "stale").await?;
    let delivery = moved(h, &refund, RefundStatus::Processed).await?;
    let signed = |signing| -> Result<Webhook, KitError> {
        Ok(Webhook {
            headers: h.sandbox().sign_webhook(&delivery.body, signing)?,
            body: delivery.body.clone(),
        })
    };
    let stale = signed(Signing::Stale)?;
    let parsed = h.parse(&stale).await;
    ensure!(
        matches!(parsed, Err(OperationError::Webhook(WebhookError::StaleTimestamp(age))) if age > 0),
        "a delivery signed long ago: expected a stale timestamp (positive age), got {parsed:?}"
    );
    let taken = h.deliver(&stale).await;
    ensure!(
        matches!(
            taken,
            Err(WebhookIntakeError::Rejected(WebhookError::StaleTimestamp(
                _
            )))
        ),
        "the service should refuse the stale delivery, answered {taken:?}"
    );
    ensure_ledger(h, &refund, Status::Pending).await?;
    let fresh = signed(Signing::Genuine)?;
    let event = one_event("the same body signed now", h.parse(&fresh).await)?;
    ensure_about(&event, &refund, &external_id, RefundStatus::Processed)?;
    h.exactly_one(&external_id).await
}

/// A delivery the provider sends again (its receiver answered 500 the first time) is the same
/// event; the service applies it once.
pub async fn webhook_duplicated(h: &Harness) -> Result<(), KitError> {
    let (refund, external_id) = refund_in_service(h, "duplicated").await?;
    let first = moved(h, &refund, RefundStatus::Processed).await?;
    let again = h.next_webhook().await?;
    let first_event = one_event("the first delivery", h.parse(&first).await)?;
    let second_event = one_event("the redelivery", h.parse(&again).await)?;
    ensure!(
        first_event.event_id == second_event.event_id && first_event.refund == second_event.refund,
        "a redelivery should be the same event: {first_event:?} then {second_event:?}"
    );
    let taken = h.deliver(&first).await;
    ensure_results(
        "the first delivery",
        taken,
        &[Expect::Applied(Status::Processed)],
    )?;
    for (what, delivery) in [
        ("the redelivery", &again),
        ("the first delivery again", &first),
    ] {
        ensure_results(what, h.deliver(delivery).await, &[Expect::Duplicate])?;
    }
    ensure_ledger(h, &refund, Status::Processed).await?;
    h.exactly_one(&external_id).await
}

/// A newer status delivered before an older one: the refund takes the newer and the older,
/// arriving late, does not move it back.
pub async fn webhook_out_of_order(h: &Harness) -> Result<(), KitError> {
    let (refund, external_id) = refund_in_service(h, "out-of-order").await?;
    let mut deliveries = vec![moved(h, &refund, RefundStatus::Processed).await?];
    let provider_id = refund.provider_refund_id.clone().unwrap_or_default();
    h.sandbox()
        .move_refund(&provider_id, RefundStatus::Reversed)
        .await?;
    deliveries.push(h.next_webhook().await?);
    // Delivered in any order: told apart by what each says.
    let mut events = Vec::new();
    for delivery in &deliveries {
        events.push(one_event("a delivery", h.parse(delivery).await)?);
    }
    let at = |status| events.iter().position(|e| e.refund.status == status);
    let (Some(processed), Some(reversed)) =
        (at(RefundStatus::Processed), at(RefundStatus::Reversed))
    else {
        return Err(KitError::Check(format!(
            "expected a processed and a reversed event, got {events:?}"
        )));
    };
    ensure!(
        events[processed].event_id != events[reversed].event_id,
        "two status changes carry one event id: {events:?}"
    );
    let taken = h.deliver(&deliveries[reversed]).await;
    ensure_results(
        "the newer status first",
        taken,
        &[Expect::Applied(Status::Reversed)],
    )?;
    let taken = h.deliver(&deliveries[processed]).await;
    ensure_results("the older status late", taken, &[Expect::Recorded])?;
    ensure_ledger(h, &refund, Status::Reversed).await?;
    h.exactly_one(&external_id).await
}

/// One delivery carrying several events applies each of them.
pub async fn webhook_batched(h: &Harness) -> Result<(), KitError> {
    let (first, first_id) = refund_in_service(h, "batched").await?;
    let (second, second_id) = refund_in_service(h, "batched").await?;
    let one = moved(h, &first, RefundStatus::Processed).await?;
    let two = moved(h, &second, RefundStatus::Processed).await?;
    let body = h.sandbox().batched_body(&[&one.body, &two.body])?;
    let batch = Webhook {
        headers: h.sandbox().sign_webhook(&body, Signing::Genuine)?,
        body,
    };
    let events = match h.parse(&batch).await {
        Ok(WebhookOutcome::Events(events)) => events,
        other => {
            return Err(KitError::Check(format!(
                "a batched delivery: expected its events, got {other:?}"
            )));
        }
    };
    ensure!(
        events.len() == 2,
        "a delivery of two events parsed to {events:?}"
    );
    ensure_about(&events[0], &first, &first_id, RefundStatus::Processed)?;
    ensure_about(&events[1], &second, &second_id, RefundStatus::Processed)?;
    let taken = h.deliver(&batch).await;
    let expected = [Expect::Applied(Status::Processed); 2];
    ensure_results("a batched delivery", taken, &expected)?;
    ensure_ledger(h, &first, Status::Processed).await?;
    ensure_ledger(h, &second, Status::Processed).await?;
    h.exactly_one(&first_id).await?;
    h.exactly_one(&second_id).await
}

/// A genuine delivery of an event type the plugin does not handle is acknowledged as ignored;
/// the same one forged is refused (verified before ignored).
pub async fn webhook_ignored(h: &Harness) -> Result<(), KitError> {
    let body = h.sandbox().unknown_event_body()?;
    let genuine = Webhook {
        headers: h.sandbox().sign_webhook(&body, Signing::Genuine)?,
        body: body.clone(),
    };
    let parsed = h.parse(&genuine).await;
    ensure!(
        matches!(&parsed, Ok(WebhookOutcome::Ignored(reason)) if !reason.is_empty()),
        "an unknown event type: expected ignored with a reason, got {parsed:?}"
    );
    let taken = h.deliver(&genuine).await;
    ensure!(
        matches!(taken, Ok(WebhookAccepted::Ignored { .. })),
        "the service should acknowledge it as ignored, answered {taken:?}"
    );
    let forged = Webhook {
        headers: h.sandbox().sign_webhook(&body, Signing::Forged)?,
        body,
    };
    let parsed = h.parse(&forged).await;
    ensure!(
        matches!(
            parsed,
            Err(OperationError::Webhook(WebhookError::InvalidSignature))
        ),
        "a forged unknown event type: expected an invalid signature, got {parsed:?}"
    );
    Ok(())
}

/// A pending refund made through the service, and its external id.
async fn refund_in_service(h: &Harness, tag: &str) -> Result<(RefundRecord, String), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id(tag);
    let refund = h
        .create_in_service(h.new_refund(&payment, &external_id, 2_500))
        .await?;
    Ok((refund, external_id))
}

/// Moves `refund` at the provider and answers the delivery that tells of it.
async fn moved(h: &Harness, refund: &RefundRecord, to: RefundStatus) -> Result<Webhook, KitError> {
    let provider_id = refund.provider_refund_id.as_deref().unwrap_or_default();
    h.sandbox().move_refund(provider_id, to).await?;
    h.next_webhook().await
}

/// The one event of a delivery.
fn one_event(
    what: &str,
    parsed: Result<WebhookOutcome, OperationError>,
) -> Result<WebhookEvent, KitError> {
    match parsed {
        Ok(WebhookOutcome::Events(mut events)) if events.len() == 1 => Ok(events.remove(0)),
        other => Err(KitError::Check(format!(
            "{what}: expected one event, got {other:?}"
        ))),
    }
}

/// The event is about `refund` (made with `external_id`) and says `status`.
fn ensure_about(
    event: &WebhookEvent,
    refund: &RefundRecord,
    external_id: &str,
    status: RefundStatus,
) -> Result<(), KitError> {
    let about = &event.refund;
    ensure!(
        Some(about.provider_refund_id.as_str()) == refund.provider_refund_id.as_deref()
            && about
                .external_refund_id
                .as_deref()
                .is_none_or(|id| id == external_id)
            && about.status == status
            && !event.event_id.is_empty(),
        "expected an event saying refund {:?} ({external_id}) is {status:?}, got {event:?}",
        refund.provider_refund_id
    );
    Ok(())
}

/// What the service should do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Move the refund to this status.
    Applied(Status),
    /// Record it without moving the refund.
    Recorded,
    /// Know it already.
    Duplicate,
}

/// The service took the delivery and did `expected` with its events, in order.
fn ensure_results(
    what: &str,
    taken: Result<WebhookAccepted, WebhookIntakeError>,
    expected: &[Expect],
) -> Result<(), KitError> {
    let results: Vec<Expect> = match &taken {
        Ok(WebhookAccepted::Events(events)) => events
            .iter()
            .filter_map(|e| match &e.result {
                EventResult::Applied { status, .. } => Some(Expect::Applied(*status)),
                EventResult::Recorded { .. } => Some(Expect::Recorded),
                EventResult::Duplicate => Some(Expect::Duplicate),
                EventResult::Unmatched => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let matched =
        matches!(&taken, Ok(WebhookAccepted::Events(events)) if events.len() == expected.len());
    ensure!(
        matched && results == expected,
        "{what}: the service should answer {expected:?}, answered {taken:?}"
    );
    Ok(())
}

/// The ledger holds `refund` in `status`.
async fn ensure_ledger(h: &Harness, refund: &RefundRecord, status: Status) -> Result<(), KitError> {
    let now = h.ledger_refund(&refund.id).await?;
    ensure!(
        now.status == status,
        "the ledger holds {} as {:?}, expected {status:?}",
        refund.id,
        now.status
    );
    Ok(())
}
