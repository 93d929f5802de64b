//! Contract 0.1.0 (`wit/v0.1.0/`, frozen): its bindings, the host's capabilities under its names,
//! and the adapter that runs a 0.1 component's operations as the newest contract's.
//!
//! The adapter is a set of conversions between two generations of the same types. Where 0.1 has
//! less to say, it answers what 0.1 meant: status queries exist (0.1 had `get-refund` for every
//! provider), nothing is known of reversal windows or list ranges, `list-refunds` is
//! `unsupported`, and a webhook is one event.

use wasmtime::Store;

use crate::bindings as now;
use crate::caps::PluginState;
use crate::observe::{Operation, OperationAnswer};

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "refund-plugin",
    // As for the newest contract (see `crate::bindings`): a plugin waiting on the network or on
    // storage holds no host thread, and exports are called from async code.
    imports: {
        "refundry:provider/http.send": async,
        "refundry:provider/storage": async,
    },
    exports: { default: async },
});

use refundry::provider::{clock, config, http, log, storage, types};

impl types::Host for PluginState {}

impl http::Host for PluginState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let req = now::http::Request {
            method: method(req.method),
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        match self.host.http_send(req).await {
            Ok(r) => Ok(http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(http_error(e)),
        }
    }
}

impl clock::Host for PluginState {
    fn now(&mut self) -> i64 {
        self.host.clock_now()
    }
}

impl storage::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, storage::StorageError> {
        self.host.storage_get(key).await.map_err(storage_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), storage::StorageError> {
        self.host
            .storage_set(key, value)
            .await
            .map_err(storage_error)
    }

    async fn delete(&mut self, key: String) -> Result<(), storage::StorageError> {
        self.host.storage_delete(key).await.map_err(storage_error)
    }
}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.host.config_get(key)
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => now::log::Level::Trace,
            log::Level::Debug => now::log::Level::Debug,
            log::Level::Info => now::log::Level::Info,
            log::Level::Warn => now::log::Level::Warn,
            log::Level::Error => now::log::Level::Error,
        };
        self.host.log(level, message, fields);
    }
}

/// Runs `op` on a 0.1 instance and answers in the newest contract's terms.
pub(crate) async fn call(
    instance: &RefundPlugin,
    store: &mut Store<PluginState>,
    op: Operation<'_>,
) -> wasmtime::Result<OperationAnswer> {
    let guest = instance.refundry_provider_provider();
    Ok(match op {
        Operation::Describe => OperationAnswer::Info(info(guest.call_describe(store).await?)),
        Operation::CreateRefund(req) => {
            let req = types::RefundRequest {
                original_transaction_id: req.original_transaction_id.clone(),
                external_refund_id: req.external_refund_id.clone(),
                amount: types::Money {
                    amount_minor: req.amount.amount_minor,
                    currency: req.amount.currency.clone(),
                },
                reason: req.reason.clone(),
                order_id: req.order_id.clone(),
            };
            OperationAnswer::Refund(refund_answer(guest.call_create_refund(store, &req).await?))
        }
        // 0.1 looks refunds up without the original payment.
        Operation::GetRefund(lookup, _original) => {
            let lookup = match lookup {
                now::types::RefundLookup::ProviderRefundId(id) => {
                    types::RefundLookup::ProviderRefundId(id.clone())
                }
                now::types::RefundLookup::ExternalRefundId(id) => {
                    types::RefundLookup::ExternalRefundId(id.clone())
                }
            };
            OperationAnswer::Refund(refund_answer(guest.call_get_refund(store, &lookup).await?))
        }
        Operation::ListRefunds(..) => {
            OperationAnswer::Page(Err(now::types::RefundError::Refused(now::types::Refusal {
                kind: now::types::RefusalKind::Unsupported,
                provider_code: None,
                message: "the plugin is built against contract 0.1.0, which cannot list refunds"
                    .into(),
                http_status: None,
            })))
        }
        // 0.1 sees only the headers and the body; its answer is one event.
        Operation::ParseWebhook(req) => {
            let answer = guest
                .call_parse_webhook(store, &req.headers, &req.body)
                .await?;
            OperationAnswer::Webhook(match answer {
                Ok(event) => Ok(now::types::WebhookOutcome::Events(vec![webhook_event(
                    event,
                )])),
                Err(e) => Err(webhook_error(e)),
            })
        }
    })
}

fn info(i: types::ProviderInfo) -> now::types::ProviderInfo {
    now::types::ProviderInfo {
        id: i.id,
        version: i.version,
        display_name: i.display_name,
        currencies: i.currencies,
        partial_refunds: i.partial_refunds,
        multiple_refunds: i.multiple_refunds,
        refund_window_days: i.refund_window_days,
        status_queries: true,
        reversal_window_days: None,
        max_list_range_days: None,
    }
}

fn refund_answer(
    answer: Result<types::Refund, types::RefundError>,
) -> Result<now::types::Refund, now::types::RefundError> {
    answer.map(refund).map_err(refund_error)
}

fn refund(r: types::Refund) -> now::types::Refund {
    now::types::Refund {
        provider_refund_id: r.provider_refund_id,
        external_refund_id: r.external_refund_id,
        original_transaction_id: r.original_transaction_id,
        amount: now::types::Money {
            amount_minor: r.amount.amount_minor,
            currency: r.amount.currency,
        },
        status: match r.status {
            types::RefundStatus::Pending => now::types::RefundStatus::Pending,
            types::RefundStatus::Processed => now::types::RefundStatus::Processed,
            types::RefundStatus::Failed => now::types::RefundStatus::Failed,
            types::RefundStatus::Reversed => now::types::RefundStatus::Reversed,
        },
        provider_status: r.provider_status,
        failure_reason: r.failure_reason,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn refund_error(e: types::RefundError) -> now::types::RefundError {
    use now::types::RefusalKind as K;
    match e {
        types::RefundError::Refused(r) => now::types::RefundError::Refused(now::types::Refusal {
            kind: match r.kind {
                types::RefusalKind::InvalidRequest => K::InvalidRequest,
                types::RefusalKind::Authentication => K::Authentication,
                types::RefusalKind::Forbidden => K::Forbidden,
                types::RefusalKind::InvalidTransaction => K::InvalidTransaction,
                types::RefusalKind::IdempotencyConflict => K::IdempotencyConflict,
                types::RefusalKind::AmountExceeded => K::AmountExceeded,
                types::RefusalKind::CurrencyMismatch => K::CurrencyMismatch,
                types::RefusalKind::WindowExpired => K::WindowExpired,
                types::RefusalKind::NotSettled => K::NotSettled,
                types::RefusalKind::InsufficientFunds => K::InsufficientFunds,
                types::RefusalKind::NotFound => K::NotFound,
                types::RefusalKind::Other => K::Other,
            },
            provider_code: r.provider_code,
            message: r.message,
            http_status: r.http_status,
        }),
        types::RefundError::Retryable(r) => {
            now::types::RefundError::Retryable(now::types::Retryable {
                provider_code: r.provider_code,
                message: r.message,
                http_status: r.http_status,
                retry_after_ms: r.retry_after_ms,
            })
        }
        types::RefundError::UnknownOutcome(m) => now::types::RefundError::UnknownOutcome(m),
    }
}

fn webhook_event(e: types::WebhookEvent) -> now::types::WebhookEvent {
    now::types::WebhookEvent {
        event_id: e.event_id,
        event_type: e.event_type,
        occurred_at: e.occurred_at,
        refund: refund(e.refund),
    }
}

fn webhook_error(e: types::WebhookError) -> now::types::WebhookError {
    match e {
        types::WebhookError::MissingHeader(h) => now::types::WebhookError::MissingHeader(h),
        types::WebhookError::InvalidSignature => now::types::WebhookError::InvalidSignature,
        types::WebhookError::StaleTimestamp(s) => now::types::WebhookError::StaleTimestamp(s),
        types::WebhookError::Malformed(m) => now::types::WebhookError::Malformed(m),
    }
}

fn method(m: http::Method) -> now::http::Method {
    match m {
        http::Method::Get => now::http::Method::Get,
        http::Method::Post => now::http::Method::Post,
        http::Method::Put => now::http::Method::Put,
        http::Method::Patch => now::http::Method::Patch,
        http::Method::Delete => now::http::Method::Delete,
    }
}

fn http_error(e: now::http::HttpError) -> http::HttpError {
    use now::http::HttpError as E;
    match e {
        E::Denied(m) => http::HttpError::Denied(m),
        E::InvalidRequest(m) => http::HttpError::InvalidRequest(m),
        E::ConnectFailed(m) => http::HttpError::ConnectFailed(m),
        E::Timeout => http::HttpError::Timeout,
        E::Transport(m) => http::HttpError::Transport(m),
        E::ResponseTooLarge(n) => http::HttpError::ResponseTooLarge(n),
    }
}

fn storage_error(e: now::storage::StorageError) -> storage::StorageError {
    match e {
        now::storage::StorageError::TooLarge(n) => storage::StorageError::TooLarge(n),
        now::storage::StorageError::Unavailable(m) => storage::StorageError::Unavailable(m),
    }
}
