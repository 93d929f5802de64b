//! `/v1/reconciliations`: runs of reconciliation against each provider's own list of refunds,
//! with what each found (scope `refunds` to read), and a run started on demand (scope `admin`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AdminScope, Authorized, RefundsScope};
use super::error::{ApiError, ErrorBody, JsonBody, QueryPairs};
use super::refunds::page_limit;
use super::{AppState, RefundApi};
use refundry_ledger::{ReconciliationPage, ReconciliationQuery, ReconciliationRecord};
use refundry_service::export::DEFAULT_PAGE;
use refundry_service::refunds::ReconcileError;

/// The body of `POST /v1/reconciliations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// The provider to reconcile.
    #[schema(example = "mfs-africa")]
    pub provider: String,
    /// The first instant of the range (RFC 3339): refunds created at or after it.
    #[schema(example = "2026-11-01T00:00:00Z")]
    pub from: DateTime<Utc>,
    /// The first instant after the range (RFC 3339): refunds created before it.
    #[schema(example = "2026-12-01T00:00:00Z")]
    pub to: DateTime<Utc>,
}

/// The query parameters of `GET /v1/reconciliations` (documentation; [`parse`] reads them).
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationParams {
    /// Only this provider's runs (empty: every provider's).
    pub provider: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor` (empty: the newest runs).
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

/// The longest cursor: a run id (`rec_` and a UUID) with room to spare.
const MAX_CURSOR: usize = 64;

/// Reads the query: an unknown parameter or a bad value is a 400 naming it.
pub fn parse(pairs: Vec<(String, String)>) -> Result<ReconciliationQuery, ApiError> {
    let mut query = ReconciliationQuery {
        limit: DEFAULT_PAGE,
        ..ReconciliationQuery::default()
    };
    for (name, value) in pairs {
        if value.is_empty() && matches!(name.as_str(), "provider" | "cursor") {
            continue;
        }
        match name.as_str() {
            "provider" => query.provider = Some(value),
            "limit" => query.limit = page_limit(&value)?,
            "cursor" if value.chars().count() > MAX_CURSOR => {
                return Err(ApiError::invalid(
                    "cursor",
                    "cursor is not a next_cursor this API gave",
                ));
            }
            "cursor" => query.cursor = Some(value),
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    Ok(query)
}

/// The reconciliation runs, newest first, each with its counts of findings by kind (the
/// findings themselves are in `GET /v1/reconciliations/{id}`).
#[utoipa::path(
    get,
    path = "/v1/reconciliations",
    tag = "reconciliations",
    operation_id = "list_reconciliations",
    params(ReconciliationParams),
    responses(
        (status = 200, description = "A page of runs", body = ReconciliationPage),
        (status = 400, description = "A bad or unknown parameter (`invalid_request`, named in \
            `field`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `refunds`", body = ErrorBody),
        (status = 500, description = "The ledger could not be read (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list<S: RefundApi>(
    _auth: Authorized<RefundsScope>,
    State(state): State<AppState<S>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<ReconciliationPage>, ApiError> {
    let query = parse(pairs)?;
    state
        .service
        .reconciliations(query)
        .await
        .map(Json)
        .map_err(|e| ApiError::internal(&e))
}

/// One reconciliation run with every finding.
#[utoipa::path(
    get,
    path = "/v1/reconciliations/{id}",
    tag = "reconciliations",
    operation_id = "get_reconciliation",
    params(("id" = String, Path, description = "The run's id (`rec_...`)")),
    responses(
        (status = 200, description = "The run and its findings", body = ReconciliationRecord),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `refunds`", body = ErrorBody),
        (status = 404, description = "No such run (`not_found`)", body = ErrorBody),
        (status = 500, description = "The ledger could not be read (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get<S: RefundApi>(
    _auth: Authorized<RefundsScope>,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<ReconciliationRecord>, ApiError> {
    match state.service.reconciliation(&id).await {
        Ok(Some(run)) => Ok(Json(run)),
        Ok(None) => Err(ApiError::not_found(format!("no reconciliation {id:?}"))),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// Reconciles a provider now over `[from, to)`: its own list of refunds against the ledger.
/// Status differences are applied when they move a refund forward; everything else is
/// reported. The run is kept (`GET /v1/reconciliations/{id}`).
#[utoipa::path(
    post,
    path = "/v1/reconciliations",
    tag = "reconciliations",
    operation_id = "run_reconciliation",
    request_body = ReconcileRequest,
    responses(
        (status = 201, description = "The run and its findings (`outcome`: `matched` or \
            `discrepancies`)", body = ReconciliationRecord),
        (status = 400, description = "The body is not a request (`invalid_request`)",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "`from` is not before `to`, or the range is longer than \
            366 days (`invalid_range`); or the provider's plugin cannot list refunds (contract \
            0.1, or a provider without a list: `reconcile_unsupported`)", body = ErrorBody),
        (status = 500, description = "The ledger failed (`internal`)", body = ErrorBody),
        (status = 502, description = "The provider could not be asked (`provider_unavailable`)",
            body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn run<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
    JsonBody(req): JsonBody<ReconcileRequest>,
) -> Result<(StatusCode, Json<ReconciliationRecord>), ApiError> {
    tracing::Span::current().record("provider", req.provider.as_str());
    let (from, to) = (req.from.timestamp_millis(), req.to.timestamp_millis());
    state
        .service
        .reconcile(&req.provider, from, to)
        .await
        .map(|run| (StatusCode::CREATED, Json(run)))
        .map_err(reconcile_error)
}

fn reconcile_error(e: ReconcileError) -> ApiError {
    let message = e.to_string();
    match e {
        ReconcileError::UnknownProvider(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_provider", message)
        }
        // Well formed but not a range one run covers: the document cannot say so in its schema.
        ReconcileError::BadRange { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_range", message)
                .with_field("to")
        }
        ReconcileError::Unsupported { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reconcile_unsupported",
            message,
        ),
        ReconcileError::Provider { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_unavailable", message)
        }
        ReconcileError::Ledger(_) => ApiError::internal(&message),
    }
}
