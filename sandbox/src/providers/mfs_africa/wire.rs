//! Wire types of the MFS Africa API: the create request (validated by hand, so that every problem
//! becomes the spec's `invalid_request` with a useful message), the refund object and the webhook
//! body.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::money;
use super::state::{CreateRefund, Refund, RefundStatus};
use crate::time::rfc3339_seconds;

/// The longest `reason` the spec allows, in characters.
const MAX_REASON_CHARS: usize = 255;
/// The longest `external_refund_id` the spec allows.
const MAX_EXTERNAL_ID_LEN: usize = 64;

impl CreateRefund {
    /// Validates a `POST /v1/refunds` body. Unknown fields are ignored (the spec asks clients to
    /// ignore unknown fields; the sandbox is as tolerant in the other direction).
    pub(crate) fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::InvalidRequest(format!("body is not valid JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(invalid("body must be a JSON object"));
        };
        let original_transaction_id = required_string(&fields, "original_transaction_id")?;
        if original_transaction_id.is_empty() {
            return Err(invalid("original_transaction_id must not be empty"));
        }
        let currency = required_string(&fields, "currency")?;
        let refund_amount = required_string(&fields, "refund_amount")?;
        let amount_minor = money::parse_amount(&refund_amount, &currency)
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
        let reason = optional_string(&fields, "reason")?;
        if let Some(reason) = &reason
            && reason.chars().count() > MAX_REASON_CHARS
        {
            return Err(invalid("reason must be at most 255 characters"));
        }
        let external_refund_id = optional_string(&fields, "external_refund_id")?;
        if let Some(id) = &external_refund_id
            && !is_valid_external_id(id)
        {
            return Err(invalid(
                "external_refund_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        Ok(Self {
            original_transaction_id,
            amount_minor,
            currency,
            reason,
            external_refund_id,
        })
    }
}

/// Whether `id` is 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_external_id(id: &str) -> bool {
    (1..=MAX_EXTERNAL_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.to_owned())
}

fn required_string(fields: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::InvalidRequest(format!("{name} is required"))),
        Some(_) => Err(ApiError::InvalidRequest(format!("{name} must be a string"))),
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(ApiError::InvalidRequest(format!("{name} must be a string"))),
    }
}

/// The refund object, field for field as the spec shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RefundObject {
    pub(crate) refund_id: String,
    pub(crate) external_refund_id: Option<String>,
    pub(crate) original_transaction_id: String,
    pub(crate) refund_amount: String,
    pub(crate) currency: String,
    pub(crate) reason: Option<String>,
    pub(crate) status: RefundStatus,
    pub(crate) failure_reason: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<&Refund> for RefundObject {
    fn from(refund: &Refund) -> Self {
        Self {
            refund_id: refund.refund_id.clone(),
            external_refund_id: refund.external_refund_id.clone(),
            original_transaction_id: refund.original_transaction_id.clone(),
            refund_amount: money::format_amount(refund.amount_minor, &refund.currency),
            currency: refund.currency.clone(),
            reason: refund.reason.clone(),
            status: refund.status,
            failure_reason: refund.failure_reason.clone(),
            created_at: rfc3339_seconds(refund.created_at),
            updated_at: rfc3339_seconds(refund.updated_at),
        }
    }
}

/// `{"data": [refund object, ...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct RefundList {
    pub(crate) data: Vec<RefundObject>,
}

/// `{"data": [refund object, ...], "has_more": bool}`: one page of the range list.
#[derive(Debug, Serialize)]
pub(crate) struct RefundPage {
    pub(crate) data: Vec<RefundObject>,
    /// Whether refunds of the range follow this page.
    pub(crate) has_more: bool,
}

/// The only event type the spec defines.
pub(crate) const STATUS_CHANGED: &str = "refund.status_changed";

/// A webhook body.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookBody {
    pub(crate) event_id: String,
    pub(crate) event_type: &'static str,
    pub(crate) occurred_at: String,
    pub(crate) data: RefundObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<CreateRefund, ApiError> {
        CreateRefund::from_body(body.as_bytes())
    }

    #[test]
    fn valid_request() {
        let request = parse(
            r#"{"original_transaction_id": "txn_8f2k1", "refund_amount": "1500.00", "currency": "KES",
                "reason": "customer_return", "external_refund_id": "order-991-r1", "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(request.amount_minor, 150_000);
        assert_eq!(request.external_refund_id.as_deref(), Some("order-991-r1"));
        let minimal = parse(
            r#"{"original_transaction_id": "t", "refund_amount": "5000", "currency": "UGX"}"#,
        )
        .unwrap();
        assert_eq!(minimal.reason, None);
        assert_eq!(minimal.external_refund_id, None);
    }

    #[test]
    fn invalid_requests() {
        let long_reason = "x".repeat(256);
        let long_id = "a".repeat(65);
        for body in [
            "not json".to_owned(),
            "[]".to_owned(),
            r#"{"refund_amount": "1.00", "currency": "KES"}"#.to_owned(),
            r#"{"original_transaction_id": "", "refund_amount": "1.00", "currency": "KES"}"#.to_owned(),
            r#"{"original_transaction_id": "t", "refund_amount": 1.00, "currency": "KES"}"#.to_owned(),
            r#"{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "XYZ"}"#.to_owned(),
            r#"{"original_transaction_id": "t", "refund_amount": "1.00"}"#.to_owned(),
            format!(
                r#"{{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "KES", "reason": "{long_reason}"}}"#
            ),
            format!(
                r#"{{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "KES", "external_refund_id": "{long_id}"}}"#
            ),
            r#"{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "KES", "external_refund_id": ""}"#.to_owned(),
            r#"{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "KES", "external_refund_id": "a b"}"#.to_owned(),
        ] {
            assert!(
                matches!(parse(&body), Err(ApiError::InvalidRequest(_))),
                "{body}"
            );
        }
        let reason_255 = "é".repeat(255);
        assert!(
            parse(&format!(
                r#"{{"original_transaction_id": "t", "refund_amount": "1.00", "currency": "KES", "reason": "{reason_255}"}}"#
            ))
            .is_ok()
        );
    }
}
