//! What a reconciliation run finds about one refund: a leaf of the crate, used by the runs
//! ([`crate::reconciliations`]) and by the outbound events that carry each finding
//! ([`crate::outbox`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a reconciliation run found about one refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The provider holds a refund the ledger does not (made in the provider's portal, or lost).
    MissingInLedger,
    /// The ledger holds a refund the provider does not (refunds the provider never acted on,
    /// failed without a provider refund id, are not looked for).
    MissingAtProvider,
    /// The statuses differ; applied to the ledger when the move is forward.
    StatusMismatch,
    /// The amounts differ. Reported only.
    AmountMismatch,
    /// The currencies differ. Reported only.
    CurrencyMismatch,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [FindingKind; 5] = [
        FindingKind::MissingInLedger,
        FindingKind::MissingAtProvider,
        FindingKind::StatusMismatch,
        FindingKind::AmountMismatch,
        FindingKind::CurrencyMismatch,
    ];

    /// The snake-case word used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingInLedger => "missing_in_ledger",
            FindingKind::MissingAtProvider => "missing_at_provider",
            FindingKind::StatusMismatch => "status_mismatch",
            FindingKind::AmountMismatch => "amount_mismatch",
            FindingKind::CurrencyMismatch => "currency_mismatch",
        }
    }

    /// Parses the snake-case word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// One side's view of a refund in a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingSide {
    /// Its status: Refundry's status word for both sides (the plugin maps the provider's own).
    pub status: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// One discrepancy between the provider and the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// What differs.
    pub kind: FindingKind,
    /// The ledger's refund id (`rf_...`), when the ledger holds the refund.
    pub refund_id: Option<String>,
    /// The gateway's refund id, when known.
    pub external_refund_id: Option<String>,
    /// The provider's refund id, when known.
    pub provider_refund_id: Option<String>,
    /// The refund as the ledger holds it; absent for `missing_in_ledger`.
    pub ledger: Option<FindingSide>,
    /// The refund as the provider holds it; absent for `missing_at_provider`.
    pub provider: Option<FindingSide>,
    /// Whether the run moved the ledger's refund to the provider's status (only a
    /// `status_mismatch` moving forward is applied).
    pub applied: bool,
    /// What was found, for people.
    pub detail: String,
}
