//! The one error shape of the REST API, `{"error": {"code", "message", "provider_code", "field"}}`,
//! and the extractors that turn axum's own rejections (bad JSON, a body over the limit, a bad
//! query string) into it. [`shape_errors`] catches what no handler produced (405, and anything
//! else that comes out as plain text) so that a client only ever parses one shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::BODY_LIMIT;

/// Every error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`, `field`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Snake-case error code: `unauthorized`, `forbidden`, `invalid_request`, `not_found`,
    /// `unknown_provider`, `idempotency_conflict`, `payload_too_large`, `request_timeout`,
    /// `method_not_allowed`, `internal`; for a refund the provider did not take, the refund's
    /// failure code (`amount_exceeded`, `provider_unavailable`, ...); for a rejected webhook
    /// `missing_header`, `invalid_signature`, `stale_timestamp`, `malformed_webhook`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The provider's own error code, when it gave one.
    pub provider_code: Option<String>,
    /// The request field or query parameter at fault (`amount`, `original.currency`, `limit`),
    /// when one is.
    pub field: Option<String>,
}

/// An error answer: an HTTP status and an [`ErrorDetail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub detail: ErrorDetail,
    /// Whether to add `WWW-Authenticate: Bearer` (a 401 of a bearer-authenticated route).
    bearer_challenge: bool,
}

impl ApiError {
    /// An error with `status`, `code` and `message`, and neither field nor provider code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                provider_code: None,
                field: None,
            },
            bearer_challenge: false,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.detail.field = Some(field.into());
        self
    }

    /// 400 `invalid_request` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_field(field)
    }

    /// 401 `unauthorized`, with the bearer challenge.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        e.bearer_challenge = true;
        e
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`. The cause goes to the log, not to the caller: it may name tables, files
    /// or plugin internals that are no business of the gateway's.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (the service log has the cause)",
        )
    }

    /// The error for a status no handler chose (405, an unknown route, ...).
    pub fn for_status(status: StatusCode, message: Option<String>) -> Self {
        let code = code_for_status(status);
        let message = message
            .filter(|m| !m.trim().is_empty())
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        Self::new(status, &code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: self.detail })).into_response();
        if self.bearer_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"refundry\""),
            );
        }
        if closes_connection(self.status) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Whether an error answer ends its connection: a request refused before its body was read
/// (no valid token, no scope, a body over the limit or too slow to arrive) leaves the rest of
/// that body on the wire, so the connection is closed, and says so, rather than left for the
/// client to reuse and find cut (a component upload is megabytes).
fn closes_connection(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::REQUEST_TIMEOUT
    )
}

/// The code for an HTTP status: `invalid_request` (400), `internal` (500), else the status's
/// reason phrase in snake case (`not_found`, `method_not_allowed`, `payload_too_large`).
fn code_for_status(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request".into(),
        StatusCode::INTERNAL_SERVER_ERROR => "internal".into(),
        _ => match status.canonical_reason() {
            Some(reason) => reason
                .chars()
                .map(|c| match c {
                    'A'..='Z' => c.to_ascii_lowercase(),
                    'a'..='z' | '0'..='9' => c,
                    _ => '_',
                })
                .collect(),
            None => format!("http_{}", status.as_u16()),
        },
    }
}

/// A request body that was not read: over `limit` bytes (413) or cut short (400).
pub fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        )
    }
}

/// The raw request body, at most [`BODY_LIMIT`] bytes, with the API's rejections.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| body_rejection(r, BODY_LIMIT))
    }
}

/// A JSON request body, deserialized with errors that name the field at fault.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The content type is not checked: the body is JSON or a 400 says why, and a client
        // that forgot the header (`curl -d` sends a form type) has a working request.
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserializes `bytes`; the error names the field (`missing field `amount``,
/// `original.amount: invalid type: string "x", expected i64`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        // serde_json appends the position; the field name says more and is stable.
        let full = inner.to_string();
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        let message = full.strip_suffix(&position).unwrap_or(&full).to_owned();
        json_error(&path, message)
    })?;
    // Trailing bytes after the value are a malformed body too.
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    Ok(value)
}

/// Builds the 400 for a serde error at `path` (`.` for the top level).
fn json_error(path: &str, message: String) -> ApiError {
    // `?` marks a segment serde_path_to_error could not name (a syntax error mid-object).
    let path = path.trim_end_matches('?').trim_end_matches('.');
    let parent = (!path.is_empty()).then_some(path);
    // `missing field `x`` and `unknown field `x`, expected ...` name the field in the message;
    // the path stops at the object that lacks a missing field, and ends with an unknown one.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    let field = match (parent, named) {
        (Some(p), Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p.to_owned()),
        (Some(p), Some(n)) => Some(format!("{p}.{n}")),
        (None, Some(n)) => Some(n.to_owned()),
        (Some(p), None) => Some(p.to_owned()),
        (None, None) => None,
    };
    let message = match (&field, named) {
        (Some(f), None) => format!("{f}: {message}"),
        _ => message,
    };
    let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
    match field {
        Some(f) => error.with_field(f),
        None => error,
    }
}

/// The query string as name-value pairs, so that each parameter is checked by name.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|q| QueryPairs(q.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// Middleware: an error response that is not JSON (axum's 405, a rejection no extractor here
/// mapped) is rewritten into the API's error shape, keeping its status and headers (`Allow`).
pub async fn shape_errors(req: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejections are one short line of text; anything longer is not worth showing.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok());
    let shaped = ApiError::for_status(status, text).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (shaped_parts, shaped_body) = shaped.into_parts();
    parts.headers.extend(shaped_parts.headers);
    Response::from_parts(parts, shaped_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_service::refunds::NewRefund;

    fn error_of(body: &str) -> ApiError {
        parse_json::<NewRefund>(body.as_bytes()).err().unwrap()
    }

    #[test]
    fn missing_field_is_named() {
        let e = error_of(
            r#"{"provider": "p", "external_refund_id": "e",
            "original_transaction_id": "t", "currency": "KES"}"#,
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.detail.code, "invalid_request");
        assert_eq!(e.detail.message, "missing field `amount`");
        assert_eq!(e.detail.field.as_deref(), Some("amount"));
    }

    #[test]
    fn wrong_type_and_nested_fields_are_named() {
        let e = error_of(r#"{"provider": "p", "amount": "12"}"#);
        assert_eq!(e.detail.field.as_deref(), Some("amount"));
        assert!(e.detail.message.starts_with("amount: invalid type: string"));

        let e = error_of(
            r#"{"provider": "p", "external_refund_id": "e", "original_transaction_id": "t",
            "amount": 1, "currency": "KES", "original": {"amount": 5, "currency": "KES"}}"#,
        );
        assert_eq!(e.detail.field.as_deref(), Some("original.completed_at"));
        assert_eq!(e.detail.message, "missing field `completed_at`");
    }

    #[test]
    fn unknown_field_and_malformed_json() {
        let e = error_of(r#"{"provider": "p", "amont": 1}"#);
        assert_eq!(e.detail.field.as_deref(), Some("amont"));
        assert!(e.detail.message.starts_with("unknown field `amont`"));
        let e = error_of(r#"{"provider": "p", "original": {"amont": 1}}"#);
        assert_eq!(e.detail.field.as_deref(), Some("original.amont"));

        let e = error_of("{not json");
        assert_eq!(e.detail.code, "invalid_request");
        assert_eq!(e.detail.field, None);

        let e = error_of("");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn codes_for_statuses() {
        assert_eq!(
            code_for_status(StatusCode::METHOD_NOT_ALLOWED),
            "method_not_allowed"
        );
        assert_eq!(
            code_for_status(StatusCode::PAYLOAD_TOO_LARGE),
            "payload_too_large"
        );
        assert_eq!(code_for_status(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(code_for_status(StatusCode::BAD_REQUEST), "invalid_request");
        assert_eq!(
            code_for_status(StatusCode::INTERNAL_SERVER_ERROR),
            "internal"
        );
    }
}
