//! Creating refunds through the plugin: a new one, a replay, a conflicting reuse of an external
//! id, and the provider's business refusals. Each ends with what the provider holds.

use refundry_runtime::{RefundStatus, RefusalKind};

use crate::check::{KitError, ensure, refund, refusal};
use crate::fixture::RefundsOf;
use crate::harness::Harness;

/// A payment large enough for every refund a case makes: 1000.00 in a two-digit currency.
pub(crate) const PAYMENT: i64 = 100_000;

/// A new refund is pending at the provider with what was asked, and exists there once.
pub async fn create(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("create");
    let request = h.request(&payment, &external_id, 2_500);
    let made = refund("create", h.create(&request).await)?;
    ensure!(
        !made.provider_refund_id.is_empty(),
        "the provider gave the refund no id: {made:?}"
    );
    ensure!(
        made.amount == request.amount,
        "asked {:?}, the provider holds {:?}",
        request.amount,
        made.amount
    );
    ensure!(
        made.original_transaction_id == payment,
        "the refund is of {}, not of the payment {payment}",
        made.original_transaction_id
    );
    ensure!(
        made.external_refund_id
            .as_deref()
            .is_none_or(|id| id == external_id),
        "the provider echoes external id {:?}, not {external_id}",
        made.external_refund_id
    );
    ensure!(
        made.status == RefundStatus::Pending,
        "a new refund should be pending, is {:?}",
        made.status
    );
    h.exactly_one(&external_id).await
}

/// The same request with the same external id is the same refund, not a second one.
pub async fn replay_with_the_same_external_id(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("replay");
    let request = h.request(&payment, &external_id, 2_500);
    let first = refund("create", h.create(&request).await)?;
    let again = refund("replay", h.create(&request).await)?;
    ensure!(
        again.provider_refund_id == first.provider_refund_id,
        "the replay made refund {}, the first request {}",
        again.provider_refund_id,
        first.provider_refund_id
    );
    ensure!(
        again.amount == first.amount,
        "the replay answers {:?}, the first request {:?}",
        again.amount,
        first.amount
    );
    h.exactly_one(&external_id).await?;
    ensure_payment_holds(h, &payment, 1).await
}

/// An external id used again with another amount is refused as a conflict; the first refund
/// stays as it was.
pub async fn same_external_id_with_other_parameters(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("conflict");
    let first = refund(
        "create",
        h.create(&h.request(&payment, &external_id, 2_500)).await,
    )?;
    let other = h.request(&payment, &external_id, 3_000);
    refusal(
        "the same external id with another amount",
        h.create(&other).await,
        RefusalKind::IdempotencyConflict,
    )?;
    h.exactly_one(&external_id).await?;
    ensure_payment_holds(h, &payment, 1).await?;
    let replay = refund(
        "the first request again",
        h.create(&h.request(&payment, &external_id, 2_500)).await,
    )?;
    ensure!(
        replay.provider_refund_id == first.provider_refund_id
            && replay.amount.amount_minor == 2_500,
        "after the conflict the first refund should be unchanged, is {replay:?}"
    );
    Ok(())
}

/// Refunds beyond what remains of the payment are refused, one at a time and all at once.
pub async fn over_refund(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(10_000).await?;
    refusal(
        "a refund above the payment",
        h.create(&h.request(&payment, &h.external_id("over"), 10_001))
            .await,
        RefusalKind::AmountExceeded,
    )?;
    let first_id = h.external_id("over");
    refund(
        "a refund of 60%",
        h.create(&h.request(&payment, &first_id, 6_000)).await,
    )?;
    refusal(
        "another 50% after 60%",
        h.create(&h.request(&payment, &h.external_id("over"), 5_000))
            .await,
        RefusalKind::AmountExceeded,
    )?;
    h.exactly_one(&first_id).await?;
    ensure_payment_holds(h, &payment, 1).await
}

/// A refund in another currency than the payment's is refused and leaves nothing behind; one
/// in the payment's currency then goes through.
pub async fn other_currency(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let currencies = h.currencies();
    let mut request = h.request(&payment, &h.external_id("currency"), 2_500);
    request.amount.currency = currencies.other.to_owned();
    refusal(
        &format!(
            "a refund in {} of a payment in {}",
            currencies.other, currencies.main
        ),
        h.create(&request).await,
        RefusalKind::CurrencyMismatch,
    )?;
    ensure_payment_holds(h, &payment, 0).await?;
    let external_id = h.external_id("currency");
    refund(
        "a refund in the payment's currency",
        h.create(&h.request(&payment, &external_id, 2_500)).await,
    )?;
    h.exactly_one(&external_id).await
}

/// A payment older than the refund window `describe()` gives cannot be refunded; one a day
/// inside it can.
pub async fn outside_the_refund_window(h: &Harness) -> Result<(), KitError> {
    let info = h
        .providers()
        .provider(h.provider())
        .map_err(crate::check::host)?
        .logic
        .info()
        .clone();
    let Some(days) = info.refund_window_days else {
        return Err(KitError::Check(
            "the fixture declares a refund window, but describe() gives none".into(),
        ));
    };
    let old = h.payment_aged(PAYMENT, days + 1).await?;
    refusal(
        &format!("a refund {} days after the payment", days + 1),
        h.create(&h.request(&old, &h.external_id("window"), 2_500))
            .await,
        RefusalKind::WindowExpired,
    )?;
    ensure_payment_holds(h, &old, 0).await?;
    let recent = h.payment_aged(PAYMENT, days.saturating_sub(1)).await?;
    let external_id = h.external_id("window");
    refund(
        &format!("a refund {} days after the payment", days.saturating_sub(1)),
        h.create(&h.request(&recent, &external_id, 2_500)).await,
    )?;
    h.exactly_one(&external_id).await
}

/// The provider holds `n` refunds of `payment`.
pub(crate) async fn ensure_payment_holds(
    h: &Harness,
    payment: &str,
    n: usize,
) -> Result<(), KitError> {
    let held = h.count(RefundsOf::Payment(payment)).await?;
    ensure!(
        held == n,
        "the provider holds {held} refunds of payment {payment}, expected {n}"
    );
    Ok(())
}
