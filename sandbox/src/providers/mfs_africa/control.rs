//! The MFS Africa part of the unauthenticated `/_sandbox` control API used by tests and the demo;
//! faults, the IP allowlist and webhook configuration and deliveries are served by
//! [`crate::control`].
//!
//! Bodies are JSON; bad input is 400 `{"error": "..."}`, unknown ids 404, illegal refund moves 409.
//!
//! - `POST /_sandbox/transactions` `{"transaction_id", "amount": "5000.00", "currency": "KES",
//!   "completed_at": RFC 3339 (default now)?, "settled": bool (default true)?}`: seeds or
//!   replaces an original transaction; 201 with the transaction as stored.
//! - `POST /_sandbox/portal-refunds` `{"original_transaction_id", "amount": "1500.00" (or
//!   "amount_minor": 150000), "currency": "KES", "reason"?, "external_refund_id"?, "created_at":
//!   RFC 3339 (default now)?}`: a refund made by the merchant's staff in the provider's portal;
//!   201 with the refund object. See [`create_portal_refund`].
//! - `POST /_sandbox/refunds/{refund_id}/status` `{"status": "processed"|"failed"|"reversed",
//!   "failure_reason"?}`: a legal move emits a webhook and answers the refund object.
//! - `DELETE /_sandbox/refunds/{refund_id}`: the provider loses the refund; 200
//!   `{"deleted": refund_id}`, 404 when unknown.
//! - `GET /_sandbox/refunds`: `{"data": [...]}`, every refund in the order recorded, each the
//!   refund object plus `created_by_plugin_version`.
//! - `GET /_sandbox/stats`: request and refund counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::{PortalError, PortalRefund, Refund, RefundStatus, Transaction, TransitionError};
use super::wire::{self, RefundObject};
use super::{Shared, money, random_id};
use crate::control::{ControlError, ControlResult, parse};

/// The control routes (the MFS Africa ones and the common ones).
pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/transactions", post(seed_transaction))
        .route("/_sandbox/portal-refunds", post(create_portal_refund))
        .route("/_sandbox/refunds", get(list_refunds))
        .route("/_sandbox/refunds/{refund_id}", delete(delete_refund))
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

/// `GET /_sandbox/stats`: request counters, and refund counts.
///
/// `refunds_created` counts every refund made at the provider, through the API or in the portal
/// (a portal refund is as real at the provider as any other); `portal_refunds_created` says how
/// many of them came from the portal; `refunds_deleted` how many the provider lost since. A replay
/// makes no refund and is not counted.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = &shared.stats;
    let counts = shared.ledger().counts();
    Json(json!({
        "requests": {
            "POST /v1/refunds": stats.create.load(Ordering::Relaxed),
            "GET /v1/refunds/{id}": stats.get.load(Ordering::Relaxed),
            "GET /v1/refunds?external_refund_id": stats.list.load(Ordering::Relaxed),
            "GET /v1/refunds?created_from": stats.list_range.load(Ordering::Relaxed),
        },
        "refunds_created": counts.created,
        "portal_refunds_created": counts.portal,
        "refunds_deleted": counts.deleted,
        "auth_failures": stats.auth_failures.load(Ordering::Relaxed),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalRefundBody {
    original_transaction_id: String,
    /// In major units, as the seeding endpoint and the API write amounts: `"1500.00"`.
    amount: Option<String>,
    /// The same in minor units (`150000`); exactly one of the two.
    amount_minor: Option<i64>,
    currency: String,
    reason: Option<String>,
    external_refund_id: Option<String>,
    created_at: Option<String>,
}

/// The longest `reason` the API takes (spec, "Create a refund").
const MAX_REASON_CHARS: usize = 255;

/// `POST /_sandbox/portal-refunds`: a refund made by the merchant's staff in the provider's
/// portal, never through the API.
///
/// The API's business rules apply, judged at `created_at` (unknown transaction 404, currency,
/// settlement, 180-day window and refundable amount 422), answered with the API's status and
/// `{"error": message, "code": the API's code}`. There is no idempotency: an
/// `external_refund_id` already in use is 409 `duplicate_external_refund_id`. Without one the
/// refund has `"external_refund_id": null`, as a refund made by staff has no merchant-side id.
/// `created_at` (RFC 3339, any offset, fractions cut; default now) places the refund in the past,
/// e.g. to test lists over several ranges; it may not be in the future or before the original
/// completed (422). The refund is `pending`, with a `rfnd_` id, and shows in lookups, lists,
/// stats and (once moved) webhooks like any other; making it sends no webhook, like an API create.
async fn create_portal_refund(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let body: PortalRefundBody = parse(&body)?;
    if body.original_transaction_id.is_empty() {
        return Err(ControlError::bad_request(
            "original_transaction_id must not be empty",
        ));
    }
    let digits = money::minor_digits(&body.currency)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    let amount_minor = match (&body.amount, body.amount_minor) {
        (Some(amount), None) => money::parse_amount(amount, &body.currency)
            .map_err(|e| ControlError::bad_request(e.to_string()))?,
        (None, Some(minor)) if minor > 0 => minor,
        (None, Some(_)) => {
            return Err(ControlError::bad_request(
                "amount_minor must be greater than zero",
            ));
        }
        _ => {
            return Err(ControlError::bad_request(format!(
                "give exactly one of amount (a decimal string with {digits} decimals) and \
                 amount_minor (an integer in minor units)"
            )));
        }
    };
    if let Some(reason) = &body.reason
        && reason.chars().count() > MAX_REASON_CHARS
    {
        return Err(ControlError::bad_request(
            "reason must be at most 255 characters",
        ));
    }
    if let Some(id) = &body.external_refund_id
        && !wire::is_valid_external_id(id)
    {
        return Err(ControlError::bad_request(
            "external_refund_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    let now = Utc::now();
    let created_at = match &body.created_at {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| ControlError::bad_request(format!("created_at is not RFC 3339: {e}")))?
            .to_utc(),
    };
    // The refund object shows seconds; keeping fractions would order refunds by a time no
    // client can see.
    let created_at = created_at.trunc_subsecs(0);
    if created_at > now {
        return Err(ControlError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "created_at must not be in the future",
        ));
    }
    let request = PortalRefund {
        original_transaction_id: body.original_transaction_id,
        amount_minor,
        currency: body.currency,
        reason: body.reason,
        external_refund_id: body.external_refund_id,
        created_at,
    };
    let created = shared
        .ledger()
        .create_portal_refund(request, random_id("rfnd_"));
    match created {
        Ok(refund) => {
            tracing::info!(refund_id = %refund.refund_id, "portal refund created");
            Ok((StatusCode::CREATED, Json(RefundObject::from(&refund))).into_response())
        }
        Err(PortalError::Refused(error)) => {
            let (status, code) = error.status_and_code();
            let code = code.to_owned();
            Err(ControlError::new(status, error.to_string()).with_code(code))
        }
        Err(error @ PortalError::BeforeOriginal { .. }) => Err(ControlError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.to_string(),
        )),
    }
}

/// `DELETE /_sandbox/refunds/{refund_id}`: the provider loses the refund (see
/// `Ledger::delete`), so that a reconciliation meets a refund the merchant's books have and the
/// provider does not.
async fn delete_refund(
    State(shared): State<Arc<Shared>>,
    Path(refund_id): Path<String>,
) -> ControlResult {
    match shared.ledger().delete(&refund_id) {
        Some(_) => Ok(Json(json!({ "deleted": refund_id })).into_response()),
        None => Err(ControlError::new(
            StatusCode::NOT_FOUND,
            format!("refund {refund_id:?} not found"),
        )),
    }
}
