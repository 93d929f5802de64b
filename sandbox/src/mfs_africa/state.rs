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

/// All transactions and refunds of one simulator.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    transactions: HashMap<String, Transaction>,
    /// In creation order.
    refunds: Vec<Refund>,
    by_refund_id: HashMap<String, usize>,
    by_external_id: HashMap<String, usize>,
    by_transaction: HashMap<String, Vec<usize>>,
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
        let transaction = self
            .transactions
            .get(&request.original_transaction_id)
            .ok_or_else(|| ApiError::InvalidTransaction(request.original_transaction_id.clone()))?;
        if transaction.currency != request.currency {
            return Err(ApiError::CurrencyMismatch {
                given: request.currency,
                original: transaction.currency.clone(),
            });
        }
        if !transaction.settled {
            return Err(ApiError::TransactionNotSettled);
        }
        if now - transaction.completed_at > REFUND_WINDOW {
            return Err(ApiError::RefundWindowExpired);
        }
        let already_refunded: i64 = self
            .by_transaction
            .get(&transaction.transaction_id)
            .into_iter()
            .flatten()
            .map(|&index| &self.refunds[index])
            .filter(|refund| refund.status != RefundStatus::Failed)
            .map(|refund| refund.amount_minor)
            .sum();
        let available = transaction.amount_minor - already_refunded;
        if request.amount_minor > available {
            return Err(ApiError::AmountExceeded {
                requested: money::format_amount(request.amount_minor, &request.currency),
                available: money::format_amount(available.max(0), &request.currency),
            });
        }
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
        let index = self.refunds.len();
        self.by_refund_id.insert(refund.refund_id.clone(), index);
        if let Some(external_id) = &refund.external_refund_id {
            self.by_external_id.insert(external_id.clone(), index);
        }
        self.by_transaction
            .entry(refund.original_transaction_id.clone())
            .or_default()
            .push(index);
        self.refunds.push(refund.clone());
        Ok(Created::New(refund))
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
