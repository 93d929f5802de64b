//! Refundry plugin for PagoEfectivo (Peru) refunds (wire contract v1).
//!
//! Configuration (`[providers.pagoefectivo]`): `base_url`, `id_service` (an integer), `access_key`
//! and `secret_key` (authorization hash, request signatures and webhook signatures). A missing or
//! unusable key is a final refusal of kind `configuration`, never a panic; a webhook that cannot
//! be verified for want of `secret_key` is `invalid-signature`, logged at error.
//!
//! Every call but the authorization carries a bearer token, cached in host storage under
//! [`TOKEN_KEY`] until shortly before it expires: an operation authorizes only when no usable
//! token is cached, or once when the provider answers `106` (token expired or unknown).

use refundry_sdk::crypto::sha256_hex;
use refundry_sdk::errors;
use refundry_sdk::http::{self, HttpError, Method};
use refundry_sdk::list;
use refundry_sdk::time::{self, TimeError};
use refundry_sdk::{
    Host, Level, Provider, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage,
    RefundRequest, RefusalKind, TimeRange, WebhookError, WebhookEvent, WebhookOutcome,
    WebhookRequest, money,
};

pub mod sign;
pub mod wire;

use wire::ErrorCode;

/// The PagoEfectivo provider.
pub struct PagoEfectivo;

refundry_sdk::export_provider!(PagoEfectivo);

/// Spec "Dates, money, currency": `PEN` and `USD` only.
pub const CURRENCIES: [&str; 2] = ["PEN", "USD"];

/// The host storage key of the cached token (JSON, [`wire::CachedToken`]).
pub const TOKEN_KEY: &str = "auth-token";

/// Spec "Dates": Lima time, UTC-5 all year (Peru has no DST).
const LIMA_OFFSET_MINUTES: i32 = -300;

/// A token is dropped this long before `tokenExpires` at most (clock skew, request latency)...
const MAX_REFRESH_MARGIN_MS: i64 = 60_000;
/// ...and at most this fraction of its issued lifetime, so a sandbox token of a few seconds is
/// still reused rather than refreshed on every call.
const REFRESH_MARGIN_DIVISOR: i64 = 10;

/// Spec "Create a refund": `reason` is at most 200 characters.
const MAX_REASON_CHARS: usize = 200;

/// Spec "List (reconciliation)": the longest range one list request may cover.
const MAX_LIST_RANGE_DAYS: u32 = 31;

/// Spec "List (reconciliation)": `pageSize` is at most 100; the fewest requests per range.
const LIST_PAGE_SIZE: u32 = 100;

/// Which call an HTTP failure belongs to: a lost answer to a create may hide a refund; a lost
/// answer to a read or to an authorization hides nothing and is simply retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Authorize,
    Create,
    Get,
    List,
}

impl Op {
    /// An authorization changes no refund, so a lost answer to it is as safe as one to a read.
    fn effect(self) -> errors::Effect {
        match self {
            Op::Create => errors::Effect::Write,
            Op::Get | Op::List | Op::Authorize => errors::Effect::Read,
        }
    }
}

/// Everything that can stop a create or get, mapped once into [`RefundError`].
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("pagoefectivo is not configured: {reason}")]
    Config { reason: String },
    #[error("host clock unusable for dateRequest: {source}")]
    Clock { source: TimeError },
    #[error("{reason}")]
    InvalidRequest { reason: String },
    #[error("currency `{currency}` is not supported by PagoEfectivo (PEN, USD only)")]
    UnsupportedCurrency { currency: String },
    #[error("http: {source}")]
    Http { source: HttpError, op: Op },
    /// An error answer; `code` is `None` when its body is not the spec's error body.
    #[error("{message}")]
    Provider {
        status: u16,
        code: Option<String>,
        message: String,
        retry_after_ms: Option<u64>,
    },
    #[error("unexpected answer from PagoEfectivo (HTTP {status}): {reason}")]
    BadAnswer { status: u16, reason: String, op: Op },
    #[error("no refund with refundId `{id}`")]
    NotFound { id: String },
}

impl From<Error> for RefundError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::Config { .. } => errors::refused(RefusalKind::Configuration, message),
            // The provider would refuse the request's time: fixed like a clock it rejected.
            Error::Clock { .. } => errors::refused(RefusalKind::Authentication, message),
            Error::InvalidRequest { .. } => errors::refused(RefusalKind::InvalidRequest, message),
            Error::UnsupportedCurrency { .. } => {
                errors::refused(RefusalKind::CurrencyMismatch, message)
            }
            Error::NotFound { .. } => errors::refused(RefusalKind::NotFound, message),
            // An odd authorization answer: no refund was asked for yet, so asking again is safe.
            Error::BadAnswer {
                op: Op::Authorize, ..
            } => errors::retryable(message),
            Error::BadAnswer { .. } => RefundError::UnknownOutcome(message),
            Error::Http { source, op } => errors::from_http(&source, op.effect(), message),
            Error::Provider {
                status,
                code,
                message,
                retry_after_ms,
            } => {
                let kind = refusal_kind(code.as_deref().map(ErrorCode::parse), status);
                errors::from_answer(kind, code, message, status, retry_after_ms)
            }
        }
    }
}

/// The spec's error table: the refusal kind of an error answer, or `None` when it is retryable.
fn refusal_kind(code: Option<ErrorCode>, status: u16) -> Option<RefusalKind> {
    // Any 5xx is a provider fault whatever its code; the refund id makes resending safe.
    if (500..=599).contains(&status) {
        return None;
    }
    match code {
        Some(ErrorCode::InvalidField) => Some(RefusalKind::InvalidRequest),
        // `106` only reaches here after the one re-authorization and retry.
        Some(
            ErrorCode::BadCredentials
            | ErrorCode::TokenExpired
            | ErrorCode::BadSignature
            | ErrorCode::ClockSkew,
        ) => Some(RefusalKind::Authentication),
        Some(ErrorCode::IpNotAllowed) => Some(RefusalKind::Forbidden),
        Some(ErrorCode::TransactionNotFound) => Some(RefusalKind::InvalidTransaction),
        Some(ErrorCode::RefundNotFound) => Some(RefusalKind::NotFound),
        Some(ErrorCode::RefundIdConflict) => Some(RefusalKind::IdempotencyConflict),
        Some(ErrorCode::AmountExceeded) => Some(RefusalKind::AmountExceeded),
        Some(ErrorCode::CurrencyMismatch) => Some(RefusalKind::CurrencyMismatch),
        Some(ErrorCode::WindowExpired) => Some(RefusalKind::WindowExpired),
        // "later" in the spec's retry column, but not by retrying now: the kinds say so.
        Some(ErrorCode::NotPaid) => Some(RefusalKind::NotSettled),
        Some(ErrorCode::InsufficientBalance) => Some(RefusalKind::InsufficientFunds),
        Some(ErrorCode::ProviderFault) => None,
        // Not in the spec: the HTTP status class decides (429 means "not now" in any API).
        Some(ErrorCode::Unknown(_)) | None => match status {
            429 => None,
            _ => Some(RefusalKind::Other),
        },
    }
}

/// A value that must never reach a log line or a `Debug` print: deliberately no `Debug`.
struct Secret(String);

/// The configuration every call needs.
struct Config {
    base_url: String,
    id_service: u64,
    access_key: String,
    secret_key: Secret,
}

fn config_key(host: &impl Host, key: &str) -> Result<String, Error> {
    match host.config(key) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Error::Config {
            reason: format!("config key `{key}` is not set"),
        }),
    }
}

impl Config {
    fn load(host: &impl Host) -> Result<Self, Error> {
        let base_url = config_key(host, "base_url")?;
        // The signed request target is everything after the authority, so there must be one.
        let absolute = base_url
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
        if !absolute {
            return Err(Error::Config {
                reason: format!("base_url `{base_url}` is not an absolute http(s) URL"),
            });
        }
        let id_service = config_key(host, "id_service")?;
        let id_service = id_service
            .trim()
            .parse::<u64>()
            .map_err(|_| Error::Config {
                reason: format!("config key `id_service` must be an integer, got `{id_service}`"),
            })?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            id_service,
            access_key: config_key(host, "access_key")?,
            secret_key: Secret(config_key(host, "secret_key")?),
        })
    }

    /// What a cached token is bound to: a token issued for other credentials is never reused.
    fn token_scope(&self) -> String {
        sha256_hex(
            format!(
                "{}\n{}\n{}",
                self.base_url, self.id_service, self.access_key
            )
            .as_bytes(),
        )
    }
}

fn bad_answer(op: Op, status: u16, reason: impl std::fmt::Display) -> Error {
    Error::BadAnswer {
        status,
        reason: reason.to_string(),
        op,
    }
}

/// Turns a non-success answer into [`Error::Provider`], keeping code, message and status.
fn provider_error(op: Op, resp: &http::Response) -> Error {
    if resp.status < 400 {
        return bad_answer(op, resp.status, "unexpected HTTP status");
    }
    // The spec names no Retry-After; honour it (seconds) if a proxy in front sends one.
    let retry_after_ms = http::header(&resp.headers, "retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1000));
    let (code, message) = match serde_json::from_slice::<wire::ErrorBody>(&resp.body) {
        Ok(body) => (Some(body.code.clone()), body.describe()),
        Err(_) => (
            None,
            format!("HTTP {} without a PagoEfectivo error body", resp.status),
        ),
    };
    Error::Provider {
        status: resp.status,
        code,
        message,
        retry_after_ms,
    }
}

/// Parses a success envelope, insisting on the spec's `"code": "100"`.
fn envelope<T: serde::de::DeserializeOwned>(op: Op, resp: &http::Response) -> Result<T, Error> {
    let env: wire::Envelope<T> =
        serde_json::from_slice(&resp.body).map_err(|e| bad_answer(op, resp.status, e))?;
    if env.code != wire::SUCCESS_CODE {
        return Err(bad_answer(
            op,
            resp.status,
            format!("code `{}` instead of `100`", env.code),
        ));
    }
    Ok(env.data)
}

/// The cached token when it belongs to `config` and is not yet due for refresh. A store that
/// fails or holds something unreadable only costs an authorization.
fn cached_token(host: &impl Host, config: &Config) -> Option<Secret> {
    let bytes = match host.storage_get(TOKEN_KEY) {
        Ok(bytes) => bytes?,
        Err(e) => {
            let reason = format!("{e:?}");
            let fields = [("error", reason.as_str())];
            host.log(Level::Warn, "pagoefectivo: token cache unreadable", &fields);
            return None;
        }
    };
    let cached: wire::CachedToken = serde_json::from_slice(&bytes).ok()?;
    (cached.scope == config.token_scope() && host.now_ms() < cached.refresh_at_ms)
        .then_some(Secret(cached.token))
}

/// `POST /v1/authorizations`, then caches the token. Spec "Authorization".
fn authorize(host: &impl Host, config: &Config) -> Result<Secret, Error> {
    let now = host.now_ms();
    let date_request = time::format_rfc3339_offset(now, LIMA_OFFSET_MINUTES)
        .map_err(|source| Error::Clock { source })?;
    let body = serde_json::to_vec(&wire::AuthorizationBody {
        access_key: &config.access_key,
        id_service: config.id_service,
        date_request: &date_request,
        hash_string: sign::auth_hash(
            &config.id_service.to_string(),
            &config.access_key,
            &config.secret_key.0,
            &date_request,
        ),
    })
    .map_err(|e| invalid(e.to_string()))?;
    let resp = host
        .http_send(http::Request {
            method: Method::Post,
            url: format!("{}/v1/authorizations", config.base_url),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Some(body),
        })
        .map_err(|source| Error::Http {
            source,
            op: Op::Authorize,
        })?;
    if !matches!(resp.status, 200 | 201) {
        return Err(provider_error(Op::Authorize, &resp));
    }
    let data: wire::TokenData = envelope(Op::Authorize, &resp)?;
    let parse = |field, value: &str| {
        time::parse_rfc3339(value)
            .map_err(|e| bad_answer(Op::Authorize, resp.status, format!("{field}: {e}")))
    };
    let expires_ms = parse("tokenExpires", &data.token_expires)?;
    let start_ms = match data.token_start.as_deref() {
        Some(start) => parse("tokenStart", start)?,
        None => now,
    };
    let margin_ms = MAX_REFRESH_MARGIN_MS
        .min(expires_ms.saturating_sub(start_ms).max(0) / REFRESH_MARGIN_DIVISOR);
    let cached = wire::CachedToken {
        token: data.token,
        refresh_at_ms: expires_ms.saturating_sub(margin_ms),
        scope: config.token_scope(),
    };
    // Cannot fail (strings and an integer); an empty value would only read as "no token".
    let value = serde_json::to_vec(&cached).unwrap_or_default();
    if let Err(e) = host.storage_set(TOKEN_KEY, &value) {
        let reason = format!("{e:?}");
        let fields = [("error", reason.as_str())];
        host.log(Level::Warn, "pagoefectivo: token not cached", &fields);
    }
    Ok(Secret(cached.token))
}

/// One signed call to `target` (path and query under `base_url`) with `token`. `body` is the
/// serialized JSON and its canonical string; without a body the request target is signed.
fn send_signed(
    host: &impl Host,
    config: &Config,
    token: &Secret,
    op: Op,
    method: Method,
    target: &str,
    body: Option<&(Vec<u8>, String)>,
) -> Result<http::Response, Error> {
    let url = format!("{}{target}", config.base_url);
    // The request target as sent: the URL minus scheme and authority (keeps a base_url path prefix).
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let request_target = &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..];
    let canonical = body.map_or(request_target, |(_, canonical)| canonical.as_str());
    let headers = sign::signed_headers(
        &token.0,
        config.secret_key.0.as_bytes(),
        canonical,
        body.is_some(),
    );
    host.http_send(http::Request {
        method,
        url,
        headers,
        body: body.map(|(bytes, _)| bytes.clone()),
    })
    .map_err(|source| Error::Http { source, op })
}

/// True for the spec's "expired or unknown token" answer: `401` with code `106`.
fn token_rejected(resp: &http::Response) -> bool {
    resp.status == 401
        && serde_json::from_slice::<wire::ErrorBody>(&resp.body)
            .is_ok_and(|body| ErrorCode::parse(&body.code) == ErrorCode::TokenExpired)
}

/// A signed call with the cached (or a new) token; on `106`, authorizes once and retries once.
/// A `106` to the retry is returned as it is, and mapped to `authentication`.
fn call(
    host: &impl Host,
    config: &Config,
    op: Op,
    method: Method,
    target: &str,
    body: Option<&(Vec<u8>, String)>,
) -> Result<http::Response, Error> {
    let token = match cached_token(host, config) {
        Some(token) => token,
        None => authorize(host, config)?,
    };
    let resp = send_signed(host, config, &token, op, method, target, body)?;
    if !token_rejected(&resp) {
        return Ok(resp);
    }
    host.log(
        Level::Info,
        "pagoefectivo: token rejected (106); authorizing again",
        &[],
    );
    // A failed re-authorization must not leave the rejected token to be tried again.
    let _ = host.storage_delete(TOKEN_KEY);
    let token = authorize(host, config)?;
    send_signed(host, config, &token, op, method, target, body)
}

/// Parses and converts a refund object answer.
fn refund_from(op: Op, resp: &http::Response) -> Result<Refund, Error> {
    let object: wire::RefundObject = envelope(op, resp)?;
    object
        .into_refund()
        .map_err(|e| bad_answer(op, resp.status, e))
}

/// Spec: `refundId` is 1 to 64 of `[A-Za-z0-9_-]`. That charset is also why it can go into a
/// query string unencoded.
fn check_refund_id(id: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "external_refund_id `{id}` must be 1 to 64 of [A-Za-z0-9_-]"
        )))
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidRequest {
        reason: reason.into(),
    }
}

fn create(host: &impl Host, req: &RefundRequest) -> Result<Refund, Error> {
    // Everything the spec lets us check is checked before any call, the authorization included.
    check_refund_id(&req.external_refund_id)?;
    if req.original_transaction_id.is_empty() {
        return Err(invalid("original_transaction_id is empty"));
    }
    let order_id = match req.order_id.as_deref() {
        Some(id) if !id.is_empty() => id,
        _ => {
            return Err(invalid(
                "PagoEfectivo needs the merchant order id (order_id, sent as transactionCode)",
            ));
        }
    };
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(invalid(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if !CURRENCIES.contains(&req.amount.currency.as_str()) {
        return Err(Error::UnsupportedCurrency {
            currency: req.amount.currency.clone(),
        });
    }
    if req.amount.amount_minor <= 0 {
        return Err(invalid(format!(
            "refund amount must be positive, got {} minor units",
            req.amount.amount_minor
        )));
    }
    let refund_amount = money::to_decimal(req.amount.amount_minor, &req.amount.currency)
        .map_err(|e| invalid(e.to_string()))?;
    let config = Config::load(host)?;
    let body = wire::CreateRefundBody {
        transaction_id: &req.original_transaction_id,
        refund_amount,
        currency: &req.amount.currency,
        transaction_code: order_id,
        refund_id: &req.external_refund_id,
        // An empty reason is no reason: sent, it would be an empty signed field to argue about.
        reason: req.reason.as_deref().filter(|r| !r.is_empty()),
    };
    // The canonical string is built from the very values serialized: the struct's JSON object.
    let signed = match serde_json::to_value(&body) {
        Ok(serde_json::Value::Object(fields)) => sign::canonical_json(&fields),
        other => {
            return Err(invalid(format!(
                "body does not serialize to an object: {other:?}"
            )));
        }
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| invalid(e.to_string()))?;
    let resp = call(
        host,
        &config,
        Op::Create,
        Method::Post,
        "/v1/refunds",
        Some(&(bytes, signed)),
    )?;
    match resp.status {
        // 201: new refund; 200: replay of the same request, the existing refund.
        200 | 201 => refund_from(Op::Create, &resp),
        _ => Err(provider_error(Op::Create, &resp)),
    }
}

/// Percent-encodes a provider refund id for use as one path segment (only unreserved characters
/// pass), so that an odd id can neither leave `/v1/refunds/` nor break the signed target.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(host: &impl Host, lookup: &RefundLookup) -> Result<Refund, Error> {
    let target = match lookup {
        RefundLookup::ProviderRefundId(id) if id.is_empty() => {
            return Err(invalid("provider refund id is empty"));
        }
        // A URL parser resolves `.` and `..` as path steps (`/v1/refunds/..` is `/v1/`), so no
        // encoding keeps such an id inside its segment: it cannot be looked up by path.
        RefundLookup::ProviderRefundId(id) if id == "." || id == ".." => {
            return Err(invalid(format!(
                "provider refund id `{id}` is no path segment"
            )));
        }
        RefundLookup::ProviderRefundId(id) => format!("/v1/refunds/{}", path_segment(id)),
        RefundLookup::ExternalRefundId(id) => {
            check_refund_id(id)?;
            format!("/v1/refunds?refundId={id}")
        }
    };
    let config = Config::load(host)?;
    let resp = call(host, &config, Op::Get, Method::Get, &target, None)?;
    if resp.status != 200 {
        return Err(provider_error(Op::Get, &resp));
    }
    match lookup {
        RefundLookup::ProviderRefundId(_) => refund_from(Op::Get, &resp),
        RefundLookup::ExternalRefundId(id) => {
            let list: Vec<wire::RefundObject> = envelope(Op::Get, &resp)?;
            // Skip entries that name another refund id (a server ignoring the filter).
            let found = list
                .into_iter()
                .find(|r| r.refund_id.as_deref().is_none_or(|r| r == id))
                .ok_or_else(|| Error::NotFound { id: id.clone() })?;
            found
                .into_refund()
                .map_err(|e| bad_answer(Op::Get, resp.status, e))
        }
    }
}

/// One page of the refunds created in `range` (spec: "List (reconciliation)"). The provider
/// takes whole seconds of Lima time: the range asked is widened to them and the answer cut back to
/// `range`. The cursor is the number of the page to ask for.
fn list(host: &impl Host, range: &TimeRange, cursor: Option<&str>) -> Result<RefundPage, Error> {
    const SECOND: i64 = 1000;
    let seconds =
        list::whole_seconds(range, MAX_LIST_RANGE_DAYS).map_err(|e| invalid(e.to_string()))?;
    let (from_s, to_s) = (seconds.from_s, seconds.to_s);
    let page = match cursor {
        None => 1,
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| invalid(format!("cursor `{c}` is not a page number")))?,
    };
    let lima = |ms| {
        time::format_rfc3339_offset(ms, LIMA_OFFSET_MINUTES)
            .map_err(|e| invalid(format!("range: {e}")))
    };
    let (date_from, date_to) = (lima(from_s * SECOND)?, lima(to_s * SECOND)?);
    let target = format!(
        "/v1/refunds?dateFrom={}&dateTo={}&page={page}&pageSize={LIST_PAGE_SIZE}",
        query_value(&date_from),
        query_value(&date_to)
    );
    let config = Config::load(host)?;
    let resp = call(host, &config, Op::List, Method::Get, &target, None)?;
    if resp.status != 200 {
        return Err(provider_error(Op::List, &resp));
    }
    let data: wire::RefundListPage = envelope(Op::List, &resp)?;
    // From the page asked for, not the one the answer names: an answer that numbers its page
    // otherwise (from 0, say) must not send the host back to a page it has read.
    let next_cursor = (page < data.total_pages).then(|| (page + 1).to_string());
    let mut refunds = Vec::with_capacity(data.items.len());
    for object in data.items {
        let refund = object
            .into_refund()
            .map_err(|e| bad_answer(Op::List, resp.status, e))?;
        if list::inside(range, &refund) {
            refunds.push(refund);
        }
    }
    Ok(RefundPage {
        refunds,
        next_cursor,
    })
}

/// A Lima date as a query value: its `-` offset and `:` need no escaping, but a `+` would read
/// as a space, so it is encoded (Lima is always `-05:00`; this keeps the function honest).
fn query_value(value: &str) -> String {
    value.replace('+', "%2B")
}

impl Provider for PagoEfectivo {
    fn describe() -> ProviderInfo {
        ProviderInfo {
            id: "pagoefectivo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "PagoEfectivo".into(),
            currencies: CURRENCIES.iter().map(|c| (*c).to_owned()).collect(),
            partial_refunds: true,
            multiple_refunds: true,
            refund_window_days: Some(180),
            status_queries: true,
            // The spec sets no limit on when a completed refund may be reverted.
            reversal_window_days: None,
            max_list_range_days: Some(MAX_LIST_RANGE_DAYS),
        }
    }

    fn create_refund(host: &impl Host, req: RefundRequest) -> Result<Refund, RefundError> {
        create(host, &req).map_err(RefundError::from)
    }

    /// PagoEfectivo finds a refund by `referenceId` or `refundId`: the payment is not needed.
    fn get_refund(
        host: &impl Host,
        lookup: RefundLookup,
        _original_transaction_id: Option<String>,
    ) -> Result<Refund, RefundError> {
        get(host, &lookup).map_err(RefundError::from)
    }

    fn list_refunds(
        host: &impl Host,
        range: TimeRange,
        cursor: Option<String>,
    ) -> Result<RefundPage, RefundError> {
        list(host, &range, cursor.as_deref()).map_err(RefundError::from)
    }

    /// Spec "Notifications". The scheme signs no timestamp, so there is no freshness check and
    /// `stale-timestamp` never occurs: replays are the host's to catch, by remembering event ids
    /// (`operationNumber`) and never moving a refund backwards.
    fn parse_webhook(
        host: &impl Host,
        req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        let (headers, body) = (&req.headers[..], &req.body[..]);
        let signature = http::required_header(headers, "PE-Signature")?;
        let Some(secret) = host.config("secret_key").filter(|s| !s.is_empty()) else {
            host.log(
                Level::Error,
                "pagoefectivo: config key `secret_key` is not set; rejecting webhook",
                &[],
            );
            return Err(WebhookError::InvalidSignature);
        };
        // Verify before reading anything else from the request: nothing unsigned is trusted.
        if !sign::verify_webhook(secret.as_bytes(), body, signature) {
            return Err(WebhookError::InvalidSignature);
        }
        let malformed =
            |what: &str, e: &dyn std::fmt::Display| WebhookError::Malformed(format!("{what}: {e}"));
        let head: wire::WebhookHead =
            serde_json::from_slice(body).map_err(|e| malformed("body", &e))?;
        match wire::EventType::parse(&head.event_type) {
            wire::EventType::Pending
            | wire::EventType::Completed
            | wire::EventType::Rejected
            | wire::EventType::Reverted => {}
            // A genuine notification of a type the spec does not list: acknowledged, so that
            // the provider stops retrying it.
            wire::EventType::Unknown(other) => {
                return Ok(WebhookOutcome::Ignored(format!(
                    "eventType `{other}` is not handled"
                )));
            }
        }
        let event: wire::WebhookBody =
            serde_json::from_slice(body).map_err(|e| malformed("body", &e))?;
        if event.operation_number.is_empty() {
            return Err(WebhookError::Malformed("operationNumber is empty".into()));
        }
        let refund = event
            .data
            .into_refund()
            .map_err(|e| malformed("data", &e))?;
        Ok(WebhookOutcome::Events(vec![WebhookEvent {
            event_id: event.operation_number,
            event_type: event.event_type,
            // The refund's last change is when the event happened: the body has no other time.
            occurred_at: refund.updated_at,
            refund,
        }]))
    }
}
