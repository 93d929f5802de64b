//! The PagoEfectivo part of the unauthenticated `/_sandbox` control API used by tests and the
//! demo; faults, the IP allowlist and notification configuration and deliveries are served by
//! [`crate::control`] (the notification URL is its `callback_url`).
//!
//! Bodies are JSON; bad input is 400 `{"error": "..."}`, unknown ids 404, illegal refund moves 409.
//!
//! - `POST /_sandbox/payments` `{"transaction_id", "amount": "160.50", "currency": "PEN",
//!   "paid_at": RFC 3339 (any offset, default now)?, "paid": bool (default true)?}`: seeds or
//!   replaces a payment; 201 with the payment as stored (`paid_at` at the Lima offset).
//! - `POST /_sandbox/portal-refunds` `{"transaction_id", "amount": "160.50" (or "amount_minor":
//!   16050), "currency": "PEN", "reason"?, "refund_id"?, "transaction_code"?, "created_at":
//!   RFC 3339 (default now)?}`: a refund made by the merchant's staff in PagoEfectivo's back
//!   office; 201 with the refund object. See [`create_portal_refund`].
//! - `DELETE /_sandbox/refunds/{referenceId}`: the provider loses the refund; 200
//!   `{"deleted": referenceId}`, 404 when unknown.
//! - `POST /_sandbox/refunds/{referenceId}/status` `{"status": "completed"|"rejected"|"reverted",
//!   "status_reason": "..."?}`: a legal move sends a notification and answers the refund object.
//! - `GET /_sandbox/refunds`: `{"data": [refund object, ...]}`, in the order recorded.
//! - `POST /_sandbox/balance` `{"sufficient": bool}`: while false, creates that pass every other
//!   check get `136`.
//! - `POST /_sandbox/tokens/expire`: every issued token is expired now (`{"expired": n}`, the
//!   number that were still valid).
//! - `POST /_sandbox/token-lifetime` `{"seconds": N}`: the lifetime of tokens issued from now on
//!   (0 to one year).
//! - `GET /_sandbox/stats`: request and refund counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::json;

use super::money::{self, Currency};
use super::state::{Payment, PortalError, PortalRefund, RefundStatus, TransitionError};
use super::wire::{self, RefundObject};
use super::{Shared, Stats};
use crate::control::{ControlError, ControlResult, parse};

/// The longest token lifetime `POST /_sandbox/token-lifetime` accepts.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 60 * 60;

/// The control routes (the PagoEfectivo ones and the common ones).
pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/payments", post(seed_payment))
        .route("/_sandbox/portal-refunds", post(create_portal_refund))
        .route("/_sandbox/refunds", get(list_refunds))
        .route("/_sandbox/refunds/{reference_id}", delete(delete_refund))
        .route(
            "/_sandbox/refunds/{reference_id}/status",
            post(set_refund_status),
        )
        .route("/_sandbox/balance", post(set_balance))
        .route("/_sandbox/tokens/expire", post(expire_tokens))
        .route("/_sandbox/token-lifetime", post(set_token_lifetime))
        .route("/_sandbox/stats", get(stats))
        .merge(crate::control::router::<Shared>())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedPayment {
    transaction_id: String,
    amount: String,
    currency: String,
    paid_at: Option<String>,
    paid: Option<bool>,
}

/// `POST /_sandbox/payments`: seeds (or replaces) an original payment.
async fn seed_payment(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let seed: SeedPayment = parse(&body)?;
    if seed.transaction_id.is_empty() {
        return Err(ControlError::bad_request(
            "transaction_id must not be empty",
        ));
    }
    let amount_cents =
        money::parse_amount(&seed.amount).map_err(|e| ControlError::bad_request(e.to_string()))?;
    let currency = Currency::parse(&seed.currency).ok_or_else(|| {
        ControlError::bad_request(format!(
            "currency {:?} is not supported (PEN or USD)",
            seed.currency
        ))
    })?;
    let paid_at = match &seed.paid_at {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| ControlError::bad_request(format!("paid_at is not RFC 3339: {e}")))?
            .to_utc(),
    };
    let payment = Payment {
        transaction_id: seed.transaction_id,
        amount_cents,
        currency,
        paid_at,
        paid: seed.paid.unwrap_or(true),
    };
    let answer = json!({
        "transaction_id": payment.transaction_id,
        "amount": money::format_amount(payment.amount_cents),
        "currency": payment.currency,
        "paid_at": wire::format_date(payment.paid_at),
        "paid": payment.paid,
    });
    shared.ledger().seed_payment(payment);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: RefundStatus,
    status_reason: Option<String>,
}

/// `POST /_sandbox/refunds/{reference_id}/status`: moves a refund and sends a notification.
async fn set_refund_status(
    State(shared): State<Arc<Shared>>,
    Path(reference_id): Path<String>,
    body: Bytes,
) -> ControlResult {
    let change: StatusChange = parse(&body)?;
    let moved = shared.ledger().transition(
        &reference_id,
        change.status,
        change.status_reason,
        Utc::now(),
    );
    let refund = moved.map_err(|error| {
        let status = match error {
            TransitionError::NotFound(_) => StatusCode::NOT_FOUND,
            TransitionError::Illegal { .. } => StatusCode::CONFLICT,
        };
        ControlError::new(status, error.to_string())
    })?;
    shared.notify(&refund);
    Ok(Json(RefundObject::from(&refund)).into_response())
}

/// `GET /_sandbox/refunds`: every refund, oldest first.
async fn list_refunds(State(shared): State<Arc<Shared>>) -> Response {
    let data: Vec<RefundObject> = shared
        .ledger()
        .refunds()
        .iter()
        .map(RefundObject::from)
        .collect();
    Json(json!({ "data": data })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Balance {
    sufficient: bool,
}

/// `POST /_sandbox/balance`: whether the merchant's balance can fund refunds.
async fn set_balance(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let balance: Balance = parse(&body)?;
    shared
        .balance_sufficient
        .store(balance.sufficient, Ordering::SeqCst);
    Ok(Json(json!({ "sufficient": balance.sufficient })).into_response())
}

/// `POST /_sandbox/tokens/expire`: expires every issued token now.
async fn expire_tokens(State(shared): State<Arc<Shared>>) -> Response {
    let expired = shared.tokens().expire_all(Utc::now());
    Json(json!({ "expired": expired })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLifetime {
    seconds: u64,
}

/// `POST /_sandbox/token-lifetime`: the lifetime of tokens issued from now on.
async fn set_token_lifetime(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let lifetime: TokenLifetime = parse(&body)?;
    if lifetime.seconds > MAX_TOKEN_LIFETIME_SECS {
        return Err(ControlError::bad_request(format!(
            "seconds must be at most {MAX_TOKEN_LIFETIME_SECS}"
        )));
    }
    shared
        .tokens()
        .set_lifetime(Duration::from_secs(lifetime.seconds));
    Ok(Json(json!({ "seconds": lifetime.seconds })).into_response())
}

/// `GET /_sandbox/stats`: request counters, and refund counts.
///
/// `refunds_created` counts every refund made at the provider, through the API or in the back
/// office (a back-office refund is as real at the provider as any other);
/// `portal_refunds_created` says how many of them came from the back office; `refunds_deleted`
/// how many the provider lost since. A replay makes no refund and is not counted.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let Stats {
        authorize,
        create,
        get,
        list,
        list_range,
        authorizations,
        auth_failures,
    } = &shared.stats;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let counts = shared.ledger().counts();
    Json(json!({
        "requests": {
            "POST /v1/authorizations": load(authorize),
            "POST /v1/refunds": load(create),
            "GET /v1/refunds/{referenceId}": load(get),
            "GET /v1/refunds?refundId": load(list),
            "GET /v1/refunds?dateFrom": load(list_range),
        },
        "authorizations": load(authorizations),
        "refunds_created": counts.created,
        "portal_refunds_created": counts.portal,
        "refunds_deleted": counts.deleted,
        "auth_failures": load(auth_failures),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalRefundBody {
    transaction_id: String,
    /// In major units, as the seeding endpoint and the API write amounts: `"160.50"`.
    amount: Option<String>,
    /// The same in cents (`16050`); exactly one of the two.
    amount_minor: Option<i64>,
    currency: String,
    reason: Option<String>,
    refund_id: Option<String>,
    transaction_code: Option<String>,
    created_at: Option<String>,
}

/// The longest `reason` the API takes (spec, "Create a refund").
const MAX_REASON_CHARS: usize = 200;

/// `POST /_sandbox/portal-refunds`: a refund made by the merchant's staff in PagoEfectivo's back
/// office, never through the API.
///
/// The API's business rules apply, judged at `created_at` (unknown payment 404 `120`; currency
/// `133`, not paid `135`, 180-day window `134`, refundable balance `132`, merchant balance `136`:
/// 422), answered with the API's status and `{"error": message, "code": the API's code}`. There
/// is no idempotency: a `refund_id` already in use is 409 `131`; without one the refund's
/// `refundId` is `portal-<n>` (n from 1, skipping ids in use). `transaction_code` defaults to the
/// `transaction_id` (the sandbox does not know the merchant's order id for a payment).
/// `created_at` (RFC 3339, any offset, fractions cut; default now) places the refund in the past,
/// e.g. to test lists over several ranges; it may not be in the future or before the payment was
/// made (422). The refund is `pending`, with the next `referenceId`, and shows in lookups, lists,
/// stats and (once moved) notifications like any other; making it sends no notification, like
/// an API create.
async fn create_portal_refund(State(shared): State<Arc<Shared>>, body: Bytes) -> ControlResult {
    let body: PortalRefundBody = parse(&body)?;
    if body.transaction_id.is_empty() {
        return Err(ControlError::bad_request(
            "transaction_id must not be empty",
        ));
    }
    let currency = Currency::parse(&body.currency).ok_or_else(|| {
        ControlError::bad_request(format!(
            "currency {:?} is not supported (PEN or USD)",
            body.currency
        ))
    })?;
    let amount_cents = match (&body.amount, body.amount_minor) {
        (Some(amount), None) => {
            money::parse_amount(amount).map_err(|e| ControlError::bad_request(e.to_string()))?
        }
        (None, Some(minor)) if minor > 0 => minor,
        (None, Some(_)) => {
            return Err(ControlError::bad_request(
                "amount_minor must be greater than zero",
            ));
        }
        _ => {
            return Err(ControlError::bad_request(
                "give exactly one of amount (a decimal string with 2 decimals) and amount_minor \
                 (an integer in cents)",
            ));
        }
    };
    if let Some(reason) = &body.reason
        && reason.chars().count() > MAX_REASON_CHARS
    {
        return Err(ControlError::bad_request(
            "reason must be at most 200 characters",
        ));
    }
    if let Some(id) = &body.refund_id
        && !wire::is_valid_refund_id(id)
    {
        return Err(ControlError::bad_request(
            "refund_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    if body.transaction_code.as_deref() == Some("") {
        return Err(ControlError::bad_request(
            "transaction_code must not be empty",
        ));
    }
    let now = Utc::now();
    let created_at = match &body.created_at {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| ControlError::bad_request(format!("created_at is not RFC 3339: {e}")))?
            .to_utc(),
    };
    // `dateCreation` shows seconds; keeping fractions would order refunds by a time no client
    // can see.
    let created_at = created_at.trunc_subsecs(0);
    if created_at > now {
        return Err(ControlError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "created_at must not be in the future",
        ));
    }
    let request = PortalRefund {
        transaction_code: body
            .transaction_code
            .unwrap_or_else(|| body.transaction_id.clone()),
        transaction_id: body.transaction_id,
        amount_cents,
        currency,
        refund_id: body.refund_id,
        reason: body.reason,
        created_at,
    };
    let balance_sufficient = shared.balance_sufficient.load(Ordering::SeqCst);
    let created = shared
        .ledger()
        .create_portal_refund(request, balance_sufficient);
    match created {
        Ok(refund) => {
            tracing::info!(reference_id = %refund.reference_id, "portal refund created");
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

/// `DELETE /_sandbox/refunds/{reference_id}`: the provider loses the refund (see
/// `Ledger::delete`), so that a reconciliation meets a refund the merchant's books have and the
/// provider does not.
async fn delete_refund(
    State(shared): State<Arc<Shared>>,
    Path(reference_id): Path<String>,
) -> ControlResult {
    match shared.ledger().delete(&reference_id) {
        Some(_) => Ok(Json(json!({ "deleted": reference_id })).into_response()),
        None => Err(ControlError::new(
            StatusCode::NOT_FOUND,
            format!("refund {reference_id:?} not found"),
        )),
    }
}
