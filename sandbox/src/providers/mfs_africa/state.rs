//! The simulated provider's books: original transactions and refunds, and the spec's business
//! rules for creating and moving refunds. In memory, per run; callers hold the lock only for the
//! duration of one call (never across an `.await`).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::error::ApiError;
use super::money;

/// A create request that passed validation (the wire module reads it from a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateRefund {
    pub(crate) original_transaction_id: String,
    /// In minor units of `currency`.
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
    pub(crate) reason: Option<String>,
    pub(crate) external_refund_id: Option<String>,
}

/// How long after completion an original can be refunded (spec: "more than 180 days after the
/// original completed" is refused).
pub(crate) const REFUND_WINDOW: TimeDelta = TimeDelta::days(180);

/// A refund's status, as the spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RefundStatus {
    /// Accepted, not yet final.
    Pending,
    /// The customer was credited.
    Processed,
    /// Final: not credited.
    Failed,
    /// Final: the operator clawed a processed credit back.
    Reversed,
}

impl RefundStatus {
    /// Whether the spec allows moving from `self` to `to`.
    pub(crate) fn can_move_to(self, to: RefundStatus) -> bool {
        use RefundStatus::{Failed, Pending, Processed, Reversed};
        match (self, to) {
            (Pending, Processed | Failed) | (Processed, Reversed) => true,
            (Pending, Pending | Reversed)
            | (Processed, Pending | Processed | Failed)
            | (Failed | Reversed, _) => false,
        }
    }

    /// The spec's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Processed => "processed",
            RefundStatus::Failed => "failed",
            RefundStatus::Reversed => "reversed",
        }
    }
}

/// An original transaction, seeded through the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transaction {
    pub(crate) transaction_id: String,
    /// In minor units of `currency`.
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
    pub(crate) completed_at: DateTime<Utc>,
    pub(crate) settled: bool,
}

/// A refund as the provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refund {
    pub(crate) refund_id: String,
    pub(crate) external_refund_id: Option<String>,
    pub(crate) original_transaction_id: String,
    /// In minor units of `currency`.
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
    pub(crate) reason: Option<String>,
    pub(crate) status: RefundStatus,
    pub(crate) failure_reason: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    /// The `X-Plugin-Version` header of the request that created the refund (not in the spec:
    /// it tells plugin versions apart); `None` when that request had none.
    pub(crate) created_by_plugin_version: Option<String>,
}

/// What a create call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// A new refund (201).
    New(Refund),
    /// A replay of an earlier create with the same external id and parameters (200).
    Replay(Refund),
}

/// Why a status change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransitionError {
    /// No refund with that id.
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

/// A refund made by the merchant's staff in the provider's portal, never through the API (the
/// control API's `POST /_sandbox/portal-refunds`). It follows the API's business rules but has no
/// idempotency: each one is a new refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortalRefund {
    pub(crate) original_transaction_id: String,
    /// In minor units of `currency`.
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
    pub(crate) reason: Option<String>,
    /// `None` unless the test gives one: staff in the portal give no merchant-side id, so the
    /// refund object shows `null`, which is what a client meets for such refunds.
    pub(crate) external_refund_id: Option<String>,
    /// When the refund was made; also the time the business rules are judged at.
    pub(crate) created_at: DateTime<Utc>,
}

/// Why a portal refund was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PortalError {
    /// One of the API's business rules (unknown transaction, currency, settlement, window,
    /// amount) or an external id already in use.
    #[error(transparent)]
    Refused(ApiError),
    /// No refund can be made before the payment it refunds.
    #[error(
        "created_at {created_at} is before the original transaction completed ({completed_at})"
    )]
    BeforeOriginal {
        /// The refund's asked-for creation time.
        created_at: String,
        /// When the original completed.
        completed_at: String,
    },
}

/// A `starting_after` that names no refund the simulator holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("starting_after {0:?} is not a known refund_id")]
pub(crate) struct UnknownCursor(pub(crate) String);

/// One page of [`Ledger::created_between`].
#[derive(Debug)]
pub(crate) struct Page<'a> {
    /// At most the page size, in list order.
    pub(crate) refunds: Vec<&'a Refund>,
    /// Whether refunds of the range follow this page.
    pub(crate) has_more: bool,
}

/// Counts of refunds over the simulator's life, for `GET /_sandbox/stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefundCounts {
    /// Every refund made, through the API or the portal; a deleted refund stays counted (it was
    /// made).
    pub(crate) created: u64,
    /// Of `created`, those made in the portal.
    pub(crate) portal: u64,
    /// Refunds the provider lost (`DELETE /_sandbox/refunds/{id}`).
    pub(crate) deleted: u64,
}

/// All transactions and refunds of one simulator.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    transactions: HashMap<String, Transaction>,
    /// In the order they were recorded (which is not `created_at` order for portal refunds placed
    /// in the past).
    refunds: Vec<Refund>,
    by_refund_id: HashMap<String, usize>,
    by_external_id: HashMap<String, usize>,
    by_transaction: HashMap<String, Vec<usize>>,
    counts: RefundCounts,
}

/// The list order (spec, "List (reconciliation)"): `created_at`, then `refund_id`, ascending.
/// `created_at` counts to the second, as the refund object shows it, so that two refunds of the
/// same second are ordered by the id a client can see, not by fractions it cannot.
fn list_key(refund: &Refund) -> (i64, &str) {
    (refund.created_at.timestamp(), &refund.refund_id)
}

impl Ledger {
    /// Adds or replaces an original transaction (its earlier refunds stay and still count).
    pub(crate) fn seed_transaction(&mut self, transaction: Transaction) {
        self.transactions
            .insert(transaction.transaction_id.clone(), transaction);
    }

    /// Creates a refund, applying the spec's checks in this order: replay or duplicate by
    /// external id, unknown transaction, currency, settlement, refund window, remaining amount.
    /// `plugin_version` is kept on a new refund only (a replay leaves the refund as it was).
    pub(crate) fn create_refund(
        &mut self,
        request: CreateRefund,
        plugin_version: Option<String>,
        refund_id: String,
        now: DateTime<Utc>,
    ) -> Result<Created, ApiError> {
        if let Some(external_id) = &request.external_refund_id
            && let Some(&index) = self.by_external_id.get(external_id)
        {
            let existing = &self.refunds[index];
            let same = existing.original_transaction_id == request.original_transaction_id
                && existing.amount_minor == request.amount_minor
                && existing.currency == request.currency;
            return if same {
                Ok(Created::Replay(existing.clone()))
            } else {
                Err(ApiError::DuplicateExternalRefundId(external_id.clone()))
            };
        }
        self.check_refundable(
            &request.original_transaction_id,
            request.amount_minor,
            &request.currency,
            now,
        )?;
        let refund = Refund {
            refund_id,
            external_refund_id: request.external_refund_id,
            original_transaction_id: request.original_transaction_id,
            amount_minor: request.amount_minor,
            currency: request.currency,
            reason: request.reason,
            status: RefundStatus::Pending,
            failure_reason: None,
            created_at: now,
            updated_at: now,
            created_by_plugin_version: plugin_version,
        };
        self.insert(refund.clone());
        Ok(Created::New(refund))
    }

    /// Records a refund made in the portal, after the same business rules as an API create,
    /// judged at its `created_at`; an external id already in use is
    /// `duplicate_external_refund_id` whatever the parameters (the portal does not replay).
    pub(crate) fn create_portal_refund(
        &mut self,
        request: PortalRefund,
        refund_id: String,
    ) -> Result<Refund, PortalError> {
        if let Some(external_id) = &request.external_refund_id
            && self.by_external_id.contains_key(external_id)
        {
            return Err(PortalError::Refused(ApiError::DuplicateExternalRefundId(
                external_id.clone(),
            )));
        }
        let transaction = self
            .transactions
            .get(&request.original_transaction_id)
            .ok_or_else(|| {
                PortalError::Refused(ApiError::InvalidTransaction(
                    request.original_transaction_id.clone(),
                ))
            })?;
        if request.created_at < transaction.completed_at {
            return Err(PortalError::BeforeOriginal {
                created_at: crate::time::rfc3339_seconds(request.created_at),
                completed_at: crate::time::rfc3339_seconds(transaction.completed_at),
            });
        }
        self.check_refundable(
            &request.original_transaction_id,
            request.amount_minor,
            &request.currency,
            request.created_at,
        )
        .map_err(PortalError::Refused)?;
        let refund = Refund {
            refund_id,
            external_refund_id: request.external_refund_id,
            original_transaction_id: request.original_transaction_id,
            amount_minor: request.amount_minor,
            currency: request.currency,
            reason: request.reason,
            status: RefundStatus::Pending,
            failure_reason: None,
            created_at: request.created_at,
            updated_at: request.created_at,
            created_by_plugin_version: None,
        };
        self.insert(refund.clone());
        self.counts.portal += 1;
        Ok(refund)
    }

    /// The business rules of a new refund, in the spec's order: unknown transaction, currency,
    /// settlement, refund window (judged at `at`), remaining amount.
    fn check_refundable(
        &self,
        transaction_id: &str,
        amount_minor: i64,
        currency: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let transaction = self
            .transactions
            .get(transaction_id)
            .ok_or_else(|| ApiError::InvalidTransaction(transaction_id.to_owned()))?;
        if transaction.currency != currency {
            return Err(ApiError::CurrencyMismatch {
                given: currency.to_owned(),
                original: transaction.currency.clone(),
            });
        }
        if !transaction.settled {
            return Err(ApiError::TransactionNotSettled);
        }
        if at - transaction.completed_at > REFUND_WINDOW {
            return Err(ApiError::RefundWindowExpired);
        }
        let already_refunded: i64 = self
            .by_transaction
            .get(transaction_id)
            .into_iter()
            .flatten()
            .map(|&index| &self.refunds[index])
            .filter(|refund| refund.status != RefundStatus::Failed)
            .map(|refund| refund.amount_minor)
            .sum();
        let available = transaction.amount_minor - already_refunded;
        if amount_minor > available {
            return Err(ApiError::AmountExceeded {
                requested: money::format_amount(amount_minor, currency),
                available: money::format_amount(available.max(0), currency),
            });
        }
        Ok(())
    }

    /// Stores a new refund and indexes it.
    fn insert(&mut self, refund: Refund) {
        let index = self.refunds.len();
        self.by_refund_id.insert(refund.refund_id.clone(), index);
        if let Some(external_id) = &refund.external_refund_id {
            self.by_external_id.insert(external_id.clone(), index);
        }
        self.by_transaction
            .entry(refund.original_transaction_id.clone())
            .or_default()
            .push(index);
        self.refunds.push(refund);
        self.counts.created += 1;
    }

    /// Forgets a refund, as if the provider lost it: lookups, lists and the refundable balance no
    /// longer see it, and its external id is free again. Gives the refund, `None` when unknown.
    pub(crate) fn delete(&mut self, refund_id: &str) -> Option<Refund> {
        let index = *self.by_refund_id.get(refund_id)?;
        let refund = self.refunds.remove(index);
        // Every later index moved down by one; rebuilding is simplest and the store is small.
        self.by_refund_id.clear();
        self.by_external_id.clear();
        self.by_transaction.clear();
        for (index, kept) in self.refunds.iter().enumerate() {
            self.by_refund_id.insert(kept.refund_id.clone(), index);
            if let Some(external_id) = &kept.external_refund_id {
                self.by_external_id.insert(external_id.clone(), index);
            }
            self.by_transaction
                .entry(kept.original_transaction_id.clone())
                .or_default()
                .push(index);
        }
        self.counts.deleted += 1;
        Some(refund)
    }

    /// Counts of refunds made, made in the portal, and deleted.
    pub(crate) fn counts(&self) -> RefundCounts {
        self.counts
    }

    /// A page of the refunds with `from <= created_at < to`, in list order ([`list_key`]), at
    /// most `limit`, after the refund `starting_after` when given. The cursor is that refund's
    /// place in the list order, so it works even when it lies outside the range; an id the
    /// simulator does not hold (never made, or deleted since) is [`UnknownCursor`].
    pub(crate) fn created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<Page<'_>, UnknownCursor> {
        let after = match starting_after {
            None => None,
            Some(id) => Some(list_key(
                self.refund(id)
                    .ok_or_else(|| UnknownCursor(id.to_owned()))?,
            )),
        };
        // Whole seconds on both sides: `from` and `to` have no fractions, and a refund's time
        // counts to the second, as shown.
        let (from, to) = (from.timestamp(), to.timestamp());
        let mut matching: Vec<&Refund> = self
            .refunds
            .iter()
            .filter(|refund| (from..to).contains(&refund.created_at.timestamp()))
            .filter(|refund| after.is_none_or(|after| list_key(refund) > after))
            .collect();
        matching.sort_by(|a, b| list_key(a).cmp(&list_key(b)));
        let has_more = matching.len() > limit;
        matching.truncate(limit);
        Ok(Page {
            refunds: matching,
            has_more,
        })
    }

    /// The refund with this provider id.
    pub(crate) fn refund(&self, refund_id: &str) -> Option<&Refund> {
        self.by_refund_id
            .get(refund_id)
            .map(|&index| &self.refunds[index])
    }

    /// The refunds with this external id (at most one: a second create with it is a replay or a
    /// conflict).
    pub(crate) fn refunds_by_external_id(&self, external_id: &str) -> Vec<&Refund> {
        self.by_external_id
            .get(external_id)
            .map(|&index| &self.refunds[index])
            .into_iter()
            .collect()
    }

    /// Every refund, oldest first.
    pub(crate) fn refunds(&self) -> &[Refund] {
        &self.refunds
    }

    /// Moves a refund to `to` if the spec allows it. `failure_reason` is stored only for `failed`.
    pub(crate) fn transition(
        &mut self,
        refund_id: &str,
        to: RefundStatus,
        failure_reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Refund, TransitionError> {
        let index = *self
            .by_refund_id
            .get(refund_id)
            .ok_or_else(|| TransitionError::NotFound(refund_id.to_owned()))?;
        let refund = &mut self.refunds[index];
        if !refund.status.can_move_to(to) {
            return Err(TransitionError::Illegal {
                from: refund.status.as_str(),
                to: to.as_str(),
            });
        }
        refund.status = to;
        if to == RefundStatus::Failed {
            refund.failure_reason = failure_reason;
        }
        // Never before creation, even if the wall clock stepped back.
        refund.updated_at = now.max(refund.created_at);
        Ok(refund.clone())
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
        let mut ledger = Ledger::default();
        ledger.seed_transaction(Transaction {
            transaction_id: "txn_1".into(),
            amount_minor: 500_000,
            currency: "KES".into(),
            completed_at: now() - TimeDelta::days(1),
            settled: true,
        });
        ledger
    }

    fn request(external: &str, amount_minor: i64) -> CreateRefund {
        CreateRefund {
            original_transaction_id: "txn_1".into(),
            amount_minor,
            currency: "KES".into(),
            reason: None,
            external_refund_id: Some(external.into()),
        }
    }

    #[test]
    fn failed_refunds_free_their_amount_and_others_do_not() {
        let mut ledger = ledger();
        let Ok(Created::New(first)) =
            ledger.create_refund(request("a", 400_000), None, "r1".into(), now())
        else {
            panic!("first refund refused");
        };
        assert!(matches!(
            ledger.create_refund(request("b", 100_001), None, "r2".into(), now()),
            Err(ApiError::AmountExceeded { .. })
        ));
        ledger
            .transition(&first.refund_id, RefundStatus::Processed, None, now())
            .unwrap();
        ledger
            .transition(&first.refund_id, RefundStatus::Reversed, None, now())
            .unwrap();
        // Reversed is not failed: still counts.
        assert!(
            ledger
                .create_refund(request("b", 100_001), None, "r2".into(), now())
                .is_err()
        );
        let Ok(Created::New(second)) =
            ledger.create_refund(request("c", 100_000), None, "r3".into(), now())
        else {
            panic!("exact remainder refused");
        };
        ledger
            .transition(
                &second.refund_id,
                RefundStatus::Failed,
                Some("wallet_closed".into()),
                now(),
            )
            .unwrap();
        assert!(
            ledger
                .create_refund(request("d", 100_000), None, "r4".into(), now())
                .is_ok()
        );
    }

    #[test]
    fn a_refund_keeps_the_plugin_version_of_its_create() {
        let mut ledger = ledger();
        let Ok(Created::New(made)) =
            ledger.create_refund(request("a", 100), Some("0.2.0".into()), "r1".into(), now())
        else {
            panic!("refund refused");
        };
        assert_eq!(made.created_by_plugin_version.as_deref(), Some("0.2.0"));
        let Ok(Created::Replay(replayed)) =
            ledger.create_refund(request("a", 100), None, "r2".into(), now())
        else {
            panic!("replay refused");
        };
        assert_eq!(replayed, made);
        ledger
            .create_refund(request("b", 100), None, "r3".into(), now())
            .unwrap();
        let versions: Vec<_> = ledger
            .refunds()
            .iter()
            .map(|r| r.created_by_plugin_version.as_deref())
            .collect();
        assert_eq!(versions, [Some("0.2.0"), None]);
    }

    fn portal_at(ledger: &mut Ledger, id: &str, at: &str, amount_minor: i64) -> Refund {
        let created_at = DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        ledger
            .create_portal_refund(
                PortalRefund {
                    original_transaction_id: "txn_1".into(),
                    amount_minor,
                    currency: "KES".into(),
                    reason: None,
                    external_refund_id: None,
                    created_at,
                },
                id.into(),
            )
            .unwrap()
    }

    fn page_ids(page: &Page<'_>) -> Vec<String> {
        page.refunds.iter().map(|r| r.refund_id.clone()).collect()
    }

    #[test]
    fn pages_follow_created_at_then_refund_id_after_the_cursor() {
        let mut ledger = ledger();
        portal_at(&mut ledger, "r_b", "2026-11-25T09:00:00Z", 1);
        portal_at(&mut ledger, "r_a", "2026-11-25T09:00:00Z", 1);
        portal_at(&mut ledger, "r_0", "2026-11-25T08:00:00Z", 1);
        portal_at(&mut ledger, "r_end", "2026-11-25T09:30:00Z", 1);
        let from = now() - TimeDelta::hours(2);
        let to = now() - TimeDelta::minutes(30);
        let first = ledger.created_between(from, to, 2, None).unwrap();
        assert_eq!(page_ids(&first), ["r_0", "r_a"]);
        assert!(first.has_more);
        let second = ledger.created_between(from, to, 2, Some("r_a")).unwrap();
        assert_eq!(page_ids(&second), ["r_b"]);
        assert!(!second.has_more);
        assert_eq!(
            ledger
                .created_between(from, to, 2, Some("r_x"))
                .unwrap_err(),
            UnknownCursor("r_x".into())
        );
    }

    #[test]
    fn a_portal_refund_is_judged_at_its_creation_time() {
        let mut ledger = ledger();
        let request = |at: DateTime<Utc>, amount_minor| PortalRefund {
            original_transaction_id: "txn_1".into(),
            amount_minor,
            currency: "KES".into(),
            reason: None,
            external_refund_id: None,
            created_at: at,
        };
        assert!(matches!(
            ledger.create_portal_refund(request(now() - TimeDelta::days(2), 1), "r1".into()),
            Err(PortalError::BeforeOriginal { .. })
        ));
        assert_eq!(
            ledger.create_portal_refund(request(now(), 500_001), "r1".into()),
            Err(PortalError::Refused(ApiError::AmountExceeded {
                requested: "5000.01".into(),
                available: "5000.00".into()
            }))
        );
        let made = ledger
            .create_portal_refund(request(now() - TimeDelta::hours(1), 500_000), "r1".into())
            .unwrap();
        assert_eq!(made.created_at, now() - TimeDelta::hours(1));
        assert_eq!(made.external_refund_id, None);
        assert_eq!(
            ledger.counts(),
            RefundCounts {
                created: 1,
                portal: 1,
                deleted: 0
            }
        );
    }

    #[test]
    fn a_deleted_refund_frees_its_amount_and_external_id() {
        let mut ledger = ledger();
        let Ok(Created::New(lost)) =
            ledger.create_refund(request("a", 400_000), None, "r1".into(), now())
        else {
            panic!("refund refused");
        };
        ledger
            .create_refund(request("b", 100_000), None, "r2".into(), now())
            .unwrap();
        assert_eq!(ledger.delete(&lost.refund_id), Some(lost.clone()));
        assert_eq!(ledger.delete(&lost.refund_id), None);
        assert!(ledger.refund("r1").is_none());
        assert!(ledger.refunds_by_external_id("a").is_empty());
        // The survivor is still found through every index after the rebuild.
        assert_eq!(ledger.refund("r2").unwrap().refund_id, "r2");
        assert_eq!(ledger.refunds_by_external_id("b").len(), 1);
        assert!(matches!(
            ledger.create_refund(request("a", 400_000), None, "r3".into(), now()),
            Ok(Created::New(_))
        ));
        assert_eq!(ledger.counts().created, 3);
        assert_eq!(ledger.counts().deleted, 1);
    }

    #[test]
    fn transitions_follow_the_spec() {
        use RefundStatus::*;
        assert!(Pending.can_move_to(Processed));
        assert!(Pending.can_move_to(Failed));
        assert!(Processed.can_move_to(Reversed));
        assert!(!Pending.can_move_to(Reversed));
        assert!(!Failed.can_move_to(Processed));
        assert!(!Reversed.can_move_to(Processed));
        assert!(!Processed.can_move_to(Failed));
    }
}
