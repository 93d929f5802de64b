//! What the refund service takes and answers: the gateway's refund request and its checks,
//! and the outcomes and errors of creating a refund and of webhook intake.

use crate::money::MAX_AMOUNT_MINOR;
use chrono::{DateTime, Utc};
use refundry_ledger::{Failure, Outcome, RefundRecord, Status};
use refundry_runtime::bindings::types::WebhookError;
use refundry_runtime::error::PluginError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use utoipa::ToSchema;

/// A refund request, as the gateway sends it (`POST /v1/refunds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// Provider id (`mfs-africa`, `pagoefectivo`).
    #[schema(example = "mfs-africa")]
    pub provider: String,
    /// The gateway's id for this refund: with `provider`, the idempotency key. 1 to 128
    /// characters, not blank, no control characters.
    // The pattern states [`NewRefund::check`]'s id rule (control characters are Unicode's Cc,
    // blanks its White_Space). utoipa takes only a literal, so each id field repeats it; the
    // API tests hold all three to what `check` accepts.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "rf-2026-000123"
    )]
    pub external_refund_id: String,
    /// The payment to refund, as the provider knows it (same rules as `external_refund_id`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "91000042"
    )]
    pub original_transaction_id: String,
    /// Amount in minor units (cents), 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 150_000)]
    #[serde(deserialize_with = "minor_units")]
    pub amount: i64,
    /// ISO 4217 code, one of those Refundry knows (the document lists them); the provider must
    /// refund in it too, or the refund is refused (`unsupported_currency`).
    #[schema(example = "KES")]
    pub currency: String,
    /// Why, at most 500 characters.
    #[schema(max_length = 500, example = "customer_return")]
    #[serde(default)]
    pub reason: Option<String>,
    /// The merchant's order id (PagoEfectivo requires it: its `transactionCode`); same rules as
    /// `external_refund_id`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "ORDER-991"
    )]
    #[serde(default)]
    pub order_id: Option<String>,
    /// The original payment, when the gateway knows it: checked before any provider call.
    #[serde(default)]
    pub original: Option<OriginalPayment>,
}

/// The payment being refunded, as the gateway recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalPayment {
    /// Amount paid, in minor units, 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 500_000)]
    #[serde(deserialize_with = "minor_units")]
    pub amount: i64,
    /// ISO 4217 code, one of those Refundry knows; another than the refund's is refused
    /// (`currency_mismatch`).
    #[schema(example = "KES")]
    pub currency: String,
    /// When the payment completed (RFC 3339).
    pub completed_at: DateTime<Utc>,
    /// Whether the provider has settled it; a refund of an unsettled payment is refused.
    #[serde(default)]
    pub settled: Option<bool>,
}

/// An amount in minor units: a JSON integer. `100.0` is the same JSON number as `100` and is
/// taken; `100.5` is no whole number of minor units and is refused.
fn minor_units<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number of minor units"
        ))),
    }
}

/// The answer to a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The refund as recorded.
    pub refund: RefundRecord,
    /// The first answer's outcome (a replay gets the same).
    pub outcome: Outcome,
    /// Whether this answer replays an earlier request with the same key.
    pub replayed: bool,
    /// Set when nothing reached the provider ([`Outcome::Unavailable`], HTTP 503): why, and when
    /// to send the same request again. Nothing final was recorded: the refund stays `unknown`
    /// and the key may be sent again (the janitor also sends it, should the gateway not).
    pub not_sent: Option<NotSent>,
}

/// Why a create request reached no provider that could have acted on it, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    /// `provider_unavailable` (rate limited, or no connection) or `plugin_error` (the host could
    /// not run the plugin: instance pool full, instantiation failed, a trap before any request).
    pub failure: Failure,
    /// When to send the request again (the provider's `Retry-After` when it gave one).
    pub retry_after: Duration,
}

/// Why a create request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// No such provider is configured (HTTP 404).
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// A field is missing or wrong (HTTP 400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as named in the request.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The key was used before with other parameters (HTTP 409); nothing was sent.
    #[error("external_refund_id was already used for refund {refund_id} with other parameters")]
    IdempotencyConflict {
        /// The refund that holds the key.
        refund_id: String,
    },
    /// The ledger failed (HTTP 500).
    #[error("ledger: {0}")]
    Internal(String),
}

/// What the service did with a verified webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAccepted {
    /// Its events (one, or several for a batched delivery), each with what became of it.
    Events(Vec<AcceptedEvent>),
    /// A genuine delivery of an event type its plugin does not handle: acknowledged (so the
    /// provider stops retrying it) and kept in the inbox.
    Ignored {
        /// The plugin's reason.
        reason: String,
    },
}

/// One event of a delivery and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedEvent {
    /// The provider's event id.
    pub event_id: String,
    /// What became of it.
    pub result: EventResult,
}

/// What became of one webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// The event moved a refund.
    Applied {
        /// The refund.
        refund_id: String,
        /// Its new status.
        status: Status,
    },
    /// The event was recorded in the refund's history, but did not move it (same status, late
    /// or backwards).
    Recorded {
        /// The refund.
        refund_id: String,
    },
    /// This event id was received before.
    Duplicate,
    /// No refund matches the event: kept in the inbox and logged.
    Unmatched,
}

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookIntakeError {
    /// No such provider is configured (HTTP 404).
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// The plugin refused it: missing header, bad signature or stale timestamp (HTTP 401),
    /// malformed (HTTP 400).
    #[error("webhook rejected: {}", crate::providers::describe_webhook_error(.0))]
    Rejected(WebhookError),
    /// The plugin failed (HTTP 500).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The ledger failed (HTTP 500).
    #[error("ledger: {0}")]
    Internal(String),
}

/// A failure of the ledger behind a read (HTTP 500).
#[derive(Debug, thiserror::Error)]
#[error("ledger: {0}")]
pub struct ServiceError(pub String);

impl NewRefund {
    /// A hash of every parameter of the request: a replay must carry the same.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a refund request serialises");
        hex::encode(Sha256::digest(json))
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> CreateError {
    CreateError::Internal(e.to_string())
}

fn invalid(field: &str, message: impl Into<String>) -> CreateError {
    CreateError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Refuses input no provider call could make sense of.
pub(crate) fn validate(req: &NewRefund) -> Result<(), CreateError> {
    req.check()
}

impl NewRefund {
    /// The checks that need no provider: ids, amounts, currency codes Refundry knows, the
    /// reason's length (`refundry batch` runs them on every row before sending any).
    pub fn check(&self) -> Result<(), CreateError> {
        let req = self;
        let id_field = |field: &str, value: &str| {
            if value.trim().is_empty() {
                Err(invalid(field, "must not be empty"))
            } else if value.chars().count() > 128 {
                Err(invalid(field, "must be at most 128 characters"))
            } else if value.chars().any(char::is_control) {
                Err(invalid(field, "must not contain control characters"))
            } else {
                Ok(())
            }
        };
        id_field("external_refund_id", &req.external_refund_id)?;
        id_field("original_transaction_id", &req.original_transaction_id)?;
        if let Some(order) = &req.order_id {
            id_field("order_id", order)?;
        }
        check_amount("amount", req.amount)?;
        if crate::money::exponent(&req.currency).is_none() {
            return Err(invalid(
                "currency",
                format!("{:?} is not an ISO 4217 code Refundry knows", req.currency),
            ));
        }
        if req.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(invalid("reason", "must be at most 500 characters"));
        }
        if let Some(original) = &req.original {
            check_amount("original.amount", original.amount)?;
            if crate::money::exponent(&original.currency).is_none() {
                return Err(invalid(
                    "original.currency",
                    "is not an ISO 4217 code Refundry knows",
                ));
            }
        }
        Ok(())
    }
}

/// An amount a gateway sends: positive, and at most [`MAX_AMOUNT_MINOR`], so that no sum of
/// refunds can come near `i64`'s range.
fn check_amount(field: &str, amount: i64) -> Result<(), CreateError> {
    if amount <= 0 {
        Err(invalid(field, "must be a positive number of minor units"))
    } else if amount > MAX_AMOUNT_MINOR {
        Err(invalid(
            field,
            format!("must be at most {MAX_AMOUNT_MINOR} minor units (10^15)"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_whole_minor_units() {
        let parse = |amount: &str| {
            serde_json::from_str::<NewRefund>(&format!(
                r#"{{"provider": "p", "external_refund_id": "e", "original_transaction_id": "t",
                    "amount": {amount}, "currency": "KES"}}"#
            ))
            .map(|r| r.amount)
        };
        assert_eq!(parse("150").unwrap(), 150);
        assert_eq!(parse("150.0").unwrap(), 150);
        let err = parse("150.5").unwrap_err().to_string();
        assert!(err.contains("whole number of minor units"), "{err}");
        assert!(parse("\"150\"").is_err());
        assert!(parse("1e300").is_err());
    }

    #[test]
    fn amounts_are_bounded_at_ten_to_the_fifteen() {
        let req = |amount: i64, original: i64| NewRefund {
            provider: "p".into(),
            external_refund_id: "e".into(),
            original_transaction_id: "t".into(),
            amount,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original: Some(OriginalPayment {
                amount: original,
                currency: "KES".into(),
                completed_at: DateTime::UNIX_EPOCH,
                settled: None,
            }),
        };
        assert!(req(MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR).check().is_ok());
        for (r, field) in [
            (req(MAX_AMOUNT_MINOR + 1, 100), "amount"),
            (req(9_223_372_036_854_775_000, 100), "amount"),
            (req(0, 100), "amount"),
            (req(100, MAX_AMOUNT_MINOR + 1), "original.amount"),
        ] {
            match r.check() {
                Err(CreateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_fingerprint_covers_every_parameter() {
        let a = NewRefund {
            provider: "p".into(),
            external_refund_id: "e".into(),
            original_transaction_id: "t".into(),
            amount: 100,
            currency: "KES".into(),
            reason: None,
            order_id: None,
            original: None,
        };
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.amount = 101;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.reason = Some("x".into());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
