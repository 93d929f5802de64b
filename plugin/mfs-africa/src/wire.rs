//! MFS Africa's wire types (spec: "Create a refund", "The refund object", "Query", "Webhooks")
//! and their conversion into Refundry's types. Field names are the provider's; unknown fields are
//! ignored, as the spec requires of clients.

use refundry_sdk::convert::{self, ConvertError};
use refundry_sdk::time;
use refundry_sdk::{Money, Refund, RefundStatus};
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/refunds`. Field order is the spec's example order; `reason` is left out
/// when the merchant gave none.
#[derive(Debug, Serialize)]
pub struct CreateRefundBody<'a> {
    /// The provider's id of the payment being refunded.
    pub original_transaction_id: &'a str,
    /// Major-unit decimal with exactly the currency's minor digits (`"1500.00"`, `"5000"`).
    pub refund_amount: String,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// Free text, at most 255 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The merchant's idempotency key.
    pub external_refund_id: &'a str,
}

/// The refund object of every answer and webhook.
#[derive(Debug, Deserialize)]
pub struct RefundObject {
    /// The provider's refund id (`rfnd_...`).
    pub refund_id: String,
    /// Echo of the merchant's id; optional on the wire.
    pub external_refund_id: Option<String>,
    /// The refunded payment.
    pub original_transaction_id: String,
    /// Major-unit decimal string.
    pub refund_amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `pending`, `processed`, `failed` or `reversed`.
    pub status: String,
    /// Set when `failed` (`wallet_closed`, `operator_rejected`).
    pub failure_reason: Option<String>,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

/// Answer of `GET /v1/refunds?external_refund_id=...`.
#[derive(Debug, Deserialize)]
pub struct RefundList {
    /// Matching refunds; empty when there is none.
    pub data: Vec<RefundObject>,
}

/// Answer of the list `GET /v1/refunds?created_from=..&created_to=..` (spec: "List
/// (reconciliation)"): one page, oldest first.
#[derive(Debug, Deserialize)]
pub struct RefundPage {
    /// The refunds of this page.
    pub data: Vec<RefundObject>,
    /// True when more refunds follow: ask again with `starting_after` = the last `refund_id`.
    pub has_more: bool,
}

/// The first fields of a webhook body: enough to tell whether the plugin handles its event type
/// before reading `data`, which another event type may shape differently.
#[derive(Debug, Deserialize)]
pub struct WebhookHead {
    /// Unique per event.
    pub event_id: String,
    /// `refund.status_changed` is the one type the spec defines.
    pub event_type: String,
}

/// Body of every error answer.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Code and message.
    pub error: ErrorDetail,
    /// The provider's trace id, for support tickets.
    pub trace_id: Option<String>,
}

/// The `error` member of an error answer.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code (`amount_exceeded`).
    pub code: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
}

/// Body of a webhook.
#[derive(Debug, Deserialize)]
pub struct WebhookBody {
    /// Unique per event; the same event redelivered has the same id.
    pub event_id: String,
    /// `refund.status_changed`.
    pub event_type: String,
    /// RFC 3339.
    pub occurred_at: Option<String>,
    /// The refund as of the event.
    pub data: RefundObject,
}

/// A refund status as MFS Africa spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `pending`
    Pending,
    /// `processed`
    Processed,
    /// `failed`
    Failed,
    /// `reversed`
    Reversed,
    /// Anything else, verbatim.
    Unknown(String),
}

impl Status {
    /// Reads the provider's status word.
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "processed" => Self::Processed,
            "failed" => Self::Failed,
            "reversed" => Self::Reversed,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// An error code from the spec's error table (plus `refund_not_found` from "Query").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: missing or malformed field.
    InvalidRequest,
    /// 401: unknown API key.
    InvalidApiKey,
    /// 401: signature mismatch.
    InvalidSignature,
    /// 401: `X-Timestamp` more than 300 s from server time.
    TimestampOutOfRange,
    /// 403: caller IP not on the merchant's allowlist.
    IpNotAllowed,
    /// 404: unknown original transaction.
    InvalidTransaction,
    /// 404: unknown refund id.
    RefundNotFound,
    /// 409: same external id, different parameters.
    DuplicateExternalRefundId,
    /// 422: amount above what remains refundable.
    AmountExceeded,
    /// 422: currency differs from the original's.
    CurrencyMismatch,
    /// 422: original not cleared yet.
    TransactionNotSettled,
    /// 422: more than 180 days after the original.
    RefundWindowExpired,
    /// 429: slow down (`Retry-After` seconds).
    RateLimited,
    /// 500: provider fault.
    InternalError,
    /// 502/503: provider unavailable.
    ServiceUnavailable,
    /// A code the spec does not list, verbatim.
    Unknown(String),
}

impl ErrorCode {
    /// Reads the provider's error code.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_api_key" => Self::InvalidApiKey,
            "invalid_signature" => Self::InvalidSignature,
            "timestamp_out_of_range" => Self::TimestampOutOfRange,
            "ip_not_allowed" => Self::IpNotAllowed,
            "invalid_transaction" => Self::InvalidTransaction,
            "refund_not_found" => Self::RefundNotFound,
            "duplicate_external_refund_id" => Self::DuplicateExternalRefundId,
            "amount_exceeded" => Self::AmountExceeded,
            "currency_mismatch" => Self::CurrencyMismatch,
            "transaction_not_settled" => Self::TransactionNotSettled,
            "refund_window_expired" => Self::RefundWindowExpired,
            "rate_limited" => Self::RateLimited,
            "internal_error" => Self::InternalError,
            "service_unavailable" => Self::ServiceUnavailable,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl RefundObject {
    /// Converts into Refundry's refund: status mapped, amount in minor units, times in UTC ms.
    pub fn into_refund(self) -> Result<Refund, ConvertError> {
        let status = match Status::parse(&self.status) {
            Status::Pending => RefundStatus::Pending,
            Status::Processed => RefundStatus::Processed,
            Status::Failed => RefundStatus::Failed,
            Status::Reversed => RefundStatus::Reversed,
            Status::Unknown(status) => return Err(ConvertError::UnknownStatus { status }),
        };
        let amount_minor = convert::amount("refund_amount", &self.refund_amount, &self.currency)?;
        Ok(Refund {
            created_at: time::parse_field("created_at", self.created_at.as_deref())?,
            updated_at: time::parse_field("updated_at", self.updated_at.as_deref())?,
            provider_refund_id: self.refund_id,
            external_refund_id: self.external_refund_id,
            original_transaction_id: self.original_transaction_id,
            amount: Money {
                amount_minor,
                currency: self.currency,
            },
            status,
            provider_status: self.status,
            failure_reason: self.failure_reason,
        })
    }
}
