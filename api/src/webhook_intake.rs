//! `POST /v1/webhooks/{provider}`: a provider's notification, verified by its plugin (no bearer
//! token: the provider signs its webhooks, and the plugin checks the signature).

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, RawBody};
use super::{AppState, RefundApi};
use refundry_runtime::bindings::types::{WebhookError, WebhookRequest};
use refundry_service::refunds::{EventResult, WebhookAccepted, WebhookIntakeError};

/// What became of an accepted webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookReceipt {
    /// For a delivery of one event, what became of it: `applied` (it moved its refund),
    /// `recorded` (kept in the refund's history without moving it), `duplicate` (this event id
    /// came before), `unmatched` (no refund matches; kept in the inbox). `accepted` for a
    /// batched delivery (see `events`); `ignored` for an event type the provider's plugin does
    /// not handle (kept in the inbox; see `reason`).
    pub status: String,
    /// The refund a delivery of one event concerns, when one matched.
    pub refund_id: Option<String>,
    /// Each event of the delivery, in order, with what became of it.
    pub events: Vec<EventReceipt>,
    /// Why the delivery was ignored, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What became of one event of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventReceipt {
    /// The provider's event id.
    pub event_id: String,
    /// `applied`, `recorded`, `duplicate` or `unmatched` (as for a delivery of one event).
    pub status: String,
    /// The refund it concerns, when one matched.
    pub refund_id: Option<String>,
}

impl From<&EventResult> for EventReceipt {
    fn from(r: &EventResult) -> Self {
        let (status, refund_id) = match r {
            EventResult::Applied { refund_id, .. } => ("applied", Some(refund_id.clone())),
            EventResult::Recorded { refund_id } => ("recorded", Some(refund_id.clone())),
            EventResult::Duplicate => ("duplicate", None),
            EventResult::Unmatched => ("unmatched", None),
        };
        EventReceipt {
            event_id: String::new(),
            status: status.into(),
            refund_id,
        }
    }
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
        (status = 200, description = "Accepted (duplicates, unmatched events and event types the plugin does not handle included)", body = WebhookReceipt),
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
    method: Method,
    OriginalUri(uri): OriginalUri,
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
    // The plugin sees the request as the provider made it: some providers sign the path or
    // put a token in the query.
    let req = WebhookRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    };
    let accepted = state
        .service
        .webhook(&provider, req)
        .await
        .map_err(intake_error)?;
    let receipt = match accepted {
        WebhookAccepted::Ignored { reason } => WebhookReceipt {
            status: "ignored".into(),
            refund_id: None,
            events: Vec::new(),
            reason: Some(reason),
        },
        WebhookAccepted::Events(accepted) => {
            let events: Vec<EventReceipt> = accepted
                .iter()
                .map(|e| EventReceipt {
                    event_id: e.event_id.clone(),
                    ..EventReceipt::from(&e.result)
                })
                .collect();
            let (status, refund_id) = match events.as_slice() {
                [one] => (one.status.clone(), one.refund_id.clone()),
                _ => ("accepted".to_owned(), None),
            };
            WebhookReceipt {
                status,
                refund_id,
                events,
                reason: None,
            }
        }
    };
    if let Some(id) = &receipt.refund_id {
        span.record("refund_id", id.as_str());
    }
    Ok(Json(receipt))
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
