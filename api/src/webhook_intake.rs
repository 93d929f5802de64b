//! `POST /v1/webhooks/{provider}`: a provider's notification, verified by its plugin (no bearer
//! token: the provider signs its webhooks, and the plugin checks the signature).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, RawBody};
use super::{AppState, RefundApi};
use refundry_runtime::bindings::types::WebhookError;
use refundry_service::refunds::{WebhookAccepted, WebhookIntakeError};

/// What became of an accepted webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookReceipt {
    /// `applied` (it moved its refund), `recorded` (kept in the refund's history without moving
    /// it), `duplicate` (this event id came before), `unmatched` (no refund matches; kept in the
    /// inbox).
    pub status: String,
    /// The refund it concerns, when one matched.
    pub refund_id: Option<String>,
}

/// Takes a provider's webhook: the raw body and headers go to the provider's plugin, which
/// verifies the signature and parses the event.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    tag = "webhooks",
    operation_id = "receive_webhook",
    params(("provider" = String, Path, description = "Provider id (`mfs-africa`, `pagoefectivo`)", example = "mfs-africa")),
    request_body(content = String, description = "The provider's notification, as sent", content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted (duplicates and unmatched events included)", body = WebhookReceipt),
        (status = 400, description = "Malformed (`malformed_webhook`)", body = ErrorBody),
        (status = 401, description = "Missing signature header, invalid signature or stale timestamp", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 500, description = "The plugin or the service failed", body = ErrorBody),
    ),
)]
pub async fn receive<S: RefundApi>(
    State(state): State<AppState<S>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookReceipt>, ApiError> {
    // Header values are handed over as received; bytes that are not UTF-8 (no provider sends
    // them in the headers it signs) become U+FFFD rather than failing the request here.
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let span = tracing::Span::current();
    span.record("provider", provider.as_str());
    let accepted = state
        .service
        .webhook(&provider, headers, body.to_vec())
        .await
        .map_err(intake_error)?;
    let (status, refund_id) = match accepted {
        WebhookAccepted::Applied { refund_id, .. } => ("applied", Some(refund_id)),
        WebhookAccepted::Recorded { refund_id } => ("recorded", Some(refund_id)),
        WebhookAccepted::Duplicate => ("duplicate", None),
        WebhookAccepted::Unmatched => ("unmatched", None),
    };
    if let Some(id) = &refund_id {
        span.record("refund_id", id.as_str());
    }
    Ok(Json(WebhookReceipt {
        status: status.into(),
        refund_id,
    }))
}

fn intake_error(e: WebhookIntakeError) -> ApiError {
    use WebhookIntakeError::{Internal, Plugin, Rejected, UnknownProvider};
    let message = e.to_string();
    // The service logs rejections with their reason; the provider gets the reason too.
    match e {
        UnknownProvider(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_provider", message),
        Rejected(WebhookError::Malformed(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_webhook", message)
        }
        Rejected(WebhookError::MissingHeader(header)) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing_header", message).with_field(header)
        }
        Rejected(WebhookError::InvalidSignature) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
        }
        Rejected(WebhookError::StaleTimestamp(_)) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", message)
        }
        Plugin(e) => ApiError::internal(&e),
        Internal(_) => ApiError::internal(&message),
    }
}
