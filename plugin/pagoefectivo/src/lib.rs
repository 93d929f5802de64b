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

use refundry_sdk::errors::{Effect, ProviderError};
use refundry_sdk::http::{self, Method};
use refundry_sdk::reply::{self, ProviderReply};
use refundry_sdk::settings::{Secret, Settings};
use refundry_sdk::token::TokenCache;
use refundry_sdk::validate::{IdRule, RefundRules};
use refundry_sdk::{
    Host, Level, Provider, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage,
    RefundRequest, RefusalKind, TimeRange, WebhookError, WebhookEvent, WebhookOutcome,
    WebhookRequest, list, lookup, time, webhook,
};
use serde::de::DeserializeOwned;

pub mod sign;
pub mod wire;

use wire::ErrorCode;

/// The PagoEfectivo provider.
pub struct PagoEfectivo;

refundry_sdk::export_provider!(PagoEfectivo);

/// The provider id: its section of the host configuration, and its name in configuration
/// messages and log lines.
const ID: &str = "pagoefectivo";

/// Its name in messages about its answers.
const NAME: &str = "PagoEfectivo";

/// Spec "Dates, money, currency": `PEN` and `USD` only.
pub const CURRENCIES: [&str; 2] = ["PEN", "USD"];

/// Spec "Create a refund": what a refund request may be, checked before any call.
const RULES: RefundRules = RefundRules {
    provider: NAME,
    currencies: &CURRENCIES,
    max_reason_chars: 200,
    // `refundId` is 1 to 64 of `[A-Za-z0-9_-]`: characters percent-encoding leaves as they are,
    // so the id goes into a query string as the merchant gave it.
    external_id: IdRule {
        max_len: 64,
        symbols: "_-",
    },
};

/// The host storage key of the cached token ([`TokenCache`]).
pub const TOKEN_KEY: &str = "auth-token";

/// Spec "Dates": Lima time, UTC-5 all year (Peru has no DST).
const LIMA_OFFSET_MINUTES: i32 = -300;

/// Spec "List (reconciliation)": the longest range one list request may cover.
const MAX_LIST_RANGE_DAYS: u32 = 31;

/// Spec "List (reconciliation)": `pageSize` is at most 100; the fewest requests per range.
const LIST_PAGE_SIZE: u32 = 100;

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

/// The configuration every call needs.
struct Config {
    base_url: String,
    id_service: u64,
    access_key: String,
    secret_key: Secret,
    tokens: TokenCache,
}

/// The error a non-success answer is, by the spec's error table, keeping code, message (with
/// its field details) and status. The spec names no `Retry-After`; one that a proxy in front
/// sends is honoured.
fn provider_error(reply: &ProviderReply) -> ProviderError {
    let (code, message) = match reply.json::<wire::ErrorBody>() {
        Ok(body) => (Some(body.code.clone()), body.describe()),
        Err(_) => (
            None,
            format!("HTTP {} without a PagoEfectivo error body", reply.status()),
        ),
    };
    let kind = refusal_kind(code.as_deref().map(ErrorCode::parse), reply.status());
    reply.error_answer(kind, code, message)
}

/// Parses a success envelope, insisting on the spec's `"code": "100"`.
fn envelope<T: DeserializeOwned>(reply: &ProviderReply) -> Result<T, ProviderError> {
    let envelope: wire::Envelope<T> = reply.json()?;
    if envelope.code != wire::SUCCESS_CODE {
        let reason = format!("code `{}` instead of `100`", envelope.code);
        return Err(reply.bad(reason));
    }
    Ok(envelope.data)
}

/// True for the spec's "expired or unknown token" answer: `401` with code `106`.
fn token_rejected(reply: &ProviderReply) -> bool {
    reply.status() == 401
        && reply
            .json::<wire::ErrorBody>()
            .is_ok_and(|body| ErrorCode::parse(&body.code) == ErrorCode::TokenExpired)
}

/// Parses and converts a refund object answer.
fn refund_from(reply: &ProviderReply) -> Result<Refund, ProviderError> {
    let object: wire::RefundObject = envelope(reply)?;
    object.into_refund().map_err(|e| reply.bad(e))
}

impl Config {
    fn load(host: &impl Host) -> Result<Self, ProviderError> {
        let settings = Settings::new(host, ID);
        let base_url = settings.base_url()?;
        let id_service = settings.parse::<u64>("id_service", "an integer")?;
        let access_key = settings.get("access_key")?;
        // What a cached token is bound to: a token issued for other credentials is never reused.
        let credentials = [base_url.as_str(), &id_service.to_string(), &access_key];
        let tokens = TokenCache::new(ID, TOKEN_KEY, &credentials);
        Ok(Self {
            secret_key: settings.secret("secret_key")?,
            base_url,
            id_service,
            access_key,
            tokens,
        })
    }

    /// `POST /v1/authorizations`, then caches the token. Spec "Authorization".
    fn authorize(&self, host: &impl Host) -> Result<Secret, ProviderError> {
        let now = host.now_ms();
        let date_request = time::format_rfc3339_offset(now, LIMA_OFFSET_MINUTES)
            .map_err(ProviderError::clock("dateRequest"))?;
        let body = serde_json::to_vec(&wire::AuthorizationBody {
            access_key: &self.access_key,
            id_service: self.id_service,
            date_request: &date_request,
            hash_string: sign::auth_hash(
                &self.id_service.to_string(),
                &self.access_key,
                self.secret_key.expose(),
                &date_request,
            ),
        })
        .map_err(|e| ProviderError::invalid(e.to_string()))?;
        let request = http::Request {
            method: Method::Post,
            url: format!("{}/v1/authorizations", self.base_url),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Some(body),
        };
        let reply = reply::send(host, NAME, Effect::Authorize, request)?
            .success(&[200, 201], provider_error)?;
        let data: wire::TokenData = envelope(&reply)?;
        let expires_ms =
            time::parse_required("tokenExpires", &data.token_expires).map_err(|e| reply.bad(e))?;
        let issued_ms = time::parse_field("tokenStart", data.token_start.as_deref())
            .map_err(|e| reply.bad(e))?
            .unwrap_or(now);
        Ok(self.tokens.store(host, data.token, issued_ms, expires_ms))
    }

    /// One signed call to `target` (path and query under `base_url`) with `token`. `body` is the
    /// serialized JSON and its canonical string; without a body the request target is signed.
    fn send_signed(
        &self,
        host: &impl Host,
        token: &Secret,
        effect: Effect,
        method: Method,
        target: &str,
        body: Option<&(Vec<u8>, String)>,
    ) -> Result<ProviderReply, ProviderError> {
        let url = format!("{}{target}", self.base_url);
        let canonical = body.map_or(http::request_target(&url), |(_, canonical)| canonical);
        let headers = sign::signed_headers(
            token.expose(),
            self.secret_key.expose().as_bytes(),
            canonical,
            body.is_some(),
        );
        let request = http::Request {
            method,
            url,
            headers,
            body: body.map(|(bytes, _)| bytes.clone()),
        };
        reply::send(host, NAME, effect, request)
    }

    /// A signed call with the cached (or a new) token; on `106`, authorizes once and retries
    /// once. A `106` to the retry is returned as it is, and mapped to `authentication`.
    fn call(
        &self,
        host: &impl Host,
        effect: Effect,
        method: Method,
        target: &str,
        body: Option<&(Vec<u8>, String)>,
    ) -> Result<ProviderReply, ProviderError> {
        let token = match self.tokens.cached(host) {
            Some(token) => token,
            None => self.authorize(host)?,
        };
        let reply = self.send_signed(host, &token, effect, method, target, body)?;
        if !token_rejected(&reply) {
            return Ok(reply);
        }
        let message = "pagoefectivo: token rejected (106); authorizing again";
        host.log(Level::Info, message, &[]);
        // A failed re-authorization must not leave the rejected token to be tried again.
        self.tokens.forget(host);
        let token = self.authorize(host)?;
        self.send_signed(host, &token, effect, method, target, body)
    }
}

/// A Lima date as a query value: its `-` offset and `:` need no escaping, but a `+` would read
/// as a space, so it is encoded (Lima is always `-05:00`; this keeps the function honest).
fn query_value(value: &str) -> String {
    value.replace('+', "%2B")
}

impl Provider for PagoEfectivo {
    fn describe() -> ProviderInfo {
        ProviderInfo {
            id: ID.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: NAME.into(),
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
        // Everything the spec lets us check is checked before any call, the authorization
        // included. The order id first: a request without one is `invalid-request` whatever
        // else is wrong with it (its currency included).
        let order_id = match req.order_id.as_deref() {
            Some(id) if !id.is_empty() => id,
            _ => {
                let reason =
                    "PagoEfectivo needs the merchant order id (order_id, sent as transactionCode)";
                return Err(ProviderError::invalid(reason).into());
            }
        };
        let refund_amount = RULES.check_create(&req)?;
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
                let reason = format!("body does not serialize to an object: {other:?}");
                return Err(ProviderError::invalid(reason).into());
            }
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::invalid(e.to_string()))?;
        let body = Some(&(bytes, signed));
        let reply = config
            .call(host, Effect::Write, Method::Post, "/v1/refunds", body)?
            // 201: new refund; 200: replay of the same request, the existing refund.
            .success(&[200, 201], provider_error)?;
        Ok(refund_from(&reply)?)
    }

    /// PagoEfectivo finds a refund by `referenceId` or `refundId`: the payment is not needed.
    fn get_refund(
        host: &impl Host,
        lookup: RefundLookup,
        _original_transaction_id: Option<String>,
    ) -> Result<Refund, RefundError> {
        let target = lookup::target(&lookup, &RULES, "/v1/refunds/", "/v1/refunds?refundId=")?;
        let reply = Config::load(host)?
            .call(host, Effect::Read, Method::Get, &target, None)?
            .success(&[200], provider_error)?;
        let RefundLookup::ExternalRefundId(id) = lookup else {
            return Ok(refund_from(&reply)?);
        };
        let list: Vec<wire::RefundObject> = envelope(&reply)?;
        let found = lookup::find_by_external_id(list, "refundId", &id, |r| r.refund_id.as_deref())?;
        Ok(found.into_refund().map_err(|e| reply.bad(e))?)
    }

    /// One page of the refunds created in `range` (spec: "List (reconciliation)"). The provider
    /// takes whole seconds of Lima time: the range asked is widened to them and the answer cut
    /// back to `range`. The cursor is the number of the page to ask for.
    fn list_refunds(
        host: &impl Host,
        range: TimeRange,
        cursor: Option<String>,
    ) -> Result<RefundPage, RefundError> {
        let seconds = list::whole_seconds(&range, MAX_LIST_RANGE_DAYS)?;
        let page = list::page_number(cursor.as_deref())?;
        let lima = |ms| time::format_rfc3339_offset(ms, LIMA_OFFSET_MINUTES);
        let (date_from, date_to) = seconds.format(lima)?;
        let target = format!(
            "/v1/refunds?dateFrom={}&dateTo={}&page={page}&pageSize={LIST_PAGE_SIZE}",
            query_value(&date_from),
            query_value(&date_to)
        );
        let reply = Config::load(host)?
            .call(host, Effect::Read, Method::Get, &target, None)?
            .success(&[200], provider_error)?;
        let data: wire::RefundListPage = envelope(&reply)?;
        let refunds = list::keep_inside(&range, data.items, |object| {
            object.into_refund().map_err(|e| reply.bad(e))
        })?;
        Ok(RefundPage {
            refunds,
            // From the page asked for, not the one the answer names: an answer that numbers its
            // page otherwise (from 0, say) must not send the host back to a page it has read.
            next_cursor: list::next_page(page, data.total_pages),
        })
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
        let secret = webhook::secret(host, ID, "secret_key")?;
        // Verify before reading anything else from the request: nothing unsigned is trusted.
        if !sign::verify_webhook(secret.expose().as_bytes(), body, signature) {
            return Err(WebhookError::InvalidSignature);
        }
        let head: wire::WebhookHead = webhook::json(body)?;
        match wire::EventType::parse(&head.event_type) {
            wire::EventType::Pending
            | wire::EventType::Completed
            | wire::EventType::Rejected
            | wire::EventType::Reverted => {}
            // A genuine notification of a type the spec does not list: acknowledged, so that
            // the provider stops retrying it.
            wire::EventType::Unknown(other) => return Ok(webhook::ignored("eventType", &other)),
        }
        let event: wire::WebhookBody = webhook::json(body)?;
        if event.operation_number.is_empty() {
            return Err(WebhookError::Malformed("operationNumber is empty".into()));
        }
        let refund = event
            .data
            .into_refund()
            .map_err(|e| webhook::malformed("data", e))?;
        Ok(WebhookOutcome::Events(vec![WebhookEvent {
            event_id: event.operation_number,
            event_type: event.event_type,
            // The refund's last change is when the event happened: the body has no other time.
            occurred_at: refund.updated_at,
            refund,
        }]))
    }
}
