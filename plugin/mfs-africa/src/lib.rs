//! Refundry plugin for MFS Africa refunds (wire contract v1).
//!
//! Configuration (`[providers.mfs-africa]`): `base_url`, `api_key`, `api_secret` for requests and
//! `webhook_secret` for webhooks. A missing or unusable key is a final refusal of kind
//! `configuration`, never a panic; a webhook that cannot be verified for want of
//! `webhook_secret` is `invalid-signature`, logged at error.

use refundry_sdk::errors::{Effect, ProviderError};
use refundry_sdk::http::{self, Method};
use refundry_sdk::reply::{self, ProviderReply};
use refundry_sdk::settings::{Secret, Settings};
use refundry_sdk::validate::{IdRule, RefundRules};
use refundry_sdk::{
    Host, Provider, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefusalKind, TimeRange, WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest, list,
    lookup, time, webhook,
};

pub mod sign;
pub mod wire;

use wire::ErrorCode;

/// The MFS Africa provider.
pub struct MfsAfrica;

refundry_sdk::export_provider!(MfsAfrica);

/// The provider id: its section of the host configuration, and its name in configuration
/// messages and log lines.
const ID: &str = "mfs-africa";

/// Its name in messages about its answers.
const NAME: &str = "MFS Africa";

/// Currencies the spec's "Money" section lists; the SDK's table gives their minor digits.
pub const CURRENCIES: [&str; 13] = [
    "KES", "NGN", "GHS", "TZS", "ZAR", "ZMW", "MWK", "USD", "EUR", "UGX", "XOF", "XAF", "RWF",
];

/// Spec "Create a refund": what a refund request may be, checked before any call.
const RULES: RefundRules = RefundRules {
    provider: NAME,
    currencies: &CURRENCIES,
    max_reason_chars: 255,
    // `external_refund_id` is 1 to 64 of `[A-Za-z0-9_-]`: characters percent-encoding leaves as
    // they are, so the id goes into a query string as the merchant gave it.
    external_id: IdRule {
        max_len: 64,
        symbols: "_-",
    },
};

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

/// The request-signing configuration.
struct Config {
    base_url: String,
    api_key: String,
    api_secret: Secret,
}

impl Config {
    fn load(host: &impl Host) -> Result<Self, ProviderError> {
        let settings = Settings::new(host, ID);
        Ok(Self {
            base_url: settings.base_url()?,
            api_key: settings.get("api_key")?,
            api_secret: settings.secret("api_secret")?,
        })
    }

    /// Sends a signed request to `target` (path and query under `base_url`).
    fn send(
        &self,
        host: &impl Host,
        effect: Effect,
        method: Method,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<ProviderReply, ProviderError> {
        let url = format!("{}{target}", self.base_url);
        let timestamp =
            time::format_rfc3339_utc(host.now_ms()).map_err(ProviderError::clock("X-Timestamp"))?;
        let mut headers = sign::signed_headers(
            &self.api_key,
            self.api_secret.expose().as_bytes(),
            method.as_str(),
            http::request_target(&url),
            &timestamp,
            body.as_deref(),
        );
        // Not in the spec: the `next` build names its version, so that a sandbox can tell which
        // version served a request. It goes after the spec's headers and is not signed (the
        // spec fixes the string to sign), so a provider that ignores it sees a plain v1 request.
        if cfg!(feature = "next") {
            headers.push(("X-Plugin-Version".to_owned(), VERSION.to_owned()));
        }
        let request = http::Request {
            method,
            url,
            headers,
            body,
        };
        reply::send(host, NAME, effect, request)
    }
}

/// The error a non-success answer is, by the spec's error table, keeping code and message.
fn provider_error(reply: &ProviderReply) -> ProviderError {
    let (code, message) = match reply.json::<wire::ErrorBody>() {
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
            format!("HTTP {} without an MFS Africa error body", reply.status()),
        ),
    };
    let kind = refusal_kind(code.as_deref().map(ErrorCode::parse), reply.status());
    reply.error_answer(kind, code, message)
}

/// Parses and converts a refund object answer.
fn refund_from(reply: &ProviderReply) -> Result<Refund, ProviderError> {
    let object: wire::RefundObject = reply.json()?;
    object.into_refund().map_err(|e| reply.bad(e))
}

impl Provider for MfsAfrica {
    fn describe() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            version: VERSION.into(),
            display_name: NAME.into(),
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
        // Everything the spec lets us check is checked before any network call.
        let refund_amount = RULES.check_create(&req)?;
        let config = Config::load(host)?;
        let body = serde_json::to_vec(&wire::CreateRefundBody {
            original_transaction_id: &req.original_transaction_id,
            refund_amount,
            currency: &req.amount.currency,
            reason: req.reason.as_deref(),
            external_refund_id: &req.external_refund_id,
        })
        .map_err(|e| ProviderError::invalid(e.to_string()))?;
        let reply = config
            .send(host, Effect::Write, Method::Post, "/v1/refunds", Some(body))?
            // 201: new refund; 200: replay of the same request, the existing refund.
            .success(&[200, 201], provider_error)?;
        Ok(refund_from(&reply)?)
    }

    /// MFS Africa finds a refund by its own id or the merchant's: the payment is not needed.
    fn get_refund(
        host: &impl Host,
        lookup: RefundLookup,
        _original_transaction_id: Option<String>,
    ) -> Result<Refund, RefundError> {
        let by_external_id = "/v1/refunds?external_refund_id=";
        let target = lookup::target(&lookup, &RULES, "/v1/refunds/", by_external_id)?;
        let reply = Config::load(host)?
            .send(host, Effect::Read, Method::Get, &target, None)?
            .success(&[200], provider_error)?;
        let RefundLookup::ExternalRefundId(id) = lookup else {
            return Ok(refund_from(&reply)?);
        };
        let list: wire::RefundList = reply.json()?;
        let found = lookup::find_by_external_id(list.data, "external_refund_id", &id, |r| {
            r.external_refund_id.as_deref()
        })?;
        Ok(found.into_refund().map_err(|e| reply.bad(e))?)
    }

    /// One page of the refunds created in `range` (spec: "List (reconciliation)"). The provider
    /// takes whole seconds: the range asked is widened to them and the answer cut back to
    /// `range`. The cursor is the last `refund_id` of the previous page (`starting_after`).
    fn list_refunds(
        host: &impl Host,
        range: TimeRange,
        cursor: Option<String>,
    ) -> Result<RefundPage, RefundError> {
        let (created_from, created_to) = list::whole_seconds(&range, MAX_LIST_RANGE_DAYS)
            .and_then(|seconds| seconds.format(time::format_rfc3339_utc))?;
        let mut target = format!(
            "/v1/refunds?created_from={created_from}&created_to={created_to}&limit={LIST_LIMIT}"
        );
        if let Some(after) = list::id_cursor(cursor.as_deref())? {
            target.push_str("&starting_after=");
            target.push_str(&http::path_segment(after));
        }
        let reply = Config::load(host)?
            .send(host, Effect::Read, Method::Get, &target, None)?
            .success(&[200], provider_error)?;
        let page: wire::RefundPage = reply.json()?;
        let next_cursor = match (page.has_more, page.data.last()) {
            (false, _) => None,
            (true, Some(last)) => Some(last.refund_id.clone()),
            (true, None) => return Err(reply.bad("has_more with an empty page").into()),
        };
        let refunds = list::keep_inside(&range, page.data, |object| {
            object.into_refund().map_err(|e| reply.bad(e))
        })?;
        Ok(RefundPage {
            refunds,
            next_cursor,
        })
    }

    fn parse_webhook(
        host: &impl Host,
        req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        let (headers, body) = (&req.headers[..], &req.body[..]);
        let signature = http::required_header(headers, "X-MFS-Signature")?;
        let timestamp = http::required_header(headers, "X-MFS-Timestamp")?;
        let event_id = http::required_header(headers, "X-MFS-Event-Id")?;
        let secret = webhook::secret(host, ID, "webhook_secret")?;
        // Verify before reading anything else from the request: nothing unsigned is trusted.
        if !sign::verify_webhook(secret.expose().as_bytes(), timestamp, body, signature) {
            return Err(WebhookError::InvalidSignature);
        }
        let sent_ms =
            time::parse_rfc3339(timestamp).map_err(|e| webhook::malformed("X-MFS-Timestamp", e))?;
        webhook::check_age(host.now_ms(), sent_ms, WEBHOOK_TOLERANCE_MS)?;
        let head: wire::WebhookHead = webhook::json(body)?;
        if head.event_type != STATUS_CHANGED {
            return Ok(webhook::ignored("event type", &head.event_type));
        }
        let event: wire::WebhookBody = webhook::json(body)?;
        if event.event_id != event_id {
            return Err(WebhookError::Malformed(format!(
                "event_id `{}` differs from X-MFS-Event-Id `{event_id}`",
                event.event_id
            )));
        }
        let occurred_at = time::parse_field("occurred_at", event.occurred_at.as_deref())
            .map_err(|e| webhook::malformed("body", e))?;
        let refund = event
            .data
            .into_refund()
            .map_err(|e| webhook::malformed("data", e))?;
        Ok(WebhookOutcome::Events(vec![WebhookEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            occurred_at,
            refund,
        }]))
    }
}
