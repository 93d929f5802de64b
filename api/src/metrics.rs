//! `GET /metrics` (scope `metrics`): every Prometheus metric of the service, in the text
//! exposition format. See [`refundry_service::metrics`] for what each one counts.
//!
//! A scope of its own, so that the token Prometheus holds (`authorization: {credentials: ...}` in
//! its scrape config) can read counts and nothing else: no refund, no exchange log, no plugin.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::auth::{Authorized, RequiredScope};
use super::error::{ApiError, ErrorBody};
use super::{AppState, RefundApi};
use refundry_service::config::Scope;

/// Scope `metrics`: `GET /metrics`.
pub struct MetricsScope;

impl RequiredScope for MetricsScope {
    const SCOPE: Scope = Scope::Metrics;
}

/// Every metric: refunds by provider, plugin version and status, refunds that reached a final
/// status, the janitor's backlog and the oldest refund not final (from the ledger, now), provider
/// latency, plugin failures and failed webhook verifications (counted since the service started).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `metrics`", body = ErrorBody),
        (status = 500, description = "The ledger could not be read", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn metrics<S: RefundApi>(
    _auth: Authorized<MetricsScope>,
    State(state): State<AppState<S>>,
) -> Result<impl IntoResponse, ApiError> {
    let text = state
        .service
        .metrics()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            refundry_service::metrics::CONTENT_TYPE,
        )],
        text,
    ))
}
