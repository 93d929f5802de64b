//! The ledger's records: refunds as Refundry knows them, their history, and list queries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A refund's status in Refundry: the contract's four, plus `unknown` (the host does not know
/// whether the provider received the request; the janitor finds out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted by the provider, not final.
    Pending,
    /// Money returned to the payer. Final, except for a later reversal.
    Processed,
    /// Refused or failed. Final.
    Failed,
    /// Processed, then reversed by the provider. Final.
    Reversed,
    /// Outcome not known yet (answer lost, or written but not yet sent before a crash).
    Unknown,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Processed,
        Status::Failed,
        Status::Reversed,
        Status::Unknown,
    ];

    /// The lower-case word used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processed => "processed",
            Status::Failed => "failed",
            Status::Reversed => "reversed",
            Status::Unknown => "unknown",
        }
    }

    /// Parses the lower-case word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// Whether the refund is settled: no status but a reversal can follow.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Processed | Status::Failed | Status::Reversed)
    }

    /// Whether the janitor keeps checking a refund in this status: until it is final, and a
    /// processed one for its reversal window (a reversal a lost webhook never told of is found).
    pub fn is_watched(self) -> bool {
        matches!(self, Status::Pending | Status::Unknown | Status::Processed)
    }

    /// Whether a refund may move from `self` to `to`. Status only moves forward:
    /// pending -> processed | failed, processed -> reversed; `unknown` (a host-level status)
    /// resolves to anything the provider says.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Unknown, Pending | Processed | Failed | Reversed)
                | (Pending, Processed | Failed)
                | (Processed, Reversed)
        )
    }
}

impl From<refundry_runtime::bindings::types::RefundStatus> for Status {
    fn from(s: refundry_runtime::bindings::types::RefundStatus) -> Self {
        use refundry_runtime::bindings::types::RefundStatus as S;
        match s {
            S::Pending => Status::Pending,
            S::Processed => Status::Processed,
            S::Failed => Status::Failed,
            S::Reversed => Status::Reversed,
        }
    }
}

/// Why a refund failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    /// Refundry's code: a refusal kind in snake case (`amount_exceeded`, `invalid_transaction`,
    /// ...), or `provider_failed` when the provider failed it later. (`provider_unavailable` and
    /// `plugin_error` name why nothing was sent in a 503 answer; only a ledger written by an
    /// earlier version has refunds failed with them.)
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The provider's own error code, when it gave one.
    pub provider_code: Option<String>,
}

/// What the first answer to a refund's creation was; a replay of the same request gets it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider took the refund (HTTP 201).
    Created,
    /// Refused, by a pre-check or by the provider (HTTP 422).
    Refused,
    /// The outcome is not known yet (HTTP 202).
    Unknown,
    /// Nothing reached a provider that could have acted on it (HTTP 503): rate limited or no
    /// connection through every retry, or the host could not run the plugin. Never stored as a
    /// first answer (the same key sends the request again); a ledger written by an earlier
    /// version may hold it with a `failed` refund.
    Unavailable,
    /// The plugin failed before sending anything (HTTP 500). Only in ledgers written by an
    /// earlier version, which recorded such refunds as failed.
    PluginFailed,
}

impl Outcome {
    /// The word stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Refused => "refused",
            Outcome::Unknown => "unknown",
            Outcome::Unavailable => "unavailable",
            Outcome::PluginFailed => "plugin_failed",
        }
    }

    /// Parses the stored word.
    pub fn parse(word: &str) -> Option<Self> {
        [
            Outcome::Created,
            Outcome::Refused,
            Outcome::Unknown,
            Outcome::Unavailable,
            Outcome::PluginFailed,
        ]
        .into_iter()
        .find(|o| o.as_str() == word)
    }

    /// The outcome of a provider answer that names the refund in `status` (to a create
    /// request, or to a check of one never answered): refused when it failed, else created.
    pub fn of_answer(status: Status) -> Self {
        if status == Status::Failed {
            Outcome::Refused
        } else {
            Outcome::Created
        }
    }

    /// The HTTP status the REST API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Outcome::Created => 201,
            Outcome::Refused => 422,
            Outcome::Unknown => 202,
            Outcome::Unavailable => 503,
            Outcome::PluginFailed => 500,
        }
    }
}

/// A refund as the ledger keeps it (the REST API's refund object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundRecord {
    /// Refundry's id (`rf_` + a time-ordered UUID).
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Version of the plugin that created it.
    pub plugin_version: String,
    /// SHA-256 of that plugin's component (`native` for a plugin linked into the host).
    pub plugin_sha256: String,
    /// The gateway's refund id: with `provider`, the idempotency key.
    pub external_refund_id: String,
    /// The payment being refunded, at the provider.
    pub original_transaction_id: String,
    /// Amount in minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Why, as given by the gateway.
    pub reason: Option<String>,
    /// The merchant's order id, for providers that need it.
    pub order_id: Option<String>,
    /// Current status.
    pub status: Status,
    /// The provider's refund id, once known.
    pub provider_refund_id: Option<String>,
    /// The provider's own status word, once known.
    pub provider_status: Option<String>,
    /// Why it failed, when it did.
    pub failure: Option<Failure>,
    /// When Refundry received it.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Where a status change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The create request (the provider's answer to it).
    Api,
    /// A provider webhook.
    Webhook,
    /// The janitor's status check.
    Janitor,
    /// A reconciliation run: the provider's own list of refunds disagreed with the ledger.
    Reconcile,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 4] = [
        Source::Api,
        Source::Webhook,
        Source::Janitor,
        Source::Reconcile,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Webhook => "webhook",
            Source::Janitor => "janitor",
            Source::Reconcile => "reconcile",
        }
    }

    /// Parses the stored word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// One entry of a refund's append-only history: every status report, applied or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Where the report came from.
    pub source: Source,
    /// Status before (absent for the first entry).
    pub from: Option<Status>,
    /// Status reported.
    pub to: Status,
    /// Whether it moved the refund (a late, duplicate or backwards report is kept, not applied).
    pub applied: bool,
    /// The provider's status word, when the report came from the provider.
    pub provider_status: Option<String>,
    /// Anything else worth keeping (webhook event id, error).
    pub detail: Option<String>,
    /// The plugin version that produced the report, when a plugin did.
    pub plugin_version: Option<String>,
}

/// A refund with its history (`GET /v1/refunds/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundDetail {
    /// The refund.
    #[serde(flatten)]
    pub refund: RefundRecord,
    /// Every status report, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// A selection of refunds (`GET /v1/refunds`, `refundry refund list`, `refundry export`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this provider's.
    pub provider: Option<String>,
    /// Only in this status.
    pub status: Option<Status>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
    /// At most this many (the caller bounds it).
    pub limit: usize,
    /// Continue after this refund id (the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of refunds, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page {
    /// The refunds.
    pub refunds: Vec<RefundRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// One provider HTTP exchange in the ledger, linked to its refund (`GET /v1/refunds/{id}/exchanges`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExchangeRecord {
    /// The refund it was made for (absent for a webhook's or an unlinked operation).
    pub refund_id: Option<String>,
    /// Provider id.
    pub provider: String,
    /// The plugin operation that made it (`create-refund`, `get-refund`).
    pub operation: String,
    /// The exchange, redacted.
    #[serde(flatten)]
    pub exchange: crate::exchange::Exchange,
}
