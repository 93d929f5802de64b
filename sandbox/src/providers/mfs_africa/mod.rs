//! Simulator of the MFS Africa refund API (wire contract v1), read from the provider's contract
//! independently of the plugin.
//!
//! API (`/v1/...`, signed): create a refund, get one by id, look one up by external id, list a
//! range of creation times page by page (`list.rs`); see `api.rs`'s handlers for the order of
//! checks. Control (`/_sandbox/...`, unauthenticated; routes listed in `control.rs`): seed
//! transactions, make refunds as the merchant's staff would in the provider's portal, move
//! refunds (which emits signed webhooks), forget refunds (the provider lost them), inject faults,
//! set the IP allowlist and the callback URL, read deliveries, refunds and counters.
//!
//! Faults (`POST /_sandbox/faults`, see [`crate::faults`]), request faults applied in queue order
//! to API requests that passed authentication and the allowlist:
//! - `{"kind": "status", "status": 429|500|502|503, "count": N, "retry_after": S?}`: the spec's
//!   `rate_limited`, `internal_error` or `service_unavailable` error, request not processed;
//! - `{"kind": "error", "status": 400..=599, "code": "[a-z_]+", "message": M?, "count": N,
//!   "retry_after": S?}`: that status with `{"error": {"code": code, "message": M or
//!   "...injected..."}, "trace_id": ...}`, request not processed; any row of the spec's error
//!   table, or an unknown code;
//! - `{"kind": "status_after_processing", "status": S, "count": N}` (S as for `status`):
//!   processed (the refund exists, a replay is a replay), then answered with that error;
//! - `{"kind": "delay", "delay_ms": MS, "count": N}`: processed, then answered late.
//!
//! `Retry-After` is sent when `retry_after` is given, and always for 429 (default 1 s). Webhook
//! faults: `drop_webhooks`, `duplicate_webhooks`, `fail_webhooks` (each with `count`).
//!
//! Not in the provider's contract, for telling plugin versions apart (hot swap): each refund keeps the
//! `X-Plugin-Version` header of the request that created it (shown by `GET /_sandbox/refunds` as
//! `created_by_plugin_version`), and [`Config::require_header`] makes a header mandatory.
//!
//! Choices where the spec is silent:
//! - a missing or unparseable `X-Timestamp` is answered 401 `timestamp_out_of_range` (the client
//!   must fix its clock or its formatting either way; no 400 for an auth header).
//! - unknown paths under the API answer 404 with code `not_found` in the spec's error body.
//! - amounts with leading zeros (`"015.00"`) are `invalid_request`, like every other
//!   non-canonical form.
//! - the range list: a `starting_after` that is no refund the simulator holds, a `limit` outside
//!   1..=100, `created_from` later than `created_to`, a parameter given twice, or only one of
//!   `created_from` and `created_to` are `invalid_request`; a range of exactly 31 days is
//!   allowed. `created_at` counts to the second in the range and the order, as the refund object
//!   shows it.

mod api;
#[cfg(feature = "cli")]
mod cli;
mod control;
mod error;
mod list;
mod money;
mod signing;
mod state;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::allowlist::IpAllowlist;
use crate::faults::Faults;
use crate::webhooks::{self, Dispatcher, DispatcherConfig};
use crate::{SandboxError, SandboxHandle};

/// The spec's limit for a receiver to answer a webhook ("answer 2xx within 10 s").
const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// This simulator in the crate's registry (`refundry sandbox mfs-africa`).
pub const SIMULATOR: crate::Simulator = crate::Simulator {
    id: "mfs-africa",
    about: "The MFS Africa refund API simulator",
    #[cfg(feature = "cli")]
    command: cli::command,
    #[cfg(feature = "cli")]
    serve: cli::serve,
};

/// Credentials and behaviour of one MFS Africa simulator.
#[derive(Clone)]
pub struct Config {
    /// The `X-Api-Key` clients must send.
    pub api_key: String,
    /// The request signing secret.
    pub api_secret: String,
    /// The webhook signing secret.
    pub webhook_secret: String,
    /// Where signed webhooks go; `None` = no webhooks sent (can be set later via the control API).
    pub callback_url: Option<String>,
    /// The delay before webhook retry n is `webhook_retry_base * 2^(n-1)`; default 1 s, tests use
    /// about 20 ms.
    pub webhook_retry_base: Duration,
    /// Webhook delivery attempts per event, first one included; default 5 (the spec says the
    /// provider retries up to 5 times).
    pub webhook_max_attempts: u32,
    /// A header name (any case) every `/v1` request must carry, e.g. `X-Plugin-Version`, to check
    /// that a client sends it; default `None` (the spec requires no such header). A request
    /// without it is refused 400 `invalid_request` after the authentication and allowlist
    /// checks, and changes nothing.
    pub require_header: Option<String>,
}

impl Config {
    /// A configuration with these credentials, no callback URL, a 1 s retry base, 5 attempts and
    /// no required header.
    pub fn new(
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
        webhook_secret: impl Into<String>,
    ) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            webhook_secret: webhook_secret.into(),
            callback_url: None,
            webhook_retry_base: Duration::from_secs(1),
            webhook_max_attempts: 5,
            require_header: None,
        }
    }
}

/// Secrets are redacted: a configuration can be logged safely.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("callback_url", &self.callback_url)
            .field("webhook_retry_base", &self.webhook_retry_base)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("require_header", &self.require_header)
            .finish()
    }
}

/// Starts a simulator on `addr` (`127.0.0.1:0` for a free port) in the current tokio runtime.
pub async fn start(config: Config, addr: SocketAddr) -> Result<SandboxHandle, SandboxError> {
    if let Some(name) = &config.require_header
        && axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        // It could never be present: every request would be refused.
        return Err(SandboxError::Config(format!(
            "require_header = {name:?} is not an HTTP header name"
        )));
    }
    let faults = Arc::new(Faults::new());
    let webhook_secret = config.webhook_secret.clone();
    let signer: webhooks::Signer =
        Arc::new(move |event, at| webhook_headers(&webhook_secret, event, at));
    let dispatcher = Dispatcher::new(
        DispatcherConfig {
            callback_url: config.callback_url.clone(),
            retry_base: config.webhook_retry_base,
            max_attempts: config.webhook_max_attempts,
            attempt_timeout: WEBHOOK_ATTEMPT_TIMEOUT,
        },
        signer,
        Arc::clone(&faults),
    )
    .map_err(SandboxError::HttpClient)?;
    let shared = Arc::new(Shared {
        config,
        ledger: Mutex::new(state::Ledger::default()),
        faults,
        allowlist: IpAllowlist::new(),
        webhooks: dispatcher.clone(),
        stats: Stats::default(),
    });
    crate::spawn_server(router(shared), addr, dispatcher).await
}

/// Starts a simulator on `addr`, prints exactly one line to stdout once bound,
/// `refundry-sandbox mfs-africa listening on http://127.0.0.1:PORT`, and serves until the process
/// is killed.
pub async fn serve_forever(config: Config, addr: SocketAddr) -> Result<(), SandboxError> {
    start(config, addr).await?.serve_forever(SIMULATOR.id).await
}

/// The headers of one webhook attempt: the spec's `X-MFS-*` headers, signed for the attempt time.
fn webhook_headers(
    webhook_secret: &str,
    event: &webhooks::Event,
    at: DateTime<Utc>,
) -> Vec<(String, String)> {
    let timestamp = crate::time::rfc3339_seconds(at);
    let signature = signing::webhook_signature(webhook_secret, &timestamp, &event.body);
    vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-MFS-Event-Id".to_owned(), event.event_id.clone()),
        ("X-MFS-Timestamp".to_owned(), timestamp),
        ("X-MFS-Signature".to_owned(), signature),
    ]
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(
            "/v1/refunds",
            post(api::create_refund).get(api::list_refunds),
        )
        .route("/v1/refunds/{refund_id}", get(api::get_refund))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            api::gate,
        ));
    Router::new()
        .merge(api)
        .merge(control::router())
        .fallback(api::unknown_endpoint)
        .with_state(shared)
}

/// State shared by all handlers of one simulator.
pub(crate) struct Shared {
    config: Config,
    ledger: Mutex<state::Ledger>,
    faults: Arc<Faults>,
    allowlist: IpAllowlist,
    webhooks: Dispatcher,
    stats: Stats,
}

impl crate::control::Controlled for Shared {
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn allowlist(&self) -> &IpAllowlist {
        &self.allowlist
    }
    fn webhooks(&self) -> &Dispatcher {
        &self.webhooks
    }
}

impl Shared {
    /// The ledger; hold the guard only within synchronous code.
    fn ledger(&self) -> MutexGuard<'_, state::Ledger> {
        // Ledger methods check everything before they change anything, so a panic cannot leave
        // it half-updated: a poisoned lock is still usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a `refund.status_changed` webhook for `refund` (if a callback URL is set).
    fn emit_status_changed(&self, refund: &state::Refund, at: DateTime<Utc>) {
        let event_id = random_id("evt_");
        let body = wire::WebhookBody {
            event_id: event_id.clone(),
            event_type: wire::STATUS_CHANGED,
            occurred_at: crate::time::rfc3339_seconds(at),
            data: wire::RefundObject::from(refund),
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                // Serialising plain strings cannot fail; log rather than panic if it ever does.
                tracing::error!(%error, "cannot serialise webhook body");
                return;
            }
        };
        let outcome = self.webhooks.enqueue(webhooks::Event {
            event_id,
            refund_id: refund.refund_id.clone(),
            body: body.into(),
        });
        tracing::debug!(refund_id = %refund.refund_id, ?outcome, "status change webhook");
    }
}

/// Request counters, for `GET /_sandbox/stats`.
#[derive(Debug, Default)]
struct Stats {
    create: AtomicU64,
    get: AtomicU64,
    /// `GET /v1/refunds` as the lookup by external id.
    list: AtomicU64,
    /// `GET /v1/refunds` as the range list.
    list_range: AtomicU64,
    auth_failures: AtomicU64,
}

/// `prefix` followed by 24 random lowercase hex digits (96 bits).
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}
