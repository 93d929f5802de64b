//! The MFS Africa part of the unauthenticated `/_sandbox` control API used by tests and the demo;
//! faults, the IP allowlist and webhook configuration and deliveries are served by
//! [`crate::control`].
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
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::{Refund, RefundStatus, Transaction, TransitionError};
use super::wire::RefundObject;
use super::{Shared, money};
use crate::control::{ControlError, ControlResult, parse};

/// The control routes (the MFS Africa ones and the common ones).
pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/transactions", post(seed_transaction))
        .route("/_sandbox/refunds", get(list_refunds))
        .route(
            "/_sandbox/refunds/{refund_id}/status",
            post(set_refund_status),
        )
        .route("/_sandbox/stats", get(stats))
        .merge(crate::control::router::<Shared>())
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

/// A refund as the control API shows it: the spec's refund object, plus what the sandbox noted
/// about the request that created it.
#[derive(Serialize)]
struct ControlRefund {
    #[serde(flatten)]
    refund: RefundObject,
    /// The `X-Plugin-Version` header of the creating request; `null` when it had none.
    created_by_plugin_version: Option<String>,
}

/// `{"data": [...]}`, like the API's list.
#[derive(Serialize)]
struct ControlRefundList {
    data: Vec<ControlRefund>,
}

impl From<&Refund> for ControlRefund {
    fn from(refund: &Refund) -> Self {
        Self {
            refund: RefundObject::from(refund),
            created_by_plugin_version: refund.created_by_plugin_version.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: RefundStatus,
    failure_reason: Option<String>,
}

/// The `failure_reason` of a `failed` move that does not give one.
const DEFAULT_FAILURE_REASON: &str = "operator_rejected";

/// `POST /_sandbox/refunds/{refund_id}/status`: moves a refund and emits a webhook; answers the
/// refund object, the same as the webhook's `data`.
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
        ControlError::new(status, error.to_string())
    })?;
    shared.emit_status_changed(&refund, now);
    Ok(Json(RefundObject::from(&refund)).into_response())
}

/// `GET /_sandbox/refunds`: `{"data": [...]}`, every refund oldest first, each the spec's refund
/// object plus `created_by_plugin_version`.
async fn list_refunds(State(shared): State<Arc<Shared>>) -> Response {
    let data = shared
        .ledger()
        .refunds()
        .iter()
        .map(ControlRefund::from)
        .collect();
    Json(ControlRefundList { data }).into_response()
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
