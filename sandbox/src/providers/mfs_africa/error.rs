//! The API's error answers: the spec's error table, with its body
//! `{"error": {"code": "...", "message": "..."}, "trace_id": "tr_..."}`, plus the errors injected
//! by an `error` fault (any status and code, in the same body).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One refusal by the simulated provider. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: missing or malformed field, bad amount format, reason too long.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401: unknown or missing `X-Api-Key`.
    #[error("unknown or missing API key")]
    InvalidApiKey,
    /// 401: `X-Signature` missing or not matching.
    #[error("signature does not match the request")]
    InvalidSignature,
    /// 401: `X-Timestamp` missing, unparseable, or more than 300 s from server time.
    #[error("{0}")]
    TimestampOutOfRange(String),
    /// 403: the caller's IP is not on the allowlist.
    #[error("caller IP {0} is not on the merchant's allowlist")]
    IpNotAllowed(String),
    /// 404: unknown original transaction.
    #[error("original transaction {0:?} not found")]
    InvalidTransaction(String),
    /// 404: unknown refund id.
    #[error("refund {0:?} not found")]
    RefundNotFound(String),
    /// 404: no such endpoint (not in the spec's table; the spec defines no other paths).
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// 409: same external id, different parameters.
    #[error("external_refund_id {0:?} was already used with different parameters")]
    DuplicateExternalRefundId(String),
    /// 422: amount above what is left to refund.
    #[error("refund amount {requested} exceeds the refundable amount {available}")]
    AmountExceeded {
        /// The amount asked for, formatted.
        requested: String,
        /// What is left, formatted.
        available: String,
    },
    /// 422: currency differs from the original's.
    #[error("currency {given} does not match the original transaction's currency {original}")]
    CurrencyMismatch {
        /// The currency asked for.
        given: String,
        /// The original's currency.
        original: String,
    },
    /// 422: original not yet cleared.
    #[error("original transaction is not settled yet")]
    TransactionNotSettled,
    /// 422: more than 180 days after the original completed.
    #[error("refund window of 180 days has expired")]
    RefundWindowExpired,
    /// 429 with `Retry-After` seconds.
    #[error("too many requests")]
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// 500.
    #[error("internal error")]
    Internal {
        /// Seconds for `Retry-After`, when one is to be sent.
        retry_after: Option<u64>,
    },
    /// 502 or 503.
    #[error("service unavailable")]
    ServiceUnavailable {
        /// 502 or 503.
        status: u16,
        /// Seconds for `Retry-After`, when one is to be sent.
        retry_after: Option<u64>,
    },
    /// Any status and code, injected by an `error` fault (the code need not be in the spec's
    /// table, so that a client's handling of unknown codes can be tested).
    #[error("error {code:?} injected by the sandbox (fault kind \"error\")")]
    Injected {
        /// An HTTP status in 400..=599 (checked by the fault queue).
        status: u16,
        /// The `[a-z_]+` code to send.
        code: String,
        /// The message to send instead of this error's own words.
        message: Option<String>,
        /// Seconds for `Retry-After`, when one is to be sent.
        retry_after: Option<u64>,
    },
}

impl ApiError {
    /// The HTTP status and `error.code` of this refusal, per the spec's table (or as injected).
    pub(crate) fn status_and_code(&self) -> (StatusCode, &str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::InvalidApiKey => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            ApiError::InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            ApiError::TimestampOutOfRange(_) => {
                (StatusCode::UNAUTHORIZED, "timestamp_out_of_range")
            }
            ApiError::IpNotAllowed(_) => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            ApiError::InvalidTransaction(_) => (StatusCode::NOT_FOUND, "invalid_transaction"),
            ApiError::RefundNotFound(_) => (StatusCode::NOT_FOUND, "refund_not_found"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::DuplicateExternalRefundId(_) => {
                (StatusCode::CONFLICT, "duplicate_external_refund_id")
            }
            ApiError::AmountExceeded { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "amount_exceeded")
            }
            ApiError::CurrencyMismatch { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "currency_mismatch")
            }
            ApiError::TransactionNotSettled => {
                (StatusCode::UNPROCESSABLE_ENTITY, "transaction_not_settled")
            }
            ApiError::RefundWindowExpired => {
                (StatusCode::UNPROCESSABLE_ENTITY, "refund_window_expired")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            ApiError::ServiceUnavailable { status, .. } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "service_unavailable",
            ),
            ApiError::Injected { status, code, .. } => (
                // The fault queue only accepts 400..=599, which `from_u16` always takes.
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
            ),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Internal { retry_after }
            | ApiError::ServiceUnavailable { retry_after, .. }
            | ApiError::Injected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    trace_id: String,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let trace_id = super::random_id("tr_");
        tracing::info!(%status, code, %trace_id, "mfs-africa sandbox refused a request");
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: match &self {
                    ApiError::Injected {
                        message: Some(m), ..
                    } => m.clone(),
                    _ => self.to_string(),
                },
            },
            trace_id,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
