//! The PagoEfectivo part of the unauthenticated `/_sandbox` control API used by tests and the
//! demo; faults, the IP allowlist and notification configuration and deliveries are served by
//! [`crate::control`] (the notification URL is its `callback_url`).
//!
//! Bodies are JSON; bad input is 400 `{"error": "..."}`, unknown ids 404, illegal refund moves 409.
//!
//! - `POST /_sandbox/payments` `{"transaction_id", "amount": "160.50", "currency": "PEN",
//!   "paid_at": RFC 3339 (any offset, default now)?, "paid": bool (default true)?}`: seeds or
//!   replaces a payment; 201 with the payment as stored (`paid_at` at the Lima offset).
//! - `POST /_sandbox/refunds/{referenceId}/status` `{"status": "completed"|"rejected"|"reverted",
//!   "status_reason": "..."?}`: a legal move sends a notification and answers the refund object.
//! - `GET /_sandbox/refunds`: `{"data": [refund object, ...]}`, oldest first.
//! - `POST /_sandbox/balance` `{"sufficient": bool}`: while false, creates that pass every other
//!   check get `136`.
//! - `POST /_sandbox/tokens/expire`: every issued token is expired now (`{"expired": n}`, the
//!   number that were still valid).
//! - `POST /_sandbox/token-lifetime` `{"seconds": N}`: the lifetime of tokens issued from now on
//!   (0 to one year).
//! - `GET /_sandbox/stats`: request counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::money::{self, Currency};
use super::state::{Payment, RefundStatus, TransitionError};
use super::wire::{self, RefundObject};
use super::{Shared, Stats};
use crate::control::{ControlError, ControlResult, parse};

/// The longest token lifetime `POST /_sandbox/token-lifetime` accepts.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 60 * 60;

/// The control routes (the PagoEfectivo ones and the common ones).
pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/payments", post(seed_payment))
        .route("/_sandbox/refunds", get(list_refunds))
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

/// `GET /_sandbox/stats`: request counters.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let Stats {
        authorize,
        create,
        get,
        list,
        authorizations,
        auth_failures,
    } = &shared.stats;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let refunds_created = shared.ledger().refunds().len();
    Json(json!({
        "requests": {
            "POST /v1/authorizations": load(authorize),
            "POST /v1/refunds": load(create),
            "GET /v1/refunds/{referenceId}": load(get),
            "GET /v1/refunds?refundId": load(list),
        },
        "authorizations": load(authorizations),
        "refunds_created": refunds_created,
        "auth_failures": load(auth_failures),
    }))
    .into_response()
}
