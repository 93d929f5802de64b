//! PagoEfectivo's wire types (spec: "Authorization", "Create a refund", "The refund object",
//! "Query", "Notifications") and their conversion into Refundry's types. Field names are the
//! provider's (camelCase); unknown fields are ignored, as the spec requires of clients.

use refundry_sdk::convert::{self, ConvertError};
use refundry_sdk::time;
use refundry_sdk::{Money, Refund, RefundStatus};
use serde::{Deserialize, Serialize};

/// The `code` of every successful answer.
pub const SUCCESS_CODE: &str = "100";

/// Body of `POST /v1/authorizations`, in the spec's field order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationBody<'a> {
    /// The public access key.
    pub access_key: &'a str,
    /// The service id: a JSON number, not a string.
    pub id_service: u64,
    /// The host clock at the Lima offset, seconds precision (`2026-11-25T05:15:30-05:00`).
    pub date_request: &'a str,
    /// Lowercase hex SHA-256 of `idService.accessKey.secretKey.dateRequest`.
    pub hash_string: String,
}

/// Body of `POST /v1/refunds`, in the spec's field order. All values are strings; `reason` is
/// left out when the merchant gave none (null and absent fields are not signed either).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRefundBody<'a> {
    /// The original payment's CIP / operation number.
    pub transaction_id: &'a str,
    /// Major units with exactly two decimals (`"160.50"`).
    pub refund_amount: String,
    /// `PEN` or `USD`.
    pub currency: &'a str,
    /// The merchant's order id.
    pub transaction_code: &'a str,
    /// The merchant-unique refund id: the idempotency key.
    pub refund_id: &'a str,
    /// Free text, at most 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// The envelope of every successful answer: `{"code": "100", "message": ..., "data": ...}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// `"100"` on success.
    pub code: String,
    /// The payload.
    pub data: T,
}

/// `data` of a successful authorization.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenData {
    /// The bearer token.
    pub token: String,
    /// When the token was issued, Lima offset; only used to size the refresh margin.
    pub token_start: Option<String>,
    /// When the token expires, Lima offset.
    pub token_expires: String,
}

/// The refund object of every answer and notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundObject {
    /// The merchant's refund id (echoed).
    pub refund_id: Option<String>,
    /// PagoEfectivo's own id for the refund (`PE-RF-000123`).
    pub reference_id: String,
    /// The refunded payment.
    pub transaction_id: String,
    /// Major units, exactly two decimals.
    pub refund_amount: String,
    /// `PEN` or `USD`.
    pub currency: String,
    /// `pending`, `completed`, `rejected` or `reverted`.
    pub status: String,
    /// Why, in the provider's words (set when `rejected`).
    pub status_reason: Option<String>,
    /// Lima offset.
    pub date_creation: Option<String>,
    /// Lima offset.
    pub date_update: Option<String>,
}

/// Body of every error answer: `{"code": "132", "message": ..., "data": [{"field", "message"}]}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Three digits (`"132"`).
    pub code: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// Per-field details; kept loose (`null`, absent or another shape must not hide the code).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl ErrorBody {
    /// The message with its field details appended: `"... (refundAmount: maximo 100.00)"`.
    pub fn describe(&self) -> String {
        let details: Vec<String> = self
            .data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let field = item.get("field")?.as_str()?;
                let message = item.get("message").and_then(|m| m.as_str()).unwrap_or("");
                Some(format!("{field}: {message}"))
            })
            .collect();
        match (self.message.is_empty(), details.is_empty()) {
            (true, true) => format!("PagoEfectivo error {}", self.code),
            (false, true) => self.message.clone(),
            (true, false) => details.join("; "),
            (false, false) => format!("{} ({})", self.message, details.join("; ")),
        }
    }
}

/// The `data` of the list `GET /v1/refunds?dateFrom=..&dateTo=..` (spec: "List
/// (reconciliation)"): one page, oldest first.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundListPage {
    /// The refunds of this page; none past the last page.
    pub items: Vec<RefundObject>,
    /// This page's number, from 1.
    pub page: u32,
    /// How many pages the range has.
    pub total_pages: u32,
}

/// The first field of a notification: enough to tell whether the plugin handles its event type
/// before reading `data`, which another event type may shape differently.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHead {
    /// `refund.pending`, `refund.completed`, `refund.rejected` or `refund.reverted`.
    pub event_type: String,
}

/// Body of a notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    /// `refund.pending`, `refund.completed`, `refund.rejected` or `refund.reverted`.
    pub event_type: String,
    /// Unique per event; a redelivery has the same number.
    pub operation_number: String,
    /// The refund as of the event.
    pub data: RefundObject,
}

/// A refund status as PagoEfectivo spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `pending`
    Pending,
    /// `completed`
    Completed,
    /// `rejected`
    Rejected,
    /// `reverted`
    Reverted,
    /// Anything else, verbatim.
    Unknown(String),
}

impl Status {
    /// Reads the provider's status word.
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "rejected" => Self::Rejected,
            "reverted" => Self::Reverted,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// A notification's `eventType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    /// `refund.pending`
    Pending,
    /// `refund.completed`
    Completed,
    /// `refund.rejected`
    Rejected,
    /// `refund.reverted`
    Reverted,
    /// Anything else, verbatim.
    Unknown(String),
}

impl EventType {
    /// Reads the provider's event type.
    pub fn parse(s: &str) -> Self {
        match s {
            "refund.pending" => Self::Pending,
            "refund.completed" => Self::Completed,
            "refund.rejected" => Self::Rejected,
            "refund.reverted" => Self::Reverted,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// An error code from the spec's error table (plus `121` from "Query").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// `105` (401): bad credentials or hash.
    BadCredentials,
    /// `106` (401): token expired or unknown; authorize again once.
    TokenExpired,
    /// `107` (401): wrong `PE-Signature`.
    BadSignature,
    /// `108` (401): `dateRequest` more than 300 s from server time.
    ClockSkew,
    /// `109` (403): caller IP not on the merchant's allowlist.
    IpNotAllowed,
    /// `111` (400): missing or malformed field.
    InvalidField,
    /// `120` (404): original transaction not found.
    TransactionNotFound,
    /// `121` (404): refund not found.
    RefundNotFound,
    /// `131` (409): same `refundId`, different parameters.
    RefundIdConflict,
    /// `132` (422): above the refundable balance.
    AmountExceeded,
    /// `133` (422): currency differs from the original's.
    CurrencyMismatch,
    /// `134` (422): more than 180 days since payment.
    WindowExpired,
    /// `135` (422): original not paid.
    NotPaid,
    /// `136` (422): merchant balance cannot fund the refund.
    InsufficientBalance,
    /// `999` (500/503): provider fault.
    ProviderFault,
    /// A code the spec does not list, verbatim.
    Unknown(String),
}

impl ErrorCode {
    /// Reads the provider's error code.
    pub fn parse(code: &str) -> Self {
        match code {
            "105" => Self::BadCredentials,
            "106" => Self::TokenExpired,
            "107" => Self::BadSignature,
            "108" => Self::ClockSkew,
            "109" => Self::IpNotAllowed,
            "111" => Self::InvalidField,
            "120" => Self::TransactionNotFound,
            "121" => Self::RefundNotFound,
            "131" => Self::RefundIdConflict,
            "132" => Self::AmountExceeded,
            "133" => Self::CurrencyMismatch,
            "134" => Self::WindowExpired,
            "135" => Self::NotPaid,
            "136" => Self::InsufficientBalance,
            "999" => Self::ProviderFault,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl RefundObject {
    /// Converts into Refundry's refund: status mapped, amount in minor units, dates in UTC ms.
    pub fn into_refund(self) -> Result<Refund, ConvertError> {
        let status = match Status::parse(&self.status) {
            Status::Pending => RefundStatus::Pending,
            Status::Completed => RefundStatus::Processed,
            Status::Rejected => RefundStatus::Failed,
            Status::Reverted => RefundStatus::Reversed,
            Status::Unknown(status) => return Err(ConvertError::UnknownStatus { status }),
        };
        // Spec "Dates, money, currency": exactly two decimals, which is what PEN and USD have.
        let amount_minor = convert::amount("refundAmount", &self.refund_amount, &self.currency)?;
        Ok(Refund {
            created_at: time::parse_field("dateCreation", self.date_creation.as_deref())?,
            updated_at: time::parse_field("dateUpdate", self.date_update.as_deref())?,
            provider_refund_id: self.reference_id,
            external_refund_id: self.refund_id,
            original_transaction_id: self.transaction_id,
            amount: Money {
                amount_minor,
                currency: self.currency,
            },
            status,
            provider_status: self.status,
            failure_reason: self.status_reason,
        })
    }
}
