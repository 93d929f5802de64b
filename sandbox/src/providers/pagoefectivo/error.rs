//! The API's error answers: the spec's error table, with its body
//! `{"code": "<3 digits>", "message": "...", "data": [{"field": "...", "message": "..."}]}`, plus
//! the errors injected by an `error` fault (any status and 3-digit code, in the same body).
//!
//! `data` names the request fields at fault: every invalid field for `111`, the one field a
//! business rule refused for `108`, `120`, `121`, `131`..`135`, and is empty otherwise.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem with one request field, as the error body's `data` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    /// The field's wire name (`refundAmount`, `dateRequest`, ...).
    pub(crate) field: String,
    /// What is wrong with it.
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// One refusal by the simulated provider. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400 `111`: missing or malformed fields (at least one).
    #[error("invalid request: {}", summary(.0))]
    InvalidRequest(Vec<FieldError>),
    /// 401 `105`: wrong `accessKey`, `idService` or `hashString`.
    #[error("invalid credentials")]
    BadCredentials,
    /// 401 `106`: the bearer token is missing, unknown or expired.
    #[error("token missing, unknown or expired; authorize again")]
    TokenInvalid,
    /// 401 `107`: `PE-Signature` missing or not matching the request.
    #[error("PE-Signature does not match the request")]
    BadSignature,
    /// 401 `108`: `dateRequest` more than 300 s from server time.
    #[error("dateRequest {date_request} is more than 300 s from server time {server_time}")]
    ClockSkew {
        /// `dateRequest` as sent.
        date_request: String,
        /// The sandbox clock, Lima offset.
        server_time: String,
    },
    /// 403 `109`: the caller's IP is not on the allowlist.
    #[error("caller IP {0} is not on the merchant's allowlist")]
    IpNotAllowed(String),
    /// 404 `120`: unknown original transaction.
    #[error("original transaction {0:?} not found")]
    TransactionNotFound(String),
    /// 404 `121`: unknown `referenceId`.
    #[error("refund {0:?} not found")]
    RefundNotFound(String),
    /// 404: no such endpoint (not in the spec's table, which defines no other paths; code
    /// `"404"`, sandbox only).
    #[error("no such endpoint: {0}")]
    UnknownEndpoint(String),
    /// 409 `131`: same `refundId`, different parameters.
    #[error("refundId {0:?} was already used with different parameters")]
    RefundIdConflict(String),
    /// 422 `132`: amount above what is left to refund.
    #[error("refund amount {requested} exceeds the refundable balance {available}")]
    AmountAboveRefundable {
        /// The amount asked for, formatted.
        requested: String,
        /// What is left, formatted.
        available: String,
    },
    /// 422 `133`: currency differs from the original's.
    #[error("currency {given} does not match the original transaction's currency {original}")]
    CurrencyMismatch {
        /// The currency asked for.
        given: &'static str,
        /// The original's currency.
        original: &'static str,
    },
    /// 422 `134`: more than 180 days since the original was paid.
    #[error("more than 180 days have passed since the original transaction was paid")]
    WindowExpired,
    /// 422 `135`: the original was not paid.
    #[error("original transaction is not paid; there is nothing to refund")]
    NotPaid,
    /// 422 `136`: the merchant's balance cannot fund the refund (no refund was made).
    #[error("the merchant's balance cannot fund this refund; no refund was made")]
    InsufficientBalance,
    /// 500 or 503 `999`: an injected provider fault.
    #[error("provider fault; retry later with the same refundId")]
    ProviderFault {
        /// 500 or 503.
        status: u16,
        /// Seconds for `Retry-After`, when one is to be sent.
        retry_after: Option<u64>,
    },
    /// Any status and 3-digit code, injected by an `error` fault.
    #[error("error injected by the sandbox")]
    Injected {
        /// 400..=599.
        status: u16,
        /// Three ASCII digits.
        code: String,
        /// The message to send instead of this error's own words.
        message: Option<String>,
        /// Seconds for `Retry-After`, when one is to be sent.
        retry_after: Option<u64>,
    },
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| f.field.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// A `111` for one field.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest(vec![FieldError::new(field, message)])
    }

    /// The HTTP status and `code` of this refusal, per the spec's table (or as injected).
    pub(crate) fn status_and_code(&self) -> (StatusCode, &str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "111"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "105"),
            ApiError::TokenInvalid => (StatusCode::UNAUTHORIZED, "106"),
            ApiError::BadSignature => (StatusCode::UNAUTHORIZED, "107"),
            ApiError::ClockSkew { .. } => (StatusCode::UNAUTHORIZED, "108"),
            ApiError::IpNotAllowed(_) => (StatusCode::FORBIDDEN, "109"),
            ApiError::TransactionNotFound(_) => (StatusCode::NOT_FOUND, "120"),
            ApiError::RefundNotFound(_) => (StatusCode::NOT_FOUND, "121"),
            ApiError::UnknownEndpoint(_) => (StatusCode::NOT_FOUND, "404"),
            ApiError::RefundIdConflict(_) => (StatusCode::CONFLICT, "131"),
            ApiError::AmountAboveRefundable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "132"),
            ApiError::CurrencyMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "133"),
            ApiError::WindowExpired => (StatusCode::UNPROCESSABLE_ENTITY, "134"),
            ApiError::NotPaid => (StatusCode::UNPROCESSABLE_ENTITY, "135"),
            ApiError::InsufficientBalance => (StatusCode::UNPROCESSABLE_ENTITY, "136"),
            ApiError::ProviderFault { status, .. } => (
                // The fault policy only lets 500 and 503 through.
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "999",
            ),
            ApiError::Injected { status, code, .. } => (
                // The fault queue only accepts 400..=599, which `from_u16` always takes.
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
            ),
        }
    }

    /// The `data` entries of the error body.
    fn data(&self) -> Vec<FieldError> {
        let one = |field: &str| vec![FieldError::new(field, self.to_string())];
        match self {
            ApiError::InvalidRequest(fields) => fields.clone(),
            ApiError::ClockSkew { .. } => one("dateRequest"),
            ApiError::TransactionNotFound(_) | ApiError::WindowExpired | ApiError::NotPaid => {
                one("transactionId")
            }
            ApiError::RefundNotFound(_) => one("referenceId"),
            ApiError::RefundIdConflict(_) => one("refundId"),
            ApiError::AmountAboveRefundable { .. } => one("refundAmount"),
            ApiError::CurrencyMismatch { .. } => one("currency"),
            ApiError::BadCredentials
            | ApiError::TokenInvalid
            | ApiError::BadSignature
            | ApiError::IpNotAllowed(_)
            | ApiError::UnknownEndpoint(_)
            | ApiError::InsufficientBalance
            | ApiError::ProviderFault { .. }
            | ApiError::Injected { .. } => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::ProviderFault { retry_after, .. }
            | ApiError::Injected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The spec's error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    data: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        tracing::info!(%status, code, "pagoefectivo sandbox refused a request");
        let message = match &self {
            ApiError::Injected {
                message: Some(m), ..
            } => m.clone(),
            _ => self.to_string(),
        };
        let body = ErrorBody {
            code,
            message,
            data: self.data(),
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (u16, serde_json::Value) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn error_bodies_have_the_spec_shape() {
        let (status, body) = body_of(ApiError::InvalidRequest(vec![
            FieldError::new("refundAmount", "bad"),
            FieldError::new("currency", "bad too"),
        ]))
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"code": "111", "message": "invalid request: refundAmount, currency",
                "data": [{"field": "refundAmount", "message": "bad"},
                         {"field": "currency", "message": "bad too"}]})
        );
        let (status, body) = body_of(ApiError::InsufficientBalance).await;
        assert_eq!(status, 422);
        assert_eq!(body["code"], "136");
        assert_eq!(body["data"], serde_json::json!([]));
    }
}
