//! The unauthenticated `/_sandbox` control API used by tests and the demo.
//!
//! Bodies are JSON; bad input is 400 `{"error": "..."}`, unknown ids 404, illegal refund moves 409.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::state::{RefundStatus, Transaction, TransitionError};
use super::wire::{RefundList, RefundObject};
use super::{Shared, money};
use crate::faults::FaultSpec;

/// A refused control request.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ControlResult = Result<Response, ControlError>;

/// The control routes.
pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/transactions", post(seed_transaction))
        .route("/_sandbox/refunds", get(list_refunds))
        .route(
            "/_sandbox/refunds/{refund_id}/status",
            post(set_refund_status),
        )
        .route("/_sandbox/faults", post(add_fault).delete(clear_faults))
        .route("/_sandbox/ip-allowlist", post(set_allowlist))
        .route("/_sandbox/webhooks/config", post(set_webhook_config))
        .route("/_sandbox/webhooks/deliveries", get(deliveries))
        .route("/_sandbox/stats", get(stats))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::bad_request(format!("bad body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedTransaction {
    transaction_id: String,
    amount: String,
    currency: String,
    completed_at: Option<String>,
    settled: Option<bool>,
}

/// `POST /_sandbox/transactions`: seeds (or replaces) an original transaction.
async fn seed_transaction(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let seed: SeedTransaction = parse(&body)?;
    if seed.transaction_id.is_empty() {
        return Err(ControlError::bad_request(
            "transaction_id must not be empty",
        ));
    }
    let amount_minor = money::parse_amount(&seed.amount, &seed.currency)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    let completed_at = match &seed.completed_at {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| ControlError::bad_request(format!("completed_at is not RFC 3339: {e}")))?
            .to_utc(),
    };
    let transaction = Transaction {
        transaction_id: seed.transaction_id,
        amount_minor,
        currency: seed.currency,
        completed_at,
        settled: seed.settled.unwrap_or(true),
    };
    let answer = json!({
        "transaction_id": transaction.transaction_id,
        "amount": money::format_amount(transaction.amount_minor, &transaction.currency),
        "currency": transaction.currency,
        "completed_at": crate::time::rfc3339_seconds(transaction.completed_at),
        "settled": transaction.settled,
    });
    shared.ledger().seed_transaction(transaction);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: RefundStatus,
    failure_reason: Option<String>,
}

/// The `failure_reason` of a `failed` move that does not give one.
const DEFAULT_FAILURE_REASON: &str = "operator_rejected";

/// `POST /_sandbox/refunds/{refund_id}/status`: moves a refund and emits a webhook.
async fn set_refund_status(
    State(shared): State<Arc<Shared>>,
    Path(refund_id): Path<String>,
    body: Bytes,
) -> ControlResult {
    let change: StatusChange = parse(&body)?;
    let failure_reason = match (change.status, change.failure_reason) {
        (RefundStatus::Failed, reason) => {
            Some(reason.unwrap_or_else(|| DEFAULT_FAILURE_REASON.to_owned()))
        }
        (_, None) => None,
        (_, Some(_)) => {
            return Err(ControlError::bad_request(
                "failure_reason is only allowed with status \"failed\"",
            ));
        }
    };
    let now = Utc::now();
    let moved = shared
        .ledger()
        .transition(&refund_id, change.status, failure_reason, now);
    let refund = moved.map_err(|error| {
        let status = match error {
            TransitionError::NotFound(_) => StatusCode::NOT_FOUND,
            TransitionError::Illegal { .. } => StatusCode::CONFLICT,
        };
        ControlError {
            status,
            message: error.to_string(),
        }
    })?;
    shared.emit_status_changed(&refund, now);
    Ok(Json(RefundObject::from(&refund)).into_response())
}

/// `POST /_sandbox/faults`: queues a fault (`status`, `error`, `delay`, `drop_webhooks`,
/// `duplicate_webhooks` or `fail_webhooks`; see [`FaultSpec`]). Invalid specs are 400 with the
/// reason.
async fn add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let spec: FaultSpec = parse(&body)?;
    shared
        .faults
        .push(&spec)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "queued": spec }))).into_response())
}

/// `DELETE /_sandbox/faults`: clears every queued fault.
async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.clear();
    Json(json!({ "cleared": true })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowlist {
    allowed: Vec<String>,
}

/// `POST /_sandbox/ip-allowlist`: sets the allowlist (empty = off).
async fn set_allowlist(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let list: Allowlist = parse(&body)?;
    let allowed = shared
        .allowlist
        .set(&list.allowed)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "allowed": allowed })).into_response())
}

/// `POST /_sandbox/webhooks/config`: `{"callback_url": "http://..."}` or `null` to stop.
async fn set_webhook_config(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
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
    shared.webhooks.set_callback_url(url.clone());
    Ok(Json(json!({ "callback_url": url })).into_response())
}

/// `GET /_sandbox/webhooks/deliveries`: every delivery attempt, oldest first.
async fn deliveries(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.webhooks.deliveries()).into_response()
}

/// `GET /_sandbox/refunds`: every refund, oldest first.
async fn list_refunds(State(shared): State<Arc<Shared>>) -> Response {
    let data = shared
        .ledger()
        .refunds()
        .iter()
        .map(RefundObject::from)
        .collect();
    Json(RefundList { data }).into_response()
}

/// `GET /_sandbox/stats`: request counters.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = &shared.stats;
    let refunds_created = shared.ledger().refunds().len();
    Json(json!({
        "requests": {
            "POST /v1/refunds": stats.create.load(Ordering::Relaxed),
            "GET /v1/refunds/{id}": stats.get.load(Ordering::Relaxed),
            "GET /v1/refunds?external_refund_id": stats.list.load(Ordering::Relaxed),
        },
        "refunds_created": refunds_created,
        "auth_failures": stats.auth_failures.load(Ordering::Relaxed),
    }))
    .into_response()
}
