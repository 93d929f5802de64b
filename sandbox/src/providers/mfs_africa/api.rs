//! The signed `/v1` API.
//!
//! Every request goes through [`gate`] first: count it, check `X-Api-Key`, `X-Timestamp` and
//! `X-Signature` (401), then the IP allowlist (403), then the configured required header (400
//! `invalid_request`), then apply the next request fault (an injected `status` or `error`,
//! answered without processing, or a `delay` after normal processing). Only then does the
//! operation run.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::ApiError;
use super::list::{ListKind, RangeQuery};
use super::state::CreateRefund;
use super::state::Created;
use super::wire::{self, RefundList, RefundObject, RefundPage};
use super::{Shared, random_id, signing};
use crate::faults::RequestFault;

/// The header a plugin build names its version with (not in the spec; see `mfs_africa`'s doc).
const PLUGIN_VERSION_HEADER: &str = "x-plugin-version";

/// Requests bigger than this are refused before any other check (a create body is well under
/// 1 KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Authentication, allowlist, required header and fault injection for every `/v1` request.
pub(super) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    count_request(&shared, &request);
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::InvalidRequest(format!(
                "body unreadable or larger than {MAX_BODY_BYTES} bytes"
            ))
            .into_response();
        }
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    if let Err(error) = authenticate(&shared, &parts.method, target, &parts.headers, &body) {
        shared.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        return error.into_response();
    }
    if let Err(caller) = shared.allowlist.check_caller(&parts.extensions) {
        return ApiError::IpNotAllowed(caller).into_response();
    }
    // Before the faults: a refused request neither runs nor uses up a queued fault.
    if let Some(name) = &shared.config.require_header
        && !parts.headers.contains_key(name.as_str())
    {
        return ApiError::InvalidRequest(format!("the {name} header is required")).into_response();
    }
    let request = Request::from_parts(parts, Body::from(body));
    match shared.faults.next_request() {
        None => next.run(request).await,
        Some(RequestFault::Status {
            status,
            retry_after,
        }) => injected_error(status, retry_after).into_response(),
        Some(RequestFault::Error {
            status,
            code,
            message,
            retry_after,
        }) => ApiError::Injected {
            status,
            code,
            message,
            retry_after,
        }
        .into_response(),
        Some(RequestFault::Delay(delay)) => {
            // Processed for real first: the effect exists even if the client times out.
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Some(RequestFault::StatusAfterProcessing {
            status,
            retry_after,
        }) => {
            // Processed for real first: the effect exists, the answer says the request failed.
            let _ = next.run(request).await;
            injected_error(status, retry_after).into_response()
        }
    }
}

fn count_request(shared: &Shared, request: &Request) {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let counter = match (request.method(), path) {
        (&Method::POST, Some("/v1/refunds")) => &shared.stats.create,
        (&Method::GET, Some("/v1/refunds")) => match query_pairs(request.uri()).as_deref() {
            Ok(pairs) if ListKind::of(pairs) == ListKind::Range => &shared.stats.list_range,
            _ => &shared.stats.list,
        },
        (&Method::GET, Some("/v1/refunds/{refund_id}")) => &shared.stats.get,
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The spec's three authentication checks, in order: key, timestamp, signature.
fn authenticate(
    shared: &Shared,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let api_key = header("x-api-key").ok_or(ApiError::InvalidApiKey)?;
    if !signing::constant_time_eq(&shared.config.api_key, api_key) {
        return Err(ApiError::InvalidApiKey);
    }
    let timestamp = header("x-timestamp")
        .ok_or_else(|| ApiError::TimestampOutOfRange("X-Timestamp header is missing".to_owned()))?;
    let parsed = signing::parse_timestamp(timestamp).ok_or_else(|| {
        ApiError::TimestampOutOfRange(
            "X-Timestamp must be RFC 3339 UTC with seconds precision, e.g. 2026-11-25T10:15:30Z"
                .to_owned(),
        )
    })?;
    let now = Utc::now();
    if !signing::timestamp_in_window(parsed, now) {
        return Err(ApiError::TimestampOutOfRange(format!(
            "X-Timestamp {timestamp} is more than 300 s from server time {}",
            crate::time::rfc3339_seconds(now)
        )));
    }
    let signature = header("x-signature").ok_or(ApiError::InvalidSignature)?;
    let expected = signing::request_signature(
        &shared.config.api_secret,
        method.as_str(),
        target,
        timestamp,
        body,
    );
    if !signing::constant_time_eq(&expected, signature) {
        return Err(ApiError::InvalidSignature);
    }
    Ok(())
}

/// The spec's error for an injected status.
fn injected_error(status: u16, retry_after: Option<u64>) -> ApiError {
    match status {
        429 => ApiError::RateLimited {
            retry_after: retry_after.unwrap_or(crate::faults::DEFAULT_RETRY_AFTER_SECS),
        },
        500 => ApiError::Internal { retry_after },
        // 502 and 503 (the fault queue accepts nothing else).
        _ => ApiError::ServiceUnavailable {
            status,
            retry_after,
        },
    }
}

/// `POST /v1/refunds`. A new refund keeps the request's `X-Plugin-Version`, if any.
pub(super) async fn create_refund(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match CreateRefund::from_body(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    // Lossy rather than dropped: a value that is not text still shows that a version was sent.
    let plugin_version = headers
        .get(PLUGIN_VERSION_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let created =
        shared
            .ledger()
            .create_refund(request, plugin_version, random_id("rfnd_"), Utc::now());
    match created {
        Ok(Created::New(refund)) => {
            tracing::info!(refund_id = %refund.refund_id, "refund created");
            (StatusCode::CREATED, Json(RefundObject::from(&refund))).into_response()
        }
        Ok(Created::Replay(refund)) => {
            (StatusCode::OK, Json(RefundObject::from(&refund))).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `GET /v1/refunds/{refund_id}`.
pub(super) async fn get_refund(
    State(shared): State<Arc<Shared>>,
    Path(refund_id): Path<String>,
) -> Response {
    let found = shared.ledger().refund(&refund_id).map(RefundObject::from);
    match found {
        Some(refund) => Json(refund).into_response(),
        None => ApiError::RefundNotFound(refund_id).into_response(),
    }
}

/// The decoded query pairs, in order, repeated keys kept.
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|_| ApiError::InvalidRequest("malformed query string".to_owned()))
}

/// `GET /v1/refunds`: the lookup by `external_refund_id`, or the range list (see [`ListKind`]).
pub(super) async fn list_refunds(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let pairs = match query_pairs(&uri) {
        Ok(pairs) => pairs,
        Err(error) => return error.into_response(),
    };
    match ListKind::of(&pairs) {
        ListKind::ByExternalId => refunds_by_external_id(&shared, &pairs),
        ListKind::Range => refunds_created_between(&shared, &pairs),
    }
}

/// `GET /v1/refunds?external_refund_id=...`: `{"data": [...]}`, empty when none.
fn refunds_by_external_id(shared: &Shared, pairs: &[(String, String)]) -> Response {
    let Some((_, external_id)) = pairs.iter().find(|(key, _)| key == "external_refund_id") else {
        return ApiError::InvalidRequest(
            "external_refund_id, or created_from and created_to, query parameters are required"
                .to_owned(),
        )
        .into_response();
    };
    if !wire::is_valid_external_id(external_id) {
        return ApiError::InvalidRequest(
            "external_refund_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
                .to_owned(),
        )
        .into_response();
    }
    let data = shared
        .ledger()
        .refunds_by_external_id(external_id)
        .into_iter()
        .map(RefundObject::from)
        .collect();
    Json(RefundList { data }).into_response()
}

/// `GET /v1/refunds?created_from=..&created_to=..&limit=..&starting_after=..`:
/// `{"data": [...], "has_more": bool}`.
///
/// A `starting_after` the simulator does not hold is `invalid_request` (the spec is silent): the
/// id did not come from a previous page of this provider, or that refund was lost since, and
/// answering an empty last page instead would make a reconciliation stop early without a word.
fn refunds_created_between(shared: &Shared, pairs: &[(String, String)]) -> Response {
    let query = match RangeQuery::from_pairs(pairs) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    let ledger = shared.ledger();
    let page = match ledger.created_between(
        query.from,
        query.to,
        query.limit,
        query.starting_after.as_deref(),
    ) {
        Ok(page) => page,
        Err(unknown) => return ApiError::InvalidRequest(unknown.to_string()).into_response(),
    };
    let body = RefundPage {
        data: page.refunds.into_iter().map(RefundObject::from).collect(),
        has_more: page.has_more,
    };
    drop(ledger);
    Json(body).into_response()
}

/// Any path the simulator does not serve.
pub(super) async fn unknown_endpoint(method: Method, uri: Uri) -> Response {
    ApiError::NotFound(format!("{method} {}", uri.path())).into_response()
}
