//! `/v1/refunds`: create, read, list and export refunds (scope `refunds`), and a refund's
//! provider HTTP exchanges (scope `admin`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AdminScope, Authorized, RefundsScope};
use super::error::{ApiError, ErrorBody, ErrorDetail, JsonBody, QueryPairs};
use super::{AppState, RefundApi};
use refundry_ledger::{
    ExchangeRecord, ListQuery, Outcome, Page, RefundDetail, RefundRecord, Status,
};
use refundry_service::export::{self, DEFAULT_PAGE, Format, MAX_PAGE};
use refundry_service::refunds::{CreateError, Created, NewRefund};

/// The header that marks a replayed answer (same key, same parameters as an earlier request).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The answer to a refund the provider did not take (HTTP 422, or 503 when nothing reached it):
/// why, and the refund as recorded (`failed` when refused; `unknown`, with nothing final
/// recorded, when nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundFailureBody {
    /// Why: `code` is the refund's failure code.
    pub error: ErrorDetail,
    /// The refund.
    pub refund: RefundRecord,
}

/// Creates a refund, or replays the first answer for a key already used with the same parameters.
#[utoipa::path(
    post,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "create_refund",
    request_body = NewRefund,
    responses(
        (status = 201, description = "The provider took the refund", body = RefundRecord,
            headers(
                ("Location" = String, description = "The refund: `/v1/refunds/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay (absent otherwise)"),
            ),
            links(
                ("GetRefund" = (operation_id = "get_refund", parameters(("id" = "$response.body#/id")),
                    description = "The refund and its history")),
                ("GetRefundExchanges" = (operation_id = "get_refund_exchanges",
                    parameters(("id" = "$response.body#/id")),
                    description = "The refund's provider HTTP exchanges")),
                ("ListRefundEvents" = (operation_id = "list_events",
                    parameters(("refund_id" = "$response.body#/id")),
                    description = "The events written for the refund")),
            )),
        (status = 202, description = "Outcome not known yet: the janitor finds out", body = RefundRecord,
            headers(
                ("Location" = String, description = "The refund: `/v1/refunds/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay (absent otherwise)"),
            ),
            links(
                ("GetRefund" = (operation_id = "get_refund", parameters(("id" = "$response.body#/id")),
                    description = "The refund and its history")),
                ("GetRefundExchanges" = (operation_id = "get_refund_exchanges",
                    parameters(("id" = "$response.body#/id")),
                    description = "The refund's provider HTTP exchanges")),
                ("ListRefundEvents" = (operation_id = "list_events",
                    parameters(("refund_id" = "$response.body#/id")),
                    description = "The events written for the refund")),
            )),
        (status = 400, description = "A field is missing, of the wrong type or out of its range \
            (`invalid_request`, named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `refunds`", body = ErrorBody),
        (status = 404, description = "No such provider (`unknown_provider`)", body = ErrorBody),
        (status = 409, description = "The key was used with other parameters (`idempotency_conflict`)",
            body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Refused, by a pre-check (`unsupported_currency`, \
            `currency_mismatch`, `not_settled`, `window_expired`, `amount_exceeded`) or by the \
            provider; the refund is recorded `failed`", body = RefundFailureBody,
            headers(
                ("Location" = String, description = "The refund: `/v1/refunds/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay (absent otherwise)"),
            ),
            links(
                ("GetRefund" = (operation_id = "get_refund",
                    parameters(("id" = "$response.body#/refund/id")),
                    description = "The refund and its history")),
            )),
        (status = 500, description = "The service failed (`internal`)", body = ErrorBody),
        (status = 503, description = "Nothing reached a provider that could have acted on it \
            (rate limited or no connection through every retry, or the host could not run the \
            plugin, e.g. its instance pool was full): the refund stays `unknown` with nothing \
            final recorded; send the same request again after `Retry-After` (the janitor also \
            sends it)", body = RefundFailureBody,
            headers(
                ("Retry-After" = u32, description = "Seconds to wait before sending the same request again"),
                ("Location" = String, description = "The refund: `/v1/refunds/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay (absent otherwise)"),
            ),
            links(
                ("GetRefund" = (operation_id = "get_refund",
                    parameters(("id" = "$response.body#/refund/id")),
                    description = "The refund and its history")),
            )),
    ),
    security(("bearer" = [])),
)]
pub async fn create<S: RefundApi>(
    _auth: Authorized<RefundsScope>,
    State(state): State<AppState<S>>,
    JsonBody(req): JsonBody<NewRefund>,
) -> Result<Response, ApiError> {
    let span = tracing::Span::current();
    span.record("provider", req.provider.as_str());
    let created = state.service.create(req).await.map_err(create_error)?;
    span.record("refund_id", created.refund.id.as_str());
    Ok(created_response(created))
}

fn create_error(e: CreateError) -> ApiError {
    match e {
        CreateError::UnknownProvider(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_provider", e.to_string())
                .with_field("provider")
        }
        CreateError::Invalid { ref field, .. } => ApiError::invalid(field.clone(), e.to_string()),
        CreateError::IdempotencyConflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string())
                .with_field("external_refund_id")
        }
        CreateError::Internal(_) => ApiError::internal(&e),
    }
}

fn created_response(created: Created) -> Response {
    let Created {
        refund,
        outcome,
        replayed,
        not_sent,
    } = created;
    let status =
        StatusCode::from_u16(outcome.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let location = format!("/v1/refunds/{}", refund.id);
    let mut response = match outcome {
        Outcome::Created | Outcome::Unknown => (status, Json(refund)).into_response(),
        Outcome::Refused | Outcome::Unavailable | Outcome::PluginFailed => {
            // A request that reached no provider carries its reason apart: the refund itself
            // records nothing final (it stays `unknown`).
            let failure = not_sent
                .as_ref()
                .map(|n| &n.failure)
                .or(refund.failure.as_ref());
            let error = match failure {
                Some(f) => ErrorDetail {
                    code: f.code.clone(),
                    message: f.message.clone(),
                    provider_code: f.provider_code.clone(),
                    field: None,
                },
                // The orchestrator records a failure with every such outcome; should one be
                // missing, the outcome still says what kind of failure it was.
                None => ErrorDetail {
                    code: outcome_code(outcome).into(),
                    message: format!("refund {}", outcome.as_str().replace('_', " ")),
                    provider_code: None,
                    field: None,
                },
            };
            (status, Json(RefundFailureBody { error, refund })).into_response()
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    if let Some(n) = &not_sent {
        // Whole seconds, rounded up (RFC 9110 section 10.2.3).
        let secs = n.retry_after.as_millis().div_ceil(1000).max(1);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    }
    response
}

/// The error code of an outcome, when the refund carries no failure.
fn outcome_code(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Created => "created",
        Outcome::Unknown => "unknown",
        Outcome::Refused => "refused",
        Outcome::Unavailable => "provider_unavailable",
        Outcome::PluginFailed => "plugin_error",
    }
}

/// One refund with its history.
#[utoipa::path(
    get,
    path = "/v1/refunds/{id}",
    tag = "refunds",
    operation_id = "get_refund",
    params(("id" = String, Path, description = "Refundry's refund id (`rf_...`)")),
    responses(
        (status = 200, description = "The refund and its history", body = RefundDetail),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `refunds`", body = ErrorBody),
        (status = 404, description = "No such refund (`not_found`)", body = ErrorBody),
        (status = 500, description = "The ledger could not be read (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get<S: RefundApi>(
    _auth: Authorized<RefundsScope>,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<RefundDetail>, ApiError> {
    match state.service.get(&id).await {
        Ok(Some(detail)) => Ok(Json(detail)),
        Ok(None) => Err(no_refund(&id)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

fn no_refund(id: &str) -> ApiError {
    ApiError::not_found(format!("no refund {id:?}"))
}

/// The provider HTTP exchanges made for a refund, redacted (secrets, credential headers and
/// credential-like JSON fields removed), oldest first.
#[utoipa::path(
    get,
    path = "/v1/refunds/{id}/exchanges",
    tag = "refunds",
    operation_id = "get_refund_exchanges",
    params(("id" = String, Path, description = "Refundry's refund id (`rf_...`)")),
    responses(
        (status = 200, description = "The refund's exchanges, oldest first", body = Vec<ExchangeRecord>),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"refundry\"`"))),
        (status = 403, description = "The token lacks scope `admin`", body = ErrorBody),
        (status = 404, description = "No such refund (`not_found`)", body = ErrorBody),
        (status = 500, description = "The ledger could not be read (`internal`)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn exchanges<S: RefundApi>(
    _auth: Authorized<AdminScope>,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ExchangeRecord>>, ApiError> {
    match state.service.get(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(no_refund(&id)),
        Err(e) => return Err(ApiError::internal(&e)),
    }
    let exchanges = state
        .service
        .exchanges(&id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(exchanges))
}

/// The query parameters of `GET /v1/refunds` (documentation; [`Selection::parse`] reads them).
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this provider's refunds (empty: no filter, as a form sends it).
    pub provider: Option<String>,
    /// Only refunds in this status.
    pub status: Option<Status>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub created_to: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50). With `format=csv` and no `limit`, the whole selection.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`: the last refund id of that page (refunds with a greater
    /// id follow; empty: from the first).
    #[param(example = "rf_0193a1b2c3d4e5f60718293a4b5c6d7e")]
    pub cursor: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

/// A parsed `GET /v1/refunds` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The ledger query.
    pub query: ListQuery,
    /// The answer's format.
    pub format: Format,
    /// Whether `limit` was given (a CSV without one is the whole selection).
    pub limit_given: bool,
}

impl Selection {
    /// Reads the query parameters; an unknown one, or a bad value, is a 400 naming it. An empty
    /// `provider` or `cursor` is the same as none (`?provider=` from a form); the typed ones
    /// (status, times, limit, format) must be valid when given, as the OpenAPI document says.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut query = ListQuery {
            limit: DEFAULT_PAGE,
            ..ListQuery::default()
        };
        let mut format = Format::Json;
        let mut limit_given = false;
        for (name, value) in pairs {
            if value.is_empty() && matches!(name.as_str(), "provider" | "cursor") {
                continue;
            }
            match name.as_str() {
                "provider" => query.provider = Some(value),
                "status" => {
                    query.status = Some(Status::parse(&value).ok_or_else(|| {
                        ApiError::invalid(
                            "status",
                            format!(
                                "status {value:?} is not one of pending, processed, failed, \
                                 reversed, unknown"
                            ),
                        )
                    })?)
                }
                "created_from" => query.created_from = Some(parse_time("created_from", &value)?),
                "created_to" => query.created_to = Some(parse_time("created_to", &value)?),
                "limit" => {
                    query.limit = page_limit(&value)?;
                    limit_given = true;
                }
                "cursor" => query.cursor = Some(value),
                "format" => {
                    format = Format::parse(&value).ok_or_else(|| {
                        ApiError::invalid("format", format!("format {value:?} is not json or csv"))
                    })?
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        format!("unknown query parameter {other:?}"),
                    ));
                }
            }
        }
        Ok(Self {
            query,
            format,
            limit_given,
        })
    }
}

/// A `limit` query parameter: 1 to [`MAX_PAGE`].
pub(super) fn page_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                "limit",
                format!("limit {value:?} is not an integer from 1 to {MAX_PAGE}"),
            )
        })
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid(
                name,
                format!("{name} {value:?} is not an RFC 3339 time ({e})"),
            )
        })
}

/// A page of refunds, oldest first; `format=csv` exports the same selection as CSV.
#[utoipa::path(
    get,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "list_refunds",
    params(ListParams),
    responses(
        (status = 200, description = "A page of refunds, or with `format=csv` the selection as CSV \
            (every page when no `limit` is given)",
            content((Page = "application/json"), (String = "text/csv"))),
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
) -> Result<Response, ApiError> {
    let selection = Selection::parse(pairs)?;
    let service = &state.service;
    match selection.format {
        Format::Json => {
            let page = service
                .list(selection.query)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            Ok(Json(page).into_response())
        }
        Format::Csv if selection.limit_given => {
            let page = service
                .list(selection.query)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            let mut writer =
                export::Writer::new(Format::Csv, Vec::new()).map_err(|e| ApiError::internal(&e))?;
            for r in &page.refunds {
                writer.write(r).map_err(|e| ApiError::internal(&e))?;
            }
            let body = writer.finish().map_err(|e| ApiError::internal(&e))?;
            Ok(csv_response(Body::from(body)))
        }
        // Finance wants the whole selection in one file: streamed page by page, never held.
        Format::Csv => Ok(csv_response(csv_stream(service.clone(), selection.query))),
    }
}

fn csv_response(body: Body) -> Response {
    let headers = [
        (header::CONTENT_TYPE, Format::Csv.content_type()),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"refunds.csv\"",
        ),
    ];
    (headers, body).into_response()
}

/// The whole selection as CSV, written by a task one page at a time into a small channel that
/// the response body drains: memory stays at a page or two whatever the size of the export. A
/// failure half way cuts the body short (the status line has gone already) and is logged.
fn csv_stream<S: RefundApi>(service: S, query: ListQuery) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::spawn(async move {
        let chunks = export::Chunks::default();
        let result: Result<(), String> = async {
            let mut writer =
                export::Writer::new(Format::Csv, chunks.clone()).map_err(|e| e.to_string())?;
            let mut pager = export::Pager::new(query);
            while let Some(q) = pager.next_query() {
                let page = service.list(q).await.map_err(|e| e.to_string())?;
                pager.advance(&page);
                for r in &page.refunds {
                    writer.write(r).map_err(|e| e.to_string())?;
                }
                writer.flush().map_err(|e| e.to_string())?;
                let chunk = chunks.take();
                tx.send(Ok(chunk))
                    .await
                    .map_err(|_| "the client went away".to_owned())?;
            }
            writer.finish().map_err(|e| e.to_string())?;
            let rest = chunks.take();
            if !rest.is_empty() {
                let _ = tx.send(Ok(rest)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "CSV export cut short");
            let _ = tx.send(Err(std::io::Error::other(e))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Query pairs as the `QueryPairs` extractor gives them.
    pub(crate) fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selection_defaults_and_values() {
        let s = Selection::parse(vec![]).unwrap();
        assert_eq!(s.query.limit, DEFAULT_PAGE);
        assert_eq!(s.format, Format::Json);
        assert!(!s.limit_given);

        let s = Selection::parse(pairs(&[
            ("provider", "mfs-africa"),
            ("status", "pending"),
            ("created_from", "2026-11-01T00:00:00+03:00"),
            ("limit", "500"),
            ("cursor", "rf_1"),
            ("format", "csv"),
        ]))
        .unwrap();
        assert_eq!(s.query.provider.as_deref(), Some("mfs-africa"));
        assert_eq!(s.query.status, Some(Status::Pending));
        assert_eq!(
            s.query.created_from.unwrap().to_rfc3339(),
            "2026-10-31T21:00:00+00:00"
        );
        assert_eq!(s.query.created_to, None);
        assert_eq!(s.query.limit, 500);
        assert_eq!(s.query.cursor.as_deref(), Some("rf_1"));
        assert_eq!(s.format, Format::Csv);
        assert!(s.limit_given);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (name, value) in [
            ("status", ""),
            ("created_to", ""),
            ("status", "done"),
            ("created_from", "yesterday"),
            ("created_to", "2026-11-01"),
            ("limit", "0"),
            ("limit", "501"),
            ("limit", "ten"),
            ("format", "xml"),
            ("sort", "asc"),
        ] {
            let e = Selection::parse(pairs(&[(name, value)])).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.detail.code, "invalid_request");
            assert_eq!(e.detail.field.as_deref(), Some(name), "{name}={value}");
        }
    }
}
