//! Simulator of the PagoEfectivo refund API (wire contract v1), read from the provider's contract
//! independently of the plugin.
//!
//! API: `POST /v1/authorizations` (credentials and clock, gives a bearer token), then, with
//! `Authorization: Bearer` and `PE-Signature`: create a refund, get one by `referenceId`, look one
//! up by `refundId`, list a range of creation dates page by page (`list.rs`); see `api.rs`'s
//! handlers for the order of checks. Control (`/_sandbox/...`, unauthenticated): seed payments,
//! make refunds as the merchant's staff would in the back office, move refunds (which sends
//! signed notifications), forget refunds (the provider lost them), toggle the merchant balance,
//! expire tokens or change their lifetime, inject faults, set the IP allowlist and the
//! notification URL, read deliveries, refunds and counters; see `control.rs`.
//!
//! Faults (`POST /_sandbox/faults`, see [`crate::faults`]), request faults applied in queue order
//! to `/v1` requests other than the authorization that passed the token, signature and allowlist
//! checks:
//! - `{"kind": "status", "status": 500|503, "count": N, "retry_after": S?}`: that status with the
//!   spec's code `999`, request not processed. 429 and 502 are refused (400): the spec has no
//!   rate limiting and lists only 500 and 503 for provider faults; an `error` fault sends them if
//!   a test needs them (`{"kind": "error", "status": 429, "code": "999"}`);
//! - `{"kind": "error", "status": 400..=599, "code": "<3 digits>", "message": M?, "count": N,
//!   "retry_after": S?}`: that status and code (and message M, when given) in the spec's error
//!   body (`data` empty), request not processed;
//! - `{"kind": "status_after_processing", "status": S, "count": N}` (S as for `status`):
//!   processed (the refund exists, a replay is a replay), then answered with that error;
//! - `{"kind": "delay", "delay_ms": MS, "count": N}`: processed, then answered late.
//!
//! `Retry-After` is sent when `retry_after` is given (and for an `error` fault with status 429,
//! default 1 s). Webhook faults: `drop_webhooks`, `duplicate_webhooks`, `fail_webhooks`.
//!
//! Choices where the spec is silent:
//! - a `dateRequest` that is not exactly `YYYY-MM-DDTHH:MM:SS-05:00` (another offset, `Z`,
//!   fractions, garbage) is 400 `111` naming `dateRequest`, not `108`: it is a malformed field,
//!   and `108` tells a client to fix its clock, which would not help. The body's shape is checked
//!   (`111`) before the credentials (`105`), then the clock (`108`).
//! - the authorization is not subject to the IP allowlist or to request faults (the spec lists
//!   only `105` and `108` for it), so a queued fault always hits the refund call it is meant for.
//! - a missing or non-`Bearer` `Authorization` header is `106`, like an unknown token; a missing
//!   `PE-Signature` is `107`. A body that is not empty and not a JSON object has no canonical
//!   string: 400 `111` naming `body`, after the token check and before the signature check.
//! - `codeService` is `SANDBOX-<idService>`; tokens are 64 random hex digits; `tokenStart` and
//!   `tokenExpires` are written to the second, cut down (a token never expires before the time
//!   it announces).
//! - `referenceId` is `PE-RF-` and a 9-digit number that starts at random per run and then counts
//!   up; `operationNumber` is `OP-` and a 12-digit number built the same way (unique within a
//!   run, and unlikely to repeat an earlier run's, which a receiver may still remember).
//! - `GET /v1/refunds` with none of `refundId`, `dateFrom`, `dateTo`, `page` and `pageSize` is
//!   400 `111` naming `refundId`; an invalid `refundId` likewise.
//! - the range list: a missing `dateFrom` or `dateTo`, `dateFrom` later than `dateTo`, `page` below
//!   1, `pageSize` outside 1..=100, or a parameter given twice are `111`, every such field listed
//!   in `data` (the range's own faults name `dateTo`); a range of exactly 31 days is allowed.
//!   `page` and `pageSize` are answered as asked, and `totalPages` is 0 for a range without
//!   refunds. `dateCreation` counts to the second in the range and the order, as shown.
//! - unknown paths answer 404 with code `"404"` (not in the spec's table) in the spec's error body.
//! - amounts with leading zeros (`"015.00"`) are `111`, like every other non-canonical form.
//! - `status_reason` given on a control move becomes `statusReason`; a move without one sets it
//!   back to `null`. Creating a refund sends no notification (`refund.pending` is never sent:
//!   notifications follow control moves only).

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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use rand::Rng;

use crate::allowlist::IpAllowlist;
use crate::faults::{ErrorCodeFormat, FaultPolicy, Faults};
use crate::webhooks::{self, Dispatcher, DispatcherConfig};
use crate::{SandboxError, SandboxHandle};

/// How long a notification receiver may take to answer one attempt (the spec gives no limit; the
/// same 10 s as the other simulators).
const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the spec can express: provider faults are 500 and 503 (code `999`), codes are 3 digits.
const FAULT_POLICY: FaultPolicy = FaultPolicy {
    statuses: &[500, 503],
    codes: ErrorCodeFormat::Digits(3),
};

/// This simulator in the crate's registry (`refundry sandbox pagoefectivo`).
pub const SIMULATOR: crate::Simulator = crate::Simulator {
    id: "pagoefectivo",
    about: "The PagoEfectivo refund API simulator",
    #[cfg(feature = "cli")]
    command: cli::command,
    #[cfg(feature = "cli")]
    serve: cli::serve,
};

/// Credentials and behaviour of one PagoEfectivo simulator.
#[derive(Clone)]
pub struct Config {
    /// The merchant's integer service id (`idService`).
    pub id_service: u64,
    /// The public access key (`accessKey`).
    pub access_key: String,
    /// The secret key: authorization hash, request signatures and notification signatures.
    pub secret_key: String,
    /// Where signed notifications go; `None` = none sent (can be set later with
    /// `POST /_sandbox/webhooks/config`).
    pub notification_url: Option<String>,
    /// How long an issued token lives; default 2 h (the spec's), tests shorten it.
    pub token_lifetime: Duration,
    /// The delay before notification retry n is `webhook_retry_base * 2^(n-1)`; default 1 s,
    /// tests use about 20 ms.
    pub webhook_retry_base: Duration,
    /// Notification delivery attempts per event, first one included; default 5.
    pub webhook_max_attempts: u32,
}

impl Config {
    /// A configuration with these credentials, no notification URL, 2 h tokens, a 1 s retry base
    /// and 5 attempts.
    pub fn new(
        id_service: u64,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            id_service,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            notification_url: None,
            token_lifetime: Duration::from_secs(2 * 60 * 60),
            webhook_retry_base: Duration::from_secs(1),
            webhook_max_attempts: 5,
        }
    }
}

/// The secret key is redacted: a configuration can be logged safely.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id_service", &self.id_service)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("notification_url", &self.notification_url)
            .field("token_lifetime", &self.token_lifetime)
            .field("webhook_retry_base", &self.webhook_retry_base)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .finish()
    }
}

/// Starts a simulator on `addr` (`127.0.0.1:0` for a free port) in the current tokio runtime.
pub async fn start(config: Config, addr: SocketAddr) -> Result<SandboxHandle, SandboxError> {
    let faults = Arc::new(Faults::with_policy(FAULT_POLICY));
    let secret_key = config.secret_key.clone();
    let signer: webhooks::Signer = Arc::new(move |event, _at| {
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (
                "PE-Signature".to_owned(),
                signing::notification_signature(&secret_key, &event.body),
            ),
        ]
    });
    let dispatcher = Dispatcher::new(
        DispatcherConfig {
            callback_url: config.notification_url.clone(),
            retry_base: config.webhook_retry_base,
            max_attempts: config.webhook_max_attempts,
            attempt_timeout: WEBHOOK_ATTEMPT_TIMEOUT,
        },
        signer,
        Arc::clone(&faults),
    )
    .map_err(SandboxError::HttpClient)?;
    // Drawn before any await: the thread-local generator is not `Send`.
    let (first_cip, first_operation) = {
        let mut rng = rand::rng();
        (
            rng.random_range(100_000_000..500_000_000),
            rng.random_range(100_000_000_000..500_000_000_000),
        )
    };
    let shared = Arc::new(Shared {
        tokens: Mutex::new(state::Tokens::new(config.token_lifetime)),
        config,
        ledger: Mutex::new(state::Ledger::new(first_cip)),
        faults,
        allowlist: IpAllowlist::new(),
        webhooks: dispatcher.clone(),
        stats: Stats::default(),
        balance_sufficient: AtomicBool::new(true),
        next_operation: AtomicU64::new(first_operation),
    });
    crate::spawn_server(router(shared), addr, dispatcher).await
}

/// Starts a simulator on `addr`, prints exactly one line to stdout once bound,
/// `refundry-sandbox pagoefectivo listening on http://127.0.0.1:PORT`, and serves until the
/// process is killed.
pub async fn serve_forever(config: Config, addr: SocketAddr) -> Result<(), SandboxError> {
    start(config, addr).await?.serve_forever(SIMULATOR.id).await
}

fn router(shared: Arc<Shared>) -> Router {
    let signed = Router::new()
        .route(
            "/v1/refunds",
            post(api::create_refund).get(api::list_refunds),
        )
        .route("/v1/refunds/{reference_id}", get(api::get_refund))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            api::gate,
        ));
    Router::new()
        .route("/v1/authorizations", post(api::authorize))
        .merge(signed)
        .merge(control::router())
        .fallback(api::unknown_endpoint)
        .with_state(shared)
}

/// State shared by all handlers of one simulator.
pub(crate) struct Shared {
    config: Config,
    ledger: Mutex<state::Ledger>,
    tokens: Mutex<state::Tokens>,
    faults: Arc<Faults>,
    allowlist: IpAllowlist,
    webhooks: Dispatcher,
    stats: Stats,
    /// Whether the merchant's balance can fund refunds (`136` while false).
    balance_sufficient: AtomicBool,
    /// The number in the next `operationNumber`.
    next_operation: AtomicU64,
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

    /// The issued tokens; hold the guard only within synchronous code.
    fn tokens(&self) -> MutexGuard<'_, state::Tokens> {
        // Every token method leaves the map consistent at each statement.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a `refund.<status>` notification for `refund` (if a notification URL is set).
    fn notify(&self, refund: &state::Refund) {
        let number = self.next_operation.fetch_add(1, Ordering::Relaxed);
        let operation_number = format!("OP-{number}");
        let body = wire::Notification {
            event_type: format!("refund.{}", refund.status.as_str()),
            operation_number: operation_number.clone(),
            data: wire::RefundObject::from(refund),
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                // Serialising plain strings cannot fail; log rather than panic if it ever does.
                tracing::error!(%error, "cannot serialise notification body");
                return;
            }
        };
        let outcome = self.webhooks.enqueue(webhooks::Event {
            event_id: operation_number,
            refund_id: refund.reference_id.clone(),
            body: body.into(),
        });
        tracing::debug!(reference_id = %refund.reference_id, ?outcome, "status change notification");
    }
}

/// Request counters, for `GET /_sandbox/stats`.
#[derive(Debug, Default)]
struct Stats {
    authorize: AtomicU64,
    create: AtomicU64,
    get: AtomicU64,
    /// `GET /v1/refunds` as the lookup by `refundId`.
    list: AtomicU64,
    /// `GET /v1/refunds` as the range list.
    list_range: AtomicU64,
    /// Tokens issued.
    authorizations: AtomicU64,
    /// `105`, `106`, `107` and `108` answers.
    auth_failures: AtomicU64,
}
