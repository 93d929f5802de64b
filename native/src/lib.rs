//! Provider plugins linked natively (`plugin = "native:<id>"`), for the benchmark baseline
//! only: the same plugin crate, the same capabilities, no WebAssembly.
//!
//! The plugin logic is the crate `cargo xtask build-plugins` compiles to a component, called
//! through the SDK's [`refundry_sdk::Provider`] trait with a [`refundry_sdk::Host`] backed by the
//! runtime's [`OperationHost`]: the same HTTP policy, observers (exchange log, metrics), clock,
//! storage, configuration and redacting log as the component's imports. What differs from the
//! component is what the benchmark measures: a fresh instance per operation, the canonical ABI,
//! wasm code instead of native code, and the engine's limits (epoch interruption, memory cap).
//!
//! The SDK's `Host` is synchronous and the capabilities are async, so each operation runs on
//! tokio's blocking pool and waits on the capabilities with the runtime's handle. That holds a
//! thread per operation in flight (the component holds none while it waits on the network), which
//! is the natural shape of a synchronous plugin run natively.
//!
//! Not isolated: no memory cap and no deadline. A panic in the plugin logic is caught (it ends
//! the blocking task, not the host) and reported as [`PluginError::Trap`], as a wasm trap is.
//! Never configure it in production. Only benchmarks and `cargo xtask bench-service` (through the
//! `refundry` binary's `native-plugins` feature) use this crate.

use std::sync::Arc;

use refundry_mfs_africa::MfsAfrica;
use refundry_pagoefectivo::PagoEfectivo;
use refundry_runtime::BoxFuture;
use refundry_runtime::RefundLogic;
use refundry_runtime::bindings::types::{
    Money, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefundStatus, Refusal, RefusalKind, Retryable, WebhookError, WebhookEvent, WebhookOutcome,
    WebhookRequest,
};
use refundry_runtime::bindings::{http, log, storage};
use refundry_runtime::caps::{Capabilities, OperationHost};
use refundry_runtime::error::{LoadError, PluginError};
use refundry_runtime::observe::{Operation, OperationAnswer};
use refundry_sdk::Provider as _;
use tokio::runtime::Handle;

/// A plugin crate this build links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkedCrate {
    MfsAfrica,
    PagoEfectivo,
}

/// The names `plugin = "native:<name>"` accepts.
const NAMES: &str = "mfs-africa, pagoefectivo";

impl LinkedCrate {
    fn by_name(name: &str) -> Option<Self> {
        match name {
            "mfs-africa" => Some(Self::MfsAfrica),
            "pagoefectivo" => Some(Self::PagoEfectivo),
            _ => None,
        }
    }

    fn describe(self) -> refundry_sdk::ProviderInfo {
        match self {
            Self::MfsAfrica => MfsAfrica::describe(),
            Self::PagoEfectivo => PagoEfectivo::describe(),
        }
    }

    fn create_refund(
        self,
        host: &SdkHost,
        req: refundry_sdk::RefundRequest,
    ) -> Result<refundry_sdk::Refund, refundry_sdk::RefundError> {
        match self {
            Self::MfsAfrica => MfsAfrica::create_refund(host, req),
            Self::PagoEfectivo => PagoEfectivo::create_refund(host, req),
        }
    }

    fn get_refund(
        self,
        host: &SdkHost,
        lookup: refundry_sdk::RefundLookup,
        original: Option<String>,
    ) -> Result<refundry_sdk::Refund, refundry_sdk::RefundError> {
        match self {
            Self::MfsAfrica => MfsAfrica::get_refund(host, lookup, original),
            Self::PagoEfectivo => PagoEfectivo::get_refund(host, lookup, original),
        }
    }

    fn list_refunds(
        self,
        host: &SdkHost,
        range: refundry_sdk::TimeRange,
        cursor: Option<String>,
    ) -> Result<refundry_sdk::RefundPage, refundry_sdk::RefundError> {
        match self {
            Self::MfsAfrica => MfsAfrica::list_refunds(host, range, cursor),
            Self::PagoEfectivo => PagoEfectivo::list_refunds(host, range, cursor),
        }
    }

    fn parse_webhook(
        self,
        host: &SdkHost,
        req: &refundry_sdk::WebhookRequest,
    ) -> Result<refundry_sdk::WebhookOutcome, refundry_sdk::WebhookError> {
        match self {
            Self::MfsAfrica => MfsAfrica::parse_webhook(host, req),
            Self::PagoEfectivo => PagoEfectivo::parse_webhook(host, req),
        }
    }
}

/// The linked plugin `name` (`mfs-africa` or `pagoefectivo`) with a provider's capabilities: the
/// [`refundry_service::providers::NativeLinker`] a benchmark build hands the service.
pub fn link(name: &str, caps: Arc<Capabilities>) -> Result<Arc<dyn RefundLogic>, LoadError> {
    Ok(Arc::new(NativePlugin::load(name, caps)?))
}

/// A provider plugin crate linked natively, run with the provider's capabilities.
#[derive(Clone)]
pub struct NativePlugin {
    linked: LinkedCrate,
    caps: Arc<Capabilities>,
    info: ProviderInfo,
}

impl NativePlugin {
    /// The linked plugin `name` (`mfs-africa` or `pagoefectivo`) with the provider's capabilities.
    pub fn load(name: &str, caps: Arc<Capabilities>) -> Result<Self, LoadError> {
        let linked = LinkedCrate::by_name(name).ok_or_else(|| {
            LoadError::Contract(format!(
                "no plugin native:{name} is linked into this host (linked: {NAMES})"
            ))
        })?;
        // `describe` must not use the host, so it needs no blocking task.
        let info = provider_info(linked.describe());
        Ok(Self { linked, caps, info })
    }

    /// Runs `f` on the blocking pool with an SDK host over `host`; a panic becomes
    /// [`PluginError::Trap`].
    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        op: &'static str,
        host: Arc<OperationHost>,
        f: impl FnOnce(&SdkHost) -> T + Send + 'static,
    ) -> Result<T, PluginError> {
        let host = SdkHost {
            host,
            runtime: Handle::current(),
        };
        tokio::task::spawn_blocking(move || f(&host))
            .await
            .map_err(|e| self.trap(op, e))
    }

    fn trap(&self, op: &'static str, e: tokio::task::JoinError) -> PluginError {
        let message = if e.is_panic() {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            format!("plugin panicked: {text}")
        } else {
            format!("plugin task did not finish: {e}")
        };
        let error = PluginError::Trap {
            provider: self.info.id.clone(),
            op,
            message,
        };
        // What the component's panic hook and the host's trap handling log, together.
        tracing::error!(provider = %self.info.id, op, error = %error, "plugin failed");
        error
    }
}

impl RefundLogic for NativePlugin {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn capabilities(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    fn run<'a>(
        &'a self,
        op: Operation<'a>,
        host: Arc<OperationHost>,
    ) -> BoxFuture<'a, Result<OperationAnswer, PluginError>> {
        let linked = self.linked;
        let name = op.name();
        Box::pin(async move {
            match op {
                Operation::Describe => Ok(OperationAnswer::Info(self.info.clone())),
                Operation::CreateRefund(req) => {
                    let req = sdk_request(req);
                    let answer = self
                        .on_blocking_pool(name, host, move |h| linked.create_refund(h, req))
                        .await?;
                    Ok(OperationAnswer::Refund(
                        answer.map(refund).map_err(refund_error),
                    ))
                }
                Operation::GetRefund(lookup, original) => {
                    let (lookup, original) = (sdk_lookup(lookup), original.map(str::to_owned));
                    let answer = self
                        .on_blocking_pool(name, host, move |h| {
                            linked.get_refund(h, lookup, original)
                        })
                        .await?;
                    Ok(OperationAnswer::Refund(
                        answer.map(refund).map_err(refund_error),
                    ))
                }
                Operation::ListRefunds(range, cursor) => {
                    let range = refundry_sdk::TimeRange {
                        from: range.from,
                        to: range.to,
                    };
                    let cursor = cursor.map(str::to_owned);
                    let answer = self
                        .on_blocking_pool(name, host, move |h| {
                            linked.list_refunds(h, range, cursor)
                        })
                        .await?;
                    Ok(OperationAnswer::Page(
                        answer.map(refund_page).map_err(refund_error),
                    ))
                }
                Operation::ParseWebhook(req) => {
                    let req = sdk_webhook_request(req);
                    let answer = self
                        .on_blocking_pool(name, host, move |h| linked.parse_webhook(h, &req))
                        .await?;
                    Ok(OperationAnswer::Webhook(
                        answer.map(webhook_outcome).map_err(webhook_error),
                    ))
                }
            }
        })
    }
}

/// The SDK's host for one native operation: each method makes the import call a component
/// makes, through the runtime's [`OperationHost`], waiting on the async ones with the runtime's
/// handle (this runs on a blocking-pool thread, where waiting is allowed).
struct SdkHost {
    host: Arc<OperationHost>,
    runtime: Handle,
}

impl refundry_sdk::Host for SdkHost {
    fn http_send(
        &self,
        req: refundry_sdk::http::Request,
    ) -> Result<refundry_sdk::http::Response, refundry_sdk::http::HttpError> {
        self.runtime
            .block_on(self.host.http_send(host_request(req)))
            .map(sdk_response)
            .map_err(sdk_http_error)
    }

    fn now_ms(&self) -> i64 {
        self.host.clock_now()
    }

    fn storage_get(&self, key: &str) -> Result<Option<Vec<u8>>, refundry_sdk::StorageError> {
        self.runtime
            .block_on(self.host.storage_get(key.to_owned()))
            .map_err(sdk_storage_error)
    }

    fn storage_set(&self, key: &str, value: &[u8]) -> Result<(), refundry_sdk::StorageError> {
        self.runtime
            .block_on(self.host.storage_set(key.to_owned(), value.to_vec()))
            .map_err(sdk_storage_error)
    }

    fn storage_delete(&self, key: &str) -> Result<(), refundry_sdk::StorageError> {
        self.runtime
            .block_on(self.host.storage_delete(key.to_owned()))
            .map_err(sdk_storage_error)
    }

    fn config(&self, key: &str) -> Option<String> {
        self.host.config_get(key.to_owned())
    }

    fn log(&self, level: refundry_sdk::Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.host.log(log_level(level), message.to_owned(), fields);
    }
}

// Conversions between the SDK's generated types and the host's: both are generated from the same
// WIT, so each is a field-by-field copy, and every enum and variant match is exhaustive so that a
// contract change breaks the build here.

fn sdk_money(m: &Money) -> refundry_sdk::Money {
    refundry_sdk::Money {
        amount_minor: m.amount_minor,
        currency: m.currency.clone(),
    }
}

fn money(m: refundry_sdk::Money) -> Money {
    Money {
        amount_minor: m.amount_minor,
        currency: m.currency,
    }
}

fn sdk_request(r: &RefundRequest) -> refundry_sdk::RefundRequest {
    refundry_sdk::RefundRequest {
        original_transaction_id: r.original_transaction_id.clone(),
        external_refund_id: r.external_refund_id.clone(),
        amount: sdk_money(&r.amount),
        reason: r.reason.clone(),
        order_id: r.order_id.clone(),
    }
}

fn sdk_lookup(l: &RefundLookup) -> refundry_sdk::RefundLookup {
    match l {
        RefundLookup::ProviderRefundId(id) => {
            refundry_sdk::RefundLookup::ProviderRefundId(id.clone())
        }
        RefundLookup::ExternalRefundId(id) => {
            refundry_sdk::RefundLookup::ExternalRefundId(id.clone())
        }
    }
}

fn provider_info(i: refundry_sdk::ProviderInfo) -> ProviderInfo {
    ProviderInfo {
        id: i.id,
        version: i.version,
        display_name: i.display_name,
        currencies: i.currencies,
        partial_refunds: i.partial_refunds,
        multiple_refunds: i.multiple_refunds,
        refund_window_days: i.refund_window_days,
        status_queries: i.status_queries,
        reversal_window_days: i.reversal_window_days,
        max_list_range_days: i.max_list_range_days,
    }
}

fn refund_status(s: refundry_sdk::RefundStatus) -> RefundStatus {
    match s {
        refundry_sdk::RefundStatus::Pending => RefundStatus::Pending,
        refundry_sdk::RefundStatus::Processed => RefundStatus::Processed,
        refundry_sdk::RefundStatus::Failed => RefundStatus::Failed,
        refundry_sdk::RefundStatus::Reversed => RefundStatus::Reversed,
    }
}

fn refund(r: refundry_sdk::Refund) -> Refund {
    Refund {
        provider_refund_id: r.provider_refund_id,
        external_refund_id: r.external_refund_id,
        original_transaction_id: r.original_transaction_id,
        amount: money(r.amount),
        status: refund_status(r.status),
        provider_status: r.provider_status,
        failure_reason: r.failure_reason,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn refusal_kind(k: refundry_sdk::RefusalKind) -> RefusalKind {
    use refundry_sdk::RefusalKind as S;
    match k {
        S::InvalidRequest => RefusalKind::InvalidRequest,
        S::Authentication => RefusalKind::Authentication,
        S::Forbidden => RefusalKind::Forbidden,
        S::InvalidTransaction => RefusalKind::InvalidTransaction,
        S::IdempotencyConflict => RefusalKind::IdempotencyConflict,
        S::AmountExceeded => RefusalKind::AmountExceeded,
        S::CurrencyMismatch => RefusalKind::CurrencyMismatch,
        S::WindowExpired => RefusalKind::WindowExpired,
        S::NotSettled => RefusalKind::NotSettled,
        S::InsufficientFunds => RefusalKind::InsufficientFunds,
        S::NotFound => RefusalKind::NotFound,
        S::Configuration => RefusalKind::Configuration,
        S::Unsupported => RefusalKind::Unsupported,
        S::Other => RefusalKind::Other,
    }
}

fn refund_error(e: refundry_sdk::RefundError) -> RefundError {
    match e {
        refundry_sdk::RefundError::Refused(r) => RefundError::Refused(Refusal {
            kind: refusal_kind(r.kind),
            provider_code: r.provider_code,
            message: r.message,
            http_status: r.http_status,
        }),
        refundry_sdk::RefundError::Retryable(r) => RefundError::Retryable(Retryable {
            provider_code: r.provider_code,
            message: r.message,
            http_status: r.http_status,
            retry_after_ms: r.retry_after_ms,
        }),
        refundry_sdk::RefundError::UnknownOutcome(why) => RefundError::UnknownOutcome(why),
    }
}

fn webhook_event(e: refundry_sdk::WebhookEvent) -> WebhookEvent {
    WebhookEvent {
        event_id: e.event_id,
        event_type: e.event_type,
        occurred_at: e.occurred_at,
        refund: refund(e.refund),
    }
}

fn refund_page(p: refundry_sdk::RefundPage) -> RefundPage {
    RefundPage {
        refunds: p.refunds.into_iter().map(refund).collect(),
        next_cursor: p.next_cursor,
    }
}

fn sdk_webhook_request(r: &WebhookRequest) -> refundry_sdk::WebhookRequest {
    refundry_sdk::WebhookRequest {
        method: r.method.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
    }
}

fn webhook_outcome(o: refundry_sdk::WebhookOutcome) -> WebhookOutcome {
    match o {
        refundry_sdk::WebhookOutcome::Events(events) => {
            WebhookOutcome::Events(events.into_iter().map(webhook_event).collect())
        }
        refundry_sdk::WebhookOutcome::Ignored(why) => WebhookOutcome::Ignored(why),
    }
}

fn webhook_error(e: refundry_sdk::WebhookError) -> WebhookError {
    match e {
        refundry_sdk::WebhookError::MissingHeader(h) => WebhookError::MissingHeader(h),
        refundry_sdk::WebhookError::InvalidSignature => WebhookError::InvalidSignature,
        refundry_sdk::WebhookError::StaleTimestamp(s) => WebhookError::StaleTimestamp(s),
        refundry_sdk::WebhookError::Malformed(why) => WebhookError::Malformed(why),
    }
}

fn host_method(m: refundry_sdk::http::Method) -> http::Method {
    use refundry_sdk::http::Method as S;
    match m {
        S::Get => http::Method::Get,
        S::Post => http::Method::Post,
        S::Put => http::Method::Put,
        S::Patch => http::Method::Patch,
        S::Delete => http::Method::Delete,
    }
}

fn host_request(r: refundry_sdk::http::Request) -> http::Request {
    http::Request {
        method: host_method(r.method),
        url: r.url,
        headers: r.headers,
        body: r.body,
    }
}

fn sdk_response(r: http::Response) -> refundry_sdk::http::Response {
    refundry_sdk::http::Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

fn sdk_http_error(e: http::HttpError) -> refundry_sdk::http::HttpError {
    use refundry_sdk::http::HttpError as S;
    match e {
        http::HttpError::Denied(why) => S::Denied(why),
        http::HttpError::InvalidRequest(why) => S::InvalidRequest(why),
        http::HttpError::ConnectFailed(why) => S::ConnectFailed(why),
        http::HttpError::Timeout => S::Timeout,
        http::HttpError::Transport(why) => S::Transport(why),
        http::HttpError::ResponseTooLarge(cap) => S::ResponseTooLarge(cap),
    }
}

fn sdk_storage_error(e: storage::StorageError) -> refundry_sdk::StorageError {
    match e {
        storage::StorageError::TooLarge(cap) => refundry_sdk::StorageError::TooLarge(cap),
        storage::StorageError::Unavailable(why) => refundry_sdk::StorageError::Unavailable(why),
    }
}

fn log_level(l: refundry_sdk::Level) -> log::Level {
    match l {
        refundry_sdk::Level::Trace => log::Level::Trace,
        refundry_sdk::Level::Debug => log::Level::Debug,
        refundry_sdk::Level::Info => log::Level::Info,
        refundry_sdk::Level::Warn => log::Level::Warn,
        refundry_sdk::Level::Error => log::Level::Error,
    }
}

#[cfg(test)]
mod tests {
    //! The native provider against the component, on the same canned provider answers: every
    //! answer (refunds, refusals, retryable and transport failures) and every recorded exchange
    //! must be the same. Needs the components (`cargo xtask build-plugins`).

    use std::future::Future;
    use std::path::{Path, PathBuf};
    use std::pin::Pin;

    use refundry_ledger::exchange::Exchange;
    use refundry_runtime::caps::{FixedClock, Transport};
    use refundry_runtime::engine::Engine;
    use refundry_runtime::limits::EngineLimits;
    use refundry_runtime::{Plugin, PluginComponent};
    use refundry_service::config::Config;
    use refundry_service::exchange::Exchanges;
    use refundry_service::providers::{Providers, StartError, StartOptions};

    use super::*;

    /// 2026-11-25T10:15:30Z: one second before the canned refunds' creation.
    const NOW_MS: i64 = 1_795_601_730_000;
    /// Never contacted: the transport below answers instead.
    const BASE_URL: &str = "http://127.0.0.1:1";

    /// Canned answers by request path: (path, status, body); other paths fail to connect.
    #[derive(Clone)]
    struct CannedTransport(Vec<(&'static str, u16, &'static str)>);

    impl Transport for CannedTransport {
        fn exchange<'a>(
            &'a self,
            _req: &'a http::Request,
            url: reqwest::Url,
            _max_body: usize,
        ) -> Pin<Box<dyn Future<Output = Result<http::Response, http::HttpError>> + Send + 'a>>
        {
            let answer = match self.0.iter().find(|(p, _, _)| *p == url.path()) {
                Some((_, status, body)) => Ok(http::Response {
                    status: *status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.as_bytes().to_vec(),
                }),
                None => Err(http::HttpError::ConnectFailed(format!(
                    "no canned answer for {url}"
                ))),
            };
            Box::pin(std::future::ready(answer))
        }
    }

    const MFS_PENDING: &str = r#"{"refund_id": "rfnd_abc123", "external_refund_id": "order-991-r1", "original_transaction_id": "txn_8f2k1", "refund_amount": "1500.00", "currency": "KES", "reason": "customer_return", "status": "pending", "failure_reason": null, "created_at": "2026-11-25T10:15:31Z", "updated_at": "2026-11-25T10:15:31Z"}"#;
    /// A list page holding [`MFS_PENDING`], with more to come.
    const MFS_PAGE: &str = r#"{"data": [{"refund_id": "rfnd_abc123", "external_refund_id": "order-991-r1", "original_transaction_id": "txn_8f2k1", "refund_amount": "1500.00", "currency": "KES", "reason": "customer_return", "status": "pending", "failure_reason": null, "created_at": "2026-11-25T10:15:31Z", "updated_at": "2026-11-25T10:15:31Z"}], "has_more": true}"#;
    const MFS_EXCEEDED: &str = r#"{"error": {"code": "amount_exceeded", "message": "refund amount exceeds the refundable balance"}, "trace_id": "tr_9x8y7"}"#;
    const PE_TOKEN: &str = r#"{"code": "100", "message": "Solicitud exitosa.", "data": {"token": "test-token", "codeService": "S1", "tokenStart": "2026-11-25T05:15:30-05:00", "tokenExpires": "2026-11-25T07:15:30-05:00"}}"#;
    const PE_PENDING: &str = r#"{"code": "100", "message": "Solicitud exitosa.", "data": {"refundId": "order-991-r1", "referenceId": "PE-RF-000123", "transactionId": "txn_8f2k1", "transactionCode": "ORDER-991", "refundAmount": "1500.00", "currency": "PEN", "status": "pending", "statusReason": null, "dateCreation": "2026-11-25T05:15:31-05:00", "dateUpdate": "2026-11-25T05:15:31-05:00"}}"#;

    fn config(provider: &str) -> Config {
        let (settings, secrets) = match provider {
            "mfs-africa" => (
                "api_key = \"test_api_key\"\n",
                "api_secret = \"test_api_secret\"\nwebhook_secret = \"test_webhook_secret\"\n",
            ),
            _ => (
                "id_service = \"1024\"\naccess_key = \"AK1\"\n",
                "secret_key = \"test_secret_key\"\n",
            ),
        };
        let toml = format!(
            "[database]\npath = \":memory:\"\n[providers.{provider}]\nplugin = \"{provider}.wasm\"\n\
             [providers.{provider}.settings]\nbase_url = \"{BASE_URL}\"\n{settings}\
             [providers.{provider}.secrets]\n{secrets}"
        );
        Config::parse(&toml, Path::new("native.toml"), &plugins_dir(), |_| None)
            .expect("the test config parses")
    }

    /// Where `cargo xtask build-plugins` wrote the components (as the end-to-end tests find them).
    fn plugins_dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("plugins")
    }

    /// Fresh capabilities (own storage, frozen clock) answering from `transport`.
    fn caps(provider: &str, transport: &CannedTransport) -> (Config, Arc<Capabilities>) {
        let config = config(provider);
        let p = &config.providers[provider];
        let caps = Capabilities::builder(provider, Arc::new(p.clone()))
            .origin(p.base_url.clone())
            .transport(Arc::new(transport.clone()))
            .http_limits(config.http)
            .quotas(config.quotas)
            .clock(FixedClock::new(NOW_MS))
            .build();
        (config, caps)
    }

    async fn component(provider: &str, transport: &CannedTransport) -> Plugin {
        let (config, caps) = caps(provider, transport);
        let path = &config.providers[provider].plugin;
        assert!(
            path.is_file(),
            "{} is missing: run `cargo xtask build-plugins` first",
            path.display()
        );
        let engine = Engine::new(EngineLimits::default()).expect("the engine starts");
        let component = PluginComponent::from_file(&engine, path).expect("the component loads");
        Plugin::bind(engine, Arc::new(component), caps, true)
            .await
            .expect("the component binds")
    }

    fn request(currency: &str, order_id: Option<&str>) -> RefundRequest {
        RefundRequest {
            original_transaction_id: "txn_8f2k1".into(),
            external_refund_id: "order-991-r1".into(),
            amount: Money {
                amount_minor: 150_000,
                currency: currency.into(),
            },
            reason: Some("customer_return".into()),
            order_id: order_id.map(str::to_owned),
        }
    }

    /// An exchange without its measured latency (the only field that may differ).
    fn comparable(mut e: Exchange) -> Exchange {
        e.latency_ms = 0.0;
        e
    }

    /// Sends `req` twice through the native provider and the component, each with its own fresh
    /// capabilities answering from `answers`; asserts the same answers and exchanges, and
    /// returns the native answers.
    async fn same_answers(
        provider: &str,
        answers: Vec<(&'static str, u16, &'static str)>,
        req: &RefundRequest,
    ) -> Vec<Result<Refund, RefundError>> {
        let transport = CannedTransport(answers);
        let wasm: Arc<dyn RefundLogic> = Arc::new(component(provider, &transport).await);
        let native: Arc<dyn RefundLogic> = link(provider, caps(provider, &transport).1).unwrap();
        assert_eq!(native.info(), wasm.info());
        let mut answers = Vec::new();
        // Twice: PagoEfectivo authorizes on the first call and uses the stored token on the second.
        for _ in 0..2 {
            let exchanges = || Exchanges::new(Default::default());
            let (native_ex, wasm_ex) = (exchanges(), exchanges());
            let n = native
                .create_refund(req, native_ex.observer())
                .await
                .unwrap();
            let w = wasm.create_refund(req, wasm_ex.observer()).await.unwrap();
            assert_eq!(n, w, "{provider}: native and component answer alike");
            let n_ex: Vec<_> = native_ex.take().into_iter().map(comparable).collect();
            let w_ex: Vec<_> = wasm_ex.take().into_iter().map(comparable).collect();
            assert!(!n_ex.is_empty());
            assert_eq!(n_ex, w_ex, "{provider}: the same exchanges are recorded");
            answers.push(n);
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mfs_africa_answers_like_the_component() {
        let req = request("KES", None);
        let created = same_answers("mfs-africa", vec![("/v1/refunds", 201, MFS_PENDING)], &req);
        let refund = created.await.remove(0).unwrap();
        assert_eq!(refund.provider_refund_id, "rfnd_abc123");
        assert_eq!(refund.status, RefundStatus::Pending);
        assert_eq!(refund.amount, req.amount);

        let refused = same_answers("mfs-africa", vec![("/v1/refunds", 422, MFS_EXCEEDED)], &req);
        assert!(matches!(
            refused.await.remove(0),
            Err(RefundError::Refused(Refusal {
                kind: RefusalKind::AmountExceeded,
                ..
            }))
        ));
        let retry = same_answers("mfs-africa", vec![("/v1/refunds", 503, "{}")], &req);
        assert!(matches!(
            retry.await.remove(0),
            Err(RefundError::Retryable(_))
        ));
        // No answer at all: a transport failure crosses the SDK boundary both ways.
        let unreachable = same_answers("mfs-africa", vec![], &req).await;
        assert!(unreachable[0].is_err(), "{unreachable:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pagoefectivo_answers_like_the_component() {
        let req = request("PEN", Some("ORDER-991"));
        let answers = vec![
            ("/v1/authorizations", 201, PE_TOKEN),
            ("/v1/refunds", 201, PE_PENDING),
        ];
        for answer in same_answers("pagoefectivo", answers, &req).await {
            let refund = answer.unwrap();
            assert_eq!(refund.provider_refund_id, "PE-RF-000123");
            assert_eq!(refund.status, RefundStatus::Pending);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_refund_and_webhooks_run_natively() {
        let transport = CannedTransport(vec![("/v1/refunds/rfnd_abc123", 200, MFS_PENDING)]);
        let native = link("mfs-africa", caps("mfs-africa", &transport).1).unwrap();
        let exchanges = Exchanges::new(Default::default());
        let lookup = RefundLookup::ProviderRefundId("rfnd_abc123".into());
        let found = native.get_refund(&lookup, None, exchanges.observer()).await;
        assert_eq!(found.unwrap().unwrap().provider_refund_id, "rfnd_abc123");
        assert_eq!(exchanges.take().len(), 1);
        let unsigned = WebhookRequest {
            method: "POST".into(),
            path: "/v1/webhooks/mfs-africa".into(),
            query: None,
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let unsigned = native.parse_webhook(&unsigned, None).await.unwrap();
        assert!(
            matches!(unsigned, Err(WebhookError::MissingHeader(_))),
            "{unsigned:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listed_page_is_the_same_natively_and_in_the_component() {
        let transport = CannedTransport(vec![("/v1/refunds", 200, MFS_PAGE)]);
        let wasm: Arc<dyn RefundLogic> = Arc::new(component("mfs-africa", &transport).await);
        let native = link("mfs-africa", caps("mfs-africa", &transport).1).unwrap();
        let range = refundry_runtime::TimeRange {
            from: NOW_MS,
            to: NOW_MS + 60_000,
        };
        let (native_ex, wasm_ex) = (
            Exchanges::new(Default::default()),
            Exchanges::new(Default::default()),
        );
        let n = native
            .list_refunds(&range, None, native_ex.observer())
            .await
            .unwrap();
        let w = wasm
            .list_refunds(&range, None, wasm_ex.observer())
            .await
            .unwrap();
        assert_eq!(n, w);
        let n_ex: Vec<_> = native_ex.take().into_iter().map(comparable).collect();
        let w_ex: Vec<_> = wasm_ex.take().into_iter().map(comparable).collect();
        assert_eq!(n_ex, w_ex, "the same exchanges are recorded");
        let page = n.unwrap();
        assert_eq!(page.refunds.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("rfnd_abc123"));
    }

    #[test]
    fn unknown_names_are_refused() {
        let transport = CannedTransport(vec![]);
        let (_, caps) = caps("mfs-africa", &transport);
        let err = NativePlugin::load("stripe", caps).err().unwrap();
        assert!(matches!(err, LoadError::Contract(_)), "{err}");
    }

    #[tokio::test]
    async fn a_native_plugin_must_be_the_provider_it_is_configured_as() {
        let toml = format!(
            "[database]\npath = \":memory:\"\n[providers.pagoefectivo]\nplugin = \"native:mfs-africa\"\n\
             [providers.pagoefectivo.settings]\nbase_url = \"{BASE_URL}\"\n"
        );
        let config = Config::parse(&toml, Path::new("native.toml"), &plugins_dir(), |_| None)
            .expect("the test config parses");
        let options = StartOptions {
            native: Some(link),
            ..StartOptions::default()
        };
        let err = Providers::start_with(&config, options)
            .await
            .err()
            .expect("a mismatch is refused");
        assert!(
            matches!(&err, StartError::Plugin { source: refundry_service::registry::RegistryError::Rejected(LoadError::ProviderMismatch { expected, found }), .. }
                if expected == "pagoefectivo" && found == "mfs-africa"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_a_trap_not_a_crash() {
        let transport = CannedTransport(vec![]);
        let (_, caps) = caps("mfs-africa", &transport);
        let native = NativePlugin::load("mfs-africa", caps.clone()).unwrap();
        let host = Arc::new(caps.operation("create-refund", "1".into(), None));
        let err = native
            .on_blocking_pool("create-refund", host, |_| -> () { panic!("boom") })
            .await
            .unwrap_err();
        match err {
            PluginError::Trap { op, message, .. } => {
                assert_eq!(op, "create-refund");
                assert!(message.contains("boom"), "{message}");
            }
            other => panic!("expected a trap, got {other:?}"),
        }
    }
}
