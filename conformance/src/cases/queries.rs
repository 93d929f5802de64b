//! Asking the provider: status queries by either id, and the range list, through the plugin and
//! through the service's reconciliation.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use refundry_ledger::{FindingKind, RunOutcome, Status, Trigger};
use refundry_runtime::{Refund, RefundLookup, RefundStatus, RefusalKind, TimeRange};

use super::refunds::PAYMENT;
use crate::check::{KitError, ensure, host, refund, refusal};
use crate::fixture::PortalRefund;
use crate::harness::Harness;

/// More than one page: the plugins ask for 100 refunds a page, the most both specs allow.
const LISTED: usize = 105;

/// A refund the provider moved is found by its provider id with its new status.
pub async fn status_query_by_provider_id(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("by-provider-id");
    let made = refund(
        "create",
        h.create(&h.request(&payment, &external_id, 2_500)).await,
    )?;
    h.sandbox()
        .move_refund(&made.provider_refund_id, RefundStatus::Processed)
        .await?;
    let lookup = RefundLookup::ProviderRefundId(made.provider_refund_id.clone());
    let found = refund("query by provider id", h.get(&lookup).await)?;
    ensure_same(&made, &found)?;
    ensure!(
        found.status == RefundStatus::Processed,
        "the provider processed the refund; the query says {:?}",
        found.status
    );
    h.exactly_one(&external_id).await
}

/// A refund is found by the external id it was made with (how a host resolves a lost answer),
/// and an external id never used is not found.
pub async fn status_query_by_external_id(h: &Harness) -> Result<(), KitError> {
    let payment = h.payment(PAYMENT).await?;
    let external_id = h.external_id("by-external-id");
    let made = refund(
        "create",
        h.create(&h.request(&payment, &external_id, 2_500)).await,
    )?;
    h.sandbox()
        .move_refund(&made.provider_refund_id, RefundStatus::Failed)
        .await?;
    let found = refund(
        "query by external id",
        h.get(&RefundLookup::ExternalRefundId(external_id.clone()))
            .await,
    )?;
    ensure_same(&made, &found)?;
    ensure!(
        found.status == RefundStatus::Failed,
        "the provider failed the refund; the query says {:?}",
        found.status
    );
    refusal(
        "query by an external id never used",
        h.get(&RefundLookup::ExternalRefundId(h.external_id("never-made")))
            .await,
        RefusalKind::NotFound,
    )?;
    h.exactly_one(&external_id).await
}

/// The provider's list of a range comes page by page, oldest first, each refund once: refunds
/// made in the portal and through the API alike.
pub async fn list_over_a_range_with_several_pages(h: &Harness) -> Result<(), KitError> {
    let now = Utc::now().trunc_subsecs(0);
    let payment = h.payment(PAYMENT * 10).await?;
    let portal = portal_refunds(h, &payment, now).await?;
    let external_id = h.external_id("listed");
    let ours = refund(
        "create",
        h.create(&h.request(&payment, &external_id, 100)).await,
    )?;
    let range = TimeRange {
        from: (now - Duration::hours(2)).timestamp_millis(),
        to: (now + Duration::minutes(1)).timestamp_millis(),
    };
    let plugin = h.providers().provider(h.provider()).map_err(host)?;
    let (mut listed, mut pages, mut cursor) = (Vec::<Refund>::new(), 0, None::<String>);
    loop {
        let page = plugin
            .logic
            .list_refunds(&range, cursor.as_deref(), None)
            .await
            .map_err(host)?
            .map_err(|e| KitError::Check(format!("list page {}: {e:?}", pages + 1)))?;
        pages += 1;
        listed.extend(page.refunds);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        ensure!(pages < 20, "the list did not end after {pages} pages");
    }
    ensure!(
        pages >= 2,
        "{} refunds came in {pages} page; the case needs several pages",
        listed.len()
    );
    let mut seen = HashSet::new();
    for r in &listed {
        ensure!(
            seen.insert(r.provider_refund_id.as_str()),
            "refund {} is listed twice",
            r.provider_refund_id
        );
    }
    for (id, amount) in portal.iter().chain([(&ours.provider_refund_id, &100)]) {
        let item = listed.iter().find(|r| &r.provider_refund_id == id);
        let Some(item) = item else {
            return Err(KitError::Check(format!("refund {id} is not listed")));
        };
        ensure!(
            item.amount.amount_minor == *amount && item.amount.currency == h.currencies().main,
            "refund {id} is listed with {:?}, made with {amount}",
            item.amount
        );
    }
    ensure!(
        listed.len() == LISTED + 1,
        "{} refunds listed, {} made",
        listed.len(),
        LISTED + 1
    );
    let created: Vec<Option<i64>> = listed.iter().map(|r| r.created_at).collect();
    ensure!(
        created.iter().all(Option::is_some) && created.windows(2).all(|w| w[0] <= w[1]),
        "the list is not oldest first by creation time: {created:?}"
    );
    h.exactly_one(&external_id).await
}

/// Reconciliation over a range of several pages finds every portal refund missing in the ledger,
/// applies the status the provider moved a refund to, and finds nothing else.
pub async fn reconcile_over_a_range_with_several_pages(h: &Harness) -> Result<(), KitError> {
    let now = Utc::now().trunc_subsecs(0);
    let payment = h.payment(PAYMENT * 10).await?;
    let portal = portal_refunds(h, &payment, now).await?;
    let moved_id = h.external_id("reconciled");
    let moved = h
        .create_in_service(h.new_refund(&payment, &moved_id, 100))
        .await?;
    let still_id = h.external_id("reconciled");
    let still = h
        .create_in_service(h.new_refund(&payment, &still_id, 100))
        .await?;
    let provider_id = moved.provider_refund_id.clone().unwrap_or_default();
    h.sandbox()
        .move_refund(&provider_id, RefundStatus::Processed)
        .await?;
    let (from, to) = (now - Duration::hours(2), now + Duration::minutes(1));
    let run = h
        .service()
        .reconcile(
            h.provider(),
            from.timestamp_millis(),
            to.timestamp_millis(),
            Trigger::Api,
        )
        .await
        .map_err(host)?;
    ensure!(
        run.outcome == RunOutcome::Discrepancies && run.error.is_none(),
        "the run ended {:?} ({:?})",
        run.outcome,
        run.error
    );
    ensure!(
        run.provider_refunds == (LISTED + 2) as i64 && run.ledger_refunds == 2,
        "the run compared {} provider refunds with {} in the ledger; {} and 2 were made",
        run.provider_refunds,
        run.ledger_refunds,
        LISTED + 2
    );
    let missing: HashSet<&str> = run
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::MissingInLedger)
        .filter_map(|f| f.provider_refund_id.as_deref())
        .collect();
    let expected: HashSet<&str> = portal.keys().map(String::as_str).collect();
    ensure!(
        missing == expected,
        "missing_in_ledger should name the {} portal refunds; it names {} ({} of them portal \
         refunds)",
        expected.len(),
        missing.len(),
        missing.intersection(&expected).count()
    );
    let others: Vec<_> = run
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::MissingInLedger)
        .collect();
    let applied = others.len() == 1
        && others[0].kind == FindingKind::StatusMismatch
        && others[0].refund_id.as_deref() == Some(moved.id.as_str())
        && others[0].applied;
    ensure!(
        applied,
        "besides the portal refunds, the run should find only the moved refund's status, \
         applied; it found {others:?}"
    );
    let after = h.ledger_refund(&moved.id).await?;
    ensure!(
        after.status == Status::Processed,
        "the reconciled refund is {:?} in the ledger",
        after.status
    );
    let unmoved = h.ledger_refund(&still.id).await?;
    ensure!(
        unmoved.status == Status::Pending,
        "the refund nobody moved is {:?} in the ledger",
        unmoved.status
    );
    h.exactly_one(&moved_id).await?;
    h.exactly_one(&still_id).await
}

/// [`LISTED`] portal refunds of `payment`, 30 s apart from an hour before `now`, each of another
/// amount; their provider ids and amounts.
async fn portal_refunds(
    h: &Harness,
    payment: &str,
    now: DateTime<Utc>,
) -> Result<HashMap<String, i64>, KitError> {
    let mut made = HashMap::new();
    for i in 0..LISTED {
        let amount_minor = 100 + i as i64;
        let refund = PortalRefund {
            payment_id: payment.to_owned(),
            amount_minor,
            currency: h.currencies().main.to_owned(),
            created_at: now - Duration::seconds(3_600 - i as i64 * 30),
        };
        let id = h.sandbox().portal_refund(&refund).await?;
        ensure!(
            made.insert(id.clone(), amount_minor).is_none(),
            "the portal gave id {id} twice"
        );
    }
    Ok(made)
}

/// The refund found is the refund made.
fn ensure_same(made: &Refund, found: &Refund) -> Result<(), KitError> {
    ensure!(
        found.provider_refund_id == made.provider_refund_id
            && found.amount == made.amount
            && found.original_transaction_id == made.original_transaction_id,
        "the query found {found:?}, the refund made is {made:?}"
    );
    Ok(())
}
