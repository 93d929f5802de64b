//! Wire types of the PagoEfectivo API: Lima-offset dates, the authorization and create requests
//! (validated by hand, so that every problem becomes the spec's `111` naming the field), the
//! success envelopes, the refund object and the notification body.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};
use super::money::{self, Currency};
use super::state::{CreateRefund, Refund, RefundStatus};

/// The spec's success `code`.
pub(crate) const SUCCESS_CODE: &str = "100";
/// The spec's success `message`.
pub(crate) const SUCCESS_MESSAGE: &str = "Solicitud exitosa.";

/// The longest `reason` the spec allows, in characters.
const MAX_REASON_CHARS: usize = 200;
/// The longest `refundId` the spec allows.
const MAX_REFUND_ID_LEN: usize = 64;

/// Lima's offset, UTC-5 all year (Peru has no DST).
pub(crate) fn lima() -> FixedOffset {
    FixedOffset::west_opt(5 * 3600).expect("5 h is a valid UTC offset")
}

/// A date as the spec writes it: ISO 8601, Lima offset, seconds precision,
/// e.g. `2026-11-25T05:15:30-05:00`.
pub(crate) fn format_date(at: DateTime<Utc>) -> String {
    crate::time::rfc3339_seconds_at(at, lima())
}

/// Parses a date written as the spec writes it, exactly `YYYY-MM-DDTHH:MM:SS-05:00`; anything else
/// (other offsets, `Z`, fractions, spaces) is `None`.
pub(crate) fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 25
        && text.ends_with("-05:00")
        && bytes[..19].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&text[..19], "%Y-%m-%dT%H:%M:%S").ok()?;
    naive
        .and_local_timezone(lima())
        .single()
        .map(|at| at.to_utc())
}

/// A `POST /v1/authorizations` body that is well formed (the credentials are not checked yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) access_key: String,
    pub(crate) id_service: u64,
    /// As sent: the hash covers these exact characters.
    pub(crate) date_request: String,
    /// `date_request` parsed.
    pub(crate) date: DateTime<Utc>,
    pub(crate) hash_string: String,
}

impl Authorization {
    /// Validates the body's shape: `accessKey` string, `idService` non-negative integer,
    /// `dateRequest` a Lima-offset date, `hashString` string. Every problem is listed.
    pub(crate) fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let fields = object(body)?;
        let mut errors = Vec::new();
        let access_key = string_field(&fields, "accessKey", &mut errors);
        let id_service = match fields.get("idService") {
            Some(value) => match value.as_u64() {
                Some(id) => Some(id),
                None => {
                    errors.push(FieldError::new(
                        "idService",
                        "must be a non-negative JSON integer, e.g. 1024",
                    ));
                    None
                }
            },
            None => {
                errors.push(FieldError::new("idService", "is required"));
                None
            }
        };
        let date_request = string_field(&fields, "dateRequest", &mut errors);
        let date = date_request.as_deref().and_then(|text| {
            let parsed = parse_date(text);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "dateRequest",
                    "must be ISO 8601 with the Lima offset and seconds precision, e.g. 2026-11-25T05:15:30-05:00",
                ));
            }
            parsed
        });
        let hash_string = string_field(&fields, "hashString", &mut errors);
        match (access_key, id_service, date_request, date, hash_string) {
            (
                Some(access_key),
                Some(id_service),
                Some(date_request),
                Some(date),
                Some(hash_string),
            ) if errors.is_empty() => Ok(Self {
                access_key,
                id_service,
                date_request,
                date,
                hash_string,
            }),
            _ => Err(ApiError::InvalidRequest(errors)),
        }
    }
}

impl CreateRefund {
    /// Validates a create body. Every invalid field is listed, in the spec's field order.
    /// Unknown fields are ignored (the spec asks clients to ignore unknown fields; the sandbox is
    /// as tolerant in the other direction), though they are part of the signed canonical string.
    pub(crate) fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let fields = object(body)?;
        let mut errors = Vec::new();
        let transaction_id = non_empty_string(&fields, "transactionId", &mut errors);
        let amount_cents = string_field(&fields, "refundAmount", &mut errors).and_then(|text| {
            money::parse_amount(&text)
                .map_err(|e| errors.push(FieldError::new("refundAmount", e.to_string())))
                .ok()
        });
        let currency = string_field(&fields, "currency", &mut errors).and_then(|code| {
            let currency = Currency::parse(&code);
            if currency.is_none() {
                errors.push(FieldError::new(
                    "currency",
                    format!("{code:?} is not supported (PEN or USD)"),
                ));
            }
            currency
        });
        let transaction_code = non_empty_string(&fields, "transactionCode", &mut errors);
        let refund_id = string_field(&fields, "refundId", &mut errors).and_then(|id| {
            if is_valid_refund_id(&id) {
                Some(id)
            } else {
                errors.push(FieldError::new(
                    "refundId",
                    "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
                ));
                None
            }
        });
        let reason = match fields.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) if reason.chars().count() <= MAX_REASON_CHARS => {
                Some(reason.clone())
            }
            Some(Value::String(_)) => {
                errors.push(FieldError::new("reason", "must be at most 200 characters"));
                None
            }
            Some(_) => {
                errors.push(FieldError::new("reason", "must be a string"));
                None
            }
        };
        match (
            transaction_id,
            amount_cents,
            currency,
            transaction_code,
            refund_id,
        ) {
            (
                Some(transaction_id),
                Some(amount_cents),
                Some(currency),
                Some(transaction_code),
                Some(refund_id),
            ) if errors.is_empty() => Ok(Self {
                transaction_id,
                amount_cents,
                currency,
                transaction_code,
                refund_id,
                reason,
            }),
            _ => Err(ApiError::InvalidRequest(errors)),
        }
    }
}

/// Whether `id` is 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_refund_id(id: &str) -> bool {
    (1..=MAX_REFUND_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("is not valid JSON: {e}"))),
    }
}

/// A required string field; a problem is pushed to `errors`.
fn string_field(
    fields: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(text)) => Some(text.clone()),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(name, "must be a string"));
            None
        }
    }
}

fn non_empty_string(
    fields: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let text = string_field(fields, name, errors)?;
    if text.is_empty() {
        errors.push(FieldError::new(name, "must not be empty"));
        return None;
    }
    Some(text)
}

/// `{"code": "100", "message": "Solicitud exitosa.", "data": ...}`: authorization and create.
#[derive(Debug, Serialize)]
pub(crate) struct Success<T> {
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
    pub(crate) data: T,
}

impl<T> Success<T> {
    pub(crate) fn new(data: T) -> Self {
        Self {
            code: SUCCESS_CODE,
            message: SUCCESS_MESSAGE,
            data,
        }
    }
}

/// `{"code": "100", "data": ...}`: the queries (the spec shows no `message` there).
#[derive(Debug, Serialize)]
pub(crate) struct QueryOk<T> {
    pub(crate) code: &'static str,
    pub(crate) data: T,
}

impl<T> QueryOk<T> {
    pub(crate) fn new(data: T) -> Self {
        Self {
            code: SUCCESS_CODE,
            data,
        }
    }
}

/// The authorization's `data`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizationData {
    pub(crate) token: String,
    pub(crate) code_service: String,
    pub(crate) token_start: String,
    pub(crate) token_expires: String,
}

/// The refund object, field for field (and in the order) the spec shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundObject {
    pub(crate) refund_id: String,
    pub(crate) reference_id: String,
    pub(crate) transaction_id: String,
    pub(crate) transaction_code: String,
    pub(crate) refund_amount: String,
    pub(crate) currency: Currency,
    pub(crate) status: RefundStatus,
    pub(crate) status_reason: Option<String>,
    pub(crate) date_creation: String,
    pub(crate) date_update: String,
}

impl From<&Refund> for RefundObject {
    fn from(refund: &Refund) -> Self {
        Self {
            refund_id: refund.refund_id.clone(),
            reference_id: refund.reference_id.clone(),
            transaction_id: refund.transaction_id.clone(),
            transaction_code: refund.transaction_code.clone(),
            refund_amount: money::format_amount(refund.amount_cents),
            currency: refund.currency,
            status: refund.status,
            status_reason: refund.status_reason.clone(),
            date_creation: format_date(refund.created_at),
            date_update: format_date(refund.updated_at),
        }
    }
}

/// A notification body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    /// `refund.<status>`.
    pub(crate) event_type: String,
    /// Unique per event; the same on every attempt.
    pub(crate) operation_number: String,
    pub(crate) data: RefundObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(error: ApiError) -> Vec<String> {
        match error {
            ApiError::InvalidRequest(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("not a 111: {other:?}"),
        }
    }

    #[test]
    fn dates() {
        let at = parse_date("2026-11-25T05:15:30-05:00").unwrap();
        assert_eq!(crate::time::rfc3339_seconds(at), "2026-11-25T10:15:30Z");
        assert_eq!(format_date(at), "2026-11-25T05:15:30-05:00");
        for bad in [
            "2026-11-25T10:15:30Z",
            "2026-11-25T10:15:30+00:00",
            "2026-11-25T05:15:30.000-05:00",
            "2026-11-25 05:15:30-05:00",
            "2026-13-25T05:15:30-05:00",
            "2026-11-25T05:15:30-0500",
            "",
        ] {
            assert!(parse_date(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn valid_create() {
        let request = CreateRefund::from_body(
            br#"{"transactionId": "81234567", "refundAmount": "160.50", "currency": "PEN",
                 "transactionCode": "ORDER-991", "refundId": "order-991-r1", "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(request.amount_cents, 16_050);
        assert_eq!(request.currency, Currency::Pen);
        assert_eq!(request.reason, None);
    }

    #[test]
    fn invalid_creates_name_every_field() {
        let error = CreateRefund::from_body(
            br#"{"transactionId": "", "refundAmount": 160.5, "currency": "EUR",
                 "refundId": "has space", "reason": 3}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "transactionId",
                "refundAmount",
                "currency",
                "transactionCode",
                "refundId",
                "reason"
            ]
        );
        let long = format!(
            r#"{{"transactionId": "t", "refundAmount": "1.00", "currency": "USD",
                 "transactionCode": "c", "refundId": "{}", "reason": "{}"}}"#,
            "a".repeat(65),
            "é".repeat(201)
        );
        assert_eq!(
            fields_of(CreateRefund::from_body(long.as_bytes()).unwrap_err()),
            ["refundId", "reason"]
        );
        let ok = format!(
            r#"{{"transactionId": "t", "refundAmount": "1.00", "currency": "USD",
                 "transactionCode": "c", "refundId": "{}", "reason": "{}"}}"#,
            "a".repeat(64),
            "é".repeat(200)
        );
        assert!(CreateRefund::from_body(ok.as_bytes()).is_ok());
        assert_eq!(
            fields_of(CreateRefund::from_body(b"[1]").unwrap_err()),
            ["body"]
        );
    }

    #[test]
    fn authorization_body() {
        let good = br#"{"accessKey": "AK1", "idService": 1024,
                        "dateRequest": "2026-11-25T05:15:30-05:00", "hashString": "ab"}"#;
        let auth = Authorization::from_body(good).unwrap();
        assert_eq!(auth.id_service, 1024);
        assert_eq!(auth.date_request, "2026-11-25T05:15:30-05:00");
        let bad =
            br#"{"accessKey": 1, "idService": "1024", "dateRequest": "2026-11-25T10:15:30Z"}"#;
        assert_eq!(
            fields_of(Authorization::from_body(bad).unwrap_err()),
            ["accessKey", "idService", "dateRequest", "hashString"]
        );
    }
}
