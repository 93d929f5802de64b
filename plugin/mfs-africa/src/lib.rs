//! Refundry plugin for MFS Africa refunds (wire contract v1).
//!
//! Configuration (`[providers.mfs-africa]`): `base_url`, `api_key`, `api_secret` for requests and
//! `webhook_secret` for webhooks. A missing or unusable key is a final refusal of kind
//! `configuration`, never a panic; a webhook that cannot be verified for want of
//! `webhook_secret` is `invalid-signature`, logged at error.

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

/// The MFS Africa provider.
pub struct MfsAfrica;

refundry_sdk::export_provider!(MfsAfrica);

/// Currencies the spec's "Money" section lists; the SDK's table gives their minor digits.
pub const CURRENCIES: [&str; 13] = [
    "KES", "NGN", "GHS", "TZS", "ZAR", "ZMW", "MWK", "USD", "EUR", "UGX", "XOF", "XAF", "RWF",
];

/// The version `describe()` reports and, in the `next` build, what `X-Plugin-Version` says. The
/// `next` feature is the plugin's second version (so the host has two real versions of one
/// provider to swap between); without it this is the crate's version.
pub const VERSION: &str = if cfg!(feature = "next") {
    "0.3.0"
} else {
    env!("CARGO_PKG_VERSION")
};

/// Spec "Webhooks": a signed timestamp more than 300 s from the host clock is rejected. Both
/// directions, like the provider's own 401 rule: a timestamp from the future is as suspect as an
/// old one, and a replayed webhook cannot outlive the window either way.
const WEBHOOK_TOLERANCE_MS: i64 = 300_000;

/// Spec "Webhooks": the one event type it defines; any other is acknowledged and ignored.
const STATUS_CHANGED: &str = "refund.status_changed";

/// Spec "List (reconciliation)": the longest range one list request may cover.
const MAX_LIST_RANGE_DAYS: u32 = 31;

/// Spec "List (reconciliation)": `limit` is at most 100; the fewest requests per range.
const LIST_LIMIT: u32 = 100;

/// Which operation an HTTP failure belongs to: a lost answer to a create may hide a refund, a
/// lost answer to a read hides nothing and is simply retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Get,
    List,
}

impl Op {
    fn effect(self) -> errors::Effect {
        match self {
            Op::Create => errors::Effect::Write,
            Op::Get | Op::List => errors::Effect::Read,
        }
    }
}

/// Everything that can stop a create or get, mapped once into [`RefundError`].
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("mfs-africa is not configured: {reason}")]
    Config { reason: String },
    #[error("host clock unusable for X-Timestamp: {source}")]
    Clock { source: TimeError },
    #[error("{reason}")]
    InvalidRequest { reason: String },
    #[error("currency `{currency}` is not supported by MFS Africa")]
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
    #[error("unexpected answer from MFS Africa (HTTP {status}): {reason}")]
    BadAnswer { status: u16, reason: String },
    #[error("no refund with external_refund_id `{id}`")]
    NotFound { id: String },
}

impl From<Error> for RefundError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::Config { .. } => errors::refused(RefusalKind::Configuration, message),
            // The provider would refuse the signature's time: fixed like a clock it rejected.
            Error::Clock { .. } => errors::refused(RefusalKind::Authentication, message),
            Error::InvalidRequest { .. } => errors::refused(RefusalKind::InvalidRequest, message),
            Error::UnsupportedCurrency { .. } => {
                errors::refused(RefusalKind::CurrencyMismatch, message)
            }
            Error::NotFound { .. } => errors::refused(RefusalKind::NotFound, message),
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
    match code {
        Some(ErrorCode::InvalidRequest) => Some(RefusalKind::InvalidRequest),
        Some(
            ErrorCode::InvalidApiKey | ErrorCode::InvalidSignature | ErrorCode::TimestampOutOfRange,
        ) => Some(RefusalKind::Authentication),
        Some(ErrorCode::IpNotAllowed) => Some(RefusalKind::Forbidden),
        Some(ErrorCode::InvalidTransaction) => Some(RefusalKind::InvalidTransaction),
        Some(ErrorCode::RefundNotFound) => Some(RefusalKind::NotFound),
        Some(ErrorCode::DuplicateExternalRefundId) => Some(RefusalKind::IdempotencyConflict),
        Some(ErrorCode::AmountExceeded) => Some(RefusalKind::AmountExceeded),
        Some(ErrorCode::CurrencyMismatch) => Some(RefusalKind::CurrencyMismatch),
        // "later" in the spec's retry column, but not by retrying now: the kind says so.
        Some(ErrorCode::TransactionNotSettled) => Some(RefusalKind::NotSettled),
        Some(ErrorCode::RefundWindowExpired) => Some(RefusalKind::WindowExpired),
        Some(ErrorCode::RateLimited | ErrorCode::InternalError | ErrorCode::ServiceUnavailable) => {
            None
        }
        // Not in the spec: the HTTP status class decides (5xx and 429 mean "not now").
        Some(ErrorCode::Unknown(_)) | None => match status {
            429 | 500..=599 => None,
            _ => Some(RefusalKind::Other),
        },
    }
}

/// A value that must never reach a log line or a `Debug` print: deliberately no `Debug`.
struct Secret(String);

/// The request-signing configuration.
struct Config {
    base_url: String,
    api_key: String,
    api_secret: Secret,
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
        // The signed PATH is everything after the authority, so the base URL must have one.
        let absolute = base_url
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
        if !absolute {
            return Err(Error::Config {
                reason: format!("base_url `{base_url}` is not an absolute http(s) URL"),
            });
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: config_key(host, "api_key")?,
            api_secret: Secret(config_key(host, "api_secret")?),
        })
    }
}

/// Sends a signed request to `target` (path and query under `base_url`).
fn send(
    host: &impl Host,
    config: &Config,
    op: Op,
    method: Method,
    target: &str,
    body: Option<Vec<u8>>,
) -> Result<http::Response, Error> {
    let url = format!("{}{target}", config.base_url);
    // The request target as sent: the URL minus scheme and authority (keeps a base_url path prefix).
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let path = &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..];
    let timestamp =
        time::format_rfc3339_utc(host.now_ms()).map_err(|source| Error::Clock { source })?;
    let mut headers = sign::signed_headers(
        &config.api_key,
        config.api_secret.0.as_bytes(),
        method.as_str(),
        path,
        &timestamp,
        body.as_deref(),
    );
    // Not in the spec: the `next` build names its version, so that a sandbox can tell which
    // version served a request. It goes after the spec's headers and is not signed (the spec
    // fixes the string to sign), so a provider that ignores it sees a plain v1 request.
    if cfg!(feature = "next") {
        headers.push(("X-Plugin-Version".to_owned(), VERSION.to_owned()));
    }
    host.http_send(http::Request {
        method,
        url,
        headers,
        body,
    })
    .map_err(|source| Error::Http { source, op })
}

/// Turns a non-success answer into [`Error::Provider`], keeping code, message and status.
fn provider_error(resp: &http::Response) -> Error {
    if resp.status < 400 {
        return Error::BadAnswer {
            status: resp.status,
            reason: "unexpected HTTP status".into(),
        };
    }
    // Spec: `Retry-After` gives seconds.
    let retry_after_ms = http::header(&resp.headers, "retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1000));
    let (code, message) = match serde_json::from_slice::<wire::ErrorBody>(&resp.body) {
        // The trace id goes into the message: it is what MFS Africa support asks for.
        Ok(body) => (
            Some(body.error.code),
            match body.trace_id {
                Some(trace) => format!("{} (trace_id {trace})", body.error.message),
                None => body.error.message,
            },
        ),
        Err(_) => (
            None,
            format!("HTTP {} without an MFS Africa error body", resp.status),
        ),
    };
    Error::Provider {
        status: resp.status,
        code,
        message,
        retry_after_ms,
    }
}

fn bad_answer(status: u16, reason: impl std::fmt::Display) -> Error {
    Error::BadAnswer {
        status,
        reason: reason.to_string(),
    }
}

/// Parses and converts a refund object answer.
fn refund_from(resp: &http::Response) -> Result<Refund, Error> {
    let object: wire::RefundObject =
        serde_json::from_slice(&resp.body).map_err(|e| bad_answer(resp.status, e))?;
    object.into_refund().map_err(|e| bad_answer(resp.status, e))
}

/// Spec: `external_refund_id` is 1 to 64 of `[A-Za-z0-9_-]`. That charset is also why it can go
/// into a query string unencoded.
fn check_external_id(id: &str) -> Result<(), Error> {
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
    // Everything the spec lets us check is checked before any network call.
    check_external_id(&req.external_refund_id)?;
    if req.original_transaction_id.is_empty() {
        return Err(invalid("original_transaction_id is empty"));
    }
    if req.reason.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err(invalid("reason is longer than 255 characters"));
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
    let body = serde_json::to_vec(&wire::CreateRefundBody {
        original_transaction_id: &req.original_transaction_id,
        refund_amount,
        currency: &req.amount.currency,
        reason: req.reason.as_deref(),
        external_refund_id: &req.external_refund_id,
    })
    .map_err(|e| invalid(e.to_string()))?;
    let resp = send(
        host,
        &config,
        Op::Create,
        Method::Post,
        "/v1/refunds",
        Some(body),
    )?;
    match resp.status {
        // 201: new refund; 200: replay of the same request, the existing refund.
        200 | 201 => refund_from(&resp),
        _ => Err(provider_error(&resp)),
    }
}

/// Percent-encodes a provider refund id for use as one path segment (only unreserved characters
/// pass), so that an odd id can neither leave `/v1/refunds/` nor break the signed PATH.
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
            check_external_id(id)?;
            format!("/v1/refunds?external_refund_id={id}")
        }
    };
    let config = Config::load(host)?;
    let resp = send(host, &config, Op::Get, Method::Get, &target, None)?;
    if resp.status != 200 {
        return Err(provider_error(&resp));
    }
    match lookup {
        RefundLookup::ProviderRefundId(_) => refund_from(&resp),
        RefundLookup::ExternalRefundId(id) => {
            let list: wire::RefundList =
                serde_json::from_slice(&resp.body).map_err(|e| bad_answer(resp.status, e))?;
            // Skip entries that name another external id (a server ignoring the filter).
            let found = list
                .data
                .into_iter()
                .find(|r| r.external_refund_id.as_deref().is_none_or(|e| e == id))
                .ok_or_else(|| Error::NotFound { id: id.clone() })?;
            found.into_refund().map_err(|e| bad_answer(resp.status, e))
        }
    }
}

/// One page of the refunds created in `range` (spec: "List (reconciliation)"). The provider
/// takes whole seconds: the range asked is widened to them and the answer cut back to `range`.
/// The cursor is the last `refund_id` of the previous page (`starting_after`).
fn list(host: &impl Host, range: &TimeRange, cursor: Option<&str>) -> Result<RefundPage, Error> {
    const SECOND: i64 = 1000;
    let seconds =
        list::whole_seconds(range, MAX_LIST_RANGE_DAYS).map_err(|e| invalid(e.to_string()))?;
    let (from_s, to_s) = (seconds.from_s, seconds.to_s);
    let bad_time = |e: TimeError| invalid(format!("range: {e}"));
    let created_from = time::format_rfc3339_utc(from_s * SECOND).map_err(bad_time)?;
    let created_to = time::format_rfc3339_utc(to_s * SECOND).map_err(bad_time)?;
    let mut target = format!(
        "/v1/refunds?created_from={created_from}&created_to={created_to}&limit={LIST_LIMIT}"
    );
    if let Some(after) = cursor {
        if after.is_empty() {
            return Err(invalid("empty cursor"));
        }
        target.push_str("&starting_after=");
        target.push_str(&path_segment(after));
    }
    let config = Config::load(host)?;
    let resp = send(host, &config, Op::List, Method::Get, &target, None)?;
    if resp.status != 200 {
        return Err(provider_error(&resp));
    }
    let page: wire::RefundPage =
        serde_json::from_slice(&resp.body).map_err(|e| bad_answer(resp.status, e))?;
    let next_cursor = match (page.has_more, page.data.last()) {
        (false, _) => None,
        (true, Some(last)) => Some(last.refund_id.clone()),
        (true, None) => return Err(bad_answer(resp.status, "has_more with an empty page")),
    };
    let mut refunds = Vec::with_capacity(page.data.len());
    for object in page.data {
        let refund = object
            .into_refund()
            .map_err(|e| bad_answer(resp.status, e))?;
        if list::inside(range, &refund) {
            refunds.push(refund);
        }
    }
    Ok(RefundPage {
        refunds,
        next_cursor,
    })
}

impl Provider for MfsAfrica {
    fn describe() -> ProviderInfo {
        ProviderInfo {
            id: "mfs-africa".into(),
            version: VERSION.into(),
            display_name: "MFS Africa".into(),
            currencies: CURRENCIES.iter().map(|c| (*c).to_owned()).collect(),
            partial_refunds: true,
            multiple_refunds: true,
            refund_window_days: Some(180),
            status_queries: true,
            // The spec sets no limit on when a processed refund may be reversed.
            reversal_window_days: None,
            max_list_range_days: Some(MAX_LIST_RANGE_DAYS),
        }
    }

    fn create_refund(host: &impl Host, req: RefundRequest) -> Result<Refund, RefundError> {
        create(host, &req).map_err(RefundError::from)
    }

    /// MFS Africa finds a refund by its own id or the merchant's: the payment is not needed.
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

    fn parse_webhook(
        host: &impl Host,
        req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        let (headers, body) = (&req.headers[..], &req.body[..]);
        let signature = http::required_header(headers, "X-MFS-Signature")?;
        let timestamp = http::required_header(headers, "X-MFS-Timestamp")?;
        let event_id = http::required_header(headers, "X-MFS-Event-Id")?;
        let Some(secret) = host.config("webhook_secret").filter(|s| !s.is_empty()) else {
            host.log(
                Level::Error,
                "mfs-africa: config key `webhook_secret` is not set; rejecting webhook",
                &[],
            );
            return Err(WebhookError::InvalidSignature);
        };
        // Verify before reading anything else from the request: nothing unsigned is trusted.
        if !sign::verify_webhook(secret.as_bytes(), timestamp, body, signature) {
            return Err(WebhookError::InvalidSignature);
        }
        let malformed =
            |what: &str, e: &dyn std::fmt::Display| WebhookError::Malformed(format!("{what}: {e}"));
        let sent_ms =
            time::parse_rfc3339(timestamp).map_err(|e| malformed("X-MFS-Timestamp", &e))?;
        let age_ms = host.now_ms().saturating_sub(sent_ms);
        if age_ms.unsigned_abs() > WEBHOOK_TOLERANCE_MS.unsigned_abs() {
            return Err(WebhookError::StaleTimestamp(age_ms / 1000));
        }
        let head: wire::WebhookHead =
            serde_json::from_slice(body).map_err(|e| malformed("body", &e))?;
        if head.event_type != STATUS_CHANGED {
            return Ok(WebhookOutcome::Ignored(format!(
                "event type `{}` is not handled",
                head.event_type
            )));
        }
        let event: wire::WebhookBody =
            serde_json::from_slice(body).map_err(|e| malformed("body", &e))?;
        if event.event_id != event_id {
            return Err(WebhookError::Malformed(format!(
                "event_id `{}` differs from X-MFS-Event-Id `{event_id}`",
                event.event_id
            )));
        }
        let occurred_at = wire::parse_time("occurred_at", event.occurred_at.as_deref())
            .map_err(|e| malformed("body", &e))?;
        let refund = event
            .data
            .into_refund()
            .map_err(|e| malformed("data", &e))?;
        Ok(WebhookOutcome::Events(vec![WebhookEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            occurred_at,
            refund,
        }]))
    }
}
