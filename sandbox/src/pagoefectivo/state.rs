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

/// All payments and refunds of one simulator.
#[derive(Debug)]
pub(crate) struct Ledger {
    payments: HashMap<String, Payment>,
    /// In creation order.
    refunds: Vec<Refund>,
    by_reference: HashMap<String, usize>,
    by_refund_id: HashMap<String, usize>,
    by_transaction: HashMap<String, Vec<usize>>,
    /// The number in the next `referenceId` (`PE-RF-<number>`, at least 6 digits).
    next_reference: u64,
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
        let payment = self
            .payments
            .get(&request.transaction_id)
            .ok_or_else(|| ApiError::TransactionNotFound(request.transaction_id.clone()))?;
        if payment.currency != request.currency {
            return Err(ApiError::CurrencyMismatch {
                given: request.currency.as_str(),
                original: payment.currency.as_str(),
            });
        }
        if !payment.paid {
            return Err(ApiError::NotPaid);
        }
        if now - payment.paid_at > REFUND_WINDOW {
            return Err(ApiError::WindowExpired);
        }
        let already_refunded: i64 = self
            .by_transaction
            .get(&payment.transaction_id)
            .into_iter()
            .flatten()
            .map(|&index| &self.refunds[index])
            .filter(|refund| refund.status != RefundStatus::Rejected)
            .map(|refund| refund.amount_cents)
            .sum();
        let available = payment.amount_cents - already_refunded;
        if request.amount_cents > available {
            return Err(ApiError::AmountAboveRefundable {
                requested: money::format_amount(request.amount_cents),
                available: money::format_amount(available.max(0)),
            });
        }
        if !balance_sufficient {
            return Err(ApiError::InsufficientBalance);
        }
        let reference_id = format!("PE-RF-{:06}", self.next_reference);
        self.next_reference += 1;
        let refund = Refund {
            refund_id: request.refund_id,
            reference_id,
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
        let index = self.refunds.len();
        self.by_reference.insert(refund.reference_id.clone(), index);
        self.by_refund_id.insert(refund.refund_id.clone(), index);
        self.by_transaction
            .entry(refund.transaction_id.clone())
            .or_default()
            .push(index);
        self.refunds.push(refund.clone());
        Ok(Created::New(refund))
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
