//! The `/v1` API.
//!
//! `POST /v1/authorizations` checks the body's shape (`111`), the credentials and `hashString`
//! (`105`), then `dateRequest` against the sandbox clock (`108`), and issues a token.
//!
//! Every other request goes through [`gate`] first: count it, check the bearer token (`106`),
//! then `PE-Signature` (`107`), then the IP allowlist (`109`), then apply the next request fault
//! (an injected `status` or `error`, answered without processing, or a `delay` after normal
//! processing). Only then does the operation run.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::error::ApiError;
use super::list::{ListKind, RangeQuery, RefundPage};
use super::state::CreateRefund;
use super::state::Created;
use super::wire::{self, Authorization, AuthorizationData, QueryOk, RefundObject, Success};
use super::{Config, Shared, signing};
use crate::faults::RequestFault;

/// Requests bigger than this are refused before any other check (a create body is well under
/// 1 KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// `POST /v1/authorizations`.
pub(super) async fn authorize(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.stats.authorize.fetch_add(1, Ordering::Relaxed);
    let request = match Authorization::from_body(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let now = Utc::now();
    if let Err(error) = check_credentials(&shared.config, &request, now) {
        shared.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        return error.into_response();
    }
    // 256 random bits: unguessable, and not derived from anything secret.
    let token = hex::encode(rand::random::<[u8; 32]>());
    let expires = shared.tokens().issue(&token, now);
    shared.stats.authorizations.fetch_add(1, Ordering::Relaxed);
    tracing::info!("pagoefectivo sandbox issued a token");
    let data = AuthorizationData {
        token,
        code_service: format!("SANDBOX-{}", shared.config.id_service),
        token_start: wire::format_date(now),
        token_expires: wire::format_date(expires),
    };
    (StatusCode::CREATED, Json(Success::new(data))).into_response()
}

/// The credentials (`105`: access key, service id and hash together, so that the answer does not
/// tell which one was wrong), then the clock (`108`).
fn check_credentials(
    config: &Config,
    request: &Authorization,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let key_ok = signing::constant_time_eq(&config.access_key, &request.access_key);
    let id_ok = config.id_service == request.id_service;
    let expected = signing::hash_string(
        config.id_service,
        &config.access_key,
        &config.secret_key,
        &request.date_request,
    );
    let hash_ok = signing::constant_time_eq(&expected, &request.hash_string);
    if !(key_ok && id_ok && hash_ok) {
        return Err(ApiError::BadCredentials);
    }
    if !signing::date_in_window(request.date, now) {
        return Err(ApiError::ClockSkew {
            date_request: request.date_request.clone(),
            server_time: wire::format_date(now),
        });
    }
    Ok(())
}

/// Token, signature, allowlist and fault injection for every `/v1` request but the authorization.
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
            return ApiError::invalid(
                "body",
                format!("unreadable or larger than {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let token_ok = bearer_token(&parts.headers)
        .is_some_and(|token| shared.tokens().is_valid(token, Utc::now()));
    if !token_ok {
        shared.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        return ApiError::TokenInvalid.into_response();
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let Ok(canonical) = signing::canonical_request(target, &body) else {
        return ApiError::invalid("body", "must be empty or a JSON object").into_response();
    };
    let expected = signing::request_signature(&shared.config.secret_key, &canonical);
    let signature_ok = parts
        .headers
        .get("pe-signature")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|received| signing::constant_time_eq(&expected, received));
    if !signature_ok {
        shared.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        return ApiError::BadSignature.into_response();
    }
    if let Err(caller) = shared.allowlist.check_caller(&parts.extensions) {
        return ApiError::IpNotAllowed(caller).into_response();
    }
    let request = Request::from_parts(parts, Body::from(body));
    match shared.faults.next_request() {
        None => next.run(request).await,
        Some(RequestFault::Status {
            status,
            retry_after,
        }) => ApiError::ProviderFault {
            status,
            retry_after,
        }
        .into_response(),
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
        Some(RequestFault::StatusAfterProcessing {
            status,
            retry_after,
        }) => {
            // Processed for real first: the effect exists, the answer says the request failed.
            let _ = next.run(request).await;
            ApiError::ProviderFault {
                status,
                retry_after,
            }
            .into_response()
        }
        Some(RequestFault::Delay(delay)) => {
            // Processed for real first: the effect exists even if the client times out.
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
        (&Method::GET, Some("/v1/refunds/{reference_id}")) => &shared.stats.get,
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `POST /v1/refunds`.
pub(super) async fn create_refund(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request = match CreateRefund::from_body(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let balance_sufficient = shared.balance_sufficient.load(Ordering::SeqCst);
    let created = shared
        .ledger()
        .create_refund(request, balance_sufficient, Utc::now());
    match created {
        Ok(Created::New(refund)) => {
            tracing::info!(reference_id = %refund.reference_id, "refund created");
            let data = RefundObject::from(&refund);
            (StatusCode::CREATED, Json(Success::new(data))).into_response()
        }
        Ok(Created::Replay(refund)) => {
            let data = RefundObject::from(&refund);
            (StatusCode::OK, Json(Success::new(data))).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `GET /v1/refunds/{referenceId}`.
pub(super) async fn get_refund(
    State(shared): State<Arc<Shared>>,
    reference_id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(reference_id)) = reference_id else {
        return ApiError::invalid("referenceId", "is not valid percent-encoded UTF-8")
            .into_response();
    };
    let found = shared
        .ledger()
        .refund(&reference_id)
        .map(RefundObject::from);
    match found {
        Some(refund) => Json(QueryOk::new(refund)).into_response(),
        None => ApiError::RefundNotFound(reference_id).into_response(),
    }
}

/// The decoded query pairs, in order, repeated keys kept.
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|_| ApiError::invalid("query", "malformed query string"))
}

/// `GET /v1/refunds`: the lookup by `refundId`, or the range list (see [`ListKind`]).
pub(super) async fn list_refunds(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let pairs = match query_pairs(&uri) {
        Ok(pairs) => pairs,
        Err(error) => return error.into_response(),
    };
    match ListKind::of(&pairs) {
        ListKind::ByRefundId => refunds_by_refund_id(&shared, &pairs),
        ListKind::Range => refunds_created_between(&shared, &pairs),
    }
}

/// `GET /v1/refunds?refundId=...`: `{"code": "100", "data": [...]}`, empty when none.
fn refunds_by_refund_id(shared: &Shared, pairs: &[(String, String)]) -> Response {
    let Some((_, refund_id)) = pairs.iter().find(|(key, _)| key == "refundId") else {
        return ApiError::invalid(
            "refundId",
            "query parameter is required (or dateFrom and dateTo, for the range list)",
        )
        .into_response();
    };
    if !wire::is_valid_refund_id(refund_id) {
        return ApiError::invalid(
            "refundId",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        )
        .into_response();
    }
    let data: Vec<RefundObject> = shared
        .ledger()
        .refunds_by_refund_id(refund_id)
        .into_iter()
        .map(RefundObject::from)
        .collect();
    Json(QueryOk::new(data)).into_response()
}

/// `GET /v1/refunds?dateFrom=..&dateTo=..&page=..&pageSize=..`:
/// `{"code": "100", "data": {"items": [...], "page": p, "pageSize": s, "totalPages": n}}`.
fn refunds_created_between(shared: &Shared, pairs: &[(String, String)]) -> Response {
    let query = match RangeQuery::from_pairs(pairs) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    let data = {
        let ledger = shared.ledger();
        let page = ledger.created_between(query.from, query.to, query.page, query.page_size);
        RefundPage {
            items: page.refunds.into_iter().map(RefundObject::from).collect(),
            page: query.page,
            page_size: query.page_size,
            total_pages: page.total_pages,
        }
    };
    Json(QueryOk::new(data)).into_response()
}

/// Any path the simulator does not serve.
pub(super) async fn unknown_endpoint(method: Method, uri: Uri) -> Response {
    ApiError::UnknownEndpoint(format!("{method} {}", uri.path())).into_response()
}
