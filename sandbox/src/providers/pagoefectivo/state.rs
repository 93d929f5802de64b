//! The simulated provider's books: paid transactions, refunds and issued tokens, with the spec's
//! business rules for creating and moving refunds. In memory, per run; callers hold a lock only
//! for the duration of one call (never across an `.await`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::money::{self, Currency};

/// A `POST /v1/refunds` body that passed validation (the wire module reads it from a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateRefund {
    pub(crate) transaction_id: String,
    pub(crate) amount_cents: i64,
    pub(crate) currency: Currency,
    pub(crate) transaction_code: String,
    pub(crate) refund_id: String,
    pub(crate) reason: Option<String>,
}

/// How long after payment an original can be refunded (spec: `134` "more than 180 days since the
/// original was paid").
pub(crate) const REFUND_WINDOW: TimeDelta = TimeDelta::days(180);

/// A refund's status, as the spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RefundStatus {
    /// Accepted, not yet final.
    Pending,
    /// The customer was credited.
    Completed,
    /// Final: not credited.
    Rejected,
    /// Final: a completed credit was taken back.
    Reverted,
}

impl RefundStatus {
    /// Whether the spec allows moving from `self` to `to`: `pending` -> `completed` | `rejected`,
    /// `completed` -> `reverted`.
    pub(crate) fn can_move_to(self, to: RefundStatus) -> bool {
        use RefundStatus::{Completed, Pending, Rejected, Reverted};
        match (self, to) {
            (Pending, Completed | Rejected) | (Completed, Reverted) => true,
            (Pending, Pending | Reverted)
            | (Completed, Pending | Completed | Rejected)
            | (Rejected | Reverted, _) => false,
        }
    }

    /// The spec's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Completed => "completed",
            RefundStatus::Rejected => "rejected",
            RefundStatus::Reverted => "reverted",
        }
    }
}

/// An original payment, seeded through the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payment {
    pub(crate) transaction_id: String,
    pub(crate) amount_cents: i64,
    pub(crate) currency: Currency,
    pub(crate) paid_at: DateTime<Utc>,
    pub(crate) paid: bool,
}

/// A refund as the provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refund {
    pub(crate) refund_id: String,
    pub(crate) reference_id: String,
    pub(crate) transaction_id: String,
    pub(crate) transaction_code: String,
    pub(crate) amount_cents: i64,
    pub(crate) currency: Currency,
    /// Kept as the merchant sent it; the spec's refund object does not show it.
    pub(crate) reason: Option<String>,
    pub(crate) status: RefundStatus,
    pub(crate) status_reason: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// What a create call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// A new refund (201).
    New(Refund),
    /// A replay of an earlier create with the same `refundId` and parameters (200).
    Replay(Refund),
}

/// Why a status change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransitionError {
    /// No refund with that `referenceId`.
    #[error("refund {0:?} not found")]
    NotFound(String),
    /// The spec does not allow this move.
    #[error("cannot move refund from {from} to {to}")]
    Illegal {
        /// The current status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
}

/// A refund made by the merchant's staff in PagoEfectivo's back office, never through the API
/// (the control API's `POST /_sandbox/portal-refunds`). It follows the API's business rules but
/// has no idempotency: each one is a new refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortalRefund {
    pub(crate) transaction_id: String,
    pub(crate) amount_cents: i64,
    pub(crate) currency: Currency,
    pub(crate) transaction_code: String,
    /// `None`: the ledger names it `portal-<n>` (the refund object's `refundId` is never null).
    pub(crate) refund_id: Option<String>,
    pub(crate) reason: Option<String>,
    /// When the refund was made; also the time the business rules are judged at.
    pub(crate) created_at: DateTime<Utc>,
}

/// Why a portal refund was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PortalError {
    /// One of the API's business rules (`120`, `133`, `135`, `134`, `132`, `136`) or a
    /// `refundId` already in use (`131`).
    #[error(transparent)]
    Refused(ApiError),
    /// No refund can be made before the payment it refunds.
    #[error(
        "created_at {} is before the payment was made ({})",
        crate::time::rfc3339_seconds(*created_at),
        crate::time::rfc3339_seconds(*paid_at)
    )]
    BeforeOriginal {
        /// The refund's asked-for creation time.
        created_at: DateTime<Utc>,
        /// When the original was paid.
        paid_at: DateTime<Utc>,
    },
}

/// One page of [`Ledger::created_between`].
#[derive(Debug)]
pub(crate) struct Page<'a> {
    /// At most the page size, in list order; empty past the last page.
    pub(crate) refunds: Vec<&'a Refund>,
    /// The number of pages of the whole range; 0 when the range holds no refund.
    pub(crate) total_pages: u64,
}

/// Counts of refunds over the simulator's life, for `GET /_sandbox/stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefundCounts {
    /// Every refund made, through the API or the back office; a deleted refund stays counted (it
    /// was made).
    pub(crate) created: u64,
    /// Of `created`, those made in the back office.
    pub(crate) portal: u64,
    /// Refunds the provider lost (`DELETE /_sandbox/refunds/{referenceId}`).
    pub(crate) deleted: u64,
}

/// All payments and refunds of one simulator.
#[derive(Debug)]
pub(crate) struct Ledger {
    payments: HashMap<String, Payment>,
    /// In the order they were recorded (which is not creation order for portal refunds placed in
    /// the past).
    refunds: Vec<Refund>,
    by_reference: HashMap<String, usize>,
    by_refund_id: HashMap<String, usize>,
    by_transaction: HashMap<String, Vec<usize>>,
    /// The number in the next `referenceId` (`PE-RF-<number>`, at least 6 digits).
    next_reference: u64,
    /// The number in the next generated portal `refundId` (`portal-<n>`).
    next_portal: u64,
    counts: RefundCounts,
}

/// The list order (spec, "List (reconciliation)"): `dateCreation`, then `referenceId`. The time
/// counts to the second, as `dateCreation` shows it, so that two refunds of the same second are
/// ordered by the id a client can see, not by fractions it cannot.
fn list_key(refund: &Refund) -> (i64, &str) {
    (refund.created_at.timestamp(), &refund.reference_id)
}

impl Ledger {
    /// An empty ledger whose first refund is `PE-RF-<first_reference>` (zero-padded to 6 digits).
    pub(crate) fn new(first_reference: u64) -> Self {
        Self {
            payments: HashMap::new(),
            refunds: Vec::new(),
            by_reference: HashMap::new(),
            by_refund_id: HashMap::new(),
            by_transaction: HashMap::new(),
            next_reference: first_reference,
            next_portal: 1,
            counts: RefundCounts::default(),
        }
    }

    /// Adds or replaces a payment (its earlier refunds stay and still count).
    pub(crate) fn seed_payment(&mut self, payment: Payment) {
        self.payments
            .insert(payment.transaction_id.clone(), payment);
    }

    /// Creates a refund, applying the spec's checks in this order: replay or conflict by
    /// `refundId` (`131`), unknown transaction (`120`), currency (`133`), not paid (`135`),
    /// 180-day window (`134`), refundable balance (`132`), merchant balance (`136`, from
    /// `balance_sufficient`; no refund is made).
    pub(crate) fn create_refund(
        &mut self,
        request: CreateRefund,
        balance_sufficient: bool,
        now: DateTime<Utc>,
    ) -> Result<Created, ApiError> {
        if let Some(&index) = self.by_refund_id.get(&request.refund_id) {
            let existing = &self.refunds[index];
            let same = existing.transaction_id == request.transaction_id
                && existing.amount_cents == request.amount_cents
                && existing.currency == request.currency;
            return if same {
                Ok(Created::Replay(existing.clone()))
            } else {
                Err(ApiError::RefundIdConflict(request.refund_id))
            };
        }
        self.check_refundable(
            &request.transaction_id,
            request.amount_cents,
            request.currency,
            now,
            balance_sufficient,
        )?;
        let refund = Refund {
            refund_id: request.refund_id,
            reference_id: self.take_reference(),
            transaction_id: request.transaction_id,
            transaction_code: request.transaction_code,
            amount_cents: request.amount_cents,
            currency: request.currency,
            reason: request.reason,
            status: RefundStatus::Pending,
            status_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.insert(refund.clone());
        Ok(Created::New(refund))
    }

    /// Records a refund made in the back office, after the same business rules as an API create,
    /// judged at its `created_at`; a `refundId` already in use is `131` whatever the parameters
    /// (the back office does not replay).
    pub(crate) fn create_portal_refund(
        &mut self,
        request: PortalRefund,
        balance_sufficient: bool,
    ) -> Result<Refund, PortalError> {
        if let Some(refund_id) = &request.refund_id
            && self.by_refund_id.contains_key(refund_id)
        {
            return Err(PortalError::Refused(ApiError::RefundIdConflict(
                refund_id.clone(),
            )));
        }
        let payment = self.payments.get(&request.transaction_id).ok_or_else(|| {
            PortalError::Refused(ApiError::TransactionNotFound(
                request.transaction_id.clone(),
            ))
        })?;
        if request.created_at < payment.paid_at {
            return Err(PortalError::BeforeOriginal {
                created_at: request.created_at,
                paid_at: payment.paid_at,
            });
        }
        self.check_refundable(
            &request.transaction_id,
            request.amount_cents,
            request.currency,
            request.created_at,
            balance_sufficient,
        )
        .map_err(PortalError::Refused)?;
        let refund_id = match request.refund_id {
            Some(refund_id) => refund_id,
            None => self.take_portal_refund_id(),
        };
        let refund = Refund {
            refund_id,
            reference_id: self.take_reference(),
            transaction_id: request.transaction_id,
            transaction_code: request.transaction_code,
            amount_cents: request.amount_cents,
            currency: request.currency,
            reason: request.reason,
            status: RefundStatus::Pending,
            status_reason: None,
            created_at: request.created_at,
            updated_at: request.created_at,
        };
        self.insert(refund.clone());
        self.counts.portal += 1;
        Ok(refund)
    }

    /// The business rules of a new refund, in the spec's order: unknown transaction (`120`),
    /// currency (`133`), not paid (`135`), 180-day window judged at `at` (`134`), refundable
    /// balance (`132`), merchant balance (`136`).
    fn check_refundable(
        &self,
        transaction_id: &str,
        amount_cents: i64,
        currency: Currency,
        at: DateTime<Utc>,
        balance_sufficient: bool,
    ) -> Result<(), ApiError> {
        let payment = self
            .payments
            .get(transaction_id)
            .ok_or_else(|| ApiError::TransactionNotFound(transaction_id.to_owned()))?;
        if payment.currency != currency {
            return Err(ApiError::CurrencyMismatch {
                given: currency.as_str(),
                original: payment.currency.as_str(),
            });
        }
        if !payment.paid {
            return Err(ApiError::NotPaid);
        }
        if at - payment.paid_at > REFUND_WINDOW {
            return Err(ApiError::WindowExpired);
        }
        let already_refunded: i64 = self
            .by_transaction
            .get(transaction_id)
            .into_iter()
            .flatten()
            .map(|&index| &self.refunds[index])
            .filter(|refund| refund.status != RefundStatus::Rejected)
            .map(|refund| refund.amount_cents)
            .sum();
        let available = payment.amount_cents - already_refunded;
        if amount_cents > available {
            return Err(ApiError::AmountAboveRefundable {
                requested: money::format_amount(amount_cents),
                available: money::format_amount(available.max(0)),
            });
        }
        if !balance_sufficient {
            return Err(ApiError::InsufficientBalance);
        }
        Ok(())
    }

    /// The next `referenceId`.
    fn take_reference(&mut self) -> String {
        let reference_id = format!("PE-RF-{:06}", self.next_reference);
        self.next_reference += 1;
        reference_id
    }

    /// The next `portal-<n>` not already used as a `refundId` (a test may have chosen one).
    fn take_portal_refund_id(&mut self) -> String {
        loop {
            let refund_id = format!("portal-{}", self.next_portal);
            self.next_portal += 1;
            if !self.by_refund_id.contains_key(&refund_id) {
                return refund_id;
            }
        }
    }

    /// Stores a new refund and indexes it.
    fn insert(&mut self, refund: Refund) {
        let index = self.refunds.len();
        self.by_reference.insert(refund.reference_id.clone(), index);
        self.by_refund_id.insert(refund.refund_id.clone(), index);
        self.by_transaction
            .entry(refund.transaction_id.clone())
            .or_default()
            .push(index);
        self.refunds.push(refund);
        self.counts.created += 1;
    }

    /// Forgets a refund, as if the provider lost it: lookups, lists and the refundable balance no
    /// longer see it, and its `refundId` is free again. Gives the refund, `None` when unknown.
    pub(crate) fn delete(&mut self, reference_id: &str) -> Option<Refund> {
        let index = *self.by_reference.get(reference_id)?;
        let refund = self.refunds.remove(index);
        // Every later index moved down by one; rebuilding is simplest and the store is small.
        self.by_reference.clear();
        self.by_refund_id.clear();
        self.by_transaction.clear();
        for (index, kept) in self.refunds.iter().enumerate() {
            self.by_reference.insert(kept.reference_id.clone(), index);
            self.by_refund_id.insert(kept.refund_id.clone(), index);
            self.by_transaction
                .entry(kept.transaction_id.clone())
                .or_default()
                .push(index);
        }
        self.counts.deleted += 1;
        Some(refund)
    }

    /// Counts of refunds made, made in the back office, and deleted.
    pub(crate) fn counts(&self) -> RefundCounts {
        self.counts
    }

    /// Page `page` (from 1) of `page_size` refunds with `from <= created_at < to`, in list order
    /// ([`list_key`]). A page past the last is empty.
    pub(crate) fn created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: u64,
        page_size: usize,
    ) -> Page<'_> {
        // Whole seconds on both sides: `from` and `to` have no fractions, and a refund's time
        // counts to the second, as shown.
        let (from, to) = (from.timestamp(), to.timestamp());
        let mut matching: Vec<&Refund> = self
            .refunds
            .iter()
            .filter(|refund| (from..to).contains(&refund.created_at.timestamp()))
            .collect();
        matching.sort_by(|a, b| list_key(a).cmp(&list_key(b)));
        let total_pages = matching.len().div_ceil(page_size) as u64;
        let skip = usize::try_from(page.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .saturating_mul(page_size);
        let refunds = matching.into_iter().skip(skip).take(page_size).collect();
        Page {
            refunds,
            total_pages,
        }
    }

    /// The refund with this `referenceId`.
    pub(crate) fn refund(&self, reference_id: &str) -> Option<&Refund> {
        self.by_reference
            .get(reference_id)
            .map(|&index| &self.refunds[index])
    }

    /// The refunds with this `refundId` (at most one: a second create with it is a replay or a
    /// conflict).
    pub(crate) fn refunds_by_refund_id(&self, refund_id: &str) -> Vec<&Refund> {
        self.by_refund_id
            .get(refund_id)
            .map(|&index| &self.refunds[index])
            .into_iter()
            .collect()
    }

    /// Every refund, oldest first.
    pub(crate) fn refunds(&self) -> &[Refund] {
        &self.refunds
    }

    /// Moves a refund to `to` if the spec allows it; `status_reason` replaces the previous one
    /// (`None` clears it: a reason belongs to the status it came with).
    pub(crate) fn transition(
        &mut self,
        reference_id: &str,
        to: RefundStatus,
        status_reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Refund, TransitionError> {
        let index = *self
            .by_reference
            .get(reference_id)
            .ok_or_else(|| TransitionError::NotFound(reference_id.to_owned()))?;
        let refund = &mut self.refunds[index];
        if !refund.status.can_move_to(to) {
            return Err(TransitionError::Illegal {
                from: refund.status.as_str(),
                to: to.as_str(),
            });
        }
        refund.status = to;
        refund.status_reason = status_reason;
        // Never before creation, even if the wall clock stepped back.
        refund.updated_at = now.max(refund.created_at);
        Ok(refund.clone())
    }
}

/// The bearer tokens issued by `POST /v1/authorizations`.
///
/// Tokens are kept by their SHA-256 digest, so that looking one up does not compare the secret
/// itself byte by byte (a timing side channel would reveal a digest prefix, which is useless).
#[derive(Debug)]
pub(crate) struct Tokens {
    expiries: HashMap<[u8; 32], DateTime<Utc>>,
    lifetime: Duration,
}

impl Tokens {
    /// No tokens; new ones live `lifetime`.
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            expiries: HashMap::new(),
            lifetime,
        }
    }

    fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Sets the lifetime of tokens issued from now on.
    pub(crate) fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// Records `token`, issued at `now`, and gives its expiry (`now` + lifetime, saturating).
    /// Forgets expired tokens on the way.
    pub(crate) fn issue(&mut self, token: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        self.expiries.retain(|_, expires| now < *expires);
        let lifetime = TimeDelta::from_std(self.lifetime).unwrap_or(TimeDelta::MAX);
        let expires = now
            .checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.expiries.insert(Self::digest(token), expires);
        expires
    }

    /// Whether `token` was issued and has not expired at `now`.
    pub(crate) fn is_valid(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.expiries
            .get(&Self::digest(token))
            .is_some_and(|expires| now < *expires)
    }

    /// Expires every token; gives how many were still valid at `now`.
    pub(crate) fn expire_all(&mut self, now: DateTime<Utc>) -> usize {
        let live = self.expiries.values().filter(|e| now < **e).count();
        self.expiries.clear();
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(123);
        ledger.seed_payment(Payment {
            transaction_id: "81234567".into(),
            amount_cents: 50_000,
            currency: Currency::Pen,
            paid_at: now() - TimeDelta::days(1),
            paid: true,
        });
        ledger
    }

    fn request(refund_id: &str, amount_cents: i64) -> CreateRefund {
        CreateRefund {
            transaction_id: "81234567".into(),
            amount_cents,
            currency: Currency::Pen,
            transaction_code: "ORDER-991".into(),
            refund_id: refund_id.into(),
            reason: None,
        }
    }

    fn create(ledger: &mut Ledger, refund_id: &str, cents: i64) -> Result<Created, ApiError> {
        ledger.create_refund(request(refund_id, cents), true, now())
    }

    #[test]
    fn rejected_refunds_free_their_amount_and_others_do_not() {
        let mut ledger = ledger();
        let Ok(Created::New(first)) = create(&mut ledger, "a", 40_000) else {
            panic!("first refund refused");
        };
        assert_eq!(first.reference_id, "PE-RF-000123");
        assert!(matches!(
            create(&mut ledger, "b", 10_001),
            Err(ApiError::AmountAboveRefundable { .. })
        ));
        let to = |ledger: &mut Ledger, status| {
            ledger
                .transition(&first.reference_id, status, None, now())
                .unwrap()
        };
        to(&mut ledger, RefundStatus::Completed);
        to(&mut ledger, RefundStatus::Reverted);
        // Reverted is not rejected: still counts.
        assert!(create(&mut ledger, "b", 10_001).is_err());
        let Ok(Created::New(second)) = create(&mut ledger, "c", 10_000) else {
            panic!("exact remainder refused");
        };
        assert_eq!(second.reference_id, "PE-RF-000124");
        let rejected = ledger
            .transition(
                &second.reference_id,
                RefundStatus::Rejected,
                Some("cuenta cerrada".into()),
                now(),
            )
            .unwrap();
        assert_eq!(rejected.status_reason.as_deref(), Some("cuenta cerrada"));
        assert!(create(&mut ledger, "d", 10_000).is_ok());
    }

    #[test]
    fn insufficient_balance_makes_no_refund_and_comes_last() {
        let mut ledger = ledger();
        assert_eq!(
            ledger.create_refund(request("a", 1_000), false, now()),
            Err(ApiError::InsufficientBalance)
        );
        assert!(matches!(
            ledger.create_refund(request("a", 60_000), false, now()),
            Err(ApiError::AmountAboveRefundable { .. })
        ));
        assert!(ledger.refunds().is_empty());
        // The same refundId later, once the balance is there: created.
        assert!(matches!(
            create(&mut ledger, "a", 1_000),
            Ok(Created::New(_))
        ));
        // A replay is answered even while the balance is short.
        assert!(matches!(
            ledger.create_refund(request("a", 1_000), false, now()),
            Ok(Created::Replay(_))
        ));
    }

    fn portal(at: DateTime<Utc>, cents: i64, refund_id: Option<&str>) -> PortalRefund {
        PortalRefund {
            transaction_id: "81234567".into(),
            amount_cents: cents,
            currency: Currency::Pen,
            transaction_code: "81234567".into(),
            refund_id: refund_id.map(Into::into),
            reason: None,
            created_at: at,
        }
    }

    #[test]
    fn pages_follow_date_creation_then_reference_id() {
        let mut ledger = ledger();
        let at = |minutes| now() - TimeDelta::minutes(minutes);
        // Recorded out of time order; two in the same second.
        let late = ledger
            .create_portal_refund(portal(at(10), 1, None), true)
            .unwrap();
        let early_1 = ledger
            .create_portal_refund(portal(at(50), 1, None), true)
            .unwrap();
        let early_2 = ledger
            .create_portal_refund(portal(at(50), 1, None), true)
            .unwrap();
        ledger
            .create_portal_refund(portal(at(61), 1, None), true)
            .unwrap();
        assert_eq!(late.refund_id, "portal-1");
        let (from, to) = (at(60), at(0));
        let page = |n| {
            let page = ledger.created_between(from, to, n, 2);
            let ids: Vec<String> = page
                .refunds
                .iter()
                .map(|r| r.reference_id.clone())
                .collect();
            (ids, page.total_pages)
        };
        assert_eq!(
            page(1),
            (
                vec![early_1.reference_id.clone(), early_2.reference_id.clone()],
                2
            )
        );
        assert_eq!(page(2), (vec![late.reference_id.clone()], 2));
        assert_eq!(page(3), (vec![], 2));
        assert_eq!(page(u64::MAX), (vec![], 2));
        assert_eq!(ledger.created_between(to, to, 1, 50).total_pages, 0);
    }

    #[test]
    fn a_portal_refund_follows_the_rules_and_never_replays() {
        let mut ledger = ledger();
        assert!(matches!(
            ledger.create_portal_refund(portal(now() - TimeDelta::days(2), 1, None), true),
            Err(PortalError::BeforeOriginal { .. })
        ));
        assert!(matches!(
            ledger.create_portal_refund(portal(now(), 50_001, None), true),
            Err(PortalError::Refused(ApiError::AmountAboveRefundable { .. }))
        ));
        assert_eq!(
            ledger.create_portal_refund(portal(now(), 1, None), false),
            Err(PortalError::Refused(ApiError::InsufficientBalance))
        );
        ledger
            .create_portal_refund(portal(now(), 1, Some("portal-1")), true)
            .unwrap();
        // The generated id skips one a test chose.
        let generated = ledger
            .create_portal_refund(portal(now(), 1, None), true)
            .unwrap();
        assert_eq!(generated.refund_id, "portal-2");
        assert_eq!(
            ledger.create_portal_refund(portal(now(), 1, Some("portal-1")), true),
            Err(PortalError::Refused(ApiError::RefundIdConflict(
                "portal-1".into()
            )))
        );
        assert_eq!(
            ledger.counts(),
            RefundCounts {
                created: 2,
                portal: 2,
                deleted: 0
            }
        );
    }

    #[test]
    fn a_deleted_refund_frees_its_amount_and_refund_id() {
        let mut ledger = ledger();
        let Ok(Created::New(lost)) = create(&mut ledger, "a", 40_000) else {
            panic!("refund refused");
        };
        let Ok(Created::New(kept)) = create(&mut ledger, "b", 10_000) else {
            panic!("refund refused");
        };
        assert_eq!(ledger.delete(&lost.reference_id), Some(lost.clone()));
        assert_eq!(ledger.delete(&lost.reference_id), None);
        assert!(ledger.refund(&lost.reference_id).is_none());
        assert!(ledger.refunds_by_refund_id("a").is_empty());
        assert_eq!(ledger.refund(&kept.reference_id), Some(&kept));
        assert_eq!(ledger.refunds_by_refund_id("b"), [&kept]);
        assert!(matches!(
            create(&mut ledger, "a", 40_000),
            Ok(Created::New(_))
        ));
        assert_eq!(ledger.counts().deleted, 1);
    }

    #[test]
    fn transitions_follow_the_spec() {
        use RefundStatus::*;
        assert!(Pending.can_move_to(Completed));
        assert!(Pending.can_move_to(Rejected));
        assert!(Completed.can_move_to(Reverted));
        assert!(!Pending.can_move_to(Reverted));
        assert!(!Rejected.can_move_to(Completed));
        assert!(!Reverted.can_move_to(Completed));
        assert!(!Completed.can_move_to(Rejected));
        assert!(!Pending.can_move_to(Pending));
    }

    #[test]
    fn tokens_expire() {
        let mut tokens = Tokens::new(Duration::from_secs(7200));
        let expires = tokens.issue("t1", now());
        assert_eq!(expires - now(), TimeDelta::hours(2));
        assert!(tokens.is_valid("t1", now()));
        assert!(tokens.is_valid("t1", expires - TimeDelta::seconds(1)));
        assert!(!tokens.is_valid("t1", expires));
        assert!(!tokens.is_valid("t2", now()));
        tokens.set_lifetime(Duration::from_secs(1));
        tokens.issue("t2", now());
        assert!(!tokens.is_valid("t2", now() + TimeDelta::seconds(1)));
        assert!(tokens.is_valid("t1", now() + TimeDelta::seconds(1)));
        assert_eq!(tokens.expire_all(now()), 2);
        assert!(!tokens.is_valid("t1", now()));
        tokens.set_lifetime(Duration::MAX);
        assert_eq!(tokens.issue("t3", now()), DateTime::<Utc>::MAX_UTC);
    }
}
