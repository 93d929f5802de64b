//! The provider-independent part of every simulator's unauthenticated `/_sandbox` control API:
//! the error convention and the routes for faults, the IP allowlist and webhook delivery.
//!
//! Conventions shared by all control endpoints: bodies are JSON; bad input is 400
//! `{"error": "..."}`, unknown ids 404, illegal moves 409 (same body). A control request refused
//! by one of the provider's own business rules (a portal refund over the refundable balance, say)
//! gets the status the provider's API would give and also names the provider's error code:
//! `{"error": "...", "code": "amount_exceeded"}`.
//!
//! Routes served here for any simulator implementing [`Controlled`]:
//! - `POST /_sandbox/faults`: queues a [`FaultSpec`] (201 `{"queued": spec}`), validated under the
//!   simulator's [`crate::faults::FaultPolicy`];
//! - `DELETE /_sandbox/faults`: clears the queue (200 `{"cleared": true}`);
//! - `POST /_sandbox/ip-allowlist` `{"allowed": ["203.0.113.7", ...]}` (empty = off);
//! - `POST /_sandbox/webhooks/config` `{"callback_url": "http://..."}` or `null` to stop;
//! - `GET /_sandbox/webhooks/deliveries`: every delivery attempt, oldest first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::allowlist::IpAllowlist;
use crate::faults::{FaultSpec, Faults};
use crate::webhooks::Dispatcher;

/// A refused control request: `status` with `{"error": message}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ControlError {
    status: StatusCode,
    message: String,
    /// The provider's error code, when a provider business rule refused the request.
    code: Option<String>,
}

impl ControlError {
    /// Any status with a message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// Also names the provider's error code in the body (`"code"`).
    pub(crate) fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// 400 with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = match self.code {
            Some(code) => json!({ "error": self.message, "code": code }),
            None => json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

/// What a control handler answers.
pub(crate) type ControlResult = Result<Response, ControlError>;

/// Parses a JSON control body; any problem is 400 with serde's explanation.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::bad_request(format!("bad body: {e}")))
}

/// The shared pieces of a simulator's state that the common control routes drive.
pub(crate) trait Controlled: Send + Sync + 'static {
    /// The fault queue.
    fn faults(&self) -> &Faults;
    /// The caller IP allowlist.
    fn allowlist(&self) -> &IpAllowlist;
    /// The webhook dispatcher.
    fn webhooks(&self) -> &Dispatcher;
}

/// The common control routes, for a simulator whose state is `S`.
pub(crate) fn router<S: Controlled>() -> Router<Arc<S>> {
    Router::new()
        .route(
            "/_sandbox/faults",
            post(add_fault::<S>).delete(clear_faults::<S>),
        )
        .route("/_sandbox/ip-allowlist", post(set_allowlist::<S>))
        .route("/_sandbox/webhooks/config", post(set_webhook_config::<S>))
        .route("/_sandbox/webhooks/deliveries", get(deliveries::<S>))
}

/// `POST /_sandbox/faults`: queues a fault (`status`, `error`, `delay`, `drop_webhooks`,
/// `duplicate_webhooks` or `fail_webhooks`; see [`FaultSpec`]). Invalid specs are 400 with the
/// reason.
async fn add_fault<S: Controlled>(State(shared): State<Arc<S>>, body: Bytes) -> ControlResult {
    let spec: FaultSpec = parse(&body)?;
    shared
        .faults()
        .push(&spec)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "queued": spec }))).into_response())
}

/// `DELETE /_sandbox/faults`: clears every queued fault.
async fn clear_faults<S: Controlled>(State(shared): State<Arc<S>>) -> Response {
    shared.faults().clear();
    Json(json!({ "cleared": true })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowlist {
    allowed: Vec<String>,
}

/// `POST /_sandbox/ip-allowlist`: sets the allowlist (empty = off).
async fn set_allowlist<S: Controlled>(State(shared): State<Arc<S>>, body: Bytes) -> ControlResult {
    let list: Allowlist = parse(&body)?;
    let allowed = shared
        .allowlist()
        .set(&list.allowed)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "allowed": allowed })).into_response())
}

/// `POST /_sandbox/webhooks/config`: `{"callback_url": "http://..."}` or `null` to stop.
async fn set_webhook_config<S: Controlled>(
    State(shared): State<Arc<S>>,
    body: Bytes,
) -> ControlResult {
    let value: Value = parse(&body)?;
    // The key is required, so that a misspelt key does not silently switch webhooks off.
    let url = match value.as_object().map(|o| (o.len(), o.get("callback_url"))) {
        Some((1, Some(Value::Null))) => None,
        Some((1, Some(Value::String(url)))) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ControlError::bad_request(format!("callback_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ControlError::bad_request(
                    "callback_url must be an http or https URL",
                ));
            }
            Some(url.clone())
        }
        _ => {
            return Err(ControlError::bad_request(
                "body must be {\"callback_url\": \"http://...\"} or {\"callback_url\": null}",
            ));
        }
    };
    shared.webhooks().set_callback_url(url.clone());
    Ok(Json(json!({ "callback_url": url })).into_response())
}

/// `GET /_sandbox/webhooks/deliveries`: every delivery attempt, oldest first.
async fn deliveries<S: Controlled>(State(shared): State<Arc<S>>) -> Response {
    Json(shared.webhooks().deliveries()).into_response()
}
