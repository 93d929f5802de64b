//! The REST API of `refundry serve`: JSON under `/v1`, bearer tokens with scopes, an OpenAPI
//! document generated from the handlers.
//!
//! | Route | Auth | Answers |
//! |---|---|---|
//! | `POST /v1/refunds` | `refunds` | 201, 202, 422, 503 (by outcome; 503 with `Retry-After`); 400, 404, 409; 500 |
//! | `GET /v1/refunds` | `refunds` | 200 (JSON page, or CSV with `format=csv`); 400; 500 |
//! | `GET /v1/refunds/{id}` | `refunds` | 200; 404; 500 |
//! | `GET /v1/refunds/{id}/exchanges` | `admin` | 200; 404; 500 |
//! | `GET /v1/events` | `refunds` | 200; 400; 500 |
//! | `POST /v1/webhooks/{provider}` | none (the plugin verifies the signature) | 200; 400, 401, 404; 500 |
//! | `GET /v1/plugins` | `admin` | 200 |
//! | `POST /v1/plugins/{provider}/versions` | `admin` | 201, 200 (already loaded); 400, 404, 409, 413, 422; 500 |
//! | `POST /v1/plugins/{provider}/activate` | `admin` | 200; 400, 404; 500 |
//! | `DELETE /v1/plugins/{provider}/versions/{version}` | `admin` | 204; 404, 409; 500 |
//! | `GET /metrics` | `metrics` | 200 (Prometheus text format); 500 |
//! | `GET /healthz` | none | 200 |
//! | `GET /openapi.json` | none | 200 |
//!
//! Every route answers 401 without a valid token (where one is needed), 403 without the scope,
//! 413 for a body over 64 KiB (32 MiB for a plugin component), 408 for a body that does not
//! arrive within `[server] body_timeout_ms` (those four also close the connection: the body may
//! still be on the wire), and every error in one shape ([`error::ErrorBody`]). How connections
//! are accepted, timed out and capped, and TLS, are [`server`]'s.
//!
//! The handlers are generic over [`RefundApi`], which [`RefundService`] implements, so that
//! they can be tested without plugins or a database.

pub mod auth;
pub mod body_deadline;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod outbound_events;
pub mod plugins;
pub mod reconciliations;
pub mod refunds;
pub mod server;
pub mod tls;
mod watchdog;
pub mod webhook_intake;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tracing::Instrument;

use auth::Tokens;
use error::ApiError;
use health::ProviderHealth;
use refundry_ledger::{
    EventPage, EventQuery, ExchangeRecord, ListQuery, Page, ReconciliationPage,
    ReconciliationQuery, ReconciliationRecord, RefundDetail, Trigger,
};
use refundry_runtime::bindings::types::WebhookRequest;
use refundry_service::config::ApiToken;
use refundry_service::refunds::{
    CreateError, Created, NewRefund, ReconcileError, RefundService, ServiceError, WebhookAccepted,
    WebhookIntakeError,
};
use refundry_service::registry::{Activated, Loaded, ProviderVersions, RegistryError};

/// The largest request body accepted, on every route (webhooks included): a refund request or
/// a provider notification is a few hundred bytes, so 64 KiB is generous and bounds what one
/// request can make the service buffer.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the API needs of the refund service. [`RefundService`] is the implementation; tests use
/// a double.
pub trait RefundApi: Clone + Send + Sync + 'static {
    /// Creates (or replays) a refund.
    fn create(&self, req: NewRefund) -> impl Future<Output = Result<Created, CreateError>> + Send;
    /// One refund with its history.
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RefundDetail>, ServiceError>> + Send;
    /// A refund's provider HTTP exchanges, redacted, oldest first.
    fn exchanges(
        &self,
        refund_id: &str,
    ) -> impl Future<Output = Result<Vec<ExchangeRecord>, ServiceError>> + Send;
    /// A page of refunds.
    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Page, ServiceError>> + Send;
    /// A page of outbound events with their deliveries.
    fn events(
        &self,
        query: EventQuery,
    ) -> impl Future<Output = Result<EventPage, ServiceError>> + Send;
    /// Takes a provider's webhook delivery.
    fn webhook(
        &self,
        provider: &str,
        req: WebhookRequest,
    ) -> impl Future<Output = Result<WebhookAccepted, WebhookIntakeError>> + Send;
    /// The loaded providers, for `/healthz`.
    fn providers(&self) -> Vec<ProviderHealth>;
    /// Every provider's plugin versions.
    fn plugins(&self) -> Vec<ProviderVersions>;
    /// Loads a component as a version of `provider`'s plugin.
    fn load_plugin(
        &self,
        provider: &str,
        component: Vec<u8>,
    ) -> impl Future<Output = Result<Loaded, RegistryError>> + Send;
    /// Activates a loaded version.
    fn activate_plugin(
        &self,
        provider: &str,
        version: &str,
    ) -> impl Future<Output = Result<Activated, RegistryError>> + Send;
    /// Removes a version that is not active.
    fn remove_plugin(
        &self,
        provider: &str,
        version: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// A page of reconciliation runs, newest first. A double without reconciliation answers with
    /// an error (500).
    fn reconciliations(
        &self,
        _query: ReconciliationQuery,
    ) -> impl Future<Output = Result<ReconciliationPage, ServiceError>> + Send {
        std::future::ready(Err(ServiceError(
            "this service does not reconcile".to_owned(),
        )))
    }
    /// One reconciliation run with its findings.
    fn reconciliation(
        &self,
        _id: &str,
    ) -> impl Future<Output = Result<Option<ReconciliationRecord>, ServiceError>> + Send {
        std::future::ready(Err(ServiceError(
            "this service does not reconcile".to_owned(),
        )))
    }
    /// Reconciles `provider` over `[from_ms, to_ms)` now.
    fn reconcile(
        &self,
        provider: &str,
        _from_ms: i64,
        _to_ms: i64,
    ) -> impl Future<Output = Result<ReconciliationRecord, ReconcileError>> + Send {
        std::future::ready(Err(ReconcileError::UnknownProvider(provider.to_owned())))
    }
    /// Every metric in the Prometheus text format (`GET /metrics`). A double without metrics
    /// answers with an error (500).
    fn metrics(&self) -> impl Future<Output = Result<String, ServiceError>> + Send {
        std::future::ready(Err(ServiceError(
            "this service keeps no metrics".to_owned(),
        )))
    }
}

impl RefundApi for RefundService {
    fn create(&self, req: NewRefund) -> impl Future<Output = Result<Created, CreateError>> + Send {
        RefundService::create(self, req)
    }

    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<RefundDetail>, ServiceError>> + Send {
        RefundService::get(self, id)
    }

    fn exchanges(
        &self,
        refund_id: &str,
    ) -> impl Future<Output = Result<Vec<ExchangeRecord>, ServiceError>> + Send {
        RefundService::exchanges(self, refund_id)
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Page, ServiceError>> + Send {
        RefundService::list(self, query)
    }

    fn events(
        &self,
        query: EventQuery,
    ) -> impl Future<Output = Result<EventPage, ServiceError>> + Send {
        RefundService::events(self, query)
    }

    fn webhook(
        &self,
        provider: &str,
        req: WebhookRequest,
    ) -> impl Future<Output = Result<WebhookAccepted, WebhookIntakeError>> + Send {
        RefundService::webhook(self, provider, req)
    }

    fn providers(&self) -> Vec<ProviderHealth> {
        self.providers()
            .providers()
            .map(|(id, plugin)| ProviderHealth {
                id: id.to_owned(),
                version: plugin.version().to_owned(),
                sha256: plugin.sha256().to_owned(),
            })
            .collect()
    }

    fn plugins(&self) -> Vec<ProviderVersions> {
        self.providers().registry().list()
    }

    async fn load_plugin(
        &self,
        provider: &str,
        component: Vec<u8>,
    ) -> Result<Loaded, RegistryError> {
        self.providers()
            .registry()
            .load(Some(provider), component)
            .await
    }

    async fn activate_plugin(
        &self,
        provider: &str,
        version: &str,
    ) -> Result<Activated, RegistryError> {
        self.providers()
            .registry()
            .activate(provider, version)
            .await
    }

    async fn remove_plugin(&self, provider: &str, version: &str) -> Result<(), RegistryError> {
        self.providers().registry().remove(provider, version).await
    }

    fn metrics(&self) -> impl Future<Output = Result<String, ServiceError>> + Send {
        RefundService::metrics_text(self)
    }

    async fn reconciliations(
        &self,
        query: ReconciliationQuery,
    ) -> Result<ReconciliationPage, ServiceError> {
        self.ledger()
            .reconciliations(query)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    async fn reconciliation(&self, id: &str) -> Result<Option<ReconciliationRecord>, ServiceError> {
        self.ledger()
            .reconciliation(id)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    fn reconcile(
        &self,
        provider: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<ReconciliationRecord, ReconcileError>> + Send {
        RefundService::reconcile(self, provider, from_ms, to_ms, Trigger::Api)
    }
}

/// What every handler gets: the service and the tokens.
pub struct AppState<S> {
    /// The refund service.
    pub service: S,
    tokens: Arc<Tokens>,
}

impl<S: Clone> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            tokens: self.tokens.clone(),
        }
    }
}

/// A state that knows the bearer tokens (for [`auth::Authorized`]).
pub trait HasTokens {
    /// The configured tokens.
    fn tokens(&self) -> &Tokens;
}

impl<S> HasTokens for AppState<S> {
    fn tokens(&self) -> &Tokens {
        &self.tokens
    }
}

/// The whole API as a router: every route, the body limit, request logging, and the error shape.
pub fn router<S: RefundApi>(service: S, tokens: &[ApiToken]) -> Router {
    let state = AppState {
        service,
        tokens: Arc::new(Tokens::new(tokens)),
    };
    Router::new()
        .route("/healthz", get(health::healthz::<S>))
        .route("/metrics", get(metrics::metrics::<S>))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/v1/refunds",
            post(refunds::create::<S>).get(refunds::list::<S>),
        )
        .route("/v1/refunds/{id}", get(refunds::get::<S>))
        .route("/v1/refunds/{id}/exchanges", get(refunds::exchanges::<S>))
        .route("/v1/events", get(outbound_events::list::<S>))
        .route(
            "/v1/webhooks/{provider}",
            post(webhook_intake::receive::<S>),
        )
        .route(
            "/v1/reconciliations",
            get(reconciliations::list::<S>).post(reconciliations::run::<S>),
        )
        .route("/v1/reconciliations/{id}", get(reconciliations::get::<S>))
        .route("/v1/plugins", get(plugins::list::<S>))
        .route(
            "/v1/plugins/{provider}/versions",
            post(plugins::load::<S>).layer(DefaultBodyLimit::max(plugins::PLUGIN_BODY_LIMIT)),
        )
        .route(
            "/v1/plugins/{provider}/activate",
            post(plugins::activate::<S>),
        )
        .route(
            "/v1/plugins/{provider}/versions/{version}",
            delete(plugins::remove::<S>),
        )
        .fallback(unknown_route)
        .with_state(state)
        .layer(middleware::from_fn(error::shape_errors))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(body_deadline::bound_body))
        .layer(middleware::from_fn(trace_requests))
}

/// Serves the API on `endpoint` until `shutdown` completes, then lets requests in flight finish.
/// `tokens` are the bearer tokens of `[server.tokens]`.
pub fn serve<S, F>(
    service: S,
    tokens: &[ApiToken],
    endpoint: server::Endpoint,
    shutdown: F,
) -> impl Future<Output = std::io::Result<()>> + Send + use<S, F>
where
    S: RefundApi,
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(service, tokens);
    endpoint.serve(app, shutdown)
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()))
}

/// Middleware: one span per request with its method and path (never its body, query string or
/// headers: the query may carry cursors and the headers a token), then its status and latency.
/// The handlers record `refund_id` and `provider` once they know them (the service's own spans
/// inside carry them too), so the request's last line names its refund.
async fn trace_requests(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        caller = tracing::field::Empty,
        refund_id = tracing::field::Empty,
        provider = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = next.run(req).await.into_response();
        let status = response.status().as_u16();
        // Microsecond precision is plenty, and keeps the log line short.
        let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let span = tracing::Span::current();
        span.record("status", status);
        span.record("latency_ms", latency_ms);
        if response.status().is_server_error() {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request done");
        }
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests;
